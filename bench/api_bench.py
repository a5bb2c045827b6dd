"""The REST API under load: `GET /tables/{t}/rows?limit=100` on a 10M-row table and a `POST /sql` aggregate, by 8
concurrent clients for 30 s each, next to the same reads made in-process on plain DuckDB over the same lake.

    uv run python bench/api_bench.py [--project /tmp/api-bench] [--rows 10000000] [--clients 8] [--seconds 30]

1. makes (once) a project whose `bronze.events` holds `--rows` rows (id, k, v, s), written as Parquet by DuckLake;
2. starts `airduck serve` on a free loopback port (a real uvicorn process, its admin token from AIRDUCK_API_TOKEN);
3. for each call, `--clients` threads, each with its own keep-alive `httpx.Client`, call it back to back for
   `--seconds` (a bounded Python client: Debian's `wrk` is not installed here); every latency is kept;
4. the same reads in-process: `--clients` threads on cursors of one DuckDB connection with the lake attached
   READ_ONLY (bench/session_bench.py's `plain_duckdb`), `SELECT * FROM bronze.events LIMIT 100` and the aggregate;
5. the server's RSS (VmRSS) is sampled every 0.5 s over its whole life.

p50 / p99 / max per call and requests per second; the load average before and after (the client runs on the same
2 cores as the server: its own CPU is in the figures). Results go to bench/out/api_bench.json.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `bench` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.session_bench import plain_duckdb

OUT = Path(__file__).resolve().parent / "out"
TOKEN = "bench-token-" + "b" * 32
TABLE = "bronze.events"
AGGREGATE = f"SELECT k % 10 AS g, count(*) AS n, avg(v) AS v FROM {TABLE} GROUP BY 1 ORDER BY 1"
#: in-process, on cursors of one connection (a cursor does not inherit `USE lake`: the names are qualified)
PAGE_SQL = f"SELECT * FROM lake.{TABLE} LIMIT 100"
DUCK_AGGREGATE = AGGREGATE.replace(f"FROM {TABLE}", f"FROM lake.{TABLE}")


def make_project(root: Path, rows: int) -> None:
    from airduck.lake.commit import write
    from airduck.lakehouse import Lakehouse

    root.mkdir(parents=True, exist_ok=True)
    (root / "airduck.yml").write_text("name: api_bench\n")
    with Lakehouse.open(root) as lh:
        schema, name = TABLE.split(".")
        if (schema, name) in {(t.schema, t.name) for t in lh.tables()} and lh.describe(TABLE).row_count == rows:
            return
        with write(lh.con, "bench data"):
            lh.con.execute(f"CREATE OR REPLACE TABLE {TABLE} AS SELECT range AS id, range % 1000 AS k, "
                           f"random() AS v, 'event ' || range AS s FROM range({rows})")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mib(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def load(call: Callable[[object], None], make_client: Callable[[], object], clients: int,
         seconds: float) -> dict[str, float]:
    latencies: list[list[float]] = [[] for _ in range(clients)]
    errors = [0] * clients
    start = threading.Barrier(clients + 1)
    stop_at = [0.0]

    def worker(i: int) -> None:
        try:
            client = make_client()
            call(client)  # warm-up
        except BaseException:
            start.abort()  # the others (and the main thread) stop waiting: the run fails instead of hanging
            raise
        start.wait()
        mine = latencies[i]
        while time.monotonic() < stop_at[0]:
            t0 = time.perf_counter()
            try:
                call(client)
            except Exception:
                errors[i] += 1
                continue
            mine.append(time.perf_counter() - t0)
        close = getattr(client, "close", None)
        if close:
            close()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    stop_at[0] = time.monotonic() + seconds + 60  # until the barrier
    start.wait()
    t0 = time.monotonic()
    stop_at[0] = t0 + seconds
    for t in threads:
        t.join()
    elapsed = time.monotonic() - t0
    every = sorted(x for xs in latencies for x in xs)
    return {"requests": len(every), "errors": sum(errors), "rps": len(every) / elapsed,
            "p50_ms": statistics.median(every) * 1000, "p99_ms": every[int(0.99 * (len(every) - 1))] * 1000,
            "max_ms": every[-1] * 1000}


def wrk(url: str, headers: dict[str, str], clients: int, seconds: float) -> dict[str, object]:
    """`wrk -t2 -c<clients> -d<seconds>s --latency` (Debian's wrk): p50/p99 and requests per second from its report."""
    cmd = ["wrk", "-t2", f"-c{clients}", f"-d{int(seconds)}s", "--latency", "--timeout", "60s"]
    for k, v in headers.items():
        cmd += ["-H", f"{k}: {v}"]
    out = subprocess.run([*cmd, url], capture_output=True, text=True, timeout=seconds + 120, check=True).stdout

    def ms(text: str) -> float:
        value, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", text).groups()
        return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]

    got: dict[str, object] = {"tool": f"wrk -t2 -c{clients}"}
    for pct, key in (("50", "p50_ms"), ("99", "p99_ms")):
        m = re.search(rf"^\s+{pct}%\s+(\S+)", out, re.M)
        got[key] = ms(m.group(1)) if m else None
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    got["rps"] = float(m.group(1)) if m else None
    m = re.search(r"(\d+) requests in", out)
    got["requests"] = int(m.group(1)) if m else None
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    got["errors"] = int(m.group(1)) if m else 0
    return got


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--project", type=Path, default=Path("/tmp/api-bench"))
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=30.0)
    args = parser.parse_args()
    import httpx

    t0 = time.monotonic()
    make_project(args.project, args.rows)
    print(f"project ready in {time.monotonic() - t0:.1f} s ({args.rows:,} rows in {TABLE})", flush=True)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRDUCK_", "AWS_"))}
    env["AIRDUCK_API_TOKEN"] = TOKEN
    server = subprocess.Popen([sys.executable, "-m", "airduck", "-p", str(args.project), "serve", "--port", str(port)],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    rss: list[float] = []
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.5):
            value = rss_mib(server.pid)
            if value is not None:
                rss.append(value)

    results: dict[str, object] = {"rows": args.rows, "clients": args.clients, "seconds": args.seconds,
                                  "load_before": os.getloadavg(), "nproc": os.cpu_count()}
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        else:
            raise SystemExit("the server did not start")
        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        headers = {"Authorization": f"Bearer {TOKEN}"}

        def http_client() -> httpx.Client:
            return httpx.Client(base_url=base, headers=headers, timeout=60)

        def page(client) -> None:
            r = client.get(f"/api/v1/tables/{TABLE}/rows", params={"limit": 100})
            assert r.status_code == 200 and len(r.json()["rows"]) == 100, r.text[:200]

        def aggregate(client) -> None:
            r = client.post("/api/v1/sql", json={"sql": AGGREGATE})
            assert r.status_code == 200 and len(r.json()["rows"]) == 10, r.text[:200]

        rss_start = rss_mib(server.pid)
        results["api_rows_page"] = load(page, http_client, args.clients, args.seconds)
        print("api rows page", results["api_rows_page"], flush=True)
        if shutil.which("wrk"):  # the same call from a load tool in C, whose own CPU is small beside Python's
            results["api_rows_page_wrk"] = wrk(f"{base}/api/v1/tables/{TABLE}/rows?limit=100", headers,
                                               args.clients, args.seconds)
            print("api rows page (wrk)", results["api_rows_page_wrk"], flush=True)
        results["api_sql_aggregate"] = load(aggregate, http_client, args.clients, args.seconds)
        print("api sql aggregate", results["api_sql_aggregate"], flush=True)
        results["server_rss_mib"] = {"start": rss_start, "max": max(rss) if rss else None,
                                     "end": rss_mib(server.pid), "samples": len(rss),
                                     "after_first_10s_max": max(rss[20:]) if len(rss) > 20 else None,
                                     "first_10s_max": max(rss[:20]) if rss else None}
        print("server rss", results["server_rss_mib"], flush=True)
    finally:
        done.set()
        server.terminate()
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(10)
    con = plain_duckdb(args.project)

    def page_duck(cur) -> None:
        assert len(cur.execute(PAGE_SQL).fetchall()) == 100

    def agg_duck(cur) -> None:
        assert len(cur.execute(DUCK_AGGREGATE).fetchall()) == 10

    results["duckdb_rows_page"] = load(page_duck, con.cursor, args.clients, args.seconds)
    print("duckdb rows page", results["duckdb_rows_page"], flush=True)
    results["duckdb_sql_aggregate"] = load(agg_duck, con.cursor, args.clients, args.seconds)
    print("duckdb aggregate", results["duckdb_sql_aggregate"], flush=True)
    con.close()
    results["load_after"] = os.getloadavg()
    OUT.mkdir(exist_ok=True)
    (OUT / "api_bench.json").write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
