"""A run: the project's plan of steps, each step committing its own outputs in one DuckLake transaction.

Order of a run:
1. record `running` (in the run records beside the catalog, not in the lake);
2. one setup transaction creates the system tables every step inserts into (bronze file and cursor state,
   silver watermarks, rejects tables) when they are missing: two steps creating the same table at once is a
   real DuckLake conflict, inserting into it at once is not;
3. the steps run on a thread pool (`threads`), each as soon as the steps it depends on succeeded:
   - ingest:<source> commits bronze.<source>, its rejects and its incremental state together;
   - silver:<table> commits silver.<table>, its quarantine and its watermark together;
   - the gold steps whose upstream succeeded are built by one dbt call (see airduck.gold: staged, published only
     when its tests pass), then serve/export steps publish their marts.
   A step writes under the lock of its output table (airduck.pipeline.locks), so two writers of one table (two
   runs, two processes) take turns and the second sees what the first did. A step that wrote nothing rolls back
   (no snapshot) and is `skipped`. A step that fails (an error, a failed gate) marks every step downstream of it
   `upstream failed`; other branches go on. A reader between two steps sees table A new and table B still old:
   each table is atomic on its own, a run is not.
4. the run's record says which steps ran, failed or were skipped; a failed run raises one RunFailed with it.
"""

from __future__ import annotations

import contextlib
import os
import random
import secrets as _secrets
import threading
import time
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb

from airduck.config.secrets import redact
from airduck.core.context import RunContext
from airduck.core.model import DatasetKind, DatasetVersion, Status, StepKind, StepResult
from airduck.core.plan import Plan, Step
from airduck.errors import (
    AirduckError,
    ConcurrentRunError,
    ConfigError,
    DbtError,
    QualityGateFailed,
    RunFailed,
    SqlError,
)
from airduck.events import (
    EventSink,
    Message,
    RunFinished,
    RunKilled,
    RunStarted,
    StepFailed,
    StepFinished,
    StepReporter,
    StepSkipped,
    StepStarted,
)
from airduck.lake.catalog import TableRef, current_snapshot, table_exists
from airduck.lake.commit import command_line, is_conflict, set_message
from airduck.lake.connection import LAKE
from airduck.pipeline import records
from airduck.pipeline.failpoints import failpoint
from airduck.pipeline.freshness import StepFreshness
from airduck.pipeline.locks import catalog_lock, project_lock
from airduck.pipeline.records import RunRecord

#: attempts of one step whose COMMIT keeps losing races (DuckLake itself first retries commits that do not
#: logically conflict, `ducklake_max_retry_count`)
MAX_ATTEMPTS = 5


def new_run_id() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + _secrets.token_hex(3)


@dataclass
class RunResult:
    record: RunRecord
    steps: list[StepResult] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """The run succeeded (`ok`, or `warned`: some steps warned, e.g. rejected lines or quarantined rows)."""
        return self.record.status in ("ok", "warned")

    @property
    def warned(self) -> bool:
        return self.record.status == "warned"


Timed = tuple[StepResult, datetime, datetime]


class _CommitFailed(Exception):
    """The COMMIT of a step failed (a lost race, or the catalog refused it); nothing of the step is visible."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__(str(cause))
        self.cause = cause


@dataclass
class _Options:
    full_refresh: bool
    reingest: bool
    landing: Any
    sink: EventSink


class _LiveConnection:
    """`cursor()` on the Lakehouse's read-write connection as it is now (gold closes it for dbt on SQLite)."""

    def __init__(self, lh) -> None:
        self.lh = lh

    def cursor(self) -> duckdb.DuckDBPyConnection:
        return self.lh.con.cursor()


class _Run:
    """The state of one run shared by its worker threads: results, records, events."""

    def __init__(self, lh, rec: RunRecord, plan: Plan, opts: _Options) -> None:
        self.lh, self.rec, self.plan, self.opts = lh, rec, plan, opts
        self.full_plan = plan
        self.store = records.RecordStore(lh.project)
        self.done: list[Timed] = []
        self.status: dict[str, str] = {}
        self.errors: dict[str, BaseException] = {}
        self.batches: list[int] = []
        self._lock = threading.Lock()
        #: which steps can be skipped (nothing they read or are changed since they last succeeded)
        self.fresh = StepFreshness(lh.project, _LiveConnection(lh), full_refresh=opts.full_refresh)

    @property
    def sink(self) -> EventSink:
        return self.opts.sink

    def finish(self, step: Step | None, timed: Timed, error: BaseException | None = None) -> None:
        """Record one finished step (thread-safe) and send its event."""
        result, started, finished = timed
        with self._lock:
            no = len(self.done)
            self.done.append(timed)
            if step is not None:
                self.status[step.id] = str(result.status)
                if error is not None:
                    self.errors[step.id] = error
        try:
            self.store.add(self.rec, [timed], start_no=no)
        except Exception as exc:  # records are best effort while the run goes on; the lake is the truth
            self.sink.handle(Message(run_id=self.rec.run_id, text=f"could not record step {result.step_id}: "
                                     f"{redact(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)}",
                                     level="warning"))
        kind = step.kind.value if step else result.layer
        seconds = (finished - started).total_seconds()
        sid = result.step_id or result.table
        if result.status == Status.FAILED:
            err = error if isinstance(error, AirduckError) else None
            self.sink.handle(StepFailed(run_id=self.rec.run_id, step_id=sid, kind=kind, seconds=seconds,
                                        error=redact(result.error or ""), transient=bool(err and err.transient),
                                        error_type=type(error).__name__ if error else "Error",
                                        quality=tuple(result.quality)))
        elif result.status in (Status.SKIPPED, Status.UPSTREAM_FAILED):
            self.sink.handle(StepSkipped(run_id=self.rec.run_id, step_id=sid, kind=kind,
                                         reason=str((result.details or {}).get("reason") or result.status),
                                         upstream_failed=result.status == Status.UPSTREAM_FAILED))
        else:
            snap = next((o.snapshot for o in result.outputs if o.snapshot is not None), None)
            self.sink.handle(StepFinished.of(self.rec.run_id, kind, result, seconds, snapshot=snap))


def run_pipeline(lh, select_items: list[str] | None = None, full_refresh: bool = False,
                 reingest: bool = False, threads: int | None = None, step: str | None = None) -> RunResult:
    """Run the project's plan (or the selected part of it, or exactly one step).

    `select_items`: selectors of airduck.core.plan.Plan.select (``silver.orders+``, ``+gold.x``, layers, step
    ids). `step`: run exactly this step id (``ingest:orders``), not its dependencies (what an orchestrator's task
    calls). `threads`: how many steps run at once (default: the number of cores). `full_refresh` rebuilds silver
    from what bronze holds; `reingest` re-reads the selected sources, replacing their bronze rows and rejects, and
    rebuilds silver too.

    Raises :class:`RunFailed` (the first failure as ``.cause``, this run's record as ``.record``, every step result
    as ``.steps``) after recording the failed run; a run fails with a record even when it fails before its first
    step (a bad selector, an invalid silver rule)."""
    full_refresh = full_refresh or reingest
    project = lh.project
    threads = max(1, int(threads or os.cpu_count() or 1))
    selection = list(select_items or []) + ([f"--step {step}"] if step else [])
    rec = RunRecord(run_id=new_run_id(), status="running", started_at=datetime.now(UTC), command=command_line(),
                    selection=selection, full_refresh=full_refresh)
    sink = lh.events
    run: _Run | None = None
    t0 = time.monotonic()
    try:
        full_plan, plan = _plan(project, select_items, step)
        _validate(project, plan)
        con = lh.con
        store = records.RecordStore(project)
        for dead in records.mark_dead_runs(store, con):  # each marked by this process only: alerted once
            sink.handle(Message(run_id=rec.run_id, level="warning",
                                text=f"run {dead.run_id} had been killed (see `airduck runs show {dead.run_id}`)"))
            sink.handle(RunKilled(run_id=dead.run_id, started_at=dead.started_at, error=redact(dead.error or ""),
                                  found_by=rec.run_id))
        rec.snapshot_before = current_snapshot(con)
        store.add(rec)
        sink.handle(RunStarted(run_id=rec.run_id, steps=tuple(plan.ids), selection=tuple(selection),
                               command=rec.command, full_refresh=full_refresh, threads=threads))
        landing = lh.landing() if plan.of_kind(StepKind.INGEST) else None
        run = _Run(lh, rec, plan, _Options(full_refresh, reingest, landing, sink))
        run.full_plan = full_plan
        _setup(lh, rec, plan)
        _execute(run, threads)
    except BaseException as exc:
        error = _failed(lh, rec, run, exc, t0)
        if error is exc:
            raise
        raise error from exc
    steps = [s for s, _, _ in run.done]
    failed = [s for s in steps if s.status == Status.FAILED]
    rec.batch = max(run.batches) if run.batches else None
    if failed:
        first = next(iter(run.errors.values()), None)
        cause = _as_airduck(first) if first is not None else AirduckError(failed[0].error or "a step failed")
        error = _failed(lh, rec, run, cause, t0)
        raise error from cause
    rec.status = "warned" if any(s.status == Status.WARN for s in steps) else "ok"
    rec.finished_at = datetime.now(UTC)
    _totals(rec, steps)
    rec.snapshot_after = current_snapshot(lh.con)
    run.store.add(rec)
    rec.steps = [_step_dict(i, s, a, b) for i, (s, a, b) in enumerate(run.done, 1)]
    sink.handle(_run_finished(rec, steps, t0))
    return RunResult(rec, steps)


def _run_finished(rec: RunRecord, steps: list[StepResult], t0: float) -> RunFinished:
    return RunFinished(run_id=rec.run_id, status=rec.status, seconds=time.monotonic() - t0,
                       steps_ok=sum(1 for s in steps if s.status in (Status.OK, Status.WARN)),
                       steps_failed=sum(1 for s in steps if s.status == Status.FAILED),
                       steps_skipped=sum(1 for s in steps if s.status in (Status.SKIPPED, Status.UPSTREAM_FAILED)),
                       error=rec.error)


def _as_airduck(exc: BaseException) -> AirduckError:
    from airduck.lake.errors import translate

    if isinstance(exc, AirduckError):
        return exc
    if isinstance(exc, duckdb.Error):
        return translate(exc)
    return AirduckError(f"{type(exc).__name__}: {redact(str(exc))}")


def _failed(lh, rec: RunRecord, run: _Run | None, exc: BaseException, t0: float) -> BaseException:
    """Record the failed run (best effort) and return the error to raise: RunFailed for airduck and DuckDB errors."""
    rec.status = "failed"
    rec.finished_at = datetime.now(UTC)
    rec.error = redact(str(exc)) if isinstance(exc, AirduckError) else redact(f"{type(exc).__name__}: {exc}")
    done = list(run.done) if run else []
    steps = [s for s, _, _ in done]
    _totals(rec, steps)
    rec.steps = [_step_dict(i, s, a, b) for i, (s, a, b) in enumerate(done, 1)]
    recorded = False
    try:
        if rec.snapshot_before is None:  # failed before it started: the lake did not move
            lh.reconnect()
            rec.snapshot_before = current_snapshot(lh.con)
        rec.snapshot_after = current_snapshot(lh.con)
        records.RecordStore(lh.project).add(rec)  # the steps are recorded already, as they finished
        recorded = True
    except Exception:  # the record is best effort; the original error matters
        pass
    lh.events.handle(_run_finished(rec, steps, t0))
    if isinstance(exc, AirduckError | duckdb.Error):
        return RunFailed(_as_airduck(exc), rec, steps, recorded=recorded)
    return exc


def _step_dict(i: int, s: StepResult, started: datetime, finished: datetime) -> dict:
    return {"step_no": i, "step_id": s.step_id, "layer": s.layer, "table_name": s.table, "status": str(s.status),
            "rows_in": s.rows_in, "rows_out": s.rows_out, "rows_quarantined": s.rows_quarantined,
            "rows_rejected": s.rows_rejected, "files": s.files, "started_at": started.isoformat(),
            "finished_at": finished.isoformat(), "details": s.details, "error": s.error}


def _totals(rec: RunRecord, steps: list[StepResult]) -> None:
    rec.rows_in = sum(s.rows_in for s in steps if s.layer == "bronze")
    rec.rows_out = sum(s.rows_out for s in steps if s.layer == "silver")
    rec.rows_quarantined = sum(s.rows_quarantined for s in steps)
    rec.rows_rejected = sum(s.rows_rejected for s in steps)


# -- the plan -------------------------------------------------------------------------------------------------------

def _plan(project, select_items: list[str] | None, step: str | None) -> tuple[Plan, Plan]:
    """The whole plan and the part of it this run executes (`step`: exactly that step; else the selection)."""
    from airduck.pipeline.plan import build_plan, needs_gold

    if step:
        if any(i.strip(" ,") for i in select_items or []):
            raise ConfigError(f"--step {step} does not combine with --select",
                              hint="--step runs exactly that one step; use one or the other")
        kind = step.split(":", 1)[0]
        full = build_plan(project, gold=kind not in ("ingest", "silver"))
        return full, full.subset([full[step].id])
    full = build_plan(project, gold=needs_gold(select_items))
    return full, full.select(select_items)


def _validate(project, plan: Plan) -> None:
    if not len(plan) and not project.has_something_to_run():
        raise ConfigError(f"{project.file}: nothing to run: no sources, silver tables, gold or serve are configured",
                          hint="add a source under `sources:` (see the commented examples in airduck.yml)")
    kinds = {s.kind for s in plan}
    project.require(("lake",), *(("sources", s.name) for s in plan.of_kind(StepKind.INGEST)),
                    *(("silver", s.name) for s in plan.of_kind(StepKind.SILVER)),
                    *((("gold",),) if StepKind.GOLD in kinds else ()),
                    *((("serve",),) if kinds & {StepKind.SERVE, StepKind.EXPORT} else ()))
    if StepKind.SILVER in kinds:
        from airduck.silver import validate_rules

        validate_rules(project)


# -- setup ----------------------------------------------------------------------------------------------------------

def _setup(lh, rec: RunRecord, plan: Plan) -> None:
    """Create the tables that parallel steps insert into, in one transaction, when any is missing (no snapshot
    otherwise). Two steps creating the same table at once conflict in DuckLake; inserting into it at once does not."""
    from airduck.bronze.state import FILES_REF, WATERMARKS_REF, ensure_state_tables
    from airduck.bronze.table import ensure_rejects_table, rejects_ref
    from airduck.silver.build import STATE, ensure_state

    ingest = [s.name for s in plan.of_kind(StepKind.INGEST)]
    silver = plan.of_kind(StepKind.SILVER)
    if not ingest and not silver:
        return
    wanted = [FILES_REF, WATERMARKS_REF, STATE] + [rejects_ref(n) for n in ingest]

    def missing(con: duckdb.DuckDBPyConnection) -> bool:
        return any(not table_exists(con, ref) for ref in wanted)

    con = lh.con
    if not missing(con):
        return
    for attempt in range(1, MAX_ATTEMPTS + 1):
        with project_lock(lh.project, "airduck.setup"), catalog_lock(lh.project), _lake_con(lh) as cur:
            try:
                cur.execute("BEGIN TRANSACTION")
                if not missing(cur):
                    cur.execute("ROLLBACK")
                    return
                set_message(cur, f"run {rec.run_id}: setup", step="setup", run_id=rec.run_id)
                ensure_state_tables(cur)
                ensure_state(cur)
                for name in ingest:
                    ensure_rejects_table(cur, name)
                try:
                    cur.execute("COMMIT")
                    return
                except duckdb.Error as exc:
                    _rollback(cur)
                    if attempt == MAX_ATTEMPTS or not is_conflict(exc):
                        raise
            except BaseException:
                _rollback(cur)
                raise
        time.sleep(_backoff(attempt))


# -- executing the plan ---------------------------------------------------------------------------------------------

def _execute(run: _Run, threads: int) -> None:
    """Run every step of the plan as soon as its upstream succeeded, at most `threads` at once. All gold steps
    whose upstream succeeded are built by one call (one dbt build), once nothing outside gold they wait for runs."""
    plan = run.plan
    pending = {s.id: s for s in plan}
    running: dict[Future, list[Step]] = {}
    gold_ids = {s.id for s in plan.of_kind(StepKind.GOLD)}
    with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="airduck-step") as pool:
        try:
            while pending or running:
                _mark_upstream_failed(run, pending)
                ready = [s for s in list(pending.values()) if s.id not in gold_ids
                         and all(run.status.get(d) is not None and Status(run.status[d]).succeeded
                                 for d in s.depends_on)]
                for s in ready:
                    del pending[s.id]
                    running[pool.submit(_run_step, run, s)] = [s]
                gold = [s for s in pending.values() if s.id in gold_ids]
                if gold and not any(st.kind == StepKind.GOLD for group in running.values() for st in group):
                    outside = {d for s in gold for d in plan.upstream_of([s.id]) if d not in gold_ids}
                    if all(d in run.status or d not in {p.id for p in plan} for d in outside):
                        for s in gold:
                            del pending[s.id]
                        running[pool.submit(_run_gold_steps, run, gold)] = gold
                if not running:
                    if pending:  # nothing can start and nothing runs: upstream never finished (not in the plan)
                        for s in list(pending.values()):
                            del pending[s.id]
                            _upstream_failed(run, s, "upstream did not run")
                    break
                finished, _ = wait(list(running), return_when=FIRST_COMPLETED)
                for fut in finished:
                    group = running.pop(fut)
                    exc = fut.exception()
                    if exc is not None:  # _run_step records its own failures; this is a bug or an interrupt
                        raise exc
                    del group
        except BaseException:
            for fut in running:
                fut.cancel()
            raise


def _mark_upstream_failed(run: _Run, pending: dict[str, Step]) -> None:
    changed = True
    while changed:
        changed = False
        for s in list(pending.values()):
            bad = [d for d in s.depends_on if run.status.get(d) in (Status.FAILED, Status.UPSTREAM_FAILED)]
            if bad:
                del pending[s.id]
                _upstream_failed(run, s, f"upstream failed: {', '.join(bad)}")
                changed = True


def _upstream_failed(run: _Run, step: Step, reason: str) -> None:
    now = datetime.now(UTC)
    result = StepResult(step.layer, _main_table(step), status=Status.UPSTREAM_FAILED, step_id=step.id,
                        details={"reason": reason})
    run.finish(step, (result, now, now))


def _main_table(step: Step) -> str:
    lake = [d for d in step.outputs if d.kind == DatasetKind.LAKE]
    if lake:
        return lake[0].name
    if step.kind == StepKind.INGEST:
        return f"bronze.{step.name}"
    if step.kind == StepKind.SILVER:
        return f"silver.{step.name}"
    if step.kind == StepKind.GOLD:
        return f"gold.{step.name}"
    return step.id


def _run_step(run: _Run, step: Step) -> None:
    """Run one non-gold step and record how it ended (never raises for the step's own errors)."""
    started = datetime.now(UTC)
    run.sink.handle(StepStarted(run_id=run.rec.run_id, step_id=step.id, kind=step.kind.value,
                                inputs=tuple(DatasetVersion(d) for d in step.inputs)))
    try:
        if step.kind != StepKind.INGEST:  # sources are always read: finding new data is the step's job
            with catalog_lock(run.lh.project):
                reason = run.fresh.changed(step)
            if reason is None:
                now = datetime.now(UTC)
                run.finish(step, (StepResult(step.layer, _main_table(step), status=Status.SKIPPED, step_id=step.id,
                                             details={"reason": "unchanged"}), started, now))
                return
        else:
            reason = "sources are always read for new data"
        if step.kind in (StepKind.INGEST, StepKind.SILVER):
            results = [_lake_step(run, step)]
        else:
            results = _run_serve(run.lh, step, run.rec, run.sink)
        results[0].details = {**(results[0].details or {}), "ran_because": reason}
        if step.kind != StepKind.INGEST and Status(str(results[0].status)).succeeded:
            with catalog_lock(run.lh.project):
                run.fresh.record(step, run.rec.run_id)
    except Exception as exc:
        error = _step_error(step, exc)
        result = StepResult(step.layer, _main_table(step), status=Status.FAILED, step_id=step.id,
                            error=redact(str(error)))
        result.quality = list(getattr(exc, "quality", None) or [])
        try:
            with catalog_lock(run.lh.project):
                run.fresh.forget(step)
        except Exception:  # the step failed anyway; forgetting its state is best effort
            pass
        run.finish(step, (result, started, datetime.now(UTC)), error)
        return
    finished = datetime.now(UTC)
    main, *extra = results
    for r in extra:  # e.g. one result per served table: recorded, the step's status is the first one's
        r.step_id = r.step_id or step.id
        run.finish(None, (r, started, finished))
    run.finish(step, (main, started, finished))


def _step_error(step: Step, exc: BaseException) -> AirduckError:
    """The airduck error a step's failure stands for. A DuckDB error raised by the step's own SQL is never a
    conflict, whatever its text says (a value 'no conflict here' in the data): only COMMIT failures are."""
    if isinstance(exc, _CommitFailed):
        return ConcurrentRunError(f"{step.id}: other writers kept committing first; gave up after {MAX_ATTEMPTS} "
                                  f"attempts, nothing of this step was written ({_first(exc.cause)})",
                                  hint="run again")
    if isinstance(exc, AirduckError):
        return exc
    if isinstance(exc, duckdb.Error):
        error = _as_airduck(exc)
        if isinstance(error, ConcurrentRunError):
            from airduck.errors import RuleError

            kind = RuleError if step.kind == StepKind.SILVER else SqlError
            return kind(f"{step.id}: {_first(exc)}")
        return error
    return AirduckError(f"{step.id}: {type(exc).__name__}: {redact(str(exc))}")


def _first(exc: BaseException) -> str:
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    return redact(lines[0]) if lines else type(exc).__name__


def _backoff(attempt: int) -> float:
    return min(0.2 * 2**attempt, 4.0) * (0.5 + random.random())


def _rollback(con: duckdb.DuckDBPyConnection) -> None:
    try:
        con.execute("ROLLBACK")
    except duckdb.Error:
        pass


def next_batch(con: duckdb.DuckDBPyConnection, table: TableRef) -> int:
    """The `_batch` of a write of `table`, read inside the step's transaction after taking the table's lock.

    Silver reads a table's new rows as ``_batch > <the last batch it read>``, so batches must grow in COMMIT order
    per table; nothing needs them to be ordered across tables. Writers of one table take turns (its lock is held
    from before BEGIN to after COMMIT), so this transaction sees every earlier commit of the table, and
    ``max(last batch of the table + 1, current snapshot + 1)`` is larger than every batch the table holds or held:
    the snapshot term keeps it growing after a reingest emptied the table (earlier batches were at most the
    snapshot they were read at + 1). A writer that started earlier but commits later is impossible: it would hold
    the lock."""
    snap = current_snapshot(con)
    last = 0
    if table_exists(con, table):
        from airduck.lake.catalog import columns

        if any(c.name == "_batch" for c in columns(con, table)):
            last = int(con.execute(f'SELECT coalesce(max("_batch"), 0) FROM {table.sql}').fetchone()[0])
    return max(snap + 1, last + 1)


def _shared_catalog(project) -> bool:
    """PostgreSQL catalogs take concurrent transactions from cursors of one DuckDB instance; a SQLite catalog does
    not (a connection that has read the lake keeps a SQLite read lock that makes every other connection's COMMIT
    fail with "database is locked"), so there every step uses the Lakehouse's one connection, one at a time."""
    from airduck.lake.connection import catalog_kind

    return catalog_kind(project.config.lake.catalog) == "postgres"


@contextmanager
def _lake_con(lh) -> Iterator[duckdb.DuckDBPyConnection]:
    """The connection a step's transaction runs on: its own cursor (PostgreSQL catalog) or, under the catalog lock,
    the Lakehouse's connection (SQLite catalog)."""
    if not _shared_catalog(lh.project):
        yield lh.con
        return
    cur = lh.con.cursor()
    try:
        yield cur
    finally:
        cur.close()


def _lake_step(run: _Run, step: Step) -> StepResult:
    """An ingest or silver step: its own transaction on its own cursor, under its output table's lock; a COMMIT that
    loses a race is retried (this step only, with backoff)."""
    lh, rec = run.lh, run.rec
    ref = TableRef.parse(_main_table(step))
    notify = lambda: run.sink.handle(Message(  # noqa: E731
        run_id=rec.run_id, step_id=step.id, level="warning", text=f"{step.id}: waiting for another writer of {ref}"))
    for attempt in range(1, MAX_ATTEMPTS + 1):
        with project_lock(lh.project, ref.qualified, notify=notify, what=f"the lock of {ref}"), \
                catalog_lock(lh.project):
            try:
                result = _lake_transaction(run, step, ref)
            except _CommitFailed as exc:
                if attempt == MAX_ATTEMPTS:
                    raise
                run.sink.handle(Message(run_id=rec.run_id, step_id=step.id, level="warning",
                                        text=f"{step.id}: another writer committed first ({_first(exc.cause)}); "
                                             f"retrying (attempt {attempt + 1} of {MAX_ATTEMPTS})"))
                delay = _backoff(attempt)
            else:
                result.details["commit_attempts"] = attempt
                return result
        time.sleep(delay)
    raise AssertionError("unreachable")


def _lake_transaction(run: _Run, step: Step, ref: TableRef) -> StepResult:
    lh, rec = run.lh, run.rec
    message = f"run {rec.run_id}: {step.id}"
    with _lake_con(lh) as cur:
        return _in_transaction(run, step, ref, cur, message)


def _in_transaction(run: _Run, step: Step, ref: TableRef, cur: duckdb.DuckDBPyConnection, message: str
                    ) -> StepResult:
    from airduck.bronze import ingest_source
    from airduck.silver import build_silver

    lh, rec, opts = run.lh, run.rec, run.opts
    project = lh.project
    try:
        cur.execute("BEGIN TRANSACTION")
        set_message(cur, message, step=step.id, run_id=rec.run_id)
        read_at = current_snapshot(cur)
        existed = table_exists(cur, ref)
        batch = next_batch(cur, ref)
        ctx = RunContext(project, cur, rec.run_id, batch, opts.landing, opts.full_refresh,
                         StepReporter(opts.sink, rec.run_id, step.id), reingest=opts.reingest, step_id=step.id)
        if step.kind == StepKind.INGEST:
            result = ingest_source(ctx, step.name, project.config.sources[step.name])
        else:
            result = build_silver(ctx, step.name, project.config.silver[step.name])
        result.step_id = step.id
        result.details = dict(result.details or {})
        result.details["batch"] = batch
        result.inputs = [DatasetVersion(d, read_at if d.kind == DatasetKind.LAKE else None) for d in step.inputs]
        failpoint(f"before-commit:{step.id}")
        failpoint("before-commit")
        if not opts.full_refresh and not _wrote(result) and existed:
            _rollback(cur)  # nothing new: no snapshot
            result.status = Status.SKIPPED
            result.details["reason"] = "no new data"
            result.outputs = [DatasetVersion(d, read_at) for d in step.outputs]
            return result
        try:
            cur.execute("COMMIT")
        except duckdb.Error as exc:
            _rollback(cur)
            raise _CommitFailed(exc) from exc
        with run._lock:
            run.batches.append(batch)
        written = _committed_snapshot(cur, message)
        result.outputs = [DatasetVersion(d, written, result.rows_out if i == 0 else None)
                          for i, d in enumerate(step.outputs)]
        return result
    except BaseException:
        _rollback(cur)
        raise


def _wrote(step: StepResult) -> bool:
    """Did a bronze/silver step write anything (rows, rejects, quarantine, changed rows, a new file's state)?"""
    d = step.details or {}
    changed = any(d.get(k) for k in ("inserted", "updated", "deleted", "closed_versions", "columns_added",
                                      "rebuild_requested"))
    return bool(step.rows_out or step.rows_quarantined or step.rows_rejected or step.files or changed)


def _committed_snapshot(con: duckdb.DuckDBPyConnection, message: str) -> int | None:
    row = con.execute(f"SELECT max(snapshot_id) FROM {LAKE}.snapshots() WHERE commit_message = ?",
                      [message]).fetchone()
    return int(row[0]) if row and row[0] is not None else None


def artifacts_dir(project, run_id: str) -> Path:
    path = project.state_dir / "runs" / run_id
    path.mkdir(parents=True, exist_ok=True)
    return path


# -- gold and serving -----------------------------------------------------------------------------------------------

def _run_gold_steps(run: _Run, steps: list[Step]) -> None:
    started = datetime.now(UTC)
    for s in steps:
        run.sink.handle(StepStarted(run_id=run.rec.run_id, step_id=s.id, kind=s.kind.value,
                                    inputs=tuple(DatasetVersion(d) for d in s.inputs)))
    try:
        pairs, error = _run_gold(run.lh, steps, run.rec, run.full_plan, run.sink, run.fresh)
    except Exception as exc:  # a bug around dbt: every gold step failed
        error = _step_error(steps[0], exc)
        pairs = [(s, StepResult("gold", _main_table(s), status=Status.FAILED, step_id=s.id, error=redact(str(error))))
                 for s in steps]
    finished = datetime.now(UTC)
    for s, result in pairs:
        run.finish(s, (result, started, finished), error if result.status == Status.FAILED else None)


def _run_gold(lh, steps: list[Step], rec: RunRecord, plan: Plan, sink: EventSink, fresh: StepFreshness | None = None
              ) -> tuple[list[tuple[Step | None, StepResult]], AirduckError | None]:
    """Build the gold steps whose inputs or model changed (all of them with --full-refresh) with ONE `dbt build`
    of their models (airduck.gold.run_models); every model that built and passed its tests is published, the
    others keep their gold table. Unchanged steps are skipped and dbt is not started when none changed. Returns a
    result per gold step and the error of the first failed one (a failed test: QualityGateFailed)."""
    from airduck.gold import run_models
    from airduck.pipeline.locks import gold_lock

    reporter = StepReporter(sink, rec.run_id, "gold")
    with catalog_lock(lh.project):
        decisions = fresh.changed_many(steps) if fresh is not None else {s.id: "always" for s in steps}
    out: list[tuple[Step | None, StepResult]] = []
    now = [s for s in steps if decisions.get(s.id)]
    for s in steps:
        if not decisions.get(s.id):
            out.append((s, StepResult("gold", _main_table(s), status=Status.SKIPPED, step_id=s.id,
                                      details={"reason": "unchanged"})))
    if not now:
        if steps:
            reporter.message("gold: no model and nothing a model reads changed; dbt not started")
        return out, None
    target = artifacts_dir(lh.project, rec.run_id) / "dbt"
    with gold_lock(lh.project, reporter, lh.project.config.gold.timeout), catalog_lock(lh.project):
        if not _shared_catalog(lh.project):
            lh.close()  # dbt opens the lake in its own process; our SQLite read lock would fail its commits
        read = sorted({d.name for s in now for d in s.inputs if d.name.split(".", 1)[0] in ("bronze", "silver")})
        results = run_models(lh.project, [s.name for s in now], run_id=rec.run_id, reporter=reporter,
                             artifacts_dir=target, full_refresh=rec.full_refresh, sources=read)
    if target.exists():
        rec.artifacts["dbt"] = str(target)
    for key in ("manifest.json", "run_results.json"):
        if (target / key).is_file():
            rec.artifacts[key.split(".")[0]] = str(target / key)
    error: AirduckError | None = None
    for s in now:
        r = results.get(s.name) or StepResult("gold", _main_table(s), status=Status.FAILED, step_id=s.id,
                                               error="dbt reported nothing for this model")
        r.step_id = s.id
        r.details = {**(r.details or {}), "ran_because": decisions.get(s.id)}
        if fresh is not None:
            with catalog_lock(lh.project):
                if Status(str(r.status)).succeeded:
                    fresh.record(s, rec.run_id)
                else:
                    fresh.forget(s)
        if r.status == Status.FAILED and error is None:
            tests = [q.name for q in r.quality if q.check == "dbt_test" and not q.passed and q.action == "fail"]
            gate = bool(tests)
            text = (f"gold:{s.name}: dbt test {', '.join(tests[:3])} failed: {r.error or 'failed'}" if gate
                    else f"gold:{s.name}: {r.error or 'failed'}")
            error = (QualityGateFailed(text, hint="its gold table was not changed; other models were published")
                     if gate else DbtError(text, hint=f"dbt log: {target / 'logs' / 'dbt.log'}"))
        out.append((s, r))
    return out, error


def _run_serve(lh, step: Step, rec: RunRecord, sink: EventSink) -> list[StepResult]:
    """A serve:<name> or export:<name> step: its mart published to PostgreSQL, or exported (the first result is the
    step's own)."""
    from airduck.serve import export_tables, publish_postgres

    reporter = StepReporter(sink, rec.run_id, step.id)
    # serve steps of a project publish into one PostgreSQL schema, one at a time: two sessions running
    # `CREATE SCHEMA IF NOT EXISTS` at once make one fail (PostgreSQL's unique index on schema names)
    serving = (project_lock(lh.project, "serve.postgres", what="the PostgreSQL marts")
               if step.kind == StepKind.SERVE else contextlib.nullcontext())
    with serving, catalog_lock(lh.project), _lake_con(lh) as cur:
        publish = publish_postgres if step.kind == StepKind.SERVE else export_tables
        results = publish(cur, lh.project, run_id=rec.run_id, reporter=reporter, only={step.name})
    if not results:
        return [StepResult(step.layer, step.id, status=Status.SKIPPED, step_id=step.id,
                           details={"reason": "nothing to publish"})]
    for r in results:
        r.step_id = step.id
    return results


