"""`airduck airflow dags`: write the Airflow DAG files of the project."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from airduck.cli import render

app = typer.Typer(help="Airflow: DAGs generated from the project's plan (needs the `airflow` extra to run them).",
                  no_args_is_help=True)


@app.command()
def dags(
    out: Annotated[Path, typer.Option("--out", "-o", help="The Airflow DAGs folder to write into (created if missing).")],
    as_json: Annotated[bool, typer.Option("--json", help="Print machine-readable JSON (stable keys).")] = False,
) -> None:
    """Write the project's DAG file and its plan snapshot into OUT: the pipeline DAG (a task per step, grouped
    by layer, an Asset per table), the maintenance DAG and the data-quality DAG, as set under `airflow:` in
    airduck.yml. The DAGs follow the project: they are rebuilt from its plan when airduck.yml or the dbt project
    changes."""
    from airduck.cli.app import lakehouse
    from airduck.orchestrate.files import write_dag_files

    with lakehouse() as lh:
        paths = write_dag_files(lh, out)
    snapshot = json.loads(paths[1].read_text(encoding="utf-8"))
    steps, mode = len(snapshot["steps"]), snapshot["airflow"]["mode"]
    if as_json:
        render.print_json({"files": [str(p) for p in paths], "steps": steps, "mode": mode})
        return
    for p in paths:
        render.console.print(f"[green]✓[/] wrote {p}")
    render.console.print(f"{steps} steps, mode {mode}: copy or mount {paths[0].name} and "
                         f"{paths[1].name} into Airflow's DAGs folder")
