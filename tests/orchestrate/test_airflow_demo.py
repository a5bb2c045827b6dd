"""The demo project's generated DAG, run by real Airflow (`dag.test()`, local mode), leaves the lake exactly as a
plain `airduck run` of an identical project does: on the embedded default and on PostgreSQL + S3."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from airduck.lakehouse import Lakehouse
from tests.conftest import s3_env
from tests.orchestrate.conftest import AIRDUCK, airduck, copy_project

#: airduck's own columns (`_load_id`, `_loaded_at`, `_source_file`, ...) name the run, the time or the project's
#: folder: they differ between any two projects. These of them are compared (the file by its name).
KEPT = {"_row_number": '"_row_number"', "_source_file": "regexp_extract(\"_source_file\", '[^/]+$')",
        "_reason": '"_reason"', "_raw": '"_raw"', "_error": '"_error"',
        "_line_number": '"_line_number"', "_rescued": '"_rescued"'}


def lake_digest(root: Path, env: dict[str, str] | None = None) -> dict[str, tuple[int, int]]:
    """Row count and checksum (over the columns that do not name the run) of every table of the lake."""
    saved = {k: os.environ.get(k) for k in env or {}}
    os.environ.update(env or {})
    try:
        with Lakehouse.open(root) as lh:
            out = {}
            for ref in lh.tables():
                table = f"{ref.schema}.{ref.name}"
                cols = [c for c, in lh.con.execute(
                    "SELECT column_name FROM information_schema.columns WHERE table_catalog = 'lake' AND "
                    "table_schema = ? AND table_name = ? ORDER BY ordinal_position", [ref.schema, ref.name]).fetchall()]
                kept = dict(KEPT, _reasons='"_reasons"')
                if ref.name.endswith("__quarantine"):  # its _raw is the bronze row, with bronze's run columns
                    kept.pop("_raw")
                body = ", ".join(kept.get(c, f'"{c}"') for c in cols if c in kept or not c.startswith("_"))
                out[table] = lh.con.execute(f"SELECT count(*), coalesce(sum(hash(({body}))), 0) FROM {table}"
                                            ).fetchone()
            return out
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def run_dag(root: Path, dags: Path, dag_id: str, env: dict[str, str] | None = None):
    """Generate the project's DAG files into Airflow's DAGs folder, check they import, run the DAG with dag.test()."""
    from airflow.dag_processing.dagbag import DagBag

    airduck("airflow", "dags", "--out", str(dags), cwd=root, env=env)
    bag = DagBag(dag_folder=str(dags / f"{dag_id}.py"))
    assert bag.import_errors == {}, bag.import_errors
    assert {dag_id, f"{dag_id}_maintenance", f"{dag_id}_quality"} <= set(bag.dags)
    dag = bag.dags[dag_id]
    saved = {k: os.environ.get(k) for k in env or {}}
    os.environ.update(env or {})
    try:
        run = dag.test()
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return dag, run


def check_demo_dag(dag, run) -> None:
    states = {ti.task_id: ti.state for ti in run.get_task_instances()}
    assert run.state == "success", states
    assert set(states.values()) == {"success"}, states
    # a task per step, grouped by layer, gold per dbt model, wired by the plan
    assert {"bronze.vacancies", "bronze.companies", "silver.vacancies", "silver.companies",
            "gold.top_growing_skills", "gold.salary_by_skill_city_month", "gold.company_hiring_activity",
            "serve.export_top_growing_skills"} <= set(states)
    assert dag.get_task("gold.company_hiring_activity").upstream_task_ids == {"silver.companies", "silver.vacancies"}
    assert dag.get_task("silver.vacancies").upstream_task_ids == {"bronze.vacancies"}
    outlets = {o.uri for t in dag.tasks for o in t.outlets}
    assert {"airduck://shop/bronze/vacancies", "airduck://shop/silver/companies",
            "airduck://shop/gold/top_growing_skills"} <= outlets


class PlainRun:
    """One plain `airduck run` of the demo on the embedded default, started when first asked for and going on
    meanwhile (its own lake); its lake's digest is what both DAG runs must leave (the digest does not depend on
    where the catalog and the files are)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.proc = subprocess.Popen([*AIRDUCK, "run", "-q"], cwd=root, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True,
                                     env={k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "AIRDUCK_"))})
        self._digest: dict[str, tuple[int, int]] | None = None

    def digest(self) -> dict[str, tuple[int, int]]:
        if self._digest is None:
            out, err = self.proc.communicate(timeout=900)
            assert self.proc.returncode == 0, out + err
            self._digest = lake_digest(self.root)
        return self._digest

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.communicate(timeout=60)


@pytest.fixture(scope="session")
def plain_run(demo_template, tmp_path_factory) -> PlainRun:
    plain = PlainRun(copy_project(demo_template, tmp_path_factory.mktemp("plain") / "shop"))
    yield plain
    plain.stop()


def test_demo_dag_on_the_embedded_default(airflow_dags, demo_template, plain_run, tmp_path):
    dag_root = copy_project(demo_template, tmp_path / "dag", "dag_id: demo_local\nmaintenance: {schedule: '@weekly'}")
    dag, run = run_dag(dag_root, airflow_dags, "demo_local")
    check_demo_dag(dag, run)
    got, want = lake_digest(dag_root), plain_run.digest()
    assert set(got) == set(want) and len(got) >= 10, (sorted(got), sorted(want))
    assert got == want
    assert got["gold.top_growing_skills"][0] > 0 and got["silver.vacancies"][0] > 0
    # every step ran as its own run, through `airduck run --step` semantics
    with Lakehouse.open(dag_root) as lh:
        runs = lh.runs(50)
    assert len(runs) == len(dag.tasks)

    # parse time: with the plan cached, the DAG file builds its DAGs without importing the pipeline
    probe = (
        "import time, sys, runpy; import airflow.sdk, airflow.providers.cncf.kubernetes.operators.pod, "
        "airflow.providers.standard.operators.python; t = time.perf_counter(); "
        f"g = runpy.run_path({str(airflow_dags / 'demo_local.py')!r}); "
        "print(time.perf_counter() - t, 'airduck.lakehouse' in sys.modules, sorted(k for k in g if k.startswith('demo')))")
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=300,
                          env=os.environ.copy())
    assert proc.returncode == 0, proc.stderr
    seconds, imported, dags = proc.stdout.split(" ", 2)
    print(f"DAG file parse (plan cached): {float(seconds):.3f}s")
    assert imported == "False" and "demo_local_quality" in dags
    assert float(seconds) < 5
    # a change of airduck.yml is seen at the next parse (the cache is keyed on the project's files)
    text = (dag_root / "airduck.yml").read_text()
    (dag_root / "airduck.yml").write_text(text.replace("dag_id: demo_local", "dag_id: demo_local\n  tags: [changed]"))
    from airduck.orchestrate.dags import build_dags

    assert build_dags(dag_root, None)["demo_local"].tags >= {"changed"}


def test_demo_dag_on_postgres_and_s3(airflow_dags, demo_template, plain_run, tmp_path, pg_database, s3_server):
    def team_env() -> dict[str, str]:
        prefix = f"s3://{s3_server.bucket}/af-{uuid.uuid4().hex[:10]}"
        return {**s3_env(s3_server), "AIRDUCK_CATALOG": pg_database(), "AIRDUCK_DATA_PATH": f"{prefix}/data/",
                "AIRDUCK_LANDING": f"{prefix}/landing/"}

    dag_root = copy_project(demo_template, tmp_path / "dag", "dag_id: demo_team", env=team_env())
    dag, run = run_dag(dag_root, airflow_dags, "demo_team")
    check_demo_dag(dag, run)
    got, want = lake_digest(dag_root), plain_run.digest()  # the plain run's lake is embedded: same content
    assert got == want and len(got) >= 10
    with Lakehouse.open(dag_root) as lh:
        data_path = lh.con.execute("SELECT value FROM lake.options() WHERE option_name = 'data_path'").fetchone()[0]
    assert data_path.startswith(f"s3://{s3_server.bucket}/")
    # the DAG file and its snapshot hold no secret
    for path in (airflow_dags / "demo_team.py", airflow_dags / "demo_team.plan.json"):
        text = path.read_text()
        assert s3_server.secret_access_key not in text and "AWS_SECRET" not in text
    json.loads((airflow_dags / "demo_team.plan.json").read_text())


def test_atomic_demo_dag_equals_a_plain_run(airflow_dags, demo_template, plain_run, tmp_path):
    """`airflow: {atomic: true}`: the demo's bronze, silver and gold (dbt) run on the DAG run's branch and reach main
    in one merge commit; the export runs after it, from main (protected: a serve step writes no lake table); main
    then equals a plain `airduck run`."""
    from airduck.text import run_branch

    dag_root = copy_project(demo_template, tmp_path / "dag", "dag_id: demo_atomic\natomic: true")
    with (dag_root / "airduck.yml").open("a", encoding="utf-8") as f:  # only merges write to main's tables
        f.write("\nbranches: {protected: [main]}\n")
    dag, run = run_dag(dag_root, airflow_dags, "demo_atomic")
    states = {ti.task_id: ti.state for ti in run.get_task_instances()}
    assert run.state == "success" and set(states.values()) == {"success"}, states
    assert {"branch.create", "branch.audit", "branch.merge", "gold.top_growing_skills",
            "serve.export_top_growing_skills"} <= set(states)
    # the tables reach main with the merge: its task, not the steps on the branch, updates their Assets
    assert not dag.get_task("gold.top_growing_skills").outlets and not dag.get_task("silver.vacancies").outlets
    assert {"airduck://shop/gold/top_growing_skills", "airduck://shop/silver/vacancies"} <= {
        o.uri for o in dag.get_task("branch.merge").outlets}
    assert dag.get_task("serve.export_top_growing_skills").outlets
    assert lake_digest(dag_root) == plain_run.digest()
    with Lakehouse.open(dag_root) as lh:
        assert lh.branches() == []  # merged, deleted
        merges = [s for s in lh.snapshots() if (s.extra_info or {}).get("merge") == run_branch(run.run_id)]
        # every table reached main in that one commit: no other commit on main wrote a table
        writes = [s for s in lh.snapshots() if any(k.startswith(("tables_inserted", "tables_created"))
                                                     for k in s.changes)]
    assert len(merges) == 1 and writes == merges, [(s.snapshot_id, s.message) for s in writes]
