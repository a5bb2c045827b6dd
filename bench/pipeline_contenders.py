"""The contenders of the pipeline benchmark, each doing the same cleaning of the generated orders.

Each ``run_<name>(dataset_folder, work_dir) -> dict`` reads ``orders_*.csv`` in `dataset_folder`, writes its
outputs under `work_dir` and returns ``{"counts": {...}, "steps": {step: seconds}, "output": ...}``, where
counts are ``rejected`` (ragged lines kept with their raw text), ``quarantined`` and ``clean`` (rows of the
clean table). The rules are :data:`bench.gen_orders.RULES`. The harness (`pipeline_bench.py`) runs each in its
own process; importing this module has no side effects and imports neither pandas nor airduck.
"""

from __future__ import annotations

import glob
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

COLUMNS = ("order_id", "customer_id", "customer_name", "city", "amount", "currency", "status", "created_at",
           "updated_at")
TS_FORMATS = ("%Y-%m-%d %H:%M:%S", "%d/%m/%Y %H:%M:%S")


class Steps:
    """Wall seconds per named step of a contender."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = round(self.seconds.get(name, 0.0) + time.perf_counter() - started, 3)


def csv_paths(folder: str | Path) -> list[str]:
    paths = sorted(glob.glob(str(Path(folder) / "orders_*.csv")))
    if not paths:
        raise FileNotFoundError(f"no orders_*.csv in {folder}")
    return paths


# -- (a) pandas + pyarrow ------------------------------------------------------------------------------------------

def run_pandas(folder: str | Path, work: str | Path) -> dict[str, Any]:
    """pyarrow.csv reads every file as text (ragged lines go to a handler), pandas cleans, pyarrow writes Parquet."""
    import numpy as np
    import pandas as pd
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    work = Path(work)
    work.mkdir(parents=True, exist_ok=True)
    steps = Steps()
    rejected: list[dict[str, Any]] = []

    def on_bad(row: Any) -> str:
        rejected.append({"line": row.number, "raw": row.text, "reason": f"expected {row.expected_columns} "
                         f"fields, found {row.actual_columns}"})
        return "skip"

    with steps("read"):
        frames = []
        for path in csv_paths(folder):
            start = len(rejected)
            table = pacsv.read_csv(
                path,
                parse_options=pacsv.ParseOptions(invalid_row_handler=on_bad),
                convert_options=pacsv.ConvertOptions(column_types=dict.fromkeys(COLUMNS, pa.string())),
            )
            for r in rejected[start:]:
                r["file"] = path
            frames.append(table.to_pandas())
            del table
        df = pd.concat(frames, ignore_index=True)
        del frames
    rows_read = len(df)
    with steps("clean"):
        typed = pd.DataFrame({
            "order_id": pd.to_numeric(df["order_id"], errors="coerce").astype("Int64"),
            "customer_id": pd.to_numeric(df["customer_id"], errors="coerce").astype("Int64"),
            "customer_name": df["customer_name"].str.strip().str.lower(),
            "city": df["city"].str.strip().str.lower(),
            "amount": pd.to_numeric(df["amount"], errors="coerce").round(2),
            "currency": df["currency"],
            "status": df["status"],
            "created_at": pd.to_datetime(df["created_at"], format=TS_FORMATS[0], errors="coerce"),
            "updated_at": pd.to_datetime(df["updated_at"], format=TS_FORMATS[0], errors="coerce").fillna(
                pd.to_datetime(df["updated_at"], format=TS_FORMATS[1], errors="coerce")),
        })
        # reasons are row-level, so they can be computed before the dedup (only the winners' ones are kept)
        conditions, labels = [], []
        for col in ("order_id", "customer_id", "amount", "created_at", "updated_at"):
            present = (df[col] != "").to_numpy()
            conditions.append(present & typed[col].isna().to_numpy())
            labels.append(f"cast:{col}")
        conditions.append((df["order_id"] == "").to_numpy())
        labels.append("required:order_id")
        conditions.append((typed["amount"] < 0).fillna(False).to_numpy(dtype=bool))
        labels.append("amount_non_negative")
        reason = np.full(len(df), "", dtype=object)
        for cond, label in zip(conditions, labels, strict=True):
            reason = np.where(cond, np.where(reason == "", label, reason + "," + label), reason)
        typed["_reasons"] = reason
    with steps("dedup"):
        keyed = typed["order_id"].notna()
        winners = typed[keyed].sort_values("updated_at", kind="stable").drop_duplicates("order_id", keep="last")
        staged_index = winners.index.append(typed.index[~keyed])
        staged = typed.loc[staged_index]
        bad = (staged["_reasons"] != "").to_numpy()
        clean = staged[~bad].drop(columns="_reasons")
        quarantine = df.loc[staged.index[bad]].assign(_reasons=staged["_reasons"][bad].to_numpy())
    with steps("write"):
        clean.to_parquet(work / "orders.parquet", index=False)
        quarantine.to_parquet(work / "orders__quarantine.parquet", index=False)
        pq.write_table(pa.Table.from_pylist(rejected, schema=pa.schema(
            [("line", pa.int64()), ("raw", pa.string()), ("reason", pa.string()), ("file", pa.string())])),
            work / "orders__rejects.parquet")
    counts = {"rejected": len(rejected), "read": rows_read, "quarantined": len(quarantine), "clean": len(clean),
              "clean_null_amount": int(clean["amount"].isna().sum())}
    return {"counts": counts, "steps": steps.seconds, "output": f"Parquet files in {work}"}


# -- (b) plain DuckDB SQL into a DuckLake (SQLite catalog) ---------------------------------------------------------

def _duckdb_connect(threads: int | None = None):
    import duckdb

    con = duckdb.connect(config={"threads": threads} if threads else {})
    try:  # the offline extension wheels, as airduck loads them (never INSTALL from the internet)
        from airduck.lake.extensions import load_extensions

        load_extensions(con, ("ducklake", "sqlite_scanner"))
    except ImportError:  # pragma: no cover - airduck is installed in this project
        con.execute("LOAD ducklake")
        con.execute("LOAD sqlite_scanner")
    return con


def _read_csv_sql(glob_pattern: str, extra: str = "") -> str:
    lit = "'" + glob_pattern.replace("'", "''") + "'"
    cols = "{" + ", ".join(f"'{c}': 'VARCHAR'" for c in COLUMNS) + "}"
    return (f"read_csv({lit}, header = true, delim = ',', quote = '\"', columns = {cols}, ignore_errors = true, "
            f"store_rejects = true, rejects_table = 'orders_reject_errors', rejects_scan = 'orders_reject_scans'{extra})")


def _cleaning_sql(source: str) -> list[str]:
    """Typed values + reasons (read once), dedup, quarantine, clean rows: the same rules over `source` AS r."""
    ts1, ts2 = (f"'{f}'" for f in TS_FORMATS)
    typed = {
        "order_id": "TRY_CAST(r.order_id AS BIGINT)",
        "customer_id": "TRY_CAST(r.customer_id AS BIGINT)",
        "customer_name": "lower(trim(r.customer_name))",
        "city": "lower(trim(r.city))",
        "amount": "TRY_CAST(r.amount AS DECIMAL(12,2))",
        "currency": "r.currency",
        "status": "r.status",
        "created_at": f"try_strptime(r.created_at, {ts1})",
        "updated_at": f"coalesce(try_strptime(r.updated_at, {ts1}), try_strptime(r.updated_at, {ts2}))",
    }
    reasons = [f"CASE WHEN r.{c} IS NOT NULL AND {typed[c]} IS NULL THEN 'cast:{c}' END"
               for c in ("order_id", "customer_id", "amount", "created_at", "updated_at")]
    reasons.append("CASE WHEN r.order_id IS NULL THEN 'required:order_id' END")
    reasons.append(f"CASE WHEN {typed['amount']} < 0 THEN 'amount_non_negative' END")
    reason_list = f"list_filter([{', '.join(reasons)}], x -> x IS NOT NULL)"
    return [
        # read once: typed values, the reasons to quarantine (row-level) and, for those rows only, the raw row
        f"""CREATE TEMP TABLE typed AS
            SELECT {', '.join(f'{expr} AS {name}' for name, expr in typed.items())},
                   {reason_list} AS _reasons,
                   CASE WHEN len(_reasons) > 0 THEN to_json(r) END AS _raw
            FROM {source} AS r""",
        # dedup first (latest updated_at per order_id; rows without a key pass), then split clean / quarantine
        """CREATE TEMP TABLE staged AS
            SELECT * FROM typed
            QUALIFY order_id IS NULL OR row_number() OVER (PARTITION BY order_id ORDER BY updated_at DESC) = 1""",
        """CREATE TABLE lake.silver.orders__quarantine AS
            SELECT _reasons, _raw FROM staged WHERE len(_reasons) > 0""",
        """CREATE TABLE lake.silver.orders AS
            SELECT * EXCLUDE (_reasons, _raw) FROM staged WHERE len(_reasons) = 0""",
    ]


_REJECTS_SQL = """CREATE TABLE lake.{schema}.orders__rejects AS
            SELECT s.file_path, e.line, any_value(e.csv_line) AS raw,
                   string_agg(DISTINCT CAST(e.error_type AS VARCHAR), ', ') AS reason
            FROM orders_reject_errors e JOIN orders_reject_scans s USING (scan_id, file_id)
            GROUP BY s.file_path, e.line  -- a line missing two fields has two errors"""


def plain_duckdb_sql(glob_pattern: str) -> list[str]:
    """The silver-only floor: hand-written SQL (no airduck, no bronze), in the order it runs inside one transaction."""
    typed, staged, quarantine, silver = _cleaning_sql(_read_csv_sql(glob_pattern))
    return [typed, staged, quarantine, silver, _REJECTS_SQL.format(schema="silver")]


def plain_duckdb_bronze_sql(glob_pattern: str) -> list[str]:
    """The same work by hand: the CSVs land as text in a bronze table with load metadata (file, load id, time) and
    their rejects, then the same cleaning reads bronze; one transaction. Less than airduck does: no landing copy,
    no inferred bronze types or rescued values, no record numbers, no incremental state."""
    bronze = (f"""CREATE TABLE lake.bronze.orders AS
            SELECT r.* EXCLUDE (filename), 'bench-load' AS _load_id, r.filename AS _source_file,
                   now() AS _ingested_at
            FROM {_read_csv_sql(glob_pattern, ", filename = true")} AS r""")
    return [bronze, _REJECTS_SQL.format(schema="bronze"), *_cleaning_sql("lake.bronze.orders")]


def run_duckdb_bronze(folder: str | Path, work: str | Path, threads: int | None = None) -> dict[str, Any]:
    """read_csv -> bronze (text + load metadata) -> cleaning SQL -> silver, DuckLake on a local SQLite catalog, one
    transaction."""
    return _run_plain(folder, work, threads, plain_duckdb_bronze_sql,
                      ("bronze", "rejects", "read+type", "dedup", "quarantine", "write"),
                      ("bronze", "silver"),
                      rejects="lake.bronze.orders__rejects", read="lake.bronze.orders")


def run_duckdb(folder: str | Path, work: str | Path, threads: int | None = None) -> dict[str, Any]:
    """read_csv -> cleaning SQL -> DuckLake tables on a local SQLite catalog, in one transaction."""
    return _run_plain(folder, work, threads, plain_duckdb_sql,
                      ("read+type", "dedup", "quarantine", "write", "rejects"), ("silver",),
                      rejects="lake.silver.orders__rejects", read="typed")


def _run_plain(folder: str | Path, work: str | Path, threads: int | None, make_sql: Callable[[str], list[str]],
               names: tuple[str, ...], schemas: tuple[str, ...], *, rejects: str, read: str) -> dict[str, Any]:
    work = Path(work)
    (work / "data").mkdir(parents=True, exist_ok=True)
    steps = Steps()
    con = _duckdb_connect(threads)
    try:
        with steps("attach"):
            con.execute(f"ATTACH 'ducklake:sqlite:{work / 'catalog.sqlite'}' AS lake (DATA_PATH '{work / 'data'}/')")
            con.execute("CREATE SCHEMA IF NOT EXISTS lake.silver")
            if "bronze" in schemas:
                con.execute("CREATE SCHEMA IF NOT EXISTS lake.bronze")
        glob_pattern = str(Path(folder) / "orders_*.csv")
        con.execute("BEGIN")
        for name, sql in zip(names, make_sql(glob_pattern), strict=True):
            with steps(name):
                con.execute(sql)
        with steps("commit"):
            con.execute("COMMIT")
        counts = {
            "rejected": con.execute(f"SELECT count(*) FROM {rejects}").fetchone()[0],
            "read": con.execute(f"SELECT count(*) FROM {read}").fetchone()[0],
            "quarantined": con.execute("SELECT count(*) FROM lake.silver.orders__quarantine").fetchone()[0],
            "clean": con.execute("SELECT count(*) FROM lake.silver.orders").fetchone()[0],
            "clean_null_amount": con.execute(
                "SELECT count(*) FROM lake.silver.orders WHERE amount IS NULL").fetchone()[0],
        }
    finally:
        con.close()
    return {"counts": counts, "steps": steps.seconds, "output": "DuckLake (SQLite catalog) " + ", ".join(
        f"lake.{s}.orders" for s in schemas)}


# -- (c) airduck ---------------------------------------------------------------------------------------------------

def airduck_config(glob_pattern: str) -> dict[str, Any]:
    """airduck.yml of the benchmark project: one files source, one silver table with the same rules."""
    return {
        "name": "bench",
        "sources": {"orders": {"type": "files", "path": glob_pattern, "format": "csv"}},
        "silver": {
            "orders": {
                "from": "orders",
                "key": ["order_id"],
                "order_by": ["updated_at"],
                "mode": "merge",
                "columns": {
                    "order_id": {"type": "BIGINT", "required": True},
                    "customer_id": {"type": "BIGINT"},
                    "customer_name": {"type": "VARCHAR", "normalize": ["trim", "lower"]},
                    "city": {"type": "VARCHAR", "normalize": ["trim", "lower"]},
                    "amount": {"type": "DECIMAL(12,2)"},
                    "currency": {"type": "VARCHAR"},
                    "status": {"type": "VARCHAR"},
                    "created_at": {"type": "TIMESTAMP", "formats": [TS_FORMATS[0]]},
                    "updated_at": {"type": "TIMESTAMP", "formats": list(TS_FORMATS)},
                },
                "expectations": [{"name": "amount_non_negative", "check": "amount >= 0", "on_fail": "drop"}],
            }
        },
    }


class TimingReporter:
    """An airduck Reporter (duck-typed) that records the wall seconds of each step (bronze/silver per table)."""

    def __init__(self) -> None:
        self.started: dict[str, float] = {}
        self.seconds: dict[str, float] = {}
        self.stats: dict[str, dict[str, Any]] = {}

    @staticmethod
    def _key(step: str, table: str | None) -> str:
        return f"{step}:{table}" if table else step

    def start(self, step: str, table: str | None = None, total: int | None = None) -> None:
        self.started[self._key(step, table)] = time.perf_counter()

    def advance(self, step: str, table: str | None = None, rows: int = 0, done: int | None = None) -> None:
        pass

    def finish(self, step: str, table: str | None = None, status: str = "ok", **stats: Any) -> None:
        key = self._key(step, table)
        if key in self.started:
            self.seconds[key] = round(time.perf_counter() - self.started.pop(key), 3)
        self.stats[key] = {"status": status, **{k: v for k, v in stats.items() if isinstance(v, int | float | str)}}

    def message(self, text: str, level: str = "info") -> None:
        pass


class QueryTimer:
    """Wraps a DuckDB connection: forwards everything, and times each execute()/sql() call with its SQL text."""

    def __init__(self, con: Any, log: list[tuple[float, str]]) -> None:
        object.__setattr__(self, "_con", con)
        object.__setattr__(self, "_log", log)

    def _timed(self, method: str) -> Callable[..., Any]:
        fn = getattr(self._con, method)

        def call(query: Any, *args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                result = fn(query, *args, **kwargs)  # sql() relations are lazy: their time shows later
                return self if result is self._con else result
            finally:
                self._log.append((time.perf_counter() - started, " ".join(str(query).split())))

        return call

    def __getattr__(self, name: str) -> Any:
        if name in ("execute", "sql"):
            return self._timed(name)
        return getattr(self._con, name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._con, name, value)


def run_airduck(folder: str | Path, work: str | Path, profile: bool = False, atomic: bool = False) -> dict[str, Any]:
    """A fresh project (SQLite catalog, local data and landing) with `Lakehouse.run()` (bronze + silver; `atomic`:
    write-audit-publish, the run on a branch merged in one commit)."""
    import yaml

    from airduck.lakehouse import Lakehouse

    work = Path(work)
    project_dir = work / "project"
    project_dir.mkdir(parents=True, exist_ok=True)
    glob_pattern = str(Path(folder).resolve() / "orders_*.csv")
    (project_dir / "airduck.yml").write_text(yaml.safe_dump(airduck_config(glob_pattern), sort_keys=False))
    steps = Steps()
    reporter = TimingReporter()
    queries: list[tuple[float, str]] = []
    with steps("open"):
        lh = Lakehouse.open(project_dir, reporter=reporter)
        if profile:
            con = QueryTimer(lh.con, queries)
            lh._con = con  # the run (and every step) uses lh.con
    prof = None
    try:
        with steps("run"):
            if profile:
                import cProfile

                prof = cProfile.Profile()
                prof.enable()
            try:
                result = lh.run(atomic=atomic)
            finally:
                if prof is not None:
                    prof.disable()
        con = lh.con  # the run's connection, after its commit (the floors count on theirs too)
        q = "silver.orders__quarantine"
        counts = {
            "rejected": con.execute("SELECT count(*) FROM bronze.orders__rejects").fetchone()[0],
            "read": con.execute("SELECT count(*) FROM bronze.orders").fetchone()[0],
            "quarantined": con.execute(f"SELECT count(*) FROM {q}").fetchone()[0],
            "clean": con.execute("SELECT count(*) FROM silver.orders").fetchone()[0],
            "clean_null_amount": con.execute(
                "SELECT count(*) FROM silver.orders WHERE amount IS NULL").fetchone()[0],
        }
        out: dict[str, Any] = {
            "counts": counts, "steps": {**steps.seconds, **reporter.seconds}, "ok": bool(result.ok),
            "output": "DuckLake (SQLite catalog) silver.orders, bronze.orders, landing copies",
            "reporter": reporter.stats,
        }
        if profile:
            top = sorted(queries, key=lambda x: -x[0])[:15]
            out["queries"] = [{"seconds": round(s, 3), "sql": text[:600]} for s, text in top]
            out["query_seconds_total"] = round(sum(s for s, _ in queries), 3)
            out["query_count"] = len(queries)
            out["python_hotspots"] = _hotspots(prof) if prof is not None else []
        return out
    finally:
        lh.close()


def _hotspots(prof: Any, limit: int = 20) -> list[dict[str, Any]]:
    """The functions with the most own time (C calls such as DuckDB's execute, hashing, file copies included)."""
    import pstats

    def name(key: tuple[str, int, str]) -> str:
        f, line, func = key
        return func if f == "~" else f"{Path(f).parent.name}/{Path(f).name}:{line}({func})"

    stats = pstats.Stats(prof).stats  # {(file, line, func): (calls, ncalls, tottime, cumtime, callers)}
    rows = sorted(stats.items(), key=lambda kv: -kv[1][2])[:limit]
    out = []
    for key, (_cc, nc, tt, ct, callers) in rows:
        top = sorted(callers.items(), key=lambda kv: -kv[1][2])[:3]  # caller -> (cc, nc, tt, ct)
        out.append({"function": name(key), "calls": nc, "own_seconds": round(tt, 3),
                    "cumulative_seconds": round(ct, 3),
                    "callers": [f"{name(c)} {v[2]:.3f}s" for c, v in top]})
    return out


def run_airduck_atomic(folder: str | Path, work: str | Path, profile: bool = False) -> dict[str, Any]:
    """`run_airduck` with `Lakehouse.run(atomic=True)` (`airduck run --atomic`)."""
    return run_airduck(folder, work, profile=profile, atomic=True)


CONTENDERS: dict[str, Callable[..., dict[str, Any]]] = {
    "pandas": run_pandas,
    "duckdb": run_duckdb,
    "duckdb_bronze": run_duckdb_bronze,
    "airduck": run_airduck,
    "airduck_atomic": run_airduck_atomic,
}
