"""deploy/kubernetes: each overlay renders with `kubectl kustomize`, every object validates against the Kubernetes
API schema offline (kubernetes-validate, strict: unknown fields fail), every pod template is locked down, the
Secret template encrypts with SOPS as its rules say, and the Helm values hold no secret values."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "kubernetes"
#: the Kubernetes version the manifests are checked against (Nebius Managed Kubernetes offers 1.30+)
K8S_VERSION = "1.32.0"
OVERLAYS = ("dev", "prod")


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[dict]]:
    kubectl = shutil.which("kubectl")
    assert kubectl, "kubectl is needed (installed on the machines and in CI)"
    out: dict[str, list[dict]] = {}
    for overlay in OVERLAYS:
        proc = subprocess.run([kubectl, "kustomize", str(K8S / "overlays" / overlay)], capture_output=True,
                              text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
        out[overlay] = [doc for doc in yaml.safe_load_all(proc.stdout) if doc]
    return out


def pod_specs(obj: dict) -> list[dict]:
    kind = obj["kind"]
    if kind == "Pod":
        return [obj["spec"]]
    if kind in ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"):
        return [obj["spec"]["template"]["spec"]]
    if kind == "CronJob":
        return [obj["spec"]["jobTemplate"]["spec"]["template"]["spec"]]
    return []


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_rendered_object_validates_against_the_kubernetes_schema(rendered, overlay):
    docs = rendered[overlay]
    kinds = sorted({d["kind"] for d in docs})
    assert {"Deployment", "Service", "Ingress", "CronJob", "ConfigMap", "NetworkPolicy", "ServiceAccount",
            "Namespace", "Role", "RoleBinding"} <= set(kinds), kinds
    for doc in docs:
        try:
            kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{overlay}: {doc['kind']}/{doc['metadata']['name']}: {exc.message} at {list(exc.path)}")
    namespace = next(d for d in docs if d["kind"] == "Namespace")["metadata"]["name"]
    for doc in docs:
        if doc["kind"] != "Namespace":
            assert doc["metadata"].get("namespace") == namespace, doc["metadata"]
        assert doc["metadata"]["labels"]["app.kubernetes.io/part-of"] == "airduck"


def test_the_validator_refuses_a_broken_object(rendered):
    deployment = next(d for d in rendered["dev"] if d["kind"] == "Deployment")
    broken = yaml.safe_load(yaml.safe_dump(deployment))
    broken["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"]["prot"] = 8000
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, K8S_VERSION, strict=True)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_pod_template_is_locked_down(rendered, overlay):
    specs = [(d["kind"], d["metadata"]["name"], s) for d in rendered[overlay] for s in pod_specs(d)]
    assert {kind for kind, _, _ in specs} == {"Deployment", "CronJob"}
    check_pod_specs(specs, overlay)


def test_the_step_pod_template_validates_and_is_locked_down():
    pod = yaml.safe_load((K8S / "pod-template" / "step-pod.yaml").read_text(encoding="utf-8"))
    kubernetes_validate.validate(pod, K8S_VERSION, strict=True)
    check_pod_specs([("Pod", "airduck-step", pod["spec"])], "prod")
    assert pod["spec"]["containers"][0]["name"] == "base"  # the KubernetesPodOperator's container name
    assert pod["spec"]["containers"][0]["args"][2:4] == ["run", "--step"]


def check_pod_specs(specs: list[tuple[str, str, dict]], overlay: str) -> None:
    for kind, name, spec in specs:
        where = f"{overlay} {kind}/{name}"
        pod = spec["securityContext"]
        assert pod["runAsNonRoot"] is True and pod["runAsUser"] != 0, where
        assert pod["seccompProfile"]["type"] == "RuntimeDefault", where
        assert spec["automountServiceAccountToken"] is False and spec["serviceAccountName"] == "airduck", where
        mounts_needed = {"/tmp", "/project/.airduck"}
        for container in spec.get("initContainers", []) + spec["containers"]:
            sc = container["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False, where
            assert sc["readOnlyRootFilesystem"] is True, where
            assert sc.get("privileged", False) is False, where
            assert sc["capabilities"]["drop"] == ["ALL"] and not sc["capabilities"].get("add"), where
            assert container["resources"]["requests"] and container["resources"]["limits"], where
            assert {m["mountPath"] for m in container["volumeMounts"]} >= mounts_needed, where
            assert container["image"].endswith(":0.1.0" if overlay == "prod" else ":dev"), where
            # secrets reach the pod by reference only
            for env in container.get("env", []):
                assert "value" not in env or not re.search(r"PASSWORD|SECRET|TOKEN|CATALOG|DSN", env["name"]), where
                if "valueFrom" in env:
                    assert env["valueFrom"]["secretKeyRef"]["name"] == "airduck-secrets", where
            assert container["envFrom"] == [{"configMapRef": {"name": "airduck-settings"}}], where
        volumes = {v["name"]: v for v in spec["volumes"]}
        assert all("emptyDir" in v for v in volumes.values()), where


def test_the_api_has_probes_a_service_an_ingress_and_network_policies(rendered):
    for overlay in OVERLAYS:
        docs = {(d["kind"], d["metadata"]["name"]): d for d in rendered[overlay]}
        api = docs[("Deployment", "airduck-api")]
        container = api["spec"]["template"]["spec"]["containers"][0]
        assert container["args"][-5:] == ["serve", "--host", "0.0.0.0", "--port", "8000"]
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            assert container[probe]["httpGet"]["path"] == "/health", probe
        service = docs[("Service", "airduck-api")]
        assert service["spec"]["selector"] == api["spec"]["selector"]["matchLabels"]
        ingress = docs[("Ingress", "airduck-api")]
        backend = ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
        assert backend["name"] == "airduck-api" and backend["port"]["name"] == service["spec"]["ports"][0]["name"]
        deny = docs[("NetworkPolicy", "airduck-default-deny")]
        assert deny["spec"]["podSelector"] == {} and set(deny["spec"]["policyTypes"]) == {"Ingress", "Egress"}
        assert "ingress" not in deny["spec"]  # nothing comes in unless another policy allows it
        allow = docs[("NetworkPolicy", "airduck-api-ingress")]
        assert allow["spec"]["podSelector"]["matchLabels"] == api["spec"]["selector"]["matchLabels"]
        assert docs[("CronJob", "airduck-maintain")]["spec"]["jobTemplate"]["spec"]["template"]["spec"][
            "containers"][0]["args"][-1] == "maintain"
        assert docs[("Namespace", api["metadata"]["namespace"])]["metadata"]["labels"][
            "pod-security.kubernetes.io/enforce"] == "restricted"
        assert not [d for d in rendered[overlay] if d["kind"] == "Secret"]  # values live in SOPS files only
    prod = {(d["kind"], d["metadata"]["name"]): d for d in rendered["prod"]}
    assert prod[("Deployment", "airduck-api")]["spec"]["replicas"] == 2
    assert ("PodDisruptionBudget", "airduck-api") in prod
    assert prod[("Ingress", "airduck-api")]["spec"]["tls"][0]["secretName"]


def test_the_secret_template_validates_and_encrypts_with_the_sops_rules(tmp_path):
    pyrage = pytest.importorskip("pyrage")  # a dev dependency: always installed
    template = K8S / "secrets" / "airduck-secrets.template.yaml"
    secret = yaml.safe_load(template.read_text(encoding="utf-8"))
    kubernetes_validate.validate(secret, K8S_VERSION, strict=True)
    # every key the pods reference is in the template
    refs: set[str] = set()
    for path in (K8S / "base").glob("*.yaml"):
        refs |= set(re.findall(r"secretKeyRef: \{name: airduck-secrets, key: (\w+)\}", path.read_text()))
    assert refs and refs <= set(secret["stringData"]), refs - set(secret["stringData"])

    identity = pyrage.x25519.Identity.generate()
    key = tmp_path / "keys.txt"
    key.write_text(f"{identity}\n", encoding="utf-8")
    rules = (K8S / ".sops.yaml.example").read_text(encoding="utf-8")
    assert "age1REPLACE" in rules
    config = tmp_path / ".sops.yaml"
    config.write_text(rules.replace("age1REPLACE_WITH_YOUR_TEAMS_AGE_PUBLIC_KEYS", str(identity.to_public())))
    filled = tmp_path / "airduck-secrets.enc.yaml"
    values = {k: f"value-of-{k.lower()}-42" for k in secret["stringData"]}
    filled.write_text(yaml.safe_dump({**secret, "stringData": values}, sort_keys=False), encoding="utf-8")
    sops = str(Path(sys.executable).parent / "sops")
    env = {**os.environ, "SOPS_DISABLE_VERSION_CHECK": "1", "SOPS_AGE_KEY_FILE": str(key)}
    proc = subprocess.run([sops, "--config", str(config), "encrypt", "--in-place", str(filled)], env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    encrypted = yaml.safe_load(filled.read_text(encoding="utf-8"))
    assert encrypted["metadata"]["name"] == "airduck-secrets" and encrypted["kind"] == "Secret"  # reviewable
    assert all(v.startswith("ENC[AES256_GCM") for v in encrypted["stringData"].values())
    assert not any(v in filled.read_text() for v in values.values())
    proc = subprocess.run([sops, "decrypt", str(filled)], env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    decrypted = yaml.safe_load(proc.stdout)
    assert decrypted["stringData"] == values
    kubernetes_validate.validate(decrypted, K8S_VERSION, strict=True)  # what `kubectl apply -f -` receives


def test_helm_values_for_the_upstream_charts():
    helm = K8S / "helm"
    values = {p.stem: yaml.safe_load(p.read_text(encoding="utf-8")) for p in helm.glob("*-values.yaml")}
    assert set(values) == {"airflow-values", "minio-values", "postgresql-values", "lakefs-values"}
    airflow = values["airflow-values"]
    assert airflow["executor"] in ("KubernetesExecutor", "CeleryExecutor,KubernetesExecutor", "CeleryExecutor")
    assert airflow["airflowVersion"].startswith("3.")
    assert airflow["postgresql"]["enabled"] is False and airflow["data"]["metadataSecretName"]
    assert airflow["dags"]["gitSync"]["enabled"] is True
    # the service accounts the RBAC of deploy/kubernetes grants pod creation to
    rbac = [d for d in yaml.safe_load_all((K8S / "base" / "rbac-airflow.yaml").read_text()) if d]
    subjects = {s["name"] for d in rbac if d["kind"] == "RoleBinding" for s in d["subjects"]}
    assert airflow["workers"]["serviceAccount"]["name"] in subjects
    assert airflow["scheduler"]["serviceAccount"]["name"] in subjects
    assert values["minio-values"]["existingSecret"]
    assert {b["name"]: b["versioning"] for b in values["minio-values"]["buckets"]}["landing"] is True
    assert values["postgresql-values"]["auth"]["existingSecret"]
    assert values["lakefs-values"]["existingSecret"] and values["lakefs-values"]["useDevPostgres"] is False
    for name, doc in values.items():  # no secret value is written in any values file, only Secret names
        for key, value in _leaves(doc):
            if re.search(r"(?i)password|secret|token|credential", key) and isinstance(value, str) and value:
                assert re.search(r"(?i)(secret|name|key)$", key), f"{name}: {key}: {value}"
                assert "://" not in value and len(value) < 40, f"{name}: {key}"


def _leaves(node, key: str = ""):
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _leaves(v, str(k))
    elif isinstance(node, list):
        for v in node:
            yield from _leaves(v, key)
    else:
        yield key, node
