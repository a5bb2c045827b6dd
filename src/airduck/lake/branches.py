"""Branches of the lake: a branch is a DuckLake catalog of its own (a copy of the SQLite file, or a copy of the
PostgreSQL metadata schema) sharing the lake's data path. See docs/branches.md for the design and invariants.

Creating a branch copies metadata only. Diff and merge read the branch's change feed since its fork; a merge is one
DuckLake transaction on the target. Maintenance keeps every file another catalog still references
(`protected_files`)."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
import sqlite3
import threading
import zlib
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb

from airduck.errors import ConfigError, NotFound, Terminal
from airduck.lake.commit import author, write
from airduck.lake.connection import (
    LAKE,
    MAIN_BRANCH,
    attach_statement,
    attach_target,
    branch_file,
    branch_of,
    branch_schema,
    catalog_kind,
    data_path,
    main_catalog_file,
    open_lake,
    quote_ident,
    quote_literal,
)
from airduck.text import is_id

if TYPE_CHECKING:
    from airduck.config.project import Project

REGISTRY = "airduck_branches"
SOURCE = "branch_src"
#: at most 48 characters: a PostgreSQL catalog's branch is a schema named BRANCH_SCHEMA_PREFIX + NAME, and
#: PostgreSQL cuts names at 63 bytes
_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,47}$")
#: airduck's own state tables: merged row by row even when both sides changed them (different rows), see merge
STATE_SCHEMA = "airduck"
#: dbt's scratch schema: never merged (gold publishes into `gold`)
SKIPPED_SCHEMAS = ("gold_stage",)
#: tables never merged: airduck's tags name snapshot ids of their own catalog (another snapshot on the target)
SKIPPED_TABLES = ("airduck.tags",)
#: the kinds of snapshot changes that change a table's rows or schema (compaction and flushes do not)
_DATA_CHANGES = ("tables_inserted_into", "tables_deleted_from", "tables_altered", "inlined_insert", "inlined_delete")


class BranchError(Terminal):
    """A branch operation that cannot be done as asked."""


class BranchExists(BranchError):
    """A branch of that name exists already (or another create of it just made it)."""


def _exists(name: str) -> BranchExists:
    return BranchExists(f"branch {name!r} already exists",
                        hint=f"`airduck branch delete {name}` first, or choose another name")


class MergeConflict(BranchError):
    """Tables changed on both sides since the fork: nothing was merged."""

    def __init__(self, message: str, tables: list[str], hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.tables = tables


class ProtectedBranch(BranchError):
    """A write to a protected branch other than a merge."""


def _failpoint(name: str) -> None:
    from airduck.core.failpoints import failpoint

    failpoint(name)


@dataclass
class Branch:
    name: str
    base: str
    #: the base's snapshot the branch forked from (after a merge: the base's merge commit)
    base_snapshot: int
    #: the branch's own snapshot at the fork (changes after it are the branch's)
    fork_snapshot: int
    created_at: datetime
    created_by: str
    location: str
    head_snapshot: int | None = None
    tables_changed: list[str] = field(default_factory=list)
    #: tables merged before: their row ids on the two sides differ, so a later merge copies them whole
    merged_tables: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["created_at"] = self.created_at.isoformat()
        return d


def check_name(name: str) -> str:
    if name == MAIN_BRANCH or not _NAME.match(name or ""):
        raise BranchError(f"{name!r} is not a branch name" + (" (main is the lake itself)" if name == MAIN_BRANCH
                                                              else ""),
                          hint="lower case letters, digits, '-' and '_', at most 48 characters, e.g. fix-prices")
    return name


def on(project: Project, branch: str | None) -> Project:
    """A copy of `project` that reads and writes `branch` (None or 'main': main)."""
    return dataclasses.replace(project, branch=None if branch in (None, MAIN_BRANCH) else branch)


# -- the catalog databases ----------------------------------------------------------------------
def _kind(project: Project) -> str:
    kind = catalog_kind(project.config.lake.catalog)
    if kind not in ("sqlite", "postgres"):
        raise ConfigError("branches need a SQLite or PostgreSQL catalog (lake.catalog), not a DuckDB file")
    return kind


def _dsn(project: Project) -> str:
    target = attach_target(on(project, None), create=False)[0]
    return target[len("ducklake:postgres:"):]


@contextlib.contextmanager
def _pg(project: Project) -> Iterator[Any]:
    import psycopg

    with psycopg.connect(_dsn(project), connect_timeout=10) as conn:
        yield conn


def _main_schema(conn: Any) -> str:
    return str(conn.execute("SELECT current_schema()").fetchone()[0])


@contextlib.contextmanager
def _registry(project: Project) -> Iterator[tuple[Any, str]]:
    """A connection to main's catalog database with the registry table, and the parameter style ('?' or '%s')."""
    ddl = (f"CREATE TABLE IF NOT EXISTS {REGISTRY} (name TEXT PRIMARY KEY, base TEXT NOT NULL, "
           "base_snapshot BIGINT NOT NULL, fork_snapshot BIGINT NOT NULL, created_at TEXT NOT NULL, "
           "created_by TEXT NOT NULL, location TEXT NOT NULL, merged_tables TEXT NOT NULL DEFAULT '[]')")
    if _kind(project) == "sqlite":
        file = main_catalog_file(project)
        assert file is not None
        if not file.exists():
            raise NotFound("the lake has no catalog yet, so no branches", hint="`airduck run` creates it")
        conn = sqlite3.connect(file, timeout=30)
        try:
            conn.execute(ddl)
            yield conn, "?"
            conn.commit()
        finally:
            conn.close()
    else:
        import psycopg

        with _pg(project) as conn:
            try:
                conn.execute(ddl)
            except (psycopg.errors.UniqueViolation, psycopg.errors.DuplicateTable):
                conn.rollback()  # another session created the table at the same moment: it is there now
            yield conn, "%s"


def _row_to_branch(row: tuple) -> Branch:
    name, base, base_snap, fork_snap, created_at, created_by, location, merged = row
    return Branch(name, base, int(base_snap), int(fork_snap), datetime.fromisoformat(created_at), created_by,
                  location, merged_tables=json.loads(merged or "[]"))


def get(project: Project, name: str) -> Branch:
    with _registry(project) as (conn, p):
        row = conn.execute(f"SELECT * FROM {REGISTRY} WHERE name = {p}", [name]).fetchone()
    if row is None:
        raise NotFound(f"there is no branch {name!r}", hint="see `airduck branch list`")
    return _row_to_branch(row)


def _branchable(project: Project) -> bool:
    """Whether the lake's catalog can have branches (SQLite or PostgreSQL; a DuckDB file has none)."""
    return catalog_kind(project.config.lake.catalog) in ("sqlite", "postgres")


def names(project: Project) -> list[str]:
    """The names of every branch (not main); none when the lake has no catalog yet or cannot have branches."""
    if not _branchable(project):
        return []
    try:
        with _registry(project) as (conn, _):
            return [r[0] for r in conn.execute(f"SELECT name FROM {REGISTRY} ORDER BY name").fetchall()]
    except NotFound:
        return []


def _snapshot_changes(project: Project, branch: str | None, after: int) -> tuple[int, list[tuple[int, str]]]:
    """The head snapshot of a catalog and the (snapshot id, changes_made) of its snapshots after `after`."""
    if _kind(project) == "sqlite":
        file = main_catalog_file(project) if branch is None else branch_file(project, branch)
        conn = sqlite3.connect(file, timeout=30)
        try:
            head = conn.execute("SELECT max(snapshot_id) FROM ducklake_snapshot").fetchone()[0]
            rows = conn.execute("SELECT snapshot_id, changes_made FROM ducklake_snapshot_changes "
                                "WHERE snapshot_id > ? ORDER BY 1", [after]).fetchall()
        finally:
            conn.close()
    else:
        with _pg(project) as conn:
            schema = _main_schema(conn) if branch is None else branch_schema(branch)
            head = conn.execute(f"SELECT max(snapshot_id) FROM {quote_ident(schema)}.ducklake_snapshot").fetchone()[0]
            rows = conn.execute(f"SELECT snapshot_id, changes_made FROM {quote_ident(schema)}."
                                "ducklake_snapshot_changes WHERE snapshot_id > %s ORDER BY 1", [after]).fetchall()
    return int(head), [(int(a), str(b or "")) for a, b in rows]


def head_snapshot(project: Project, name: str | None) -> int:
    """The head snapshot of branch `name`'s catalog (None: main's)."""
    return _snapshot_changes(project, name, 2**62)[0]


def registered(project: Project) -> list[Branch]:
    """Every branch as the registry holds it (name, base, fork; no head or changes: no branch catalog is opened);
    none when the lake has no catalog yet or cannot have branches (a DuckDB-file catalog)."""
    if not _branchable(project):
        return []
    try:
        with _registry(project) as (conn, _):
            rows = conn.execute(f"SELECT * FROM {REGISTRY} ORDER BY name").fetchall()
    except NotFound:
        return []
    return [_row_to_branch(row) for row in rows]


def needed_since(project: Project) -> int | None:
    """The oldest snapshot of the project's own catalog (main or its branch) that a merge still reads: a branch's
    own snapshots from its fork on (its change feed) and, of a branch's base, the snapshots from the branch's
    `base_snapshot` on (what the base changed since: conflicts). Maintenance must not expire them; None when no
    branch needs any."""
    mine = branch_of(project) or MAIN_BRANCH
    keep = [b.fork_snapshot if b.name == mine else b.base_snapshot
            for b in registered(project) if mine in (b.name, b.base)]
    return min(keep) if keep else None


def list_branches(project: Project) -> list[Branch]:
    """Every branch with its head snapshot and the number of tables it changed since its fork."""
    out = []
    for b in registered(project):
        try:
            b.head_snapshot, changes = _snapshot_changes(project, b.name, b.fork_snapshot)
        except Exception:  # a catalog copy gone missing: still listed (delete it)
            continue
        ids = set()
        for _, made in changes:
            for part in made.split(","):
                kind, _, value = part.partition(":")
                if any(k in kind for k in ("inserted", "deleted", "altered", "created_table", "dropped_table")):
                    ids.add(value)
        b.tables_changed = sorted(ids)
        out.append(b)
    return out


# -- create and delete -----------------------------------------------------------------------------
def create(project: Project, name: str, source: str | None = None) -> Branch:
    """Create branch `name` as a copy of the catalog of `source`: metadata only. `source` is main or a branch (its
    head), or a past snapshot: a tag or snapshot id of main (`v1`, `12`) or of a branch (`dev@v1`, `dev@12`,
    `main@12`). A copy forked at a past snapshot is cut back to it (`_cut`)."""
    check_name(name)
    kind = _kind(project)
    base, at = _parse_source(project, source or MAIN_BRANCH)
    with _creating(project, kind, name):
        with _registry(project) as (conn, p):
            if conn.execute(f"SELECT 1 FROM {REGISTRY} WHERE name = {p}", [name]).fetchone():
                raise _exists(name)
        _copy(project, kind, name, base, at)
    return get(project, name)


@contextlib.contextmanager
def _creating(project: Project, kind: str, name: str) -> Iterator[None]:
    """Hold the lock of creating branch `name` (threads, processes; on PostgreSQL machines too) from the check that
    the name is free to its registry row: a second create of the name waits, then finds it taken (BranchExists),
    and never copies a catalog over the first one's. SQLite: an exclusive `flock` on a file beside the branch's
    catalog; PostgreSQL: a session advisory lock in the catalog database, keyed by the branch's schema (two names
    of one schema wait for each other too). Both are released if the process dies."""
    if kind == "sqlite":
        import fcntl

        file = branch_file(project, name)  # in a folder of their own: the branches folder holds catalogs only
        lock = file.parent / ".locks" / f"{file.stem}.lock"
        lock.parent.mkdir(parents=True, exist_ok=True)
        with open(lock, "a+") as handle:  # each open() is its own flock: threads wait too
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)
        return
    keys = [_lock_key("airduck:branch-create"), _lock_key(branch_schema(name))]
    with _pg(project) as conn:  # a session of its own: the lock spans the copy's transaction
        conn.autocommit = True
        conn.execute("SELECT pg_advisory_lock(%s, %s)", keys)
        try:
            yield
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s, %s)", keys)


def _lock_key(text: str) -> int:
    """A signed 32-bit key of `text` for pg_advisory_lock(int, int)."""
    value = zlib.crc32(text.encode())
    return value - 2**32 if value >= 2**31 else value


def _copy(project: Project, kind: str, name: str, base: str, at: int | None) -> None:
    """Make branch `name`: copy the catalog of `base` (cut back to snapshot `at`), and add its registry row."""
    if kind == "sqlite":
        src = main_catalog_file(project) if base == MAIN_BRANCH else branch_file(project, base)
        if not src.exists():  # sqlite3.connect would make it, empty
            raise NotFound(f"there is no branch {base!r} to fork: its catalog {src} is gone",
                           hint=f"`airduck branch delete {base}` removes its entry")
        dest = branch_file(project, name)
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_suffix(f".tmp{os.getpid()}-{threading.get_ident()}")
        try:
            with contextlib.closing(sqlite3.connect(src, timeout=30)) as a, \
                    contextlib.closing(sqlite3.connect(tmp)) as b:
                a.backup(b)  # a consistent copy while others write
                b.execute(f"DROP TABLE IF EXISTS {REGISTRY}")
                fork = _fork_at(b, "", base, at, _sqlite_tables(b))
                b.commit()
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        os.replace(tmp, dest)
        location = str(dest)
        with _registry(project) as (conn, p):
            conn.execute(f"INSERT INTO {REGISTRY} VALUES ({', '.join([p] * 8)})",
                         [name, base, fork, fork, datetime.now(UTC).isoformat(), author(), location, "[]"])
    else:
        with _pg(project) as conn:
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            main = _main_schema(conn)
            src_schema = main if base == MAIN_BRANCH else branch_schema(base)
            schema = branch_schema(name)
            same = [n for n in names(project) if branch_schema(n) == schema]
            if same:  # '-' is '_' in a schema's name
                raise BranchError(f"branch {name!r} would be the same PostgreSQL schema as branch {same[0]!r}",
                                  hint="choose another name")
            tables = [r[0] for r in conn.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = %s AND table_name LIKE "
                "'ducklake%%' AND table_type = 'BASE TABLE'", [src_schema]).fetchall()]
            conn.execute(f"CREATE SCHEMA {quote_ident(schema)}")
            for t in tables:
                conn.execute(f"CREATE TABLE {quote_ident(schema)}.{quote_ident(t)} "
                             f"(LIKE {quote_ident(src_schema)}.{quote_ident(t)} INCLUDING ALL)")
                conn.execute(f"INSERT INTO {quote_ident(schema)}.{quote_ident(t)} "
                             f"SELECT * FROM {quote_ident(src_schema)}.{quote_ident(t)}")
            fork = _fork_at(conn, quote_ident(schema) + ".", base, at, _pg_tables(conn, schema))
            conn.execute(f"CREATE TABLE IF NOT EXISTS {quote_ident(main)}.{REGISTRY} (name TEXT PRIMARY KEY, "
                         "base TEXT NOT NULL, base_snapshot BIGINT NOT NULL, fork_snapshot BIGINT NOT NULL, "
                         "created_at TEXT NOT NULL, created_by TEXT NOT NULL, location TEXT NOT NULL, "
                         "merged_tables TEXT NOT NULL DEFAULT '[]')")
            conn.execute(f"INSERT INTO {quote_ident(main)}.{REGISTRY} VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
                         [name, base, fork, fork, datetime.now(UTC).isoformat(), author(), schema, "[]"])
            conn.commit()  # the copy (cut back) and its registry row: one transaction


def _parse_source(project: Project, source: str) -> tuple[str, int | None]:
    """`--from` as (the catalog to copy: main or a branch, the snapshot of it to fork at: None for its head).
    A name of a branch (or main) is that branch's head; `BRANCH@REF` and a bare REF (of main) are a snapshot id or a
    tag of that catalog. Branch and tag names hold no '@', so the split is unambiguous; a branch named like a
    snapshot id or a tag wins over it (`main@REF` names main's)."""
    base, sep, ref = source.partition("@")
    known = names(project)
    if not sep:
        if source == MAIN_BRANCH or source in known:
            return source, None
        base, ref = MAIN_BRANCH, source
    if base != MAIN_BRANCH and base not in known:
        raise NotFound(f"there is no branch {base!r} to fork", hint="see `airduck branch list`")
    if not ref:
        raise BranchError(f"`--from {source}` names no snapshot", hint=f"e.g. --from {base}@v1 or --from {base}@12")
    return base, _resolve_ref(project, base, ref, bare=not sep)


def _resolve_ref(project: Project, base: str, ref: str, *, bare: bool) -> int:
    """The snapshot id a tag or snapshot id `ref` of catalog `base` names; BranchError when it names none or when
    `base` has expired it (its catalog no longer holds that snapshot: it cannot be read back)."""
    from airduck.lake.catalog import current_snapshot
    from airduck.lake.history import tags

    with contextlib.closing(open_lake(on(project, base), read_only=True)) as con:
        head = current_snapshot(con)
        kept = {int(r[0]) for r in con.execute(f"SELECT snapshot_id FROM {LAKE}.snapshots()").fetchall()}
        found = {t.name: t.snapshot_id for t in tags(con)}
    if is_id(ref):
        snapshot = int(ref)
    elif ref in found:
        snapshot = int(found[ref])
    else:
        what = "a branch, a tag nor a snapshot id of main" if bare else f"a tag nor a snapshot id of {base}"
        raise BranchError(f"cannot fork from {ref!r}: it is neither {what}",
                          hint=f"see `airduck branch list` and `airduck tag --list{'' if bare else ' --branch ' + base}`"
                               f"; `--from` takes main, a branch, TAG, SNAPSHOT or BRANCH@TAG|SNAPSHOT")
    if snapshot > head:
        raise BranchError(f"cannot fork from snapshot {snapshot} of {base}: its last snapshot is {head}",
                          hint=f"see `airduck snapshots{'' if base == MAIN_BRANCH else ' --branch ' + base}`")
    if snapshot not in kept:
        raise BranchError(f"cannot fork from snapshot {snapshot} of {base}: maintenance has expired it (its files may "
                          "be gone), so it cannot be read back", hint="fork a snapshot still listed by `airduck "
                          "snapshots`; tag a snapshot (`airduck tag NAME --snapshot ID`) to keep it from expiring")
    return snapshot


def _sqlite_tables(conn: Any) -> dict[str, set[str]]:
    """The columns of each DuckLake table of a SQLite catalog."""
    out = {}
    for (t,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE 'ducklake%'"):
        out[t] = {r[1] for r in conn.execute(f"PRAGMA table_info({quote_ident(t)})").fetchall()}
    return out


def _pg_tables(conn: Any, schema: str) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for t, c in conn.execute("SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = %s "
                             "AND table_name LIKE 'ducklake%%'", [schema]).fetchall():
        out.setdefault(t, set()).add(c)
    return out


def _fork_at(conn: Any, s: str, base: str, at: int | None, tables: dict[str, set[str]]) -> int:
    """The fork snapshot of a fresh catalog copy (schema prefix `s`: '' for SQLite); with `at`, the copy is first cut
    back to snapshot `at` of `base` (`_cut`)."""
    head = int(conn.execute(f"SELECT max(snapshot_id) FROM {s}ducklake_snapshot").fetchone()[0])
    if at is None or at == head:
        return head
    if not conn.execute(f"SELECT 1 FROM {s}ducklake_snapshot WHERE snapshot_id = {int(at)}").fetchone():
        raise BranchError(f"cannot fork from snapshot {at} of {base}: maintenance has just expired it",
                          hint="fork a snapshot still listed by `airduck snapshots`")
    _cut(conn, s, int(at), tables, base)
    return int(at)


#: DuckLake's tables of rows that belong to something a versioned row names (their key, its table, its column)
_DEPENDENT = (("ducklake_file_column_stats", "data_file_id", "ducklake_data_file"),
              ("ducklake_file_partition_value", "data_file_id", "ducklake_data_file"),
              ("ducklake_file_variant_stats", "data_file_id", "ducklake_data_file"),
              ("ducklake_partition_column", "partition_id", "ducklake_partition_info"),
              ("ducklake_sort_expression", "sort_id", "ducklake_sort_info"),
              ("ducklake_macro_impl", "macro_id", "ducklake_macro"),
              ("ducklake_macro_parameters", "macro_id", "ducklake_macro"),
              ("ducklake_table_stats", "table_id", "ducklake_table"),
              ("ducklake_table_column_stats", "table_id", "ducklake_table"))


def _cut(conn: Any, s: str, at: int, tables: dict[str, set[str]], base: str) -> None:
    """Make a catalog copy (schema prefix `s`) what its catalog was at snapshot `at`, in the copy's open transaction.

    Versioned rows (`begin_snapshot` / `end_snapshot`: schemas, tables, columns, views, macros, data and delete files,
    partitioning, sort keys, tags, inlined rows and inlined deletes, schema versions) begun after `at` are removed
    and those ended after it are live again; snapshots and their changes after `at` are removed; rows that belong to
    a removed row (file statistics, partition values, ...) go with it; inlined-data tables of later schema versions
    are dropped (the branch may reach those version numbers itself). What DuckLake keeps unversioned stays the
    head's: the id counters (`next_catalog_id`, `next_file_id`, set on snapshot `at`) and `ducklake_table_stats` /
    `ducklake_table_column_stats` (`next_row_id`, so ids made on the branch never collide with those made after
    `at`; the record count and min/max, which only grow: an estimate and conservative bounds, which DuckLake then
    does not take as exact for MIN/MAX, see docs/branches.md). A file live at `at` that holds rows of later snapshots
    (maintenance merged or flushed them into it after `at`) cannot be cut: BranchError."""
    partial = [t for t in ("ducklake_data_file", "ducklake_delete_file") if "partial_max" in tables.get(t, ())]
    for t in partial:
        n = conn.execute(f"SELECT count(*) FROM {s}{t} WHERE begin_snapshot <= {at} AND (end_snapshot IS NULL OR "
                         f"end_snapshot > {at}) AND partial_max > {at}").fetchone()[0]
        if n:
            raise BranchError(f"cannot fork from snapshot {at} of {base}: maintenance (merging files or flushing "
                              f"inlined rows) has since written {n} file(s) that hold rows of snapshot {at} together "
                              "with later ones, and a branch cannot leave the later rows out",
                              hint=f"fork {base} and roll the tables back on the branch: `airduck branch create NAME "
                                   f"--from {base}` and `airduck rollback TABLE --to {at} --branch NAME`")
    counters = conn.execute(f"SELECT next_catalog_id, next_file_id FROM {s}ducklake_snapshot "
                            f"WHERE snapshot_id = (SELECT max(snapshot_id) FROM {s}ducklake_snapshot)").fetchone()
    version = int(conn.execute(f"SELECT schema_version FROM {s}ducklake_snapshot WHERE snapshot_id = {at}"
                               ).fetchone()[0])
    for t, cols in sorted(tables.items()):
        if "snapshot_id" in cols and t in ("ducklake_snapshot", "ducklake_snapshot_changes"):
            conn.execute(f"DELETE FROM {s}{t} WHERE snapshot_id > {at}")
        if "begin_snapshot" in cols:
            conn.execute(f"DELETE FROM {s}{quote_ident(t)} WHERE begin_snapshot > {at}")
        if "end_snapshot" in cols:
            conn.execute(f"UPDATE {s}{quote_ident(t)} SET end_snapshot = NULL WHERE end_snapshot > {at}")
    conn.execute(f"UPDATE {s}ducklake_snapshot SET next_catalog_id = {int(counters[0])}, "
                 f"next_file_id = {int(counters[1])} WHERE snapshot_id = {at}")
    if "ducklake_inlined_data_tables" in tables:
        later = conn.execute(f"SELECT table_name FROM {s}ducklake_inlined_data_tables WHERE schema_version > {version} "
                             f"OR table_id NOT IN (SELECT table_id FROM {s}ducklake_table)").fetchall()
        for (t,) in later:
            conn.execute(f"DROP TABLE IF EXISTS {s}{quote_ident(t)}")
        conn.execute(f"DELETE FROM {s}ducklake_inlined_data_tables WHERE schema_version > {version} "
                     f"OR table_id NOT IN (SELECT table_id FROM {s}ducklake_table)")
    for t, key, owner in _DEPENDENT:
        if t in tables and owner in tables:
            conn.execute(f"DELETE FROM {s}{t} WHERE {key} NOT IN (SELECT {key} FROM {s}{owner})")


def delete(project: Project, name: str) -> list[str]:
    """Delete a branch: its catalog, its registry row, and the data files no other catalog references.
    Returns the files deleted."""
    b = get(project, name)
    own = _catalog_files(project, name)
    others = set()
    for other in [None, *[n for n in names(project) if n != name]]:
        others |= _catalog_files(project, other)
    if _kind(project) == "sqlite":
        with _registry(project) as (conn, p):
            conn.execute(f"DELETE FROM {REGISTRY} WHERE name = {p}", [name])
        with contextlib.suppress(FileNotFoundError):
            Path(b.location).unlink()
    else:
        with _pg(project) as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS {quote_ident(branch_schema(name))} CASCADE")
            conn.execute(f"DELETE FROM {quote_ident(_main_schema(conn))}.{REGISTRY} WHERE name = %s", [name])
            conn.commit()
    return _delete_files(project, own - others)


# -- files of every catalog -------------------------------------------------------------------------
def _file_name(path: str) -> str:
    return path.replace("\\", "/").rsplit("/", 1)[-1]


_FILES_SQL = "SELECT path FROM {s}ducklake_data_file UNION ALL SELECT path FROM {s}ducklake_delete_file"
_SCHEDULED_SQL = " UNION ALL SELECT path FROM {s}ducklake_files_scheduled_for_deletion"


def _catalog_files(project: Project, branch: str | None, *, scheduled: bool = True) -> set[str]:
    """The names of every file one catalog (main: None) references (in any snapshot it keeps) or, with `scheduled`,
    still schedules for deletion. DuckLake names its files with UUIDs: a file's name identifies it across catalogs."""
    sql = _FILES_SQL + (_SCHEDULED_SQL if scheduled else "")
    if _kind(project) == "sqlite":
        file = main_catalog_file(project) if branch is None else branch_file(project, branch)
        if file is None or not file.exists():
            return set()
        with contextlib.closing(sqlite3.connect(file, timeout=30)) as conn:
            rows = conn.execute(sql.format(s="")).fetchall()
    else:
        with _pg(project) as conn:
            schema = _main_schema(conn) if branch is None else branch_schema(branch)
            rows = conn.execute(sql.format(s=quote_ident(schema) + ".")).fetchall()
    return {_file_name(r[0]) for r in rows}


def protected_files(project: Project) -> set[str]:
    """The names of the files that catalogs other than the project's own (main and every branch) reference: the
    project's maintenance must not delete them. Empty when there are no branches."""
    branches = names(project)
    if not branches:
        return set()
    mine = branch_of(project)
    out: set[str] = set()
    for other in [None, *branches]:
        if other != mine:
            out |= _catalog_files(project, other, scheduled=False)
    return out


def unschedule(project: Project, files: set[str]) -> int:
    """Take the files named `files` off the list of files to delete (`ducklake_files_scheduled_for_deletion`) of the
    project's own catalog, so its cleanup leaves them to the last catalog that drops them. Written straight to the
    catalog database: the same DELETE through DuckDB's attached SQLite catalog fails to commit ("database is
    locked"). Returns how many were taken off."""
    if not files:
        return 0
    mine = branch_of(project)
    table = "ducklake_files_scheduled_for_deletion"
    if _kind(project) == "sqlite":
        with contextlib.closing(sqlite3.connect(main_catalog_file(project) if mine is None
                                                else branch_file(project, mine), timeout=30)) as conn:
            paths = [r[0] for r in conn.execute(f"SELECT path FROM {table}").fetchall() if _file_name(r[0]) in files]
            conn.executemany(f"DELETE FROM {table} WHERE path = ?", [[p] for p in paths])
            conn.commit()
    else:
        with _pg(project) as conn:
            t = f"{quote_ident(_main_schema(conn) if mine is None else branch_schema(mine))}.{table}"
            paths = [r[0] for r in conn.execute(f"SELECT path FROM {t}").fetchall() if _file_name(r[0]) in files]
            if paths:
                conn.execute(f"DELETE FROM {t} WHERE path = ANY(%s)", [paths])
            conn.commit()
    return len(paths)


def _delete_files(project: Project, files: set[str]) -> list[str]:
    if not files:
        return []
    from airduck.lake.connection import storage_settings
    from airduck.storage import open_store

    store = open_store(data_path(project), storage_settings(project), base_dir=project.root)
    deleted = []
    for info in store.list():
        if _file_name(info.key) in files:
            store.delete(info.key)
            deleted.append(info.key)
    return deleted


def unreferenced_files(project: Project, older_than: datetime) -> list[str]:
    """Keys of the data path no catalog (main, any branch) references, last written before `older_than`."""
    from airduck.lake.connection import storage_settings
    from airduck.storage import open_store

    known: set[str] = set()
    for other in [None, *names(project)]:
        known |= _catalog_files(project, other)
    store = open_store(data_path(project), storage_settings(project), base_dir=project.root)
    out = []
    for info in store.list():
        modified = getattr(info, "last_modified", None) or getattr(info, "modified", None)
        if _file_name(info.key) in known or not info.key.endswith(".parquet"):
            continue
        if modified is not None and modified.tzinfo is None:
            modified = modified.replace(tzinfo=UTC)
        if modified is None or modified < older_than:
            out.append(info.key)
    return out


def delete_keys(project: Project, keys: list[str]) -> None:
    from airduck.lake.connection import storage_settings
    from airduck.storage import open_store

    store = open_store(data_path(project), storage_settings(project), base_dir=project.root)
    for key in keys:
        store.delete(key)


# -- diff and merge -------------------------------------------------------------------------------
@dataclass
class TableDiff:
    table: str
    change: str  # rows | created | dropped | replaced | schema
    inserted: int = 0
    deleted: int = 0
    updated: int = 0
    columns_before: list[str] = field(default_factory=list)
    columns_after: list[str] = field(default_factory=list)
    sample: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Diff:
    base: str
    branch: str
    fork_snapshot: int
    head_snapshot: int
    base_snapshot: int
    tables: list[TableDiff]
    #: tables changed on the base since the fork too (a merge refuses them)
    conflicts: list[str]

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["tables"] = [t.to_dict() for t in self.tables]
        return d


@dataclass
class MergeResult:
    branch: str
    into: str
    snapshot_id: int | None
    tables: list[TableDiff]
    dry_run: bool = False
    #: the branch had been merged before (a retried merge, see pipeline.atomic.publish): nothing was written now
    already: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"branch": self.branch, "into": self.into, "snapshot_id": self.snapshot_id, "dry_run": self.dry_run,
                "already": self.already, "tables": [t.to_dict() for t in self.tables]}


def _metadata(alias: str) -> str:
    return f"__ducklake_metadata_{alias}"


def _changed_names(con: duckdb.DuckDBPyConnection, alias: str, after: int, *, moved: bool = False) -> set[str]:
    """schema.table of every table whose rows or schema changed in catalog `alias` after snapshot `after`; with
    `moved`, instead, of every table whose rows maintenance moved to other files without changing them (flushed
    inlined rows, merged or rewritten files: any change of a table id that is not one of `_DATA_CHANGES`)."""
    m = _metadata(alias)
    id_names = dict(con.execute(
        f"SELECT t.table_id, s.schema_name || '.' || t.table_name FROM {m}.ducklake_table t "
        f"JOIN {m}.ducklake_schema s USING (schema_id)").fetchall())
    out: set[str] = set()
    for (changes,) in con.execute(f"SELECT changes FROM {quote_ident(alias)}.snapshots() WHERE snapshot_id > ?",
                                  [after]).fetchall():
        for kind, values in (changes or {}).items():
            if moved:
                if kind not in _DATA_CHANGES and kind not in ("tables_created", "tables_dropped"):
                    out |= {id_names.get(int(v), str(v)) for v in values if str(v).isdigit()}
            elif kind in ("tables_created", "tables_dropped"):  # names, or (dropped) table ids
                out |= {id_names.get(int(v), str(v)) if str(v).isdigit() else v.replace('"', "") for v in values}
            elif kind in _DATA_CHANGES:
                out |= {id_names.get(int(v), str(v)) for v in values if str(v).isdigit()}
    # a table id the catalog no longer names (expired) cannot be told apart: left out; names are schema.table
    return {t for t in out if "." in t and t.split(".", 1)[0] not in SKIPPED_SCHEMAS and t not in SKIPPED_TABLES}


def _table_at(con: duckdb.DuckDBPyConnection, alias: str, table: str, snapshot: int) -> int | None:
    schema, name = table.split(".", 1)
    m = _metadata(alias)
    row = con.execute(
        f"SELECT t.table_id FROM {m}.ducklake_table t JOIN {m}.ducklake_schema s USING (schema_id) "
        "WHERE s.schema_name = ? AND t.table_name = ? AND t.begin_snapshot <= ? "
        "AND (t.end_snapshot IS NULL OR t.end_snapshot > ?) AND s.begin_snapshot <= ? "
        "AND (s.end_snapshot IS NULL OR s.end_snapshot > ?)", [schema, name, snapshot, snapshot, snapshot, snapshot]
    ).fetchone()
    return int(row[0]) if row else None


def _columns_at(con: duckdb.DuckDBPyConnection, alias: str, table_id: int, snapshot: int) -> list[str]:
    m = _metadata(alias)
    rows = con.execute(
        f"SELECT column_name, column_type FROM {m}.ducklake_column WHERE table_id = ? AND parent_column IS NULL "
        "AND begin_snapshot <= ? AND (end_snapshot IS NULL OR end_snapshot > ?) ORDER BY column_order",
        [table_id, snapshot, snapshot]).fetchall()
    return [f"{n}: {t}" for n, t in rows]


def _sql_table(alias: str, table: str) -> str:
    schema, name = table.split(".", 1)
    return f"{quote_ident(alias)}.{quote_ident(schema)}.{quote_ident(name)}"


def _open_pair(project: Project, branch: Branch, into: str) -> duckdb.DuckDBPyConnection:
    """A read-write connection to `into` (as `lake`) with `branch`'s catalog attached read-only (as SOURCE)."""
    con = open_lake(on(project, into))
    try:
        con.execute(attach_statement(on(project, branch.name), SOURCE, read_only=True))
        return con
    except BaseException:
        con.close()
        raise


def _plan(con: duckdb.DuckDBPyConnection, b: Branch, head: int, base_now: int,
          sample: int = 0, only: str | None = None, keys: dict[str, list[str]] | None = None) -> tuple[list[TableDiff], list[str], dict[str, str]]:
    """What merging `b` would do: per table a TableDiff, the conflicts, and how each table is merged
    ('rows', 'copy', 'drop')."""
    if not _kept_since(con, SOURCE, b.fork_snapshot, head):
        raise BranchError(f"branch {b.name!r} has expired snapshots since its fork (snapshot {b.fork_snapshot}): "
                          "what it changed can no longer be told", hint=f"fork {b.base} again and redo the change")
    theirs = _changed_names(con, SOURCE, b.fork_snapshot)
    moved = _changed_names(con, SOURCE, b.fork_snapshot, moved=True)
    # the base's snapshots since the fork name every table it changed, unless maintenance expired some of them
    known = _kept_since(con, LAKE, b.base_snapshot, base_now)
    ours = _changed_names(con, LAKE, b.base_snapshot) if base_now > b.base_snapshot and known else set()
    if only:
        theirs &= {only}
    conflicts = sorted(t for t in theirs & ours if t.split(".", 1)[0] != STATE_SCHEMA)
    diffs: list[TableDiff] = []
    how: dict[str, str] = {}
    for slot, table in enumerate(sorted(theirs)):
        fork_id = _table_at(con, SOURCE, table, b.fork_snapshot)
        head_id = _table_at(con, SOURCE, table, head)
        before = _columns_at(con, SOURCE, fork_id, b.fork_snapshot) if fork_id is not None else []
        after = _columns_at(con, SOURCE, head_id, head) if head_id is not None else []
        if head_id is None and fork_id is None:
            continue  # created and dropped on the branch
        if head_id is None:
            d, how[table] = TableDiff(table, "dropped", columns_before=before), "drop"
        elif fork_id is None or fork_id != head_id or before != after:
            kind = "created" if fork_id is None else ("replaced" if fork_id != head_id else "schema")
            d = TableDiff(table, kind, columns_before=before, columns_after=after)
            d.inserted = int(con.execute(f"SELECT count(*) FROM {_sql_table(SOURCE, table)}").fetchone()[0])
            how[table] = "copy"
        else:
            d = _row_diff(con, table, b.fork_snapshot, head, sample, (keys or {}).get(table), slot,
                          moved=table in moved)
            d.columns_before, d.columns_after = before, after
            how[table] = "rows"
            if table in ours and table.split(".", 1)[0] == STATE_SCHEMA:
                # airduck's own state: both sides may change it if they changed different rows
                if _rows_touched(con, table, b.base_snapshot, base_now, slot):
                    conflicts.append(table)
                how[table] = "rows"
        d.slot = slot  # type: ignore[attr-defined]  # where _row_diff keeps its rows for _apply
        if table in ours and how[table] != "rows" and table not in conflicts:
            conflicts.append(table)  # airduck's state created, replaced or dropped on both sides: never overwritten
        diffs.append(d)
    if not known:  # which tables the base changed cannot be told: each one the branch changed may be one
        conflicts = [d.table for d in diffs]
    return diffs, sorted(set(conflicts)), how


def _kept_since(con: duckdb.DuckDBPyConnection, alias: str, after: int, now: int) -> bool:
    """Whether catalog `alias` still holds each of its snapshots after `after` up to `now` (snapshot ids count up by
    one a commit): maintenance expiring one of them drops the record of what it changed."""
    n = con.execute(f"SELECT count(*) FROM {quote_ident(alias)}.snapshots() WHERE snapshot_id > ? AND snapshot_id <= ?",
                    [after, now]).fetchone()[0]
    return int(n) >= now - after


def _feed(fn: str, alias: str, table: str, start: int, end: int, columns: str = "*",
          files: list[str] | None = None) -> str:
    """A change feed of `table` over snapshots start..end; `files`: only rows of the data files of these names
    (a filter on DuckLake's `filename` that prunes the other files before one is opened)."""
    schema, name = table.split(".", 1)
    where = "" if files is None else f" WHERE parse_filename(filename) IN ({_literals(files or [''])})"
    return (f"SELECT rowid AS _airduck_rowid{', ' + columns if columns else ''} FROM {fn}({quote_literal(alias)}, "
            f"{quote_literal(schema)}, {quote_literal(name)}, CAST({int(start)} AS BIGINT), CAST({int(end)} AS BIGINT))"
            + where)


def _files_that_lost_rows(con: duckdb.DuckDBPyConnection, alias: str, table: str, after: int,
                          upto: int) -> list[str] | None:
    """The names of the files of `table` (catalog `alias`, its id at `upto`) that can have lost rows after snapshot
    `after`: data files with a delete file written, replaced or extended since (a delete file of DuckLake 1.5 may
    hold the deletions of several snapshots: `partial_max`), with deletions kept in the catalog since (inlined
    deletions), or dropped whole since; and the tables that keep inlined rows. The deletion feed lists only rows of
    those, but reads every file that has a delete file at all (DuckLake 1.5 does not bound the delete files by
    snapshot), so a table's history of deletions would cost every merge: `_feed(..., files=)` prunes the rest.
    None (no pruning) when the table cannot be told or there are more than `_PRUNE_FILES` such files."""
    m = _metadata(alias)
    table_id = _table_at(con, alias, table, upto)
    if table_id is None:
        return None
    args = [table_id, after, after, after]
    ids = {r[0] for r in con.execute(
        f"SELECT data_file_id FROM {m}.ducklake_delete_file WHERE table_id = ? AND (begin_snapshot > ? "
        "OR end_snapshot > ? OR partial_max > ?) UNION SELECT data_file_id FROM "
        f"{m}.ducklake_data_file WHERE table_id = ? AND end_snapshot > ?", [*args, table_id, after]).fetchall()}
    try:
        ids |= {r[0] for r in con.execute(f"SELECT DISTINCT file_id FROM {m}.ducklake_inlined_delete_{int(table_id)} "
                                          "WHERE begin_snapshot > ?", [after]).fetchall()}
    except duckdb.CatalogException:  # no deletion of this table was ever kept in the catalog
        pass
    if len(ids) > _PRUNE_FILES:
        return None
    names = [r[0] for r in con.execute(
        f"SELECT path FROM {m}.ducklake_data_file WHERE table_id = ? AND data_file_id IN "
        f"(SELECT unnest(?::BIGINT[]))", [table_id, sorted(ids)]).fetchall()] if ids else []
    return sorted({_file_name(p) for p in names} | set(_inlined_tables_of(con, alias, table_id)))


def _row_diff(con: duckdb.DuckDBPyConnection, table: str, fork: int, head: int, sample: int,
              key: list[str] | None = None, slot: int = 0, *, moved: bool = False) -> TableDiff:
    """The net change of a table on the branch since the fork, kept in temp tables (`_sets(slot)`): the row ids
    of rows that were there at the fork and are gone or replaced, and the files they were in (from the deletion
    feed: the files that lost rows are read, and of them only the row numbers; no old values), and the rows that
    are new at the head (the insertion feed, which reads only the files written since the fork, minus the row
    versions the deletion feed names: a row inserted and deleted again is not there; an updated row is there once,
    with its last values). Nothing scans the table: the work grows with the change. An update is a row id
    (DuckLake's UPDATE keeps it) or, with `key`, a key in both."""
    gone, new = _sets(slot)
    n_fork = _next_row_id(con, table, fork)
    shadowed = _shadowed(con, table, head)
    # the files that can have lost rows since the fork: no virtual `filename` to prune with when a column hides it
    lost = None if shadowed or moved else _files_that_lost_rows(con, SOURCE, table, fork, head)
    if moved:
        _row_diff_by_values(con, table, fork, head, slot)
    elif shadowed:
        _row_diff_by_row_id(con, table, fork, head, n_fork, slot)
    else:
        # a row version is (data file, row number), or, for a row DuckLake keeps inlined in the catalog (its
        # "file" is the inlined table, its row number the row id in every version), (row id, snapshot inserted)
        where = "filename AS _airduck_file, file_row_number AS _airduck_pos"
        dele = _feed("ducklake_table_deletions", SOURCE, table, fork + 1, head, where, lost)
        ins = _feed("ducklake_table_insertions", SOURCE, table, fork + 1, head, f"{where}, snapshot_id AS _airduck_snap, *")
        con.execute(f"CREATE OR REPLACE TEMP TABLE {gone}_all AS {dele}")
        at_fork = f"FROM temp.{gone}_all WHERE _airduck_rowid < {int(n_fork)}"
        con.execute(f"CREATE OR REPLACE TEMP TABLE {gone} AS SELECT DISTINCT _airduck_rowid {at_fork}")
        con.execute(f"CREATE OR REPLACE TEMP TABLE {gone}_files AS SELECT DISTINCT _airduck_file {at_fork}")
        inlined = _inlined_tables(con, table, head)
        rest = "EXCLUDE (_airduck_file, _airduck_pos, _airduck_snap)"
        files = (f"SELECT n.* {rest} FROM ({ins}) n ANTI JOIN temp.{gone}_all g "
                 "ON g._airduck_file = n._airduck_file AND g._airduck_pos = n._airduck_pos")
        if inlined:  # inlined versions: those live at the head, in the inlined tables of the branch's catalog
            live = " UNION ALL ".join(
                f"SELECT {quote_literal(t)} AS f, row_id AS r, begin_snapshot AS s FROM {_metadata(SOURCE)}."
                f"{quote_ident(t)} WHERE begin_snapshot <= {int(head)} AND (end_snapshot IS NULL OR end_snapshot > "
                f"{int(head)})" for t in inlined)
            files = (f"SELECT n.* {rest} FROM ({ins}) n WHERE CASE WHEN n._airduck_file IN ({_literals(inlined)}) "
                     f"THEN EXISTS (SELECT 1 FROM ({live}) l WHERE l.f = n._airduck_file AND l.r = n._airduck_rowid "
                     f"AND l.s = n._airduck_snap) ELSE NOT EXISTS (SELECT 1 FROM temp.{gone}_all g WHERE "
                     "g._airduck_file = n._airduck_file AND g._airduck_pos = n._airduck_pos) END")
        con.execute(f"CREATE OR REPLACE TEMP TABLE {new} AS {files}")
        con.execute(f"DROP TABLE temp.{gone}_all")
    if key:  # the keys of the rows that went: their old values, key columns only
        cols = ", ".join(quote_ident(k) for k in key)
        ident = "struct_pack(" + ", ".join(f"{quote_ident(k)} := {quote_ident(k)}" for k in key) + ")"
        if moved:
            old = (f"SELECT DISTINCT {ident} AS r FROM {_sql_table(SOURCE, table)} AT (VERSION => {int(fork)}) "
                   f"WHERE rowid IN (SELECT _airduck_rowid FROM temp.{gone})")
        else:
            feed = _feed("ducklake_table_deletions", SOURCE, table, fork + 1, head, cols, lost)
            old = f"SELECT DISTINCT {ident} AS r FROM ({feed}) WHERE _airduck_rowid < {int(n_fork)}"
        now = f"SELECT DISTINCT {ident} AS r FROM temp.{new}"
    else:
        old = f"SELECT _airduck_rowid AS r FROM temp.{gone}"
        now = f"SELECT _airduck_rowid AS r FROM temp.{new}"
    updated, inserted, deleted = con.execute(
        "SELECT count(*) FILTER (WHERE i.r IS NOT NULL AND d.r IS NOT NULL), count(*) FILTER (WHERE d.r IS NULL), "
        f"count(*) FILTER (WHERE i.r IS NULL) FROM ({now}) i FULL JOIN ({old}) d USING (r)").fetchone()
    d = TableDiff(table, "rows", int(inserted), int(deleted), int(updated))
    if sample:
        rel = con.sql(f"SELECT * EXCLUDE (_airduck_rowid) FROM temp.{new} LIMIT {int(sample)}")
        d.sample = [dict(zip(rel.columns, row, strict=True)) for row in rel.fetchall()]
    return d


#: DuckLake's virtual columns the change feed is read with; a table's own column of that name hides one
_VIRTUAL = ("filename", "file_row_number", "snapshot_id")


def _shadowed(con: duckdb.DuckDBPyConnection, table: str, head: int) -> bool:
    table_id = _table_at(con, SOURCE, table, head)
    return any(c.split(": ", 1)[0].lower() in _VIRTUAL for c in _columns_at(con, SOURCE, table_id, head))


def _inlined_tables(con: duckdb.DuckDBPyConnection, table: str, head: int) -> list[str]:
    """The names of the catalog tables in which the branch's catalog keeps inlined rows of `table`."""
    return _inlined_tables_of(con, SOURCE, _table_at(con, SOURCE, table, head))


def _inlined_tables_of(con: duckdb.DuckDBPyConnection, alias: str, table_id: int | None) -> list[str]:
    return [r[0] for r in con.execute(f"SELECT table_name FROM {_metadata(alias)}.ducklake_inlined_data_tables "
                                      "WHERE table_id = ? ORDER BY 1", [table_id]).fetchall()]


def _row_diff_by_row_id(con: duckdb.DuckDBPyConnection, table: str, fork: int, head: int, n_fork: int,
                        slot: int) -> None:
    """_row_diff's sets by row id only, for a table with a column named like one of DuckLake's virtual columns:
    a row id inserted and deleted too (deleted again, or an UPDATE that kept its row id) is looked up in the
    branch's table at its head, which then is scanned once."""
    gone, new = _sets(slot)
    ref = _sql_table(SOURCE, table)
    dele = _feed("ducklake_table_deletions", SOURCE, table, fork + 1, head, "")
    ins = _feed("ducklake_table_insertions", SOURCE, table, fork + 1, head, "")
    con.execute(f"CREATE OR REPLACE TEMP TABLE {gone}_all AS SELECT DISTINCT _airduck_rowid FROM ({dele})")
    con.execute(f"CREATE OR REPLACE TEMP TABLE {gone} AS SELECT _airduck_rowid FROM temp.{gone}_all "
                f"WHERE _airduck_rowid < {int(n_fork)}")
    con.execute(f"CREATE OR REPLACE TEMP TABLE {gone}_files (_airduck_file VARCHAR)")  # not known: not pruned
    feed = _feed("ducklake_table_insertions", SOURCE, table, fork + 1, head)
    con.execute(f"CREATE OR REPLACE TEMP TABLE {new} AS SELECT * FROM ({feed}) "
                f"WHERE _airduck_rowid NOT IN (SELECT _airduck_rowid FROM temp.{gone}_all)")
    ambiguous = f"SELECT _airduck_rowid FROM ({ins}) INTERSECT SELECT _airduck_rowid FROM temp.{gone}_all"
    if con.execute(f"SELECT count(*) FROM ({ambiguous})").fetchone()[0]:
        con.execute(f"INSERT INTO temp.{new} SELECT rowid AS _airduck_rowid, * FROM {ref} "
                    f"WHERE rowid IN ({ambiguous})")
    con.execute(f"DROP TABLE temp.{gone}_all")


def _row_diff_by_values(con: duckdb.DuckDBPyConnection, table: str, fork: int, head: int, slot: int) -> None:
    """_row_diff's sets for a table whose rows maintenance moved on the branch since the fork (flushed, merged or
    rewritten files): its change feed then also lists rows that only moved (and a flushed row's versions are no
    longer where the feed says), so the branch's table at the fork and at its head are compared instead, row id and
    every value: the rows of the fork not at the head went, the rows of the head not at the fork are new. One scan
    of each (the branch keeps its snapshots since the fork, see `needed_since`); exact whether or not maintenance
    kept the row ids."""
    gone, new = _sets(slot)
    ref = _sql_table(SOURCE, table)
    at_fork = f"SELECT rowid AS _airduck_rowid, * FROM {ref} AT (VERSION => {int(fork)})"
    at_head = f"SELECT rowid AS _airduck_rowid, * FROM {ref} AT (VERSION => {int(head)})"
    con.execute(f"CREATE OR REPLACE TEMP TABLE {gone} AS SELECT _airduck_rowid FROM ({at_fork} EXCEPT {at_head})")
    con.execute(f"CREATE OR REPLACE TEMP TABLE {gone}_files (_airduck_file VARCHAR)")  # not known: not pruned
    con.execute(f"CREATE OR REPLACE TEMP TABLE {new} AS {at_head} EXCEPT {at_fork}")


def _next_row_id(con: duckdb.DuckDBPyConnection, table: str, snapshot: int) -> int:
    """One more than the largest row id the branch's `table` had at `snapshot`, from the catalog (no scan): row ids
    are never reused, so a larger one is a row added after it."""
    m = _metadata(SOURCE)
    table_id = _table_at(con, SOURCE, table, snapshot)
    at = int(snapshot)
    top = con.execute(f"SELECT coalesce(max(row_id_start + record_count), 0) FROM {m}.ducklake_data_file "
                      f"WHERE table_id = ? AND begin_snapshot <= {at}", [table_id]).fetchone()[0]
    for (name,) in con.execute(f"SELECT table_name FROM {m}.ducklake_inlined_data_tables WHERE table_id = ?",
                               [table_id]).fetchall():
        inlined = con.execute(f"SELECT coalesce(max(row_id) + 1, 0) FROM {m}.{quote_ident(name)} "
                              f"WHERE begin_snapshot <= {at}").fetchone()[0]
        top = max(int(top), int(inlined))
    return int(top)


def _sets(slot: int) -> tuple[str, str]:
    return f"_airduck_gone_{slot}", f"_airduck_new_{slot}"


def _rows_touched(con: duckdb.DuckDBPyConnection, table: str, after: int, now: int, slot: int) -> bool:
    """Whether the target deleted or replaced, after snapshot `after`, a row the branch deleted or replaced."""
    # (not pruned by file as the branch's feed is: this runs in the merge's write transaction on the target, and
    # reading the target's catalog tables directly there makes DuckLake's commit fail on SQLite: "database is locked")
    feed = _feed("ducklake_table_deletions", LAKE, table, after + 1, now, "")
    return bool(con.execute(f"SELECT count(*) FROM ({feed}) WHERE _airduck_rowid IN "
                            f"(SELECT _airduck_rowid FROM temp.{_sets(slot)[0]})").fetchone()[0])


def _resolve(project: Project, name: str, into: str | None) -> tuple[Branch, str]:
    b = get(project, check_name(name))
    into = into or b.base
    if into != b.base:
        raise BranchError(f"branch {name!r} was forked from {b.base!r}: it can only be merged into {b.base!r}",
                          hint=f"airduck merge {name} --into {b.base}")
    return b, into


def diff(project: Project, name: str, base: str | None = None, *, table: str | None = None,
         sample: int = 5, keys: dict[str, list[str]] | None = None) -> Diff:
    """What branch `name` changed since its fork (per table: rows inserted/deleted/updated with a sample, or the
    schema change), from its change feed; and the tables its base changed too (conflicts)."""
    b, into = _resolve(project, name, base)
    con = _open_pair(project, b, into)
    try:
        head = int(con.execute(f"SELECT id FROM {SOURCE}.current_snapshot()").fetchone()[0])
        now = int(con.execute(f"SELECT id FROM {LAKE}.current_snapshot()").fetchone()[0])
        tables, conflicts, _ = _plan(con, b, head, now, sample, only=table, keys=keys)
        return Diff(into, name, b.fork_snapshot, head, b.base_snapshot, tables, conflicts)
    finally:
        con.close()


def merge(project: Project, name: str, into: str | None = None, *, dry_run: bool = False,
          message: str | None = None, keep: bool = True, **extra: Any) -> MergeResult:
    """Merge branch `name` into its base in one commit. A table changed on both sides since the fork is a
    conflict: MergeConflict, nothing is written. After the merge the branch is forked again from the merge commit
    (`keep`) or deleted. See docs/branches.md."""
    b, into = _resolve(project, name, into)
    con = _open_pair(project, b, into)
    try:
        head = int(con.execute(f"SELECT id FROM {SOURCE}.current_snapshot()").fetchone()[0])
        now = int(con.execute(f"SELECT id FROM {LAKE}.current_snapshot()").fetchone()[0])
        with write(con, message or f"merge branch {name} into {into}", step="merge", merge=name, fork=b.fork_snapshot,
                   head=head, **extra):
            tables, conflicts, how = _plan(con, b, head, now)
            if conflicts:
                expired = not _kept_since(con, LAKE, b.base_snapshot, now)
                raise MergeConflict(
                    f"cannot merge {name} into {into}: {', '.join(conflicts)} changed on both since the fork "
                    f"(snapshot {b.base_snapshot} of {into})"
                    + (f"; {into}'s maintenance has expired snapshots since, so what it changed cannot be told"
                       if expired else "") + "; nothing was merged", conflicts,
                    hint=f"see `airduck diff {into}..{name}`; redo the change on a new branch of {into}")
            if dry_run or not tables:
                raise _NothingToDo
            for d in tables:
                _apply(con, d, how[d.table], d.slot)  # type: ignore[attr-defined]
            _failpoint("merge:before-commit")
    except _NothingToDo:
        con.close()
        return MergeResult(name, into, None, tables, dry_run=True) if dry_run else MergeResult(name, into, None, [])
    except BaseException:
        con.close()
        raise
    try:
        snapshot = int(con.execute(f"SELECT id FROM {LAKE}.current_snapshot()").fetchone()[0])
    finally:
        con.close()
    _failpoint("merge:after-commit")
    delete(project, name)
    if keep:  # the branch starts again from the merge commit (its row ids no longer match the target's)
        create(project, name, into)
    return MergeResult(name, into, snapshot, tables)


def merge_commit(project: Project, name: str, into: str | None = None) -> tuple[int, dict[str, Any]] | None:
    """The latest snapshot of `into` (default main) whose commit merged branch `name`, with its extra info
    (``merge``, ``fork``, ``head``, ...), or None: what makes a retried merge of a run's branch a no-op."""
    target = None if into in (None, MAIN_BRANCH) else into
    pattern = f'%"merge": {json.dumps(name)}%'
    if _kind(project) == "sqlite":
        file = main_catalog_file(project) if target is None else branch_file(project, target)
        if not Path(file).exists():
            return None
        with contextlib.closing(sqlite3.connect(file, timeout=30)) as conn:
            rows = conn.execute("SELECT snapshot_id, commit_extra_info FROM ducklake_snapshot_changes "
                                "WHERE commit_extra_info LIKE ? ORDER BY snapshot_id DESC", [pattern]).fetchall()
    else:
        with _pg(project) as conn:
            schema = _main_schema(conn) if target is None else branch_schema(target)
            rows = conn.execute(f"SELECT snapshot_id, commit_extra_info FROM {quote_ident(schema)}."
                                "ducklake_snapshot_changes WHERE commit_extra_info LIKE %s ORDER BY snapshot_id DESC",
                                [pattern]).fetchall()
    for sid, extra in rows:
        try:
            info = json.loads(extra)
        except ValueError:
            continue
        if isinstance(info, dict) and info.get("merge") == name:
            return int(sid), info
    return None


class _NothingToDo(Exception):
    pass


def _apply(con: duckdb.DuckDBPyConnection, d: TableDiff, how: str, slot: int) -> None:
    target, source = _sql_table(LAKE, d.table), _sql_table(SOURCE, d.table)
    schema = d.table.split(".", 1)[0]
    if how == "drop":
        con.execute(f"DROP TABLE IF EXISTS {target}")
    elif how == "copy":
        con.execute(f"CREATE SCHEMA IF NOT EXISTS {LAKE}.{quote_ident(schema)}")
        con.execute(f"CREATE OR REPLACE TABLE {target} AS SELECT * FROM {source}")
    else:  # the temp tables of _row_diff (same slot): rows that went by row id, then the new rows
        gone, new = _sets(slot)
        cols = ", ".join(quote_ident(c.split(": ", 1)[0]) for c in d.columns_after)
        _delete_rows(con, target, d.table, gone)
        con.execute(f"INSERT INTO {target} ({cols}) SELECT {cols} FROM temp.{new}")


#: at most this many files are named in a merge's DELETE (a longer list is not worth the pruning)
_PRUNE_FILES = 5000


def _delete_rows(con: duckdb.DuckDBPyConnection, target: str, table: str, gone: str) -> None:
    """Delete the rows of temp table `gone` (row ids; `<gone>_files`: the files they were in on the branch) from
    `target`. The target has not changed the table's rows since the fork, so its files and row ids are the branch's
    at the fork: naming the files lets DuckLake read only those (a filter on the row id alone reads the row ids of
    every file). Rows not found in those files (the target's files were rewritten since, e.g. compacted) are
    deleted by row id alone; a row id not found at all is an error (nothing is written)."""
    want = int(con.execute(f"SELECT count(*) FROM temp.{gone}").fetchone()[0])
    if not want:
        return
    ids = f"rowid IN (SELECT _airduck_rowid FROM temp.{gone})"
    files = [r[0] for r in con.execute(f"SELECT _airduck_file FROM temp.{gone}_files "
                                       f"WHERE _airduck_file IS NOT NULL LIMIT {_PRUNE_FILES + 1}").fetchall()]
    done = 0
    if files and len(files) <= _PRUNE_FILES:
        done = _count(con.execute(f"DELETE FROM {target} WHERE filename IN ({_literals(files)}) AND {ids}"))
    if done < want:
        done += _count(con.execute(f"DELETE FROM {target} WHERE {ids}"))
    if done != want:
        raise BranchError(f"cannot merge {table}: {want - done} of the {want} rows the branch deleted or updated "
                          "are not on the target (it changed since the fork); nothing was merged",
                          hint="see `airduck diff`; redo the change on a new branch of the target")


def _count(result: duckdb.DuckDBPyConnection) -> int:
    row = result.fetchone()
    return int(row[0]) if row else 0


def _literals(values: list[str]) -> str:
    return ", ".join(quote_literal(v) for v in values)
