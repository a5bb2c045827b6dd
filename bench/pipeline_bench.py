"""Benchmark 1: bronze + silver on messy order CSVs: pandas+pyarrow vs plain DuckDB SQL (silver only, and
bronze + silver: the same work by hand) vs airduck.

    uv run python bench/pipeline_bench.py --rows 10000000

Generates (or reuses) the data under bench/out/, runs each contender once untimed on 2,000 rows (so that no
timed run compiles modules or reads libraries from disk first), then runs each contender in its own process,
`--repeat` times, interleaved (pandas, duckdb, duckdb_bronze, airduck, pandas, ...), each on a fresh output
folder. Reports the median wall seconds of the process (spawn to exit), rows/s, peak RSS, the contenders' own step timings, the ratios, and whether
all contenders produced the same counts as the generator's manifest (a mismatch is printed loudly).
Results go to bench/out/pipeline_<rows>.json (and .md). `--profile` adds one untimed airduck run that logs
the wall seconds of every SQL statement airduck executes (the slowest are printed).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make `bench` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import common
from bench.common import Measurement, failure_lines, fmt_rate, fmt_ratio, fmt_seconds, markdown_table, median

SCRIPT = Path(__file__).resolve()
NAMES = ("pandas", "duckdb", "duckdb_bronze", "airduck", "airduck_atomic")
LABELS = {"pandas": "(a) pandas + pyarrow → Parquet", "duckdb": "(b0) plain DuckDB SQL, silver only → DuckLake",
          "duckdb_bronze": "(b) plain DuckDB SQL, bronze + silver → DuckLake",
          "airduck": "(c) airduck Lakehouse.run()",
          "airduck_atomic": "(c') airduck Lakehouse.run(atomic=True)"}
COUNT_KEYS = ("rejected", "read", "quarantined", "clean", "clean_null_amount")


def _worker(args: argparse.Namespace) -> int:
    from bench.pipeline_contenders import CONTENDERS, run_airduck

    started = time.perf_counter()
    try:
        if args.worker == "airduck":
            out = run_airduck(args.data, args.work, profile=args.profile)
        else:
            out = CONTENDERS[args.worker](args.data, args.work)
        out["work_seconds"] = round(time.perf_counter() - started, 3)
        out["peak_rss_mib"] = common.self_peak_rss_mib()
        common.write_result(args.result, out)
        return 0
    except BaseException as exc:
        common.write_result(args.result, {"error": f"{type(exc).__name__}: {exc}"})
        raise


def run_one(name: str, data: Path, work_root: Path, rep: int, timeout: float, profile: bool = False,
            keep: bool = False) -> Measurement:
    work = work_root / f"{name}_{rep}"
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    cmd = common.worker_command(SCRIPT, "--worker", name, "--data", str(data), "--work", str(work / "out"),
                                "--result", str(work / "result.json"), *(["--profile"] if profile else []))
    m = common.run_child(name, cmd, work / "result.json", work / "log.txt", timeout)
    if not keep:
        shutil.rmtree(work, ignore_errors=True)
    return m


def summarize(rows: int, runs: dict[str, list[Measurement]], expected: dict[str, int],
              max_others: float | None = None) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    for name, ms in runs.items():
        good = [m for m in ms if m.ok]
        walls = [m.wall_seconds for m in good]
        works = [m.result.get("work_seconds") for m in good if m.result.get("work_seconds") is not None]
        med = median(walls)
        steps: dict[str, float] = {}
        for key in (good[0].result.get("steps", {}) if good else {}):
            vals = [m.result["steps"][key] for m in good if key in m.result.get("steps", {})]
            steps[key] = round(median(vals), 3)
        summary[name] = {
            "runs": len(ms), "ok_runs": len(good), "wall_seconds": walls, "median_wall_seconds": med,
            "median_work_seconds": median(works), "rows_per_second": (rows / med) if med else None,
            "median_cpu_seconds": median([m.cpu_seconds for m in good if m.cpu_seconds is not None]),
            "max_rss_mib": max((m.max_rss_mib for m in good), default=None),
            "max_others_cpu_share": max((m.others_share for m in good if m.others_share is not None), default=None),
            "noisy_runs": sum(1 for m in good if max_others is not None and m.others_share is not None
                              and m.others_share > max_others),
            "counts": good[0].result.get("counts") if good else None, "steps": steps,
            "failures": [m.to_dict() for m in ms if not m.ok],
        }
    a, b0, b, c, atomic = (summary.get(n, {}).get("median_wall_seconds") for n in NAMES)
    ca, cb0, cb, cc, catomic = (summary.get(n, {}).get("median_cpu_seconds") for n in NAMES)

    def ratio(x: float | None, y: float | None) -> float | None:
        return (x / y) if x and y else None

    summary["_ratios"] = {
        "airduck_speedup_vs_pandas": ratio(a, c),
        "airduck_over_duckdb_bronze": ratio(c, b),
        "airduck_over_duckdb": ratio(c, b0),
        "pandas_over_duckdb": ratio(a, b0),
        "cpu_airduck_speedup_vs_pandas": ratio(ca, cc),
        "cpu_airduck_over_duckdb_bronze": ratio(cc, cb),
        "cpu_airduck_over_duckdb": ratio(cc, cb0),
        "atomic_over_airduck": ratio(atomic, c),
        "cpu_atomic_over_airduck": ratio(catomic, cc),
    }
    problems: list[str] = []
    for name in runs:
        counts = summary[name]["counts"]
        if counts is None:
            problems.append(f"{name}: no successful run")
            continue
        for key in COUNT_KEYS:
            if key in expected and counts.get(key) != expected[key]:
                problems.append(f"{name}: {key} = {counts.get(key)}, expected {expected[key]}")
    summary["_mismatches"] = problems
    return summary


def report(rows: int, summary: dict[str, Any], expected: dict[str, int]) -> str:
    table_rows = []
    for name in NAMES:
        s = summary.get(name)
        if not s:
            continue
        c = s["counts"] or {}
        table_rows.append([
            LABELS[name], f"{s['ok_runs']}/{s['runs']}", fmt_seconds(s["median_wall_seconds"]),
            fmt_seconds(s["median_work_seconds"]), fmt_seconds(s["median_cpu_seconds"]),
            fmt_rate(rows, s["median_wall_seconds"]),
            "-" if s["max_rss_mib"] is None else f"{s['max_rss_mib']:.0f} MiB",
            common.fmt_share(s.get("max_others_cpu_share")),
            *(str(c.get(k, "-")) for k in ("rejected", "quarantined", "clean")),
        ])
    out = [markdown_table(["contender", "ok runs", "median wall s", "median work s", "median CPU s", "rows/s",
                           "peak RSS",
                           "others' CPU (max)", "rejected", "quarantined", "clean"], table_rows)]
    r = summary["_ratios"]
    out.append("")
    out.append(f"airduck speed-up vs pandas: {fmt_ratio(r['airduck_speedup_vs_pandas'])} (goal ≥ 5x); "
               f"airduck / plain DuckDB bronze+silver time: {fmt_ratio(r['airduck_over_duckdb_bronze'])} "
               f"(goal ≤ 1.3x); airduck / plain DuckDB silver only: {fmt_ratio(r['airduck_over_duckdb'])}; "
               f"pandas / plain DuckDB silver only: {fmt_ratio(r['pandas_over_duckdb'])}")
    out.append(f"same ratios on CPU seconds (user+system of the process): airduck speed-up vs pandas "
               f"{fmt_ratio(r['cpu_airduck_speedup_vs_pandas'])}, airduck / plain DuckDB bronze+silver "
               f"{fmt_ratio(r['cpu_airduck_over_duckdb_bronze'])}, airduck / plain DuckDB silver only "
               f"{fmt_ratio(r['cpu_airduck_over_duckdb'])}")
    if r["atomic_over_airduck"] is not None:
        out.append(f"airduck run --atomic / plain run: {fmt_ratio(r['atomic_over_airduck'])} wall, "
                   f"{fmt_ratio(r['cpu_atomic_over_airduck'])} CPU")
    out.append(f"expected (generator manifest): rejected {expected.get('rejected')}, quarantined "
               f"{expected.get('quarantined')}, clean {expected.get('clean')}")
    step_lines = []
    for name in NAMES:
        s = summary.get(name)
        if s and s["steps"]:
            step_lines.append(f"- {name}: " + ", ".join(f"{k} {v:.2f}s" for k, v in s["steps"].items()))
    if step_lines:
        out += ["", "median step seconds (measured inside each process):", *step_lines]
    noisy = [f"{n} ({summary[n]['noisy_runs']} of {summary[n]['ok_runs']})" for n in NAMES
             if summary.get(n, {}).get("noisy_runs")]
    if noisy:
        out += ["", "NOISY: other processes used much CPU during runs of " + ", ".join(noisy) +
                "; their times are inflated (see others' CPU)"]
    if summary["_mismatches"]:
        out += ["", "!!! COUNT MISMATCH !!!", *(f"!!! {p}" for p in summary["_mismatches"])]
    else:
        out += ["", "counts: all contenders match the manifest"]
    out += failure_lines(summary, NAMES)
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--files", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=None, help="default: 3 up to 2M rows, else 1")
    parser.add_argument("--contenders", default=",".join(NAMES[:4]),
                        help="comma-separated subset of " + ",".join(NAMES) + " (default: all but airduck_atomic)")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds per contender run before it is killed")
    parser.add_argument("--profile", action="store_true", help="one extra, untimed airduck run logging its SQL")
    parser.add_argument("--keep", action="store_true", help="keep each run's output folder under bench/out/work/")
    parser.add_argument("--quiet-wait", type=float, default=0.0,
                        help="before each run, wait up to this many seconds until other processes use less CPU "
                        "than --max-others")
    parser.add_argument("--max-others", type=float, default=0.10,
                        help="a run during which other processes used more than this share of the CPU is noisy")
    parser.add_argument("--retries", type=int, default=0, help="re-runs of a noisy run (the last one is kept)")
    parser.add_argument("--out", type=Path, default=common.OUT_DIR)
    parser.add_argument("--worker", choices=NAMES, help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    parser.add_argument("--work", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return _worker(args)

    from bench.gen_orders import generate

    names = [n.strip() for n in args.contenders.split(",") if n.strip()]
    unknown = [n for n in names if n not in NAMES]
    if unknown:
        parser.error(f"unknown contender(s): {', '.join(unknown)}")
    repeat = args.repeat or (3 if args.rows <= 2_000_000 else 1)
    t0 = time.perf_counter()
    ds = generate(args.rows, args.seed, args.files, out_dir=args.out)
    print(f"data: {ds.folder} ({ds.manifest['bytes'] / 1e6:.0f} MB, {ds.files} files, "
          f"ready in {time.perf_counter() - t0:.1f} s)", flush=True)
    work_root = args.out / "work"
    # one untimed run of each contender on a small dataset first, so that no timed run is the one that compiles
    # and caches the modules it imports (see common.worker_env) or first reads the libraries from disk
    warm = generate(2_000, args.seed, 2, out_dir=args.out)
    for name in names:
        m = run_one(name, warm.folder, work_root, -1, args.timeout)
        if not m.ok:
            print(f"  warm-up run of {name} failed (exit {m.exit_code}):\n{m.log_tail}", flush=True)
    runs: dict[str, list[Measurement]] = {n: [] for n in names}
    discarded: dict[str, list[Measurement]] = {n: [] for n in names}
    for rep in range(repeat):
        for name in names:
            m, noisy = common.measure_quietly(
                lambda n=name, r=rep: run_one(n, ds.folder, work_root, r, args.timeout, keep=args.keep),
                quiet_wait=args.quiet_wait, quiet_threshold=args.max_others, max_others=args.max_others,
                retries=args.retries, log=print)
            runs[name].append(m)
            discarded[name] += noisy
            state = "ok" if m.ok else ("TIMEOUT" if m.timed_out else f"FAILED (exit {m.exit_code})")
            print(f"  run {rep + 1}/{repeat} {name:13s} {m.wall_seconds:8.2f} s  peak RSS {m.max_rss_mib:7.0f} MiB  "
                  f"others' CPU {common.fmt_share(m.others_share)}  {state}  "
                  f"{json.dumps(m.result.get('counts', {}))}", flush=True)
    summary = summarize(args.rows, runs, ds.expected, args.max_others)
    profile = None
    if args.profile and "airduck" in names:
        m = run_one("airduck", ds.folder, work_root, 99, args.timeout, profile=True)
        profile = m.to_dict()
    text = report(args.rows, summary, ds.expected)
    print()
    print(f"pipeline benchmark: {args.rows:,} rows, {repeat} repeat(s), {common.machine_info().get('nproc')} cores")
    print(text)
    if profile:
        print("\nairduck profile run (untimed; slowest SQL statements):")
        for q in profile["result"].get("queries", []):
            print(f"  {q['seconds']:8.3f} s  {q['sql'][:300]}")
        print("  Python own time (cProfile; DuckDB work shows as the execute/sql methods):")
        for h in profile["result"].get("python_hotspots", [])[:12]:
            print(f"  {h['own_seconds']:8.3f} s  {h['calls']:6d} calls  {h['function']}  <- {'; '.join(h['callers'])}")
        print(f"  total SQL seconds {profile['result'].get('query_seconds_total')} over "
              f"{profile['result'].get('query_count')} statements; steps {profile['result'].get('steps')}")
    payload = {"benchmark": "pipeline", "rows": args.rows, "seed": args.seed, "files": ds.files, "repeat": repeat,
               "machine": common.machine_info(), "dataset": ds.manifest, "summary": summary,
               "runs": {n: [m.to_dict() for m in ms] for n, ms in runs.items()}, "profile": profile,
               "discarded_noisy_runs": {n: [m.to_dict() for m in ms] for n, ms in discarded.items() if ms},
               "command": " ".join(["uv run python bench/pipeline_bench.py", *(argv or sys.argv[1:])])}
    args.out.mkdir(parents=True, exist_ok=True)
    common.write_result(args.out / f"pipeline_{args.rows}.json", payload)
    (args.out / f"pipeline_{args.rows}.md").write_text(text + "\n")
    return 1 if summary["_mismatches"] else 0


if __name__ == "__main__":
    sys.exit(main())
