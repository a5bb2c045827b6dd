"""Bronze `http` sources against a local paged JSON API (ThreadingHTTPServer on 127.0.0.1:0)."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from airduck.bronze import ingest_source
from airduck.errors import SourceError, Transient
from airduck.lake.connection import storage_settings
from airduck.project import load_project
from airduck.storage import open_store
from tests.integration.test_bronze_files import bronze_run, ingest, query

RECORDS = [{"id": i, "name": f"n{i}", "score": i * 1.5} for i in range(1, 8)]  # 7 records
SIZE = 3
TOKEN = "tok-very-secret-123"


class Api:
    """The state of the fake API: every request seen, and failures to inject."""

    def __init__(self) -> None:
        self.requests: list[tuple[int, str]] = []  # (status, path?query)
        self.fail: dict[str, list[int]] = {}  # path?query -> statuses to answer first
        self.lock = threading.Lock()
        self.base = ""


def _handler(api: Api) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:  # keep test output quiet
            pass

        def send(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            with api.lock:
                api.requests.append((status, self.path))
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            with api.lock:
                queue = api.fail.get(self.path)
                status = queue.pop(0) if queue else None
            if status is not None:
                self.send(status, {"error": "try later"}, {"Retry-After": "0"} if status == 429 else None)
                return
            url = urlsplit(self.path)
            q = {k: v[0] for k, v in parse_qs(url.query).items()}
            route = url.path
            if self.headers.get("X-Token") != TOKEN:
                self.send(401, {"error": "no token"})
            elif route == "/page":
                page, size = int(q["page"]), int(q["size"])
                self.send(200, {"results": RECORDS[(page - 1) * size : page * size]})
            elif route == "/offset":
                off, lim = int(q["offset"]), int(q["limit"])
                self.send(200, {"results": RECORDS[off : off + lim]})
            elif route == "/cursor":
                start = int(q.get("after", 0))
                chunk = RECORDS[start : start + SIZE]
                nxt = str(start + SIZE) if start + SIZE < len(RECORDS) else None
                self.send(200, {"results": chunk, "meta": {"next": nxt}})
            elif route == "/link":
                p = int(q.get("p", 1))
                chunk = RECORDS[(p - 1) * SIZE : p * SIZE]
                headers = {"Link": f'</link?p={p + 1}>; rel="next"'} if p * SIZE < len(RECORDS) else {}
                self.send(200, chunk, headers)
            elif route == "/none":
                self.send(200, {"data": {"items": [*RECORDS, 42]}})
            elif route == "/endless":
                page = int(q["page"])
                self.send(200, {"results": [{"id": page * 10 + i} for i in range(2)]})
            elif route == "/notjson":
                self.send(200, b"<html>maintenance</html>")
            else:
                self.send(404, {"error": "no route"})

    return Handler


@pytest.fixture
def api() -> Iterator[Api]:
    state = Api()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    state.base = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def http_source(url: str, **kw: Any) -> dict[str, Any]:
    return {"type": "http", "url": url, "headers": {"X-Token": TOKEN}, "backoff": 0.01, "retries": 3,
            "timeout": 5, **kw}


def test_every_pagination_style_with_retries_delivers_each_record_once(local_projects, api: Api) -> None:
    b = api.base
    sources = {
        "pages": http_source(f"{b}/page", records_path="results",
                             pagination={"style": "page", "size_param": "size", "page_size": SIZE}),
        "offsets": http_source(f"{b}/offset", records_path="results",
                               pagination={"style": "offset", "page_size": SIZE}),
        "cursors": http_source(f"{b}/cursor", records_path="results",
                               pagination={"style": "cursor", "cursor_param": "after", "cursor_path": "meta.next"}),
        "links": http_source(f"{b}/link", pagination={"style": "link"}),
        "single": http_source(f"{b}/none", records_path="data.items"),
    }
    root = local_projects.make({"sources": sources})
    # page 2 answers 429 (Retry-After: 0), then 500, before it succeeds
    api.fail["/page?page=2&size=3"] = [429, 500]
    results = {}
    with bronze_run(root, "run-1") as ctx:
        for name in sources:
            results[name] = ingest_source(ctx, name, ctx.project.config.sources[name])

    assert [s for s, p in api.requests if p == "/page?page=2&size=3"] == [429, 500, 200]
    assert results["pages"].details["retries"] == 2 and results["pages"].details["requests"] == 5
    for name in ("pages", "offsets", "cursors", "links", "single"):
        r = results[name]
        assert r.rows_out == 7 and "mismatch" not in r.details, name
        got = query(root, f"SELECT id, name, score FROM bronze.{name} ORDER BY id")
        assert got == [(x["id"], x["name"], x["score"]) for x in RECORDS], name
    # 3 pages of 3, 3, 1 records (a short page ends the read) for the paged styles
    assert results["pages"].details["pages"] == 3 and results["offsets"].details["pages"] == 3
    assert results["links"].details["pages"] == 3 and results["cursors"].details["pages"] == 3
    rows = query(root, "SELECT _source_file, _landing_key, _row_number, id, _source_version FROM bronze.links ORDER BY id")
    assert [r[:4] for r in rows[2:4]] == [
        (f"{b}/link", "links/run-1/page-00001.json", 3, 3),
        (f"{b}/link?p=2", "links/run-1/page-00002.json", 1, 4),
    ]
    # the landed pages are the bodies as received
    project = load_project(root)
    landing = open_store(project.config.lake.landing, storage_settings(project), base_dir=root)
    assert json.loads(landing.get("offsets/run-1/page-00003.json")) == {"results": RECORDS[6:]}
    import hashlib

    assert rows[0][4] == hashlib.sha256(landing.get("links/run-1/page-00001.json")).hexdigest()
    # a scalar in the record list is rejected with its text, not dropped
    assert results["single"].rows_rejected == 1
    assert query(root, "SELECT _line_number, _raw, _reason FROM bronze.single__rejects") == [
        (8, "42", "not a JSON object (found a number)")]
    # headers (the token) never reach details or data
    assert TOKEN not in json.dumps([r.details for r in results.values()])


def test_max_pages_stops_and_is_reported(local_projects, api: Api) -> None:
    root = local_projects.make({"sources": {
        "endless": http_source(f"{api.base}/endless", records_path="results", max_pages=4,
                               pagination={"style": "page", "size_param": "size", "page_size": 2}),
    }})
    result = ingest(root, "endless", "run-1")
    assert (result.rows_out, result.status, result.details["max_pages_reached"]) == (8, "warn", True)
    assert len(api.requests) == 4
    assert query(root, "SELECT count(DISTINCT _landing_key), max(id) FROM bronze.endless") == [(4, 41)]


def test_non_json_page_is_rejected_whole_and_errors_name_the_source(local_projects, api: Api) -> None:
    root = local_projects.make({"sources": {
        "broken": http_source(f"{api.base}/notjson"),
        "gone": http_source(f"{api.base}/missing"),
        "busy": http_source(f"{api.base}/page?page=1&size=3", retries=2),
        "noauth": {**http_source(f"{api.base}/page?page=1&size=3"), "headers": {}},
    }})
    broken = ingest(root, "broken", "run-1")
    assert (broken.rows_out, broken.rows_rejected, broken.status) == (0, 1, "warn")
    (rej,) = query(root, "SELECT _raw, _reason, _landing_key FROM bronze.broken__rejects")
    assert rej[0] == "<html>maintenance</html>" and rej[1].startswith("the response is not JSON")
    assert rej[2] == "broken/run-1/page-00001.json"

    with pytest.raises(SourceError, match=r"source gone: GET .*/missing returned HTTP 404"):
        ingest(root, "gone", "run-2")
    with pytest.raises(SourceError, match="HTTP 401"):
        ingest(root, "noauth", "run-2")

    api.fail["/page?page=1&size=3"] = [503, 503, 503]
    with pytest.raises(SourceError, match="failed after 3 attempt") as info:
        ingest(root, "busy", "run-3")
    assert isinstance(info.value, Transient)
    assert TOKEN not in str(info.value)


def test_a_query_string_in_the_url_is_kept_and_its_secrets_masked(local_projects, api: Api, caplog) -> None:
    """httpx's `params=` replaced the URL's own query: `url: …/page?size=3&api_key=…` lost both."""
    secret = "urlsecret-7771"
    root = local_projects.make({"sources": {
        "paged": http_source(f"{api.base}/page?size={SIZE}&api_key={secret}", records_path="results",
                             pagination={"style": "page", "page_size": SIZE}),
    }})
    # an Airflow task logs INFO of every logger, httpx's request lines too; importing Airflow (another test in
    # this worker) sets httpx's own level to WARNING, so set it here as a script with INFO logging would
    with caplog.at_level(logging.DEBUG), caplog.at_level(logging.DEBUG, logger="httpx"):
        result = ingest(root, "paged", "run-1")
    logged = [r.getMessage() for r in caplog.records if r.name.startswith(("httpx", "httpcore"))]
    assert any("api_key=***" in m for m in logged), logged
    assert not any(secret in m for m in logged), logged
    assert result.rows_out == 7 and result.details["pages"] == 3
    seen = [p for s, p in api.requests if s == 200]
    assert seen and all(f"size={SIZE}" in p and f"api_key={secret}" in p and "page=" in p for p in seen), seen
    # the key in the URL is a secret: masked in details and in bronze, as a `params` key would be
    assert secret not in json.dumps(result.details)
    files = query(root, "SELECT DISTINCT _source_file FROM bronze.paged")
    assert files and all(secret not in f and "api_key=***" in f for (f,) in files), files
