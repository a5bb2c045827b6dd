"""A quality result: what one check (a silver expectation, cast, required column, lookup, or a dbt test)
found on one table in one run. Produced by airduck.quality from silver rules and dbt's run_results.json."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any


class CheckKind(StrEnum):
    EXPECTATION = "expectation"
    CAST = "cast"
    REQUIRED = "required"
    LOOKUP = "lookup"
    DBT_TEST = "dbt_test"


class Action(StrEnum):
    """What the pipeline did with the failing rows."""

    WARN = "warn"  # kept, reported
    DROP = "drop"  # quarantined
    FAIL = "fail"  # the step failed, nothing of it was committed


@dataclass
class QualityResult:
    table: str  # the checked table, e.g. silver.orders or gold.orders_by_day
    check: str  # a CheckKind
    name: str  # the rule's name: expectation name, column, lookup name, dbt test name
    rows_checked: int | None
    rows_failing: int
    action: str  # an Action
    passed: bool
    examples: list[str] = field(default_factory=list)  # up to a few failing keys / values, redacted
    run_id: str | None = None
    step_id: str | None = None
    detail: str | None = None  # e.g. the expectation's SQL or the dbt test's message

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
