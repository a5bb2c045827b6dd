"""Quality results stored per run, beside the run records (`airduck_quality_results`).

The table lives where `airduck_runs` lives (the PostgreSQL catalog database, or the SQLite file beside a
SQLite catalog; see airduck.pipeline.records), so recording results never adds a lake snapshot. This module
holds the table's shape and the listing logic; the run records' store opens the connection and calls it with
a DB-API cursor and its placeholder style.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import Any

from airduck.config.secrets import redact
from airduck.core.quality import QualityResult

TABLE = "airduck_quality_results"
COLUMNS = ("run_id", "step_id", "table_name", "check_kind", "name", "rows_checked", "rows_failing", "action",
           "passed", "examples", "detail", "recorded_at")
DDL = (
    f"CREATE TABLE IF NOT EXISTS {TABLE} (run_id TEXT, step_id TEXT, table_name TEXT, check_kind TEXT, name TEXT, "
    "rows_checked BIGINT, rows_failing BIGINT, action TEXT, passed BOOLEAN, examples TEXT, detail TEXT, "
    "recorded_at TEXT)",
    f"CREATE INDEX IF NOT EXISTS {TABLE}_run ON {TABLE} (run_id)",
    f"CREATE INDEX IF NOT EXISTS {TABLE}_table ON {TABLE} (table_name)",
)
#: schemas a bare table name (`orders`) is looked for in
SCHEMAS = ("bronze", "silver", "gold")
#: the most results one listing returns
DEFAULT_LIMIT = 1000

#: turns a statement written with `?` placeholders into the connection's style
Placeholders = Callable[[str], str]


def insert(cur: Any, sql: Placeholders, run_id: str, results: Iterable[QualityResult], recorded_at: str,
           step_id: str | None = None) -> int:
    """Write `results` of one step of run `run_id`; returns how many. Examples and details are redacted again
    (a result built elsewhere may not have been)."""
    rows = [[run_id, r.step_id or step_id, r.table, str(r.check), r.name, r.rows_checked, int(r.rows_failing),
             str(r.action), bool(r.passed), redact(json.dumps([str(e) for e in r.examples], ensure_ascii=False)),
             redact(r.detail) if r.detail else None, recorded_at] for r in results]
    if rows:
        cur.executemany(sql(f"INSERT INTO {TABLE} ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})"),
                        rows)
    return len(rows)


def _tables(table: str) -> list[str]:
    return [table] if "." in table else [f"{schema}.{table}" for schema in SCHEMAS]


def select(cur: Any, sql: Placeholders, *, table: str | None = None, run_id: str | None = None,
           failed: bool = False, limit: int | None = DEFAULT_LIMIT) -> list[QualityResult]:
    """Stored results, newest run first, then by table, check and name.

    `table`: `schema.table`, or a bare name in any layer. `run_id`: the results of the runs whose id starts
    with it; without it, the latest result of each check (table + kind + name): the most recent run that
    checked it. `failed`: only results that did not pass (of the latest ones, when no run is given).
    """
    where: list[str] = []
    params: list[Any] = []
    if table:
        names = _tables(table)
        where.append(f"table_name IN ({', '.join('?' * len(names))})")
        params += names
    if run_id:
        where.append("substr(run_id, 1, ?) = ?")
        params += [len(run_id), run_id]
    cols = ", ".join(COLUMNS)
    filtered = f"SELECT {cols} FROM {TABLE}" + (f" WHERE {' AND '.join(where)}" if where else "")
    if run_id:
        text = f"SELECT {cols} FROM ({filtered}) picked"
    else:
        text = (f"SELECT {cols} FROM (SELECT {cols}, row_number() OVER (PARTITION BY table_name, check_kind, name "
                f"ORDER BY recorded_at DESC, run_id DESC) AS rn FROM ({filtered}) picked) latest WHERE rn = 1")
    if failed:
        text += (" AND" if not run_id else " WHERE") + " NOT passed"
    text += " ORDER BY recorded_at DESC, run_id DESC, table_name, check_kind, name"
    if limit:
        text += f" LIMIT {int(limit)}"
    cur.execute(sql(text), params)
    return [_result(row) for row in cur.fetchall()]


def _result(row: tuple) -> QualityResult:
    d = dict(zip(COLUMNS, row, strict=True))
    try:
        examples = [str(e) for e in json.loads(d["examples"] or "[]")]
    except ValueError:
        examples = []
    return QualityResult(
        table=d["table_name"], check=d["check_kind"], name=d["name"],
        rows_checked=None if d["rows_checked"] is None else int(d["rows_checked"]),
        rows_failing=int(d["rows_failing"] or 0), action=d["action"], passed=bool(d["passed"]), examples=examples,
        run_id=d["run_id"], step_id=d["step_id"], detail=d["detail"],
    )
