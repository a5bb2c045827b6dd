"""Bad credentials, unreachable catalogs and unsafe SQL give one clear error line, never a traceback or a secret."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from airduck.errors import CatalogError, SqlError
from airduck.lake.commit import write
from airduck.lakehouse import Lakehouse

AIRDUCK = [sys.executable, "-m", "airduck"]


def cli(root: Path, *args: str, env: dict[str, str] | None = None, timeout: int = 120) -> subprocess.CompletedProcess:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRDUCK_", "AWS_"))}
    full_env.update(env or {})
    return subprocess.run([*AIRDUCK, "-p", str(root), *args], capture_output=True, text=True, env=full_env,
                          timeout=timeout)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def one_error_line(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
    assert lines and lines[0].startswith("error:"), proc.stderr
    return " ".join(lines)


def test_unreachable_catalog_is_one_clear_line(tmp_path):
    port = free_port()
    root = tmp_path / "p"
    root.mkdir()
    (root / "airduck.yml").write_text(yaml.safe_dump(
        {"name": "x", "lake": {"catalog": f"postgresql://postgres:Sup3rSecret@127.0.0.1:{port}/nowhere"}}))
    proc = cli(root, "tables")
    text = one_error_line(proc)
    assert "cannot open the lake catalog" in text
    assert "Sup3rSecret" not in proc.stderr + proc.stdout
    # --debug shows the traceback, still without the secret
    proc = cli(root, "--debug", "tables")
    assert proc.returncode == 1 and "Traceback" in proc.stderr
    assert "Sup3rSecret" not in proc.stderr + proc.stdout


def test_wrong_s3_credentials_are_one_clear_line(pg_s3_projects, s3_server):
    root = pg_s3_projects.make()
    with Lakehouse.open(root) as lh, write(lh.con, "seed"):  # enough rows to be written as files (not inlined)
        lh.con.execute("CREATE TABLE bronze.t AS SELECT range AS i FROM range(100000)")
    env_file = root / ".env"
    env_file.write_text(env_file.read_text().replace(s3_server.secret_access_key, "WrongSecretValue123"))
    proc = cli(root, "head", "bronze.t")
    one_error_line(proc)
    assert "WrongSecretValue123" not in proc.stderr + proc.stdout
    assert s3_server.secret_access_key not in proc.stderr + proc.stdout
    # doctor names the failing part and the fix, exit 1
    proc = cli(root, "doctor")
    assert proc.returncode == 1
    assert "fail" in proc.stdout and "storage (data)" in proc.stdout
    assert "WrongSecretValue123" not in proc.stdout + proc.stderr


def test_missing_catalog_database_names_the_fix(tmp_path, pg_database):
    dsn = pg_database().rsplit("/", 1)[0] + "/airduck_does_not_exist"
    root = tmp_path / "p"
    root.mkdir()
    (root / "airduck.yml").write_text(yaml.safe_dump({"name": "x", "lake": {"catalog": dsn}}))
    with pytest.raises(CatalogError, match="does not exist"):
        Lakehouse.open(root).current_snapshot()


@pytest.fixture
def seeded(local_projects):
    """An embedded lake with bronze.t (10 rows)."""
    with Lakehouse.open(local_projects.make()) as lh:
        with write(lh.con, "seed"):
            lh.con.execute("CREATE TABLE bronze.t AS SELECT range AS i FROM range(10)")
        yield lh


@pytest.mark.parametrize("statement", [
    "CREATE TABLE bronze.x (i INT)",
    "INSERT INTO bronze.t VALUES (1)",
    "DELETE FROM bronze.t",
    "DROP TABLE bronze.t",
    "COPY bronze.t TO '/tmp/airduck_leak.csv'",
    "ATTACH ':memory:' AS other",
    "INSTALL httpfs",
    "SET enable_external_access = true",
    "SELECT 1; DROP TABLE bronze.t",
    "CALL ducklake_expire_snapshots('lake', older_than => now())",
])
def test_sql_refuses_writes_and_side_effects(seeded, statement):
    with pytest.raises(SqlError):
        seeded.sql(statement)
    assert seeded.describe("bronze.t").row_count == 10
    assert not Path("/tmp/airduck_leak.csv").exists()


@pytest.mark.parametrize("query", [
    "SELECT * FROM read_csv('/etc/passwd')",
    "SELECT * FROM read_text('/etc/hostname')",
    "SELECT * FROM ducklake_expire_snapshots('lake', dry_run => false, older_than => now())",
    "SELECT * FROM glob('/*')",
    "SELECT * FROM sqlite_scan('/tmp/x.sqlite', 't')",
    "SELECT count(*) FROM postgres_scan('host=127.0.0.1 user=postgres dbname=postgres', 'pg_catalog', 'pg_authid')",
    "SELECT * FROM postgres_query('__ducklake_metadata_lake', 'SELECT 1')",
    "SELECT (SELECT count(*) FROM read_parquet('/tmp/*.parquet')) AS n",
    "SELECT * FROM __ducklake_metadata_lake.ducklake_snapshot",
    "SELECT * FROM duckdb_secrets()",
    "SELECT getenv('HOME')",
    "WITH x AS (SELECT * FROM sqlite_scan('/tmp/x.sqlite', 't')) SELECT * FROM x",
])
def test_sql_cannot_touch_the_file_system_or_the_catalog(seeded, query):
    before = len(seeded.snapshots())
    with pytest.raises(SqlError):
        seeded.sql(query)
    seeded.reconnect()
    assert len(seeded.snapshots()) == before


def test_sql_reads_the_lake(local_projects):
    root = local_projects.make()
    with Lakehouse.open(root) as lh:
        with write(lh.con, "seed"):
            lh.con.execute("CREATE TABLE bronze.t AS SELECT range AS i FROM range(10)")
        cols, rows = lh.sql("SELECT count(*) AS n, sum(i) AS s FROM bronze.t")
        assert cols == ["n", "s"] and rows == [(10, 45)]
        # ordinary SQL still works: CTEs, joins, unnest, range, time travel, information_schema
        first = lh.snapshots("bronze.t")[0].snapshot_id
        _, rows = lh.sql(f"WITH a AS (SELECT i FROM bronze.t AT (VERSION => {first})) "
                         "SELECT count(*) FROM a JOIN range(5) r(j) ON a.i = r.j, unnest([1]) u(k)")
        assert rows == [(5,)]
        _, rows = lh.sql("SELECT count(*) FROM information_schema.tables WHERE table_schema = 'bronze'")
        assert rows[0][0] >= 1
