"""Locks between writers of one project: per table (two writers of `bronze.orders` take turns), around gold
(dbt builds in one shared staging schema), and, on a SQLite catalog, around every lake transaction.

PostgreSQL catalog: a session advisory lock in the catalog database, keyed by project and name (released if the
process dies). SQLite catalog: an exclusive `flock` on a file per name in `<catalog>.locks/` beside the catalog
(released by the OS if the process dies). Locks of different names never wait for each other.

Why SQLite needs the catalog-wide lock: DuckLake keeps a SQLite transaction open on its catalog for the whole
DuckDB transaction, and SQLite lets only one of them write: two step transactions open at once fail at commit
with "database is locked" (measured on DuckDB 1.5.5: 13 of 20 commits from 4 threads failed even with WAL and the
COMMIT statements serialised). So on SQLite the steps of a run commit one at a time; PostgreSQL catalogs run
them in parallel.
"""

from __future__ import annotations

import re
import time
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from airduck.config.project import Project
from airduck.errors import ConcurrentRunError
from airduck.pipeline.records import RecordStore

#: the name of the catalog-wide lock (SQLite catalogs only; see the module docstring)
CATALOG = "catalog"
#: seconds a writer waits for another writer of the same table before giving up (a step can take long)
TABLE_TIMEOUT = 3600.0


def _acquire(try_lock: Callable[[], bool], notify: Callable[[], None], timeout: float, what: str) -> None:
    """Call `try_lock` until it succeeds; `notify` once when it has to wait; give up after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    if try_lock():
        return
    notify()
    pause = 0.02
    while not try_lock():
        if time.monotonic() > deadline:
            raise ConcurrentRunError(f"{what} has been held by another run for over {timeout:g} s; gave up waiting",
                                     hint="run again when the other run has finished")
        time.sleep(pause)
        pause = min(pause * 1.5, 0.5)


def _keys(project: Project, name: str) -> tuple[int, int]:
    """Two signed 32-bit keys for pg_advisory_lock(int, int): the project's and the lock's name."""
    def signed(text: str) -> int:
        value = zlib.crc32(text.encode())
        return value - 2**32 if value >= 2**31 else value

    return signed(f"airduck:{project.config.name}"), signed(name)


def lock_file(store: RecordStore, name: str) -> Path:
    folder = Path(store.target.removesuffix(".runs.sqlite") + ".locks")
    folder.mkdir(parents=True, exist_ok=True)
    return folder / (re.sub(r"[^A-Za-z0-9_.-]", "_", name) + ".lock")


@contextmanager
def project_lock(project: Project, name: str, *, timeout: float = TABLE_TIMEOUT,
                 notify: Callable[[], None] | None = None, what: str | None = None) -> Iterator[None]:
    """Hold the project's lock called `name` (e.g. ``bronze.orders``, ``gold``) while the block runs.

    Waits for another holder (another thread, process or machine on the same catalog) and calls `notify` once when
    it has to; raises ConcurrentRunError after `timeout` seconds."""
    notify = notify or (lambda: None)
    what = what or f"the lock of {name}"
    store = RecordStore(project)
    if store.kind == "postgres":
        import psycopg

        k1, k2 = _keys(project, name)
        with psycopg.connect(store.target, autocommit=True, connect_timeout=10) as conn:
            _acquire(lambda: conn.execute("SELECT pg_try_advisory_lock(%s, %s)", [k1, k2]).fetchone()[0],
                     notify, timeout, what)
            try:
                yield
            finally:
                conn.execute("SELECT pg_advisory_unlock(%s, %s)", [k1, k2])
        return
    import fcntl

    with open(lock_file(store, name), "a+") as handle:  # each open() is its own flock: threads wait too
        def try_flock() -> bool:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return True
            except BlockingIOError:
                return False

        _acquire(try_flock, notify, timeout, what)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextmanager
def catalog_lock(project: Project, timeout: float = TABLE_TIMEOUT) -> Iterator[None]:
    """On a SQLite catalog, one lake transaction at a time (see the module docstring); nothing on PostgreSQL."""
    if RecordStore(project).kind == "postgres":
        yield
        return
    with project_lock(project, CATALOG, timeout=timeout, what="the SQLite catalog"):
        yield


@contextmanager
def gold_lock(project: Project, reporter, timeout: float) -> Iterator[None]:
    """One gold build at a time per project (dbt builds in one shared staging schema)."""
    with project_lock(project, "gold", timeout=timeout, what="the gold step",
                      notify=lambda: reporter.message("waiting for another run's gold step to finish", "warning")):
        yield
