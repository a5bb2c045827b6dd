"""`airduck lineage [TABLE]`: the lineage graph (table and column level) as a tree, JSON, Mermaid or DOT;
`airduck lineage send`: re-send the OpenLineage events kept in .airduck/lineage/events.jsonl."""

from __future__ import annotations

from typing import Annotated

import typer

from airduck.cli import render
from airduck.text import plural


def lineage(
    table: Annotated[str | None, typer.Argument(help="A table (silver.orders), source or step id; `send` re-sends "
                                                     "the kept OpenLineage events. Default: the whole project.")] = None,
    upstream: Annotated[bool, typer.Option("--upstream", help="Only what TABLE comes from.")] = False,
    downstream: Annotated[bool, typer.Option("--downstream", help="Only what is built from TABLE.")] = False,
    columns: Annotated[bool, typer.Option("--columns", help="With column lineage (silver rules, dbt models).")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the graph as JSON (nodes, edges, columns).")] = False,
    mermaid: Annotated[bool, typer.Option("--mermaid", help="Print a Mermaid flowchart.")] = False,
    dot: Annotated[bool, typer.Option("--dot", help="Print a Graphviz DOT graph.")] = False,
) -> None:
    """Show where tables come from and what is built from them: sources, lake tables, steps, marts, exports."""
    from airduck.cli.app import lakehouse
    from airduck.errors import ConfigError

    if sum((as_json, mermaid, dot)) > 1:
        raise ConfigError("give at most one of --json, --mermaid, --dot")
    with lakehouse() as lh:
        if table == "send":
            sent = lh.send_lineage()
            if as_json:
                render.print_json(sent)
            elif sent["total"] == 0:
                render.note("no kept OpenLineage events to send")
            elif sent["pending"]:
                why = sent["errors"][0] if sent["errors"] else "time limit"
                render.error(f"sent {sent['sent']}, {plural(sent['pending'], 'event')} not delivered: {why} "
                             f"(they stay in {sent['file']}; try again later)")
            else:
                render.ok(f"sent {plural(sent['sent'], 'event')} to {', '.join(sent['targets'])}")
            if sent["pending"]:
                raise typer.Exit(1)
            return
        both = not upstream and not downstream
        graph = lh.lineage(table, upstream=upstream or both, downstream=downstream or both, columns=columns)
    if as_json:
        render.print_json(graph.to_dict())
    elif mermaid:
        typer.echo(graph.to_mermaid(columns=columns), nl=False)
    elif dot:
        typer.echo(graph.to_dot(columns=columns), nl=False)
    else:
        _tree(graph, columns)


def _tree(graph, columns: bool) -> None:
    """Each step with what it reads and writes, in plan order; then the column lineage."""
    ins: dict[str, list[str]] = {}
    outs: dict[str, list[str]] = {}
    for e in graph.edges:
        if graph.nodes[e["target"]]["kind"] == "step":
            ins.setdefault(e["target"], []).append(e["source"])
        else:
            outs.setdefault(e["source"], []).append(e["target"])
    steps = [n for n in graph.nodes.values() if n["kind"] == "step"]
    if not steps:
        render.note("no lineage: the project has no steps")
    for n in steps:
        render.console.print(f"[bold]{n['id']}[/bold]")
        for i in ins.get(n["id"], []):
            render.console.print(f"  ← {graph.nodes[i]['label']}", highlight=False)
        for o in outs.get(n["id"], []):
            render.console.print(f"  → {graph.nodes[o]['label']}", highlight=False)
    if columns and graph.columns:
        rows = [[c.table, c.column, c.transformation, ", ".join(f"{s.table}.{s.column}" for s in c.sources)]
                for c in graph.columns]
        render.table(["table", "column", "how", "from"], rows, title="columns")
