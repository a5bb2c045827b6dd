"""airduck: an open-source lakehouse for Python data teams.

    import airduck
    lh = airduck.open("path/to/project")      # or airduck.open() inside a project folder
    result = lh.run()                          # sources -> bronze -> silver -> gold -> serve
    lh.query("SELECT * FROM gold.salary_by_skill_city_month").df()
    lh.table("silver.vacancies").to_arrow_table()
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airduck._version import __version__
from airduck.errors import (
    AirduckError,
    CatalogError,
    ConcurrentRunError,
    ConfigError,
    DbtError,
    NotFound,
    QualityGateFailed,
    RuleError,
    RunFailed,
    ServeError,
    SourceError,
    SqlError,
    StorageError,
    Terminal,
    Transient,
)

if TYPE_CHECKING:
    from airduck.lakehouse import Lakehouse
    from airduck.project import Project, load_project

__all__ = [
    "AirduckError",
    "CatalogError",
    "ConcurrentRunError",
    "ConfigError",
    "DbtError",
    "Lakehouse",
    "NotFound",
    "Project",
    "QualityGateFailed",
    "RuleError",
    "RunFailed",
    "ServeError",
    "SourceError",
    "SqlError",
    "StorageError",
    "Terminal",
    "Transient",
    "__version__",
    "load_project",
    "open",
]


def open(path: Any = None, reporter: Any = None) -> Lakehouse:
    """Open the project at `path` (default: search upwards from the current folder)."""
    from airduck.lakehouse import Lakehouse

    return Lakehouse.open(path, reporter)


def __getattr__(name: str) -> Any:  # heavy modules load on first use: `airduck --help` stays fast
    if name == "Lakehouse":
        from airduck.lakehouse import Lakehouse

        return Lakehouse
    if name in ("Project", "load_project"):
        from airduck import project

        return getattr(project, name)
    raise AttributeError(f"module 'airduck' has no attribute {name!r}")
