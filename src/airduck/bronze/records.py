"""Loading JSON records into bronze in bulk (NDJSON lines, JSON arrays, HTTP pages), all in DuckDB SQL.

A *records relation* is SQL with the columns ``__j`` (the record as JSON; NULL when the text is not valid
JSON), ``__raw`` (the record's text), ``__rn`` (its 1-based position) and, for HTTP, per-page metadata
columns. Objects become rows; each top-level key becomes a column (type inferred from a sample of the
values as text, like CSV); anything else (malformed JSON, an array or a scalar where an object was expected)
goes to the rejects table with its raw text.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import duckdb

from airduck.bronze.table import (
    StagedColumn,
    dedupe_names,
    infer_types,
    insert_sql,
    plan_columns,
    rejects_insert_sql,
    run,
)

IS_OBJECT = "json_type(__j) = 'OBJECT'"
#: a record that is valid JSON but not an object, named as JSON names it (DuckDB's json_type says UBIGINT, VARCHAR)
BAD_REASON = (
    "CASE WHEN __j IS NULL THEN 'malformed JSON' "
    "ELSE 'not a JSON object (found ' || CASE json_type(__j) "
    "WHEN 'UBIGINT' THEN 'a number' WHEN 'BIGINT' THEN 'a number' WHEN 'DOUBLE' THEN 'a number' "
    "WHEN 'HUGEINT' THEN 'a number' WHEN 'UHUGEINT' THEN 'a number' WHEN 'VARCHAR' THEN 'a string' "
    "WHEN 'BOOLEAN' THEN CAST(__j AS VARCHAR) WHEN 'NULL' THEN 'null' WHEN 'ARRAY' THEN 'an array' "
    "ELSE lower(json_type(__j)) END || ')' END"
)


@dataclass
class Loaded:
    """What one load put into bronze and its rejects table."""

    rows: int = 0
    rejects: int = 0
    new_columns: list[str] = field(default_factory=list)


def json_path(key: str) -> str:
    """A JSONPath selecting one top-level key, whatever characters it holds."""
    return '$."' + key.replace("\\", "\\\\").replace('"', '\\"') + '"'


@dataclass
class Probe:
    """What a pass over a records relation found: objects, bad records, and the keys in order of appearance."""

    good: int
    bad: int
    keys: list[str]


def probe_records(probe: duckdb.DuckDBPyConnection, relation: str, params: dict[str, Any]) -> Probe:
    """One pass: records grouped by their key list ("shape"), so counts and keys come together."""
    rows = run(
        probe,
        f"SELECT CASE WHEN {IS_OBJECT} THEN json_keys(__j) END AS ks, coalesce({IS_OBJECT}, false) AS ok, "
        f"count(*) AS n, min(__rn) AS first FROM ({relation}) AS __r GROUP BY ALL ORDER BY first",
        params,
    ).fetchall()
    good = bad = 0
    keys: dict[str, None] = {}
    for ks, ok, n, _first in rows:
        if ok:
            good += int(n)
            for k in ks or ():
                keys.setdefault(k, None)
        else:
            bad += int(n)
    return Probe(good, bad, list(keys))


def _staging(relation: str, n: int, extra_cols: tuple[str, ...]) -> str:
    cols = [f"__vals[{i + 1}] AS c{i}" for i in range(n)]
    carried = ", ".join(("__rn", *extra_cols))
    inner = f"SELECT json_extract_string(__j, $paths) AS __vals, {carried} FROM ({relation}) AS __r WHERE {IS_OBJECT}"
    return f"SELECT {', '.join([*cols, carried])} FROM ({inner}) AS __e"


def load_records(
    con: duckdb.DuckDBPyConnection,
    probe: duckdb.DuckDBPyConnection,
    name: str,
    *,
    probe_relation: str,
    load_relation: str,
    params: dict[str, Any],
    meta: dict[str, str],
    extra_cols: tuple[str, ...] = (),
    probed: Probe | None = None,
) -> Loaded:
    """Load the objects of a records relation into `bronze.<name>`, the rest into its rejects table.

    `probe_relation` runs on `probe` (a separate connection: reading errors there cannot abort the run's
    transaction); `load_relation` is the same records on the run's connection `con`, with any metadata
    columns `extra_cols` that `meta` refers to. `probed` is the result of :func:`probe_records` when the
    caller has already made that pass.
    """
    out = Loaded()
    found = probed or probe_records(probe, probe_relation, params)
    good, bad, keys = found.good, found.bad, found.keys
    if good:
        names = dedupe_names(keys)
        staged = [StagedColumn(f"c{i}", n) for i, n in enumerate(names)]
        paths = [json_path(k) for k in keys]
        probe_staging = _staging(probe_relation, len(keys), ())

        def infer(cols: list[StagedColumn]) -> dict[str, str]:
            return infer_types(probe, probe_staging, {**params, "paths": paths}, cols)

        plan, out.new_columns = plan_columns(con, name, staged, infer)
        sql = insert_sql(name, plan, _staging(load_relation, len(keys), extra_cols), meta)
        out.rows = int(run(con, sql, {**params, "paths": paths}).fetchall()[0][0])
    if bad:
        relation = (
            f"SELECT __rn AS __line, __raw, {BAD_REASON} AS __reason{''.join(', ' + c for c in extra_cols)} "
            f"FROM ({load_relation}) AS __r WHERE __j IS NULL OR NOT {IS_OBJECT}"
        )
        out.rejects = int(run(con, rejects_insert_sql(name, relation, meta), params).fetchall()[0][0])
    return out
