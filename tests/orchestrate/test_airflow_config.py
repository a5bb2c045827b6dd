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
