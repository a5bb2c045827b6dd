"""DuckDB errors turned into airduck errors: one line, with the fix, secrets masked, transient or terminal."""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from typing import ParamSpec, TypeVar

import duckdb

from airduck.config.secrets import redact
from airduck.errors import AirduckError, CatalogError, ConcurrentRunError, NotFound, SqlError, StorageError
from airduck.lake.commit import is_conflict

_HTTP = re.compile(r"HTTP (?:Error: )?.*?\b(4\d\d|5\d\d)\b")
_HTTP_5XX = re.compile(r"HTTP (?:Error: )?.*?\b5\d\d\b|\b50[0234] \w")
#: the catalog's server did not answer (as opposed to answering no): worth retrying
_UNREACHABLE = re.compile(r"Connection refused|could not connect|timed out|timeout|No route to host|"
                          r"server closed the connection|the database system is (starting up|shutting down)|"
                          r"too many clients|could not translate host name|Connection reset", re.I)

P = ParamSpec("P")
T = TypeVar("T")


def _first_line(exc: BaseException) -> str:
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    return redact(lines[0]) if lines else type(exc).__name__


def translate(exc: BaseException) -> AirduckError:
    """The airduck error a DuckDB exception stands for (transient when retrying may help)."""
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
        return StorageError(f"cannot reach the object store: {first}", hint="check lake.s3.endpoint / AIRDUCK_S3_ENDPOINT",
                            transient=not _HTTP.search(text) or bool(_HTTP_5XX.search(text)))
    lowered = text.lower()
    if ("postgres" in lowered or "sqlite" in lowered) and _UNREACHABLE.search(text):
        return CatalogError(f"cannot reach the lake catalog: {first}", hint="is the server running and reachable?",
                            transient=True)
    if isinstance(exc, duckdb.IOException) and ("postgres" in lowered or "sqlite" in lowered):
        return CatalogError(f"cannot open the lake catalog: {first}", hint="check lake.catalog / AIRDUCK_CATALOG")
    if isinstance(exc, duckdb.IOException):
        return StorageError(f"cannot read or write lake files: {first}")
    if isinstance(exc, duckdb.CatalogException) and "does not exist" in text:
        return NotFound(first, hint="see `airduck tables`")
    if isinstance(exc, duckdb.CatalogException | duckdb.ParserException | duckdb.BinderException):
        return SqlError(first)
    if "postgres" in lowered or "sqlite" in lowered:
        return CatalogError(f"lake catalog error: {first}")
    return SqlError(first)


def translated(fn: Callable[P, T]) -> Callable[P, T]:
    """`fn` raising airduck errors only: a DuckDB error escaping it is raised as `translate(exc)`.

    The DuckDB error is not chained (`from None`): its text may hold what `translate` masks."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return fn(*args, **kwargs)
        except duckdb.Error as exc:
            raise translate(exc) from None

    return wrapper
