"""The REST API on the three lake combinations: every route answers what the facade holds, in every format."""

from __future__ import annotations

import io
import json
import sys
import threading
import time
import traceback

import pyarrow as pa
import pyarrow.parquet as pq

from tests.api.conftest import Served


def _json_lines(text: str) -> list[dict]:
    events = []
    for block in text.strip().split("\n\n"):
        data = [ln[6:] for ln in block.splitlines() if ln.startswith("data: ")]
        name = [ln[7:] for ln in block.splitlines() if ln.startswith("event: ")]
        if data:
            events.append({"event": name[0] if name else None, **json.loads(data[0])})
    return events


def test_tables_and_a_table(served: Served):
    r = served.get("/api/v1/tables")
    assert r.status_code == 200
    tables = {f"{t['schema']}.{t['name']}": t for t in r.json()["tables"]}
    assert {"bronze.orders", "silver.orders"} <= set(tables)
    assert tables["silver.orders"]["row_count"] == 294  # 300 read, every 50th amount negative: 6 dropped
    assert tables["bronze.orders"]["row_count"] == 300
    assert tables["bronze.orders"]["file_count"] >= 1 and tables["bronze.orders"]["file_bytes"] > 0
    one = served.get("/api/v1/tables/silver.orders").json()
    assert [c["name"] for c in one["columns"]][:4] == ["order_id", "customer", "amount", "updated_at"]
    assert served.get("/api/v1/tables/silver.nope").status_code == 404
    assert served.get("/api/v1/tables/nodot").json()["error"]["type"] == "NotFound"


def test_rows_paging_cursor_and_formats(served: Served):
    first = served.get("/api/v1/tables/bronze.orders/rows?limit=100").json()
    assert len(first["rows"]) == 100 and first["truncated"] and first["next_cursor"]
    second = served.get(f"/api/v1/tables/bronze.orders/rows?limit=100&cursor={first['next_cursor']}").json()
    third = served.get("/api/v1/tables/bronze.orders/rows?limit=100&offset=200").json()
    idx = first["columns"].index("order_id")
    ids = [r[idx] for r in first["rows"] + second["rows"] + third["rows"]]
    assert sorted(ids) == list(range(300)) and not third["truncated"] and third["next_cursor"] is None
    assert served.get("/api/v1/tables/bronze.orders/rows?cursor=garbage").status_code == 400

    csv = served.get("/api/v1/tables/silver.orders/rows?limit=5", headers={"Accept": "text/csv"})
    assert csv.headers["content-type"].startswith("text/csv")
    assert csv.text.splitlines()[0].startswith("order_id,customer,amount") and len(csv.text.splitlines()) == 6
    pq_table = pq.read_table(io.BytesIO(served.get("/api/v1/tables/silver.orders/rows?limit=7&format=parquet").content))
    assert pq_table.num_rows == 7 and str(pq_table.schema.field("amount").type) == "decimal128(12, 2)"
    ipc = served.get("/api/v1/tables/silver.orders/rows?limit=9",
                     headers={"Accept": "application/vnd.apache.arrow.stream"})
    assert pa.ipc.open_stream(ipc.content).read_all().num_rows == 9
    assert served.get("/api/v1/tables/silver.orders/rows?format=xml").status_code == 400


def test_rows_at_a_snapshot_and_a_tag_and_the_diff(served: Served):
    before = served.get("/api/v1/snapshots?table=silver.orders").json()["snapshots"][-1]["snapshot_id"]
    tag = f"before_{served.combo.replace('-', '_')}"
    r = served.post("/api/v1/tags", "admin", json={"name": tag, "snapshot": str(before), "note": "api test"})
    assert r.status_code == 201 and r.json()["snapshot_id"] == before
    assert served.post("/api/v1/tags", "write", json={"name": "nope"}).status_code == 403
    assert tag in [t["name"] for t in served.get("/api/v1/tags").json()["tags"]]
    # a second run adds rows and updates some (merge on order_id)
    write_more(served)
    start = served.post("/api/v1/runs", "write", json={})
    assert start.status_code == 202, start.text
    run_id = start.json()["run_id"]
    info = wait_for_run(served, run_id)
    assert info["status"] == "ok", info
    assert {s["step_id"] for s in info["steps"]} >= {"ingest:orders", "silver:orders"}
    assert info["quality"] and any(q["name"] == "amount_not_negative" for q in info["quality"])
    events = _json_lines(served.get(f"/api/v1/runs/{run_id}/events").text)
    assert events[0]["event"] == "RunStarted" and events[-1]["event"] == "RunFinished"
    assert "StepFinished" in {e["event"] for e in events}
    assert run_id in [r["run_id"] for r in served.get("/api/v1/runs").json()["runs"]]

    now = served.get("/api/v1/tables/silver.orders").json()["row_count"]
    assert now == 294 + 50  # 300..349 added
    at_tag = served.get(f"/api/v1/tables/silver.orders/rows?limit=1000&at={tag}").json()
    assert len(at_tag["rows"]) == 294
    diff = served.get(f"/api/v1/tables/silver.orders/diff?from={tag}").json()
    # silver's merge rewrites a changed row as delete + insert (or an update): 50 new rows, 10 changed ones
    assert diff["inserted"] - diff["deleted"] == 50 and diff["updated"] + diff["deleted"] == 10, diff
    kinds = {r[diff["columns"].index("change_type")] for r in diff["rows"]}
    assert "insert" in kinds and kinds & {"delete", "update_postimage"}
    # rollback to the tag (admin), then the table holds what it held
    assert served.post("/api/v1/tables/silver.orders/rollback", "write", json={"to": tag}).status_code == 403
    rb = served.post("/api/v1/tables/silver.orders/rollback", "admin", json={"to": tag})
    assert rb.status_code == 200, rb.text
    assert served.get("/api/v1/tables/silver.orders").json()["row_count"] == 294


def wait_for_run(served: Served, run_id: str, seconds: float = 400) -> dict:
    """Poll a run the server started until it is done (bounded: a loaded CI machine may take minutes); when it is
    not, fail with the events it has sent (which step it is in) rather than the run's record alone."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        info = served.get(f"/api/v1/runs/{run_id}").json()
        if info.get("live", {}).get("done"):
            return info
        time.sleep(0.5)
    live = served.app.state.runs.get(run_id)
    events = "; ".join(f"{e['type']} {e.get('step_id') or ''}".strip() for e in live.events)
    names = {t.ident: t.name for t in threading.enumerate()}
    where = "\n".join(f"-- thread {names.get(ident, ident)}:\n" + "".join(traceback.format_stack(frame)[-8:])
                      for ident, frame in sys._current_frames().items() if ident != threading.get_ident())
    raise AssertionError(f"run {run_id} not done after {seconds:g} s: status {info.get('status')!r}; "
                         f"events: {events}; the threads are at:\n{where}")


def write_more(served: Served) -> None:
    from tests.integration.test_pipeline_runs import write_orders

    write_orders(served.root, "day2.csv", 300, 50)
    folder = served.root / "data" / "orders"
    lines = ["order_id,customer,amount,updated_at"] + [f"{i},changed,{i}.5,2026-11-30 10:00:00" for i in range(1, 11)]
    (folder / "day3.csv").write_text("\n".join(lines) + "\n")


def test_profile(served: Served):
    p = served.get("/api/v1/tables/bronze.orders/profile?column=order_id&top=3").json()
    assert p["distinct"] >= 300 and p["nulls"] == 0 and p["min"] is not None and len(p["top"]) == 3
    assert served.get("/api/v1/tables/bronze.orders/profile?column=nope").status_code == 404


def test_sql_formats_limits_and_refusals(served: Served):
    r = served.post("/api/v1/sql", json={"sql": "SELECT count(*) AS n, sum(amount) AS s FROM silver.orders"})
    assert r.status_code == 200 and r.json()["columns"] == ["n", "s"] and r.json()["rows"][0][0] > 0
    cut = served.post("/api/v1/sql", json={"sql": "SELECT * FROM range(1000)", "limit": 10}).json()
    assert len(cut["rows"]) == 10 and cut["truncated"]
    csv = served.post("/api/v1/sql?format=csv", json={"sql": "SELECT 1 AS a, 'x' AS b"}).text
    assert csv.splitlines() == ["a,b", "1,x"]
    parquet = served.post("/api/v1/sql?format=parquet", json={"sql": "SELECT range AS i FROM range(5000)"})
    assert pq.read_table(io.BytesIO(parquet.content)).num_rows == 5000
    refused = served.post("/api/v1/sql", json={"sql": "DELETE FROM silver.orders"})
    assert refused.status_code == 400 and refused.json()["error"]["type"] == "SqlError"
    assert served.post("/api/v1/sql", json={"nosql": 1}).status_code == 422


def test_plan_lineage_quality(served: Served):
    plan = served.get("/api/v1/plan").json()
    assert [s["id"] for s in plan["steps"]] == ["ingest:orders", "silver:orders"]
    graph = served.get("/api/v1/lineage").json()  # Lakehouse.lineage (fix/lineage)
    kinds = {n["id"]: n["kind"] for n in graph["nodes"]}
    assert kinds["ingest:orders"] == kinds["silver:orders"] == "step"
    assert kinds["bronze.orders"] == kinds["silver.orders"] == "table"
    assert "source" in kinds.values()
    edges = {(e["source"], e["target"]) for e in graph["edges"]}
    assert {("bronze.orders", "silver:orders"), ("silver:orders", "silver.orders")} <= edges
    around = served.get("/api/v1/lineage?table=silver.orders&downstream=false").json()
    assert "silver.orders" in {n["id"] for n in around["nodes"]} and len(around["nodes"]) <= len(graph["nodes"])
    q = served.get("/api/v1/quality?table=silver.orders").json()["quality"]
    assert q and all(r["table"] == "silver.orders" for r in q)


def test_objects(served: Served):
    data = bytes(range(256)) * 1000  # 256 kB
    put = served.client.put("/api/v1/objects/docs/report.bin", content=data, headers=served.h("write"))
    assert put.status_code == 201, put.text
    assert put.json()["size"] == len(data)
    assert served.client.put("/api/v1/objects/docs/x", content=b"x", headers=served.h("read")).status_code == 403
    listed = served.get("/api/v1/objects?prefix=docs/").json()
    assert [o["key"] for o in listed["objects"]] == ["docs/report.bin"] and listed["objects"][0]["size"] == len(data)
    whole = served.get("/api/v1/objects/docs/report.bin")
    assert whole.status_code == 200 and whole.content == data
    part = served.get("/api/v1/objects/docs/report.bin", headers={"Range": "bytes=1000-1999"})
    assert part.status_code == 206 and part.content == data[1000:2000]
    assert part.headers["content-range"] == f"bytes 1000-1999/{len(data)}"
    tail = served.get("/api/v1/objects/docs/report.bin", headers={"Range": "bytes=-10"})
    assert tail.content == data[-10:]
    assert served.get("/api/v1/objects/docs/report.bin", headers={"Range": "bytes=999999-"}).status_code == 416
    # a second version; on the versioned bucket both are kept and the first can be read back
    put2 = served.client.put("/api/v1/objects/docs/report.bin", content=b"v2", headers=served.h("write")).json()
    versions = served.get("/api/v1/objects/docs/report.bin?versions=true").json()
    if served.combo == "pg-s3":
        assert versions["versioned"] and len(versions["versions"]) == 2
        old = versions["versions"][1]["version_id"]
        assert old and old != put2["version_id"]
        assert served.get(f"/api/v1/objects/docs/report.bin?version_id={old}").content == data
    else:
        assert not versions["versioned"] and len(versions["versions"]) == 1
    assert served.get("/api/v1/objects/docs/report.bin").content == b"v2"
    assert served.client.delete("/api/v1/objects/docs/report.bin", headers=served.h("read")).status_code == 403
    assert served.client.delete("/api/v1/objects/docs/report.bin", headers=served.h("write")).status_code == 204
    assert served.get("/api/v1/objects/docs/report.bin").status_code == 404
    assert served.client.delete("/api/v1/objects/docs/report.bin", headers=served.h("write")).status_code == 404


def test_object_keys_cannot_escape_the_store(served: Served):
    from tests.api.test_api_security import check_traversals

    check_traversals(served)  # a folder on sqlite-local and pg-local, an S3 bucket on pg-s3
