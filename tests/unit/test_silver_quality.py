"""Silver builds produce quality results (in-memory DuckDB attached as `lake`; the stored side is in
tests/integration/test_quality.py)."""

from __future__ import annotations

import json

import pytest

from airduck.errors import QualityGateFailed
from tests.unit.test_silver_harness import memory_labs

V = "VARCHAR"


@pytest.fixture
def make_lab(tmp_path):
    yield from memory_labs(tmp_path)


def by_check(step) -> dict[tuple[str, str], object]:
    return {(q.check, q.name): q for q in step.quality}


def _companies(lab) -> None:
    lab.con.execute("CREATE TABLE lake.silver.companies (company_id BIGINT, name VARCHAR)")
    lab.con.execute("INSERT INTO lake.silver.companies VALUES (10, 'Acme')")


def test_composite_keys_formats_required_columns_and_at_most_five_examples_in_source_order(make_lab):
    lab = make_lab({"orders": {
        "from": "orders", "key": ["shop", "id"], "mode": "merge",
        "columns": {"shop": {}, "id": {"type": "INTEGER"}, "day": {"type": "DATE", "formats": ["%d/%m/%Y"]},
                    "note": {"required": True}, "company_id": {"type": "BIGINT"}},
        "expectations": [{"name": "late", "check": "day >= DATE '2026-01-01'", "on_fail": "drop"}],
        "lookups": [{"name": "company", "table": "silver.companies", "on": {"company_id": "company_id"},
                     "columns": {"company": "name"}, "on_missing": "quarantine"}]}})
    _companies(lab)
    rows = [{"shop": "s", "id": str(i), "day": "01/02/2025", "note": "n", "company_id": "10"} for i in range(1, 8)]
    rows += [{"shop": "t", "id": "1", "day": "2026-13-01", "note": None, "company_id": "99"}]
    lab.bronze("orders", {"shop": V, "id": V, "day": V, "note": V, "company_id": V}, rows)
    step = lab.run()["orders"]
    got = by_check(step)
    assert set(got) == {("expectation", "late"), ("cast", "id"), ("cast", "day"), ("cast", "company_id"),
                        ("required", "shop"), ("required", "id"), ("required", "note"), ("lookup", "company")}
    late = got["expectation", "late"]
    assert (late.rows_checked, late.rows_failing, late.action, late.passed) == (8, 7, "drop", False)
    assert late.examples == [f"shop=s, id={i}" for i in range(1, 6)]  # five, in source order
    day = got["cast", "day"]
    assert (day.rows_failing, day.action, day.examples) == (1, "drop", ["shop=t, id=1"])
    assert "%d/%m/%Y" in day.detail
    assert (got["required", "note"].rows_failing, got["required", "note"].examples) == (1, ["shop=t, id=1"])
    lookup = got["lookup", "company"]
    assert (lookup.rows_failing, lookup.action, lookup.examples) == (1, "drop", ["shop=t, id=1"])
    assert got["cast", "id"].passed and got["cast", "id"].examples == [] and got["cast", "id"].rows_failing == 0
    assert {q.step_id for q in step.quality} == {"silver:orders"} and {q.table for q in step.quality} == {"silver.orders"}
    assert {q.run_id for q in step.quality} == {"run-1"}


def test_a_failed_lookup_gate_carries_every_result(make_lab):
    lab = make_lab({"orders": {"from": "orders", "columns": {"id": {"type": "INTEGER"}, "company_id": {"type": "BIGINT"}},
                                 "expectations": [{"name": "small", "check": "id < 100"}],
                                 "lookups": [{"name": "company", "table": "silver.companies",
                                              "on": {"company_id": "company_id"}, "on_missing": "fail"}]}})
    _companies(lab)
    lab.bronze("orders", {"id": V, "company_id": V}, [{"id": "1", "company_id": "10"}, {"id": "200", "company_id": "77"}])
    with pytest.raises(QualityGateFailed) as info:
        lab.run()
    got = {(q.check, q.name): q for q in info.value.quality}
    lookup = got["lookup", "company"]
    assert (lookup.rows_failing, lookup.action, lookup.passed) == (1, "fail", False)
    # no key: a failing row is shown by its values
    assert [json.loads(e) for e in lookup.examples] == [{"id": 200, "company_id": 77}]
    small = got["expectation", "small"]
    assert (small.rows_failing, small.action, len(small.examples)) == (1, "warn", 1)


def test_nothing_new_to_read_checks_nothing(make_lab):
    lab = make_lab({"orders": {"from": "orders", "columns": {"id": {"type": "INTEGER"}},
                                 "expectations": [{"name": "small", "check": "id < 100"}]}})
    lab.bronze("orders", {"id": V}, [{"id": "1"}])
    assert [(q.name, q.passed) for q in lab.run()["orders"].quality] == [("small", True), ("id", True)]
    assert lab.run()["orders"].quality == []
