"""Branches: what creating a branch costs on a 10M-row lake (time, bytes written), merging 0.1%, 1% and 10% updated
rows of a 10M-row table of 100 files (spread over every file, 1% in few files, 0.01% in one file) against rewriting
the table (and how many files the deletion feed of the merge opens), and
`run --atomic` against a plain run of the demo.

    uv run python bench/branch_bench.py [--rows 10000000] [--files 100] [--fractions 0.001,0.01,0.1] [--rounds 3]
        [--pg postgresql://postgres@127.0.0.1:5432/postgres] [--skip-sqlite] [--skip-lake] [--skip-demo]
        [--demo-days 14] [--demo-rounds 2] [--out bench/out/branches.json]

Everything runs in this process on a scratch folder under bench/out/; the load average of the machine is
recorded before and after each measurement (the machine is shared)."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
OUT = HERE / "out"


def load() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


def folder_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def make_project(root: Path, catalog: str | None) -> Path:
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    lake = {"catalog": catalog} if catalog else {}
    (root / "airduck.yml").write_text(yaml.safe_dump({"name": "bench", "lake": lake}))
    return root


#: the changes merged: (name, SQL condition on `id` for the rows updated on the branch)
def cases(rows: int, files: int, fractions: list[float]) -> list[tuple[str, str]]:
    out = []
    for f in fractions:  # every 1/f-th row: rows in every file
        out.append((f"update {f:.1%} spread", f"id % {round(1 / f)} = 0"))
    per_file = rows // files
    n = rows // 100  # 1% of the rows, in consecutive ids: the fewest files (straddling one file boundary)
    start = per_file // 2
    out.append(("update 1% in few files", f"id >= {start} AND id < {start + n}"))
    # 1,000 rows of one file, merged into a table whose every file has a delete file from the earlier cases
    out.append(("update 0.01% in one file", f"id >= {start} AND id < {start + rows // 10000}"))
    return out


def feed_files_read(lh, branch: str = "bench") -> tuple[int, int]:
    """The files the branch's deletion feed (silver.big, since the fork) opens: whole and pruned to the files that
    lost rows (what the merge reads). From EXPLAIN ANALYZE: a count, not a time, whatever the load."""
    import re

    from airduck.lake import branches as B

    b = B.get(lh.project, branch)
    con = B._open_pair(lh.project, b, "main")
    try:
        head = int(con.execute(f"SELECT id FROM {B.SOURCE}.current_snapshot()").fetchone()[0])
        cols = "filename AS f, file_row_number AS p"
        if not hasattr(B, "_files_that_lost_rows"):  # airduck before the pruning (a like-for-like run of it)
            sql = B._feed("ducklake_table_deletions", B.SOURCE, "silver.big", b.fork_snapshot + 1, head, cols)
            plan = "\n".join(str(r[1]) for r in con.execute("EXPLAIN ANALYZE " + sql).fetchall())
            n = sum(int(x) for x in re.findall(r"Total Files Read: (\d+)", plan))
            return n, n
        lost = B._files_that_lost_rows(con, B.SOURCE, "silver.big", b.fork_snapshot, head)
        counts = []
        for files in (None, lost):
            sql = B._feed("ducklake_table_deletions", B.SOURCE, "silver.big", b.fork_snapshot + 1, head, cols, files)
            plan = "\n".join(str(r[1]) for r in con.execute("EXPLAIN ANALYZE " + sql).fetchall())
            counts.append(sum(int(x) for x in re.findall(r"Total Files Read: (\d+)", plan)))
        return counts[0], counts[1]
    finally:
        con.close()


def lake_benchmark(rows: int, files: int, catalog: str | None, label: str, fractions: list[float],
                   rounds: int) -> dict:
    import duckdb

    from airduck.lake import branches
    from airduck.lake.connection import branch_file
    from airduck.lakehouse import Lakehouse

    root = make_project(OUT / f"branches-{label}-{rows}", catalog)
    out: dict = {"catalog": label, "rows": rows, "files": files, "rounds": rounds}
    per_file = rows // files
    with Lakehouse.open(root) as lh:
        t = time.perf_counter()
        lh.con.execute("CREATE TABLE silver.big (id BIGINT, customer BIGINT, amount DOUBLE, note VARCHAR)")
        for i in range(files):  # one data file per insert, as a table loaded over time has
            lh.con.execute(f"INSERT INTO silver.big SELECT range AS id, range % 1000 AS customer, "
                           f"(range * 7919) % 100000 / 100.0 AS amount, 'order ' || range AS note "
                           f"FROM range({i * per_file}, {(i + 1) * per_file})")
        for i in range(4):  # a few more tables and snapshots, as a lake has
            lh.con.execute(f"CREATE TABLE silver.small{i} AS SELECT range AS id FROM range(100000)")
            lh.con.execute(f"INSERT INTO silver.small{i} SELECT range + 100000 FROM range(1000)")
        out["load_s"] = round(time.perf_counter() - t, 2)
        data = root / ".airduck" / "data"
        out["data_bytes"] = folder_bytes(data) if data.exists() else None
        out["snapshots"] = lh.current_snapshot()
        out["data_files"] = lh.con.execute(
            "SELECT file_count FROM ducklake_table_info('lake') WHERE table_name = 'big'").fetchone()[0]
        before_data = folder_bytes(data) if data.exists() else None
        creates = []
        for i in range(rounds):
            out.setdefault("load_before_create", load())
            t = time.perf_counter()
            lh.create_branch("bench")
            creates.append(round(time.perf_counter() - t, 3))
            if i < rounds - 1:
                lh.delete_branch("bench")
        out["create_s"] = creates
        out["create_s_median"] = statistics.median(creates)
        out["load_after_create"] = load()
        if catalog is None:
            out["create_bytes_written"] = branch_file(lh.project, "bench").stat().st_size
            out["data_bytes_after_create"] = folder_bytes(data)
            assert out["data_bytes_after_create"] == before_data
        else:
            import psycopg

            with psycopg.connect(catalog) as conn:
                out["create_bytes_written"] = int(conn.execute(
                    "SELECT sum(pg_total_relation_size(format('%I.%I', table_schema, table_name))) "
                    "FROM information_schema.tables WHERE table_schema = 'airduck_branch_bench'").fetchone()[0])

    statements: list[tuple[float, str]] = []
    execute = duckdb.DuckDBPyConnection.execute

    def timed(self, sql, *args, **kwargs):  # where the merge's time goes: its slowest statements
        t0 = time.perf_counter()
        try:
            return execute(self, sql, *args, **kwargs)
        finally:
            statements.append((time.perf_counter() - t0, " ".join(str(sql).split())[:110]))

    refork = [0.0]

    def counted(fn):  # the time of forking the branch again after the merge commit (delete + create)
        def run(*args, **kwargs):
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                refork[0] += time.perf_counter() - t0
        return run

    out["cases"] = []
    for name, where in cases(rows, files, fractions):
        case: dict = {"case": name, "where": where, "rounds": []}
        for r in range(rounds):
            one: dict = {}
            with Lakehouse.open(root, branch="bench") as b:
                t = time.perf_counter()
                # amount + 1 + r: every round changes the values again (the same rows)
                one["changed_rows"] = b.con.execute(
                    f"UPDATE silver.big SET amount = amount + {1 + r} WHERE {where}").fetchone()[0]
                one["branch_update_s"] = round(time.perf_counter() - t, 2)
                expect = b.con.execute("SELECT count(*), round(sum(amount), 2), sum(hash(note, amount)) FROM silver.big"
                                       ).fetchone()
            with Lakehouse.open(root) as lh:
                one["feed_files_whole"], one["feed_files_read"] = feed_files_read(lh)
                one["load_before_merge"] = load()
                t = time.perf_counter()
                d = lh.diff("bench")
                one["diff_s"] = round(time.perf_counter() - t, 2)
                one["diff"] = [(x.table, x.inserted, x.deleted, x.updated) for x in d.tables]
                statements.clear()
                refork[0] = 0.0
                delete, create = branches.delete, branches.create
                branches.delete, branches.create = counted(delete), counted(create)
                duckdb.DuckDBPyConnection.execute = timed
                t = time.perf_counter()
                try:
                    result = lh.merge("bench")
                finally:
                    duckdb.DuckDBPyConnection.execute = execute
                    branches.delete, branches.create = delete, create
                one["merge_s"] = round(time.perf_counter() - t, 2)
                one["merge_refork_s"] = round(refork[0], 2)
                one["merge_slowest_statements"] = [(round(s, 2), q) for s, q in sorted(statements, reverse=True)[:5]]
                one["load_after_merge"] = load()
                got = lh.con.execute("SELECT count(*), round(sum(amount), 2), sum(hash(note, amount)) FROM silver.big"
                                     ).fetchone()
                assert got == expect, (got, expect)  # main equals the branch
                one["merge_snapshot"] = result.snapshot_id
                # the alternative: take the branch's table whole (what a merge that rewrites the table costs)
                t = time.perf_counter()
                lh.con.execute("CREATE TABLE silver.big_rewritten AS SELECT * FROM silver.big")
                one["rewrite_table_s"] = round(time.perf_counter() - t, 2)
                lh.con.execute("DROP TABLE silver.big_rewritten")
                one["load_after_rewrite"] = load()
            case["rounds"].append(one)
            print(json.dumps({"case": name, **{k: v for k, v in one.items() if k != "merge_slowest_statements"}}),
                  flush=True)
        for k in ("branch_update_s", "diff_s", "merge_s", "merge_refork_s", "rewrite_table_s"):
            case[f"{k}_median"] = statistics.median(x[k] for x in case["rounds"])
        out["cases"].append(case)
    return out


def demo_benchmark(days: int, rounds: int = 2) -> dict:
    """`rounds` interleaved rounds (plain, atomic, plain, ...), each on a fresh demo project: its first run, the same
    run again with no new data, then one more day of data (`airduck demo generate --days 1`) and a run (next day)."""
    out: dict = {"days": days, "rounds": rounds}
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRDUCK_", "AWS_"))}
    for mode in ("plain", "atomic") * rounds:
        root = OUT / f"demo-{mode}-{uuid.uuid4().hex[:6]}"
        subprocess.run([sys.executable, "-m", "airduck", "init", str(root), "--demo", "--days", str(days)],
                       check=True, capture_output=True, env=env)
        args = [sys.executable, "-m", "airduck", "-p", str(root), "run", "-q"] + (["--atomic"] if mode == "atomic" else [])
        before = load()
        t = time.perf_counter()
        proc = subprocess.run(args, capture_output=True, text=True, env=env)
        seconds = round(time.perf_counter() - t, 2)
        assert proc.returncode == 0, proc.stderr
        # the same run again, no new data: every step but ingest is skipped
        t = time.perf_counter()
        proc = subprocess.run(args, capture_output=True, text=True, env=env)
        rerun = round(time.perf_counter() - t, 2)
        assert proc.returncode == 0, proc.stderr
        # a run with one more day of data: the incremental case
        subprocess.run([sys.executable, "-m", "airduck", "-p", str(root), "demo", "generate", "--days", "1"],
                       check=True, capture_output=True, env=env)
        t = time.perf_counter()
        proc = subprocess.run(args, capture_output=True, text=True, env=env)
        again = round(time.perf_counter() - t, 2)
        out.setdefault(mode, []).append({"first_run_s": seconds, "rerun_s": rerun, "next_day_run_s": again,
                                         "ok": proc.returncode == 0,
                                         "load_before": before, "load_after": load(),
                                         "error": None if proc.returncode == 0 else proc.stderr[-2000:]})
        print(mode, json.dumps(out[mode][-1]), flush=True)
        shutil.rmtree(root, ignore_errors=True)
    return out


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--rows", type=int, default=10_000_000)
    p.add_argument("--files", type=int, default=100, help="data files of the big table (one insert each)")
    p.add_argument("--fractions", default="0.001,0.01,0.1", help="fractions of rows updated, spread over the files")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--skip-sqlite", action="store_true")
    p.add_argument("--pg", default=None, help="admin DSN: also measure a PostgreSQL catalog (a scratch database)")
    p.add_argument("--demo-days", type=int, default=14)
    p.add_argument("--demo-rounds", type=int, default=2)
    p.add_argument("--skip-demo", action="store_true")
    p.add_argument("--skip-lake", action="store_true", help="only the demo (`run --atomic` against a plain run)")
    p.add_argument("--out", type=Path, default=OUT / "branches.json")
    a = p.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    results: dict = {"nproc": os.cpu_count(), "lakes": []}
    fractions = [float(x) for x in a.fractions.split(",") if x]
    if not a.skip_sqlite and not a.skip_lake:
        results["lakes"].append(lake_benchmark(a.rows, a.files, None, "sqlite-local", fractions, a.rounds))
        print(json.dumps(results["lakes"][-1], indent=1), flush=True)
    if a.pg and not a.skip_lake:
        import psycopg

        db = f"airduck_bench_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(a.pg, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{db}"')
        try:
            head, _, _ = a.pg.rpartition("/")
            results["lakes"].append(lake_benchmark(a.rows, a.files, f"{head}/{db}", "pg-local", fractions,
                                                   a.rounds))
            print(json.dumps(results["lakes"][-1], indent=1), flush=True)
        finally:
            with psycopg.connect(a.pg, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
    if not a.skip_demo:
        results["demo"] = demo_benchmark(a.demo_days, a.demo_rounds)
        print(json.dumps(results["demo"], indent=1), flush=True)
    a.out.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
