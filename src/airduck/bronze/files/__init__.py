"""The `files` source: CSV/TSV, JSON (array, NDJSON or one document) and Parquet files matched by a glob.

For each file matched by ``path`` (local glob relative to the project, absolute, or ``s3://bucket/prefix/*.csv``):

1. **Incremental**: a file whose size and etag (S3 ETag; for local files mtime+size) or sha256 equal the
   version ingested last time (``airduck.bronze_files``) is skipped; a changed file is ingested again as a new
   version. A reingest (``airduck run --reingest``) forgets the state first: see :func:`airduck.bronze.state.clear_source`.
2. **Landing**: the raw bytes are copied as received to ``<source>/<load_id>/<path below the glob's folder>``
   in the landing zone (with the object version id on a versioned bucket). The rows are read from the very
   same bytes (the landing copy when the landing zone is local).
3. **Reading** in DuckDB, never row by row in Python. Every probe that could fail runs on a separate
   connection first, so a broken file never aborts the run's transaction:

   - CSV/TSV: DuckDB's CSV reader with all columns as text, explicit dialect (no sniffing: a ``#`` line is data)
     and ``store_rejects``: ragged lines (too many/too few fields), bad quoting and undecodable bytes go to
     ``bronze.<name>__rejects`` with the physical line number, the raw line and the reason. Empty lines
     are not data. For every file: records parsed = rows in bronze + rows in rejects.
   - NDJSON: each line read as text (undecodable lines rejected by the reader), parsed with DuckDB's JSON;
     a malformed line or a line that is not an object is rejected with its text. Non-empty lines = rows +
     rejects. ``format: json`` detects an array (``[``), NDJSON, or a single document.
   - Parquet: read typed; a file that cannot be read is rejected as a whole (one rejects row) and the run
     goes on.
4. **Types**: see :mod:`airduck.bronze.table` — inferred from a sample for new columns, new columns added,
   values that do not fit kept in ``_rescued``.

The modules, one job each: :mod:`.discovery` (1, and the file versions), :mod:`.landing` (2), a reader per format
(3: :mod:`.csv_reader`, :mod:`.json_reader`, :mod:`.parquet_reader`, sharing :mod:`.reader`), and :mod:`.ingest`,
the source's step that ties them together (its limits, like ``STAGE_BYTES``, live there).
"""

from airduck.bronze.files.discovery import Candidate, discover, file_format, glob_regex, split_glob
from airduck.bronze.files.ingest import FileResult, ingest_files
from airduck.bronze.files.landing import Landed, landing_key
from airduck.bronze.files.reader import user_options

__all__ = [
    "Candidate",
    "FileResult",
    "Landed",
    "discover",
    "file_format",
    "glob_regex",
    "ingest_files",
    "landing_key",
    "split_glob",
    "user_options",
]
