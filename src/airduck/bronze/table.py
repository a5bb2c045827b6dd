"""The bronze table contract: what every source lands in `bronze.<name>` and `bronze.<name>__rejects`.

`bronze.<name>` holds the source's columns as read (names kept as they are, types inferred) followed by the
metadata columns of :data:`META_COLUMNS`:

=================== ============ ===================================================================
column              type         meaning
=================== ============ ===================================================================
``_load_id``        VARCHAR      the run id that loaded the row
``_batch``          BIGINT       the run's sequence number
``_source``         VARCHAR      the source name (the key under ``sources:``)
``_source_file``    VARCHAR      original path/URL, ``postgres:<table>`` / ``postgres:query:<hash>``, or the
                                 URL of the HTTP page
``_source_version`` VARCHAR      object version id of the source on a versioned bucket, else the sha256 of
                                 the bytes read (NULL for postgres)
``_landing_key``    VARCHAR      key of the raw copy in the landing zone (NULL for postgres)
``_row_number``     BIGINT       1-based position of the record in its file/page, in file order: for
                                 NDJSON the physical line; for CSV the record's position among the records
                                 that loaded (DuckDB's reader gives no line numbers for good rows; a
                                 quoted field may span lines); for JSON arrays and HTTP pages the index in
                                 the array; for Parquet the file row; for PostgreSQL the row of the read
``_ingested_at``    TIMESTAMPTZ  when the run's transaction started
``_rescued``        VARCHAR      JSON object ``{"column": "raw value"}`` of values that did not fit the
                                 column's type; NULL when nothing was rescued
=================== ============ ===================================================================

`bronze.<name>__rejects` holds what could not be read at all (ragged CSV lines, broken JSON, undecodable
bytes, unreadable files), see :data:`REJECT_COLUMNS`: ``_line_number`` is the physical line (the element's
index in a JSON array or HTTP page; NULL when a whole file or page is rejected), ``_raw`` the line as text
(undecodable bytes escaped, e.g. ``caf\\xe9``), ``_reason`` what was wrong.

Bronze is append-only. Source columns whose names collide with a metadata column (case-insensitively)
are renamed ``src__load_id``, ``src__batch`` ... (``src_`` + the name; a name still taken gets ``_2``,
``_3``). A column that appears in a later load is added with ``ALTER TABLE ADD COLUMN`` (older rows read
NULL). Types are decided when a column is first seen and never changed: later values that do not fit go
to ``_rescued`` instead of being lost.

Every statement here runs on the run's open transaction: nothing is visible until the runner commits.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import duckdb

from airduck.lake.catalog import TableRef, columns, table_exists
from airduck.lake.connection import quote_ident, quote_literal

META_COLUMNS: tuple[tuple[str, str], ...] = (
    ("_load_id", "VARCHAR"),
    ("_batch", "BIGINT"),
    ("_source", "VARCHAR"),
    ("_source_file", "VARCHAR"),
    ("_source_version", "VARCHAR"),
    ("_landing_key", "VARCHAR"),
    ("_row_number", "BIGINT"),
    ("_ingested_at", "TIMESTAMPTZ"),
    ("_rescued", "VARCHAR"),
)
META_NAMES = frozenset(name for name, _ in META_COLUMNS)
#: a source column named like a metadata column (`_source`) is stored as `src__source`
RENAME_PREFIX = "src_"

REJECT_COLUMNS: tuple[tuple[str, str], ...] = (
    ("_load_id", "VARCHAR"),
    ("_batch", "BIGINT"),
    ("_source", "VARCHAR"),
    ("_source_file", "VARCHAR"),
    ("_source_version", "VARCHAR"),
    ("_landing_key", "VARCHAR"),
    ("_line_number", "BIGINT"),
    ("_raw", "VARCHAR"),
    ("_reason", "VARCHAR"),
    ("_rejected_at", "TIMESTAMPTZ"),
)

#: how many records are sampled to infer the types of new text columns (like DuckDB's sniffer, a bit more)
INFER_SAMPLE_ROWS = 50_000

_INT_TYPES = frozenset(
    {"TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT", "UINTEGER", "UBIGINT",
     "UHUGEINT", "INT", "INT1", "INT2", "INT4", "INT8", "LONG", "SHORT"}
)
_INT_RE = r"[+-]?[0-9]+"
_BIGINT_RE = r"[+-]?(0|[1-9][0-9]*)"
_DOUBLE_RE = r"[+-]?((0|[1-9][0-9]*)(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?"
_DATE_RE = r"[0-9]{4}-[0-9]{2}-[0-9]{2}"
_TS_RE = _DATE_RE + r"[T ][0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]{1,9})?)?"
_TSTZ_RE = _TS_RE + r" ?(Z|[+-][0-9]{2}(:?[0-9]{2})?)"


_PARAM = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)")


def run(con: duckdb.DuckDBPyConnection, sql: str, params: dict[str, Any] | None = None) -> duckdb.DuckDBPyConnection:
    """Execute `sql` binding only the named parameters (`$name`) it uses (DuckDB refuses extra ones)."""
    used = set(_PARAM.findall(sql))
    bound = {k: v for k, v in (params or {}).items() if k in used}
    return con.execute(sql, bound) if bound else con.execute(sql)


def _lit(value: str) -> str:
    return quote_literal(value)


#: candidate types for text values, most specific first, with the SQL condition a non-blank value `v` must meet
_CANDIDATES: tuple[tuple[str, str], ...] = (
    ("BOOLEAN", "lower({v}) IN ('true', 'false')"),
    ("BIGINT", f"regexp_full_match({{v}}, {_lit(_BIGINT_RE)}) AND TRY_CAST({{v}} AS BIGINT) IS NOT NULL"),
    ("DOUBLE", f"regexp_full_match({{v}}, {_lit(_DOUBLE_RE)}) AND TRY_CAST({{v}} AS DOUBLE) IS NOT NULL "
               "AND (TRY_CAST({v} AS BIGINT) IS NOT NULL OR regexp_matches({v}, '[.eE]'))"),
    ("DATE", f"regexp_full_match({{v}}, {_lit(_DATE_RE)}) AND TRY_CAST({{v}} AS DATE) IS NOT NULL"),
    ("TIMESTAMP", f"regexp_full_match({{v}}, {_lit(_TS_RE)}) AND TRY_CAST({{v}} AS TIMESTAMP) IS NOT NULL"),
    ("TIMESTAMPTZ", f"regexp_full_match({{v}}, {_lit(_TSTZ_RE)}) AND TRY_CAST({{v}} AS TIMESTAMPTZ) IS NOT NULL"),
)


@dataclass(frozen=True)
class StagedColumn:
    """One column of a staging relation: `alias` in the SQL (c0, c1 ...), its source name and DuckDB type.

    `text` columns hold values read as text (CSV fields, JSON scalars): their bronze type is inferred and
    values are parsed strictly. Typed columns (Parquet, PostgreSQL) keep their type.
    """

    alias: str
    name: str
    type: str = "VARCHAR"
    text: bool = True


@dataclass(frozen=True)
class ColumnPlan:
    staged: StagedColumn
    target: str  # bronze column name
    target_type: str


_UNSUPPORTED = re.compile(r"\b(ENUM|UNION)\s*\(|\b(BIT|BITSTRING|BIGNUM|VARINT)\b", re.I)
_FIXED_ARRAY = re.compile(r"\[\d+\]")


def lake_type(type_: str) -> str:
    """The type a typed source column gets in bronze: DuckLake has no ENUM, UNION, BIT or BIGNUM (stored as
    text) and no fixed-size arrays (stored as lists)."""
    if _UNSUPPORTED.search(type_):
        return "VARCHAR"
    return _FIXED_ARRAY.sub("[]", type_)


def bronze_ref(name: str) -> TableRef:
    return TableRef("bronze", name)


def rejects_ref(name: str) -> TableRef:
    return TableRef("bronze", f"{name}__rejects")


def safe_name(name: str, taken: set[str]) -> str:
    """The bronze name of a new source column: metadata names get the prefix `src_`, taken names a number."""
    candidate = name
    if candidate.lower() in META_NAMES:
        candidate = RENAME_PREFIX + candidate
    base, n = candidate, 1
    while candidate.lower() in taken or candidate.lower() in META_NAMES:
        n += 1
        candidate = f"{base}_{n}"
    return candidate


def dedupe_names(names: Sequence[str]) -> list[str]:
    """Header names made usable: empty names become column<i>, case-insensitive duplicates get _2, _3 ..."""
    out: list[str] = []
    seen: set[str] = set()
    for i, raw in enumerate(names):
        name = raw if raw and raw.strip() else f"column{i}"
        base, n = name, 1
        while name.lower() in seen:
            n += 1
            name = f"{base}_{n}"
        seen.add(name.lower())
        out.append(name)
    return out


def ensure_rejects_table(con: duckdb.DuckDBPyConnection, name: str) -> TableRef:
    ref = rejects_ref(name)
    cols = ", ".join(f"{quote_ident(c)} {t}" for c, t in REJECT_COLUMNS)
    con.execute(f"CREATE TABLE IF NOT EXISTS {ref.sql} ({cols})")
    return ref


def ensure_meta_only_table(con: duckdb.DuckDBPyConnection, name: str) -> None:
    """Create `bronze.<name>` with only the metadata columns (a source that has delivered no rows yet)."""
    ref = bronze_ref(name)
    if not table_exists(con, ref):
        cols = ", ".join(f"{quote_ident(c)} {t}" for c, t in META_COLUMNS)
        con.execute(f"CREATE TABLE {ref.sql} ({cols})")


def plan_columns(
    con: duckdb.DuckDBPyConnection,
    name: str,
    staged: Sequence[StagedColumn],
    infer: Callable[[list[StagedColumn]], dict[str, str]],
) -> tuple[list[ColumnPlan], list[str]]:
    """Match staged columns to `bronze.<name>` (create it, or add new columns). Returns the plan and new columns.

    `infer(text_columns)` returns {alias: type} for the text columns that are new; it is called only when
    there are such columns, so a known schema costs no sampling pass.
    """
    ref = bronze_ref(name)
    exists = table_exists(con, ref)
    existing = {c.name.lower(): (c.name, c.type) for c in columns(con, ref)} if exists else {}
    # Metadata collisions first: a source column `_source` lives in `src__source`.
    plan: list[ColumnPlan] = []
    new: list[StagedColumn] = []
    used: set[str] = set()
    ordered = sorted(staged, key=lambda c: c.name.lower() not in META_NAMES)  # stable: renamed ones first
    for col in ordered:
        base = (RENAME_PREFIX + col.name) if col.name.lower() in META_NAMES else col.name
        # the same walk as safe_name: `x`, then `x_2`, `x_3` ... for names that were numbered when added
        target, n, found = base, 1, None
        while target.lower() in existing:
            if target.lower() not in used:
                found = existing[target.lower()]
                break
            n += 1
            target = f"{base}_{n}"
        if found is not None:
            used.add(found[0].lower())
            plan.append(ColumnPlan(col, found[0], found[1]))
        else:
            new.append(col)
    if new:
        text_new = [c for c in new if c.text]
        inferred = infer(text_new) if text_new else {}
        taken = set(existing) | {p.target.lower() for p in plan}
        order = {c.alias: i for i, c in enumerate(staged)}
        new_plans = []
        for col in new:  # names in the renamed-first order, columns in the source's order
            target = safe_name(col.name, taken)
            taken.add(target.lower())
            col_type = inferred.get(col.alias, "VARCHAR") if col.text else lake_type(col.type)
            new_plans.append(ColumnPlan(col, target, col_type))
        new_plans.sort(key=lambda p: order[p.staged.alias])
        plan += new_plans
        added = [(p.target, p.target_type) for p in new_plans]
        if not exists:
            cols = [f"{quote_ident(n)} {t}" for n, t in added]
            cols += [f"{quote_ident(c)} {t}" for c, t in META_COLUMNS]
            con.execute(f"CREATE TABLE {ref.sql} ({', '.join(cols)})")
        else:
            for n, t in added:
                con.execute(f"ALTER TABLE {ref.sql} ADD COLUMN {quote_ident(n)} {t}")
        new_names = [n for n, _ in added]
    else:
        new_names = []
    order = {c.alias: i for i, c in enumerate(staged)}
    plan.sort(key=lambda p: order[p.staged.alias])
    return plan, new_names


#: the first pass of the inference: a candidate type that a value of the first records misses is out
INFER_PROBE_ROWS = 1_000


def inference_sql(relation: str, checks: Sequence[tuple[StagedColumn, Sequence[str]]],
                  sample: int = INFER_SAMPLE_ROWS) -> str:
    """One aggregate over the first `sample` records: per column, the non-blank count and, per candidate type
    named in its check list, the number of non-blank values that miss it."""
    conds = dict(_CANDIDATES)
    exprs = ["count(*)"]
    for col, types in checks:
        v = f"nullif(trim({quote_ident(col.alias)}), '')"
        exprs.append(f"count({v})")
        for type_ in types:
            exprs.append(f"count({v}) FILTER (WHERE NOT coalesce({conds[type_].replace('{v}', v)}, false))")
    return f"SELECT {', '.join(exprs)} FROM (SELECT * FROM ({relation}) AS __r LIMIT {int(sample)}) AS __s"


def _misses(con: duckdb.DuckDBPyConnection, relation: str, params: dict[str, Any] | None,
            checks: Sequence[tuple[StagedColumn, Sequence[str]]], sample: int) -> dict[str, tuple[int, list[str]]]:
    """{alias: (non-blank count, the candidates of its check list that no sampled value misses)}."""
    row = run(con, inference_sql(relation, checks, sample), params).fetchall()[0]
    out: dict[str, tuple[int, list[str]]] = {}
    i = 1
    for col, types in checks:
        misses = row[i + 1 : i + 1 + len(types)]
        out[col.alias] = (int(row[i] or 0), [t for t, miss in zip(types, misses, strict=True) if miss == 0])
        i += 1 + len(types)
    return out


def infer_types(
    con: duckdb.DuckDBPyConnection, relation: str, params: dict[str, Any] | None, cols: Sequence[StagedColumn],
) -> dict[str, str]:
    """{alias: DuckDB type} for text columns: the first candidate every sampled non-blank value fits, else VARCHAR.

    Two passes: the first records rule out most candidates cheaply (a name is no number), then only the ones
    left are checked on the whole sample (54 regex checks per record cost 1.1 s per 50,000 records).
    """
    if not cols:
        return {}
    every = [t for t, _ in _CANDIDATES]
    probe = _misses(con, relation, params, [(c, every) for c in cols], min(INFER_PROBE_ROWS, INFER_SAMPLE_ROWS))
    left = [(c, probe[c.alias][1]) for c in cols if probe[c.alias][1]]
    full = _misses(con, relation, params, left, INFER_SAMPLE_ROWS) if left else {}
    out: dict[str, str] = {}
    for col in cols:
        nonblank, fits = full.get(col.alias, (0, []))
        out[col.alias] = fits[0] if nonblank and fits else "VARCHAR"
    return out


def _base_type(type_: str) -> str:
    return re.split(r"[(\s]", type_.strip().upper(), maxsplit=1)[0]


#: types whose cast ignores the spaces around a value, so the untrimmed text is cast first and only a failed
#: cast is retried on the trimmed text (trimming every value cost ~0.5 s per column per 10M rows)
_SPACE_TOLERANT = frozenset({"BOOLEAN", "BOOL", "DOUBLE", "FLOAT", "FLOAT4", "FLOAT8", "REAL", "DECIMAL", "NUMERIC",
                             "DATE", "TIME", "TIMESTAMP", "DATETIME", "TIMESTAMPTZ"})
_SPACED_INT_RE = rf" *{_INT_RE} *"


def _cast_exprs(p: ColumnPlan, x: str) -> tuple[str, str, str | None, str | None, str | None]:
    """SQL for one column: (cast over the staged alias, value over the cast `x`, a cheap condition that every
    rescued value meets, the exact rescue condition, the rescued text). Text values are parsed strictly: a
    non-blank value (after trimming spaces) that does not cast is rescued."""
    v = quote_ident(p.staged.alias)
    target = p.target_type
    base = _base_type(target)
    is_text_target = base in ("VARCHAR", "TEXT", "STRING")
    if p.staged.text:
        if is_text_target:
            return v, x, None, None, None
        trimmed = f"nullif(trim({v}), '')"
        if base in _INT_TYPES:
            # TRY_CAST rounds '1.5' to 2 and reads '1e3', '0x1F', '1_000': only plain digits are integers
            cast = f"CASE WHEN regexp_full_match({v}, {_lit(_SPACED_INT_RE)}) THEN TRY_CAST({v} AS {target}) END"
        elif base in _SPACE_TOLERANT:  # TIMESTAMP WITH TIME ZONE has the base TIMESTAMP
            cast = f"coalesce(TRY_CAST({v} AS {target}), TRY_CAST({trimmed} AS {target}))"
        else:
            cast = f"TRY_CAST({trimmed} AS {target})"
        return cast, x, f"{x} IS NULL AND {v} IS NOT NULL", f"{x} IS NULL AND {trimmed} IS NOT NULL", v
    if p.staged.type.upper() == target.upper():
        return v, x, None, None, None
    if is_text_target:
        return f"CAST({v} AS VARCHAR)", x, None, None, None
    # A typed value that does not survive the round trip (1.5 -> BIGINT 2) is rescued, not rounded.
    lossy = f"{v} IS NOT NULL AND ({x} IS NULL OR TRY_CAST({x} AS {p.staged.type}) IS DISTINCT FROM {v})"
    return (f"TRY_CAST({v} AS {target})", f"CASE WHEN {lossy} THEN NULL ELSE {x} END", lossy, lossy,
            f"CAST({v} AS VARCHAR)")


def typed_sql(plan: Sequence[ColumnPlan], relation: str) -> str:
    """`relation` (aliases c0..) with the bronze values `__v<i>` and the rescued JSON `__rescued` added.

    Two levels, streaming: the casts once (`__x<i>`), then the values and the rescued JSON. The JSON is built
    only for rows that rescue something, behind a cheap test (a failed cast of a present value) so that the
    exact test (which trims) runs on those rows alone.
    """
    casts: list[str] = []
    values: list[str] = []
    rescues: list[str] = []
    maybe: list[str] = []
    exact: list[str] = []
    for i, p in enumerate(plan):
        x = quote_ident(f"__x{i}")
        cast, value, cheap, cond, raw = _cast_exprs(p, x)
        casts.append(f"{cast} AS {x}")
        values.append(f"{value} AS {quote_ident(f'__v{i}')}")
        if cond is not None:
            maybe.append(cheap)
            exact.append(cond)
            rescues.append(f"{{'key': {_lit(p.staged.name)}, 'value': CASE WHEN {cond} THEN {raw} END}}")
    rescued = (
        f"CASE WHEN {' OR '.join(f'({c})' for c in maybe)} THEN CASE WHEN {' OR '.join(f'({c})' for c in exact)} "
        f"THEN CAST(to_json(map_from_entries(list_filter([{', '.join(rescues)}], x -> x.value IS NOT NULL))) "
        "AS VARCHAR) END END"
        if rescues else "CAST(NULL AS VARCHAR)"
    )
    level1 = f"SELECT *{''.join(', ' + c for c in casts)} FROM ({relation}) AS __s"
    return f"SELECT *{''.join(', ' + v for v in values)}, {rescued} AS __rescued FROM ({level1}) AS __c"


def insert_sql(name: str, plan: Sequence[ColumnPlan], staging: str, meta: dict[str, str],
               typed: bool = False) -> str:
    """INSERT INTO bronze.<name> from a staging relation (aliases c0.., `__rn`), casting and rescuing values.

    `meta` maps `_source_file`, `_source_version`, `_landing_key` to SQL over the staging relation or to
    parameters; `_load_id`, `_batch`, `_source` are the parameters `$load_id`, `$batch`, `$source`. With `typed`,
    the staging relation already holds the values `__v<i>` and `__rescued` (:func:`typed_sql`).
    """
    ref = bronze_ref(name)
    targets = [quote_ident(p.target) for p in plan]
    meta_targets = [quote_ident(c) for c, _ in META_COLUMNS]
    meta_values = [
        "$load_id", "$batch", "$source", meta["_source_file"], meta["_source_version"], meta["_landing_key"],
        "__rn", "now()", "__rescued",
    ]
    final = [quote_ident(f"__v{i}") for i in range(len(plan))] + meta_values
    source = staging if typed else typed_sql(plan, staging)
    return (
        f"INSERT INTO {ref.sql} ({', '.join(targets + meta_targets)}) "
        f"SELECT {', '.join(final)} FROM ({source}) AS __o"
    )


def rejects_insert_sql(name: str, relation: str, meta: dict[str, str]) -> str:
    """INSERT INTO bronze.<name>__rejects from a relation with columns `__line`, `__raw`, `__reason`."""
    ref = rejects_ref(name)
    cols = ", ".join(quote_ident(c) for c, _ in REJECT_COLUMNS)
    return (
        f"INSERT INTO {ref.sql} ({cols}) SELECT $load_id, $batch, $source, {meta['_source_file']}, "
        f"{meta['_source_version']}, {meta['_landing_key']}, __line, __raw, __reason, now() FROM ({relation}) AS __j"
    )


def base_params(ctx: Any, source: str) -> dict[str, Any]:
    return {"load_id": ctx.run_id, "batch": int(ctx.batch), "source": source}
