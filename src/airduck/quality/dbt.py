"""dbt tests as quality results: read from dbt's run_results.json and manifest.json.

Every test dbt ran (data tests and unit tests) becomes a :class:`QualityResult` of the table it tests:
`gold.<model>` for a test of a model or seed (its `attached_node`, else the first model it depends on), the
lake table of a source (`silver.orders`) for a test of a source. Tests dbt skipped (an upstream model
failed) checked nothing and give no result.
"""

from __future__ import annotations

from typing import Any

from airduck.core.model import StepResult
from airduck.core.quality import Action, CheckKind, QualityResult
from airduck.quality.results import make_result

GOLD = "gold"
TEST_TYPES = ("test", "unit_test")
#: run_results statuses of a test that ran
_RAN = ("pass", "fail", "warn", "error")
_TESTED = ("model", "seed", "snapshot", "source")


def _target(test: dict[str, Any], manifest: dict[str, Any]) -> tuple[str, str, str | None] | None:
    """(dict key, table, step id) of the node a test checks: a model's name, gold.<alias> and gold:<model>, or a
    source's lake table (twice) and no step."""
    nodes, sources = manifest.get("nodes", {}), manifest.get("sources", {})
    candidates = [test.get("attached_node"), *((test.get("depends_on") or {}).get("nodes") or [])]
    if test.get("resource_type") == "unit_test" and test.get("model"):
        candidates.insert(0, next((uid for uid, n in nodes.items() if n.get("resource_type") == "model"
                                   and n.get("name") == test["model"]), None))
    for uid in candidates:
        if not uid or uid.split(".", 1)[0] not in _TESTED:
            continue
        if uid in sources:
            src = sources[uid]
            table = f"{src.get('schema')}.{src.get('identifier') or src.get('name')}"
            return table, table, None
        node = nodes.get(uid)
        if node is not None:
            model = node.get("name") or uid.rsplit(".", 1)[-1]
            return model, f"{GOLD}.{node.get('alias') or model}", f"gold:{model}"
    return None


def results_from_run_results(run_results: dict[str, Any] | None, manifest: dict[str, Any] | None,
                             run_id: str | None, *, fail_on_warn: bool = False) -> dict[str, list[QualityResult]]:
    """Every test in `run_results` as a quality result, keyed by the model it tests (a source's lake table,
    e.g. ``silver.orders``, for a test of a source; the test's own name when it tests no known node).

    `rows_failing` is dbt's `failures` (a failed unit test counts 1 when dbt gives none); the action is
    `fail` for severity error (and for warnings with `fail_on_warn`), else `warn`; `passed` follows the status.
    """
    manifest = manifest or {}
    nodes = {**manifest.get("nodes", {}), **manifest.get("unit_tests", {})}
    out: dict[str, list[QualityResult]] = {}
    for r in (run_results or {}).get("results", []):
        uid = str(r.get("unique_id", ""))
        kind = uid.split(".", 1)[0]
        status = str(r.get("status", "")).lower()
        if kind not in TEST_TYPES or status not in _RAN:
            continue
        test = nodes.get(uid, {"resource_type": kind})
        parts = uid.split(".")
        name = test.get("name") or (parts[2] if kind == "test" and len(parts) > 2 else parts[-1])
        severity = str((test.get("config") or {}).get("severity") or "error").lower()
        found = _target(test, manifest)
        key, table, step_id = found if found is not None else (name, f"{GOLD}.{name}", None)
        failures = r.get("failures")
        failing = int(failures) if failures is not None else (1 if status in ("fail", "error") else 0)
        action = Action.FAIL if severity == "error" or fail_on_warn else Action.WARN
        detail = test.get("original_file_path")
        message = r.get("message")
        if status != "pass" and message:
            detail = f"{message}" + (f" ({detail})" if detail else "")
        out.setdefault(key, []).append(make_result(
            table=table, check=CheckKind.DBT_TEST, name=name, rows_checked=None, rows_failing=failing,
            action=action, passed=status == "pass", run_id=run_id, step_id=step_id,
            detail=detail))
    return out


def attach_to_steps(steps: list[StepResult], results: dict[str, list[QualityResult]]) -> list[StepResult]:
    """Put each model's results on its step (matched by table, else by the `model` in its details); results of
    tables without a step (tests of sources) go on the first step, or a new `gold` step when there is none.
    Returns `steps` (with that new step, if one was needed)."""
    by_table = {s.table: s for s in steps}
    by_model = {s.details.get("model"): s for s in steps if isinstance(s.details, dict) and s.details.get("model")}
    left: list[QualityResult] = []
    for key, found in results.items():
        for q in found:
            step = by_table.get(q.table) or by_model.get(key)
            if step is None:
                left.append(q)
            else:
                step.quality.append(q)
    if left:
        if not steps:
            failed = any(not q.passed and q.action == Action.FAIL for q in left)
            steps.append(StepResult(layer="gold", table=GOLD, status="failed" if failed else "ok"))
        steps[0].quality.extend(left)
    return steps
