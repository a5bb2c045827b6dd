"""A read session: the lake attached READ_ONLY and locked down once, shared by every read of a long-lived process.

Opening a lake costs hundreds of milliseconds (extensions, catalog, attach); a query on an open one a few. A
`ReadSession` opens it once and runs each read on a cursor of its own (`con.cursor()`: a connection of its own to
the same in-memory database, so threads never share one), in one read transaction: every statement of the read
sees the same snapshot, the latest committed when it began (a READ_ONLY DuckLake attach reads the catalog anew in
each transaction, so commits of other connections and processes are seen without reopening). Cursors are kept
for the next read when one ends cleanly (making one and pointing it at the lake costs more than a small query).

The session writes nothing, ever: on a fresh project without a catalog it is an empty lake in memory (`empty`),
reopened on the real catalog once one exists.

Pages of tables read at the lake's head are kept by snapshot id (`pages`): a snapshot never changes, so a page of
snapshot N is the same page for as long as N is the head. The head is asked of the catalog directly (`head()`: one
indexed query on SQLite or PostgreSQL, well under a millisecond, where asking DuckLake costs a read transaction and
a catalog round of its own).
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb

from airduck.errors import CatalogMissing
from airduck.lake.connection import (
    LAKE,
    attach_target,
    branch_of,
    branch_schema,
    catalog_file,
    catalog_kind,
    data_path,
    open_empty_lake,
    open_lake,
)
from airduck.lake.sqlguard import lock_down

if TYPE_CHECKING:
    from airduck.config.project import Project

#: how often an empty session over a server catalog asks whether the catalog exists now (seconds)
EMPTY_RECHECK_SECONDS = 2.0
#: idle cursors kept for the next reads
POOL_SIZE = 16
#: pages kept (`PageCache`), and the rows they may hold in all
PAGES_KEPT = 256
PAGE_ROWS_KEPT = 200_000


class PageCache:
    """Pages of tables by (table, snapshot id, page): least recently used first out, bounded in pages and rows."""

    def __init__(self, pages: int = PAGES_KEPT, rows: int = PAGE_ROWS_KEPT) -> None:
        self.max_pages, self.max_rows = pages, rows
        self._items: OrderedDict[tuple, tuple[Any, int]] = OrderedDict()
        self._rows = 0
        self._lock = threading.Lock()
        self.hits = self.misses = 0

    def get(self, key: tuple) -> Any:
        with self._lock:
            item = self._items.get(key)
            if item is None:
                self.misses += 1
                return None
            self._items.move_to_end(key)
            self.hits += 1
            return item[0]

    def put(self, key: tuple, value: Any, rows: int) -> None:
        if rows > self.max_rows // 4:
            return
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self._rows -= old[1]
            self._items[key] = (value, rows)
            self._rows += rows
            while len(self._items) > self.max_pages or self._rows > self.max_rows:
                _, (_, n) = self._items.popitem(last=False)
                self._rows -= n

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._rows = 0

    def __len__(self) -> int:
        return len(self._items)


LATEST = "SELECT snapshot_id, snapshot_time FROM ducklake_snapshot ORDER BY snapshot_id DESC LIMIT 1"


class HeadProbe:
    """The latest snapshot of a catalog as (id, time), asked of the catalog database itself (SQLite file or
    PostgreSQL schema of the project's branch); None when it cannot be told cheaply (a DuckDB-file catalog, no
    catalog yet, an error): then nothing is cached. The time tells apart two catalogs with the same snapshot id and
    other contents (a branch deleted and made again under its name: its own snapshot N and main's N)."""

    def __init__(self, project: Project) -> None:
        self.project = project
        self.kind: str | None = None  # told on first use: an unset ${VAR} is reported where the lake is opened
        self._pg: Any = None
        self._file: str | None = None
        self._sqlite_conns: dict[int, tuple[sqlite3.Connection, int]] = {}
        self._lock = threading.Lock()

    def __call__(self) -> tuple[int, str] | None:
        try:
            if self.kind is None:
                self.kind = catalog_kind(self.project.config.lake.catalog)
            if self.kind == "sqlite":
                return self._sqlite()
            if self.kind == "postgres":
                return self._postgres()
        except Exception:  # never fail a read over the probe: read without the cache
            self.close()
        return None

    def _sqlite(self) -> tuple[int, str] | None:
        """On a read-only connection kept per thread (opening one costs more than the query); opened again when the
        file is another (a branch made again is a new file under the same name)."""
        if self._file is None:
            file = catalog_file(self.project)
            if file is None:
                return None
            self._file = str(file.resolve())
        try:
            ino = os.stat(self._file).st_ino
        except FileNotFoundError:
            return None
        me = threading.get_ident()
        with self._lock:
            held = self._sqlite_conns.get(me)
        if held is None or held[1] != ino:
            if held is not None:
                held[0].close()
            conn = sqlite3.connect(f"{Path(self._file).as_uri()}?mode=ro", uri=True, timeout=5,
                                   check_same_thread=False)
            held = (conn, ino)
            with self._lock:
                self._sqlite_conns[me] = held
        row = held[0].execute(LATEST).fetchone()
        return (int(row[0]), str(row[1])) if row else None

    def _postgres(self) -> tuple[int, str] | None:
        import psycopg

        with self._lock:
            if self._pg is None or self._pg.closed:
                dsn = attach_target(self.project, create=False)[0][len("ducklake:postgres:"):]
                self._pg = psycopg.connect(dsn, connect_timeout=5, autocommit=True)
            branch = branch_of(self.project)
            schema = branch_schema(branch) if branch else None
            table = f'"{schema}".ducklake_snapshot' if schema else "ducklake_snapshot"
            row = self._pg.execute(LATEST.replace("ducklake_snapshot", table)).fetchone()
        return (int(row[0]), str(row[1])) if row else None

    def close(self) -> None:
        with self._lock:
            for conn, _ in self._sqlite_conns.values():
                conn.close()
            self._sqlite_conns.clear()
            if self._pg is not None:
                try:
                    self._pg.close()
                finally:
                    self._pg = None


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
        self.pages = PageCache()
        self.head = HeadProbe(project)

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
        self.pages.clear()
        self.head.close()
        for cur in self._idle:
            cur.close()
        self._idle.clear()
        self._generation += 1
        self._relations = None
        if self._con is not None:
            self._con.close()
            self._con = None
        self._empty = False
