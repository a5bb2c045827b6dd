"""OpenLineage names of airduck's datasets (https://openlineage.io/docs/spec/naming), with no secrets.

- files of a `files` source: local ``file`` + absolute path (glob as configured); S3 ``s3://<bucket>`` + key
- PostgreSQL tables: ``postgres://<host>:<port>`` + ``<database>.<schema>.<table>`` (a query source:
  ``<database>.query:<source>``)
- HTTP APIs: ``<scheme>://<host>[:<port>]`` + the path (no user info, no query string, no fragment)
- lake tables (DuckLake, no entry in the spec yet): ``ducklake://<catalog>`` + ``<schema>.<table>``, where
  ``<catalog>`` is ``<host>:<port>/<database>`` of a PostgreSQL catalog, or the absolute path of a file catalog
  (``ducklake:///srv/p/.airduck/catalog.sqlite``): the same lake always gets the same namespace
- served marts: ``postgres://<host>:<port>`` + ``<database>.<schema>.<table>``, like any PostgreSQL table
- exports: ``file`` + ``<folder>/<table>.<format>`` (or ``s3://<bucket>`` + the key)
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from airduck.core.model import Dataset, DatasetKind
from airduck.text import safe_url


def _storage(location: str) -> tuple[str, str]:
    """(namespace, name) of a local path or object-store URL."""
    location = safe_url(location)
    if "://" in location:
        scheme, _, rest = location.partition("://")
        bucket, _, key = rest.partition("/")
        return f"{scheme}://{bucket}", key
    return "file", location


def _join(folder: str | None, name: str) -> str:
    if not folder:
        return name
    if "://" in name or name.startswith("/"):
        return name
    return folder.rstrip("/") + "/" + name


def _pg(location: str | None) -> tuple[str, str]:
    """(namespace, database) of a ``postgres://host:port/db`` location."""
    if not location:
        return "postgres://localhost:5432", ""
    parts = urlsplit(location)
    return f"postgres://{parts.hostname or 'localhost'}:{parts.port or 5432}", parts.path.lstrip("/")


def lake_namespace(project: Any) -> str:
    """``ducklake://<catalog>`` of a project's lake (no user or password)."""
    catalog = str(project.config.lake.catalog)
    if catalog.startswith(("postgres:", "postgresql:")):
        dsn = catalog.split(":", 1)[1] if not catalog.startswith(("postgres://", "postgresql://")) else catalog
        try:
            from psycopg.conninfo import conninfo_to_dict

            d = conninfo_to_dict(dsn)
        except Exception:
            d = {}
        host = str(d.get("host") or "localhost")
        if host.startswith("/"):
            host = "localhost"
        return f"ducklake://{host}:{d.get('port') or 5432}/{d.get('dbname') or ''}"
    if "://" in catalog:
        return "ducklake://" + safe_url(catalog).split("://", 1)[1]
    return "ducklake://" + project.resolve(catalog)


def dataset_name(dataset: Dataset, lake_ns: str) -> tuple[str, str]:
    """(namespace, name) of a plan dataset."""
    kind = dataset.kind
    if kind == DatasetKind.LAKE:
        return lake_ns, dataset.name
    if kind == DatasetKind.FILES:
        return _storage(_join(dataset.location, dataset.name.rsplit("/", 1)[-1] if dataset.location else dataset.name))
    if kind in (DatasetKind.POSTGRES, DatasetKind.POSTGRES_MART):
        ns, db = _pg(dataset.location)
        name = dataset.name.replace('"', "")
        if "." not in name and not name.startswith("query:"):
            name = f"public.{name}"  # PostgreSQL's default schema: the spec's name is database.schema.table
        return ns, f"{db}.{name}" if db else name
    if kind == DatasetKind.HTTP:
        url = safe_url(dataset.name)
        if "://" in url:
            scheme, _, rest = url.partition("://")
            host, _, path = rest.partition("/")
            return f"{scheme}://{host}", "/" + path
        return "http", url
    if kind == DatasetKind.EXPORT:
        return _storage(_join(dataset.location, dataset.name))
    return "airduck", str(dataset)
