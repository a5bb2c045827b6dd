"""Loading DuckDB extensions from the offline PyPI wheels (never from the internet)."""

from __future__ import annotations

import threading

import duckdb

from airduck.errors import CatalogError

#: extension name as LOADed -> name of its `duckdb-extension-*` wheel
EXTENSIONS = {"ducklake": "ducklake", "sqlite_scanner": "sqlite", "postgres_scanner": "postgres", "httpfs": "httpfs"}
_installed: set[str] = set()
_lock = threading.Lock()


def load_extensions(con: duckdb.DuckDBPyConnection, names: tuple[str, ...] = tuple(EXTENSIONS)) -> None:
    """LOAD each extension, installing it first from its wheel if DuckDB does not have it yet."""
    con.execute("SET autoinstall_known_extensions = false")
    for name in names:
        try:
            con.execute(f"LOAD {name}")
            continue
        except duckdb.Error:
            pass
        install_extension(con, name)
        con.execute(f"LOAD {name}")


def install_extension(con: duckdb.DuckDBPyConnection, name: str) -> None:
    """Copy an extension from its `duckdb-extension-*` wheel into DuckDB's extension folder."""
    wheel = EXTENSIONS.get(name, name)
    with _lock:
        try:
            import duckdb_extensions

            duckdb_extensions.import_extension(wheel, force_install=name in _installed, con=con)
        except ModuleNotFoundError as exc:
            raise CatalogError(
                f"DuckDB extension {name} is not installed",
                hint=f"install the wheel duckdb-extension-{wheel}=={duckdb.__version__} (uv sync)",
            ) from exc
        except duckdb.Error as exc:
            raise CatalogError(f"cannot install DuckDB extension {name} from its wheel: {exc}") from exc
        _installed.add(name)


def install_all() -> None:
    """Install every extension airduck uses (for tools like dbt that LOAD them by name)."""
    con = duckdb.connect()
    try:
        load_extensions(con)
    finally:
        con.close()
