"""Run records in the lake: `airduck.runs` and `airduck.run_steps`.

`airduck.runs` is append-only: a run writes a row when it starts (status `running`) and one when it ends
(`ok`, `failed`, `killed`); the latest row per run_id is its state. Appending never conflicts with a
concurrent run's commit, so a run's record can always be written, even after its data was rolled back.
The final row of a successful bronze+silver step is written in the same transaction as the data, so a
run is never recorded as done without its data, nor its data visible without its record.
"""

from __future__ import annotations

import json
import os
import socket
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

import duckdb

from airduck.config.secrets import redact
from airduck.lake.commit import is_conflict, write
from airduck.lake.connection import LAKE
from airduck.pipeline.context import StepResult

RUNS = f"{LAKE}.airduck.runs"
STEPS = f"{LAKE}.airduck.run_steps"
LOCK = f"{LAKE}.airduck.run_lock"

_DDL = (
    f"CREATE TABLE IF NOT EXISTS {RUNS} (run_id VARCHAR, status VARCHAR, started_at TIMESTAMPTZ, "
    "finished_at TIMESTAMPTZ, batch BIGINT, command VARCHAR, selection VARCHAR, full_refresh BOOLEAN, "
    "snapshot_before BIGINT, snapshot_after BIGINT, rows_in BIGINT, rows_out BIGINT, rows_quarantined BIGINT, "
    "rows_rejected BIGINT, error VARCHAR, host VARCHAR, pid BIGINT, artifacts VARCHAR, recorded_at TIMESTAMPTZ)",
    f"CREATE TABLE IF NOT EXISTS {STEPS} (run_id VARCHAR, step_no INTEGER, layer VARCHAR, table_name VARCHAR, "
    "status VARCHAR, rows_in BIGINT, rows_out BIGINT, rows_quarantined BIGINT, rows_rejected BIGINT, files BIGINT, "
    "started_at TIMESTAMPTZ, finished_at TIMESTAMPTZ, details VARCHAR, error VARCHAR)",
    f"CREATE TABLE IF NOT EXISTS {LOCK} (id INTEGER, run_id VARCHAR, locked_at TIMESTAMPTZ)",
)


@dataclass
class RunRecord:
    run_id: str
    status: str
    started_at: datetime
    finished_at: datetime | None = None
    batch: int | None = None
    command: str | None = None
    selection: list[str] = field(default_factory=list)
    full_refresh: bool = False
    snapshot_before: int | None = None
    snapshot_after: int | None = None
    rows_in: int = 0
    rows_out: int = 0
    rows_quarantined: int = 0
    rows_rejected: int = 0
    error: str | None = None
    host: str = field(default_factory=socket.gethostname)
    pid: int = field(default_factory=os.getpid)
    artifacts: dict[str, str] = field(default_factory=dict)
    steps: list[dict[str, Any]] = field(default_factory=list)

    @property
    def seconds(self) -> float | None:
        if self.finished_at is None:
            return None
        return (self.finished_at - self.started_at).total_seconds()

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["started_at"] = self.started_at.isoformat()
        d["finished_at"] = self.finished_at.isoformat() if self.finished_at else None
        d["seconds"] = self.seconds
        return d


def ensure_tables(con: duckdb.DuckDBPyConnection) -> None:
    """Create the record tables and the one-row run lock (retrying if a concurrent run creates them too)."""
    exists = con.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_catalog = ? AND table_schema = 'airduck' "
        "AND table_name IN ('runs', 'run_steps', 'run_lock')", [LAKE]
    ).fetchone()[0]
    if exists == 3 and con.execute(f"SELECT count(*) FROM {LOCK}").fetchone()[0] == 1:
        return
    for attempt in range(5):
        try:
            with write(con, "create run record tables", step="init"):
                for ddl in _DDL:
                    con.execute(ddl)
                if con.execute(f"SELECT count(*) FROM {LOCK}").fetchone()[0] == 0:
                    con.execute(f"INSERT INTO {LOCK} VALUES (1, NULL, now())")
            return
        except Exception as exc:  # a concurrent first run created them: look again
            if attempt == 4 or not (is_conflict(exc) or "already exists" in str(exc)):
                raise
            import time

            time.sleep(0.2 * (attempt + 1))


def take_lock(con: duckdb.DuckDBPyConnection, run_id: str) -> None:
    """Inside the run transaction: two runs that both do this cannot both commit (DuckLake conflict)."""
    con.execute(f"UPDATE {LOCK} SET run_id = ?, locked_at = now()", [run_id])


def next_batch(con: duckdb.DuckDBPyConnection) -> int:
    return int(con.execute(f"SELECT coalesce(max(batch), 0) + 1 FROM {RUNS}").fetchone()[0])


def _row(rec: RunRecord) -> list[Any]:
    return [
        rec.run_id, rec.status, rec.started_at, rec.finished_at, rec.batch, rec.command,
        json.dumps(rec.selection), rec.full_refresh, rec.snapshot_before, rec.snapshot_after, rec.rows_in,
        rec.rows_out, rec.rows_quarantined, rec.rows_rejected, redact(rec.error) if rec.error else None, rec.host,
        rec.pid, json.dumps(rec.artifacts), datetime.now(UTC),
    ]


def insert_run(con: duckdb.DuckDBPyConnection, rec: RunRecord) -> None:
    """Append a run row (inside the caller's transaction)."""
    con.execute(f"INSERT INTO {RUNS} VALUES ({', '.join('?' * 19)})", _row(rec))


def insert_steps(con: duckdb.DuckDBPyConnection, run_id: str, steps: list[tuple[StepResult, datetime, datetime]],
                 start_no: int = 0) -> None:
    for i, (s, started, finished) in enumerate(steps, start=start_no + 1):
        con.execute(
            f"INSERT INTO {STEPS} VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [run_id, i, s.layer, s.table, s.status, s.rows_in, s.rows_out, s.rows_quarantined, s.rows_rejected,
             s.files, started, finished, redact(json.dumps(s.details, default=str)),
             redact(s.error) if s.error else None],
        )


def record(con: duckdb.DuckDBPyConnection, rec: RunRecord,
           steps: list[tuple[StepResult, datetime, datetime]] | None = None, start_no: int = 0) -> None:
    """Append a run row (and step rows) in its own small transaction."""
    for attempt in range(5):
        try:
            with write(con, f"run {rec.run_id}: {rec.status}", step="record", run_id=rec.run_id):
                insert_run(con, rec)
                if steps:
                    insert_steps(con, rec.run_id, steps, start_no)
            return
        except Exception as exc:
            if attempt == 4 or not is_conflict(exc):
                raise
            import time

            time.sleep(0.2 * (attempt + 1))


_LATEST = f"""
    SELECT * EXCLUDE (rn) FROM (
        SELECT *, row_number() OVER (PARTITION BY run_id ORDER BY recorded_at DESC) AS rn FROM {RUNS}
    ) WHERE rn = 1
"""


def _to_record(cols: list[str], row: tuple) -> RunRecord:
    d = dict(zip(cols, row, strict=False))
    d.pop("recorded_at", None)
    d["selection"] = json.loads(d["selection"] or "[]")
    d["artifacts"] = json.loads(d["artifacts"] or "{}")
    return RunRecord(**d)


def _has_tables(con: duckdb.DuckDBPyConnection) -> bool:
    return bool(con.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_catalog = ? AND table_schema = 'airduck' "
        "AND table_name = 'runs'", [LAKE]).fetchone()[0])


def list_runs(con: duckdb.DuckDBPyConnection, limit: int = 20) -> list[RunRecord]:
    if not _has_tables(con):
        return []
    rel = con.execute(f"{_LATEST} ORDER BY started_at DESC LIMIT {int(limit)}")
    cols = [d[0] for d in rel.description]
    return [_to_record(cols, r) for r in rel.fetchall()]


def get_run(con: duckdb.DuckDBPyConnection, run_id: str) -> RunRecord | None:
    if not _has_tables(con):
        return None
    rel = con.execute(f"SELECT * FROM ({_LATEST}) WHERE run_id = ? OR run_id LIKE ? ORDER BY started_at DESC",
                      [run_id, f"{run_id}%"])
    cols = [d[0] for d in rel.description]
    rows = rel.fetchall()
    if not rows:
        return None
    rec = _to_record(cols, rows[0])
    srel = con.execute(f"SELECT * FROM {STEPS} WHERE run_id = ? ORDER BY step_no", [rec.run_id])
    scols = [d[0] for d in srel.description]
    for r in srel.fetchall():
        step = dict(zip(scols, r, strict=False))
        step["details"] = json.loads(step["details"] or "{}")
        for k in ("started_at", "finished_at"):
            if step[k] is not None:
                step[k] = step[k].isoformat()
        rec.steps.append(step)
    return rec


def mark_dead_runs(con: duckdb.DuckDBPyConnection) -> list[str]:
    """Runs still `running` from this host whose process is gone were killed: record that."""
    if not _has_tables(con):
        return []
    rel = con.execute(f"SELECT * FROM ({_LATEST}) WHERE status = 'running' AND host = ?", [socket.gethostname()])
    cols = [d[0] for d in rel.description]
    dead = []
    for row in rel.fetchall():
        rec = _to_record(cols, row)
        if rec.pid == os.getpid() or _alive(rec.pid):
            continue
        rec.status = "killed"
        rec.finished_at = datetime.now(UTC)
        rec.error = "the process ended without finishing (killed?); nothing of this run was committed"
        record(con, rec)
        dead.append(rec.run_id)
    return dead


def _alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
