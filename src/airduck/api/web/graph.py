"""The lineage graph as the browser draws it (cytoscape elements), from `Lakehouse.lineage()`.

The facade's graph (airduck.lineage) has dataset nodes (sources, lake tables, marts, exports) and step nodes; the
browser draws the datasets and makes each step an edge from every dataset it reads to every dataset it writes
(its id on the edge), so the picture reads sources → bronze → silver → gold → serving. `layer` colours a node
and `table` (lake tables only) is the page a click opens; `focus` marks the table a neighbourhood is drawn around.
"""

from __future__ import annotations

from typing import Any

_LAYERS = {"bronze", "silver", "gold"}


def _layer(node: dict[str, Any]) -> str:
    kind = node.get("kind")
    if kind == "source":
        return "source"
    if kind in ("mart", "export"):
        return "serve"
    layer = str(node.get("layer") or "")
    return layer if layer in _LAYERS else "other"


def elements(graph: dict[str, Any], focus: str | None = None) -> dict[str, list[dict[str, Any]]]:
    """{"nodes": [...], "edges": [...]} for cytoscape from a lineage graph's ``to_dict()``."""
    nodes: dict[str, dict[str, Any]] = {}
    steps: dict[str, dict[str, list[str]]] = {}
    for n in graph.get("nodes", []):
        if n.get("kind") == "step":
            steps[n["id"]] = {"in": [], "out": []}
            continue
        nodes[n["id"]] = {"id": n["id"], "label": n.get("label") or n["id"], "layer": _layer(n),
                          "table": n["name"] if n.get("kind") == "table" else None}
    for e in graph.get("edges", []):
        if e["target"] in steps:
            steps[e["target"]]["in"].append(e["source"])
        if e["source"] in steps:
            steps[e["source"]]["out"].append(e["target"])
    edges: dict[str, dict[str, Any]] = {}
    for step, ends in steps.items():
        for src in ends["in"]:
            for dst in ends["out"]:
                if src in nodes and dst in nodes:
                    edges.setdefault(f"{src}->{dst}", {"id": f"{src}->{dst}", "source": src, "target": dst,
                                                       "step": step})
    if focus is not None and focus in nodes:
        nodes[focus] = {**nodes[focus], "focus": True}
    return {"nodes": list(nodes.values()), "edges": list(edges.values())}
