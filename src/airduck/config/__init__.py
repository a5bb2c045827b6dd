"""airduck.yml mechanics: YAML with line numbers, ${VAR}, secrets, the base model, and the Project (loaded lazily:
the CLI starts fast). The whole file's model and `load_project` are in :mod:`airduck.project`, above the stages."""

from __future__ import annotations

from typing import Any

from airduck.config.loader import PROJECT_FILE, find_project_dir
from airduck.config.secrets import redact, register_secret

__all__ = [
    "PROJECT_FILE",
    "Project",
    "find_project_dir",
    "redact",
    "register_secret",
]


def __getattr__(name: str) -> Any:
    if name == "Project":
        from airduck.config.project import Project

        return Project
    raise AttributeError(f"module 'airduck.config' has no attribute {name!r}")
