"""`airduck branch create NAME --from TAG|SNAPSHOT|BRANCH@REF` (docs/branches.md, "Forking from a past snapshot"),
on the three lake combinations: the branch reads back exactly the lake at that snapshot (checksums equal to time
travel), a run on it works, ids it makes never collide with main's, a table main changed after the fork is a
conflict and one only the branch changed merges, main's maintenance keeps the files the branch reads, and an unknown
or expired snapshot is refused."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from airduck.errors import NotFound
from airduck.lake.branches import BranchError, MergeConflict
from airduck.lakehouse import Lakehouse
from tests.integration.test_branches import USER_TABLES, sums, two_tables_config
from tests.integration.test_pipeline_runs import cli, orders_config, write_orders

META = "__ducklake_metadata_lake"
RETURNS = ("bronze.returns", "silver.returns")


def file_ids(lh: Lakehouse, after: int = -1) -> set[int]:
    """The ids of the data and delete files the catalog lists that were written after snapshot `after`."""
    return {r[0] for r in lh.con.execute(
        f"SELECT data_file_id FROM {META}.ducklake_data_file WHERE begin_snapshot > ? UNION ALL "
        f"SELECT delete_file_id FROM {META}.ducklake_delete_file WHERE begin_snapshot > ?", [after, after]).fetchall()}


def write_returns(root, name: str, start: int, n: int) -> None:
    write_orders(root, "_tmp.csv", start, n)
    folder = root / "data" / "returns"
    folder.mkdir(parents=True, exist_ok=True)
    (root / "data" / "orders" / "_tmp.csv").rename(folder / name)


def test_fork_from_a_tag_is_the_lake_at_the_tag_and_merges_what_only_it_changed(projects):
    root = projects.make(two_tables_config())
    write_orders(root, "day1.csv", 0, 100)
    write_returns(root, "r1.csv", 0, 100)
    with Lakehouse.open(root) as lh:
        assert lh.run().ok
        lh.tag("v1")
        at = lh.current_snapshot() - 1  # the tag is a commit of its own, after the snapshot it names
        assert [t.snapshot_id for t in lh.tags()] == [at]
        tagged = sums(lh, at=at, tables=USER_TABLES + RETURNS)
        tagged_max = lh.con.execute("SELECT max(order_id) FROM silver.orders").fetchone()[0]
    write_orders(root, "day2.csv", 100, 50)
    with Lakehouse.open(root) as lh:
        assert lh.run(["+silver.orders"]).ok  # main changes orders only
        main_sums, main_head = sums(lh, tables=USER_TABLES + RETURNS), lh.current_snapshot()
        main_files = file_ids(lh)
        b = lh.create_branch("old", "v1")
        assert (b.base, b.base_snapshot, b.fork_snapshot) == ("main", at, at)
        assert lh.current_snapshot() == main_head
    with Lakehouse.open(root, branch="old") as old:
        assert old.current_snapshot() == at
        assert [s.snapshot_id for s in old.snapshots()][-1] == at
        assert sums(old, tables=USER_TABLES + RETURNS) == tagged  # exactly the lake at the tag
        # MIN/MAX are not answered from the head's (wider) statistics
        assert old.con.execute("SELECT max(order_id), count(*) FROM silver.orders").fetchone() == (tagged_max, 100)
        assert old.tags() == []  # v1 was made after the snapshot it names
        # the branch changes returns only: one row updated, 50 new
        write_returns(root, "r2.csv", 50, 100)
        text = (root / "data" / "returns" / "r2.csv").read_text()
        (root / "data" / "returns" / "r2.csv").write_text(text.replace(",60.25,", ",1.5,"))
        assert old.run(["+silver.returns"]).ok
        branch_returns = sums(old, tables=RETURNS)
        assert branch_returns["silver.returns"][0] == 150
        new_ids = file_ids(old, after=at)
        assert new_ids and not new_ids & main_files  # file ids never collide with the ones main made after the fork
    with Lakehouse.open(root) as lh:
        d = lh.diff("old")
        by = {t.table: t for t in d.tables}
        assert (by["silver.returns"].inserted, by["silver.returns"].updated, by["silver.returns"].deleted) == (50, 1, 0)
        assert "silver.orders" not in by and not {"silver.orders", "silver.returns"} & set(d.conflicts)
        result = lh.merge("old")
        assert result.snapshot_id == main_head + 1
        now = sums(lh, tables=USER_TABLES + RETURNS)
        assert {t: now[t] for t in RETURNS} == branch_returns  # the branch's change
        assert {t: now[t] for t in USER_TABLES} == {t: main_sums[t] for t in USER_TABLES}  # main's change kept
        assert lh.con.execute("SELECT count(DISTINCT rowid) FROM silver.returns").fetchone()[0] == 150
        assert sums(lh, at=main_head) == {t: main_sums[t] for t in USER_TABLES}
        again = lh.branches()[0]  # forked again, from the merge commit
        assert (again.name, again.base_snapshot) == ("old", result.snapshot_id)


def table_id(lh: Lakehouse, schema: str, name: str) -> int:
    return lh.con.execute(
        f"SELECT t.table_id FROM {META}.ducklake_table t JOIN {META}.ducklake_schema s USING (schema_id) "
        "WHERE s.schema_name = ? AND t.table_name = ? AND t.end_snapshot IS NULL", [schema, name]).fetchone()[0]


def next_row_id(lh: Lakehouse, table: int) -> int:
    return lh.con.execute(f"SELECT next_row_id FROM {META}.ducklake_table_stats WHERE table_id = ?",
                          [table]).fetchone()[0]


def test_fork_from_a_snapshot_conflicts_survives_maintenance_and_refusals(projects):
    config = {**orders_config(), "lake": {"maintenance": {"expire_older_than_days": 0, "cleanup_older_than_days": 0}}}
    root = projects.make(config)
    write_orders(root, "day1.csv", 0, 300)
    with Lakehouse.open(root) as lh:
        assert lh.run().ok
        at = lh.current_snapshot()
        then = sums(lh)
    write_orders(root, "day2.csv", 300, 40)
    with Lakehouse.open(root) as lh:
        assert lh.run(full_refresh=True).ok  # rewrites silver: its files at `at` are ended on main
        main_sums = sums(lh)
        b = lh.create_branch("past", str(at))
        with Lakehouse.open(root, branch="past") as past:
            silver_id = table_id(past, "silver", "orders")
        main_next = next_row_id(lh, silver_id)  # main's next row id of that table (it wrote rows after the fork)
        assert (b.base, b.fork_snapshot) == ("main", at)
    with Lakehouse.open(root, branch="past") as past:
        assert sums(past) == then
        write_orders(root, "day3.csv", 340, 10)
        assert past.run().ok  # reads day2 and day3: the same tables main changed since the fork
        past_sums = sums(past)
        assert past_sums["silver.orders"][0] == 350
        # row ids the branch made continue after the ones main made in the same table since the fork
        assert past.con.execute("SELECT min(rowid) FROM silver.orders WHERE order_id >= 300").fetchone()[0] >= main_next
    with Lakehouse.open(root) as lh:
        with pytest.raises(MergeConflict, match=r"silver\.orders"):
            lh.merge("past")
        assert sums(lh) == main_sums
        assert set(USER_TABLES) <= set(lh.diff("past").conflicts)
    with Lakehouse.open(root) as lh:
        # main expires every snapshot but its head and those since the branch's base `at` (a merge reads what main
        # changed since), and cleans up: the branch's files stay
        steps = {s.name: s for s in lh.maintain(steps=("expire", "cleanup"), now=datetime.now(UTC) + timedelta(days=30))}
        assert steps["expire"].done.startswith("expired") and steps["expire"].done != "expired 0 snapshot(s)"
        kept = [r[0] for r in lh.con.execute("SELECT snapshot_id FROM lake.snapshots() ORDER BY 1").fetchall()]
        assert kept == list(range(at, lh.current_snapshot() + 1))
        with pytest.raises(BranchError, match=f"snapshot {at - 1} of main: maintenance has expired it"):
            lh.create_branch("late", str(at - 1))
        with pytest.raises(BranchError, match="neither a branch, a tag nor a snapshot id of main"):
            lh.create_branch("late", "no-such-tag")
        with pytest.raises(BranchError, match="its last snapshot is"):
            lh.create_branch("late", "main@999999")
        assert [b.name for b in lh.branches()] == ["past"]  # nothing was created by the refusals
    with Lakehouse.open(root, branch="past") as past:
        assert sums(past) == past_sums
        assert sums(past, at=at) == then
    with Lakehouse.open(root) as lh:
        lh.delete_branch("past")
        assert sums(lh) == main_sums


def test_fork_of_a_branch_at_its_tag_and_the_cli(local_projects):
    root = local_projects.make(orders_config())
    write_orders(root, "day1.csv", 0, 30)
    with Lakehouse.open(root) as lh:
        assert lh.run().ok
        lh.create_branch("dev")
    with Lakehouse.open(root, branch="dev") as dev:
        write_orders(root, "day2.csv", 30, 5)
        assert dev.run().ok
        dev.tag("d1")
        d1, at_d1 = dev.current_snapshot() - 1, sums(dev)
        write_orders(root, "day3.csv", 35, 5)
        assert dev.run().ok
    p = cli(root, "branch", "create", "fix", "--from", "dev@d1", "--json")
    out, err = p.communicate(timeout=120)
    assert p.returncode == 0, err
    assert '"base": "dev"' in out and f'"fork_snapshot": {d1}' in out
    with Lakehouse.open(root, branch="fix") as fix:
        assert sums(fix) == at_d1
    with Lakehouse.open(root) as lh:
        assert lh.merge("fix", "dev").snapshot_id is None  # nothing changed on it: nothing to merge
    p = cli(root, "branch", "create", "bad", "--from", "dev@nope")
    _out, err = p.communicate(timeout=120)
    assert p.returncode == 1 and "neither a tag nor a snapshot id of dev" in err
    p = cli(root, "branch", "create", "--help")
    out, _ = p.communicate(timeout=60)
    assert "TAG" in out and "SNAPSHOT" in out and "@" in out


def cs(lh: Lakehouse, table: str) -> tuple[int, int]:
    return lh.con.execute(f"SELECT count(*), coalesce(sum(hash(columns(*))), 0) FROM {table}").fetchone()


def test_merge_refuses_what_main_changed_in_snapshots_it_has_since_expired(local_projects):
    """Main rebuilt a table after the fork (new row ids) and expired those snapshots: the branch's delete by row id
    would hit another row of main's table. The merge cannot tell what main changed, so every table is a conflict."""
    root = local_projects.make({"lake": {"maintenance": {"expire_older_than_days": 0, "cleanup_older_than_days": 0}}})
    with Lakehouse.open(root) as lh:
        lh.con.execute("CREATE SCHEMA s")
        lh.con.execute("CREATE TABLE s.t AS SELECT range AS i FROM range(10)")
        lh.con.execute("CREATE TABLE s.z AS SELECT 1 AS a")
        lh.tag("v1")  # keeps the fork point from expiring
        lh.con.execute("CREATE OR REPLACE TABLE s.t AS SELECT range + 1000 AS i FROM range(10)")
        lh.con.execute("INSERT INTO s.z VALUES (2)")  # the head: the rebuild of s.t is in an expirable snapshot
        lh.maintain(steps=("expire",), now=datetime.now(UTC) + timedelta(days=30))
        lh.create_branch("past", "v1")
        before = cs(lh, "s.t")
    with Lakehouse.open(root, branch="past") as past:
        past.con.execute("DELETE FROM s.t WHERE i = 3")
    with Lakehouse.open(root) as lh:
        assert "s.t" in lh.diff("past").conflicts
        with pytest.raises(MergeConflict, match="expired") as e:
            lh.merge("past")
        assert e.value.tables == ["s.t"]
        assert cs(lh, "s.t") == before



def test_a_branch_that_expired_its_own_snapshots_since_the_fork_is_not_merged(local_projects):
    root = local_projects.make({"lake": {"maintenance": {"expire_older_than_days": 0, "cleanup_older_than_days": 0}}})
    with Lakehouse.open(root) as lh:
        lh.con.execute("CREATE SCHEMA s")
        lh.con.execute("CREATE TABLE s.t AS SELECT range AS i FROM range(10)")
        fork = lh.create_branch("dev").fork_snapshot
        before = cs(lh, "s.t")
    with Lakehouse.open(root, branch="dev") as dev:
        dev.con.execute("DELETE FROM s.t WHERE i = 3")
        dev.con.execute("INSERT INTO s.t VALUES (42)")
        # airduck's own maintenance keeps the snapshots a merge reads (invariant 6): nothing expired
        dev.maintain(steps=("expire",), now=datetime.now(UTC) + timedelta(days=30))
        kept = {r[0] for r in dev.con.execute("SELECT snapshot_id FROM lake.snapshots()").fetchall()}
        head = dev.current_snapshot()
        assert set(range(fork, head + 1)) <= kept
        # DuckLake's own expire (another tool, or maintenance from before invariant 6) can still drop one
        dev.con.execute("CALL ducklake_expire_snapshots('lake', versions => ?)", [[fork + 1]])
    with Lakehouse.open(root) as lh:
        for attempt in (lh.diff, lh.merge):
            with pytest.raises(BranchError, match="'dev' has expired snapshots since its fork"):
                attempt("dev")
        assert cs(lh, "s.t") == before

def test_tags_of_a_branch_stay_on_the_branch(local_projects):
    """A tag names a snapshot id of its own catalog: a tag made on a branch is not merged into main (it would name
    another snapshot there), and tagging on both sides is no conflict."""
    root = local_projects.make({})
    with Lakehouse.open(root) as lh:
        lh.con.execute("CREATE SCHEMA s")
        lh.con.execute("CREATE TABLE s.t AS SELECT range AS i FROM range(5)")
        lh.tag("v0")
        lh.con.execute("INSERT INTO s.t VALUES (50)")
        lh.tag("v1")
        lh.con.execute("INSERT INTO s.t VALUES (100)")
        lh.create_branch("past", "v1")
        lh.tag("v2")
    with Lakehouse.open(root, branch="past") as past:
        past.con.execute("CREATE TABLE s.u AS SELECT 1 AS a")
        past.tag("onbranch")
    with Lakehouse.open(root) as lh:
        assert "airduck.tags" not in {t.table for t in lh.diff("past").tables}
        assert lh.merge("past").snapshot_id is not None
        assert [t.name for t in lh.tags()] == ["v0", "v1", "v2"]
        assert lh.con.execute("SELECT count(*) FROM s.u").fetchone()[0] == 1


def test_a_snapshot_id_is_ascii_digits(local_projects):
    """`str.isdigit` takes '²' (which int() refuses: a traceback) and U+0661 (an Arabic-Indic one): neither is an id."""
    root = local_projects.make({})
    with Lakehouse.open(root) as lh:
        lh.con.execute("CREATE SCHEMA s")
        lh.con.execute("CREATE TABLE s.t AS SELECT 1 AS a")
        for ref in ("\u00b2", "main@\u00b2", "\u0661"):
            with pytest.raises(BranchError, match="neither"):
                lh.create_branch("x", ref)
        with pytest.raises(NotFound, match="neither a snapshot id nor a tag"):
            lh.head("s.t", at="\u00b2")
        assert lh.branches() == []


def test_forking_a_branch_whose_catalog_file_is_gone_is_refused_and_creates_nothing(local_projects):
    root = local_projects.make({})
    with Lakehouse.open(root) as lh:
        lh.con.execute("CREATE TABLE t AS SELECT 1 AS a")
        ghost = lh.create_branch("ghost")
    Path(ghost.location).unlink()  # the copy went missing; its registry row is left
    with Lakehouse.open(root) as lh:
        for source in ("ghost", "ghost@1"):
            with pytest.raises(NotFound, match="ghost"):
                lh.create_branch("copy", source)
        assert not Path(ghost.location).exists()  # not made again, empty, by opening it
        assert [b.name for b in lh.branches(heads=False)] == ["ghost"]
        lh.delete_branch("ghost")  # what the hint says
        assert lh.branches(heads=False) == []


@pytest.mark.parametrize("lake_combo", ["pg-local"])
def test_branch_names_that_share_a_postgresql_schema_are_refused(projects):
    """A branch of a PostgreSQL catalog is the schema airduck_branch_NAME with '-' as '_' (and PostgreSQL cuts
    names at 63 bytes): two names one schema would be a raw DuplicateSchema error."""
    root = projects.make({})
    with Lakehouse.open(root) as lh:
        lh.con.execute("CREATE TABLE t AS SELECT 1 AS a")
        lh.create_branch("fix-a")
        with pytest.raises(BranchError, match="same PostgreSQL schema as branch 'fix-a'"):
            lh.create_branch("fix_a")
        lh.create_branch("b" * 48)
        with pytest.raises(BranchError, match="is not a branch name"):
            lh.create_branch("b" * 49)
        assert [b.name for b in lh.branches(heads=False)] == ["b" * 48, "fix-a"]
