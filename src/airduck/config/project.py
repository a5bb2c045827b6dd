"""The Project: a project folder and its airduck.yml, validated.

The stages import `Project` from here. The model of the whole file (`ProjectConfig`, composed of each stage's own
model) and `load_project` live in :mod:`airduck.project`, above the stages: `config` never imports a stage.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from airduck.config.loader import PROJECT_FILE, Loc
from airduck.errors import ConfigError

if TYPE_CHECKING:
    from airduck.project import ProjectConfig


@dataclass
class Project:
    """A project folder: its airduck.yml, validated, and the environment it was read with."""

    root: Path
    config: ProjectConfig
    env: dict[str, str] = field(default_factory=dict, repr=False)
    #: settings whose `${VAR}` is unset, by key path: an error only where the setting is used (`require`)
    missing: dict[Loc, ConfigError] = field(default_factory=dict, repr=False)
    #: names of the variables whose values came from the `secrets:` (SOPS) files: secrets by definition. Whoever
    #: renders a pod or a DAG passes these by reference (a Kubernetes Secret key of the same name), never by value
    secret_vars: frozenset[str] = field(default_factory=frozenset, repr=False)

    def require(self, *parts: Loc) -> None:
        """Raise the error of an unset `${VAR}` in any of these parts of airduck.yml (key paths such as
        ``("lake",)`` or ``("sources", "orders")``) before they are used."""
        for loc, error in self.missing.items():
            if any(loc[:len(part)] == part for part in parts):
                raise error

    def has_something_to_run(self) -> bool:
        cfg = self.config
        return bool(cfg.sources or cfg.silver or cfg.gold.dbt_project or cfg.serve.postgres or cfg.serve.export)

    @property
    def file(self) -> Path:
        return self.root / PROJECT_FILE

    @property
    def state_dir(self) -> Path:
        """`.airduck/` in the project: the embedded catalog, data and run artifacts by default."""
        return self.root / ".airduck"

    def resolve(self, location: str) -> str:
        """A lake/landing location as airduck uses it: URLs as they are, local paths made absolute."""
        if "://" in location or location.startswith(("postgres:", "postgresql:")):
            return location
        path = Path(location).expanduser()
        if not path.is_absolute():
            path = self.root / path
        text = str(path)
        if location.endswith("/") and not text.endswith("/"):
            text += "/"
        return text
