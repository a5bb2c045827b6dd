"""Rolling back a pipeline table together with the pipeline's state, so that the next run brings it up to date.

A table alone is not the whole story: bronze has its rejects and its incremental state (files ingested,
watermarks), silver its quarantine and its watermark (which bronze batches it has read), and silver tables read from
bronze or from other silver tables. A rollback of

- ``bronze.<source>`` also rolls back ``bronze.<source>__rejects`` and the source's incremental state, so the next run
  ingests again what the rollback removed (once: its rows are gone); the silver tables that read the source (directly
  or through other silver tables) are rebuilt from bronze by the next run;
- ``silver.<name>`` also rolls back ``silver.<name>__quarantine`` and the table's watermark, so the next run reads
  the bronze batches processed since then again and the table catches up; the silver tables that read it are rebuilt;
- any other table (gold, a system table) is rolled back alone: dbt rebuilds gold on the next run.

All of it is one snapshot.
"""

from __future__ import annotations

import duckdb

from airduck.config.project import Project
from airduck.lake import history
from airduck.lake.catalog import TableRef


def downstream(project: Project, table: TableRef) -> list[str]:
    """The silver tables (names) that read `table` through `from:`, directly or through other silver tables, in
    build order."""
    from airduck.silver import silver_order
    from airduck.silver.order import silver_ref

    silver = project.config.silver

    def reads(rule) -> TableRef:
        target = silver_ref(rule.source)
        if target is not None:
            return TableRef("silver", target)
        return TableRef("bronze", rule.source.strip().strip('"').removeprefix("bronze.").strip('"'))

    found: set[TableRef] = {table}
    out: list[str] = []
    for name in silver_order(silver):
        if reads(silver[name]) in found:
            found.add(TableRef("silver", name))
            out.append(name)
    return out


def rollback_table(project: Project, con: duckdb.DuckDBPyConnection, table: TableRef, version: int) -> int:
    """Roll `table` back to snapshot `version` with its companions and state (see the module docstring); returns
    the new snapshot id."""
    from airduck.bronze import state as bronze_state
    from airduck.bronze.table import rejects_ref
    from airduck.silver.build import STATE, request_rebuild

    also: list[TableRef] = []
    if table.schema == "bronze" and table.name in project.config.sources:
        also.append(rejects_ref(table.name))
    elif table.schema == "silver" and table.name in project.config.silver:
        also.append(TableRef("silver", f"{table.name}__quarantine"))
    stale = downstream(project, table) if also else []

    def state(con: duckdb.DuckDBPyConnection) -> None:
        if table.schema == "bronze":
            for ref in (bronze_state.FILES_REF, bronze_state.WATERMARKS_REF):
                history.restore_rows(con, ref, version, "source = ?", [table.name])
        else:
            history.restore_rows(con, STATE, version, "table_name = ?", [table.qualified])
        for name in stale:
            request_rebuild(con, f"silver.{name}", f"rollback of {table.qualified}")

    return history.rollback(con, table, version, also=also, then=state if also else None)
