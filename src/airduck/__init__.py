"""airduck: an open-source lakehouse for Python data teams.

    import airduck
    lh = airduck.open("path/to/project")      # or airduck.open() inside a project folder
    result = lh.run()                          # sources -> bronze -> silver -> gold -> serve
    lh.query("SELECT * FROM gold.salary_by_skill_city_month").df()
    lh.table("silver.vacancies").to_arrow_table()
"""

from __future__ import annotations

from pathlib import Path
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
    from airduck.scaffold import GenerateResult

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
    "ensure_demo_project",
    "generate_demo_data",
    "init",
    "load_project",
    "open",
]


def open(path: Any = None, reporter: Any = None) -> Lakehouse:
    """Open the project at `path` (default: search upwards from the current folder)."""
    from airduck.lakehouse import Lakehouse

    return Lakehouse.open(path, reporter)


# -- what needs no project yet (`airduck init`, `airduck demo`): no lake, no DuckDB imported --------------------
def init(directory: str | Path, *, name: str | None = None, force: bool = False, demo: bool = False,
         days: int = 14, seed: int = 42, source_dsn: str | None = None, serve_dsn: str | None = None) -> Path:
    """Create a project in `directory` (made if missing) with a commented airduck.yml named `name` (default: the
    folder's name); with `demo`, the job-market demo project and `days` of its data (`seed`: the same seed, the
    same data; `source_dsn`/`serve_dsn`: PostgreSQL to load the companies into and to publish the marts to).
    An existing airduck.yml is kept (ConfigError) unless `force`. Returns the project file."""
    from airduck.scaffold import create_demo_project, init_project

    if demo:
        return create_demo_project(Path(directory), days=days, seed=seed, source_dsn=source_dsn,
                                   serve_dsn=serve_dsn, force=force)
    return init_project(Path(directory), name=name, force=force)


def ensure_demo_project(directory: str | Path = "airduck-demo", *, days: int = 14) -> bool:
    """Create the demo project with `days` of data in `directory` unless it has an airduck.yml already; True if it
    was created. Run it with ``airduck.open(directory).run()``."""
    from airduck.config.loader import PROJECT_FILE
    from airduck.scaffold import create_demo_project

    if (Path(directory) / PROJECT_FILE).exists():
        return False
    create_demo_project(Path(directory), days=days)
    return True


def generate_demo_data(project: str | Path | None = None, days: int = 1) -> GenerateResult:
    """Add `days` new days of data after the last one to the demo project at `project` (default: the project
    around the current folder); ConfigError in a project that is not the demo."""
    from airduck.config.loader import find_project_dir
    from airduck.scaffold import generate, require_demo_project

    root = Path(project) if project is not None else find_project_dir()
    require_demo_project(root)
    return generate(root, days)


def __getattr__(name: str) -> Any:  # heavy modules load on first use: `airduck --help` stays fast
    if name == "Lakehouse":
        from airduck.lakehouse import Lakehouse

        return Lakehouse
    if name in ("Project", "load_project"):
        from airduck import project

        return getattr(project, name)
    raise AttributeError(f"module 'airduck' has no attribute {name!r}")
