"""Runs as plans of steps: one transaction per step, steps in parallel (threads and processes), table locks,
per-table batches, conflicts only from COMMIT, upstream-failed steps, typed events, kill -9 between steps."""

from __future__ import annotations

import json
import sqlite3
import sys
import time
from pathlib import Path

import pytest

from airduck.core.model import Status
from airduck.errors import ConcurrentRunError, ConfigError, QualityGateFailed, RunFailed
from airduck.events import ListSink, Message, RunFinished, RunStarted, StepFinished, StepSkipped, StepStarted
from airduck.lakehouse import Lakehouse
from tests.integration.test_pipeline_runs import cli, count, kill_at_failpoint

AIRDUCK = [sys.executable, "-m", "airduck"]
SOURCES = ("s1", "s2", "s3", "s4")


def write_csv(root: Path, source: str, name: str, start: int, n: int, extra: str = "") -> None:
    folder = root / "data" / source
    folder.mkdir(parents=True, exist_ok=True)
    lines = ["id,code,amount"] + [f"{i},{i % 7},{i % 100}" for i in range(start, start + n)]
    (folder / name).write_text("\n".join(lines) + "\n" + extra)


def multi_config(sources=SOURCES, silver: bool = True) -> dict:
    cfg: dict = {"sources": {s: {"type": "files", "path": f"data/{s}/*.csv", "format": "csv"} for s in sources}}
    if silver:
        cfg["silver"] = {s: {"from": s, "key": ["id"], "mode": "merge",
                             "columns": {"id": {"type": "BIGINT", "required": True}, "amount": {"type": "INTEGER"}}}
                         for s in sources}
    return cfg




def retries(sink: ListSink) -> list[str]:
    return [m.text for m in sink.of_type(Message) if "retrying" in m.text]


def test_disjoint_steps_commit_concurrently_from_threads(projects):
    root = projects.make(multi_config())
    for i, s in enumerate(SOURCES):
        write_csv(root, s, "a.csv", i * 1000, 500 + i)
    sink = ListSink()
    with Lakehouse.open(root, sinks=[sink]) as lh:
        result = lh.run(threads=4)
        assert result.ok, result.record
        for i, s in enumerate(SOURCES):
            assert count(lh, f"bronze.{s}") == 500 + i and count(lh, f"silver.{s}") == 500 + i
        assert retries(sink) == []
        assert all(s.details.get("commit_attempts") == 1 for s in result.steps)
        # one snapshot per step, each with its own message and the run and step ids in its extra info
        snaps = {s.message: s for s in lh.snapshots() if s.message and
                 s.message.startswith(f"run {result.record.run_id}: ")}
        want = {f"run {result.record.run_id}: {k}:{s}" for s in SOURCES for k in ("ingest", "silver")}
        assert want <= set(snaps), sorted(snaps)
        extra = snaps[f"run {result.record.run_id}: ingest:s2"].extra_info
        assert extra["run_id"] == result.record.run_id and extra["step"] == "ingest:s2"
        # typed events: run started/finished; each step started and finished with the snapshot it wrote
        assert len(sink.of_type(RunStarted)) == 1 and sink.of_type(RunFinished)[0].status == "ok"
        finished = {e.step_id: e for e in sink.of_type(StepFinished)}
        assert set(finished) == {f"{k}:{s}" for s in SOURCES for k in ("ingest", "silver")}
        ingest = finished["ingest:s3"]
        assert ingest.outputs[0].dataset.name == "bronze.s3" and ingest.outputs[0].rows == 502
        assert ingest.snapshot == snaps[f"run {result.record.run_id}: ingest:s3"].snapshot_id
        silver = finished["silver:s3"]
        assert silver.inputs[0].dataset.name == "bronze.s3" and silver.inputs[0].snapshot >= ingest.snapshot
        assert {e.step_id for e in sink.of_type(StepStarted)} == set(finished)
        # the same run again: nothing new, every step rolled back (skipped), not a single snapshot
        before = lh.current_snapshot()
        again = lh.run(threads=4)
        assert again.ok and lh.current_snapshot() == before
        assert {str(s.status) for s in again.steps} == {"skipped"}
        # sources found nothing new; the silver steps were not even started (nothing they read changed)
        assert {s.details["reason"] for s in again.steps} <= {"no new data", "unchanged"}
        assert {s.details["reason"] for s in again.steps if s.step_id.startswith("ingest:")} == {"no new data"}
        info = lh.run_info(again.record.run_id)
        assert {s["step_id"] for s in info.steps} == set(finished)


def test_step_processes_commit_concurrently_on_postgres(pg_s3_projects):
    root = pg_s3_projects.make(multi_config(silver=False))
    for i, s in enumerate(SOURCES):
        write_csv(root, s, "a.csv", i * 1000, 2000 + i)
    with Lakehouse.open(root) as lh:  # the first run creates the shared tables; then 4 processes at once
        assert lh.run(select=["ingest:s1"]).ok
    for i, s in enumerate(SOURCES):
        write_csv(root, s, "b.csv", 100_000 + i * 10_000, 3000)
    procs = [cli(root, "run", "--step", f"ingest:{s}", "--json", "-q") for s in SOURCES]
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (_out, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err
    recs = [json.loads(out) for out, _ in outs]
    for s, rec in zip(SOURCES, recs, strict=True):
        (step,) = rec["steps"]
        assert step["step_id"] == f"ingest:{s}" and step["status"] == "ok"
        assert step["details"]["commit_attempts"] == 1, step  # no retry
        assert "another writer" not in json.dumps(rec)
    with Lakehouse.open(root) as lh:
        for i, s in enumerate(SOURCES):
            assert count(lh, f"bronze.{s}") == 2000 + i + 3000
            assert lh.con.execute(f"SELECT count(*) - count(DISTINCT id) FROM bronze.{s}").fetchone()[0] == 0
        assert count(lh, "airduck.bronze_files") == 8


def test_two_writers_of_one_table_take_turns_and_silver_misses_nothing(pg_s3_projects):
    root = pg_s3_projects.make(multi_config(sources=("orders",)))
    write_csv(root, "orders", "f0.csv", 0, 1000)
    with Lakehouse.open(root) as lh:
        assert lh.run().ok
    expected = 1000
    for r in range(1, 4):  # new files arrive while two ingests of the same source and a silver build overlap
        write_csv(root, "orders", f"f{r}.csv", r * 10_000, 1000)
        expected += 1000
        procs = [cli(root, "run", "--step", "ingest:orders", "--json", "-q"),
                 cli(root, "run", "--step", "ingest:orders", "--json", "-q"),
                 cli(root, "run", "--step", "silver:orders", "--json", "-q")]
        outs = [p.communicate(timeout=300) for p in procs]
        for p, (_o, err) in zip(procs, outs, strict=True):
            assert p.returncode == 0, err
        loads = [json.loads(o)["steps"][0] for o, _ in outs[:2]]
        # the second writer waited for the first and found the file already ingested
        assert sorted(s["status"] for s in loads) == ["ok", "skipped"], loads
        assert sum(s["rows_out"] for s in loads) == 1000
    with Lakehouse.open(root) as lh:
        assert lh.run(select=["silver:orders"]).ok
        assert count(lh, "bronze.orders") == expected
        assert lh.con.execute("SELECT count(*) - count(DISTINCT id) FROM bronze.orders").fetchone()[0] == 0
        assert count(lh, "silver.orders") == expected  # no batch was passed over
        # batches grow in commit order: a later commit of bronze.orders never has a smaller _batch
        rows = lh.con.execute("SELECT _batch, min(_load_id) FROM bronze.orders GROUP BY _batch ORDER BY _batch"
                              ).fetchall()
        assert len(rows) == 4


def test_kill_9_inside_a_later_step_keeps_the_committed_steps(projects, tmp_path):
    root = projects.make(multi_config(sources=("orders",)))
    write_csv(root, "orders", "a.csv", 0, 5000)
    kill_at_failpoint(root, "before-commit:silver:orders", tmp_path / "failpoint.txt", timeout=180)
    with Lakehouse.open(root) as lh:
        # bronze is at its new state (its step committed), silver at its old one (it never existed)
        assert count(lh, "bronze.orders") == 5000
        assert "silver.orders" not in {t.qualified for t in lh.tables()}
        result = lh.run()
        assert result.ok
        by_step = {s.step_id: s for s in result.steps}
        assert by_step["ingest:orders"].status == Status.SKIPPED and by_step["silver:orders"].rows_out == 5000
        assert count(lh, "bronze.orders") == 5000 and count(lh, "silver.orders") == 5000
        assert lh.con.execute("SELECT count(*) - count(DISTINCT id) FROM silver.orders").fetchone()[0] == 0
        killed = [r for r in lh.runs() if r.status == "killed"]
        assert len(killed) == 1 and "committed" in killed[0].error


def test_a_failed_gate_stops_its_downstream_and_other_branches_finish(projects):
    cfg = multi_config(sources=("a", "b"))
    cfg["silver"]["a"]["expectations"] = [{"name": "small", "check": "amount < 50", "on_fail": "fail"}]
    cfg["silver"]["a_top"] = {"from": "silver.a", "key": ["id"], "mode": "merge",
                              "columns": {"id": {"type": "BIGINT"}, "amount": {"type": "INTEGER"}}}
    root = projects.make(cfg)
    write_csv(root, "a", "x.csv", 0, 200)
    write_csv(root, "b", "x.csv", 0, 300)
    sink = ListSink()
    with Lakehouse.open(root, sinks=[sink]) as lh:
        with pytest.raises(RunFailed, match="small") as info:
            lh.run(threads=2)
        assert isinstance(info.value.cause, QualityGateFailed) and not info.value.transient
        status = {s.step_id: str(s.status) for s in info.value.steps}
        assert status == {"ingest:a": "ok", "ingest:b": "ok", "silver:a": "failed", "silver:b": "ok",
                          "silver:a_top": "upstream failed"}
        assert info.value.record.status == "failed"
        lh.reconnect()
        assert count(lh, "silver.b") == 300 and count(lh, "bronze.a") == 200
        assert "silver.a" not in {t.qualified for t in lh.tables()}
        skipped = {e.step_id: e for e in sink.of_type(StepSkipped)}
        assert skipped["silver:a_top"].upstream_failed and "silver:a" in skipped["silver:a_top"].reason
        recorded = {s["step_id"]: s["status"] for s in lh.run_info(info.value.record.run_id).steps}
        assert recorded == status


@pytest.mark.parametrize("value", ["no conflict here", "duplicate key value"])
def test_conflict_words_in_data_fail_at_once_as_a_rule_error(local_projects, value):
    cfg = multi_config(sources=("orders",))
    cfg["silver"]["orders"]["columns"]["code_n"] = {"type": "INTEGER", "expr": "CAST(code AS INTEGER)"}
    root = local_projects.make(cfg)
    folder = root / "data" / "orders"
    folder.mkdir(parents=True)
    (folder / "a.csv").write_text(f"id,code,amount\n1,7,5\n2,{value},6\n")
    sink = ListSink()
    started = time.monotonic()
    with Lakehouse.open(root, sinks=[sink]) as lh, pytest.raises(RunFailed) as info:
        lh.run()
    assert time.monotonic() - started < 20  # no retries with backoff (they took 26 s before)
    assert not isinstance(info.value.cause, ConcurrentRunError) and not info.value.transient
    assert value in str(info.value.cause) or "convert" in str(info.value.cause).lower()
    assert retries(sink) == []
    proc = cli(root, "run")
    _out, err = proc.communicate(timeout=120)
    assert proc.returncode == 1 and "Traceback" not in err and "another writer" not in err, err


def test_step_runs_exactly_one_step_and_unknown_steps_are_named(local_projects):
    root = local_projects.make(multi_config(sources=("a", "b")))
    write_csv(root, "a", "x.csv", 0, 10)
    write_csv(root, "b", "x.csv", 0, 20)
    with Lakehouse.open(root) as lh:
        result = lh.run(step="ingest:a")
        assert [s.step_id for s in result.steps] == ["ingest:a"]
        assert {t.qualified for t in lh.tables()} & {"bronze.a", "bronze.b", "silver.a"} == {"bronze.a"}
        with pytest.raises(RunFailed, match="no step 'ingest:zz'") as info:
            lh.run(step="ingest:zz")
        assert isinstance(info.value.cause, ConfigError) and info.value.record.status == "failed"
        with pytest.raises(RunFailed, match="does not combine with --select"):  # never one silently ignored
            lh.run(["ingest:b"], step="ingest:a")
        assert "bronze.b" not in {t.qualified for t in lh.tables()}
    proc = cli(root, "run", "--step", "silver:a", "--threads", "1", "--json")
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert [s["step_id"] for s in json.loads(out)["steps"]] == ["silver:a"]


def test_gold_on_failure_is_refused_with_a_clear_message(local_projects):
    root = local_projects.make({**multi_config(sources=("a",)), "gold": {"on_failure": "revert"}})
    with pytest.raises(ConfigError, match="on_failure was removed"):
        Lakehouse.open(root)


def test_old_step_records_gain_a_step_id_column(local_projects):
    root = local_projects.make(multi_config(sources=("a",), silver=False))
    write_csv(root, "a", "x.csv", 0, 10)
    runs = root / ".airduck" / "catalog.sqlite.runs.sqlite"
    runs.parent.mkdir(parents=True, exist_ok=True)
    with sqlite3.connect(runs) as db:  # the step table as airduck 0.x created it
        db.execute("CREATE TABLE airduck_run_steps (run_id TEXT, step_no INTEGER, layer TEXT, table_name TEXT, "
                   "status TEXT, rows_in BIGINT, rows_out BIGINT, rows_quarantined BIGINT, rows_rejected BIGINT, "
                   "files BIGINT, started_at TEXT, finished_at TEXT, details TEXT, error TEXT)")
        db.execute("INSERT INTO airduck_run_steps (run_id, step_no) VALUES ('old', 1)")
    with Lakehouse.open(root) as lh:
        result = lh.run()
        steps = lh.run_info(result.record.run_id).steps
        assert [s["step_id"] for s in steps] == ["ingest:a"]
    with sqlite3.connect(runs) as db:
        assert db.execute("SELECT step_id FROM airduck_run_steps WHERE run_id = 'old'").fetchall() == [(None,)]


@pytest.mark.parametrize("combo", ["pg-local", "sqlite-local"])
def test_what_ducklake_does_with_two_open_transactions(combo, tmp_path, request):
    """Why the runner does what it does: on a PostgreSQL catalog DuckLake retries (by itself) a commit whose changes do
    not conflict, e.g. inserts into the same table from two transactions, and reports a real conflict (a delete of
    rows another transaction inserted next to) at COMMIT; on a SQLite catalog the second open transaction cannot
    commit at all, so the steps take turns there."""
    from airduck.lake.commit import is_conflict
    from airduck.lake.connection import open_lake
    from tests.conftest import ProjectFactory

    root = ProjectFactory(combo, tmp_path, request).make({"sources": {}})
    from airduck.project import load_project

    con = open_lake(load_project(root))
    try:
        con.execute("CREATE TABLE lake.airduck.t (k VARCHAR, v INTEGER)")
        con.execute("INSERT INTO lake.airduck.t VALUES ('x', 0)")
        if combo == "sqlite-local":  # a connection that has read the lake blocks every other one's COMMIT: so the
            assert con.execute("SELECT count(*) FROM lake.airduck.t").fetchone()[0] == 1  # pipeline uses the one
            cur = con.cursor()  # connection there, one step at a time (airduck.pipeline.locks)
            cur.execute("BEGIN TRANSACTION")
            cur.execute("INSERT INTO lake.airduck.t VALUES ('a', 1)")
            with pytest.raises(Exception, match="database is locked"):
                cur.execute("COMMIT")
            return
        a, b = con.cursor(), con.cursor()
        for cur, key in ((a, "a"), (b, "b")):
            cur.execute("BEGIN TRANSACTION")
            cur.execute("INSERT INTO lake.airduck.t VALUES (?, 1)", [key])
        a.execute("COMMIT")
        b.execute("COMMIT")  # its snapshot is stale, yet it commits: DuckLake retried it on top of a's commit
        assert con.execute("SELECT count(*) FROM lake.airduck.t").fetchone()[0] == 3
        a.execute("BEGIN TRANSACTION")
        a.execute("DELETE FROM lake.airduck.t WHERE k = 'x'")
        b.execute("BEGIN TRANSACTION")
        b.execute("INSERT INTO lake.airduck.t VALUES ('c', 1)")
        a.execute("COMMIT")
        with pytest.raises(Exception) as info:
            b.execute("COMMIT")
        assert is_conflict(info.value), info.value
        assert "Transaction conflict" in str(info.value)
    finally:
        con.close()
