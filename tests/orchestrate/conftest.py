"""Real Airflow for the orchestrate tests: one AIRFLOW_HOME (SQLite metadata DB, a DAGs folder) per test session.

Airflow reads its settings when first imported, so they are set here, before any test module imports it; the
database is migrated once per session (`airflow db migrate`, ~30 s). `dag.test()` runs a DAG in this process
from the DAGs folder (the DAG must be in Airflow's bundle: write DAG files into `airflow_dags`).
"""

from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

HOME = Path(tempfile.mkdtemp(prefix="airduck-airflow-"))
DAGS = HOME / "dags"
DAGS.mkdir()
atexit.register(shutil.rmtree, HOME, ignore_errors=True)  # also when no test asked for the database
os.environ.update({
    "AIRFLOW_HOME": str(HOME),
    "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS),
    "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
    "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{HOME / 'airflow.db'}",
    "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",
})
ROOT = Path(__file__).resolve().parents[2]
AIRDUCK = [sys.executable, "-m", "airduck"]


@pytest.fixture(scope="session")
def airflow_dags() -> Path:
    """Airflow's DAGs folder, with its metadata database migrated (once per session)."""
    proc = subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], capture_output=True, text=True,
                          timeout=600, env=os.environ.copy())
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return DAGS


def airduck(*args: str, cwd: Path, env: dict[str, str] | None = None, timeout: int = 600,
            check: bool = True) -> subprocess.CompletedProcess:
    full = {k: v for k, v in os.environ.items() if not k.startswith(("AIRDUCK_", "AWS_", "DEMO_"))}
    full.update(env or {})
    full["COLUMNS"] = "160"
    proc = subprocess.run([*AIRDUCK, *args], capture_output=True, text=True, cwd=cwd, env=full, timeout=timeout)
    assert "Traceback" not in proc.stderr, proc.stderr
    if check:
        assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


@pytest.fixture(scope="session")
def demo_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo project (one day of data), planned once (dbt's graph cached in it): tests copy it."""
    base = tmp_path_factory.mktemp("demo")
    airduck("init", "shop", "--demo", "--days", "1", cwd=base)
    root = base / "shop"
    airduck("plan", "--json", cwd=root)  # dbt parse once; the graph cache is path-independent
    return root


def copy_project(template: Path, dest: Path, airflow: str = "", env: dict[str, str] | None = None) -> Path:
    """A copy of a project with an `airflow:` block appended to its airduck.yml and a .env."""
    shutil.copytree(template, dest, ignore=shutil.ignore_patterns("plan.json"))
    if airflow:
        with (dest / "airduck.yml").open("a", encoding="utf-8") as f:
            f.write("\nairflow:\n" + "".join(f"  {line}\n" for line in airflow.strip().splitlines()))
    if env:
        (dest / ".env").write_text("".join(f"{k}={v}\n" for k, v in env.items()), encoding="utf-8")
    return dest
