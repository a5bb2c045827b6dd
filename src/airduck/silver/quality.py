"""Silver checks as quality results: what each expectation, cast, required column and lookup found in a build."""

from __future__ import annotations

from typing import Any

import duckdb

from airduck.core.context import RunContext
from airduck.core.model import StepResult
from airduck.core.quality import Action, CheckKind, QualityResult
from airduck.lake.connection import quote_literal
from airduck.quality import MAX_EXAMPLES, make_result
from airduck.silver import sql
from airduck.silver.rules import Plan, PlanColumn

#: what a lookup's `on_missing` does to a row without a match
_LOOKUP_ACTIONS = {"count": Action.WARN, "quarantine": Action.DROP, "fail": Action.FAIL}


def _casts(plan: Plan) -> list[PlanColumn]:
    """The rule columns whose value is cast to another type (a cast to VARCHAR or to the source's own type
    cannot fail, unless `formats` parse it)."""
    out = []
    for col in plan.columns:
        if col.kind != "rule" or col.checked is None:
            continue
        raw = "VARCHAR" if col.checked.rule.normalize else (col.source_type or "")
        if col.checked.rule.formats or (col.type.upper() != "VARCHAR" and raw.upper() != col.type.upper()):
            out.append(col)
    return out


def quality_results(ctx: RunContext, con: duckdb.DuckDBPyConnection, plan: Plan, result: StepResult) -> list[QualityResult]:
    """The quality results of a silver step, from its materialized stage and the counts `_measure` put in
    `result.details`: one per check of the rule, passing ones too (every expectation, cast, required or key
    column and lookup), with up to MAX_EXAMPLES failing keys (one scan of the stage for all failing checks)."""
    details = result.details
    staged = result.rows_in - details["superseded"]
    reasons = details["quarantine_reasons"]
    checks: list[tuple[str, str, str, int, str, str]] = []  # kind, name, action, failing, condition, detail
    for j, (e, expr) in enumerate(plan.checks):
        checks.append((CheckKind.EXPECTATION, e.name, e.on_fail, details["expectations"][e.name]["failed"],
                       f"NOT __ad_ok{j}", expr.text))
    for col in _casts(plan):
        tag = f"cast:{col.name}"
        formats = col.checked.rule.formats if col.checked else []
        how = f" (formats {', '.join(formats)})" if formats else ""
        checks.append((CheckKind.CAST, col.name, Action.DROP, int(reasons.get(tag, 0)),
                       f"list_contains(__ad_reasons, {quote_literal(tag)})", f"{col.source_type or 'value'} -> {col.type}{how}"))
    keys = set(plan.rule.key)
    for col in plan.columns:
        required = col.name in keys or (col.kind == "rule" and col.checked is not None and col.checked.rule.required)
        if required and col.kind != "lookup":
            tag = f"required:{col.name}"
            checks.append((CheckKind.REQUIRED, col.name, Action.DROP, int(reasons.get(tag, 0)),
                           f"list_contains(__ad_reasons, {quote_literal(tag)})",
                           "key column: never NULL" if col.name in keys else "required: true"))
    for lk in plan.lookups:
        ons = ", ".join(f"{a} = {lk.table}.{b}" for a, b in lk.lookup.on.items())
        checks.append((CheckKind.LOOKUP, lk.lookup.name, _LOOKUP_ACTIONS[lk.lookup.on_missing],
                       details["lookup_unmatched"][lk.lookup.name], f"__ad_miss{lk.index}", f"match in {lk.table} on {ons}"))
    failing = [i for i, c in enumerate(checks) if c[3]]
    examples: dict[int, list[Any]] = {}
    if failing:
        # the row ids of the first failing rows of each check, then the keys of those few rows
        picked: dict[int, list[int]] = {}
        for c, rowid in con.execute(sql.failing_rows([checks[i][4] for i in failing], MAX_EXAMPLES)).fetchall():
            picked.setdefault(failing[c], []).append(rowid)
        picked = {i: sorted(v) for i, v in picked.items()}
        wanted = sorted({r for v in picked.values() for r in v})
        keys = dict(con.execute(sql.example_rows(plan, wanted)).fetchall()) if wanted else {}
        examples = {i: [keys[r] for r in v if r in keys] for i, v in picked.items()}
    return [make_result(table=result.table, check=kind, name=name, rows_checked=staged, rows_failing=n, action=action,
                        examples=examples.get(i), run_id=ctx.run_id, step_id=f"silver:{plan.name}", detail=detail)
            for i, (kind, name, action, n, _, detail) in enumerate(checks)]
