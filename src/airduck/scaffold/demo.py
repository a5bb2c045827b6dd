"""The ready-made demo project: `airduck init DIR --demo`.

It writes a complete project over the generated job-market data (see :mod:`airduck.scaffold.generator`):

- ``airduck.yml`` (commented): embedded lake defaults; sources ``vacancies`` (daily NDJSON files) and
  ``companies`` (daily CSV files, or ``type: postgres`` with ``dsn: ${DEMO_SOURCE_DSN}`` and
  ``cursor: updated_at`` when a source DSN is given); silver ``vacancies`` (merge) and ``companies`` (scd2);
  gold ``dbt_project: gold/``; serve ``export`` to ``exports/`` as Parquet, plus ``postgres`` with
  ``dsn: ${DEMO_SERVE_DSN}`` when a serve DSN is given;
- ``.env`` with the DSNs (mode 0600), only when a DSN is given; ``.gitignore``; ``README.md``;
- ``gold/``: a dbt project (profile ``airduck``, models materialized as tables) with the marts
  ``salary_by_skill_city_month``, ``top_growing_skills``, ``company_hiring_activity`` and their tests.
  airduck generates ``gold/models/_airduck_sources.yml`` at run time; it is not part of the template.

Then it generates the first `days` of data.
"""

from __future__ import annotations

import os
import re
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path

from airduck.config.loader import PROJECT_FILE
from airduck.config.secrets import redact, register_dsn
from airduck.errors import ConfigError
from airduck.scaffold.generator import DEFAULT_SEED, SOURCE_DSN_VAR, STATE_FILE, generate

SERVE_DSN_VAR = "DEMO_SERVE_DSN"
_BLOCK = re.compile(r"^@@([A-Z_]+)@@\n", re.M)
_ENV_KEY = re.compile(r"^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=")


def _template() -> Traversable:
    return resources.files("airduck.scaffold").joinpath("templates/demo")


def _copy_tree(src: Traversable, dest: Path) -> list[Path]:
    written = []
    for item in sorted(src.iterdir(), key=lambda t: t.name):
        if item.name.startswith(".") or item.name == "__pycache__":
            continue
        target = dest / item.name
        if item.is_dir():
            written += _copy_tree(item, target)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(item.read_bytes())
            written.append(target)
    return written


def render_project_file(name: str, *, postgres_source: bool, postgres_serve: bool) -> str:
    """The demo's airduck.yml text."""
    template = _template()
    blocks = {
        "COMPANIES_SOURCE": "companies_postgres.yml" if postgres_source else "companies_files.yml",
        "SERVE_POSTGRES": "serve_postgres.yml" if postgres_serve else "serve_postgres_commented.yml",
    }
    text = template.joinpath("airduck.yml").read_text(encoding="utf-8").replace("@@NAME@@", name)

    def block(match: re.Match[str]) -> str:
        return template.joinpath("blocks", blocks[match.group(1)]).read_text(encoding="utf-8")

    return _BLOCK.sub(block, text)


def _env_value(value: str) -> str:
    """A value for a .env line, single-quoted so `#`, spaces and `$` stay literal."""
    if "\n" in value or "\r" in value:
        raise ConfigError("a DSN cannot contain a line break")
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _write_env(directory: Path, values: dict[str, str]) -> Path:
    """Set `values` in the project's .env (other lines are kept); the file is readable by its owner only."""
    path = directory / ".env"
    kept: list[str] = []
    if path.is_file():
        for line in path.read_text(encoding="utf-8").splitlines():
            m = _ENV_KEY.match(line)
            if not (m and m.group(1) in values):
                kept.append(line)
    lines = kept + [f"{key}={_env_value(value)}" for key, value in values.items()]
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write("\n".join(lines) + "\n")
    os.chmod(path, 0o600)
    return path


def _write_gitignore(directory: Path) -> None:
    wanted = _template().joinpath("gitignore").read_text(encoding="utf-8")
    path = directory / ".gitignore"
    if not path.exists():
        path.write_text(wanted, encoding="utf-8")
        return
    have = set(path.read_text(encoding="utf-8").splitlines())
    missing = [line for line in wanted.splitlines() if line and not line.startswith("#") and line not in have]
    if missing:
        text = path.read_text(encoding="utf-8")
        sep = "" if text.endswith("\n") or not text else "\n"
        path.write_text(text + sep + "\n".join(missing) + "\n", encoding="utf-8")


def _project_name(directory: Path) -> str:
    return re.sub(r"[^a-z0-9_]+", "_", directory.resolve().name.lower()).strip("_") or "jobs_demo"


def create_demo_project(directory: Path | str, *, days: int = 14, seed: int = DEFAULT_SEED,
                        source_dsn: str | None = None, serve_dsn: str | None = None, force: bool = False,
                        vacancies_per_day: int = 300) -> Path:
    """Create the demo project in `directory` and generate its first `days` of data; return its airduck.yml.

    `source_dsn` puts the companies into PostgreSQL (``public.companies`` of that database) instead of CSV
    files; `serve_dsn` publishes the marts to that PostgreSQL database. Both are written to ``.env`` (0600),
    never to airduck.yml. An existing project is only replaced with `force`, which also starts the demo
    dataset over (its day files and state, and the companies table in the source database).
    """
    directory = Path(directory)
    target = directory / PROJECT_FILE
    if target.exists() and not force:
        raise ConfigError(f"{target} already exists", hint="use --force to replace it with the demo project")
    for dsn in (source_dsn, serve_dsn):
        if dsn is not None and not dsn.strip():
            raise ConfigError("an empty DSN was given", hint="pass a postgresql://user@host:5432/db DSN or nothing")
        if dsn:
            register_dsn(dsn)
    if not force and (directory / STATE_FILE).exists():
        raise ConfigError(f"{directory / STATE_FILE} already exists (demo data without a project)",
                          hint="use --force to start the demo over")
    try:
        directory.mkdir(parents=True, exist_ok=True)
        # Data first: an unreachable source database fails before any project file is written.
        generate(directory, days, seed=seed, source_dsn=source_dsn, vacancies_per_day=vacancies_per_day,
                 reset=force)
        _write_files(directory, source_dsn=source_dsn, serve_dsn=serve_dsn)
    except OSError as exc:
        raise ConfigError(f"cannot write the demo project in {directory}: {redact(exc.strerror or str(exc))}",
                          hint="check the folder's permissions and free space") from None
    return target


def _write_files(directory: Path, *, source_dsn: str | None, serve_dsn: str | None) -> None:
    template = _template()
    _copy_tree(template.joinpath("gold"), directory / "gold")
    (directory / "README.md").write_bytes(template.joinpath("README.md").read_bytes())
    _write_gitignore(directory)
    env = {k: v for k, v in ((SOURCE_DSN_VAR, source_dsn), (SERVE_DSN_VAR, serve_dsn)) if v}
    if env:
        _write_env(directory, env)
    text = render_project_file(_project_name(directory), postgres_source=bool(source_dsn),
                               postgres_serve=bool(serve_dsn))
    (directory / PROJECT_FILE).write_text(text, encoding="utf-8")


def is_demo_project(directory: Path | str) -> bool:
    """Whether `directory` holds a demo project: the demo's data generator keeps its state there
    (``data/.generator.json``, written by every version of `airduck demo` / `airduck init --demo`)."""
    return (Path(directory) / STATE_FILE).is_file()


def require_demo_project(directory: Path | str) -> None:
    """ConfigError unless `directory` is a demo project (demo data is never written into another project)."""
    if not is_demo_project(directory):
        raise ConfigError(f"{Path(directory) / PROJECT_FILE} is not a demo project (it has no {STATE_FILE}): "
                          "demo data is only added to the demo project",
                          hint="run it in a project made by `airduck demo` or `airduck init DIR --demo`, "
                          "or pass -p airduck-demo")
