"""The `lineage:` part of airduck.yml, and OpenLineage's own settings when it is absent.

```yaml
lineage:
  namespace: jobs            # job namespace (default: the project name)
  file: .airduck/lineage/events.jsonl   # every event is always kept here (re-send with `airduck lineage send`)
  file_max_mb: 64            # rotate the file to events.jsonl.1 .. .N when it reaches this size (0: never)
  file_keep: 5               # rotated files kept (more while some hold events a backend has not got)
  http: {url: http://localhost:5000, endpoint: api/v1/lineage, api_key: "${MARQUEZ_API_KEY}", timeout: 5}
  console: true              # each event as one JSON line on the `airduck.lineage` logger
```
Several transports at once: give `http` and `console` (the file is always written); a block without `http:` sends
to ``OPENLINEAGE_URL`` when it is set. With no `lineage:` block,
OpenLineage's settings turn emission on: ``OPENLINEAGE_URL`` (+ ``OPENLINEAGE_ENDPOINT``, ``OPENLINEAGE_API_KEY``),
or the ``transport:`` of the file ``OPENLINEAGE_CONFIG`` names, or of ``openlineage.yml`` in the project (or the
current folder). ``OPENLINEAGE_DISABLED=true`` turns emission off whatever else says. As in OpenLineage's client, a config file
with a ``transport:`` wins over ``OPENLINEAGE_URL``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import Field, SecretStr

from airduck.config.base import Model
from airduck.config.secrets import register_secret
from airduck.errors import ConfigError

DEFAULT_FILE = ".airduck/lineage/events.jsonl"
DEFAULT_ENDPOINT = "api/v1/lineage"
DEFAULT_FILE_MAX_MB = 64.0
DEFAULT_FILE_KEEP = 5


class HttpTransport(Model):
    url: str = Field(description="the backend's base URL, e.g. http://localhost:5000 (Marquez)")
    endpoint: str = DEFAULT_ENDPOINT
    api_key: SecretStr | None = Field(None, description="sent as `Authorization: Bearer <key>`; use ${ENV}")
    timeout: float = Field(5.0, gt=0, le=120, description="seconds per request; a backend that is down or slow "
                                                          "is given up for the rest of the run")

    @property
    def post_url(self) -> str:
        """Where events are POSTed: the endpoint joined to the URL's path; the URL's query (a token) kept."""
        from urllib.parse import urlsplit, urlunsplit

        p = urlsplit(self.url)
        return urlunsplit((p.scheme, p.netloc, p.path.rstrip("/") + "/" + self.endpoint.lstrip("/"), p.query, ""))

    @property
    def target(self) -> str:
        """The endpoint's URL as printed: without user info, query or fragment (where tokens hide)."""
        from airduck.lineage.naming import safe_url

        return safe_url(self.post_url)


class LineageConfig(Model):
    enabled: bool = True
    namespace: str | None = Field(None, description="the job namespace (default: the project name)")
    file: str = DEFAULT_FILE
    file_max_mb: float = Field(DEFAULT_FILE_MAX_MB, ge=0, le=1024 * 1024, allow_inf_nan=False, description=(
        "rotate the events file to <file>.1 .. .N when it reaches this many MiB (0: never rotate)"))
    file_keep: int = Field(DEFAULT_FILE_KEEP, ge=1, le=10000, description=(
        "rotated files kept; a file whose events a backend has not all got is kept beyond this until "
        "`airduck lineage send` delivers them"))
    http: HttpTransport | None = None
    console: bool = False


@dataclass
class Settings:
    """Where a run's OpenLineage events go (resolved from `lineage:` or OpenLineage's own settings)."""

    enabled: bool
    namespace: str
    file: Path
    http: list[HttpTransport] = field(default_factory=list)
    console: bool = False
    origin: str = "lineage:"  # what turned it on (for `doctor` and messages)
    file_max_bytes: int = int(DEFAULT_FILE_MAX_MB * 1024 * 1024)  # rotate at this size (0: never)
    file_keep: int = DEFAULT_FILE_KEEP  # rotated files kept (more while some hold undelivered events)

    @property
    def targets(self) -> list[str]:
        return [h.target for h in self.http]


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "on")


def _from_openlineage_yml(path: Path, env: Mapping[str, str]) -> tuple[list[HttpTransport], bool, Path | None]:
    """(http transports, console, file) of an openlineage.yml's `transport:` (http, console, file, composite)."""
    import yaml

    try:
        data = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot read the OpenLineage config: {exc}",
                          hint="fix the YAML or unset OPENLINEAGE_CONFIG") from None
    http: list[HttpTransport] = []
    console = False
    file: Path | None = None

    def one(t: Mapping[str, Any]) -> None:
        nonlocal console, file
        kind = str(t.get("type", "")).lower()
        if kind == "http":
            auth = t.get("auth") or {}
            key = auth.get("apiKey") or auth.get("api_key") or env.get("OPENLINEAGE_API_KEY")
            http.append(HttpTransport(url=str(t.get("url", "")), endpoint=str(t.get("endpoint") or DEFAULT_ENDPOINT),
                                      api_key=key, timeout=float(t.get("timeout") or 5.0)))
        elif kind == "console":
            console = True
        elif kind == "file" and t.get("log_file_path"):
            file = Path(str(t["log_file_path"]))
        elif kind == "composite":
            items = t.get("transports") or []
            for item in items.values() if isinstance(items, dict) else items:
                if isinstance(item, Mapping):
                    one(item)
        else:
            raise ConfigError(f"{path}: transport type {kind or '(none)'!r} is not supported by airduck",
                              hint="use http, console, file or composite")

    transport = data.get("transport") or {}
    if isinstance(transport, Mapping) and transport:  # a file without one (facets only): no transport
        one(transport)
    return http, console, file


def resolve(config: LineageConfig | None, project_name: str, root: Path,
            env: Mapping[str, str] | None = None) -> Settings:
    """The settings a run uses: `lineage:` when given; else OPENLINEAGE_URL / OPENLINEAGE_CONFIG / openlineage.yml;
    OPENLINEAGE_DISABLED=true always wins."""
    env = os.environ if env is None else env
    off = _truthy(env.get("OPENLINEAGE_DISABLED"))
    namespace = env.get("OPENLINEAGE_NAMESPACE") or project_name
    if config is not None:
        http = [config.http] if config.http else _env_http(env)  # a block without `http:` takes OPENLINEAGE_URL
        s = Settings(config.enabled and not off, config.namespace or namespace, _path(root, config.file), http,
                     config.console, file_max_bytes=int(config.file_max_mb * 1024 * 1024),
                     file_keep=config.file_keep)
    else:
        # as OpenLineage's own client: a config file (OPENLINEAGE_CONFIG, openlineage.yml in the project or the
        # current folder, ~/.openlineage/openlineage.yml) with a transport wins over OPENLINEAGE_URL
        home = Path(env["HOME"]) if env.get("HOME") else None
        path = Path(env["OPENLINEAGE_CONFIG"]) if env.get("OPENLINEAGE_CONFIG") else next(
            (p for p in (root / "openlineage.yml", Path.cwd() / "openlineage.yml",
                         *([home / ".openlineage" / "openlineage.yml"] if home else [])) if p.is_file()), None)
        if path is not None and not path.is_file():
            raise ConfigError(f"OPENLINEAGE_CONFIG={path}: no such file", hint="point it at an openlineage.yml")
        http, console, file = _from_openlineage_yml(path, env) if path is not None else ([], False, None)
        if http or console or file:
            s = Settings(not off, namespace, _path(root, str(file)) if file else _path(root, DEFAULT_FILE), http,
                         console, origin=str(path))
        elif env.get("OPENLINEAGE_URL"):
            s = Settings(not off, namespace, _path(root, DEFAULT_FILE), _env_http(env), origin="OPENLINEAGE_URL")
        else:
            return Settings(False, namespace, _path(root, DEFAULT_FILE), origin="none")
    for h in s.http:
        if h.api_key is not None:
            register_secret(h.api_key.get_secret_value())
        _register_url_secrets(h.url)
    return s


def _register_url_secrets(url: str) -> None:
    """A backend URL's password and query values (``?api_key=...``) are secrets: an error that echoes the URL is
    masked."""
    from urllib.parse import parse_qsl, urlsplit

    parts = urlsplit(url)
    try:
        register_secret(parts.password)
    except ValueError:
        pass
    for _, value in parse_qsl(parts.query):
        register_secret(value)


def _env_http(env: Mapping[str, str]) -> list[HttpTransport]:
    if not env.get("OPENLINEAGE_URL"):
        return []
    return [HttpTransport(url=env["OPENLINEAGE_URL"], endpoint=env.get("OPENLINEAGE_ENDPOINT") or DEFAULT_ENDPOINT,
                          api_key=env.get("OPENLINEAGE_API_KEY") or None)]


def _path(root: Path, text: str) -> Path:
    p = Path(text).expanduser()
    return p if p.is_absolute() else root / p
