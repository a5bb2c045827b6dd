"""Column lineage of silver tables, read from their rules (renames, casts, normalisations, derived expressions,
lookups). Expressions are parsed with sqlglot (duckdb dialect): the source columns are the columns the parsed
expression refers to, never a guess from the text."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import sqlglot
from sqlglot import exp


@dataclass(frozen=True)
class SourceColumn:
    table: str  # schema.table in the lake
    column: str
    #: OpenLineage transformation: type DIRECT or INDIRECT, subtype IDENTITY | TRANSFORMATION | JOIN | FILTER ...
    type: str = "DIRECT"
    subtype: str = "IDENTITY"
    description: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"table": self.table, "column": self.column, "type": self.type, "subtype": self.subtype,
                "description": self.description}


@dataclass(frozen=True)
class ColumnLineage:
    """Where one column of a table comes from."""

    table: str
    column: str
    transformation: str  # identity | rename | cast | normalize | expression | lookup | dbt
    sources: tuple[SourceColumn, ...] = field(default_factory=tuple)
    type: str | None = None  # the column's type, when the rule says it
    sql: str | None = None  # the expression, for derived columns

    def to_dict(self) -> dict[str, Any]:
        return {"table": self.table, "column": self.column, "transformation": self.transformation,
                "type": self.type, "sql": self.sql, "sources": [s.to_dict() for s in self.sources]}


def expression_columns(text: str) -> list[str]:
    """The root column names a SQL expression refers to (parsed with sqlglot, duckdb dialect), in order."""
    tree = sqlglot.parse_one(text, dialect="duckdb")
    out: list[str] = []
    for node in tree.find_all(exp.Column, bfs=False):  # depth first: the order they are written in
        if node.find_ancestor(exp.Select) is not None:
            continue  # a column of a subquery's own FROM is not a column of this row
        parts = [p.name for p in node.parts]
        if parts and parts[0] not in out:
            out.append(parts[0])
    return out


def _is_text(type_: str) -> bool:
    return type_.strip().upper() in ("VARCHAR", "TEXT", "STRING")


def silver_columns(name: str, rule: Any, source: str) -> list[ColumnLineage]:
    """The column lineage of ``silver.<name>`` from its rule (a silver.config.SilverTable) reading `source`."""
    table = f"silver.{name}"
    out: list[ColumnLineage] = []
    for col, crule in rule.columns.items():
        if crule.expr is not None:
            try:
                cols = expression_columns(crule.expr)
            except sqlglot.errors.SqlglotError:
                cols = []
            desc = f"{crule.expr.strip()}" + ("" if _is_text(crule.type) else f" cast to {crule.type}")
            out.append(ColumnLineage(table, col, "expression", tuple(
                SourceColumn(source, c, "DIRECT", "TRANSFORMATION", desc) for c in cols), crule.type,
                crule.expr.strip()))
            continue
        src = crule.source or col
        steps = []
        if crule.source and crule.source != col:
            steps.append(f"renamed from {src}")
        if crule.normalize:
            steps.append("normalised: " + ", ".join(crule.normalize))
        if not _is_text(crule.type):
            steps.append(f"cast to {crule.type}" + (f" ({', '.join(crule.formats)})" if crule.formats else ""))
        kind = ("cast" if not _is_text(crule.type) else "normalize" if crule.normalize else
                "rename" if crule.source and crule.source != col else "identity")
        identity = not crule.normalize and _is_text(crule.type)
        out.append(ColumnLineage(table, col, kind, (SourceColumn(
            source, src, "DIRECT", "IDENTITY" if identity else "TRANSFORMATION", "; ".join(steps)),), crule.type))
    for lookup in rule.lookups:
        ref = lookup.table.strip().replace('"', "")
        if "." not in ref:
            ref = f"silver.{ref}"
        joins = tuple(SourceColumn(t, c, "INDIRECT", "JOIN", f"lookup {lookup.name}")
                      for this, other in lookup.on.items() for t, c in ((table, this), (ref, other)))
        for new, refcol in lookup.columns.items():
            out.append(ColumnLineage(table, new, "lookup", (
                SourceColumn(ref, refcol, "DIRECT", "IDENTITY", f"lookup {lookup.name} on "
                             + ", ".join(f"{a} = {ref}.{b}" for a, b in lookup.on.items())),
                *[j for j in joins if j.table == ref])))
    return out
