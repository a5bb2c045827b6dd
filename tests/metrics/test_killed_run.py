"""A run killed with kill -9 sends no alert itself: the later run that finds it dead and marks it `killed` sends
the `run_failed` alert for it (status killed), once; and the metrics count it as `killed`. The webhook receiver is
real, on loopback; the killed run is a real `airduck run` subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
import threading

import pytest
from prometheus_client.parser import text_string_to_metric_families

from airduck.lakehouse import Lakehouse
from airduck.pipeline import records
from tests.conftest import ProjectFactory
from tests.integration.test_pipeline_runs import kill_at_failpoint, orders_config, write_orders

TOKEN = "T0KILL-9f8e7d6c5b4a-hooksecret"


def samples(path) -> dict[tuple[str, tuple], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for f in text_string_to_metric_families(path.read_text()) for s in f.samples}


def test_the_run_that_finds_a_killed_run_alerts_once_and_counts_it_killed(local_projects, receiver, tmp_path):
    root = local_projects.make({
        **orders_config(),
        # a generous timeout: a retry after an answer slow on a loaded machine would alert twice
        "alerts": {"backoff": 0.01, "timeout": 60, "webhooks": [
            {"url": f"{receiver.url}/generic/{TOKEN}", "format": "generic"},
            {"url": f"{receiver.url}/slack/services/T000/B000/{TOKEN}", "format": "slack"},
            {"url": f"{receiver.url}/stale-only/{TOKEN}", "format": "slack", "on": ["stale"]},
        ]},
        "metrics": {"textfile": "metrics/airduck.prom"},
    })
    write_orders(root, "day1.csv", 0, 2000)
    receiver.reset()
    kill_at_failpoint(root, "before-commit:ingest:orders", tmp_path / "failpoint.txt", timeout=120)
    assert receiver.requests == []  # the killed process sent nothing
    with Lakehouse.open(root) as lh:
        (killed,) = lh.runs()
        assert killed.status == "running"  # nobody has noticed yet
        assert lh.run().ok
        marked = lh.run_info(killed.run_id)
        assert marked.status == "killed"
    # exactly one alert per webhook that wants run_failed, for the killed run
    assert [r.path.split("/")[1] for r in receiver.requests] == ["generic", "slack"]
    generic, slack = (json.loads(r.body) for r in receiver.requests)
    assert generic["kind"] == "run_failed" and generic["run_id"] == killed.run_id and generic["project"] == "test"
    assert generic["title"] == "airduck test: run failed (killed)"
    assert generic["details"]["status"] == "killed"
    assert generic["details"]["error"] == marked.error and "the process ended before the run finished" in marked.error
    assert killed.run_id in slack["text"] and marked.error in slack["text"]
    assert slack["text"].startswith("airduck test: run failed (killed)\n")
    raw = b"".join(r.body for r in receiver.requests).decode()
    assert TOKEN not in raw and "services/T000" not in raw
    # the metrics of the run that found it count it as killed (and no longer as running)
    metrics = samples(root / "metrics" / "airduck.prom")
    assert metrics[("airduck_runs", (("status", "killed"),))] == 1
    assert metrics[("airduck_runs", (("status", "running"),))] == 0
    assert metrics[("airduck_runs", (("status", "ok"),))] == 1
    # a second open (and run) finds nothing new to mark: no alert again
    receiver.reset()
    with Lakehouse.open(root) as lh:
        assert lh.run().ok
        assert [r.status for r in lh.runs()].count("killed") == 1
    assert receiver.requests == []
    # nor does a run in another process
    out = subprocess.run([sys.executable, "-m", "airduck", "-p", str(root), "run", "-q"], capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert receiver.requests == []


@pytest.mark.parametrize("combo", ["sqlite-local", "pg-local"])
def test_of_two_finding_the_same_dead_run_at_once_exactly_one_marks_it(combo, tmp_path, request):
    root = ProjectFactory(combo, tmp_path, request).make(orders_config())
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    with Lakehouse.open(root) as lh:
        con = lh.con
        rec = records.RunRecord(run_id="20261202-dead-run", status="running",
                                started_at=records.datetime.now(records.UTC), pid=gone.pid)
        records.RecordStore(lh.project).add(rec)
        barrier = threading.Barrier(4, timeout=300)  # bounded: a thread failing early must not hang the rest
        found: list[list[records.RunRecord]] = []
        lock = threading.Lock()

        errors: list[BaseException] = []

        def find() -> None:
            store, cur = records.RecordStore(lh.project), con.cursor()  # its own record connection and cursor
            try:
                store.list(1)  # its record tables checked (the DDL of a first use) before the race
                barrier.wait()
                dead = records.mark_dead_runs(store, cur)
            except BaseException as exc:
                errors.append(exc)
                barrier.abort()  # the others stop waiting for this one
                raise
            with lock:
                found.append(dead)

        threads = [threading.Thread(target=find) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(300)
        assert not errors and len(found) == 4, errors
        assert sorted(len(d) for d in found) == [0, 0, 0, 1]  # one of them marked it (and would alert)
        assert records.RecordStore(lh.project).get(rec.run_id).status == "killed"
        store = records.RecordStore(lh.project)
        with store._conn() as cur:
            cur.execute(store._sql("SELECT status FROM airduck_runs WHERE run_id = ?"), [rec.run_id])
            assert sorted(r[0] for r in cur.fetchall()) == ["killed", "running"]
        assert records.mark_dead_runs(store, con) == []  # and nobody marks it again later


def test_a_finder_waits_for_one_marking_the_run_and_then_leaves_it(tmp_path, request):
    """PostgreSQL, deterministic: while one transaction marks the dead run (the run's advisory lock held, its
    `killed` row not committed yet), a second finder waits on that lock, then sees `killed` and records nothing."""
    import psycopg

    root = ProjectFactory("pg-local", tmp_path, request).make(orders_config())
    with Lakehouse.open(root) as lh:
        store = records.RecordStore(lh.project)
    rec = records.RunRecord(run_id="20261202-dead-run-2", status="running",
                            started_at=records.datetime.now(records.UTC), pid=1)
    store.add(rec)
    killed = records.RunRecord(**{**rec.__dict__, "status": "killed", "error": "killed"})
    result: list[bool] = []
    with psycopg.connect(store.target) as first:  # the one that got there first, mid-marking
        first.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", ["airduck_runs:" + rec.run_id])
        store._insert_run(first.cursor(), killed)
        second = threading.Thread(target=lambda: result.append(store.add_if_running(killed)))  # tables exist
        second.start()
        waiting = 0
        for _ in range(600):  # until the second finder waits on the run's lock (at most 60 s)
            waiting = first.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
                                    ).fetchone()[0]
            if waiting:
                break
            second.join(0.1)
        assert waiting == 1, "the second finder did not wait for the first one's marking"
        first.commit()
    second.join(60)
    assert result == [False]
    with store._conn() as cur:
        cur.execute(store._sql("SELECT status FROM airduck_runs WHERE run_id = ?"), [rec.run_id])
        assert sorted(r[0] for r in cur.fetchall()) == ["killed", "running"]
