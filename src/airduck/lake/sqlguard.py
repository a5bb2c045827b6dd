"""User SQL is read-only: one SELECT, checked node by node, run on a read-only attach with file access locked.

Layers of defence, each enough for what it covers:
1. exactly one statement, and it is a SELECT;
2. the parsed query (DuckDB's own parser, `json_serialize_sql`) may use only allowed table functions
   (`range`, `unnest`, ...), no scalar function of an extension that reaches outside the lake
   (`sqlite_*`, `postgres_*`, `read_*`, `ducklake_*`, `duckdb_secrets`, ...), and only tables of the lake
   (never the catalog's own metadata database);
3. the lake is attached READ_ONLY, then `enable_external_access=false`, `allowed_directories=[data path]`
   and `lock_configuration=true`: no file outside the lake, no ATTACH/INSTALL/LOAD, no SET.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import duckdb

from airduck.errors import SqlError

_ALLOWED = {"SELECT"}
ALLOWED_TABLE_FUNCTIONS = {"range", "generate_series", "unnest", "json_each", "json_tree"}
DENIED_FUNCTION_PREFIXES = (
    "sqlite_", "postgres_", "pg_", "mysql_", "read_", "ducklake_", "duckdb_", "parquet_", "iceberg_", "delta_",
    "glob", "query", "getenv", "current_setting", "http_", "s3_", "write_", "copy_", "load_", "install_",
)
ALLOWED_CATALOGS = {"", "lake", "memory", "temp", "system"}


def walk(node: Any) -> Iterator[dict[str, Any]]:
    """Every JSON object in a parsed-SQL tree (`json_serialize_sql`), depth first."""
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from walk(value)


def _check_tree(con: duckdb.DuckDBPyConnection, sql: str) -> None:
    raw = con.execute("SELECT json_serialize_sql(?)", [sql]).fetchone()[0]
    tree = json.loads(raw)
    if tree.get("error"):
        raise SqlError(f"cannot parse the SQL: {tree.get('error_message', 'unknown error')}")
    for node in walk(tree.get("statements", [])):
        if node.get("type") == "TABLE_FUNCTION":
            name = str((node.get("function") or {}).get("function_name", "")).lower()
            if name not in ALLOWED_TABLE_FUNCTIONS:
                raise SqlError(f"table function {name}() is not allowed here",
                               hint="query the lake's tables; allowed table functions: "
                                    + ", ".join(sorted(ALLOWED_TABLE_FUNCTIONS)))
        if node.get("class") == "FUNCTION":
            name = str(node.get("function_name", "")).lower()
            if name.startswith(DENIED_FUNCTION_PREFIXES):
                raise SqlError(f"function {name}() is not allowed here")
        if node.get("type") == "BASE_TABLE":
            catalog = str(node.get("catalog_name", "")).lower()
            if catalog not in ALLOWED_CATALOGS or catalog.startswith("__ducklake_metadata"):
                raise SqlError(f"only the lake's tables can be read, not {catalog}.*")
            schema = str(node.get("schema_name", "")).lower()
            if schema.startswith("__ducklake_metadata") or (not catalog and schema.startswith("__")):
                raise SqlError(f"only the lake's tables can be read, not {schema}.*")


def check_read_only(con: duckdb.DuckDBPyConnection, sql: str) -> str:
    """Return the single statement of `sql` if it is a safe query; raise SqlError otherwise."""
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
    _check_tree(con, stmt.query)
    return stmt.query


def lock_down(con: duckdb.DuckDBPyConnection, allowed: list[str]) -> None:
    """After attaching: no file access outside the lake, no ATTACH/INSTALL, no changing settings."""
    con.execute("SET allowed_directories = ?", [allowed])
    con.execute("SET enable_external_access = false")
    con.execute("SET autoload_known_extensions = false")
    con.execute("SET lock_configuration = true")
