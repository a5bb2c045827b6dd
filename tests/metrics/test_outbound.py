"""Hostile receivers for the webhooks and the Pushgateway: one that trickles its answer a byte at a time, one
that redirects, one behind basic auth; and clients that send made-up HTTP methods to the API's metrics."""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from prometheus_client.parser import text_string_to_metric_families

from airduck.config.secrets import redact
from airduck.events import Fanout, ListSink, Message
from airduck.events.types import RunFinished, RunStarted
from airduck.metrics.alerts import post, register_webhook
from airduck.metrics.batch import PrometheusSink
from airduck.metrics.config import MetricsConfig, Webhook
from airduck.metrics.http import HttpMetrics, MetricsMiddleware

PASSWORD = "pushGatewayPassw0rd-7f3e"


class Hostile(BaseHTTPRequestHandler):
    seen: list[tuple[str, str, str | None, bytes]] = []
    stop = threading.Event()

    def log_message(self, *args: object) -> None:
        pass

    def _any(self) -> None:
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n) if n else b""
        Hostile.seen.append((self.command, self.path, self.headers.get("Authorization"), body))
        try:
            if self.path.startswith("/redirect"):
                self.send_response(302)
                self.send_header("Location", "/elsewhere")
                self.send_header("Content-Length", "0")
                self.end_headers()
            elif self.path.startswith("/trickle"):
                self.wfile.write(b"HTTP/1.1 200 OK\r\nX-Slow: ")
                for _ in range(1000):  # a header byte every 0.2 s: each read is within the timeout, the whole not
                    if Hostile.stop.wait(0.2):
                        return
                    self.wfile.write(b"x")
                    self.wfile.flush()
            elif self.path.startswith("/auth") and self.headers.get("Authorization") != "Basic " + base64.b64encode(
                    f"airduck:{PASSWORD}".encode()).decode():
                self.send_response(401)
                self.send_header("Content-Length", "0")
                self.end_headers()
            else:
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()
        except (BrokenPipeError, ConnectionResetError):
            pass

    do_GET = do_POST = do_PUT = _any


@pytest.fixture(scope="module")
def hostile() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Hostile)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    Hostile.stop.set()
    server.shutdown()
    server.server_close()


def test_a_trickling_webhook_is_cut_at_the_timeout(hostile):
    t0 = time.monotonic()
    d = post(Webhook(url=f"{hostile}/trickle/T0001/abcdef123456"), {"text": "x"}, retries=1, timeout=0.6,
             backoff=0.05)
    took = time.monotonic() - t0
    assert not d.ok and d.attempts == 2 and "timed out" in (d.error or "")
    assert took < 4, took  # two attempts of 0.6 s (+ the join of the cut connection), not 200 s


def test_a_redirecting_webhook_is_a_failed_delivery_not_a_get(hostile):
    Hostile.seen.clear()
    d = post(Webhook(url=f"{hostile}/redirect/abcdef123456"), {"text": "x"}, retries=3, timeout=2, backoff=0.01)
    assert not d.ok and d.status == 302 and d.attempts == 1 and "redirect" in (d.error or "")
    assert [(m, p) for m, p, _, _ in Hostile.seen] == [("POST", "/redirect/abcdef123456")]  # no GET /elsewhere


def test_a_trickling_pushgateway_does_not_stall_the_run(hostile, tmp_path):
    seen = ListSink()
    fan = Fanout([PrometheusSink(MetricsConfig(pushgateway=f"{hostile}/trickle", timeout=0.6), "shop"), seen])
    t0 = time.monotonic()
    fan.handle(RunStarted(run_id="r1"))
    fan.handle(RunFinished(run_id="r1", status="ok", seconds=1.0))
    assert time.monotonic() - t0 < 3
    assert any("timed out" in m.text for m in seen.of_type(Message) if m.level == "warning")


def test_pushgateway_basic_auth_from_the_url_and_its_password_never_shown(hostile):
    url = f"http://airduck:{PASSWORD}@{hostile.removeprefix('http://')}/auth"
    register_webhook(url)  # what load_project does for metrics.pushgateway
    Hostile.seen.clear()
    seen = ListSink()
    fan = Fanout([PrometheusSink(MetricsConfig(pushgateway=url, timeout=2), "shop"), seen])
    fan.handle(RunStarted(run_id="r1"))
    fan.handle(RunFinished(run_id="r1", status="ok", seconds=1.0))
    assert not [m for m in seen.of_type(Message) if m.level == "warning"]  # pushed: the header was right
    assert [(m, p) for m, p, _, _ in Hostile.seen] == [("PUT", "/auth/metrics/job/airduck/project/shop")]
    # wrong password: one warning, without the password
    bad = url.replace(PASSWORD, PASSWORD + "-wrong")
    register_webhook(bad)
    seen = ListSink()
    fan = Fanout([PrometheusSink(MetricsConfig(pushgateway=bad, timeout=2), "shop"), seen])
    fan.handle(RunStarted(run_id="r2"))
    fan.handle(RunFinished(run_id="r2", status="ok", seconds=1.0))
    warnings = [m.text for m in seen.of_type(Message) if m.level == "warning"]
    assert len(warnings) == 1 and "401" in warnings[0] and PASSWORD not in warnings[0]
    assert PASSWORD not in redact(f"push to {url} failed")


def test_made_up_http_methods_do_not_make_new_series():
    metrics = HttpMetrics()

    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 405, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    middleware = MetricsMiddleware(app, metrics)

    async def noop(message):
        pass

    async def requests():
        for i in range(50):
            await middleware({"type": "http", "method": f"X{i}", "path": "/"}, None, noop)
        await middleware({"type": "http", "method": "GET", "path": "/"}, None, noop)

    # in a thread of its own: a session's Playwright (sync API) keeps an event loop running in this one
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, requests()).result(timeout=60)
    samples = [s for f in text_string_to_metric_families(metrics.render().decode()) for s in f.samples
               if s.name == "airduck_http_requests_total"]
    assert {s.labels["method"] for s in samples} == {"other", "GET"}
    assert sum(s.value for s in samples if s.labels["method"] == "other") == 50


def test_a_url_with_spaces_or_control_characters_is_refused_and_never_echoed(tmp_path):
    """http.client's InvalidURL repeats the path (the token): config refuses such URLs, and a delivery or a push
    that meets one anyway says so without the URL, and never raises."""
    from pydantic import ValidationError

    bad = "http://127.0.0.1:9/services/T0/B0/tok en"
    for make in (lambda: Webhook(url=bad), lambda: MetricsConfig(pushgateway=bad),
                 lambda: Webhook(url="http://127.0.0.1:9/x\r\nX-Evil: 1")):
        with pytest.raises(ValidationError, match="spaces or control characters"):
            make()
    d = post(Webhook.model_construct(url=bad, format="slack"), {"text": "x"}, retries=2, timeout=1, backoff=0)
    assert not d.ok and d.attempts == 1 and "tok en" not in (d.error or "") and "not valid HTTP" in d.error
    seen = ListSink()
    fan = Fanout([PrometheusSink(MetricsConfig.model_construct(pushgateway=bad, textfile=None, job="airduck",
                                                               timeout=1.0), "shop"), seen])
    fan.handle(RunStarted(run_id="r1"))
    fan.handle(RunFinished(run_id="r1", status="ok", seconds=1.0))
    (warning,) = [m.text for m in seen.of_type(Message) if m.level == "warning"]
    assert "tok en" not in warning and "not valid HTTP" in warning
