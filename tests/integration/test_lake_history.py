"""Time travel, rollback, tags and maintenance on every lake combination (SQLite+local, PG+local, PG+S3)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from airduck.errors import NotFound
from airduck.lake.commit import write
from airduck.lakehouse import Lakehouse


def checksum(lh: Lakehouse, table: str, at: int | None = None) -> tuple[int, int]:
    clause = f" AT (VERSION => {int(at)})" if at is not None else ""
    return lh.con.execute(f"SELECT count(*), coalesce(sum(hash(t)), 0) FROM (SELECT * FROM {table}{clause}) AS t").fetchone()


def fill(lh: Lakehouse) -> dict[str, int]:
    """Build a history: create, three appends, an update and a delete. Returns snapshot ids by name."""
    con = lh.con
    snaps = {}
    with write(con, "create orders"):
        con.execute("CREATE TABLE silver.orders (id BIGINT, amount DECIMAL(10,2), city VARCHAR)")
    for i in range(3):
        with write(con, f"append {i}"):
            con.execute(
                "INSERT INTO silver.orders SELECT range + ?, (range % 97) * 1.5, 'city' || (range % 7) FROM range(2000)",
                [i * 2000],
            )
        snaps[f"append{i}"] = lh.current_snapshot()
    with write(con, "update"):
        con.execute("UPDATE silver.orders SET amount = amount + 1 WHERE id % 10 = 0")
    snaps["update"] = lh.current_snapshot()
    with write(con, "delete"):
        con.execute("DELETE FROM silver.orders WHERE id % 3 = 0")
    snaps["delete"] = lh.current_snapshot()
    return snaps


def test_time_travel_by_version_and_timestamp(projects):
    root = projects.make()
    with Lakehouse.open(root) as lh:
        snaps = fill(lh)
        assert lh.read("silver.orders", at=snaps["append0"]).aggregate("count(*)").fetchone()[0] == 2000
        assert lh.read("silver.orders", at=snaps["append2"]).aggregate("count(*)").fetchone()[0] == 6000
        now_count = lh.describe("silver.orders").row_count
        assert now_count == 6000 - len([i for i in range(6000) if i % 3 == 0])
        # by time: the snapshot's own commit time reads that state
        t = next(s.time for s in lh.snapshots() if s.snapshot_id == snaps["append1"])
        assert lh.read("silver.orders", at_time=t.isoformat()).aggregate("count(*)").fetchone()[0] == 4000
        cols, rows = lh.head("silver.orders", 5, at=snaps["append0"])
        assert cols == ["id", "amount", "city"] and len(rows) == 5
        # commit messages are kept per table
        messages = [s.message for s in lh.snapshots("silver.orders")]
        assert messages[:5] == ["create orders", "append 0", "append 1", "append 2", "update"]
        snap = lh.snapshots("silver.orders")[1]
        assert snap.author and snap.author.startswith("airduck ")
        assert snap.extra_info and snap.extra_info["version"]


def test_rollback_is_a_new_snapshot_and_keeps_history(projects):
    root = projects.make()
    with Lakehouse.open(root) as lh:
        snaps = fill(lh)
        before = checksum(lh, "silver.orders", snaps["append1"])
        latest = checksum(lh, "silver.orders")
        new = lh.rollback("silver.orders", snaps["append1"])
        assert new > snaps["delete"]
        assert checksum(lh, "silver.orders") == before
        # history is kept: the pre-rollback state is still readable
        assert checksum(lh, "silver.orders", snaps["delete"]) == latest
        assert lh.snapshots("silver.orders")[-1].message == f"rollback silver.orders to snapshot {snaps['append1']}"
        # and the rollback itself can be undone
        lh.rollback("silver.orders", snaps["delete"])
        assert checksum(lh, "silver.orders") == latest
        with pytest.raises(NotFound):
            lh.rollback("silver.orders", 99999)


def test_tags_survive_expiry_and_maintenance_keeps_rows(projects):
    root = projects.make({"lake": {"maintenance": {"expire_older_than_days": 0, "cleanup_older_than_days": 0,
                                                   "target_file_size": "10MB"}}})
    with Lakehouse.open(root) as lh:
        snaps = fill(lh)
        lh.tag("release-1", snaps["append1"], note="first release")
        tagged_sum = checksum(lh, "silver.orders", snaps["append1"])
        with write(lh.con, "more"):
            lh.con.execute("INSERT INTO silver.orders SELECT range + 10000, 1, 'x' FROM range(10)")
        with write(lh.con, "other table"):
            lh.con.execute("CREATE TABLE bronze.events AS SELECT range AS id, range * 2 AS v FROM range(500)")
        current = {t: checksum(lh, t) for t in ("silver.orders", "bronze.events")}
        files_before = lh.describe("silver.orders").file_count

        plan = {s.name: s for s in lh.maintain(dry_run=True)}
        assert set(plan) == {"flush", "merge", "rewrite", "expire", "cleanup"}
        assert str(snaps["append0"]) in plan["expire"].items
        assert str(snaps["append1"]) not in plan["expire"].items  # tagged
        # a dry run changes nothing
        assert lh.read("silver.orders", at=snaps["append0"]).aggregate("count(*)").fetchone()[0] == 2000

        later = datetime.now(UTC) + timedelta(seconds=1)
        lh.maintain(now=later)
        for table, value in current.items():
            assert checksum(lh, table) == value, table
        assert lh.describe("silver.orders").file_count <= files_before
        # tagged snapshot still readable after expiry and cleanup, by id and by tag name
        assert checksum(lh, "silver.orders", snaps["append1"]) == tagged_sum
        assert lh.read("silver.orders", at="release-1").aggregate("count(*)").fetchone()[0] == 4000
        # untagged old snapshots are gone
        with pytest.raises(NotFound):
            lh.read("silver.orders", at=snaps["append0"]).fetchall()
        assert [t.name for t in lh.tags()] == ["release-1"]
        # a second maintenance finds nothing left to expire
        again = {s.name: s for s in lh.maintain(dry_run=True, now=later)}
        assert again["expire"].items == []


def test_tag_rules(local_projects):
    root = local_projects.make()
    with Lakehouse.open(root) as lh:
        snaps = fill(lh)
        t = lh.tag("v1")
        assert t.snapshot_id == snaps["delete"]
        with pytest.raises(Exception, match="already points"):
            lh.tag("v1", snaps["append0"])
        moved = lh.tag("v1", snaps["append0"], force=True)
        assert moved.snapshot_id == snaps["append0"]
        with pytest.raises(Exception, match="letters"):
            lh.tag("bad name; drop")
        lh.untag("v1")
        assert lh.tags() == []


def test_undo_snapshot_restores_every_table_it_touched(projects):
    from airduck.lake.history import undo_snapshot

    root = projects.make()
    with Lakehouse.open(root) as lh:
        con = lh.con
        with write(con, "base"):
            con.execute("CREATE TABLE silver.t AS SELECT range AS i, range * 2 AS v FROM range(3000)")
            con.execute("CREATE TABLE bronze.b AS SELECT range AS i FROM range(100)")
            con.execute("CREATE TABLE silver.untouched AS SELECT range AS i FROM range(10)")
            con.execute("CREATE TABLE silver.replaced AS SELECT range AS i FROM range(20)")
            con.execute("CREATE TABLE silver.dropped AS SELECT range AS i FROM range(30)")
        base = lh.current_snapshot()
        names = ("silver.t", "bronze.b", "silver.untouched", "silver.replaced", "silver.dropped")
        before = {t: checksum(lh, t) for t in names}
        with write(con, "a run"):
            con.execute("INSERT INTO silver.t SELECT range + 3000, 0 FROM range(500)")
            con.execute("UPDATE silver.t SET v = -1 WHERE i < 100")
            con.execute("DELETE FROM silver.t WHERE i BETWEEN 200 AND 260")
            con.execute("INSERT INTO bronze.b SELECT range FROM range(10)")
            con.execute("CREATE TABLE silver.created AS SELECT 1 AS x")
            con.execute("CREATE OR REPLACE TABLE silver.replaced AS SELECT range AS i FROM range(5)")
            con.execute("DROP TABLE silver.dropped")
        run = lh.current_snapshot()
        with write(con, "undo"):
            reverted = undo_snapshot(con, run)
        assert sorted(reverted) == ["bronze.b", "silver.created", "silver.dropped", "silver.replaced", "silver.t"]
        assert {t: checksum(lh, t) for t in before} == before
        assert "silver.created" not in {t.qualified for t in lh.tables()}
        # history is kept: the undone state is still readable
        assert checksum(lh, "silver.t", run)[0] == 3000 + 500 - 61
        assert base < run < lh.current_snapshot()


def test_maintenance_reports_what_it_actually_did(local_projects):
    root = local_projects.make({"lake": {"data_inlining_row_limit": 10}})
    with Lakehouse.open(root) as lh:
        con = lh.con
        with write(con, "create"):
            con.execute("CREATE TABLE silver.small (id BIGINT)")
            con.execute("CREATE TABLE silver.kept (id BIGINT)")
        for i in range(3):  # three small files each
            with write(con, f"append {i}"):
                con.execute("INSERT INTO silver.small SELECT range + ? FROM range(100)", [i * 100])
                con.execute("INSERT INTO silver.kept SELECT range + ? FROM range(100)", [i * 100])
        with write(con, "deletes: DuckLake does not merge files that have deletes"):
            con.execute("DELETE FROM silver.kept WHERE id % 2 = 0")
        with write(con, "a few inlined rows"):
            con.execute("INSERT INTO silver.small VALUES (1000), (1001)")
        plan = {s.name: s for s in lh.maintain(dry_run=True)}
        assert plan["merge"].items == ["silver.small: 3 small files"]  # not silver.kept: it cannot be merged
        done = {s.name: s for s in lh.maintain(steps=("flush", "merge", "rewrite"))}
        assert done["flush"].done.startswith("flushed ")
        assert "silver.small: 2 rows written to Parquet" in done["flush"].items
        assert done["merge"].done == "merged the files of 1 table(s)"
        assert done["merge"].items == ["silver.small: 4 -> 1 files"]
        assert done["rewrite"].items == ["silver.kept: 3 -> 0 delete files"]  # half of its rows were deleted
        again = {s.name: s for s in lh.maintain(steps=("flush", "merge"))}
        assert (again["flush"].done, again["flush"].items) == ("nothing to flush", [])
        assert (again["merge"].done, again["merge"].items) == ("nothing was merged", [])
        assert [lh.con.execute(f"SELECT count(*) FROM silver.{t}").fetchone()[0] for t in ("small", "kept")] == [302, 150]


@pytest.mark.parametrize("lake_combo", ["sqlite-local", "pg-local"])
def test_after_a_rollback_of_silver_or_bronze_the_next_run_brings_everything_up_to_date(projects):
    from tests.integration.test_pipeline_runs import count, orders_config, write_orders

    config = orders_config()
    config["silver"]["orders_log"] = {"from": "silver.orders", "mode": "append",
                                      "columns": {"order_id": {"type": "BIGINT"}, "amount": {"type": "DECIMAL(12,2)"}}}
    root = projects.make(config)
    write_orders(root, "day1.csv", 0, 300, negative_every=50)
    tables = ("bronze.orders", "silver.orders", "silver.orders__quarantine", "silver.orders_log")
    with Lakehouse.open(root) as lh:
        assert lh.run().ok
        first = lh.current_snapshot()
        assert [count(lh, t) for t in tables] == [300, 294, 6, 294]
        write_orders(root, "day2.csv", 300, 200, negative_every=50)
        assert lh.run().ok
        full = [500, 490, 10, 490]
        assert [count(lh, t) for t in tables] == full
        # silver rolled back: its watermark goes back with it, so the next run catches up from bronze; the table
        # that reads it is rebuilt (not appended to twice)
        lh.rollback("silver.orders", first)
        assert [count(lh, t) for t in tables] == [500, 294, 6, 490]
        assert lh.run().ok
        assert [count(lh, t) for t in tables] == full
        assert lh.con.execute("SELECT count(DISTINCT order_id) FROM silver.orders_log").fetchone()[0] == 490
        # bronze rolled back: its files state goes back with it, so the next run ingests day2 again (once)
        lh.rollback("bronze.orders", first)
        assert count(lh, "bronze.orders") == 300
        assert count(lh, "airduck.bronze_files") == 1
        assert lh.run().ok
        assert [count(lh, t) for t in tables] == full
        assert lh.con.execute("SELECT count(DISTINCT order_id) FROM bronze.orders").fetchone()[0] == 500
        assert lh.con.execute("SELECT count(DISTINCT order_id) FROM silver.orders_log").fetchone()[0] == 490
        # and a run after that has nothing to do
        snapshot = lh.current_snapshot()
        assert lh.run().ok
        assert lh.current_snapshot() == snapshot


def test_maintenance_on_a_duckdb_file_catalog_needs_no_branches(local_projects):
    """Maintenance asks the branch registry which files and snapshots other branches need; a DuckDB-file catalog
    cannot have branches, so it has none to ask (it raised "branches need a SQLite or PostgreSQL catalog")."""
    root = local_projects.make({"lake": {"catalog": ".airduck/catalog.duckdb", "data_inlining_row_limit": 0}})
    with Lakehouse.open(root) as lh:
        with write(lh.con, "create"):
            lh.con.execute("CREATE TABLE silver.t AS SELECT range AS id FROM range(10)")
        for i in range(2):
            with write(lh.con, f"append {i}"):
                lh.con.execute("INSERT INTO silver.t SELECT range + ? FROM range(10)", [10 + i * 10])
        done = {s.name: s for s in lh.maintain()}
        assert done["merge"].items == ["silver.t: 3 -> 1 files"]
        assert lh.branches() == []
        assert lh.con.execute("SELECT count(*), sum(id) FROM silver.t").fetchone() == (30, sum(range(30)))
