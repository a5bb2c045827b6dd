"""Quality results on a real lake with real dbt: silver expectations (warn/drop/fail), casts, required columns,
lookups and dbt tests are recorded per run beside the run records and listed by `airduck quality`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from airduck.errors import RunFailed
from airduck.lakehouse import Lakehouse

AIRDUCK = [sys.executable, "-m", "airduck"]
ORDERS = "order_id,customer_id,amount\n1,1,5\n2,1,-3\n3,2,5000\n4,9,7\n6,1,abc\n,2,8\n"
CUSTOMERS = "customer_id,name\n1,Ann\n2,Bob\n"


def config(not_huge: str = "drop", gold: bool = False) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "sources": {"orders": {"type": "files", "path": "data/orders/*.csv", "format": "csv"},
                    "customers": {"type": "files", "path": "data/customers/*.csv", "format": "csv"}},
        "silver": {
            "customers": {"from": "customers", "key": ["customer_id"], "mode": "merge",
                          "columns": {"customer_id": {"type": "BIGINT"}, "name": {}}},
            "orders": {
                "from": "orders", "key": ["order_id"], "mode": "merge",
                "columns": {"order_id": {"type": "BIGINT"}, "customer_id": {"type": "BIGINT"},
                            "amount": {"type": "INTEGER"}},
                "expectations": [{"name": "positive", "check": "amount > 0", "on_fail": "warn"},
                                 {"name": "not_huge", "check": "amount < 1000", "on_fail": not_huge}],
                "lookups": [{"name": "customer", "table": "silver.customers", "on": {"customer_id": "customer_id"},
                             "columns": {"customer_name": "name"}}],
            },
        },
    }
    if gold:
        cfg["gold"] = {"dbt_project": "gold/"}
    return cfg


def write_data(root: Path, orders: str = ORDERS, name: str = "day1.csv") -> None:
    for folder, text in (("orders", orders), ("customers", CUSTOMERS)):
        (root / "data" / folder).mkdir(parents=True, exist_ok=True)
        (root / "data" / folder / name).write_text(text, encoding="utf-8")


def cli(root: Path, *args: str, width: int = 160) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRDUCK_", "AWS_"))}
    env["COLUMNS"] = str(width)
    return subprocess.run([*AIRDUCK, "-p", str(root), *args], capture_output=True, text=True, env=env, timeout=180)


def listed(root: Path, *args: str) -> list[dict[str, Any]]:
    proc = cli(root, "quality", "--json", *args)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def by_check(results: list[dict[str, Any]]) -> dict[tuple[str, str, str], dict[str, Any]]:
    return {(r["table"], r["check"], r["name"]): r for r in results}


def test_silver_checks_are_recorded_per_run_and_listed(projects):
    root = projects.make(config())
    write_data(root)
    with Lakehouse.open(root) as lh:
        run = lh.run()
        assert run.ok and run.warned
    run_id = run.record.run_id
    step = next(s for s in run.steps if s.table == "silver.orders")
    got = by_check([q.to_dict() for q in step.quality])
    # bronze reads order_id and customer_id as BIGINT already (no cast that could fail), amount as VARCHAR
    assert set(got) == {
        ("silver.orders", "expectation", "positive"), ("silver.orders", "expectation", "not_huge"),
        ("silver.orders", "cast", "amount"), ("silver.orders", "required", "order_id"),
        ("silver.orders", "lookup", "customer")}
    warn = got["silver.orders", "expectation", "positive"]
    assert (warn["rows_checked"], warn["rows_failing"], warn["action"], warn["passed"]) == (6, 1, "warn", False)
    assert warn["examples"] == ["2"] and warn["detail"] == "amount > 0" and warn["run_id"] == run_id
    assert warn["step_id"] == "silver:orders"
    drop = got["silver.orders", "expectation", "not_huge"]
    assert (drop["rows_failing"], drop["action"], drop["passed"], drop["examples"]) == (1, "drop", False, ["3"])
    cast = got["silver.orders", "cast", "amount"]
    assert (cast["rows_failing"], cast["action"], cast["passed"], cast["examples"]) == (1, "drop", False, ["6"])
    required = got["silver.orders", "required", "order_id"]
    assert (required["rows_failing"], required["action"], required["passed"]) == (1, "drop", False)
    # a row without a key is shown by its values
    assert len(required["examples"]) == 1 and json.loads(required["examples"][0])["amount"] == 8
    lookup = got["silver.orders", "lookup", "customer"]
    assert (lookup["rows_failing"], lookup["action"], lookup["passed"], lookup["examples"]) == (1, "warn", False, ["4"])
    # the quarantine agrees with the drop results
    with Lakehouse.open(root) as lh:
        assert lh.con.execute("SELECT count(*) FROM silver.orders__quarantine").fetchone()[0] == 3

    stored = by_check(listed(root))
    assert stored["silver.orders", "expectation", "positive"] == warn
    assert stored["silver.customers", "required", "customer_id"]["passed"] is True
    assert {k for k in stored if k[0] == "silver.orders"} == set(got)
    assert {r["table"] for r in listed(root, "--table", "silver.customers")} == {"silver.customers"}
    assert {r["table"] for r in listed(root, "--table", "customers")} == {"silver.customers"}
    failing = listed(root, "--failed")
    assert {(r["check"], r["name"]) for r in failing} == {("expectation", "positive"), ("expectation", "not_huge"),
                                                           ("cast", "amount"), ("required", "order_id"),
                                                           ("lookup", "customer")}

    # a second run with new rows: without --run the latest result per check; --run picks a run (by prefix)
    write_data(root, "order_id,customer_id,amount\n7,1,9\n8,2,-1\n9,2,-2\n", name="day2.csv")
    with Lakehouse.open(root) as lh:
        second = lh.run()
    latest = by_check(listed(root, "--table", "silver.orders"))
    assert latest["silver.orders", "expectation", "positive"]["run_id"] == second.record.run_id
    assert latest["silver.orders", "expectation", "positive"]["rows_failing"] == 2
    assert latest["silver.orders", "expectation", "positive"]["examples"] == ["8", "9"]
    assert latest["silver.orders", "lookup", "customer"]["passed"] is True
    first = by_check(listed(root, "--run", run_id[:-2]))
    assert first["silver.orders", "expectation", "positive"]["rows_failing"] == 1
    assert {r["run_id"] for r in first.values()} == {run_id}

    shown = cli(root, "quality", "--table", "silver.orders")
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert f"run {second.record.run_id}: latest results (5 checks)" in shown.stdout
    positive = next(ln for ln in lines if "positive" in ln)
    assert "warn" in positive and "fail" in positive and "8, 9" in positive
    narrow = cli(root, "quality", "--run", run_id, width=80)
    assert narrow.returncode == 0 and "not_huge" in narrow.stdout and "--json" in narrow.stdout
    empty = cli(root, "quality", "--table", "silver.nothing_here")
    assert empty.returncode == 0 and "no quality results for table silver.nothing_here" in empty.stdout
    assert listed(root, "--table", "silver.nothing_here") == []


def test_a_failed_gate_keeps_its_results_on_the_failed_step(local_projects):
    root = local_projects.make(config(not_huge="fail"))
    write_data(root)
    with Lakehouse.open(root) as lh, pytest.raises(RunFailed) as info:
        lh.run()
    run_id = info.value.record.run_id
    failed = next(s for s in info.value.steps if s.table == "silver.orders")
    assert failed.status == "failed"
    gate = by_check([q.to_dict() for q in failed.quality])["silver.orders", "expectation", "not_huge"]
    assert (gate["rows_failing"], gate["action"], gate["passed"], gate["examples"]) == (1, "fail", False, ["3"])
    stored = by_check(listed(root, "--run", run_id, "--failed"))
    assert stored["silver.orders", "expectation", "not_huge"] == gate
    assert all(not r["passed"] for r in stored.values())
    shown = cli(root, "runs", "show", run_id, "--json")
    assert shown.returncode == 0, shown.stderr
    assert {(q["name"], q["action"]) for q in json.loads(shown.stdout)["quality"]} >= {("not_huge", "fail"),
                                                                                         ("positive", "warn")}
    table = cli(root, "runs", "show", run_id)
    assert table.returncode == 0 and "quality results" in table.stdout and "not_huge" in table.stdout


def test_secret_values_never_reach_the_examples(local_projects):
    secret = "sk-live-5ecr3t-7781"
    root = local_projects.make({
        "sources": {"orders": {"type": "files", "path": "data/orders/*.csv", "format": "csv"}},
        "silver": {"orders": {"from": "orders", "key": ["order_id"], "columns": {"order_id": {}, "amount": {"type": "INTEGER"}},
                              "expectations": [{"name": "positive", "check": "amount > 0"}]}},
    })
    (root / ".env").write_text(f"AWS_SECRET_ACCESS_KEY={secret}\n", encoding="utf-8")
    (root / "data" / "orders").mkdir(parents=True)
    (root / "data" / "orders" / "a.csv").write_text(f"order_id,amount\n{secret},-1\nplain,-2\n", encoding="utf-8")
    with Lakehouse.open(root) as lh:
        run = lh.run()
    step = next(s for s in run.steps if s.table == "silver.orders")
    result = next(q for q in step.quality if q.name == "positive")
    assert result.rows_failing == 2 and len(result.examples) == 2 and "plain" in result.examples
    assert all(secret not in e for e in result.examples)
    proc = cli(root, "quality", "--json")
    assert proc.returncode == 0 and secret not in proc.stdout and "plain" in proc.stdout
    runs = Path(str(root / ".airduck" / "catalog.sqlite") + ".runs.sqlite")
    assert runs.is_file() and secret.encode() not in runs.read_bytes()


MODEL = "select order_id, customer_id, customer_name, amount from {{ source('silver', 'orders') }}"
SCHEMA = {"version": 2, "models": [{"name": "named_orders", "columns": [
    {"name": "order_id", "data_tests": ["unique"]},
    {"name": "customer_name", "data_tests": ["not_null"]},
    {"name": "customer_id", "data_tests": [{"accepted_values": {"values": [1, 2], "quote": False,
                                                                 "config": {"severity": "warn"}}}]},
]}]}


def write_gold(root: Path) -> None:
    models = root / "gold" / "models"
    models.mkdir(parents=True)
    (root / "gold" / "dbt_project.yml").write_text(yaml.safe_dump({
        "name": "marts", "version": "1.0", "config-version": 2, "profile": "not_used",
        "models": {"marts": {"+materialized": "table"}}}), encoding="utf-8")
    (models / "named_orders.sql").write_text(MODEL, encoding="utf-8")
    (models / "schema.yml").write_text(yaml.safe_dump(SCHEMA, sort_keys=False), encoding="utf-8")
    (root / "gold" / "tests").mkdir()
    (root / "gold" / "tests" / "no_negative_amounts.sql").write_text(
        "select * from {{ ref('named_orders') }} where amount < 0", encoding="utf-8")
    (root / "gold" / "tests" / "source_orders_have_customers.sql").write_text(
        "{{ config(severity='warn') }} select * from {{ source('silver', 'orders') }} where customer_name is null",
        encoding="utf-8")  # a warning: a failing test of a source would stop dbt building the models that read it


def test_a_failing_dbt_test_is_a_failed_result_of_its_model(local_projects):
    root = local_projects.make(config(gold=True))
    write_data(root)
    write_gold(root)
    with Lakehouse.open(root) as lh, pytest.raises(RunFailed) as info:
        lh.run()
    run_id = info.value.record.run_id
    model = next(s for s in info.value.steps if s.table == "gold.named_orders")
    assert model.status == "failed"
    # (a test of a source has no step of its own: it rides on the first gold step, as a result of silver.orders)
    got = by_check([q.to_dict() for q in model.quality if q.table == "gold.named_orders"])
    assert set(got) == {("gold.named_orders", "dbt_test", n) for n in (
        "unique_named_orders_order_id", "not_null_named_orders_customer_name",
        "accepted_values_named_orders_customer_id__False__1__2", "no_negative_amounts")}
    not_null = got["gold.named_orders", "dbt_test", "not_null_named_orders_customer_name"]
    # silver kept order 4 (lookup on_missing: count), so its customer_name is NULL in the mart
    assert (not_null["rows_failing"], not_null["action"], not_null["passed"]) == (1, "fail", False)
    assert not_null["step_id"] == "gold:named_orders" and not_null["run_id"] == run_id
    assert "Got 1 result" in not_null["detail"]
    warned = got["gold.named_orders", "dbt_test", "accepted_values_named_orders_customer_id__False__1__2"]
    assert (warned["rows_failing"], warned["action"], warned["passed"]) == (1, "warn", False)
    singular = got["gold.named_orders", "dbt_test", "no_negative_amounts"]  # a test file: by what it refs
    assert (singular["rows_failing"], singular["action"], singular["passed"]) == (1, "fail", False)
    unique = got["gold.named_orders", "dbt_test", "unique_named_orders_order_id"]
    assert (unique["rows_failing"], unique["passed"]) == (0, True)

    stored = by_check(listed(root, "--run", run_id, "--table", "gold.named_orders"))
    assert stored == got
    # a test of a source is a result of that lake table
    source = by_check(listed(root, "--run", run_id, "--table", "silver.orders"))
    tested = source["silver.orders", "dbt_test", "source_orders_have_customers"]
    assert (tested["rows_failing"], tested["action"], tested["passed"]) == (1, "warn", False)
    assert ("silver.orders", "expectation", "positive") in source  # beside the silver checks of the same run
    failing = {k[2] for k in by_check(listed(root, "--failed", "--table", "named_orders"))}
    assert failing == {"not_null_named_orders_customer_name", "no_negative_amounts",
                       "accepted_values_named_orders_customer_id__False__1__2"}
