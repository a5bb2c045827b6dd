"""An open Lakehouse keeps one read-only, locked-down session for its reads; errors reach callers as AirduckErrors."""

from __future__ import annotations

import socket
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import duckdb
import pytest
import yaml

from airduck.errors import CatalogError, NotFound, SqlError, Terminal, Transient
from airduck.lake.commit import write
from airduck.lake.connection import needed_extensions, open_lake
from airduck.lakehouse import Lakehouse
from airduck.project import load_project
from tests.conftest import ProjectFactory


@pytest.fixture(params=("sqlite-local", "pg-local"))
def factory(request: pytest.FixtureRequest, tmp_path: Path) -> ProjectFactory:
    return ProjectFactory(request.param, tmp_path, request)


def seed(root: Path, rows: int = 100) -> None:
    with Lakehouse.open(root) as lh, write(lh.con, "seed"):
        lh.con.execute(f"CREATE TABLE bronze.t AS SELECT range AS i FROM range({rows})")


def loaded_extensions(con: duckdb.DuckDBPyConnection) -> set[str]:
    return {r[0] for r in con.execute("SELECT extension_name FROM duckdb_extensions() WHERE loaded").fetchall()}


def test_reads_share_one_read_only_session_and_see_new_commits(factory):
    root = factory.make()
    seed(root)
    with Lakehouse.open(root) as lh:
        assert lh.sql("SELECT count(*) FROM bronze.t").rows == [(100,)]
        session = lh.read_session()
        first = session._con
        assert lh.head("bronze.t", 5)[1] == [(0,), (1,), (2,), (3,), (4,)]
        assert [t.qualified for t in lh.tables()] == ["bronze.t"]
        assert lh.describe("bronze.t").row_count == 100
        assert lh.snapshots("bronze.t")[-1].message == "seed"
        assert lh.tags() == []
        assert lh._con is None  # none of these opened the read-write connection
        assert session._con is first  # nor a second session: one per Lakehouse
        # the session is READ_ONLY and locked down
        with pytest.raises(SqlError):
            lh.sql("INSERT INTO bronze.t VALUES (1)")
        with session.cursor() as cur, pytest.raises(duckdb.Error, match="read-only"):
            cur.execute("INSERT INTO bronze.t VALUES (1)")
        with session.cursor() as cur, pytest.raises(duckdb.Error, match="locked"):
            cur.execute("SET enable_external_access = true")
        # a commit by another connection (another process would be the same) is seen by the next read
        other = open_lake(load_project(root))
        try:
            with write(other, "more"):
                other.execute("INSERT INTO bronze.t SELECT range FROM range(100, 150)")
                other.execute("CREATE TABLE silver.s AS SELECT 1 AS x")
        finally:
            other.close()
        assert lh.sql("SELECT count(*) FROM bronze.t").rows == [(150,)]
        assert "silver.s" in [t.qualified for t in lh.tables()]
        assert session._con is first
        # writes go through the read-write connection; reads see them
        with write(lh.con, "from the facade"):
            lh.con.execute("INSERT INTO bronze.t VALUES (1000)")
        assert lh.sql("SELECT max(i) FROM bronze.t").rows == [(1000,)]
    assert lh._read is None and lh._con is None  # close() closed both
    assert lh.sql("SELECT count(*) FROM bronze.t").rows == [(151,)]  # and a closed Lakehouse opens them again
    lh.close()


def test_concurrent_sql_calls_on_one_lakehouse(factory):
    root = factory.make()
    seed(root, 1000)
    with Lakehouse.open(root) as lh:
        queries = [f"SELECT count(*), sum(i) FROM bronze.t WHERE i % 8 = {k}" for k in range(8)] * 4
        with ThreadPoolExecutor(max_workers=8) as pool:
            results = list(pool.map(lambda q: lh.sql(q).rows[0], queries))
        expected = [(125, sum(i for i in range(1000) if i % 8 == k)) for k in range(8)] * 4
        assert results == expected
        assert lh._con is None


def test_a_lake_loads_only_the_extensions_it_needs(factory):
    root = factory.make()
    seed(root)
    project = load_project(root)
    kind = "sqlite_scanner" if factory.combo == "sqlite-local" else "postgres_scanner"
    assert needed_extensions(project, writes=False) == ("ducklake", kind)
    con = open_lake(project, read_only=True)  # how the read session opens (before it is locked down)
    try:
        loaded = loaded_extensions(con)
    finally:
        con.close()
    assert {"ducklake", kind} <= loaded
    assert not loaded & ({"sqlite_scanner", "postgres_scanner", "httpfs"} - {kind})


def test_s3_and_postgres_serving_add_their_extensions(tmp_path):
    root = tmp_path / "p"
    root.mkdir()
    (root / "airduck.yml").write_text(yaml.safe_dump({
        "name": "x", "lake": {"data_path": "s3://bucket/data/"},
        "serve": {"postgres": {"dsn": "postgresql://u@127.0.0.1:1/db", "tables": ["gold.m"]}}}))
    project = load_project(root)
    assert needed_extensions(project, writes=False) == ("ducklake", "sqlite_scanner", "httpfs")
    assert needed_extensions(project) == ("ducklake", "sqlite_scanner", "postgres_scanner", "httpfs")
    (root / "airduck.yml").write_text(yaml.safe_dump({
        "name": "x", "serve": {"export": {"path": "s3://bucket/exports/", "tables": ["gold.m"]}}}))
    project = load_project(root)
    assert needed_extensions(project, writes=False) == ("ducklake", "sqlite_scanner")
    assert needed_extensions(project) == ("ducklake", "sqlite_scanner", "httpfs")


def test_facade_reads_raise_airduck_errors(factory):
    root = factory.make()
    seed(root)
    with Lakehouse.open(root) as lh:
        for call in (lambda: lh.describe("bronze.nope"), lambda: lh.head("bronze.nope"),
                     lambda: lh.snapshots("bronze.nope"), lambda: lh.read("bronze.nope"),
                     lambda: lh.head("bronze.t", at=10**6), lambda: lh.rollback("bronze.t", to=10**6),
                     lambda: lh.tag("x", snapshot=10**6)):
            with pytest.raises(NotFound) as info:
                call()
            assert isinstance(info.value, Terminal) and not isinstance(info.value, Transient)
            assert not info.value.transient


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_an_unreachable_catalog_is_transient_and_a_wrong_one_terminal(tmp_path, pg_database):
    root = tmp_path / "p"
    root.mkdir()
    config = {"name": "x", "lake": {"catalog": f"postgresql://postgres@127.0.0.1:{free_port()}/x?connect_timeout=3"}}
    (root / "airduck.yml").write_text(yaml.safe_dump(config))
    with Lakehouse.open(root) as lh:
        for call in (lh.tables, lambda: lh.sql("SELECT 1"), lambda: lh.head("bronze.t"), lh.snapshots):
            with pytest.raises(CatalogError) as info:
                call()
            assert isinstance(info.value, Transient) and info.value.transient, info.value
    config["lake"]["catalog"] = pg_database().rsplit("/", 1)[0] + "/airduck_does_not_exist"
    (root / "airduck.yml").write_text(yaml.safe_dump(config))
    with Lakehouse.open(root) as lh, pytest.raises(CatalogError, match="does not exist") as info:
        lh.tables()
    assert isinstance(info.value, Terminal) and not info.value.transient


def test_a_fresh_project_reads_as_an_empty_lake_until_it_is_written(factory):
    root = factory.make()
    with Lakehouse.open(root) as lh:
        assert lh.tables() == [] and lh.snapshots() == [] and lh.read_session().empty
        assert {"bronze", "silver", "gold"} <= set(lh.schemas())
        assert lh.sql("SELECT 1 AS x").rows == [(1,)]
        with pytest.raises(SqlError, match="not a table of the lake"):
            lh.sql("SELECT * FROM bronze.t")
        with write(lh.con, "seed"):  # the first write creates the catalog: reads move to it
            lh.con.execute("CREATE TABLE bronze.t AS SELECT 7 AS i")
        assert lh.sql("SELECT * FROM bronze.t").rows == [(7,)]
        assert not lh.read_session().empty
        assert lh.snapshots()[-1].message == "seed"
