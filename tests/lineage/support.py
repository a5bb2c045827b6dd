"""Test helpers: the vendored OpenLineage schemas as a validator, and a Marquez-like HTTP receiver."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator
from referencing import Registry, Resource

SCHEMAS = Path(__file__).parent / "schemas"


def _registry() -> tuple[Registry, dict[str, Any]]:
    resources = []
    docs = {}
    for path in [SCHEMAS / "OpenLineage.json", *sorted((SCHEMAS / "facets").glob("*.json"))]:
        doc = json.loads(path.read_text())
        docs[doc["$id"]] = doc
        resources.append((doc["$id"], Resource.from_contents(doc)))
    return Registry().with_resources(resources), docs


REGISTRY, DOCS = _registry()
EVENT = Draft202012Validator({"$ref": "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent"},
                             registry=REGISTRY)


def facets_of(event: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(where, facet) of every facet in an event."""
    yield from (("run." + k, v) for k, v in (event["run"].get("facets") or {}).items())
    yield from (("job." + k, v) for k, v in (event["job"].get("facets") or {}).items())
    for side in ("inputs", "outputs"):
        for d in event.get(side) or []:
            for group in ("facets", "inputFacets", "outputFacets"):
                for k, v in (d.get(group) or {}).items():
                    yield f"{side}.{d['name']}.{group}.{k}", v


def validate(event: dict[str, Any]) -> None:
    """Raise if `event` does not validate against OpenLineage.json, or any facet against its own schema."""
    EVENT.validate(event)
    for where, facet in facets_of(event):
        url = facet["_schemaURL"]
        base = url.split("#", 1)[0]
        assert base in DOCS, f"{where}: facet schema {base} is not vendored in tests/lineage/schemas"
        Draft202012Validator({"$ref": url}, registry=REGISTRY).validate(facet)


class Receiver:
    """Like Marquez's `POST /api/v1/lineage`: keeps every event body; answers `status` (201 by default)."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []
        self.headers: list[dict[str, str]] = []
        self.status = 201
        self.delay = 0.0
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if receiver.delay:
                    threading.Event().wait(receiver.delay)
                ok = self.path == "/api/v1/lineage" and receiver.status < 300
                if ok:
                    json.loads(body)
                    with receiver._lock:
                        receiver.bodies.append(body)
                        receiver.headers.append(dict(self.headers))
                self.send_response(receiver.status if self.path == "/api/v1/lineage" else 404)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"

    @property
    def events(self) -> list[dict[str, Any]]:
        with self._lock:
            return [json.loads(b) for b in self.bodies]


@contextmanager
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    t = threading.Thread(target=r.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    t.start()
    try:
        yield r
    finally:
        r.server.shutdown()
        r.server.server_close()
        t.join(5)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def read_events(root: Path) -> list[dict[str, Any]]:
    f = root / ".airduck" / "lineage" / "events.jsonl"
    return [json.loads(line) for line in f.read_text().splitlines() if line.strip()]


def check_pairs(events: list[dict[str, Any]]) -> None:
    """Every run id has exactly one START and then one terminal event (COMPLETE, FAIL or ABORT)."""
    by_run: dict[str, list[str]] = {}
    for e in events:
        by_run.setdefault(e["run"]["runId"], []).append(e["eventType"])
    for run_id, types in by_run.items():
        assert types[0] == "START" and len(types) == 2 and types[1] in ("COMPLETE", "FAIL", "ABORT"), (run_id, types)
