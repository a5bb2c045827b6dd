"""What the readers of every format share: the source's reader options, probes on a cursor, rejects rows."""

from __future__ import annotations

import contextlib
import gzip
import io
import re
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import duckdb

from airduck.bronze.config import FilesSource
from airduck.bronze.files.discovery import _COMPRESSION
from airduck.bronze.files.landing import FileResult
from airduck.bronze.table import rejects_insert_sql, run
from airduck.config.secrets import redact
from airduck.core.context import RunContext
from airduck.errors import ConfigError
from airduck.lake.connection import quote_ident, quote_literal

#: reader options airduck sets itself; `options:` may not override them
_RESERVED_OPTIONS = frozenset({
    "columns", "auto_detect", "header", "all_varchar", "store_rejects", "rejects_table", "rejects_scan",
    "rejects_limit", "ignore_errors", "filename", "union_by_name", "hive_partitioning", "null_padding",
    "file_row_number", "format", "records", "types", "column_types", "dtypes", "names", "column_names",
})
_OPTION_NAME = re.compile(r"^[a-z_][a-z0-9_]*$")
_CHUNK = 1024 * 1024
_REJ = "__airduck_rej"  # the probe's rejects table (temp, on the probe connection)
T = TypeVar("T")


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


def _open_binary(path: Path) -> Any:
    """The file's bytes (decompressed for .gz); the caller closes it."""
    if path.name.lower().endswith((".gz", ".gzip")):
        return gzip.open(path, "rb")
    return path.open("rb")


def _open_text(path: Path, encoding: str) -> io.TextIOWrapper:
    return io.TextIOWrapper(_open_binary(path), encoding=encoding, errors="replace", newline="")


def _rejects_by_line() -> str:
    """The rejects a scan stored in the `_REJ` tables, one row per file and line: (file path, line, byte position,
    reasons, undecodable?, DuckDB's copy of the line)."""
    return ("SELECT s.file_path, e.line, min(e.line_byte_position), "
            "string_agg(DISTINCT e.error_type || ': ' || e.error_message, '; '), "
            "bool_or(e.error_type = 'INVALID ENCODING'), arg_min(e.csv_line, e.byte_position) "
            f"FROM temp.main.{_REJ} AS e JOIN temp.main.{_REJ}_scan AS s USING (scan_id, file_id) "
            "GROUP BY s.file_path, e.line ORDER BY s.file_path, e.line")


_META = {"_source_file": "$src_file", "_source_version": "$src_version", "_landing_key": "$landing"}


class FileReader:
    """Reads one landed file into bronze; probes run on a cursor (own transaction) so errors cannot abort the run.

    One subclass per format (:mod:`.csv_reader`, :mod:`.json_reader`, :mod:`.parquet_reader`) implements `read`.
    """

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

    def read(self, fmt: str) -> None:
        """Load the file's rows into bronze and its unreadable lines into the rejects table."""
        raise NotImplementedError

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
