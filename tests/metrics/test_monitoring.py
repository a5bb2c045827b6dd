"""deploy/monitoring: the alert rules pass `promtool check rules` and their unit test (`promtool test rules`); the
Grafana dashboard's queries are valid PromQL and use only metric names airduck exports."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import yaml

from airduck.metrics.batch import RUN_METRICS
from airduck.metrics.http import HTTP_METRICS
from airduck.metrics.lake import LAKE_METRICS
from tests.support.debian import ensure_binary

MONITORING = Path(__file__).resolve().parents[2] / "deploy" / "monitoring"
RULES = MONITORING / "airduck-rules.yml"
DASHBOARD = MONITORING / "airduck-dashboard.json"
NAME = re.compile(r"\bairduck_[a-z0-9_]+")


def exported() -> set[str]:
    names = set(LAKE_METRICS) | set(RUN_METRICS) | set(HTTP_METRICS)
    hist = "airduck_http_request_duration_seconds"
    return names | {f"{hist}_bucket", f"{hist}_sum", f"{hist}_count"}


def promtool(*args: str, cwd: Path = MONITORING) -> subprocess.CompletedProcess:
    return subprocess.run([ensure_binary("promtool"), *args], cwd=cwd, capture_output=True, text=True, timeout=60)


def test_rules_pass_promtool_check():
    proc = promtool("check", "rules", RULES.name)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS: 7 rules found" in proc.stdout


def test_rules_unit_test():
    proc = promtool("test", "rules", "airduck-rules.test.yml")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout


def test_rules_test_catches_a_broken_rule(tmp_path):
    """The unit test really evaluates the rules: with the stale threshold ignored, it fails."""
    broken = RULES.read_text().replace(
        "(time() - airduck_table_last_change_timestamp_seconds) > airduck_table_freshness_error_after_seconds",
        "airduck_table_freshness_error_after_seconds > 0")
    (tmp_path / RULES.name).write_text(broken)
    (tmp_path / "airduck-rules.test.yml").write_text((MONITORING / "airduck-rules.test.yml").read_text())
    proc = promtool("test", "rules", "airduck-rules.test.yml", cwd=tmp_path)
    assert proc.returncode != 0 and "AirduckTableStale" in proc.stdout + proc.stderr


def test_rules_use_only_exported_metrics():
    rules = yaml.safe_load(RULES.read_text())["groups"][0]["rules"]
    used = {n for r in rules for n in NAME.findall(r["expr"])}
    assert used and used <= exported(), used - exported()
    assert {r["alert"] for r in rules} >= {"AirduckRunFailed", "AirduckTableStale", "AirduckQuarantineShareHigh"}


def _dashboard_exprs() -> list[str]:
    dash = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dash["panels"] for t in p.get("targets") or [] if t.get("expr")]
    for var in dash["templating"]["list"]:
        if var.get("definition"):
            exprs.append(var["definition"].removeprefix("label_values(").split(",")[0])
    return exprs


def test_dashboard_queries_use_only_exported_metrics():
    exprs = _dashboard_exprs()
    assert len(exprs) >= 15
    used = {n for e in exprs for n in NAME.findall(e)}
    assert used <= exported(), used - exported()
    # it shows the lake, the runs, freshness, quarantine and the API
    for name in ("airduck_table_rows", "airduck_table_bytes", "airduck_table_last_change_timestamp_seconds",
                 "airduck_last_run_outcome", "airduck_last_run_rows_quarantined", "airduck_http_requests_total",
                 "airduck_http_request_duration_seconds_bucket"):
        assert name in used


def test_dashboard_queries_are_valid_promql(tmp_path):
    """Each query (Grafana's variables replaced) as a recording rule: promtool parses every expression."""
    rules = []
    for i, expr in enumerate(_dashboard_exprs()):
        expr = expr.replace("$__rate_interval", "5m").replace("$job", ".*").replace("$layer", ".*")
        rules.append({"record": f"airduck:dashboard_query_{i}", "expr": expr})
    (tmp_path / "dashboard.yml").write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    proc = promtool("check", "rules", "dashboard.yml", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
