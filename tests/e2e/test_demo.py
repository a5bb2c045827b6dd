"""The demo end to end, as the README's first command runs it, on the embedded default and on PostgreSQL + S3."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from airduck.cli.invocation import command, command_prefix
from airduck.lakehouse import Lakehouse
from tests.conftest import s3_env

AIRDUCK = [sys.executable, "-m", "airduck"]
ROOT = Path(__file__).resolve().parents[2]
MARTS = ("gold.company_hiring_activity", "gold.salary_by_skill_city_month", "gold.top_growing_skills")


def airduck(*args: str, cwd: Path, env: dict[str, str] | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRDUCK_", "AWS_", "DEMO_"))}
    full_env.update(env or {})
    full_env["COLUMNS"] = "160"
    proc = subprocess.run([*AIRDUCK, *args], capture_output=True, text=True, cwd=cwd, env=full_env, timeout=timeout)
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


def counts(root: Path, tables: list[str]) -> dict[str, int]:
    with Lakehouse.open(root) as lh:
        return {t: lh.con.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in tables}


def hints(stdout: str) -> list[list[str]]:
    """The commands under "Where to look", as words."""
    lines = stdout.split("Where to look", 1)[1].splitlines()[1:]
    return [shlex.split(line.split("   #")[0]) for line in lines if " airduck " in f" {line} " or "-m airduck" in line]


def test_demo_on_the_embedded_default(tmp_path):
    proc = airduck("demo", "shop", "-q", cwd=tmp_path)  # `airduck demo [DIR]`, as the README says
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Where to look" in proc.stdout and "head gold." in proc.stdout
    root = tmp_path / "shop"
    # the hints work as printed, from where the demo was started
    printed = hints(proc.stdout)
    assert any(words[-3:-2] == ["tables"] for words in printed), printed
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRDUCK_", "AWS_", "DEMO_"))}
    for words in printed:
        if "tables" in words or "show" in words:
            done = subprocess.run(words, capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120)
            assert done.returncode == 0 and ("vacancies" in done.stdout or "run " in done.stdout), (words, done)
    # as after `python3 -m uv run airduck demo` in another folder: the uv form, told where the project is
    # `python3` as the user's shell finds it (the interpreter uv was installed into), not this venv's python
    user_env = {**env, "PATH": f"{Path(sys._base_executable).parent}{os.pathsep}{env.get('PATH', '')}"}
    user_env.pop("VIRTUAL_ENV", None)
    uv = subprocess.run(["python3", "-m", "uv", "run", "--frozen", "--project", str(ROOT), "python", "-c",
                         "import json, os; print(json.dumps(dict(os.environ)))"], capture_output=True, text=True,
                        cwd=tmp_path, env=user_env, timeout=120)
    assert uv.returncode == 0, uv.stderr
    uv_env = json.loads(uv.stdout)
    prefix = command_prefix(tmp_path, uv_env, str(Path(uv_env["VIRTUAL_ENV"]) / "bin" / "airduck"))
    assert prefix[:4] == ["python3", "-m", "uv", "run"] and prefix[-1] == "airduck"
    done = subprocess.run(shlex.split(command("tables", "-p", "shop", prefix=prefix)), capture_output=True, text=True,
                          cwd=tmp_path, env=user_env, timeout=120)
    assert done.returncode == 0 and "vacancies" in done.stdout, done.stderr
    with Lakehouse.open(root) as lh:
        tables = {t.qualified for t in lh.tables()}
        assert set(MARTS) <= tables
        assert {"bronze.vacancies", "silver.vacancies", "silver.companies", "silver.vacancies__quarantine"} <= tables
        for mart in MARTS:
            assert lh.describe(mart).row_count > 0, mart
        quarantined = lh.con.execute("SELECT count(*) FROM silver.vacancies__quarantine").fetchone()[0]
        assert quarantined > 0  # the generator's bad rows are held back with reasons
        rejects = lh.con.execute("SELECT count(*) FROM bronze.vacancies__rejects").fetchone()[0]
        assert rejects > 0  # broken JSON lines are kept with their raw text
        scd2 = lh.con.execute("SELECT count(*) FROM silver.companies WHERE NOT is_current").fetchone()[0]
        assert scd2 > 0  # companies changed over the days: history kept
        run = lh.runs(1)[0]
        assert run.status == "warned" and run.artifacts.get("manifest")  # the demo's messy rows are warnings
        assert Path(run.artifacts["manifest"]).is_file()
    exports = root / "exports"
    assert any(exports.rglob("manifest.json")), "Parquet export missing"

    watched = ["bronze.vacancies", "silver.vacancies", "silver.companies", *MARTS]
    before = counts(root, watched)
    with Lakehouse.open(root) as lh:
        silver_snaps = len(lh.snapshots("silver.vacancies"))
    # a second run with no new data adds nothing
    proc = airduck("run", "-q", "--json", cwd=root)
    assert proc.returncode == 0, proc.stderr
    rec = json.loads(proc.stdout)
    assert sum(s["rows_out"] for s in rec["steps"] if s["layer"] == "bronze") == 0
    assert rec["snapshot_before"] == rec["snapshot_after"]  # not even a snapshot (gold is not rebuilt)
    assert counts(root, watched) == before
    with Lakehouse.open(root) as lh:
        assert len(lh.snapshots("silver.vacancies")) == silver_snaps
    # new days are picked up incrementally
    proc = airduck("demo", "generate", "--days", "2", cwd=root)
    assert proc.returncode == 0, proc.stderr
    proc = airduck("run", "-q", "--json", cwd=root)
    assert proc.returncode == 0, proc.stderr
    rec = json.loads(proc.stdout)
    bronze_files = sum(s["files"] for s in rec["steps"] if s["table_name"] == "bronze.vacancies")
    assert bronze_files == 2
    after = counts(root, watched)
    assert after["bronze.vacancies"] > before["bronze.vacancies"]

    # the notebook explores the marts through the Python API, headless
    nb = subprocess.run([sys.executable, str(ROOT / "notebooks" / "explore_gold.py")], capture_output=True,
                        text=True, env={**os.environ, "AIRDUCK_PROJECT": str(root)}, timeout=300)
    assert nb.returncode == 0, nb.stdout + nb.stderr


def test_demo_on_postgres_and_s3(tmp_path, pg_database, s3_server):
    catalog, source, serve = pg_database(), pg_database(), pg_database()
    prefix = f"s3://{s3_server.bucket}/demo-{tmp_path.name}"
    env = {**s3_env(s3_server), "AIRDUCK_CATALOG": catalog, "AIRDUCK_DATA_PATH": f"{prefix}/data/",
           "AIRDUCK_LANDING": f"{prefix}/landing/"}
    proc = airduck("init", "shop", "--demo", "--days", "5", "--source-dsn", source, "--serve-dsn", serve,
                   cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr
    root = tmp_path / "shop"
    assert airduck("setup", cwd=root, env=env).returncode == 0
    proc = airduck("run", "-q", cwd=root, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    os.environ.update(env)
    try:
        with Lakehouse.open(root) as lh:
            assert lh.project.config.sources["companies"].type == "postgres"
            gold = {m: lh.con.execute(f"SELECT count(*), sum(hash(t)) FROM (SELECT * FROM {m}) t").fetchone()
                    for m in MARTS}
            files = lh.con.execute(
                "SELECT count(*) FROM ducklake_list_files('lake', 'vacancies', schema => 'silver')").fetchone()[0]
            data_path = lh.con.execute("SELECT value FROM lake.options() WHERE option_name = 'data_path'").fetchone()[0]
            assert data_path.startswith("s3://") and files > 0
    finally:
        for k in env:
            os.environ.pop(k, None)
    with psycopg.connect(serve) as conn:
        for mart, (n, _h) in gold.items():
            name = mart.split(".")[1]
            assert conn.execute(f'SELECT count(*) FROM public."{name}"').fetchone()[0] == n, mart


def test_failing_dbt_test_blocks_publishing(tmp_path, pg_database):
    serve = pg_database()
    proc = airduck("init", "shop", "--demo", "--days", "3", "--serve-dsn", serve, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    root = tmp_path / "shop"
    assert airduck("run", "-q", cwd=root).returncode == 0
    with psycopg.connect(serve) as conn:
        served = conn.execute('SELECT count(*) FROM public."top_growing_skills"').fetchone()[0]
    exports_before = sorted(str(p) for p in (root / "exports").rglob("manifest.json"))
    # a dbt test of severity error that fails: its model is not published, nor what reads it
    failing = root / "gold" / "tests" / "no_rows_allowed.sql"
    failing.parent.mkdir(parents=True, exist_ok=True)
    failing.write_text("select * from {{ ref('top_growing_skills') }}\n")
    airduck("demo", "generate", "--days", "2", cwd=root)
    layers = ["bronze.vacancies", "silver.vacancies", "silver.companies", "airduck.bronze_files"]
    with Lakehouse.open(root) as lh:
        gold_before = lh.con.execute("SELECT count(*), sum(hash(t)) FROM (SELECT * FROM gold.top_growing_skills) t"
                                     ).fetchone()
        sums = {t: lh.con.execute(f"SELECT count(*), sum(hash(t)) FROM (SELECT * FROM {t}) t").fetchone()
                for t in layers}
    proc = airduck("run", "-q", cwd=root)
    assert proc.returncode == 1 and "no_rows_allowed" in proc.stderr
    with Lakehouse.open(root) as lh:
        assert lh.con.execute("SELECT count(*), sum(hash(t)) FROM (SELECT * FROM gold.top_growing_skills) t"
                              ).fetchone() == gold_before
        # each step commits on its own (issue 10; gold.on_failure: revert is gone): the new days are in bronze and
        # silver, as committed by their steps; only gold (and serving) stayed as they were
        after = {t: lh.con.execute(f"SELECT count(*), sum(hash(t)) FROM (SELECT * FROM {t}) t").fetchone()
                 for t in layers}
        assert after["bronze.vacancies"][0] > sums["bronze.vacancies"][0]
        failed = lh.run_info(lh.runs(1)[0].run_id)
        assert failed.status == "failed"
        by_step = {s["step_id"]: s["status"] for s in failed.steps if s["step_id"]}
        assert by_step["ingest:vacancies"] == "ok" and by_step["silver:vacancies"] in ("ok", "warn"), by_step
        # gold is published per model: the model whose test failed keeps its table, the others are published
        assert by_step["gold:top_growing_skills"] == "failed", by_step
        assert {v for k, v in by_step.items() if k.startswith("gold:") and k != "gold:top_growing_skills"} <= {
            "ok", "warn"}, by_step
        assert by_step["export:top_growing_skills"] == "upstream failed", by_step
        assert by_step["serve:top_growing_skills"] == "upstream failed", by_step
        assert {v for k, v in by_step.items() if k.startswith("export:") and "top_growing" not in k} == {"ok"}
    with psycopg.connect(serve) as conn:
        assert conn.execute('SELECT count(*) FROM public."top_growing_skills"').fetchone()[0] == served
    assert [p for p in sorted(str(p) for p in (root / "exports").rglob("manifest.json")) if "top_growing" in p] == [
        p for p in exports_before if "top_growing" in p]
    # the same failing dbt test in an atomic run: none of the run (bronze, silver or gold) reaches main
    airduck("demo", "generate", "--days", "1", cwd=root)
    every = [*layers, "gold.top_growing_skills"]
    with Lakehouse.open(root) as lh:
        main_snap = lh.current_snapshot()
        before_atomic = {t: lh.con.execute(f"SELECT count(*), sum(hash(t)) FROM (SELECT * FROM {t}) t").fetchone()
                         for t in every}
    proc = airduck("run", "--atomic", "-q", cwd=root)
    assert proc.returncode == 1 and "no_rows_allowed" in proc.stderr and "is kept" in proc.stderr, proc.stderr
    with Lakehouse.open(root) as lh:
        assert lh.current_snapshot() == main_snap
        assert {t: lh.con.execute(f"SELECT count(*), sum(hash(t)) FROM (SELECT * FROM {t}) t").fetchone()
                for t in every} == before_atomic
        [kept] = lh.branches()
        assert kept.name in proc.stderr
        with Lakehouse.open(root, branch=kept.name) as b:  # the new day is on the kept branch, for inspection
            assert b.con.execute("SELECT count(*) FROM bronze.vacancies").fetchone()[0] > before_atomic[
                "bronze.vacancies"][0]
        lh.delete_branch(kept.name)
    # once the test is fixed, the next run publishes gold from the silver the failed run committed
    failing.unlink()
    proc = airduck("run", "-q", "--json", cwd=root)
    assert proc.returncode == 0, proc.stderr
    rec = json.loads(proc.stdout)
    # only the day the failed atomic run read: nothing of that run reached main, so main ingests it now
    assert sum(s["files"] for s in rec["steps"] if s["table_name"] == "bronze.vacancies") == 1
    assert {s["status"] for s in rec["steps"] if (s["step_id"] or "").startswith("gold:")} <= {"ok", "warn"}


@pytest.mark.parametrize("cmd", ["init", "demo", "run", "runs", "docs", "doctor", "setup"])
def test_help(cmd, tmp_path):
    proc = airduck(cmd, "--help", cwd=tmp_path)
    assert proc.returncode == 0 and "Usage" in proc.stdout
