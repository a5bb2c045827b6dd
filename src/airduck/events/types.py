"""Typed events of a run. Every event has the run id (None outside a run) and the time it happened.

A run emits: RunStarted, then per step StepStarted, StepProgress*, and one of StepFinished, StepSkipped or
StepFailed; Message for warnings along the way; RunFinished last. RunKilled (once per run found killed, with
that run's id) comes from the later run that found it. Sinks (the CLI's Rich display, log lines,
OpenLineage, Prometheus, the API) receive them through airduck.events.Fanout.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from enum import Enum
from typing import Any

from airduck.core.model import DatasetVersion, StepResult
from airduck.core.quality import QualityResult


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, kw_only=True)
class Event:
    run_id: str | None
    time: datetime = field(default_factory=_now)

    @property
    def type(self) -> str:
        return type(self).__name__

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: nested datasets and quality results as dicts, times as ISO strings."""
        out: dict[str, Any] = {"type": self.type}
        for f in fields(self):
            out[f.name] = _plain(getattr(self, f.name))
        return out


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if hasattr(value, "to_dict"):
        return value.to_dict()
    return value


@dataclass(frozen=True, kw_only=True)
class RunStarted(Event):
    steps: tuple[str, ...] = ()  # the plan's step ids, in order
    selection: tuple[str, ...] = ()
    command: str | None = None
    full_refresh: bool = False
    threads: int = 1


@dataclass(frozen=True, kw_only=True)
class RunFinished(Event):
    status: str  # ok | warned | failed
    seconds: float
    steps_ok: int = 0
    steps_failed: int = 0
    steps_skipped: int = 0
    error: str | None = None  # redacted


@dataclass(frozen=True, kw_only=True)
class RunKilled(Event):
    """A run found dead (its process was killed) and marked `killed` by a later run, which emits this once, with
    the dead run's id as `run_id` (not its own)."""

    started_at: datetime | None = None
    error: str | None = None  # redacted: what the marking recorded (what of it had committed)
    found_by: str | None = None  # the run that found it


@dataclass(frozen=True, kw_only=True)
class StepStarted(Event):
    step_id: str
    kind: str
    inputs: tuple[DatasetVersion, ...] = ()


@dataclass(frozen=True, kw_only=True)
class StepProgress(Event):
    step_id: str
    rows: int = 0
    done: int | None = None
    total: int | None = None
    label: str | None = None  # e.g. a dbt model or a file being read


@dataclass(frozen=True, kw_only=True)
class StepFinished(Event):
    step_id: str
    kind: str
    status: str  # ok | warn
    seconds: float
    rows_in: int = 0
    rows_out: int = 0
    rows_quarantined: int = 0
    rows_rejected: int = 0
    files: int = 0
    inputs: tuple[DatasetVersion, ...] = ()  # with the snapshot each was read at
    outputs: tuple[DatasetVersion, ...] = ()  # with the snapshot each was written as
    quality: tuple[QualityResult, ...] = ()
    snapshot: int | None = None  # the step's commit (None: it wrote nothing)
    sql: str | None = None  # the SQL the step generated (silver's stage query), redacted

    @classmethod
    def of(cls, run_id: str | None, kind: str, result: StepResult, seconds: float,
           snapshot: int | None = None) -> StepFinished:
        return cls(run_id=run_id, step_id=result.step_id or result.table, kind=kind, status=str(result.status),
                   seconds=seconds, rows_in=result.rows_in, rows_out=result.rows_out,
                   rows_quarantined=result.rows_quarantined, rows_rejected=result.rows_rejected, files=result.files,
                   inputs=tuple(result.inputs), outputs=tuple(result.outputs), quality=tuple(result.quality),
                   snapshot=snapshot, sql=result.sql)


@dataclass(frozen=True, kw_only=True)
class StepSkipped(Event):
    step_id: str
    kind: str
    reason: str  # "unchanged" | "upstream failed: <step id>" | ...
    upstream_failed: bool = False


@dataclass(frozen=True, kw_only=True)
class StepFailed(Event):
    step_id: str
    kind: str
    seconds: float
    error: str  # redacted, one line
    error_type: str  # the AirduckError class name
    transient: bool = False
    quality: tuple[QualityResult, ...] = ()


@dataclass(frozen=True, kw_only=True)
class Message(Event):
    text: str
    level: str = "info"  # info | warning | error
    step_id: str | None = None
