"""`airduck sql` / `Lakehouse.sql`: no secrets, no raw files, a time limit, no silent truncation (issue 9)."""

from __future__ import annotations

import base64
import json
import time

import pytest
import yaml

from airduck.errors import SqlError
from airduck.lake.commit import write
from airduck.lake.connection import data_path
from airduck.lake.sqlguard import API_SQL_TIMEOUT_SECONDS, CLI_SQL_TIMEOUT_SECONDS, QueryTimeout
from airduck.lakehouse import Lakehouse, SqlResult
from tests.integration.test_lake_errors import cli

PASSWORD = "Hunter2SecretPw"

LEAKS = [
    "SELECT to_base64(path::BLOB), reverse(path) FROM duckdb_databases",
    "SELECT * FROM duckdb_databases()",
    "SELECT reverse(path) FROM system.main.duckdb_databases",
    "PRAGMA database_list",
    "  /* x */ pragma database_list",
    "SELECT * FROM pragma_database_list",
    "SELECT reverse(file) FROM pragma_database_list()",
    "SELECT name, reverse(setting) FROM pg_settings",
    "SELECT setting FROM pg_catalog.pg_settings WHERE name = 'allowed_paths'",
    "SELECT name, value FROM duckdb_settings()",
    "SELECT current_setting('allowed_paths')",
    "WITH duckdb_databases AS (SELECT * FROM duckdb_databases) SELECT reverse(path) FROM duckdb_databases",
    "SELECT * FROM (WITH x AS (SELECT 1) SELECT * FROM x), duckdb_databases",
    "SUMMARIZE duckdb_databases",
    "SHOW ALL TABLES",
    "SELECT * FROM information_schema.character_sets",
    "SELECT * FROM pg_catalog.pg_database",
    "SELECT which_secret('s3://x/y', 's3')",
]


def _encodings(secret: str) -> list[str]:
    return [secret, secret[::-1], base64.b64encode(secret.encode()).decode()[:12], secret.encode().hex()]


@pytest.mark.parametrize("lake_combo", ["pg-local"])
def test_sql_never_shows_the_catalog_password(projects, lake_combo):
    root = projects.make()
    config = yaml.safe_load((root / "airduck.yml").read_text())
    config["lake"]["catalog"] = config["lake"]["catalog"].replace("postgres@", f"postgres:{PASSWORD}@")  # trust auth
    (root / "airduck.yml").write_text(yaml.safe_dump(config))
    with Lakehouse.open(root) as lh:
        with write(lh.con, "seed"):
            lh.con.execute("CREATE TABLE bronze.t AS SELECT range AS i FROM range(10)")
        # the credentials are not in anything a session can select, even an unlocked one
        seen = repr(lh.con.execute("SELECT * FROM duckdb_databases()").fetchall())
        seen += repr(lh.con.execute("SELECT * FROM pg_settings").fetchall())
        assert not [e for e in _encodings(PASSWORD) if e in seen]
        # and the locked session refuses the system views, pragmas and settings outright
        for query in LEAKS:
            with pytest.raises(SqlError):
                lh.sql(query)
        # what is allowed works and shows no secret
        assert lh.sql("SELECT count(*) FROM bronze.t").rows == [(10,)]
        _, rows = lh.sql("SELECT * FROM information_schema.schemata")
        assert rows and not [e for e in _encodings(PASSWORD) if e in repr(rows)]
    # the same catalog in libpq's key=value form (as the README allows for DSNs) is a PostgreSQL catalog too
    url = config["lake"]["catalog"]
    config["lake"]["catalog"] = (f"host=127.0.0.1 port={url.rsplit(':', 1)[1].split('/')[0]} user=postgres "
                                 f"dbname={url.rsplit('/', 1)[1]} password='{PASSWORD}'")
    (root / "airduck.yml").write_text(yaml.safe_dump(config))
    with Lakehouse.open(root) as lh:
        assert lh.sql("SELECT count(*) FROM bronze.t").rows == [(10,)]
        seen = repr(lh.con.execute("SELECT * FROM duckdb_databases()").fetchall())
        assert not [e for e in _encodings(PASSWORD) if e in seen]


@pytest.mark.parametrize("lake_combo", ["sqlite-local", "pg-s3"])
def test_sql_cannot_read_the_lake_files(projects, lake_combo):
    with Lakehouse.open(projects.make()) as lh:
        with write(lh.con, "seed"):  # enough rows to be written as Parquet files (not inlined)
            lh.con.execute("CREATE TABLE bronze.t AS SELECT range AS i FROM range(100000)")
        with write(lh.con, "forget"):
            lh.con.execute("DELETE FROM bronze.t WHERE i < 50000")
        files = data_path(lh.project) + "**/*.parquet"
        assert lh.con.execute(f"SELECT count(*) FROM '{files}'").fetchone()[0] >= 100000  # the deleted rows are there
        for query in (f"SELECT count(*) FROM '{files}'", f'SELECT count(*) FROM "{files}"',
                      f"SELECT * FROM bronze.t UNION ALL SELECT * FROM '{files}'",
                      f"WITH x AS (SELECT 1) SELECT count(*) FROM x, '{files}'"):
            with pytest.raises(SqlError, match=r"files cannot be read|not a table of the lake"):
                lh.sql(query)
        assert lh.sql("SELECT count(*) FROM bronze.t").rows == [(50000,)]


def test_sql_checks_without_reading_files(local_projects, tmp_path):
    """`PRAGMA import_database` reads its folder while it is parsed: the check must read nothing."""
    folder = tmp_path / "dump"
    folder.mkdir()
    (folder / "schema.sql").write_text("SELECT GARBAGE_CONTENT_42 FROM nowhere_table_42;")
    (folder / "load.sql").write_text("SELECT GARBAGE_CONTENT_42;")
    with Lakehouse.open(local_projects.make()) as lh:
        lh.current_snapshot()  # the lake exists
        for query in (f"PRAGMA import_database('{folder}')", f"SELECT 1; PRAGMA import_database('{folder}')",
                      f"select 1 from range(1); pragma import_database('{folder}')"):
            with pytest.raises(SqlError) as err:
                lh.sql(query)
            assert "GARBAGE_CONTENT_42" not in str(err.value) and "nowhere_table_42" not in str(err.value)
        with pytest.raises(SqlError, match="PRAGMA statements are not allowed"):
            lh.sql(f"PRAGMA import_database('{folder}')")


def test_sql_time_limit(local_projects):
    root = local_projects.make({"lake": {"sql_timeout_seconds": 0.5}})
    slow = "SELECT count(*) FROM range(10000000000)"
    assert API_SQL_TIMEOUT_SECONDS < CLI_SQL_TIMEOUT_SECONDS
    with Lakehouse.open(root) as lh:
        lh.current_snapshot()  # the lake exists
        assert lh.project.config.lake.sql_timeout_seconds == 0.5
        start = time.monotonic()
        with pytest.raises(QueryTimeout, match=r"stopped after 0\.5 s"):
            lh.sql(slow)  # the project's limit
        with pytest.raises(QueryTimeout, match=r"stopped after 0\.2 s"):
            lh.sql(slow, timeout=0.2)  # the caller's limit
        assert time.monotonic() - start < 30  # the full count would take minutes
        assert lh.sql("SELECT 1", timeout=0.2).rows == [(1,)]
    proc = cli(root, "sql", "--timeout", "0.3", slow)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "stopped after 0.3 s" in proc.stderr and "--timeout" in proc.stderr


def test_sql_says_when_a_limit_cut_the_result(local_projects):
    root = local_projects.make()
    with Lakehouse.open(root) as lh:
        lh.current_snapshot()  # the lake exists
        result = lh.sql("SELECT * FROM range(1500)", limit=10)
        assert isinstance(result, SqlResult) and result.truncated and len(result.rows) == 10
        assert lh.sql("SELECT * FROM range(1500)", limit=10, count_all=True).total == 1500
        whole = lh.sql("SELECT * FROM range(1500)")
        assert not whole.truncated and whole.total == 1500
        cols, rows = lh.sql("SELECT * FROM range(3)", limit=3)  # still unpacks as (columns, rows)
        assert cols == ["range"] and rows == [(0,), (1,), (2,)]
        assert lh.sql("SELECT * FROM range(3)", limit=0).rows == []
        with pytest.raises(SqlError):
            lh.sql("SELECT 1", limit=-1)
    # --json: every row unless --limit; a cut is said on stderr
    proc = cli(root, "sql", "--json", "SELECT * FROM range(1500)")
    assert proc.returncode == 0 and len(json.loads(proc.stdout)) == 1500 and "note" not in proc.stderr
    proc = cli(root, "sql", "--json", "--limit", "10", "SELECT * FROM range(1500)")
    assert len(json.loads(proc.stdout)) == 10 and "10 rows shown (--limit 10)" in proc.stderr
    proc = cli(root, "sql", "--json", "--limit", "0", "SELECT * FROM range(3)")
    assert json.loads(proc.stdout) == [] and "--limit 0" in proc.stderr
    # the table: at most 1,000 rows, and says how many there were
    proc = cli(root, "sql", "SELECT * FROM range(1500)")
    assert proc.returncode == 0 and "1,000 of 1,500 rows shown" in proc.stderr
    assert " 999 " in proc.stdout and " 1000 " not in proc.stdout
    proc = cli(root, "sql", "SELECT * FROM range(5)")
    assert proc.returncode == 0 and "note" not in proc.stderr
    # a negative limit is a usage error, not a traceback
    proc = cli(root, "sql", "--limit", "-5", "SELECT 1")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and "--limit" in proc.stderr


def test_sql_accepts_pivot(local_projects):
    with Lakehouse.open(local_projects.make()) as lh:
        with write(lh.con, "seed"):
            lh.con.execute("CREATE TABLE bronze.t AS SELECT range AS i, range % 3 AS c FROM range(30)")
        expected = [(135, 145, 155)]
        assert lh.sql("PIVOT bronze.t ON c USING sum(i)").rows == expected
        assert lh.sql("SELECT * FROM (PIVOT bronze.t ON c USING sum(i)) p").rows == expected
        assert lh.sql("PIVOT bronze.t ON c IN (0, 1, 2) USING sum(i)").rows == expected
        for query in ("PIVOT (SELECT * FROM duckdb_databases) ON database_name USING count(*)",
                      "PIVOT bronze.t ON c USING sum(i); SELECT 1",
                      "CREATE TYPE e AS ENUM ('a'); PIVOT bronze.t ON c USING sum(i)"):
            with pytest.raises(SqlError):
                lh.sql(query)


def test_sql_refuses_what_the_time_limit_cannot_stop(local_projects):
    """Planning nested subqueries, checking megabytes of SQL, huge limits: refused up front, never a hang."""
    root = local_projects.make()
    nested = "SELECT " + "(SELECT " * 28 + "1" + ")" * 28  # planning this takes minutes and ignores interrupt()
    with Lakehouse.open(root) as lh:
        lh.current_snapshot()  # the lake exists
        start = time.monotonic()
        with pytest.raises(SqlError, match="nests subqueries too deeply"):
            lh.sql(nested, timeout=1)
        wide = "SELECT count(*) FROM (VALUES " + ", ".join(f"({i})" for i in range(60_000)) + ") t(x)"
        with pytest.raises(SqlError, match="characters long"):
            lh.sql(wide, timeout=1)
        assert time.monotonic() - start < 60  # both are refused before anything is planned
        assert lh.sql("SELECT " + "(SELECT " * 6 + "1" + ")" * 6).rows == [(1,)]  # ordinary nesting works
        # counting the rows the table view does not show has its own small budget, not the whole time limit
        start = time.monotonic()
        result = lh.sql("SELECT * FROM range(10000000000)", limit=10, count_all=True, timeout=300)
        assert result.truncated and result.total is None and len(result.rows) == 10
        assert time.monotonic() - start < 120  # counting all 10**10 rows would take far longer
        with pytest.raises(SqlError, match="timeout must be"):
            lh.sql("SELECT 1", timeout=1e10)
        with pytest.raises(SqlError, match="limit must be at most"):
            lh.sql("SELECT 1", limit=10**20)
    for args in (["--timeout", "1e10"], ["--timeout", "inf"], ["--limit", "99999999999999999999", "--json"]):
        proc = cli(root, "sql", *args, "SELECT 42")
        assert proc.returncode == 2 and "Traceback" not in proc.stderr and "Exception" not in proc.stderr, (args, proc)
