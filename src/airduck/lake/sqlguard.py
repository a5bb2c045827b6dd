"""User SQL is read-only: one SELECT, on a read-only attach, with file access locked down."""

from __future__ import annotations

import duckdb

from airduck.errors import SqlError

_ALLOWED = {"SELECT"}


def check_read_only(con: duckdb.DuckDBPyConnection, sql: str) -> str:
    """Return the single statement of `sql` if it is a query; raise SqlError otherwise."""
    try:
        statements = con.extract_statements(sql)
    except duckdb.Error as exc:
        raise SqlError(f"cannot parse the SQL: {str(exc).splitlines()[0]}") from None
    if len(statements) != 1:
        raise SqlError(f"expected exactly one statement, found {len(statements)}")
    stmt = statements[0]
    kind = stmt.type.name if hasattr(stmt.type, "name") else str(stmt.type)
    if kind.upper() not in _ALLOWED:
        raise SqlError(f"only read-only queries (SELECT) are allowed here, not {kind}",
                       hint="writes go through `airduck run`, `rollback` or `maintain`")
    return stmt.query


def lock_down(con: duckdb.DuckDBPyConnection, allowed: list[str]) -> None:
    """After attaching: no file access outside the lake, no ATTACH/INSTALL, no changing settings."""
    con.execute("SET allowed_directories = ?", [allowed])
    con.execute("SET enable_external_access = false")
    con.execute("SET autoload_known_extensions = false")
    con.execute("SET lock_configuration = true")
