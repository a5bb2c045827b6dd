"""Incremental state of the bronze layer, kept in lake tables written in the run's own transaction.

Because the state is written in the same transaction as the bronze rows, a run that is rolled back (a later
step failed, the process was killed) leaves no state behind either: the next run ingests the same inputs again.

``airduck.bronze_files`` — one row per file version ingested (or rejected as a whole):

================== =========== ==============================================================
column             type        meaning
================== =========== ==============================================================
source             VARCHAR     source name
path               VARCHAR     original path or URL of the file
size               BIGINT      bytes
etag               VARCHAR     S3 ETag; for local files ``<mtime_ns hex>-<size hex>`` (a cheap change hint)
sha256             VARCHAR     sha256 of the bytes ingested
version_id         VARCHAR     object version id of the source on a versioned bucket, else NULL
landing_key        VARCHAR     key of the raw copy in the landing zone
landing_version_id VARCHAR     object version id of the landing copy on a versioned bucket, else NULL
load_id            VARCHAR     run id
batch              BIGINT      run sequence number
rows               BIGINT      rows loaded into bronze
rejects            BIGINT      rows (or the whole file) written to the rejects table
ingested_at        TIMESTAMPTZ when
================== =========== ==============================================================

A file is skipped when its latest row has the same size and the same etag or sha256; a changed file is
ingested again as a new version. A reingest (:func:`clear_source`) deletes the source's bronze rows, rejects and
state in the run's transaction, so every input is read again once: replaced, never duplicated.

``airduck.watermarks`` — the cursor of each incremental source (appended; its latest row is current):
``source VARCHAR, cursor_column VARCHAR, value VARCHAR, load_id VARCHAR, updated_at TIMESTAMPTZ``.
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb

from airduck.lake.catalog import TableRef
from airduck.lake.connection import LAKE

FILES_REF = TableRef("airduck", "bronze_files")
WATERMARKS_REF = TableRef("airduck", "watermarks")
FILES = f"{LAKE}.airduck.bronze_files"
WATERMARKS = f"{LAKE}.airduck.watermarks"

_FILES_DDL = (
    f"CREATE TABLE IF NOT EXISTS {FILES} (source VARCHAR, path VARCHAR, size BIGINT, etag VARCHAR, sha256 VARCHAR, "
    "version_id VARCHAR, landing_key VARCHAR, landing_version_id VARCHAR, load_id VARCHAR, batch BIGINT, "
    "rows BIGINT, rejects BIGINT, ingested_at TIMESTAMPTZ)"
)
_WATERMARKS_DDL = (
    f"CREATE TABLE IF NOT EXISTS {WATERMARKS} (source VARCHAR, cursor_column VARCHAR, value VARCHAR, "
    "load_id VARCHAR, updated_at TIMESTAMPTZ)"
)


@dataclass(frozen=True)
class FileState:
    path: str
    size: int | None
    etag: str | None
    sha256: str | None
    version_id: str | None


@dataclass
class FileRecord:
    source: str
    path: str
    size: int
    etag: str | None
    sha256: str | None
    version_id: str | None
    landing_key: str | None
    landing_version_id: str | None
    rows: int
    rejects: int


def ensure_state_tables(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(_FILES_DDL)
    con.execute(_WATERMARKS_DDL)


def latest_files(con: duckdb.DuckDBPyConnection, source: str) -> dict[str, FileState]:
    """The latest ingested version of each file of `source`, by path."""
    rows = con.execute(
        f"SELECT path, size, etag, sha256, version_id FROM {FILES} WHERE source = $source "
        "QUALIFY row_number() OVER (PARTITION BY path ORDER BY ingested_at DESC, batch DESC) = 1",
        {"source": source},
    ).fetchall()
    return {r[0]: FileState(r[0], r[1], r[2], r[3], r[4]) for r in rows}


def unchanged(previous: FileState | None, size: int, etag: str | None, sha256: str | None) -> bool:
    """Whether a file with this size/etag/sha256 is the version ingested last time."""
    if previous is None or previous.size != size:
        return False
    if sha256 is not None and previous.sha256 is not None:
        return sha256 == previous.sha256
    return etag is not None and etag == previous.etag


def record_file(con: duckdb.DuckDBPyConnection, rec: FileRecord, load_id: str, batch: int) -> None:
    con.execute(
        f"INSERT INTO {FILES} VALUES ($source, $path, $size, $etag, $sha256, $version_id, $landing_key, "
        "$landing_version_id, $load_id, $batch, $rows, $rejects, now())",
        {
            "source": rec.source, "path": rec.path, "size": rec.size, "etag": rec.etag, "sha256": rec.sha256,
            "version_id": rec.version_id, "landing_key": rec.landing_key,
            "landing_version_id": rec.landing_version_id, "load_id": load_id, "batch": batch,
            "rows": rec.rows, "rejects": rec.rejects,
        },
    )


def clear_source(con: duckdb.DuckDBPyConnection, source: str) -> int:
    """Forget what was ingested from `source` (for a reingest, inside the run's transaction): its rows in
    `bronze.<source>` and `bronze.<source>__rejects`, its file versions and its watermark. Returns the bronze rows
    deleted."""
    from airduck.bronze.table import bronze_ref, rejects_ref
    from airduck.lake.catalog import table_exists

    bronze, rejects = bronze_ref(source), rejects_ref(source)
    deleted = int(con.execute(f"DELETE FROM {bronze.sql}").fetchone()[0]) if table_exists(con, bronze) else 0
    if table_exists(con, rejects):
        con.execute(f"DELETE FROM {rejects.sql}")
    con.execute(f"DELETE FROM {FILES} WHERE source = $source", {"source": source})
    con.execute(f"DELETE FROM {WATERMARKS} WHERE source = $source", {"source": source})
    return deleted


def get_watermark(con: duckdb.DuckDBPyConnection, source: str, cursor_column: str) -> str | None:
    """The saved cursor value of `source` (None if there is none, or it was for another cursor column)."""
    row = con.execute(
        f"SELECT value FROM {WATERMARKS} WHERE source = $source AND cursor_column = $col "
        "ORDER BY updated_at DESC LIMIT 1",
        {"source": source, "col": cursor_column},
    ).fetchone()
    return row[0] if row else None


def set_watermark(con: duckdb.DuckDBPyConnection, source: str, cursor_column: str, value: str, load_id: str) -> None:
    """Append the new cursor value (the latest row wins): a DELETE would make steps of other sources, which insert
    into this table at the same time, fail at commit (DuckLake: "another transaction has deleted from it")."""
    con.execute(
        f"INSERT INTO {WATERMARKS} VALUES ($source, $col, $value, $load_id, now())",
        {"source": source, "col": cursor_column, "value": value, "load_id": load_id},
    )
