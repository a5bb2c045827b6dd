"""DuckDB errors turned into airduck errors: one line, with the fix, secrets masked."""

from __future__ import annotations

import re

import duckdb

from airduck.config.secrets import redact
from airduck.errors import AirduckError, CatalogError, ConcurrentRunError, SqlError, StorageError
from airduck.lake.commit import is_conflict

_HTTP = re.compile(r"HTTP (?:Error: )?.*?\b(4\d\d|5\d\d)\b")


def _first_line(exc: BaseException) -> str:
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    return redact(lines[0]) if lines else type(exc).__name__


def translate(exc: BaseException) -> AirduckError:
    """The airduck error a DuckDB exception stands for."""
    if isinstance(exc, AirduckError):
        return exc
    text = str(exc)
    first = _first_line(exc)
    if is_conflict(exc):
        return ConcurrentRunError(f"another writer committed first: {first}", hint="run the command again")
    if "403" in text or "Credentials are provided, but they did not work" in text or "SignatureDoesNotMatch" in text:
        return StorageError(f"S3 rejected the credentials: {first}",
                            hint="check lake.s3 / AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY")
    if "404" in text and ("s3://" in text or "HTTP" in text):
        return StorageError(f"object or bucket not found: {first}", hint="run `airduck setup`; check lake.data_path")
    if isinstance(exc, duckdb.HTTPException) or "Could not establish connection" in text or "HTTP" in text:
        return StorageError(f"cannot reach the object store: {first}", hint="check lake.s3.endpoint / AIRDUCK_S3_ENDPOINT")
    if isinstance(exc, duckdb.IOException):
        return StorageError(f"cannot read or write lake files: {first}")
    if isinstance(exc, duckdb.CatalogException | duckdb.ParserException | duckdb.BinderException):
        return SqlError(first)
    if "postgres" in text.lower() or "sqlite" in text.lower():
        return CatalogError(f"lake catalog error: {first}")
    return SqlError(first)
