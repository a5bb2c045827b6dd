"""The `postgres` source: a table or a query read in bulk through DuckDB's postgres extension.

The source database is attached READ_ONLY on a separate DuckDB connection (so it can be detached at once,
whatever the run's transaction is doing) and streamed into the run's connection as Arrow record batches:
bulk, bounded memory, never row by row in Python.

- Without ``cursor``: every run appends a full snapshot with the new ``_load_id`` (silver deduplicates).
- With ``cursor`` (e.g. ``updated_at`` or ``id``): only rows with ``cursor > saved watermark`` are read; the new
  maximum is saved in ``airduck.watermarks`` in the same transaction, so a rolled-back run reads them again.
  The comparison is strict: rows that arrive later with a cursor value equal to the saved maximum are not
  read, so use a cursor that only grows (a sequence, or a timestamp set at commit).

``_source_file`` is ``postgres:<schema.table>`` or ``postgres:query:<sha256 prefix>``; ``_source_version`` and
``_landing_key`` are NULL; ``_row_number`` numbers the rows of the read.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from typing import Any

import duckdb

from airduck.bronze import state
from airduck.bronze.config import PostgresSource
from airduck.bronze.table import (
    META_NAMES,
    RENAME_PREFIX,
    StagedColumn,
    base_params,
    bronze_ref,
    ensure_meta_only_table,
    ensure_rejects_table,
    insert_sql,
    plan_columns,
    run,
)
from airduck.config.secrets import redact
from airduck.core.context import RunContext
from airduck.core.model import StepResult
from airduck.errors import SourceError
from airduck.lake.connection import quote_ident, quote_literal
from airduck.lake.extensions import load_extensions

ALIAS = "airduck_src"
_BATCH_ROWS = 100_000
_HINTS = (
    (re.compile(r"password authentication failed|authentication failed", re.I), "check the user and password in the DSN"),
    (re.compile(r"Connection refused|could not connect|timeout|No route|could not translate host", re.I),
     "is the server running and reachable?"),
    (re.compile(r"database .* does not exist", re.I), "check the database name in the DSN"),
)


def _source_error(name: str, what: str, exc: Exception) -> SourceError:
    text = redact(str(exc)).strip()
    first = next((ln for ln in text.splitlines() if ln.strip()), "unknown error")
    hint = next((h for pattern, h in _HINTS if pattern.search(str(exc))), None)
    return SourceError(f"source {name}: {what}: {first}", hint=hint)


def split_table(table: str) -> tuple[str, str]:
    parts = [p.strip().strip('"') for p in table.split(".")]
    if len(parts) == 1:
        return "public", parts[0]
    if len(parts) == 2:
        return parts[0], parts[1]
    raise SourceError(f"postgres table {table!r} must be `table` or `schema.table`")


def source_file(cfg: PostgresSource) -> str:
    if cfg.table is not None:
        schema, table = split_table(cfg.table)
        return f"postgres:{schema}.{table}"
    digest = hashlib.sha256((cfg.query or "").encode()).hexdigest()[:16]
    return f"postgres:query:{digest}"


def _pg_literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def ingest_postgres(ctx: RunContext, name: str, cfg: PostgresSource) -> StepResult:
    """Append the table/query (or its rows past the cursor watermark) to `bronze.<name>`."""
    table_name = f"bronze.{name}"
    con = ctx.con
    state.ensure_state_tables(con)
    ensure_rejects_table(con, name)
    watermark = None
    if cfg.cursor:
        watermark = state.get_watermark(con, name, cfg.cursor)
    src = duckdb.connect()
    try:
        load_extensions(src, ("postgres_scanner",))
        try:
            src.execute(f"ATTACH {quote_literal(cfg.dsn)} AS {ALIAS} (TYPE postgres, READ_ONLY)")
        except duckdb.Error as exc:
            raise _source_error(name, "cannot connect to PostgreSQL", exc) from None
        sql, params, what = _select(src, name, cfg, watermark)
        try:
            described = src.execute(f"DESCRIBE {sql}", params).fetchall()
        except duckdb.Error as exc:
            raise _source_error(name, f"cannot read {what}", exc) from None
        if cfg.cursor and cfg.cursor not in {r[0] for r in described}:
            cols = ", ".join(r[0] for r in described)
            raise SourceError(f"source {name}: cursor column {cfg.cursor!r} is not in {what}", hint=f"columns: {cols}")
        try:
            reader = src.execute(sql, params).to_arrow_reader(_BATCH_ROWS)
        except duckdb.Error as exc:
            raise _source_error(name, f"cannot read {what}", exc) from None
        rows = _load(ctx, name, cfg, described, reader)
    finally:
        try:
            src.execute(f"DETACH DATABASE IF EXISTS {ALIAS}")
        except duckdb.Error:
            pass
        src.close()
    ensure_meta_only_table(con, name)
    details: dict[str, Any] = {"source_file": source_file(cfg), "incremental": bool(cfg.cursor)}
    if cfg.cursor:
        details["watermark_before"] = watermark
        new_mark = _new_watermark(con, name, cfg.cursor, ctx.run_id) if rows else None
        if new_mark is not None:
            state.set_watermark(con, name, cfg.cursor, new_mark, ctx.run_id)
        details["watermark"] = new_mark if new_mark is not None else watermark
    ctx.reporter.advance("bronze", table_name, rows=rows, done=1)
    return StepResult(layer="bronze", table=table_name, status="ok" if rows or not cfg.cursor else "skipped",
                      rows_in=rows, rows_out=rows, details=details)


def _select(src: duckdb.DuckDBPyConnection, name: str, cfg: PostgresSource, watermark: str | None
            ) -> tuple[str, dict[str, Any], str]:
    """The DuckDB SELECT over the attached source, its parameters, and a description for messages."""
    if cfg.table is not None:
        schema, table = split_table(cfg.table)
        what = f"table {schema}.{table}"
        rel = f"{ALIAS}.{quote_ident(schema)}.{quote_ident(table)}"
        if watermark is None or not cfg.cursor:
            return f"SELECT * FROM {rel}", {}, what
        try:
            ctype = next(r[1] for r in src.execute(f"DESCRIBE SELECT * FROM {rel}").fetchall() if r[0] == cfg.cursor)
        except duckdb.Error as exc:
            raise _source_error(name, f"cannot read {what}", exc) from None
        except StopIteration:
            raise SourceError(f"source {name}: cursor column {cfg.cursor!r} is not in {what}") from None
        # A constant filter on the attached table is pushed down to PostgreSQL.
        return f"SELECT * FROM {rel} WHERE {quote_ident(cfg.cursor)} > CAST($mark AS {ctype})", {"mark": watermark}, what
    query = (cfg.query or "").strip().rstrip(";")
    what = "the query"
    if watermark is not None and cfg.cursor:
        query = f"SELECT * FROM ({query}) AS airduck_q WHERE {quote_ident(cfg.cursor)} > {_pg_literal(watermark)}"
    return f"SELECT * FROM postgres_query('{ALIAS}', $query)", {"query": query}, what


def _load(ctx: RunContext, name: str, cfg: PostgresSource, described: list[tuple], reader: Any) -> int:
    con = ctx.con
    view = f"__airduck_pg_{uuid.uuid4().hex[:8]}"
    con.register(view, reader)
    try:
        staged = [StagedColumn(f"c{i}", r[0], r[1], text=False) for i, r in enumerate(described)]
        types = {r[0]: r[1] for r in con.execute(f"DESCRIBE SELECT * FROM {quote_ident(view)}").fetchall()}
        staged = [StagedColumn(s.alias, s.name, types.get(s.name, s.type), text=False) for s in staged]
        plan, _new = plan_columns(con, name, staged, lambda c: {})
        cols = ", ".join(f"{quote_ident(s.name)} AS {s.alias}" for s in staged)
        staging = f"SELECT {cols}, row_number() OVER () AS __rn FROM {quote_ident(view)}"
        params = {**base_params(ctx, name), "src_file": source_file(cfg)}
        meta = {"_source_file": "$src_file", "_source_version": "CAST(NULL AS VARCHAR)",
                "_landing_key": "CAST(NULL AS VARCHAR)"}
        try:
            return int(run(con, insert_sql(name, plan, staging, meta), params).fetchall()[0][0])
        except duckdb.Error as exc:
            raise _source_error(name, "reading from PostgreSQL failed", exc) from None
    finally:
        con.unregister(view)


def _new_watermark(con: duckdb.DuckDBPyConnection, name: str, cursor: str, load_id: str) -> str | None:
    from airduck.lake.catalog import columns

    wanted = (RENAME_PREFIX + cursor).lower() if cursor.lower() in META_NAMES else cursor.lower()
    target = next((c.name for c in columns(con, bronze_ref(name)) if c.name.lower() == wanted), None)
    if target is None:
        return None
    row = run(con, f"SELECT CAST(max({quote_ident(target)}) AS VARCHAR) FROM {bronze_ref(name).sql} WHERE _load_id = $l",
              {"l": load_id}).fetchall()[0]
    return row[0] if row else None
