"""Branch gaps of issue 14: `--from TAG|SNAPSHOT` is refused with the supported alternative (and that alternative
works); on the embedded sqlite-local lake."""

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
        snap = lh.current_snapshot()
    write_orders(root, "day2.csv", 20, 5)
    with Lakehouse.open(root) as lh:
        lh.run()
    return root, snap


def test_from_tag_or_snapshot_is_refused_and_the_workaround_works(lake):
    root, snap = lake
    with Lakehouse.open(root) as lh:
        with pytest.raises(BranchError, match=r"cannot fork a branch from tag 'v1'.*main or another branch") as e:
            lh.create_branch("old", "v1")
        assert "rollback" in (e.value.hint or "")
        with pytest.raises(BranchError, match=f"cannot fork a branch from snapshot {snap}"):
            lh.create_branch("old", str(snap))
        assert [b.name for b in lh.branches()] == []  # nothing was created
        lh.create_branch("old")
    with Lakehouse.open(root, branch="old") as lh:
        lh.rollback("silver.orders", "v1")
        assert lh.con.execute("SELECT count(*) FROM silver.orders").fetchone()[0] == 20
    with Lakehouse.open(root) as lh:
        assert lh.con.execute("SELECT count(*) FROM silver.orders").fetchone()[0] == 25
        lh.delete_branch("old")
