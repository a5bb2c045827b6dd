"""Runs started over the API: each in a background thread on its own Lakehouse, its typed events kept for polling
and server-sent events. The run itself is `Lakehouse.run` (the same runner, records and locks as `airduck run`)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from airduck.api.errors import Conflict
from airduck.config.secrets import redact
from airduck.errors import AirduckError, Terminal
from airduck.events import EventSink
from airduck.events.types import Event, RunFinished, RunStarted
from airduck.lakehouse import Lakehouse

#: how long POST /runs waits for the run to start (its id) before answering 409
START_SECONDS = 60.0
#: runs kept in memory (the oldest finished ones are dropped first); the run records keep every run
KEEP_RUNS = 100
#: the longest an event stream stays open
STREAM_SECONDS = 3600.0
HEARTBEAT_SECONDS = 15.0


@dataclass
class LiveRun:
    run_id: str | None = None
    events: list[dict[str, Any]] = field(default_factory=list)
    status: str = "starting"
    error: dict[str, Any] | None = None
    done: bool = False
    cond: threading.Condition = field(default_factory=threading.Condition)
    thread: threading.Thread | None = None

    def add(self, event: dict[str, Any]) -> None:
        with self.cond:
            self.events.append(event)
            self.cond.notify_all()

    def follow(self, start: int = 0, seconds: float = STREAM_SECONDS) -> Iterator[tuple[int, dict[str, Any] | None]]:
        """(index, event) of each event from `start` as it comes; (index, None) as a heartbeat; ends with the run."""
        i = start
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            with self.cond:
                if i >= len(self.events) and not self.done:
                    self.cond.wait(min(HEARTBEAT_SECONDS, max(0.0, deadline - time.monotonic())))
                pending = self.events[i:]
                finished = self.done
            if not pending:
                if finished:
                    return
                yield i, None
            for event in pending:
                yield i, event
                i += 1


class _Sink(EventSink):
    def __init__(self, live: LiveRun, started: threading.Event) -> None:
        self.live = live
        self.started = started

    def handle(self, event: Event) -> None:
        if isinstance(event, RunStarted) and self.live.run_id is None:
            self.live.run_id = event.run_id
            self.live.status = "running"
            self.started.set()
        if isinstance(event, RunFinished):
            self.live.status = event.status
        self.live.add(event.to_dict())


class RunManager:
    """The runs this server started."""

    def __init__(self, lakehouse: Lakehouse) -> None:
        self.project = lakehouse.project
        self.runs: dict[str, LiveRun] = {}
        self._lock = threading.Lock()

    def start(self, select: list[str] | None = None, *, full_refresh: bool = False, reingest: bool = False,
              step: str | None = None) -> LiveRun:
        """Start a run in the background; return once it has its id (or raise what stopped it from starting)."""
        live = LiveRun()
        started = threading.Event()

        def work() -> None:
            try:
                with Lakehouse(self.project, sinks=[_Sink(live, started)]) as lh:
                    lh.run(select, full_refresh, reingest, step=step)
            except AirduckError as exc:
                live.error = {"type": type(exc).__name__, "message": redact(exc.message),
                              "hint": redact(exc.hint) if exc.hint else None}
                live.status = "failed"
            except Exception as exc:  # never let a thread die silently: the run's error says what happened
                live.error = {"type": "InternalError", "message": redact(f"{type(exc).__name__}: {exc}"), "hint": None}
                live.status = "failed"
            finally:
                with live.cond:
                    live.done = True
                    live.cond.notify_all()
                started.set()

        live.thread = threading.Thread(target=work, name="airduck-api-run", daemon=True)
        live.thread.start()
        if not started.wait(START_SECONDS):
            raise Conflict(f"the run did not start within {START_SECONDS:g} s (another run holds the lake?)",
                           hint="see GET /api/v1/runs; it starts when the other run ends")
        if live.run_id is None:  # it failed before it began (a bad selector, an invalid project)
            err = live.error or {"type": "RunFailed", "message": "the run did not start", "hint": None}
            raise RunRefused(err)
        with self._lock:
            self.runs[live.run_id] = live
            for old in [rid for rid, r in self.runs.items() if r.done][: max(0, len(self.runs) - KEEP_RUNS)]:
                del self.runs[old]
        return live

    def get(self, run_id: str) -> LiveRun | None:
        with self._lock:
            return self.runs.get(run_id)

    def shutdown(self, seconds: float = 5.0) -> None:
        """Wait a little for running runs (they are daemon threads; the run records mark a killed run dead)."""
        deadline = time.monotonic() + seconds
        for live in list(self.runs.values()):
            if live.thread is not None:
                live.thread.join(max(0.0, deadline - time.monotonic()))


class RunRefused(Terminal):
    """A run that could not start; `kind` is the type of the error that stopped it."""

    def __init__(self, err: dict[str, Any]) -> None:
        super().__init__(err["message"], hint=err["hint"])
        self.kind = err["type"]
