"""validate_rules (before a run, no lake) and silver_order (dependency order, cycles)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from airduck.errors import RuleError
from airduck.project import load_project
from airduck.silver import silver_order, validate_rules
from airduck.silver.config import SilverTable

GOOD = {
    "from": "orders",
    "key": ["order_id"],
    "order_by": "updated_at",
    "mode": "merge",
    "deleted_flag": "is_deleted",
    "columns": {
        "order_id": {"type": "BIGINT", "required": True},
        "amount": {"type": "DECIMAL(12,2)"},
        "city": {"normalize": ["trim", "lower"]},
        "updated_at": {"type": "TIMESTAMP", "formats": ["%d/%m/%Y %H:%M"]},
        "amount_x2": {"type": "DOUBLE", "expr": "TRY_CAST(amount AS DOUBLE) * 2"},
    },
    "expectations": [{"name": "positive", "check": "amount > 0", "on_fail": "drop"}],
    "lookups": [{"name": "company", "table": "silver.companies", "on": {"city": "city"},
                 "columns": {"company_name": "name"}}],
}


def project(tmp_path: Path, silver: dict[str, Any]):
    data = {"name": "v", "sources": {"orders": {"type": "files", "path": "data/*.csv"}}, "silver": silver}
    (tmp_path / "airduck.yml").write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return load_project(tmp_path)


def with_(base: dict[str, Any], **changes: Any) -> dict[str, Any]:
    out = {**base, **changes}
    return {k: v for k, v in out.items() if v is not None}


def test_a_good_project_validates(tmp_path):
    validate_rules(project(tmp_path, {"orders": GOOD, "companies": {"from": "orders", "columns": {"city": {}}}}))


@pytest.mark.parametrize(
    ("rule", "key", "needle"),
    [
        (with_(GOOD, expectations=[{"name": "x", "check": "1; DROP TABLE lake.silver.orders"}]),
         "silver.orders.expectations.0.check", "statements"),
        (with_(GOOD, expectations=[{"name": "x", "check": "amount > (SELECT 1)"}]),
         "silver.orders.expectations.0.check", "subquery"),
        (with_(GOOD, expectations=[{"name": "x", "check": "read_csv('/etc/passwd') IS NULL"}]),
         "silver.orders.expectations.0.check", "not allowed"),
        (with_(GOOD, expectations=[{"name": "x", "check": "nope > 1"}]),
         "silver.orders.expectations.0.check", "unknown column 'nope'"),
        (with_(GOOD, expectations=[{"name": "p", "check": "amount > 0"}, {"name": "p", "check": "amount < 9"}]),
         "silver.orders.expectations.1.name", "used twice"),
        (with_(GOOD, columns={**GOOD["columns"], "bad": {"expr": "getenv('HOME')"}}),
         "silver.orders.columns.bad.expr", "not allowed"),
        (with_(GOOD, columns={**GOOD["columns"], "bad": {"type": "BIGNIT"}}),
         "silver.orders.columns.bad.type", "not a"),
        (with_(GOOD, columns={**GOOD["columns"], "bad": {"formats": ["%d/%m/%Y"]}}),
         "silver.orders.columns.bad.formats", "type is VARCHAR"),
        (with_(GOOD, columns={**GOOD["columns"], "bad": {"type": "DATE", "formats": ["%Q"]}}),
         "silver.orders.columns.bad.formats.0", "not a strptime format"),
        (with_(GOOD, columns={**GOOD["columns"], "bad": {"from": "a", "expr": "b"}}),
         "silver.orders.columns.bad", "either `from` or `expr`"),
        (with_(GOOD, columns={**GOOD["columns"], "_batch": {}}), "silver.orders.columns._batch", "airduck adds"),
        (with_(GOOD, key=None), "silver.orders.mode", "needs a key"),
        (with_(GOOD, mode="append"), "silver.orders.deleted_flag", "needs mode merge or scd2"),
        (with_(GOOD, key=["nope"]), "silver.orders.key.0", "'nope' is not under columns"),
        (with_(GOOD, order_by=["nope"]), "silver.orders.order_by.0", "'nope'"),
        (with_(GOOD, **{"from": "nosuch"}), "silver.orders.from", "unknown source 'nosuch'"),
        (with_(GOOD, **{"from": "silver.nosuch"}), "silver.orders.from", "not defined"),
        (with_(GOOD, **{"from": "gold.x.y"}), "silver.orders.from", "neither a source"),
        (with_(GOOD, lookups=[{"name": "l", "table": "companies", "on": {"city": "city"}}]),
         "silver.orders.lookups.0.table", "schema.table"),
        (with_(GOOD, lookups=[{"name": "l", "table": "silver.companies", "on": {"nope": "city"}}]),
         "silver.orders.lookups.0.on", "'nope'"),
        (with_(GOOD, lookups=[{"name": "l", "table": "silver.c", "on": {"city": "c"}, "columns": {"amount": "a"}}]),
         "silver.orders.lookups.0.columns.amount", "already exists"),
    ],
)
def test_bad_rules_name_the_key_the_line_and_the_fix(tmp_path, rule, key, needle):
    proj = project(tmp_path, {"orders": rule, "companies": {"from": "orders", "columns": {"city": {}}}})
    with pytest.raises(RuleError) as info:
        validate_rules(proj)
    message = str(info.value)
    assert "airduck.yml:" in message and key in message, message
    assert needle in message
    assert info.value.hint  # every error names a fix


def test_the_error_points_at_the_line_of_the_key(tmp_path):
    proj = project(tmp_path, {"orders": with_(GOOD, expectations=[{"name": "x", "check": "(SELECT 1)"}])})
    with pytest.raises(RuleError) as info:
        validate_rules(proj)
    line = int(str(info.value).split("airduck.yml:")[1].split(":")[0])
    text = (tmp_path / "airduck.yml").read_text().splitlines()[line - 1]
    assert "check" in text and "SELECT 1" in text


def rules(spec: dict[str, dict[str, Any]]) -> dict[str, SilverTable]:
    return {name: SilverTable.model_validate({"columns": {"id": {}}, **rule}) for name, rule in spec.items()}


def test_order_puts_dependencies_first_and_keeps_the_file_order_otherwise():
    silver = rules({
        "orders": {"from": "orders", "lookups": [{"name": "c", "table": "silver.companies", "on": {"id": "id"}}]},
        "order_totals": {"from": "silver.orders"},
        "companies": {"from": "companies"},
        "events": {"from": "events"},
        "plain": {"from": "orders", "lookups": [{"name": "g", "table": "gold.dim", "on": {"id": "id"}}]},
    })
    assert silver_order(silver) == ["companies", "orders", "order_totals", "events", "plain"]


def test_a_lookup_into_itself_is_not_a_cycle():
    silver = rules({"t": {"from": "t", "lookups": [{"name": "parent", "table": "silver.t", "on": {"id": "id"}}]}})
    assert silver_order(silver) == ["t"]


def test_cycles_are_refused_with_the_cycle_named():
    silver = rules({
        "a": {"from": "silver.c"},
        "b": {"from": "silver.a"},
        "c": {"from": "x", "lookups": [{"name": "l", "table": "silver.b", "on": {"id": "id"}}]},
    })
    with pytest.raises(RuleError, match=r"cycle: silver\.a -> silver\.c -> silver\.b -> silver\.a"):
        silver_order(silver)


def test_reading_itself_is_refused():
    with pytest.raises(RuleError, match=r"silver\.a\.from: the table reads itself"):
        silver_order(rules({"a": {"from": "silver.a"}}))
