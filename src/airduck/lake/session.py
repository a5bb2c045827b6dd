"""A read session: the lake attached READ_ONLY and locked down once, shared by every read of a long-lived process.

Opening a lake costs hundreds of milliseconds (extensions, catalog, attach); a query on an open one a few. A
`ReadSession` opens it once and runs each read on a cursor of its own (`con.cursor()`: a connection of its own to
the same in-memory database, so threads never share one), in one read transaction: every statement of the read
sees the same snapshot, the latest committed when it began (a READ_ONLY DuckLake attach reads the catalog anew in
each transaction, so commits of other connections and processes are seen without reopening). Cursors are kept
for the next read when one ends cleanly (making one and pointing it at the lake costs more than a small query).

The session writes nothing, ever: on a fresh project without a catalog it is an empty lake in memory (`empty`),
reopened on the real catalog once one exists.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import duckdb

from airduck.errors import CatalogMissing
from airduck.lake.connection import LAKE, catalog_file, data_path, open_empty_lake, open_lake
from airduck.lake.sqlguard import lock_down

if TYPE_CHECKING:
    from airduck.config.project import Project

#: how often an empty session over a server catalog asks whether the catalog exists now (seconds)
EMPTY_RECHECK_SECONDS = 2.0
#: idle cursors kept for the next reads
POOL_SIZE = 16


class ReadSession:
    """The lake attached READ_ONLY and locked down (no files outside the lake, no ATTACH/INSTALL/SET), opened on
    first use and kept until `close()`. `with session.cursor() as cur:` runs reads; safe across threads."""

    def __init__(self, project: Project) -> None:
        self.project = project
        self._con: duckdb.DuckDBPyConnection | None = None
        self._empty = False
        self._checked = 0.0
        self._lock = threading.Lock()
        self._idle: list[duckdb.DuckDBPyConnection] = []
        self._generation = 0
        self._relations: tuple[int, frozenset[tuple[str, str]]] | None = None

    @property
    def empty(self) -> bool:
        """True when the project has no catalog yet (reads see an empty lake)."""
        self._connection()
        return self._empty

    def _connection(self) -> duckdb.DuckDBPyConnection:
        with self._lock:
            if self._con is not None and self._empty and self._catalog_may_exist():
                self._close_locked()
            if self._con is None:
                self._con, self._empty = self._open()
                self._checked = time.monotonic()
            return self._con

    def _catalog_may_exist(self) -> bool:
        file = catalog_file(self.project)
        if file is not None:
            return file.exists()
        return time.monotonic() - self._checked >= EMPTY_RECHECK_SECONDS

    def _open(self) -> tuple[duckdb.DuckDBPyConnection, bool]:
        try:
            con, empty = open_lake(self.project, read_only=True), False
        except CatalogMissing:
            con, empty = open_empty_lake(self.project), True
        try:
            lock_down(con, [data_path(self.project, create=False)])
        except BaseException:
            con.close()
            raise
        return con, empty

    def new_cursor(self) -> duckdb.DuckDBPyConnection:
        """A cursor of its own on the lake (`USE lake` done); the caller closes it. Prefer `cursor()`."""
        con = self._connection()
        with self._lock:
            cur = con.cursor()
        try:
            cur.execute(f"USE {LAKE}")
        except BaseException:
            cur.close()
            raise
        return cur

    @contextmanager
    def cursor(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A cursor for one read, in one read transaction (all its statements see one snapshot); safe to use from
        any thread, never shared with another read while it lasts."""
        cur, generation = self._take()
        clean = False
        try:
            cur.execute("BEGIN TRANSACTION")
            yield cur
            clean = True
        finally:
            try:
                cur.execute("ROLLBACK")  # nothing to commit: the lake is attached READ_ONLY
            except duckdb.Error:
                clean = False
            self._give(cur, generation, clean)

    def _take(self) -> tuple[duckdb.DuckDBPyConnection, int]:
        self._connection()
        with self._lock:
            if self._idle:
                return self._idle.pop(), self._generation
            generation = self._generation
        return self.new_cursor(), generation

    def _give(self, cur: duckdb.DuckDBPyConnection, generation: int, clean: bool) -> None:
        with self._lock:
            if clean and generation == self._generation and self._con is not None and len(self._idle) < POOL_SIZE:
                self._idle.append(cur)
                return
        cur.close()

    def relations(self, cur: duckdb.DuckDBPyConnection) -> frozenset[tuple[str, str]]:
        """(schema, name) of the lake's tables and views as `cur` sees them (what user SQL may read), kept per
        snapshot: listing them costs more than a small query, and only a new snapshot can change them."""
        from airduck.lake.catalog import relations_at

        snapshot = int(cur.execute(f"SELECT id FROM {LAKE}.current_snapshot()").fetchone()[0])
        cached = self._relations
        if cached is not None and cached[0] == snapshot and not self._empty:
            return cached[1]
        found = frozenset(relations_at(cur, snapshot))
        self._relations = (snapshot, found)
        return found

    def invalidate(self) -> None:
        """Reopen on next use (after the lake was created, or its configuration changed)."""
        self.close()

    def close(self) -> None:
        with self._lock:
            self._close_locked()

    def _close_locked(self) -> None:
        for cur in self._idle:
            cur.close()
        self._idle.clear()
        self._generation += 1
        self._relations = None
        if self._con is not None:
            self._con.close()
            self._con = None
        self._empty = False
