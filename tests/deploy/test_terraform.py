"""deploy/terraform: `terraform fmt -check` passes; the HCL parses (python-hcl2); every variable used is declared
(and every declared one used); every module input is declared by the module and every required one is given;
references to resources and module outputs exist; and every resource attribute written is one the Nebius
provider documents (tests/deploy/schemas/nebius/resources.json, extracted from the provider's generated docs).

No provider can be downloaded here, so `terraform validate` / `plan` do not run: see the README's Deploy section.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import hcl2
import pytest

ROOT = Path(__file__).resolve().parents[2]
TF = ROOT / "deploy" / "terraform"
MODULES = sorted(p for p in (TF / "modules").iterdir() if p.is_dir())
ENVIRONMENTS = sorted(p for p in (TF / "environments").iterdir() if p.is_dir())
NEBIUS = json.loads((Path(__file__).parent / "schemas" / "nebius" / "resources.json").read_text())["resources"]
INTERNAL = {"__is_block__", "__comments__", "__inline_comments__"}
META = {"count", "for_each", "depends_on", "lifecycle", "provider", "providers", "source", "version", "__is_block__",
        "__comments__", "__inline_comments__"}


def unquote(name: str) -> str:
    return name[1:-1] if name.startswith('"') and name.endswith('"') else name


def parse(folder: Path) -> dict[str, list]:
    merged: dict[str, list] = {}
    for path in sorted(folder.glob("*.tf")):
        with path.open(encoding="utf-8") as fh:
            for key, blocks in hcl2.load(fh).items():
                merged.setdefault(key, []).extend(blocks)
    return merged


def text(folder: Path) -> str:
    return "\n".join(p.read_text(encoding="utf-8") for p in sorted(folder.glob("*.tf")))


def named(blocks: list[dict]) -> dict[str, dict]:
    return {unquote(name): body for block in blocks for name, body in block.items()}


def variables(folder: Path) -> dict[str, dict]:
    return named(parse(folder).get("variable", []))


def resources(folder: Path) -> dict[str, dict]:
    out = {}
    for block in parse(folder).get("resource", []):
        for rtype, by_name in block.items():
            for name, body in by_name.items():
                out[f"{unquote(rtype)}.{unquote(name)}"] = body
    return out


def test_terraform_fmt_check_passes():
    terraform = shutil.which("terraform")
    assert terraform, "terraform is needed (installed on the machines and in CI)"
    proc = subprocess.run([terraform, "fmt", "-check", "-recursive", "-diff", str(TF)], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("folder", MODULES + ENVIRONMENTS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_variable_used_is_declared_and_every_declared_one_used(folder):
    declared = set(variables(folder))
    used = set(re.findall(r"\bvar\.([A-Za-z_][A-Za-z0-9_]*)", text(folder)))
    assert used <= declared, f"undeclared: {sorted(used - declared)}"
    assert declared <= used, f"declared but unused: {sorted(declared - used)}"
    for name, body in variables(folder).items():
        assert body.get("description"), f"{name} has no description"
        if re.search(r"password|secret|token", name) and not name.endswith("_version"):
            assert body.get("sensitive") is True and body.get("ephemeral") is True, name
            assert "default" not in body, name
    locals_used = set(re.findall(r"\blocal\.([A-Za-z_][A-Za-z0-9_]*)", text(folder)))
    locals_declared = {k for block in parse(folder).get("locals", []) for k in block if k != "__is_block__"}
    assert locals_used <= locals_declared, locals_used - locals_declared


@pytest.mark.parametrize("env", ENVIRONMENTS, ids=lambda p: p.name)
def test_every_module_input_is_declared_and_every_required_one_given(env):
    modules = named(parse(env).get("module", []))
    assert set(modules) == {"object_storage", "postgresql", "kubernetes", "registry"}
    for name, body in modules.items():
        source = (env / unquote(body["source"])).resolve()
        assert source.is_dir() and source.parent == (TF / "modules").resolve(), source
        declared = variables(source)
        given = {k for k in body if k not in META}
        assert given <= set(declared), f"module {name}: unknown inputs {sorted(given - set(declared))}"
        required = {v for v, spec in declared.items() if "default" not in spec}
        assert required <= given, f"module {name}: missing inputs {sorted(required - given)}"
        module_outputs = set(named(parse(source).get("output", [])))
        for ref_module, output in re.findall(r"\bmodule\.([a-z_]+)\.([a-z_]+)", text(env)):
            if ref_module == name:
                assert output in module_outputs, f"module.{name}.{output} is not an output of {source.name}"
    example = (env / "terraform.tfvars.example").read_text(encoding="utf-8")
    keys = set(re.findall(r"^([a-z_]+)\s*=", example, re.M))
    assert keys <= set(variables(env)) and not any("password" in k for k in keys), keys
    required_env = {v for v, spec in variables(env).items() if "default" not in spec and "password" not in v}
    assert required_env <= keys, required_env - keys


def _paths(node, prefix: str = ""):
    """Dotted attribute paths of a resource body (object expressions and lists of objects)."""
    if isinstance(node, list):
        for item in node:
            yield from _paths(item, prefix)
        return
    if not isinstance(node, dict):
        return
    for key, value in node.items():
        if key in (META if not prefix else INTERNAL):
            continue
        path = f"{prefix}{unquote(key)}"
        yield path, value
        if isinstance(value, dict | list) and not _is_map_attribute(path):
            yield from _paths(value, path + ".")


def _is_map_attribute(path: str) -> bool:
    return path.rsplit(".", 1)[-1] == "labels"


@pytest.mark.parametrize("module", MODULES, ids=lambda p: p.name)
def test_resources_use_only_attributes_the_nebius_provider_documents(module):
    found = resources(module)
    assert found, module
    for address, body in found.items():
        rtype = address.split(".", 1)[0]
        assert rtype in NEBIUS, f"{address}: resource type not in the provider's docs"
        schema = NEBIUS[rtype]["attributes"]
        used = dict(_paths(body))
        for path in used:
            assert path in schema, f"{address}: `{path}` is not an attribute of {rtype}"
        for path in NEBIUS[rtype]["required"]:
            parent = path.rsplit(".", 1)[0] if "." in path else ""
            if not parent or (parent in used and isinstance(used[parent], dict)):
                assert path in used, f"{address}: required `{path}` is missing"
    # references to resources of this module exist
    for rtype, name in re.findall(r"\b(nebius_[a-z0-9_]+)\.([a-z_]+)\.", text(module)):
        assert f"{rtype}.{name}" in found, f"{module.name}: {rtype}.{name} is not declared"


def test_the_landing_bucket_is_versioned_with_lifecycle_rules():
    found = resources(TF / "modules" / "object-storage")
    landing = found["nebius_storage_v1_bucket.landing"]
    assert unquote(landing["versioning_policy"]) == "ENABLED"
    rules = {unquote(r["id"]): r for r in landing["lifecycle_configuration"]["rules"]}
    assert "noncurrent_version_expiration" in rules["expire-replaced-versions"]
    assert "abort_incomplete_multipart_upload" in rules["abort-incomplete-multipart-uploads"]
    assert unquote(found["nebius_storage_v1_bucket.lake"]["versioning_policy"]) == "DISABLED"
    # the PostgreSQL password is write-only (never in the state)
    pg = resources(TF / "modules" / "postgresql")["nebius_msp_postgresql_v1alpha1_cluster.this"]
    assert pg["sensitive"]["bootstrap"]["user_password"] == "${var.password}"
    assert "user_password" not in pg["bootstrap"]
