"""OpenLineage delivery and failures on small projects: a failing run, a backend that is down, answers 500 or is
slow (the run never fails or stalls; events stay in the file; `airduck lineage send` delivers them later), and a
run on PostgreSQL + S3 (dataset names, no secret in any emitted byte)."""

from __future__ import annotations

import time
from pathlib import Path

import psycopg
import pytest
import yaml
from typer.testing import CliRunner

from airduck.errors import RunFailed
from airduck.lakehouse import Lakehouse
from tests.integration.test_pipeline_runs import orders_config, write_orders
from tests.lineage.support import check_pairs, free_port, read_events, receiver, validate


def with_lineage(root: Path, lineage: dict) -> None:
    config = yaml.safe_load((root / "airduck.yml").read_text())
    config["lineage"] = lineage
    (root / "airduck.yml").write_text(yaml.safe_dump(config, sort_keys=False))


def send(root: Path):
    from airduck.cli.app import app

    return CliRunner().invoke(app, ["-p", str(root), "lineage", "send"])


def test_a_failing_run_emits_fail_with_the_error(local_projects):
    root = local_projects.make({**orders_config(on_fail="fail"), "lineage": {}})
    write_orders(root, "day1.csv", 1, 50, negative_every=10)
    with Lakehouse.open(root) as lh, pytest.raises(RunFailed):
        lh.run()
    events = read_events(root)
    for e in events:
        validate(e)
    check_pairs(events)
    failed = next(e for e in events if e["job"]["name"] == "silver:orders" and e["eventType"] == "FAIL")
    assert "amount_not_negative" in failed["run"]["facets"]["errorMessage"]["message"]
    assert failed["run"]["facets"]["errorMessage"]["programmingLanguage"] == "python"
    # the failed gate's assertions are there too, and what the step reads and writes
    source = failed["inputs"][0]
    assertions = source["inputFacets"]["dataQualityAssertions"]["assertions"]
    assert any(a["assertion"] == "expectation:amount_not_negative" and not a["success"] for a in assertions)
    assert {o["name"] for o in failed["outputs"]} == {"silver.orders", "silver.orders__quarantine"}
    run = events[-1]
    assert run["job"]["name"] == "run" and run["eventType"] == "FAIL"
    assert "amount_not_negative" in run["run"]["facets"]["errorMessage"]["message"]
    assert [e["eventType"] for e in events if e["job"]["name"] == "ingest:orders"] == ["START", "COMPLETE"]


def test_a_backend_that_is_down_or_answers_500_never_fails_the_run_and_send_delivers_later(local_projects):
    port = free_port()  # nothing listens there
    root = local_projects.make({**orders_config(), "lineage": {"http": {"url": f"http://127.0.0.1:{port}",
                                                                        "timeout": 2}}})
    write_orders(root, "day1.csv", 1, 50)
    with Lakehouse.open(root) as lh:
        t0 = time.monotonic()
        assert lh.run().ok
        assert time.monotonic() - t0 < 60
        warnings = lh._lineage_sink().emitter.warnings
    assert len(warnings) == 1 and "lineage send" in warnings[0] and f"127.0.0.1:{port}" in warnings[0]
    kept = read_events(root)
    assert len(kept) == 2 + 2 * 2
    with receiver() as r:
        with_lineage(root, {"http": {"url": r.url, "timeout": 2}})
        r.status = 500
        out = send(root)
        assert out.exit_code == 1 and r.events == []
        # a second run while the backend answers 500: still fine, its events are kept too
        write_orders(root, "day2.csv", 100, 20)
        with Lakehouse.open(root) as lh:
            assert lh.run().ok
            assert len(lh._lineage_sink().emitter.warnings) == 1
        kept = read_events(root)
        assert len(kept) == 2 * (2 + 2 * 2)
        r.status = 201
        out = send(root)
        assert out.exit_code == 0, out.output
        assert r.events == kept
        again = send(root)  # nothing twice
        assert again.exit_code == 0 and len(r.events) == len(kept)
    for e in kept:
        validate(e)


def test_a_slow_backend_is_given_up_after_its_timeout(local_projects):
    with receiver() as r:
        r.delay = 3.0
        root = local_projects.make({**orders_config(), "lineage": {"http": {"url": r.url, "timeout": 0.5}}})
        write_orders(root, "day1.csv", 1, 20)
        with Lakehouse.open(root) as lh:
            t0 = time.monotonic()
            assert lh.run().ok
            took = time.monotonic() - t0
            assert len(lh._lineage_sink().emitter.warnings) == 1
        assert took < 45
        assert len(read_events(root)) == 6


def test_openlineage_url_alone_turns_emission_on_and_disabled_turns_it_off(local_projects, monkeypatch):
    with receiver() as r:
        root = local_projects.make(orders_config())
        write_orders(root, "day1.csv", 1, 20)
        monkeypatch.setenv("OPENLINEAGE_URL", r.url)
        monkeypatch.setenv("OPENLINEAGE_API_KEY", "ol-env-api-key-0a9b8c7d")
        with Lakehouse.open(root) as lh:
            assert lh.run().ok
        assert len(r.events) == 6 and r.headers[0]["Authorization"] == "Bearer ol-env-api-key-0a9b8c7d"
        assert b"ol-env-api-key" not in (root / ".airduck" / "lineage" / "events.jsonl").read_bytes()
        monkeypatch.setenv("OPENLINEAGE_DISABLED", "true")
        write_orders(root, "day2.csv", 100, 20)
        with Lakehouse.open(root) as lh:
            assert lh.run().ok
        assert len(r.events) == 6
        monkeypatch.delenv("OPENLINEAGE_DISABLED")
        monkeypatch.delenv("OPENLINEAGE_URL")
        (root / "openlineage.yml").write_text(f"transport:\n  type: http\n  url: {r.url}\n  endpoint: api/v1/lineage\n")
        write_orders(root, "day3.csv", 200, 20)
        with Lakehouse.open(root) as lh:
            assert lh.run().ok
        assert len(r.events) == 12


def test_a_run_on_postgresql_and_s3_names_datasets_and_leaks_no_secret(pg_s3_projects, pg_database):
    password = "pg-Secret-pass-91b"
    source_db, catalog_db = pg_database(), pg_database()
    with psycopg.connect(source_db, autocommit=True) as conn:
        conn.execute("CREATE TABLE companies (company_id bigint, name text, updated_at timestamp)")
        conn.execute("INSERT INTO companies SELECT i, ' Company ' || i, now() FROM generate_series(1, 40) i")

    def with_password(dsn: str) -> str:
        return dsn.replace("postgres@", f"postgres:{password}@", 1)

    with receiver() as r:
        root = pg_s3_projects.make({
            "lake": {"catalog": with_password(catalog_db)},
            "sources": {"companies": {"type": "postgres", "dsn": with_password(source_db), "table": "companies"}},
            "silver": {"companies": {"from": "companies", "key": ["company_id"], "mode": "merge", "columns": {
                "company_id": {"type": "BIGINT", "required": True}, "company_name": {"from": "name",
                                                                                     "normalize": ["trim"]},
                "name_length": {"type": "INTEGER", "expr": "length(trim(name))"}}}},
            "lineage": {"http": {"url": r.url, "api_key": "${LINEAGE_KEY}"}},
        })
        env = (root / ".env").read_text()
        (root / ".env").write_text(env + "LINEAGE_KEY=pg-s3-lineage-key-55e1\n")
        secrets = [password, "pg-s3-lineage-key-55e1"] + [line.split("=", 1)[1] for line in env.splitlines()
                                                          if line.startswith(("AWS_SECRET_ACCESS_KEY", "AWS_ACCESS_KEY_ID"))]
        with Lakehouse.open(root) as lh:
            assert lh.run().ok
        events = read_events(root)
        assert r.events == events
    for e in events:
        validate(e)
    check_pairs(events)
    ingest = next(e for e in events if e["job"]["name"] == "ingest:companies" and e["eventType"] == "COMPLETE")
    db = source_db.rsplit("/", 1)[1]
    assert (ingest["inputs"][0]["namespace"], ingest["inputs"][0]["name"]) == ("postgres://127.0.0.1:5432",
                                                                               f"{db}.public.companies")
    assert ingest["outputs"][0]["namespace"] == f"ducklake://127.0.0.1:5432/{catalog_db.rsplit('/', 1)[1]}"
    silver = next(e for e in events if e["job"]["name"] == "silver:companies" and e["eventType"] == "COMPLETE")
    fields = silver["outputs"][0]["facets"]["columnLineage"]["fields"]
    assert [(f["name"], f["field"]) for f in fields["company_name"]["inputFields"]] == [("bronze.companies", "name")]
    assert [f["field"] for f in fields["name_length"]["inputFields"]] == ["name"]
    assert fields["name_length"]["transformationDescription"] == "expression: length(trim(name))"
    emitted = (root / ".airduck" / "lineage" / "events.jsonl").read_bytes() + b"".join(r.bodies)
    assert len(secrets) == 4
    for secret in secrets:
        assert secret.encode() not in emitted, secret


def test_an_http_source_is_named_by_its_url_without_tokens(local_projects):
    import json as _json
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Api(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = _json.dumps([{"id": i, "name": f"n{i}"} for i in range(5)]).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Api)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        port = server.server_port
        root = local_projects.make({
            "sources": {"items": {"type": "http", "url": f"http://127.0.0.1:{port}/v1/items?api_key=url-key-9d8e7f6a",
                                  "params": {"token": "param-token-1a2b3c4d"},
                                  "headers": {"Authorization": "Bearer header-token-5e6f7a8b"}}},
            "lineage": {}})
        with Lakehouse.open(root) as lh:
            assert lh.run().ok
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
    events = read_events(root)
    for e in events:
        validate(e)
    ingest = next(e for e in events if e["job"]["name"] == "ingest:items" and e["eventType"] == "COMPLETE")
    assert (ingest["inputs"][0]["namespace"], ingest["inputs"][0]["name"]) == (f"http://127.0.0.1:{port}", "/v1/items")
    emitted = (root / ".airduck" / "lineage" / "events.jsonl").read_bytes()
    for secret in ("url-key-9d8e7f6a", "param-token-1a2b3c4d", "header-token-5e6f7a8b"):
        assert secret.encode() not in emitted
