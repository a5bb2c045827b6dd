"""User SQL in silver rules: parsed, checked and only then placed into generated SQL.

A rule holds two kinds of user SQL: expressions (`columns.<c>.expr`, `expectations[].check`) and type names
(`columns.<c>.type`). Both are checked twice before they reach the lake:

1. by sqlglot (dialect duckdb): exactly one expression; no statements (`1; DROP TABLE x`), no subqueries or
   table references, no query parameters, no aggregates or window functions, no functions that read files,
   settings, secrets or the environment (`read_csv`, `getenv`, `current_setting`, ...);
2. by DuckDB's own parser on an empty in-memory *sandbox* database (never the lake): the exact text that will be
   embedded must parse as one SELECT of one expression, with no subquery and no denied function. Because DuckDB
   is the engine that runs it, its parse is the authoritative one; the text is embedded as ``(\\n<text>\\n)`` so
   that a trailing ``--`` comment cannot swallow the closing parenthesis.

The sandbox also binds expressions against an empty table with the real column types, so an unknown column or a
non-boolean check is reported with the rule key that holds it, before anything runs in the lake transaction
(some DuckDB errors abort a transaction; errors in the sandbox cannot).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field

import duckdb
import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError, TokenError

from airduck.config.secrets import redact
from airduck.errors import RuleError
from airduck.lake.connection import quote_ident
from airduck.lake.sqlguard import walk

#: prefix of every name airduck generates inside silver SQL; user SQL may not use it
INTERNAL_PREFIX = "__ad_"

#: DuckDB functions an expression may not call (they read files, settings, secrets or the environment,
#: execute SQL, or change the number of rows)
DENIED_FUNCTIONS = frozenset({
    "getenv", "current_setting", "query", "query_table", "glob", "unnest", "generate_subscripts",
    "which_secret", "checkpoint", "force_checkpoint", "sniff_csv", "json_execute_serialized_sql",
    "explode", "set_commit_message", "load", "install",
})
DENIED_PREFIXES = (
    "read_", "duckdb_", "ducklake_", "pragma_", "postgres_", "sqlite_", "parquet_", "iceberg_", "delta_",
    "sniff_", "json_execute", "enable_", "disable_", "http_",
)

_STATEMENT_NODES: tuple[type[exp.Expression], ...] = tuple(
    getattr(exp, name)
    for name in (
        "Query", "Subquery", "Select", "Union", "DDL", "DML", "Command", "Drop", "Attach", "Detach", "Copy",
        "Set", "Pragma", "Use", "Transaction", "Commit", "Rollback", "Create", "Describe", "Show", "Table",
        "Insert", "Update", "Delete", "Merge", "Into", "Install", "Load", "From", "Join", "Values",
    )
    if hasattr(exp, name)
)
_PARAM_NODES: tuple[type[exp.Expression], ...] = tuple(
    getattr(exp, n) for n in ("Placeholder", "Parameter", "SessionParameter") if hasattr(exp, n)
)


@dataclass(frozen=True)
class UserExpression:
    """A checked user expression: the SQL to embed and the root column names it refers to."""

    text: str  # the user's text, stripped
    columns: frozenset[str] = field(default_factory=frozenset)

    @property
    def sql(self) -> str:
        """The expression as embedded in generated SQL (newlines end any trailing `--` comment)."""
        return f"(\n{self.text}\n)"


def _function_name(node: exp.Func) -> str:
    if isinstance(node, exp.Anonymous):
        return str(node.this).lower()
    return node.sql_name().lower()


def _denied(name: str) -> bool:
    name = name.lower()
    return name in DENIED_FUNCTIONS or name.startswith(DENIED_PREFIXES)


def _fail(where: str, problem: str, hint: str) -> RuleError:
    return RuleError(redact(f"{where}: {problem}"), hint=hint)


def parse_expression(text: str, where: str, sandbox: Sandbox | None = None) -> UserExpression:
    """Check one user expression (see the module docstring). `where` names the rule key for messages."""
    source = (text or "").strip()
    hint = "write one SQL expression over column names, e.g. `amount BETWEEN 0 AND 1000000`"
    if not source:
        raise _fail(where, "the expression is empty", hint)
    try:
        parsed = [p for p in sqlglot.parse(source, dialect="duckdb") if p is not None]
    except (ParseError, TokenError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise _fail(where, f"{source!r} is not a valid SQL expression: {first}", hint) from None
    if len(parsed) != 1:
        raise _fail(where, f"{source!r} holds {len(parsed)} statements; exactly one expression is allowed",
                    "remove the ';' and everything after it")
    root = parsed[0]
    columns: set[str] = set()
    for node in root.walk():
        if isinstance(node, _STATEMENT_NODES):
            what = "a subquery" if isinstance(node, exp.Subquery | exp.Select | exp.Query) else \
                "a table reference" if isinstance(node, exp.Table | exp.From | exp.Join) else \
                f"a {node.key.upper()} statement"
            raise _fail(where, f"{source!r} contains {what}; only a single row-level expression is allowed",
                        "refer to columns of this row only; join reference data with `lookups:`")
        if isinstance(node, _PARAM_NODES):
            raise _fail(where, f"{source!r} contains a query parameter ({node.sql()}); parameters are not allowed",
                        "write the value as a literal")
        if isinstance(node, exp.AggFunc | exp.Window):
            raise _fail(where, f"{source!r} uses an aggregate or window function ({node.sql(dialect='duckdb')})",
                        "expressions are evaluated row by row; aggregate in gold models instead")
        if isinstance(node, exp.Func) and _denied(_function_name(node)):
            raise _fail(where, f"{source!r} calls {_function_name(node)}(), which is not allowed in rules",
                        "rules may only compute values from the row's columns")
        if isinstance(node, exp.Column):
            parts = [p.name for p in node.parts]
            if any(p.lower().startswith(INTERNAL_PREFIX) for p in parts):
                raise _fail(where, f"{source!r} refers to {'.'.join(parts)}; names starting with "
                            f"{INTERNAL_PREFIX} are reserved", "rename the column")
            if parts:
                columns.add(parts[0])
    if isinstance(root, exp.Alias):
        raise _fail(where, f"{source!r} has an alias; write only the expression", "remove `AS <name>`")
    parsed_expr = UserExpression(source, frozenset(columns))
    if sandbox is not None:
        sandbox.check_expression(parsed_expr, where)
    return parsed_expr


def parse_type(text: str, where: str, sandbox: Sandbox) -> str:
    """A column type as DuckDB names it (e.g. 'decimal(12,2)' -> 'DECIMAL(12,2)'); RuleError if it is not one."""
    source = (text or "").strip()
    hint = "use a DuckDB type such as VARCHAR, BIGINT, DOUBLE, DECIMAL(12,2), DATE, TIMESTAMPTZ, BOOLEAN"
    if not source:
        raise _fail(where, "the type is empty", hint)
    try:
        parsed = [p for p in sqlglot.parse(f"SELECT CAST(NULL AS {source})", dialect="duckdb") if p is not None]
    except (ParseError, TokenError):
        raise _fail(where, f"{source!r} is not a type", hint) from None
    cast = parsed[0].selects[0] if len(parsed) == 1 and isinstance(parsed[0], exp.Select) else None
    if (len(parsed) != 1 or not isinstance(cast, exp.Cast) or len(parsed[0].selects) != 1
            or parsed[0].args.get("from") is not None):
        raise _fail(where, f"{source!r} is not a single type name", hint)
    for node in cast.to.walk():
        if isinstance(node, (*_STATEMENT_NODES, *_PARAM_NODES, exp.Func)):
            raise _fail(where, f"{source!r} is not a type", hint)
    rendered = cast.to.sql(dialect="duckdb")
    try:
        return sandbox.type_name(rendered)
    except duckdb.Error as exc:
        raise _fail(where, f"{source!r} is not a DuckDB type: {_first_line(exc)}", hint) from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return redact(text[0]) if text else type(exc).__name__


class Sandbox:
    """An empty in-memory DuckDB (no lake, no files) for checking user SQL without touching the run."""

    def __init__(self) -> None:
        self.con = duckdb.connect()
        self.con.execute("SET enable_external_access = false")
        self._table_sig: tuple[tuple[str, str], ...] | None = None

    def close(self) -> None:
        self.con.close()

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def type_name(self, type_sql: str) -> str:
        return str(self.con.execute(f"SELECT typeof(CAST(NULL AS {type_sql}))").fetchone()[0])

    def check_format(self, fmt: str, where: str) -> None:
        """A strptime format DuckDB understands (a bad one would abort the run's transaction later)."""
        try:
            self.con.execute("SELECT try_strptime('2000-01-01', ?)", [fmt]).fetchall()
        except duckdb.Error as exc:
            raise _fail(where, f"{fmt!r} is not a strptime format: {_first_line(exc)}",
                        "use codes like %Y-%m-%d, %d/%m/%Y %H:%M:%S (see DuckDB's strftime/strptime docs)") from None

    def check_expression(self, expr: UserExpression, where: str) -> None:
        """DuckDB's parse of the exact embedded text: one SELECT item, no subquery, no denied function."""
        raw = self.con.execute("SELECT json_serialize_sql(?)", [f"SELECT {expr.sql}"]).fetchone()[0]
        tree = json.loads(raw)
        hint = "write one SQL expression over column names"
        if tree.get("error"):
            raise _fail(where, f"{expr.text!r} is not a valid DuckDB expression: "
                        f"{redact(str(tree.get('error_message', '')).splitlines()[0] if tree.get('error_message') else 'parse error')}",
                        hint)
        statements = tree.get("statements") or []
        node = statements[0].get("node", {}) if len(statements) == 1 else {}
        if (len(statements) != 1 or node.get("type") != "SELECT_NODE" or len(node.get("select_list") or []) != 1
                or (node.get("from_table") or {}).get("type") != "EMPTY"):
            raise _fail(where, f"{expr.text!r} is not a single expression", hint)
        for item in walk(node["select_list"]):
            cls = item.get("class")
            if cls == "SUBQUERY" or item.get("type") == "SELECT_NODE":
                raise _fail(where, f"{expr.text!r} contains a subquery; only a single row-level expression is allowed",
                            "join reference data with `lookups:`")
            if cls == "WINDOW":
                raise _fail(where, f"{expr.text!r} uses a window function", "expressions are evaluated row by row")
            if cls == "FUNCTION" and _denied(str(item.get("function_name", ""))):
                raise _fail(where, f"{expr.text!r} calls {item.get('function_name')}(), which is not allowed in rules",
                            "rules may only compute values from the row's columns")

    def bind(self, expr: UserExpression, columns: Iterable[tuple[str, str]], where: str, what: str) -> str:
        """The DuckDB type of `expr` over a row with `columns` (name, type); RuleError naming `where` if it fails.

        Returns '' when the columns cannot be reproduced in the sandbox (an exotic type); the real run then reports
        any problem itself.
        """
        cols = tuple(columns)
        if not self._ensure_table(cols):
            return ""
        try:
            rows = self.con.execute(f"DESCRIBE SELECT {expr.sql} FROM __ad_row").fetchall()
        except duckdb.Error as exc:
            known = ", ".join(n for n, _ in cols) or "none"
            raise _fail(where, f"{expr.text!r} cannot be evaluated over {what}: {_first_line(exc)}",
                        f"available columns: {known}") from None
        return str(rows[0][1])

    def _ensure_table(self, cols: tuple[tuple[str, str], ...]) -> bool:
        if self._table_sig == cols:
            return True
        body = ", ".join(f"{quote_ident(n)} {t}" for n, t in cols) or f"{INTERNAL_PREFIX}none INTEGER"
        try:
            self.con.execute(f"CREATE OR REPLACE TABLE __ad_row ({body})")
        except duckdb.Error:
            self._table_sig = None
            return False
        self._table_sig = cols
        return True
