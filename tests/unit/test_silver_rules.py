"""Each silver rule, compiled to SQL and run (on an in-memory DuckDB attached as `lake`)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from airduck.errors import QualityGateFailed, RuleError
from airduck.silver import sql as silver_sql
from airduck.silver.expressions import Sandbox
from airduck.silver.rules import Locator, check_rule, make_plan
from tests.unit.test_silver_harness import memory_labs

V = "VARCHAR"


@pytest.fixture
def make_lab(tmp_path):
    yield from memory_labs(tmp_path)


def test_casts_quarantine_bad_values_with_reasons_and_the_raw_row(make_lab):
    lab = make_lab({"orders": {"from": "orders", "columns": {
        "id": {"type": "BIGINT"}, "amount": {"type": "DECIMAL(12,2)"}, "day": {"type": "DATE"}, "note": {}}}})
    lab.bronze("orders", {"id": V, "amount": V, "day": V, "note": V}, [
        {"id": "1", "amount": "10.50", "day": "2024-01-05", "note": "ok"},
        {"id": "2", "amount": "ten", "day": "2024-01-06", "note": "bad amount"},
        {"id": "x3", "amount": "1", "day": "2024-13-45", "note": "two bad values"},
        {"id": "4", "amount": None, "day": None, "note": None},
    ])
    result = lab.run()["orders"]
    assert lab.rows("SELECT id, amount, day, note FROM lake.silver.orders ORDER BY id") == [
        (1, Decimal("10.50"), dt.date(2024, 1, 5), "ok"), (4, None, None, None)]
    quarantined = lab.quarantine("orders")
    assert [q[0] for q in quarantined] == [["cast:amount"], ["cast:id", "cast:day"]]
    raw = quarantined[0][1]
    assert raw["amount"] == "ten" and raw["id"] == "2"  # the original value, as received
    assert raw["_batch"] == 1 and raw["_row_number"] == 2 and raw["_source_file"] == "orders-1.csv"
    assert (result.rows_in, result.rows_out, result.rows_quarantined) == (4, 2, 2)
    assert result.details["quarantine_reasons"] == {"cast:amount": 1, "cast:day": 1, "cast:id": 1}
    assert lab.rows("SELECT DISTINCT _run_id, _batch FROM lake.silver.orders__quarantine") == [("run-1", 1)]


def test_normalizers_apply_in_order_before_the_cast(make_lab):
    lab = make_lab({"orders": {"from": "orders", "columns": {
        "name": {"normalize": ["trim", "collapse_spaces", "upper"]},
        "city": {"normalize": ["trim", "lower"]},
        "code": {"normalize": ["trim", "null_if_empty"]},
        "qty": {"type": "INTEGER", "normalize": ["trim"]},
        "raw_code": {"from": "code", "normalize": ["null_if_empty"]}}}})
    lab.bronze("orders", {"name": V, "city": V, "code": V, "qty": V}, [
        {"name": "  jean   luc \t picard ", "city": " PARIS ", "code": "   ", "qty": " 7 "},
        {"name": "x", "city": "Rome", "code": "", "qty": "8"},
    ])
    lab.run()
    assert lab.rows("SELECT name, city, code, qty, raw_code FROM lake.silver.orders ORDER BY qty") == [
        ("JEAN LUC PICARD", "paris", None, 7, "   "), ("X", "rome", None, 8, None)]


def test_formats_parse_dates_and_times_trying_each_format(make_lab):
    lab = make_lab({"orders": {"from": "orders", "columns": {
        "id": {"type": "INTEGER"},
        "day": {"type": "DATE", "formats": ["%d/%m/%Y", "%Y-%m-%d"]},
        "at": {"type": "TIMESTAMP", "formats": ["%d.%m.%Y %H:%M", "%Y-%m-%dT%H:%M:%S"]},
        "typed": {"type": "DATE", "formats": ["%d/%m/%Y"]}}}})
    lab.bronze("orders", {"id": V, "day": V, "at": V, "typed": "DATE"}, [
        {"id": "1", "day": "05/01/2024", "at": "05.01.2024 13:45", "typed": dt.date(2024, 2, 1)},
        {"id": "2", "day": "2024-01-06", "at": "2024-01-06T08:00:00", "typed": None},
        {"id": "3", "day": "Jan 7 2024", "at": "2024-01-07", "typed": None},
    ])
    lab.run()
    assert lab.rows('SELECT id, day, "at", typed FROM lake.silver.orders ORDER BY id') == [
        (1, dt.date(2024, 1, 5), dt.datetime(2024, 1, 5, 13, 45), dt.date(2024, 2, 1)),
        (2, dt.date(2024, 1, 6), dt.datetime(2024, 1, 6, 8, 0), None)]
    assert [q[0] for q in lab.quarantine("orders")] == [["cast:day", "cast:at"]]
    assert lab.quarantine("orders")[0][1]["day"] == "Jan 7 2024"


def test_required_and_key_columns_quarantine_nulls(make_lab):
    lab = make_lab({"orders": {"from": "orders", "key": ["id"], "columns": {
        "id": {"type": "BIGINT"}, "email": {"required": True, "normalize": ["trim", "null_if_empty"]},
        "phone": {}}}})
    lab.bronze("orders", {"id": V, "email": V, "phone": V}, [
        {"id": "1", "email": "a@x.org", "phone": None},
        {"id": "2", "email": "  ", "phone": "1"},
        {"id": None, "email": "c@x.org", "phone": "2"},
        {"id": None, "email": "d@x.org", "phone": "3"},
    ])
    result = lab.run()["orders"]
    assert lab.rows("SELECT id, email, phone FROM lake.silver.orders") == [(1, "a@x.org", None)]
    assert [q[0] for q in lab.quarantine("orders")] == [["required:email"], ["required:id"], ["required:id"]]
    assert result.details["superseded"] == 0  # rows without a key are never deduplicated away


def test_derived_columns_are_expressions_over_source_columns(make_lab):
    lab = make_lab({"orders": {"from": "orders", "columns": {
        "qty": {"type": "INTEGER"},
        "total": {"type": "DECIMAL(12,2)", "expr": "TRY_CAST(qty AS INTEGER) * TRY_CAST(price AS DECIMAL(10,2))"},
        "label": {"expr": "first_name || ' ' || last_name", "normalize": ["upper"]},
        "big": {"type": "BOOLEAN", "expr": "TRY_CAST(qty AS INTEGER) >= 10"}}}})
    lab.bronze("orders", {"qty": V, "price": V, "first_name": V, "last_name": V}, [
        {"qty": "3", "price": "2.50", "first_name": "ada", "last_name": "lovelace"},
        {"qty": "10", "price": "1", "first_name": "alan", "last_name": "turing"},
    ])
    lab.run()
    assert lab.rows("SELECT qty, total, label, big FROM lake.silver.orders ORDER BY qty") == [
        (3, Decimal("7.50"), "ADA LOVELACE", False), (10, Decimal("10.00"), "ALAN TURING", True)]
    assert "price" not in [r[0] for r in lab.rows("DESCRIBE lake.silver.orders")]  # unlisted columns are dropped


def test_dedup_latest_row_per_key_wins_with_batch_and_row_number_as_tie_breakers(make_lab):
    lab = make_lab({"orders": {"from": "orders", "key": ["id"], "order_by": ["version"], "columns": {
        "id": {"type": "BIGINT"}, "version": {"type": "INTEGER"}, "value": {}}}})
    cols = {"id": V, "version": V, "value": V}
    lab.bronze("orders", cols, [
        {"id": "1", "version": "2", "value": "newest by order_by, older batch"},
        {"id": "2", "version": "1", "value": "tie, older batch"},
        {"id": "3", "version": "1", "value": "tie, first row"},
        {"id": "3", "version": "1", "value": "tie, later row of the same batch"},
        {"id": "4", "version": None, "value": "no version"},
    ])
    lab.bronze("orders", cols, [
        {"id": "1", "version": "1", "value": "older by order_by"},
        {"id": "2", "version": "1", "value": "tie, newer batch"},
        {"id": "4", "version": "1", "value": "a version beats NULL"},
    ])
    result = lab.run()["orders"]
    assert lab.rows("SELECT id, value FROM lake.silver.orders ORDER BY id") == [
        (1, "newest by order_by, older batch"), (2, "tie, newer batch"), (3, "tie, later row of the same batch"),
        (4, "a version beats NULL")]
    assert (result.rows_in, result.rows_out, result.details["superseded"]) == (8, 4, 4)


def test_expectations_warn_drop_and_null_passes(make_lab):
    lab = make_lab({"orders": {"from": "orders", "columns": {
        "id": {"type": "INTEGER"}, "amount": {"type": "INTEGER"}, "email": {}},
        "expectations": [
            {"name": "has_at", "check": "email LIKE '%@%'", "on_fail": "warn"},
            {"name": "positive", "check": "amount > 0", "on_fail": "drop"},
            {"name": "small", "check": "amount < 100", "on_fail": "drop"},
        ]}})
    lab.bronze("orders", {"id": V, "amount": V, "email": V}, [
        {"id": "1", "amount": "5", "email": "a@x.org"},
        {"id": "2", "amount": "5", "email": "no-at"},
        {"id": "3", "amount": "-5", "email": "c@x.org"},
        {"id": "4", "amount": None, "email": None},  # NULL results pass, like SQL CHECK
        {"id": "5", "amount": "500", "email": "e@x.org"},
    ])
    result = lab.run()["orders"]
    assert lab.rows("SELECT id FROM lake.silver.orders ORDER BY id") == [(1,), (2,), (4,)]
    assert result.details["warnings"] == {"has_at": 1}
    assert [q[0] for q in lab.quarantine("orders")] == [["positive"], ["small"]]
    assert result.details["expectations"]["positive"] == {"on_fail": "drop", "failed": 1}
    assert result.status == "warn" and result.rows_quarantined == 2


def test_a_row_breaking_several_rules_lists_every_reason(make_lab):
    lab = make_lab({"orders": {"from": "orders", "columns": {
        "id": {"type": "INTEGER", "required": True}, "amount": {"type": "INTEGER"}, "qty": {"type": "INTEGER"}},
        "expectations": [{"name": "positive_qty", "check": "qty > 0", "on_fail": "drop"}]}})
    lab.bronze("orders", {"id": V, "amount": V, "qty": V}, [{"id": None, "amount": "abc", "qty": "-1"}])
    lab.run()
    assert lab.quarantine("orders")[0][0] == ["required:id", "cast:amount", "positive_qty"]


def test_fail_expectation_raises_with_name_count_and_sample(make_lab):
    lab = make_lab({"orders": {"from": "orders", "columns": {"id": {"type": "INTEGER"}, "amount": {"type": "INTEGER"}},
                                 "expectations": [{"name": "positive", "check": "amount > 0", "on_fail": "fail"}]}})
    lab.bronze("orders", {"id": V, "amount": V}, [{"id": "1", "amount": "5"}, {"id": "2", "amount": "-7"},
                                                  {"id": "3", "amount": "-8"}])
    with pytest.raises(QualityGateFailed) as info:
        lab.run()
    message = str(info.value)
    assert "silver.orders" in message and "'positive'" in message and "amount > 0" in message
    assert "2 of 3 rows" in message and '"amount":"-7"' in message
    assert "source 'orders'" in info.value.hint
    assert lab.rows("SELECT table_name FROM information_schema.tables WHERE table_schema = 'silver'") == []
    assert lab.watermark("orders") is None


def _companies(lab, rows, scd2: bool = False):
    extra = ", valid_from TIMESTAMPTZ, valid_to TIMESTAMPTZ, is_current BOOLEAN" if scd2 else ""
    lab.con.execute(f"CREATE TABLE lake.silver.companies (company_id BIGINT, name VARCHAR{extra})")
    for row in rows:
        lab.con.execute(f"INSERT INTO lake.silver.companies VALUES ({', '.join('?' * len(row))})", list(row))


@pytest.mark.parametrize("on_missing", ["count", "quarantine"])
def test_lookups_bring_columns_and_handle_unmatched_keys(make_lab, on_missing):
    lab = make_lab({"orders": {"from": "orders", "columns": {"id": {"type": "INTEGER"}, "company_id": {"type": "BIGINT"}},
                                 "lookups": [{"name": "company", "table": "silver.companies",
                                              "on": {"company_id": "company_id"}, "columns": {"company": "name"},
                                              "on_missing": on_missing}]}})
    _companies(lab, [(10, "Acme"), (20, "Globex"), (20, "Globex duplicate")])
    lab.bronze("orders", {"id": V, "company_id": V}, [
        {"id": "1", "company_id": "10"}, {"id": "2", "company_id": "20"}, {"id": "3", "company_id": "99"},
        {"id": "4", "company_id": None}])
    result = lab.run()["orders"]
    assert result.details["lookup_unmatched"] == {"company": 1}  # a NULL key is not looked up, so not unmatched
    rows = lab.rows("SELECT id, company FROM lake.silver.orders ORDER BY id")
    assert rows[:2] == [(1, "Acme"), (2, rows[1][1])] and rows[1][1].startswith("Globex")  # one row per key
    if on_missing == "count":
        assert rows[2:] == [(3, None), (4, None)] and lab.quarantine("orders") == []
    else:
        assert rows[2:] == [(4, None)]
        assert [(q[0], q[1]["company_id"]) for q in lab.quarantine("orders")] == [(["lookup:company"], "99")]


def test_lookup_fail_raises_and_scd2_references_join_current_versions(make_lab):
    lab = make_lab({"orders": {"from": "orders", "columns": {"id": {"type": "INTEGER"}, "company_id": {"type": "BIGINT"}},
                                 "lookups": [{"name": "company", "table": "silver.companies",
                                              "on": {"company_id": "company_id"}, "columns": {"company": "name"},
                                              "on_missing": "fail"}]}})
    _companies(lab, [(10, "Acme (old)", None, None, False), (10, "Acme", None, None, True)], scd2=True)
    lab.bronze("orders", {"id": V, "company_id": V}, [{"id": "1", "company_id": "10"}])
    lab.run()
    assert lab.rows("SELECT company FROM lake.silver.orders") == [("Acme",)]
    lab.bronze("orders", {"id": V, "company_id": V}, [{"id": "2", "company_id": "77"}])
    with pytest.raises(QualityGateFailed, match=r"lookup 'company' found no row in silver\.companies for 1 of 1 row\b"):
        lab.run()
    assert lab.rows("SELECT id FROM lake.silver.orders") == [(1,)]


def test_keep_other_columns_carries_unlisted_source_columns_but_not_metadata(make_lab):
    lab = make_lab({"orders": {"from": "orders", "keep_other_columns": True, "columns": {
        "id": {"type": "BIGINT"}, "customer": {"from": "cust_name", "normalize": ["trim"]}}}})
    lab.bronze("orders", {"id": V, "cust_name": V, "extra": "INTEGER", "note": V},
               [{"id": "1", "cust_name": " Ann ", "extra": 5, "note": "n"}])
    lab.run()
    cols = [r[0] for r in lab.rows("DESCRIBE lake.silver.orders")]
    assert cols == ["id", "customer", "extra", "note", "_run_id", "_batch", "_updated_at"]
    assert lab.rows("SELECT id, customer, extra, note FROM lake.silver.orders") == [(1, "Ann", 5, "n")]


def test_deleted_rows_are_only_checked_for_their_key(make_lab):
    lab = make_lab({"orders": {"from": "orders", "key": ["id"], "mode": "merge", "deleted_flag": "op_deleted",
                                 "columns": {"id": {"type": "BIGINT"}, "amount": {"type": "INTEGER", "required": True}},
                                 "expectations": [{"name": "positive", "check": "amount > 0", "on_fail": "fail"}]}})
    lab.bronze("orders", {"id": V, "amount": V, "op_deleted": V}, [{"id": "1", "amount": "5", "op_deleted": "false"},
                                                                   {"id": "2", "amount": "6", "op_deleted": None}])
    lab.run()
    lab.bronze("orders", {"id": V, "amount": V, "op_deleted": V}, [{"id": "1", "amount": None, "op_deleted": "true"},
                                                                   {"id": "2", "amount": "x", "op_deleted": "yes"}])
    result = lab.run()["orders"]
    assert lab.rows("SELECT id FROM lake.silver.orders") == []
    assert result.details["deleted"] == 2 and result.rows_quarantined == 0


def test_build_time_errors_name_the_rule_key(make_lab):
    lab = make_lab({
        "a": {"from": "orders", "columns": {"x": {"expr": "nosuch + 1"}}},
        "b": {"from": "orders", "columns": {"y": {"from": "gone"}}},
        "c": {"from": "orders", "columns": {"id": {}}, "expectations": [{"name": "e", "check": "id || 'x'"}]},
        "d": {"from": "orders", "columns": {"id": {}}, "deleted_flag": "zap", "key": ["id"], "mode": "merge"},
    })
    lab.bronze("orders", {"id": V}, [{"id": "1"}])
    for name, needle in [("a", r"silver\.a\.columns\.x\.expr: 'nosuch' is not a column of bronze\.orders"),
                         ("b", r"silver\.b\.columns\.y\.from: source column 'gone' is not in bronze\.orders"),
                         ("c", r"silver\.c\.expectations\.0\.check \(expectation 'e'\): .* not a true/false"),
                         ("d", r"silver\.d\.deleted_flag: 'zap' is neither")]:
        with pytest.raises(RuleError, match=needle):
            lab.run(name)


def test_a_missing_source_table_is_skipped(make_lab):
    lab = make_lab({"orders": {"from": "orders", "columns": {"id": {}}}})
    result = lab.run()["orders"]
    assert result.status == "skipped" and "bronze.orders does not exist" in result.details["reason"]


def test_silver_from_silver_reads_the_upstream_incrementally(make_lab):
    lab = make_lab({
        "totals": {"from": "silver.orders", "key": ["id"], "mode": "merge", "columns": {
            "id": {"type": "BIGINT"}, "doubled": {"type": "INTEGER", "expr": "amount * 2"}}},
        "orders": {"from": "orders", "key": ["id"], "mode": "merge", "columns": {
            "id": {"type": "BIGINT"}, "amount": {"type": "INTEGER"}}},
    })
    lab.bronze("orders", {"id": V, "amount": V}, [{"id": "1", "amount": "1"}, {"id": "2", "amount": "2"}])
    first = lab.run()
    assert list(first) == ["orders", "totals"]
    lab.bronze("orders", {"id": V, "amount": V}, [{"id": "2", "amount": "20"}])
    second = lab.run()["totals"]
    assert second.rows_in == 1 and second.details["updated"] == 1
    assert lab.rows("SELECT id, doubled FROM lake.silver.totals ORDER BY id") == [(1, 2), (2, 40)]


def test_odd_column_names_are_quoted_everywhere(make_lab):
    lab = make_lab({"orders": {"from": "orders", "key": ["Order Id"], "mode": "merge", "columns": {
        "Order Id": {"type": "BIGINT"}, 'say "hi"': {"from": "select", "normalize": ["upper"]}},
        "expectations": [{"name": "it's", "check": "\"Order Id\" > 0", "on_fail": "drop"}]}})
    lab.bronze("orders", {"Order Id": V, "select": V}, [{"Order Id": "1", "select": "a"}, {"Order Id": "-1", "select": "b"}])
    lab.run()
    assert lab.rows('SELECT "Order Id", "say ""hi""" FROM lake.silver.orders') == [(1, "A")]
    assert lab.quarantine("orders")[0][0] == ["it's"]


def _plan(lab, name):
    with Sandbox() as sandbox:
        checked = check_rule(name, lab.project.config.silver[name], sandbox, Locator(lab.project))
        return make_plan(lab.con, checked, sandbox)


def test_generated_sql_binds_values_and_uses_delete_insert_for_merge(make_lab):
    lab = make_lab({"orders": {"from": "orders", "key": ["id"], "order_by": "at", "mode": "merge", "columns": {
        "id": {"type": "BIGINT"}, "at": {"type": "DATE", "formats": ["%d/%m/%Y"]}}}})
    lab.bronze("orders", {"id": V, "at": V}, [{"id": "1", "at": "01/02/2024"}])
    plan = _plan(lab, "orders")
    text, params = silver_sql.stage(plan, incremental=True)
    assert '"_batch" > $__ad_wm' in text
    assert "%d/%m/%Y" not in text and "%d/%m/%Y" in params.values()  # formats are bound, not pasted
    assert "TRY_CAST(try_strptime(" in text and 'AS DATE) AS "at"' in text
    assert 'row_number() OVER (PARTITION BY "id" ORDER BY "at" DESC NULLS LAST, __ad_batch DESC' in text
    assert "'cast:id'" not in text and "cast:id" in params.values()
    assert silver_sql.merge_delete(plan).startswith('DELETE FROM lake."silver"."orders" AS t USING')
    assert "MERGE" not in silver_sql.merge_insert(plan).upper()
    full, _ = silver_sql.stage(plan, incremental=False)
    assert "$__ad_wm" not in full


def test_scd2_valid_from_is_the_date_order_column_read_as_utc_else_the_ingest_time(make_lab):
    lab = make_lab({
        "by_date": {"from": "orders", "key": ["id"], "order_by": "day", "mode": "scd2",
                    "columns": {"id": {}, "day": {"type": "DATE"}, "v": {}}},
        "by_version": {"from": "orders", "key": ["id"], "order_by": "version", "mode": "scd2",
                       "columns": {"id": {}, "version": {"type": "INTEGER"}, "v": {}}},
    })
    lab.con.execute("SET TimeZone = 'America/New_York'")
    lab.bronze("orders", {"id": V, "day": V, "version": V, "v": V},
               [{"id": "a", "day": "2024-01-05", "version": "1", "v": "x"}])
    lab.run()
    utc = "SELECT strftime(valid_from AT TIME ZONE 'UTC', '%Y-%m-%d %H:%M') FROM lake.silver.{}"
    assert lab.one(utc.format("by_date")) == "2024-01-05 00:00"
    assert lab.one(utc.format("by_version")) == "2026-01-01 00:00"  # the bronze _ingested_at of batch 1
