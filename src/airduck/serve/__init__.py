"""Serving gold marts: publish to a PostgreSQL serving database, export as Parquet/Delta files.

- :func:`publish_postgres` (``serve.postgres``): bulk-load into a staging table, primary key and
  indexes, check count + checksum against the lake, then swap into place in one PostgreSQL
  transaction; readers never see a half-loaded or missing mart. See :mod:`airduck.serve.postgres`.
- :func:`export_tables` (``serve.export``): Parquet files in a new folder per run, a manifest and a
  ``_latest.json`` pointer written last; optionally a Delta Lake table. See :mod:`airduck.serve.export`.

Both take the lake connection (``open_lake(project)``, no open transaction) and read every table
at one pinned lake snapshot.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from airduck.serve.export import export_tables
    from airduck.serve.postgres import publish_postgres

# Imported lazily: airduck.project imports airduck.serve.config (and so this package) to load any project.
_EXPORTS = {"export_tables": "airduck.serve.export", "publish_postgres": "airduck.serve.postgres"}

__all__ = ["export_tables", "publish_postgres"]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
