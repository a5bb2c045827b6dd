"""The CLI as a user drives it: init, doctor, setup, listing commands with --json, exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.seaweed import boto3_client

AIRDUCK = [sys.executable, "-m", "airduck"]


def run(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRDUCK_", "AWS_"))}
    full_env.update(env or {})
    full_env["COLUMNS"] = "200"
    return subprocess.run([*AIRDUCK, *args], capture_output=True, text=True, cwd=cwd, env=full_env, timeout=180)


def js(proc: subprocess.CompletedProcess):
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "shop"
    proc = run("init", str(root))
    assert proc.returncode == 0, proc.stderr
    return root


def test_init_creates_a_commented_valid_project(project):
    text = (project / "airduck.yml").read_text()
    assert text.startswith("# airduck project file") and "name: shop" in text
    assert run("init", str(project)).returncode == 1  # refuses to overwrite
    assert run("init", str(project), "--force").returncode == 0


def test_doctor_checks_everything(project):
    text = (project / "airduck.yml").read_text()  # a fresh project has nothing to run yet: add a source
    (project / "airduck.yml").write_text(text.replace("sources: {}", "sources:\n  orders: {type: files, path: 'o/*.csv'}"))
    proc = run("doctor", cwd=project)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for name in ("config", "extensions", "catalog", "storage (data)", "storage (landing)"):
        assert f"ok   {name}" in proc.stdout
    checks = js(run("-p", str(project), "doctor", "--json"))
    assert {c["name"] for c in checks} >= {"config", "catalog"} and all(c["ok"] for c in checks)


def test_listing_commands_history_and_json(project):
    from airduck.lake.commit import write
    from airduck.lakehouse import Lakehouse

    with Lakehouse.open(project) as lh:
        for i in range(3):
            with write(lh.con, f"load {i}"):
                if i == 0:
                    lh.con.execute("CREATE TABLE bronze.events (id BIGINT, kind VARCHAR)")
                lh.con.execute("INSERT INTO bronze.events SELECT range + ?, 'k' || (range % 3) FROM range(100)",
                               [i * 100])
    tables = js(run("-p", str(project), "tables", "--json"))
    assert {"schema": "bronze", "name": "events", "table": "bronze.events"} in tables
    d = js(run("-p", str(project), "describe", "bronze.events", "--json"))
    assert d["row_count"] == 300 and [c["name"] for c in d["columns"]] == ["id", "kind"]
    snaps = js(run("-p", str(project), "snapshots", "bronze.events", "--json"))
    assert [s["message"] for s in snaps] == ["load 0", "load 1", "load 2"]
    first = snaps[0]["snapshot_id"]
    rows = js(run("-p", str(project), "head", "bronze.events", "--at", str(first), "-n", "500", "--json"))
    assert len(rows) == 100
    tag = js(run("-p", str(project), "tag", "v1", "--snapshot", str(first), "--json"))
    assert tag["snapshot_id"] == first
    assert len(js(run("-p", str(project), "head", "bronze.events", "--at", "v1", "-n", "500", "--json"))) == 100
    rb = js(run("-p", str(project), "rollback", "bronze.events", "--to", "v1", "--json"))
    assert rb["snapshot_id"] > snaps[-1]["snapshot_id"]
    assert js(run("-p", str(project), "describe", "bronze.events", "--json"))["row_count"] == 100
    rows = js(run("-p", str(project), "sql", "SELECT count(*) AS n FROM bronze.events", "--json"))
    assert rows == [{"n": 100}]
    plan = js(run("-p", str(project), "maintain", "--dry-run", "--json"))
    assert [s["name"] for s in plan] == ["flush", "merge", "rewrite", "expire", "cleanup"]
    assert all(s["done"] is None for s in plan)
    # human output renders too
    proc = run("-p", str(project), "snapshots")
    assert proc.returncode == 0 and "load 1" in proc.stdout


def test_project_flag_after_the_subcommand_and_demo_generate_refuses_other_projects(project, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    assert js(run("tables", "-p", str(project), "--json", cwd=elsewhere)) == []
    assert js(run("tables", f"--project={project}", "--json", cwd=elsewhere)) == []
    proc = run("runs", "show", "nope", "--project", str(project), cwd=elsewhere)
    assert proc.returncode == 1 and "no run" in proc.stderr.lower(), proc.stderr  # found the project, not a usage error
    proc = run("demo", "generate", "-p", str(project), cwd=elsewhere)
    assert proc.returncode == 1 and "not a demo project" in proc.stderr, proc.stderr
    assert not (project / "data").exists()  # nothing written


def test_exit_codes(project):
    assert run("-p", str(project), "describe", "bronze.nope").returncode == 1
    proc = run("-p", str(project), "sql", "DROP TABLE bronze.x")
    assert proc.returncode == 1 and proc.stderr.startswith("error:") and "Traceback" not in proc.stderr
    assert run("-p", str(project), "no-such-command").returncode == 2
    assert run("-p", str(project), "head").returncode == 2  # missing argument
    assert run("--version").stdout.startswith("airduck ")


def test_every_command_has_help():
    for cmd in ("init", "doctor", "setup", "tables", "describe", "head", "sql", "snapshots", "rollback", "tag",
                "maintain", "run", "runs"):
        proc = run(cmd, "--help")
        assert proc.returncode == 0 and "Usage" in proc.stdout, cmd
        if cmd == "run":  # a rebuild from bronze and a re-read of the sources are two different options
            assert "--full-refresh" in proc.stdout and "--reingest" in proc.stdout


def test_setup_on_s3_turns_on_versioning_and_lifecycle(pg_s3_projects, s3_server):
    root = pg_s3_projects.make({"lake": {"noncurrent_version_days": 9},
                                "sources": {"orders": {"type": "files", "path": "o/*.csv"}}})
    steps = js(run("-p", str(root), "setup", "--json"))
    assert steps and not [s for s in steps if s["status"] == "failed"]
    client = boto3_client(s3_server)
    assert client.get_bucket_versioning(Bucket=s3_server.bucket).get("Status") == "Enabled"
    rules = client.get_bucket_lifecycle_configuration(Bucket=s3_server.bucket)["Rules"]
    assert any(r.get("NoncurrentVersionExpiration", {}).get("NoncurrentDays") == 9 for r in rules)
    # idempotent
    again = js(run("-p", str(root), "setup", "--json"))
    assert [s["status"] for s in again if s["status"] in ("created", "failed")] == []
    proc = run("-p", str(root), "doctor")
    assert proc.returncode == 0, proc.stdout


def test_local_setup_reports_unsupported_versioning(project):
    steps = js(run("-p", str(project), "setup", "--json"))
    assert any(s["status"] == "unsupported" and "version" in s["action"].lower() for s in steps), steps


def test_cli_usage_errors_and_validation(project):
    assert run("-p", str(project), "maintain", "--step", "bogus").returncode == 2
    assert run("-p", str(project), "tag", "--delete").returncode == 2
    proc = run("-p", str(project), "tag", "7")
    assert proc.returncode == 1 and "must start with a letter" in proc.stderr
    assert run("-p", str(project), "runs", "show", "nope").returncode == 1


def test_tables_and_describe_say_what_the_lake_holds(local_projects):
    """Inlined rows are named as such, gold_stage is airduck's own, required silver columns are not nullable."""
    from airduck.lake.commit import write
    from airduck.lakehouse import Lakehouse

    root = local_projects.make({
        "sources": {"orders": {"type": "files", "path": "data/*.csv"}},
        "silver": {"orders": {"from": "orders", "columns": {"id": {"type": "BIGINT", "required": True},
                                                            "v": {"type": "VARCHAR"}}}},
    })
    (root / "data").mkdir()
    (root / "data" / "a.csv").write_text("id,v\n1,a\n,b\n3,c\n")
    with Lakehouse.open(root) as lh:
        assert lh.run().ok
        with write(lh.con, "a staged model"):
            lh.con.execute("CREATE SCHEMA IF NOT EXISTS gold_stage")
            lh.con.execute("CREATE TABLE gold_stage.m AS SELECT 1 AS x")
    d = js(run("-p", str(root), "describe", "silver.orders", "--json"))
    assert {c["name"]: c["nullable"] for c in d["columns"]}["id"] is False
    assert {c["name"]: c["nullable"] for c in d["columns"]}["v"] is True
    assert d["row_count"] == 2 and d["file_count"] == 0 and d["inlined_rows"] == 2
    proc = run("-p", str(root), "describe", "silver.orders")
    assert proc.returncode == 0 and "inlined in the catalog" in proc.stdout
    assert [line.split("│")[3].strip() for line in proc.stdout.splitlines() if "│ id " in line] == ["no"]
    listed = {t["table"] for t in js(run("-p", str(root), "tables", "--json"))}
    assert "silver.orders" in listed and "gold_stage.m" not in listed
    assert "gold_stage.m" in {t["table"] for t in js(run("-p", str(root), "tables", "--all", "--json"))}
    proc = run("-p", str(root), "tables")
    row = next(line for line in proc.stdout.splitlines() if "│ orders " in line and "silver" in line)
    assert [c.strip() for c in row.split("│")[3:6]] == ["2", "inlined", "in catalog"]
    assert "gold_stage" not in proc.stdout
