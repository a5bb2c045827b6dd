"""A batch run's metrics: the event sink that pushes them to a Pushgateway and writes a textfile.

At the end of a run (RunFinished) :class:`PrometheusSink` renders one registry: the run's own metrics from its
events (`airduck_run_*`, `airduck_step_*`) and the lake gauges (:mod:`airduck.metrics.lake`, read after the run).
It writes them to `metrics.textfile` (atomically, for node-exporter's textfile collector) and PUTs them to
`metrics.pushgateway` (job `metrics.job`, grouping key `project`), each bounded by `metrics.timeout`. A failure
raises :class:`MetricsPushFailed` after the other target was served; the run's Fanout turns that into one
warning and the run goes on.
"""

from __future__ import annotations

import http.client
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from prometheus_client import CollectorRegistry, push_to_gateway, write_to_textfile
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from airduck.config.secrets import redact
from airduck.errors import Transient
from airduck.events import EventSink
from airduck.events.types import Event, RunFinished, RunStarted, StepFailed, StepFinished, StepSkipped
from airduck.metrics.config import MetricsConfig
from airduck.metrics.lake import RUN_STATUSES, LakeCollector, LakeState
from airduck.metrics.outbound import pushgateway_handler

STEP_LABELS = ("step", "kind")

#: name -> (help, label names) of the metrics a batch run adds to the lake gauges
RUN_METRICS: dict[str, tuple[str, tuple[str, ...]]] = {
    "airduck_run_duration_seconds": ("duration of this run", ()),
    "airduck_run_outcome": ("1 for this run's status", ("status",)),
    "airduck_run_finished_timestamp_seconds": ("time this run ended", ()),
    "airduck_run_steps": ("steps of this run by outcome", ("status",)),
    "airduck_step_duration_seconds": ("seconds the step took in this run", (*STEP_LABELS, "status")),
    "airduck_step_rows_in": ("rows the step read in this run", STEP_LABELS),
    "airduck_step_rows_out": ("rows the step wrote in this run", STEP_LABELS),
    "airduck_step_rows_quarantined": ("rows the step quarantined in this run", STEP_LABELS),
    "airduck_step_rows_rejected": ("input lines the step rejected in this run", STEP_LABELS),
}


class MetricsPushFailed(Transient):
    """A batch run's metrics could not be pushed or written (the run itself is not affected)."""


class _RunCollector(Collector):
    def __init__(self, finished: RunFinished, steps: list[Event]) -> None:
        self.finished, self.steps = finished, steps

    def collect(self):
        fam = {n: GaugeMetricFamily(n, h, labels=list(labels)) for n, (h, labels) in RUN_METRICS.items()}
        f = self.finished
        fam["airduck_run_duration_seconds"].add_metric([], f.seconds)
        for status in RUN_STATUSES:
            fam["airduck_run_outcome"].add_metric([status], 1 if f.status == status else 0)
        fam["airduck_run_finished_timestamp_seconds"].add_metric([], f.time.timestamp())
        for status, n in (("ok", f.steps_ok), ("failed", f.steps_failed), ("skipped", f.steps_skipped)):
            fam["airduck_run_steps"].add_metric([status], n)
        for e in self.steps:
            if isinstance(e, StepFinished):
                fam["airduck_step_duration_seconds"].add_metric([e.step_id, e.kind, e.status], e.seconds)
                for measure in ("in", "out", "quarantined", "rejected"):
                    fam[f"airduck_step_rows_{measure}"].add_metric([e.step_id, e.kind], getattr(e, f"rows_{measure}"))
            elif isinstance(e, StepFailed):
                fam["airduck_step_duration_seconds"].add_metric([e.step_id, e.kind, "failed"], e.seconds)
            elif isinstance(e, StepSkipped):
                fam["airduck_step_duration_seconds"].add_metric(
                    [e.step_id, e.kind, "upstream failed" if e.upstream_failed else "skipped"], 0)
        yield from fam.values()


class PrometheusSink(EventSink):
    """Collects a run's events; on RunFinished writes the textfile and pushes to the Pushgateway.

    `lake`: gathers the lake gauges after the run (the facade's `lake_state`); None leaves them out. `root`: the
    folder a relative `textfile` is resolved in."""

    def __init__(self, config: MetricsConfig, project: str, *, lake: Callable[[], LakeState] | None = None,
                 root: Path | None = None, clock: Callable[[], datetime] | None = None) -> None:
        self.config, self.project, self.lake, self.root = config, project, lake, root
        self.clock = clock or (lambda: datetime.now(UTC))
        self.events: dict[str | None, list[Event]] = {}  # per run (one Lakehouse may run many)
        self._lock = threading.Lock()
        self.registry: CollectorRegistry | None = None

    def handle(self, event: Event) -> None:
        if isinstance(event, RunStarted):
            with self._lock:
                self.events[event.run_id] = []
        elif isinstance(event, StepFinished | StepFailed | StepSkipped):
            with self._lock:
                self.events.setdefault(event.run_id, []).append(event)
        elif isinstance(event, RunFinished):
            with self._lock:
                steps = self.events.pop(event.run_id, [])
            self.flush(event, steps)

    def textfile(self) -> Path | None:
        if not self.config.textfile:
            return None
        path = Path(self.config.textfile).expanduser()
        return path if path.is_absolute() or self.root is None else self.root / path

    def flush(self, finished: RunFinished, steps: list[Event] | None = None) -> None:
        registry = CollectorRegistry(auto_describe=False)
        registry.register(_RunCollector(finished, list(steps or [])))
        if self.lake is not None:
            registry.register(LakeCollector(self.lake, cache_seconds=0, clock=self.clock))
        self.registry = registry
        problems = []
        path = self.textfile()
        if path is not None:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                write_to_textfile(str(path), registry)  # writes a temporary file and renames it
            except OSError as exc:
                problems.append(f"textfile {path}: {exc.strerror or exc}")
        if self.config.pushgateway:
            try:
                push_to_gateway(self.config.pushgateway, job=self.config.job, registry=registry,
                                grouping_key={"project": self.project}, timeout=self.config.timeout,
                                handler=pushgateway_handler)
            except (http.client.HTTPException, ValueError) as exc:  # InvalidURL & co echo the URL: not shown
                problems.append(f"pushgateway: {type(exc).__name__}: the URL or its answer is not valid HTTP")
            except Exception as exc:
                problems.append(f"pushgateway: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
        if problems:
            raise MetricsPushFailed(redact("; ".join(problems)),
                                    hint="check metrics.pushgateway / metrics.textfile in airduck.yml")
