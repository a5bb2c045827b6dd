"""The API's one error shape, ``{"error": {"type", "message", "hint"}}``, and the status of each airduck error.

A user's mistake is a 4xx with the message and the fix; an unexpected failure is a 500 that says only that (and the
request id to find it in the log): never a traceback, never a secret (every message passes `redact`).
"""

from __future__ import annotations

from typing import Any

from airduck.config.secrets import redact
from airduck.errors import (
    AirduckError,
    CatalogMissing,
    ConcurrentRunError,
    ConfigError,
    NotFound,
    SqlError,
    StorageError,
    Terminal,
    Transient,
)


class ApiError(Terminal):
    """An error of the API itself (a bad request, a missing token); `status` is its HTTP status."""

    status = 400


class Unauthorized(ApiError):
    status = 401


class Forbidden(ApiError):
    status = 403


class PayloadTooLarge(ApiError):
    status = 413


class Conflict(ApiError):
    status = 409


class BadRequest(ApiError):
    status = 400


def status_of(exc: AirduckError) -> int:
    """The HTTP status of an airduck error."""
    from airduck.storage import ObjectNotFound
    from airduck.storage.objects import ObjectTooLarge

    if isinstance(exc, ApiError):
        return exc.status
    if isinstance(exc, ObjectTooLarge):
        return 413
    if isinstance(exc, NotFound | ObjectNotFound):
        return 404
    if isinstance(exc, ConcurrentRunError):
        return 409
    if isinstance(exc, CatalogMissing):
        return 404
    if isinstance(exc, SqlError | ConfigError):
        return 400
    if isinstance(exc, Transient):
        return 503
    if isinstance(exc, StorageError):
        return 400
    return 400


def error_body(type_: str, message: str, hint: str | None = None) -> dict[str, Any]:
    return {"error": {"type": type_, "message": redact(message), "hint": redact(hint) if hint else None}}


def body_of(exc: AirduckError) -> dict[str, Any]:
    return error_body(getattr(exc, "kind", None) or type(exc).__name__, exc.message, exc.hint)


#: the error responses every protected route may give, for the OpenAPI schema
ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["error"],
    "properties": {"error": {
        "type": "object",
        "required": ["type", "message", "hint"],
        "properties": {"type": {"type": "string"}, "message": {"type": "string"},
                       "hint": {"anyOf": [{"type": "string"}, {"type": "null"}]}},
    }},
}


def responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    text = {400: "Bad request (the message names the fix)", 401: "No token, or a wrong one",
            403: "The token's role may not do this (or a missing CSRF token)", 404: "Not found",
            409: "Conflict", 413: "Too large", 422: "Invalid parameters", 503: "A service the lake needs did not answer"}
    return {code: {"description": text[code], "content": {"application/json": {"schema": ERROR_SCHEMA}}}
            for code in codes}
