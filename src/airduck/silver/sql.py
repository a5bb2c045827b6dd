"""The SQL a silver rule compiles to. Pure functions of a Plan: text plus named parameters, no execution.

One *stage* query turns the new source rows into silver rows, every rule applied as a column expression:

    source rows (_batch > watermark)
    -> pre:      normalized raw value per column (trim, lower, ...), kept columns, the row as a struct (for _raw)
    -> typed:    TRY_CAST (after try_strptime for `formats`) to the target type
    -> flagged:  the deleted flag
    -> joined:   LEFT JOIN of each lookup (first reference row per key), a `miss` flag per lookup
    -> ranked:   latest row per key (order_by DESC, _batch DESC, _row_number DESC, rowid DESC); rows without a
                 key pass. The window runs over the key and order columns only; the wide rows are kept by rowid
    -> checked:  one pass/fail column per expectation (NULL passes, as in SQL CHECK), valid_from
    -> reasoned: the list of reasons to quarantine a row (cast:<col>, required:<col>, lookup:<name>, <expectation>),
                 built only for rows that have one (an empty list for the others)
    -> final:    `__ad_flag`: the row is quarantined or fails a gate; `__ad_raw`: its original row as JSON

The stage is materialized once as a temp table; counts, gates, quarantine and the write of each mode read it.
The original row travels as a struct (never through the window: that sorts only the narrow key columns) and
becomes JSON for the flagged rows only. Measured at 10M rows against fetching the raw rows afterwards by rowid:
the whole silver step 0.7 s faster (median of 3 runs).
"""

from __future__ import annotations

from airduck.lake.catalog import TableRef
from airduck.lake.connection import quote_ident as q
from airduck.lake.connection import quote_literal
from airduck.silver.rules import BRONZE_META, DATELIKE, META_COLUMNS, SCD2_COLUMNS, TEMPORAL, Plan

STAGE = "temp.main.__ad_stage"
ACTIONS = "temp.main.__ad_actions"
TEMP_TABLES = (STAGE, ACTIONS)

NORMALIZERS = {
    "trim": "trim({})",
    "lower": "lower({})",
    "upper": "upper({})",
    "collapse_spaces": "regexp_replace({}, '\\s+', ' ', 'g')",
    "null_if_empty": "NULLIF({}, '')",
}

Sql = tuple[str, dict[str, object]]


def _keys_equal(left: str, right: str, keys: list[str]) -> str:
    return " AND ".join(f"{left}.{q(k)} = {right}.{q(k)}" for k in keys)


def create_table(table: TableRef, columns: list[tuple[str, str]], replace: bool = False) -> str:
    head = "CREATE OR REPLACE TABLE" if replace else "CREATE TABLE IF NOT EXISTS"
    return f"{head} {table.sql} ({', '.join(f'{q(n)} {t}' for n, t in columns)})"


def add_column(table: TableRef, name: str, type_: str) -> str:
    return f"ALTER TABLE {table.sql} ADD COLUMN {q(name)} {type_}"


def source_where(plan: Plan, incremental: bool, reloaded: bool = True, repeats: bool = False) -> str:
    """Which source rows a build reads. Incremental: the batches after the watermark. Full refresh from bronze:
    every row, but of a file (or page) loaded more than once (by an older airduck's full refresh) only its latest
    load, so a rebuild never counts an input twice. PostgreSQL loads are increments: all of them count.
    `reloaded=False` (see :func:`reloaded_versions`: no file version was loaded twice) skips that filter, which
    costs a join over the whole source (measured 1.2-2 s of 10M rows). `repeats` (append mode, see
    :func:`repeated_rows`): leave out the records that an earlier load of the same file already had."""
    if repeats:
        skip = f"__ad_o.rowid NOT IN ({repeated_rows(plan, incremental)})"
        return f' WHERE "_batch" > $__ad_wm AND {skip}' if incremental else f" WHERE {skip}"
    if incremental:
        return ' WHERE "_batch" > $__ad_wm'
    if plan.checked.source.schema != "bronze" or not reloaded:
        return ""
    src = plan.checked.source.sql
    return (' WHERE "_source_file" IS NULL OR "_source_file" LIKE \'postgres:%\' OR "_batch" = '
            f'(SELECT max(__ad_x."_batch") FROM {src} AS __ad_x WHERE __ad_x."_source_file" = __ad_o."_source_file" '
            'AND __ad_x."_source_version" IS NOT DISTINCT FROM __ad_o."_source_version")')


def reloaded_versions(plan: Plan) -> str:
    """One count: the file versions of a bronze source that were loaded by more than one batch. Reads only the
    metadata columns (constant per file, so cheap: 0.07 s for 10M rows)."""
    return (f'SELECT count(*) FROM (SELECT "_source_file", "_source_version" FROM (SELECT DISTINCT "_source_file", '
            f'"_source_version", "_batch" FROM {plan.checked.source.sql} WHERE "_source_file" IS NOT NULL AND '
            '"_source_file" NOT LIKE \'postgres:%\') GROUP BY ALL HAVING count(*) > 1)')


_LOADED_FILES = '"_source_file" IS NOT NULL AND "_source_file" NOT LIKE \'postgres:%\''


def _record(plan: Plan) -> str:
    """A bronze row's record without its load metadata (what a file's line holds), as one comparable value."""
    cols = [c for c in plan.source_columns if c not in BRONZE_META or c == "_rescued"]
    return f"struct_pack({', '.join(f'{q(c)} := {q(c)}' for c in cols)})" if cols else "TRUE"


def _reloaded_files(plan: Plan, incremental: bool) -> str:
    """The files (and HTTP pages) of a bronze source that were loaded by more than one batch (new versions); when
    `incremental`, only those with a load after the watermark."""
    src = plan.checked.source.sql
    having = 'count(DISTINCT "_batch") > 1' + (' AND max("_batch") > $__ad_wm' if incremental else "")
    return f'SELECT "_source_file" FROM {src} WHERE {_LOADED_FILES} GROUP BY ALL HAVING {having}'


def reloaded_files(plan: Plan, incremental: bool) -> str:
    """One count: files a build must compare with their earlier loads (see :func:`repeated_rows`). Reads only the
    metadata columns."""
    return f"SELECT count(*) FROM ({_reloaded_files(plan, incremental)})"


def repeated_rows(plan: Plan, incremental: bool) -> str:
    """The rowids of the bronze rows of a new version of a file (or page) that repeat a record of an earlier load of
    the same file: append mode adds only the records a version adds. Records are compared whole (every source
    column and `_rescued`) and counted: a record a file holds twice is repeated only if an earlier load had it twice.
    """
    src = plan.checked.source.sql
    record = _record(plan)
    loads = (f'SELECT rowid AS __ad_rid, "_source_file" AS __ad_f, "_batch" AS __ad_b, {record} AS __ad_c, '
             f'row_number() OVER (PARTITION BY "_source_file", "_batch", {record}) AS __ad_k FROM {src} '
             f'WHERE "_source_file" IN ({_reloaded_files(plan, incremental)})')
    newer = " AND n.__ad_b > $__ad_wm" if incremental else ""
    return (f"WITH __ad_loads AS ({loads}) SELECT n.__ad_rid FROM __ad_loads AS n JOIN __ad_loads AS o "
            "ON o.__ad_f = n.__ad_f AND o.__ad_k = n.__ad_k AND o.__ad_c IS NOT DISTINCT FROM n.__ad_c "
            f"AND o.__ad_b < n.__ad_b{newer}")


def stage(plan: Plan, incremental: bool, reloaded: bool = True, repeats: bool = False) -> Sql:
    """The stage query (see the module docstring). Parameters: `__ad_wm` (watermark), formats, reason labels."""
    rule = plan.rule
    keys = rule.key
    params: dict[str, object] = {}

    def param(value: object) -> str:
        name = f"__ad_p{len(params)}"
        params[name] = value
        return f"CAST(${name} AS VARCHAR)"

    where = source_where(plan, incremental, reloaded, repeats)
    pre = [
        "__ad_s.__ad_rowid",
        "__ad_s.__ad_orow",
        '__ad_s."_batch" AS __ad_batch',
        '__ad_s."_row_number" AS __ad_rn' if plan.row_number else "CAST(NULL AS BIGINT) AS __ad_rn",
        f"CAST(__ad_s.{q(plan.ingest_column)} AS TIMESTAMPTZ) AS __ad_ingested" if plan.ingest_column
        else "now() AS __ad_ingested",
    ]
    typed: list[str] = []
    raw_names: list[str] = []
    reasons: list[tuple[str, str]] = []  # (condition, label) of each reason to quarantine a row
    for i, col in enumerate(c for c in plan.columns if c.kind == "rule"):
        checked = col.checked
        assert checked is not None
        base = checked.expr.sql if checked.expr is not None else f"__ad_s.{q(checked.source)}"
        raw_type = col.source_type
        if checked.rule.normalize:
            base = f"CAST({base} AS VARCHAR)"
            for n in checked.rule.normalize:
                base = NORMALIZERS[n].format(base)
            raw_type = "VARCHAR"
        raw = f"__ad_r{i}"
        raw_names.append(raw)
        pre.append(f"{base} AS {raw}")
        value = raw
        if checked.rule.formats and raw_type not in TEMPORAL:
            parsers = [f"try_strptime(CAST({raw} AS VARCHAR), {param(f)})" for f in checked.rule.formats]
            value = parsers[0] if len(parsers) == 1 else f"COALESCE({', '.join(parsers)})"
        typed.append(f"TRY_CAST({value} AS {col.type}) AS {q(col.name)}")
        mask = "" if col.name in keys else "NOT __ad_del AND "
        reasons.append((f"{mask}{raw} IS NOT NULL AND {q(col.name)} IS NULL", param('cast:' + col.name)))
        if checked.rule.required or col.name in keys:
            reasons.append((f"{mask}{raw} IS NULL", param('required:' + col.name)))
    for col in plan.columns:
        if col.kind == "kept":
            pre.append(f"__ad_s.{q(col.name)} AS {q(col.name)}")
            if col.name in keys:
                reasons.append((f"{q(col.name)} IS NULL", param('required:' + col.name)))
    if plan.deleted is None:
        deleted = "FALSE"
    elif plan.deleted[0] == "source":
        pre.append(f"TRY_CAST(__ad_s.{q(plan.deleted[1])} AS BOOLEAN) AS __ad_delsrc")
        deleted = "COALESCE(__ad_delsrc, FALSE)"
    else:
        deleted = f"COALESCE(TRY_CAST({q(plan.deleted[1])} AS BOOLEAN), FALSE)"

    joined_cols = ["__ad_t.*"]
    joins: list[str] = []
    for lk in plan.lookups:
        i = lk.index
        ons = list(lk.lookup.on.items())
        sub_cols = [f"{q(ref)} AS __ad_k{i}_{m}" for m, (_, ref) in enumerate(ons)]
        sub_cols += [f"{q(ref)} AS __ad_v{i}_{j}" for j, ref in enumerate(lk.lookup.columns.values())]
        sub_cols.append("TRUE AS __ad_hit")
        part = ", ".join(f"__ad_k{i}_{m}" for m in range(len(ons)))
        flt = " WHERE is_current" if lk.current_only else ""
        joins.append(
            f"LEFT JOIN (SELECT {', '.join(sub_cols)} FROM {lk.table.sql}{flt} "
            f"QUALIFY row_number() OVER (PARTITION BY {part} ORDER BY rowid) = 1) AS __ad_l{i} ON "
            + " AND ".join(f"__ad_t.{q(this)} = __ad_l{i}.__ad_k{i}_{m}" for m, (this, _) in enumerate(ons))
        )
        joined_cols += [f"__ad_l{i}.__ad_v{i}_{j} AS {q(new)}" for j, new in enumerate(lk.lookup.columns)]
        present = " AND ".join(f"__ad_t.{q(this)} IS NOT NULL" for this, _ in ons)
        joined_cols.append(f"(NOT __ad_t.__ad_del AND __ad_l{i}.__ad_hit IS NULL AND {present}) AS __ad_miss{i}")
        if lk.lookup.on_missing == "quarantine":
            reasons.append((f"__ad_miss{i}", param('lookup:' + lk.lookup.name)))

    checks = []
    for j, (e, expr) in enumerate(plan.checks):
        checks.append(f"CASE WHEN __ad_del THEN TRUE ELSE COALESCE({expr.sql}, TRUE) END AS __ad_ok{j}")
        if e.on_fail == "drop":
            reasons.append((f"NOT __ad_ok{j}", param(e.name)))
    first = plan.column(rule.order_by[0]) if rule.order_by else None
    if first is not None and first.type == "TIMESTAMP WITH TIME ZONE":
        vf = f"COALESCE({q(first.name)}, __ad_ingested)"
    elif first is not None and first.type in DATELIKE:  # naive dates and timestamps are read as UTC
        vf = f"COALESCE(timezone('UTC', CAST({q(first.name)} AS TIMESTAMP)), __ad_ingested)"
    else:
        vf = "__ad_ingested"
    checks.append(f"{vf} AS __ad_vf")

    if keys:
        anynull = " OR ".join(f"{q(k)} IS NULL" for k in keys)
        partition = ", ".join(q(k) for k in keys)
        if rule.mode == "scd2":  # every distinct version of a key is history, also within one batch
            partition += "".join(f", {q(o)}" for o in rule.order_by) if rule.order_by else ", __ad_batch"
        order = "".join(f"{q(o)} DESC NULLS LAST, " for o in rule.order_by)
        # The window sorts only the key and order columns (the narrow __ad_win, projected down to them), and the
        # wide rows are kept by rowid: measured 4.4 s instead of 5.4 s for 10M rows. NOT MATERIALIZED: both uses
        # of __ad_joined are planned on their own (materializing it was slower: 7.3 s).
        window = (f"row_number() OVER (PARTITION BY {partition} ORDER BY {order}__ad_batch DESC, __ad_rn DESC NULLS LAST, "
                  "__ad_rowid DESC)")
        win = (f"__ad_win AS NOT MATERIALIZED (SELECT __ad_rowid FROM __ad_joined WHERE NOT ({anynull}) "
               f"QUALIFY {window} = 1),\n")
        ranked = f"SELECT * FROM __ad_joined WHERE ({anynull}) OR __ad_rowid IN (SELECT __ad_rowid FROM __ad_win)"
    else:
        win = ""
        ranked = "SELECT * FROM __ad_joined"
    # The list is built only for the rows that have a reason (CASE evaluates a branch for its rows alone).
    reason_list = (
        f"CASE WHEN {' OR '.join(f'({c})' for c, _ in reasons)} THEN list_filter(["
        + ", ".join(f"CASE WHEN {c} THEN {label} END" for c, label in reasons)
        + "], lambda x: x IS NOT NULL) ELSE CAST([] AS VARCHAR[]) END"
        if reasons else "CAST([] AS VARCHAR[])"
    )
    gates = [f"NOT __ad_ok{j}" for j, (e, _) in enumerate(plan.checks) if e.on_fail == "fail"]
    gates += [f"__ad_miss{lk.index}" for lk in plan.lookups if lk.lookup.on_missing == "fail"]
    flag = " OR ".join(["len(__ad_reasons) > 0", *gates])
    exclude = f" EXCLUDE ({', '.join(raw_names)})" if raw_names else ""
    sql = (
        f"WITH __ad_src AS NOT MATERIALIZED (SELECT *, rowid AS __ad_rowid, __ad_o AS __ad_orow "
        f"FROM {plan.checked.source.sql} AS __ad_o{where}),\n"
        f"__ad_pre AS NOT MATERIALIZED (SELECT {', '.join(pre)} FROM __ad_src AS __ad_s),\n"
        f"__ad_typed AS NOT MATERIALIZED (SELECT *{''.join(', ' + t for t in typed)} FROM __ad_pre),\n"
        f"__ad_flagged AS NOT MATERIALIZED (SELECT *, {deleted} AS __ad_del FROM __ad_typed),\n"
        f"__ad_joined AS NOT MATERIALIZED (SELECT {', '.join(joined_cols)} FROM __ad_flagged AS __ad_t {' '.join(joins)}),\n"
        f"{win}"
        f"__ad_ranked AS ({ranked}),\n"
        f"__ad_checked AS (SELECT *, {', '.join(checks)} FROM __ad_ranked),\n"
        f"__ad_reasoned AS (SELECT *, {reason_list} AS __ad_reasons FROM __ad_checked),\n"
        f"__ad_final AS (SELECT *{exclude}, {flag} AS __ad_flag FROM __ad_reasoned)\n"
        "SELECT * EXCLUDE (__ad_orow), CASE WHEN __ad_flag THEN to_json(__ad_orow) END AS __ad_raw FROM __ad_final"
    )
    return sql, params


def source_count(plan: Plan, incremental: bool, reloaded: bool = True, repeats: bool = False) -> str:
    where = source_where(plan, incremental, reloaded, repeats)
    return f'SELECT count(*), max("_batch") FROM {plan.checked.source.sql} AS __ad_o{where}'


def metrics(plan: Plan) -> str:
    """One row: staged rows, quarantined, a failure count per expectation, a miss count per lookup."""
    cols = ["count(*)", "count(*) FILTER (WHERE len(__ad_reasons) > 0)"]
    cols += [f"count(*) FILTER (WHERE NOT __ad_ok{j})" for j in range(len(plan.checks))]
    cols += [f"count(*) FILTER (WHERE __ad_miss{lk.index})" for lk in plan.lookups]
    return f"SELECT {', '.join(cols)} FROM {STAGE}"


def reason_counts() -> str:
    return (f"SELECT r, count(*) FROM (SELECT unnest(__ad_reasons) AS r FROM {STAGE}) "
            "GROUP BY r ORDER BY r")


def samples(condition: str, limit: int = 3) -> str:
    return (f"SELECT __ad_raw FROM {STAGE} WHERE {condition} "
            f"ORDER BY __ad_batch, __ad_rn NULLS LAST LIMIT {int(limit)}")


def insert_quarantine(quarantine: TableRef) -> str:
    return (f"INSERT INTO {quarantine.sql} (_run_id, _batch, _reasons, _raw, _quarantined_at) "
            f"SELECT $__ad_run, __ad_batch, __ad_reasons, __ad_raw, now() FROM {STAGE} WHERE len(__ad_reasons) > 0")


def _insert_head(plan: Plan, extra: tuple[str, ...] = ()) -> str:
    cols = [*plan.data_names, *extra, *META_COLUMNS]
    return f"INSERT INTO {plan.checked.target.sql} ({', '.join(q(c) for c in cols)})"


def _data_select(plan: Plan) -> str:
    return ", ".join(q(c) for c in plan.data_names)


CLEAN = "len(__ad_reasons) = 0"


def append(plan: Plan) -> str:
    """Append mode: every clean row."""
    return (f"{_insert_head(plan)} SELECT {_data_select(plan)}, $__ad_run, $__ad_batch, now() "
            f"FROM {STAGE} WHERE {CLEAN}")


# -- merge ------------------------------------------------------------------------------------------------------

def merge_first_load(plan: Plan) -> str:
    """Merge into an empty table: every clean row that is not a delete is an insert (no join needed)."""
    return (f"{_insert_head(plan)} SELECT {_data_select(plan)}, $__ad_run, $__ad_batch, now() "
            f"FROM {STAGE} WHERE {CLEAN} AND NOT __ad_del")


def merge_actions(plan: Plan) -> str:
    """Clean rows joined to the silver table by key: does the key exist, is the row unchanged."""
    keys = plan.rule.key
    others = [c for c in plan.data_names if c not in keys]
    same = " AND ".join(f"s.{q(c)} IS NOT DISTINCT FROM t.{q(c)}" for c in others) or "TRUE"
    target_cols = ", ".join(q(c) for c in [*keys, *others])
    return (
        f"CREATE OR REPLACE TEMP TABLE __ad_actions AS "
        f"SELECT s.*, t.__ad_hit IS NOT NULL AS __ad_exists, COALESCE({same}, FALSE) AS __ad_same "
        f"FROM (SELECT * FROM {STAGE} WHERE {CLEAN}) AS s "
        f"LEFT JOIN (SELECT {target_cols}, TRUE AS __ad_hit FROM {plan.checked.target.sql}) AS t "
        f"ON {_keys_equal('s', 't', keys)}"
    )


def merge_counts() -> str:
    return (
        "SELECT count(*) FILTER (WHERE NOT __ad_del AND NOT __ad_exists), "
        "count(*) FILTER (WHERE NOT __ad_del AND __ad_exists AND NOT __ad_same), "
        "count(*) FILTER (WHERE __ad_del AND __ad_exists), "
        "count(*) FILTER (WHERE NOT __ad_del AND __ad_exists AND __ad_same), "
        f"count(*) FILTER (WHERE __ad_del AND NOT __ad_exists) FROM {ACTIONS}"
    )


def merge_delete(plan: Plan) -> str:
    """Remove the stored rows of keys that are deleted or changed (they are re-inserted by merge_insert)."""
    keys = plan.rule.key
    return (
        f"DELETE FROM {plan.checked.target.sql} AS t USING "
        f"(SELECT {', '.join(q(k) for k in keys)} FROM {ACTIONS} WHERE __ad_exists AND (__ad_del OR NOT __ad_same)) AS d "
        f"WHERE {_keys_equal('t', 'd', keys)}"
    )


def merge_insert(plan: Plan) -> str:
    return (f"{_insert_head(plan)} SELECT {_data_select(plan)}, $__ad_run, $__ad_batch, now() FROM {ACTIONS} "
            "WHERE NOT __ad_del AND NOT (__ad_exists AND __ad_same)")


# -- scd2 -------------------------------------------------------------------------------------------------------

def tracked(plan: Plan) -> list[str]:
    """Columns whose change opens a new version: all but the key, order_by and the deleted flag."""
    skip = set(plan.rule.key) | set(plan.rule.order_by)
    if plan.deleted and plan.deleted[0] == "silver":
        skip.add(plan.deleted[1])
    return [c for c in plan.data_names if c not in skip]


def scd2_actions(plan: Plan) -> str:
    """Every key's current version followed by its new rows in order; each row becomes an action:

    current (the stored current version), open (a real change, or the first row / the first after a delete: a new
    version), close (a delete of an open version), noop (unchanged re-delivery, delete of nothing). `__ad_next` is
    the valid_from of the next current/open/close row of the key: the valid_to of this one. valid_from never goes
    backwards: a row older than the version before it starts when that version started.
    """
    keys = plan.rule.key
    data = plan.data_names
    cols = ", ".join(q(c) for c in data)
    track = tracked(plan)
    state = f"struct_pack({', '.join(f'{q(c)} := {q(c)}' for c in track)})" if track else "TRUE"
    part = ", ".join(q(k) for k in keys)
    order = "".join(f"{q(o)} ASC NULLS FIRST, " for o in plan.rule.order_by)
    window = f"PARTITION BY {part} ORDER BY __ad_existing DESC, {order}__ad_b, __ad_n"
    return (
        "CREATE OR REPLACE TEMP TABLE __ad_actions AS\n"
        f"WITH __ad_new AS (SELECT {cols}, __ad_vf, __ad_del, FALSE AS __ad_existing, __ad_batch AS __ad_b, "
        f"__ad_rn AS __ad_n FROM {STAGE} WHERE {CLEAN}),\n"
        f"__ad_cur AS (SELECT {cols}, valid_from AS __ad_vf, FALSE AS __ad_del, TRUE AS __ad_existing, "
        f"CAST(NULL AS BIGINT) AS __ad_b, CAST(NULL AS BIGINT) AS __ad_n FROM {plan.checked.target.sql} AS t "
        f"WHERE is_current AND EXISTS (SELECT 1 FROM __ad_new AS n WHERE {_keys_equal('n', 't', keys)})),\n"
        "__ad_all AS (SELECT * FROM __ad_cur UNION ALL BY NAME SELECT * FROM __ad_new),\n"
        f"__ad_seq AS (SELECT *, {state} AS __ad_state, row_number() OVER w AS __ad_pos, "
        "lag(__ad_del) OVER w AS __ad_pdel, "
        f"lag({state}) OVER w AS __ad_pstate, "
        "max(__ad_vf) OVER (w ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS __ad_vfe "
        f"FROM __ad_all WINDOW w AS ({window})),\n"
        "__ad_act AS (SELECT *, CASE WHEN __ad_existing THEN 'current' "
        "WHEN __ad_del THEN CASE WHEN __ad_pdel = FALSE THEN 'close' ELSE 'noop' END "
        "WHEN __ad_pdel IS NULL OR __ad_pdel THEN 'open' "
        "WHEN __ad_state IS DISTINCT FROM __ad_pstate THEN 'open' ELSE 'noop' END AS __ad_action FROM __ad_seq)\n"
        "SELECT *, CASE WHEN __ad_action <> 'noop' THEN lead(__ad_vfe) OVER "
        f"(PARTITION BY {part}, __ad_action = 'noop' ORDER BY __ad_pos) END AS __ad_next FROM __ad_act"
    )


def scd2_counts() -> str:
    return (
        "SELECT count(*) FILTER (WHERE __ad_action = 'open'), "
        "count(*) FILTER (WHERE __ad_action = 'current' AND __ad_next IS NOT NULL), "
        "count(*) FILTER (WHERE __ad_action = 'open' AND __ad_next IS NOT NULL), "
        "count(*) FILTER (WHERE __ad_action = 'close'), "
        "count(*) FILTER (WHERE __ad_action = 'noop' AND NOT __ad_del), "
        f"count(*) FILTER (WHERE __ad_action = 'noop' AND __ad_del) FROM {ACTIONS}"
    )


def scd2_close(plan: Plan) -> str:
    """Close the stored current versions that a change or a delete replaced."""
    keys = plan.rule.key
    return (
        f"UPDATE {plan.checked.target.sql} AS t SET valid_to = a.__ad_next, is_current = FALSE, "
        "_run_id = $__ad_run, _batch = $__ad_batch, _updated_at = now() "
        f"FROM (SELECT {', '.join(q(k) for k in keys)}, __ad_next FROM {ACTIONS} "
        "WHERE __ad_action = 'current' AND __ad_next IS NOT NULL) AS a "
        f"WHERE t.is_current AND {_keys_equal('t', 'a', keys)}"
    )


def scd2_insert(plan: Plan) -> str:
    return (f"{_insert_head(plan, SCD2_COLUMNS)} SELECT {_data_select(plan)}, __ad_vfe, __ad_next, "
            f"__ad_next IS NULL, $__ad_run, $__ad_batch, now() FROM {ACTIONS} WHERE __ad_action = 'open'")


def example_key(plan: Plan) -> str:
    """A staged row as an example: its key values (``42``; ``a=1, b=x`` for a composite key), or the row's data
    columns as JSON when the table has no key or the key is NULL."""
    row = f"CAST(to_json(struct_pack({', '.join(f'{q(c)} := {q(c)}' for c in plan.data_names)})) AS VARCHAR)"
    keys = plan.rule.key
    if not keys:
        return row
    if len(keys) == 1:
        text = f"CAST({q(keys[0])} AS VARCHAR)"
    else:
        text = "concat_ws(', ', " + ", ".join(
            f"{quote_literal(k + '=')} || COALESCE(CAST({q(k)} AS VARCHAR), 'NULL')" for k in keys) + ")"
    return f"CASE WHEN {' AND '.join(f'{q(k)} IS NULL' for k in keys)} THEN {row} ELSE {text} END"


def failing_rows(conditions: list[str], limit: int) -> str:
    """(condition index, `__ad_rowid`) of the first `limit` staged rows (by row id) each condition holds for.
    One top-N per condition, which reads only its flag columns and the row id and stops early (measured on a
    10M-row stage: 15-100 ms each, against 0.76 s for one pass that also built the keys)."""
    return " UNION ALL ".join(
        f"SELECT * FROM (SELECT {i} AS __ad_c, __ad_rowid FROM {STAGE} WHERE {c} ORDER BY __ad_rowid LIMIT {int(limit)})"
        for i, c in enumerate(conditions))


def example_rows(plan: Plan, rowids: list[int]) -> str:
    """(rowid, example) of the given staged rows (see :func:`example_key`)."""
    ids = ", ".join(str(int(r)) for r in rowids)
    return f"SELECT __ad_rowid, {example_key(plan)} FROM {STAGE} WHERE __ad_rowid IN ({ids})"
