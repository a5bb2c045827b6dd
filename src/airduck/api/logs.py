"""One JSON line per request on the ``airduck.api`` logger: method, path, status, duration, request id, the token's
name (never the token, never the query string: it may hold values a user typed)."""

from __future__ import annotations

import json
import logging
import time
import uuid
from typing import Any

from airduck.config.secrets import redact

log = logging.getLogger("airduck.api")


class JsonLines(logging.Formatter):
    """A record as one JSON object: the request fields when present, else the message."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {"time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"), "level": record.levelname.lower(),
                               "logger": record.name}
        fields = getattr(record, "request", None)
        if isinstance(fields, dict):
            out.update(fields)
        else:
            out["message"] = redact(record.getMessage())
        if record.exc_info and record.levelno >= logging.ERROR:
            out["error"] = redact(self.formatException(record.exc_info))
        return json.dumps(out, default=str)


def configure(level: int = logging.INFO) -> None:
    """Log airduck's loggers to stderr as JSON lines (what `airduck serve` does; idempotent)."""
    root = logging.getLogger("airduck")
    if not any(isinstance(h.formatter, JsonLines) for h in root.handlers):
        handler = logging.StreamHandler()
        handler.setFormatter(JsonLines())
        root.addHandler(handler)
    root.setLevel(level)


class RequestLog:
    """ASGI middleware: a request id (``X-Request-Id``, kept when the client sends a sane one) and one log line."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        given = dict(scope.get("headers") or []).get(b"x-request-id", b"").decode("latin-1")
        request_id = given if given and len(given) <= 64 and given.replace("-", "").isalnum() else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        status = 500

        async def sending(message: dict) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []), (b"x-request-id", request_id.encode())]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            principal = scope["state"].get("principal")
            log.info("request", extra={"request": {
                "method": scope["method"], "path": scope["path"], "status": status,
                "duration_ms": round((time.perf_counter() - t0) * 1000, 2), "request_id": request_id,
                "token": principal.name if principal is not None else None}})
