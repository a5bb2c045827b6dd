"""The lake gauges: tables (rows, bytes, files, age, freshness), snapshots and runs, from one :class:`LakeState`.

The facade (`Lakehouse.lake_state`) gathers the state in one call (a few catalog queries and three queries of
the run records); :class:`LakeCollector` turns it into Prometheus metric families on each scrape or push.
Labels are bounded: `table` and `layer` (the project's tables), `status` (a fixed set), never a run id.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from airduck.config.secrets import redact
from airduck.config.staleness import FreshnessPolicy
from airduck.metrics.staleness import STATUSES, table_ages

log = logging.getLogger("airduck")

RUN_STATUSES = ("ok", "warned", "failed", "killed", "running")
TABLE_LABELS = ("table", "layer")

#: name -> (help, label names): every metric this module exports (the README's table and the tests use it)
LAKE_METRICS: dict[str, tuple[str, tuple[str, ...]]] = {
    "airduck_lake_up": ("1 when the lake's catalog and run records could be read, else 0", ()),
    "airduck_lake_snapshots": ("snapshots in the lake's catalog", ()),
    "airduck_lake_current_snapshot": ("id of the lake's latest snapshot", ()),
    "airduck_table_rows": ("rows in the table now", TABLE_LABELS),
    "airduck_table_bytes": ("bytes of the table's data files", TABLE_LABELS),
    "airduck_table_files": ("data files of the table", TABLE_LABELS),
    "airduck_table_last_change_timestamp_seconds": ("time of the latest snapshot that changed the table",
                                                    TABLE_LABELS),
    "airduck_table_age_seconds": ("seconds since the latest snapshot that changed the table", TABLE_LABELS),
    "airduck_table_last_success_timestamp_seconds": ("time the last successful step of the table finished",
                                                     TABLE_LABELS),
    "airduck_table_seconds_since_last_success": ("seconds since the last successful step of the table",
                                                 TABLE_LABELS),
    "airduck_table_freshness_warn_after_seconds": ("the table's freshness.warn_after", TABLE_LABELS),
    "airduck_table_freshness_error_after_seconds": ("the table's freshness.error_after", TABLE_LABELS),
    "airduck_table_freshness_status": ("1 for the table's freshness status (ok, warn, error)",
                                       (*TABLE_LABELS, "status")),
    "airduck_table_last_run_rows_in": ("rows the table's step read in the last finished run", TABLE_LABELS),
    "airduck_table_last_run_rows_out": ("rows the table's step wrote in the last finished run", TABLE_LABELS),
    "airduck_table_last_run_rows_quarantined": ("rows the table's step quarantined in the last finished run",
                                                TABLE_LABELS),
    "airduck_table_last_run_rows_rejected": ("rows the table's step rejected in the last finished run",
                                             TABLE_LABELS),
    "airduck_runs": ("recorded runs by final status", ("status",)),
    "airduck_last_run_outcome": ("1 for the status of the last finished run", ("status",)),
    "airduck_last_run_duration_seconds": ("duration of the last finished run", ()),
    "airduck_last_run_finished_timestamp_seconds": ("time the last finished run ended", ()),
    "airduck_last_run_rows_in": ("rows the last finished run read into bronze", ()),
    "airduck_last_run_rows_out": ("rows the last finished run wrote to silver", ()),
    "airduck_last_run_rows_quarantined": ("rows the last finished run quarantined", ()),
    "airduck_last_run_rows_rejected": ("input lines the last finished run rejected", ()),
    "airduck_last_success_run_timestamp_seconds": ("time the last ok or warned run ended", ()),
}


@dataclass
class LakeState:
    """What the lake gauges are made of (gathered by `Lakehouse.lake_state`)."""

    project: str
    tables: list[Any] = field(default_factory=list)  # airduck.lake.catalog.TableDescription
    last_change: dict[str, datetime] = field(default_factory=dict)  # schema.table -> latest snapshot changing it
    snapshots: int = 0
    current_snapshot: int | None = None
    last_success: dict[str, datetime] = field(default_factory=dict)  # schema.table -> last ok step finished
    runs_by_status: dict[str, int] = field(default_factory=dict)
    last_run: Any | None = None  # a run record (with .steps) of the last finished run
    last_success_run: datetime | None = None
    policies: dict[str, FreshnessPolicy] = field(default_factory=dict)


def _ts(value: datetime | None) -> float | None:
    if value is None:
        return None
    return (value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp()


def _table(schema: str, name: str) -> list[str]:
    return [f"{schema}.{name}", schema]


def step_table(layer: str | None, table: str | None) -> str | None:
    """`schema.table` of a recorded step (``silver`` + ``orders`` -> ``silver.orders``)."""
    if not table:
        return None
    return table if "." in table or not layer else f"{layer}.{table}"


def families(state: LakeState, now: datetime) -> list[GaugeMetricFamily]:
    """The lake gauges of `state` at `now`."""
    fam = {name: GaugeMetricFamily(name, help_, labels=list(labels)) for name, (help_, labels) in LAKE_METRICS.items()}
    fam["airduck_lake_up"].add_metric([], 1)
    fam["airduck_lake_snapshots"].add_metric([], state.snapshots)
    if state.current_snapshot is not None:
        fam["airduck_lake_current_snapshot"].add_metric([], state.current_snapshot)
    rows: dict[str, int] = {}
    for t in state.tables:
        labels = _table(t.schema, t.name)
        rows[labels[0]] = t.row_count
        fam["airduck_table_rows"].add_metric(labels, t.row_count)
        fam["airduck_table_bytes"].add_metric(labels, t.file_bytes)
        fam["airduck_table_files"].add_metric(labels, t.file_count)
    nowts = now.timestamp()
    for age in table_ages(rows, state.last_change, state.policies, now):
        labels = [age.table, age.layer]
        if age.last_change is not None:
            fam["airduck_table_last_change_timestamp_seconds"].add_metric(labels, age.last_change.timestamp())
            fam["airduck_table_age_seconds"].add_metric(labels, age.age_seconds)
        if age.warn_after is not None:
            fam["airduck_table_freshness_warn_after_seconds"].add_metric(labels, age.warn_after)
        if age.error_after is not None:
            fam["airduck_table_freshness_error_after_seconds"].add_metric(labels, age.error_after)
        if age.status in STATUSES:
            for status in STATUSES:
                fam["airduck_table_freshness_status"].add_metric([*labels, status], 1 if status == age.status else 0)
    for table, finished in sorted(state.last_success.items()):
        labels = [table, table.split(".", 1)[0]]
        fam["airduck_table_last_success_timestamp_seconds"].add_metric(labels, _ts(finished))
        fam["airduck_table_seconds_since_last_success"].add_metric(labels, max(0.0, nowts - _ts(finished)))
    for status in RUN_STATUSES:
        fam["airduck_runs"].add_metric([status], state.runs_by_status.get(status, 0))
    run = state.last_run
    if run is not None:
        for status in RUN_STATUSES:
            fam["airduck_last_run_outcome"].add_metric([status], 1 if run.status == status else 0)
        if run.seconds is not None:
            fam["airduck_last_run_duration_seconds"].add_metric([], run.seconds)
        if run.finished_at is not None:
            fam["airduck_last_run_finished_timestamp_seconds"].add_metric([], _ts(run.finished_at))
        for measure in ("in", "out", "quarantined", "rejected"):
            fam[f"airduck_last_run_rows_{measure}"].add_metric([], getattr(run, f"rows_{measure}") or 0)
        per_table: dict[str, dict[str, int]] = {}
        for step in run.steps or []:
            table = step_table(step.get("layer"), step.get("table_name"))
            if table is None:
                continue
            acc = per_table.setdefault(table, {"in": 0, "out": 0, "quarantined": 0, "rejected": 0})
            for measure in acc:
                acc[measure] += int(step.get(f"rows_{measure}") or 0)
        for table, acc in sorted(per_table.items()):
            for measure, value in acc.items():
                fam[f"airduck_table_last_run_rows_{measure}"].add_metric([table, table.split(".", 1)[0]], value)
    if state.last_success_run is not None:
        fam["airduck_last_success_run_timestamp_seconds"].add_metric([], _ts(state.last_success_run))
    return list(fam.values())


class LakeCollector(Collector):
    """A Prometheus collector of the lake gauges. `fetch` gathers a :class:`LakeState` (the facade's
    `lake_state`); its answer is kept `cache_seconds` so frequent scrapes do not hammer the catalog. When
    `fetch` fails, only ``airduck_lake_up 0`` is exported (and one warning logged), never an error page."""

    def __init__(self, fetch: Callable[[], LakeState], *, cache_seconds: float = 10.0,
                 clock: Callable[[], datetime] | None = None) -> None:
        self.fetch, self.cache_seconds = fetch, cache_seconds
        self.clock = clock or (lambda: datetime.now(UTC))
        self._cached: tuple[float, LakeState] | None = None
        self._lock = threading.Lock()
        self._warned = False

    def describe(self) -> list:  # no collect() at registration time (that would read the lake)
        return []

    def state(self) -> LakeState | None:
        with self._lock:
            if self._cached is not None and time.monotonic() - self._cached[0] < self.cache_seconds:
                return self._cached[1]
            try:
                state = self.fetch()
            except Exception as exc:
                if not self._warned:
                    log.warning("lake metrics unavailable: %s", redact(str(exc).splitlines()[0] if str(exc) else
                                                                       type(exc).__name__))
                    self._warned = True
                return None
            self._warned = False
            self._cached = (time.monotonic(), state)
            return state

    def collect(self) -> Iterator[GaugeMetricFamily]:
        state = self.state()
        if state is None:
            up = GaugeMetricFamily("airduck_lake_up", LAKE_METRICS["airduck_lake_up"][0])
            up.add_metric([], 0)
            yield up
            return
        yield from families(state, self.clock())


def policies_of(sources: Mapping[str, Any], silver: Mapping[str, Any]) -> dict[str, FreshnessPolicy]:
    """`schema.table` -> freshness policy, from the config's sources (bronze) and silver tables."""
    out = {f"bronze.{name}": s.freshness for name, s in sources.items() if getattr(s, "freshness", None)}
    out.update({f"silver.{name}": t.freshness for name, t in silver.items() if getattr(t, "freshness", None)})
    return out
