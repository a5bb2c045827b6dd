"""Silver on a real DuckLake (embedded): gates and rollback, watermark, full refresh, schema evolution, catch-up."""

from __future__ import annotations

import pytest

from airduck.errors import QualityGateFailed, RuleError
from tests.unit.test_silver_harness import lab_factory_for

V = "VARCHAR"


@pytest.fixture
def lab_factory(local_projects):
    yield from lab_factory_for(local_projects)


def test_a_failed_gate_leaves_the_lake_at_the_same_snapshot(lab_factory):
    lab = lab_factory({"orders": {
        "from": "orders", "key": ["id"], "mode": "merge",
        "columns": {"id": {"type": "BIGINT"}, "amount": {"type": "INTEGER"}},
        "expectations": [{"name": "positive", "check": "amount > 0", "on_fail": "fail"},
                         {"name": "not_huge", "check": "amount < 1000", "on_fail": "drop"}]}})
    lab.bronze("orders", {"id": V, "amount": V}, [{"id": "1", "amount": "5"}, {"id": "2", "amount": "5000"}])
    lab.run()
    good = lab.rows("SELECT * FROM lake.silver.orders")
    quarantined = lab.rows("SELECT * FROM lake.silver.orders__quarantine")
    lab.bronze("orders", {"id": V, "amount": V}, [{"id": "1", "amount": "-3"}, {"id": "3", "amount": "7"},
                                                  {"id": "4", "amount": "9999"}])
    before = lab.snapshot()
    with pytest.raises(QualityGateFailed) as info:
        lab.run()
    assert "'positive'" in str(info.value) and "1 of 3 rows" in str(info.value) and '"id":"1"' in str(info.value)
    assert "nothing of this step was written" in info.value.hint  # each step commits on its own (issue 10)
    assert lab.snapshot() == before
    assert lab.rows("SELECT * FROM lake.silver.orders") == good
    assert lab.rows("SELECT * FROM lake.silver.orders__quarantine") == quarantined
    assert lab.watermark("orders") == 1


def test_incremental_runs_read_only_new_batches_and_full_refresh_rebuilds(lab_factory):
    lab = lab_factory({"orders": {"from": "orders", "columns": {"id": {"type": "INTEGER"}, "v": {}}}})
    lab.bronze("orders", {"id": V, "v": V}, [{"id": "1", "v": "a"}, {"id": "oops", "v": "b"}])
    first = lab.run()["orders"]
    assert (first.rows_in, first.rows_out, first.rows_quarantined) == (2, 1, 1)
    assert first.details["watermark"] == {"from": None, "to": 1} and lab.watermark("orders") == 1

    lab.bronze("orders", {"id": V, "v": V}, [{"id": "2", "v": "c"}])
    second = lab.run()["orders"]
    assert (second.rows_in, second.rows_out, second.rows_quarantined) == (1, 1, 0)
    assert second.details["watermark"] == {"from": 1, "to": 2}
    assert lab.rows("SELECT id, _batch, _run_id FROM lake.silver.orders ORDER BY id") == [(1, 1, "run-1"), (2, 2, "run-2")]

    before = lab.snapshot()
    idle = lab.run()["orders"]
    assert (idle.rows_in, idle.rows_out) == (0, 0) and lab.watermark("orders") == 2
    assert lab.snapshot() == before  # nothing to do: no new snapshot

    refreshed = lab.run(full_refresh=True)["orders"]
    assert (refreshed.rows_in, refreshed.rows_out, refreshed.rows_quarantined) == (3, 2, 1)
    assert lab.rows("SELECT id, v FROM lake.silver.orders ORDER BY id") == [(1, "a"), (2, "c")]  # not doubled
    assert lab.one("SELECT count(*) FROM lake.silver.orders__quarantine") == 1  # rebuilt, not appended
    # the watermark is appended (parallel silver steps insert into silver_state; a DELETE would conflict): the latest
    # row is the table's
    assert lab.rows("SELECT table_name, last_batch, run_id FROM lake.airduck.silver_state "
                    "ORDER BY updated_at DESC, rowid DESC LIMIT 1") == [("silver.orders", 2, "run-4")]


def test_schema_evolution_needs_evolve_for_new_source_columns(lab_factory):
    lab = lab_factory({
        "strict": {"from": "orders", "keep_other_columns": True, "columns": {"id": {"type": "INTEGER"}}},
        "open": {"from": "orders", "keep_other_columns": True, "evolve": True, "columns": {"id": {"type": "INTEGER"}}},
    })
    lab.bronze("orders", {"id": V, "a": V}, [{"id": "1", "a": "x"}])
    lab.run()
    lab.bronze("orders", {"id": V, "a": V, "b": "INTEGER"}, [{"id": "2", "a": "y", "b": 7}])
    before = lab.snapshot()
    with pytest.raises(RuleError) as info:
        lab.run("strict")
    message = str(info.value)
    assert "silver.strict" in message and "'b'" in message and "bronze.orders" in message
    assert "evolve: true" in info.value.hint and "list the column" in info.value.hint
    assert lab.snapshot() == before
    result = lab.run("open")["open"]
    assert result.details["columns_added"] == ["b"]
    assert lab.rows("SELECT id, a, b FROM lake.silver.open ORDER BY id") == [(1, "x", None), (2, "y", 7)]
    # listing the column fixes the strict table too
    lab.project.config.silver["strict"].columns["b"] = type(lab.project.config.silver["strict"].columns["id"])(type="INTEGER")
    lab.run("strict")
    assert lab.rows("SELECT id, b FROM lake.silver.strict ORDER BY id") == [(1, None), (2, 7)]


def test_a_listed_column_missing_from_bronze_and_a_changed_type_are_clear_errors(lab_factory):
    lab = lab_factory({"orders": {"from": "orders", "columns": {"id": {"type": "INTEGER"}, "amount": {"type": "INTEGER"}}}})
    lab.bronze("orders", {"id": V}, [{"id": "1"}])
    with pytest.raises(RuleError, match=r"silver\.orders\.columns\.amount: source column 'amount' is not in bronze\.orders"):
        lab.run()
    lab.bronze("orders", {"id": V, "amount": V}, [{"id": "2", "amount": "3"}])
    lab.run()
    lab.project.config.silver["orders"].columns["amount"].type = "VARCHAR"
    with pytest.raises(RuleError, match=r"is INTEGER in silver\.orders but the rule now makes it VARCHAR") as info:
        lab.run()
    assert "--full-refresh" in info.value.hint
    lab.run(full_refresh=True)
    assert lab.rows("SELECT id, amount FROM lake.silver.orders ORDER BY id") == [(1, None), (2, "3")]


def test_scd2_catch_up_over_several_batches_keeps_every_version(lab_factory):
    lab = lab_factory({"prices": {"from": "orders", "key": ["sku"], "mode": "scd2",
                                  "columns": {"sku": {}, "price": {"type": "INTEGER"}}}})
    cols = {"sku": V, "price": V}
    lab.bronze("orders", cols, [{"sku": "a", "price": "1"}])
    lab.bronze("orders", cols, [{"sku": "a", "price": "2"}])
    lab.bronze("orders", cols, [{"sku": "a", "price": "2"}])
    lab.bronze("orders", cols, [{"sku": "a", "price": "3"}])
    result = lab.run()["prices"]  # one run reads four batches; valid_from is the ingest time of each batch
    assert (result.details["inserted"], result.details["unchanged"], result.details["closed_versions"]) == (3, 1, 2)
    rows = lab.rows("SELECT price, strftime(valid_from AT TIME ZONE 'UTC', '%d'), "
                    "strftime(valid_to AT TIME ZONE 'UTC', '%d'), is_current FROM lake.silver.prices ORDER BY valid_from")
    assert rows == [(1, "01", "02", False), (2, "02", "04", False), (3, "04", None, True)]


def test_lookups_and_silver_from_silver_in_one_run(lab_factory):
    lab = lab_factory({
        "orders": {"from": "orders", "key": ["id"], "mode": "merge",
                   "columns": {"id": {"type": "BIGINT"}, "company_id": {"type": "BIGINT"}},
                   "lookups": [{"name": "company", "table": "silver.companies", "on": {"company_id": "company_id"},
                                "columns": {"company": "name"}, "on_missing": "quarantine"}]},
        "companies": {"from": "silver.company_feed", "key": ["company_id"], "mode": "scd2",
                      "columns": {"company_id": {"type": "BIGINT"}, "name": {}}},
        "company_feed": {"from": "orders", "keep_other_columns": True,
                         "columns": {"company_id": {"type": "BIGINT", "expr": "company"}}},
    })
    cols = {"id": V, "company_id": V, "company": V, "name": V}
    lab.bronze("orders", cols, [{"id": "1", "company_id": "10", "company": "10", "name": "Acme"},
                                {"id": "2", "company_id": "99", "company": "20", "name": "Globex"}])
    results = lab.run()
    assert list(results) == ["company_feed", "companies", "orders"]
    assert lab.rows("SELECT id, company FROM lake.silver.orders") == [(1, "Acme")]
    assert [(q[0], q[1]["company_id"]) for q in lab.quarantine("orders")] == [(["lookup:company"], "99")]
    assert results["orders"].details["lookup_unmatched"] == {"company": 1}


def test_the_stage_is_a_parquet_file_only_for_types_it_keeps_exactly(lab_factory, monkeypatch):
    """The stage is read back from Parquet (parallel) unless a column type would not come back exactly
    (INTERVAL keeps milliseconds only, HUGEINT becomes DOUBLE): those stay a temp table, values intact. Stage
    files go when the step ends; a killed run's file is swept by the next run."""
    import datetime as dt
    import os
    from decimal import Decimal

    import airduck.silver.build as build

    lab = lab_factory({
        "plain": {"from": "orders", "columns": {
            "id": {"type": "BIGINT"}, "amount": {"type": "DECIMAL(12,2)"}, "at": {"type": "TIMESTAMP"},
            "tz": {"type": "TIMESTAMPTZ"}, "tm": {"type": "TIME"}, "u": {"type": "UUID"}, "j": {"type": "JSON"},
            "b": {"type": "BLOB"}, "f": {"type": "DOUBLE"}}},
        "exact": {"from": "orders", "columns": {"id": {"type": "BIGINT"}, "big": {"type": "HUGEINT"},
                                                "span": {"type": "INTERVAL"}}},
    })
    folder = lab.project.state_dir / build.STAGE_DIR
    seen: dict[str, tuple[set[str], list[str]]] = {}
    measure = build._measure

    def spy(con, plan, result):
        kinds = {r[0] for r in con.execute(
            "SELECT 'view' FROM duckdb_views() WHERE view_name = '__ad_stage' "
            "UNION ALL SELECT 'table' FROM duckdb_tables() WHERE table_name = '__ad_stage'").fetchall()}
        seen[plan.name] = (kinds, sorted(p.name for p in folder.glob("*.parquet")))
        return measure(con, plan, result)

    monkeypatch.setattr(build, "_measure", spy)
    folder.mkdir(parents=True, exist_ok=True)
    stale = folder / "stage-dead.parquet"  # a killed run's: its lock file is held by nobody
    stale.write_bytes(b"left by a killed run")
    stale.with_suffix(".lock").touch()
    live = folder / "stage-live.parquet"  # a running step's (another process, another machine): lock held
    live.write_bytes(b"in use")
    held = build._hold(live.with_suffix(".lock"))
    cols = {"id": V, "amount": V, "at": V, "big": V, "span": V, "tz": V, "tm": V, "u": V, "j": V, "b": V, "f": V}
    one = {"tz": "2024-01-02 03:04:05.123456+02", "tm": "03:04:05.123456", "u": "00000000-0000-0000-0000-00000000002a",
           "j": '{"a": [1, 2.5, null]}', "b": "\\x00\\xFFab", "f": "-inf"}
    lab.bronze("orders", cols, [
        {"id": "1", "amount": "1.25", "at": "2024-01-02 03:04:05.123456",
         "big": "170141183460469231731687303715884105727", "span": "1 day 00:00:00.123456", **one},
        {"id": "2", "amount": "oops", "at": "2024-01-02", "big": "-5", "span": "2 hours"},
    ])
    lab.run()
    os.close(held)
    assert seen["plain"][0] == {"view"} and stale.name not in seen["plain"][1]
    assert len([n for n in seen["plain"][1] if n != live.name]) == 1
    assert seen["exact"][0] == {"table"}
    assert not stale.exists() and not stale.with_suffix(".lock").exists()
    assert sorted(p.name for p in folder.iterdir()) == ["stage-live.lock", "stage-live.parquet"]  # ours are gone
    want = lab.rows("SELECT CAST(? AS TIMESTAMPTZ), CAST(? AS TIME), CAST(? AS UUID), CAST(? AS JSON), CAST(? AS BLOB), "
                    "CAST(? AS DOUBLE)", [one["tz"], one["tm"], one["u"], one["j"], one["b"], one["f"]])[0]
    assert lab.rows('SELECT id, amount, "at", tz, tm, u, j, b, f FROM lake.silver.plain') == [
        (1, Decimal("1.25"), dt.datetime(2024, 1, 2, 3, 4, 5, 123456), *want)]
    assert want[4] == b"\x00\xffab" and want[5] == float("-inf")
    assert [r for r, _ in lab.quarantine("plain")] == [["cast:amount"]]
    assert lab.rows("SELECT id, big, span FROM lake.silver.exact ORDER BY id") == [
        (1, 170141183460469231731687303715884105727, dt.timedelta(days=1, microseconds=123456)),
        (2, -5, dt.timedelta(hours=2))]
