"""Alerts: notifications to generic webhooks on run failure, gate failure and stale tables.

Bodies: ``slack`` posts ``{"text": ...}`` (Slack incoming webhooks and everything compatible: Mattermost,
Rocket.Chat, Discord's ``/slack`` endpoint); ``telegram`` posts ``{"chat_id": ..., "text": ...}`` (the Bot API's
``sendMessage``); ``generic`` posts the alert's fields as JSON. Each delivery is retried on a network error, a
timeout, 429 or 5xx (``retries`` times, the wait doubling from ``backoff``), each attempt bounded by ``timeout``
as a whole (:mod:`airduck.metrics.outbound`: a server that trickles its answer cannot stall a run); a redirect
is not followed (it fails the delivery: urllib would turn the POST into a GET without the body).
A webhook URL is a secret (its token is in the path or the query): it is registered with
:mod:`airduck.config.secrets` and shown only as ``scheme://host/…``; every body passes through `redact`.
"""

from __future__ import annotations

import http.client
import json
import logging
import threading
import time
import urllib.error
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from airduck.config.secrets import redact, register_secret
from airduck.events import EventSink
from airduck.events.types import Event, RunFinished, RunKilled, StepFailed
from airduck.metrics import outbound
from airduck.metrics.config import AlertsConfig, Webhook

log = logging.getLogger("airduck")

#: error class names of a failed quality gate (silver `on_fail: fail`, dbt tests of severity error)
GATE_ERRORS = frozenset({"QualityGateFailed"})


def register_webhook(url: str) -> None:
    """Register a webhook URL's secrets: the whole URL, every query value and each path segment that holds a
    digit or is long (Slack's ``/services/T…/B…/<token>``, Telegram's ``/bot<id>:<token>/``)."""
    register_secret(url)
    parts = urlsplit(url)
    for segment in parts.path.split("/"):
        if len(segment) >= 16 or (len(segment) >= 6 and any(c.isdigit() for c in segment)):
            register_secret(segment)
            if ":" in segment:
                register_secret(segment.split(":", 1)[1])
    for _, value in parse_qsl(parts.query):
        register_secret(value)
    if parts.password:
        register_secret(parts.password)


def shown(webhook: Webhook) -> str:
    """How a webhook is named in output: its `name`, or ``scheme://host/…`` (never its path or query)."""
    if webhook.name:
        return webhook.name
    parts = urlsplit(webhook.url)
    return f"{parts.scheme}://{parts.hostname or ''}/…"


@dataclass
class Alert:
    """One notification. `kind`: run_failed | gate_failed | stale."""

    kind: str
    project: str
    title: str
    lines: list[str] = field(default_factory=list)
    run_id: str | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def text(self) -> str:
        return redact("\n".join([self.title, *self.lines]))

    def body(self, webhook: Webhook) -> dict[str, Any]:
        """The JSON body for `webhook`'s format (redacted)."""
        if webhook.format == "telegram":
            return {"chat_id": webhook.chat_id, "text": self.text()}
        if webhook.format == "slack":
            return {"text": self.text()}
        out = {"kind": self.kind, "project": self.project, "title": self.title, "text": self.text(),
               "run_id": self.run_id, "details": self.details}
        return json.loads(redact(json.dumps(out, default=str)))


@dataclass
class Delivery:
    """What became of one alert at one webhook (`target` is the shown name, never the URL)."""

    target: str
    kind: str
    ok: bool
    attempts: int
    status: int | None = None
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"target": self.target, "kind": self.kind, "ok": self.ok, "attempts": self.attempts,
                "status": self.status, "error": self.error}


def _retryable(status: int) -> bool:
    return status == 429 or status >= 500


def post(webhook: Webhook, body: dict[str, Any], *, retries: int, timeout: float, backoff: float,
         kind: str = "", sleep: Callable[[float], None] = time.sleep) -> Delivery:
    """POST `body` as JSON to the webhook, with retries; never raises (the Delivery says what happened)."""
    data = json.dumps(body).encode()
    status: int | None = None
    error: str | None = None
    wait = backoff
    attempts = 0
    for attempt in range(retries + 1):
        attempts = attempt + 1
        try:
            status = outbound.request(webhook.url, "POST", data, {"Content-Type": "application/json",
                                                                  "User-Agent": "airduck"}, timeout)
            return Delivery(shown(webhook), kind, True, attempts, status)
        except urllib.error.HTTPError as exc:
            status, error = exc.code, f"HTTP {exc.code}"
            if 300 <= exc.code < 400:
                error += " (a redirect, not followed: give the webhook's final URL)"
            if not _retryable(exc.code):
                break
        except (urllib.error.URLError, TimeoutError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            status, error = None, f"{type(reason).__name__}: {reason}"
        except (http.client.HTTPException, ValueError) as exc:  # InvalidURL & co echo the URL: not shown
            status, error = None, f"{type(exc).__name__}: the webhook URL or its answer is not valid HTTP"
            break
        if attempt < retries:
            sleep(wait)
            wait *= 2
    return Delivery(shown(webhook), kind, False, attempts, status, redact(error or "failed"))


def send(config: AlertsConfig, alert: Alert, webhooks: Iterable[Webhook] | None = None) -> list[Delivery]:
    """Send `alert` to every webhook that wants its kind (a webhook's own `on`, else the block's)."""
    out = []
    for hook in webhooks if webhooks is not None else config.webhooks:
        if alert.kind not in (hook.on if hook.on is not None else config.on):
            continue
        delivery = post(hook, alert.body(hook), retries=config.retries, timeout=config.timeout,
                        backoff=config.backoff, kind=alert.kind)
        if not delivery.ok:
            log.warning("alert %s to %s failed after %d attempts: %s", alert.kind, delivery.target,
                        delivery.attempts, delivery.error)
        out.append(delivery)
    return out


def wants(config: AlertsConfig, kind: str) -> bool:
    return any(kind in (h.on if h.on is not None else config.on) for h in config.webhooks)


def stale_alert(project: str, ages: Iterable[Any]) -> Alert | None:
    """The alert for the tables of `ages` (:class:`airduck.metrics.staleness.TableAge`) that are warn/error."""
    from airduck.config.staleness import format_duration

    bad = [a for a in ages if a.status in ("warn", "error")]
    if not bad:
        return None
    lines = [f"{a.table}: {a.status}, " + (f"last changed {format_duration(a.age_seconds)} ago"
                                           if a.age_seconds is not None else "never written")
             + (f" (error after {format_duration(a.error_after)})" if a.error_after else "") for a in bad]
    errors = sum(1 for a in bad if a.status == "error")
    title = f"airduck {project}: {len(bad)} stale table{'s' if len(bad) != 1 else ''} ({errors} error)"
    return Alert("stale", project, title, lines, None, {"tables": [a.to_dict() for a in bad]})


class AlertSink(EventSink):
    """Sends one alert per failed run to each webhook: `gate_failed` when a quality gate failed (and the webhook
    wants it), else `run_failed`; and `run_failed` (status killed) for a run a later run found killed (RunKilled,
    emitted once by the run that marked it). Deliveries are kept in `deliveries`."""

    def __init__(self, config: AlertsConfig, project: str) -> None:
        self.config, self.project = config, project
        self.failed_steps: dict[str | None, list[StepFailed]] = {}  # per run (one Lakehouse may run many)
        self.deliveries: list[Delivery] = []
        self._lock = threading.Lock()

    def handle(self, event: Event) -> None:
        if isinstance(event, StepFailed):
            with self._lock:
                self.failed_steps.setdefault(event.run_id, []).append(event)
        elif isinstance(event, RunFinished):
            with self._lock:
                failed = self.failed_steps.pop(event.run_id, [])
            if event.status == "failed":
                self._run_failed(event, failed)
        elif isinstance(event, RunKilled):
            self._run_killed(event)

    def _run_killed(self, event: RunKilled) -> None:
        started = f"started {event.started_at.isoformat(timespec='seconds')}, " if event.started_at else ""
        lines = [f"the run was killed: {event.error}" if event.error else "the run was killed",
                 f"run {event.run_id} ({started}found by run {event.found_by}): `airduck runs show {event.run_id}`"]
        details = {"status": "killed", "error": event.error, "steps_failed": [], "gates_failed": [],
                   "started_at": event.started_at.isoformat() if event.started_at else None,
                   "found_by": event.found_by}
        alert = Alert("run_failed", self.project, f"airduck {self.project}: run failed (killed)", lines,
                      event.run_id, details)
        self.deliveries += send(self.config, alert)  # to each webhook that wants run_failed

    def _run_failed(self, event: RunFinished, failed: list[StepFailed]) -> None:
        gates = [s for s in failed if s.error_type in GATE_ERRORS]
        others = [s for s in failed if s.error_type not in GATE_ERRORS]
        lines = [f"{s.step_id}: quality gate failed: {s.error}" for s in gates]
        lines += [f"{s.step_id}: {s.error}" for s in others]
        if not failed and event.error:
            lines.append(event.error)
        lines.append(f"run {event.run_id} ({event.seconds:.1f}s): `airduck runs show {event.run_id}`")
        details = {"status": "failed", "steps_failed": [s.step_id for s in failed],
                   "gates_failed": [s.step_id for s in gates],
                   "seconds": round(event.seconds, 3), "error": event.error}
        for hook in self.config.webhooks:
            kinds = hook.on if hook.on is not None else self.config.on
            kind = "gate_failed" if gates and "gate_failed" in kinds else "run_failed" if "run_failed" in kinds else None
            if kind is None:
                continue
            what = "a quality gate failed" if kind == "gate_failed" else "run failed"
            alert = Alert(kind, self.project, f"airduck {self.project}: {what}", lines, event.run_id, details)
            self.deliveries += send(self.config, alert, [hook])
