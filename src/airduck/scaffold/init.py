"""`airduck init DIR`: a new project folder with a commented airduck.yml."""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path

from airduck.config.loader import PROJECT_FILE
from airduck.errors import ConfigError


def init_project(directory: Path, name: str | None = None, force: bool = False) -> Path:
    """Write ``DIR/airduck.yml`` from the commented template (and a .gitignore); refused if it exists, unless
    ``force``. Returns the path of the project file."""
    directory = Path(directory)
    target = directory / PROJECT_FILE
    if target.exists() and not force:
        raise ConfigError(f"{target} already exists", hint="use --force to overwrite it")
    project_name = name or re.sub(r"[^a-z0-9_]+", "_", directory.resolve().name.lower()).strip("_") or "lakehouse"
    template = resources.files("airduck.scaffold").joinpath("templates/init/airduck.yml").read_text(encoding="utf-8")
    directory.mkdir(parents=True, exist_ok=True)
    target.write_text(template.replace("__NAME__", project_name), encoding="utf-8")
    gitignore = directory / ".gitignore"
    if not gitignore.exists():
        gitignore.write_text(".airduck/\n.env\n", encoding="utf-8")
    return target
