"""Correctness of the benchmark harness (no timings asserted): `uv run pytest bench -q`.

The generator's data is messy in the documented ways, every contender produces the counts of the generator's
oracle, the child-process measurement reports memory and kills runaway children, and every publish contender
writes the whole mart to a real PostgreSQL.
"""

from __future__ import annotations

import csv
import os
import sys
import uuid
from pathlib import Path

import psycopg
import pytest

from bench import common, gen_orders, pipeline_bench, pipeline_contenders, publish_bench, publish_contenders

PG_ADMIN = os.environ.get("AIRDUCK_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> gen_orders.Dataset:
    return gen_orders.generate(20_000, seed=7, files=3, out_dir=tmp_path_factory.mktemp("orders"))


def test_generator_is_messy_as_documented(dataset: gen_orders.Dataset) -> None:
    paths = dataset.paths
    assert len(paths) == 3
    records: list[list[str]] = []
    for path in paths:
        with path.open(newline="") as fh:
            rows = list(csv.reader(fh))
        assert rows[0] == list(gen_orders.COLUMNS)
        records += rows[1:]
    exp = dataset.expected
    assert len(records) == exp["rows"] == 20_000
    ragged = [r for r in records if len(r) != len(gen_orders.COLUMNS)]
    assert len(ragged) == exp["rejected"] > 0
    good = [r for r in records if len(r) == len(gen_orders.COLUMNS)]
    assert len(good) == exp["read"]
    ids = [r[0] for r in good if r[0]]
    assert len(ids) - len(set(ids)) > 0.02 * len(ids)  # ~3% repeated keys
    assert any(r[0] == "" for r in good)
    assert any(r[4] == "n/a" for r in good) and any(r[4].startswith("-") for r in good)
    assert any("/" in r[8] for r in good)  # the second timestamp format
    assert any(r[2] != r[2].strip() for r in good) and any(r[3] != r[3].strip().lower() for r in good)
    assert exp["quarantined"] > 0 and 0 < exp["clean"] < len(set(ids))


def test_generator_is_deterministic_and_cached(dataset: gen_orders.Dataset, tmp_path: Path) -> None:
    again = gen_orders.generate(20_000, seed=7, files=3, out_dir=tmp_path)
    assert [p.read_bytes() for p in again.paths] == [p.read_bytes() for p in dataset.paths]
    stamp = again.paths[0].stat().st_mtime_ns
    cached = gen_orders.generate(20_000, seed=7, files=3, out_dir=tmp_path)
    assert cached.paths[0].stat().st_mtime_ns == stamp and cached.expected == again.expected
    other = gen_orders.generate(20_000, seed=8, files=3, out_dir=tmp_path)
    assert other.paths[0].read_bytes() != again.paths[0].read_bytes()


@pytest.mark.parametrize("name", ["pandas", "duckdb", "duckdb_bronze", "airduck", "airduck_atomic"])
def test_contenders_match_the_oracle(dataset: gen_orders.Dataset, tmp_path: Path, name: str) -> None:
    out = pipeline_contenders.CONTENDERS[name](dataset.folder, tmp_path / name)
    counts = out["counts"]
    for key in pipeline_bench.COUNT_KEYS:
        assert counts[key] == dataset.expected[key], (name, key, counts, dataset.expected)
    assert out["steps"]


def test_summary_reports_a_count_mismatch_loudly() -> None:
    good = {"rejected": 1, "read": 10, "quarantined": 2, "clean": 7, "clean_null_amount": 0}
    runs = {
        "pandas": [common.Measurement("pandas", 2.0, 100, 0, {"counts": good, "steps": {}})],
        "duckdb": [common.Measurement("duckdb", 1.0, 50, 0, {"counts": {**good, "clean": 6}, "steps": {}})],
        "duckdb_bronze": [common.Measurement("duckdb_bronze", 1.5, 60, 0, {"counts": good, "steps": {}})],
        "airduck": [common.Measurement("airduck", 1.2, 60, 0, {"counts": good, "steps": {}})],
    }
    summary = pipeline_bench.summarize(10, runs, good)
    assert summary["_mismatches"] == ["duckdb: clean = 6, expected 7"]
    assert summary["_ratios"]["airduck_over_duckdb"] == pytest.approx(1.2)
    assert summary["_ratios"]["airduck_over_duckdb_bronze"] == pytest.approx(0.8)
    assert summary["_ratios"]["airduck_speedup_vs_pandas"] == pytest.approx(2.0 / 1.2)
    assert "COUNT MISMATCH" in pipeline_bench.report(10, summary, good)


def test_run_child_measures_memory_and_kills_on_timeout(tmp_path: Path) -> None:
    # the child allocates 300 MiB and sleeps (so the parent's polling sees it) but does not report itself
    alloc = ("import json, sys, time; b = bytearray(300 * 1024 * 1024); b[::4096] = b'x' * len(b[::4096]); "
             "time.sleep(0.5); json.dump({'ok': 1}, open(sys.argv[1], 'w'))")
    m = common.run_child("alloc", [sys.executable, "-c", alloc, str(tmp_path / "r.json")], tmp_path / "r.json",
                         tmp_path / "log.txt", timeout=60)
    assert m.ok and m.result == {"ok": 1}
    assert 300 <= m.max_rss_mib < 600
    # a small child of a big parent is small: the parent's pre-exec memory does not count
    big = bytearray(400 * 1024 * 1024)
    big[::4096] = b"x" * len(big[::4096])
    small = ("import json, sys; from bench import common; "
             "json.dump({'peak_rss_mib': common.self_peak_rss_mib()}, open(sys.argv[1], 'w'))")
    m = common.run_child("small", [sys.executable, "-c", small, str(tmp_path / "m.json")], tmp_path / "m.json",
                         tmp_path / "log4.txt", timeout=60)
    del big
    assert m.ok and m.max_rss_mib < 200, m.to_dict()
    sleeper = common.run_child("sleep", [sys.executable, "-c", "import time; time.sleep(60)"], tmp_path / "s.json",
                               tmp_path / "log2.txt", timeout=0.5)
    assert sleeper.timed_out and not sleeper.ok and sleeper.wall_seconds < 30
    failing = common.run_child("fail", [sys.executable, "-c", "raise SystemExit('boom')"], tmp_path / "f.json",
                               tmp_path / "log3.txt", timeout=30)
    assert failing.exit_code == 1 and "boom" in failing.log_tail


def test_publish_contenders_write_the_whole_mart(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    db = f"airduck_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as pg:
        pg.execute(f'CREATE DATABASE "{db}"')
    try:
        dsn = publish_bench.dsn_for(PG_ADMIN, db)
        monkeypatch.setenv(publish_bench.DSN_VAR, dsn)
        folder = publish_bench.ensure_mart(3_000, tmp_path)
        assert publish_bench.ensure_mart(3_000, tmp_path) == folder  # cached
        whole = publish_bench.lake_facts(folder, None)
        assert whole[0] == 3_000
        for name in ("copy_rows", "copy_csv", "airduck"):
            table = "mart_airduck" if name == "airduck" else f"mart_{name}"
            out = publish_contenders.CONTENDERS[name](folder, dsn, table, None)
            assert out["rows"] == 3_000
            assert publish_bench.pg_facts(dsn, table) == whole, name
        out = publish_contenders.run_pandas(folder, dsn, "mart_pandas", 1_000)
        assert out["rows"] == 1_000
        assert publish_bench.pg_facts(dsn, "mart_pandas") == publish_bench.lake_facts(folder, 1_000)
        with psycopg.connect(dsn) as pg:  # NULLs and decimals survive the CSV route
            nulls = pg.execute("SELECT count(*) FROM mart_copy_csv WHERE median_salary IS NULL").fetchone()[0]
            same = pg.execute("SELECT count(*) FROM mart_copy_csv c JOIN mart_airduck a USING (skill, city, month) "
                              "WHERE c.median_salary IS NOT DISTINCT FROM a.median_salary "
                              "AND c.avg_salary = a.avg_salary").fetchone()[0]
        assert nulls > 0 and same == 3_000
    finally:
        publish_bench.drop_db(PG_ADMIN, db)
