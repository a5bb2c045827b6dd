"""The public Python API: open a project, run it, read tables as relations, Arrow and pandas."""

from __future__ import annotations

import airduck
from tests.integration.test_pipeline_runs import orders_config, write_orders


def test_open_run_and_query(local_projects):
    root = local_projects.make(orders_config())
    write_orders(root, "day1.csv", 0, 250)
    with airduck.open(root) as lh:
        result = lh.run()
        assert result.ok and result.record.rows_in == 250
        rel = lh.table("silver.orders")
        assert rel.aggregate("count(*)").fetchone()[0] == 250
        assert lh.table("silver.orders").to_arrow_table().num_rows == 250
        df = lh.query("SELECT customer, count(*) AS n FROM silver.orders GROUP BY 1 ORDER BY 1").df()
        assert df["n"].sum() == 250 and df["customer"].str.islower().all()
        first = lh.snapshots("silver.orders")[0].snapshot_id
        assert lh.table("silver.orders", at=first).aggregate("count(*)").fetchone()[0] == 250
    assert set(airduck.__all__) >= {"Lakehouse", "Project", "load_project", "open", "AirduckError"}
    assert airduck.load_project(root).config.silver["orders"].mode == "merge"
