"""Event sinks: the interface, the fan-out that shields a run from failing sinks, and the log sink."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from typing import Any

from airduck.events.reporter import Reporter
from airduck.events.types import Event, Message, StepProgress

log = logging.getLogger("airduck")


class EventSink:
    """Receives a run's typed events. `handle` may be called from several threads (steps run in parallel)."""

    def handle(self, event: Event) -> None:  # pragma: no cover - interface
        raise NotImplementedError


class LogSink(EventSink):
    """Events as log lines on the ``airduck`` logger (Airflow tasks, scripts, servers)."""

    def __init__(self, logger: logging.Logger | None = None) -> None:
        self.log = logger or log

    def handle(self, event: Event) -> None:
        if isinstance(event, StepProgress):
            return
        if isinstance(event, Message):
            level = {"warning": logging.WARNING, "error": logging.ERROR}.get(event.level, logging.INFO)
            self.log.log(level, "%s%s", f"{event.step_id}: " if event.step_id else "", event.text)
            return
        d = event.to_dict()
        d.pop("type")
        d.pop("time")
        keep = {k: v for k, v in d.items() if v not in (None, (), [], 0, "") and k not in ("inputs", "outputs", "quality", "sql")}
        self.log.info("%s %s", event.type, " ".join(f"{k}={v}" for k, v in keep.items()))


class ListSink(EventSink):
    """Keeps every event (tests, the API's run view)."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self._lock = threading.Lock()

    def handle(self, event: Event) -> None:
        with self._lock:
            self.events.append(event)

    def of_type(self, cls: type) -> list[Any]:
        return [e for e in self.events if isinstance(e, cls)]


class Fanout(EventSink):
    """Sends each event to every sink. A sink that raises is reported once (a warning on the log and a
    Message to the other sinks) and then left out; it never fails the run."""

    def __init__(self, sinks: Iterable[EventSink] = ()) -> None:
        self.sinks = [s for s in sinks if s is not None]
        self.broken: dict[int, str] = {}
        self._lock = threading.Lock()

    def add(self, sink: EventSink) -> None:
        self.sinks.append(sink)

    def handle(self, event: Event) -> None:
        for sink in list(self.sinks):
            if id(sink) in self.broken:
                continue
            try:
                sink.handle(event)
            except Exception as exc:  # a sink never fails the run
                with self._lock:
                    if id(sink) in self.broken:
                        continue
                    self.broken[id(sink)] = f"{type(exc).__name__}: {exc}"
                from airduck.config.secrets import redact

                text = f"event sink {type(sink).__name__} failed and was turned off for this run: {redact(str(exc))}"
                log.warning(text)
                self.handle(Message(run_id=event.run_id, text=text, level="warning"))


class StepReporter(Reporter):
    """The Reporter a stage gets inside a step: its progress and messages become typed events of the step.
    The stage's own start/finish calls are ignored (the runner emits StepStarted/StepFinished)."""

    def __init__(self, sink: EventSink, run_id: str | None, step_id: str | None) -> None:
        self.sink, self.run_id, self.step_id = sink, run_id, step_id

    def advance(self, step: str, table: str | None = None, rows: int = 0, done: int | None = None) -> None:
        self.sink.handle(StepProgress(run_id=self.run_id, step_id=self.step_id or step, rows=rows, done=done,
                                      label=table))

    def message(self, text: str, level: str = "info") -> None:
        self.sink.handle(Message(run_id=self.run_id, text=text, level=level, step_id=self.step_id))


class ReporterSink(EventSink):
    """Adapts an old-style Reporter (start/advance/finish/message) to typed events."""

    def __init__(self, reporter: Reporter) -> None:
        self.reporter = reporter

    def handle(self, event: Event) -> None:
        from airduck.events import types as t

        r = self.reporter
        if isinstance(event, t.StepStarted):
            r.start(event.kind, event.step_id)
        elif isinstance(event, t.StepProgress):
            r.advance("", event.step_id, rows=event.rows, done=event.done)
        elif isinstance(event, t.StepFinished):
            r.finish(event.kind, event.step_id, event.status, rows_in=event.rows_in, rows_out=event.rows_out,
                     quarantined=event.rows_quarantined, rejected=event.rows_rejected, files=event.files)
        elif isinstance(event, t.StepSkipped):
            r.finish(event.kind, event.step_id, "skipped", reason=event.reason)
        elif isinstance(event, t.StepFailed):
            r.finish(event.kind, event.step_id, "failed")
        elif isinstance(event, t.Message):
            r.message(event.text, event.level)
        elif isinstance(event, t.RunFinished):
            r.finish("run", None, event.status, run_id=event.run_id)
