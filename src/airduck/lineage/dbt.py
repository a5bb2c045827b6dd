"""Column lineage of dbt models, from the compiled SQL of the newest dbt manifest a run left
(``.airduck/**/target/manifest.json``), traced with sqlglot's lineage (duckdb dialect). A model whose SQL sqlglot
cannot trace (``SELECT *`` over an unknown schema, macros it cannot read) has no column lineage."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import sqlglot
from sqlglot import exp
from sqlglot.lineage import lineage as sqlglot_lineage

from airduck.lineage.columns import ColumnLineage, SourceColumn


def newest_manifest(project: Any) -> Path | None:
    state = Path(project.state_dir)
    if not state.is_dir():
        return None
    found = list(state.glob("runs/*/dbt/target/manifest.json"))
    found = [p for p in found if p.is_file()]
    return max(found, key=lambda p: p.stat().st_mtime) if found else None


def compiled_sql(project: Any, path: Path | None = None) -> dict[str, str]:
    """{model name: compiled SQL} of the manifest at `path` or the newest one (empty before a run compiled the
    models)."""
    path = path or newest_manifest(project)
    if path is None:
        return {}
    try:
        nodes = json.loads(path.read_text()).get("nodes", {})
    except (OSError, ValueError):
        return {}
    return {n["name"]: n["compiled_code"] for n in nodes.values()
            if n.get("resource_type") == "model" and n.get("compiled_code")}


def _lake_table(table: exp.Table) -> str:
    """``schema.table`` of a table the compiled SQL reads (``"lake"."silver"."x"`` -> silver.x)."""
    return f"{table.db}.{table.name}" if table.db else table.name


def model_columns(table: str, sql: str) -> list[ColumnLineage]:
    """The column lineage of one model (output `table`) from its compiled `sql`."""
    tree = sqlglot.parse_one(sql, dialect="duckdb")
    out: list[ColumnLineage] = []
    for name in tree.named_selects if isinstance(tree, exp.Query) else []:
        if name == "*":
            continue
        try:
            root = sqlglot_lineage(name, tree, None, dialect="duckdb")
        except Exception:
            continue
        sources: list[SourceColumn] = []
        nodes = list(root.walk())
        # IDENTITY only when every step from the output to the table is a plain column (a CTE's `upper(x) AS n`
        # selected as `n` is a transformation)
        identity = all(isinstance(n.expression.unalias(), exp.Column) for n in nodes
                       if not isinstance(n.expression, exp.Table))
        for node in nodes:
            if isinstance(node.expression, exp.Table):
                col = node.name.rsplit(".", 1)[-1]
                src = SourceColumn(_lake_table(node.expression), col, "DIRECT",
                                   "IDENTITY" if identity else "TRANSFORMATION", "dbt model")
                if src not in sources:
                    sources.append(src)
        if sources:  # sorted: sqlglot's walk order varies between processes (set order)
            out.append(ColumnLineage(table, name, "dbt", tuple(sorted(sources, key=lambda s: (s.table, s.column))),
                                     sql=root.expression.sql(dialect="duckdb")[:500]))
    return out


def gold_column_lineage(project: Any):
    """A callable (gold step) -> its column lineage (reads the manifest once)."""
    sqls: dict[str, str] | None = None

    def of(step: Any) -> list[ColumnLineage]:
        nonlocal sqls
        if sqls is None:
            sqls = compiled_sql(project)
        sql = sqls.get(step.name)
        if not sql or not step.outputs:
            return []
        return model_columns(step.outputs[0].name, sql)

    return of
