"""`airduck run` as the freshness tests look at it: per step, its status, why it ran (None: skipped as unchanged),
the gold results of the models that were built, and whether dbt was started."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from airduck.core.model import StepResult
from airduck.core.plan import Plan
from airduck.errors import RunFailed
from airduck.lakehouse import Lakehouse


@dataclass
class FreshRun:
    run_id: str
    status: dict[str, str] = field(default_factory=dict)  # step id -> skipped | ok | warn | failed | upstream failed
    reasons: dict[str, str | None] = field(default_factory=dict)  # why each step ran; None: skipped, unchanged
    gold: dict[str, StepResult] = field(default_factory=dict)  # model -> its result, for models dbt built
    dbt_started: bool = False
    plan: Plan | None = None
    failed: RunFailed | None = None

    def ran(self, kind: str | None = None) -> set[str]:
        """Steps that were executed (an ingest step with no new data too); not those skipped as unchanged."""
        return {s for s in self.status if self.reasons.get(s) is not None and (kind is None or s.startswith(kind + ":"))}


def run_fresh(root: Path, *, run_id: str | None = None, full_refresh: bool = False, atomic: bool = False) -> FreshRun:
    """One real `Lakehouse.run()` of the project at `root` (`atomic`: `run --atomic`; a failed run is kept in
    `.failed`, not raised)."""
    with Lakehouse.open(root) as lh:
        out = FreshRun(run_id or "", plan=lh.plan())
        try:
            result = lh.run(full_refresh=full_refresh, atomic=atomic)
            steps, rec = result.steps, result.record
        except RunFailed as exc:
            out.failed = exc
            steps, rec = exc.steps, exc.record
    out.run_id = rec.run_id
    out.dbt_started = "dbt" in rec.artifacts
    for r in steps:
        if r.step_id is None:
            continue
        out.status[r.step_id] = str(r.status)
        out.reasons[r.step_id] = (r.details or {}).get("ran_because")
        if r.step_id.startswith("gold:") and out.reasons[r.step_id] is not None:
            out.gold[r.step_id.split(":", 1)[1]] = r
    return out
