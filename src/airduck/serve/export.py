"""Exporting gold marts as files: Parquet (with a manifest) and, optionally, a Delta Lake table.

Layout under `serve.export.path` (a local folder or ``s3://bucket/prefix/``), per table::

    <name>/<run_id>/part_0.parquet ...   the table at one lake snapshot, a new folder per run
    <name>/<run_id>/manifest.json        written after every file of the folder is complete
    <name>/_latest.json                  written last: points at the newest complete run folder
    <name>/_delta/                       Delta Lake table (format: [delta]), overwritten per run

A reader that follows ``_latest.json`` (or only reads folders that hold a ``manifest.json``) never
sees partial files. ``manifest.json``: table, name, rows, snapshot_id, run_id, written_at, location,
files (names relative to the manifest's folder), columns and, with Delta, the Delta table's path
and version.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb

from airduck.config.project import Project
from airduck.config.secrets import redact
from airduck.core.model import StepResult
from airduck.errors import ServeError
from airduck.events import Reporter
from airduck.lake.catalog import TableRef, current_snapshot, require_table
from airduck.lake.connection import create_s3_secret, quote_literal, s3_access, storage_settings
from airduck.serve.columns import select_sql, served_columns

MANIFEST = "manifest.json"
LATEST = "_latest.json"
DELTA_FOLDER = "_delta"
FILE_SIZE = "256MB"


def export_root(project: Project) -> str:
    cfg = project.config.serve.export
    assert cfg is not None
    root = project.resolve(cfg.path)
    return root if root.endswith("/") else root + "/"


def delta_storage_options(project: Project) -> dict[str, str]:
    """delta-rs options for the project's S3 settings (path-style, plain HTTP when the endpoint is)."""
    a = s3_access(project)
    opts = {"AWS_REGION": a.region, "AWS_S3_ALLOW_UNSAFE_RENAME": "true"}
    if a.key_id:
        opts["AWS_ACCESS_KEY_ID"] = a.key_id
    if a.secret:
        opts["AWS_SECRET_ACCESS_KEY"] = a.secret
    if a.endpoint:
        opts["AWS_ENDPOINT_URL"] = ("https://" if a.use_ssl else "http://") + a.endpoint
        if not a.use_ssl:
            opts["AWS_ALLOW_HTTP"] = "true"
    opts["AWS_VIRTUAL_HOSTED_STYLE_REQUEST"] = "false" if a.url_style == "path" else "true"
    return opts


def export_tables(
    con: duckdb.DuckDBPyConnection, project: Project, *, run_id: str, reporter: Reporter | None = None,
    only: set[str] | None = None,
) -> list[StepResult]:
    """Export the `serve.export` tables (those named in `only`, when given) at the current lake snapshot; one
    StepResult per table."""
    cfg = project.config.serve.export
    if cfg is None or not cfg.tables:
        return []
    reporter = reporter or Reporter()
    root = export_root(project)
    remote = "://" in root
    if root.startswith("s3://"):
        create_s3_secret(con, project)
    from airduck.storage import open_store

    store = open_store(root, storage_settings(project), base_dir=project.root)
    snapshot = current_snapshot(con)
    sources = []
    for served in cfg.tables:
        source = TableRef.parse(served.table, default_schema="gold")
        if only is not None and (served.name or source.name) not in only:  # one export:<name> step of a plan
            continue
        require_table(con, source)
        sources.append((source, served.name or source.name))
    results = []
    for source, name in sources:
        reporter.start("export", table=source.qualified)
        started = time.monotonic()
        folder = f"{root}{name}/{run_id}/"
        manifest: dict[str, Any] = {
            "table": source.qualified, "name": name, "run_id": run_id, "snapshot_id": snapshot,
            "formats": list(cfg.format), "location": folder,
        }
        rows = 0
        files: list[str] = []
        cols = served_columns(con, source, "parquet")
        manifest["columns"] = [{"name": c.name, "type": c.type} for c in cols]
        if "parquet" in cfg.format:
            if not remote:
                Path(folder).parent.mkdir(parents=True, exist_ok=True)
            overwrite = "OVERWRITE_OR_IGNORE true" if remote else "OVERWRITE true"
            try:
                rows, paths = con.execute(
                    f"COPY ({select_sql(source, cols, snapshot)}) TO {quote_literal(folder.rstrip('/'))} "
                    f"(FORMAT parquet, COMPRESSION zstd, FILE_SIZE_BYTES '{FILE_SIZE}', "
                    f"FILENAME_PATTERN 'part_{{i}}', RETURN_FILES true, {overwrite})"
                ).fetchall()[0]
            except duckdb.Error as exc:
                raise ServeError(f"cannot export {source} to {folder}: {redact(str(exc).strip().splitlines()[0])}",
                                 hint="check serve.export.path and the S3 settings") from None
            files = sorted(p.rsplit("/", 1)[-1] for p in paths)
            manifest["files"] = files
        if "delta" in cfg.format:
            delta_uri = f"{root}{name}/{DELTA_FOLDER}"
            version = _write_delta(con, project, source, snapshot, delta_uri)
            if "parquet" not in cfg.format:
                rows = con.execute(f"SELECT count(*) FROM {source.sql} AT (VERSION => {int(snapshot)})").fetchall()[0][0]
            manifest["delta"] = {"path": delta_uri, "version": version}
        manifest["rows"] = int(rows)
        manifest["written_at"] = datetime.now(UTC).isoformat()
        # the manifest, then the pointer: last, so readers only ever find complete folders
        store.put(f"{name}/{run_id}/{MANIFEST}", json.dumps(manifest, indent=2).encode())
        store.put(f"{name}/{LATEST}", json.dumps({
            "run_id": run_id, "manifest": f"{run_id}/{MANIFEST}", "snapshot_id": snapshot,
            "rows": int(rows), "written_at": manifest["written_at"],
        }, indent=2).encode())
        reporter.finish("export", table=source.qualified, rows=int(rows), files=len(files))
        results.append(StepResult(
            layer="serve", table=source.qualified, status="ok", rows_in=int(rows), rows_out=int(rows),
            files=len(files),
            details={"target": "export", "location": folder, "manifest": f"{folder}{MANIFEST}",
                     "snapshot_id": snapshot, "formats": list(cfg.format), "delta": manifest.get("delta"),
                     "seconds": round(time.monotonic() - started, 3), "run_id": run_id},
        ))
    return results


def _write_delta(con: duckdb.DuckDBPyConnection, project: Project, source: TableRef, snapshot: int,
                 uri: str) -> int:
    """Overwrite the Delta table at `uri` with `source` at `snapshot`; returns its new version."""
    from deltalake import DeltaTable, write_deltalake

    cols = served_columns(con, source, "delta")
    options = delta_storage_options(project) if uri.startswith("s3://") else None
    if "://" not in uri:
        Path(uri).mkdir(parents=True, exist_ok=True)
    try:
        reader = con.execute(select_sql(source, cols, snapshot)).to_arrow_reader(100_000)
        write_deltalake(uri, reader, mode="overwrite", schema_mode="overwrite", storage_options=options)
        table = DeltaTable(uri, storage_options=options)
        version = int(table.version())
    except Exception as exc:  # deltalake raises its own error types (DeltaError, OSError, ...)
        raise ServeError(f"cannot write the Delta table of {source} at {uri}: "
                         f"{redact(str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__)}") from None
    return version
