"""The plan snapshot the DAG factory reads, its cache, and the DAG files `airduck airflow dags` writes.

The DAG processor parses DAG files often, and planning a project with a dbt gold layer may start dbt. So the plan
is kept as JSON (steps, their datasets and dependencies, the ``airflow:`` settings) in
``<project>/.airduck/airflow/plan.json``, keyed on the modification times and sizes of airduck.yml, ``.env`` and
the dbt project's files: a parse with an unchanged project reads that one file and imports nothing of the
pipeline. A copy (the snapshot) is written beside the DAG file: where the project folder is not present (an
Airflow whose DAG processor has only the DAGs folder, kubernetes mode) the DAGs are built from it.

No Airflow import here.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from pathlib import Path
from typing import Any

from airduck.errors import ConfigError

SNAPSHOT_VERSION = 1
CACHE = Path(".airduck") / "airflow" / "plan.json"
#: the folders of a dbt project that hold no sources of its graph (dbt's output, packages, logs)
_SKIP_DIRS = {"target", "logs", "dbt_packages", "dbt_modules", ".airduck", "__pycache__", ".git"}
#: files the runs rewrite that do not change the graph (the generated sources follow airduck.yml)
_SKIP_FILES = {"_airduck_sources.yml"}


def project_key(root: Path, dbt_dir: Path | None) -> str:
    """A digest of what the plan is made from: airduck.yml, .env and the dbt project's files (mtime and size)."""
    parts: list[str] = []
    for name in ("airduck.yml", ".env"):
        parts.append(_stat(root / name, name))
    if dbt_dir is not None and dbt_dir.is_dir():
        for folder, dirs, files in os.walk(dbt_dir):
            dirs[:] = sorted(d for d in dirs if d not in _SKIP_DIRS and not d.startswith("."))
            for f in sorted(files):
                if f not in _SKIP_FILES:
                    path = Path(folder) / f
                    parts.append(_stat(path, str(path.relative_to(dbt_dir))))
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:24]


def _stat(path: Path, label: str) -> str:
    try:
        st = path.stat()
    except OSError:
        return f"{label}:-"
    return f"{label}:{st.st_mtime_ns}:{st.st_size}"


def _dbt_dir(root: Path, airflow_gold: str | None) -> Path | None:
    if not airflow_gold:
        return None
    path = Path(airflow_gold)
    return path if path.is_absolute() else root / path


def snapshot_of(lh: Any) -> dict[str, Any]:
    """The snapshot of a project (a :class:`airduck.lakehouse.Lakehouse`): its plan, narrowed to
    ``airflow.select``, and its ``airflow:`` settings. Opens no lake."""
    project = lh.project
    cfg = project.config
    plan = lh.plan(cfg.airflow.select or None)
    steps = []
    for s in plan:
        steps.append({
            "id": s.id, "kind": s.kind.value, "name": s.name, "layer": s.layer,
            "inputs": [{"kind": d.kind.value, "name": d.name} for d in s.inputs],
            "outputs": [{"kind": d.kind.value, "name": d.name} for d in s.outputs],
            "depends_on": list(s.depends_on),
            "tags": list(s.get("tags") or ()), "file": s.get("file"), "materialized": s.get("materialized"),
        })
    from airduck._version import __version__

    return {
        "version": SNAPSHOT_VERSION,
        "airduck": __version__,
        "project": cfg.name,
        "root": str(project.root),
        "key": project_key(project.root, _dbt_dir(project.root, cfg.gold.dbt_project)),
        "dbt_project": cfg.gold.dbt_project,
        # `atomic` unset: as `run.atomic` (the DAG factory sees only this snapshot)
        "airflow": {**cfg.airflow.model_dump(mode="json"),
                    "atomic": cfg.run.atomic if cfg.airflow.atomic is None else cfg.airflow.atomic},
        "steps": steps,
    }


def _write_json(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")  # concurrent parsers never share a scratch file
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True), encoding="utf-8")
    tmp.replace(path)


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("version") == SNAPSHOT_VERSION else None


def load_snapshot(project: str | Path | None, snapshot: str | Path | None) -> dict[str, Any]:
    """The plan snapshot to build the DAGs from.

    With the project folder present: its cache when the cache's key still matches the project's files, else the
    plan is made again (through the facade) and cached. Without it: the snapshot file written beside the DAG
    file. ConfigError when neither is there."""
    root = Path(project) if project else None
    if root is not None and (root / "airduck.yml").is_file():
        cache = root / CACHE
        from airduck._version import __version__

        # the cache, else the snapshot beside the DAG file (a checkout without .airduck, e.g. git-sync), when
        # made by this airduck from these very project files
        for data in (_read_json(cache), _read_json(Path(snapshot)) if snapshot is not None else None):
            if (data is not None and data.get("airduck") == __version__
                    and data.get("key") == project_key(root, _dbt_dir(root, data.get("dbt_project")))):
                # the project may be mounted elsewhere than where the cache was made (AIRDUCK_PROJECT_DIR): the
                # tasks run the project found here
                return {**data, "root": str(root.resolve())}
        from airduck.lakehouse import Lakehouse

        with Lakehouse.open(root) as lh:
            data = snapshot_of(lh)
        try:
            _write_json(cache, data)
        except OSError as exc:  # a read-only checkout (git-sync): the plan is made again at the next parse
            logging.getLogger("airduck.airflow").warning("airduck: cannot cache the plan in %s: %s", cache,
                                                         exc.strerror or exc)
        return data
    if snapshot is not None:
        data = _read_json(Path(snapshot))
        if data is not None:
            return data
    raise ConfigError(f"no airduck project at {root} and no plan snapshot at {snapshot}",
                      hint="run `airduck airflow dags --out DIR` in the project again, or mount the project there")


def dag_file_name(snapshot: dict[str, Any]) -> str:
    """``airduck_<project>.py``, or ``<airflow.dag_id>.py`` when the project sets its DAG id."""
    name = snapshot["airflow"].get("dag_id") or f"airduck_{snapshot['project']}"
    return re.sub(r"[^A-Za-z0-9_]", "_", name) + ".py"


_TEMPLATE = '''\
# Airflow DAGs of the airduck project "{name}", generated by `airduck airflow dags` (airduck {version}).
#
# At parse time they are built from the project's plan: a task per step, grouped by layer, wired by the plan's
# dependencies, with an Asset per table. The plan is cached in {cache}
# and made again when airduck.yml or the dbt project changes; where the project folder is not present, the
# snapshot beside this file ({snapshot}) is used. Regenerate after moving the project:
#   airduck -p {root} airflow dags --out <this folder>
# Needs airduck with its `airflow` extra in Airflow's environment. Where the project is mounted elsewhere (a
# container), set AIRDUCK_PROJECT_DIR to its folder there.
import os
from pathlib import Path

from airduck.orchestrate.dags import build_dags

PROJECT = os.environ.get("AIRDUCK_PROJECT_DIR") or {root!r}
SNAPSHOT = Path(__file__).with_name({snapshot!r})

globals().update(build_dags(PROJECT, SNAPSHOT))
'''


def write_dag_files(lh: Any, out: str | Path) -> list[Path]:
    """Write the DAG file and the plan snapshot of the project of `lh` into `out`; return the paths written."""
    from airduck._version import __version__

    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out}: not a folder", hint="give the Airflow DAGs folder (it is created if missing)")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"--out {out}: cannot create the folder: {exc.strerror or exc}",
                          hint="give a writable Airflow DAGs folder") from None
    data = snapshot_of(lh)
    root = lh.project.root
    dag_file = out / dag_file_name(data)
    snapshot = dag_file.with_suffix(".plan.json")
    text = _TEMPLATE.format(name=data["project"], version=__version__, cache=root / CACHE, snapshot=snapshot.name,
                            root=str(root))
    try:
        _write_json(snapshot, data)
        tmp = dag_file.with_name(f".{dag_file.name}.tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(dag_file)
    except OSError as exc:
        raise ConfigError(f"--out {out}: cannot write the DAG files: {exc.strerror or exc}",
                          hint="give a writable Airflow DAGs folder") from None
    try:
        _write_json(root / CACHE, data)
    except OSError as exc:
        raise ConfigError(f"cannot write the plan cache {root / CACHE}: {exc.strerror or exc}",
                          hint="make the project's .airduck folder writable") from None
    return [dag_file, snapshot]
