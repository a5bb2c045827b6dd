"""Every write to the lake is one transaction with a commit message (who, what, version)."""

from __future__ import annotations

import getpass
import json
import os
import socket
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import duckdb

from airduck._version import __version__
from airduck.errors import ConcurrentRunError

_CONFLICT_MARKERS = ("database is locked", "conflict", "Transaction conflict", "could not serialize", "Write-write", "duplicate key value")


def author() -> str:
    try:
        user = getpass.getuser()
    except Exception:
        user = "unknown"
    return f"airduck {__version__} ({user}@{socket.gethostname()})"


def command_line() -> str:
    return " ".join(["airduck", *sys.argv[1:]]) if sys.argv and sys.argv[0].endswith("airduck") else os.path.basename(sys.argv[0] if sys.argv else "python")


def is_conflict(exc: BaseException) -> bool:
    text = str(exc)
    return any(m.lower() in text.lower() for m in _CONFLICT_MARKERS)


def commit_info(**extra: Any) -> dict[str, Any]:
    """A commit's extra info: airduck's version, the command line, and `extra` (step, run id, ...)."""
    return {"version": __version__, "command": command_line(), **extra}


def set_message(con: duckdb.DuckDBPyConnection, message: str, **extra: Any) -> None:
    con.execute(
        "CALL lake.set_commit_message(?, ?, extra_info => ?)",
        [author(), message, json.dumps(commit_info(**extra), default=str, sort_keys=True)],
    )


@contextmanager
def write(con: duckdb.DuckDBPyConnection, message: str, **extra: Any) -> Iterator[duckdb.DuckDBPyConnection]:
    """One atomic write: BEGIN, commit message, your statements, COMMIT (or ROLLBACK on any error)."""
    con.execute("BEGIN TRANSACTION")
    try:
        set_message(con, message, **extra)
        yield con
    except BaseException:
        try:
            con.execute("ROLLBACK")
        except duckdb.Error:
            pass
        raise
    try:
        con.execute("COMMIT")
    except duckdb.Error as exc:
        try:
            con.execute("ROLLBACK")
        except duckdb.Error:
            pass
        if is_conflict(exc):
            raise ConcurrentRunError(f"another writer committed first; nothing of this change was written ({exc})") from exc
        raise
