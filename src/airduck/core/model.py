"""The pipeline's shared vocabulary: layers, step kinds, statuses, datasets, step results. No I/O.

Every stage (bronze, silver, gold, serve), the runner, the records and the event sinks speak these
types, so they live below all of them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from airduck.core.quality import QualityResult


class Layer(StrEnum):
    BRONZE = "bronze"
    SILVER = "silver"
    GOLD = "gold"
    SERVE = "serve"


class StepKind(StrEnum):
    """What a step does; a step id is ``<kind>:<name>`` (``ingest:orders``, ``gold:orders_by_day``)."""

    INGEST = "ingest"  # a source -> bronze.<source> (+ its rejects and incremental state)
    SILVER = "silver"  # bronze/silver -> silver.<table> (+ its quarantine and progress)
    GOLD = "gold"  # one dbt model (or seed) -> gold.<model>, published only when its tests pass
    SERVE = "serve"  # gold tables -> PostgreSQL marts
    EXPORT = "export"  # gold tables -> Parquet/Delta files

    @property
    def layer(self) -> Layer:
        return {StepKind.INGEST: Layer.BRONZE, StepKind.SILVER: Layer.SILVER, StepKind.GOLD: Layer.GOLD}.get(
            self, Layer.SERVE)


class Status(StrEnum):
    """A step's (or run's) outcome. Compares equal to its plain string (``Status.OK == "ok"``)."""

    RUNNING = "running"
    OK = "ok"
    WARN = "warn"  # finished, with rejected lines, quarantined rows or warning expectations
    WARNED = "warned"  # a run in which some step warned
    FAILED = "failed"
    SKIPPED = "skipped"  # nothing it reads changed since it last succeeded
    UPSTREAM_FAILED = "upstream failed"  # not run: a step it depends on failed
    ROLLED_BACK = "rolled back"
    KILLED = "killed"

    @property
    def succeeded(self) -> bool:
        return self in (Status.OK, Status.WARN, Status.WARNED, Status.SKIPPED)


class DatasetKind(StrEnum):
    LAKE = "lake"  # a lake table: name is schema.table
    FILES = "files"  # files of a source: name is the path/glob as configured (local or s3://)
    POSTGRES = "postgres"  # a table or query of a PostgreSQL source: name is schema.table (or "query")
    HTTP = "http"  # an HTTP API: name is the URL without secret parameters
    POSTGRES_MART = "postgres_mart"  # a served table in PostgreSQL: name is schema.table
    EXPORT = "export"  # an exported table: name is the export folder + table name


@dataclass(frozen=True, order=True)
class Dataset:
    """Something a step reads or writes. `location` names where it lives (a host:port, a folder) without
    secrets; ``str(dataset)`` is how the plan shows it (``bronze.orders``, ``files:data/*.csv``)."""

    kind: DatasetKind
    name: str
    location: str | None = None

    @classmethod
    def lake(cls, qualified: str) -> Dataset:
        return cls(DatasetKind.LAKE, qualified)

    def __str__(self) -> str:
        return self.name if self.kind == DatasetKind.LAKE else f"{self.kind.value}:{self.name}"

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind.value, "name": self.name, "location": self.location}


@dataclass(frozen=True)
class DatasetVersion:
    """A dataset as a step read or wrote it: for lake tables, the DuckLake snapshot (None: not known)."""

    dataset: Dataset
    snapshot: int | None = None
    rows: int | None = None  # rows written (outputs) when known

    def to_dict(self) -> dict[str, Any]:
        return {**self.dataset.to_dict(), "snapshot": self.snapshot, "rows": self.rows}


@dataclass
class StepResult:
    """What a step did; becomes a row of the run's step records and the payload of its finished event.

    `layer`/`table` name the step's main output table (``bronze.orders``); `step_id` the plan step
    (``ingest:orders``) when the step ran as part of a plan."""

    layer: str  # bronze | silver | gold | serve
    table: str  # e.g. bronze.orders
    status: str = Status.OK  # a Status (plain strings compare equal)
    rows_in: int = 0
    rows_out: int = 0
    rows_quarantined: int = 0
    rows_rejected: int = 0
    files: int = 0
    details: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    step_id: str | None = None
    inputs: list[DatasetVersion] = field(default_factory=list)
    outputs: list[DatasetVersion] = field(default_factory=list)
    quality: list[QualityResult] = field(default_factory=list)
    sql: str | None = None  # the SQL the step generated and ran (silver's stage query), for lineage
