"""Reading airduck.yml: YAML 1.2 with line numbers, `${VAR}` interpolation and a `.env` file."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from airduck.errors import ConfigError

PROJECT_FILE = "airduck.yml"
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")

Loc = tuple[str | int, ...]


class _LineLoader(yaml.SafeLoader):
    """A SafeLoader with YAML 1.2 booleans: only true/false (any case style) are booleans, so `on:`, `off`,
    `yes`, `no`, `y`, `n` stay strings (the documented `lookups: [{on: {id: id}}]` works unquoted)."""


_BOOL = "tag:yaml.org,2002:bool"
_LineLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != _BOOL]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_LineLoader.add_implicit_resolver(_BOOL, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))


def _compose_lines(node: yaml.Node, path: Loc, lines: dict[Loc, int]) -> None:
    lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = key_node.value
            lines[(*path, key)] = key_node.start_mark.line + 1
            _compose_lines(value_node, (*path, key), lines)
            lines[(*path, key)] = key_node.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _compose_lines(item, (*path, i), lines)


def read_yaml(path: Path) -> tuple[dict[str, Any], dict[Loc, int]]:
    """Parse a YAML mapping and return it with a map from key path to line number."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise ConfigError(f"{path}: file not found", hint="run `airduck init DIR` to create a project") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text ({exc.reason})") from exc
    try:
        loader = _LineLoader(text)  # parsed once: the node tree gives the line numbers and the data
        try:
            node = loader.get_single_node()
            data = loader.construct_document(node) if node is not None else None
        finally:
            loader.dispose()
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{path}{where}: invalid YAML: {problem}") from exc
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}:1: expected a mapping of settings at the top level, found {type(data).__name__}")
    lines: dict[Loc, int] = {}
    if node is not None:
        _compose_lines(node, (), lines)
    return data, lines


def read_dotenv(project_dir: Path) -> dict[str, str]:
    """Variables from the project's `.env` file (the real environment wins over them)."""
    env_file = project_dir / ".env"
    if not env_file.is_file():
        return {}
    from dotenv import dotenv_values

    return {k: v for k, v in dotenv_values(env_file).items() if v is not None}


def project_env(project_dir: Path, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment a project sees: `.env` first, then the process environment on top."""
    env = read_dotenv(project_dir)
    env.update(os.environ if environ is None else environ)
    return env


def interpolate(data: Any, env: Mapping[str, str], file: Path, lines: dict[Loc, int], path: Loc = (),
                missing: dict[Loc, ConfigError] | None = None) -> Any:
    """Replace `${VAR}` and `${VAR:-default}` in every string of a parsed YAML document.

    An unset variable raises a ConfigError (naming it, the key and the line), or, when `missing` is given,
    is recorded there under its key path and the string is left as written: the setting fails only where
    it is used (see `Project.require`).
    """
    if isinstance(data, dict):
        return {k: interpolate(v, env, file, lines, (*path, k), missing) for k, v in data.items()}
    if isinstance(data, list):
        return [interpolate(v, env, file, lines, (*path, i), missing) for i, v in enumerate(data)]
    if isinstance(data, str) and "${" in data:
        unset: list[ConfigError] = []

        def sub(match: re.Match[str]) -> str:
            name, default = match.group(1), match.group(2)
            if name in env:
                return env[name]
            if default is not None:
                return default
            unset.append(ConfigError(
                f"{where(file, lines, path)}: environment variable {name} is not set",
                hint=f"export {name}=... or add it to {file.parent / '.env'}",
            ))
            return match.group(0)

        value = _VAR.sub(sub, data)
        if unset:
            if missing is None:
                raise unset[0]
            missing.setdefault(path, unset[0])
            return data
        return value
    return data


def where(file: Path, lines: dict[Loc, int], loc: Loc) -> str:
    """`file:line: key.path` for the nearest key of `loc` that has a known line."""
    dotted = ".".join(str(p) for p in loc)
    probe = tuple(loc)
    while probe and probe not in lines:
        probe = probe[:-1]
    line = lines.get(probe)
    prefix = f"{file}:{line}" if line else str(file)
    return f"{prefix}: {dotted}" if dotted else prefix


def find_project_dir(start: Path | None = None) -> Path:
    """The nearest folder from `start` upwards that holds an airduck.yml."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / PROJECT_FILE).is_file():
            return folder
    raise ConfigError(
        f"no {PROJECT_FILE} found in {here} or any parent folder",
        hint="run inside a project, pass -p/--project DIR, or create one with `airduck init DIR`",
    )
