"""The `airflow:` block of airduck.yml: validated with line-precise errors, no secret values allowed in it, and
Airflow is imported only by the DAG factory (the CLI starts without it)."""

from __future__ import annotations

import subprocess
import sys

import pytest
import yaml

from airduck.errors import ConfigError
from airduck.project import load_project


def project(tmp_path, airflow: dict):
    (tmp_path / "airduck.yml").write_text(yaml.safe_dump({"name": "p", "airflow": airflow}, sort_keys=False))
    return tmp_path


def test_airflow_block_loads_and_validates(tmp_path):
    cfg = load_project(project(tmp_path, {"mode": "kubernetes", "kinds": {"gold": {"timeout_minutes": 90}},
                                          "kubernetes": {"secrets": {"AIRDUCK_CATALOG": {"secret": "s", "key": "k"}}}})
                       ).config.airflow
    assert cfg.mode == "kubernetes" and cfg.timeout("gold") == 90 and cfg.timeout("silver") == 60
    assert cfg.resources("gold") == cfg.kubernetes.resources
    with pytest.raises(ConfigError, match=r"airduck.yml:\d+.*mode"):
        load_project(project(tmp_path, {"mode": "docker"}))
    with pytest.raises(ConfigError, match="unknown key"):
        load_project(project(tmp_path, {"kubernetes": {"imagee": "x"}}))
    with pytest.raises(ConfigError, match="not a Kubernetes quantity"):
        load_project(project(tmp_path, {"kubernetes": {"resources": {"limits": {"memory": "lots"}}}}))
    # a secret as a plain value in the DAG is refused: it must be a secretKeyRef
    with pytest.raises(ConfigError, match="looks like a secret"):
        load_project(project(tmp_path, {"kubernetes": {"env": {"MARTS_PASSWORD": "hunter2"}}}))


def test_the_cli_does_not_import_airflow():
    code = "import sys, airduck.cli.app, airduck.project; print(any(m.split('.')[0] == 'airflow' for m in sys.modules))"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == "False", proc.stdout + proc.stderr


def test_airflow_dags_errors_are_one_line(tmp_path):
    """`airduck airflow dags`: outside a project, --out a file, --out that cannot be created: one `error:` line,
    exit 1, no traceback, nothing written."""
    from tests.orchestrate.conftest import airduck

    outside = tmp_path / "outside"
    outside.mkdir()
    proc = airduck("airflow", "dags", "--out", "d", cwd=outside, check=False)
    assert proc.returncode == 1 and "no airduck.yml" in proc.stderr and not (outside / "d").exists()
    root = tmp_path / "p"
    root.mkdir()
    (root / "x.json").write_text('{"id": 1}\n')
    (root / "airduck.yml").write_text(yaml.safe_dump({"name": "p", "sources": {
        "a": {"type": "files", "path": "x.json", "format": "ndjson"}}}))
    (root / "afile").write_text("")
    for out, why in (("afile", "not a folder"), ("afile/sub", "cannot create the folder")):
        proc = airduck("airflow", "dags", "--out", out, cwd=root, check=False)
        assert proc.returncode == 1, proc.stdout + proc.stderr
        lines = [line for line in proc.stderr.splitlines() if line.strip()]
        assert lines[0].startswith("error: --out") and why in lines[0], proc.stderr
    assert not (root / ".airduck" / "airflow" / "plan.json").exists()


def test_atomic_dag_runs_follow_run_atomic(tmp_path):
    """`airflow.atomic` unset: a DAG run is atomic when `run.atomic` is; set, it wins. The branch tasks take
    `kinds: {branch: …}`."""
    from airduck.lakehouse import Lakehouse
    from airduck.orchestrate.files import snapshot_of

    (tmp_path / "a.json").write_text('{"id": 1}\n')
    sources = {"a": {"type": "files", "path": "a.json", "format": "ndjson"}}
    got = {}
    for name, run, airflow in (("plain", {}, {}), ("run", {"atomic": True}, {}),
                               ("off", {"atomic": True}, {"atomic": False}), ("on", {}, {"atomic": True})):
        (tmp_path / "airduck.yml").write_text(yaml.safe_dump({"name": "p", "sources": sources, "run": run,
                                                              "airflow": airflow}))
        with Lakehouse.open(tmp_path) as lh:
            got[name] = snapshot_of(lh)["airflow"]["atomic"]
    assert got == {"plain": False, "run": True, "off": False, "on": True}
    cfg = load_project(project(tmp_path, {"kinds": {"branch": {"timeout_minutes": 5, "retries": 4}}})).config.airflow
    assert cfg.timeout("branch") == 5 and cfg.retries_for("branch") == 4
