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

#: what DuckLake, DuckDB and the catalog databases say when a COMMIT loses a race: DuckLake's own conflict check
#: and retry limit, DuckDB's catalog write-write conflict, SQLite's busy catalog, PostgreSQL's serialisation failures
#: and the unique keys of DuckLake's catalog tables (two commits taking the same snapshot id). Only ever matched against errors raised BY the COMMIT statement (or
#: by DuckLake's commit) — a step's own SQL failing on a user value that says "conflict" is not a conflict.
_CONFLICT_MARKERS = ("Transaction conflict", "Exceeded the maximum retry count", "database is locked",
                     "could not serialize access", "deadlock detected", "duplicate key value violates unique constraint",
                     "Failed to commit DuckLake transaction", "write-write conflict")


def author() -> str:
    try:
        user = getpass.getuser()
    except Exception:
        user = "unknown"
    return f"airduck {__version__} ({user}@{socket.gethostname()})"


def command_line() -> str:
    return " ".join(["airduck", *sys.argv[1:]]) if sys.argv and sys.argv[0].endswith("airduck") else os.path.basename(sys.argv[0] if sys.argv else "python")


def is_conflict(exc: BaseException) -> bool:
    """Whether an error raised at COMMIT is a lost race (worth retrying). Call it only on errors of a COMMIT."""
    if isinstance(exc, ConcurrentRunError):
        return True
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
