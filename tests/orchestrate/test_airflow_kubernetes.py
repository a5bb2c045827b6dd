"""Kubernetes mode: every task of the generated DAGs is a pod running `airduck run --step <id>` (or `maintain`,
`quality --gate`) in the project's image; each pod is rendered offline (`build_pod_request_obj`) and validated
against the Kubernetes API schema (`kubernetes-validate`), with secrets only as secretKeyRef references; a failed
pod is retried only when `airduck` exited with the transient exit code, which `airduck run` gives."""

from __future__ import annotations

import json
import re
import socket
from types import SimpleNamespace

import kubernetes_validate
import pytest
import yaml
from kubernetes.client import ApiClient
from kubernetes.client import models as k8s

from tests.orchestrate.conftest import ROOT, airduck, copy_project

SECRET_KEY = "S3cr3tAwsKeyValue0987"
DSN_PASSWORD = "Pg-Pa55word-4321"

KUBE = """
mode: kubernetes
dag_id: shop_k8s
schedule: "@hourly"
deadline_minutes: 90
kinds:
  gold: {timeout_minutes: 120, resources: {requests: {cpu: "1", memory: 2Gi}, limits: {memory: 4Gi}}}
  ingest: {retries: 5}
kubernetes:
  image: registry.example.com/data/shop:1.4.2
  image_pull_policy: Always
  image_pull_secrets: [registry-creds]
  namespace: data-lake
  service_account: airduck-runner
  project_dir: /project
  config_maps: [shop-settings]
  secrets:
    AIRDUCK_CATALOG: {secret: shop-lake, key: catalog-dsn}
    AWS_SECRET_ACCESS_KEY: {secret: shop-s3, key: secret-access-key}
  env: {AIRDUCK_S3_ENDPOINT: "http://seaweedfs.data-lake:8333"}
  labels: {team: data}
"""


def _image_uid() -> int:
    """The user of the airduck image (deploy/docker/Dockerfile `ARG UID=`), who owns /project."""
    text = (ROOT / "deploy" / "docker" / "Dockerfile").read_text()
    return int(re.search(r"^ARG UID=(\d+)", text, re.M).group(1))


IMAGE_UID = _image_uid()


def pod_dict(pod: k8s.V1Pod) -> dict:
    data = ApiClient().sanitize_for_serialization(pod)
    return {"apiVersion": "v1", "kind": "Pod", **{k: v for k, v in data.items() if k not in ("apiVersion", "kind")}}


def test_every_pod_renders_and_validates(demo_template, tmp_path):
    from airflow.dag_processing.dagbag import DagBag

    from airduck.orchestrate.dags import AirduckPodOperator

    env = {"AWS_ACCESS_KEY_ID": "AKIAEXAMPLE", "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
           "AIRDUCK_CATALOG": f"postgresql://lake:{DSN_PASSWORD}@127.0.0.1:5432/lake"}
    root = copy_project(demo_template, tmp_path / "shop", KUBE, env=env)
    out = tmp_path / "dags"
    airduck("airflow", "dags", "--out", str(out), cwd=root)
    bag = DagBag(dag_folder=str(out / "shop_k8s.py"))
    assert bag.import_errors == {}
    assert set(bag.dags) == {"shop_k8s", "shop_k8s_maintenance", "shop_k8s_quality"}
    version = kubernetes_validate.latest_version()
    seen: dict[str, list[str]] = {}
    for dag in bag.dags.values():
        for task in dag.tasks:
            assert isinstance(task, AirduckPodOperator), task
            # the context Airflow gives at run time: it adds the dag_id, task_id, run_id and try_number labels
            context = {"ti": SimpleNamespace(dag_id=dag.dag_id, task_id=task.task_id, map_index=-1, try_number=1),
                       "run_id": "scheduled__2026-12-01T00:00:00+00:00", "dag": dag}
            data = pod_dict(task.build_pod_request_obj(context, dry_run=True))
            kubernetes_validate.validate(data, version, strict=True)  # raises on any schema error
            text = json.dumps(data)
            assert SECRET_KEY not in text and DSN_PASSWORD not in text and "AKIAEXAMPLE" not in text
            spec = data["spec"]
            container = spec["containers"][0]
            assert data["metadata"]["namespace"] == "data-lake"
            assert spec["serviceAccountName"] == "airduck-runner"
            assert spec["imagePullSecrets"] == [{"name": "registry-creds"}]
            assert container["image"] == "registry.example.com/data/shop:1.4.2"
            assert container["imagePullPolicy"] == "Always"
            assert container["command"] == ["airduck"]
            seen[f"{dag.dag_id}/{task.task_id}"] = container["args"]
            env_by_name = {e["name"]: e for e in container["env"]}
            assert env_by_name["AIRDUCK_CATALOG"]["valueFrom"]["secretKeyRef"] == {
                "name": "shop-lake", "key": "catalog-dsn", "optional": False}
            assert "value" not in env_by_name["AWS_SECRET_ACCESS_KEY"]
            assert env_by_name["AIRDUCK_S3_ENDPOINT"]["value"] == "http://seaweedfs.data-lake:8333"
            assert {"configMapRef": {"name": "shop-settings"}} in container["envFrom"]
            labels = data["metadata"]["labels"]
            assert labels["airduck.io/project"] == "shop" and labels["team"] == "data"
            assert labels["dag_id"] == dag.dag_id and labels["run_id"] and labels["try_number"] == "1"
            assert labels["airduck.io/step"] and labels["airduck.io/layer"]
            assert container["securityContext"]["allowPrivilegeEscalation"] is False
            assert spec["securityContext"]["runAsNonRoot"] is True
            # as the CronJob and the API of deploy/kubernetes: the image's user, read-only root, state in emptyDirs
            assert spec["securityContext"]["runAsUser"] == IMAGE_UID
            assert container["securityContext"]["readOnlyRootFilesystem"] is True
            assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
            assert spec["automountServiceAccountToken"] is False
            mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
            assert mounts == {"/tmp": "tmp", "/project/.airduck": "state"}
            assert {v["name"]: "emptyDir" in v for v in spec["volumes"]} == {"tmp": True, "state": True}
    pipeline = bag.dags["shop_k8s"]
    assert seen["shop_k8s/bronze.vacancies"] == ["-p", "/project", "run", "--step", "ingest:vacancies", "-q"]
    assert seen["shop_k8s/gold.top_growing_skills"] == ["-p", "/project", "run", "--step", "gold:top_growing_skills",
                                                        "-q"]
    assert seen["shop_k8s_maintenance/flush"] == ["-p", "/project", "maintain", "--step", "flush"]
    assert seen["shop_k8s_quality/silver_vacancies"][-3:] == ["--table", "silver.vacancies", "--gate"]
    assert seen["shop_k8s_quality/freshness"] == ["-p", "/project", "freshness"]
    assert len([k for k in seen if k.startswith("shop_k8s/")]) == 10
    gold = pipeline.get_task("gold.top_growing_skills")
    pod = pod_dict(gold.build_pod_request_obj(dry_run=True))
    assert pod["spec"]["containers"][0]["resources"] == {"requests": {"cpu": "1", "memory": "2Gi"},
                                                         "limits": {"memory": "4Gi"}}
    assert gold.execution_timeout.total_seconds() == 120 * 60
    assert pipeline.get_task("bronze.vacancies").retries == 5
    assert pipeline.get_task("silver.vacancies").upstream_task_ids == {"bronze.vacancies"}
    # the DAG file, the snapshot and the project's plan cache hold no secret either
    for path in (out / "shop_k8s.py", out / "shop_k8s.plan.json", root / ".airduck" / "airflow" / "plan.json"):
        text = path.read_text()
        assert SECRET_KEY not in text and DSN_PASSWORD not in text, path
    # without the project folder (a DAG processor with only the DAGs folder) the snapshot builds the same DAGs
    moved = tmp_path / "elsewhere"
    root.rename(moved)
    bag2 = DagBag(dag_folder=str(out / "shop_k8s.py"))
    assert bag2.import_errors == {} and set(bag2.dags["shop_k8s"].task_ids) == set(pipeline.task_ids)


def _pod(exit_code: int) -> k8s.V1Pod:
    return k8s.V1Pod(metadata=k8s.V1ObjectMeta(name="p", namespace="n"), status=k8s.V1PodStatus(
        phase="Failed", container_statuses=[k8s.V1ContainerStatus(
            name="base", image="i", image_id="", ready=False, restart_count=0,
            state=k8s.V1ContainerState(terminated=k8s.V1ContainerStateTerminated(exit_code=exit_code)))]))


def test_only_the_transient_exit_code_is_retried(tmp_path, monkeypatch):
    from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator
    from airflow.sdk.exceptions import AirflowException, AirflowFailException

    from airduck.orchestrate.config import TRANSIENT_EXIT_CODE
    from airduck.orchestrate.dags import AirduckPodOperator

    assert AirduckPodOperator.exit_code(_pod(75)) == 75 == TRANSIENT_EXIT_CODE

    def failing_cleanup(self, pod, remote_pod, *a, **k):  # what KubernetesPodOperator raises for a failed pod
        raise AirflowException(f"Pod {pod.metadata.name} returned a failure.")

    op = AirduckPodOperator(task_id="t", name="t", image="i", cmds=["airduck"])
    monkeypatch.setattr(KubernetesPodOperator, "cleanup", failing_cleanup)  # no cluster here to fail a pod
    with pytest.raises(AirflowException) as transient:
        op.cleanup(_pod(75), _pod(75))
    assert not isinstance(transient.value, AirflowFailException)  # retried
    with pytest.raises(AirflowFailException):  # failed at once
        op.cleanup(_pod(1), _pod(1))
    monkeypatch.undo()

    # and `airduck run --step` exits 75 for a transient failure (an unreachable catalog), 1 for a terminal one
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    root = tmp_path / "p"
    (root / "data").mkdir(parents=True)
    (root / "data" / "a.json").write_text('{"id": 1}\n')
    (root / "airduck.yml").write_text(yaml.safe_dump({
        "name": "p", "lake": {"catalog": f"postgresql://postgres@127.0.0.1:{port}/nowhere"},
        "sources": {"a": {"type": "files", "path": "data/a.json", "format": "ndjson"}}}))
    proc = airduck("run", "--step", "ingest:a", "-q", cwd=root, check=False)
    assert proc.returncode == TRANSIENT_EXIT_CODE, proc.stderr
    proc = airduck("run", "--step", "ingest:nosuch", "-q", cwd=root, check=False)
    assert proc.returncode == 1, proc.stderr


def test_atomic_pods_run_on_the_run_branch(demo_template, tmp_path):
    """`atomic: true` in kubernetes mode: a pod forks the run's branch (`branch create … --if-missing`), every
    lake step's pod runs `run --step … --no-atomic` with AIRDUCK_BRANCH (rendered from the run id) on it, a pod
    audits it, a pod merges it (`merge … --delete`); serve and export pods run after the merge on main (no
    AIRDUCK_BRANCH). Every rendered pod validates and holds no secret value."""
    from airflow.dag_processing.dagbag import DagBag

    from airduck.text import run_branch

    env = {"AWS_SECRET_ACCESS_KEY": SECRET_KEY,
           "AIRDUCK_CATALOG": f"postgresql://lake:{DSN_PASSWORD}@127.0.0.1:5432/lake"}
    root = copy_project(demo_template, tmp_path / "shop", KUBE + "atomic: true\n", env=env)
    out = tmp_path / "dags"
    airduck("airflow", "dags", "--out", str(out), cwd=root)
    bag = DagBag(dag_folder=str(out / "shop_k8s.py"))
    assert bag.import_errors == {}
    dag = bag.dags["shop_k8s"]
    run_id = "scheduled__2026-12-01T00:00:00+00:00"
    branch = run_branch(run_id)
    version = kubernetes_validate.latest_version()
    pods = {}
    for task in dag.tasks:
        context = {"ti": SimpleNamespace(dag_id=dag.dag_id, task_id=task.task_id, map_index=-1, try_number=1),
                   "run_id": run_id, "dag": dag}
        task.render_template_fields(context)
        data = pod_dict(task.build_pod_request_obj(context, dry_run=True))
        kubernetes_validate.validate(data, version, strict=True)
        text = json.dumps(data)
        assert SECRET_KEY not in text and DSN_PASSWORD not in text and "{{" not in text
        container = data["spec"]["containers"][0]
        pods[task.task_id] = (container["args"], {e["name"]: e.get("value") for e in container["env"]})
        assert "value" not in next(e for e in container["env"] if e["name"] == "AIRDUCK_CATALOG")
    args, env_ = pods["branch.create"]
    assert args == ["-p", "/project", "branch", "create", branch, "--from", "main", "--if-missing"]
    assert "AIRDUCK_BRANCH" not in env_
    assert pods["branch.audit"] == (["-p", "/project", "audit"], pods["branch.audit"][1])
    assert pods["branch.audit"][1]["AIRDUCK_BRANCH"] == branch
    assert pods["branch.merge"][0] == ["-p", "/project", "merge", branch, "--into", "main", "--delete"]
    assert "AIRDUCK_BRANCH" not in pods["branch.merge"][1]
    lake_steps = [t for t in pods if t.startswith(("bronze.", "silver.", "gold."))]
    assert len(lake_steps) >= 7
    for t in lake_steps:
        assert pods[t][0][-2:] == ["--no-atomic", "-q"] and pods[t][1]["AIRDUCK_BRANCH"] == branch, t
    args, env_ = pods["serve.export_top_growing_skills"]
    assert args == ["-p", "/project", "run", "--step", "export:top_growing_skills", "--no-atomic", "-q"]
    assert "AIRDUCK_BRANCH" not in env_
    # the order: create -> lake steps -> audit -> merge -> serve
    assert dag.get_task("bronze.vacancies").upstream_task_ids == {"branch.create"}
    assert dag.get_task("branch.merge").upstream_task_ids == {"branch.audit"}
    assert "branch.merge" in dag.get_task("serve.export_top_growing_skills").upstream_task_ids
    assert {"gold.top_growing_skills"} <= dag.get_task("branch.audit").upstream_task_ids
    # a failed pod of the run names the branch it keeps
    from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator
    from airflow.sdk.exceptions import AirflowException, AirflowFailException

    step = dag.get_task("silver.vacancies")
    assert step.airduck_branch == branch  # rendered

    def failing_cleanup(self, pod, remote_pod, *a, **k):
        raise AirflowException(f"Pod {pod.metadata.name} returned a failure.")

    original = KubernetesPodOperator.cleanup
    KubernetesPodOperator.cleanup = failing_cleanup  # no cluster here to fail a pod
    try:
        with pytest.raises(AirflowFailException, match=f"nothing was merged, the run's branch {branch} is kept"):
            step.cleanup(_pod(1), _pod(1))
    finally:
        KubernetesPodOperator.cleanup = original
    # pods reattach after a worker restart without the deprecated `reattach_on_restart`
    import warnings

    from airduck.orchestrate.dags import build_dags

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        built = build_dags(root)
    assert built["shop_k8s"].get_task("silver.vacancies").reattach_on_restart is True
    assert not [w for w in caught if "reattach_on_restart" in str(w.message)], [str(w.message) for w in caught]
