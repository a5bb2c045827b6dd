"""Atomic DAG runs (`airflow: {atomic: true}`) under real Airflow (`dag.test()`, local mode): a first task forks the
run's branch from main, every step writes to it, an audit task runs the `audit:` queries there and a merge task
merges it into main in one commit. Main is unchanged until the merge (a failing audit or gate: unchanged for good,
the branch kept and named); after it main equals a plain `airduck run`; every task of the branch can be retried
(the branch is reused, a merge made already is not made again, also after `kill -9` between the merge's commit
and the branch's delete)."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from airduck.lakehouse import Lakehouse
from airduck.text import run_branch
from tests.orchestrate.conftest import AIRDUCK, airduck
from tests.orchestrate.test_airflow_demo import lake_digest

AUDIT_OK = {"no_negative_v": "SELECT * FROM silver.a WHERE v < 0"}
AUDIT_FAILING = {**AUDIT_OK, "b_small": "SELECT id, v FROM silver.b WHERE v > 10"}


def write_project(root: Path, catalog: str | None, *, audit: dict[str, str], airflow: dict | None = None,
                  gate: bool = False, rows: int = 500, protected: bool = False) -> Path:
    (root / "data").mkdir(parents=True, exist_ok=True)
    for name, mult in (("a", 1), ("b", 2)):
        with (root / "data" / f"{name}.json").open("w") as f:
            f.writelines(f'{{"id": {i}, "v": {i * mult}}}\n' for i in range(rows))
    silver_a: dict = {"from": "a", "key": ["id"], "columns": {"id": {"type": "BIGINT"}, "v": {"type": "BIGINT"}}}
    if gate:  # a gate that fails: every row has v >= 0
        silver_a["expectations"] = [{"name": "v_negative", "check": "v < 0", "on_fail": "fail"}]
    config: dict = {
        "name": "tiny",
        "sources": {"a": {"type": "files", "path": "data/a.json", "format": "ndjson"},
                    "b": {"type": "files", "path": "data/b.json", "format": "ndjson"}},
        "silver": {"a": silver_a,
                   "b": {"from": "b", "key": ["id"], "columns": {"id": {"type": "BIGINT"}, "v": {"type": "BIGINT"}}}},
        "audit": audit,
    }
    if catalog:
        config["lake"] = {"catalog": catalog}
    if airflow is not None:
        config["airflow"] = airflow
    if protected:  # only merges write to main
        config["branches"] = {"protected": ["main"]}
    (root / "airduck.yml").write_text(yaml.safe_dump(config, sort_keys=False))
    return root


def dag_of(root: Path, dags: Path, dag_id: str):
    from airflow.dag_processing.dagbag import DagBag

    airduck("airflow", "dags", "--out", str(dags), cwd=root)
    bag = DagBag(dag_folder=str(dags / f"{dag_id}.py"))
    assert bag.import_errors == {}, bag.import_errors
    return bag.dags[dag_id]


def main_state(root: Path) -> tuple[int, set[str]]:
    with Lakehouse.open(root, branch="main") as lh:
        return lh.current_snapshot(), {f"{t.schema}.{t.name}" for t in lh.tables()}


def count(root: Path, table: str, branch: str) -> int:
    with Lakehouse.open(root, branch=branch) as lh:
        return lh.con.execute(f"SELECT count(*) FROM {table}").fetchone()[0]


@pytest.mark.parametrize("catalog", ["sqlite", "postgres"])
def test_atomic_dag_run_publishes_all_or_nothing(airflow_dags, tmp_path, pg_database, catalog):
    dsn = pg_database() if catalog == "postgres" else None
    dag_id = f"tiny_atomic_{catalog}"
    airflow = {"dag_id": dag_id, "atomic": True, "retries": 2, "retry_delay_seconds": 1,
               "maintenance": {"schedule": None}}
    root = write_project(tmp_path / "p", dsn, audit=AUDIT_FAILING, airflow=airflow, protected=True)
    dag = dag_of(root, airflow_dags, dag_id)
    # the shape: branch.create -> bronze -> silver -> branch.audit -> branch.merge
    assert dag.get_task("bronze.a").upstream_task_ids == {"branch.create"}
    assert dag.get_task("silver.a").upstream_task_ids == {"bronze.a"}
    assert dag.get_task("branch.audit").upstream_task_ids == {"branch.create", "silver.a", "silver.b"}
    assert dag.get_task("branch.merge").upstream_task_ids == {"branch.audit"}
    assert dag.get_task("branch.merge").retries == 2 and dag.get_task("branch.create").retries == 2
    before = main_state(root)

    # 1. the audit fails: every step ran, on the run's branch; main is as it was; the branch is kept
    run = dag.test()
    states = {ti.task_id: ti.state for ti in run.get_task_instances()}
    assert run.state == "failed", states
    assert {t: states[t] for t in ("branch.create", "bronze.a", "bronze.b", "silver.a", "silver.b")} == dict.fromkeys(
        ("branch.create", "bronze.a", "bronze.b", "silver.a", "silver.b"), "success"), states
    assert states["branch.audit"] == "failed" and states["branch.merge"] == "upstream_failed", states
    name = run_branch(run.run_id)
    assert main_state(root) == before  # same snapshot id, no table
    assert count(root, "silver.a", name) == 500 and count(root, "silver.b", name) == 500
    with Lakehouse.open(root) as lh:
        kept = {b.name: b for b in lh.branches()}
    assert name in kept and kept[name].base == "main"
    for rec in (r for r in run.get_task_instances() if r.task_id.startswith(("bronze", "silver"))):
        assert rec.try_number == 1
    # the failure names the branch and what to do with it
    from airflow.sdk.exceptions import AirflowFailException

    audit = dag.get_task("branch.audit")
    kwargs = {"project": str(root), "branch": name, "run_id": run.run_id}
    with pytest.raises(AirflowFailException, match=rf"b_small: more than 5 row\(s\).*branch {name} is kept"):
        audit.python_callable(**kwargs)
    proc = airduck("audit", "--branch", name, cwd=root, check=False)  # the same audit from the CLI
    assert proc.returncode == 1 and "b_small" in proc.stderr, proc.stdout + proc.stderr

    # 2. retries: the audit's data is fixed (the query changed); creating the branch again reuses it, the
    # audit passes, the merge publishes in one commit; a second merge is a no-op
    write_project(root, dsn, audit=AUDIT_OK, airflow=airflow, protected=True)
    assert airduck("run", "--no-atomic", "-q", cwd=root, check=False).returncode == 1  # main: merges only
    create = dag.get_task("branch.create")
    again = create.python_callable(**kwargs)
    assert again["branch"] == name and again["fork_snapshot"] == kept[name].fork_snapshot
    proc = airduck("branch", "create", name, "--if-missing", cwd=root)
    assert count(root, "silver.a", name) == 500
    assert audit.python_callable(**kwargs)["failed"] == []
    assert "returned no rows" in airduck("audit", "--branch", name, cwd=root).stdout
    merge = dag.get_task("branch.merge")
    merged = merge.python_callable(**kwargs)
    assert merged["already"] is False and merged["snapshot_id"] is not None
    assert {"silver.a", "silver.b", "bronze.a", "bronze.b"} <= set(merged["tables"])
    snap_after, tables = main_state(root)
    assert snap_after == merged["snapshot_id"] == before[0] + 1  # one commit on main
    assert {"silver.a", "silver.b"} <= tables
    with Lakehouse.open(root) as lh:
        assert name not in {b.name for b in lh.branches()}  # merged: deleted
        message = lh.snapshots()[-1]
    assert name in message.message and message.extra_info["airflow_run"] == run.run_id
    again = merge.python_callable(**kwargs)  # a retry of the merge task
    assert again["already"] is True and again["snapshot_id"] == snap_after
    proc = airduck("merge", name, "--into", "main", "--delete", cwd=root)  # the pod's command, the same
    assert "merged into main already" in proc.stdout
    assert main_state(root)[0] == snap_after

    # main now equals what a plain run of the same project gives
    plain = write_project(tmp_path / "plain", pg_database() if catalog == "postgres" else None, audit=AUDIT_OK)
    airduck("run", "-q", cwd=plain)
    assert lake_digest(root) == lake_digest(plain)

    # 3. a whole DAG run with nothing new: its branch merges nothing and goes; main unchanged
    dag = dag_of(root, airflow_dags, dag_id)
    run2 = dag.test()
    assert run2.state == "success", {ti.task_id: ti.state for ti in run2.get_task_instances()}
    assert main_state(root)[0] == snap_after
    with Lakehouse.open(root) as lh:
        assert lh.branches() == []


def test_failing_gate_keeps_main_and_names_the_branch(airflow_dags, tmp_path):
    from airflow.sdk.exceptions import AirflowFailException

    root = write_project(tmp_path / "p", None, audit=AUDIT_OK, gate=True,
                         airflow={"dag_id": "tiny_atomic_gate", "atomic": True, "maintenance": {"schedule": None}})
    dag = dag_of(root, airflow_dags, "tiny_atomic_gate")
    before = main_state(root)
    run = dag.test()
    tis = {ti.task_id: ti for ti in run.get_task_instances()}
    assert run.state == "failed"
    assert tis["silver.a"].state == "failed" and tis["silver.a"].try_number == 1  # a gate: not retried
    assert tis["silver.b"].state == "success"
    assert tis["branch.audit"].state == tis["branch.merge"].state == "upstream_failed"
    name = run_branch(run.run_id)
    assert main_state(root) == before
    assert count(root, "silver.b", name) == 500  # what the run did is on its branch
    step = dag.get_task("silver.a")
    with pytest.raises(AirflowFailException, match=rf"v_negative.*nothing was merged, the run's branch {name} is kept"):
        step.python_callable(project=str(root), step="silver:a", branch=name)
    assert main_state(root) == before
    with Lakehouse.open(root) as lh:
        assert name in {b.name for b in lh.branches()}


def test_merge_killed_after_its_commit_is_finished_by_the_retry(tmp_path):
    """`kill -9` of the merge task's process between the merge commit and the branch's delete: main has the merge,
    the branch is still there; the retried task merges nothing again and deletes the branch."""
    from airduck.orchestrate.dags import merge_branch

    root = write_project(tmp_path / "p", None, audit=AUDIT_OK)
    name = run_branch("manual__2026-12-02T10:00:00.123456+00:00")
    assert name == "run-manual__2026-12-02t10-00-00-123456-00-00"
    airduck("branch", "create", name, "--if-missing", cwd=root)
    airduck("run", "--no-atomic", "-q", "--branch", name, cwd=root)
    marker = tmp_path / "failpoint"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRDUCK_", "AWS_"))}
    env.update(AIRDUCK_FAILPOINT="merge:after-commit", AIRDUCK_FAILPOINT_FILE=str(marker))
    proc = subprocess.Popen([*AIRDUCK, "merge", name, "--delete"], cwd=root, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 300
        while not marker.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert marker.exists(), proc.communicate(timeout=10)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=60)
    snap, tables = main_state(root)
    assert "silver.a" in tables  # the merge committed
    with Lakehouse.open(root) as lh:
        assert name in {b.name for b in lh.branches()}  # killed before the delete
    out = merge_branch(str(root), name, "manual__2026-12-02T10:00:00.123456+00:00")
    assert out["already"] is True and out["snapshot_id"] == snap
    assert main_state(root)[0] == snap
    with Lakehouse.open(root) as lh:
        assert lh.branches() == []
    # a branch that never merged and is gone is not taken for merged
    with pytest.raises(Exception, match="no merge of it"):
        merge_branch(str(root), "run-nosuch", "x")


def test_the_cli_pieces_have_help(tmp_path):
    for args, option in ((("audit",), "--branch"), (("branch", "create"), "--if-missing"),
                         (("merge",), "--delete")):
        proc = airduck(*args, "--help", cwd=tmp_path)
        assert option in proc.stdout, proc.stdout


def test_run_branch_names():
    assert run_branch("scheduled__2026-12-01T00:00:00+00:00") == "run-scheduled__2026-12-01t00-00-00-00-00"
    long = "manual__" + "x" * 80
    name = run_branch(long)
    assert len(name) == 48 and name != run_branch(long + "y") and name == run_branch(long)
    from airduck.lake.branches import check_name

    for rid in ("A:B", "--", "manual__2026-12-02T13:42:10.123456+00:00", "ünïcode run", long):
        assert check_name(run_branch(rid))
