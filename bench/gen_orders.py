"""Generator of realistic, messy order CSV files for the pipeline benchmark (vectorised in DuckDB).

`generate(rows, seed)` writes ``bench/out/orders_<rows>_s<seed>/orders_NN.csv`` (cached: a finished folder has a
``manifest.json`` and is reused) and returns a :class:`Dataset`. Every value is a pure function of (row index,
seed) through DuckDB's ``hash``, so the same (rows, seed) gives the same bytes, and no Python loop runs per row.

Columns: ``order_id, customer_id, customer_name, city, amount, currency, status, created_at, updated_at``.

What makes the data messy (rates are of all rows, approximate):

* ``customer_name`` and ``city``: random case (UPPER, lower, Title) and stray leading/trailing/double spaces;
  names are always quoted;
* ``order_id`` empty in ~0.2% of rows (violates ``required``);
* ``amount``: ~1% negative, ~0.5% the text ``n/a``, ~0.2% empty; otherwise like ``123.45``;
* ``updated_at``: ~0.3% written ``DD/MM/YYYY HH:MM:SS`` instead of ``YYYY-MM-DD HH:MM:SS``;
* ~3% of rows repeat the ``order_id`` of an earlier row with a later ``updated_at`` (the later row wins);
* ~0.5% ragged lines: half with an unquoted comma in the city (one field too many), half cut short
  (the last two fields missing).

``updated_at`` is ``2024-01-01 00:00:00`` plus the row index in seconds, so it is unique per row: "latest
``updated_at`` per ``order_id``" has no ties and every contender must keep exactly the same rows.

The manifest holds the expected outcome of the benchmark's cleaning rules (see :data:`RULES`, the semantics of
airduck's silver layer), computed from the generator's own row attributes (not by parsing the CSV), so it is an
independent oracle for the contenders.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import duckdb

OUT_DIR = Path(__file__).resolve().parent / "out"
HEADER = "order_id,customer_id,customer_name,city,amount,currency,status,created_at,updated_at"
COLUMNS = tuple(HEADER.split(","))
TS_FORMATS = ("%Y-%m-%d %H:%M:%S", "%d/%m/%Y %H:%M:%S")
#: bump when RULES (and so the expected counts) change: cached data sets get new expected counts, same bytes
ORACLE_VERSION = 2

#: the cleaning every contender implements, in words (docs/benchmarks.md repeats it)
RULES = (
    "ragged CSV lines (wrong number of fields) are rejected and kept with their raw text",
    "order_id BIGINT, required; customer_id BIGINT; customer_name and city trimmed and lower-cased",
    "amount DECIMAL(12,2): an empty field is NULL (kept); a value that does not cast (e.g. 'n/a') quarantines the row",
    "created_at TIMESTAMP; updated_at TIMESTAMP in either of two formats (a value that parses in neither quarantines)",
    "dedup first: per order_id the row with the latest updated_at wins; rows without an order_id go on to the checks",
    "then the checks on the winners: order_id required, casts, expectation amount >= 0 (NULL passes), on_fail drop: "
    "a failing winner is quarantined with its reasons and raw values, and its key gets no clean row (the older "
    "versions it replaced are superseded, not resurrected)",
)

_FIRST = ["Alice", "Bob", "Carla", "Dmitri", "Emma", "Farid", "Grace", "Hiro", "Ines", "Jonas", "Kemal", "Lena",
          "Marco", "Nadia", "Oscar", "Priya", "Quentin", "Rosa", "Sven", "Tanya"]
_LAST = ["Smith", "Garcia", "Ivanova", "Chen", "Müller", "Rossi", "Dubois", "Kowalski", "Novak", "Silva",
         "Jensen", "O'Brien", "Haddad", "Tanaka", "Popescu", "Nguyen"]
_CITIES = ["Berlin", "Amsterdam", "Paris", "Lisbon", "Warsaw", "Prague", "Vienna", "Madrid", "Rome", "Oslo",
           "New York", "São Paulo", "Tel Aviv", "Hong Kong", "Buenos Aires"]
_CURRENCIES = ["EUR", "USD", "GBP", "PLN", "CHF"]
_STATUSES = ["new", "paid", "shipped", "delivered", "cancelled", "refunded"]


@dataclass(frozen=True)
class Dataset:
    """A generated data set: its folder, the CSV glob and the expected counts (the manifest)."""

    folder: Path
    rows: int
    seed: int
    files: int
    manifest: dict

    @property
    def glob(self) -> str:
        return str(self.folder / "orders_*.csv")

    @property
    def paths(self) -> list[Path]:
        return sorted(self.folder.glob("orders_*.csv"))

    @property
    def expected(self) -> dict[str, int]:
        return self.manifest["expected"]


def _list(values: list[str]) -> str:
    return "[" + ", ".join("'" + v.replace("'", "''") + "'" for v in values) + "]"


def _pick(values: list[str], h: str) -> str:
    return f"{_list(values)}[1 + ({h} % {len(values)})::BIGINT]"


def _messy(expr: str, h: str) -> str:
    """Random case and stray spaces around/inside a clean value (h: a hash column)."""
    case = (f"CASE ({h} % 3) WHEN 0 THEN upper({expr}) WHEN 1 THEN lower({expr}) ELSE {expr} END")
    inner = f"CASE WHEN ({h} // 3) % 7 = 0 THEN replace({case}, ' ', '  ') ELSE {case} END"
    return (f"CASE ({h} // 21) % 4 WHEN 0 THEN '  ' || {inner} WHEN 1 THEN {inner} || ' ' "
            f"WHEN 2 THEN ' ' || {inner} || '  ' ELSE {inner} END")


def _attributes_sql(rows: int, seed: int) -> str:
    """One row per generated record with its attributes (clean values and what is wrong with it)."""
    s = int(seed)

    def h(tag: int) -> str:
        return f"hash(i, {s}, {tag})"

    return f"""
    SELECT
        i,
        -- a duplicate repeats the key of an earlier row; its updated_at is later (updated_at grows with i)
        CASE WHEN i > 100 AND {h(1)} % 1000 < 30 THEN 1000000 + ({h(2)} % i)::BIGINT ELSE 1000000 + i END AS order_id,
        {h(3)} % 1000 < 2 AS id_missing,
        1 + ({h(4)} % 500000)::BIGINT AS customer_id,
        {_pick(_FIRST, h(5))} || ' ' || {_pick(_LAST, h(6))} AS name_clean,
        {h(7)} AS name_h,
        {_pick(_CITIES, h(8))} AS city_clean,
        {h(9)} AS city_h,
        (({h(10)} % 200000)::BIGINT + 1) AS cents,
        CASE WHEN {h(11)} % 1000 < 10 THEN 'negative' WHEN {h(11)} % 1000 < 15 THEN 'na'
             WHEN {h(11)} % 1000 < 17 THEN 'empty' ELSE 'ok' END AS amount_kind,
        {_pick(_CURRENCIES, h(12))} AS currency,
        {_pick(_STATUSES, h(13))} AS status,
        TIMESTAMP '2024-01-01 00:00:00' + to_seconds(i) AS updated_at,
        TIMESTAMP '2024-01-01 00:00:00' + to_seconds(i) - to_seconds(({h(14)} % 2592000)::BIGINT) AS created_at,
        {h(15)} % 1000 < 3 AS alt_format,
        CASE WHEN {h(16)} % 1000 < 3 THEN 'extra' WHEN {h(16)} % 1000 < 5 THEN 'short' ELSE 'ok' END AS ragged
    FROM range({int(rows)}) AS t(i)
    """


def _line_sql() -> str:
    amount = ("CASE amount_kind WHEN 'negative' THEN '-' || printf('%.2f', cents / 100.0) WHEN 'na' THEN 'n/a' "
              "WHEN 'empty' THEN '' ELSE printf('%.2f', cents / 100.0) END")
    updated = (f"CASE WHEN alt_format THEN strftime(updated_at, '{TS_FORMATS[1]}') "
               f"ELSE strftime(updated_at, '{TS_FORMATS[0]}') END")
    city = f"CASE WHEN ragged = 'extra' THEN city_clean || ', Region' ELSE {_messy('city_clean', 'city_h')} END"
    head = (f"CASE WHEN id_missing THEN '' ELSE CAST(order_id AS VARCHAR) END || ',' || customer_id || ',\"' || "
            f"replace({_messy('name_clean', 'name_h')}, '\"', '\"\"') || '\",' || {city} || ',' || {amount} || ',' || "
            "currency || ',' || status")
    return (f"CASE WHEN ragged = 'short' THEN {head} ELSE {head} || ',' || strftime(created_at, '{TS_FORMATS[0]}') "
            f"|| ',' || {updated} END")


def expected_counts(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    """The outcome of :data:`RULES` on table `attrs`, computed from the attributes (the oracle)."""
    row = con.execute("""
        WITH read AS (SELECT * FROM attrs WHERE ragged = 'ok'),
        -- updated_at grows with i: the latest row of a key is the one with the largest i
        staged AS (
            SELECT *, FALSE AS keyless FROM read WHERE NOT id_missing QUALIFY i = max(i) OVER (PARTITION BY order_id)
            UNION ALL
            SELECT *, TRUE AS keyless FROM read WHERE id_missing),
        judged AS (SELECT *, keyless OR amount_kind IN ('negative', 'na') AS quarantined FROM staged)
        SELECT
            (SELECT count(*) FROM attrs),
            (SELECT count(*) FROM attrs WHERE ragged <> 'ok'),
            (SELECT count(*) FROM read),
            (SELECT count(*) FROM judged WHERE quarantined),
            (SELECT count(*) FROM judged WHERE NOT quarantined),
            (SELECT count(*) FROM judged WHERE NOT quarantined AND amount_kind = 'empty'),
            (SELECT count(*) FROM read WHERE alt_format)
    """).fetchone()
    keys = ("rows", "rejected", "read", "quarantined", "clean", "clean_null_amount", "alt_format_read")
    return dict(zip(keys, (int(v) for v in row), strict=True))


def generate(rows: int, seed: int = 42, files: int = 10, out_dir: Path | None = None,
             threads: int | None = None) -> Dataset:
    """Write (or reuse) `files` CSV files with `rows` records in total. Returns the Dataset with its manifest."""
    if rows < 1 or files < 1:
        raise ValueError("rows and files must be positive")
    files = min(files, rows)
    folder = (out_dir or OUT_DIR) / f"orders_{rows}_s{seed}_f{files}"
    manifest_path = folder / "manifest.json"
    if manifest_path.exists():
        manifest = json.loads(manifest_path.read_text())
        if manifest.get("oracle_version") != ORACLE_VERSION:
            con = duckdb.connect(config={"threads": threads} if threads else {})
            try:
                con.execute(f"CREATE TEMP TABLE attrs AS {_attributes_sql(rows, seed)}")
                manifest.update(expected=expected_counts(con), rules=list(RULES), oracle_version=ORACLE_VERSION)
            finally:
                con.close()
            manifest_path.write_text(json.dumps(manifest, indent=2))
        return Dataset(folder, rows, seed, files, manifest)
    if folder.exists():
        shutil.rmtree(folder)  # an interrupted generation
    tmp = folder.with_name(folder.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    started = time.perf_counter()
    con = duckdb.connect(config={"threads": threads} if threads else {})
    try:
        con.execute(f"CREATE TEMP TABLE attrs AS {_attributes_sql(rows, seed)}")
        expected = expected_counts(con)
        bounds = [rows * k // files for k in range(files + 1)]
        header = HEADER.replace("'", "''")
        for k in range(files):
            path = tmp / f"orders_{k:02d}.csv"
            # each line is built as one text value and written unquoted (ragged lines must stay ragged)
            con.execute(f"""
                COPY (SELECT line FROM (
                        SELECT -1 AS i, '{header}' AS line
                        UNION ALL
                        SELECT i, {_line_sql()} AS line FROM attrs WHERE i >= {bounds[k]} AND i < {bounds[k + 1]}
                      ) ORDER BY i)
                TO '{path}' (FORMAT csv, HEADER false, DELIMITER '\x1f', QUOTE '\x02', ESCAPE '\x02')
            """)
    finally:
        con.close()
    manifest = {
        "rows": rows, "seed": seed, "files": files, "columns": list(COLUMNS), "rules": list(RULES),
        "expected": expected, "oracle_version": ORACLE_VERSION, "generated_seconds": round(time.perf_counter() - started, 2),
        "bytes": sum(p.stat().st_size for p in tmp.glob("*.csv")),
    }
    (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2))
    tmp.rename(folder)
    return Dataset(folder, rows, seed, files, manifest)


def main(argv: list[str] | None = None) -> None:
    import argparse

    parser = argparse.ArgumentParser(description="Generate messy order CSV files under bench/out/.")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--files", type=int, default=10)
    args = parser.parse_args(argv)
    ds = generate(args.rows, args.seed, args.files)
    print(json.dumps({"folder": str(ds.folder), **ds.manifest}, indent=2))


if __name__ == "__main__":
    main()
