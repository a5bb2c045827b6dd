"""Run records: `airduck_runs`, `airduck_run_steps` and the steps' quality results (`airduck_quality_results`,
see airduck.quality.store), kept beside the lake catalog, not in the lake.

They live in the catalog's own database (the PostgreSQL catalog database, or a SQLite file next to
the SQLite catalog), written with plain SQL. Keeping them out of the lake means a failed run leaves the
lake at exactly the snapshot it had (same snapshot id), while the failure is still recorded.

`airduck_runs` is append-only: a run adds a row when it starts (`running`) and one when it ends (`ok`,
`failed`, `killed`); the latest row per run is its state. The data a run commits carries the run id
in its snapshot's commit message, so a run killed after its commit can still be recognised.

Steps are recorded as they finish (`step_id` names the plan step, e.g. ``ingest:orders``); each step commits
its own snapshot, with ``run <id>: <step id>`` as its message and the run and step ids in its extra info.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb

from airduck.config.project import Project
from airduck.config.secrets import redact
from airduck.core.model import StepResult
from airduck.errors import CatalogError
from airduck.lake.connection import LAKE, catalog_kind
from airduck.quality import store as quality_store

RUN_COLUMNS = (
    "run_id", "status", "started_at", "finished_at", "batch", "command", "selection", "full_refresh",
    "snapshot_before", "snapshot_after", "rows_in", "rows_out", "rows_quarantined", "rows_rejected", "error",
    "host", "pid", "artifacts", "recorded_at",
)
STEP_COLUMNS = (
    "run_id", "step_no", "layer", "table_name", "status", "rows_in", "rows_out", "rows_quarantined",
    "rows_rejected", "files", "started_at", "finished_at", "details", "error", "step_id",
)
_DDL = (
    "CREATE TABLE IF NOT EXISTS airduck_runs (run_id TEXT, status TEXT, started_at TEXT, finished_at TEXT, "
    "batch BIGINT, command TEXT, selection TEXT, full_refresh BOOLEAN, snapshot_before BIGINT, "
    "snapshot_after BIGINT, rows_in BIGINT, rows_out BIGINT, rows_quarantined BIGINT, rows_rejected BIGINT, "
    "error TEXT, host TEXT, pid BIGINT, artifacts TEXT, recorded_at TEXT)",
    "CREATE INDEX IF NOT EXISTS airduck_runs_id ON airduck_runs (run_id)",
    "CREATE TABLE IF NOT EXISTS airduck_run_steps (run_id TEXT, step_no INTEGER, layer TEXT, table_name TEXT, "
    "status TEXT, rows_in BIGINT, rows_out BIGINT, rows_quarantined BIGINT, rows_rejected BIGINT, files BIGINT, "
    "started_at TEXT, finished_at TEXT, details TEXT, error TEXT, step_id TEXT)",
    "CREATE INDEX IF NOT EXISTS airduck_run_steps_id ON airduck_run_steps (run_id)",
    *quality_store.DDL,
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


def _ts(value: datetime | None) -> str | None:
    return value.astimezone(UTC).isoformat() if value else None


def _parse_ts(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


class RecordStore:
    """Run records in the catalog's database (PostgreSQL) or beside it (SQLite)."""

    def __init__(self, project: Project) -> None:
        catalog = project.config.lake.catalog
        self.kind = "postgres" if catalog_kind(catalog) == "postgres" else "sqlite"
        if self.kind == "postgres":
            dsn = catalog
            for prefix in ("postgres:", "postgresql:"):
                if dsn.startswith(prefix) and not dsn.startswith(prefix + "//"):
                    dsn = dsn[len(prefix):]
            self.target = dsn
        else:
            path = catalog[len("sqlite:"):] if catalog.startswith("sqlite:") else catalog
            base = Path(project.resolve(path))
            self.target = str(base.with_name(base.name + ".runs.sqlite"))
        self._ready = False

    @contextmanager
    def _conn(self) -> Iterator[Any]:
        try:
            if self.kind == "postgres":
                import psycopg

                conn = psycopg.connect(self.target, autocommit=False, connect_timeout=10)
            else:
                conn = sqlite3.connect(self.target, timeout=30)
        except Exception as exc:
            raise CatalogError(f"cannot open the run records: {redact(str(exc).splitlines()[0])}") from None
        try:
            cur = conn.cursor()
            if not self._ready:
                self._create(conn, cur)
            yield cur
            conn.commit()
        except BaseException:
            conn.rollback()
            raise
        finally:
            conn.close()

    def _create(self, conn: Any, cur: Any) -> None:
        for attempt in range(3):  # two first runs at once may race on CREATE TABLE IF NOT EXISTS
            try:
                for ddl in _DDL:
                    cur.execute(ddl)
                self._migrate(cur)
                conn.commit()
                self._ready = True
                return
            except Exception:
                conn.rollback()
                if attempt == 2:
                    raise
                import time

                time.sleep(0.3)

    def _migrate(self, cur: Any) -> None:
        """Record tables of older versions gain the columns added since (step_id)."""
        if self.kind == "postgres":
            cur.execute("ALTER TABLE airduck_run_steps ADD COLUMN IF NOT EXISTS step_id TEXT")
            return
        cur.execute("PRAGMA table_info(airduck_run_steps)")
        if "step_id" not in {r[1] for r in cur.fetchall()}:
            cur.execute("ALTER TABLE airduck_run_steps ADD COLUMN step_id TEXT")

    def _sql(self, sql: str) -> str:
        return sql.replace("?", "%s") if self.kind == "postgres" else sql

    def add(self, rec: RunRecord, steps: list[tuple[StepResult, datetime, datetime]] | None = None,
            start_no: int = 0) -> None:
        """Append the run's current state (and step rows)."""
        with self._conn() as cur:
            row = self._insert_run(cur, rec)
            for i, (s, started, finished) in enumerate(steps or [], start=start_no + 1):
                cur.execute(self._sql(f"INSERT INTO airduck_run_steps VALUES ({', '.join('?' * len(STEP_COLUMNS))})"),
                            [rec.run_id, i, s.layer, s.table, s.status, s.rows_in, s.rows_out, s.rows_quarantined,
                             s.rows_rejected, s.files, _ts(started), _ts(finished),
                             redact(json.dumps(s.details, default=str)), redact(s.error) if s.error else None,
                             s.step_id])
                quality_store.insert(cur, self._sql, rec.run_id, s.quality, row[-1], step_id=s.step_id)

    def _insert_run(self, cur: Any, rec: RunRecord) -> list[Any]:
        row = [rec.run_id, rec.status, _ts(rec.started_at), _ts(rec.finished_at), rec.batch, rec.command,
               json.dumps(rec.selection), rec.full_refresh, rec.snapshot_before, rec.snapshot_after, rec.rows_in,
               rec.rows_out, rec.rows_quarantined, rec.rows_rejected, redact(rec.error) if rec.error else None,
               rec.host, rec.pid, json.dumps(rec.artifacts), _ts(datetime.now(UTC))]
        cur.execute(self._sql(f"INSERT INTO airduck_runs VALUES ({', '.join('?' * len(RUN_COLUMNS))})"), row)
        return row

    def add_if_running(self, rec: RunRecord) -> bool:
        """Append `rec` (a run's end: `killed`) only if the run's latest row is still `running`; False if another
        process recorded its end first. Atomic (SQLite: ``BEGIN IMMEDIATE``; PostgreSQL: a transaction-scoped
        advisory lock on the run id), so of several processes finding the same dead run at once exactly one
        records it, and only that one alerts."""
        with self._conn() as cur:
            if self.kind == "postgres":
                cur.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", ["airduck_runs:" + rec.run_id])
            else:
                cur.execute("BEGIN IMMEDIATE")
            cur.execute(self._sql("SELECT status FROM airduck_runs WHERE run_id = ? ORDER BY recorded_at DESC "
                                  "LIMIT 1"), [rec.run_id])
            row = cur.fetchone()
            if row is None or row[0] != "running":
                return False
            self._insert_run(cur, rec)
            return True

    def quality(self, *, table: str | None = None, run_id: str | None = None, failed: bool = False,
                limit: int | None = quality_store.DEFAULT_LIMIT) -> list:
        """Stored quality results (see :func:`airduck.quality.store.select` for the filters)."""
        with self._conn() as cur:
            return quality_store.select(cur, self._sql, table=table, run_id=run_id, failed=failed, limit=limit)

    def step_count(self, run_id: str) -> int:
        with self._conn() as cur:
            cur.execute(self._sql("SELECT count(*) FROM airduck_run_steps WHERE run_id = ?"), [run_id])
            return int(cur.fetchone()[0])

    def _latest(self, cur: Any, where: str = "", params: list[Any] | None = None, limit: int | None = None
                ) -> list[RunRecord]:
        sql = (f"SELECT {', '.join(RUN_COLUMNS)} FROM (SELECT *, row_number() OVER (PARTITION BY run_id "
               f"ORDER BY recorded_at DESC) AS rn FROM airduck_runs) latest WHERE rn = 1 {where} "
               "ORDER BY started_at DESC")
        if limit:
            sql += f" LIMIT {int(limit)}"
        cur.execute(self._sql(sql), params or [])
        return [self._record(r) for r in cur.fetchall()]

    @staticmethod
    def _record(row: tuple) -> RunRecord:
        d = dict(zip(RUN_COLUMNS, row, strict=True))
        d.pop("recorded_at")
        d["started_at"] = _parse_ts(d["started_at"])
        d["finished_at"] = _parse_ts(d["finished_at"])
        d["selection"] = json.loads(d["selection"] or "[]")
        d["artifacts"] = json.loads(d["artifacts"] or "{}")
        d["full_refresh"] = bool(d["full_refresh"])
        for k in ("rows_in", "rows_out", "rows_quarantined", "rows_rejected"):
            d[k] = int(d[k] or 0)
        return RunRecord(**d)

    def list(self, limit: int = 20) -> list[RunRecord]:
        with self._conn() as cur:
            return self._latest(cur, limit=limit)

    def get(self, run_id: str) -> RunRecord | None:
        with self._conn() as cur:
            found = self._latest(cur, "AND substr(run_id, 1, ?) = ?", [len(run_id), run_id])
            exact = [r for r in found if r.run_id == run_id]
            if exact:
                found = exact
            if not found:
                return None
            if len(found) > 1:
                from airduck.errors import NotFound

                raise NotFound(f"{run_id!r} matches {len(found)} runs", hint="give more of the run id: "
                               + ", ".join(r.run_id for r in found[:5]))
            rec = found[0]
            cur.execute(self._sql(f"SELECT {', '.join(STEP_COLUMNS)} FROM airduck_run_steps WHERE run_id = ? "
                                  "ORDER BY step_no"), [rec.run_id])
            for r in cur.fetchall():
                step = dict(zip(STEP_COLUMNS, r, strict=True))
                step["details"] = json.loads(step["details"] or "{}")
                rec.steps.append(step)
            return rec

    def summary(self) -> tuple[dict[str, int], dict[tuple[str, str], datetime], datetime | None]:
        """For the metrics: runs by final status; per (layer, table) when its last successful step (ok, warn or
        skipped as unchanged) finished; when the last ok or warned run finished. Three queries."""
        latest = ("SELECT run_id, status, finished_at FROM (SELECT run_id, status, finished_at, row_number() OVER "
                  "(PARTITION BY run_id ORDER BY recorded_at DESC) AS rn FROM airduck_runs) latest WHERE rn = 1")
        with self._conn() as cur:
            cur.execute(f"SELECT status, count(*) FROM ({latest}) r GROUP BY status")
            counts = {str(status): int(n) for status, n in cur.fetchall()}
            cur.execute("SELECT layer, table_name, max(finished_at) FROM airduck_run_steps "
                        "WHERE status IN ('ok', 'warn', 'skipped') AND table_name IS NOT NULL GROUP BY layer, table_name")
            steps = {(str(layer or ""), str(table)): _parse_ts(ts) for layer, table, ts in cur.fetchall() if ts}
            cur.execute(f"SELECT max(finished_at) FROM ({latest}) r WHERE status IN ('ok', 'warned')")
            row = cur.fetchone()
        return counts, steps, _parse_ts(row[0]) if row and row[0] else None

    def running_here(self) -> list[RunRecord]:
        with self._conn() as cur:
            return self._latest(cur, "AND status = ? AND host = ?", ["running", socket.gethostname()])


def mark_dead_runs(store: RecordStore, con: duckdb.DuckDBPyConnection) -> list[RunRecord]:
    """Runs still `running` from this host whose process is gone were killed: record that. Returns the records
    this call marked `killed` (each dead run is marked by exactly one process, once: the caller alerts for
    these)."""
    dead = []
    for rec in store.running_here():
        if rec.pid == os.getpid() or _alive(rec.pid):
            continue
        committed = con.execute(
            f"SELECT max(snapshot_id) FROM {LAKE}.snapshots() WHERE commit_extra_info LIKE ?",
            [f'%"run_id": "{rec.run_id}"%'],
        ).fetchone()[0]
        rec.status = "killed"
        rec.finished_at = datetime.now(UTC)
        rec.error = ("the process ended before the run finished (killed?); "
                     + (f"its steps had committed up to snapshot {committed} (each step commits on its own)"
                        if committed else "nothing of it was committed"))
        if store.add_if_running(rec):
            dead.append(rec)
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
