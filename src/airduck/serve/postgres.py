"""Publishing gold marts to a PostgreSQL serving database, atomically for readers.

For each table of `serve.postgres.tables`:

1. the gold table is read at one pinned lake snapshot, through its *served projection*
   (:mod:`airduck.serve.columns`), and bulk-loaded into a staging table ``<name>__airduck_new`` with
   DuckDB's postgres extension (``CREATE TABLE pg.s.t AS SELECT``: binary COPY; measured ~4x faster
   than psycopg COPY from Arrow batches, 0.9 s vs 1.4-4.5 s for 1M rows x 6 columns);
2. the optional primary key and indexes are created on the staging table, and it is ANALYZEd;
3. the staging table is checked against the gold table: same row count and the same
   order-independent checksum (sum of DuckDB row hashes over the served projection, computed on the
   lake side and on the rows read back from PostgreSQL). A mismatch raises ServeError and the
   published table is left as it was;
4. in ONE PostgreSQL transaction (short ``lock_timeout``, retried) the old table is dropped and the
   staging table (with its constraint and indexes) renamed into place. Readers see the old table
   or the new one, never a missing or half-loaded one.

Replacing the table drops what was attached to the old one: grants and views on it (views make the
swap fail with a ServeError rather than being dropped).
"""

from __future__ import annotations

import hashlib
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any

import duckdb

from airduck.config.project import Project
from airduck.config.secrets import redact
from airduck.core.model import StepResult
from airduck.errors import ConfigError, ServeError
from airduck.events import Reporter
from airduck.lake.catalog import TableRef, current_snapshot, require_table
from airduck.lake.connection import quote_ident, quote_literal
from airduck.serve.columns import ServedColumn, checksum_sql, select_sql, served_columns
from airduck.serve.config import PostgresServe, ServedTable
from airduck.text import plural

STAGE_SUFFIX = "__airduck_new"
PG_MAX_IDENT = 63


def pg_ident(text: str) -> str:
    """A PostgreSQL identifier of at most 63 bytes: long names are cut and given a short hash."""
    if len(text.encode()) <= PG_MAX_IDENT:
        return text
    digest = hashlib.sha1(text.encode()).hexdigest()[:8]
    cut = text.encode()[: PG_MAX_IDENT - 9].decode(errors="ignore")
    return f"{cut}_{digest}"


@dataclass(frozen=True)
class _Plan:
    source: TableRef
    schema: str
    name: str
    stage: str
    pkey: str
    stage_pkey: str
    indexes: list[tuple[list[str], str, str]]  # columns, final name, staging name

    @property
    def qualified(self) -> str:
        return f"{self.schema}.{self.name}"


def _plan(cfg: PostgresServe, served: ServedTable) -> _Plan:
    source = TableRef.parse(served.table, default_schema="gold")
    name = served.name or source.name
    if len(name.encode()) > PG_MAX_IDENT:
        raise ConfigError(f"serve.postgres.tables: target name {name!r} is longer than PostgreSQL's 63 bytes",
                          hint="set a shorter `name:` for this table")
    stage = pg_ident(name + STAGE_SUFFIX)
    indexes = []
    for cols in served.indexes:
        base = f"{name}_{'_'.join(cols)}_idx"
        indexes.append((list(cols), pg_ident(base), pg_ident(f"{stage}_{'_'.join(cols)}_idx")))
    return _Plan(source, cfg.schema_, name, stage, pg_ident(f"{name}_pkey"), pg_ident(f"{stage}_pkey"), indexes)


def _psycopg_connect(dsn: str, what: str) -> Any:
    import psycopg

    try:
        return psycopg.connect(dsn, autocommit=True, connect_timeout=15)
    except psycopg.Error as exc:
        raise ServeError(f"cannot connect to the serving database {redact(dsn)}: {redact(str(exc).strip())}",
                         hint=f"check serve.postgres.dsn ({what})") from None


def _sql(*parts: Any) -> Any:
    from psycopg import sql

    return sql.SQL(" ").join(parts)


def _check_columns(plan: _Plan, cols: list[ServedColumn], served: ServedTable) -> None:
    names = {c.name for c in cols}
    wanted = [("primary_key", c) for c in served.primary_key] + [
        ("indexes", c) for idx in served.indexes for c in idx]
    for key, col in wanted:
        if col not in names:
            raise ConfigError(
                f"serve.postgres.tables ({served.table}).{key}: column {col!r} is not in {plan.source}",
                hint=f"columns: {', '.join(sorted(names))}",
            )


def publish_postgres(
    con: duckdb.DuckDBPyConnection, project: Project, *, run_id: str, reporter: Reporter | None = None,
    only: set[str] | None = None,
) -> list[StepResult]:
    """Publish the `serve.postgres` tables (those named in `only`, when given); one StepResult per table (ServeError
    on any failure)."""
    cfg = project.config.serve.postgres
    if cfg is None or not cfg.tables:
        return []
    reporter = reporter or Reporter()
    plans = [(_plan(cfg, t), t) for t in cfg.tables]
    if only is not None:  # one serve:<name> step of a plan
        plans = [(p, t) for p, t in plans if p.name in only]
    for plan, served in plans:  # check every table before touching PostgreSQL
        require_table(con, plan.source)
        _check_columns(plan, served_columns(con, plan.source, "postgres"), served)
    alias = f"airduck_serve_{uuid.uuid4().hex[:8]}"
    pg = _psycopg_connect(cfg.dsn, "publishing gold tables")
    try:
        pg.execute(_sql(_s("CREATE SCHEMA IF NOT EXISTS"), _id(cfg.schema_)))
        try:
            con.execute(f"ATTACH {quote_literal(cfg.dsn)} AS {quote_ident(alias)} (TYPE postgres)")
        except duckdb.Error as exc:
            raise ServeError(f"cannot attach the serving database {redact(cfg.dsn)}: "
                             f"{redact(str(exc).strip().splitlines()[0])}") from None
        try:
            results = []
            snapshot = current_snapshot(con)
            for plan, served in plans:
                reporter.start("serve", table=plan.qualified)
                step = _publish_one(con, pg, alias, cfg, plan, served, snapshot, run_id)
                reporter.finish("serve", table=plan.qualified, status=step.status, rows=step.rows_out)
                results.append(step)
            return results
        finally:
            try:
                con.execute(f"DETACH {quote_ident(alias)}")
            except duckdb.Error:
                pass
    finally:
        pg.close()


def _s(text: str) -> Any:
    from psycopg import sql

    return sql.SQL(text)


def _id(*names: str) -> Any:
    from psycopg import sql

    return sql.Identifier(*names)


def _publish_one(
    con: duckdb.DuckDBPyConnection, pg: Any, alias: str, cfg: PostgresServe, plan: _Plan, served: ServedTable,
    snapshot: int, run_id: str,
) -> StepResult:
    started = time.monotonic()
    cols = served_columns(con, plan.source, "postgres")
    stage_sql = f"{quote_ident(alias)}.{quote_ident(plan.schema)}.{quote_ident(plan.stage)}"
    # the lake side of the check is computed on its own cursor while the load runs (it reads a fixed snapshot)
    lake_sum = _Background(con, checksum_sql(f"({select_sql(plan.source, cols, snapshot)})", cols, cast=False))
    try:
        con.execute(f"DROP TABLE IF EXISTS {stage_sql}")  # left behind by a crashed publish
        con.execute(f"CREATE TABLE {stage_sql} AS {select_sql(plan.source, cols, snapshot)}")
    except duckdb.Error as exc:
        lake_sum.wait()
        raise ServeError(f"cannot load {plan.source} into {plan.schema}.{plan.stage}: "
                         f"{redact(str(exc).strip().splitlines()[0])}") from None
    stage = _id(plan.schema, plan.stage)
    try:
        if served.primary_key:
            pg.execute(_sql(_s("ALTER TABLE"), stage, _s("ADD CONSTRAINT"), _id(plan.stage_pkey),
                            _s("PRIMARY KEY ("), _s(", ").join(_id(c) for c in served.primary_key), _s(")")))
        for cols_, _final, staging_name in plan.indexes:
            pg.execute(_sql(_s("CREATE INDEX"), _id(staging_name), _s("ON"), stage,
                            _s("("), _s(", ").join(_id(c) for c in cols_), _s(")")))
        pg.execute(_sql(_s("ANALYZE"), stage))
        stage_oid = pg.execute(_s("SELECT %s::regclass::oid"),
                               [f"{quote_ident(plan.schema)}.{quote_ident(plan.stage)}"]).fetchone()[0]
    except Exception as exc:
        lake_sum.wait()
        _drop_quietly(pg, stage)
        raise ServeError(f"cannot create the primary key/indexes of {plan.qualified}: "
                         f"{redact(str(exc).strip().splitlines()[0])}",
                         hint="a primary key needs unique, non-null values") from None

    # fetchall, not fetchone: a half-read DuckDB result keeps its PostgreSQL transaction (and lock) open
    got = con.execute(checksum_sql(stage_sql, cols, cast=True)).fetchall()[0]
    expected = lake_sum.result()
    if tuple(expected) != tuple(got):
        _drop_quietly(pg, stage)
        raise ServeError(
            f"published copy of {plan.source} in {plan.qualified} does not match the lake: "
            f"{plural(got[0], 'row')} (checksum {got[1]}) in PostgreSQL, {plural(expected[0], 'row')} (checksum {expected[1]}) "
            f"in {plan.source} at snapshot {snapshot}; the served table was not replaced",
            hint="check for triggers or rules on the serving schema",
        )
    attempts = _swap(pg, cfg, plan, bool(served.primary_key))
    # the relation now published is the one that was checked
    now_oid = pg.execute(_s("SELECT to_regclass(%s)::oid"),
                         [f"{quote_ident(plan.schema)}.{quote_ident(plan.name)}"]).fetchone()[0]
    if now_oid != stage_oid:
        raise ServeError(f"{plan.qualified} changed during the publish (another writer?)")
    return StepResult(
        layer="serve", table=plan.source.qualified, status="ok", rows_in=int(expected[0]), rows_out=int(got[0]),
        details={"target": "postgres", "relation": plan.qualified, "snapshot_id": snapshot,
                 "checksum": str(got[1]), "primary_key": served.primary_key, "indexes": served.indexes,
                 "swap_attempts": attempts, "seconds": round(time.monotonic() - started, 3), "run_id": run_id},
    )


class _Background:
    """One query on its own cursor in a thread; `result()` waits for it and re-raises its error."""

    def __init__(self, con: duckdb.DuckDBPyConnection, sql: str) -> None:
        self._cursor = con.cursor()
        self._out: list[Any] = []
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._work, args=(sql,), daemon=True)
        self._thread.start()

    def _work(self, sql: str) -> None:
        try:
            self._out = self._cursor.execute(sql).fetchall()
        except BaseException as exc:
            self._error = exc

    def wait(self) -> None:
        self._thread.join()
        self._cursor.close()

    def result(self) -> tuple:
        self.wait()
        if self._error is not None:
            raise ServeError(f"cannot compute the lake checksum: {redact(str(self._error).splitlines()[0])}")
        return self._out[0]


def _drop_quietly(pg: Any, stage: Any) -> None:
    try:
        pg.execute(_sql(_s("DROP TABLE IF EXISTS"), stage))
    except Exception:
        pass


def _swap(pg: Any, cfg: PostgresServe, plan: _Plan, has_pk: bool) -> int:
    """Drop the old table and rename the staging one into place in ONE transaction; retried on lock timeouts."""
    import psycopg

    final = _id(plan.schema, plan.name)
    stage = _id(plan.schema, plan.stage)
    delay = 0.05
    for attempt in range(1, cfg.swap_attempts + 1):
        try:
            with pg.transaction():
                pg.execute(_s("SELECT set_config('lock_timeout', %s, true)"), [f"{cfg.lock_timeout_ms}ms"])
                pg.execute(_sql(_s("DROP TABLE IF EXISTS"), final))
                pg.execute(_sql(_s("ALTER TABLE"), stage, _s("RENAME TO"), _id(plan.name)))
                if has_pk:
                    pg.execute(_sql(_s("ALTER TABLE"), final, _s("RENAME CONSTRAINT"), _id(plan.stage_pkey),
                                    _s("TO"), _id(plan.pkey)))
                for _cols, final_name, staging_name in plan.indexes:
                    pg.execute(_sql(_s("ALTER INDEX"), _id(plan.schema, staging_name), _s("RENAME TO"),
                                    _id(final_name)))
            return attempt
        except psycopg.errors.LockNotAvailable:
            if attempt == cfg.swap_attempts:
                raise ServeError(
                    f"could not swap {plan.qualified}: readers held it locked through {attempt} attempts "
                    f"of {cfg.lock_timeout_ms} ms; the old table is still served",
                    hint="retry, or raise serve.postgres.lock_timeout_ms",
                ) from None
            time.sleep(delay)
            delay = min(delay * 2, 2.0)
        except psycopg.errors.DependentObjectsStillExist as exc:
            raise ServeError(f"cannot replace {plan.qualified}: other objects depend on it "
                             f"({redact(str(exc).strip().splitlines()[0])})",
                             hint="drop or recreate the views on it after publishing") from None
        except psycopg.Error as exc:
            raise ServeError(f"cannot swap in {plan.qualified}: {redact(str(exc).strip().splitlines()[0])}") from None
    raise AssertionError("unreachable")

