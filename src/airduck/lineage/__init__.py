"""Lineage: the built-in graph (from the plan and the rules) and OpenLineage events (an event sink).

Beside the stages: imports quality/lake/config/core/events, never pipeline; the facade and the pipeline wire it.
Imports are lazy (sqlglot, openlineage load only when the graph or the events are used).
"""

from typing import Any

__all__ = ["LineageGraph", "build_graph"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from airduck.lineage import graph

        return getattr(graph, name)
    raise AttributeError(name)
