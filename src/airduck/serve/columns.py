"""How a gold table's columns are served: a projection that each target (PostgreSQL, Delta) can store.

DuckDB has types that PostgreSQL or Delta Lake cannot hold as they are (HUGEINT, STRUCT, MAP, ENUM,
unsigned integers, nanosecond timestamps ...). Each gold column becomes one expression of the
*served projection*: the column itself when the target stores it losslessly, otherwise a cast to a
type it does store (DECIMAL(38,0), JSON, VARCHAR, ...). Loads, checksums and exports all read the
same projection, so "what was served" and "what was checked" are the same thing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import duckdb

from airduck.lake.catalog import TableRef, columns
from airduck.lake.connection import quote_ident

Target = Literal["postgres", "delta", "parquet"]

_NESTED = ("STRUCT", "MAP", "UNION")


@dataclass(frozen=True)
class ServedColumn:
    name: str
    source_type: str  # the gold column's DuckDB type
    expr: str  # SQL over the gold table producing the served value
    type: str  # DuckDB type of `expr`

    @property
    def ident(self) -> str:
        return quote_ident(self.name)


def _served(name: str, t: str, target: Target) -> tuple[str, str]:
    q = quote_ident(name)
    u = t.upper()
    if target == "parquet":
        return q, t
    if u in ("HUGEINT", "INT128"):
        return f"CAST({q} AS DECIMAL(38, 0))", "DECIMAL(38,0)"
    if u in ("UHUGEINT", "UINT128", "BIGNUM", "VARINT", "BIT", "BITSTRING") or u.startswith("ENUM("):
        return f"CAST({q} AS VARCHAR)", "VARCHAR"
    if u in ("TIMESTAMP_NS", "TIMESTAMP WITH TIME ZONE_NS"):
        return f"CAST({q} AS TIMESTAMP)", "TIMESTAMP"
    if target == "postgres":
        if any(k in u for k in _NESTED):
            return f"CAST(to_json({q}) AS JSON)", "JSON"
        if u.endswith("]") and not u.endswith("[]"):  # fixed-size ARRAY: PostgreSQL arrays are lists
            inner = u[: u.rindex("[")]
            return f"CAST({q} AS {inner}[])", f"{inner}[]"
        return q, t
    # delta: no unsigned integers, TIME, INTERVAL, UUID or JSON types
    if u in ("UTINYINT", "USMALLINT"):
        return f"CAST({q} AS INTEGER)", "INTEGER"
    if u == "UINTEGER":
        return f"CAST({q} AS BIGINT)", "BIGINT"
    if u == "UBIGINT":
        return f"CAST({q} AS DECIMAL(20, 0))", "DECIMAL(20,0)"
    if u in ("TIME", "TIME WITH TIME ZONE", "INTERVAL", "UUID", "JSON") or u.startswith("ENUM"):
        return f"CAST({q} AS VARCHAR)", "VARCHAR"
    return q, t


def served_columns(con: duckdb.DuckDBPyConnection, table: TableRef, target: Target) -> list[ServedColumn]:
    out = []
    for c in columns(con, table):
        expr, t = _served(c.name, c.type, target)
        out.append(ServedColumn(c.name, c.type, expr, t))
    return out


def select_sql(table: TableRef, cols: list[ServedColumn], snapshot: int | None) -> str:
    """SELECT of the served projection over `table` (at a pinned snapshot, when given)."""
    at = f" AT (VERSION => {int(snapshot)})" if snapshot is not None else ""
    items = ", ".join(f"{c.expr} AS {c.ident}" for c in cols)
    return f"SELECT {items} FROM {table.sql}{at}"


def checksum_sql(relation_sql: str, cols: list[ServedColumn], *, cast: bool) -> str:
    """`count(*)` and an order-independent checksum (sum of row hashes) over a relation.

    With `cast`, each column is first cast to its served type (used on the PostgreSQL side, where
    the values come back through the postgres scanner with PostgreSQL's types).
    """
    parts = [f"CAST({c.ident} AS {c.type})" if cast else c.ident for c in cols]
    return f"SELECT count(*), coalesce(sum(hash({', '.join(parts)})), 0) FROM {relation_sql}"
