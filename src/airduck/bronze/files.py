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
"""

from __future__ import annotations

import contextlib
import csv
import glob as globlib
import gzip
import hashlib
import io
import itertools
import json
import os
import re
import tempfile
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import duckdb

from airduck.bronze import state
from airduck.bronze.config import FilesSource
from airduck.bronze.records import Loaded, Probe, load_records, probe_records
from airduck.bronze.table import (
    ColumnPlan,
    StagedColumn,
    base_params,
    bronze_ref,
    dedupe_names,
    ensure_meta_only_table,
    ensure_rejects_table,
    infer_types,
    insert_sql,
    plan_columns,
    rejects_insert_sql,
    rejects_ref,
    run,
    typed_sql,
)
from airduck.config.secrets import redact
from airduck.core.context import RunContext
from airduck.core.model import StepResult
from airduck.errors import ConfigError, SourceError, StorageError
from airduck.lake.connection import quote_ident, quote_literal
from airduck.storage import LocalStore, ObjectStore, open_store, validate_key
from airduck.text import plural

_WILDCARD = re.compile(r"[*?\[]")
_EXTENSIONS = {
    ".csv": "csv", ".tsv": "tsv", ".tab": "tsv", ".txt": "csv", ".json": "json", ".ndjson": "ndjson",
    ".jsonl": "ndjson", ".parquet": "parquet", ".pq": "parquet",
}
_COMPRESSION = (".gz", ".gzip", ".zst")
#: reader options airduck sets itself; `options:` may not override them
_RESERVED_OPTIONS = frozenset({
    "columns", "auto_detect", "header", "all_varchar", "store_rejects", "rejects_table", "rejects_scan",
    "rejects_limit", "ignore_errors", "filename", "union_by_name", "hive_partitioning", "null_padding",
    "file_row_number", "format", "records", "types", "column_types", "dtypes", "names", "column_names",
})
_OPTION_NAME = re.compile(r"^[a-z_][a-z0-9_]*$")
_LINE_DELIM = "\x1f"  # never in valid JSON text (control characters must be escaped): a JSON line is one field
_CHUNK = 1024 * 1024
_DIGEST_CHUNK = 4 * 1024 * 1024  # read into one buffer: no new bytes object per chunk
_MAX_LINE_FIXES = 10_000  # beyond this many undecodable lines, NDJSON rows keep the reader's ordinal
_REJ = "__airduck_rej"  # the probe's rejects table (temp, on the probe connection)
T = TypeVar("T")
_DETAIL_FILES = 100  # files listed in StepResult.details
#: CSV files are read in groups of up to this many bytes, one parallel scan per group (see _CsvGroup); a larger
#: file is streamed on its own. The staging copy of a group lives in memory (DuckDB spills it to the lake
#: connection's temp_directory if it must) and is released only when the run's transaction ends, so a run stages
#: at most STAGE_RUN_BYTES in all; the files after that are streamed one by one.
STAGE_BYTES = 1 << 30
STAGE_RUN_BYTES = 2 << 30


# --------------------------------------------------------------------------------------------------
# finding the files


@dataclass
class Candidate:
    """One file matched by the glob."""

    path: str  # s3:// URL, local path relative to the project (absolute outside it): `_source_file`, the state key
    rel: str  # path below the glob's fixed folder (the landing key's tail)
    size: int
    etag: str | None
    local: Path | None = None  # local files
    store: ObjectStore | None = None  # S3 files
    key: str | None = None


def glob_regex(pattern: str) -> re.Pattern[str]:
    """A regex for a glob relative to a folder: `*` and `?` stay within a path segment, `**/` spans folders."""
    out: list[str] = []
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if pattern.startswith("**/", i):
            out.append("(?:[^/]+/)*")
            i += 3
            continue
        if pattern.startswith("**", i):
            out.append(".*")
            i += 2
            continue
        if c == "*":
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "[":
            end = pattern.find("]", i + 2)
            if end == -1:
                out.append(re.escape(c))
            else:
                body = pattern[i + 1 : end]
                if body.startswith("!"):
                    body = "^" + body[1:]
                out.append("[" + body.replace("\\", "\\\\") + "]")
                i = end + 1
                continue
        else:
            out.append(re.escape(c))
        i += 1
    return re.compile("".join(out) + r"\Z")


def split_glob(path: str) -> tuple[str, str]:
    """(fixed folder, pattern below it): `data/*/x.csv` -> ('data', '*/x.csv'); no wildcard -> (parent, name)."""
    parts = path.split("/")
    for i, part in enumerate(parts):
        if _WILDCARD.search(part):
            return "/".join(parts[:i]), "/".join(parts[i:])
    return "/".join(parts[:-1]), parts[-1]


def discover(ctx: RunContext, name: str, cfg: FilesSource) -> list[Candidate]:
    if cfg.path.startswith("s3://"):
        return _discover_s3(ctx, name, cfg.path)
    if "://" in cfg.path:
        raise ConfigError(f"sources.{name}.path: unsupported URL {cfg.path!r}", hint="use a local glob or s3://bucket/prefix/*.csv")
    return _discover_local(ctx, cfg.path)


def _searched(ctx: RunContext, cfg: FilesSource) -> str:
    """The glob as searched: an S3 URL as given (masked), a local path made absolute against the project."""
    if "://" in cfg.path:
        return redact(cfg.path)
    full = Path(cfg.path).expanduser()
    return (full if full.is_absolute() else ctx.project.root / full).as_posix()


def _discover_local(ctx: RunContext, pattern: str) -> list[Candidate]:
    full = Path(pattern).expanduser()
    if not full.is_absolute():
        full = ctx.project.root / full
    text = full.as_posix()
    if full.is_dir():
        text = text.rstrip("/") + "/*"
    base, _ = split_glob(text)
    root = ctx.project.root.resolve()
    found: list[Candidate] = []
    for match in sorted(globlib.glob(text, recursive=True)):
        p = Path(match)
        if not p.is_file():
            continue
        st = p.stat()
        rel = os.path.relpath(p, base or "/").replace(os.sep, "/")
        found.append(Candidate(_state_path(p.resolve(), root), rel, st.st_size, f"{st.st_mtime_ns:x}-{st.st_size:x}",
                               local=p))
    return found


def _state_path(path: Path, root: Path) -> str:
    """How a local file is named in bronze and its state: relative to the project folder when it is inside it, so a
    copied or moved project recognizes the files it has ingested; absolute otherwise."""
    return path.relative_to(root).as_posix() if path.is_relative_to(root) else str(path)


def _discover_s3(ctx: RunContext, name: str, url: str) -> list[Candidate]:
    from airduck.lake.connection import storage_settings

    bucket, _, rest = url[len("s3://") :].partition("/")
    if not bucket:
        raise ConfigError(f"sources.{name}.path: {url!r} names no bucket", hint="use s3://bucket/prefix/*.csv")
    base, pattern = split_glob(rest.rstrip("/") + ("/*" if rest.endswith("/") or not rest else ""))
    store = open_store(f"s3://{bucket}/{base}", storage_settings(ctx.project))
    literal = _WILDCARD.split(pattern, maxsplit=1)[0]
    regex = glob_regex(pattern)
    try:
        objects = store.list(literal)
    except StorageError as exc:
        raise SourceError(f"source {name}: cannot list {redact(url)}: {exc.message}", hint=exc.hint) from None
    return [
        Candidate(store.url_for(o.key), o.key, o.size, o.etag, store=store, key=o.key)
        for o in objects
        if regex.match(o.key)
    ]


def file_format(cfg: FilesSource, path: str) -> str:
    if cfg.format:
        return cfg.format
    lower = path.lower()
    for ext in _COMPRESSION:
        if lower.endswith(ext):
            lower = lower[: -len(ext)]
    return _EXTENSIONS.get(Path(lower).suffix, "csv")


def _digest(path: Path, count: bytes | None) -> tuple[str, int]:
    """The sha256 of a file and how often the byte `count` occurs in it (0 when `count` is None)."""
    h = hashlib.sha256()
    n = 0
    buf = bytearray(_DIGEST_CHUNK)
    view = memoryview(buf)
    with path.open("rb", buffering=0) as f:
        while got := f.readinto(buf):
            h.update(view[:got])
            if count is not None:
                n += buf.count(count, 0, got)
    return h.hexdigest(), n


def landing_key(source: str, load_id: str, rel: str, taken: set[str] | None = None) -> str:
    """`<source>/<load_id>/<rel>`, made a valid key; a key already in `taken` (two paths that read the same once
    made valid, like `a\\b.csv` and `a_b.csv`) gets `~2`, `~3` ... before its extensions, so no copy replaces another."""
    key = f"{source}/{load_id}/{rel}"
    try:
        key = validate_key(key)
    except StorageError:
        safe = "/".join(re.sub(r"[^A-Za-z0-9._=-]", "_", seg) or "_" for seg in rel.split("/") if seg not in ("", ".", ".."))
        key = validate_key(f"{source}/{load_id}/{safe or 'file'}")
    if taken is None or key not in taken:
        return key
    folder, _, name = key.rpartition("/")
    stem, dot, exts = name.partition(".")
    n = 2
    while f"{folder}/{stem}~{n}{dot}{exts}" in taken:
        n += 1
    return f"{folder}/{stem}~{n}{dot}{exts}"


# --------------------------------------------------------------------------------------------------
# reader options


def _option_value(key: str, value: Any, source: str) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return quote_literal(value)
    raise ConfigError(f"sources.{source}.options.{key}: only strings, numbers and booleans are supported")


def user_options(cfg: FilesSource, source: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in cfg.options.items():
        k = key.lower()
        if not _OPTION_NAME.match(k):
            raise ConfigError(f"sources.{source}.options: invalid option name {key!r}")
        if k in _RESERVED_OPTIONS:
            raise ConfigError(
                f"sources.{source}.options.{key}: airduck sets this reader option itself",
                hint="remove it; bronze reads every column as text and keeps malformed lines in the rejects table",
            )
        out[k] = _option_value(key, value, source)
    return out


def _options_sql(opts: dict[str, str]) -> str:
    return ", ".join(f"{k}={v}" for k, v in opts.items())


def _csv_options(cfg: FilesSource, user: dict[str, str], fmt: str) -> dict[str, str]:
    """The CSV reader options (SQL literals): airduck's dialect, then the source's `options:`."""
    opts = {"delim": quote_literal(cfg.delimiter or ("\t" if fmt == "tsv" else ",")),
            "quote": "'\"'", "escape": "'\"'", "encoding": quote_literal(cfg.encoding)}
    opts.update({("delim" if k in ("sep", "delimiter") else k): v for k, v in user.items()})
    return opts


def _open_binary(path: Path) -> Any:
    """The file's bytes (decompressed for .gz); the caller closes it."""
    if path.name.lower().endswith((".gz", ".gzip")):
        return gzip.open(path, "rb")
    return path.open("rb")


def _open_text(path: Path, encoding: str) -> io.TextIOWrapper:
    return io.TextIOWrapper(_open_binary(path), encoding=encoding, errors="replace", newline="")


def _unquote(opt: str | None, default: str) -> str:
    if opt is None:
        return default
    return opt[1:-1].replace("''", "'") if opt.startswith("'") else opt


_FIELD_COUNT = re.compile(r"(TOO MANY COLUMNS|MISSING COLUMNS): Expected Number of Columns: (\d+) Found: (\d+)")


def _csv_reason(reason: str) -> str:
    """One clear reason per ragged CSV line: DuckDB reports a line with 3 extra fields as 3 errors
    ("Expected Number of Columns: 3 Found: 4; ... Found: 5; ... Found: 6"); say "line has 6 fields, expected 3"."""
    counts = _FIELD_COUNT.findall(reason)
    if not counts:
        return reason
    expected = int(counts[0][1])
    too_many = [int(n) for kind, _exp, n in counts if kind == "TOO MANY COLUMNS"]
    n = max(too_many) if too_many else min(int(n) for _kind, _exp, n in counts)
    others = [part for part in reason.split("; ") if not _FIELD_COUNT.fullmatch(part)]
    what = "too many fields" if n > expected else "too few fields"
    field = "field" if n == 1 else "fields"
    return "; ".join([f"{what}: line has {n} {field}, expected {expected}", *others])


def _ndjson_reason(reason: str, bad_encoding: bool) -> str:
    if bad_encoding:
        return reason
    if "TOO MANY COLUMNS" in reason:  # the line holds the reader's field separator
        return "malformed JSON: a raw control character (\\x1f) in the line"
    return f"unreadable line: {reason}"


# --------------------------------------------------------------------------------------------------
# ingest


@dataclass
class FileResult:
    path: str
    rows: int = 0
    rejects: int = 0
    landing_key: str | None = None
    version: str | None = None
    new_columns: list[str] = field(default_factory=list)
    note: str | None = None

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"path": self.path, "rows": self.rows, "rejects": self.rejects, "landing_key": self.landing_key}
        if self.note:
            d["note"] = self.note
        return d


def ingest_files(ctx: RunContext, name: str, cfg: FilesSource) -> StepResult:
    """Ingest the new and changed files of a `files` source into `bronze.<name>`."""
    table = f"bronze.{name}"
    con = ctx.con
    opts = user_options(cfg, name)
    state.ensure_state_tables(con)
    ensure_rejects_table(con, name)
    candidates = discover(ctx, name, cfg)
    ever = state.latest_files(con, name)
    if not candidates and not cfg.allow_empty and not ever:
        raise SourceError(f"sources.{name}.path: no file matches {cfg.path!r} and no file was ever ingested "
                          f"for this source (searched {_searched(ctx, cfg)})",
                          hint="fix the path (a glob relative to the project folder, or s3://bucket/prefix/*.csv), "
                          f"or set `allow_empty: true` on sources.{name} if it may be empty")
    previous = ever
    results: list[FileResult] = []
    skipped = 0
    reporter = ctx.reporter
    keys: set[str] = set()
    with tempfile.TemporaryDirectory(prefix="airduck-bronze-") as tmp:
        group: list[Landed] = []
        group_bytes = 0

        def flush() -> None:
            nonlocal group_bytes
            for result in _read_csv_group(ctx, name, cfg, opts, group, Path(tmp)):
                results.append(result)
                reporter.advance("bronze", table, rows=result.rows, done=len(results))
            ctx.staged_bytes += group_bytes
            group.clear()
            group_bytes = 0

        todo: list[tuple[int, Candidate, state.FileState | None, str, bytes | bool]] = []
        for i, cand in enumerate(candidates, 1):
            prev = previous.get(cand.path)
            if prev is None and cand.local is not None:  # named by its absolute path by airduck before 2026-12
                prev = previous.get(str(ctx.project.root.resolve() / cand.path))
            if prev is not None and prev.size == cand.size and cand.etag is not None and prev.etag == cand.etag:
                skipped += 1
                continue
            fmt = file_format(cfg, cand.path)
            key = landing_key(name, ctx.run_id, cand.rel, keys)
            keys.add(key)
            todo.append((i, cand, prev, key, _group_quote(cfg, opts, fmt, cand.path)))

        def land(item: tuple[int, Candidate, state.FileState | None, str, bytes | bool]) -> Landed | None:
            i, cand, prev, key, quote = item
            return _land(ctx, name, cand, prev, Path(tmp), i, key, quote)

        with contextlib.closing(_ahead(land, todo, LAND_AHEAD)) as landed_files:  # stop the pool on errors
            for landed in landed_files:
                if landed is None:
                    skipped += 1
                    continue
                if landed.groupable and ctx.staged_bytes + group_bytes + landed.size <= STAGE_RUN_BYTES:
                    if group and group_bytes + landed.size > STAGE_BYTES:
                        flush()
                    group.append(landed)
                    group_bytes += landed.size
                    continue
                flush()  # keep the files in order
                results.append(_read_one(ctx, name, cfg, opts, landed, Path(tmp)))
                reporter.advance("bronze", table, rows=results[-1].rows, done=len(results))
        flush()
    ensure_meta_only_table(con, name)
    rows = sum(r.rows for r in results)
    rejects = sum(r.rejects for r in results)
    rescued = _rescued_count(con, name, ctx.run_id) if rows else 0
    new_columns = [c for r in results for c in r.new_columns]
    details: dict[str, Any] = {
        "files_matched": len(candidates), "files_skipped": skipped, "rescued_rows": rescued,
        "new_columns": new_columns, "files": [r.to_dict() for r in results[:_DETAIL_FILES]],
    }
    nothing_matched = not candidates and not cfg.allow_empty
    if nothing_matched:  # a first run that finds nothing failed in _require_files
        reporter.message(f"source {name}: no files match {cfg.path}", "warning")
        details["warning"] = f"no files match {cfg.path} (files were ingested before; allow_empty: true if expected)"
    if rejects:
        reporter.message(f"source {name}: {plural(rejects, 'rejected line')} kept in {rejects_ref(name)}", "warning")
    status = "warn" if rejects or nothing_matched else ("ok" if results else "skipped")
    return StepResult(
        layer="bronze", table=table, status=status, rows_in=rows + rejects, rows_out=rows,
        rows_rejected=rejects, files=len(results), details=details,
    )


#: files landed (copied, hashed) at once, ahead of the one being read: the copy and the hash of one file take
#: about one core, so two at once use both cores (10 files / 1 GB: 2.8 s one at a time)
LAND_AHEAD = 2


def _ahead(fn: Callable[[Any], T], items: list[Any], ahead: int) -> Iterator[T]:
    """fn(item) for each item, in order, computed on `ahead` threads up to `ahead` items before they are used."""
    if ahead <= 1 or len(items) <= 1:
        for item in items:
            yield fn(item)
        return
    with ThreadPoolExecutor(max_workers=ahead, thread_name_prefix="airduck-land") as pool:
        pending: deque[Future[T]] = deque()
        rest = iter(items)
        try:
            for item in itertools.islice(rest, ahead):
                pending.append(pool.submit(fn, item))
            while pending:
                done = pending.popleft().result()
                nxt = next(rest, None)
                if nxt is not None:
                    pending.append(pool.submit(fn, nxt))
                yield done
        finally:
            for fut in pending:
                fut.cancel()


def _rescued_count(con: duckdb.DuckDBPyConnection, name: str, load_id: str) -> int:
    return int(run(con, f"SELECT count(*) FROM {bronze_ref(name).sql} WHERE _load_id = $l AND _rescued IS NOT NULL",
                   {"l": load_id}).fetchall()[0][0])


@dataclass
class Landed:
    """A new or changed file whose bytes are in the landing zone, ready to be read."""

    cand: Candidate
    local: Path  # the bytes as received: the source file, or a downloaded copy of an S3 object
    read_path: Path  # what DuckDB reads: the landing copy when the landing zone is local
    size: int
    digest: str
    version_id: str | None  # object version of the source on a versioned bucket
    key: str  # landing key
    landing_version_id: str | None
    groupable: bool = False  # may be read by a group scan (see _group_quote)

    @property
    def source_version(self) -> str:
        return self.version_id or self.digest

    def params(self, ctx: RunContext, name: str) -> dict[str, Any]:
        return {**base_params(ctx, name), "path": str(self.read_path), "src_file": self.cand.path,
                "src_version": self.source_version, "landing": self.key}

    def result(self) -> FileResult:
        return FileResult(self.cand.path, landing_key=self.key, version=self.source_version)


def _group_quote(cfg: FilesSource, opts: dict[str, str], fmt: str, path: str) -> bytes | bool:
    """Whether a file may be read by a group scan, and which byte to count for that.

    DuckDB 1.5.5's multi-file `read_csv` with `store_rejects` drops a record whose quote stays open to the end of
    its file (neither a row nor a reject) when the scan has more than 2 x threads files. With the escape equal to
    the quote, a quote is open at the end exactly when the file holds an odd number of quote bytes, so each file's
    quotes are counted while it is hashed; a file with an odd count is read on its own (streamed), where DuckDB
    rejects the record. Returns the quote byte to count, True (no quoting: nothing to count), or False: read on
    its own (not CSV, compressed, a multi-byte or distinct escape or quote).
    """
    if fmt not in ("csv", "tsv") or path.lower().endswith(_COMPRESSION):
        return False
    o = _csv_options(cfg, opts, fmt)
    quote, escape = _unquote(o.get("quote"), '"'), _unquote(o.get("escape"), '"')
    if quote == "":
        return True
    if len(quote.encode()) != 1 or escape != quote:
        return False
    return quote.encode()


def _land(ctx: RunContext, name: str, cand: Candidate, prev: state.FileState | None, tmp: Path,
          index: int, key: str, quote: bytes | bool = False) -> Landed | None:
    """Copy a candidate to the landing zone under `key` (downloading it first from S3); None if its bytes are
    unchanged. `quote` (see _group_quote) decides whether the file may be read by a group scan."""
    version_id: str | None = None
    if cand.local is not None:
        local = cand.local
    else:
        assert cand.store is not None and cand.key is not None
        try:
            info = cand.store.head(cand.key)
            version_id = info.version_id
            local = cand.store.download(cand.key, tmp / f"{index:06d}" / Path(cand.key).name, version_id)
        except StorageError as exc:
            raise SourceError(f"source {name}: cannot download {cand.path}: {exc.message}", hint=exc.hint) from None
    try:
        size = local.stat().st_size
        counted = quote if isinstance(quote, bytes) else None
        if prev is None or prev.size != size:
            # certainly a new version: hash on a second thread while the bytes are copied (both release the GIL)
            with ThreadPoolExecutor(max_workers=1) as pool:
                hashing = pool.submit(_digest, local, counted)
                put = _put_landing(ctx, name, cand, key, local)
                digest, quotes = hashing.result()
        else:
            digest, quotes = _digest(local, counted)
            if state.unchanged(prev, size, None, digest):
                _drop_download(cand, local)
                return None
            put = _put_landing(ctx, name, cand, key, local)
    except BaseException:
        _drop_download(cand, local)
        raise
    read_path = Path(ctx.landing.url_for(key)) if isinstance(ctx.landing, LocalStore) else local
    groupable = quote is True or (counted is not None and quotes % 2 == 0)
    return Landed(cand, local, read_path, size, digest, version_id, key, put.version_id,
                  groupable and size <= STAGE_BYTES)


def _put_landing(ctx: RunContext, name: str, cand: Candidate, key: str, local: Path) -> Any:
    try:
        return ctx.landing.put(key, local)
    except StorageError as exc:
        raise StorageError(f"source {name}: cannot copy {cand.path} to the landing zone: {exc.message}",
                           hint=exc.hint) from None


def _drop_download(cand: Candidate, local: Path) -> None:
    if cand.local is None:  # a downloaded copy: the landing zone keeps the bytes
        local.unlink(missing_ok=True)


def _finish(ctx: RunContext, name: str, landed: Landed, result: FileResult) -> FileResult:
    """Record the file version in the run's state and remove a downloaded copy."""
    c = landed.cand
    state.record_file(
        ctx.con,
        state.FileRecord(name, c.path, landed.size, c.etag, landed.digest, landed.version_id, landed.key,
                         landed.landing_version_id, result.rows, result.rejects),
        ctx.run_id, int(ctx.batch),
    )
    _drop_download(c, landed.local)
    return result


def _read_one(ctx: RunContext, name: str, cfg: FilesSource, opts: dict[str, str], landed: Landed,
              tmp: Path) -> FileResult:
    """Read one landed file on its own (streaming): Parquet, JSON, large CSVs and CSVs a group scan could not read."""
    result = landed.result()
    reader = _Reader(ctx, name, cfg, opts, landed.read_path, landed.params(ctx, name), result, tmp)
    fmt = file_format(cfg, landed.cand.path)
    try:
        if fmt in ("csv", "tsv"):
            reader.csv(fmt)
        elif fmt == "parquet":
            reader.parquet()
        else:
            reader.json(fmt)
    except BaseException:
        _drop_download(landed.cand, landed.local)
        raise
    finally:
        reader.drop_scratch()
    return _finish(ctx, name, landed, result)


def _read_csv_group(ctx: RunContext, name: str, cfg: FilesSource, opts: dict[str, str], group: list[Landed],
                    tmp: Path) -> list[FileResult]:
    """Read landed CSV files with one parallel scan per header (see :class:`_CsvGroup`); files the scan cannot
    read (mixed line endings, a broken file) are read one by one, which rejects or repairs them."""
    if not group:
        return []
    readers = [(landed, _Reader(ctx, name, cfg, opts, landed.read_path, landed.params(ctx, name), landed.result(),
                                tmp)) for landed in group]
    out: list[FileResult | None] = [None] * len(group)
    # runs of consecutive files with the same header, so that files are loaded in their order (a new column's
    # type is inferred from the first file that has it, as when files are read one by one)
    runs: list[tuple[tuple[str, ...], list[int]]] = []
    try:
        for i, (landed, reader) in enumerate(readers):
            fmt = file_format(cfg, landed.cand.path)
            names = reader._header(reader.csv_options(fmt))
            if names is None:  # an empty file: nothing in, nothing out
                out[i] = _finish(ctx, name, landed, reader.result)
                continue
            cols = (fmt, *(dedupe_names(names) if cfg.header else [f"column{j}" for j in range(len(names))]))
            if runs and runs[-1][0] == cols:
                runs[-1][1].append(i)
            else:
                runs.append((cols, [i]))
        for (fmt, *cols), members in runs:
            scan = _CsvGroup(ctx, name, fmt, list(cols), [readers[i] for i in members])
            if scan.load():
                for i in members:
                    out[i] = _finish(ctx, name, group[i], readers[i][1].result)
            else:
                for i in members:
                    out[i] = _read_one(ctx, name, cfg, opts, group[i], tmp)
                if scan.new_columns:  # the scan's plan added them before it failed: report them all the same
                    first = next(r for r in (out[i] for i in members) if r is not None)
                    first.new_columns = scan.new_columns + [c for c in first.new_columns if c not in scan.new_columns]
    except BaseException:
        for landed in group:
            _drop_download(landed.cand, landed.local)
        raise
    return [r for r in out if r is not None]


def _rejects_by_line() -> str:
    """The rejects a scan stored in the `_REJ` tables, one row per file and line: (file path, line, byte position,
    reasons, undecodable?, DuckDB's copy of the line)."""
    return ("SELECT s.file_path, e.line, min(e.line_byte_position), "
            "string_agg(DISTINCT e.error_type || ': ' || e.error_message, '; '), "
            "bool_or(e.error_type = 'INVALID ENCODING'), arg_min(e.csv_line, e.byte_position) "
            f"FROM temp.main.{_REJ} AS e JOIN temp.main.{_REJ}_scan AS s USING (scan_id, file_id) "
            "GROUP BY s.file_path, e.line ORDER BY s.file_path, e.line")


class _SampleFailed(Exception):
    """The type sample could not be read (on the cursor, before the table was touched)."""

    def __init__(self, error: duckdb.Error) -> None:
        super().__init__(str(error))
        self.error = error


class _CsvGroup:
    """CSV files with the same header read by ONE parallel DuckDB scan into an in-memory staging database.

    The scan runs on a cursor (its own transaction), so a file DuckDB cannot read fails only the scan, never the
    run's transaction; the caller then reads the files one by one. The staging table keeps the reader's order
    (DuckDB preserves insertion order), so a row's `rowid` gives its record number in its file without the
    single-threaded `WITH ORDINALITY`. Bronze gets the rows with one INSERT on the run's connection.
    Measured at 10 files / 10M rows / 1 GB: one scan of all files 2.9 s, one scan per file 4.1 s.
    """

    def __init__(self, ctx: RunContext, name: str, fmt: str, cols: list[str],
                 members: list[tuple[Landed, _Reader]]) -> None:
        self.ctx, self.name, self.fmt, self.cols, self.members = ctx, name, fmt, cols, members
        self.db = f"__airduck_stage_{uuid.uuid4().hex[:12]}"
        self.planned = False
        self.new_columns: list[str] = []

    def load(self) -> bool:
        """Load the group into bronze; False if DuckDB cannot scan one of its files: then no row was written,
        but columns new to bronze may have been added already (the files are read one by one next, and the
        columns stay even if every line of every file is rejected)."""
        first = self.members[0][1]
        aliases = [f"c{i}" for i in range(len(self.cols))]
        raw = f"{self.db}.main.raw"
        paths = [str(landed.read_path) for landed, _ in self.members]
        rejects = f", store_rejects=true, rejects_table='{_REJ}', rejects_scan='{_REJ}_scan')"
        staged = [StagedColumn(a, n) for a, n in zip(aliases, self.cols, strict=True)]
        with contextlib.closing(self.ctx.con.cursor()) as cur:
            try:
                sample = self._sample(cur, paths)
            except duckdb.Error as exc:
                first._config_error(exc)
                return False
            try:
                plan = self._plan(cur, staged, sample)
            except _SampleFailed as exc:
                first._config_error(exc.error)
                return False
            # Attached only now: the run's transaction sees the staged tables only if its first look at this
            # database (any information_schema query looks at every database) comes after they were committed.
            cur.execute(f"ATTACH ':memory:' AS {self.db}")
            try:
                # the values are cast while staging: the staging table holds typed values (smaller than text)
                # and the rescued JSON, so the INSERT into bronze only adds the load metadata
                scan = f"SELECT *, file_index AS __fi FROM {first.csv_scan('$paths', len(self.cols), self.fmt)}{rejects}"
                values = ", ".join(f"__v{i}" for i in range(len(plan)))
                try:
                    run(cur, f"CREATE TABLE {raw} AS SELECT {values}, __rescued, __fi FROM ({typed_sql(plan, scan)})",
                        {"paths": paths})
                except duckdb.Error as exc:
                    first._config_error(exc)
                    return False
                errors = self._errors(cur, paths)
                counts = {int(fi): (int(n), int(lo), int(hi)) for fi, n, lo, hi in cur.execute(
                    f"SELECT __fi, count(*), min(rowid), max(rowid) FROM {raw} GROUP BY __fi").fetchall()}
                total = sum(n for n, _, _ in counts.values())
                if total and not self.planned:
                    return False  # the samples found no record but the scan did: read the files one by one
                if total:
                    self._insert(cur, raw, plan, counts, total)
                for i, (_landed, reader) in enumerate(self.members):
                    reader.result.rows = counts.get(i, (0, 0, 0))[0]
                    reader.insert_reject_rows([(int(line), reader._raw_line(pos, bad, csv_line), _csv_reason(reason))
                                               for line, pos, reason, bad, csv_line in errors.get(i, [])])
                return True
            finally:
                with contextlib.suppress(duckdb.Error):
                    cur.execute(f"DETACH {self.db}")

    def _sample(self, cur: duckdb.DuckDBPyConnection, paths: list[str]) -> tuple[int, str, str] | None:
        """(member index, sample relation, its path) of the first file that has a readable record; None if none
        has. Runs on the cursor only (an error here fails the scan, not the run)."""
        tag = uuid.uuid4().hex[:10]  # the samples' rejects are thrown away with the cursor (the scan finds them)
        for i, (path, (_landed, reader)) in enumerate(zip(paths, self.members, strict=True)):
            sample = (f"SELECT * FROM {reader.csv_scan('$path', len(self.cols), self.fmt)}, store_rejects=true, "
                      f"rejects_table='__airduck_sj_{tag}', rejects_scan='__airduck_ss_{tag}')")
            if run(cur, f"SELECT count(*) FROM (SELECT 1 FROM ({sample}) LIMIT 1)", {"path": path}).fetchall()[0][0]:
                return i, sample, path
        return None

    def _plan(self, cur: duckdb.DuckDBPyConnection, staged: list[StagedColumn],
              sample: tuple[int, str, str] | None) -> list[ColumnPlan]:
        """The bronze columns; new ones are added to the table in the run's transaction, their types inferred
        from the sample on the cursor (only when there are new columns). Without a readable record, a text plan
        that leaves the table alone (`self.planned` False): such a scan has no row to insert."""
        if sample is None:
            return [ColumnPlan(c, c.name, "VARCHAR") for c in staged]
        index, relation, path = sample

        def infer(cols: list[StagedColumn]) -> dict[str, str]:
            try:
                return infer_types(cur, relation, {"path": path}, cols)
            except duckdb.Error as exc:  # on the cursor, before the table is touched: read file by file
                raise _SampleFailed(exc) from exc

        plan, self.new_columns = plan_columns(self.ctx.con, self.name, staged, infer)
        self.members[index][1].result.new_columns = list(self.new_columns)
        self.planned = True
        return plan

    def _errors(self, cur: duckdb.DuckDBPyConnection, paths: list[str]) -> dict[int, list[tuple]]:
        """The scan's rejects per file index, grouped by line as `_Reader._probe` groups them."""
        index = {p: i for i, p in enumerate(paths)}
        out: dict[int, list[tuple]] = {}
        for path, *err in cur.execute(_rejects_by_line()).fetchall():
            out.setdefault(index[path], []).append(tuple(err))
        return out

    def _insert(self, cur: duckdb.DuckDBPyConnection, raw: str, plan: list[ColumnPlan],
                counts: dict[int, tuple[int, int, int]], total: int) -> None:
        ctx, name = self.ctx, self.name
        contiguous = all(hi - lo + 1 == n for n, lo, hi in counts.values())
        rows = []
        for i, (landed, _) in enumerate(self.members):
            lo = counts.get(i, (0, 0, 0))[1]
            rows.append(f"({i}, {lo}, {quote_literal(landed.cand.path)}, {quote_literal(landed.source_version)}, "
                        f"{quote_literal(landed.key)})")
        files = f"{self.db}.main.files"
        cur.execute(f"CREATE TABLE {files} (__fi BIGINT, __start BIGINT, __src_file VARCHAR, __src_version VARCHAR, "
                    f"__landing VARCHAR)")
        cur.execute(f"INSERT INTO {files} VALUES {', '.join(rows)}")
        # rowid is the position in the scan; a file's rows are contiguous and in file order
        rn = ("r.rowid - f.__start + 1" if contiguous
              else "row_number() OVER (PARTITION BY r.__fi ORDER BY r.rowid)")
        values = ", ".join(f"r.__v{i}" for i in range(len(plan)))
        staging = (f"SELECT {values}, r.__rescued, {rn} AS __rn, f.__src_file, f.__src_version, f.__landing "
                   f"FROM {raw} AS r JOIN {files} AS f USING (__fi)")
        meta = {"_source_file": "__src_file", "_source_version": "__src_version", "_landing_key": "__landing"}
        sql = insert_sql(name, plan, staging, meta, typed=True)
        inserted = int(run(ctx.con, sql, base_params(ctx, name)).fetchall()[0][0])
        if inserted != total:  # never lose rows silently: stop the run (nothing is committed)
            raise SourceError(f"source {name}: loaded {plural(inserted, 'row')} but the staged files hold {total}; "
                              "nothing of this run was written", hint="report this; meanwhile move the files out")


_META = {"_source_file": "$src_file", "_source_version": "$src_version", "_landing_key": "$landing"}


class _Reader:
    """Reads one landed file into bronze; probes run on a cursor (own transaction) so errors cannot abort the run."""

    def __init__(self, ctx: RunContext, name: str, cfg: FilesSource, opts: dict[str, str], path: Path,
                 params: dict[str, Any], result: FileResult, tmp: Path) -> None:
        self.tmp = tmp
        self.scratch: list[str] = []
        self.normalized = False
        self.original = path
        self.ctx = ctx
        self.con = ctx.con
        self.name = name
        self.cfg = cfg
        self.opts = opts
        self.path = path
        self.params = params
        self.result = result

    def _clean(self, text: str) -> str:
        if not text:
            return ""
        text = str(text).replace(str(self.path), self.result.path).replace(str(self.original), self.result.path)
        return redact(text).strip().splitlines()[0][:500]

    def _config_error(self, exc: Exception) -> None:
        text = str(exc)
        if "named parameter" in text or "Invalid named" in text or "Unrecognized" in text:
            raise ConfigError(f"sources.{self.name}.options: {self._clean(text)}") from None

    def reject_file(self, reason: str) -> None:
        """The whole file could not be read: one rejects row, and the run goes on."""
        sql = rejects_insert_sql(
            self.name,
            "SELECT CAST(NULL AS BIGINT) AS __line, CAST(NULL AS VARCHAR) AS __raw, $reason AS __reason",
            _META,
        )
        run(self.con, sql, {**self.params, "reason": reason})
        self.result.rejects += 1
        self.result.note = reason

    def insert_reject_rows(self, rows: list[tuple[int | None, str | None, str]]) -> None:
        if not rows:
            return
        import pyarrow as pa

        view = f"__airduck_rejects_{uuid.uuid4().hex[:8]}"
        data = pa.table({
            "__line": pa.array([r[0] for r in rows], pa.int64()),
            "__raw": pa.array([r[1] for r in rows], pa.string()),
            "__reason": pa.array([r[2] for r in rows], pa.string()),
        })
        self.con.register(view, data)
        try:
            run(self.con, rejects_insert_sql(self.name, f"SELECT * FROM {quote_ident(view)}", _META), self.params)
        finally:
            self.con.unregister(view)
        self.result.rejects += len(rows)

    # -- CSV

    def csv_options(self, fmt: str) -> dict[str, str]:
        return _csv_options(self.cfg, self.opts, fmt)

    def csv_scan(self, path: str, ncols: int, fmt: str) -> str:
        """`read_csv(<path>, ...` (left open for more options) with every column as text, no sniffing."""
        columns = "{" + ", ".join(f"'c{i}': 'VARCHAR'" for i in range(ncols)) + "}"
        return (f"read_csv({path}, auto_detect=false, header={'true' if self.cfg.header else 'false'}, "
                f"columns={columns}, null_padding=false, {_options_sql(self.csv_options(fmt))}")

    def csv(self, fmt: str) -> None:
        cfg = self.cfg
        names = self._header(self.csv_options(fmt))
        if names is None:
            return  # an empty file: nothing in, nothing out
        cols = dedupe_names(names) if cfg.header else [f"column{i}" for i in range(len(names))]
        base = self.csv_scan("$path", len(cols), fmt)
        reads = ", ".join(f"count(c{i})" for i in range(len(cols)))
        probe_sql = (f"SELECT count(*), {reads} FROM {base}, store_rejects=true, "
                     f"rejects_table='{_REJ}', rejects_scan='{_REJ}_scan')")
        with contextlib.closing(self.con.cursor()) as probe:
            try:
                good, errors = self._probe(probe, lambda: int(run(probe, probe_sql, self.params).fetchall()[0][0]))
            except duckdb.Error as exc:
                self._config_error(exc)
                self.reject_file(f"cannot read the {fmt.upper()} file: {self._clean(str(exc))}")
                return
            staged = [StagedColumn(f"c{i}", n) for i, n in enumerate(cols)]
            relation = f"SELECT * FROM {base}{self._skip_rejects()})"
            if good:
                plan, self.result.new_columns = plan_columns(
                    self.con, self.name, staged, lambda c: infer_types(probe, relation, self.params, c))
        if good:
            staging = (f"SELECT {', '.join(f'c{i}' for i in range(len(cols)))}, ordinality AS __rn "
                       f"FROM {base}{self._skip_rejects()}) WITH ORDINALITY")
            self.result.rows = int(run(self.con, insert_sql(self.name, plan, staging, _META), self.params).fetchall()[0][0])
            if self.result.rows != good:  # never lose rows silently: stop the run (nothing is committed)
                raise SourceError(f"source {self.name}: {self.result.path}: loaded {plural(self.result.rows, 'row')} but the "
                                  f"file has {good} readable rows; nothing of this run was written",
                                  hint="report this file; meanwhile move it out of the source folder")
        self.insert_reject_rows([
            (int(line), self._raw_line(pos, bad_encoding, csv_line), _csv_reason(reason))
            for line, pos, reason, bad_encoding, csv_line in errors
        ])

    def _probe(self, probe: duckdb.DuckDBPyConnection, scan: Callable[[], T]) -> tuple[T, list[tuple]]:
        """Run a full scan that stores its rejects on the probe connection; return its result and the rejects
        grouped by line: (line, byte position, reasons, undecodable?, DuckDB's copy of the line)."""
        try:
            out = scan()
        except duckdb.InvalidInputException as exc:
            # Mixed line endings (a CRLF file with LF lines appended) stop DuckDB's strict parser; read a
            # copy with CRLF turned into LF (the landing copy keeps the bytes as received).
            if "invalid state" not in str(exc) or not self._normalize():
                raise
            probe.execute(f"DROP TABLE IF EXISTS temp.main.{_REJ}")
            probe.execute(f"DROP TABLE IF EXISTS temp.main.{_REJ}_scan")
            out = scan()
        errors = [tuple(r[1:]) for r in probe.execute(_rejects_by_line()).fetchall()]
        return out, errors

    def _normalize(self) -> bool:
        """Point the reader at a copy of the file with CRLF line ends turned into LF; False if not possible."""
        if self.normalized or self.path.name.lower().endswith(".zst"):
            return False
        dest = self.tmp / f"normalized-{uuid.uuid4().hex[:8]}.csv"
        with _open_binary(self.path) as src, dest.open("wb") as out:
            carry = b""
            for chunk in iter(lambda: src.read(_CHUNK), b""):
                chunk = carry + chunk
                carry = b"\r" if chunk.endswith(b"\r") else b""
                out.write(chunk[: len(chunk) - len(carry)].replace(b"\r\n", b"\n"))
            out.write(carry)
        self.path = dest
        self.params["path"] = str(dest)
        self.normalized = True
        return True

    def _header(self, opts: dict[str, str]) -> list[str] | None:
        """The header fields (or the first line's fields when there is no header); None for an empty file."""
        skip = int(opts.get("skip", "0") or 0)
        delim = _unquote(opts.get("delim"), ",")
        quote = _unquote(opts.get("quote"), '"') or None
        try:
            with _open_text(self.path, self.cfg.encoding) as f:
                for _ in range(skip):
                    f.readline()
                line = f.readline()
                while line and not line.strip("\r\n") and not self.cfg.header:
                    line = f.readline()
        except (OSError, EOFError, gzip.BadGzipFile) as exc:
            raise SourceError(f"source {self.name}: cannot read {self.result.path}: {exc}") from None
        line = line.lstrip("\ufeff").rstrip("\r\n")
        if not line:
            return None
        reader = csv.reader([line], delimiter=delim if len(delim) == 1 else ",", quotechar=quote, quoting=csv.QUOTE_MINIMAL if quote else csv.QUOTE_NONE)
        fields = next(reader, [])
        if len(delim) > 1:
            fields = line.split(delim)
        return fields or [""]

    def _raw_line(self, pos: int | None, bad_encoding: bool, csv_line: str | None) -> str | None:
        """The raw text of a rejected line; for undecodable bytes read from the file with the bytes escaped."""
        if bad_encoding and pos is not None and not self.path.name.lower().endswith(_COMPRESSION):
            try:
                # DuckDB's byte position is near the line's start (sometimes one off, or at a blank line
                # before it): go back to the line's start, then skip blank lines.
                start = max(0, int(pos) - 4096)
                with self.path.open("rb") as f:
                    f.seek(start)
                    data = f.read(int(pos) - start + _CHUNK)
                cut = data.rfind(b"\n", 0, int(pos) - start)
                data = data[cut + 1 :].lstrip(b"\r\n")
                line = data.split(b"\n", 1)[0].rstrip(b"\r")
                return line.decode(self.cfg.encoding, errors="backslashreplace")
            except OSError:
                pass
        return csv_line.strip("\r\n") if csv_line is not None else None

    # -- Parquet

    def parquet(self) -> None:
        with contextlib.closing(self.con.cursor()) as probe:
            try:
                described = run(probe, f"DESCRIBE SELECT * FROM read_parquet($path{self._opts()})", self.params).fetchall()
                reads = ", ".join(f"count({quote_ident(r[0])})" for r in described)
                good = int(run(probe, f"SELECT count(*){', ' + reads if reads else ''} FROM read_parquet($path{self._opts()})",
                               self.params).fetchall()[0][0])
            except duckdb.Error as exc:
                self._config_error(exc)
                self.reject_file(f"cannot read the Parquet file: {self._clean(str(exc))}")
                return
        if not good or not described:
            return
        staged = [StagedColumn(f"c{i}", r[0], r[1], text=False) for i, r in enumerate(described)]
        plan, self.result.new_columns = plan_columns(self.con, self.name, staged, lambda c: {})
        cols = ", ".join(f"{quote_ident(r[0])} AS c{i}" for i, r in enumerate(described))
        staging = f"SELECT {cols}, file_row_number + 1 AS __rn FROM read_parquet($path, file_row_number=true{self._opts()})"
        self.result.rows = int(run(self.con, insert_sql(self.name, plan, staging, _META), self.params).fetchall()[0][0])

    def _skip_rejects(self) -> str:
        """Reader options that skip the rows the probe rejected.

        `ignore_errors=true` alone skips more than `store_rejects` does after a bad quote (DuckDB 1.5.5 drops
        the rest of the file), so the loads store their rejects too, in a throw-away temp table.
        """
        tag = uuid.uuid4().hex[:10]
        self.scratch.append(tag)
        return f", store_rejects=true, rejects_table='__airduck_rj_{tag}', rejects_scan='__airduck_rs_{tag}'"

    def drop_scratch(self) -> None:
        if self.normalized:
            self.path.unlink(missing_ok=True)
        for tag in self.scratch:
            with contextlib.suppress(duckdb.Error):  # an aborted transaction: the temp tables go with it
                self.con.execute(f"DROP TABLE IF EXISTS temp.main.__airduck_rj_{tag}")
                self.con.execute(f"DROP TABLE IF EXISTS temp.main.__airduck_rs_{tag}")
        self.scratch.clear()

    def _opts(self) -> str:
        return "".join(f", {k}={v}" for k, v in self.opts.items())

    # -- JSON

    def json(self, fmt: str) -> None:
        kind = "ndjson" if fmt == "ndjson" else self._json_kind()
        if kind is None:
            return  # empty file
        if kind in ("array", "unstructured"):
            relation = (f"SELECT json AS __j, CAST(json AS VARCHAR) AS __raw, ordinality AS __rn "
                        f"FROM read_json_objects($path, format='{kind}'{self._opts()}) WITH ORDINALITY")
            with contextlib.closing(self.con.cursor()) as probe:
                try:
                    found = probe_records(probe, relation, self.params)
                except duckdb.Error as exc:
                    self._config_error(exc)
                    if kind == "array":
                        self.reject_file(f"cannot read the JSON array: {self._clean(str(exc))}")
                        return
                    # not one document: read it line by line, rejecting the broken lines
                else:
                    self._load(probe, relation, relation, found)
                    return
        self._ndjson()

    def _json_kind(self) -> str | None:
        with _open_text(self.path, "utf-8") as f:
            head = f.read(_CHUNK)
        text = head.lstrip("\ufeff \t\r\n")
        if not text:
            return None
        if text.startswith("["):
            return "array"
        first = text.split("\n", 1)[0].strip()
        try:
            json.loads(first)
            return "ndjson"
        except ValueError:
            return "unstructured"

    def _ndjson(self) -> None:
        opts = {"encoding": quote_literal(self.cfg.encoding)}
        opts.update(self.opts)
        base = (f"read_csv($path, auto_detect=false, header=false, columns={{'line': 'VARCHAR'}}, "
                f"delim={quote_literal(_LINE_DELIM)}, quote='', escape='', null_padding=false, "
                f"{_options_sql(opts)}")

        def records(extra: str, line_no: str = "ordinality") -> str:
            return (f"SELECT TRY_CAST(line AS JSON) AS __j, line AS __raw, {line_no} AS __rn FROM {base}{extra}) "
                    "WITH ORDINALITY WHERE line IS NOT NULL AND trim(line, ' \t\r\n') <> ''")

        with contextlib.closing(self.con.cursor()) as probe:
            try:
                rejects_opts = f", store_rejects=true, rejects_table='{_REJ}', rejects_scan='{_REJ}_scan'"
                found, errors = self._probe(probe, lambda: probe_records(probe, records(rejects_opts), self.params))
            except duckdb.Error as exc:
                self._config_error(exc)
                self.reject_file(f"cannot read the NDJSON file: {self._clean(str(exc))}")
                return
            # The reader returns every line (an empty one as NULL) except those it rejected: put them back
            # into the count so that `__rn` is the physical line number.
            rejected = sorted(int(e[0]) for e in errors)
            line_no = "ordinality"
            if rejected and len(rejected) <= _MAX_LINE_FIXES:
                self.params["skipped_lines"] = [r - i for i, r in enumerate(rejected, 1)]
                line_no = "ordinality + len(list_filter($skipped_lines, x -> x < ordinality))"
            relation = records(self._skip_rejects(), line_no)
            self._load(probe, relation, relation, found)
        self.insert_reject_rows([
            (int(line), self._raw_line(pos, bad_encoding, csv_line), _ndjson_reason(reason, bad_encoding))
            for line, pos, reason, bad_encoding, csv_line in errors
        ])

    def _load(self, probe: duckdb.DuckDBPyConnection, probe_relation: str, load_relation: str,
              found: Probe | None = None) -> None:
        loaded: Loaded = load_records(
            self.con, probe, self.name, probe_relation=probe_relation, load_relation=load_relation,
            params=self.params, meta=_META, probed=found,
        )
        self.result.rows += loaded.rows
        self.result.rejects += loaded.rejects
        self.result.new_columns += loaded.new_columns
