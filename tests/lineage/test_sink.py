"""The OpenLineage sink on its own, fed typed events of a plan with a served mart and an export: names, statistics,
ABORT for a step not run, and the pairs of a run that failed before it started (no lake, no run)."""

from __future__ import annotations

from types import SimpleNamespace

from airduck.core.model import Dataset, DatasetKind, DatasetVersion, StepKind
from airduck.core.plan import Plan, Step
from airduck.events import Fanout, RunFinished, RunStarted, StepFinished, StepSkipped, StepStarted
from airduck.lineage.config import Settings
from airduck.lineage.openlineage import OpenLineageSink
from tests.lineage.support import check_pairs, read_events, validate


def _project(tmp_path):
    return SimpleNamespace(config=SimpleNamespace(name="shop", lake=SimpleNamespace(catalog="postgres:host=pg dbname=lk"),
                                                  silver={}),
                           state_dir=tmp_path / ".airduck", resolve=lambda p: str(tmp_path / p), root=tmp_path)


def _plan():
    mart = Dataset(DatasetKind.POSTGRES_MART, "marts.daily", "postgres://bi.local:5432/bi")
    export = Dataset(DatasetKind.EXPORT, "daily.parquet", "s3://exports/shop/")
    return Plan([
        Step("serve:daily", StepKind.SERVE, "daily", (Dataset.lake("gold.daily"),), (mart,)),
        Step("export:daily", StepKind.EXPORT, "daily", (Dataset.lake("gold.daily"),), (export,)),
    ])


def test_marts_exports_abort_and_a_run_that_failed_before_it_started(tmp_path):
    project = _project(tmp_path)
    settings = Settings(True, "shop", tmp_path / ".airduck" / "lineage" / "events.jsonl")  # the file only
    sink = OpenLineageSink(project, settings, _plan)
    fan = Fanout([sink])
    fan.handle(RunStarted(run_id="r1", steps=("serve:daily", "export:daily")))
    fan.handle(StepStarted(run_id="r1", step_id="serve:daily", kind="serve"))
    fan.handle(StepFinished(run_id="r1", step_id="serve:daily", kind="serve", status="ok", seconds=1.0, rows_out=42,
                            outputs=(DatasetVersion(_plan()["serve:daily"].outputs[0]),)))
    fan.handle(StepSkipped(run_id="r1", step_id="export:daily", kind="export", reason="upstream failed: x",
                           upstream_failed=True))
    fan.handle(RunFinished(run_id="r1", status="failed", seconds=2.0, steps_failed=1, error="boom"))
    # a run that failed before RunStarted (an invalid selector): its START comes first all the same
    fan.handle(RunFinished(run_id="r2", status="failed", seconds=0.1, error="--select x: no step"))
    assert not fan.broken
    events = read_events(tmp_path)
    for e in events:
        validate(e)
    check_pairs(events)
    serve = [e for e in events if e["job"]["name"] == "serve:daily"][-1]
    out = serve["outputs"][0]
    assert (out["namespace"], out["name"]) == ("postgres://bi.local:5432", "bi.marts.daily")
    assert out["outputFacets"]["outputStatistics"]["rowCount"] == 42
    assert serve["inputs"][0] == serve["inputs"][0] | {"namespace": "ducklake://pg:5432/lk", "name": "gold.daily"}
    export = [e for e in events if e["job"]["name"] == "export:daily"]
    assert [e["eventType"] for e in export] == ["START", "ABORT"]
    assert (export[0]["outputs"][0]["namespace"], export[0]["outputs"][0]["name"]) == ("s3://exports",
                                                                                       "shop/daily.parquet")
    r2 = [e for e in events if e["job"]["name"] == "run"][-2:]
    assert [e["eventType"] for e in r2] == ["START", "FAIL"] and r2[0]["run"]["runId"] == r2[1]["run"]["runId"]
    assert "no step" in r2[1]["run"]["facets"]["errorMessage"]["message"]
