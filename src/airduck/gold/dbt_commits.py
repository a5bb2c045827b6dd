"""Loaded into dbt's process (see ``airduck.gold.dbt``): every lake commit dbt makes carries a commit message.

DuckLake takes a commit message per transaction (``CALL lake.set_commit_message(...)``) and dbt-duckdb
has no hook that runs a statement per transaction. So this module wraps dbt-duckdb's cursor: after each
``BEGIN`` it sets the message airduck passed in ``AIRDUCK_DBT_COMMIT`` (JSON: author, message,
extra_info), and a write dbt runs outside a transaction (e.g. dropping a ``__dbt_backup`` relation after
the commit) is run in its own transaction with that message. Without the variable, or with a dbt-duckdb
that no longer has the wrapped class, nothing is changed.
"""

from __future__ import annotations

import json
import os
import re
from typing import Any

ENV = "AIRDUCK_DBT_COMMIT"
_COMMENTS = re.compile(r"^\s*(?:/\*.*?\*/\s*|--[^\n]*\n\s*)*", re.S)
_WRITES = ("create", "drop", "alter", "insert", "update", "delete", "merge", "copy", "truncate", "comment")


def _verb(sql: str) -> str:
    text = _COMMENTS.sub("", sql, count=1)
    return text.split(None, 1)[0].lower().rstrip(";") if text.strip() else ""


def install(commit: dict[str, Any], lake: str = "lake") -> bool:
    """Wrap dbt-duckdb's cursor so that every transaction on `lake` gets `commit`'s message; False if it cannot."""
    try:
        from dbt.adapters.duckdb.environments import local
    except ImportError:
        return False
    wrapper = getattr(local, "DuckDBCursorWrapper", None)
    if wrapper is None or getattr(wrapper, "_airduck_commits", False):
        return False
    original = wrapper.execute
    call = f"CALL {lake}.set_commit_message(?, ?, extra_info => ?)"
    params = [commit["author"], commit["message"], json.dumps(commit.get("extra_info") or {}, sort_keys=True)]

    def execute(self: Any, sql: str, bindings: Any = None) -> Any:
        verb = _verb(sql)
        if verb in ("begin", "start"):
            result = original(self, sql, bindings)
            original(self, call, params)
            self._airduck_tx = True
            return result
        if verb in ("commit", "rollback", "end", "abort"):
            self._airduck_tx = False
            return original(self, sql, bindings)
        if verb in _WRITES and not getattr(self, "_airduck_tx", False):
            original(self, "BEGIN TRANSACTION")
            try:
                original(self, call, params)
                result = original(self, sql, bindings)
            except BaseException:
                try:
                    original(self, "ROLLBACK")
                except Exception:
                    pass
                raise
            original(self, "COMMIT")
            return result
        return original(self, sql, bindings)

    def rollback(self: Any) -> Any:
        self._airduck_tx = False
        return self._cursor.rollback()

    wrapper.execute = execute
    wrapper.rollback = rollback
    wrapper._airduck_commits = True
    return True


def install_from_env() -> bool:
    """`install` with the commit airduck passed in the environment (`AIRDUCK_DBT_COMMIT`)."""
    raw = os.environ.get(ENV)
    if not raw:
        return False
    try:
        commit = json.loads(raw)
    except ValueError:
        return False
    return install(commit, commit.get("lake", "lake"))
