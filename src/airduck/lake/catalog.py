"""Reading the lake: tables, descriptions, previews, snapshots and time travel."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

import duckdb

from airduck.errors import NotFound, SqlError
from airduck.lake.connection import LAKE, METADATA, quote_ident, quote_literal

# The reads below write values into their SQL as quoted literals instead of binding parameters: DuckDB's Python
# client imports pandas (about 2 s) the first time any parameter is bound, which `airduck tables` would pay.
_LAKE = quote_literal(LAKE)

#: airduck's own schemas (its state, and the staging schema dbt builds gold in): listed with `tables --all` only
SYSTEM_SCHEMAS = ("airduck", "gold_stage")


@dataclass(frozen=True)
class TableRef:
    schema: str
    name: str

    @property
    def qualified(self) -> str:
        return f"{self.schema}.{self.name}"

    @property
    def sql(self) -> str:
        return f"{LAKE}.{quote_ident(self.schema)}.{quote_ident(self.name)}"

    @classmethod
    def parse(cls, text: str, default_schema: str | None = None) -> TableRef:
        parts = [p.strip().strip('"') for p in text.split(".")]
        if parts and parts[0] == LAKE and len(parts) == 3:
            parts = parts[1:]
        if len(parts) == 2 and all(parts):
            return cls(parts[0], parts[1])
        if len(parts) == 1 and parts[0] and default_schema:
            return cls(default_schema, parts[0])
        raise NotFound(f"table name {text!r} is not of the form schema.table", hint="e.g. silver.orders")

    def __str__(self) -> str:
        return self.qualified


@dataclass
class Column:
    name: str
    type: str
    nullable: bool = True


@dataclass
class TableDescription:
    schema: str
    name: str
    columns: list[Column]
    row_count: int
    file_count: int
    file_bytes: int
    delete_file_count: int
    snapshot_id: int | None
    inlined_rows: int = 0  # rows kept in the catalog itself (DuckLake data inlining), not in data files

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Snapshot:
    snapshot_id: int
    time: datetime
    schema_version: int
    changes: dict[str, list[str]] = field(default_factory=dict)
    author: str | None = None
    message: str | None = None
    extra_info: dict[str, Any] | None = None
    #: `changes` with table ids replaced by the tables' names (schema.table), e.g. tables_inserted_into: silver.orders
    tables: dict[str, list[str]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["time"] = self.time.isoformat()
        return d


def list_tables(con: duckdb.DuckDBPyConnection, include_system: bool = False, *,
                snapshot: int | None = None) -> list[TableRef]:
    """The lake's tables (and views), by schema and name; airduck's own schemas only with `include_system`.

    `snapshot`: list them as committed at that snapshot, from the catalog's own tables (milliseconds, where
    `information_schema` first loads every table of the lake); None: as this connection sees them now, its
    own uncommitted changes included."""
    if snapshot is not None:
        rows = sorted(_names_at(con, snapshot))
    else:
        rows = con.execute(
            f"SELECT table_schema, table_name FROM information_schema.tables WHERE table_catalog = {_LAKE} "
            "ORDER BY 1, 2"
        ).fetchall()
    return [TableRef(s, n) for s, n in rows if include_system or s not in SYSTEM_SCHEMAS]


def relations_at(con: duckdb.DuckDBPyConnection, snapshot: int) -> set[tuple[str, str]]:
    """(schema, name) of every table and view of the lake at `snapshot`, lower case, read from the catalog's own
    tables: what `sqlguard.lake_relations` lists, in a few milliseconds where `duckdb_tables()` first loads
    every table of the lake."""
    return {(schema.lower(), name.lower()) for schema, name in _names_at(con, snapshot)}


def _names_at(con: duckdb.DuckDBPyConnection, snapshot: int) -> list[tuple[str, str]]:
    at = int(snapshot)

    def live(alias: str) -> str:
        return f"{alias}.begin_snapshot <= {at} AND ({alias}.end_snapshot IS NULL OR {alias}.end_snapshot > {at})"

    schemas = f"(SELECT schema_id, schema_name FROM {METADATA}.ducklake_schema s WHERE {live('s')})"
    rows = con.execute(
        f"SELECT s.schema_name, t.table_name FROM {METADATA}.ducklake_table t JOIN {schemas} s USING (schema_id) "
        f"WHERE {live('t')} UNION ALL "
        f"SELECT s.schema_name, v.view_name FROM {METADATA}.ducklake_view v JOIN {schemas} s USING (schema_id) "
        f"WHERE {live('v')}"
    ).fetchall()
    return [(str(schema), str(name)) for schema, name in rows]


def list_schemas(con: duckdb.DuckDBPyConnection) -> list[str]:
    rows = con.execute(
        f"SELECT schema_name FROM information_schema.schemata WHERE catalog_name = {_LAKE} ORDER BY 1"
    ).fetchall()
    return [r[0] for r in rows if r[0] != "main"]


def table_exists(con: duckdb.DuckDBPyConnection, table: TableRef) -> bool:
    return bool(con.execute(
        f"SELECT count(*) FROM information_schema.tables WHERE table_catalog = {_LAKE} "
        f"AND table_schema = {quote_literal(table.schema)} AND table_name = {quote_literal(table.name)}"
    ).fetchone()[0])


def require_table(con: duckdb.DuckDBPyConnection, table: TableRef) -> None:
    if not table_exists(con, table):
        known = ", ".join(t.qualified for t in list_tables(con)) or "none yet"
        raise NotFound(f"table {table} does not exist", hint=f"tables: {known}")


def columns(con: duckdb.DuckDBPyConnection, table: TableRef) -> list[Column]:
    rows = con.execute(
        "SELECT column_name, data_type, is_nullable FROM information_schema.columns "
        f"WHERE table_catalog = {_LAKE} AND table_schema = {quote_literal(table.schema)} "
        f"AND table_name = {quote_literal(table.name)} ORDER BY ordinal_position"
    ).fetchall()
    return [Column(n, t, nl == "YES") for n, t, nl in rows]


def current_snapshot(con: duckdb.DuckDBPyConnection) -> int:
    return int(con.execute(f"SELECT id FROM {LAKE}.current_snapshot()").fetchone()[0])


def describe(con: duckdb.DuckDBPyConnection, table: TableRef) -> TableDescription:
    """Columns, rows, files and bytes of one table (NotFound if it does not exist)."""
    require_table(con, table)
    return describe_all(con, [table])[0]


def describe_all(con: duckdb.DuckDBPyConnection, tables: list[TableRef]) -> list[TableDescription]:
    """`describe` of each of `tables` (which must exist), in a handful of queries whatever their number:
    one count of every table, one query of the catalog for files, bytes and rows in files, one for columns."""
    if not tables:
        return []
    counts = con.execute(" UNION ALL ".join(
        f"SELECT {i} AS i, count(*) AS n FROM {t.sql}" for i, t in enumerate(tables))).fetchall()
    rows = dict(counts)
    current = (f"SELECT t.table_id, s.schema_name, t.table_name FROM {METADATA}.ducklake_table t "
               f"JOIN {METADATA}.ducklake_schema s USING (schema_id) "
               "WHERE t.end_snapshot IS NULL AND s.end_snapshot IS NULL")
    stats = con.execute(
        f"WITH cur AS ({current}), "
        f"info AS (SELECT table_id, file_count, file_size_bytes, delete_file_count FROM ducklake_table_info({_LAKE})), "
        f"files AS (SELECT table_id, sum(record_count) AS n FROM {METADATA}.ducklake_data_file "
        "WHERE end_snapshot IS NULL GROUP BY table_id), "
        f"deletes AS (SELECT table_id, sum(delete_count) AS n FROM {METADATA}.ducklake_delete_file "
        "WHERE end_snapshot IS NULL GROUP BY table_id) "
        "SELECT cur.schema_name, cur.table_name, coalesce(info.file_count, 0), coalesce(info.file_size_bytes, 0), "
        "coalesce(info.delete_file_count, 0), coalesce(files.n, 0) - coalesce(deletes.n, 0) FROM cur "
        "LEFT JOIN info USING (table_id) LEFT JOIN files USING (table_id) LEFT JOIN deletes USING (table_id)"
    ).fetchall()
    by_name = {(schema, name): rest for schema, name, *rest in stats}
    cols: dict[tuple[str, str], list[Column]] = {}
    for schema, name, col, kind, nullable in con.execute(
        "SELECT table_schema, table_name, column_name, data_type, is_nullable FROM information_schema.columns "
        f"WHERE table_catalog = {_LAKE} ORDER BY table_schema, table_name, ordinal_position"
    ).fetchall():
        cols.setdefault((schema, name), []).append(Column(col, kind, nullable == "YES"))
    snapshot = current_snapshot(con)
    out = []
    for i, t in enumerate(tables):
        count = int(rows.get(i, 0))
        files, size, deletes, in_files = by_name.get((t.schema, t.name), (0, 0, 0, 0))
        out.append(TableDescription(
            t.schema, t.name, cols.get((t.schema, t.name), []), count, int(files or 0), int(size or 0),
            int(deletes or 0), snapshot, max(0, count - int(in_files or 0)),
        ))
    return out


def data_files(con: duckdb.DuckDBPyConnection, table: TableRef) -> list[dict[str, Any]]:
    """The table's current data files (DuckLake's `ducklake_list_files`): path and bytes, delete file and bytes."""
    rel = con.sql(f"SELECT data_file, data_file_size_bytes, delete_file, delete_file_size_bytes "
                  f"FROM ducklake_list_files({_LAKE}, {quote_literal(table.name)}, "
                  f"schema => {quote_literal(table.schema)}) ORDER BY data_file")
    return [dict(zip(rel.columns, row, strict=True)) for row in rel.fetchall()]


def without_nulls(con: duckdb.DuckDBPyConnection, table: TableRef, names: list[str]) -> set[str]:
    """The columns among `names` that hold no NULL now (one scan; DuckDB answers most from column stats)."""
    names = [n for n in names if n in {c.name for c in columns(con, table)}]
    if not names:
        return set()
    checks = ", ".join(f"bool_or({quote_ident(n)} IS NULL)" for n in names)
    row = con.execute(f"SELECT {checks} FROM {table.sql}").fetchone()
    return {n for n, has_null in zip(names, row, strict=True) if not has_null}


def at_clause(version: int | None = None, timestamp: str | datetime | None = None) -> tuple[str, list[Any]]:
    if version is not None and timestamp is not None:
        raise SqlError("give either a snapshot version or a timestamp, not both")
    if version is not None:
        return f" AT (VERSION => {int(version)})", []
    if timestamp is not None:
        return f" AT (TIMESTAMP => CAST({quote_literal(str(timestamp))} AS TIMESTAMPTZ))", []
    return "", []


def read_at(
    con: duckdb.DuckDBPyConnection, table: TableRef, *, version: int | None = None,
    timestamp: str | datetime | None = None, limit: int | None = 20, order_by: str | None = None,
    check: bool = True,
) -> duckdb.DuckDBPyRelation:
    """A relation over a table now, at a snapshot version, or at a point in time.

    `check`: first make sure the table exists (NotFound with the tables there are); False when the caller knows."""
    clause, params = at_clause(version, timestamp)
    if not clause and check:
        require_table(con, table)
    sql = f"SELECT * FROM {table.sql}{clause}"
    if order_by:
        sql += f" ORDER BY {order_by}"
    if limit is not None:
        sql += f" LIMIT {int(limit)}"
    try:
        return con.sql(sql, params=params) if params else con.sql(sql)
    except duckdb.Error as exc:
        msg = str(exc).splitlines()[0]
        if clause:
            raise NotFound(f"cannot read {table} at that point: {msg}", hint="see `airduck snapshots`") from None
        raise SqlError(msg) from None


def snapshots(con: duckdb.DuckDBPyConnection, table: TableRef | None = None) -> list[Snapshot]:
    """Every snapshot (oldest first), or only those that changed `table` (NotFound if it never existed)."""
    ids = table_ids(con, table) if table else set()
    if table is not None and not ids:
        raise NotFound(f"no table {table}", hint="see `airduck tables` (tables dropped since are listed too)")
    rows = con.execute(
        "SELECT snapshot_id, snapshot_time, schema_version, changes, author, commit_message, commit_extra_info "
        f"FROM {LAKE}.snapshots() ORDER BY snapshot_id"
    ).fetchall()
    names = table_names(con)
    out = []
    for sid, ts, sv, changes, author, message, extra in rows:
        changes = {k: list(v) for k, v in (changes or {}).items()}
        if table is not None and not _touches(changes, table, ids):
            continue
        try:
            extra_d = json.loads(extra) if extra else None
        except ValueError:
            extra_d = {"raw": extra}
        out.append(Snapshot(int(sid), ts, int(sv), changes, author, message, extra_d, named_changes(changes, names)))
    return out


def table_names(con: duckdb.DuckDBPyConnection) -> dict[str, str]:
    """Every table id the catalog has known (dropped tables too) -> its latest name, "schema.table"."""
    rows = con.execute(
        f"SELECT t.table_id, s.schema_name, t.table_name FROM {METADATA}.ducklake_table t "
        f"JOIN {METADATA}.ducklake_schema s USING (schema_id) ORDER BY t.begin_snapshot, s.begin_snapshot"
    ).fetchall()
    return {str(tid): f"{schema}.{name}" for tid, schema, name in rows}


def named_changes(changes: dict[str, list[str]], names: dict[str, str]) -> dict[str, list[str]]:
    """A snapshot's changes with table ids (`tables_inserted_into: 7`) replaced by names (`silver.orders`)."""
    out: dict[str, list[str]] = {}
    for kind, values in changes.items():
        by_id = kind.startswith(("tables_", "inlined_")) and not kind.startswith(("tables_created",))
        out[kind] = [names.get(str(v), str(v)) if by_id else str(v) for v in values]
    return out


def table_ids(con: duckdb.DuckDBPyConnection, table: TableRef) -> set[str]:
    rows = con.execute(
        f"SELECT DISTINCT t.table_id FROM {METADATA}.ducklake_table t JOIN {METADATA}.ducklake_schema s "
        f"USING (schema_id) WHERE s.schema_name = {quote_literal(table.schema)} "
        f"AND t.table_name = {quote_literal(table.name)}"
    ).fetchall()
    return {str(r[0]) for r in rows}


def _touches(changes: dict[str, list[str]], table: TableRef, ids: set[str]) -> bool:
    names = {table.qualified, f'"{table.schema}"."{table.name}"', f"{table.schema}.{table.name}"}
    for kind, values in changes.items():
        for value in values:
            if (kind.startswith("tables_created") or kind.startswith("tables_dropped")) and value in names:
                return True
            if value in ids and not kind.startswith("schemas"):
                return True
    return False
