"""The `freshness:` policy of a source or silver table: how old its data may get (like dbt source freshness).

Not to be confused with :mod:`airduck.pipeline.freshness` (a step's input state, so unchanged steps are skipped):
this is about the *age* of a table's data, checked by `airduck freshness` and the `airduck_table_*` metrics.
"""

from __future__ import annotations

import math
import re

from pydantic import field_validator, model_validator

from airduck.config.base import Model

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
MAX_DURATION = 3650 * 86400.0
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")


def parse_duration(value: str | int | float) -> float:
    """Seconds of a duration written as ``90s``, ``30m``, ``6h``, ``2d``, ``1w`` or a number of seconds."""
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 6h, 30m, 2d")
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        m = _DURATION.match(str(value))
        if not m:
            raise ValueError(f"{value!r} is not a duration: write a number and a unit, e.g. 30m, 6h, 2d (s m h d w)")
        seconds = float(m.group(1)) * _UNITS[m.group(2)]
    if not math.isfinite(seconds) or seconds <= 0:
        raise ValueError("a duration must be more than 0 (and a finite number)")
    if seconds > MAX_DURATION:
        raise ValueError(f"a duration must be at most {MAX_DURATION // 86400:.0f}d (10 years)")
    return seconds


def format_duration(seconds: float | None) -> str:
    """``1d 2h``, ``3h 5m``, ``42s``: the two largest units of a duration."""
    if seconds is None:
        return "-"
    s = int(max(0, seconds))
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if s >= size or (unit == "s" and not parts):
            parts.append(f"{s // size}{unit}")
            s %= size
        if len(parts) == 2:
            break
    return " ".join(parts)


class FreshnessPolicy(Model):
    """`freshness: {warn_after: 6h, error_after: 24h}`: a table older than this is `warn` / `error`."""

    warn_after: float | None = None
    error_after: float | None = None

    @field_validator("warn_after", "error_after", mode="before")
    @classmethod
    def _duration(cls, value: object) -> float | None:
        return None if value is None else parse_duration(value)  # type: ignore[arg-type]

    @model_validator(mode="after")
    def _order(self) -> FreshnessPolicy:
        if self.warn_after is None and self.error_after is None:
            raise ValueError("give warn_after, error_after or both (e.g. {warn_after: 6h, error_after: 24h})")
        if self.warn_after is not None and self.error_after is not None and self.warn_after > self.error_after:
            raise ValueError("warn_after must not be longer than error_after")
        return self

    def status(self, age_seconds: float | None) -> str:
        """`ok`, `warn` or `error` for a table of this age (None: never written, so `error`)."""
        if age_seconds is None:
            return "error"
        if self.error_after is not None and age_seconds > self.error_after:
            return "error"
        if self.warn_after is not None and age_seconds > self.warn_after:
            return "warn"
        return "ok"
