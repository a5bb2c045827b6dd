"""Lake maintenance: flush inlined data, compact, rewrite deletes, expire snapshots, clean files."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import duckdb

from airduck.errors import Terminal
from airduck.lake.commit import write
from airduck.lake.config import MaintenanceConfig
from airduck.lake.connection import LAKE, METADATA
from airduck.lake.history import tags

#: the maintenance steps, in the order they run
STEPS = ("flush", "merge", "rewrite", "expire", "cleanup")


class UnknownStep(Terminal):
    """A maintenance step that does not exist."""


def check_steps(steps: list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """The steps as a tuple; :class:`UnknownStep` naming the choices for one that does not exist."""
    for s in steps:
        if s not in STEPS:
            raise UnknownStep(f"{s!r} is not a step; choose from {', '.join(STEPS)}")
    return tuple(steps)


@dataclass
class MaintenanceStep:
    name: str
    description: str
    would_do: str
    done: str | None = None
    items: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _size(text: str) -> int:
    units = {"KB": 1000, "MB": 1000**2, "GB": 1000**3, "KIB": 1024, "MIB": 1024**2, "GIB": 1024**3, "B": 1}
    t = text.strip().upper()
    for unit, mult in sorted(units.items(), key=lambda kv: -len(kv[0])):
        if t.endswith(unit):
            return int(float(t[: -len(unit)].strip()) * mult)
    return int(t)


def _q(con: duckdb.DuckDBPyConnection, sql: str, params: list[Any] | None = None) -> list[tuple]:
    return con.execute(sql, params or []).fetchall()


def plan(con: duckdb.DuckDBPyConnection, cfg: MaintenanceConfig, now: datetime | None = None,
         project=None) -> list[MaintenanceStep]:
    """What maintenance would do now, step by step (nothing is changed). `project`: the project whose lake `con`
    is (its branch): with branches, cleanup keeps every file another branch still references."""
    now = now or datetime.now(UTC)
    m = METADATA
    steps: list[MaintenanceStep] = []

    items = [f"{qualified}: {n} inlined rows" for qualified, n in inlined_rows(con).items()]
    steps.append(MaintenanceStep("flush", "write rows inlined in the catalog to Parquet files",
                                 f"flush {len(items)} table(s)", items=items))

    small = _size(cfg.target_file_size)
    groups = _q(con, f"""
        SELECT s.schema_name || '.' || t.table_name, count(*) AS files
        FROM {m}.ducklake_data_file f
        JOIN {m}.ducklake_table t ON t.table_id = f.table_id AND t.end_snapshot IS NULL
        JOIN {m}.ducklake_schema s ON s.schema_id = t.schema_id AND s.end_snapshot IS NULL
        WHERE f.end_snapshot IS NULL AND f.file_size_bytes < ?
          AND NOT EXISTS (SELECT 1 FROM {m}.ducklake_delete_file d  -- DuckLake does not merge files with deletes
                          WHERE d.data_file_id = f.data_file_id AND d.end_snapshot IS NULL)
        GROUP BY 1 HAVING count(*) > 1 ORDER BY 1""", [small])
    steps.append(MaintenanceStep("merge", f"merge adjacent files smaller than {cfg.target_file_size}",
                                 f"merge small files of {len(groups)} table(s)",
                                 items=[f"{q}: {n} small files" for q, n in groups]))

    deletes = _q(con, f"""
        SELECT s.schema_name || '.' || t.table_name, count(*)
        FROM {m}.ducklake_delete_file d
        JOIN {m}.ducklake_data_file f ON f.data_file_id = d.data_file_id AND f.end_snapshot IS NULL
        JOIN {m}.ducklake_table t ON t.table_id = d.table_id AND t.end_snapshot IS NULL
        JOIN {m}.ducklake_schema s ON s.schema_id = t.schema_id AND s.end_snapshot IS NULL
        WHERE d.end_snapshot IS NULL AND d.delete_count >= f.record_count * ?
        GROUP BY 1 ORDER BY 1""", [cfg.delete_threshold])
    steps.append(MaintenanceStep("rewrite", f"rewrite files with at least {cfg.delete_threshold:.0%} rows deleted",
                                 f"rewrite files of {len(deletes)} table(s)",
                                 items=[f"{q}: {n} file(s)" for q, n in deletes]))

    versions = expirable(con, cfg, now, project)
    steps.append(MaintenanceStep("expire", f"expire snapshots older than {cfg.expire_older_than_days:g} days "
                                 "(never tagged ones, the current one, or those a branch merge still reads)",
                                 f"expire {len(versions)} snapshot(s)", items=[str(v) for v in versions]))

    older = now - timedelta(days=cfg.cleanup_older_than_days)
    files = _q(con, "SELECT path FROM ducklake_cleanup_old_files(?, dry_run => true, older_than => ?)", [LAKE, older])
    shared = _shared(project)
    if shared is not None:
        files = [f for f in files if _name(f[0]) not in shared[0]]
        orphans = [(k,) for k in shared[1](older)]
    else:
        orphans = _q(con, "SELECT path FROM ducklake_delete_orphaned_files(?, dry_run => true, older_than => ?)",
                     [LAKE, older])
    steps.append(MaintenanceStep("cleanup", f"delete files of expired snapshots and orphaned files older than "
                                 f"{cfg.cleanup_older_than_days:g} days",
                                 f"delete {len(files)} old and {len(orphans)} orphaned file(s)",
                                 items=[r[0] for r in files] + [r[0] for r in orphans]))
    return steps


def inlined_rows(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    """Rows held inlined in the catalog (not yet in Parquet files), per table that has any."""
    m = METADATA
    inlined = _q(con, f"""
        SELECT s.schema_name || '.' || t.table_name, i.table_name
        FROM {m}.ducklake_inlined_data_tables i
        JOIN {m}.ducklake_table t ON t.table_id = i.table_id AND t.end_snapshot IS NULL
        JOIN {m}.ducklake_schema s ON s.schema_id = t.schema_id AND s.end_snapshot IS NULL""")
    out: dict[str, int] = {}
    for qualified, inline_table in inlined:
        n = _q(con, f"SELECT count(*) FROM {m}.{inline_table} WHERE end_snapshot IS NULL")[0][0]
        if n:
            out[qualified] = out.get(qualified, 0) + int(n)
    return out


def live_files(con: duckdb.DuckDBPyConnection, kind: str = "data") -> dict[str, int]:
    """Current data files (`kind="data"`) or delete files (`"delete"`) per table."""
    m = METADATA
    rows = _q(con, f"""
        SELECT s.schema_name || '.' || t.table_name, count(*)
        FROM {m}.ducklake_{kind}_file f
        JOIN {m}.ducklake_table t ON t.table_id = f.table_id AND t.end_snapshot IS NULL
        JOIN {m}.ducklake_schema s ON s.schema_id = t.schema_id AND s.end_snapshot IS NULL
        WHERE f.end_snapshot IS NULL GROUP BY 1""")
    return {q: int(n) for q, n in rows}


def _changed(before: dict[str, int], after: dict[str, int], unit: str) -> list[str]:
    """`table: N -> M <unit>` for every table whose count changed."""
    return [f"{t}: {before.get(t, 0):,} -> {after.get(t, 0):,} {unit}" for t in sorted(set(before) | set(after))
            if before.get(t, 0) != after.get(t, 0)]


def expirable(con: duckdb.DuckDBPyConnection, cfg: MaintenanceConfig, now: datetime, project=None) -> list[int]:
    """The snapshots older than the configured age, except tagged ones, the current one and (with branches, see
    `project` in `plan`) those a merge still reads: a branch's snapshots since its fork and its base's since the
    branch's base snapshot (docs/branches.md, "Invariants")."""
    cutoff = now - timedelta(days=cfg.expire_older_than_days)
    keep = {t.snapshot_id for t in tags(con)}
    current = _q(con, f"SELECT id FROM {LAKE}.current_snapshot()")[0][0]
    needed = None
    if project is not None:
        from airduck.lake import branches

        needed = branches.needed_since(project)
    rows = _q(con, f"SELECT snapshot_id FROM {LAKE}.snapshots() WHERE snapshot_time < ? ORDER BY 1", [cutoff])
    return [int(r[0]) for r in rows if r[0] not in keep and r[0] != current and (needed is None or r[0] < needed)]


def _name(path: str) -> str:
    return path.replace("\\", "/").rsplit("/", 1)[-1]


def _shared(project):
    """With branches: (names of the files other catalogs reference, a function listing the data path's keys no
    catalog references older than a time). None without branches (DuckLake's own cleanup is then exact)."""
    if project is None:
        return None
    from airduck.lake import branches

    if not branches.names(project):
        return None
    return branches.protected_files(project), lambda older: branches.unreferenced_files(project, older)


def run(con: duckdb.DuckDBPyConnection, cfg: MaintenanceConfig, *, dry_run: bool = False,
        steps: tuple[str, ...] = STEPS,
        now: datetime | None = None, project=None) -> list[MaintenanceStep]:
    """Run maintenance (or, with dry_run, only say what it would do). `project`: see `plan`."""
    now = now or datetime.now(UTC)
    planned = [s for s in plan(con, cfg, now, project) if s.name in steps]
    if dry_run:
        return planned
    for step in planned:
        # each step reports what it actually did (counted before and after), not what it was asked to do
        if step.name == "flush":
            before = inlined_rows(con)
            _in_tx(con, "maintain: flush inlined data", lambda: con.execute("CALL ducklake_flush_inlined_data(?)", [LAKE]))
            after = inlined_rows(con)
            flushed = {t: n - after.get(t, 0) for t, n in before.items() if n - after.get(t, 0) > 0}
            step.items = [f"{t}: {n:,} rows written to Parquet" for t, n in sorted(flushed.items())]
            step.done = (f"flushed {sum(flushed.values()):,} inlined rows of {len(flushed)} table(s)" if flushed
                         else "nothing to flush")
        elif step.name == "merge":
            before = live_files(con)
            _in_tx(con, "maintain: merge adjacent files", lambda: con.execute(
                "CALL ducklake_merge_adjacent_files(?, max_file_size => ?)", [LAKE, _size(cfg.target_file_size)]))
            step.items = _changed(before, live_files(con), "files")
            step.done = f"merged the files of {len(step.items)} table(s)" if step.items else "nothing was merged"
        elif step.name == "rewrite":
            before = live_files(con, "delete")
            _in_tx(con, "maintain: rewrite files with deletes", lambda: con.execute(
                "CALL ducklake_rewrite_data_files(?, delete_threshold => ?)", [LAKE, cfg.delete_threshold]))
            step.items = _changed(before, live_files(con, "delete"), "delete files")
            step.done = f"rewrote the files of {len(step.items)} table(s)" if step.items else "nothing was rewritten"
        elif step.name == "expire":
            versions = expirable(con, cfg, now, project)
            if versions:
                con.execute("CALL ducklake_expire_snapshots(?, versions => ?)", [LAKE, versions])
            step.done = f"expired {len(versions)} snapshot(s)"
        elif step.name == "cleanup":
            older = now - timedelta(days=cfg.cleanup_older_than_days)
            shared = _shared(project)
            if shared is not None:  # files another branch still reads leave this catalog's list, not the store
                from airduck.lake import branches

                branches.unschedule(project, shared[0])
            a = _q(con, "SELECT path FROM ducklake_cleanup_old_files(?, older_than => ?)", [LAKE, older])
            if shared is not None:
                from airduck.lake import branches

                b = [(k,) for k in shared[1](older)]
                branches.delete_keys(project, [k for (k,) in b])
            else:
                b = _q(con, "SELECT path FROM ducklake_delete_orphaned_files(?, older_than => ?)", [LAKE, older])
            step.items = [r[0] for r in a] + [r[0] for r in b]
            step.done = f"deleted {len(a)} old and {len(b)} orphaned file(s)"
    return planned


def _in_tx(con: duckdb.DuckDBPyConnection, message: str, fn) -> None:
    with write(con, message, step="maintain"):
        fn()
