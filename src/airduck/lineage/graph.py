"""The built-in lineage graph: sources, lake tables, steps, served marts and exports, from the plan.

Nodes are datasets (kind ``source`` | ``table`` | ``mart`` | ``export``) and steps (kind ``step``); edges go
from each input dataset to the step that reads it, and from the step to each dataset it writes. Dataset nodes
carry their OpenLineage namespace and name (airduck.lineage.naming), so the graph and the events agree.
Column lineage (``columns=True``) comes from the silver rules (airduck.lineage.columns) and, for dbt models,
from their compiled SQL where sqlglot can trace it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from airduck.core.model import Dataset, DatasetKind, StepKind
from airduck.core.plan import Plan
from airduck.errors import NotFound
from airduck.lineage.columns import ColumnLineage, silver_columns
from airduck.lineage.naming import dataset_name, lake_namespace, safe_url

_KIND = {DatasetKind.LAKE: "table", DatasetKind.FILES: "source", DatasetKind.POSTGRES: "source",
         DatasetKind.HTTP: "source", DatasetKind.POSTGRES_MART: "mart", DatasetKind.EXPORT: "export"}


def _shown(dataset: Dataset) -> str:
    """A dataset's name as the graph shows it: a URL without user info, query or fragment (a password, a
    presigned signature); lake tables as they are."""
    return dataset.name if dataset.kind == DatasetKind.LAKE else safe_url(dataset.name)


def node_id(dataset: Dataset) -> str:
    """A dataset's node id: ``silver.orders`` for lake tables, ``<kind>:<name>`` for the others."""
    return str(dataset) if dataset.kind == DatasetKind.LAKE else f"{dataset.kind.value}:{_shown(dataset)}"


def _role(name: str) -> str | None:
    for suffix, role in (("__quarantine", "quarantine"), ("__rejects", "rejects")):
        if name.endswith(suffix):
            return role
    return None


@dataclass
class LineageGraph:
    nodes: dict[str, dict[str, Any]] = field(default_factory=dict)
    edges: list[dict[str, Any]] = field(default_factory=list)
    columns: list[ColumnLineage] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"nodes": list(self.nodes.values()), "edges": list(self.edges),
                "columns": [c.to_dict() for c in self.columns]}

    # -- queries ---------------------------------------------------------------------------------
    def resolve(self, table: str) -> str:
        """The node id `table` names: a node id, a step id, ``schema.table``, or a bare table/step name."""
        text = table.strip().replace('"', "")
        if text in self.nodes:
            return text
        if "." not in text and ":" not in text:
            for prefix in ("silver.", "gold.", "bronze."):
                if prefix + text in self.nodes:
                    return prefix + text
            named = [n["id"] for n in self.nodes.values() if n["name"] == text]
            if len(named) == 1:
                return named[0]
        folded = [i for i in self.nodes if i.lower() == text.lower()]  # SQL names are case-insensitive
        if len(folded) == 1:
            return folded[0]
        if "." not in text and ":" not in text:
            folded = [p + text.lower() for p in ("silver.", "gold.", "bronze.") if p + text.lower() in self.nodes]
            if folded:
                return folded[0]
        raise NotFound(f"lineage: no table, source or step {table!r}",
                       hint="name a lake table (silver.orders), a step id (ingest:orders) or see `airduck lineage`")

    def _walk(self, start: str, forward: bool) -> set[str]:
        nxt: dict[str, list[str]] = {}
        for e in self.edges:
            a, b = (e["source"], e["target"]) if forward else (e["target"], e["source"])
            nxt.setdefault(a, []).append(b)
        seen: set[str] = set()
        todo = [start]
        while todo:
            for n in nxt.get(todo.pop(), []):
                if n not in seen:
                    seen.add(n)
                    todo.append(n)
        return seen

    def around(self, node: str, *, upstream: bool = True, downstream: bool = True) -> LineageGraph:
        """The part of the graph upstream and/or downstream of `node` (with it)."""
        keep = {node}
        if upstream:
            keep |= self._walk(node, forward=False)
        if downstream:
            keep |= self._walk(node, forward=True)
        return self.only(keep)

    def only(self, keep: Iterable[str]) -> LineageGraph:
        keep = set(keep)
        tables = {n["name"] for i, n in self.nodes.items() if i in keep and n["kind"] != "step"}
        return LineageGraph({i: n for i, n in self.nodes.items() if i in keep},
                            [e for e in self.edges if e["source"] in keep and e["target"] in keep],
                            [c for c in self.columns if c.table in tables])

    # -- renderings ------------------------------------------------------------------------------
    def to_mermaid(self, columns: bool = False) -> str:
        ids = {n: f"n{i}" for i, n in enumerate(self.nodes)}
        shape = {"step": ("[[", "]]"), "source": ("[(", ")]"), "mart": ("[(", ")]"), "export": ("[/", "/]"),
                 "table": ("[", "]")}
        lines = ["flowchart LR"]
        for nid, n in self.nodes.items():
            a, b = shape.get(n["kind"], ("[", "]"))
            lines.append(f'  {ids[nid]}{a}"{_mermaid_text(n["label"])}"{b}')
        for e in self.edges:
            lines.append(f"  {ids[e['source']]} --> {ids[e['target']]}")
        for cls in ("source", "table", "step", "mart", "export"):
            members = [ids[i] for i, n in self.nodes.items() if n["kind"] == cls]
            if members:
                lines.append(f"  class {','.join(members)} {cls}")
        if columns:
            cols: dict[tuple[str, str], str] = {}

            def cid(table: str, column: str) -> str:
                return cols.setdefault((table, column), f"c{len(cols)}")

            lines.append("  subgraph columns")
            for c in self.columns:
                for s in c.sources:
                    lines.append(f'    {cid(s.table, s.column)}["{_mermaid_text(s.table + "." + s.column)}"] '
                                 f'-->|{c.transformation}| {cid(c.table, c.column)}["'
                                 f'{_mermaid_text(c.table + "." + c.column)}"]')
            lines.append("  end")
        return "\n".join(lines) + "\n"

    def to_dot(self, columns: bool = False) -> str:
        shape = {"step": "box", "source": "cylinder", "mart": "cylinder", "export": "folder", "table": "ellipse"}
        lines = ["digraph lineage {", "  rankdir=LR;", '  node [fontname="Helvetica"];']
        for nid, n in self.nodes.items():
            lines.append(f'  {_dot(nid)} [label={_dot(n["label"])}, shape={shape.get(n["kind"], "ellipse")}];')
        for e in self.edges:
            lines.append(f"  {_dot(e['source'])} -> {_dot(e['target'])};")
        if columns:
            lines.append("  subgraph cluster_columns {")
            lines.append('    label="columns";')
            for c in self.columns:
                for s in c.sources:
                    lines.append(f"    {_dot(s.table + '.' + s.column)} -> {_dot(c.table + '.' + c.column)} "
                                 f"[label={_dot(c.transformation)}];")
            lines.append("  }")
        lines.append("}")
        return "\n".join(lines) + "\n"


def _mermaid_text(text: str) -> str:
    """Text for a quoted Mermaid label: `#` first (Mermaid reads ``#name;`` as an entity), then quotes and the
    characters Mermaid's HTML labels would take as markup."""
    for char, code in (("#", "#35;"), ('"', "#quot;"), ("<", "#lt;"), (">", "#gt;")):
        text = text.replace(char, code)
    return text


def _dot(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def build_graph(project: Any, plan: Plan, *, columns: bool = False, gold_columns: Any = None) -> LineageGraph:
    """The lineage graph of `plan`. `gold_columns`: an optional callable (step) -> list[ColumnLineage] for dbt
    models (the facade passes one that reads compiled SQL)."""
    lake_ns = lake_namespace(project)
    g = LineageGraph()
    job_ns = project.config.name

    def add_dataset(d: Dataset, step_id: str | None = None, produced: bool = False) -> str:
        nid = node_id(d)
        ns, name = dataset_name(d, lake_ns)
        node = g.nodes.get(nid)
        if node is None:
            kind = _KIND.get(d.kind, "table")
            layer = d.name.split(".", 1)[0] if d.kind == DatasetKind.LAKE else (
                "source" if kind == "source" else "serve")
            shown = _shown(d)
            node = g.nodes[nid] = {"id": nid, "kind": kind, "name": shown, "label": shown if kind != "source"
                                   else f"{d.kind.value}: {shown}", "layer": layer, "namespace": ns,
                                   "openlineage_name": name, "dataset_kind": d.kind.value,
                                   "location": safe_url(d.location) if d.location else None,
                                   "role": _role(d.name) if d.kind == DatasetKind.LAKE else None, "step": None}
        if produced:
            node["step"] = step_id
        return nid

    for step in plan:
        g.nodes[step.id] = {"id": step.id, "kind": "step", "name": step.name, "label": step.id,
                            "layer": step.layer, "namespace": job_ns, "openlineage_name": step.id,
                            "step_kind": step.kind.value, "depends_on": list(step.depends_on)}
        for d in step.inputs:
            g.edges.append({"source": add_dataset(d), "target": step.id, "role": "input"})
        for d in step.outputs:
            g.edges.append({"source": step.id, "target": add_dataset(d, step.id, produced=True), "role": "output"})
    if columns:
        cfg = project.config
        for step in plan.of_kind(StepKind.SILVER):
            rule = cfg.silver.get(step.name)
            if rule is not None and step.inputs:
                g.columns += silver_columns(step.name, rule, step.inputs[0].name)
        if gold_columns is not None:
            for step in plan.of_kind(StepKind.GOLD):
                try:
                    g.columns += gold_columns(step)
                except Exception:  # a model whose SQL sqlglot cannot trace has no column lineage
                    continue
        for step in [*plan.of_kind(StepKind.SERVE), *plan.of_kind(StepKind.EXPORT)]:
            source = step.get("table")
            for d in step.outputs:
                g.columns += [ColumnLineage(d.name if d.kind != DatasetKind.LAKE else str(d), c.column, "identity",
                                            (_identity(source, c.column),), c.type)
                              for c in g.columns if c.table == source]
    return g


def _identity(table: str, column: str):
    from airduck.lineage.columns import SourceColumn

    return SourceColumn(table, column, "DIRECT", "IDENTITY", "published as is")
