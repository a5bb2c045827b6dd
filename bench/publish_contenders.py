"""The contenders of the publish benchmark: a gold mart from a local DuckLake into PostgreSQL.

Each ``run_<name>(project_dir, dsn, table, rows) -> dict`` copies the first `rows` rows of ``gold.mart`` (all of
it when `rows` is None) into the PostgreSQL table `table` (replacing it) and returns
``{"rows": n, "steps": {step: seconds}, ...}``. The harness (`publish_bench.py`) runs each in its own process and
checks the published table afterwards. Importing this module has no side effects.

The mart has 6 columns so that pandas' ``to_sql(method="multi", chunksize=10_000)`` fits PostgreSQL's limit of
65,535 bind parameters per statement (10,000 rows x 6 columns = 60,000).
"""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.pipeline_contenders import QueryTimer, Steps

MART = "gold.mart"
#: the mart's columns: DuckDB type and the PostgreSQL type a hand-written loader would declare
MART_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("skill", "VARCHAR", "text"),
    ("city", "VARCHAR", "text"),
    ("month", "DATE", "date"),
    ("vacancies", "BIGINT", "bigint"),
    ("avg_salary", "DOUBLE", "double precision"),
    ("median_salary", "DECIMAL(12,2)", "numeric(12,2)"),
)
BATCH_ROWS = 100_000


def mart_sql(rows: int) -> str:
    """CREATE TABLE gold.mart: one row per (skill, city, month), deterministic values, ~5% NULL medians."""
    skills = ("python", "sql", "java", "go", "rust", "scala", "kotlin", "typescript", "react", "spark", "dbt",
              "airflow", "kubernetes", "terraform", "aws", "gcp", "azure", "pandas", "duckdb", "postgres")
    lst = "[" + ", ".join(f"'{s}'" for s in skills) + "]"
    return f"""
        CREATE TABLE lake.gold.mart AS
        SELECT {lst}[1 + (i % {len(skills)})] || '_' || ((i // {len(skills)}) % 250) AS skill,
               'city_' || ((i // 5000) % 200) AS city,
               CAST(DATE '2020-01-01' + to_months(CAST(i // 1000000 AS INTEGER)) AS DATE) AS month,
               CAST(1 + hash(i, 1) % 5000 AS BIGINT) AS vacancies,
               round(30000 + (hash(i, 2) % 9000000) / 100.0, 2) AS avg_salary,
               CASE WHEN hash(i, 3) % 100 < 5 THEN NULL
                    ELSE CAST(25000 + (hash(i, 4) % 10000000) / 100.0 AS DECIMAL(12,2)) END AS median_salary
        FROM range({int(rows)}) AS t(i)
    """


def _open(project_dir: str | Path) -> Any:
    from airduck.lake.connection import open_lake
    from airduck.project import load_project

    return open_lake(load_project(project_dir))


def _select(rows: int | None) -> str:
    cols = ", ".join(c for c, _, _ in MART_COLUMNS)
    return f"SELECT {cols} FROM {MART}" + (f" LIMIT {int(rows)}" if rows is not None else "")


def _create_pg_table(pg: Any, table: str) -> None:
    from psycopg import sql

    pg.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(table)))
    cols = sql.SQL(", ").join(sql.SQL("{} {}").format(sql.Identifier(c), sql.SQL(t)) for c, _, t in MART_COLUMNS)
    pg.execute(sql.SQL("CREATE TABLE {} ({})").format(sql.Identifier(table), cols))


# -- (a) pandas to_sql -----------------------------------------------------------------------------------------------

def run_pandas(project_dir: str | Path, dsn: str, table: str, rows: int | None) -> dict[str, Any]:
    """DuckDB -> pandas DataFrame -> `DataFrame.to_sql(method="multi", chunksize=10_000)` over SQLAlchemy."""
    steps = Steps()
    with steps("read"):
        con = _open(project_dir)
        df = con.execute(_select(rows)).df()
        con.close()
    try:
        import sqlalchemy
    except ImportError:  # the fallback the brief asks for: psycopg executemany of row tuples
        sqlalchemy = None
    if sqlalchemy is not None:
        engine = sqlalchemy.create_engine(dsn.replace("postgresql://", "postgresql+psycopg://", 1))
        try:
            with steps("to_sql"):
                df.to_sql(table, engine, if_exists="replace", index=False, method="multi", chunksize=10_000)
        finally:
            engine.dispose()
        how = "pandas.DataFrame.to_sql(method='multi', chunksize=10000) via SQLAlchemy + psycopg"
    else:  # pragma: no cover - SQLAlchemy is in the dev group
        import psycopg

        with psycopg.connect(dsn) as pg, steps("executemany"):
            _create_pg_table(pg, table)
            marks = ", ".join(["%s"] * len(MART_COLUMNS))
            with pg.cursor() as cur:
                cur.executemany(f'INSERT INTO "{table}" VALUES ({marks})',
                                df.astype(object).where(df.notna(), None).itertuples(index=False, name=None))
        how = "psycopg executemany (SQLAlchemy not installed)"
    return {"rows": len(df), "steps": steps.seconds, "how": how}


# -- (b) plain psycopg COPY ------------------------------------------------------------------------------------------

def _copy(project_dir: str | Path, dsn: str, table: str, rows: int | None, fmt: str,
          write_batch: Any) -> tuple[int, dict[str, float]]:
    """The shared part of the plain COPY contenders: DuckDB Arrow batches of the mart into one `COPY ... FROM
    STDIN` in one transaction (the table appears complete or not at all); `write_batch(copy, batch)` differs."""
    import psycopg

    steps = Steps()
    con = _open(project_dir)
    pg = psycopg.connect(dsn)
    n = 0
    try:
        _create_pg_table(pg, table)
        with steps("copy"):
            reader = con.execute(_select(rows)).to_arrow_reader(BATCH_ROWS)
            with pg.cursor() as cur, cur.copy(f'COPY "{table}" FROM STDIN (FORMAT {fmt})') as copy:
                if fmt == "binary":
                    copy.set_types([t.split("(")[0] for _, _, t in MART_COLUMNS])
                for batch in reader:
                    write_batch(copy, batch)
                    n += batch.num_rows
        with steps("commit"):
            pg.commit()
    finally:
        pg.close()
        con.close()
    return n, steps.seconds


def run_copy_csv(project_dir: str | Path, dsn: str, table: str, rows: int | None) -> dict[str, Any]:
    """DuckDB Arrow record batches -> CSV text (pyarrow) -> psycopg `COPY ... FROM STDIN (FORMAT csv)`."""
    import pyarrow.csv as pacsv

    opts = pacsv.WriteOptions(include_header=False)

    def write_batch(copy: Any, batch: Any) -> None:
        buf = io.BytesIO()
        pacsv.write_csv(batch, buf, opts)
        copy.write(buf.getbuffer())

    n, seconds = _copy(project_dir, dsn, table, rows, "csv", write_batch)
    return {"rows": n, "steps": seconds,
            "how": "Arrow batches of 100k rows -> pyarrow CSV -> COPY FROM STDIN (FORMAT csv), one transaction"}


def run_copy_rows(project_dir: str | Path, dsn: str, table: str, rows: int | None) -> dict[str, Any]:
    """DuckDB Arrow record batches -> Python rows -> psycopg binary COPY with `write_row` (the documented way)."""

    def write_batch(copy: Any, batch: Any) -> None:
        for row in zip(*(col.to_pylist() for col in batch.columns), strict=True):
            copy.write_row(row)

    n, seconds = _copy(project_dir, dsn, table, rows, "binary", write_batch)
    return {"rows": n, "steps": seconds,
            "how": "Arrow batches of 100k rows -> Python tuples -> binary COPY write_row, one transaction"}


# -- (c) airduck -----------------------------------------------------------------------------------------------------

def run_airduck(project_dir: str | Path, dsn: str, table: str, rows: int | None) -> dict[str, Any]:
    """`airduck.serve.publish_postgres` with `serve.postgres.tables: [{table: gold.mart, name: <table>}]`."""
    from airduck.lakehouse import Lakehouse
    from airduck.serve import publish_postgres

    if rows is not None:
        raise ValueError("airduck publishes whole tables; run it without a row cap")
    steps = Steps()
    queries: list[tuple[float, str]] = []
    with Lakehouse.open(project_dir) as lh:
        con = QueryTimer(lh.con, queries)
        with steps("publish_postgres"):
            results = publish_postgres(con, lh.project, run_id="bench")  # type: ignore[arg-type]
    top = sorted(queries, key=lambda x: -x[0])[:6]
    return {"rows": sum(r.rows_out for r in results), "steps": steps.seconds,
            "how": "airduck.serve.publish_postgres (staging table, ANALYZE, count+checksum check, atomic swap)",
            "queries": [{"seconds": round(s, 3), "sql": text[:300]} for s, text in top],
            "duckdb_seconds_total": round(sum(s for s, _ in queries), 3)}


CONTENDERS: dict[str, Callable[..., dict[str, Any]]] = {
    "pandas": run_pandas,
    "copy_rows": run_copy_rows,
    "copy_csv": run_copy_csv,
    "airduck": run_airduck,
}
