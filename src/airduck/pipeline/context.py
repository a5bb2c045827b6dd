"""What every pipeline step receives: the open run transaction and where things go."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import duckdb

from airduck.events import Reporter

if TYPE_CHECKING:
    from airduck.config.project import Project


@dataclass
class RunContext:
    """One run's shared state.

    `con` has the lake attached as `lake` (and in use) and an OPEN transaction that the runner commits
    at the end of the run (write-audit-publish): steps must not BEGIN/COMMIT/ROLLBACK themselves, and
    must not write anything outside the lake except idempotent, content-addressed copies to the landing zone
    and scratch files under the project's `.airduck/` that they remove when they end (staged silver rows).
    """

    project: Project
    con: duckdb.DuckDBPyConnection
    run_id: str  # e.g. "20261122T001500Z-3f2a1c"
    batch: int  # monotonically increasing run sequence number (stamped on bronze rows as _batch)
    landing: Any  # airduck.storage.ObjectStore of the landing zone
    full_refresh: bool = False  # rebuild silver from what bronze holds
    reporter: Reporter = field(default_factory=Reporter)
    reingest: bool = False  # re-read every source and REPLACE its bronze rows, rejects and incremental state
    staged_bytes: int = 0  # bytes of CSV files staged in memory by this run's bronze steps (airduck.bronze.files)


@dataclass
class StepResult:
    """What a step did to one table; becomes a row of airduck.run_steps."""

    layer: str  # bronze | silver | gold | serve
    table: str  # e.g. bronze.orders
    status: str = "ok"  # ok | skipped | failed | warn
    rows_in: int = 0
    rows_out: int = 0
    rows_quarantined: int = 0
    rows_rejected: int = 0
    files: int = 0
    details: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
