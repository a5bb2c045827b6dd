"""Lineage: the built-in graph (from the plan and the rules) and OpenLineage events (an event sink).

Beside the stages: imports quality/lake/config/core/events, never pipeline; the facade and the pipeline wire it.
"""

from airduck.lineage.graph import LineageGraph, build_graph

__all__ = ["LineageGraph", "build_graph"]
