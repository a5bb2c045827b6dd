"""CLI start: `airduck sql` and `airduck tables` as whole processes against the floor (issue 10, "CLI start").

    uv run python bench/cli_start_bench.py [--project /tmp/sessions-demo] [--repeat 9]

On the demo project (`airduck demo /tmp/sessions-demo`), each contender runs as its own process, from spawn to
exit (interpreter start, imports, opening the lake, the query, printing):

  floor           a minimal Python script: import duckdb, LOAD the extensions the lake needs (ducklake, sqlite),
                  ATTACH the lake READ_ONLY, run the query, print the row
  airduck sql     `airduck sql "SELECT count(*) FROM silver.vacancies"` (the query checked read-only, a Rich table)
  airduck tables  `airduck tables` (every table with its rows, files and size)

The contenders alternate, `--repeat` rounds after one warm-up round; the figure is each one's median wall time,
and the ratio is to the floor's median. Python writes no bytecode files here when PYTHONDONTWRITEBYTECODE is set:
the warm-up round runs without it so every contender then reads compiled modules, as an installed package does.
The machine's load average is printed before and after. Results also go to bench/out/cli_start_bench.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import textwrap
import time
from pathlib import Path

OUT = Path(__file__).resolve().parent / "out"
QUERY = "SELECT count(*) FROM silver.vacancies"

FLOOR = textwrap.dedent('''
    import sys
    import duckdb
    catalog, data = sys.argv[1], sys.argv[2]
    con = duckdb.connect()
    for name in ("ducklake", "sqlite_scanner"):
        con.execute(f"LOAD {name}")
    con.execute(f"ATTACH 'ducklake:sqlite:{catalog}' AS lake (DATA_PATH '{data}', OVERRIDE_DATA_PATH true, READ_ONLY)")
    print(con.execute("SELECT count(*) FROM lake.silver.vacancies").fetchall())
''')


def airduck_bin() -> str:
    candidate = Path(sys.executable).with_name("airduck")
    return str(candidate) if candidate.exists() else "airduck"


def run(cmd: list[str], env: dict[str, str]) -> tuple[float, str]:
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{cmd[:3]} failed: {proc.stderr}")
    return seconds, proc.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--project", type=Path, default=Path("/tmp/sessions-demo"))
    parser.add_argument("--repeat", type=int, default=9)
    parser.add_argument("--airduck", default=None, help="the airduck command to time (default: this venv's)")
    parser.add_argument("--out", default="cli_start_bench.json", help="result file name under bench/out/")
    args = parser.parse_args()
    root = args.project.resolve()
    OUT.mkdir(exist_ok=True)
    floor_script = OUT / "cli_start_floor.py"
    floor_script.write_text(FLOOR)
    airduck = args.airduck or airduck_bin()
    contenders = {
        "floor (duckdb script)": [sys.executable, str(floor_script), str(root / ".airduck/catalog.sqlite"),
                                  str(root / ".airduck/data") + "/"],
        "airduck sql": [airduck, "-p", str(root), "sql", QUERY],
        "airduck tables": [airduck, "-p", str(root), "tables"],
    }
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRDUCK_", "AWS_"))}
    env["COLUMNS"] = "120"
    warm = {k: v for k, v in env.items() if k != "PYTHONDONTWRITEBYTECODE"}
    outputs = {name: run(cmd, warm)[1] for name, cmd in contenders.items()}
    count = outputs["floor (duckdb script)"].strip().strip("[](),")
    assert count in outputs["airduck sql"], (count, outputs["airduck sql"])  # both answered the same count
    load_before = os.getloadavg()
    times: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(args.repeat):
        for name, cmd in contenders.items():
            times[name].append(run(cmd, env)[0])
    load_after = os.getloadavg()
    floor = statistics.median(times["floor (duckdb script)"])
    results = {name: {"median_s": statistics.median(t), "min_s": min(t), "max_s": max(t),
                      "ratio_to_floor": statistics.median(t) / floor, "runs": len(t)} for name, t in times.items()}
    report = {"project": str(root), "query": QUERY, "load_before": load_before, "load_after": load_after,
              "cpus": os.cpu_count(), "results": results}
    report["airduck"] = airduck
    (OUT / args.out).write_text(json.dumps(report, indent=2))
    print(f"load average before {load_before[0]:.2f} {load_before[1]:.2f} {load_before[2]:.2f}, "
          f"after {load_after[0]:.2f} {load_after[1]:.2f} {load_after[2]:.2f} ({os.cpu_count()} CPUs)")
    print("| process | median | min | max | x floor |\n|---|---:|---:|---:|---:|")
    for name, r in results.items():
        print(f"| {name} | {r['median_s']:.2f} s | {r['min_s']:.2f} s | {r['max_s']:.2f} s | "
              f"{r['ratio_to_floor']:.2f}x |")


if __name__ == "__main__":
    main()
