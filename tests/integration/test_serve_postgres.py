"""Publishing gold marts to a real PostgreSQL serving database: equality, keys, atomic swaps."""

from __future__ import annotations

import threading
from typing import Any

import psycopg
import pytest

from airduck.errors import ConfigError, ServeError
from airduck.lake.commit import write
from airduck.lake.connection import open_lake
from airduck.project import load_project
from airduck.serve import publish_postgres
from tests.support.lake import lake_rows

CUSTOMERS_SQL = """
    CREATE OR REPLACE TABLE gold.customer_revenue AS
    SELECT i AS customer_id,
           CASE WHEN i % 7 = 0 THEN NULL ELSE 'customer ' || i END AS name,
           ['Paris', 'Berlin', 'Oslo'][i % 3 + 1] AS city,
           CAST(i * 3.25 AS DECIMAL(12, 2)) AS revenue,
           i / 7.0 AS ratio,
           DATE '2024-01-01' + CAST(i % 365 AS INTEGER) AS first_order,
           TIMESTAMPTZ '2024-01-01 00:00:00+00' + INTERVAL (i) MINUTE AS updated_at,
           ['tag' || (i % 4), 'x'] AS tags,
           {'score': CAST(i % 10 AS INTEGER), 'label': 'l' || i} AS attrs,
           ('00000000-0000-0000-0000-' || lpad(CAST(i AS VARCHAR), 12, '0'))::UUID AS uid
    FROM range(1, {n} + 1) t(i)
"""


def make_project(local_projects, pg_database, *, n: int = 500, tables: Any = None, **pg_opts: Any):
    serving = pg_database()
    tables = tables or [
        {"table": "gold.customer_revenue", "primary_key": ["customer_id"], "indexes": [["city"], ["city", "name"]]},
        "gold.city_revenue",
    ]
    root = local_projects.make({"serve": {"postgres": {"dsn": serving, "schema": "marts", "tables": tables,
                                                       **pg_opts}}})
    project = load_project(root)
    seed_gold(project, n)
    return project, serving


def seed_gold(project, n: int) -> None:
    con = open_lake(project)
    try:
        with write(con, f"seed gold ({n})"):
            con.execute(CUSTOMERS_SQL.replace("{n}", str(int(n))))
            con.execute("""CREATE OR REPLACE TABLE gold.city_revenue AS
                SELECT city, count(*) AS customers, sum(revenue) AS revenue FROM gold.customer_revenue GROUP BY city""")
    finally:
        con.close()


def publish(project, run_id: str = "r1"):
    con = open_lake(project)
    try:
        return publish_postgres(con, project, run_id=run_id)
    finally:
        con.close()


def pg_rows(dsn: str, table: str) -> list[tuple]:
    with psycopg.connect(dsn) as conn:
        return sorted(conn.execute(f"SELECT * FROM {table}").fetchall(), key=repr)


def pg_count(dsn: str, table: str) -> int:
    with psycopg.connect(dsn) as conn:
        return conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]


def pg_tables(dsn: str) -> set[str]:
    with psycopg.connect(dsn) as conn:
        return {r[0] for r in conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'marts'").fetchall()}


def test_published_tables_equal_gold_with_keys_and_indexes(local_projects, pg_database):
    project, dsn = make_project(local_projects, pg_database)
    steps = publish(project)

    assert [(s.layer, s.table, s.status) for s in steps] == [
        ("serve", "gold.customer_revenue", "ok"), ("serve", "gold.city_revenue", "ok")]
    assert steps[0].rows_out == 500 and steps[0].details["relation"] == "marts.customer_revenue"
    # rows fetched with psycopg equal the lake's, value by value (decimals, dates, tz, lists, structs, uuids)
    assert pg_rows(dsn, "marts.customer_revenue") == lake_rows(project, "gold.customer_revenue")
    assert pg_rows(dsn, "marts.city_revenue") == lake_rows(project, "gold.city_revenue")
    with psycopg.connect(dsn) as conn:
        pk = conn.execute("""
            SELECT c.conname, array_agg(a.attname ORDER BY a.attnum)
            FROM pg_constraint c JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = ANY (c.conkey)
            WHERE c.contype = 'p' AND c.conrelid = 'marts.customer_revenue'::regclass GROUP BY c.conname""").fetchall()
        indexes = dict(conn.execute(
            "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'marts' AND tablename = 'customer_revenue'"
        ).fetchall())
        nullable = dict(conn.execute("""SELECT column_name, data_type FROM information_schema.columns
            WHERE table_schema = 'marts' AND table_name = 'customer_revenue'""").fetchall())
    assert pk == [("customer_revenue_pkey", ["customer_id"])]
    assert set(indexes) == {"customer_revenue_pkey", "customer_revenue_city_idx", "customer_revenue_city_name_idx"}
    assert "(city, name)" in indexes["customer_revenue_city_name_idx"]
    assert nullable["revenue"] == "numeric" and nullable["updated_at"] == "timestamp with time zone"
    assert pg_tables(dsn) == {"customer_revenue", "city_revenue"}  # no staging table left


def test_second_publish_replaces_the_tables(local_projects, pg_database):
    project, dsn = make_project(local_projects, pg_database, n=300)
    publish(project, "r1")
    assert pg_count(dsn, "marts.customer_revenue") == 300
    seed_gold(project, 120)
    steps = publish(project, "r2")
    assert steps[0].rows_out == 120
    assert pg_rows(dsn, "marts.customer_revenue") == lake_rows(project, "gold.customer_revenue")
    assert pg_rows(dsn, "marts.city_revenue") == lake_rows(project, "gold.city_revenue")
    with psycopg.connect(dsn) as conn:
        names = {r[0] for r in conn.execute(
            "SELECT indexname FROM pg_indexes WHERE schemaname = 'marts' AND tablename = 'customer_revenue'")}
    assert names == {"customer_revenue_pkey", "customer_revenue_city_idx", "customer_revenue_city_name_idx"}
    assert pg_tables(dsn) == {"customer_revenue", "city_revenue"}


def test_concurrent_reader_sees_old_or_new_full_table_only(local_projects, pg_database):
    sizes = (20_000, 35_000)
    project, dsn = make_project(local_projects, pg_database, n=sizes[0],
                                tables=[{"table": "gold.customer_revenue", "primary_key": ["customer_id"]}])
    publish(project, "r0")
    seen: list[int] = []
    errors: list[str] = []
    stop = threading.Event()

    def reader() -> None:
        with psycopg.connect(dsn, autocommit=True) as conn:
            for _ in range(200_000):  # bounded
                if stop.is_set():
                    return
                try:
                    seen.append(conn.execute("SELECT count(*) FROM marts.customer_revenue").fetchone()[0])
                except psycopg.Error as exc:
                    errors.append(str(exc))

    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    try:
        for i in range(1, 5):
            seed_gold(project, sizes[i % 2])
            publish(project, f"r{i}")
    finally:
        stop.set()
        thread.join(timeout=60)
    assert not thread.is_alive()
    assert errors == []
    assert len(seen) > 10
    assert set(seen) <= set(sizes)  # never 0, never a partial count
    assert pg_count(dsn, "marts.customer_revenue") == sizes[0]


def test_swap_waits_for_readers_then_gives_up_and_keeps_the_old_table(local_projects, pg_database):
    project, dsn = make_project(local_projects, pg_database, n=50, lock_timeout_ms=100, swap_attempts=2,
                                tables=["gold.customer_revenue"])
    publish(project, "r1")
    seed_gold(project, 80)
    with psycopg.connect(dsn) as holder:  # a long reader transaction holds its lock
        holder.execute("SELECT count(*) FROM marts.customer_revenue").fetchone()
        with pytest.raises(ServeError, match="readers held it locked"):
            publish(project, "r2")
        assert holder.execute("SELECT count(*) FROM marts.customer_revenue").fetchone()[0] == 50
    # the reader is gone: the next publish goes through
    publish(project, "r3")
    assert pg_count(dsn, "marts.customer_revenue") == 80
    assert pg_tables(dsn) == {"customer_revenue"}


def test_checksum_mismatch_raises_and_keeps_the_old_table(local_projects, pg_database):
    project, dsn = make_project(local_projects, pg_database, n=40, tables=["gold.customer_revenue"])
    publish(project, "r1")
    before = pg_rows(dsn, "marts.customer_revenue")
    # a trigger on every new table in the serving database alters one row while it is loaded
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("""
            CREATE FUNCTION tamper_row() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN IF NEW.customer_id = 3 THEN NEW.revenue := NEW.revenue + 1; END IF; RETURN NEW; END $$""")
        conn.execute("""
            CREATE FUNCTION add_tamper() RETURNS event_trigger LANGUAGE plpgsql AS $$
            DECLARE obj record;
            BEGIN
              FOR obj IN SELECT * FROM pg_event_trigger_ddl_commands() WHERE command_tag = 'CREATE TABLE' LOOP
                EXECUTE format('CREATE TRIGGER tamper BEFORE INSERT ON %s FOR EACH ROW EXECUTE FUNCTION tamper_row()',
                               obj.object_identity);
              END LOOP;
            END $$""")
        conn.execute("CREATE EVENT TRIGGER add_tamper ON ddl_command_end WHEN TAG IN ('CREATE TABLE') "
                     "EXECUTE FUNCTION add_tamper()")
    seed_gold(project, 60)
    with pytest.raises(ServeError, match="does not match the lake") as info:
        publish(project, "r2")
    assert "gold.customer_revenue" in str(info.value)
    assert pg_rows(dsn, "marts.customer_revenue") == before
    assert pg_tables(dsn) == {"customer_revenue"}


def test_bad_primary_key_config_and_duplicate_keys(local_projects, pg_database):
    project, dsn = make_project(local_projects, pg_database, n=30,
                                tables=[{"table": "gold.city_revenue", "primary_key": ["no_such_column"]}])
    with pytest.raises(ConfigError, match="no_such_column"):
        publish(project)
    assert pg_tables(dsn) == set()

    project2, dsn2 = make_project(local_projects, pg_database, n=30,
                                  tables=[{"table": "gold.customer_revenue", "primary_key": ["city"]}])
    with pytest.raises(ServeError, match="primary key"):
        publish(project2)
    assert pg_tables(dsn2) == set()


def test_dsn_password_never_in_errors(local_projects, pg_database):
    pg_database()  # a server that is up; the database below does not exist
    dsn = "postgresql://postgres:sekret-pw-123@127.0.0.1:5432/airduck_no_such_db"
    root = local_projects.make({"serve": {"postgres": {"dsn": dsn, "tables": ["gold.customer_revenue"]}}})
    project = load_project(root)
    seed_gold(project, 5)
    with pytest.raises(ServeError) as info:
        publish(project)
    text = str(info.value)
    assert "sekret-pw-123" not in text and "airduck_no_such_db" in text
