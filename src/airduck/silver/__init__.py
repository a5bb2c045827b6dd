"""airduck.silver: declarative rules from bronze (or another silver table) to `silver.<name>`, compiled to SQL.

The runner calls `validate_rules(project)` before a run, then `build_silver(ctx, name, rule)` for each table in
`silver_order(...)` inside the run's open transaction.

Semantics in short (see the module docstrings of `sql` and `build` for the details):

- columns: TRY_CAST to the target type; a value that does not cast is quarantined (`cast:<column>`), NULL in a
  `required` column (or a key column) is quarantined (`required:<column>`);
- key + order_by: the latest row per key of the rows read wins (order_by DESC, then _batch DESC, _row_number DESC);
  scd2 keeps the latest row per key *and source batch*, so a catch-up or a full refresh rebuilds the history;
- expectations: the check is evaluated per row after dedup; a NULL result passes (like SQL CHECK); `warn` counts,
  `drop` quarantines with the expectation's name as the reason, `fail` raises QualityGateFailed before any write;
  rows flagged deleted are not checked (only their key is);
- lookups: LEFT JOIN on the first reference row per key (current versions only when the reference is an scd2
  table); a row is unmatched when all its `on` columns are non-NULL and no reference row matched;
- modes: append inserts (of a new version of a file only the records no earlier load of that file had); merge deletes the stored rows of changed or deleted keys and inserts the new ones
  (unchanged rows are left alone); scd2 closes the current version on a real change or a delete and opens a new one.
  A real change is a difference (IS DISTINCT FROM) in any column but the key, the order_by columns and the
  deleted flag; valid_from is the first order_by column when it is a date/timestamp, else the ingest time.
- quality: every build records a quality result per expectation, cast, required/key column and lookup (rows
  checked, failing, the action, up to 5 failing keys; see `airduck.silver.quality`), also when a gate fails;
- incremental: each table reads only source rows with `_batch` above its watermark (`airduck.silver_state`);
  a full refresh (or a missing table) rebuilds the table and its quarantine from every source row.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from airduck.silver.build import build_silver, read_watermark
    from airduck.silver.order import silver_order
    from airduck.silver.rules import validate_rules

# Imported lazily, like airduck.gold: airduck.config imports airduck.silver.config, and loading a project
# must not import sqlglot (half a second) for commands that never compile a rule.
_EXPORTS = {
    "build_silver": "airduck.silver.build",
    "read_watermark": "airduck.silver.build",
    "silver_order": "airduck.silver.order",
    "validate_rules": "airduck.silver.rules",
}

__all__ = ["build_silver", "read_watermark", "silver_order", "validate_rules"]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
