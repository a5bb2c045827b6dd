"""Alerts to webhooks (Slack and Telegram bodies, retries, a bounded timeout, secrets masked) and the data-age
freshness policy (statuses as an injected clock moves). No lake: the webhook receiver is real, on loopback."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta, timezone

import pytest
from pydantic import ValidationError

from airduck.config.secrets import redact
from airduck.config.staleness import FreshnessPolicy, parse_duration
from airduck.events import Fanout
from airduck.events.types import RunFinished, RunStarted, StepFailed
from airduck.metrics.alerts import Alert, AlertSink, register_webhook, send, shown, stale_alert
from airduck.metrics.config import AlertsConfig, Webhook
from airduck.metrics.staleness import table_ages, worst

TOKEN = "xoxb-9f8e7d6c5b4a3210-SLACKTOKEN"
BOT = "123456789:AAHtelegramSECRETtokenZZ"


def config(receiver, **kw) -> AlertsConfig:
    hooks = kw.pop("webhooks", None) or [
        {"url": f"{receiver.url}/services/T0001/B0002/{TOKEN}?sig=q-{TOKEN}", "format": "slack"},
        {"url": f"{receiver.url}/bot{BOT}/sendMessage", "format": "telegram", "chat_id": -1001234},
    ]
    cfg = AlertsConfig.model_validate({"webhooks": hooks, "backoff": 0.01, **kw})
    for hook in cfg.webhooks:
        register_webhook(hook.url)
    return cfg


def bodies(receiver) -> list[dict]:
    return [json.loads(r.body) for r in receiver.requests]


def test_slack_and_telegram_bodies(receiver):
    receiver.reset()
    cfg = config(receiver)
    alert = Alert("run_failed", "shop", "airduck shop: run failed", ["silver:orders: boom"], "r1")
    deliveries = send(cfg, alert)
    assert [d.ok for d in deliveries] == [True, True]
    slack, telegram = receiver.requests
    assert slack.method == "POST" and slack.path.startswith("/services/T0001/B0002/")
    assert telegram.path == f"/bot{BOT}/sendMessage"
    assert slack.headers["Content-Type"] == "application/json"
    assert json.loads(slack.body) == {"text": "airduck shop: run failed\nsilver:orders: boom"}
    assert json.loads(telegram.body) == {"chat_id": -1001234, "text": "airduck shop: run failed\nsilver:orders: boom"}
    # the webhook is shown by its host only, never its token
    assert {d.target for d in deliveries} == {"http://127.0.0.1/…"}
    assert TOKEN not in redact(cfg.webhooks[0].url) and BOT.split(":")[1] not in redact(cfg.webhooks[1].url)


def test_retries_on_500_then_succeeds(receiver):
    receiver.reset([(500, 0), (503, 0)])
    cfg = config(receiver, retries=3, webhooks=[{"url": f"{receiver.url}/hook/{TOKEN}"}])
    (delivery,) = send(cfg, Alert("run_failed", "shop", "t"))
    assert delivery.ok and delivery.attempts == 3 and delivery.status == 200
    assert len(receiver.requests) == 3


def test_gives_up_after_the_retries_and_says_so_without_the_url(receiver, caplog):
    receiver.reset([(500, 0)] * 10)
    cfg = config(receiver, retries=2, webhooks=[{"url": f"{receiver.url}/hook/{TOKEN}"}])
    (delivery,) = send(cfg, Alert("run_failed", "shop", "t"))
    assert not delivery.ok and delivery.attempts == 3 and delivery.status == 500
    assert len(receiver.requests) == 3
    assert "failed after 3 attempts" in caplog.text and TOKEN not in caplog.text


def test_a_404_is_not_retried(receiver):
    receiver.reset([(404, 0)])
    cfg = config(receiver, retries=3, webhooks=[{"url": f"{receiver.url}/hook/{TOKEN}"}])
    (delivery,) = send(cfg, Alert("run_failed", "shop", "t"))
    assert not delivery.ok and delivery.attempts == 1 and delivery.status == 404


def test_timeout_is_bounded(receiver):
    receiver.reset([(200, 2.0), (200, 2.0)])  # slower than the timeout, twice
    cfg = config(receiver, retries=1, timeout=0.3, webhooks=[{"url": f"{receiver.url}/slow/{TOKEN}"}])
    t0 = time.monotonic()
    (delivery,) = send(cfg, Alert("run_failed", "shop", "t"))
    took = time.monotonic() - t0
    assert not delivery.ok and delivery.attempts == 2
    assert "timed out" in (delivery.error or "").lower()
    assert took < 1.5  # 2 attempts x 0.3 s + the backoff, far below the receiver's 2 s delay


def test_unreachable_webhook_never_raises():
    cfg = AlertsConfig.model_validate({"webhooks": [{"url": "http://127.0.0.1:9/x"}], "retries": 1, "backoff": 0})
    (delivery,) = send(cfg, Alert("stale", "shop", "t"))
    assert not delivery.ok and delivery.attempts == 2 and delivery.status is None


def test_alert_sink_gate_failure_and_run_failure(receiver):
    receiver.reset()
    cfg = config(receiver, webhooks=[
        {"url": f"{receiver.url}/gates/{TOKEN}", "format": "slack"},
        {"url": f"{receiver.url}/runs/{TOKEN}", "format": "generic", "on": ["run_failed"]},
        {"url": f"{receiver.url}/stale-only/{TOKEN}", "format": "slack", "on": ["stale"]},
    ])
    sink = AlertSink(cfg, "shop")
    fan = Fanout([sink])
    fan.handle(RunStarted(run_id="r1"))
    fan.handle(StepFailed(run_id="r1", step_id="silver:orders", kind="silver", seconds=0.1,
                          error="expectation not_huge failed on 2 rows", error_type="QualityGateFailed"))
    fan.handle(RunFinished(run_id="r1", status="failed", seconds=1.5, steps_failed=1,
                           error="silver:orders: quality gate"))
    paths = [r.path.split("/")[1] for r in receiver.requests]
    assert paths == ["gates", "runs"]  # the stale-only webhook got nothing
    gate, run = bodies(receiver)
    assert gate["text"].startswith("airduck shop: a quality gate failed\n")
    assert "silver:orders: quality gate failed: expectation not_huge failed on 2 rows" in gate["text"]
    assert run["kind"] == "run_failed" and run["run_id"] == "r1" and run["project"] == "shop"
    assert run["details"]["gates_failed"] == ["silver:orders"]
    # a successful run sends nothing
    receiver.reset()
    fan.handle(RunStarted(run_id="r2"))
    fan.handle(RunFinished(run_id="r2", status="ok", seconds=1.0))
    assert receiver.requests == []
    # the same sink (a long-lived Lakehouse, e.g. the API server's) on a later failed run: only its own steps
    fan.handle(RunStarted(run_id="r3"))
    fan.handle(StepFailed(run_id="r3", step_id="ingest:orders", kind="ingest", seconds=0.1, error="no such file",
                          error_type="SourceFailed"))
    fan.handle(RunFinished(run_id="r3", status="failed", seconds=0.5, steps_failed=1))
    slack, generic = bodies(receiver)
    assert slack["text"].startswith("airduck shop: run failed\n") and "not_huge" not in slack["text"]
    assert generic["details"]["steps_failed"] == ["ingest:orders"] and generic["details"]["gates_failed"] == []


def test_secrets_never_reach_a_body(receiver):
    from airduck.config.secrets import register_dsn, register_secret

    register_dsn("postgresql://u:Pg-Pass-9931@127.0.0.1/db")
    register_secret("S3-SECRET-KEY-abcdef")
    receiver.reset()
    cfg = config(receiver)
    text = (f"could not connect to postgresql://u:Pg-Pass-9931@127.0.0.1/db with key S3-SECRET-KEY-abcdef "
            f"via {cfg.webhooks[0].url}")
    send(cfg, Alert("run_failed", "shop", "failed", [text], details={"error": text}))
    send(cfg.model_copy(update={"webhooks": [Webhook(url=f"{receiver.url}/g/{TOKEN}", format="generic")]}),
         Alert("run_failed", "shop", "failed", [text], details={"error": text}))
    raw = b"".join(r.body for r in receiver.requests).decode()
    assert len(receiver.requests) == 3 and "***" in raw
    for secret in ("Pg-Pass-9931", "S3-SECRET-KEY-abcdef", TOKEN, BOT.split(":")[1]):
        assert secret not in raw


def test_webhook_config_is_validated():
    with pytest.raises(ValidationError, match="chat_id"):
        Webhook(url="https://api.telegram.org/botX/sendMessage", format="telegram")
    with pytest.raises(ValidationError, match="http"):
        Webhook(url="ftp://x")
    assert shown(Webhook(url="https://hooks.slack.com/services/a/b/c", name="team")) == "team"


# -- freshness ---------------------------------------------------------------------------------
def test_durations():
    assert parse_duration("6h") == 21600 and parse_duration("30m") == 1800 and parse_duration("2d") == 172800
    assert parse_duration("1.5h") == 5400 and parse_duration(90) == 90
    for bad in ("6 hours", "h", "-1h", "0s", float("nan"), float("inf"), "99999999999999999999d", 10**12):
        with pytest.raises(ValueError):
            parse_duration(bad)
    with pytest.raises(ValidationError, match="finite"):  # YAML's .nan would make every age "ok"
        FreshnessPolicy.model_validate({"warn_after": float("nan")})
    with pytest.raises(ValidationError, match="warn_after must not be longer"):
        FreshnessPolicy.model_validate({"warn_after": "2d", "error_after": "1d"})
    with pytest.raises(ValidationError, match="give warn_after"):
        FreshnessPolicy.model_validate({})


def test_statuses_change_as_time_passes():
    t0 = datetime(2026, 12, 1, 0, 0, tzinfo=UTC)
    policy = FreshnessPolicy.model_validate({"warn_after": "6h", "error_after": "24h"})
    policies = {"silver.orders": policy, "silver.never": policy}
    changed = {"silver.orders": t0, "bronze.orders": t0}

    def status_at(hours: float) -> dict[str, str]:
        return {a.table: a.status for a in table_ages(changed, changed, policies, t0 + timedelta(hours=hours))}

    assert status_at(1) == {"bronze.orders": "none", "silver.never": "error", "silver.orders": "ok"}
    assert status_at(7)["silver.orders"] == "warn"
    assert status_at(25)["silver.orders"] == "error"
    ages = table_ages(changed, changed, policies, t0 + timedelta(hours=7))
    assert worst(ages) == "error" and worst([a for a in ages if a.table != "silver.never"]) == "warn"
    alert = stale_alert("shop", ages)
    assert alert is not None and alert.kind == "stale"
    assert "silver.orders: warn, last changed 7h ago (error after 1d)" in alert.text()
    assert "silver.never: error, never written (error after 1d)" in alert.text()


def test_ages_are_in_utc_whatever_zone_the_catalog_answers_in():
    """DuckDB returns a TIMESTAMPTZ in the session's (local) zone: the report and `last change (UTC)` are UTC."""
    local = timezone(timedelta(hours=-5))
    changed = {"silver.orders": datetime(2026, 12, 1, 1, 0, tzinfo=local)}
    policy = FreshnessPolicy.model_validate({"warn_after": "6h"})
    (age,) = table_ages(changed, changed, {"silver.orders": policy}, datetime(2026, 12, 1, 12, 30, tzinfo=UTC))
    assert age.age_seconds == 6.5 * 3600 and age.status == "warn"
    assert age.last_change.utcoffset() == timedelta(0) and age.last_change.hour == 6
    assert age.to_dict()["last_change"] == "2026-12-01T06:00:00+00:00"


def test_config_keys_load_validate_and_register_the_webhook_secrets(tmp_path):
    from airduck.errors import ConfigError
    from airduck.project import load_project

    hook = "https://hooks.example.com/services/T9/B9/cfgtoken-77aa99bb?sig=cfgsig-1234abcd"
    (tmp_path / "airduck.yml").write_text(
        "name: shop\n"
        "sources:\n  orders: {type: files, path: 'd/*.csv', freshness: {warn_after: 12h}}\n"
        "silver:\n  orders: {from: orders, freshness: {warn_after: 6h, error_after: 1d}}\n"
        "metrics: {textfile: m/airduck.prom, pushgateway: 'http://ops:pgw-pass-55e1@127.0.0.1:9091'}\n"
        f"alerts:\n  webhooks: [{{url: '{hook}'}}]\n")
    cfg = load_project(tmp_path).config
    assert cfg.sources["orders"].freshness.warn_after == 43200
    assert cfg.silver["orders"].freshness.error_after == 86400
    assert cfg.metrics.textfile == "m/airduck.prom" and cfg.alerts.on == ["run_failed", "gate_failed", "stale"]
    masked = redact(f"posting to {hook}")
    assert "cfgtoken-77aa99bb" not in masked and "cfgsig-1234abcd" not in masked
    assert "pgw-pass-55e1" not in redact("nonnumeric port: 'pgw-pass-55e1@127.0.0.1:9091'")  # the Pushgateway's
    (tmp_path / "airduck.yml").write_text(
        "name: shop\nsilver:\n  orders:\n    from: orders\n    freshness: {warn_after: soon}\n")
    with pytest.raises(ConfigError, match=r"airduck.yml:5: silver.orders.freshness.warn_after: .*not a duration"):
        load_project(tmp_path)
    (tmp_path / "airduck.yml").write_text("name: shop\nmetrics: {textfile: metrics.txt}\n")
    with pytest.raises(ConfigError, match=r"metrics.textfile: .*\.prom"):
        load_project(tmp_path)


def test_a_config_error_never_echoes_a_webhook_or_pushgateway_url(tmp_path):
    """A typo in the scheme must not print the token the URL holds (the value may come from .env)."""
    from airduck.errors import ConfigError
    from airduck.project import load_project

    (tmp_path / ".env").write_text("SLACK=htps://hooks.slack.com/services/T000/B000/envtoken-3f9a1c\n")
    for text, token in (("alerts:\n  webhooks:\n    - url: ${SLACK}\n", "envtoken-3f9a1c"),
                        ("metrics:\n  pushgateway: 'pgw:9091/?token=pgwtoken-77c2'\n", "pgwtoken-77c2")):
        (tmp_path / "airduck.yml").write_text("name: shop\n" + text)
        with pytest.raises(ConfigError) as info:
            load_project(tmp_path)
        message = str(info.value)
        assert "airduck.yml:" in message and "http" in message and "not shown" in message
        assert token not in message


def test_the_freshness_table_shows_every_column_in_80_columns(monkeypatch):
    """A cron mail or CI log is 80 columns wide: no column may be cropped away (`error` is the last one)."""
    import io

    from rich.console import Console

    from airduck.cli import freshness, render

    out = io.StringIO()
    monkeypatch.setattr(render, "console", Console(file=out, width=80, color_system=None))
    freshness._table([["silver.orders__quarantine", "error", "never written", "2026-12-02 05:13:42", "12h", "1d"],
                      ["bronze.a_rather_long_source_name", "ok", "1d 23h", "-", "-", "1w"]])
    text = out.getvalue()
    assert max(len(line) for line in text.splitlines()) <= 80
    header = next(line for line in text.splitlines() if "status" in line)
    assert header.split()[-2:] == ["warn", "error"], text
    assert "1w" in text and "never written" in text and "silver.orders__" in text  # a long name folds
