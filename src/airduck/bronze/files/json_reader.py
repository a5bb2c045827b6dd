"""JSON: an array, NDJSON (one object a line) or a single document; a malformed line is rejected with its text."""

from __future__ import annotations

import contextlib
import json

import duckdb

from airduck.bronze.files.reader import _CHUNK, _META, _REJ, FileReader, _open_text, _options_sql
from airduck.bronze.records import Loaded, Probe, load_records, probe_records
from airduck.lake.connection import quote_literal

_LINE_DELIM = "\x1f"  # never in valid JSON text (control characters must be escaped): a JSON line is one field
_MAX_LINE_FIXES = 10_000  # beyond this many undecodable lines, NDJSON rows keep the reader's ordinal


def _ndjson_reason(reason: str, bad_encoding: bool) -> str:
    if bad_encoding:
        return reason
    if "TOO MANY COLUMNS" in reason:  # the line holds the reader's field separator
        return "malformed JSON: a raw control character (\\x1f) in the line"
    return f"unreadable line: {reason}"


class JsonReader(FileReader):
    """Reads a JSON array, an NDJSON file or a single JSON document."""

    def read(self, fmt: str) -> None:
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
