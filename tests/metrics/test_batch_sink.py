"""The batch run sink without a lake: a Pushgateway that is down or slow never fails a run (one warning, bounded
time) and the textfile is still written; the textfile is replaced atomically and parses."""

from __future__ import annotations

import time

from prometheus_client.parser import text_string_to_metric_families

from airduck.events import Fanout, ListSink, Message
from airduck.events.types import RunFinished, RunStarted, StepFinished
from airduck.metrics.batch import PrometheusSink
from airduck.metrics.config import MetricsConfig


def run_events(fan: Fanout, run_id: str = "r1", status: str = "ok") -> None:
    fan.handle(RunStarted(run_id=run_id))
    fan.handle(StepFinished(run_id=run_id, step_id="silver:orders", kind="silver", status="ok", seconds=0.5,
                            rows_in=10, rows_out=8, rows_quarantined=2))
    fan.handle(RunFinished(run_id=run_id, status=status, seconds=1.25, steps_ok=1))


def values(text: str) -> dict[tuple, float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for f in text_string_to_metric_families(text) for s in f.samples}


def test_pushgateway_down_never_fails_the_run_and_the_textfile_is_written(tmp_path):
    cfg = MetricsConfig(pushgateway="http://127.0.0.1:9", textfile="out/airduck.prom", timeout=2)
    seen = ListSink()
    fan = Fanout([PrometheusSink(cfg, "shop", root=tmp_path), seen])
    run_events(fan)  # does not raise
    warnings = [m.text for m in seen.of_type(Message) if m.level == "warning"]
    assert len(warnings) == 1 and "pushgateway" in warnings[0] and "PrometheusSink" in warnings[0]
    got = values((tmp_path / "out" / "airduck.prom").read_text())
    assert got[("airduck_run_duration_seconds", ())] == 1.25
    assert got[("airduck_step_rows_quarantined", (("kind", "silver"), ("step", "silver:orders")))] == 2
    assert got[("airduck_run_outcome", (("status", "ok"),))] == 1


def test_a_slow_pushgateway_is_bounded_by_the_timeout(tmp_path, pushgateway):
    pushgateway.reset([(200, 3.0)])
    cfg = MetricsConfig(pushgateway=pushgateway.url, timeout=0.5)
    seen = ListSink()
    fan = Fanout([PrometheusSink(cfg, "shop"), seen])
    t0 = time.monotonic()
    run_events(fan)
    assert time.monotonic() - t0 < 2.5
    assert any("timed out" in m.text.lower() for m in seen.of_type(Message))


def test_each_run_replaces_the_textfile_and_the_push(tmp_path, pushgateway):
    pushgateway.reset()
    cfg = MetricsConfig(pushgateway=pushgateway.url, textfile=str(tmp_path / "a.prom"), job="nightly")
    sink = PrometheusSink(cfg, "shop")
    fan = Fanout([sink])
    run_events(fan, "r1", "ok")
    run_events(fan, "r2", "failed")
    assert [r.method for r in pushgateway.requests] == ["PUT", "PUT"]  # PUT replaces the group
    assert {r.path for r in pushgateway.requests} == {"/metrics/job/nightly/project/shop"}
    text = (tmp_path / "a.prom").read_text()
    assert values(text)[("airduck_run_outcome", (("status", "failed"),))] == 1
    assert values(text)[("airduck_run_outcome", (("status", "ok"),))] == 0
    assert "r1" not in text and "r2" not in text  # run ids are never labels
    # a run without steps: no step metrics left over from the runs before
    fan.handle(RunStarted(run_id="r3"))
    fan.handle(RunFinished(run_id="r3", status="failed", seconds=0.1))
    assert "airduck_step_duration_seconds{" not in (tmp_path / "a.prom").read_text()
    assert not list(tmp_path.glob("*.tmp*"))
