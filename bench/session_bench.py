"""Lake sessions: reads on an open `Lakehouse` against plain DuckDB on the same lake (issue 10, item 6).

    uv run python bench/session_bench.py [--project /tmp/sessions-demo] [--calls 200]

In one process, on a project that has data (by default the demo: `airduck demo /tmp/sessions-demo`):

  lakehouse  an open `Lakehouse`: `lh.sql("SELECT 1")`, `lh.head(TABLE, 100)`, `lh.sql("SELECT * FROM TABLE
             LIMIT 100")` (each call: a fresh cursor of the read session; `sql` also checks the query is read-only)
  duckdb     one DuckDB connection with the lake attached READ_ONLY: `execute(...).fetchall()` of the same SQL
  cold       a new `Lakehouse` per call (open, `sql("SELECT 1")`, close): what every call cost before sessions

Each figure is the median (and the 90th percentile) of `--calls` calls, after 5 warm-up calls; the contenders
alternate in rounds of 10 calls so a busy machine slows them alike. The machine's load average is printed
before and after. Results also go to bench/out/session_bench.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `bench` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

OUT = Path(__file__).resolve().parent / "out"


def plain_duckdb(project_dir: Path):
    """A DuckDB connection with the project's lake attached READ_ONLY, as a user would write it by hand."""
    import duckdb

    from airduck.lake.connection import attach_target, data_path, moves_with_project, needed_extensions
    from airduck.project import load_project

    project = load_project(project_dir)
    con = duckdb.connect()
    for name in needed_extensions(project, writes=False):
        con.execute(f"LOAD {name}")
    target, _ = attach_target(project, create=False)
    opts = f"DATA_PATH '{data_path(project, create=False)}', READ_ONLY"
    if moves_with_project(project):
        opts += ", OVERRIDE_DATA_PATH true"
    con.execute(f"ATTACH '{target}' AS lake ({opts})")
    con.execute("USE lake")
    return con


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def summary(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {"median_ms": statistics.median(ordered) * 1000, "p90_ms": ordered[int(0.9 * (len(ordered) - 1))] * 1000,
            "calls": len(ordered)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--project", type=Path, default=Path("/tmp/sessions-demo"))
    parser.add_argument("--table", default="silver.vacancies")
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--cold-calls", type=int, default=10)
    args = parser.parse_args()

    from airduck.lakehouse import Lakehouse

    load_before = os.getloadavg()
    head_sql = f"SELECT * FROM {args.table} LIMIT 100"
    lh = Lakehouse.open(args.project)
    con = plain_duckdb(args.project)
    cases: dict[str, Callable[[], object]] = {
        "lakehouse sql SELECT 1": lambda: lh.sql("SELECT 1"),
        "lakehouse head 100 rows": lambda: lh.head(args.table, 100),
        "lakehouse sql LIMIT 100": lambda: lh.sql(head_sql),
        "duckdb SELECT 1": lambda: con.execute("SELECT 1").fetchall(),
        "duckdb LIMIT 100": lambda: con.execute(head_sql).fetchall(),
    }
    assert len(lh.head(args.table, 100)[1]) == 100 and len(con.execute(head_sql).fetchall()) == 100
    assert lh.sql(head_sql).rows == con.execute(head_sql).fetchall()
    for fn in cases.values():  # warm-up
        for _ in range(5):
            fn()
    samples: dict[str, list[float]] = {name: [] for name in cases}
    rounds = max(1, args.calls // 10)
    for _ in range(rounds):
        for name, fn in cases.items():
            samples[name] += [timed(fn) for _ in range(10)]
    lh.close()
    con.close()

    def cold() -> None:
        with Lakehouse.open(args.project) as fresh:
            fresh.sql("SELECT 1")

    samples["cold: new Lakehouse + sql SELECT 1"] = [timed(cold) for _ in range(args.cold_calls)]
    load_after = os.getloadavg()
    results = {name: summary(s) for name, s in samples.items()}
    report = {"project": str(args.project), "table": args.table, "load_before": load_before,
              "load_after": load_after, "cpus": os.cpu_count(), "results": results}
    OUT.mkdir(exist_ok=True)
    (OUT / "session_bench.json").write_text(json.dumps(report, indent=2))
    print(f"load average before {load_before[0]:.2f} {load_before[1]:.2f} {load_before[2]:.2f}, "
          f"after {load_after[0]:.2f} {load_after[1]:.2f} {load_after[2]:.2f} ({os.cpu_count()} CPUs)")
    print("| call | median | p90 | calls |\n|---|---:|---:|---:|")
    for name, r in results.items():
        print(f"| {name} | {r['median_ms']:.2f} ms | {r['p90_ms']:.2f} ms | {r['calls']} |")


if __name__ == "__main__":
    main()
