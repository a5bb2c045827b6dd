"""Outbound HTTP for the sinks (webhooks, Pushgateway): one hard deadline per attempt, no redirects followed.

`urllib`'s `timeout` bounds each socket operation, not the exchange: a server that trickles its answer a byte at
a time, or a handful of redirects, keeps a request going far longer. :func:`request` runs the exchange in a
worker thread and, at the deadline, shuts the connection's socket down (so the worker ends too) and raises
:class:`TimeoutError`. A 3xx answer is an error (:class:`urllib.error.HTTPError`), never followed: a POST that
urllib follows turns into a GET without its body, which would "succeed" without delivering anything.
User info in the URL (``https://user:pass@host/``) becomes a basic ``Authorization`` header (urllib would try to
resolve ``user:pass@host`` as a host name). Proxies from the environment are honoured as by urllib.
"""

from __future__ import annotations

import base64
import http.client
import socket
import threading
import urllib.request
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit


def split_credentials(url: str) -> tuple[str, str | None]:
    """`url` without its user info, and the basic ``Authorization`` header value it made (or None)."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url, None
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = host + (f":{parts.port}" if parts.port else "")
    token = base64.b64encode(f"{unquote(parts.username or '')}:{unquote(parts.password or '')}".encode()).decode()
    return urlunsplit(parts._replace(netloc=netloc)), f"Basic {token}"


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None  # urllib then raises HTTPError with the 3xx code


def _tracked(cls: type, conns: list) -> Callable[..., Any]:
    def make(*args: Any, **kwargs: Any) -> Any:
        conn = cls(*args, **kwargs)
        conns.append(conn)
        return conn

    return make


def _opener(conns: list) -> urllib.request.OpenerDirector:
    class Http(urllib.request.HTTPHandler):
        def http_open(self, req):
            return self.do_open(_tracked(http.client.HTTPConnection, conns), req)

    class Https(urllib.request.HTTPSHandler):
        def https_open(self, req):
            kwargs: dict[str, Any] = {"context": self._context}
            if getattr(self, "_check_hostname", None) is not None:  # Python 3.11
                kwargs["check_hostname"] = self._check_hostname
            return self.do_open(_tracked(http.client.HTTPSConnection, conns), req, **kwargs)

    return urllib.request.build_opener(Http, Https, _NoRedirect)


def request(url: str, method: str, data: bytes | None, headers: Mapping[str, str], timeout: float) -> int:
    """Send one request and return the status code (< 300). Raises :class:`urllib.error.HTTPError` for any other
    status (3xx included), :class:`urllib.error.URLError` / :class:`OSError` for network errors and
    :class:`TimeoutError` when the whole exchange took more than `timeout` seconds."""
    url, auth = split_credentials(url)
    req = urllib.request.Request(url, data=data, method=method, headers=dict(headers))
    if auth is not None:
        req.add_unredirected_header("Authorization", auth)
    conns: list[http.client.HTTPConnection] = []
    opener = _opener(conns)
    result: dict[str, Any] = {}

    def work() -> None:
        try:
            with opener.open(req, timeout=timeout) as response:
                result["status"] = response.status
        except BaseException as exc:  # handed to the caller's thread
            result["error"] = exc

    worker = threading.Thread(target=work, name="airduck-outbound", daemon=True)
    worker.start()
    worker.join(timeout)
    if worker.is_alive():
        for conn in conns:
            sock = conn.sock
            if sock is not None:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
        worker.join(1.0)
        raise TimeoutError(f"timed out: no complete answer within {timeout:g}s")
    if "error" in result:
        raise result["error"]
    return int(result["status"])


def pushgateway_handler(url: str, method: str, timeout: float | None, headers: list[tuple[str, str]],
                        data: bytes) -> Callable[[], None]:
    """A `prometheus_client` push handler over :func:`request` (deadline, no redirects, basic auth from the URL)."""

    def handle() -> None:
        request(url, method, data, dict(headers), timeout or 30.0)

    return handle
