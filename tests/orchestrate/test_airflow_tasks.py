"""The generated DAG's tasks under real Airflow (local mode), on a small project with a PostgreSQL catalog: a
failing gate fails its task at once (no retry) and its downstream tasks do not run while the others finish;
independent source tasks run and commit at the same time; the maintenance and data-quality DAGs run."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest
import yaml

from airduck.lakehouse import Lakehouse
from tests.orchestrate.conftest import airduck


def write_project(root: Path, catalog: str, dag_id: str, rows: int = 3000) -> Path:
    (root / "data").mkdir(parents=True)
    for name, mult in (("a", 1), ("b", 2)):
        with (root / "data" / f"{name}.json").open("w") as f:
            for i in range(rows):
                f.write(json.dumps({"id": i, "v": i * mult, "s": f"row {i}"}) + "\n")
    config = {
        "name": "tiny",
        "lake": {"catalog": catalog},
        "sources": {"a": {"type": "files", "path": "data/a.json", "format": "ndjson"},
                    "b": {"type": "files", "path": "data/b.json", "format": "ndjson"}},
        "silver": {
            # a gate that fails: every row has v >= 0
            "a": {"from": "a", "key": ["id"], "columns": {"id": {"type": "BIGINT"}, "v": {"type": "BIGINT"}},
                  "expectations": [{"name": "v_negative", "check": "v < 0", "on_fail": "fail"}]},
            "a_top": {"from": "silver.a", "key": ["id"], "columns": {"id": {"type": "BIGINT"}, "v": {"type": "BIGINT"}}},
            "b": {"from": "b", "key": ["id"], "columns": {"id": {"type": "BIGINT"}, "v": {"type": "BIGINT"}}},
        },
        "airflow": {"dag_id": dag_id, "retries": 3, "retry_delay_seconds": 1, "deadline_minutes": 30,
                    "maintenance": {"schedule": None}},
    }
    (root / "airduck.yml").write_text(yaml.safe_dump(config, sort_keys=False))
    return root


def test_gate_concurrency_maintenance_quality(airflow_dags, tmp_path, pg_database):
    from airflow.dag_processing.dagbag import DagBag
    from airflow.sdk.exceptions import AirflowFailException

    root = write_project(tmp_path / "p", pg_database(), "tiny_gate")
    airduck("airflow", "dags", "--out", str(airflow_dags), cwd=root)
    bag = DagBag(dag_folder=str(airflow_dags / "tiny_gate.py"))
    assert bag.import_errors == {}
    dag = bag.dags["tiny_gate"]
    assert dag.deadline and dag.deadline[0].interval.total_seconds() == 30 * 60
    assert not bag.dags["tiny_gate_maintenance"].deadline  # the deadline is the pipeline's
    assert dag.get_task("silver.a").retries == 3

    # independent source tasks: no path between them, and their callables run and commit at once
    assert "bronze.b" not in dag.get_task("bronze.a").get_flat_relative_ids(upstream=False)
    assert "bronze.a" not in dag.get_task("bronze.b").get_flat_relative_ids(upstream=False)
    spans: dict[str, tuple[float, float, dict]] = {}
    start = threading.Barrier(2)

    def run(task_id: str) -> None:
        task = dag.get_task(task_id)
        start.wait(timeout=60)
        began = time.monotonic()
        out = task.python_callable(**task.op_kwargs)
        spans[task_id] = (began, time.monotonic(), out)

    threads = [threading.Thread(target=run, args=(t,)) for t in ("bronze.a", "bronze.b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert set(spans) == {"bronze.a", "bronze.b"}, spans
    (a0, a1, ra), (b0, b1, rb) = spans["bronze.a"], spans["bronze.b"]
    assert max(a0, b0) < min(a1, b1), spans  # the two tasks overlapped in time
    assert ra["status"] == rb["status"] == "ok" and ra["run_id"] != rb["run_id"]
    with Lakehouse.open(root) as lh:
        assert lh.con.execute("SELECT count(*) FROM bronze.a").fetchone()[0] == 3000
        assert lh.con.execute("SELECT count(*) FROM bronze.b").fetchone()[0] == 3000
        # each committed its own snapshot (made while the other task was running)
        snap_a, snap_b = lh.snapshots("bronze.a")[-1], lh.snapshots("bronze.b")[-1]
    assert snap_a.snapshot_id != snap_b.snapshot_id

    # the whole DAG: the gate fails silver.a once (no retry although retries=3), silver.a_top never runs,
    # the independent branch finishes
    run_ = dag.test()
    tis = {ti.task_id: ti for ti in run_.get_task_instances()}
    assert run_.state == "failed"
    assert tis["silver.a"].state == "failed" and tis["silver.a"].try_number == 1
    assert tis["silver.a_top"].state == "upstream_failed"
    assert tis["silver.b"].state == "success" and tis["bronze.a"].state == "success"
    with Lakehouse.open(root) as lh:
        tables = {f"{t.schema}.{t.name}" for t in lh.tables()}
        assert "silver.b" in tables and "silver.a" not in tables and "silver.a_top" not in tables

    # the quality DAG: silver.a's gate failed (a terminal failure), silver.b passes
    quality = bag.dags["tiny_gate_quality"]
    check = quality.get_task("silver_a")
    with pytest.raises(AirflowFailException, match="v_negative"):
        check.python_callable(**check.op_kwargs)
    ok = quality.get_task("silver_b")
    assert ok.python_callable(**ok.op_kwargs)["gates_failed"] == []
    fresh = quality.get_task("freshness")  # no `freshness:` policy here: nothing is stale
    assert "error" not in (fresh.python_callable(**fresh.op_kwargs).get("status") or {})
    assert {a.uri for a in quality.timetable.asset_condition.objects} >= {"airduck://tiny/silver/a",
                                                                            "airduck://tiny/silver/b"}

    # the maintenance DAG runs flush -> merge -> expire -> cleanup
    maint = bag.dags["tiny_gate_maintenance"]
    assert [t.task_id for t in maint.topological_sort()] == ["flush", "merge", "expire", "cleanup"]
    mrun = maint.test()
    assert mrun.state == "success", {ti.task_id: ti.state for ti in mrun.get_task_instances()}


def test_dag_file_follows_airduck_project_dir(tmp_path):
    """The DAG file is generated where the project is checked out (a laptop, CI) and parsed where it is mounted
    (compose: /project, the Airflow chart: the git-sync folder), which AIRDUCK_PROJECT_DIR names: the tasks must
    run the mounted project, not the path the file was generated at."""
    import os
    import shutil
    import subprocess
    import sys

    built = tmp_path / "checkout" / "tiny"
    built.mkdir(parents=True)
    (built / "data").mkdir()
    (built / "data" / "a.json").write_text('{"id": 1}\n')
    (built / "airduck.yml").write_text(yaml.safe_dump({
        "name": "tiny", "sources": {"a": {"type": "files", "path": "data/a.json", "format": "ndjson"}},
        "airflow": {"dag_id": "tiny_moved"}}, sort_keys=False))
    out = tmp_path / "dags"
    airduck("airflow", "dags", "--out", str(out), cwd=built)
    mounted = tmp_path / "mnt" / "project"
    shutil.copytree(built, mounted)
    shutil.rmtree(built)  # the checkout is gone where Airflow parses the file
    shutil.rmtree(mounted / ".airduck")  # and the mounted one has no plan cache: the snapshot beside the file serves
    dag_file = str(out / "tiny_moved.py")
    probe = (f"import runpy, json; g = runpy.run_path({dag_file!r}); d = g['tiny_moved']; "
             "import sys; assert 'airduck.lakehouse' not in sys.modules, 'planned again'; "
             "print(json.dumps(sorted({t.op_kwargs['project'] for t in d.tasks})))")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRDUCK_")}
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=300,
                          env={**env, "AIRDUCK_PROJECT_DIR": str(mounted)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == [str(mounted.resolve())]
