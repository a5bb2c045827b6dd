"""airduck.yml: models, loading, interpolation and secrets."""

from airduck.config.loader import PROJECT_FILE, find_project_dir
from airduck.config.project import ENV_OVERRIDES, Project, ProjectConfig, load_project
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
