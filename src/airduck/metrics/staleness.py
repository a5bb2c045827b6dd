"""Data-age freshness: how long ago each table last changed, against its `freshness:` policy.

A table's age is the time since the latest snapshot that changed it (the last successful step that wrote it);
a table with a policy that has never been written is `error`. Tables without a policy are reported with their
age and the status `none` (they never make `airduck freshness` fail). The clock is a parameter (tests).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from airduck.config.staleness import FreshnessPolicy, format_duration

STATUSES = ("ok", "warn", "error")
NO_POLICY = "none"


@dataclass
class TableAge:
    table: str  # schema.table
    status: str  # ok | warn | error | none (no policy)
    last_change: datetime | None
    age_seconds: float | None
    warn_after: float | None = None
    error_after: float | None = None

    @property
    def layer(self) -> str:
        return self.table.split(".", 1)[0]

    def to_dict(self) -> dict[str, Any]:
        return {"table": self.table, "status": self.status,
                "last_change": self.last_change.isoformat() if self.last_change else None,
                "age_seconds": None if self.age_seconds is None else round(self.age_seconds, 3),
                "age": format_duration(self.age_seconds) if self.age_seconds is not None else None,
                "warn_after_seconds": self.warn_after, "error_after_seconds": self.error_after}


def _aware(value: datetime) -> datetime:
    """`value` in UTC (DuckDB hands TIMESTAMPTZ back in the session's time zone, the local one; naive is UTC)."""
    return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)


def table_ages(tables: Iterable[str], last_change: Mapping[str, datetime], policies: Mapping[str, FreshnessPolicy],
               now: datetime) -> list[TableAge]:
    """The age and status of every table of `tables` and every table a policy names (sorted by name)."""
    now = _aware(now)
    out = []
    for name in sorted(set(tables) | set(policies)):
        changed = last_change.get(name)
        age = max(0.0, (now - _aware(changed)).total_seconds()) if changed is not None else None
        policy = policies.get(name)
        status = policy.status(age) if policy is not None else NO_POLICY
        out.append(TableAge(name, status, _aware(changed) if changed else None, age,
                            policy.warn_after if policy else None, policy.error_after if policy else None))
    return out


def worst(ages: Iterable[TableAge]) -> str:
    """The worst status of `ages`: error > warn > ok (`none` when no table has a policy)."""
    statuses = {a.status for a in ages}
    for status in ("error", "warn", "ok"):
        if status in statuses:
            return status
    return NO_POLICY
