"""A run: bronze and silver as ONE lake transaction (write-audit-publish), then gold and serving.

Order of a run:
1. record `running` (own small transaction);
2. BEGIN; take the run lock (a one-row UPDATE: two runs cannot both commit); bronze for each selected
   source; silver in dependency order (expectations and gates checked here); the run's step records; COMMIT.
   Any error (a failed gate, a bad file config, a kill -9) means nothing of it is visible: the lake stays at the
   snapshot it had. A concurrent run that committed first makes this one roll back and retry from scratch;
   the retry sees what the other run ingested, so nothing is duplicated.
3. gold: dbt builds into a staging schema; only if all its tests pass are the marts published to `gold` in one
   transaction (see airduck.gold);
4. serve: marts are published to PostgreSQL (atomic swap) and exported.
"""

from __future__ import annotations

import secrets as _secrets
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import duckdb

from airduck.config.secrets import redact
from airduck.core.context import RunContext
from airduck.core.model import StepResult
from airduck.errors import AirduckError, ConcurrentRunError, ConfigError, RunFailed
from airduck.lake.catalog import current_snapshot
from airduck.lake.commit import command_line, is_conflict, set_message
from airduck.pipeline import records
from airduck.pipeline.failpoints import failpoint
from airduck.pipeline.records import RunRecord
from airduck.pipeline.selection import Selection, select

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


def run_pipeline(lh, select_items: list[str] | None = None, full_refresh: bool = False,
                 reingest: bool = False) -> RunResult:
    """Run the project (or the selected part of it).

    `full_refresh` rebuilds silver from what bronze holds; `reingest` re-reads the selected sources, replacing their
    bronze rows and rejects, and rebuilds silver too.

    Raises :class:`RunFailed` (the cause as ``.cause``/``__cause__``, the failed run's record as ``.record``)
    after recording the failed run; a run fails with a record even when it fails before its first step
    (a bad selector, an invalid silver rule)."""
    full_refresh = full_refresh or reingest
    project = lh.project
    reporter = lh.reporter
    rec = RunRecord(run_id=new_run_id(), status="running", started_at=datetime.now(UTC), command=command_line(),
                    selection=list(select_items or []), full_refresh=full_refresh)
    store = records.RecordStore(project)
    done: list[Timed] = []
    try:
        sel: Selection = select(project.config, select_items)
        _validate(project, sel)
        con = lh.con
        if sel.sources or sel.silver:
            records.ensure_lock(con)
        for run_id in records.mark_dead_runs(store, con):
            reporter.message(f"run {run_id} had been killed (see `airduck runs show {run_id}`)", "warning")
        rec.snapshot_before = current_snapshot(con)
        store.add(rec)
        if sel.sources or sel.silver:
            done += _bronze_silver(lh, rec, sel, full_refresh, reingest)
        store.add(rec, done)
        if sel.gold:
            done += _gold(lh, rec, sel, store, len(done), full_refresh)
        if sel.serve:
            done += _serve(lh, rec, store, len(done))
    except BaseException as exc:
        error = _failed(lh, rec, store, done, exc)
        if error is exc:
            raise
        raise error from exc
    rec.status = "warned" if any(s.status == "warn" for s, _, _ in done) else "ok"
    rec.finished_at = datetime.now(UTC)
    _totals(rec, [s for s, _, _ in done])
    rec.snapshot_after = current_snapshot(lh.con)
    store.add(rec)
    reporter.finish("run", None, rec.status, run_id=rec.run_id)
    result = RunResult(rec, [s for s, _, _ in done])
    rec.steps = [_step_dict(i, s, a, b) for i, (s, a, b) in enumerate(done, 1)]
    return result


def _failed(lh, rec: RunRecord, store: records.RecordStore, done: list[Timed], exc: BaseException) -> BaseException:
    """Record the failed run (best effort) and return the error to raise: RunFailed for airduck and DuckDB errors."""
    from airduck.lake.errors import translate

    rec.status = "failed"
    rec.finished_at = datetime.now(UTC)
    rec.error = redact(str(exc)) if isinstance(exc, AirduckError) else redact(f"{type(exc).__name__}: {exc}")
    failed = getattr(exc, "step_results", None) or []
    _totals(rec, [s for s, _, _ in done] + [s for s, _, _ in failed])
    rec.steps = [_step_dict(i, s, a, b) for i, (s, a, b) in enumerate(done + failed, 1)]
    recorded = False
    try:
        lh.reconnect()
        if rec.snapshot_before is None:  # failed before it started: the lake did not move
            rec.snapshot_before = current_snapshot(lh.con)
        rec.snapshot_after = current_snapshot(lh.con)
        store.add(rec, failed, start_no=len(done))  # the steps in `done` are recorded already
        recorded = True
    except Exception:  # the record is best effort; the original error matters
        pass
    lh.reporter.finish("run", None, "failed", run_id=rec.run_id)
    if isinstance(exc, AirduckError | duckdb.Error):
        cause = translate(exc)
        return RunFailed(cause, rec, [s for s, _, _ in done + failed], recorded=recorded)
    return exc


def _step_dict(i: int, s: StepResult, started: datetime, finished: datetime) -> dict:
    return {"step_no": i, "layer": s.layer, "table_name": s.table, "status": s.status, "rows_in": s.rows_in,
            "rows_out": s.rows_out, "rows_quarantined": s.rows_quarantined, "rows_rejected": s.rows_rejected,
            "files": s.files, "started_at": started.isoformat(), "finished_at": finished.isoformat(),
            "details": s.details, "error": s.error}


def _totals(rec: RunRecord, steps: list[StepResult]) -> None:
    rec.rows_in = sum(s.rows_in for s in steps if s.layer == "bronze")
    rec.rows_out = sum(s.rows_out for s in steps if s.layer == "silver")
    rec.rows_quarantined = sum(s.rows_quarantined for s in steps)
    rec.rows_rejected = sum(s.rows_rejected for s in steps)


def _validate(project, sel: Selection) -> None:
    if sel.empty and not project.has_something_to_run():
        raise ConfigError(f"{project.file}: nothing to run: no sources, silver tables, gold or serve are configured",
                          hint="add a source under `sources:` (see the commented examples in airduck.yml)")
    project.require(("lake",), *(("sources", n) for n in sel.sources), *(("silver", n) for n in sel.silver),
                    *((("gold",),) if sel.gold else ()), *((("serve",),) if sel.serve else ()))
    if sel.silver:
        from airduck.silver import validate_rules

        validate_rules(project)


def _bronze_silver(lh, rec: RunRecord, sel: Selection, full_refresh: bool, reingest: bool = False) -> list[Timed]:
    from airduck.bronze import ingest_source
    from airduck.silver import build_silver, silver_order

    project = lh.project
    reporter = lh.reporter
    landing = lh.landing()
    order = [n for n in silver_order(project.config.silver) if n in sel.silver]
    for attempt in range(1, MAX_ATTEMPTS + 1):
        con = lh.con
        steps: list[Timed] = []
        con.execute("BEGIN TRANSACTION")
        try:
            set_message(con, f"run {rec.run_id}: bronze+silver", step="bronze+silver", run_id=rec.run_id)
            batch = records.take_lock(con, rec.run_id)
            ctx = RunContext(project, con, rec.run_id, batch, landing, full_refresh, reporter, reingest=reingest)
            for name in sel.sources:
                steps.append(_timed(reporter, "bronze", f"bronze.{name}",
                                    lambda n=name, c=ctx: ingest_source(c, n, project.config.sources[n])))
            failpoint("after-bronze")
            for name in order:
                steps.append(_timed(reporter, "silver", f"silver.{name}",
                                    lambda n=name, c=ctx: build_silver(c, n, project.config.silver[n])))
            rec.batch = batch
            failpoint("before-commit")
            if not full_refresh and not any(_wrote(s) for s, _, _ in steps):
                con.execute("ROLLBACK")  # nothing new: no snapshot (the run lock is not taken either)
                rec.batch = None
                return steps
            con.execute("COMMIT")
            rec.committed_snapshot = _committed_snapshot(con, rec.run_id)
            return steps
        except BaseException as exc:
            try:
                con.execute("ROLLBACK")
            except Exception:
                pass
            conflict = isinstance(exc, ConcurrentRunError) or (isinstance(exc, duckdb.Error) and is_conflict(exc))
            if not conflict:
                rolled_back = [(StepResult(**{**s.__dict__, "status": "rolled back"}), a, b) for s, a, b in steps]
                failed = getattr(exc, "failed_step", None)
                exc.step_results = rolled_back + ([failed] if failed else [])  # type: ignore[attr-defined]
                raise
            if attempt == MAX_ATTEMPTS:
                raise ConcurrentRunError(
                    f"other runs kept committing first; gave up after {attempt} attempts, nothing of this run was written",
                    hint="run again when the other runs have finished",
                ) from None
            reporter.message(f"another run committed first; retrying (attempt {attempt + 1} of {MAX_ATTEMPTS})",
                             "warning")
            lh.reconnect()
            time.sleep(min(0.25 * 2**attempt, 4.0))
    raise AssertionError("unreachable")


def _wrote(step: StepResult) -> bool:
    """Did a bronze/silver step write anything (rows, rejects, quarantine, changed rows, a new file's state)?"""
    d = step.details or {}
    changed = any(d.get(k) for k in ("inserted", "updated", "deleted", "closed_versions", "columns_added",
                                      "rebuild_requested"))
    return bool(step.rows_out or step.rows_quarantined or step.rows_rejected or step.files or changed)


def _committed_snapshot(con, run_id: str) -> int | None:
    row = con.execute("SELECT max(snapshot_id) FROM lake.snapshots() WHERE commit_message = ?",
                      [f"run {run_id}: bronze+silver"]).fetchone()
    return int(row[0]) if row and row[0] is not None else None


def _timed(reporter, layer: str, table: str, fn) -> Timed:
    started = datetime.now(UTC)
    reporter.start(layer, table)
    try:
        result: StepResult = fn()
    except BaseException as exc:
        reporter.finish(layer, table, "failed")
        failed = StepResult(layer, table, status="failed", error=redact(str(exc)),
                            quality=list(getattr(exc, "quality", None) or []))  # a failed gate's results
        exc.failed_step = (failed, started, datetime.now(UTC))  # type: ignore[attr-defined]
        raise
    finished = datetime.now(UTC)
    reporter.finish(layer, table, result.status, rows_in=result.rows_in, rows_out=result.rows_out,
                    quarantined=result.rows_quarantined, rejected=result.rows_rejected, files=result.files)
    return result, started, finished


def artifacts_dir(project, run_id: str) -> Path:
    path = project.state_dir / "runs" / run_id
    path.mkdir(parents=True, exist_ok=True)
    return path


def _gold(lh, rec: RunRecord, sel: Selection, store: records.RecordStore, step_no: int,
          full_refresh: bool = False) -> list[Timed]:
    from airduck.gold import run_gold

    started = datetime.now(UTC)
    lh.close()  # dbt opens the lake in its own process
    target = artifacts_dir(lh.project, rec.run_id) / "dbt"
    from airduck.pipeline.locks import gold_lock

    # a plain `airduck run` does not rebuild gold when nothing it depends on changed (no new snapshot);
    # --full-refresh or an explicit selection always builds
    skip_unchanged = not (full_refresh or rec.selection)
    try:
        with gold_lock(lh.project, lh.reporter, lh.project.config.gold.timeout):
            result = run_gold(lh.project, run_id=rec.run_id, select=sel.dbt_select, reporter=lh.reporter,
                              artifacts_dir=target, skip_unchanged=skip_unchanged)
        if result.unchanged_since is None:
            rec.artifacts["dbt"] = str(target)
    except AirduckError as exc:
        if target.exists():
            rec.artifacts["dbt"] = str(target)
        exc.step_results = [(s, started, datetime.now(UTC)) for s in getattr(exc, "steps", None) or []]
        if lh.project.config.gold.on_failure == "revert" and rec.committed_snapshot is not None:
            exc.step_results.append((_revert(lh, rec), started, datetime.now(UTC)))
        raise
    rec.artifacts.update(result.artifacts)
    finished = datetime.now(UTC)
    timed = [(s, started, finished) for s in result.steps]
    store.add(rec, timed, start_no=step_no)
    return timed


def _revert(lh, rec: RunRecord) -> StepResult:
    """Gold failed: undo this run's bronze+silver commit (as a new snapshot), so nothing of the run stays.
    Skipped (and said so) when another run has committed since: undoing would not be safe then."""
    from airduck.lake.commit import write
    from airduck.lake.history import undo_snapshot

    con = lh.con
    step = StepResult("revert", f"snapshot {rec.committed_snapshot}")
    holder = con.execute(f"SELECT run_id FROM {records.LOCK}").fetchone()[0]
    if holder != rec.run_id:
        step.status = "skipped"
        step.error = f"run {holder} committed after this one; bronze+silver of this run were kept"
        lh.reporter.message(step.error, "warning")
        return step
    try:
        with write(con, f"run {rec.run_id}: revert bronze+silver (gold failed)", step="revert", run_id=rec.run_id):
            tables = undo_snapshot(con, rec.committed_snapshot)
    except Exception as exc:
        step.status = "failed"
        step.error = f"could not revert bronze+silver: {redact(str(exc))}"
        lh.reporter.message(step.error, "error")
        return step
    step.details = {"tables": tables}
    lh.reporter.message(f"gold failed: reverted this run's bronze+silver ({len(tables)} tables)", "warning")
    return step


def _serve(lh, rec: RunRecord, store: records.RecordStore, step_no: int) -> list[Timed]:
    from airduck.serve import export_tables, publish_postgres

    serve = lh.project.config.serve
    started = datetime.now(UTC)
    results: list[StepResult] = []
    if serve.postgres:
        results += publish_postgres(lh.con, lh.project, run_id=rec.run_id, reporter=lh.reporter)
    if serve.export:
        results += export_tables(lh.con, lh.project, run_id=rec.run_id, reporter=lh.reporter)
    finished = datetime.now(UTC)
    timed = [(s, started, finished) for s in results]
    if timed:
        store.add(rec, timed, start_no=step_no)
    return timed
