"""What a bronze or silver step receives: its own open transaction and where things go."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import duckdb

from airduck.events import Reporter

if TYPE_CHECKING:
    from airduck.config.project import Project


@dataclass
class RunContext:
    """One step's state within a run.

    `con` has the lake attached as `lake` and an OPEN transaction that the runner commits when the step
    ends (one transaction per step): steps must not BEGIN/COMMIT/ROLLBACK themselves, and must not write
    anything outside the lake except idempotent, content-addressed copies to the landing zone and scratch
    files under the project's `.airduck/` that they remove when they end (staged silver rows).
    """

    project: Project
    con: duckdb.DuckDBPyConnection
    run_id: str  # e.g. "20261122T001500Z-3f2a1c"
    batch: int  # increases with every write of a table (stamped on bronze rows as _batch)
    landing: Any  # airduck.storage.ObjectStore of the landing zone
    full_refresh: bool = False  # rebuild silver from what bronze holds
    reporter: Reporter = field(default_factory=Reporter)
    reingest: bool = False  # re-read every source and REPLACE its bronze rows, rejects and incremental state
    staged_bytes: int = 0  # bytes of CSV files staged in memory by this step (airduck.bronze.files)
    step_id: str | None = None
