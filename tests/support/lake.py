"""Small helpers shared by lake tests."""

from __future__ import annotations

from airduck.config.project import Project
from airduck.lake.connection import open_lake


def lake_rows(project: Project, table: str) -> list[tuple]:
    """Every row of a lake table, in a stable order (for equality checks)."""
    con = open_lake(project)
    try:
        return sorted(con.execute(f"SELECT * FROM {table}").fetchall(), key=repr)
    finally:
        con.close()
