"""User SQL is read-only: one SELECT, checked node by node, run on a read-only attach with file access locked.

Layers of defence, each enough for what it covers:
1. the SQL is parsed on a separate, empty DuckDB connection with external access disabled, so parsing
   itself reads nothing (`PRAGMA import_database('/dir')` expands while it is parsed); no PRAGMA;
   exactly one statement, and it is a SELECT (a PIVOT whose values DuckDB must look up first is refused
   with the spelling that works);
2. the parsed query (DuckDB's own parser, `json_serialize_sql`) may read only an allow-list of relations:
   tables and views of the lake, CTEs in scope, and a few `information_schema` views. Never a system view
   (`duckdb_databases`, `pragma_database_list`, `pg_settings`, ...: they show catalog DSNs and settings),
   the catalog's own metadata database, or a file path (a replacement scan such as
   `FROM 'data/**/*.parquet'` would read the lake's files directly, rows deleted or rolled back included).
   Only allowed table functions (`range`, `unnest`, ...), no scalar function of an extension that reaches
   outside the lake (`sqlite_*`, `postgres_*`, `read_*`, `ducklake_*`, `current_setting`, ...);
3. the lake is attached READ_ONLY (a PostgreSQL catalog's password sits in a DuckDB secret, never in the
   attach path), then `enable_external_access=false`, `allowed_directories=[data path]` and
   `lock_configuration=true`: no file outside the lake, no ATTACH/INSTALL/LOAD, no SET;
4. a time limit interrupts the query (see `run_with_time_limit`).
"""

from __future__ import annotations

import atexit
import functools
import json
import re
import threading
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import duckdb

from airduck.errors import SqlError
from airduck.lake.config import API_SQL_TIMEOUT_SECONDS, CLI_SQL_TIMEOUT_SECONDS

__all__ = ["API_SQL_TIMEOUT_SECONDS", "CLI_SQL_TIMEOUT_SECONDS", "QueryTimeout", "check_read_only", "lake_relations",
           "lock_down", "run_with_time_limit", "walk"]

_ALLOWED = {"SELECT"}
ALLOWED_TABLE_FUNCTIONS = {"range", "generate_series", "unnest", "json_each", "json_tree"}
DENIED_FUNCTION_PREFIXES = (
    "sqlite_", "postgres_", "pg_", "mysql_", "read_", "ducklake_", "duckdb_", "parquet_", "iceberg_", "delta_",
    "glob", "query", "getenv", "current_setting", "http_", "s3_", "write_", "copy_", "load_", "install_",
    "pragma_", "which_secret", "getvariable",
)
#: `information_schema` views that show names and types only (no paths, no settings)
INFORMATION_SCHEMA_VIEWS = {"tables", "columns", "schemata", "views", "table_constraints", "key_column_usage",
                            "referential_constraints", "check_constraints", "constraint_column_usage"}
LAKE_CATALOGS = {"", "lake"}
#: longer SQL is refused: checking it (tokenizing, parsing, walking the tree) would not be under the time limit
MAX_SQL_CHARS = 200_000
#: `_subquery_cost` above this is refused (2**17: about 0.2 s of planning; 16 nested levels is 2**17 - 2)
SUBQUERY_BUDGET = 1 << 17
_PLAIN_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]*$")
_HINT_TABLES = "only the lake's tables can be read (schema.table, see `airduck tables`)"

T = TypeVar("T")


def walk(node: Any) -> Iterator[dict[str, Any]]:
    """Every JSON object in a parsed-SQL tree (`json_serialize_sql`), depth first."""
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from walk(value)


def _scoped(node: Any, ctes: frozenset[str] = frozenset()) -> Iterator[tuple[dict[str, Any], frozenset[str]]]:
    """Like `walk`, with the CTE names in scope at each node (a query node's CTEs cover its whole subtree)."""
    if isinstance(node, dict):
        cte_map = node.get("cte_map")
        if isinstance(cte_map, dict) and cte_map.get("map"):
            ctes = ctes | {str(item.get("key", "")).lower() for item in cte_map["map"]}
        yield node, ctes
        for value in node.values():
            yield from _scoped(value, ctes)
    elif isinstance(node, list):
        for value in node:
            yield from _scoped(value, ctes)


@functools.cache
def _system_relations() -> frozenset[str]:
    """Names of the views and tables DuckDB itself provides (a CTE may not be named like one of them)."""
    con = _parser()
    try:
        rows = con.execute("SELECT view_name FROM duckdb_views() UNION SELECT table_name FROM duckdb_tables()"
                           ).fetchall()
    finally:
        con.close()
    return frozenset(str(r[0]).lower() for r in rows)


def _parser() -> duckdb.DuckDBPyConnection:
    """An empty in-memory connection that can read nothing: where user SQL is parsed."""
    # threads=1: parsing needs no worker threads (a database per server thread would start a pool each)
    return duckdb.connect(config={"enable_external_access": False, "autoload_known_extensions": False,
                                  "autoinstall_known_extensions": False, "lock_configuration": True, "threads": 1})


_parsers = threading.local()
_all_parsers: list[tuple[threading.Thread, duckdb.DuckDBPyConnection]] = []
_all_lock = threading.Lock()


@atexit.register
def _close_parsers() -> None:
    """Close every thread's parser before the interpreter goes: a DuckDB database still open in an idle worker
    thread of a server (anyio's pool) at exit aborted the process ("terminate called without an active
    exception", exit code 134)."""
    with _all_lock:
        for _, con in _all_parsers:
            try:
                con.close()
            except duckdb.Error:
                pass
        _all_parsers.clear()


def _thread_parser() -> duckdb.DuckDBPyConnection:
    """This thread's parser connection, made once: a new DuckDB database costs tens of milliseconds, and parsing
    (all it is used for) leaves nothing behind in it."""
    con = getattr(_parsers, "con", None)
    if con is None:
        con = _parsers.con = _parser()
        with _all_lock:  # the parsers of threads that ended are closed here (a server's pool comes and goes)
            for thread, old in [p for p in _all_parsers if not p[0].is_alive()]:
                _all_parsers.remove((thread, old))
                try:
                    old.close()
                except duckdb.Error:
                    pass
            _all_parsers.append((threading.current_thread(), con))
    return con


def lake_relations(con: duckdb.DuckDBPyConnection, catalog: str = "lake") -> set[tuple[str, str]]:
    """(schema, name) of every table and view of the lake, lower case: what user SQL may read."""
    name = "'" + catalog.replace("'", "''") + "'"  # a literal, not a parameter: binding one imports pandas (~2 s)
    rows = con.execute(
        f"SELECT schema_name, table_name FROM duckdb_tables() WHERE database_name = {name} "
        f"UNION SELECT schema_name, view_name FROM duckdb_views() WHERE database_name = {name} AND NOT internal"
    ).fetchall()
    return {(str(s).lower(), str(t).lower()) for s, t in rows}


def _check_relation(node: dict[str, Any], ctes: frozenset[str], lake: set[tuple[str, str]]) -> None:
    catalog = str(node.get("catalog_name", "")).lower()
    schema = str(node.get("schema_name", "")).lower()
    name = str(node.get("table_name", ""))
    lname = name.lower()
    shown = ".".join(p for p in (catalog, schema, name) if p)
    if not catalog and not schema and lname in ctes:
        if not _PLAIN_NAME.match(name) or lname in _system_relations():
            raise SqlError(f"a CTE cannot be named {name!r} here (the name of a file or of a system view)",
                           hint="rename the CTE")
        return
    if schema == "information_schema" and catalog in LAKE_CATALOGS | {"system"}:
        if lname in INFORMATION_SCHEMA_VIEWS:
            return
        raise SqlError(f"information_schema.{name} is not allowed here",
                       hint="allowed: " + ", ".join(f"information_schema.{v}" for v in sorted(INFORMATION_SCHEMA_VIEWS)))
    if catalog in LAKE_CATALOGS and (schema or "main", lname) in lake:
        return
    if not _PLAIN_NAME.match(name) or "/" in name:
        raise SqlError(f"files cannot be read here ({name!r})", hint=_HINT_TABLES)
    raise SqlError(f"{shown} is not a table of the lake; {_HINT_TABLES}")


def _check_tree(tree: dict[str, Any], lake: set[tuple[str, str]]) -> None:
    for node, ctes in _scoped(tree.get("statements", [])):
        kind = node.get("type")
        if kind == "TABLE_FUNCTION":
            function = node.get("function") or {}
            name = str(function.get("function_name", "")).lower()
            if name not in ALLOWED_TABLE_FUNCTIONS or function.get("schema") or function.get("catalog"):
                raise SqlError(f"table function {name}() is not allowed here",
                               hint="query the lake's tables; allowed table functions: "
                                    + ", ".join(sorted(ALLOWED_TABLE_FUNCTIONS)))
        elif kind == "SHOW_REF" and not node.get("query"):
            raise SqlError("SHOW is not allowed here", hint="see `airduck tables` and `airduck describe TABLE`")
        elif kind == "BASE_TABLE":
            _check_relation(node, ctes, lake)
        if node.get("class") == "FUNCTION":
            name = str(node.get("function_name", "")).lower()
            if name.startswith(DENIED_FUNCTION_PREFIXES):
                raise SqlError(f"function {name}() is not allowed here")


def _tokens(sql: str) -> list[tuple[int, str, str]]:
    """(offset, text, kind) of each token of `sql` (DuckDB's tokenizer; comments are skipped)."""
    raw = duckdb.tokenize(sql)
    out = []
    for i, (start, kind) in enumerate(raw):
        end = raw[i + 1][0] if i + 1 < len(raw) else len(sql)
        out.append((start, sql[start:end].strip(), getattr(kind, "name", str(kind))))
    return out


def _first_keyword(sql: str) -> str:
    tokens = _tokens(sql)
    return tokens[0][1].lower() if tokens else ""


_PIVOT_ON_END = {"using", "group", "order", "limit", "offset", "union", "except", "intersect", "qualify", "having",
                 "window", "where"}


def _pivot_for_check(sql: str) -> str | None:
    """`sql` with ` IN (NULL)` after each PIVOT ... ON column that has no IN list; None if there is none.

    DuckDB runs a PIVOT without values as two statements (a CREATE TYPE of the values, then the query), which
    cannot be serialized; with a list the same query is one SELECT whose tree is checked instead. Only text is
    inserted (between tokens), nothing is removed, so every relation and function of `sql` is in the checked one.
    """
    tokens = _tokens(sql)
    inserts: list[int] = []
    for i, (_start, text, kind) in enumerate(tokens):
        if kind != "keyword" or text.lower() != "pivot":
            continue
        depth, j = 0, i + 1
        while j < len(tokens):  # the ON of this PIVOT (same parenthesis depth)
            t_text, t_kind = tokens[j][1], tokens[j][2]
            if t_kind == "keyword" and t_text.lower() == "on" and depth == 0:
                break
            if t_kind == "operator":
                depth += t_text.count("(") - t_text.count(")")
                if depth < 0 or ";" in t_text:
                    j = len(tokens)
            j += 1
        if j >= len(tokens):
            continue
        depth, has_in, j = 0, False, j + 1
        while j <= len(tokens):
            if j == len(tokens):
                if not has_in:
                    inserts.append(len(sql))
                break
            start, t_text, t_kind = tokens[j]
            word = t_text.lower()
            if t_kind == "keyword" and depth == 0 and word in _PIVOT_ON_END:
                if not has_in:
                    inserts.append(start)
                break
            if t_kind == "keyword" and depth == 0 and word == "in":
                has_in = True
            end_here = None
            if t_kind == "operator":
                for k, ch in enumerate(t_text):
                    depth += (ch == "(") - (ch == ")")
                    if depth < 0 or (depth == 0 and ch in ",;"):
                        end_here = (start + sql[start:].index(t_text) + k, ch)
                        break
            if end_here is not None:
                if not has_in:
                    inserts.append(end_here[0])
                if end_here[1] != ",":
                    break
                has_in = False
                depth = 0
            j += 1
    if not inserts:
        return None
    out = sql
    for at in sorted(set(inserts), reverse=True):
        out = out[:at] + " IN (NULL) " + out[at:]
    return out


def check_read_only(sql: str, lake: set[tuple[str, str]]) -> str:
    """The single statement of `sql` if it is a safe query over the lake relations `lake`; SqlError otherwise.

    Nothing is read while checking: the SQL is parsed on an empty connection without file access.
    Run the returned text, not `sql`.
    """
    if len(sql) > MAX_SQL_CHARS:
        raise SqlError(f"the query is {len(sql):,} characters long; at most {MAX_SQL_CHARS:,} are checked and run here",
                       hint="shorten it: put large value lists in a source (sources:) and join the lake table")
    if _first_keyword(sql) == "pragma":
        raise SqlError("PRAGMA statements are not allowed here",
                       hint="see `airduck tables`, `airduck describe TABLE`, `airduck doctor`")
    con = _thread_parser()
    try:
        statements = con.extract_statements(sql)
    except duckdb.Error as exc:
        raise SqlError(f"cannot parse the SQL: {str(exc).splitlines()[0]}") from None
    kinds = [s.type.name if hasattr(s.type, "name") else str(s.type) for s in statements]
    run = None
    if len(statements) > 1 and kinds[-1] == "SELECT" and all(k == "CREATE" for k in kinds[:-1]):
        static = _pivot_for_check(sql)  # a PIVOT without values: check it as one query with a value list
        if static is not None:
            try:
                statements = con.extract_statements(static)
            except duckdb.Error:
                statements = []
            kinds = [s.type.name if hasattr(s.type, "name") else str(s.type) for s in statements]
        if static is None or len(statements) != 1:
            raise SqlError("this PIVOT cannot be checked as one read-only query",
                           hint="list its values: PIVOT t ON col IN ('a', 'b') USING sum(x)")
        run = sql
    if len(statements) != 1:
        raise SqlError(f"expected exactly one statement, found {len(statements)}")
    stmt = statements[0]
    if kinds[0].upper() not in _ALLOWED:
        raise SqlError(f"only read-only queries (SELECT) are allowed here, not {kinds[0]}",
                       hint="writes go through `airduck run`, `rollback` or `maintain`")
    literal = "'" + stmt.query.replace("'", "''") + "'"  # not a parameter: binding one imports pandas (~2 s)
    raw = con.execute(f"SELECT json_serialize_sql({literal})").fetchone()[0]
    try:
        tree = json.loads(raw)
        if tree.get("error"):
            raise SqlError(f"cannot parse the SQL: {tree.get('error_message', 'unknown error')}")
        if _subquery_cost(tree) > SUBQUERY_BUDGET:
            raise SqlError("the query nests subqueries too deeply to be planned in time (planning cannot be interrupted)",
                           hint="flatten it: use CTEs (WITH) or joins instead of subqueries within subqueries")
        _check_tree(tree, lake)
    except RecursionError:
        raise SqlError("the query is nested too deeply to be checked", hint="flatten it with CTEs (WITH)") from None
    return run or stmt.query


def _subquery_cost(node: Any, depth: int = 0) -> int:
    """What planning `node` may cost: each subquery counts 2**(its nesting depth).

    DuckDB plans nested subqueries in time exponential in their depth (22 levels: seconds; 28: minutes), and
    `interrupt()` is not checked while it plans, so the time limit cannot stop it: refuse such queries up front.
    """
    cost = 0
    if isinstance(node, dict):
        if node.get("class") == "SUBQUERY" or node.get("type") == "SUBQUERY":
            depth += 1
            cost += 1 << min(depth, 62)
        for value in node.values():
            cost += _subquery_cost(value, depth)
    elif isinstance(node, list):
        for value in node:
            cost += _subquery_cost(value, depth)
    return cost


def lock_down(con: duckdb.DuckDBPyConnection, allowed: list[str]) -> None:
    """After attaching: no file access outside the lake, no ATTACH/INSTALL, no changing settings."""
    listed = ", ".join("'" + path.replace("'", "''") + "'" for path in allowed)
    con.execute(f"SET allowed_directories = [{listed}]")  # literals: binding a parameter imports pandas (~2 s)
    con.execute("SET enable_external_access = false")
    con.execute("SET autoload_known_extensions = false")
    con.execute("SET python_enable_replacements = false")  # no Python variables as tables
    con.execute("SET lock_configuration = true")


class QueryTimeout(SqlError):
    """A query ran longer than its time limit and was interrupted."""


def run_with_time_limit(con: duckdb.DuckDBPyConnection, seconds: float | None, work: Callable[[], T]) -> T:
    """`work()` on `con`, interrupted (`con.interrupt()`) after `seconds`; QueryTimeout if it was.

    `seconds` None or 0 means no limit.
    """
    if not seconds:
        return work()
    fired = threading.Event()

    def stop() -> None:
        fired.set()
        con.interrupt()

    timer = threading.Timer(seconds, stop)
    timer.daemon = True
    timer.start()
    try:
        return work()
    except duckdb.Error:
        if fired.is_set():
            raise QueryTimeout(f"query stopped after {seconds:g} s (time limit)",
                               hint="raise it with --timeout SECONDS or lake.sql_timeout_seconds in airduck.yml") from None
        raise
    finally:
        timer.cancel()
