"""A lock around the gold step: dbt builds in one shared staging schema, so one project builds gold at a time.

PostgreSQL catalog: a session advisory lock in the catalog database (released if the process dies).
SQLite catalog: an exclusive `flock` on a file beside the catalog (released by the OS if the process dies).
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from airduck.config.project import Project
from airduck.errors import ConcurrentRunError
from airduck.events import Reporter
from airduck.pipeline.records import RecordStore


def _acquire(try_lock: Callable[[], bool], reporter: Reporter, timeout: float) -> None:
    """Call `try_lock` until it succeeds; say once that we wait; give up after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    if try_lock():
        return
    reporter.message("waiting for another run's gold step to finish", "warning")
    while not try_lock():
        if time.monotonic() > deadline:
            raise ConcurrentRunError("another run has been building gold for too long; gave up waiting")
        time.sleep(0.5)


@contextmanager
def gold_lock(project: Project, reporter: Reporter, timeout: float) -> Iterator[None]:
    store = RecordStore(project)
    if store.kind == "postgres":
        import psycopg

        key = zlib.crc32(f"airduck-gold:{project.config.name}".encode())
        with psycopg.connect(store.target, autocommit=True, connect_timeout=10) as conn:
            _acquire(lambda: conn.execute("SELECT pg_try_advisory_lock(%s)", [key]).fetchone()[0], reporter, timeout)
            try:
                yield
            finally:
                conn.execute("SELECT pg_advisory_unlock(%s)", [key])
        return
    import fcntl

    def try_flock() -> bool:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            return False

    path = Path(store.target).with_suffix(".gold.lock")
    path.parent.mkdir(parents=True, exist_ok=True)  # `airduck docs` may come before the first run
    with open(path, "a+") as handle:
        _acquire(try_flock, reporter, timeout)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
