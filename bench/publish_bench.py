"""Benchmark 2: publishing a gold mart from a local DuckLake to PostgreSQL.

    uv run python bench/publish_bench.py --rows 10000000

Builds (or reuses) a local DuckLake project under bench/out/publish_<rows>/ whose `gold.mart` has `--rows` rows,
creates a scratch database `airduck_bench_<random>` on the local PostgreSQL (dropped at the end), then publishes
the mart with each contender in its own process, `--repeat` times, interleaved:

  pandas     DuckDB -> DataFrame -> to_sql(method="multi", chunksize=10_000) via SQLAlchemy, capped at
             --pandas-rows rows (row-by-row INSERTs are slow: its rows/s is measured on fewer rows, marked so)
  copy_rows  DuckDB Arrow batches -> psycopg binary COPY, write_row per row
  copy_csv   DuckDB Arrow batches -> pyarrow CSV -> psycopg COPY FROM STDIN (FORMAT csv)
  airduck    airduck.serve.publish_postgres (staging table, ANALYZE, count + checksum check, atomic swap)

Every published table is checked afterwards (row count and sum of a column against the lake).
Results go to bench/out/publish_<rows>.json (and .md).
"""

from __future__ import annotations

import argparse
import os
import secrets
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
NAMES = ("pandas", "copy_rows", "copy_csv", "airduck")
LABELS = {
    "pandas": "(a) pandas to_sql multi, 10k chunks",
    "copy_rows": "(b1) psycopg binary COPY, write_row",
    "copy_csv": "(b2) psycopg COPY, Arrow→CSV stream",
    "airduck": "(c) airduck publish_postgres",
}
ADMIN_DSN = os.environ.get("AIRDUCK_BENCH_PG_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")
DSN_VAR = "BENCH_PG_DSN"


def dsn_for(admin: str, db: str) -> str:
    head, _, tail = admin.rpartition("/")
    query = ("?" + tail.split("?", 1)[1]) if "?" in tail else ""
    return f"{head}/{db}{query}"


def ensure_mart(rows: int, out: Path) -> Path:
    """A local airduck project with `gold.mart` of `rows` rows (cached) and a serve.postgres section."""
    import yaml

    from airduck.lake.commit import write
    from airduck.lake.connection import open_lake
    from airduck.project import load_project
    from bench.publish_contenders import mart_sql

    folder = out / f"publish_{rows}"
    done = folder / "mart.done"
    if done.exists():
        return folder
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    config = {"name": "bench_publish",
              "serve": {"postgres": {"dsn": "${" + DSN_VAR + "}",
                                     "tables": [{"table": "gold.mart", "name": "mart_airduck"}]}}}
    (folder / "airduck.yml").write_text(yaml.safe_dump(config, sort_keys=False))
    con = open_lake(load_project(folder))
    try:
        with write(con, "benchmark mart", step="bench"):
            con.execute(mart_sql(rows))
    finally:
        con.close()
    done.write_text(str(rows))
    return folder


def lake_facts(folder: Path, rows: int | None) -> tuple[int, int]:
    """(count, sum(vacancies)) of the first `rows` rows of gold.mart (all when None), as the contenders read them."""
    from bench.publish_contenders import _open, _select

    con = _open(folder)
    try:
        return tuple(con.execute(f"SELECT count(*), sum(vacancies) FROM ({_select(rows)})").fetchone())  # type: ignore[return-value]
    finally:
        con.close()


def pg_facts(dsn: str, table: str) -> tuple[int, int] | None:
    import psycopg
    from psycopg import sql

    with psycopg.connect(dsn, autocommit=True) as pg:
        exists = pg.execute("SELECT to_regclass(%s)", [f'public."{table}"']).fetchone()[0]
        if exists is None:
            return None
        row = pg.execute(sql.SQL("SELECT count(*), sum(vacancies) FROM {}").format(sql.Identifier(table))).fetchone()
        return int(row[0]), int(row[1] or 0)


def create_db(admin: str) -> str:
    import psycopg

    name = f"airduck_bench_{secrets.token_hex(5)}"
    with psycopg.connect(admin, autocommit=True) as pg:
        pg.execute(f'CREATE DATABASE "{name}"')
    return name


def drop_db(admin: str, name: str) -> None:
    import psycopg

    with psycopg.connect(admin, autocommit=True) as pg:
        pg.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s "
                   "AND pid <> pg_backend_pid()", [name])
        pg.execute(f'DROP DATABASE IF EXISTS "{name}"')


def _worker(args: argparse.Namespace) -> int:
    from bench.publish_contenders import CONTENDERS

    started = time.perf_counter()
    try:
        out = CONTENDERS[args.worker](args.project, os.environ[DSN_VAR], args.table,
                                      args.cap if args.cap else None)
        out["work_seconds"] = round(time.perf_counter() - started, 3)
        out["peak_rss_mib"] = common.self_peak_rss_mib()
        common.write_result(args.result, out)
        return 0
    except BaseException as exc:
        common.write_result(args.result, {"error": f"{type(exc).__name__}: {exc}"})
        raise


def summarize(runs: dict[str, list[Measurement]], rows_of: dict[str, int]) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    for name, ms in runs.items():
        good = [m for m in ms if m.ok]
        med = median([m.wall_seconds for m in good])
        summary[name] = {
            "runs": len(ms), "ok_runs": len(good), "rows": rows_of[name],
            "wall_seconds": [m.wall_seconds for m in good], "median_wall_seconds": med,
            "median_work_seconds": median([m.result["work_seconds"] for m in good if "work_seconds" in m.result]),
            "rows_per_second": rows_of[name] / med if med else None,
            "median_client_cpu_seconds": median([m.cpu_seconds for m in good if m.cpu_seconds is not None]),
            "max_rss_mib": max((m.max_rss_mib for m in good), default=None),
            "how": good[0].result.get("how") if good else None,
            "steps": good[0].result.get("steps") if len(good) == 1 else
            {k: median([m.result["steps"][k] for m in good if k in m.result.get("steps", {})])
             for k in (good[0].result.get("steps", {}) if good else {})},
            "checks": [m.result.get("check") for m in ms],
            "failures": [m.to_dict() for m in ms if not m.ok],
        }
    rate = {n: (summary.get(n) or {}).get("rows_per_second") for n in NAMES}
    best_copy = max((r for r in (rate["copy_rows"], rate["copy_csv"]) if r), default=None)
    summary["_ratios"] = {
        "airduck_vs_copy_csv": rate["airduck"] / rate["copy_csv"] if rate["airduck"] and rate["copy_csv"] else None,
        "airduck_vs_copy_rows": rate["airduck"] / rate["copy_rows"] if rate["airduck"] and rate["copy_rows"] else None,
        "airduck_vs_best_copy": rate["airduck"] / best_copy if rate["airduck"] and best_copy else None,
        "airduck_vs_pandas": rate["airduck"] / rate["pandas"] if rate["airduck"] and rate["pandas"] else None,
    }
    return summary


def report(summary: dict[str, Any]) -> str:
    rows = []
    for name in NAMES:
        s = summary.get(name)
        if not s:
            continue
        rows.append([LABELS[name], f"{s['rows']:,}", f"{s['ok_runs']}/{s['runs']}", fmt_seconds(s["median_wall_seconds"]),
                     fmt_seconds(s["median_work_seconds"]), fmt_seconds(s["median_client_cpu_seconds"]),
                     fmt_rate(s["rows"], s["median_wall_seconds"]),
                     "-" if s["max_rss_mib"] is None else f"{s['max_rss_mib']:.0f} MiB"])
    r = summary["_ratios"]
    out = [markdown_table(["contender", "rows", "ok runs", "median wall s", "median work s", "client CPU s",
                           "rows/s", "peak RSS"],
                          rows), "",
           "ratios of rows/s (higher = airduck faster): airduck / COPY csv stream "
           f"{fmt_ratio(r['airduck_vs_copy_csv'])}, airduck / COPY write_row {fmt_ratio(r['airduck_vs_copy_rows'])}, "
           f"airduck / best plain COPY {fmt_ratio(r['airduck_vs_best_copy'])} (goal ≥ 1x), "
           f"airduck / pandas {fmt_ratio(r['airduck_vs_pandas'])}"]
    capped = [n for n in NAMES if summary.get(n) and summary[n]["rows"] != max(
        summary[m]["rows"] for m in NAMES if summary.get(m))]
    if capped:
        out.append(f"note: {', '.join(capped)} ran on fewer rows (capped); its rows/s is measured on that many rows")
    out.append("")
    for name in NAMES:
        s = summary.get(name)
        if s and s["steps"]:
            out.append(f"- {name} steps: " + ", ".join(f"{k} {v:.2f}s" for k, v in s["steps"].items() if v is not None))
    bad = [(n, c) for n in NAMES if summary.get(n) for c in summary[n]["checks"] if c and not c.get("ok")]
    if bad:
        out += ["", "!!! PUBLISHED TABLE MISMATCH !!!", *(f"!!! {n}: {c}" for n, c in bad)]
    else:
        out += ["", "checks: every published table has the lake's row count and sum(vacancies)"]
    out += failure_lines(summary, NAMES)
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--pandas-rows", type=int, default=1_000_000, help="cap of the pandas contender")
    parser.add_argument("--repeat", type=int, default=None, help="default: 3 up to 2M rows, else 1")
    parser.add_argument("--contenders", default=",".join(NAMES))
    parser.add_argument("--timeout", type=float, default=1200.0)
    parser.add_argument("--pg-dsn", default=ADMIN_DSN, help="admin DSN; a scratch database is created next to it")
    parser.add_argument("--quiet-wait", type=float, default=0.0,
                        help="before each run, wait up to this many seconds until other processes use less CPU "
                        "than --max-others")
    parser.add_argument("--max-others", type=float, default=0.10,
                        help="quiet: other processes use less than this share of the CPU (runs are not retried: "
                        "the PostgreSQL server's work for the contender counts as 'others' during a run)")
    parser.add_argument("--out", type=Path, default=common.OUT_DIR)
    parser.add_argument("--worker", choices=NAMES, help=argparse.SUPPRESS)
    parser.add_argument("--project", help=argparse.SUPPRESS)
    parser.add_argument("--table", help=argparse.SUPPRESS)
    parser.add_argument("--cap", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return _worker(args)

    names = [n.strip() for n in args.contenders.split(",") if n.strip()]
    unknown = [n for n in names if n not in NAMES]
    if unknown:
        parser.error(f"unknown contender(s): {', '.join(unknown)}")
    repeat = args.repeat or (3 if args.rows <= 2_000_000 else 1)
    os.environ.setdefault(DSN_VAR, args.pg_dsn)  # to load the project here; each worker gets the scratch DSN
    t0 = time.perf_counter()
    folder = ensure_mart(args.rows, args.out)
    print(f"mart: {folder} ({args.rows:,} rows, ready in {time.perf_counter() - t0:.1f} s)", flush=True)
    caps = {n: (min(args.pandas_rows, args.rows) if n == "pandas" and args.pandas_rows < args.rows else 0)
            for n in names}
    rows_of = {n: caps[n] or args.rows for n in names}
    expected = {n: lake_facts(folder, caps[n] or None) for n in names}
    db = create_db(args.pg_dsn)
    dsn = dsn_for(args.pg_dsn, db)
    env = {**os.environ, DSN_VAR: dsn}
    runs: dict[str, list[Measurement]] = {n: [] for n in names}
    try:
        for rep in range(repeat):
            for name in names:
                work = args.out / "work" / f"publish_{name}_{rep}"
                shutil.rmtree(work, ignore_errors=True)
                work.mkdir(parents=True)
                table = "mart_airduck" if name == "airduck" else f"mart_{name}"
                cmd = common.worker_command(SCRIPT, "--worker", name, "--project", str(folder), "--table", table,
                                            "--cap", str(caps[name]), "--result", str(work / "result.json"))
                m, _ = common.measure_quietly(
                    lambda n=name, c=cmd, w=work: common.run_child(n, c, w / "result.json", w / "log.txt",
                                                                   args.timeout, env=env),
                    quiet_wait=args.quiet_wait, quiet_threshold=args.max_others, log=print)
                got = pg_facts(dsn, table) if m.ok else None
                m.result["check"] = {"ok": got == expected[name], "postgres": got, "lake": expected[name]}
                runs[name].append(m)
                shutil.rmtree(work, ignore_errors=True)
                state = "ok" if m.ok else ("TIMEOUT" if m.timed_out else f"FAILED (exit {m.exit_code})")
                print(f"  run {rep + 1}/{repeat} {name:9s} {rows_of[name]:>11,} rows {m.wall_seconds:8.2f} s  "
                      f"peak RSS {m.max_rss_mib:7.0f} MiB  {state}  check {'ok' if got == expected[name] else got}",
                      flush=True)
    finally:
        drop_db(args.pg_dsn, db)
    summary = summarize(runs, rows_of)
    text = report(summary)
    print()
    print(f"publish benchmark: gold.mart {args.rows:,} rows x 6 columns, {repeat} repeat(s)")
    print(text)
    payload = {"benchmark": "publish", "rows": args.rows, "pandas_rows": rows_of.get("pandas"), "repeat": repeat,
               "machine": common.machine_info(), "summary": summary,
               "runs": {n: [m.to_dict() for m in ms] for n, ms in runs.items()},
               "command": " ".join(["uv run python bench/publish_bench.py", *(argv or sys.argv[1:])])}
    args.out.mkdir(parents=True, exist_ok=True)
    common.write_result(args.out / f"publish_{args.rows}.json", payload)
    (args.out / f"publish_{args.rows}.md").write_text(text + "\n")
    bad = any(c and not c.get("ok") for s in summary.values() if isinstance(s, dict) and "checks" in s
              for c in s["checks"])
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
