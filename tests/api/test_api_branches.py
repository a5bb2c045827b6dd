"""`?branch=` on the read endpoints and `GET /branches` (issue 14), on the embedded sqlite-local lake."""

from __future__ import annotations

from airduck.lakehouse import Lakehouse
from tests.integration.test_pipeline_runs import write_orders


def test_branch_query_reads_the_branch_and_unknown_is_404(local_served):
    s = local_served
    with Lakehouse.open(s.root) as lh:
        lh.create_branch("dev")
    write_orders(s.root, "day2.csv", 300, 7)
    with Lakehouse.open(s.root, branch="dev") as lh:
        lh.run()
    main_rows = s.get("/api/v1/tables/silver.orders").json()["row_count"]
    dev = s.get("/api/v1/tables/silver.orders?branch=dev").json()["row_count"]
    assert dev == main_rows + 7
    n = s.post("/api/v1/sql?branch=dev", json={"sql": "SELECT count(*) AS n FROM silver.orders"}).json()
    assert n["rows"] == [[dev]]
    assert len(s.get("/api/v1/snapshots?branch=dev").json()["snapshots"]) > len(
        s.get("/api/v1/snapshots").json()["snapshots"])
    assert len(s.get("/api/v1/tables/silver.orders/rows?branch=dev&limit=1000").json()["rows"]) == dev
    assert [t["row_count"] for t in s.get("/api/v1/tables?branch=dev").json()["tables"]
            if (t["schema"], t["name"]) == ("silver", "orders")] == [dev]
    assert [b["name"] for b in s.get("/api/v1/branches").json()["branches"]] == ["dev"]
    r = s.get("/api/v1/tables?branch=nope")
    assert r.status_code == 404 and "nope" in r.text and "error" in r.json()
