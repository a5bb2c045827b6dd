""".github/workflows: tests on push (through .ci/run), the image built and pushed on version tags, the DAG import
check. They cannot run here; this checks that they are wired to the right files and commands. (actionlint was
run on them by hand: see the README's Deploy section.)"""

from __future__ import annotations

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = ROOT / ".github" / "workflows"


def load(name: str) -> dict:
    doc = yaml.safe_load((WORKFLOWS / name).read_text(encoding="utf-8"))
    doc["on"] = doc.pop(True, doc.get("on"))  # YAML 1.1 reads the key `on` as true
    return doc


def steps(doc: dict) -> list[dict]:
    return [step for job in doc["jobs"].values() for step in job["steps"]]


def test_every_workflow_has_least_privilege_permissions_pinned_actions_and_a_timeout():
    names = sorted(p.name for p in WORKFLOWS.glob("*.yml"))
    assert names == ["ci.yml", "dags.yml", "image.yml"]
    for name in names:
        doc = load(name)
        assert doc["permissions"]["contents"] == "read", name
        assert set(doc["permissions"]) <= {"contents", "packages"}, name
        for job_name, job in doc["jobs"].items():
            assert 0 < job["timeout-minutes"] <= 90, (name, job_name)
        for step in steps(doc):
            if "uses" in step:
                assert re.fullmatch(r"[\w.-]+/[\w.-]+@v\d+(\.\d+)*", step["uses"]), (name, step["uses"])


def test_tests_run_on_push_through_ci_run():
    doc = load("ci.yml")
    assert "push" in doc["on"] and "pull_request" in doc["on"]
    runs = [s.get("run", "") for s in steps(doc)]
    assert any(r.strip() == "bash .ci/run" for r in runs)
    assert (ROOT / ".ci" / "run").is_file()
    uses = {s["uses"].split("@")[0] for s in steps(doc) if "uses" in s}
    assert {"azure/setup-kubectl", "hashicorp/setup-terraform"} <= uses  # the deploy tests need both


def test_the_image_is_built_and_pushed_on_version_tags():
    doc = load("image.yml")
    assert doc["on"]["push"]["tags"] == ["v*"] and "branches" not in doc["on"]["push"]
    assert doc["permissions"]["packages"] == "write"
    job = doc["jobs"]["build-and-push"]
    files = [entry["dockerfile"] for entry in job["strategy"]["matrix"]["include"]]
    assert "deploy/docker/Dockerfile" in files
    for file in files:
        assert (ROOT / file).is_file(), file
    build = next(s for s in job["steps"] if s.get("uses", "").startswith("docker/build-push-action"))
    assert build["with"]["push"] is True and build["with"]["context"] == "."
    assert build["with"]["file"] == "${{ matrix.dockerfile }}"
    assert (ROOT / ".dockerignore").is_file()


def test_the_dag_import_check_generates_the_dags_and_imports_them_with_dagbag():
    doc = load("dags.yml")
    script = "\n".join(s.get("run", "") for s in steps(doc))
    assert "uv sync --frozen --extra airflow" in script
    assert "airflow dags --out dags" in script
    assert "DagBag(dag_folder=\"dags\")" in script and "import_errors" in script
    assert "sys.exit(1 if bag.import_errors or not bag.dags else 0)" in script
