"""No-op run: a 20-table project run again with no new data, as whole `airduck` processes.

The project (generated under ``bench/out/noop/`` unless ``--dir``): 10 CSV sources (``s00`` .. ``s09``, 2,000 rows
each), 10 silver tables (one per source, merge on a key, typed columns), a dbt project of 5 table models (three
over silver tables by ``source()``, two over those by ``ref()``). It is run once (``airduck run``), then, for each
of ``--repeat`` rounds, in this order:

- ``airduck run``: the no-op run (nothing new at the sources);
- ``dbt build`` of the same dbt project alone, with the profile airduck generated (what a run without skipping
  would at least spend on gold);
- ``airduck tables``: the cost of starting airduck and opening the lake.

Each is timed from process start to exit (wall seconds); the table gives the median and every value. The load of the
machine (``uptime``) is printed before and after. The no-op run is checked to be one: the lake's snapshot id is the
same before and after each ``airduck run`` of a round (dbt build alone adds snapshots to ``gold_stage``, which is
why the check brackets the airduck run only).

    python3 -m uv run --frozen python bench/bench_noop.py [--repeat 3] [--dir DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import yaml

BENCH_DIR = Path(__file__).resolve().parent
SOURCES = [f"s{i:02d}" for i in range(10)]
ROWS = 2000
MODELS = {
    "m1": "select a.k, a.amount + b.amount as amount from {{ source('silver', 's00') }} a "
          "join {{ source('silver', 's01') }} b using (k)",
    "m2": "select k, sum(amount) as amount from (select * from {{ source('silver', 's02') }} union all "
          "select * from {{ source('silver', 's03') }} union all select * from {{ source('silver', 's04') }}) "
          "group by k",
    "m3": "select city, count(*) as n, sum(amount) as amount from (" + " union all ".join(
        f"select * from {{{{ source('silver', '{s}') }}}}" for s in SOURCES[5:]) + ") group by city",
    "m4": "select m1.k, m1.amount + m2.amount as amount from {{ ref('m1') }} m1 join {{ ref('m2') }} m2 using (k)",
    "m5": "select city, n, amount, (select sum(amount) from {{ ref('m4') }}) as total from {{ ref('m3') }}",
}


def generate(root: Path) -> None:
    """Write the project (airduck.yml, data, dbt project) into `root`, removing what was there."""
    if root.exists():
        shutil.rmtree(root)
    (root / "gold" / "models").mkdir(parents=True)
    cities = ["paris", "oslo", "rome", "lima", "kyiv"]
    for i, s in enumerate(SOURCES):
        folder = root / "data" / s
        folder.mkdir(parents=True)
        lines = ["k,city,amount,updated_at"] + [
            f"{k},{cities[(k + i) % 5]},{(k * 7 + i) % 1000}.25,2026-11-{1 + k % 28:02d} 10:00:00"
            for k in range(ROWS)]
        (folder / "part1.csv").write_text("\n".join(lines) + "\n")
    columns = {"k": {"type": "BIGINT", "required": True}, "city": {"type": "VARCHAR", "normalize": ["trim", "lower"]},
               "amount": {"type": "DECIMAL(12,2)"}, "updated_at": {"type": "TIMESTAMP"}}
    config = {
        "name": "noop_bench",
        "sources": {s: {"type": "files", "path": f"data/{s}/*.csv", "format": "csv"} for s in SOURCES},
        "silver": {s: {"from": s, "key": ["k"], "order_by": ["updated_at"], "mode": "merge", "columns": columns}
                   for s in SOURCES},
        "gold": {"dbt_project": "gold/"},
    }
    (root / "airduck.yml").write_text(yaml.safe_dump(config, sort_keys=False))
    (root / "gold" / "dbt_project.yml").write_text(yaml.safe_dump({
        "name": "noop_marts", "version": "1.0", "config-version": 2, "profile": "airduck",
        "models": {"noop_marts": {"+materialized": "table"}}}))
    for name, sql in MODELS.items():
        (root / "gold" / "models" / f"{name}.sql").write_text(sql + "\n")


def timed(cmd: list[str], cwd: Path, env: dict[str, str], timeout: float = 900) -> tuple[float, subprocess.CompletedProcess]:
    started = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    return time.perf_counter() - started, proc


def snapshot_id(root: Path) -> int:
    from airduck.lakehouse import Lakehouse

    with Lakehouse.open(root) as lh:
        return lh.current_snapshot()


def dbt_command(root: Path, out: Path) -> tuple[list[str], dict[str, str]]:
    """`dbt build` of the project's dbt project alone, with airduck's generated profile (as a run would)."""
    from airduck.gold.dbt import DBT_ENV
    from airduck.gold.profile import PROFILE, TARGET, profile_env
    from airduck.project import load_project

    project = load_project(root)
    profiles = root / ".airduck" / "dbt" / "profile"
    env = {**os.environ, **project.env, **profile_env(project), **DBT_ENV}
    cmd = [sys.executable, "-m", "dbt.cli.main", "build", "--project-dir", str(root / "gold"),
           "--profiles-dir", str(profiles), "--profile", PROFILE, "--target", TARGET,
           "--target-path", str(out / "target"), "--log-path", str(out / "logs")]
    return cmd, env


def uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "uptime: not available"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--dir", type=Path, default=BENCH_DIR / "out" / "noop")
    args = ap.parse_args(argv)
    root: Path = args.dir.resolve()
    generate(root)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRDUCK_", "AWS_"))}
    airduck = [sys.executable, "-m", "airduck", "-p", str(root)]
    print(f"load before: {uptime()}", flush=True)
    first, proc = timed([*airduck, "run"], root, env)
    if proc.returncode != 0:
        print(proc.stdout, proc.stderr, file=sys.stderr)
        return 1
    print(f"first run: {first:.2f} s", flush=True)
    cmd, dbt_env = dbt_command(root, root / ".airduck" / "bench_dbt")
    times: dict[str, list[float]] = {"airduck run (no-op)": [], "dbt build alone": [], "airduck tables": []}
    noop_ok = True
    last_noop = ""
    for i in range(args.repeat):
        before = snapshot_id(root)
        t, proc = timed([*airduck, "run"], root, env)
        after = snapshot_id(root)
        if proc.returncode != 0:
            print(proc.stdout, proc.stderr, file=sys.stderr)
            return 1
        noop_ok &= before == after
        last_noop = proc.stdout
        times["airduck run (no-op)"].append(t)
        t, proc = timed(cmd, root, dbt_env)
        if proc.returncode != 0:
            print(proc.stdout[-3000:], proc.stderr[-3000:], file=sys.stderr)
            return 1
        times["dbt build alone"].append(t)
        t, proc = timed([*airduck, "tables"], root, env)
        if proc.returncode != 0:
            print(proc.stdout, proc.stderr, file=sys.stderr)
            return 1
        times["airduck tables"].append(t)
        print(f"round {i + 1}: " + ", ".join(f"{k} {v[-1]:.2f} s" for k, v in times.items()), flush=True)
    print(f"load after: {uptime()}")
    print(f"no-op runs added no snapshot: {noop_ok}")
    print("\n| what | median (s) | runs (s) |\n|---|---:|---|")
    for name, values in times.items():
        print(f"| {name} | {statistics.median(values):.2f} | {', '.join(f'{v:.2f}' for v in values)} |")
    print(f"\nfirst run (everything built): {first:.2f} s")
    print("\nlast no-op run's output:\n" + last_noop)
    out = BENCH_DIR / "out" / "bench_noop.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"first": first, "times": times, "noop_added_no_snapshot": noop_ok,
                               "repeat": args.repeat}, indent=2))
    return 0 if noop_ok else 2


if __name__ == "__main__":
    raise SystemExit(main())
