"""Smoke test of the lake on every combination: attach, schemas, write, read back."""

from airduck.lake.commit import write
from airduck.lakehouse import Lakehouse


def test_new_lake_has_medallion_schemas_and_round_trips(projects):
    root = projects.make()
    with Lakehouse.open(root) as lh:
        assert {"bronze", "silver", "gold"} <= set(lh.schemas())
        with write(lh.con, "test insert"):
            lh.con.execute("CREATE TABLE bronze.t AS SELECT range AS i FROM range(1000)")
        assert lh.describe("bronze.t").row_count == 1000
    with Lakehouse.open(root) as lh:
        assert lh.con.execute("SELECT sum(i) FROM bronze.t").fetchone()[0] == sum(range(1000))
        assert any(s.message == "test insert" for s in lh.snapshots("bronze.t"))
