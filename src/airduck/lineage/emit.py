"""Where OpenLineage events go: always a local JSON-lines file (so nothing is lost), then HTTP backends and the
console. A backend that is down, slow or answers an error never fails or stalls a run: requests run on one
background thread with a bounded timeout; the first failure is one warning and the backend is given up for the
rest of the run; the run waits at most a bounded time for what is still queued. What a backend did not get is
re-sent by `airduck lineage send` (each delivered event is noted in ``delivered`` beside the file). The file is
rotated at `lineage.file_max_mb` and its rotated files trimmed to `lineage.file_keep`, never dropping an event a
backend has not got (:mod:`airduck.lineage.eventlog`)."""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from airduck.config.secrets import redact
from airduck.lineage.config import HttpTransport, Settings
from airduck.lineage.eventlog import Delivered, EventLog, event_key
from airduck.text import plural

__all__ = ["Delivered", "Emitter", "EventLog", "event_key", "post", "read_events", "send_kept"]

log = logging.getLogger("airduck")
console_log = logging.getLogger("airduck.lineage")


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A backend's redirect is a failure: urllib would follow it with the `Authorization` header (the API key) to
    whatever host it names, and turn the POST into a GET whose 200 would count as delivered."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


_OPENER = urllib.request.build_opener(_NoRedirect)


def post(transport: HttpTransport, body: bytes) -> None:
    """POST one event; raises on a connection error, a timeout, a redirect or an HTTP status >= 300."""
    url = transport.post_url
    headers = {"Content-Type": "application/json"}
    if transport.api_key is not None:
        headers["Authorization"] = "Bearer " + transport.api_key.get_secret_value()
    req = urllib.request.Request(url, data=body, headers=headers, method="POST")
    with _OPENER.open(req, timeout=transport.timeout) as resp:
        if resp.status >= 300:
            raise urllib.error.HTTPError(url, resp.status, "error", resp.headers, None)


def post_bounded(transport: HttpTransport, body: bytes) -> None:
    """`post`, given up after ``2 x timeout + 1`` seconds in all: urllib's timeout bounds each socket read, so a
    backend that answers a byte at a time would otherwise hold the request for ever."""
    box: list[BaseException] = []

    def one() -> None:
        try:
            post(transport, body)
        except BaseException as exc:  # handed to the caller
            box.append(exc)

    seconds = 2 * transport.timeout + 1
    thread = threading.Thread(target=one, name="airduck-openlineage-send", daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        raise TimeoutError(f"no full answer after {seconds:g}s")
    if box:
        raise box[0]


def _target(t: HttpTransport) -> str:
    """The backend as printed and noted in ``delivered``: no user info, query or fragment (tokens hide there)."""
    return t.target


@dataclass
class Emitter:
    settings: Settings
    #: seconds a run waits at its end for events still queued for the backends
    drain_seconds: float = 10.0
    warnings: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.file = self.settings.file
        self.file.parent.mkdir(parents=True, exist_ok=True)
        self.log = event_log(self.settings)
        self.delivered = self.log.delivered
        self._lock = threading.Lock()
        self._down: set[str] = set()
        self._queue: queue.Queue[tuple[str, bytes] | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._log_warned = 0

    def emit(self, line: str) -> None:
        """Keep `line` (one serialised event, secrets already masked) and send it to every backend."""
        live = bool(self.settings.http) and len(self._down) < len(self.settings.http)
        with self._lock:  # kept, queued and `.sending` held at once (the sending thread releases it when idle)
            if live:  # while this emitter has events queued, `lineage send` leaves them to it
                self.log.sending.share()
            self.log.append(line)
            if live:
                self._start()
                self._queue.put((line, line.encode()))
        if len(self.log.warnings) > self._log_warned:  # the trim's one warning (undelivered events kept)
            self.warnings += self.log.warnings[self._log_warned:]
            self._log_warned = len(self.log.warnings)
        if self.settings.console:
            console_log.info(line)

    def _start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._work, name="airduck-openlineage", daemon=True)
            self._thread.start()

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            line, body = item
            for t in self.settings.http:
                target = _target(t)
                if target in self._down:
                    continue
                try:
                    post_bounded(t, body)
                    self.delivered.add(event_key(line), target)
                except Exception as exc:
                    self._give_up(target, exc)
            with self._lock:
                if self._queue.empty():  # all delivered and noted: nothing of ours for `lineage send` to leave
                    self.log.sending.release()

    def _give_up(self, target: str, exc: BaseException) -> None:
        self._down.add(target)
        text = redact(f"OpenLineage backend {target} failed ({type(exc).__name__}: {exc}); its events of this run "
                      f"are kept in {self.file}: send them later with `airduck lineage send`")
        self.warnings.append(text)
        log.warning(text)
        if len(self._down) >= len(self.settings.http):  # nothing more is sent live: `lineage send` may take them
            with self._lock:
                self.log.sending.release()

    def close(self) -> None:
        """Wait (at most `drain_seconds`) for the queued events; what is left stays in the file."""
        if self._thread is None:
            with self._lock:
                self.log.sending.release()
            return
        self._queue.put(None)
        self._thread.join(self.drain_seconds)
        if self._thread.is_alive():
            for t in self.settings.http:
                if _target(t) not in self._down:
                    self._give_up(_target(t), TimeoutError(f"not done after {self.drain_seconds:g}s"))
        self._thread = None
        with self._lock:
            self.log.sending.release()


def event_log(settings: Settings) -> EventLog:
    """The kept events file of `settings`, with its rotation and the backends its events must reach."""
    return EventLog(settings.file, max_bytes=settings.file_max_bytes, keep=settings.file_keep,
                    targets=settings.targets)


#: seconds `lineage send` waits for runs delivering their events live (each holds ``.sending`` until its end)
LIVE_WAIT_SECONDS = 60.0


def send_kept(settings: Settings, deadline_seconds: float = 120.0) -> dict[str, Any]:
    """Send every kept event a backend has not got yet (`airduck lineage send`), oldest first, from the rotated
    files too; stop at the first failure of a backend (the rest stays pending). Events a live run still has queued
    are never taken (both would deliver them): `send` first waits, at most LIVE_WAIT_SECONDS, for the runs
    delivering live. Then trim the rotated files beyond `lineage.file_keep` whose events are now all delivered.
    A line torn by a write cut short is skipped
    (counted in ``torn``): no backend would take it, and it must not hold up the events after it."""
    kept = event_log(settings)
    done = kept.delivered
    total = sent = pending = 0
    errors: list[str] = []
    t0 = time.monotonic()
    live = False
    if settings.file.parent.is_dir():
        # a run delivering its events live holds `.sending` shared: wait for it (bounded), else leave them all
        with kept.sending.exclusive(min(deadline_seconds, LIVE_WAIT_SECONDS)) as free:
            live = not free
            got = done.read()
            snapshot = kept.snapshot()  # what is kept now, read after: later events are the runs' own
    else:
        got, snapshot = set(), kept.snapshot()
    with snapshot as snap:
        for n, t in enumerate(settings.http):
            target = _target(t)
            broken = live
            for line in snap.lines():
                total += n == 0
                key = event_key(line)
                if (key, target) in got:
                    continue
                if broken or time.monotonic() - t0 > deadline_seconds:
                    pending += 1
                    continue
                try:
                    post_bounded(t, line.encode())
                    done.add(key, target)
                    got.add((key, target))
                    sent += 1
                except Exception as exc:
                    broken = True
                    pending += 1
                    errors.append(redact(f"{target}: {type(exc).__name__}: {exc}"))
        torn = snap.torn // max(1, len(settings.http))
    if live and pending:
        errors.insert(0, f"a run is delivering its OpenLineage events right now (it holds {kept.sending.path}): "
                         "try again when it has ended")
    if torn:
        log.warning(f"skipped {plural(torn, 'torn line')} of the kept OpenLineage events in {settings.file}: not "
                    "a whole event (a write cut short by a full disk or a killed process)")
    if sent:
        kept.trim()
    return {"total": total, "sent": sent, "pending": pending, "targets": settings.targets, "errors": errors,
            "file": str(settings.file), "torn": torn}


def read_events(file: Path) -> list[dict[str, Any]]:
    """Every kept event of `file` and its rotated files, oldest first."""
    return [json.loads(ln) for ln in EventLog(file).lines()]
