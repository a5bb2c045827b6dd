"""OpenLineage events of one demo run (sent to a Marquez-like receiver), and the lineage graph of the demo.

One demo run for the whole module (it is the slow part): its events are checked against the vendored
OpenLineage schemas, for pairs, datasets, parent runs, facets and secrets; the graph CLI reads the same project.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from airduck.errors import ConfigError, NotFound
from airduck.lakehouse import Lakehouse
from airduck.lineage.naming import dataset_name, lake_namespace
from tests.lineage.support import check_pairs, read_events, receiver, validate

API_KEY = "lineage-api-key-7f3a9c2e51"


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    root = tmp_path_factory.mktemp("lineage") / "demo"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRDUCK_", "AWS_", "DEMO_", "OPENLINEAGE_"))}
    done = subprocess.run([sys.executable, "-m", "airduck", "init", "--demo", str(root), "--days", "1"],
                          capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    with receiver() as r:
        config = yaml.safe_load((root / "airduck.yml").read_text())
        config["lineage"] = {"http": {"url": r.url, "api_key": "${LINEAGE_KEY}", "timeout": 5}}
        (root / "airduck.yml").write_text(yaml.safe_dump(config, sort_keys=False))
        (root / ".env").write_text(f"LINEAGE_KEY={API_KEY}\n")
        with Lakehouse.open(root) as lh:
            result = lh.run()
            plan = lh.plan()
            snapshots = {t: lh.snapshots(t)[-1].snapshot_id for t in ("silver.vacancies", "gold.top_growing_skills")}
        yield {"root": root, "receiver": r, "events": read_events(root), "result": result, "plan": plan,
               "snapshots": snapshots, "received": r.events, "headers": list(r.headers), "bodies": list(r.bodies)}


def _of(events, job, state):
    return next(e for e in events if e["job"]["name"] == job and e["eventType"] == state)


def test_every_event_validates_against_the_openlineage_schemas(demo):
    events = demo["events"]
    assert len(events) == 2 + 2 * len(demo["plan"])
    for e in events:
        validate(e)
    check_pairs(events)


def test_each_step_is_a_job_of_the_project_namespace_with_the_run_as_parent(demo):
    events = demo["events"]
    assert events[0]["job"]["name"] == "run" and events[0]["eventType"] == "START"
    assert events[-1]["job"]["name"] == "run" and events[-1]["eventType"] == "COMPLETE"
    parent = events[0]["run"]["runId"]
    steps = [e for e in events if e["job"]["name"] != "run"]
    assert {e["job"]["name"] for e in steps} == set(demo["plan"].ids)
    for e in steps:
        assert e["job"]["namespace"] == "demo"
        assert e["run"]["facets"]["parent"]["run"]["runId"] == parent
        assert e["run"]["facets"]["parent"]["job"] | {"facets": {}} == {"namespace": "demo", "name": "run", "facets": {}}
    # gold: each dbt model is its own job, with its inputs and its output table
    gold = _of(events, "gold:company_hiring_activity", "COMPLETE")
    assert {i["name"] for i in gold["inputs"]} == {"silver.companies", "silver.vacancies"}
    assert [o["name"] for o in gold["outputs"]] == ["gold.company_hiring_activity"]
    assert "select" in gold["job"]["facets"]["sql"]["query"].lower()


def test_every_dataset_a_step_reads_or_writes_appears(demo):
    events = demo["events"]
    with Lakehouse.open(demo["root"]) as lh:
        ns = lake_namespace(lh.project)
    for step in demo["plan"]:
        for state in ("START", "COMPLETE"):
            e = _of(events, step.id, state)
            assert {(i["namespace"], i["name"]) for i in e["inputs"]} == {dataset_name(d, ns) for d in step.inputs}
            assert {(o["namespace"], o["name"]) for o in e["outputs"]} == {dataset_name(d, ns) for d in step.outputs}
    # the naming scheme: landing files, lake tables, exports
    ingest = _of(events, "ingest:vacancies", "COMPLETE")
    root = str(demo["root"])
    assert ingest["inputs"][0]["namespace"] == "file"
    assert ingest["inputs"][0]["name"] == f"{root}/data/vacancies/*.json"
    assert ingest["outputs"][0]["namespace"] == f"ducklake://{root}/.airduck/catalog.sqlite"
    export = _of(events, "export:top_growing_skills", "COMPLETE")
    out = export["outputs"][0]
    assert (out["namespace"], out["name"]) == ("file", f"{root}/exports/top_growing_skills.parquet")
    rows = next(s.rows_out for s in demo["result"].steps if s.step_id == "export:top_growing_skills")
    assert out["outputFacets"]["outputStatistics"]["rowCount"] == rows > 0


def test_complete_events_carry_version_statistics_and_schema(demo):
    e = _of(demo["events"], "silver:vacancies", "COMPLETE")
    out = next(o for o in e["outputs"] if o["name"] == "silver.vacancies")
    assert out["facets"]["version"]["datasetVersion"] == str(demo["snapshots"]["silver.vacancies"])
    with Lakehouse.open(demo["root"]) as lh:
        d = lh.describe("silver.vacancies")
    stats = out["outputFacets"]["outputStatistics"]
    assert stats["rowCount"] == d.row_count and stats["size"] == d.file_bytes > 0
    assert [f["name"] for f in out["facets"]["schema"]["fields"]] == [c.name for c in d.columns]
    assert out["facets"]["dataSource"]["uri"].startswith("ducklake://")
    # silver's generated stage query is the sql job facet
    assert "bronze" in e["job"]["facets"]["sql"]["query"]


def test_quality_results_are_data_quality_facets(demo):
    e = _of(demo["events"], "silver:vacancies", "COMPLETE")
    source = e["inputs"][0]
    assert source["name"] == "bronze.vacancies"
    assertions = {a["assertion"]: a for a in source["inputFacets"]["dataQualityAssertions"]["assertions"]}
    results = {f"{q.check}:{q.name}": q for s in demo["result"].steps for q in s.quality if q.table == "silver.vacancies"}
    assert set(assertions) == set(results) and "expectation:salary_sane" in assertions
    for key, q in results.items():
        assert assertions[key]["success"] is bool(q.passed)
        assert assertions[key]["actual"] == f"{q.rows_failing} failing rows"
    assert not assertions["expectation:salary_sane"]["success"]  # the demo has absurd salaries, dropped
    metrics = source["inputFacets"]["dataQualityMetrics"]
    assert metrics["rowCount"] > 0 and "vacancy_id" in metrics["columnMetrics"]
    gold = _of(demo["events"], "gold:company_hiring_activity", "COMPLETE")["outputs"][0]
    assert all(a["assertion"].startswith("dbt_test:") for a in gold["facets"]["dataQualityAssertions"]["assertions"])


def test_column_lineage_of_a_silver_table_names_its_source_columns(demo):
    e = _of(demo["events"], "silver:vacancies", "COMPLETE")
    fields = next(o for o in e["outputs"] if o["name"] == "silver.vacancies")["facets"]["columnLineage"]["fields"]
    cfg = yaml.safe_load((demo["root"] / "airduck.yml").read_text())["silver"]["vacancies"]["columns"]
    assert set(fields) == set(cfg)
    for col, rule in cfg.items():
        (src,) = fields[col]["inputFields"]
        assert (src["name"], src["field"]) == ("bronze.vacancies", rule.get("from", col))
    assert fields["title"]["inputFields"][0]["transformations"][0]["description"] == "normalised: trim, collapse_spaces"
    assert "cast to DECIMAL(12,2)" in fields["salary_from"]["inputFields"][0]["transformations"][0]["description"]
    # a dbt model: traced through its CTEs by sqlglot
    gold = _of(demo["events"], "gold:company_hiring_activity", "COMPLETE")["outputs"][0]["facets"]["columnLineage"]
    assert [(f["name"], f["field"]) for f in gold["fields"]["company_name"]["inputFields"]] == [("silver.companies",
                                                                                              "name")]


def test_the_receiver_got_every_event_with_the_api_key(demo):
    assert demo["received"] == demo["events"]
    assert all(h.get("Authorization") == f"Bearer {API_KEY}" for h in demo["headers"])


def test_no_secret_in_any_emitted_byte(demo):
    emitted = (demo["root"] / ".airduck" / "lineage" / "events.jsonl").read_bytes() + b"".join(demo["bodies"])
    assert API_KEY.encode() not in emitted and b"LINEAGE_KEY" not in emitted


# -- the graph ----------------------------------------------------------------------------------------------------
def cli(root: Path, *args: str):
    from airduck.cli.app import app

    return CliRunner().invoke(app, ["-p", str(root), "lineage", *args])


def test_graph_json_has_sources_tables_steps_marts_and_exports(demo):
    out = cli(demo["root"], "--json")
    assert out.exit_code == 0, out.output
    g = json.loads(out.output)
    kinds = {n["kind"] for n in g["nodes"]}
    assert kinds == {"source", "table", "step", "export"}
    ids = {n["id"] for n in g["nodes"]}
    assert {"silver.vacancies", "ingest:vacancies", "gold.top_growing_skills", "files:data/vacancies/*.json"} <= ids
    edges = {(e["source"], e["target"]) for e in g["edges"]}
    assert ("bronze.vacancies", "silver:vacancies") in edges and ("silver:vacancies", "silver.vacancies") in edges
    assert g["columns"] == []
    # the graph and the events name datasets alike
    node = next(n for n in g["nodes"] if n["id"] == "silver.vacancies")
    e = _of(demo["events"], "silver:vacancies", "COMPLETE")
    assert (node["namespace"], node["openlineage_name"]) == (e["outputs"][0]["namespace"], e["outputs"][0]["name"])


def test_graph_upstream_downstream_and_columns(demo):
    up = json.loads(cli(demo["root"], "silver.vacancies", "--upstream", "--json").output)
    assert {n["id"] for n in up["nodes"]} == {"files:data/vacancies/*.json", "ingest:vacancies", "bronze.vacancies",
                                              "silver:vacancies", "silver.vacancies"}
    down = json.loads(cli(demo["root"], "silver.companies", "--downstream", "--json").output)
    ids = {n["id"] for n in down["nodes"]}
    assert "gold.company_hiring_activity" in ids and "export:company_hiring_activity.parquet" in ids
    assert "bronze.companies" not in ids and "silver.vacancies" not in ids
    cols = json.loads(cli(demo["root"], "gold.company_hiring_activity", "--upstream", "--columns", "--json").output)
    by = {(c["table"], c["column"]): c for c in cols["columns"]}
    assert [(s["table"], s["column"]) for s in by[("gold.company_hiring_activity", "company_name")]["sources"]] == [
        ("silver.companies", "name")]
    assert by[("silver.companies", "city")]["sources"][0]["column"] == "city"
    assert by[("silver.companies", "city")]["transformation"] == "normalize"


def test_graph_mermaid_dot_and_tree(demo):
    mermaid = cli(demo["root"], "silver.vacancies", "--upstream", "--mermaid", "--columns").output
    assert mermaid.startswith("flowchart LR") and '"bronze.vacancies"' in mermaid and "-->" in mermaid
    assert "bronze.vacancies.title" in mermaid and "|normalize|" in mermaid
    dot = cli(demo["root"], "silver.vacancies", "--dot").output
    assert dot.startswith("digraph lineage {") and '"bronze.vacancies" -> "silver:vacancies";' in dot
    assert '"gold:top_growing_skills" -> "gold.top_growing_skills";' in dot
    tree = cli(demo["root"], "gold.top_growing_skills", "--upstream").output
    assert "gold:top_growing_skills" in tree and "← silver.vacancies" in tree
    bad = cli(demo["root"], "silver.nope")
    assert isinstance(bad.exception, NotFound) and "silver.nope" in str(bad.exception)
    both = cli(demo["root"], "--json", "--dot")
    assert isinstance(both.exception, ConfigError)
