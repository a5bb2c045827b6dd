"""Metrics, alerts and freshness on a real lake (PostgreSQL catalog with a password in its DSN, S3 data): one good
run and one run whose quality gate fails, each pushing to a Pushgateway-compatible receiver, writing the textfile
and alerting a webhook receiver; the API server's /metrics scraped with TestClient; `airduck freshness` as time
passes. No secret (DSN password, S3 key, webhook token) appears in any byte of it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from airduck.errors import RunFailed
from airduck.lakehouse import Lakehouse
from airduck.metrics.batch import RUN_METRICS
from airduck.metrics.http import HTTP_METRICS
from airduck.metrics.lake import LAKE_METRICS
from tests.conftest import PG_BASE, pg_dsn_for, s3_env
from tests.metrics.conftest import Receiver

PG_PASSWORD = "Pg-Metrics-Secret-7781"
SLACK_TOKEN = "hooksecret-5c1d8e2f9a7b"
BOT_TOKEN = "424242:AAE-telegram-bot-secret-token"
ORDERS = "order_id,amount\n1,5\n2,-3\n3,7\n4,9\n"


def families(text: str) -> dict[str, object]:
    return {f.name: f for f in text_string_to_metric_families(text)}


def samples(text: str, name: str) -> dict[tuple, float]:
    """{sorted label items: value} of the samples called `name`."""
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            if s.name == name:
                out[tuple(sorted(s.labels.items()))] = s.value
    return out


def documented() -> dict[str, tuple[str, ...]]:
    """Every documented metric -> its label names (a counter's samples end in _total, a histogram's in _bucket…)."""
    return {**LAKE_METRICS, **RUN_METRICS, **{k: v for k, v in HTTP_METRICS.items()}}


def check_names_and_labels(text: str, pushed: bool = False) -> set[str]:
    """Every sample has a documented name and exactly its documented labels (plus `le` for buckets)."""
    docs = documented()
    seen = set()
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            base = s.name
            if base == "airduck_http_requests_created":  # prometheus_client's creation time of a counter
                base = "airduck_http_requests_total"
            for suffix in ("_bucket", "_sum", "_count", "_created"):
                if base.endswith(suffix) and base.removesuffix(suffix) in docs:
                    base = base.removesuffix(suffix)
            assert base in docs, f"undocumented metric {s.name}"
            labels = set(s.labels) - ({"le"} if s.name.endswith("_bucket") else set())
            if s.name.endswith("_created") and base.startswith("airduck_http_request_duration"):
                labels = set(s.labels)
            assert labels == set(docs[base][1]), (s.name, s.labels)
            assert not any("run" in k and "id" in k for k in s.labels)  # no run ids as labels
            seen.add(base)
    return seen


@dataclass
class Lake:
    root: Path
    env: dict[str, str]
    first_push: list = field(default_factory=list)
    second_push: list = field(default_factory=list)
    textfile_ok: str = ""
    textfile_failed: str = ""
    alerts: list = field(default_factory=list)
    emitted: list[bytes] = field(default_factory=list)


def cli(lake: Lake, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRDUCK_", "AWS_"))}
    env["COLUMNS"] = "200"
    return subprocess.run([sys.executable, "-m", "airduck", "-p", str(lake.root), *args], capture_output=True,
                          text=True, env=env, timeout=180)


@pytest.fixture(scope="module")
def lake(tmp_path_factory, s3_server, receiver: Receiver, pushgateway: Receiver) -> Iterator[Lake]:
    db = f"airduck_test_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_BASE, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{db}"')
    catalog = pg_dsn_for(db).replace("postgres@", f"postgres:{PG_PASSWORD}@", 1)  # trust auth: ignored, but secret
    root = tmp_path_factory.mktemp("metrics") / "shop"
    (root / "data" / "orders").mkdir(parents=True)
    (root / "data" / "orders" / "a.csv").write_text(ORDERS)
    prefix = f"s3://{s3_server.bucket}/metrics-{uuid.uuid4().hex[:8]}"
    env = s3_env(s3_server)
    (root / ".env").write_text("".join(f"{k}={v}\n" for k, v in {
        **env, "SLACK_URL": f"{receiver.url}/services/T01/B02/{SLACK_TOKEN}",
        "TG_URL": f"{receiver.url}/bot{BOT_TOKEN}/sendMessage"}.items()))
    orders_rule = {"from": "orders", "key": ["order_id"], "mode": "merge",
                   "columns": {"order_id": {"type": "BIGINT"}, "amount": {"type": "INTEGER"}},
                   "expectations": [{"name": "positive", "check": "amount > 0", "on_fail": "drop"}],
                   "freshness": {"warn_after": "6h", "error_after": "24h"}}
    config = {
        "name": "shop",
        "lake": {"catalog": catalog, "data_path": f"{prefix}/data/", "landing": f"{prefix}/landing/"},
        "sources": {"orders": {"type": "files", "path": "data/orders/*.csv", "format": "csv",
                               "freshness": {"warn_after": "12h"}}},
        "silver": {"orders": orders_rule},
        "metrics": {"pushgateway": pushgateway.url, "textfile": "metrics/airduck.prom", "timeout": 5},
        "alerts": {"webhooks": [{"url": "${SLACK_URL}", "format": "slack"},
                                {"url": "${TG_URL}", "format": "telegram", "chat_id": -100777,
                                 "on": ["run_failed", "stale"]}],
                   "retries": 1, "backoff": 0.05, "timeout": 5},
    }
    (root / "airduck.yml").write_text(yaml.safe_dump(config, sort_keys=False))
    out = Lake(root, env)
    receiver.reset()
    pushgateway.reset()
    textfile = root / "metrics" / "airduck.prom"
    with Lakehouse.open(root) as lh:
        result = lh.run()
    assert result.record.status == "warned"  # one row quarantined
    out.first_push = list(pushgateway.requests)
    out.textfile_ok = textfile.read_text()
    assert receiver.requests == []  # a good run alerts no one
    # the second run: a new file with a huge amount, and a gate that fails on it
    (root / "data" / "orders" / "b.csv").write_text("order_id,amount\n5,99999\n")
    orders_rule["expectations"].append({"name": "not_huge", "check": "amount < 1000", "on_fail": "fail"})
    (root / "airduck.yml").write_text(yaml.safe_dump(config, sort_keys=False))
    pushgateway.reset()
    with Lakehouse.open(root) as lh, pytest.raises(RunFailed):
        lh.run()
    out.second_push = list(pushgateway.requests)
    out.textfile_failed = textfile.read_text()
    out.alerts = list(receiver.requests)
    out.emitted += [r.body for r in out.first_push + out.second_push + out.alerts]
    out.emitted += [out.textfile_ok.encode(), out.textfile_failed.encode()]
    yield out
    with psycopg.connect(PG_BASE, autocommit=True) as conn:
        conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s "
                     "AND pid <> pg_backend_pid()", [db])
        conn.execute(f'DROP DATABASE IF EXISTS "{db}"')


def test_textfile_has_the_documented_metrics(lake):
    seen = check_names_and_labels(lake.textfile_ok)
    assert {"airduck_table_rows", "airduck_table_bytes", "airduck_lake_snapshots", "airduck_run_duration_seconds",
            "airduck_last_run_rows_quarantined", "airduck_table_seconds_since_last_success",
            "airduck_step_duration_seconds"} <= seen
    text = lake.textfile_ok
    assert samples(text, "airduck_table_rows")[(("layer", "silver"), ("table", "silver.orders"))] == 3
    assert samples(text, "airduck_table_rows")[(("layer", "bronze"), ("table", "bronze.orders"))] == 4
    assert samples(text, "airduck_last_run_rows_quarantined")[()] == 1
    assert samples(text, "airduck_table_last_run_rows_quarantined")[(("layer", "silver"),
                                                                     ("table", "silver.orders"))] == 1
    assert samples(text, "airduck_run_outcome")[(("status", "warned"),)] == 1
    assert samples(text, "airduck_last_run_outcome")[(("status", "warned"),)] == 1
    assert samples(text, "airduck_table_freshness_error_after_seconds")[(("layer", "silver"),
                                                                         ("table", "silver.orders"))] == 86400
    assert samples(text, "airduck_table_freshness_status")[(("layer", "silver"), ("status", "ok"),
                                                            ("table", "silver.orders"))] == 1
    assert samples(text, "airduck_lake_up")[()] == 1
    # the failed run replaced the file
    assert samples(lake.textfile_failed, "airduck_run_outcome")[(("status", "failed"),)] == 1
    assert samples(lake.textfile_failed, "airduck_last_run_outcome")[(("status", "failed"),)] == 1


def test_pushgateway_gets_each_run(lake):
    for pushed, status in ((lake.first_push, "warned"), (lake.second_push, "failed")):
        assert len(pushed) == 1
        (req,) = pushed
        assert req.method == "PUT" and req.path == "/metrics/job/airduck/project/shop"
        text = req.body.decode()
        check_names_and_labels(text)
        assert samples(text, "airduck_run_outcome")[(("status", status),)] == 1
        steps = samples(text, "airduck_step_duration_seconds")
        assert any(dict(k)["step"] == "silver:orders" for k in steps)
    failed = lake.second_push[0].body.decode()
    assert samples(failed, "airduck_run_steps")[(("status", "failed"),)] == 1


def test_failed_gate_alerts_both_webhooks(lake):
    by_path = {r.path.split("/")[1]: json.loads(r.body) for r in lake.alerts}
    assert len(lake.alerts) == 2 and set(by_path) == {"services", f"bot{BOT_TOKEN}"}
    slack = by_path["services"]
    assert set(slack) == {"text"}
    assert slack["text"].startswith("airduck shop: a quality gate failed\n")
    assert "silver:orders: quality gate failed:" in slack["text"] and "not_huge" in slack["text"]
    telegram = by_path[f"bot{BOT_TOKEN}"]
    assert set(telegram) == {"chat_id", "text"} and telegram["chat_id"] == -100777
    assert telegram["text"].startswith("airduck shop: run failed\n")  # this webhook wants run_failed only


def test_api_server_metrics(lake):
    from fastapi.testclient import TestClient

    from airduck.api.app import create_app

    app = create_app(lake.root, web=False)
    token = app.state.auth.generated
    headers = {"Authorization": f"Bearer {token}"}
    with TestClient(app) as client:
        assert client.get("/metrics").status_code == 401  # token-protected like the API
        assert client.get("/api/v1/tables", headers=headers).status_code == 200
        for _ in range(2):
            assert client.get("/api/v1/tables/silver.orders", headers=headers).status_code == 200
        assert client.get("/api/v1/tables/silver.nope", headers=headers).status_code == 404
        assert client.get("/no/such/route", headers=headers).status_code == 404
        response = client.get("/metrics", headers=headers)
        schema = client.get("/api/v1/openapi.json", headers=headers).json()
    op = schema["paths"]["/metrics"]["get"]  # declared, with the API's security and error responses
    assert {"200", "401", "403"} <= set(op["responses"]) and op.get("security")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    text = response.text
    lake.emitted.append(response.content)
    seen = check_names_and_labels(text)
    assert {"airduck_http_requests_total", "airduck_http_request_duration_seconds", "airduck_table_rows",
            "airduck_last_run_outcome", "airduck_table_age_seconds"} <= seen
    requests = samples(text, "airduck_http_requests_total")
    routes = {dict(k)["route"] for k in requests}
    assert "/api/v1/tables/{name}" in routes and "<unmatched>" in routes
    assert not any("silver.orders" in r or "nope" in r or "no/such" in r for r in routes)  # templates, not paths
    key = (("method", "GET"), ("route", "/api/v1/tables/{name}"), ("status", "200"))
    assert requests[key] == 2
    assert requests[(("method", "GET"), ("route", "/api/v1/tables/{name}"), ("status", "404"))] == 1
    assert requests[(("method", "GET"), ("route", "/metrics"), ("status", "401"))] == 1
    count = samples(text, "airduck_http_request_duration_seconds_count")
    assert count[(("method", "GET"), ("route", "/api/v1/tables/{name}"))] == 3
    assert samples(text, "airduck_last_run_outcome")[(("status", "failed"),)] == 1
    assert samples(text, "airduck_runs")[(("status", "failed"),)] == 1
    assert samples(text, "airduck_runs")[(("status", "warned"),)] == 1


def test_freshness_as_time_passes(lake, receiver):
    now = datetime.now(UTC)
    with Lakehouse.open(lake.root) as lh:  # the facade, with the clock injected
        def statuses(hours: float) -> dict[str, str]:
            return {a.table: a.status for a in lh.freshness(now=now + timedelta(hours=hours))}

        assert statuses(0) == {"bronze.orders": "ok", "bronze.orders__rejects": "none", "silver.orders": "ok",
                               "silver.orders__quarantine": "none"}
        assert statuses(7) == {**statuses(0), "silver.orders": "warn"}  # bronze warns after 12h
        assert statuses(13)["bronze.orders"] == "warn" and statuses(13)["silver.orders"] == "warn"
        assert statuses(25)["silver.orders"] == "error"
        ages = {a.table: a for a in lh.freshness(now=now)}
        assert ages["silver.orders"].age_seconds < 3600
    # the CLI: --json, --alert, exit code 1 on error
    receiver.reset()
    proc = cli(lake, "freshness", "--json", "--alert", "--now", (now + timedelta(hours=25)).isoformat())
    lake.emitted += [proc.stdout.encode(), proc.stderr.encode()]
    report = json.loads(proc.stdout)
    tables = {t["table"]: t for t in report["tables"]}
    assert proc.returncode == 1 and report["status"] == "error" and tables["silver.orders"]["status"] == "error"
    assert tables["bronze.orders"]["status"] == "warn" and tables["silver.orders"]["error_after_seconds"] == 86400
    assert [a["ok"] for a in report["alerts"]] == [True, True]
    assert all(SLACK_TOKEN not in a["target"] for a in report["alerts"])
    bodies = [json.loads(r.body) for r in receiver.requests]
    lake.emitted += [r.body for r in receiver.requests]
    assert {tuple(sorted(b)) for b in bodies} == {("text",), ("chat_id", "text")}
    text = bodies[0]["text"]
    assert text.startswith("airduck shop: 2 stale tables (1 error)\n")
    assert "silver.orders: error, last changed 1d 1h ago (error after 1d)" in text
    assert "bronze.orders: warn, last changed 1d 1h ago" in text
    assert "Exit code 1 when any table is `error`" in " ".join(cli(lake, "freshness", "--help").stdout.split())


def test_no_secret_in_any_emitted_byte(lake):
    """Runs last in this module: everything the other tests collected (textfiles, pushes, alerts, /metrics,
    freshness output)."""
    everything = b"\n".join(lake.emitted)
    assert len(everything) > 10_000
    for secret in (PG_PASSWORD, lake.env["AWS_SECRET_ACCESS_KEY"], SLACK_TOKEN, BOT_TOKEN, BOT_TOKEN.split(":")[1]):
        assert secret.encode() not in everything, secret
