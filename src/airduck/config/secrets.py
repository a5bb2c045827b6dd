"""Keeping secrets out of output: every message, log line and record passes through `redact`."""

from __future__ import annotations

import re
import threading

_lock = threading.Lock()
_secrets: set[str] = set()
# user:password@ in a URL; the password may itself hold '@' (up to the last '@' before the host), the user may be empty
_DSN_PASSWORD = re.compile(r"(?P<head>[a-z][a-z0-9+.-]*://[^:/@\s]*:)(?P<pw>[^\s/]+)(?P<tail>@)(?=[^@\s/]*(?:[/?\s]|$))", re.I)
_KV_PASSWORD = re.compile(r"(?P<head>\bpassword\s*=\s*)(?P<pw>'[^']*'|\S+)", re.I)
_AWS_SECRET = re.compile(r"(?P<head>\b(?:secret|secret_access_key|aws_secret_access_key)\s*[=:]\s*)(?P<pw>'[^']*'|\S+)", re.I)
MASK = "***"


def register_secret(value: str | None) -> None:
    """Remember a value that must never appear in output (S3 secret keys, passwords, tokens)."""
    if value and len(value) >= 4:
        with _lock:
            _secrets.add(value)


def dsn_password(dsn: str) -> str | None:
    m = _DSN_PASSWORD.search(dsn) or _KV_PASSWORD.search(dsn)
    return m.group("pw").strip("'") if m else None


def redact(text: str) -> str:
    """Mask passwords in DSNs, `password=` pairs and every registered secret in `text`."""
    if not text:
        return text
    out = _DSN_PASSWORD.sub(lambda m: f"{m.group('head')}{MASK}{m.group('tail')}", text)
    out = _KV_PASSWORD.sub(lambda m: f"{m.group('head')}{MASK}", out)
    out = _AWS_SECRET.sub(lambda m: f"{m.group('head')}{MASK}", out)
    with _lock:
        known = sorted(_secrets, key=len, reverse=True)
    for secret in known:
        out = out.replace(secret, MASK)
    return out
