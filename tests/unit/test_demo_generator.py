"""The demo dataset generator and the ready-made demo project."""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import stat
import subprocess
import sys
from collections import Counter
from datetime import date, timedelta
from pathlib import Path

import duckdb
import psycopg
import pytest
import yaml

from airduck.errors import ConfigError, SourceError
from airduck.project import load_project
from airduck.scaffold import create_demo_project, generate
from airduck.scaffold.generator import CITIES, COMPANY_COLUMNS, DEFAULT_START, STATE_FILE, VACANCY_COLUMNS

CITY_NAMES = {c[0] for c in CITIES}
MODELS = ("salary_by_skill_city_month", "top_growing_skills", "company_hiring_activity")


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _vacancy_files(root: Path) -> list[Path]:
    return sorted((root / "data" / "vacancies").glob("*.json"))


def _company_files(root: Path) -> list[Path]:
    return sorted((root / "data" / "companies").glob("*.csv"))


def _rows(path: Path) -> tuple[list[str], list[dict]]:
    """(broken lines, parsed rows) of one NDJSON file."""
    broken, rows = [], []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            broken.append(line)
    return broken, rows


# -- determinism and continuation ------------------------------------------------------------------------
def test_same_seed_gives_byte_identical_files(tmp_path: Path) -> None:
    a = generate(tmp_path / "a", 5, seed=7)
    generate(tmp_path / "b", 5, seed=7)
    generate(tmp_path / "c", 5, seed=8)
    tree_a, tree_b, tree_c = _tree(tmp_path / "a"), _tree(tmp_path / "b"), _tree(tmp_path / "c")
    assert len(tree_a) == 5 + 5 + 1  # vacancies, companies, state
    assert tree_a == tree_b
    assert set(tree_a) == set(tree_c)
    assert tree_a["data/vacancies/2026-10-07.json"] != tree_c["data/vacancies/2026-10-07.json"]
    assert a.days == [DEFAULT_START + timedelta(days=i) for i in range(5)]
    assert a.seed == 7 and a.companies_target == "csv"
    assert a.vacancy_lines == sum(len(p.read_text().splitlines()) for p in _vacancy_files(tmp_path / "a"))


def test_second_generate_adds_exactly_n_days_and_keeps_earlier_files(tmp_path: Path) -> None:
    root = tmp_path / "chunked"
    start = date(2026, 3, 30)
    first = generate(root, 4, start=start, vacancies_per_day=80)
    before = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in root.rglob("*.json") if p.parent.name == "vacancies"}
    before.update({p: (p.read_bytes(), p.stat().st_mtime_ns) for p in _company_files(root)})
    assert len(before) == 8

    second = generate(root, 3, vacancies_per_day=80)
    assert first.days == [start + timedelta(days=i) for i in range(4)]
    assert second.days == [start + timedelta(days=i) for i in range(4, 7)]
    assert [p.stem for p in _vacancy_files(root)] == [(start + timedelta(days=i)).isoformat() for i in range(7)]
    assert len(_company_files(root)) == 7
    assert len(second.files) == 6
    for path, (data, mtime) in before.items():  # earlier files untouched: same bytes, not even rewritten
        assert path.read_bytes() == data
        assert path.stat().st_mtime_ns == mtime
    state = json.loads((root / STATE_FILE).read_text())
    assert [d["date"] for d in state["days"]] == [(start + timedelta(days=i)).isoformat() for i in range(7)]
    # vacancy ids continue: no id of day 5 was used before
    ids = [d["first_vacancy_id"] for d in state["days"]]
    assert ids == sorted(ids) and ids[4] == ids[3] + 80

    # 4 + 3 days equal 7 days at once
    generate(tmp_path / "at_once", 7, start=start, vacancies_per_day=80)
    assert _tree(root) == _tree(tmp_path / "at_once")

    # a continuation must not change the seed or the start; days >= 0
    with pytest.raises(ConfigError, match="seed 42"):
        generate(root, 1, seed=1)
    with pytest.raises(ConfigError, match="starts on 2026-03-30"):
        generate(root, 1, start=date(2026, 1, 1))
    with pytest.raises(ConfigError, match="days must be 0 or more"):
        generate(root, -1)
    assert generate(root, 0).days == []
    assert len(_vacancy_files(root)) == 7


def test_reset_starts_the_dataset_over(tmp_path: Path) -> None:
    root = tmp_path / "p"
    generate(root, 3, seed=5)
    (root / "data" / "vacancies" / "notes.txt").write_text("mine")
    again = generate(root, 2, seed=9, reset=True)
    assert again.days == [DEFAULT_START, DEFAULT_START + timedelta(days=1)]
    assert len(_vacancy_files(root)) == 2 and len(_company_files(root)) == 2
    assert json.loads((root / STATE_FILE).read_text())["seed"] == 9
    assert (root / "data" / "vacancies" / "notes.txt").read_text() == "mine"  # only generated files go


# -- the mess ---------------------------------------------------------------------------------------------
def test_generated_files_contain_the_promised_mess(tmp_path: Path) -> None:
    result = generate(tmp_path, 14)
    mess = result.mess
    files = _vacancy_files(tmp_path)
    assert len(files) == 14

    counts: Counter[str] = Counter()
    by_id: dict[int, list[tuple[date, dict]]] = {}
    for path in files:
        day = date.fromisoformat(path.stem)
        lines = path.read_text(encoding="utf-8").splitlines()
        counts["duplicates"] += sum(n - 1 for n in Counter(lines).values())
        broken, _ = _rows(path)
        counts["broken_json_lines"] += len(broken)
        for line in dict.fromkeys(lines):  # distinct lines: duplicates count once
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue
            assert list(row) == list(VACANCY_COLUMNS)
            sf, st, pub = row["salary_from"], row["salary_to"], row["published_at"]
            counts["salary_text"] += isinstance(sf, str)
            counts["negative_salary"] += isinstance(sf, int) and sf < 0
            counts["salary_range_swapped"] += isinstance(sf, int) and isinstance(st, int) and sf > st >= 0
            counts["date_second_format"] += bool(re.fullmatch(r"\d{2}\.\d{2}\.\d{4}", pub))
            counts["date_unparseable"] += pub in ("n/a", "tbd", "soon")
            counts["missing_id"] += row["vacancy_id"] in ("", None)
            counts["messy_city"] += row["city"] not in CITY_NAMES
            iso = bool(re.fullmatch(r"\d{4}-\d{2}-\d{2}", pub))
            late = iso and date.fromisoformat(pub) < day
            counts["late_updates"] += late and not row["is_deleted"]
            counts["late_deletions"] += row["is_deleted"] is True
            assert not row["is_deleted"] or late  # only earlier vacancies are removed
            assert row["updated_at"].startswith(day.isoformat())
            if isinstance(row["vacancy_id"], int):
                by_id.setdefault(row["vacancy_id"], []).append((day, row))

    for kind in ("duplicates", "broken_json_lines", "salary_text", "negative_salary", "salary_range_swapped",
                 "date_second_format", "date_unparseable", "missing_id", "messy_city", "late_updates",
                 "late_deletions"):
        assert counts[kind] == mess[kind] > 0, kind
    assert mess["broken_json_lines"] == 4  # days 3, 6, 9 and 12
    # messy cities are the same city spelled differently: trim + lower gives a real city
    assert mess["messy_city"] >= 14 * 15

    # a late update re-publishes an earlier vacancy with a higher salary and a later updated_at
    checked = 0
    for versions in by_id.values():
        first_day, original = versions[0]
        for day, row in versions[1:]:
            if day > first_day and not row["is_deleted"] and isinstance(original["salary_from"], int) \
                    and 0 < original["salary_from"] < original["salary_to"] \
                    and original["published_at"] == first_day.isoformat():
                assert row["salary_from"] > original["salary_from"]
                assert row["updated_at"] > original["updated_at"]
                assert (row["title"], row["company_id"], row["published_at"]) == \
                       (original["title"], original["company_id"], original["published_at"])
                checked += 1
    assert checked > 50

    # companies: a snapshot first, then changes; duplicates and ragged lines
    ragged = dup = 0
    history: dict[str, set[tuple[str, str]]] = {}
    company_files = _company_files(tmp_path)
    for path in company_files:
        lines = path.read_text(encoding="utf-8").splitlines()
        dup += sum(n - 1 for n in Counter(lines).values())
        records = list(csv.reader(lines))
        assert tuple(records[0]) == COMPANY_COLUMNS
        for rec in records[1:]:
            if len(rec) != len(COMPANY_COLUMNS):
                ragged += 1
                continue
            history.setdefault(rec[0], set()).add((rec[3].strip().lower(), rec[4]))
    assert ragged == mess["ragged_csv_lines"] == 4  # days 2, 6, 10 and 14
    assert dup == mess["company_duplicates"] == 14
    first_day_rows = len(company_files[0].read_text().splitlines()) - 2  # header and the duplicate
    assert first_day_rows == 150
    assert len(history) == 150 + mess["new_companies"]
    assert sum(1 for versions in history.values() if len(versions) > 1) >= 20  # moves and resizes: SCD2 history


def test_defaults_generate_fast_and_scale(tmp_path: Path) -> None:
    import time

    t0 = time.perf_counter()
    generate(tmp_path / "default", 14)
    assert time.perf_counter() - t0 < 2.0
    big = generate(tmp_path / "big", 1, vacancies_per_day=5000)
    assert big.vacancy_lines >= 5000
    ids = {json.loads(line)["vacancy_id"] for line in _vacancy_files(tmp_path / "big")[0].read_text().splitlines()}
    assert {100_001, 105_000} <= ids


# -- PostgreSQL -------------------------------------------------------------------------------------------
def _companies(dsn: str) -> dict[int, tuple]:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute("SELECT company_id, name, industry, city, size, website, updated_at FROM companies").fetchall()
    return {r[0]: r[1:] for r in rows}


def test_companies_go_to_postgresql_and_change_over_days(tmp_path: Path, pg_database) -> None:
    dsn = pg_database()
    root = tmp_path / "pg"
    first = generate(root, 3, source_dsn=dsn, vacancies_per_day=100)
    assert first.companies_target == "postgres"
    assert not (root / "data" / "companies").exists()  # no CSV when PostgreSQL is the source
    assert len(_vacancy_files(root)) == 3
    before = _companies(dsn)
    assert len(before) == 50 + first.mess["new_companies"]
    assert {v[5].date() for v in before.values()} <= set(first.days)
    assert max(v[5] for v in before.values()).date() == first.days[-1]

    # continuing without a DSN reads DEMO_SOURCE_DSN (from .env here)
    (root / ".env").write_text(f"DEMO_SOURCE_DSN={dsn}\n")
    second = generate(root, 2, vacancies_per_day=100)
    after = _companies(dsn)
    assert second.company_rows == second.mess["company_changes"] + second.mess["new_companies"] > 0
    assert len(after) == len(before) + second.mess["new_companies"]
    changed = [cid for cid in before if after[cid] != before[cid]]
    assert changed
    for cid in changed:  # every change moved the cursor forward, into the new days
        assert after[cid][5] > before[cid][5]
        assert after[cid][5].date() in second.days
    assert any(after[cid][2].strip().lower() != before[cid][2].strip().lower() or after[cid][3] != before[cid][3]
               for cid in changed)  # moved city or changed size

    # the same seed and days give the same table in another database
    other = pg_database()
    generate(tmp_path / "pg2", 5, source_dsn=other, vacancies_per_day=100)
    assert _companies(other) == after
    assert _tree(tmp_path / "pg2") == {k: v for k, v in _tree(root).items() if k != ".env"}

    # a new dataset does not mix with rows already there
    with pytest.raises(SourceError, match="already holds"):
        generate(tmp_path / "pg3", 1, source_dsn=dsn)
    # a CSV dataset cannot switch to PostgreSQL halfway
    generate(tmp_path / "csv", 1)
    with pytest.raises(ConfigError, match="CSV files"):
        generate(tmp_path / "csv", 1, source_dsn=dsn)


def test_unreachable_source_database_names_it_without_the_password(tmp_path: Path) -> None:
    with pytest.raises(SourceError) as info:
        generate(tmp_path, 1, source_dsn="postgresql://demo:s3cr3t-pw@127.0.0.1:1/nowhere")
    assert "s3cr3t-pw" not in str(info.value)
    assert "127.0.0.1:1/nowhere" in str(info.value)
    assert not (tmp_path / "data" / "vacancies").exists()  # nothing written


# -- the demo project -------------------------------------------------------------------------------------
def test_demo_project_validates_and_matches_its_files(tmp_path: Path) -> None:
    root = tmp_path / "demo"
    path = create_demo_project(root, days=3)
    assert path == root / "airduck.yml"
    project = load_project(root)
    cfg = project.config
    assert cfg.name == "demo"
    assert cfg.lake.catalog == ".airduck/catalog.sqlite"
    assert set(cfg.sources) == {"vacancies", "companies"}
    vac, comp = cfg.sources["vacancies"], cfg.sources["companies"]
    assert (vac.type, vac.format, comp.type, comp.format) == ("files", "ndjson", "files", "csv")
    assert len(list(root.glob(vac.path))) == 3 and len(list(root.glob(comp.path))) == 3
    sv, sc = cfg.silver["vacancies"], cfg.silver["companies"]
    assert (sv.mode, sv.key, sv.order_by, sv.deleted_flag) == ("merge", ["vacancy_id"], ["updated_at"], "is_deleted")
    assert set(sv.columns) == set(VACANCY_COLUMNS)
    assert sv.columns["vacancy_id"].required and sv.columns["city"].normalize == ["trim", "lower"]
    assert sv.columns["published_at"].formats == ["%Y-%m-%d", "%d.%m.%Y"]
    assert {e.name: e.on_fail for e in sv.expectations} == {"salary_sane": "drop", "salary_range": "warn"}
    assert (sc.mode, sc.key, sc.order_by) == ("scd2", ["company_id"], ["updated_at"])
    assert set(sc.columns) == set(COMPANY_COLUMNS)
    assert cfg.gold.dbt_project == "gold/"
    assert (root / "gold" / "dbt_project.yml").is_file()
    assert cfg.serve.postgres is None
    assert cfg.serve.export.path == "exports/" and cfg.serve.export.format == ["parquet"]
    assert [t.table for t in cfg.serve.export.tables] == [f"gold.{m}" for m in MODELS]
    assert not (root / ".env").exists()
    gitignore = (root / ".gitignore").read_text().splitlines()
    assert {".airduck/", ".env", "exports/", "gold/target/"} <= set(gitignore)
    assert "airduck run" in (root / "README.md").read_text()
    assert not (root / "gold" / "models" / "_airduck_sources.yml").exists()

    # the silver expectations are valid DuckDB expressions over the silver columns
    con = duckdb.connect()
    cols = ", ".join(f"NULL::{rule.type} AS {name}" for name, rule in sv.columns.items())
    for exp in sv.expectations:
        con.execute(f"SELECT {exp.check} FROM (SELECT {cols})").fetchall()

    # an existing project is only replaced with force, which starts the data over
    with pytest.raises(ConfigError, match="already exists"):
        create_demo_project(root, days=1)
    generate(root, 2)
    create_demo_project(root, days=2, force=True)
    assert len(_vacancy_files(root)) == 2
    load_project(root)


def test_demo_project_with_postgres_source_and_serving(tmp_path: Path, pg_database) -> None:
    source, serve = pg_database(), pg_database()
    source_pw = source.replace("postgres@", "postgres:not-a-real-pw@")  # trust auth ignores the password
    root = tmp_path / "team"
    create_demo_project(root, days=2, source_dsn=source_pw, serve_dsn=serve)
    env = root / ".env"
    assert stat.S_IMODE(env.stat().st_mode) == 0o600
    text = (root / "airduck.yml").read_text()
    assert "not-a-real-pw" not in text and "${DEMO_SOURCE_DSN}" in text and "${DEMO_SERVE_DSN}" in text
    project = load_project(root, environ={})
    comp = project.config.sources["companies"]
    assert (comp.type, comp.dsn, comp.table, comp.cursor) == ("postgres", source_pw, "public.companies", "updated_at")
    pg = project.config.serve.postgres
    assert pg.dsn == serve and [t.primary_key for t in pg.tables] == [["skill", "city", "month"], ["skill"], ["company_id"]]
    assert len(_companies(source)) >= 150
    assert not (root / "data" / "companies").exists()
    # the CLI-style continuation finds the DSN in .env
    assert generate(root, 1).companies_target == "postgres"


def test_every_yaml_file_of_the_demo_loads(tmp_path: Path) -> None:
    root = tmp_path / "demo"
    create_demo_project(root, days=1)
    files = sorted(root.rglob("*.yml"))
    assert {p.name for p in files} == {"airduck.yml", "dbt_project.yml", "schema.yml"}
    docs = {p.name: yaml.safe_load(p.read_text()) for p in files}
    dbt = docs["dbt_project.yml"]
    assert dbt["profile"] == "airduck"
    assert dbt["models"][dbt["name"]]["+materialized"] == "table"
    models = {m["name"]: m for m in docs["schema.yml"]["models"]}
    assert set(models) == set(MODELS) == {p.stem for p in (root / "gold" / "models").glob("*.sql")}
    for name, model in models.items():
        tests = [t for c in model["columns"] for t in c.get("data_tests", [])] + model.get("data_tests", [])
        assert any("unique" in t for t in tests), name  # a test is a name or a {name: args} mapping
        assert any("not_null" in t for t in tests), name
    for path in (root / "gold" / "models").glob("*.sql"):
        sql = path.read_text()
        assert set(re.findall(r"source\('(\w+)', '(\w+)'\)", sql)) <= {("silver", "vacancies"), ("silver", "companies")}


# -- the gold SQL -----------------------------------------------------------------------------------------
def _render(sql: str) -> str:
    """The model SQL with dbt's source() replaced by the lake table, as airduck's sources declare it."""
    out = re.sub(r"\{\{\s*source\('(\w+)',\s*'(\w+)'\)\s*\}\}", r"lake.\1.\2", sql)
    assert "{{" not in out and "{%" not in out
    return out


SILVER_DDL = """
ATTACH ':memory:' AS lake;
CREATE SCHEMA lake.silver;
CREATE TABLE lake.silver.vacancies (vacancy_id BIGINT, company_id BIGINT, title VARCHAR, skills VARCHAR, city VARCHAR,
    salary_from DECIMAL(12,2), salary_to DECIMAL(12,2), currency VARCHAR, published_at DATE, updated_at TIMESTAMP,
    remote BOOLEAN, is_deleted BOOLEAN, _run_id VARCHAR, _batch BIGINT, _updated_at TIMESTAMPTZ);
CREATE TABLE lake.silver.companies (company_id BIGINT, name VARCHAR, industry VARCHAR, city VARCHAR, size VARCHAR,
    website VARCHAR, updated_at TIMESTAMP, valid_from TIMESTAMPTZ, valid_to TIMESTAMPTZ, is_current BOOLEAN,
    _run_id VARCHAR, _batch BIGINT, _updated_at TIMESTAMPTZ);
INSERT INTO lake.silver.vacancies VALUES
  (1, 10, 'Data Engineer', 'python;sql', 'berlin', 60000, 80000, 'EUR', DATE '2026-10-01', TIMESTAMP '2026-10-01 09:00', true, false, 'r', 1, now()),
  (2, 10, 'Data Engineer', 'python;duckdb;python', 'berlin', 70000, 90000, 'EUR', DATE '2026-10-20', TIMESTAMP '2026-10-20 09:00', false, false, 'r', 1, now()),
  (3, 11, 'Analyst', 'sql', 'london', NULL, NULL, 'GBP', DATE '2026-11-02', TIMESTAMP '2026-11-02 09:00', false, false, 'r', 1, now()),
  (4, 11, 'Analyst', 'duckdb', 'london', 50000, 60000, 'GBP', DATE '2026-11-10', TIMESTAMP '2026-11-10 09:00', true, false, 'r', 1, now()),
  (5, 11, 'Analyst', 'duckdb;sql', 'london', 52000, 62000, 'GBP', DATE '2026-11-12', TIMESTAMP '2026-11-12 09:00', false, false, 'r', 1, now());
INSERT INTO lake.silver.companies VALUES
  (10, 'Nordlytics GmbH', 'Software', 'hamburg', '11-50', 'x', TIMESTAMP '2026-09-01', TIMESTAMP '2026-09-01', TIMESTAMP '2026-10-10', false, 'r', 1, now()),
  (10, 'Nordlytics GmbH', 'Software', 'berlin', '51-200', 'x', TIMESTAMP '2026-10-10', TIMESTAMP '2026-10-10', NULL, true, 'r', 1, now()),
  (11, 'Quantforge, Inc.', 'Fintech', 'london', '1000+', 'y', TIMESTAMP '2026-09-01', TIMESTAMP '2026-09-01', NULL, true, 'r', 1, now()),
  (12, 'Idle AG', 'Energy', 'vienna', '1-10', 'z', TIMESTAMP '2026-09-01', TIMESTAMP '2026-09-01', NULL, true, 'r', 1, now());
"""


def test_gold_models_are_valid_duckdb_sql_with_the_right_numbers(tmp_path: Path) -> None:
    root = tmp_path / "demo"
    create_demo_project(root, days=1)
    con = duckdb.connect()
    con.execute(SILVER_DDL)

    def model(name: str) -> list[dict]:
        rel = con.sql(_render((root / "gold" / "models" / f"{name}.sql").read_text()))
        return [dict(zip(rel.columns, row, strict=True)) for row in rel.fetchall()]

    salary = {(r["skill"], r["city"], str(r["month"])): r for r in model("salary_by_skill_city_month")}
    assert set(salary) == {("python", "berlin", "2026-10-01"), ("sql", "berlin", "2026-10-01"),
                           ("duckdb", "berlin", "2026-10-01"), ("sql", "london", "2026-11-01"),
                           ("duckdb", "london", "2026-11-01")}
    py = salary[("python", "berlin", "2026-10-01")]
    assert (py["vacancies"], py["avg_salary_from"], py["median_salary_mid"]) == (2, 65000, 75000)  # skill once per vacancy
    sql_london = salary[("sql", "london", "2026-11-01")]
    assert (sql_london["vacancies"], sql_london["vacancies_with_salary"], sql_london["currency"]) == (2, 1, "GBP")

    growth = {r["skill"]: r for r in model("top_growing_skills")}
    # latest day 2026-11-12: last 7 days = 11-06..11-12, previous 7 = 10-30..11-05
    assert (growth["duckdb"]["vacancies_last_7d"], growth["duckdb"]["vacancies_prev_7d"]) == (2, 0)
    assert (growth["sql"]["vacancies_last_7d"], growth["sql"]["vacancies_prev_7d"], growth["sql"]["growth_pct"]) == (1, 1, 0)
    assert growth["duckdb"]["growth_rank"] == 1 and growth["python"]["vacancies_total"] == 2
    assert sorted(r["growth_rank"] for r in growth.values()) == [1, 2, 3]

    activity = {r["company_id"]: r for r in model("company_hiring_activity")}
    assert set(activity) == {10, 11, 12}  # one row per current company
    assert (activity[10]["city"], activity[10]["size"], activity[10]["open_vacancies"]) == ("berlin", "51-200", 2)
    assert (activity[11]["open_vacancies"], activity[11]["vacancies_last_7d"], activity[11]["remote_vacancies"]) == (3, 2, 1)
    assert activity[12]["open_vacancies"] == 0


# A small stand-in for the silver layer (the real one is airduck.silver): the same cleaning, in one query.
STAND_IN_SILVER = """
CREATE SCHEMA silver;
CREATE TABLE silver.vacancies AS
WITH raw AS (
  SELECT * FROM read_json(?, format = 'newline_delimited', ignore_errors = true, columns = {
    vacancy_id: 'VARCHAR', company_id: 'VARCHAR', title: 'VARCHAR', skills: 'VARCHAR', city: 'VARCHAR',
    salary_from: 'VARCHAR', salary_to: 'VARCHAR', currency: 'VARCHAR', published_at: 'VARCHAR',
    updated_at: 'VARCHAR', remote: 'VARCHAR', is_deleted: 'VARCHAR'})
), typed AS (
  SELECT TRY_CAST(vacancy_id AS BIGINT) AS vacancy_id, TRY_CAST(company_id AS BIGINT) AS company_id,
    trim(title) AS title, lower(trim(skills)) AS skills, lower(trim(city)) AS city,
    TRY_CAST(salary_from AS DECIMAL(12,2)) AS salary_from, TRY_CAST(salary_to AS DECIMAL(12,2)) AS salary_to,
    upper(trim(currency)) AS currency,
    CAST(coalesce(try_strptime(published_at, '%Y-%m-%d'), try_strptime(published_at, '%d.%m.%Y')) AS DATE) AS published_at,
    TRY_CAST(updated_at AS TIMESTAMP) AS updated_at, TRY_CAST(remote AS BOOLEAN) AS remote,
    TRY_CAST(is_deleted AS BOOLEAN) AS is_deleted, salary_from AS raw_salary_from
  FROM raw
)
SELECT * EXCLUDE (raw_salary_from) FROM typed
WHERE vacancy_id IS NOT NULL AND updated_at IS NOT NULL AND published_at IS NOT NULL
  AND (raw_salary_from IS NULL OR salary_from IS NOT NULL)
  AND coalesce(salary_from BETWEEN 0 AND 1000000 AND salary_to BETWEEN 0 AND 1000000, true)
QUALIFY row_number() OVER (PARTITION BY vacancy_id ORDER BY updated_at DESC) = 1;
DELETE FROM silver.vacancies WHERE is_deleted;
CREATE TABLE silver.companies AS
WITH typed AS (
  SELECT DISTINCT TRY_CAST(company_id AS BIGINT) AS company_id, trim(name) AS name, trim(industry) AS industry,
    lower(trim(city)) AS city, trim(size) AS size, lower(trim(website)) AS website,
    TRY_CAST(updated_at AS TIMESTAMP) AS updated_at
  FROM read_csv(?, header = true, ignore_errors = true, all_varchar = true)
  WHERE TRY_CAST(company_id AS BIGINT) IS NOT NULL AND TRY_CAST(updated_at AS TIMESTAMP) IS NOT NULL
)
SELECT *, updated_at AS valid_from, lead(updated_at) OVER w AS valid_to, lead(updated_at) OVER w IS NULL AS is_current
FROM typed WINDOW w AS (PARTITION BY company_id ORDER BY updated_at);
"""


def test_dbt_builds_the_gold_project_with_its_tests_on_generated_data(tmp_path: Path) -> None:
    dbt = Path(sys.executable).parent / "dbt"
    if not dbt.exists():
        pytest.skip("dbt is not installed in this environment")
    root = tmp_path / "demo"
    create_demo_project(root, days=14)
    lake_file = tmp_path / "lake.duckdb"  # dbt-duckdb names the database after the file: `lake`
    with duckdb.connect(str(lake_file)) as con:
        for stmt in filter(str.strip, STAND_IN_SILVER.split(";\n")):
            params = [str(root / "data/vacancies/*.json")] if "read_json" in stmt else \
                [str(root / "data/companies/*.csv")] if "read_csv" in stmt else []
            con.execute(stmt, params)
        assert con.sql("SELECT count(*) FROM silver.vacancies").fetchone()[0] > 3500

    gold = tmp_path / "gold"
    shutil.copytree(root / "gold", gold)
    (gold / "models" / "_airduck_sources.yml").write_text(yaml.safe_dump({"version": 2, "sources": [
        {"name": "silver", "database": "lake", "schema": "silver",
         "tables": [{"name": "vacancies"}, {"name": "companies"}]}]}))
    profiles = tmp_path / "profiles"
    profiles.mkdir()
    (profiles / "profiles.yml").write_text(yaml.safe_dump({"airduck": {"target": "test", "outputs": {"test": {
        "type": "duckdb", "path": str(lake_file), "schema": "gold", "threads": 1}}}}))
    env = {**os.environ, "DO_NOT_TRACK": "1", "DBT_SEND_ANONYMOUS_USAGE_STATS": "false"}
    proc = subprocess.run(
        [str(dbt), "build", "--project-dir", str(gold), "--profiles-dir", str(profiles),
         "--target-path", str(tmp_path / "target"), "--log-path", str(tmp_path / "logs")],
        capture_output=True, text=True, env=env, timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    results = json.loads((tmp_path / "target" / "run_results.json").read_text())["results"]
    assert len(results) >= 3 + 15
    assert {r["status"] for r in results} <= {"success", "pass"}
    assert "Deprecat" not in proc.stdout  # schema.yml uses the current test syntax
    with duckdb.connect(str(lake_file), read_only=True) as con:
        for name in MODELS:
            assert con.sql(f"SELECT count(*) FROM gold.{name}").fetchone()[0] > 0
        top = con.sql("SELECT skill FROM gold.top_growing_skills ORDER BY growth_rank LIMIT 5").fetchall()
        bottom = con.sql("SELECT skill FROM gold.top_growing_skills ORDER BY growth_rank DESC LIMIT 3").fetchall()
    # the built-in trends show up in the mart
    assert {"duckdb", "llm", "rust"} & {s for (s,) in top}
    assert "hadoop" in {s for (s,) in bottom}
