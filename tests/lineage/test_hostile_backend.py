"""A hostile OpenLineage backend: redirects (the API key must not follow them), tokens in the backend URL (never
in a warning, a target, the `delivered` file or a log line), and one that accepts and never answers (bounded)."""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from airduck.lineage.config import LineageConfig, resolve
from airduck.lineage.emit import Emitter, send_kept

API_KEY = "ol-hostile-api-key-7c1d2e3f"
URL_TOKEN = "url-token-9a8b7c6d5e"


@contextmanager
def server(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    srv = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    t = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    t.start()
    try:
        yield f"http://127.0.0.1:{srv.server_port}"
    finally:
        srv.shutdown()
        srv.server_close()
        t.join(5)


def _settings(tmp_path: Path, url: str, timeout: float = 2.0):
    cfg = LineageConfig.model_validate({"http": {"url": url, "api_key": API_KEY, "timeout": timeout}})
    return resolve(cfg, "p", tmp_path, env={})


def test_a_redirecting_backend_is_a_failure_and_the_api_key_does_not_follow(tmp_path, caplog):
    seen: list[dict[str, Any]] = []

    class Elsewhere(BaseHTTPRequestHandler):
        def _any(self) -> None:
            seen.append({"method": self.command, **dict(self.headers)})
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        do_GET = do_POST = _any

        def log_message(self, *args: Any) -> None:
            pass

    with server(Elsewhere) as other:
        for code in (302, 307):
            class Redirect(BaseHTTPRequestHandler):
                status = code

                def do_POST(self) -> None:
                    self.rfile.read(int(self.headers.get("Content-Length") or 0))
                    self.send_response(self.status)
                    self.send_header("Location", other + "/steal")
                    self.send_header("Content-Length", "0")
                    self.end_headers()

                def log_message(self, *args: Any) -> None:
                    pass

            with server(Redirect) as url:
                settings = _settings(tmp_path / str(code), url)
                em = Emitter(settings, drain_seconds=5)
                with caplog.at_level(logging.WARNING, logger="airduck"):
                    em.emit('{"eventType": "START"}')
                    em.close()
                assert len(em.warnings) == 1 and "HTTPError" in em.warnings[0], em.warnings
                assert not em.delivered.read(), "a redirect must not count as delivered"
                sent = send_kept(settings, deadline_seconds=10)
                assert sent["sent"] == 0 and sent["pending"] == 1, sent
    assert seen == [], f"the redirect was followed: {seen}"


def test_tokens_in_the_backend_url_are_never_printed_or_noted(tmp_path, caplog):
    class Fail(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            self.send_response(500)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    class Ok(Fail):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            # the endpoint is joined to the URL's path, and the URL's query (the backend's token) is sent
            self.send_response(201 if self.path == f"/api/v1/lineage?api_key={URL_TOKEN}" else 404)
            self.send_header("Content-Length", "0")
            self.end_headers()

    with server(Fail) as bad, server(Ok) as good:
        texts: list[str] = []
        for base in (bad, good):
            url = base + f"/?api_key={URL_TOKEN}"
            settings = _settings(tmp_path, url)
            em = Emitter(settings, drain_seconds=5)
            with caplog.at_level(logging.WARNING, logger="airduck"):
                em.emit('{"eventType": "START"}')
                em.close()
            texts += [*em.warnings, *settings.targets, str(send_kept(settings, deadline_seconds=10))]
        assert any("500" in t for t in texts), texts  # the failure is reported ...
        delivered = (tmp_path / ".airduck" / "lineage" / "events.jsonl.delivered").read_text()
        assert delivered.strip(), "the good backend's delivery is noted"  # ... and the good one delivered
        for text in [*texts, delivered, caplog.text]:
            assert URL_TOKEN not in text, text


def test_a_backend_that_accepts_and_never_answers_is_bounded(tmp_path):
    hung = socket.socket()
    hung.bind(("127.0.0.1", 0))
    hung.listen(16)  # accepts connections (the kernel's backlog) and never answers a byte
    try:
        settings = _settings(tmp_path, f"http://127.0.0.1:{hung.getsockname()[1]}", timeout=1.0)
        em = Emitter(settings, drain_seconds=5)
        t0 = time.monotonic()
        for _ in range(20):
            em.emit('{"eventType": "START"}')
        em.close()
        run = time.monotonic() - t0
        t0 = time.monotonic()
        sent = send_kept(settings, deadline_seconds=10)
        send = time.monotonic() - t0
    finally:
        hung.close()
    assert run < 3.5, f"20 events to a hung backend took {run:.1f}s (timeout 1s, then given up)"
    assert send < 3.5 and sent["pending"] == 20 and sent["sent"] == 0, (send, sent)
    assert len(em.warnings) == 1 and "timed out" in em.warnings[0], em.warnings


def test_a_backend_that_answers_a_byte_at_a_time_is_bounded(tmp_path):
    stop = threading.Event()

    class Drip(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            self.wfile.write(b"HTTP/1.1 201 Created\r\n")
            for _ in range(100):  # one header byte every 0.3 s: each read is within the timeout, the whole is not
                if stop.wait(0.3):
                    return
                try:
                    self.wfile.write(b"X")
                    self.wfile.flush()
                except OSError:
                    return

        def log_message(self, *args: Any) -> None:
            pass

    with server(Drip) as url:
        settings = _settings(tmp_path, url, timeout=1.0)
        em = Emitter(settings, drain_seconds=30)
        t0 = time.monotonic()
        for _ in range(5):
            em.emit('{"eventType": "START"}')
        em.close()
        run = time.monotonic() - t0
        t0 = time.monotonic()
        sent = send_kept(settings, deadline_seconds=60)
        send = time.monotonic() - t0
        stop.set()
    assert run < 6, f"a dripping backend held the run {run:.1f}s (timeout 1s: at most 3s per request)"
    assert send < 6 and sent["pending"] == 5 and sent["sent"] == 0, (send, sent)
    assert len(em.warnings) == 1 and "TimeoutError" in em.warnings[0], em.warnings
