"""deploy/compose/compose.yaml: valid against the Compose Specification's JSON schema (vendored with its license
in tests/deploy/schemas/compose-spec/), and the stack it describes hangs together."""

from __future__ import annotations

import json
import re
from pathlib import Path

import jsonschema
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "deploy" / "compose"
SCHEMA = Path(__file__).parent / "schemas" / "compose-spec" / "compose-spec.json"


def load() -> dict:
    return yaml.safe_load((COMPOSE / "compose.yaml").read_text(encoding="utf-8"))


def test_compose_file_validates_against_the_compose_specification():
    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    validator = jsonschema.Draft7Validator(schema, format_checker=jsonschema.FormatChecker())
    errors = sorted(validator.iter_errors(load()), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{'/'.join(map(str, e.path))}: {e.message}" for e in errors[:10])
    # the validator is live: a typo in a service is refused
    broken = load()
    broken["services"]["postgres"]["restrat"] = "always"
    assert list(validator.iter_errors(broken))


def test_the_stack_has_its_services_profiles_and_wiring():
    doc = load()
    services = doc["services"]
    core = {"postgres", "seaweedfs", "airduck-api", "airduck-setup", "airflow-init", "airflow-api-server",
            "airflow-scheduler", "airflow-dag-processor", "airflow-triggerer"}
    assert core <= set(services)
    assert all("profiles" not in services[name] for name in core)
    assert services["marquez"]["profiles"] == services["marquez-web"]["profiles"] == ["lineage"]
    assert services["prometheus"]["profiles"] == services["grafana"]["profiles"] == ["monitoring"]
    for name, svc in services.items():
        deps = svc.get("depends_on", {})
        for dep in deps:
            assert dep in services, f"{name} depends on unknown {dep}"
            assert "profiles" not in services[dep] or services[dep].get("profiles") == svc.get("profiles"), name
    # Airflow 3's components, each with the generated DAGs mounted and the airduck lake settings
    for component in ("api-server", "scheduler", "dag-processor", "triggerer"):
        svc = services[f"airflow-{component}"]
        assert svc["command"] == [component]
        assert any(v.endswith(":/opt/airflow/dags:ro") for v in svc["volumes"]), component
        assert svc["environment"]["AIRDUCK_CATALOG"].startswith("postgresql://")
        assert svc["depends_on"]["airflow-init"]["condition"] == "service_completed_successfully"
    api = services["airduck-api"]
    assert api["command"][-5:] == ["serve", "--host", "0.0.0.0", "--port", "8000"]
    assert "/health" in " ".join(api["healthcheck"]["test"])
    assert api["build"]["dockerfile"] == "deploy/docker/Dockerfile"
    assert (COMPOSE / api["build"]["context"] / api["build"]["dockerfile"]).is_file()
    assert api["read_only"] is True and api["cap_drop"] == ["ALL"] and api["user"] == "10001:10001"
    # every published port is on loopback only
    for name, svc in services.items():
        for port in svc.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name}: {port}"


def test_no_secret_is_written_in_the_file_and_every_bind_mount_exists():
    text = (COMPOSE / "compose.yaml").read_text(encoding="utf-8")
    doc = load()
    for name, svc in doc["services"].items():
        for key, value in (svc.get("environment") or {}).items():
            if re.search(r"PASSWORD|SECRET|TOKEN|FERNET", key) and not key.endswith("_FILE") and value:
                assert str(value).startswith("${"), f"{name}: {key} is written in compose.yaml"
            if "://" in str(value) and "@" in str(value):  # a DSN: its password is a ${...} reference
                assert re.search(r"://[^:]+:\$\{[A-Z_]+[^}]*\}@", str(value)), f"{name}: {key}"
    assert "change-me" not in text
    for svc in doc["services"].values():
        for volume in svc.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith("./"):
                assert (COMPOSE / source).exists(), source
    # .env.example names every variable compose.yaml requires (`${VAR:?...}`)
    required = set(re.findall(r"\$\{([A-Z_]+):\?", text))
    example = {line.split("=", 1)[0] for line in (COMPOSE / ".env.example").read_text().splitlines()
               if line and not line.startswith("#")}
    assert required and required <= example, required - example
