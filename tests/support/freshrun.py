"""A plan run that skips unchanged steps, the way the plan's runner uses airduck.pipeline.freshness:
ingest always, then each silver step when `changed`, the changed dbt models in one `run_models`, then the
changed serve/export steps; every step that succeeded is recorded. Bronze and silver go through the
sequential runner (`Lakehouse.run` with a selection), one silver table per call."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from airduck.core.model import StepKind, StepResult
from airduck.core.plan import Plan
from airduck.lake.connection import open_lake
from airduck.lakehouse import Lakehouse
from airduck.pipeline.freshness import StepFreshness
from airduck.pipeline.plan import build_plan


@dataclass
class FreshRun:
    run_id: str
    status: dict[str, str] = field(default_factory=dict)  # step id -> skipped | ok | warn | failed | upstream failed
    reasons: dict[str, str | None] = field(default_factory=dict)
    gold: dict[str, StepResult] = field(default_factory=dict)
    dbt_started: bool = False
    plan: Plan | None = None

    def ran(self, kind: str | None = None) -> set[str]:
        return {s for s, st in self.status.items() if st != "skipped" and (kind is None or s.startswith(kind + ":"))}


def run_fresh(root: Path, *, run_id: str, full_refresh: bool = False) -> FreshRun:
    from airduck.gold.runner import run_models
    from airduck.serve import export_tables, publish_postgres

    out = FreshRun(run_id)
    with Lakehouse.open(root) as lh:
        project = lh.project
        plan = build_plan(project)
        out.plan = plan
        con = open_lake(project)
        try:
            fresh = StepFreshness(project, con, full_refresh=full_refresh)
            ingest = plan.of_kind(StepKind.INGEST)
            for step in ingest:
                out.reasons[step.id] = fresh.changed(step)
            if ingest:
                lh.run([f"bronze.{s.name}" for s in ingest])
                for step in ingest:
                    fresh.record(step, run_id)
                    out.status[step.id] = "ok"
            for step in plan.of_kind(StepKind.SILVER):
                reason = out.reasons[step.id] = fresh.changed(step)
                if reason is None:
                    out.status[step.id] = "skipped"
                    continue
                lh.run([f"silver.{step.name}"], full_refresh=full_refresh)
                fresh.record(step, run_id)
                out.status[step.id] = "ok"
            gold_steps = plan.of_kind(StepKind.GOLD)
            decisions = fresh.changed_many(gold_steps)
            out.reasons.update(decisions)
            models = [s.name for s in gold_steps if decisions[s.id]]
            if models:
                out.dbt_started = True
                lh.close()
                out.gold = run_models(project, models, run_id=run_id, artifacts_dir=project.state_dir / "runs" / run_id
                                      / "dbt", full_refresh=full_refresh)
            for step in gold_steps:
                if step.name not in out.gold:
                    out.status[step.id] = "skipped"
                    continue
                result = out.gold[step.name]
                out.status[step.id] = str(result.status)
                if result.status in ("ok", "warn"):
                    fresh.record(step, run_id)
                else:
                    fresh.forget(step)
            for kind, publish in ((StepKind.SERVE, publish_postgres), (StepKind.EXPORT, export_tables)):
                steps = plan.of_kind(kind)
                todo = []
                for step in steps:
                    upstream_failed = any(out.status.get(d) in ("failed", "upstream failed") for d in step.depends_on)
                    reason = out.reasons[step.id] = None if upstream_failed else fresh.changed(step)
                    out.status[step.id] = "upstream failed" if upstream_failed else "skipped"
                    if reason is not None:
                        todo.append(step)
                for step in todo:  # one serve:<name> / export:<name> step at a time, as the runner does
                    (result,) = publish(lh.con, project, run_id=run_id, only={step.name})
                    out.status[step.id] = str(result.status)
                    fresh.record(step, run_id)
        finally:
            con.close()
    return out
