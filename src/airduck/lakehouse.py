"""The facade: one object over a project's lake, storage and pipeline. CLI, API and Airflow call only this."""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb

from airduck.config.secrets import redact
from airduck.errors import AirduckError, CatalogMissing, NotFound, SqlError
from airduck.events import EventSink, Fanout, Reporter, ReporterSink
from airduck.lake import catalog, history, maintenance
from airduck.lake.catalog import TableRef
from airduck.lake.config import MAX_SQL_TIMEOUT_SECONDS
from airduck.lake.connection import data_path, needed_extensions, open_lake, storage_settings
from airduck.lake.errors import translated
from airduck.lake.session import ReadSession
from airduck.lake.sqlguard import check_read_only, run_with_time_limit
from airduck.project import Project, load_project
from airduck.text import is_id


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    fix: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "ok": self.ok, "detail": self.detail, "fix": self.fix}


@dataclass
class SqlResult:
    """The answer of `Lakehouse.sql`. Unpacks as ``columns, rows = lh.sql(...)``.

    `truncated` is True when `limit` cut the result (more rows exist); `total` is the number of rows the
    query returned, when known (always when not truncated; when truncated only if `count_all` was asked).
    """

    columns: list[str]
    rows: list[tuple]
    truncated: bool = False
    total: int | None = None
    limit: int | None = None
    arrow: Any = None  # the rows as a pyarrow Table, when asked for (`Lakehouse.rows(arrow=True)`, `sql(arrow=True)`)

    def __iter__(self):
        return iter((self.columns, self.rows))

    def __getitem__(self, index: int):  # result[0] is the columns, result[1] the rows, as the old tuple
        return (self.columns, self.rows)[index]

    def __len__(self) -> int:
        return 2


#: the steps of `Lakehouse.maintain`, in the order they run; `check_maintenance_steps` raises `UnknownStep` for
#: any other name (the CLI checks `--step` with it before opening anything)
MAINTENANCE_STEPS = maintenance.STEPS
UnknownStep = maintenance.UnknownStep
check_maintenance_steps = maintenance.check_steps


class Lakehouse:
    """A project's lakehouse. Opens the lake lazily; use as a context manager or call close().

    Two connections, each opened on first use and kept until close(): `con`, read-write, for writes (runs,
    rollback, tags, maintenance) and for `read`/`table`/`query`; and the read session (`read_session()`), the lake
    attached READ_ONLY and locked down, for `sql`, `tables`, `describe`, `head`, `snapshots`, `tags` and
    `current_snapshot`: those never write (not even on a fresh project) and may be called from many threads.
    """

    def __init__(self, project: Project, reporter: Reporter | None = None,
                 sinks: list[EventSink] | None = None) -> None:
        self.project = project
        self.reporter = reporter or Reporter()
        self.sinks: list[EventSink] = list(sinks or [])
        self._con: duckdb.DuckDBPyConnection | None = None
        self._read: ReadSession | None = None
        self._lock = threading.Lock()
        self._observers: list[EventSink] | None = None  # the metrics and alert sinks (see _metrics_sinks)
        self._lineage: Any = False  # the OpenLineage sink (None: emission is off), made on first use

    @classmethod
    def open(cls, path: str | Path | None = None, reporter: Reporter | None = None,
             sinks: list[EventSink] | None = None, *, branch: str | None = None) -> Lakehouse:
        """The lakehouse of the project at `path`; `branch`: read and write that branch of the lake (default
        AIRDUCK_BRANCH, else main)."""
        project = load_project(path)
        project.branch = _branch_name(branch if branch is not None else project.branch)
        return cls(project, reporter, sinks)

    @property
    def events(self) -> Fanout:
        """Where a run sends its typed events: every sink of `sinks`, and the old-style `reporter` (adapted)."""
        lineage = self._lineage_sink()
        return Fanout([*self.sinks, *([lineage] if lineage is not None else []), *self._metrics_sinks(),
                       ReporterSink(self.reporter)])

    # -- connections -------------------------------------------------------------------------
    @property
    def con(self) -> duckdb.DuckDBPyConnection:
        """The read-write connection (creates the catalog and airduck's schemas when they are missing)."""
        with self._lock:
            if self._con is None:
                self._con = open_lake(self.project)
                if self._read is not None:  # an empty read session (no catalog until now) reopens on the real one
                    self._read.invalidate()
            return self._con

    def read_session(self) -> ReadSession:
        """The read-only, locked-down session of this Lakehouse (opened on first use, kept until close())."""
        with self._lock:
            if self._read is None:
                self._read = ReadSession(self.project)
            return self._read

    def close(self) -> None:
        with self._lock:
            if self._con is not None:
                self._con.close()
                self._con = None
            if self._read is not None:
                self._read.close()
                self._read = None

    @property
    def is_open(self) -> bool:
        """Whether a connection of this Lakehouse is open now (`con` or the read session); after close(), False
        until the next use opens one again."""
        with self._lock:
            return self._con is not None or self._read is not None

    def __enter__(self) -> Lakehouse:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def reconnect(self) -> None:
        self.close()

    # -- reading ----------------------------------------------------------------------------
    @translated
    def schemas(self) -> list[str]:
        with self.read_session().cursor() as cur:
            return catalog.list_schemas(cur)

    @translated
    def tables(self, include_system: bool = False) -> list[TableRef]:
        with self.read_session().cursor() as cur:
            return catalog.list_tables(cur, include_system, snapshot=catalog.current_snapshot(cur))

    @translated
    def describe(self, name: str) -> catalog.TableDescription:
        """Columns, types, rows, files and bytes of a table. A silver column with `required: true` is shown as
        not nullable: silver quarantines every row without a value there (checked against the data)."""
        ref = TableRef.parse(name)
        with self.read_session().cursor() as cur:
            catalog.require_table(cur, ref)
            return self._describe(cur, [ref])[0]

    @translated
    def describe_tables(self, include_system: bool = False, *,
                        check_required: bool = False) -> list[catalog.TableDescription]:
        """`describe` of every table (as `tables` lists them), in a few catalog queries whatever their number.

        Columns are nullable as the catalog says unless `check_required` (then as `describe` shows them, which
        scans each silver table with required columns once)."""
        with self.read_session().cursor() as cur:
            refs = catalog.list_tables(cur, include_system, snapshot=catalog.current_snapshot(cur))
            return self._describe(cur, refs, check_required=check_required)

    def _describe(self, cur: duckdb.DuckDBPyConnection, refs: list[TableRef], *,
                  check_required: bool = True) -> list[catalog.TableDescription]:
        out = catalog.describe_all(cur, refs)
        for d in out if check_required else ():
            rule = self.project.config.silver.get(d.name) if d.schema == "silver" else None
            if rule is not None:
                required = [col for col, c in rule.columns.items() if c.required]
                guaranteed = catalog.without_nulls(cur, TableRef(d.schema, d.name), required)
                for column in d.columns:
                    if column.name in guaranteed:
                        column.nullable = False
        return out

    @translated
    def read(self, name: str, *, at: str | int | None = None, at_time: str | datetime | None = None,
             limit: int | None = None) -> duckdb.DuckDBPyRelation:
        """A DuckDB relation over a table, optionally at a snapshot (id or tag) or a point in time.

        On the read-write connection (`con`), so the relation can be written anywhere (`.to_parquet(...)`); on a
        project without a catalog that creates the lake. The CLI and the API read through `head` and `sql`."""
        version = history.resolve_version(self.con, at)
        return catalog.read_at(self.con, TableRef.parse(name), version=version, timestamp=at_time, limit=limit)

    def table(self, name: str, *, at: str | int | None = None,
              at_time: str | datetime | None = None) -> duckdb.DuckDBPyRelation:
        """A table as a DuckDB relation (`.to_arrow_table()`, `.df()`, `.pl()`, `.fetchall()`)."""
        return self.read(name, at=at, at_time=at_time, limit=None)

    def query(self, sql: str, params: list[Any] | None = None) -> duckdb.DuckDBPyRelation:
        """Any SQL on the lake connection (Python users are trusted; the CLI/API use `sql`, which is read-only)."""
        return self.con.sql(sql, params=params) if params else self.con.sql(sql)

    @translated
    def head(self, name: str, n: int = 20, *, at: str | int | None = None,
             at_time: str | datetime | None = None) -> tuple[list[str], list[tuple]]:
        """The first `n` rows of a table (now, at a snapshot id or tag, or at a time), on the read session."""
        ref = TableRef.parse(name)
        session = self.read_session()
        with session.cursor() as cur:
            version = history.resolve_version(cur, at)
            # the session's list of relations (kept per snapshot) answers "does it exist" faster than the catalog
            known = (ref.schema.lower(), ref.name.lower()) in session.relations(cur)
            rel = catalog.read_at(cur, ref, version=version, timestamp=at_time, limit=n, check=not known)
            return rel.columns, rel.fetchall()

    def sql(self, query: str, limit: int | None = None, *, timeout: float | None = None,
            count_all: bool = False, arrow: bool = False) -> SqlResult:
        """Run one read-only query in a locked-down session (no writes, no files outside the lake, no secrets).

        `limit`: at most this many rows (None: all; 0: none, the columns only); the result says whether it cut.
        `timeout`: seconds before the query is interrupted (QueryTimeout); None: the project's
        `lake.sql_timeout_seconds` (default 300 s), 0: no limit. `count_all`: when the limit cut the result,
        count the rest of it (streamed once, not kept) so `total` is known; a time limit hit while counting
        leaves `total` None instead of failing. `arrow`: the result as a pyarrow Table (`result.arrow`, `rows` empty). Each call runs on a fresh cursor of the read session: calls
        from many threads run side by side.
        """
        if limit is not None and limit < 0:
            raise SqlError(f"limit must be 0 or more, not {limit}")
        if timeout is None:
            timeout = self.project.config.lake.sql_timeout_seconds
        if timeout is not None and not 0 <= timeout <= MAX_SQL_TIMEOUT_SECONDS:
            raise SqlError(f"timeout must be 0 (no limit) to {MAX_SQL_TIMEOUT_SECONDS:g} seconds, not {timeout}")
        if limit is not None and limit > MAX_SQL_LIMIT:
            raise SqlError(f"limit must be at most {MAX_SQL_LIMIT:,} rows, not {limit:,}", hint="drop it for every row")
        try:
            session = self.read_session()
            with session.cursor() as cur:
                checked = check_read_only(query, set(session.relations(cur)))
                return run_with_time_limit(cur, timeout, lambda: _fetch(cur, checked, limit, count_all, arrow))
        except duckdb.Error as exc:
            raise SqlError(redact(str(exc).splitlines()[0])) from None

    @translated
    def snapshots(self, table: str | None = None) -> list[catalog.Snapshot]:
        """Every snapshot (oldest first), or those that changed `table`; none on a lake not created yet."""
        session = self.read_session()
        with session.cursor() as cur:
            if session.empty:
                if table:
                    raise NotFound(f"no table {table}", hint="the lake has no catalog yet: nothing was written")
                return []
            return catalog.snapshots(cur, TableRef.parse(table) if table else None)

    @translated
    def current_snapshot(self) -> int:
        """The id of the lake's latest snapshot, read on the read session. On a project whose catalog does not
        exist yet this creates the lake (catalog and schemas, read-write) and returns its first snapshot: use
        `snapshots()` or `read_session().empty` to look without creating anything."""
        session = self.read_session()
        with session.cursor() as cur:
            if not session.empty:
                return catalog.current_snapshot(cur)
        return catalog.current_snapshot(self.con)

    def _existing_snapshot(self) -> int:
        """The latest snapshot id without creating anything (CatalogMissing when there is no catalog yet)."""
        session = self.read_session()
        with session.cursor() as cur:
            if session.empty:
                raise CatalogMissing(f"the lake catalog {redact(self.project.config.lake.catalog)} does not exist "
                                     "yet", hint="`airduck setup` or the first `airduck run` creates it")
            return catalog.current_snapshot(cur)

    # -- changing history -------------------------------------------------------------------
    @translated
    def rollback(self, table: str, to: str | int) -> int:
        """Make a table hold what it held at a snapshot (id or tag), as a new snapshot. A bronze or silver table is
        rolled back with its rejects/quarantine and its pipeline state, and the silver tables that read it are
        rebuilt by the next run: the next run brings everything up to date (see airduck.pipeline.rollback)."""
        from airduck.pipeline.rollback import rollback_table

        self._check_writable("rollback")
        version = history.resolve_version(self.con, to)
        assert version is not None
        return rollback_table(self.project, self.con, TableRef.parse(table), version)

    @translated
    def tag(self, name: str, snapshot: str | int | None = None, note: str | None = None,
            force: bool = False) -> history.Tag:
        self._check_writable("tag")
        return history.tag(self.con, name, history.resolve_version(self.con, snapshot), note, force)

    @translated
    def untag(self, name: str) -> None:
        self._check_writable("untag")
        history.untag(self.con, name)

    @translated
    def tags(self) -> list[history.Tag]:
        """Every tag (named snapshot), on the read session."""
        with self.read_session().cursor() as cur:
            return history.tags(cur)

    @translated
    def maintain(self, dry_run: bool = False, steps: tuple[str, ...] | None = None,
                 now: datetime | None = None) -> list[maintenance.MaintenanceStep]:
        """Run lake maintenance, or only `steps` of it (see :data:`MAINTENANCE_STEPS`); with `dry_run`, only say
        what it would do. An unknown step raises :class:`UnknownStep` before the lake is opened."""
        kwargs: dict[str, Any] = {"dry_run": dry_run, "now": now, "project": self.project}
        if steps:
            kwargs["steps"] = check_maintenance_steps(steps)
        return maintenance.run(self.con, self.project.config.lake.maintenance, **kwargs)

    # -- branches (docs/branches.md) ------------------------------------------------------------
    @property
    def branch(self) -> str:
        """The branch of the lake this Lakehouse reads and writes ('main' unless opened with `branch=`)."""
        return self.project.branch or "main"

    def _on_branch(self, name: str, serve: bool = True) -> Lakehouse:
        """A Lakehouse of this project on branch `name` (`serve=False`: without its serve and export steps)."""
        from airduck.lake.branches import on
        from airduck.serve.config import ServeConfig

        project = on(self.project, name)
        if not serve:
            project.config = project.config.model_copy(update={"serve": ServeConfig()})
        return Lakehouse(project, self.reporter, self.sinks)

    def _check_writable(self, what: str) -> None:
        from airduck.lake.branches import ProtectedBranch

        if self.branch in self.project.config.branches.protected:
            raise ProtectedBranch(f"branch {self.branch} is protected (branches.protected): only merges write to it, "
                                  f"not {what}", hint="`airduck run --atomic`, or work on a branch "
                                  "(`airduck branch create NAME`) and `airduck merge NAME`")

    @translated
    def branches(self, heads: bool = True) -> list:
        """Every branch of the lake (not main): name, base, fork and head snapshots, tables changed, created
        by/at (:class:`airduck.lake.branches.Branch`). `heads=False`: the registry only (no head snapshot or
        tables changed; opens no branch's catalog)."""
        from airduck.lake import branches

        return branches.list_branches(self.project) if heads else branches.registered(self.project)

    def on_branch(self, name: str | None) -> Lakehouse:
        """A Lakehouse of this project on branch `name` (None or 'main': main), after checking it exists (NotFound
        otherwise). A new facade: close it when done (this one is left as it is)."""
        from airduck.lake import branches

        if name in (None, "main"):
            return self._on_branch("main", serve=False)
        branches.get(self.project, branches.check_name(name))
        return self._on_branch(name, serve=False)

    @translated
    def create_branch(self, name: str, source: str | None = None, *, if_missing: bool = False):
        """A new branch `name` of `source` (main, or another branch; default: this Lakehouse's branch): a copy
        of its catalog's metadata, no data file copied. `source` may also be a past snapshot: a tag or snapshot
        id of main (`"v1"`, `"12"`) or `"BRANCH@TAG"` / `"BRANCH@12"` of a branch; the branch is then the lake as it
        was at that snapshot, forked there (docs/branches.md). `if_missing`: a branch `name` that exists already and
        was forked from `source` is returned as it is (a retried task of an orchestrated run; see
        :func:`airduck.pipeline.atomic.fork`)."""
        from airduck.lake import branches
        from airduck.pipeline.locks import catalog_lock

        self.close()
        self.current_snapshot()  # main's catalog exists (a new lake: created)
        self.close()
        from airduck.pipeline.freshness import carry_over

        if if_missing:
            from airduck.pipeline.atomic import fork

            return fork(self.project, branches.check_name(name), source or self.branch)[0]  # carries the state
        with catalog_lock(self.project):  # SQLite: the registry is in main's catalog file
            made = branches.create(self.project, name, source or self.branch)
        carry_over(self.project, made.base, name, made.fork_snapshot)  # it skips what its base would skip
        return made

    @translated
    def delete_branch(self, name: str) -> list[str]:
        """Delete a branch and the data files only it referenced (returns their keys)."""
        from airduck.lake import branches
        from airduck.pipeline.atomic import drop

        self.close()
        return drop(self.project, branches.check_name(name))  # and its step state: a new one starts afresh

    @translated
    def diff(self, branch: str, base: str | None = None, *, table: str | None = None, sample: int = 5):
        """What `branch` changed since it forked from `base` (:class:`airduck.lake.branches.Diff`), from its
        change feed, and the tables `base` changed too (conflicts)."""
        from airduck.lake import branches

        keys = {f"silver.{name}": list(rule.key) for name, rule in self.project.config.silver.items() if rule.key}
        return branches.diff(self.project, branch, base, table=table, sample=sample, keys=keys)

    @translated
    def merge(self, branch: str, into: str | None = None, *, dry_run: bool = False, delete: bool = False,
              message: str | None = None, **extra: Any):
        """Merge `branch` into `into` (its base) in one commit; MergeConflict (nothing written) when a table
        changed on both sides since the fork. The branch is then forked again from the merge commit, or, with
        `delete`, deleted: then a branch that was merged into `into` already is not merged again (``already``;
        retries of an orchestrated run's merge, see :func:`airduck.pipeline.atomic.publish`; `into` default main
        when the branch is gone). `message` and `extra`: the commit's message and extra info."""
        from airduck.lake import branches
        from airduck.pipeline.locks import catalog_lock, project_lock

        self.close()
        if delete and not dry_run:
            from airduck.pipeline.atomic import publish

            name = branches.check_name(branch)
            if into is None and name in branches.names(self.project):
                into = branches.get(self.project, name).base
            return publish(self.project, name, into, message=message, **extra)
        target = into or branches.get(self.project, branch).base
        # one merge into a target at a time; SQLite: one writer of main's catalog at a time (see pipeline.locks)
        from airduck.pipeline.freshness import carry_over

        with project_lock(self.project, f"merge:{target}"), catalog_lock(self.project):
            merged = branches.merge(self.project, branch, into, dry_run=dry_run, message=message, **extra)
        if merged.snapshot_id is not None:  # forked again from the merge commit: its old state names other ids
            carry_over(self.project, target, branch, branches.get(self.project, branch).fork_snapshot)
        return merged

    @translated
    def audit(self) -> list[str]:
        """The `audit:` queries of airduck.yml that return rows on this Lakehouse's branch, as 'name: N row(s)
        (first: …)' (none: the audit passed). What `run --atomic` checks before it merges."""
        from airduck.pipeline.atomic import audit

        return audit(self)

    # -- docs -------------------------------------------------------------------------------
    def docs(self, out: str | Path | None = None) -> Path:
        """Build the dbt docs of the gold project (`dbt docs generate`) into `out` (default `.airduck/docs`) and
        return that folder. dbt builds in gold's one staging schema, so this holds the gold lock a run holds."""
        from airduck.gold.runner import build_docs, dbt_project_dir
        from airduck.pipeline.locks import gold_lock

        dbt_project_dir(self.project)  # not a dbt project: say so before waiting for the lock
        self.close()  # dbt opens the lake in its own process
        with gold_lock(self.project, self.reporter, self.project.config.gold.timeout):
            return build_docs(self.project, Path(out) if out is not None else self.project.state_dir / "docs")

    # -- runs -------------------------------------------------------------------------------
    def plan(self, select: list[str] | None = None):
        """The plan of the project (a :class:`airduck.core.plan.Plan`): its steps with their input and output
        datasets and dependencies, narrowed to `select` (dbt-style selectors, ``+x``/``x+`` graph operators).
        Reads airduck.yml and the dbt project (its graph is cached per version; the first call after a model
        changed runs `dbt parse`). Opens no lake and writes nothing to it."""
        from airduck.pipeline.plan import build_plan, needs_gold

        return build_plan(self.project, gold=needs_gold(select)).select(select)

    def run(self, select: list[str] | None = None, full_refresh: bool = False, reingest: bool = False, *,
            threads: int | None = None, step: str | None = None, atomic: bool | None = None,
            _serving: bool = False):
        """Run the pipeline's plan (or the selected part of it). Returns a RunResult; raises RunFailed.

        `select`: plan selectors (``silver.orders+``, ``+gold.x``, layers, step ids); `step`: exactly one step id
        (``ingest:orders``), without its dependencies; `threads`: steps at once (default: the number of cores).
        `full_refresh` rebuilds silver (and gold) from what bronze holds, without reading the sources again;
        `reingest` re-reads the sources, replacing their bronze rows and rejects (never duplicating), then rebuilds
        downstream. `atomic` (default `run.atomic` of airduck.yml): write-audit-publish, the whole run on a
        temporary branch, audited, then merged in one commit (see :mod:`airduck.pipeline.atomic`)."""
        from airduck.pipeline.runner import run_pipeline

        if atomic is None:
            atomic = self.project.config.run.atomic
        if atomic:
            from airduck.pipeline.atomic import run_atomic

            return run_atomic(self, self._on_branch, select, full_refresh, reingest, threads=threads, step=step)
        if not _serving and not (step or "").startswith(("serve:", "export:")):  # serving writes no lake table
            self._check_writable("run")
        return run_pipeline(self, select, full_refresh, reingest, threads=threads, step=step)

    def _records(self):
        """The run records, or None when a project with an embedded catalog has none yet (a read creates no file)."""
        from airduck.pipeline.records import RecordStore

        store = RecordStore(self.project)
        if store.kind == "sqlite" and not Path(store.target).exists():
            return None
        return store

    def runs(self, limit: int = 20):
        store = self._records()
        return store.list(limit) if store is not None else []

    def run_info(self, run_id: str):
        store = self._records()
        rec = store.get(run_id) if store is not None else None
        if rec is None:
            raise NotFound(f"no run {run_id!r}", hint="see `airduck runs`")
        return rec

    def quality(self, table: str | None = None, run_id: str | None = None, failed: bool = False,
                limit: int | None = 1000) -> list:
        """Stored quality results (silver expectations, casts, required columns, lookups, dbt tests), newest first.

        `table`: ``schema.table`` or a bare name; `run_id`: that run's results (a prefix matches like `runs show`);
        without it, the latest result of each check (the most recent run that checked it). `failed`: only those
        that did not pass. Returns :class:`airduck.core.quality.QualityResult` objects."""
        store = self._records()
        return store.quality(table=table, run_id=run_id, failed=failed, limit=limit) if store is not None else []

    # -- metrics, data-age freshness and alerts (issue 12; airduck.metrics) ------------------------------
    def lake_state(self, *, full: bool = True):
        """Everything the lake gauges show, in one call (a :class:`airduck.metrics.lake.LakeState`): every table's
        rows, bytes and files, the time of the latest snapshot that changed each, the snapshot count, the runs by
        status, the last finished run with its steps and each table's last successful step (run records).
        `full=False`: only the tables' names and last changes (what `freshness` needs; no scan, no run records)."""
        from airduck.metrics.lake import LakeState, policies_of, step_table

        cfg = self.project.config
        state = LakeState(project=cfg.name, policies=policies_of(cfg.sources, cfg.silver))
        session = self.read_session()
        with session.cursor() as cur:
            if not session.empty:
                state.current_snapshot = catalog.current_snapshot(cur)
                refs = catalog.list_tables(cur, False, snapshot=state.current_snapshot)
                state.tables = catalog.describe_all(cur, refs) if full else refs
                snaps = catalog.snapshots(cur)
                state.snapshots = len(snaps)
                known = {f"{t.schema}.{t.name}" for t in state.tables}
                for snap in snaps:  # oldest first: the last one seen wins
                    for names in snap.tables.values():
                        for name in names:
                            if name in known:
                                state.last_change[name] = snap.time
        store = self._records() if full else None
        if store is not None:
            counts, steps, last_ok = store.summary()
            state.runs_by_status, state.last_success_run = counts, last_ok
            for (layer, table), finished in steps.items():
                name = step_table(layer, table)
                if name:
                    state.last_success[name] = finished
            last = next((r for r in store.list(20) if r.status != "running"), None)
            state.last_run = store.get(last.run_id) if last is not None else None
        return state

    def freshness(self, now: datetime | None = None) -> list:
        """Every table's age (since the latest snapshot that changed it) and status against its `freshness:`
        policy (:class:`airduck.metrics.staleness.TableAge`: ok, warn, error; `none` without a policy). A table a
        policy names that was never written is `error`. `now`: the clock (default: now, UTC)."""
        from datetime import UTC

        from airduck.metrics.staleness import table_ages

        state = self.lake_state(full=False)
        names = [f"{t.schema}.{t.name}" for t in state.tables]
        return table_ages(names, state.last_change, state.policies, now or datetime.now(UTC))

    def metrics_collector(self, cache_seconds: float = 10.0):
        """A Prometheus collector of the lake gauges (:class:`airduck.metrics.lake.LakeCollector`) over this
        Lakehouse, reading `lake_state` at most every `cache_seconds` (the API server registers it)."""
        from airduck.metrics.lake import LakeCollector

        return LakeCollector(self.lake_state, cache_seconds=cache_seconds)

    def alert_stale(self, ages: list) -> list:
        """Send the `stale` alert for the warn/error tables of `ages` (from `freshness`) to the webhooks of
        `alerts:` that want it; returns the deliveries (:class:`airduck.metrics.alerts.Delivery`)."""
        from airduck.metrics.alerts import send, stale_alert

        alert = stale_alert(self.project.config.name, ages)
        if alert is None or not self.project.config.alerts.webhooks:
            return []
        self.project.require(("alerts",))
        return send(self.project.config.alerts, alert)

    def _metrics_sinks(self) -> list[EventSink]:
        """The run sinks of `metrics:` (Pushgateway, textfile) and `alerts:`, made once per Lakehouse. A part whose
        `${VAR}` is unset is left out with a warning on the log (it never stops a run)."""
        if self._observers is None:
            import logging

            cfg = self.project.config
            sinks: list[EventSink] = []
            for part, wanted in (("metrics", bool(cfg.metrics.pushgateway or cfg.metrics.textfile)),
                                 ("alerts", bool(cfg.alerts.webhooks))):
                if not wanted:
                    continue
                try:
                    self.project.require((part,))
                except AirduckError as exc:
                    logging.getLogger("airduck").warning("%s: left out of runs: %s", part, exc)
                    continue
                if part == "metrics":
                    from airduck.metrics.batch import PrometheusSink

                    sinks.append(PrometheusSink(cfg.metrics, cfg.name, lake=self.lake_state, root=self.project.root))
                else:
                    from airduck.metrics.alerts import AlertSink

                    sinks.append(AlertSink(cfg.alerts, cfg.name))
            self._observers = sinks
        return self._observers
    # -- lineage (issue 12: the built-in graph, OpenLineage events) --------------------------
    def lineage(self, table: str | None = None, *, upstream: bool = True, downstream: bool = True,
                columns: bool = False):
        """The lineage graph of the project (a :class:`airduck.lineage.LineageGraph`; ``.to_dict()`` gives
        ``{"nodes": [{"id", "kind" (source|table|step|mart|export), "name", "layer", "namespace", ...}],
        "edges": [{"source", "target", "role"}], "columns": [...]}``), built from the plan: opens no lake.

        `table`: only what is upstream (`upstream`) and/or downstream (`downstream`) of that table, source or
        step; `columns`: with column lineage (silver rules, dbt models' compiled SQL where sqlglot traces it)."""
        from airduck.lineage import build_graph

        graph = build_graph(self.project, self.plan(), columns=columns, gold_columns=self._gold_columns())
        if table is None:
            return graph
        return graph.around(graph.resolve(table), upstream=upstream, downstream=downstream)

    def lineage_settings(self):
        """Where OpenLineage events go (airduck.lineage.config.Settings): `lineage:` or OpenLineage's settings."""
        from airduck.lineage.config import resolve

        return resolve(self.project.config.lineage, self.project.config.name, self.project.root,
                       {**self.project.env, **os.environ})

    def send_lineage(self) -> dict[str, Any]:
        """Send the kept OpenLineage events (.airduck/lineage/events.jsonl) that a backend has not got yet.
        Returns {"total", "sent", "pending", "targets", "errors", "file", "torn"}."""
        from airduck.errors import ConfigError
        from airduck.lineage.emit import send_kept

        settings = self.lineage_settings()
        if not settings.http:
            raise ConfigError("no OpenLineage backend to send to",
                              hint="set lineage.http.url in airduck.yml, or OPENLINEAGE_URL")
        return send_kept(settings)

    def _lineage_sink(self):
        """The OpenLineage sink of this Lakehouse (kept: a run's START and COMPLETE go through the same one)."""
        if self._lineage is False:
            settings = self.lineage_settings()
            if not settings.enabled:
                self._lineage = None
            else:
                from airduck.lineage.openlineage import OpenLineageSink
                from airduck.pipeline.plan import build_plan

                self._lineage = OpenLineageSink(self.project, settings, lambda: build_plan(self.project),
                                                self._lineage_describe)
        return self._lineage

    def _lineage_describe(self, tables: list[str]) -> dict[str, dict[str, Any]]:
        """Columns, rows, bytes, files and snapshot of lake tables, for the OpenLineage facets."""
        refs = [TableRef.parse(t) for t in tables]
        # during a run, a cursor of the run's own connection (the lake is attached there already: no second attach)
        opener = self._con.cursor if self._con is not None else self.read_session().cursor
        with opener() as cur:
            known = {(r.schema, r.name) for r in catalog.list_tables(cur, True, snapshot=catalog.current_snapshot(cur))}
            refs = [r for r in refs if (r.schema, r.name) in known]
            out = catalog.describe_all(cur, refs) if refs else []
        return {f"{d.schema}.{d.name}": {"columns": [(c.name, c.type) for c in d.columns], "rows": d.row_count,
                                         "bytes": d.file_bytes, "files": d.file_count, "snapshot": d.snapshot_id}
                for d in out}

    def _gold_columns(self):
        """A callable (gold step) -> its column lineage from dbt's compiled SQL, or None without a dbt project."""
        if not self.project.config.gold.dbt_project:
            return None
        from airduck.lineage.dbt import gold_column_lineage

        return gold_column_lineage(self.project)

    # -- storage ----------------------------------------------------------------------------
    def landing(self):
        """The landing zone's object store (raw files as received)."""
        from airduck.storage import open_store

        self.project.require(("lake", "landing"))
        return open_store(self.project.config.lake.landing, storage_settings(self.project), base_dir=self.project.root)

    def data_store(self):
        from airduck.storage import open_store

        return open_store(data_path(self.project), storage_settings(self.project), base_dir=self.project.root)

    def setup(self) -> list[Any]:
        """Create the buckets/folders the project needs; versioning and lifecycle on the landing zone."""
        from airduck.storage import setup_store

        lake = self.project.config.lake
        steps = list(setup_store(self.data_store(), versioning=False, noncurrent_days=None))
        steps += setup_store(self.landing(), versioning=lake.landing_versioning,
                             noncurrent_days=lake.noncurrent_version_days if lake.landing_versioning else None)
        return steps

    # -- REST API (issue 11): table pages, column profiles, table diffs, the object store ---------------
    @translated
    def rows(self, name: str, *, limit: int = 100, offset: int = 0, at: str | int | None = None,
             at_time: str | datetime | None = None, timeout: float | None = None, arrow: bool = False) -> SqlResult:
        """A page of a table (`limit` rows from `offset`, in the table's stored order), now, at a snapshot id or
        tag, or at a time, on the read session. `truncated` says whether more rows follow the page; with `arrow`
        the page is also an Arrow table (`result.arrow`, the table's own types)."""
        if limit < 0 or offset < 0:
            raise SqlError(f"limit and offset must be 0 or more, not {limit} and {offset}")
        if limit > MAX_SQL_LIMIT or offset > MAX_SQL_LIMIT:
            raise SqlError(f"limit and offset must be at most {MAX_SQL_LIMIT:,}")
        ref = TableRef.parse(name)
        session = self.read_session()
        # a page at a snapshot id (given, or the head as the catalog has it now) is the same page while that
        # snapshot exists: kept by (table, snapshot, page) and given again without reading the lake (a tag may move,
        # a time is not a snapshot: those are read each time)
        pinned = int(at) if at is not None and is_id(str(at)) else None
        head = session.head() if (at is None and at_time is None) or pinned is not None else None
        if at is None and at_time is None and head is not None:
            pinned = head[0]
        key = (ref.schema.lower(), ref.name.lower(), pinned, limit, offset, arrow, head[1] if head else None) \
            if pinned is not None and head is not None else None
        if key is not None and (hit := session.pages.get(key)) is not None:
            return hit
        with session.cursor() as cur:
            version = history.resolve_version(cur, at) if pinned is None else pinned
            known = (ref.schema.lower(), ref.name.lower()) in session.relations(cur)
            rel = catalog.read_at(cur, ref, version=version, timestamp=at_time, limit=None, check=not known)
            page = rel.limit(limit + 1, offset)
            seconds = self.project.config.lake.sql_timeout_seconds if timeout is None else timeout
            if arrow:
                table = run_with_time_limit(cur, seconds, page.to_arrow_table)
                more = table.num_rows > limit
                result = SqlResult(rel.columns, [], more, None, limit, arrow=table.slice(0, limit))
            else:
                found = run_with_time_limit(cur, seconds, page.fetchall)
                result = SqlResult(rel.columns, found[:limit], len(found) > limit, None, limit)
        if key is not None:
            session.pages.put(key, result, limit)
        return result

    @translated
    def profile(self, name: str, column: str, *, top: int = 10, at: str | int | None = None,
                at_time: str | datetime | None = None, timeout: float | None = None) -> dict[str, Any]:
        """A column's profile: rows, nulls, distinct values, min, max and the `top` most frequent values."""
        ref = TableRef.parse(name)
        if not 0 <= top <= 1000:
            raise SqlError(f"top must be 0 to 1000, not {top}")
        seconds = self.project.config.lake.sql_timeout_seconds if timeout is None else timeout
        with self.read_session().cursor() as cur:
            version = history.resolve_version(cur, at)
            rel = catalog.read_at(cur, ref, version=version, timestamp=at_time, limit=None)
            types = dict(zip(rel.columns, [str(t) for t in rel.types], strict=True))
            if column not in types:
                raise NotFound(f"{ref} has no column {column!r}", hint=f"columns: {', '.join(rel.columns)}")
            col = catalog.quote_ident(column)
            comparable = not any(k in types[column] for k in ("[]", "STRUCT", "MAP", "UNION"))
            extremes = f"min({col}), max({col})" if comparable else "NULL, NULL"

            def work() -> dict[str, Any]:
                total, nulls, distinct, low, high = rel.aggregate(
                    f"count(*), count(*) - count({col}), count(DISTINCT {col}), {extremes}").fetchone()
                tops = rel.aggregate(f"{col} AS value, count(*) AS n", col).order("n DESC, value ASC NULLS LAST") \
                    .limit(top).fetchall() if comparable and top else []
                return {"table": str(ref), "column": column, "type": types[column], "rows": int(total),
                        "nulls": int(nulls), "distinct": int(distinct), "min": low, "max": high,
                        "top": [{"value": v, "count": int(n)} for v, n in tops]}

            return run_with_time_limit(cur, seconds, work)

    @translated
    def table_changes(self, name: str, start: str | int, end: str | int | None = None, *, limit: int = 100,
                      timeout: float | None = None) -> dict[str, Any]:
        """What changed in a table after snapshot `start` up to `end` (ids or tags; None: now), from DuckLake's
        change feed: the number of rows inserted, deleted and updated, and the first `limit` changed rows
        (`change_type` insert, delete, update_preimage, update_postimage)."""
        ref = TableRef.parse(name)
        if not 0 <= limit <= 100_000:
            raise SqlError(f"limit must be 0 to 100,000, not {limit}")
        seconds = self.project.config.lake.sql_timeout_seconds if timeout is None else timeout
        session = self.read_session()
        with session.cursor() as cur:
            if session.empty:
                raise NotFound(f"no table {ref}", hint="the lake has no catalog yet: nothing was written")
            first = history.resolve_version(cur, start)
            last = history.resolve_version(cur, end) if end is not None else catalog.current_snapshot(cur)
            assert first is not None and last is not None
            if last < first:
                raise SqlError(f"the end snapshot {last} is before the start {first}", hint="swap them")
            catalog.snapshots(cur, ref)  # NotFound when the table never existed
            feed = (f"ducklake_table_changes({catalog.quote_literal(catalog.LAKE)}, {catalog.quote_literal(ref.schema)}, "
                    f"{catalog.quote_literal(ref.name)}, {first + 1}, {last})")

            def work() -> dict[str, Any]:
                if last == first:
                    return {"counts": {}, "columns": [], "rows": []}
                counts = dict(cur.execute(f"SELECT change_type, count(*) FROM {feed} GROUP BY 1").fetchall())
                rel = cur.sql(f"SELECT * FROM {feed} ORDER BY snapshot_id, rowid, change_type LIMIT {int(limit)}")
                return {"counts": counts, "columns": rel.columns, "rows": rel.fetchall()}

            try:
                found = run_with_time_limit(cur, seconds, work)
            except duckdb.Error as exc:
                raise NotFound(f"no changes of {ref} between snapshots {first} and {last}: "
                               f"{redact(str(exc).splitlines()[0])}", hint=f"see `airduck snapshots {ref}`") from None
        counts = found.pop("counts")
        return {"table": str(ref), "from": first, "to": last, "inserted": int(counts.get("insert", 0)),
                "deleted": int(counts.get("delete", 0)), "updated": int(counts.get("update_postimage", 0)), **found}

    def objects(self):
        """The store of unstructured objects (`lake.objects`: a folder, default `.airduck/objects/`, or
        ``s3://bucket/prefix/``), as an :class:`airduck.storage.objects.Objects` (keys checked against escapes)."""
        from airduck.storage import open_store
        from airduck.storage.objects import Objects

        self.project.require(("lake", "objects"), ("lake", "s3"))
        store = open_store(self.project.config.lake.objects, storage_settings(self.project),
                           base_dir=self.project.root)
        return Objects(store)

    # -- web data browser (issue 11, item 4): a table's data files ---------------------------------------------
    @translated
    def table_files(self, name: str) -> list[dict[str, Any]]:
        """The data files of a table now (path, bytes, and its delete file if any), on the read session."""
        ref = TableRef.parse(name)
        with self.read_session().cursor() as cur:
            catalog.require_table(cur, ref)
            return catalog.data_files(cur, ref)

    # -- health -----------------------------------------------------------------------------
    def doctor(self) -> list[Check]:
        """Each check a line: config, extensions, catalog, storage (data and landing)."""
        from airduck.lake.extensions import load_extensions

        checks = [Check("config", True, f"{self.project.file} is valid "
                        f"({len(self.project.config.sources)} sources, {len(self.project.config.silver)} silver tables)")]
        for error in self.project.missing.values():
            checks.append(Check("variables", False, error.message, error.hint))
        if not self.project.has_something_to_run():
            checks.append(Check("pipeline", False, "nothing to run: no sources, silver tables, gold or serve configured",
                                f"add a source under `sources:` in {self.project.file}"))
        try:
            names = needed_extensions(self.project)
        except AirduckError:  # the catalog setting is unusable (e.g. an unset variable): the catalog check says so
            names = ("ducklake",)
        shown = ", ".join(n.removesuffix("_scanner") for n in names)
        try:
            con = duckdb.connect()
            load_extensions(con, names)
            con.close()
            checks.append(Check("extensions", True, f"{shown} load (DuckDB {duckdb.__version__})"))
        except AirduckError as exc:
            checks.append(Check("extensions", False, str(exc), "uv sync (installs the duckdb-extension-* wheels)"))
        catalog_name = redact(self.project.config.lake.catalog)
        try:
            self.close()
            snap = self._existing_snapshot()
            checks.append(Check("catalog", True, f"{catalog_name} (snapshot {snap})"))
        except CatalogMissing:
            checks.append(Check("catalog", True, f"{catalog_name} does not exist yet: `airduck setup` or the first "
                                "`airduck run` creates it"))
        except AirduckError as exc:
            checks.append(Check("catalog", False, exc.message, exc.hint or "check lake.catalog / AIRDUCK_CATALOG"))
        for label, opener in (("data", self.data_store), ("landing", self.landing)):
            try:
                store = opener()
                store.check_writable()
                checks.append(Check(f"storage ({label})", True, f"{store.url} is writable"))
            except AirduckError as exc:
                checks.append(Check(f"storage ({label})", False, exc.message,
                                    exc.hint or "run `airduck setup`, check lake.s3 / AWS_* variables"))
        return checks


def _branch_name(branch: str | None) -> str | None:
    if branch is None or branch == "main":
        return None
    from airduck.lake.branches import check_name

    return check_name(branch)


#: how long the table view of `airduck sql` may spend counting the rows it does not show
COUNT_SECONDS = 5.0
#: the largest row limit (larger ones are no limit in practice, and overflow DuckDB's fetch)
MAX_SQL_LIMIT = 10**12


def _fetch(con: duckdb.DuckDBPyConnection, query: str, limit: int | None, count_all: bool,
           arrow: bool = False) -> SqlResult:
    """Run `query` once; keep at most `limit` rows and tell whether there were more (one extra row is read)."""
    rel = con.sql(query)
    if rel is None:
        raise SqlError("the statement returned no result")
    if arrow:
        table = (rel if limit is None else rel.limit(limit + 1)).to_arrow_table()
        cut = limit is not None and table.num_rows > limit
        table = table.slice(0, limit) if cut else table
        return SqlResult(rel.columns, [], cut, None if cut else table.num_rows, limit, arrow=table)
    if limit is None:
        rows = rel.fetchall()
        return SqlResult(rel.columns, rows, False, len(rows), None)
    rows = rel.fetchmany(limit + 1)
    if len(rows) <= limit:
        return SqlResult(rel.columns, rows, False, len(rows), limit)
    total: int | None = None
    if count_all:  # for "1,000 of N rows shown": counted for a few seconds at most, else "more than 1,000"
        deadline = time.monotonic() + COUNT_SECONDS
        try:
            total = len(rows)
            while chunk := rel.fetchmany(100_000):
                total += len(chunk)
                if time.monotonic() > deadline:
                    total = None
                    break
        except duckdb.InterruptException:
            total = None
    return SqlResult(rel.columns, rows[:limit], True, total, limit)
