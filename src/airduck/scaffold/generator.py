"""A deterministic, deliberately messy job-market dataset for the demo project.

What it writes (paths relative to the project folder):

- ``data/vacancies/YYYY-MM-DD.json`` — one **NDJSON** file per day (one JSON object per line), every day.
  Fields, in this order: ``vacancy_id, company_id, title, skills, city, salary_from, salary_to, currency,
  published_at, updated_at, remote, is_deleted``. ``skills`` is a ``;``-separated string (``python;sql;dbt``),
  salaries are yearly gross amounts in the city's currency, ``published_at`` is ``YYYY-MM-DD`` and
  ``updated_at`` is ``YYYY-MM-DD HH:MM:SS``.
- ``data/companies/YYYY-MM-DD.csv`` — one **CSV** file per day with the header
  ``company_id,name,industry,city,size,website,updated_at``: every company on the first day, then only the
  companies that changed (moved city, changed size, new website) or appeared that day. When a PostgreSQL
  ``source_dsn`` is given instead, no CSV is written: the same rows are bulk-loaded (psycopg ``COPY``) into
  the table ``public.companies`` of that database and upserted day by day, so a pipeline reads it
  incrementally by its ``updated_at`` cursor.
- ``data/.generator.json`` — the generator's state (seed, first day, and per generated day the first vacancy
  id, the number of new vacancies and of companies). The next call continues after the last day.

One format per source keeps the bronze layer simple: vacancies are always NDJSON, companies always CSV
(or PostgreSQL).

Deliberate mess, so the silver rules have something to do (counted in :attr:`GenerateResult.mess`):

- ``duplicates``: exact duplicate lines within a day's vacancy file (about 1 %); one duplicate company row
  per CSV file;
- ``late_updates``: a vacancy of one of the previous 10 days re-published with a higher salary and a later
  ``updated_at`` (about 4 % of a day's volume); ``late_deletions``: the same with ``is_deleted: true`` (1 %);
- bad values: ``salary_text`` (``"negotiable"``), ``negative_salary``, ``salary_range_swapped``
  (``salary_from > salary_to``), ``date_second_format`` (``22.11.2026``, parseable with a second format),
  ``date_unparseable`` (``n/a``), ``missing_id`` (``""`` or ``null`` vacancy ids), ``messy_city``
  (``" Berlin "``, ``"BERLIN"``, ``"berlin "``), also in company rows;
- ``broken_json_lines``: a truncated JSON line on every third day (days 3, 6, 9, ...);
- ``ragged_csv_lines``: a company CSV line with one field too many or too few on days 2, 6, 10, ...

Determinism: a vacancy's attributes are a pure function of ``(seed, vacancy_id, its day)``; everything else a
day holds comes from a random generator seeded with ``(seed, date)``. Generating 14 days at once or 7 + 7 gives
byte-identical files (for the same ``vacancies_per_day``). Trends are built in: ``duckdb``, ``llm``, ``rust``
and ``dbt`` grow day by day, ``hadoop`` and ``jquery`` shrink.
"""

from __future__ import annotations

import csv
import io
import json
import os
import random
import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any

from airduck.config.secrets import redact
from airduck.errors import ConfigError, SourceError
from airduck.events import Reporter
from airduck.text import plural

STATE_FILE = "data/.generator.json"
VACANCY_DIR = "data/vacancies"
COMPANY_DIR = "data/companies"
DEFAULT_SEED = 42
DEFAULT_START = date(2026, 10, 5)
FIRST_VACANCY_ID = 100_001
MAX_COMPANIES = 20_000
SOURCE_DSN_VAR = "DEMO_SOURCE_DSN"
COMPANIES_TABLE = ("public", "companies")
STATE_VERSION = 1

VACANCY_COLUMNS = ("vacancy_id", "company_id", "title", "skills", "city", "salary_from", "salary_to", "currency",
                   "published_at", "updated_at", "remote", "is_deleted")
COMPANY_COLUMNS = ("company_id", "name", "industry", "city", "size", "website", "updated_at")

#: (city, currency, pay factor in local currency relative to a Berlin salary in EUR, weight)
CITIES: tuple[tuple[str, str, float, int], ...] = (
    ("Berlin", "EUR", 1.00, 18), ("Munich", "EUR", 1.10, 12), ("Hamburg", "EUR", 0.95, 8),
    ("Amsterdam", "EUR", 1.05, 10), ("Paris", "EUR", 0.95, 9), ("Vienna", "EUR", 0.90, 5),
    ("Lisbon", "EUR", 0.60, 6), ("Barcelona", "EUR", 0.70, 6), ("London", "GBP", 0.90, 12),
    ("Zurich", "CHF", 1.55, 6), ("Warsaw", "PLN", 2.40, 8),
)
CURRENCIES = tuple(sorted({c[1] for c in CITIES}))

#: role -> (base yearly salary in Berlin EUR, share of remote vacancies, skill pool with weights)
ROLES: dict[str, tuple[int, float, dict[str, int]]] = {
    "Data Engineer": (62_000, 0.35, {"python": 10, "sql": 10, "spark": 5, "airflow": 5, "dbt": 4, "kafka": 3,
                                     "duckdb": 2, "aws": 4, "docker": 3, "hadoop": 3}),
    "Analytics Engineer": (60_000, 0.35, {"sql": 10, "dbt": 8, "python": 5, "duckdb": 2, "looker": 3,
                                          "tableau": 3, "airflow": 3}),
    "Data Analyst": (50_000, 0.25, {"sql": 10, "excel": 8, "tableau": 5, "power bi": 5, "python": 5, "r": 2,
                                    "looker": 2}),
    "Data Scientist": (66_000, 0.30, {"python": 10, "sql": 7, "statistics": 6, "scikit-learn": 6, "pytorch": 4,
                                      "r": 3, "llm": 2}),
    "ML Engineer": (72_000, 0.35, {"python": 10, "pytorch": 7, "kubernetes": 4, "mlops": 4, "llm": 3, "aws": 3,
                                   "rust": 1}),
    "Backend Developer": (60_000, 0.30, {"python": 6, "java": 6, "go": 5, "postgresql": 6, "docker": 5,
                                         "kubernetes": 3, "rust": 2, "kafka": 2}),
    "Frontend Developer": (54_000, 0.40, {"typescript": 9, "react": 9, "javascript": 6, "css": 6, "vue": 3,
                                          "jquery": 3}),
    "DevOps Engineer": (64_000, 0.30, {"kubernetes": 8, "terraform": 7, "aws": 7, "docker": 7, "linux": 6,
                                       "python": 3, "go": 2}),
}
ROLE_WEIGHTS = {"Data Engineer": 16, "Analytics Engineer": 7, "Data Analyst": 12, "Data Scientist": 10,
                "ML Engineer": 8, "Backend Developer": 20, "Frontend Developer": 15, "DevOps Engineer": 12}
#: (title prefix, salary factor, weight)
SENIORITY: tuple[tuple[str, float, int], ...] = (("Junior", 0.72, 2), ("", 1.0, 5), ("Senior", 1.3, 4),
                                                 ("Lead", 1.55, 1))
#: daily change of a skill's weight (relative to day 0)
SKILL_TRENDS = {"duckdb": 0.12, "llm": 0.09, "rust": 0.06, "dbt": 0.04, "hadoop": -0.06, "jquery": -0.06}

INDUSTRIES = ("Software", "Fintech", "E-commerce", "Healthcare", "Logistics", "Media", "Consulting", "Energy",
              "Mobility", "Gaming")
SIZES = ("1-10", "11-50", "51-200", "201-1000", "1000+")
SIZE_WEIGHTS = (2, 5, 6, 4, 2)
_NAME_HEADS = ("Nord", "Blue", "Data", "Quant", "Alpen", "Cloud", "Pixel", "Rhein", "Iber", "Vista", "Helio",
               "Kite", "Lumen", "Orbit", "Polar", "Terra", "Vector", "Zephyr", "Amber", "Birch", "Coral", "Delta")
_NAME_TAILS = ("soft", "works", "lytics", "labs", "ware", "stack", "forge", "mind", "flow", "base", "io", "grid")
_NAME_SUFFIXES = (" GmbH", " AG", " B.V.", " Ltd", " SAS", " S.A.", ", Inc.", "")
_SALARY_TEXT = ("negotiable", "competitive", "negotiable")
_BAD_DATES = ("n/a", "tbd", "soon")

_CITY_NAMES = tuple(c[0] for c in CITIES)
_CITY_WEIGHTS = tuple(c[3] for c in CITIES)
_ROLE_NAMES = tuple(ROLE_WEIGHTS)
_ROLE_WEIGHTS = tuple(ROLE_WEIGHTS.values())
_SENIORITY_WEIGHTS = tuple(s[2] for s in SENIORITY)
_DAY_FILE = re.compile(r"^\d{4}-\d{2}-\d{2}\.(json|csv)$")

#: kinds of bad values put into new vacancies, with their share of a day's volume
_BAD_VALUES: tuple[tuple[str, float], ...] = (
    ("salary_text", 0.005), ("negative_salary", 0.005), ("salary_range_swapped", 0.01),
    ("date_second_format", 0.01), ("date_unparseable", 0.002), ("missing_id", 0.004), ("messy_city", 0.05),
)
MESS_KINDS = ("duplicates", "late_updates", "late_deletions", *(k for k, _ in _BAD_VALUES), "broken_json_lines",
              "ragged_csv_lines", "company_duplicates", "company_messy_city", "company_changes", "new_companies")


@dataclass(frozen=True)
class DayRecord:
    """One generated day, as kept in ``data/.generator.json``."""

    index: int
    day: date
    first_vacancy_id: int
    vacancies: int  # new vacancies of the day (ids first_vacancy_id .. first_vacancy_id + vacancies - 1)
    companies: int  # company ids 1..companies exist at the end of the day

    def to_dict(self) -> dict[str, Any]:
        return {"date": self.day.isoformat(), "first_vacancy_id": self.first_vacancy_id,
                "vacancies": self.vacancies, "companies": self.companies}


@dataclass
class GenerateResult:
    """What one :func:`generate` call added."""

    project_dir: Path
    days: list[date]  # the new days, in order
    files: list[Path]  # files written (vacancy NDJSON and company CSV files)
    vacancy_lines: int  # lines written to the vacancy files (broken lines and duplicates included)
    company_rows: int  # company rows written (CSV data lines, or rows upserted into PostgreSQL)
    companies_target: str  # "csv" or "postgres"
    seed: int
    state_file: Path
    mess: dict[str, int] = field(default_factory=dict)  # deliberate mess of the new days, by kind (MESS_KINDS)

    @property
    def first_day(self) -> date | None:
        return self.days[0] if self.days else None

    @property
    def last_day(self) -> date | None:
        return self.days[-1] if self.days else None


# -- state ------------------------------------------------------------------------------------------------
@dataclass
class _State:
    seed: int
    start: date
    companies_target: str
    companies_initial: int
    days: list[DayRecord]

    def to_json(self) -> str:
        data = {"version": STATE_VERSION, "seed": self.seed, "start": self.start.isoformat(),
                "companies_target": self.companies_target, "companies_initial": self.companies_initial,
                "days": [d.to_dict() for d in self.days]}
        return json.dumps(data, indent=2) + "\n"


def _load_state(root: Path) -> _State | None:
    path = root / STATE_FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        start = date.fromisoformat(data["start"])
        days = [DayRecord(i, date.fromisoformat(d["date"]), int(d["first_vacancy_id"]), int(d["vacancies"]),
                          int(d["companies"])) for i, d in enumerate(data["days"])]
        state = _State(int(data["seed"]), start, str(data["companies_target"]), int(data["companies_initial"]), days)
    except (ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"{path}: not a valid demo generator state ({exc})",
                          hint="delete the data/ folder to start the demo dataset over") from None
    if state.companies_target not in ("csv", "postgres"):
        raise ConfigError(f"{path}: companies_target must be csv or postgres, found {state.companies_target!r}")
    for i, rec in enumerate(days):
        if rec.day != start + timedelta(days=i):
            raise ConfigError(f"{path}: day {i} is {rec.day}, expected {start + timedelta(days=i)}",
                              hint="delete the data/ folder to start the demo dataset over")
    return state


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", encoding="utf-8", newline="\n") as fh:
        fh.write(text)
    os.replace(tmp, path)


def _reset(root: Path) -> None:
    """Remove what an earlier generate() wrote (day files and the state), nothing else."""
    for folder in (root / VACANCY_DIR, root / COMPANY_DIR):
        if folder.is_dir():
            for path in folder.iterdir():
                if path.is_file() and _DAY_FILE.match(path.name):
                    path.unlink()
    (root / STATE_FILE).unlink(missing_ok=True)


# -- the data ---------------------------------------------------------------------------------------------
def _round500(value: float) -> int:
    return round(value / 500.0) * 500


def _ts(day: date, rng: random.Random, start_hour: int, hours: int) -> datetime:
    return datetime.combine(day, time(start_hour)) + timedelta(seconds=rng.randrange(hours * 3600))


def _fmt_ts(value: datetime) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S")


def _messy_city(city: str, rng: random.Random) -> str:
    return rng.choice((f" {city} ", city.upper(), f"{city.lower()} ", f"  {city}", city.lower()))


class _Generator:
    def __init__(self, seed: int) -> None:
        self.seed = seed
        self._vr = random.Random()

    def _rng(self, kind: str, day: date) -> random.Random:
        return random.Random(f"airduck-demo:{self.seed}:{kind}:{day.isoformat()}")

    # -- vacancies ----------------------------------------------------------------------------------------
    def vacancy(self, vid: int, rec: DayRecord) -> tuple[dict[str, Any], tuple[int, int]]:
        """The clean vacancy `vid` as first published on its day, and its salary range (even if not shown)."""
        r = self._vr
        r.seed(self.seed * 10**12 + vid)
        role = r.choices(_ROLE_NAMES, _ROLE_WEIGHTS)[0]
        base, remote_share, pool = ROLES[role]
        prefix, factor, _ = r.choices(SENIORITY, _SENIORITY_WEIGHTS)[0]
        city, currency, pay, _ = CITIES[r.choices(range(len(CITIES)), _CITY_WEIGHTS)[0]]
        keyed = []
        for skill, weight in pool.items():
            w = weight * max(0.05, 1.0 + SKILL_TRENDS.get(skill, 0.0) * rec.index)
            keyed.append((r.random() ** (1.0 / w), skill))
        keyed.sort(reverse=True)
        skills = [s for _, s in keyed[: r.randint(2, 5)]]
        company_id = min(rec.companies, 1 + int(rec.companies * r.random() ** 1.6))
        mid = base * factor * pay * r.uniform(0.85, 1.15)
        salary_from = _round500(mid * 0.9)
        salary_to = max(salary_from + 500, _round500(mid * r.uniform(1.08, 1.3)))
        shown = r.random() >= 0.15
        remote = r.random() < remote_share
        updated = _ts(rec.day, r, 7, 11)
        row = {
            "vacancy_id": vid,
            "company_id": company_id,
            "title": f"{prefix} {role}".strip(),
            "skills": ";".join(skills),
            "city": city,
            "salary_from": salary_from if shown else None,
            "salary_to": salary_to if shown else None,
            "currency": currency,
            "published_at": rec.day.isoformat(),
            "updated_at": _fmt_ts(updated),
            "remote": remote,
            "is_deleted": False,
        }
        return row, (salary_from, salary_to)

    def vacancy_day(self, rec: DayRecord, history: list[DayRecord]) -> tuple[list[str], Counter[str]]:
        """The lines of one day's NDJSON file."""
        r = self._rng("vacancies", rec.day)
        n = rec.vacancies
        mess: Counter[str] = Counter()
        rows = [self.vacancy(rec.first_vacancy_id + i, rec)[0] for i in range(n)]

        counts = [(kind, max(1, round(n * rate)) if n >= 20 else 0) for kind, rate in _BAD_VALUES]
        spoiled = r.sample(range(n), sum(c for _, c in counts))
        pos = 0
        for kind, count in counts:
            for i in spoiled[pos: pos + count]:
                self._spoil(rows[i], kind, r, rec.day)
                mess[kind] += 1
            pos += count

        window = history[-10:]
        pool = sum(d.vacancies for d in window)
        n_updates, n_deletes = round(n * 0.04), round(n * 0.01)
        picks = r.sample(range(pool), min(pool, n_updates + n_deletes)) if pool else []
        for j, offset in enumerate(picks):
            old = window[0]
            for d in window:
                if offset < d.vacancies:
                    old = d
                    break
                offset -= d.vacancies
            row, (salary_from, salary_to) = self.vacancy(old.first_vacancy_id + offset, old)
            row["updated_at"] = _fmt_ts(_ts(rec.day, r, 7, 11))
            if j < n_updates:
                bump = r.uniform(1.03, 1.15)
                row["salary_from"] = _round500(salary_from * bump)
                row["salary_to"] = max(row["salary_from"] + 500, _round500(salary_to * bump))
                mess["late_updates"] += 1
            else:
                row["is_deleted"] = True
                mess["late_deletions"] += 1
            rows.append(row)

        if rows:
            for i in r.sample(range(len(rows)), max(1, round(len(rows) * 0.01))):
                rows.append(dict(rows[i]))
                mess["duplicates"] += 1
        r.shuffle(rows)
        lines = [json.dumps(row, ensure_ascii=False) for row in rows]
        if rec.index % 3 == 2 and lines:
            src = lines[r.randrange(len(lines))]
            lines.insert(r.randrange(len(lines) + 1), src[: max(10, int(len(src) * r.uniform(0.4, 0.8)))])
            mess["broken_json_lines"] += 1
        return lines, mess

    @staticmethod
    def _spoil(row: dict[str, Any], kind: str, r: random.Random, day: date) -> None:
        if kind == "salary_text":
            row["salary_from"] = r.choice(_SALARY_TEXT)
        elif kind == "negative_salary":
            row["salary_from"] = -abs(row["salary_from"]) if row["salary_from"] else -45_000
        elif kind == "salary_range_swapped":
            low, high = row["salary_from"] or 50_000, row["salary_to"] or 60_000
            row["salary_from"], row["salary_to"] = high, low
        elif kind == "date_second_format":
            row["published_at"] = day.strftime("%d.%m.%Y")
        elif kind == "date_unparseable":
            row["published_at"] = r.choice(_BAD_DATES)
        elif kind == "missing_id":
            row["vacancy_id"] = "" if r.random() < 0.5 else None
        elif kind == "messy_city":
            row["city"] = _messy_city(row["city"], r)

    # -- companies ----------------------------------------------------------------------------------------
    def company(self, cid: int, day: date) -> dict[str, Any]:
        r = random.Random(f"airduck-demo:{self.seed}:company:{cid}")
        stem = r.choice(_NAME_HEADS) + r.choice(_NAME_TAILS)
        return {
            "company_id": cid,
            "name": stem + r.choice(_NAME_SUFFIXES),
            "industry": r.choice(INDUSTRIES),
            "city": r.choices(_CITY_NAMES, _CITY_WEIGHTS)[0],
            "size": r.choices(SIZES, SIZE_WEIGHTS)[0],
            "website": f"https://www.{stem.lower()}{cid}.com",
            "updated_at": _ts(day, r, 6, 12),
        }

    def company_day(self, index: int, day: date, companies: dict[int, dict[str, Any]], initial: int,
                    mess: Counter[str] | None = None) -> list[dict[str, Any]]:
        """Apply one day's company changes to `companies` (in place); return the new/changed rows, clean."""
        if index == 0:
            for cid in range(1, initial + 1):
                companies[cid] = self.company(cid, day)
            return [dict(companies[cid]) for cid in sorted(companies)]
        r = self._rng("companies", day)
        ids = sorted(companies)
        changed: dict[int, dict[str, Any]] = {}
        for cid in r.sample(ids, min(len(ids), max(1, round(len(ids) * 0.03)))):
            row = dict(companies[cid])
            what = r.random()
            if what < 0.5:
                row["city"] = r.choice([c for c in _CITY_NAMES if c != row["city"]])
            elif what < 0.9:
                i = SIZES.index(row["size"])
                step = r.choice((-1, 1)) if 0 < i < len(SIZES) - 1 else (1 if i == 0 else -1)
                row["size"] = SIZES[i + step]
            else:
                row["website"] = row["website"].replace(".com", ".io")
            row["updated_at"] = _ts(day, r, 6, 12)
            companies[cid] = changed[cid] = row
        new = r.choice((0, 1, 1, 2))
        for _ in range(new):
            cid = max(companies) + 1
            companies[cid] = changed[cid] = self.company(cid, day)
        if mess is not None:
            mess["company_changes"] += len(changed) - new
            mess["new_companies"] += new
        return [dict(changed[cid]) for cid in sorted(changed)]

    def company_rows(self, day: date, rows: list[dict[str, Any]], mess: Counter[str]) -> list[dict[str, Any]]:
        """The day's company rows as delivered: some cities spelled sloppily."""
        r = self._rng("companies-mess", day)
        out = []
        for row in rows:
            row = dict(row)
            if r.random() < 0.06:
                row["city"] = _messy_city(row["city"], r)
                mess["company_messy_city"] += 1
            out.append(row)
        return out

    def company_csv(self, index: int, day: date, rows: list[dict[str, Any]], mess: Counter[str]) -> str:
        """One day's companies CSV: a duplicate row, and now and then a ragged line."""
        r = self._rng("companies-csv", day)
        records = [[row[c] if c != "updated_at" else _fmt_ts(row[c]) for c in COMPANY_COLUMNS] for row in rows]
        if records:
            records.insert(r.randrange(len(records) + 1), list(records[r.randrange(len(records))]))
            mess["company_duplicates"] += 1
        if index % 4 == 1 and records:
            ragged = list(records[r.randrange(len(records))])
            ragged = [*ragged, "hiring freeze"] if (index // 4) % 2 == 0 else ragged[:-1]
            records.insert(r.randrange(1, len(records) + 1), ragged)
            mess["ragged_csv_lines"] += 1
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(COMPANY_COLUMNS)
        writer.writerows(records)
        return buf.getvalue()


# -- PostgreSQL ---------------------------------------------------------------------------------------------
class _CompaniesTable:
    """The `public.companies` table of the source database, loaded with COPY and upserted by company_id."""

    def __init__(self, dsn: str) -> None:
        import psycopg

        self.dsn = dsn
        try:
            self.conn = psycopg.connect(dsn, connect_timeout=10)
        except psycopg.Error as exc:
            raise SourceError(f"demo generator: cannot connect to the source database {redact(dsn)}: "
                              f"{redact(str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__)}",
                              hint=f"check {SOURCE_DSN_VAR} / source_dsn and that PostgreSQL is running") from None

    def _fail(self, what: str, exc: Exception) -> SourceError:
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return SourceError(f"demo generator: {what} in {redact(self.dsn)} failed: {redact(text)}")

    def prepare(self, fresh: bool, replace: bool) -> None:
        """Create the table; on a fresh dataset refuse to mix with rows already there (unless `replace`)."""
        import psycopg
        from psycopg import sql

        table = sql.Identifier(*COMPANIES_TABLE)
        try:
            with self.conn.transaction():
                exists = self.conn.execute("SELECT to_regclass(%s)", [".".join(COMPANIES_TABLE)]).fetchone()[0]
                if exists and fresh:
                    if replace:
                        self.conn.execute(sql.SQL("DROP TABLE {}").format(table))
                    else:
                        rows = self.conn.execute(sql.SQL("SELECT count(*) FROM {}").format(table)).fetchone()[0]
                        if rows:
                            raise SourceError(
                                f"demo generator: table {'.'.join(COMPANIES_TABLE)} in {redact(self.dsn)} already "
                                f"holds {plural(rows, 'row')}, but this is a new demo dataset",
                                hint="drop the table, use an empty database, or recreate the demo with --force")
                self.conn.execute(sql.SQL(
                    "CREATE TABLE IF NOT EXISTS {} (company_id BIGINT PRIMARY KEY, name TEXT NOT NULL, "
                    "industry TEXT, city TEXT, size TEXT, website TEXT, updated_at TIMESTAMP NOT NULL)").format(table))
                self.conn.execute(sql.SQL("CREATE INDEX IF NOT EXISTS {} ON {} (updated_at)").format(
                    sql.Identifier(f"{COMPANIES_TABLE[1]}_updated_at_idx"), table))
        except psycopg.Error as exc:
            raise self._fail(f"creating {'.'.join(COMPANIES_TABLE)}", exc) from None

    def upsert(self, rows: list[dict[str, Any]]) -> int:
        """COPY the rows into a temporary table, then insert or update them by company_id (one transaction)."""
        import psycopg
        from psycopg import sql

        latest = {row["company_id"]: row for row in rows}  # one row per key per statement
        cols = sql.SQL(", ").join(sql.Identifier(c) for c in COMPANY_COLUMNS)
        updates = sql.SQL(", ").join(sql.SQL("{0} = EXCLUDED.{0}").format(sql.Identifier(c))
                                     for c in COMPANY_COLUMNS[1:])
        try:
            with self.conn.transaction():
                self.conn.execute(sql.SQL("CREATE TEMP TABLE companies_incoming (LIKE {} INCLUDING DEFAULTS) "
                                          "ON COMMIT DROP").format(sql.Identifier(*COMPANIES_TABLE)))
                with self.conn.cursor() as cur, cur.copy(
                        sql.SQL("COPY companies_incoming ({}) FROM STDIN").format(cols)) as copy:
                    for row in latest.values():
                        copy.write_row([row[c] for c in COMPANY_COLUMNS])
                self.conn.execute(sql.SQL(
                    "INSERT INTO {} ({cols}) SELECT {cols} FROM companies_incoming "
                    "ON CONFLICT (company_id) DO UPDATE SET {updates}").format(
                    sql.Identifier(*COMPANIES_TABLE), cols=cols, updates=updates))
        except psycopg.Error as exc:
            raise self._fail(f"loading {'.'.join(COMPANIES_TABLE)}", exc) from None
        return len(latest)

    def close(self) -> None:
        self.conn.close()


# -- the entry point ----------------------------------------------------------------------------------------
def generate(project_dir: Path | str, days: int = 14, *, seed: int | None = None, start: date | None = None,
             source_dsn: str | None = None, vacancies_per_day: int = 300, reset: bool = False,
             reporter: Reporter | None = None) -> GenerateResult:
    """Add `days` new days of demo data after the last day already generated in `project_dir`.

    The first call starts a dataset at `start` (default 2026-10-05) with `seed` (default 42) and remembers
    both in ``data/.generator.json``; later calls continue it and must not pass a different seed or start.
    `source_dsn` (a PostgreSQL DSN) sends companies to ``public.companies`` of that database instead of CSV
    files; a dataset keeps its choice, and a continuing call without `source_dsn` reads ``DEMO_SOURCE_DSN``
    from the environment or the project's ``.env``. `vacancies_per_day` new vacancies are written per day (plus
    the late updates, deletions and duplicates); the number of companies is fixed by the first call
    (``vacancies_per_day // 2``, between 20 and 20,000). `reset` deletes the day files and the state first (and
    recreates the companies table in PostgreSQL). The same seed, days and volume give byte-identical files.
    """
    root = Path(project_dir)
    reporter = reporter or Reporter()
    if days < 0:
        raise ConfigError(f"demo generator: days must be 0 or more, found {days}")
    if vacancies_per_day < 0:
        raise ConfigError(f"demo generator: vacancies_per_day must be 0 or more, found {vacancies_per_day}")
    if reset:
        _reset(root)
    state = _load_state(root)
    fresh = state is None or not state.days
    if state is None:
        state = _State(seed=DEFAULT_SEED if seed is None else seed, start=start or DEFAULT_START,
                       companies_target="postgres" if source_dsn else "csv",
                       companies_initial=min(MAX_COMPANIES, max(20, vacancies_per_day // 2)), days=[])
    else:
        state_file = root / STATE_FILE
        if seed is not None and seed != state.seed:
            raise ConfigError(f"{state_file}: this demo dataset was generated with seed {state.seed}, not {seed}",
                              hint="omit the seed to continue it, or start over with reset (airduck init --demo --force)")
        if start is not None and start != state.start:
            raise ConfigError(f"{state_file}: this demo dataset starts on {state.start}, not {start}",
                              hint="omit start to continue it, or start over with reset")
        if state.companies_target == "csv" and source_dsn:
            raise ConfigError(f"{state_file}: this demo dataset writes companies as CSV files, not to PostgreSQL",
                              hint="omit source_dsn, or start over with reset")
        if state.companies_target == "postgres" and not source_dsn:
            from airduck.config.loader import project_env

            source_dsn = project_env(root).get(SOURCE_DSN_VAR)
            if not source_dsn:
                raise ConfigError(f"{state_file}: this demo dataset loads companies into PostgreSQL, but no DSN "
                                  f"is given", hint=f"pass source_dsn or set {SOURCE_DSN_VAR} (or put it in .env)")
    gen = _Generator(state.seed)

    companies: dict[int, dict[str, Any]] = {}
    for rec in state.days:  # replay the companies' history (cheap: a few changes a day)
        gen.company_day(rec.index, rec.day, companies, state.companies_initial)

    table = _CompaniesTable(source_dsn) if state.companies_target == "postgres" and days and source_dsn else None
    files: list[Path] = []
    mess: Counter[str] = Counter()
    new_days: list[date] = []
    vacancy_lines = company_rows = 0
    reporter.start("demo data", total=days)
    try:
        if table is not None:
            table.prepare(fresh=fresh, replace=reset)
        for _ in range(days):
            index = len(state.days)
            day = state.start + timedelta(days=index)
            changes = gen.company_day(index, day, companies, state.companies_initial, mess)
            prev = state.days[-1] if state.days else None
            first_id = prev.first_vacancy_id + prev.vacancies if prev else FIRST_VACANCY_ID
            rec = DayRecord(index, day, first_id, vacancies_per_day, max(companies))
            lines, day_mess = gen.vacancy_day(rec, state.days)
            mess.update(day_mess)
            path = root / VACANCY_DIR / f"{day.isoformat()}.json"
            _write_atomic(path, "".join(line + "\n" for line in lines))
            files.append(path)
            vacancy_lines += len(lines)
            rows = gen.company_rows(day, changes, mess)
            if table is not None:
                company_rows += table.upsert(rows)
            else:
                text = gen.company_csv(index, day, rows, mess)
                path = root / COMPANY_DIR / f"{day.isoformat()}.csv"
                _write_atomic(path, text)
                files.append(path)
                company_rows += text.count("\n") - 1
            state.days.append(rec)
            _write_atomic(root / STATE_FILE, state.to_json())
            new_days.append(day)
            reporter.advance("demo data", rows=len(lines), done=len(new_days))
        if not days:
            _write_atomic(root / STATE_FILE, state.to_json())
    finally:
        if table is not None:
            table.close()
    reporter.finish("demo data", days=len(new_days), vacancy_lines=vacancy_lines, company_rows=company_rows)
    return GenerateResult(project_dir=root, days=new_days, files=files, vacancy_lines=vacancy_lines,
                          company_rows=company_rows, companies_target=state.companies_target, seed=state.seed,
                          state_file=root / STATE_FILE, mess={k: mess.get(k, 0) for k in MESS_KINDS})
