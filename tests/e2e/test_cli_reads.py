"""Reads never write: every read command leaves the lake's snapshots (and a fresh project's missing catalog) alone."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from airduck.lake.commit import write
from airduck.lakehouse import Lakehouse
from airduck.project import load_project
from tests.conftest import ProjectFactory

AIRDUCK = [sys.executable, "-m", "airduck"]

#: the read commands, with what each should print or exit with on a lake holding bronze.t
READS = (
    ("doctor",),
    ("tables",),
    ("tables", "--all", "--json"),
    ("describe", "bronze.t"),
    ("head", "bronze.t"),
    ("head", "bronze.t", "--json"),
    ("sql", "SELECT count(*) AS n FROM bronze.t"),
    ("sql", "SELECT count(*) AS n FROM bronze.t", "--json"),
    ("snapshots",),
    ("snapshots", "bronze.t", "--json"),
    ("runs", "--json"),
    ("plan",),
    ("plan", "--json"),
    ("quality",),
    ("quality", "--json"),
)


def cli(root: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRDUCK_", "AWS_"))}
    env["COLUMNS"] = "200"
    return subprocess.run([*AIRDUCK, "-p", str(root), *args], capture_output=True, text=True, env=env, timeout=180)


@pytest.fixture(params=("sqlite-local", "pg-local"))
def factory(request: pytest.FixtureRequest, tmp_path: Path) -> ProjectFactory:
    return ProjectFactory(request.param, tmp_path, request)


def catalog_state(root: Path) -> tuple[bool, int]:
    """(does the catalog exist, how many rows its ducklake_snapshot table holds), read from the catalog itself."""
    project = load_project(root)
    catalog = project.config.lake.catalog
    if catalog.startswith("postgresql://"):
        with psycopg.connect(catalog) as conn:
            exists = conn.execute("SELECT count(*) FROM information_schema.tables WHERE table_name = "
                                  "'ducklake_snapshot'").fetchone()[0]
            if not exists:
                return False, 0
            return True, conn.execute("SELECT count(*) FROM ducklake_snapshot").fetchone()[0]
    path = Path(project.resolve(catalog))
    if not path.exists():
        return False, 0
    with sqlite3.connect(path) as conn:
        return True, conn.execute("SELECT count(*) FROM ducklake_snapshot").fetchone()[0]


def test_reads_on_a_fresh_project_create_no_catalog(factory):
    root = factory.make({"sources": {"t": {"type": "files", "path": "data/*.csv"}}})
    for args in READS:
        proc = cli(root, *args)
        if args[0] in ("describe", "head") or args[:2] == ("snapshots", "bronze.t"):
            assert proc.returncode == 1 and "bronze.t" in proc.stderr and "Traceback" not in proc.stderr, args
        elif args[0] == "sql":
            assert proc.returncode == 1 and "not a table of the lake" in proc.stderr, (args, proc.stderr)
        else:
            assert proc.returncode == 0, (args, proc.stdout, proc.stderr)
        assert catalog_state(root) == (False, 0), args
        assert not (root / ".airduck" / "catalog.sqlite").exists()
        assert not (root / ".airduck" / "catalog.sqlite.runs.sqlite").exists(), args
    assert "does not exist yet" in cli(root, "doctor").stdout
    assert cli(root, "tables", "--json").stdout.strip() == "[]"
    assert cli(root, "snapshots", "--json").stdout.strip() == "[]"
    assert json.loads(cli(root, "sql", "SELECT 41 + 1 AS x", "--json").stdout) == [{"x": 42}]


def test_reads_on_a_lake_add_no_snapshot(factory):
    root = factory.make({"sources": {"t": {"type": "files", "path": "data/*.csv"}}})
    with Lakehouse.open(root) as lh, write(lh.con, "seed"):
        lh.con.execute("CREATE TABLE bronze.t AS SELECT range AS i FROM range(50)")
    exists, before = catalog_state(root)
    assert exists and before >= 2
    for args in READS:
        proc = cli(root, *args)
        assert proc.returncode == 0, (args, proc.stdout, proc.stderr)
        assert catalog_state(root) == (True, before), args
    assert json.loads(cli(root, "sql", "SELECT count(*) AS n FROM bronze.t", "--json").stdout) == [{"n": 50}]
