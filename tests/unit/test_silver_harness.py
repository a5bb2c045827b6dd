"""A small harness for silver tests: bronze tables of the real shape, and runs that behave like the runner's.

`SilverLab.memory(...)` uses a plain in-memory DuckDB attached as `lake` (fast: unit tests of the generated SQL);
`SilverLab.lake(factory, ...)` uses a real DuckLake from the project fixtures (integration tests).
Both run every build inside one open transaction, committed at the end or rolled back on any error.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import duckdb
import pytest
import yaml

from airduck.core.context import RunContext
from airduck.core.model import StepResult
from airduck.lake.commit import set_message
from airduck.lake.connection import quote_ident
from airduck.project import Project, load_project
from airduck.silver import build_silver, read_watermark, silver_order

BRONZE_META = [
    ("_load_id", "VARCHAR"), ("_batch", "BIGINT"), ("_source", "VARCHAR"), ("_source_file", "VARCHAR"),
    ("_source_version", "VARCHAR"), ("_landing_key", "VARCHAR"), ("_row_number", "BIGINT"),
    ("_ingested_at", "TIMESTAMPTZ"), ("_rescued", "VARCHAR"),
]


class SilverLab:
    def __init__(self, project: Project, con: duckdb.DuckDBPyConnection, ducklake: bool) -> None:
        self.project = project
        self.con = con
        self.ducklake = ducklake
        self.batch = 0
        self.runs = 0

    # -- construction ---------------------------------------------------------------------------------------------
    @classmethod
    def memory(cls, root: Path, silver: dict[str, Any], sources: tuple[str, ...] = ("orders",)) -> SilverLab:
        project = _write_project(root, silver, sources)
        con = duckdb.connect()
        con.execute("ATTACH ':memory:' AS lake")
        con.execute("USE lake")
        for schema in ("bronze", "silver", "airduck"):
            con.execute(f"CREATE SCHEMA lake.{schema}")
        return cls(project, con, ducklake=False)

    @classmethod
    def lake(cls, factory: Any, silver: dict[str, Any], sources: tuple[str, ...] = ("orders",)) -> SilverLab:
        from airduck.lake.connection import open_lake

        root = factory.make(_config(silver, sources))
        project = load_project(root)
        return cls(project, open_lake(project), ducklake=True)

    def close(self) -> None:
        self.con.close()

    # -- bronze ---------------------------------------------------------------------------------------------------
    def bronze(self, source: str, columns: dict[str, str], rows: list[dict[str, Any]], batch: int | None = None) -> int:
        """Append rows as one bronze batch (creating or widening the table); returns the batch number."""
        if batch is None:
            self.batch += 1
            batch = self.batch
        else:
            self.batch = max(self.batch, batch)
        table = f"lake.bronze.{quote_ident(source)}"
        existing = {r[0] for r in self.con.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_catalog = 'lake' "
            "AND table_schema = 'bronze' AND table_name = ?", [source]).fetchall()}
        self._begin(f"bronze {source} batch {batch}")
        try:
            if not existing:
                cols = [*columns.items(), *BRONZE_META]
                self.con.execute(f"CREATE TABLE {table} ({', '.join(f'{quote_ident(n)} {t}' for n, t in cols)})")
            else:
                for name, type_ in columns.items():
                    if name not in existing:
                        self.con.execute(f"ALTER TABLE {table} ADD COLUMN {quote_ident(name)} {type_}")
            names = [*columns, "_load_id", "_batch", "_source", "_source_file", "_row_number", "_ingested_at"]
            marks = ", ".join(["?"] * (len(names) - 1) + ["CAST(? AS TIMESTAMPTZ)"])
            sql = f"INSERT INTO {table} ({', '.join(quote_ident(n) for n in names)}) VALUES ({marks})"
            ingested = f"2026-01-{batch:02d} 00:00:00+00"
            values = [[*(r.get(c) for c in columns), f"load-{batch}", batch, source, f"{source}-{batch}.csv", i + 1,
                       ingested] for i, r in enumerate(rows)]
            if values:
                self.con.executemany(sql, values)
            self.con.execute("COMMIT")
        except BaseException:
            self.con.execute("ROLLBACK")
            raise
        return batch

    # -- runs -----------------------------------------------------------------------------------------------------
    def _begin(self, message: str) -> None:
        self.con.execute("BEGIN TRANSACTION")
        if self.ducklake:
            set_message(self.con, message, step="test")

    def run(self, *names: str, full_refresh: bool = False) -> dict[str, StepResult]:
        """Build the named silver tables (all, in dependency order, by default) in one transaction."""
        silver = self.project.config.silver
        order = [n for n in silver_order(silver) if not names or n in names]
        self.runs += 1
        run_id = f"run-{self.runs}"
        self._begin(f"silver {run_id}")
        ctx = RunContext(self.project, self.con, run_id, max(self.batch, 1), landing=None, full_refresh=full_refresh)
        try:
            results = {n: build_silver(ctx, n, silver[n]) for n in order}
            self.con.execute("COMMIT")
        except BaseException:
            self.con.execute("ROLLBACK")
            raise
        return results

    # -- reading --------------------------------------------------------------------------------------------------
    def rows(self, sql: str, params: list[Any] | None = None) -> list[tuple]:
        return self.con.execute(sql, params or []).fetchall()

    def one(self, sql: str, params: list[Any] | None = None) -> Any:
        row = self.con.execute(sql, params or []).fetchone()
        return row[0] if row else None

    def quarantine(self, name: str) -> list[tuple[list[str], dict[str, Any]]]:
        """(reasons, raw row) of every quarantined row, by source row number."""
        import json

        rows = self.rows(f"SELECT _reasons, _raw FROM lake.silver.{quote_ident(name + '__quarantine')}")
        out = [(list(r), json.loads(raw)) for r, raw in rows]
        return sorted(out, key=lambda x: (x[1].get("_batch") or 0, x[1].get("_row_number") or 0))

    def snapshot(self) -> int:
        return int(self.one("SELECT id FROM lake.current_snapshot()"))

    def watermark(self, name: str) -> int | None:
        return read_watermark(self.con, f"silver.{name}")


def _config(silver: dict[str, Any], sources: tuple[str, ...]) -> dict[str, Any]:
    return {"name": "silver-test", "sources": {s: {"type": "files", "path": f"data/{s}/*.csv"} for s in sources},
            "silver": silver}


def _write_project(root: Path, silver: dict[str, Any], sources: tuple[str, ...]) -> Project:
    root.mkdir(parents=True, exist_ok=True)
    (root / "airduck.yml").write_text(yaml.safe_dump(_config(silver, sources), sort_keys=False), encoding="utf-8")
    return load_project(root)


def memory_labs(tmp_path: Path):
    """Yields a factory of in-memory labs and closes them afterwards (wrap it in a fixture)."""
    labs: list[SilverLab] = []

    def make(silver: dict[str, Any], sources: tuple[str, ...] = ("orders",)) -> SilverLab:
        lab = SilverLab.memory(tmp_path / f"p{len(labs)}", silver, sources)
        labs.append(lab)
        return lab

    yield make
    for lab in labs:
        lab.close()


@pytest.fixture
def memory_lab(tmp_path: Path):
    yield from memory_labs(tmp_path)


# -- the harness itself -------------------------------------------------------------------------------------------

def test_harness_bronze_has_the_bronze_contract(memory_lab):
    lab = memory_lab({"orders": {"from": "orders", "columns": {"id": {"type": "BIGINT"}}}})
    assert lab.bronze("orders", {"id": "VARCHAR"}, [{"id": "1"}, {"id": "2"}]) == 1
    cols = [r[0] for r in lab.rows("DESCRIBE lake.bronze.orders")]
    assert cols == ["id", *(n for n, _ in BRONZE_META)]
    assert lab.rows("SELECT id, _batch, _row_number FROM lake.bronze.orders ORDER BY _row_number") == [
        ("1", 1, 1), ("2", 1, 2)]


def test_a_failed_build_rolls_back_like_the_runner(memory_lab):
    lab = memory_lab({"orders": {"from": "orders", "columns": {"id": {"type": "BIGINT"}},
                                 "expectations": [{"name": "small", "check": "id < 2", "on_fail": "fail"}]}})
    lab.bronze("orders", {"id": "VARCHAR"}, [{"id": "1"}, {"id": "5"}])
    with pytest.raises(Exception, match="small"):
        lab.run()
    tables = {r[0] for r in lab.rows("SELECT table_name FROM information_schema.tables WHERE table_schema = 'silver'")}
    assert tables == set()


def lab_factory_for(factory: Any) -> Any:
    """A generator for a pytest fixture: `make(silver)` opens a SilverLab on `factory`; all are closed after."""
    labs: list[SilverLab] = []

    def make(silver: dict[str, Any]) -> SilverLab:
        lab = SilverLab.lake(factory, silver)
        labs.append(lab)
        return lab

    yield make
    for lab in labs:
        lab.close()

