"""Gold with real dbt on a real DuckLake (SQLite catalog, local data): build, publish, gates, re-runs.

One project is built once per module (dbt invocations cost seconds); tests run in file order and
the ones that break the project restore it before they end.
"""

from __future__ import annotations

import json
import stat
from pathlib import Path
from typing import Any

import pytest
import yaml

from airduck.errors import DbtError, QualityGateFailed
from airduck.events import Reporter
from airduck.gold import STAGE, build_docs, generated_profile, run_gold
from airduck.lake.commit import write
from airduck.lake.connection import open_lake
from airduck.project import load_project
from tests.support.lake import lake_rows as rows

MODELS = {
    "customer_revenue.sql": """
        select c.customer_id, c.name, c.city, count(*) as orders, sum(o.amount) as revenue
        from silver.customers c  -- lake tables by plain name, as in `airduck sql`
        join {{ source('silver', 'orders') }} o using (customer_id)
        group by all
    """,
    "city_revenue.sql": """
        select city, count(*) as customers, sum(revenue) as revenue
        from {{ ref('customer_revenue') }}
        group by city
    """,
    "big_orders.sql": """
        {{ config(materialized='view') }}
        select order_id, customer_id, amount from silver.orders where amount >= 50
    """,
}
SCHEMA_YML = {
    "version": 2,
    "models": [
        {"name": "customer_revenue", "columns": [
            {"name": "customer_id", "data_tests": ["not_null", "unique"]},
            {"name": "name", "data_tests": ["not_null"]},
        ]},
        {"name": "city_revenue", "columns": [{"name": "city", "data_tests": ["not_null", "unique"]}]},
    ],
}
GOLD_TABLES = ("big_orders", "city_revenue", "customer_revenue")
EXPECTED_SQL = {
    "customer_revenue": """
        SELECT c.customer_id, c.name, c.city, count(*) AS orders, sum(o.amount) AS revenue
        FROM silver.customers c JOIN silver.orders o USING (customer_id) GROUP BY ALL""",
    "city_revenue": """
        SELECT city, count(*) AS customers, sum(revenue) AS revenue FROM (
            SELECT c.city, sum(o.amount) AS revenue FROM silver.customers c JOIN silver.orders o USING (customer_id)
            GROUP BY c.customer_id, c.city) GROUP BY city""",
    "big_orders": "SELECT order_id, customer_id, amount FROM silver.orders WHERE amount >= 50",
}


def write_dbt_project(root: Path) -> Path:
    """A small dbt project in `root/gold`: 3 models over source('silver', ...) and schema tests."""
    dbt_dir = root / "gold"
    (dbt_dir / "models").mkdir(parents=True, exist_ok=True)
    (dbt_dir / "dbt_project.yml").write_text(yaml.safe_dump({
        "name": "marts", "version": "1.0", "config-version": 2, "profile": "not_used",
        "models": {"marts": {"+materialized": "table"}},
    }), encoding="utf-8")
    for name, sql in MODELS.items():
        (dbt_dir / "models" / name).write_text(sql, encoding="utf-8")
    (dbt_dir / "models" / "schema.yml").write_text(yaml.safe_dump(SCHEMA_YML, sort_keys=False), encoding="utf-8")
    return dbt_dir


def project_config() -> dict[str, Any]:
    return {
        "gold": {"dbt_project": "gold/"},
        "sources": {"raw_orders": {"type": "files", "path": "data/*.csv"}},
        "silver": {
            "customers": {"from": "raw_customers", "key": ["customer_id"]},
            "orders": {"from": "raw_orders", "key": ["order_id"]},
            "not_built_yet": {"from": "raw_orders"},
        },
    }


def seed_lake(project) -> None:
    """Silver tables written directly in the lake (plus a quarantine table and a bronze table)."""
    con = open_lake(project)
    try:
        with write(con, "seed silver"):
            con.execute("""CREATE OR REPLACE TABLE silver.customers AS
                SELECT i AS customer_id, 'customer ' || i AS name, ['Paris', 'Berlin', 'Oslo'][i % 3 + 1] AS city
                FROM range(1, 31) t(i)""")
            con.execute("""CREATE OR REPLACE TABLE silver.orders AS
                SELECT i AS order_id, i % 30 + 1 AS customer_id, CAST((i * 37) % 101 AS DECIMAL(10, 2)) AS amount
                FROM range(1, 501) t(i)""")
            con.execute("CREATE OR REPLACE TABLE silver.orders__quarantine AS SELECT 1 AS order_id, 'bad' AS reason")
            con.execute("CREATE OR REPLACE TABLE silver.extra_in_lake AS SELECT 1 AS x")
            con.execute("CREATE OR REPLACE TABLE bronze.raw_customers AS SELECT 1 AS customer_id")
    finally:
        con.close()


def expected(project, model: str) -> list[tuple]:
    con = open_lake(project)
    try:
        return sorted(con.execute(EXPECTED_SQL[model]).fetchall(), key=repr)
    finally:
        con.close()


def lake_tables(project) -> set[str]:
    con = open_lake(project)
    try:
        return {f"{s}.{t}" for s, t in con.execute(
            "SELECT table_schema, table_name FROM information_schema.tables WHERE table_catalog = 'lake'").fetchall()}
    finally:
        con.close()


class Recorder(Reporter):
    def __init__(self) -> None:
        self.events: list[tuple] = []

    def start(self, step, table=None, total=None):
        self.events.append(("start", step, table, total))

    def advance(self, step, table=None, rows=0, done=None):
        self.events.append(("advance", step, table, done))

    def finish(self, step, table=None, status="ok", **stats):
        self.events.append(("finish", step, status))


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One project, seeded and built once: the first gold run of the module."""
    root = tmp_path_factory.mktemp("gold")
    (root / "airduck.yml").write_text(yaml.safe_dump({"name": "gold_test", **project_config()}), encoding="utf-8")
    write_dbt_project(root)
    project = load_project(root)
    seed_lake(project)
    reporter = Recorder()
    artifacts = project.state_dir / "runs" / "run1" / "dbt"
    result = run_gold(project, run_id="run1", reporter=reporter, artifacts_dir=artifacts)
    return {"project": project, "result": result, "reporter": reporter, "artifacts": artifacts}


def test_first_run_publishes_every_mart_to_gold(built):
    project, result = built["project"], built["result"]
    assert sorted(result.published) == [f"gold.{t}" for t in GOLD_TABLES]
    for table in GOLD_TABLES:
        got = rows(project, f"gold.{table}")
        assert got == expected(project, table), table
        assert got  # not an empty mart
    steps = {s.table: s for s in result.steps}
    assert steps["gold.customer_revenue"].rows_out == 30 and steps["gold.customer_revenue"].status == "ok"
    assert steps["gold.city_revenue"].rows_out == 3
    assert steps["gold.big_orders"].rows_out == len(expected(project, "big_orders"))
    assert all(s.layer == "gold" for s in result.steps)
    # the view model was published as a table; staging holds what dbt built
    con = open_lake(project)
    try:
        kinds = dict(con.execute("SELECT table_name, table_type FROM information_schema.tables "
                                 "WHERE table_catalog = 'lake' AND table_schema = 'gold'").fetchall())
        assert kinds == {t: "BASE TABLE" for t in GOLD_TABLES}
        snaps = con.execute("SELECT snapshot_id, changes, commit_message, commit_extra_info FROM lake.snapshots() "
                            "WHERE commit_message = 'publish gold (run run1)'").fetchall()
    finally:
        con.close()
    assert {f"{STAGE}.{t}" for t in GOLD_TABLES} <= lake_tables(project)
    # all marts appear in ONE snapshot, with the run id in its extra info
    assert len(snaps) == 1
    created = set(snaps[0][1]["tables_created"])
    assert {f"gold.{t}" for t in GOLD_TABLES} <= created
    assert json.loads(snaps[0][3])["run_id"] == "run1"


def test_progress_is_reported(built):
    events = built["reporter"].events
    assert events[0][:2] == ("start", "gold")
    advanced = [e[2] for e in events if e[0] == "advance"]
    assert {"customer_revenue", "city_revenue", "big_orders"} <= set(advanced)
    assert any(a.startswith("not_null_customer_revenue") for a in advanced)
    assert events[-1] == ("finish", "gold", "ok")


def test_sources_file_is_generated(built):
    project = built["project"]
    path = project.root / "gold" / "models" / "_airduck_sources.yml"
    text = path.read_text(encoding="utf-8")
    assert text.startswith("# Generated by airduck")
    doc = yaml.safe_load(text)
    sources = {s["name"]: s for s in doc["sources"]}
    assert sources["silver"]["database"] == "lake" and sources["silver"]["schema"] == "silver"
    silver = [t["name"] for t in sources["silver"]["tables"]]
    # config tables (built or not) plus tables found in the lake, never quarantine tables
    assert silver == sorted(["customers", "orders", "not_built_yet", "extra_in_lake"])
    bronze = [t["name"] for t in sources["bronze"]["tables"]]
    assert bronze == ["raw_customers", "raw_orders"]


def test_generated_profile_targets_the_lake(built, tmp_path):
    project = built["project"]
    path = generated_profile(project, tmp_path / "p", "some_schema")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    out = yaml.safe_load(path.read_text())["airduck"]["outputs"]["airduck"]
    assert out["type"] == "duckdb" and out["path"] == ":memory:" and out["database"] == "lake"
    assert out["schema"] == "some_schema" and out["threads"] == 1
    attach = out["attach"][0]
    assert attach["alias"] == "lake"
    assert attach["path"] == f"ducklake:sqlite:{project.state_dir / 'catalog.sqlite'}"
    assert attach["options"]["data_path"] == f"{project.state_dir / 'data'}/"
    assert "extensions" not in out and out["settings"]["autoinstall_known_extensions"] is False
    assert out["settings"]["schema"] == "lake"  # USE lake: models read silver.orders by its plain name
    assert "secrets" not in out  # local data: no S3 secret


def test_artifacts_are_saved(built):
    result, artifacts = built["result"], built["artifacts"]
    assert Path(result.artifacts["manifest"]) == artifacts / "manifest.json"
    assert Path(result.artifacts["run_results"]) == artifacts / "run_results.json"
    manifest = json.loads((artifacts / "manifest.json").read_text())
    assert "model.marts.customer_revenue" in manifest["nodes"]
    run_results = json.loads((artifacts / "run_results.json").read_text())
    statuses = {r["unique_id"]: r["status"] for r in run_results["results"]}
    assert statuses["model.marts.city_revenue"] == "success"
    assert sum(1 for k, v in statuses.items() if k.startswith("test.") and v == "pass") == 5
    assert Path(result.artifacts["log"]).is_file()


def test_second_and_third_runs_are_stable(built):
    project = built["project"]
    before = {t: rows(project, f"gold.{t}") for t in GOLD_TABLES}
    for run_id in ("run2", "run3"):
        result = run_gold(project, run_id=run_id, artifacts_dir=project.state_dir / "runs" / run_id / "dbt")
        assert sorted(result.published) == [f"gold.{t}" for t in GOLD_TABLES]
        assert {t: rows(project, f"gold.{t}") for t in GOLD_TABLES} == before
        counts = {s.table: s.rows_out for s in result.steps}
        assert counts == {f"gold.{t}": len(before[t]) for t in GOLD_TABLES}
    tables = lake_tables(project)
    leftovers = [t for t in tables if "__dbt_tmp" in t or "__dbt_backup" in t]
    assert leftovers == []
    con = open_lake(project)
    try:
        messages = [r[0] for r in con.execute("SELECT commit_message FROM lake.snapshots()").fetchall()]
    finally:
        con.close()
    assert [m for m in messages if m and m.startswith("publish gold")] == [
        "publish gold (run run1)", "publish gold (run run2)", "publish gold (run run3)"]


def test_failing_test_raises_and_leaves_gold_exactly_as_before(built):
    project = built["project"]
    before = {t: rows(project, f"gold.{t}") for t in GOLD_TABLES}
    con = open_lake(project)
    try:
        with write(con, "break a name"):
            con.execute("UPDATE silver.customers SET name = NULL WHERE customer_id = 7")
        # the new data would change every mart: a leak into gold would be visible
        with write(con, "add orders"):
            con.execute("INSERT INTO silver.orders SELECT 1000 + i, 1, 99 FROM range(5) t(i)")
        snapshot_before = con.execute("SELECT max(snapshot_id) FROM lake.snapshots()").fetchone()[0]
    finally:
        con.close()
    try:
        with pytest.raises(QualityGateFailed) as info:
            run_gold(project, run_id="bad", artifacts_dir=project.state_dir / "runs" / "bad" / "dbt")
        assert "not_null_customer_revenue_name" in str(info.value)
        failed = [s for s in info.value.steps if s.status == "failed"]
        assert [s.details["test"] for s in failed] == ["not_null_customer_revenue_name"]
        assert failed[0].table == "gold.customer_revenue"
        # each gold table is listed once: the failed model is not listed again as skipped
        tables = [s.table for s in info.value.steps]
        assert sorted(tables) == [f"gold.{t}" for t in GOLD_TABLES], tables
        assert {s.table: s.status for s in info.value.steps}["gold.city_revenue"] == "skipped"
        assert {t: rows(project, f"gold.{t}") for t in GOLD_TABLES} == before
        con = open_lake(project)
        try:
            messages = [r[0] for r in con.execute(
                "SELECT commit_message FROM lake.snapshots() WHERE snapshot_id > ?", [snapshot_before]).fetchall()]
        finally:
            con.close()
        assert "publish gold (run bad)" not in messages
    finally:
        con = open_lake(project)
        try:
            with write(con, "repair"):
                con.execute("UPDATE silver.customers SET name = 'customer 7' WHERE customer_id = 7")
                con.execute("DELETE FROM silver.orders WHERE order_id >= 1000")
        finally:
            con.close()


def test_model_error_raises_dbt_error_and_select_passes_through(built):
    project = built["project"]
    before = {t: rows(project, f"gold.{t}") for t in GOLD_TABLES}
    broken = project.root / "gold" / "models" / "broken_mart.sql"
    broken.write_text("select no_such_column from {{ ref('customer_revenue') }}", encoding="utf-8")
    try:
        with pytest.raises(DbtError) as info:
            run_gold(project, run_id="err", artifacts_dir=project.state_dir / "runs" / "err" / "dbt")
        assert "broken_mart" in str(info.value) and "no_such_column" in str(info.value)
        assert {t: rows(project, f"gold.{t}") for t in GOLD_TABLES} == before
        # --select: only the chosen model (and its tests) runs, so the broken one is not built
        result = run_gold(project, run_id="sel", select=["city_revenue"],
                          artifacts_dir=project.state_dir / "runs" / "sel" / "dbt")
        assert result.published == ["gold.city_revenue"]
        selected = json.loads(Path(result.artifacts["run_results"]).read_text())["results"]
        assert {r["unique_id"].split(".")[-1] for r in selected if r["unique_id"].startswith("model.")} == {
            "city_revenue"}
    finally:
        broken.unlink()
    assert "gold.broken_mart" not in lake_tables(project)


def test_build_docs(built, tmp_path):
    out = build_docs(built["project"], tmp_path / "docs")
    assert (out / "index.html").is_file()
    catalog = json.loads((out / "catalog.json").read_text())
    assert any(k.endswith("customer_revenue") for k in catalog["nodes"])


def test_docs_through_the_facade_holds_the_gold_lock_and_builds_them(built, tmp_path):
    """`Lakehouse.docs` (what `airduck docs` calls) builds the docs while holding the gold lock of a run."""
    from airduck.lakehouse import Lakehouse
    from airduck.pipeline import locks

    held: list[bool] = []
    real = locks.gold_lock

    def spy(*args: Any, **kwargs: Any):
        held.append(True)
        return real(*args, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(locks, "gold_lock", spy)
        with Lakehouse(built["project"]) as lh:
            out = lh.docs(tmp_path / "facade-docs")
    assert held == [True] and out == tmp_path / "facade-docs"
    assert (out / "index.html").is_file()
    catalog = json.loads((out / "catalog.json").read_text())
    assert any(k.endswith("customer_revenue") for k in catalog["nodes"])


def test_a_run_with_nothing_new_adds_no_snapshot_and_every_snapshot_has_a_message(local_projects):
    """The whole pipeline (files -> silver -> dbt gold) twice: the second run changes nothing, not even the
    snapshot id; new input rebuilds gold; every snapshot (dbt's own too) has a message and an author."""
    from airduck.lakehouse import Lakehouse
    from airduck.pipeline.freshness import StepFreshness
    from tests.integration.test_pipeline_runs import cli

    def columns(**types: str) -> dict[str, Any]:
        return {name: {"type": t} for name, t in types.items()}

    root = local_projects.make({
        "gold": {"dbt_project": "gold/"},
        "sources": {"raw_orders": {"type": "files", "path": "data/orders/*.csv"},
                    "raw_customers": {"type": "files", "path": "data/customers/*.csv"}},
        "silver": {
            "customers": {"from": "raw_customers", "key": ["customer_id"],
                          "columns": columns(customer_id="BIGINT", name="VARCHAR", city="VARCHAR")},
            "orders": {"from": "raw_orders", "key": ["order_id"],
                       "columns": columns(order_id="BIGINT", customer_id="BIGINT", amount="DECIMAL(10,2)")},
        },
    })
    write_dbt_project(root)
    for folder in ("orders", "customers"):
        (root / "data" / folder).mkdir(parents=True)
    (root / "data" / "customers" / "c.csv").write_text(
        "customer_id,name,city\n" + "".join(f"{i},customer {i},{['Paris', 'Oslo'][i % 2]}\n" for i in range(1, 11)))
    (root / "data" / "orders" / "day1.csv").write_text(
        "order_id,customer_id,amount\n" + "".join(f"{i},{i % 10 + 1},{i}.50\n" for i in range(1, 51)))
    with Lakehouse.open(root) as lh:
        first = lh.run()
        assert first.ok and "gold.customer_revenue" in {s.table for s in first.steps if s.status == "ok"}
        snapshot = lh.current_snapshot()
        revenue = lh.con.execute("SELECT sum(revenue) FROM gold.customer_revenue").fetchone()[0]
        second = lh.run()
        assert second.ok and lh.current_snapshot() == snapshot  # nothing new: not even a snapshot
        # one skipped step per model of the plan (issue 10: gold:<model> steps), dbt not started
        gold_steps = [s for s in second.steps if s.layer == "gold"]
        assert {s.table for s in gold_steps} >= {"gold.customer_revenue", "gold.big_orders"}
        assert {(str(s.status), s.details["reason"]) for s in gold_steps} == {("skipped", "unchanged")}
        assert second.record.snapshot_before == second.record.snapshot_after == snapshot
        # new input: gold is rebuilt
        (root / "data" / "orders" / "day2.csv").write_text("order_id,customer_id,amount\n100,1,1000.00\n")
        third = lh.run()
        assert lh.current_snapshot() > snapshot
        assert lh.con.execute("SELECT sum(revenue) FROM gold.customer_revenue").fetchone()[0] == revenue + 1000
        snaps = lh.snapshots()
        # snapshot 0 is DuckLake's own (the catalog's creation); every later one says who and why
        assert [s.snapshot_id for s in snaps if not (s.message and s.author)] == [0]
        run_id = third.record.run_id
        assert any(s.message == f"run {run_id}: dbt build into gold_stage" for s in snaps)
        publish = next(s for s in snaps if s.message == f"publish gold (run {run_id})")
        inserted = ("tables_inserted_into", "inlined_insert")  # small marts are inlined in the catalog
        assert "gold.customer_revenue" in [t for k in inserted for t in publish.tables.get(k, [])]  # names, not ids
        assert all(v.isdigit() for k in inserted for v in publish.changes.get(k, []))  # the ids stay in `changes`
        # a changed model file is a change of its step too (checked without running dbt)
        dbt_dir = root / "gold"
        fresh = StepFreshness(lh.project, lh.con)
        step = lh.plan()["gold:city_revenue"]
        assert fresh.changed(step) is None
        (dbt_dir / "models" / "city_revenue.sql").write_text(MODELS["city_revenue.sql"] + "\n-- changed\n")
        assert fresh.changed(step) == "its model or the dbt project changed"
    proc = cli(root, "runs", "show", run_id)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert "manifest:" in out and str(root / ".airduck" / "runs" / run_id / "dbt") in out.replace("\n", "")
    proc = cli(root, "snapshots", "gold.customer_revenue", "--json")
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert any("gold.customer_revenue" in s["tables"].get(k, []) for s in json.loads(out) for k in inserted)
