"""Checking silver rules: statically (validate_rules, before a run) and against the lake (a Plan, at build time).

Static checks need no lake: expressions and types parse, names are known, modes have keys. A Plan resolves a rule
against the actual source table: its columns and types, the kept and the new columns, the reference tables of
lookups; everything `airduck.silver.sql` needs to write the SQL.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import duckdb

from airduck.config.loader import read_yaml, where
from airduck.config.project import Project
from airduck.config.secrets import redact
from airduck.errors import AirduckError, RuleError
from airduck.lake.catalog import TableRef, columns, table_exists
from airduck.silver.config import ColumnRule, Expectation, Lookup, SilverTable
from airduck.silver.expressions import INTERNAL_PREFIX, Sandbox, UserExpression, parse_expression, parse_type
from airduck.silver.order import silver_order, silver_ref

#: columns every silver table carries
META_COLUMNS = ("_run_id", "_batch", "_updated_at")
META_TYPES = {"_run_id": "VARCHAR", "_batch": "BIGINT", "_updated_at": "TIMESTAMP WITH TIME ZONE"}
#: columns of an scd2 table
SCD2_COLUMNS = ("valid_from", "valid_to", "is_current")
SCD2_TYPES = {"valid_from": "TIMESTAMP WITH TIME ZONE", "valid_to": "TIMESTAMP WITH TIME ZONE", "is_current": "BOOLEAN"}
#: metadata bronze adds to every source row (never carried by keep_other_columns)
BRONZE_META = ("_load_id", "_batch", "_source", "_source_file", "_source_version", "_landing_key", "_row_number",
               "_ingested_at", "_rescued")
QUARANTINE_COLUMNS = (("_run_id", "VARCHAR"), ("_batch", "BIGINT"), ("_reasons", "VARCHAR[]"), ("_raw", "JSON"),
                      ("_quarantined_at", "TIMESTAMP WITH TIME ZONE"))
TEMPORAL = ("DATE", "TIME", "TIMESTAMP", "TIMESTAMP WITH TIME ZONE", "TIMESTAMP_S", "TIMESTAMP_MS", "TIMESTAMP_NS",
            "TIME WITH TIME ZONE")
DATELIKE = ("DATE", "TIMESTAMP", "TIMESTAMP WITH TIME ZONE", "TIMESTAMP_S", "TIMESTAMP_MS", "TIMESTAMP_NS")


class Locator:
    """`airduck.yml:<line>: silver.<name>.<key>` for messages (the line when the file can be read)."""

    def __init__(self, project: Project | None) -> None:
        self.file: Path | None = project.file if project is not None else None
        self._lines: dict | None = None

    def __call__(self, *loc: str | int) -> str:
        if self.file is None:
            return ".".join(str(p) for p in loc)
        if self._lines is None:
            try:
                self._lines = read_yaml(self.file)[1] if self.file.is_file() else {}
            except AirduckError:
                self._lines = {}
        return where(self.file, self._lines, tuple(loc))


@dataclass
class CheckedColumn:
    name: str
    rule: ColumnRule
    type: str  # as DuckDB names it
    expr: UserExpression | None = None

    @property
    def source(self) -> str:
        """The source column it reads (when it is not derived)."""
        return self.rule.source or self.name


@dataclass
class CheckedRule:
    """A rule whose expressions, types and names passed the static checks."""

    name: str
    rule: SilverTable
    source: TableRef
    columns: list[CheckedColumn]
    checks: list[tuple[Expectation, UserExpression]]
    loc: Locator

    @property
    def target(self) -> TableRef:
        return TableRef("silver", self.name)

    @property
    def quarantine(self) -> TableRef:
        return TableRef("silver", f"{self.name}__quarantine")


def source_table(name: str, rule: SilverTable, loc: Locator, sources: set[str] | None = None,
                 silver: set[str] | None = None) -> TableRef:
    """The table a rule reads: `x` or `bronze.x` -> bronze.x; `silver.x` -> silver.x."""
    text = rule.source.strip()
    target = silver_ref(text)
    if target is not None:
        if target == name:
            raise RuleError(f"{loc('silver', name, 'from')}: the table reads itself", hint="read a source or another silver table")
        if silver is not None and target not in silver:
            raise RuleError(f"{loc('silver', name, 'from')}: silver.{target} is not defined under silver:",
                            hint=f"silver tables: {', '.join(sorted(silver)) or 'none'}")
        return TableRef("silver", target)
    parts = [p.strip().strip('"') for p in text.split(".")]
    if len(parts) == 2 and parts[0] == "bronze":
        parts = parts[1:]
    if len(parts) != 1 or not parts[0]:
        raise RuleError(f"{loc('silver', name, 'from')}: {text!r} is neither a source name nor silver.<table>",
                        hint="write a source name (read from bronze.<source>) or silver.<table>")
    if sources is not None and parts[0] not in sources:
        raise RuleError(f"{loc('silver', name, 'from')}: unknown source {parts[0]!r}",
                        hint=f"sources: {', '.join(sorted(sources)) or 'none defined'}; add it under sources: "
                        "or read another silver table with silver.<name>")
    return TableRef("bronze", parts[0])


def _check_name(col: str, where_: str, mode: str) -> None:
    reserved = set(META_COLUMNS) | (set(SCD2_COLUMNS) if mode == "scd2" else set())
    if not col.strip():
        raise RuleError(f"{where_}: a column name is empty", hint="name every column")
    if col in reserved:
        raise RuleError(f"{where_}: {col!r} is a column airduck adds itself", hint="rename the column (from: keeps the source name)")
    if col.lower().startswith(INTERNAL_PREFIX):
        raise RuleError(f"{where_}: names starting with {INTERNAL_PREFIX} are reserved", hint="rename the column")


def check_rule(name: str, rule: SilverTable, sandbox: Sandbox, loc: Locator, sources: set[str] | None = None,
               silver: set[str] | None = None) -> CheckedRule:
    """The static checks of one rule (no lake needed). RuleError names silver.<name>.<key> and the fix."""
    at = lambda *k: loc("silver", name, *k)  # noqa: E731
    source = source_table(name, rule, loc, sources, silver)
    if rule.mode in ("merge", "scd2") and not rule.key:
        raise RuleError(f"{at('mode')}: mode {rule.mode} needs a key", hint="add `key: [<column>]`")
    if rule.deleted_flag and rule.mode not in ("merge", "scd2"):
        raise RuleError(f"{at('deleted_flag')}: deleted_flag needs mode merge or scd2 (mode is {rule.mode})",
                        hint="set `mode: merge` (delete the row) or `mode: scd2` (close its version)")
    cols: list[CheckedColumn] = []
    for col, crule in rule.columns.items():
        _check_name(col, at("columns", col), rule.mode)
        if crule.source is not None and crule.expr is not None:
            raise RuleError(f"{at('columns', col)}: give either `from` or `expr`, not both",
                            hint="`from` renames a source column; `expr` derives a value from source columns")
        ctype = parse_type(crule.type, at("columns", col, "type"), sandbox)
        expr = parse_expression(crule.expr, at("columns", col, "expr"), sandbox) if crule.expr is not None else None
        if crule.formats:
            if ctype not in TEMPORAL:
                raise RuleError(f"{at('columns', col, 'formats')}: formats parse dates and times, but the type is {ctype}",
                                hint="set `type: DATE` or `TIMESTAMP`, or remove `formats`")
            for i, fmt in enumerate(crule.formats):
                sandbox.check_format(fmt, at("columns", col, "formats", i))
        cols.append(CheckedColumn(col, crule, ctype, expr))
    listed = {c.name for c in cols}
    outputs = _check_lookups(rule, listed, at)
    free = rule.keep_other_columns  # unlisted bronze columns may exist: names are checked at build time
    known = listed | set(outputs)
    for i, key in enumerate(rule.key):
        if key not in listed and not free:
            raise RuleError(f"{at('key', i)}: key column {key!r} is not under columns:",
                            hint=f"list it under columns: (or set keep_other_columns: true); columns: {', '.join(sorted(listed)) or 'none'}")
    for i, col in enumerate(rule.order_by):
        if col not in known and not free:
            raise RuleError(f"{at('order_by', i)}: order_by column {col!r} is not a column of silver.{name}",
                            hint=f"columns: {', '.join(sorted(known)) or 'none'}")
    checks: list[tuple[Expectation, UserExpression]] = []
    seen: set[str] = set()
    for i, e in enumerate(rule.expectations):
        if not e.name.strip() or e.name in seen:
            raise RuleError(f"{at('expectations', i, 'name')}: expectation name {e.name!r} is empty or used twice",
                            hint="give every expectation its own name")
        seen.add(e.name)
        parsed = parse_expression(e.check, f"{at('expectations', i, 'check')} (expectation {e.name!r})", sandbox)
        unknown = sorted(parsed.columns - known)
        if unknown and not free:
            raise RuleError(f"{at('expectations', i, 'check')} (expectation {e.name!r}): unknown column {unknown[0]!r}",
                            hint=f"checks refer to silver column names: {', '.join(sorted(known)) or 'none'}")
        checks.append((e, parsed))
    return CheckedRule(name, rule, source, cols, checks, loc)


def _check_lookups(rule: SilverTable, listed: set[str], at) -> dict[str, Lookup]:
    outputs: dict[str, Lookup] = {}
    names: set[str] = set()
    for i, lk in enumerate(rule.lookups):
        if not lk.name.strip() or lk.name in names:
            raise RuleError(f"{at('lookups', i, 'name')}: lookup name {lk.name!r} is empty or used twice",
                            hint="give every lookup its own name")
        names.add(lk.name)
        try:
            TableRef.parse(lk.table)
        except AirduckError:
            raise RuleError(f"{at('lookups', i, 'table')}: {lk.table!r} is not schema.table",
                            hint="e.g. silver.companies") from None
        if not lk.on:
            raise RuleError(f"{at('lookups', i, 'on')}: the join needs at least one column",
                            hint="on: {this_column: reference_column}")
        for this in lk.on:
            if this not in listed and not rule.keep_other_columns:
                raise RuleError(f"{at('lookups', i, 'on')}: {this!r} is not a column of this table",
                                hint=f"columns: {', '.join(sorted(listed)) or 'none'}")
        for new in lk.columns:
            _check_name(new, at("lookups", i, "columns", new), rule.mode)
            if new in listed or new in outputs:
                raise RuleError(f"{at('lookups', i, 'columns', new)}: column {new!r} already exists",
                                hint="give the looked-up column another name")
            outputs[new] = lk
    return outputs


def validate_rules(project: Project) -> None:
    """Check every silver rule before a run: expressions, types, names, modes, and the build order.

    Raises RuleError naming `silver.<name>.<key>` (with the airduck.yml line) and the fix.
    """
    config = project.config
    loc = Locator(project)
    with Sandbox() as sandbox:
        for name, rule in config.silver.items():
            check_rule(name, rule, sandbox, loc, set(config.sources), set(config.silver))
    silver_order(config.silver)


# -- resolving a rule against the lake --------------------------------------------------------------------------

@dataclass
class PlanColumn:
    """A data column of the silver table."""

    name: str
    type: str
    kind: str  # rule | lookup | kept
    checked: CheckedColumn | None = None
    source_type: str | None = None  # type of the source value of a rule column (its bronze column or expr)


@dataclass
class PlanLookup:
    index: int
    lookup: Lookup
    table: TableRef
    current_only: bool  # the reference is an scd2 table: join its current versions only
    types: dict[str, str]  # reference column -> type


@dataclass
class Plan:
    checked: CheckedRule
    source_columns: dict[str, str]
    columns: list[PlanColumn]
    lookups: list[PlanLookup]
    checks: list[tuple[Expectation, UserExpression]]
    deleted: tuple[str, str] | None = None  # ("silver"|"source", column)
    row_number: bool = True  # the source has _row_number
    ingest_column: str | None = None  # _ingested_at (bronze) or _updated_at (silver source)
    new_kept: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.checked.name

    @property
    def rule(self) -> SilverTable:
        return self.checked.rule

    @property
    def data_names(self) -> list[str]:
        return [c.name for c in self.columns]

    def column(self, name: str) -> PlanColumn:
        return next(c for c in self.columns if c.name == name)

    def all_columns(self) -> list[tuple[str, str]]:
        """Every column of the silver table, in table order: data, scd2 (in scd2 mode), metadata."""
        out = [(c.name, c.type) for c in self.columns]
        if self.rule.mode == "scd2":
            out += [(c, SCD2_TYPES[c]) for c in SCD2_COLUMNS]
        out += [(c, META_TYPES[c]) for c in META_COLUMNS]
        return out


def make_plan(con: duckdb.DuckDBPyConnection, checked: CheckedRule, sandbox: Sandbox) -> Plan | None:
    """Resolve a checked rule against the lake; None when the source table does not exist yet."""
    name, rule = checked.name, checked.rule
    at = lambda *k: checked.loc("silver", name, *k)  # noqa: E731
    src = checked.source
    if not table_exists(con, src):
        return None
    source_cols = {c.name: c.type for c in columns(con, src)}
    if "_batch" not in source_cols:
        raise RuleError(f"{at('from')}: {src} has no _batch column, so silver cannot tell new rows from old ones",
                        hint="read a table written by airduck (bronze.<source> or silver.<table>)")
    available = ", ".join(c for c in source_cols if c not in BRONZE_META)
    plan_cols: list[PlanColumn] = []
    consumed: set[str] = set()
    for col in checked.columns:
        if col.expr is not None:
            missing = sorted(col.expr.columns - set(source_cols))
            if missing:
                raise RuleError(f"{at('columns', col.name, 'expr')}: {missing[0]!r} is not a column of {src}",
                                hint=f"expressions refer to source columns: {available}")
            out = sandbox.bind(col.expr, source_cols.items(), at("columns", col.name, "expr"), f"the columns of {src}")
            plan_cols.append(PlanColumn(col.name, col.type, "rule", col, out or None))
        else:
            if col.source not in source_cols:
                key = ("columns", col.name, "from") if col.rule.source else ("columns", col.name)
                raise RuleError(f"{at(*key)}: source column {col.source!r} is not in {src}",
                                hint=f"fix the name (from: renames a source column); columns of {src}: {available}")
            consumed.add(col.source)
            plan_cols.append(PlanColumn(col.name, col.type, "rule", col, source_cols[col.source]))
    lookups: list[PlanLookup] = []
    lookup_cols: list[PlanColumn] = []
    for i, lk in enumerate(rule.lookups):
        ref = TableRef.parse(lk.table)
        if not table_exists(con, ref):
            raise RuleError(f"{at('lookups', i, 'table')}: reference table {ref} does not exist",
                            hint="build it first (a silver table or a source) or fix the name")
        ref_cols = {c.name: c.type for c in columns(con, ref)}
        for col in [*lk.on.values(), *lk.columns.values()]:
            if col not in ref_cols:
                raise RuleError(f"{at('lookups', i)} (lookup {lk.name!r}): {ref} has no column {col!r}",
                                hint=f"columns of {ref}: {', '.join(ref_cols)}")
        current_only = ref_cols.get("is_current") == "BOOLEAN" and "valid_from" in ref_cols
        lookups.append(PlanLookup(i, lk, ref, current_only, ref_cols))
        lookup_cols += [PlanColumn(new, ref_cols[refcol], "lookup") for new, refcol in lk.columns.items()]
    taken = {c.name for c in plan_cols} | {c.name for c in lookup_cols}
    kept: list[PlanColumn] = []
    if rule.keep_other_columns:
        generated = set(META_COLUMNS) | set(SCD2_COLUMNS) | set(BRONZE_META)
        for col, ctype in source_cols.items():
            if col in taken or col in consumed or col in generated or col.lower().startswith(INTERNAL_PREFIX):
                continue
            kept.append(PlanColumn(col, ctype, "kept"))
    data = plan_cols + kept + lookup_cols
    names = {c.name for c in data}
    for i, lk in enumerate(rule.lookups):
        for this in lk.on:
            if this not in names or any(c.name == this and c.kind == "lookup" for c in data):
                raise RuleError(f"{at('lookups', i, 'on')}: {this!r} is not a column of silver.{name}",
                                hint=f"columns: {', '.join(c.name for c in data if c.kind != 'lookup')}")
    for i, key in enumerate(rule.key):
        if key not in names or any(c.name == key and c.kind == "lookup" for c in data):
            raise RuleError(f"{at('key', i)}: key column {key!r} is not a column of silver.{name}",
                            hint=f"columns: {', '.join(c.name for c in data if c.kind != 'lookup')}")
    for i, col in enumerate(rule.order_by):
        if col not in names:
            raise RuleError(f"{at('order_by', i)}: order_by column {col!r} is not a column of silver.{name}",
                            hint=f"columns: {', '.join(names)}")
    deleted: tuple[str, str] | None = None
    if rule.deleted_flag:
        if rule.deleted_flag in names:
            deleted = ("silver", rule.deleted_flag)
        elif rule.deleted_flag in source_cols:
            deleted = ("source", rule.deleted_flag)
        else:
            raise RuleError(f"{at('deleted_flag')}: {rule.deleted_flag!r} is neither a column of silver.{name} nor of {src}",
                            hint=f"columns of {src}: {available}")
    types = [(c.name, c.type) for c in data]
    for (e, parsed), i in zip(checked.checks, range(len(checked.checks)), strict=True):
        w = f"{at('expectations', i, 'check')} (expectation {e.name!r})"
        unknown = sorted(parsed.columns - names)
        if unknown:
            raise RuleError(f"{w}: unknown column {unknown[0]!r}",
                            hint=f"checks refer to silver column names: {', '.join(names)}")
        out = sandbox.bind(parsed, types, w, f"the columns of silver.{name}")
        if out and out not in ("BOOLEAN", '"NULL"', "NULL"):
            raise RuleError(f"{w}: {e.check!r} is of type {out}, not a true/false condition",
                            hint="write a comparison, e.g. `amount > 0`")
    ingest = "_ingested_at" if "_ingested_at" in source_cols else "_updated_at" if "_updated_at" in source_cols else None
    return Plan(checked, source_cols, data, lookups, list(checked.checks), deleted,
                "_row_number" in source_cols, ingest)


def rule_error(name: str, exc: duckdb.Error) -> RuleError:
    text = [ln for ln in str(exc).strip().splitlines() if ln.strip()]
    return RuleError(redact(f"silver.{name}: the generated SQL failed: {text[0] if text else type(exc).__name__}"),
                     hint="check the rule's expressions against the data (use TRY_CAST in `expr` for messy values)")
