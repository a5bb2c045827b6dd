"""HTTP receivers for the metrics and alert tests: a Pushgateway-compatible one and a webhook, on loopback."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """Records every request. `script`: (status, delay seconds) answered in order, then `default`."""

    server: ThreadingHTTPServer
    requests: list[Request] = field(default_factory=list)
    script: list[tuple[int, float]] = field(default_factory=list)
    default: tuple[int, float] = (200, 0.0)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def reset(self, script: list[tuple[int, float]] | None = None) -> None:
        with self.lock:
            self.requests.clear()
            self.script = list(script or [])

    def next_answer(self) -> tuple[int, float]:
        with self.lock:
            return self.script.pop(0) if self.script else self.default


def _handler(receiver_box: list[Receiver]):
    class Handler(BaseHTTPRequestHandler):
        def _any(self) -> None:
            receiver = receiver_box[0]
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            with receiver.lock:
                receiver.requests.append(Request(self.command, self.path, dict(self.headers), body))
            status, delay = receiver.next_answer()
            if delay:
                time.sleep(delay)
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")
            except (BrokenPipeError, ConnectionResetError):
                pass

        do_POST = do_PUT = do_GET = do_DELETE = _any

        def log_message(self, *args: object) -> None:  # quiet
            pass

    return Handler


def start_receiver() -> Receiver:
    box: list[Receiver] = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(box))
    server.daemon_threads = True
    receiver = Receiver(server)
    box.append(receiver)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    return receiver


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    r = start_receiver()
    yield r
    r.server.shutdown()
    r.server.server_close()


@pytest.fixture(scope="module")
def pushgateway() -> Iterator[Receiver]:
    """Answers like a Pushgateway: PUT/POST /metrics/job/<job>[/<label>/<value>...] -> 200."""
    r = start_receiver()
    yield r
    r.server.shutdown()
    r.server.server_close()
