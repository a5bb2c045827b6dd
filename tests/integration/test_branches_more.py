"""Branch gaps of issue 14: `--from TAG|SNAPSHOT` forks the lake as it was (see also test_branch_from.py); a
snapshot whose files main's maintenance has since merged with later rows is refused with the alternative, and that
alternative works; on the embedded sqlite-local lake."""

from __future__ import annotations

import pytest

from airduck.lake.branches import BranchError
from airduck.lakehouse import Lakehouse
from tests.conftest import ProjectFactory
from tests.integration.test_pipeline_runs import orders_config, write_orders


@pytest.fixture(scope="module")
def lake(tmp_path_factory, request):
    root = ProjectFactory("sqlite-local", tmp_path_factory.mktemp("br2"), request).make(orders_config())
    write_orders(root, "day1.csv", 0, 20)
    with Lakehouse.open(root) as lh:
        lh.run()
        lh.tag("v1")
        snap = lh.current_snapshot() - 1  # the tag's own commit follows the snapshot it names
    write_orders(root, "day2.csv", 20, 5)
    with Lakehouse.open(root) as lh:
        lh.run()
    return root, snap


def count(lh: Lakehouse) -> int:
    return lh.con.execute("SELECT count(*) FROM silver.orders").fetchone()[0]


def test_from_tag_and_snapshot_fork_the_lake_as_it_was(lake):
    root, snap = lake
    with Lakehouse.open(root) as lh:
        assert lh.create_branch("old", "v1").fork_snapshot == snap
        assert lh.create_branch("old2", f"main@{snap}").fork_snapshot == snap
    for name in ("old", "old2"):
        with Lakehouse.open(root, branch=name) as b:
            assert count(b) == 20
    with Lakehouse.open(root) as lh:
        assert count(lh) == 25
        lh.delete_branch("old")
        lh.delete_branch("old2")


def test_a_snapshot_whose_files_maintenance_merged_with_later_rows_is_refused(lake):
    root, snap = lake
    with Lakehouse.open(root) as lh:
        lh.maintain(steps=("flush", "merge"))  # day1's and day2's rows end up in one file
        files = lh.con.execute("SELECT count(*) FROM __ducklake_metadata_lake.ducklake_data_file WHERE "
                               "begin_snapshot <= ? AND partial_max > ?", [snap, snap]).fetchone()[0]
        assert files >= 1
        with pytest.raises(BranchError, match=f"cannot fork from snapshot {snap} of main: maintenance") as e:
            lh.create_branch("old", "v1")
        assert "rollback" in (e.value.hint or "")
        assert [b.name for b in lh.branches()] == []  # nothing was created
        assert not list((root / ".airduck" / "branches").glob("old*"))  # no copy left behind
        lh.create_branch("old")
    with Lakehouse.open(root, branch="old") as lh:  # the alternative: fork main, roll the table back on the branch
        lh.rollback("silver.orders", "v1")
        assert count(lh) == 20
    with Lakehouse.open(root) as lh:
        assert count(lh) == 25
        lh.delete_branch("old")
