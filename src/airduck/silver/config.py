"""The `silver:` part of airduck.yml: declarative rules from a bronze table to `silver.<name>`."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from airduck.config.base import Model
from airduck.config.staleness import FreshnessPolicy

NORMALIZERS = ("trim", "lower", "upper", "null_if_empty", "collapse_spaces")


class ColumnRule(Model):
    """One silver column: its type, where it comes from, how it is cleaned."""

    type: str = "VARCHAR"
    source: str | None = Field(None, alias="from", description="source column when renamed")
    expr: str | None = Field(None, description="a SQL expression over source columns (a derived column)")
    normalize: list[str] = Field(default_factory=list)
    formats: list[str] = Field(default_factory=list, description="strptime formats for DATE/TIMESTAMP parsing")
    required: bool = False

    @field_validator("normalize")
    @classmethod
    def _known(cls, value: list[str]) -> list[str]:
        bad = [v for v in value if v not in NORMALIZERS]
        if bad:
            raise ValueError(f"unknown normalizer {bad[0]!r}; expected one of {', '.join(NORMALIZERS)}")
        return value


class Expectation(Model):
    """A named SQL boolean check. warn: keep and count; drop: quarantine; fail: abort the run.

    The check refers to silver column names and is evaluated per row (after dedup). A NULL result passes, like a
    SQL CHECK constraint: `amount > 0` does not fail a row whose amount is NULL (use `required: true` for that).
    """

    name: str
    check: str
    on_fail: Literal["warn", "drop", "fail"] = "warn"


class Lookup(Model):
    """Conform a dimension: join a reference table and bring columns from it."""

    name: str
    table: str = Field(description="schema.table in the lake, e.g. silver.companies")
    on: dict[str, str] = Field(description="{this_column: reference_column}")
    columns: dict[str, str] = Field(default_factory=dict, description="{new_column: reference_column}")
    on_missing: Literal["count", "quarantine", "fail"] = "count"


class SilverTable(Model):
    source: str = Field(alias="from", description="a source name (bronze.<name>) or another silver table")
    key: list[str] = Field(default_factory=list)
    order_by: list[str] = Field(default_factory=list, description="latest row per key wins (DESC order)")
    mode: Literal["merge", "scd2", "append"] = "append"
    columns: dict[str, ColumnRule] = Field(default_factory=dict)
    keep_other_columns: bool = Field(False, description="carry bronze columns not listed in `columns`")
    expectations: list[Expectation] = Field(default_factory=list)
    lookups: list[Lookup] = Field(default_factory=list)
    deleted_flag: str | None = Field(None, description="a column that marks a row as deleted (merge mode)")
    evolve: bool = Field(False, description="let new source columns reach silver")
    freshness: FreshnessPolicy | None = Field(None, description="how old silver.<name> may get: {warn_after: 6h, error_after: 24h}")

    @field_validator("key", "order_by", mode="before")
    @classmethod
    def _listify(cls, value: object) -> object:
        return [value] if isinstance(value, str) else value
