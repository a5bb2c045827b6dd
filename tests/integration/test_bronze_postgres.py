"""Bronze `postgres` sources against the real local PostgreSQL: full snapshots, cursor increments, errors."""

from __future__ import annotations

import psycopg
import pytest

from airduck.errors import SourceError
from tests.integration.test_bronze_files import bronze_run, ingest, query


def _source_db(pg_database) -> str:
    dsn = pg_database()
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE TYPE size AS ENUM ('small', 'large')")
        conn.execute(
            "CREATE TABLE companies (id BIGINT PRIMARY KEY, name TEXT, revenue NUMERIC(12, 2), "
            "tags TEXT[], size size, updated_at TIMESTAMPTZ NOT NULL)"
        )
        conn.execute(
            "INSERT INTO companies SELECT i, 'co' || i, i * 10.5, ARRAY['t' || i], "
            "CASE WHEN i % 2 = 0 THEN 'large' ELSE 'small' END::size, "
            "TIMESTAMPTZ '2024-01-01 00:00:00+00' + i * INTERVAL '1 minute' FROM generate_series(1, 50) AS i"
        )
    return dsn


def test_incremental_by_cursor_reads_only_changed_and_new_rows(local_projects, pg_database) -> None:
    dsn = _source_db(pg_database)
    root = local_projects.make({"sources": {
        "companies": {"type": "postgres", "dsn": dsn, "table": "public.companies", "cursor": "updated_at"},
    }})
    first = ingest(root, "companies", "run-1", 1)
    assert (first.rows_out, first.status) == (50, "ok")
    assert first.details["watermark"].startswith("2024-01-01 00:50:00")
    rows = query(root, "SELECT count(*), sum(revenue), min(_row_number), max(_row_number), any_value(_source_file), "
                       "count(_landing_key) FROM bronze.companies")
    assert rows == [(50, pytest.approx(13387.5), 1, 50, "postgres:public.companies", 0)]
    types = dict(query(root, "SELECT column_name, data_type FROM information_schema.columns "
                             "WHERE table_schema = 'bronze' AND table_name = 'companies'"))
    assert types["revenue"] == "DECIMAL(12,2)" and types["tags"] == "VARCHAR[]"
    assert types["size"] == "VARCHAR"  # DuckLake has no ENUM: stored as text
    assert query(root, "SELECT size, count(*) FROM bronze.companies GROUP BY 1 ORDER BY 1") == [("large", 25), ("small", 25)]
    assert types["updated_at"] == "TIMESTAMP WITH TIME ZONE"

    assert ingest(root, "companies", "run-2", 2).rows_out == 0  # nothing changed

    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("UPDATE companies SET name = name || '-v2', updated_at = '2024-02-01 00:00:00+00' WHERE id IN (3, 7)")
        conn.execute("INSERT INTO companies VALUES (51, 'new', 1, '{}', 'small', '2024-02-02 00:00:00+00')")
    third = ingest(root, "companies", "run-3", 3)
    assert third.rows_out == 3
    assert query(root, "SELECT id, name FROM bronze.companies WHERE _load_id = 'run-3' ORDER BY id") == [
        (3, "co3-v2"), (7, "co7-v2"), (51, "new")]
    # the cursor state is appended (the latest row wins: concurrent steps of other sources insert into the table)
    assert query(root, "SELECT source, cursor_column, value, load_id FROM airduck.watermarks QUALIFY row_number() "
                       "OVER (PARTITION BY source, cursor_column ORDER BY updated_at DESC) = 1") == [
        ("companies", "updated_at", third.details["watermark"], "run-3")]
    assert third.details["watermark"].startswith("2024-02-02 00:00:00")


def test_full_snapshot_each_run_and_query_sources(local_projects, pg_database) -> None:
    dsn = _source_db(pg_database)
    root = local_projects.make({"sources": {
        "snap": {"type": "postgres", "dsn": dsn, "table": "companies"},
        "big": {"type": "postgres", "dsn": dsn, "query": "SELECT id, name FROM companies WHERE id > 40",
                "cursor": "id"},
    }})
    for run in (1, 2):
        with bronze_run(root, f"run-{run}", run) as ctx:
            from airduck.bronze import ingest_source

            snap = ingest_source(ctx, "snap", ctx.project.config.sources["snap"])
            big = ingest_source(ctx, "big", ctx.project.config.sources["big"])
        assert snap.rows_out == 50
        assert big.rows_out == (10 if run == 1 else 0)
    assert query(root, "SELECT _load_id, count(*) FROM bronze.snap GROUP BY 1 ORDER BY 1") == [("run-1", 50), ("run-2", 50)]
    (src,) = query(root, "SELECT DISTINCT _source_file FROM bronze.big")
    assert src[0].startswith("postgres:query:")
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("INSERT INTO companies VALUES (60, 'sixty', 1, '{}', NULL, now())")
    assert ingest(root, "big", "run-3", 3).rows_out == 1
    assert query(root, "SELECT id FROM bronze.big WHERE _load_id = 'run-3'") == [(60,)]


def test_rolled_back_run_keeps_the_old_watermark(local_projects, pg_database) -> None:
    dsn = _source_db(pg_database)
    root = local_projects.make({"sources": {"c": {"type": "postgres", "dsn": dsn, "table": "companies", "cursor": "id"}}})
    with bronze_run(root, "run-1", 1, commit=False) as ctx:
        from airduck.bronze import ingest_source

        assert ingest_source(ctx, "c", ctx.project.config.sources["c"]).rows_out == 50
    assert ingest(root, "c", "run-2", 2).rows_out == 50  # the rolled-back read is read again
    assert query(root, "SELECT value FROM airduck.watermarks") == [("50",)]


def test_unreachable_or_wrong_source_is_a_source_error_without_the_password(local_projects, pg_database) -> None:
    bad = "postgresql://postgres:s3cretPass@127.0.0.1:1/nowhere"
    root = local_projects.make({"sources": {"down": {"type": "postgres", "dsn": bad, "table": "t"}}})
    with pytest.raises(SourceError) as info:
        ingest(root, "down", "run-1")
    text = str(info.value)
    assert "source down" in text and "s3cretPass" not in text

    dsn = pg_database()
    root2 = local_projects.make({"sources": {"missing": {"type": "postgres", "dsn": dsn, "table": "public.nope"}}})
    with pytest.raises(SourceError, match=r"source missing: cannot read table public\.nope"):
        ingest(root2, "missing", "run-1")
