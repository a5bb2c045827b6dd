"""airduck.yml: models, loading, interpolation and secrets (loaded lazily: the CLI starts fast)."""

from __future__ import annotations

from typing import Any

from airduck.config.loader import PROJECT_FILE, find_project_dir
from airduck.config.secrets import redact, register_secret

__all__ = [
    "ENV_OVERRIDES",
    "PROJECT_FILE",
    "Project",
    "ProjectConfig",
    "find_project_dir",
    "load_project",
    "redact",
    "register_secret",
]


def __getattr__(name: str) -> Any:
    if name in ("ENV_OVERRIDES", "Project", "ProjectConfig", "load_project"):
        from airduck.config import project

        return getattr(project, name)
    raise AttributeError(f"module 'airduck.config' has no attribute {name!r}")
