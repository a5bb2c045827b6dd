"""The `files` source's step: discover, land, read each file with its format's reader, account for every line."""

from __future__ import annotations

import contextlib
import tempfile
from pathlib import Path
from typing import Any

import duckdb

from airduck.bronze import state
from airduck.bronze.config import FilesSource
from airduck.bronze.files.csv_reader import CsvReader, _CsvGroup, _group_quote
from airduck.bronze.files.discovery import (
    Candidate,
    _searched,
    discover,
    file_format,
    listed_unchanged,
    previous_version,
)
from airduck.bronze.files.json_reader import JsonReader
from airduck.bronze.files.landing import (
    LAND_AHEAD,
    FileResult,
    Landed,
    _ahead,
    _drop_download,
    _land,
    landing_key,
)
from airduck.bronze.files.parquet_reader import ParquetReader
from airduck.bronze.files.reader import FileReader, user_options
from airduck.bronze.table import (
    bronze_ref,
    dedupe_names,
    ensure_meta_only_table,
    ensure_rejects_table,
    rejects_ref,
    run,
)
from airduck.core.context import RunContext
from airduck.core.model import StepResult
from airduck.errors import SourceError
from airduck.text import plural

_DETAIL_FILES = 100  # files listed in StepResult.details
#: CSV files are read in groups of up to this many bytes, one parallel scan per group (see _CsvGroup); a larger
#: file is streamed on its own. The staging copy of a group lives in memory (DuckDB spills it to the lake
#: connection's temp_directory if it must) and is released only when the run's transaction ends, so a run stages
#: at most STAGE_RUN_BYTES in all; the files after that are streamed one by one.
STAGE_BYTES = 1 << 30
STAGE_RUN_BYTES = 2 << 30
#: the reader of each format (`json` and `ndjson` are read by the JSON reader)
_READERS: dict[str, type[FileReader]] = {"csv": CsvReader, "tsv": CsvReader, "parquet": ParquetReader}


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
            prev = previous_version(previous, cand, ctx.project.root)
            if listed_unchanged(prev, cand):
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
                if (landed.groupable and landed.size <= STAGE_BYTES
                        and ctx.staged_bytes + group_bytes + landed.size <= STAGE_RUN_BYTES):
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


def _rescued_count(con: duckdb.DuckDBPyConnection, name: str, load_id: str) -> int:
    return int(run(con, f"SELECT count(*) FROM {bronze_ref(name).sql} WHERE _load_id = $l AND _rescued IS NOT NULL",
                   {"l": load_id}).fetchall()[0][0])


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
    fmt = file_format(cfg, landed.cand.path)
    reader = _READERS.get(fmt, JsonReader)(ctx, name, cfg, opts, landed.read_path, landed.params(ctx, name), result, tmp)
    try:
        reader.read(fmt)
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
    readers = [(landed, CsvReader(ctx, name, cfg, opts, landed.read_path, landed.params(ctx, name), landed.result(),
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
