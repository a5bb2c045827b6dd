"""The lineage graph as the browser draws it (cytoscape elements), shaped from the plan's steps and datasets.

Nodes are datasets (a source's files, a lake table, a served or exported table), an edge is a step that reads one
and writes the other. `layer` colours a node and `table` (lake tables only) is the page a click opens. With
`focus`, only the table's neighbourhood: what it reads and what reads it, transitively.
"""

from __future__ import annotations

from typing import Any

from airduck.core.model import Dataset, DatasetKind

_SOURCE_KINDS = {DatasetKind.FILES, DatasetKind.POSTGRES, DatasetKind.HTTP}


def _layer(d: Dataset) -> str:
    if d.kind in _SOURCE_KINDS:
        return "source"
    if d.kind == DatasetKind.LAKE:
        schema = d.name.split(".", 1)[0]
        return schema if schema in ("bronze", "silver", "gold") else "other"
    return "serve"


def _label(d: Dataset) -> str:
    if d.kind == DatasetKind.LAKE:
        return d.name
    name = d.name.rsplit("/", 1)[-1] if d.kind == DatasetKind.EXPORT else d.name
    return f"{d.kind.value}: {name}"


def elements(plan: Any, focus: str | None = None) -> dict[str, list[dict[str, Any]]]:
    """{"nodes": [...], "edges": [...]} of `plan` (an airduck.core.plan.Plan), or of `focus`'s neighbourhood."""
    nodes: dict[str, dict[str, Any]] = {}
    edges: dict[str, dict[str, Any]] = {}
    for step in plan:
        for d in (*step.inputs, *step.outputs):
            key = str(d)
            if key not in nodes:
                nodes[key] = {"id": key, "label": _label(d), "layer": _layer(d),
                              "table": d.name if d.kind == DatasetKind.LAKE else None}
        for src in step.inputs:
            for dst in step.outputs:
                eid = f"{src}->{dst}"
                edges.setdefault(eid, {"id": eid, "source": str(src), "target": str(dst), "step": step.id})
    if focus is not None:
        keep = _neighbourhood(focus, list(edges.values()))
        nodes = {k: v for k, v in nodes.items() if k in keep}
        edges = {k: e for k, e in edges.items() if e["source"] in keep and e["target"] in keep}
        if focus in nodes:
            nodes[focus] = {**nodes[focus], "focus": True}
    return {"nodes": list(nodes.values()), "edges": list(edges.values())}


def _neighbourhood(focus: str, edges: list[dict[str, Any]]) -> set[str]:
    up: dict[str, set[str]] = {}
    down: dict[str, set[str]] = {}
    for e in edges:
        down.setdefault(e["source"], set()).add(e["target"])
        up.setdefault(e["target"], set()).add(e["source"])
    keep = {focus}
    for links in (up, down):
        todo = [focus]
        while todo:
            for nxt in links.get(todo.pop(), ()):
                if nxt not in keep:
                    keep.add(nxt)
                    todo.append(nxt)
    return keep
