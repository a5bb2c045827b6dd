"""The whole airduck.yml: `ProjectConfig`, composed of each stage's config model, and `load_project`.

This sits above the stage packages (each owns the model of its part of the file) and below the pipeline; the
`Project` it returns is :class:`airduck.config.project.Project`, which the stages use.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from pydantic import Field, SecretStr, ValidationError, field_validator

from airduck.bronze.config import Source
from airduck.config.base import Model
from airduck.config.loader import (
    PROJECT_FILE,
    Loc,
    find_project_dir,
    interpolate,
    project_env,
    read_yaml,
    where,
)
from airduck.config.project import Project
from airduck.config.secrets import normalize_dsn, register_dsn, register_secret
from airduck.errors import ConfigError
from airduck.gold.config import GoldConfig
from airduck.lake.config import LakeConfig
from airduck.orchestrate.config import AirflowConfig
from airduck.serve.config import ServeConfig
from airduck.silver.config import SilverTable

__all__ = ["ENV_OVERRIDES", "Project", "ProjectConfig", "load_project"]

_NAME = re.compile(r"^[a-z_][a-z0-9_]*$")

#: environment variables that override `lake:` settings (they win over airduck.yml)
ENV_OVERRIDES: dict[str, tuple[str, ...]] = {
    "AIRDUCK_CATALOG": ("catalog",),
    "AIRDUCK_DATA_PATH": ("data_path",),
    "AIRDUCK_LANDING": ("landing",),
    "AIRDUCK_S3_ENDPOINT": ("s3", "endpoint"),
    "AWS_ACCESS_KEY_ID": ("s3", "access_key_id"),
    "AWS_SECRET_ACCESS_KEY": ("s3", "secret_access_key"),
    "AWS_REGION": ("s3", "region"),
}


class ProjectConfig(Model):
    name: str = "airduck"
    lake: LakeConfig = Field(default_factory=LakeConfig)
    sources: dict[str, Source] = Field(default_factory=dict)
    silver: dict[str, SilverTable] = Field(default_factory=dict)
    gold: GoldConfig = Field(default_factory=GoldConfig)
    serve: ServeConfig = Field(default_factory=ServeConfig)
    airflow: AirflowConfig = Field(default_factory=AirflowConfig)
    #: SOPS-encrypted files (paths relative to the project) whose keys become `${VAR}` values
    secrets: list[str] = Field(default_factory=list)

    @field_validator("sources", "silver")
    @classmethod
    def _names(cls, value: dict[str, Any]) -> dict[str, Any]:
        for name in value:
            if not _NAME.match(name):
                raise ValueError(f"table name {name!r} must be lower_snake_case (letters, digits, _)")
        return value


def _set(data: dict[str, Any], path: tuple[str, ...], value: str) -> None:
    node = data
    for key in path[:-1]:
        child = node.get(key)
        if not isinstance(child, dict):
            child = {}
            node[key] = child
        node = child
    node[path[-1]] = value


def _data_loc(data: Any, loc: tuple) -> tuple:
    """Drop the parts of a pydantic location that are not in the document (union tags and the like)."""
    out: list = []
    node = data
    for part in loc:
        if (isinstance(node, dict) and part in node) or (
            isinstance(node, list) and isinstance(part, int) and part < len(node)
        ):
            node = node[part]
            out.append(part)
        elif isinstance(node, dict | list):
            if part == loc[-1]:
                out.append(part)  # a missing or unknown key: name it
            continue
    return tuple(out)


def _format_error(file: Path, lines: dict, exc: ValidationError, data: Any) -> str:
    parts = []
    for err in exc.errors()[:5]:
        loc = _data_loc(data, tuple(err["loc"]))
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown key (check its spelling; see `airduck init` for a commented example)"
        elif err["type"] == "union_tag_invalid" or err["type"] == "union_tag_not_found":
            msg = "`type` must be one of files, postgres, http"
        elif err["type"] == "missing":
            msg = "required key is missing"
        found = err.get("input")
        detail = ""
        if err["type"] not in ("missing", "extra_forbidden") and not isinstance(found, dict | list):
            detail = f" (found {found!r})"
        parts.append(f"{where(file, lines, loc)}: {msg}{detail}")
    more = len(exc.errors()) - 5
    if more > 0:
        parts.append(f"... and {more} more")
    return "; ".join(parts)


def load_project(path: str | Path | None = None, environ: Mapping[str, str] | None = None) -> Project:
    """Find, read and validate a project. `path` is the project folder, a file in it, or None (search up)."""
    start = Path(path) if path is not None else None
    if start is not None and start.is_file():
        start = start.parent
    if start is not None and not start.exists():
        raise ConfigError(f"project folder {start} does not exist")
    root = find_project_dir(start) if start is None else start.resolve()
    file = root / PROJECT_FILE
    if not file.is_file():
        raise ConfigError(f"{file}: no {PROJECT_FILE} here", hint="create one with `airduck init DIR`")
    raw, lines = read_yaml(file)
    if not raw:
        raise ConfigError(f"{file}: the file is empty: it needs `name: <project>` and something to run "
                          "(a source under `sources:`, silver tables, a gold dbt project or serving)",
                          hint="see the commented example `airduck init DIR` writes")
    if "name" in raw and raw["name"] is None:
        raise ConfigError(f"{where(file, lines, ('name',))}: the project has no name",
                          hint="write `name: <project>` (lower_snake_case)")
    env = project_env(root, environ)
    env, secret_vars = _sops_env(root, file, lines, raw, env, os.environ if environ is None else environ)
    missing: dict[Loc, ConfigError] = {}
    data = interpolate(raw, env, file, lines, missing=missing)
    for loc, error in missing.items():
        if loc[0] not in _LAZY:
            raise error
    lake = data.get("lake")
    if lake is not None and not isinstance(lake, dict):
        raise ConfigError(f"{where(file, lines, ('lake',))}: expected a mapping")
    data.setdefault("lake", {})
    for var, key_path in ENV_OVERRIDES.items():
        if env.get(var):
            _set(data["lake"], key_path, env[var])
            missing.pop(("lake", *key_path), None)
    try:
        config = ProjectConfig.model_validate(data)
    except ValidationError as exc:
        for err in exc.errors():  # a value that is invalid because its variable is unset: name the variable
            loc = _data_loc(data, tuple(err["loc"]))
            for mloc, error in missing.items():
                if mloc[:len(loc)] == loc or loc[:len(mloc)] == mloc:
                    raise error from None
        raise ConfigError(_format_error(file, lines, exc, data)) from None
    _secure_dsns(config)
    return Project(root=root, config=config, env=env, missing=missing, secret_vars=secret_vars)


def _sops_env(root: Path, file: Path, lines: dict, raw: dict[str, Any], env: dict[str, str],
              outer: Mapping[str, str]) -> tuple[dict[str, str], frozenset[str]]:
    """The environment with the keys of the `secrets:` files added (`.env` < SOPS files < the process
    environment), and the names of those keys."""
    files = raw.get("secrets")
    if not files:
        return env, frozenset()
    if not isinstance(files, list) or not all(isinstance(f, str) for f in files):
        raise ConfigError(f"{where(file, lines, ('secrets',))}: expected a list of SOPS-encrypted files",
                          hint="write `secrets: [secrets.enc.yaml]`")
    from airduck.config.sops import decrypt_file

    decrypted: dict[str, str] = {}
    for i, name in enumerate(files):
        name = interpolate(name, env, file, lines, ("secrets", i))
        path = Path(name).expanduser()
        decrypted.update(decrypt_file(path if path.is_absolute() else root / path, env,
                                      label=where(file, lines, ("secrets", i))))
    merged = {**env, **decrypted}
    merged.update(outer)  # the real environment still wins (a Kubernetes Secret's env var over the file)
    return merged, frozenset(decrypted)


#: top-level parts whose unset `${VAR}`s fail only when the part is used; any other one fails at load
_LAZY = ("lake", "sources", "silver", "gold", "serve", "airflow")


def _secure_dsns(config: ProjectConfig) -> None:
    """Register every secret of the config and percent-encode DSN passwords drivers would mis-parse."""
    secret: SecretStr | None = config.lake.s3.secret_access_key
    if secret is not None:
        register_secret(secret.get_secret_value())
    holders: list[tuple[Any, str]] = [(config.lake, "catalog")]
    holders += [(s, "dsn") for s in config.sources.values() if getattr(s, "dsn", None)]
    if config.serve.postgres:
        holders.append((config.serve.postgres, "dsn"))
    for holder, attr in holders:
        dsn = getattr(holder, attr)
        register_dsn(dsn)
        setattr(holder, attr, normalize_dsn(dsn))
    for src in config.sources.values():
        for name, value in (getattr(src, "headers", None) or {}).items():
            if name.lower() not in _PLAIN_HEADERS:
                register_secret(value)
                register_secret(value.split(" ", 1)[-1])
        url_query = parse_qsl(urlsplit(str(getattr(src, "url", "") or "")).query)  # `url: …?token=…` too
        for name, value in [*(getattr(src, "params", None) or {}).items(), *url_query]:
            if _SENSITIVE.search(name):
                register_secret(str(value))


#: headers whose values are not secrets; every other header value of an http source is masked in output
_PLAIN_HEADERS = {"accept", "accept-encoding", "accept-language", "content-type", "user-agent", "cache-control"}
_SENSITIVE = re.compile(r"key|token|secret|pass|auth|sig|session|cookie|credential", re.I)
