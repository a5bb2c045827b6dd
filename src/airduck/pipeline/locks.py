"""A lock around the gold step: dbt builds in one shared staging schema, so one project builds gold at a time.

PostgreSQL catalog: a session advisory lock in the catalog database (released if the process dies).
SQLite catalog: an exclusive `flock` on a file beside the catalog (released by the OS if the process dies).
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from airduck.config.project import Project
from airduck.errors import ConcurrentRunError
from airduck.events import Reporter
from airduck.pipeline.records import RecordStore


@contextmanager
def gold_lock(project: Project, reporter: Reporter, timeout: float) -> Iterator[None]:
    store = RecordStore(project)
    deadline = time.monotonic() + timeout
    waited = False
    if store.kind == "postgres":
        import psycopg

        key = zlib.crc32(f"airduck-gold:{project.config.name}".encode())
        conn = psycopg.connect(store.target, autocommit=True, connect_timeout=10)
        try:
            while not conn.execute("SELECT pg_try_advisory_lock(%s)", [key]).fetchone()[0]:
                if time.monotonic() > deadline:
                    raise ConcurrentRunError("another run has been building gold for too long; gave up waiting")
                if not waited:
                    reporter.message("waiting for another run's gold step to finish", "warning")
                    waited = True
                time.sleep(0.5)
            try:
                yield
            finally:
                conn.execute("SELECT pg_advisory_unlock(%s)", [key])
        finally:
            conn.close()
        return
    import fcntl

    path = Path(store.target).with_suffix(".gold.lock")
    with open(path, "a+") as handle:
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise ConcurrentRunError("another run has been building gold for too long; gave up waiting"
                                             ) from None
                if not waited:
                    reporter.message("waiting for another run's gold step to finish", "warning")
                    waited = True
                time.sleep(0.5)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
