"""A merge after maintenance (docs/branches.md, "Merge"): maintenance on the branch after the fork (flushing
inlined rows, merging adjacent files, rewriting files with deletes, expiring snapshots and cleaning up) moves
rows into other files without changing them; the merge must still make the target equal the branch, row for row,
and leave the target's history as it was. Maintenance on the target after the fork is refused as a conflict and
changes nothing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from airduck.lake.branches import MergeConflict
from airduck.lakehouse import Lakehouse

TABLE = "silver.t"
STEPS = ("flush", "merge", "rewrite", "expire", "cleanup")
LATER = datetime.now(UTC) + timedelta(days=30)  # every snapshot but the current one is old enough to expire
CONFIG = {"lake": {"data_inlining_row_limit": 10,
                   "maintenance": {"target_file_size": "1GB", "delete_threshold": 0.05,
                                   "expire_older_than_days": 1, "cleanup_older_than_days": 0}}}


def rows(lh: Lakehouse, at: int | None = None) -> list[tuple]:
    clause = f" AT (VERSION => {int(at)})" if at is not None else ""
    return sorted(lh.con.execute(f"SELECT * FROM {TABLE}{clause}").fetchall())


def checksum(lh: Lakehouse) -> tuple[int, int]:
    return lh.con.execute(f"SELECT count(*), sum(hash(x)) FROM {TABLE} x").fetchone()


def lake(projects) -> tuple:
    """A table of three data files and some inlined rows on main; the branch `dev` forked from it."""
    root = projects.make(CONFIG)
    with Lakehouse.open(root) as lh:
        lh.con.execute(f"CREATE TABLE {TABLE} (id BIGINT, v DOUBLE, note VARCHAR)")
        for start in (0, 300, 600):
            lh.con.execute(f"INSERT INTO {TABLE} SELECT range, range, 'n' || range FROM range({start}, {start + 300})")
        lh.con.execute(f"INSERT INTO {TABLE} SELECT range, range, 'n' || range FROM range(900, 905)")  # inlined
        fork = lh.current_snapshot()
        before = rows(lh)
        lh.create_branch("dev")
    return root, fork, before


def change(lh: Lakehouse, round_: int) -> None:
    """Rows inserted in small batches (inlined), updated and deleted: in files, inlined rows and new rows."""
    o = 100000 * round_
    for i in range(3):  # small batches: inlined in the catalog
        lh.con.execute(f"INSERT INTO {TABLE} SELECT {o} + {i * 3} + range, 0.5, 'small' FROM range(3)")
    lh.con.execute(f"INSERT INTO {TABLE} SELECT {o} + 1000 + range, 0.25, 'file' FROM range(50)")  # a new file
    lh.con.execute(f"UPDATE {TABLE} SET v = v + {round_} WHERE id % 13 = {round_}")  # every file, inlined rows
    lh.con.execute(f"DELETE FROM {TABLE} WHERE id % 17 = {round_}")
    lh.con.execute(f"UPDATE {TABLE} SET v = -1 WHERE id IN ({o} + 1, {o} + 1001, 901)")  # new and inlined rows
    lh.con.execute(f"DELETE FROM {TABLE} WHERE id IN ({o} + 2, {o} + 1002, 902)")
    for i in range(2):  # files without deletes (maintenance merges those) and inlined rows again
        lh.con.execute(f"INSERT INTO {TABLE} SELECT {o} + 2000 + {i * 40} + range, 2, 'late' FROM range(40)")
        lh.con.execute(f"INSERT INTO {TABLE} SELECT {o} + 3000 + {i * 3} + range, 3, 'small' FROM range(3)")


def test_maintenance_on_the_branch_then_merge_keeps_every_row(projects):
    root, fork, before = lake(projects)
    with Lakehouse.open(root, branch="dev") as dev:
        change(dev, 1)
        done = {s.name: s for s in dev.maintain(steps=STEPS, now=LATER)}
        assert done["flush"].done.startswith("flushed"), done["flush"].done  # each kind really ran
        assert done["merge"].items and done["rewrite"].items, (done["merge"].done, done["rewrite"].done)
        assert not done["expire"].done.startswith("expired 0 "), done["expire"].done
        change(dev, 2)
        dev.maintain(steps=("flush", "merge"))
        change(dev, 3)  # and rows changed after it again, some inlined
        branch, sums = rows(dev), checksum(dev)
    assert len(branch) > 800 and any(r[2] == "small" for r in branch)
    with Lakehouse.open(root) as lh:
        assert rows(lh) == before  # main untouched by the branch's work and maintenance
        result = lh.merge("dev")
        assert result.snapshot_id == fork + 1
        assert rows(lh) == branch  # the target equals the branch, row for row
        assert checksum(lh) == sums
        assert rows(lh, at=fork) == before  # time travel to before the merge: unchanged
    with Lakehouse.open(root, branch="dev") as dev:  # the re-forked branch is the merged lake
        assert rows(dev) == branch


def test_maintenance_on_main_after_the_fork_is_a_conflict_that_changes_nothing(projects):
    root, _, _ = lake(projects)
    with Lakehouse.open(root, branch="dev") as dev:
        change(dev, 1)
        branch = rows(dev)
    with Lakehouse.open(root) as lh:
        lh.con.execute(f"DELETE FROM {TABLE} WHERE id % 5 = 0")  # so that rewrite has files to rewrite
        lh.con.execute(f"INSERT INTO {TABLE} SELECT 50000 + range, 1, 'x' FROM range(3)")
        lh.maintain(steps=STEPS, now=LATER)
        main, head = rows(lh), lh.current_snapshot()
        with pytest.raises(MergeConflict) as e:
            lh.merge("dev")
        assert e.value.tables == [TABLE]
        assert lh.current_snapshot() == head and rows(lh) == main  # nothing was written
    with Lakehouse.open(root, branch="dev") as dev:
        assert rows(dev) == branch  # nor on the branch


def test_only_maintenance_on_main_after_the_fork_merges(projects):
    """Main's maintenance alone (no row changed: its flushed and merged rows keep their row ids) is no conflict: the
    branch's deletes find their rows by row id in main's new files."""
    root, _, before = lake(projects)
    with Lakehouse.open(root, branch="dev") as dev:
        change(dev, 1)
        branch, sums = rows(dev), checksum(dev)
    with Lakehouse.open(root) as lh:
        done = {s.name: s for s in lh.maintain(steps=STEPS, now=LATER)}
        assert done["flush"].done.startswith("flushed") and done["merge"].items, done
        assert rows(lh) == before
        head = lh.current_snapshot()
        result = lh.merge("dev")
        assert result.snapshot_id == head + 1
        assert rows(lh) == branch and checksum(lh) == sums
        assert rows(lh, at=head) == before
