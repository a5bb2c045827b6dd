"""Skipping what has not changed: table versions from the catalog, step fingerprints and their store, and whole
runs with real dbt and a real PostgreSQL serving database (airduck.pipeline.freshness, gold.run_models)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml

from airduck.lake.commit import write
from airduck.lake.connection import open_lake
from airduck.lakehouse import Lakehouse
from airduck.pipeline.freshness import StepStateStore, table_versions
from airduck.project import load_project
from tests.support.freshrun import run_fresh
from tests.support.lake import lake_rows


# -- table versions ---------------------------------------------------------------------------------------------
def test_table_versions_follow_every_change_of_contents_and_only_those(projects):
    root = projects.make({})
    project = load_project(root)
    con = open_lake(project)
    try:
        def snap() -> int:
            return int(con.execute("SELECT id FROM lake.current_snapshot()").fetchone()[0])

        with write(con, "create"):
            con.execute("CREATE TABLE silver.a AS SELECT 1 AS x")  # small: inlined in the catalog
            con.execute("CREATE TABLE silver.b AS SELECT range AS x FROM range(200000)")  # a data file
        created = snap()
        v = table_versions(con)
        assert v["silver.a"] == created and v["silver.b"] == created
        with write(con, "inlined insert"):
            con.execute("INSERT INTO silver.a VALUES (2)")
        assert table_versions(con)["silver.a"] == snap()
        assert table_versions(con)["silver.b"] == created  # another table's change is not b's
        with write(con, "delete"):
            con.execute("DELETE FROM silver.b WHERE x < 10")
        deleted = snap()
        assert table_versions(con)["silver.b"] == deleted
        with write(con, "update"):
            con.execute("UPDATE silver.a SET x = 3 WHERE x = 2")
        assert table_versions(con)["silver.a"] == snap()
        with write(con, "alter"):
            con.execute("ALTER TABLE silver.b ADD COLUMN y INTEGER")
        altered = snap()
        assert table_versions(con)["silver.b"] == altered
        with write(con, "insert file"):
            con.execute("INSERT INTO silver.b SELECT range, 1 FROM range(200000)")
        inserted = snap()
        assert table_versions(con)["silver.b"] == inserted
        # maintenance moves rows between files and out of the catalog: no change of contents
        con.execute("CALL ducklake_flush_inlined_data('lake')")
        con.execute("CALL ducklake_merge_adjacent_files('lake')")
        assert snap() > inserted
        v = table_versions(con)
        assert v["silver.b"] == inserted and v["silver.a"] < inserted
        with write(con, "recreate"):
            con.execute("CREATE OR REPLACE TABLE silver.a AS SELECT 9 AS x")
        assert table_versions(con)["silver.a"] == snap()
        with write(con, "drop"):
            con.execute("DROP TABLE silver.a")
        assert "silver.a" not in table_versions(con)
    finally:
        con.close()


# -- a whole project ---------------------------------------------------------------------------------------------
MODELS = {
    "customer_revenue.sql": """
        select c.customer_id, c.city, count(*) as orders, sum(o.amount) as revenue
        from {{ source('silver', 'customers') }} c join {{ source('silver', 'orders') }} o using (customer_id)
        group by all
    """,
    "city_revenue.sql": "select city, sum(revenue) as revenue from {{ ref('customer_revenue') }} group by city",
    # reads silver by its plain name: dbt does not know it as a source
    "customer_cities.sql": "select city, count(*) as customers from silver.customers group by city",
}
SCHEMA = {"version": 2, "models": [
    {"name": "customer_revenue", "columns": [{"name": "customer_id", "data_tests": ["not_null", "unique"]}]},
    {"name": "customer_cities", "columns": [
        {"name": "city", "data_tests": ["not_null", {"accepted_values": {"values": ["paris", "oslo"]}}]},
    ]},
]}


def cols(**types: str) -> dict[str, Any]:
    return {name: {"type": t} for name, t in types.items()}


def config(serving: str, export_dir: Path) -> dict[str, Any]:
    return {
        "gold": {"dbt_project": "gold/"},
        "sources": {"orders": {"type": "files", "path": "data/orders/*.csv"},
                    "customers": {"type": "files", "path": "data/customers/*.csv"}},
        "silver": {
            "customers": {"from": "customers", "key": ["customer_id"],
                          "columns": cols(customer_id="BIGINT", name="VARCHAR", city="VARCHAR")},
            "orders": {"from": "orders", "key": ["order_id"],
                       "columns": cols(order_id="BIGINT", customer_id="BIGINT", amount="DECIMAL(10,2)")},
        },
        "serve": {
            "postgres": {"dsn": serving, "schema": "marts",
                         "tables": ["gold.customer_revenue", {"table": "gold.customer_cities", "name": "cities"}]},
            "export": {"path": str(export_dir), "tables": ["gold.city_revenue"]},
        },
    }


def write_project(root: Path) -> None:
    models = root / "gold" / "models"
    models.mkdir(parents=True, exist_ok=True)
    (root / "gold" / "dbt_project.yml").write_text(yaml.safe_dump({
        "name": "marts", "version": "1.0", "config-version": 2, "profile": "x",
        "models": {"marts": {"+materialized": "table"}}}))
    for name, sql in MODELS.items():
        (models / name).write_text(sql)
    (models / "schema.yml").write_text(yaml.safe_dump(SCHEMA, sort_keys=False))
    for folder in ("orders", "customers"):
        (root / "data" / folder).mkdir(parents=True, exist_ok=True)
    (root / "data" / "customers" / "c.csv").write_text(
        "customer_id,name,city\n" + "".join(f"{i},customer {i},{['paris', 'oslo'][i % 2]}\n" for i in range(1, 11)))
    write_orders(root, "day1.csv", 1, 50)


def write_orders(root: Path, name: str, start: int, n: int) -> None:
    (root / "data" / "orders" / name).write_text(
        "order_id,customer_id,amount\n" + "".join(f"{i},{i % 10 + 1},{i}.50\n" for i in range(start, start + n)))


SILVER_GOLD_SERVE = {"silver:orders", "silver:customers", "gold:customer_revenue", "gold:city_revenue",
                     "gold:customer_cities", "serve:customer_revenue", "serve:cities", "export:city_revenue"}


def dbt_logs(root: Path) -> list[tuple[Path, int]]:
    """Every dbt log of the project (builds, and the parse that reads dbt's graph for the plan) with its mtime."""
    return sorted((p, p.stat().st_mtime_ns) for p in (root / ".airduck").rglob("dbt.log"))


def snapshot(root: Path) -> int:
    with Lakehouse.open(root) as lh:
        return lh.current_snapshot()


def served(dsn: str, table: str) -> list[tuple]:
    with psycopg.connect(dsn) as conn:
        return sorted(conn.execute(f"SELECT * FROM {table}").fetchall(), key=repr)


@pytest.fixture(params=["sqlite-local", "pg-local"])
def scenario(request, tmp_path, pg_database):
    from tests.conftest import ProjectFactory

    serving = pg_database()
    root = ProjectFactory(request.param, tmp_path, request).make(config(serving, tmp_path / "exports"))
    write_project(root)
    return root, serving


def test_unchanged_steps_are_skipped_and_changed_ones_run(scenario):
    root, serving = scenario
    first = run_fresh(root, run_id="r1")
    plan = first.plan
    assert first.ran() == {s.id for s in plan}, first.status
    assert all(first.reasons[s] == "never ran" for s in SILVER_GOLD_SERVE)
    assert served(serving, "marts.cities") == [("oslo", 5), ("paris", 5)]
    logs = dbt_logs(root)
    assert len(logs) == 2  # the parse for the plan, the build
    assert set(plan.ids) == SILVER_GOLD_SERVE | {
        "ingest:orders", "ingest:customers"}

    # no new data: only ingest runs (it discovers nothing); dbt is not started, nothing is published or written
    before = snapshot(root)
    second = run_fresh(root, run_id="r2")
    assert second.ran() == {"ingest:orders", "ingest:customers"}
    assert {s: second.status[s] for s in SILVER_GOLD_SERVE} == dict.fromkeys(SILVER_GOLD_SERVE, "skipped")
    assert not second.dbt_started and dbt_logs(root) == logs
    assert not (root / ".airduck" / "runs" / second.run_id / "dbt").exists()
    assert snapshot(root) == before
    # the state is kept beside the run records, not in the lake
    with Lakehouse.open(root) as lh:
        state = StepStateStore(lh.project).load()
    assert {s.id for s in plan if not s.id.startswith("ingest:")} <= set(state)  # sources are always read
    assert state["gold:city_revenue"].run_id == first.run_id
    # shared state tables (airduck.*) are not part of a fingerprint
    assert set(state["silver:orders"].detail.outputs) == {"silver.orders", "silver.orders__quarantine"}
    assert set(state["silver:orders"].detail.inputs) == {"bronze.orders"}
    assert set(state["gold:customer_cities"].detail.inputs) == {"silver.customers"}  # found in its SQL

    # new orders: silver.orders and the models that read it (and what serves them) run; the rest is skipped
    write_orders(root, "day2.csv", 100, 5)
    before_day2 = snapshot(root)
    third = run_fresh(root, run_id="r3")
    assert third.ran() - {"ingest:orders", "ingest:customers"} == {
        "silver:orders", "gold:customer_revenue", "gold:city_revenue", "serve:customer_revenue",
        "export:city_revenue"}, third.reasons
    assert third.reasons["silver:orders"].startswith("bronze.orders changed")
    assert third.reasons["gold:city_revenue"] == "gold:customer_revenue runs"
    assert set(third.gold) == {"customer_revenue", "city_revenue"}
    published = third.gold["customer_revenue"].outputs[0]
    assert str(published.dataset) == "gold.customer_revenue" and published.snapshot is not None
    assert published.rows == 10
    with Lakehouse.open(root) as lh:
        total = lh.con.execute("SELECT sum(revenue) FROM gold.customer_revenue").fetchone()[0]
        assert total == sum(i + 0.5 for i in range(1, 51)) + sum(i + 0.5 for i in range(100, 105))
    assert sum(r[3] for r in served(serving, "marts.customer_revenue")) == total
    latest = json.loads((root.parent / "exports" / "city_revenue" / "_latest.json").read_text())
    assert latest["run_id"] == third.run_id
    # ... and the run after that skips all of it again
    fourth = run_fresh(root, run_id="r4")
    assert fourth.ran() == {"ingest:orders", "ingest:customers"} and not fourth.dbt_started

    # a changed silver rule re-runs that silver step
    data = yaml.safe_load((root / "airduck.yml").read_text())
    data["silver"]["customers"]["columns"]["city"]["normalize"] = ["trim"]
    (root / "airduck.yml").write_text(yaml.safe_dump(data, sort_keys=False))
    fifth = run_fresh(root, run_id="r5")
    assert fifth.reasons["silver:customers"] == "its rule changed"
    assert "silver:customers" in fifth.ran() and "silver:orders" not in fifth.ran()
    assert run_fresh(root, run_id="r5b").ran() == {"ingest:orders", "ingest:customers"}

    # a changed model file re-runs that model (and what reads it), nothing else
    (root / "gold" / "models" / "city_revenue.sql").write_text(MODELS["city_revenue.sql"] + "\n-- changed\n")
    sixth = run_fresh(root, run_id="r6")
    assert sixth.ran() - {"ingest:orders", "ingest:customers"} == {"gold:city_revenue", "export:city_revenue"}
    assert sixth.reasons["gold:city_revenue"] == "its model or the dbt project changed"
    assert set(sixth.gold) == {"city_revenue"}

    # a rolled-back silver table runs again (and the models reading it)
    with Lakehouse.open(root) as lh:
        lh.rollback("silver.orders", before_day2)
        assert lh.con.execute("SELECT count(*) FROM silver.orders").fetchone()[0] == 50
    seventh = run_fresh(root, run_id="r7")
    assert seventh.reasons["silver:orders"].startswith("silver.orders was changed since this step wrote it")
    assert {"silver:orders", "gold:customer_revenue", "gold:city_revenue"} <= seventh.ran()
    with Lakehouse.open(root) as lh:  # the run caught up again: the rolled-back rows are back
        assert lh.con.execute("SELECT count(*) FROM silver.orders").fetchone()[0] == 55

    # --full-refresh rebuilds everything
    last = run_fresh(root, run_id="r8", full_refresh=True)
    assert last.ran() == {s.id for s in plan}
    assert all(last.reasons[s] == "full refresh" for s in SILVER_GOLD_SERVE)


def test_a_failing_dbt_test_publishes_the_other_models_and_not_it(tmp_path, pg_database, local_projects):
    serving = pg_database()
    root = local_projects.make(config(serving, tmp_path / "exports"))
    write_project(root)
    first = run_fresh(root, run_id="r1")
    plan = first.plan
    assert first.ran() == {s.id for s in plan}
    project = load_project(root)
    revenue_before = lake_rows(project, "gold.customer_revenue")
    cities_before = lake_rows(project, "gold.customer_cities")

    # a city the accepted_values test of customer_cities refuses, and new orders for customer_revenue
    (root / "data" / "customers" / "c2.csv").write_text("customer_id,name,city\n11,customer 11,rome\n")
    write_orders(root, "day2.csv", 100, 5)
    second = run_fresh(root, run_id="r2")
    assert second.status["gold:customer_cities"] == "failed"
    assert "accepted_values" in second.gold["customer_cities"].details["test"]
    assert second.gold["customer_cities"].outputs == []
    failing = [q for q in second.gold["customer_cities"].quality if not q.passed]  # dbt's tests as quality results
    assert [q.table for q in failing] == ["gold.customer_cities"] and "accepted_values" in failing[0].name
    assert lake_rows(project, "gold.customer_cities") == cities_before  # unchanged in gold
    assert served(serving, "marts.cities") == [("oslo", 5), ("paris", 5)]
    assert second.status["serve:cities"] == "upstream failed"
    # the others were built and published in the same run
    assert second.status["gold:customer_revenue"] == "ok" and second.status["gold:city_revenue"] == "ok"
    assert lake_rows(project, "gold.customer_revenue") != revenue_before
    assert len(lake_rows(project, "gold.customer_revenue")) == 10  # customer 11 has no orders
    assert second.status["serve:customer_revenue"] == "ok"

    # a test failing upstream: dbt skips the models below it, they are `upstream failed`, gold keeps them
    models = root / "gold" / "models"
    (models / "customer_revenue.sql").write_text(MODELS["customer_revenue.sql"] + "\nunion all select 1, 'x', 1, 1\n")
    city_before = lake_rows(project, "gold.city_revenue")
    third = run_fresh(root, run_id="r3")
    assert third.status["gold:customer_revenue"] == "failed"
    assert third.gold["customer_revenue"].details["test"].startswith("unique_customer_revenue")
    assert third.status["gold:city_revenue"] == "upstream failed"
    assert lake_rows(project, "gold.city_revenue") == city_before
    assert third.status["export:city_revenue"] == "upstream failed"
    # the failed step has no stored state: it runs again next time
    (models / "customer_revenue.sql").write_text(MODELS["customer_revenue.sql"])
    fourth = run_fresh(root, run_id="r4")
    assert fourth.reasons["gold:customer_revenue"] == "never ran"
    assert fourth.status["gold:customer_revenue"] == "ok" and fourth.status["gold:city_revenue"] == "ok"


# -- atomic runs (docs/branches.md, "Step state of branches") ---------------------------------------------------
LAKE_TABLES = ("bronze.orders", "bronze.customers", "silver.orders", "silver.customers", "gold.customer_revenue",
               "gold.city_revenue", "gold.customer_cities")
INGEST = {"ingest:orders", "ingest:customers"}
SERVE = {"serve:customer_revenue", "serve:cities", "export:city_revenue"}  # run after the merge, on main


def data_sums(lh: Lakehouse) -> dict[str, tuple[int, int]]:
    """Row count and an order-independent checksum of each table's data columns (not airduck's `_` columns: load
    ids, run ids, times and file names differ between two projects)."""
    out = {}
    for t in LAKE_TABLES:
        cols = ", ".join(f'"{r[0]}"' for r in lh.con.execute(f"DESCRIBE {t}").fetchall() if not r[0].startswith("_"))
        out[t] = lh.con.execute(f"SELECT count(*), coalesce(sum(hash({cols})), 0) FROM {t}").fetchone()
    return out


def test_atomic_runs_skip_what_a_plain_run_skips_and_publish_their_state(projects, pg_database, tmp_path):
    roots = {}
    for mode in ("plain", "atomic"):  # the same project twice: one run plainly, one with --atomic
        roots[mode] = projects.make(config(pg_database(), tmp_path / f"exports-{mode}"), name=mode)
        write_project(roots[mode])

    def both(run_id: str) -> dict[str, Any]:
        return {m: run_fresh(r, run_id=run_id, atomic=m == "atomic") for m, r in roots.items()}

    def checksums(mode: str) -> dict:
        with Lakehouse.open(roots[mode]) as lh:
            assert lh.branches() == []  # an atomic run's branch is gone once it merged (or had nothing to merge)
            return data_sums(lh)

    first = both("r1")
    assert first["atomic"].ran() == first["plain"].ran() - SERVE == {s.id for s in first["plain"].plan} - SERVE
    assert checksums("atomic") == checksums("plain")

    # no new input: the atomic run's branch starts with main's step state, so it skips what a plain run skips
    before = snapshot(roots["atomic"])
    second = both("r2")
    for mode in roots:
        assert second[mode].ran() == INGEST, (mode, second[mode].reasons)
        assert not second[mode].dbt_started
    assert all(second["atomic"].status[s] == "skipped" for s in second["atomic"].status if s not in INGEST)
    assert snapshot(roots["atomic"]) == before  # nothing merged: main as it was

    # the next day: the same steps run, for the same reasons, to the same result
    for root in roots.values():
        write_orders(root, "day2.csv", 100, 5)
    before_day2 = snapshot(roots["atomic"])
    third = both("r3")
    expected = {"silver:orders", "gold:customer_revenue", "gold:city_revenue"}
    assert third["plain"].ran() - INGEST - SERVE == expected
    assert third["atomic"].ran() - INGEST == expected, third["atomic"].reasons
    def why(run: Any) -> dict[str, str]:  # the reasons without their snapshot ids (two lakes count differently)
        return {s: str(run.reasons[s]).split(" (snapshot", 1)[0] for s in expected}

    assert why(third["atomic"]) == why(third["plain"])
    assert why(third["atomic"])["silver:orders"] == "bronze.orders changed"
    assert checksums("atomic") == checksums("plain")

    # after the merge, main's state is the run's: a plain run and an atomic one skip all of it
    assert run_fresh(roots["atomic"], run_id="r4").ran() == INGEST
    assert run_fresh(roots["atomic"], run_id="r5", atomic=True).ran() == INGEST
    with Lakehouse.open(roots["atomic"]) as lh:
        state = StepStateStore(lh.project).load()
        assert state["gold:city_revenue"].run_id == third["atomic"].run_id
        assert not any("@" in s for s in state)
        merged = lh.current_snapshot()
        assert state["silver:orders"].detail.outputs["silver.orders"] == merged  # the merge commit's version
        # ... and no row of the runs' branches is left
        with StepStateStore(lh.project)._conn() as cur:
            cur.execute("SELECT count(*) FROM airduck_step_state WHERE step_id LIKE 'run-%'")
            assert cur.fetchone()[0] == 0

    # a change on main since (a rollback) makes the next atomic run run that step and what reads it
    with Lakehouse.open(roots["atomic"]) as lh:
        lh.rollback("silver.orders", before_day2)
    sixth = run_fresh(roots["atomic"], run_id="r6", atomic=True)
    assert sixth.reasons["silver:orders"].startswith("silver.orders was changed since this step wrote it")
    assert {"silver:orders", "gold:customer_revenue", "gold:city_revenue"} <= sixth.ran()
    assert "silver:customers" not in sixth.ran()
    assert checksums("atomic") == checksums("plain")
