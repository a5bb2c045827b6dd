"""The plan: airduck.yml + dbt's graph -> steps with datasets and dependencies; selection with graph operators."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from airduck import Lakehouse
from airduck.cli.app import app
from airduck.core.model import StepKind
from airduck.core.plan import Plan, Step
from airduck.errors import ConfigError
from airduck.gold.manifest import GRAPH_FILE
from tests.integration.test_gold_build import write_dbt_project

SECRET = "s3cr3t-pw"
TOKEN = "tok-9f8e7d"


def plan_project(root: Path) -> Path:
    dbt_dir = write_dbt_project(root)
    (dbt_dir / "models" / "orders_enriched.sql").write_text(
        "{{ config(materialized='ephemeral') }}\nselect * from {{ source('silver', 'orders') }}", encoding="utf-8")
    (dbt_dir / "models" / "order_sizes.sql").write_text(
        "{{ config(tags=['nightly']) }}\nselect amount >= 50 as big, count(*) as n from {{ ref('orders_enriched') }} "
        "group by 1", encoding="utf-8")
    config = {
        "name": "plan",
        "sources": {
            "raw_orders": {"type": "files", "path": "data/orders/*.csv"},
            "raw_customers": {"type": "postgres", "dsn": f"postgresql://app:{SECRET}@127.0.0.1:5432/shop",
                              "table": "public.customers"},
            "rates": {"type": "http", "url": f"http://127.0.0.1:9/rates?api_key={TOKEN}"},
        },
        "silver": {
            "customers": {"from": "raw_customers", "key": ["customer_id"]},
            "orders": {"from": "raw_orders", "key": ["order_id"],
                       "lookups": [{"name": "cust", "table": "silver.customers", "on": {"customer_id": "customer_id"}}]},
            "rates": {"from": "rates"},
        },
        "gold": {"dbt_project": "gold/"},
        "serve": {"postgres": {"dsn": f"postgresql://app:{SECRET}@127.0.0.1:5432/marts",
                               "tables": ["gold.city_revenue", {"table": "gold.customer_revenue", "name": "revenue"}]},
                  "export": {"path": "exports/", "format": ["parquet", "delta"], "tables": ["gold.big_orders"]}},
    }
    (root / "airduck.yml").write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return root


@pytest.fixture(scope="module")
def planned(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Plan]:
    root = plan_project(tmp_path_factory.mktemp("plan"))
    with Lakehouse.open(root) as lh:
        return root, lh.plan()


def test_steps_datasets_and_dependencies(planned):
    _, plan = planned
    by_id = {s.id: s for s in plan}
    assert set(by_id) == {
        "ingest:raw_orders", "ingest:raw_customers", "ingest:rates", "silver:customers", "silver:orders",
        "silver:rates", "gold:customer_revenue", "gold:city_revenue", "gold:big_orders", "gold:order_sizes",
        "serve:city_revenue", "serve:revenue", "export:big_orders"}
    assert "gold:orders_enriched" not in by_id  # ephemeral: folded into the models that use it
    ingest = by_id["ingest:raw_orders"]
    assert [str(d) for d in ingest.outputs] == ["bronze.raw_orders", "bronze.raw_orders__rejects"]
    assert [str(d) for d in ingest.inputs] == ["files:data/orders/*.csv"]
    orders = by_id["silver:orders"]
    assert [str(d) for d in orders.inputs] == ["bronze.raw_orders", "silver.customers"]
    assert set(orders.depends_on) == {"ingest:raw_orders", "silver:customers"}
    assert [str(d) for d in orders.outputs] == ["silver.orders", "silver.orders__quarantine"]
    # source() and a plain `silver.customers` in the SQL both count
    assert set(by_id["gold:customer_revenue"].depends_on) == {"silver:orders", "silver:customers"}
    assert by_id["gold:city_revenue"].depends_on == ("gold:customer_revenue",)
    assert by_id["gold:order_sizes"].depends_on == ("silver:orders",)  # through the ephemeral model
    assert by_id["gold:order_sizes"].get("tags") == ("nightly",)
    serve = by_id["serve:revenue"]
    assert serve.depends_on == ("gold:customer_revenue",)
    assert [str(d) for d in serve.outputs] == ["postgres_mart:public.revenue"]
    assert serve.outputs[0].location == "postgres://127.0.0.1:5432/marts"
    assert [str(d) for d in by_id["export:big_orders"].outputs] == ["export:big_orders.parquet", "export:big_orders.delta"]
    order = plan.ids
    for s in plan:  # topological: every step after what it depends on
        assert all(order.index(d) < order.index(s.id) for d in s.depends_on)
    text = json.dumps(plan.to_dict())
    assert SECRET not in text and TOKEN not in text and "app:" not in text
    assert by_id["ingest:rates"].inputs[0].name == "http://127.0.0.1:9/rates"


def test_selectors_with_graph_operators(planned):
    _, plan = planned
    assert plan.select(["silver.orders"]).ids == ["silver:orders"]
    assert plan.select(["silver:orders"]).ids == ["silver:orders"]
    assert plan.select(["silver.orders"])["silver:orders"].depends_on == ()  # a subset runs on its own
    up = set(plan.select(["+gold.city_revenue"]).ids)
    assert up == {"gold:city_revenue", "gold:customer_revenue", "silver:orders", "silver:customers",
                  "ingest:raw_orders", "ingest:raw_customers"}
    down = set(plan.select(["silver.customers+"]).ids)
    assert down == {"silver:customers", "silver:orders", "gold:customer_revenue", "gold:city_revenue",
                    "gold:big_orders", "gold:order_sizes", "serve:city_revenue", "serve:revenue", "export:big_orders"}
    assert set(plan.select(["gold"]).ids) == {"gold:customer_revenue", "gold:city_revenue", "gold:big_orders",
                                               "gold:order_sizes"}
    assert set(plan.select(["serve"]).ids) == {"serve:city_revenue", "serve:revenue", "export:big_orders"}
    assert set(plan.select(["rates"]).ids) == {"ingest:rates", "silver:rates"}  # a bare name: source + silver
    assert plan.select(["tag:nightly"]).ids == ["gold:order_sizes"]
    assert set(plan.select(["ingest:rates,bronze.raw_orders"]).ids) == {"ingest:rates", "ingest:raw_orders"}
    with pytest.raises(ConfigError, match="no step, table, layer or source"):
        plan.select(["silver.nope"])
    assert plan.select(None).ids == plan.select([]).ids == plan.ids  # no selector: every step
    for blank in ([""], [" "], [","], ["", " , "]):  # `-s "$EMPTY"`: an error, never the whole plan
        with pytest.raises(ConfigError, match="empty selector"):
            plan.select(blank)


def test_graph_is_cached_per_version_of_the_dbt_project(tmp_path):
    root = plan_project(tmp_path)
    with Lakehouse.open(root) as lh:
        lh.plan()
        cache = root / ".airduck" / "dbt" / GRAPH_FILE
        parsed = root / ".airduck" / "dbt" / "parse" / "manifest.json"
        first = parsed.stat().st_mtime_ns
        assert "gold:new_model" not in lh.plan()
        assert parsed.stat().st_mtime_ns == first  # unchanged project: dbt was not started again
        (root / "gold" / "models" / "new_model.sql").write_text("select * from {{ ref('city_revenue') }}",
                                                                encoding="utf-8")
        plan = lh.plan()
    assert plan["gold:new_model"].depends_on == ("gold:city_revenue",)
    assert parsed.stat().st_mtime_ns != first
    assert json.loads(cache.read_text())["nodes"]


def test_plan_cli_json_and_table_write_nothing(planned, monkeypatch):
    root, _ = planned
    monkeypatch.chdir(root)
    runner = CliRunner()
    out = runner.invoke(app, ["plan", "--json", "-s", "+serve:revenue"])
    assert out.exit_code == 0, out.output
    steps = json.loads(out.output)["steps"]
    assert [s["id"] for s in steps][-1] == "serve:revenue"
    assert {s["id"] for s in steps} >= {"ingest:raw_orders", "silver:orders", "gold:customer_revenue"}
    assert all({"id", "kind", "inputs", "outputs", "depends_on"} <= set(s) for s in steps)
    table = runner.invoke(app, ["plan"], env={"COLUMNS": "200"})
    assert table.exit_code == 0 and "silver:orders" in table.output and "ingest:raw_orders" in table.output
    assert not (root / ".airduck" / "catalog.sqlite").exists()  # planning opened no lake
    bad = subprocess.run([sys.executable, "-m", "airduck", "plan", "-s", "gold.nope"], cwd=root, capture_output=True,
                         text=True, timeout=120)
    assert bad.returncode == 1 and "no step, table, layer or source" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_plan_rejects_cycles_and_unknown_dependencies():
    a = Step("silver:a", StepKind.SILVER, "a", depends_on=("silver:b",))
    b = Step("silver:b", StepKind.SILVER, "b", depends_on=("silver:a",))
    with pytest.raises(ConfigError, match="cycle"):
        Plan([a, b])
    with pytest.raises(ConfigError, match="not a step"):
        Plan([Step("gold:x", StepKind.GOLD, "x", depends_on=("gold:y",))])
    assert os.environ.get("AIRDUCK_CATALOG") is None


def test_selections_that_cannot_reach_gold_start_no_dbt(tmp_path):
    from airduck.pipeline.plan import needs_gold

    root = plan_project(tmp_path)
    with Lakehouse.open(root) as lh:
        assert set(lh.plan(["ingest:raw_orders", "silver.orders"]).ids) == {"ingest:raw_orders", "silver:orders"}
        assert set(lh.plan(["bronze"]).ids) == {"ingest:raw_orders", "ingest:raw_customers", "ingest:rates"}
    assert not (root / ".airduck" / "dbt").exists()  # dbt's graph was not needed
    assert needs_gold(None) and needs_gold(["silver.orders+"]) and needs_gold(["gold"]) and needs_gold(["orders"])
    assert not needs_gold(["+silver:orders", "ingest", "bronze.x"])
