"""Skipping what has not changed: per-step fingerprints, and where they are kept.

A step's fingerprint is a digest of

- its configuration: the source or silver rule as written in airduck.yml, a dbt model's own file plus the
  dbt project's shared files (dbt_project.yml, macros, schema files, packages) and `gold.vars`, a served or
  exported table's settings (DSN without its password);
- the versions of the lake tables it reads: for each, the latest snapshot that changed it (rows inserted
  or deleted, inlined into the catalog or in files, columns altered, the table created or recreated);
- the versions of the lake tables it writes, as they were right after its own commit: a table changed by
  anything else since (a rollback, a hand-made UPDATE) makes its step run again.

The fingerprint is stored when the step succeeds, in ``airduck_step_state`` beside the run records (the
catalog's own database, not the lake: recording adds no snapshot). A step whose fingerprint is the stored
one is unchanged and can be skipped. Ingest steps always run: discovering new files or rows at the source
is their job (the runner reports them skipped when they wrote nothing).

Maintenance that rewrites files without changing rows (compaction, flushing inlined rows) is not a change.
Expiring snapshots forgets old changes, so a table's version may move once after an expiry: its readers
then run once more (never less).
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb

from airduck._version import __version__
from airduck.core.model import DatasetKind, StepKind
from airduck.core.plan import Step
from airduck.lake.branches import on
from airduck.lake.connection import METADATA
from airduck.pipeline.records import RecordStore

if TYPE_CHECKING:
    from airduck.config.project import Project

#: snapshot changes that change what a table holds (DuckLake's names in ducklake_snapshot_changes)
DATA_CHANGES = ("inserted_into_table", "deleted_from_table", "inlined_insert", "inlined_delete", "altered_table")
#: maintenance moves rows between files (and out of the catalog) and changes nothing a reader sees; a flush of
#: inlined deletes is logged as `deleted_from_table` too, so snapshots of maintenance are left out whole
MAINTENANCE_CHANGES = ("inline_flush", "merge_adjacent", "rewrite_delete", "compacted_table")
#: schemas whose tables are shared state (watermarks, files ingested, silver progress) or dbt's staging area:
#: every step of a layer writes them, so they are not part of any step's fingerprint
SHARED_SCHEMAS = ("airduck", "gold_stage")
STATE_TABLE = "airduck_step_state"
_STATE_DDL = (f"CREATE TABLE IF NOT EXISTS {STATE_TABLE} (step_id TEXT PRIMARY KEY, fingerprint TEXT NOT NULL, "
              "run_id TEXT, finished_at TEXT, detail TEXT)")
#: folders of a dbt project that are dbt's output, not its input
_DBT_OUTPUTS = ("target", "logs")
#: the sources file airduck writes into the dbt project on every build (it lists lake tables, not logic)
_GENERATED = "_airduck_sources.yml"


def table_versions(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    """Every current lake table (``schema.table``) -> the latest snapshot that changed its contents or
    columns, or created it. One catalog query for all tables; inlined inserts and deletes count."""
    kinds = ", ".join(f"'{k}'" for k in DATA_CHANGES)
    upkeep = " AND ".join(f"changes_made NOT LIKE '%{k}:%'" for k in MAINTENANCE_CHANGES)
    rows = con.execute(f"""
        WITH ev AS (
            SELECT snapshot_id, split_part(c, ':', 1) AS kind, TRY_CAST(split_part(c, ':', 2) AS BIGINT) AS table_id
            FROM (SELECT snapshot_id, unnest(string_split(changes_made, ',')) AS c
                  FROM {METADATA}.ducklake_snapshot_changes
                  WHERE {upkeep} AND coalesce(commit_extra_info, '') NOT LIKE '%"step": "maintain"%')
        ), changed AS (
            SELECT table_id, max(snapshot_id) AS snapshot_id FROM ev WHERE kind IN ({kinds}) GROUP BY table_id
        )
        SELECT s.schema_name, t.table_name, greatest(t.begin_snapshot, coalesce(c.snapshot_id, t.begin_snapshot))
        FROM {METADATA}.ducklake_table t
        JOIN {METADATA}.ducklake_schema s ON s.schema_id = t.schema_id AND s.end_snapshot IS NULL
        LEFT JOIN changed c ON c.table_id = t.table_id
        WHERE t.end_snapshot IS NULL""").fetchall()
    return {f"{schema}.{name}": int(version) for schema, name, version in rows}


def latest_snapshot(con: duckdb.DuckDBPyConnection) -> int:
    return int(con.execute(f"SELECT max(snapshot_id) FROM {METADATA}.ducklake_snapshot").fetchone()[0])


@dataclass
class Fingerprint:
    """What a step's fingerprint is made of; `digest` is what is compared."""

    config: str  # digest of the step's configuration
    inputs: dict[str, int | None] = field(default_factory=dict)  # lake table -> version read (None: missing)
    outputs: dict[str, int | None] = field(default_factory=dict)  # lake table -> version written

    @property
    def digest(self) -> str:
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()

    def to_dict(self) -> dict[str, Any]:
        return {"config": self.config, "inputs": self.inputs, "outputs": self.outputs}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Fingerprint:
        return cls(str(data.get("config", "")), dict(data.get("inputs") or {}), dict(data.get("outputs") or {}))


@dataclass(frozen=True)
class StepState:
    step_id: str
    fingerprint: str
    run_id: str | None
    finished_at: str | None
    detail: Fingerprint | None


class StepStateStore(RecordStore):
    """``airduck_step_state``: one row per step, the fingerprint of its last success (beside the run records).
    A branch of the lake (docs/branches.md) keeps its own rows, their step ids prefixed with ``<branch>@``."""

    def __init__(self, project: Project) -> None:
        super().__init__(project)
        branch = getattr(project, "branch", None)
        self.prefix = f"{branch}@" if branch else ""

    def _mine(self, step_id: str) -> str | None:
        if self.prefix:
            return step_id[len(self.prefix):] if step_id.startswith(self.prefix) else None
        return None if "@" in step_id else step_id

    def _create(self, conn: Any, cur: Any) -> None:
        super()._create(conn, cur)
        for attempt in range(3):  # two first runs at once may race on CREATE TABLE IF NOT EXISTS
            try:
                cur.execute(_STATE_DDL)
                conn.commit()
                return
            except Exception:
                conn.rollback()
                if attempt == 2:
                    raise

    def load(self) -> dict[str, StepState]:
        """Every step's stored state."""
        with self._conn() as cur:
            cur.execute(f"SELECT step_id, fingerprint, run_id, finished_at, detail FROM {STATE_TABLE}")
            out = {}
            for stored_id, digest, run_id, finished, detail in cur.fetchall():
                step_id = self._mine(stored_id)
                if step_id is None:
                    continue
                try:
                    parsed = Fingerprint.from_dict(json.loads(detail)) if detail else None
                except ValueError:
                    parsed = None
                out[step_id] = StepState(step_id, digest, run_id, finished, parsed)
            return out

    def save(self, step_id: str, fp: Fingerprint, run_id: str | None) -> None:
        self.save_many({step_id: (fp, run_id)})

    def save_many(self, states: Mapping[str, tuple[Fingerprint, str | None]], *, replace: bool = False) -> None:
        """Store several steps' fingerprints in one transaction (`replace`: this branch's other rows are dropped)."""
        now = datetime.now(UTC).isoformat()
        rows = [[self.prefix + step_id, fp.digest, run_id, now, json.dumps(fp.to_dict(), sort_keys=True)]
                for step_id, (fp, run_id) in states.items()]
        with self._conn() as cur:
            if replace:
                cur.execute(f"SELECT step_id FROM {STATE_TABLE}")
                gone = [[s] for (s,) in cur.fetchall() if self._mine(s) is not None]
                if gone:
                    cur.executemany(self._sql(f"DELETE FROM {STATE_TABLE} WHERE step_id = ?"), gone)
            if rows:
                cur.executemany(self._sql(
                    f"INSERT INTO {STATE_TABLE} (step_id, fingerprint, run_id, finished_at, detail) "
                    "VALUES (?, ?, ?, ?, ?) ON CONFLICT (step_id) DO UPDATE SET fingerprint = excluded.fingerprint, "
                    "run_id = excluded.run_id, finished_at = excluded.finished_at, detail = excluded.detail"), rows)

    def forget(self, step_ids: Iterable[str] | None = None) -> None:
        """Drop the stored state of these steps (all steps when None): they run on the next run."""
        with self._conn() as cur:
            if step_ids is None:
                step_ids = [self.prefix + s for s in self.load()]
            else:
                step_ids = [self.prefix + s for s in step_ids]
            for step_id in step_ids:
                cur.execute(self._sql(f"DELETE FROM {STATE_TABLE} WHERE step_id = ?"), [step_id])


# -- step state across branches (docs/branches.md, "Step state of branches") ------------------------------------
def _versions_in(fp: Fingerprint) -> list[int]:
    return [v for v in (*fp.inputs.values(), *fp.outputs.values()) if v is not None]


def carry_over(project: Project, source: str | None, branch: str, fork: int) -> int:
    """Give `branch`, just forked from `source` (None: main) at snapshot `fork`, the step state of `source`.

    The branch's catalog is a copy of the source's at `fork`, so a table version up to `fork` names the same
    contents in both: a fingerprint made only of such versions is as true on the branch. Rows with a later version
    (a run on the source recorded since the copy; in the branch's catalog that id is a snapshot of its own) are
    left out, so those steps run on the branch. Any older rows of the branch (a deleted branch of that name) are
    dropped. Returns the number of steps carried over."""
    states = StepStateStore(on(project, source)).load()
    keep = {sid: (st.detail, st.run_id) for sid, st in states.items()
            if st.detail is not None and st.detail.digest == st.fingerprint
            and all(v <= fork for v in _versions_in(st.detail))}
    StepStateStore(on(project, branch)).save_many(keep, replace=True)  # type: ignore[arg-type]
    return len(keep)


def publish_state(project: Project, branch: str, into: str | None, *, fork: int, head: Mapping[str, int],
                  merged: Iterable[str], snapshot: int | None, run_id: str) -> tuple[int, int]:
    """After branch `branch` (forked at `fork`, its tables at versions `head` when it was merged) was merged into
    `into` (None: main) by the commit `snapshot`, which wrote the tables `merged`: store on `into` the fingerprints
    run `run_id` recorded on the branch, translated to `into`'s versions, so the steps it ran are skipped on `into`
    while nothing they read or wrote changed (an atomic run; the branch's other rows were carried over from `into`).

    A version up to `fork` is shared history and stays; the branch's last version of a merged table becomes the
    merge commit (it holds the same rows on `into`). Any other version after the fork (a table the branch changed
    again later, or did not merge) has no counterpart: that step's state on `into` is dropped, so it runs there.
    Returns (steps stored, steps dropped)."""
    merged = set(merged)

    def translate(table: str, v: int | None) -> int | None:
        if v is None or v <= fork:
            return v
        if snapshot is not None and table in merged and head.get(table) == v:
            return snapshot
        raise LookupError(table)

    publish: dict[str, tuple[Fingerprint, str | None]] = {}
    dropped: list[str] = []
    for sid, st in StepStateStore(on(project, branch)).load().items():
        fp = st.detail
        if fp is None or fp.digest != st.fingerprint:
            continue
        if st.run_id != run_id:
            continue
        try:
            publish[sid] = (Fingerprint(fp.config, {t: translate(t, v) for t, v in fp.inputs.items()},
                                        {t: translate(t, v) for t, v in fp.outputs.items()}), st.run_id)
        except LookupError:
            dropped.append(sid)
    target = StepStateStore(on(project, into))
    target.save_many(publish)
    if dropped:
        target.forget(dropped)
    return len(publish), len(dropped)


class StepFreshness:
    """Which steps of a plan must run, and the record of those that succeeded.

    ``changed(step)`` before a step: None when it can be skipped, else why it must run. ``record(step, run_id)``
    after the step committed successfully. Safe to call from the runner's threads. `con` has the lake attached
    as ``lake`` and must not hold an open transaction (it would see an old snapshot).
    """

    def __init__(self, project: Project, con: duckdb.DuckDBPyConnection, *, full_refresh: bool = False,
                 store: StepStateStore | None = None) -> None:
        self.project = project
        self.full_refresh = full_refresh
        self.store = store or StepStateStore(project)
        self._con = con
        self._lock = threading.RLock()
        self._state: dict[str, StepState] | None = None
        self._versions: dict[str, int] = {}
        self._versions_at: int | None = None
        self._pending: dict[str, Fingerprint] = {}
        self._written: dict[str, int | None] = {}  # outputs recorded by this run -> their version
        self._dbt_shared: str | None = None

    # -- lake versions ---------------------------------------------------------------------------------------
    def versions(self) -> dict[str, int]:
        """Current table versions (see :func:`table_versions`), read again only when the lake has a new snapshot."""
        with self._lock:
            cur = self._con.cursor()
            try:
                now = latest_snapshot(cur)
                if now != self._versions_at:
                    self._versions = table_versions(cur)
                    self._versions_at = now
            finally:
                cur.close()
            return self._versions

    def _state_of(self, step_id: str) -> StepState | None:
        with self._lock:
            if self._state is None:
                self._state = self.store.load()
            return self._state.get(step_id)

    # -- fingerprints ----------------------------------------------------------------------------------------
    @staticmethod
    def inputs_of(step: Step) -> list[str]:
        """The lake tables a step's fingerprint covers as inputs (shared state tables left out). For a dbt model the
        plan lists its source()s, ref()s and the lake tables its SQL names directly."""
        return sorted({d.name for d in step.inputs if d.kind == DatasetKind.LAKE
                       and d.name.split(".", 1)[0] not in SHARED_SCHEMAS})

    @staticmethod
    def outputs_of(step: Step) -> list[str]:
        return sorted({d.name for d in step.outputs if d.kind == DatasetKind.LAKE
                       and d.name.split(".", 1)[0] not in SHARED_SCHEMAS})

    def fingerprint(self, step: Step) -> Fingerprint:
        """The step's fingerprint now (inputs and outputs at their current versions)."""
        versions = self.versions()
        return Fingerprint(self.config_digest(step), {t: versions.get(t) for t in self.inputs_of(step)},
                           {t: versions.get(t) for t in self.outputs_of(step)})

    def config_digest(self, step: Step) -> str:
        """A digest of what configures the step (no secret is kept: DSN passwords are left out)."""
        parts: dict[str, Any] = {"airduck": __version__, "step": step.id}
        cfg = self.project.config
        if step.kind == StepKind.INGEST:
            parts["source"] = _dump(cfg.sources.get(step.name))
        elif step.kind == StepKind.SILVER:
            parts["rule"] = _dump(cfg.silver.get(step.name))
        elif step.kind == StepKind.GOLD:
            file = self._model_file(step)
            parts["file"] = _file_digest(file) if file is not None else None
            parts["shared"] = self._dbt_shared_digest()
            parts["gold"] = {"vars": cfg.gold.vars, "fail_on_warn": cfg.gold.fail_on_warn}
            parts["meta"] = {k: v for k, v in step.meta if k in ("materialized", "resource_type", "alias")}
        elif step.kind == StepKind.SERVE:
            pg = cfg.serve.postgres
            if pg is not None:
                parts["target"] = {"dsn": _without_password(pg.dsn), "schema": pg.schema_}
                parts["table"] = _dump(_served(pg.tables, step.name))
        elif step.kind == StepKind.EXPORT:
            ex = cfg.serve.export
            if ex is not None:
                parts["target"] = {"path": ex.path, "format": list(ex.format)}
                parts["table"] = _dump(_served(ex.tables, step.name))
        return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()

    # -- decisions -------------------------------------------------------------------------------------------
    def changed(self, step: Step) -> str | None:
        """None when `step` is unchanged since it last succeeded (skip it), else the reason it must run."""
        fp = self.fingerprint(step)
        with self._lock:
            self._pending[step.id] = fp
        if step.kind == StepKind.INGEST:
            return "sources are always read for new data"
        if self.full_refresh:
            return "full refresh"
        state = self._state_of(step.id)
        if state is None:
            return "never ran"
        if state.fingerprint == fp.digest:
            return None
        return _why(step, state.detail, fp)

    def changed_many(self, steps: Iterable[Step]) -> dict[str, str | None]:
        """`changed` for several steps at once, in the given (topological) order, where a step also runs
        when a step it depends on among them runs (a dbt model after the models it refs, built in one
        `dbt build`)."""
        out: dict[str, str | None] = {}
        for step in steps:
            reason = self.changed(step)
            if reason is None:
                upstream = next((d for d in step.depends_on if out.get(d)), None)
                if upstream is not None:
                    reason = f"{upstream} runs"
            out[step.id] = reason
        return out

    def record(self, step: Step, run_id: str | None) -> Fingerprint:
        """Store the fingerprint of `step`, which has just succeeded and committed: its configuration and the
        input versions as they were when `changed` was asked (inputs written earlier in this run by the steps
        recorded here: as they wrote them), its outputs as they are now."""
        versions = self.versions()
        with self._lock:
            pending = self._pending.pop(step.id, None)
            inputs = {t: versions.get(t) for t in self.inputs_of(step)}
            if pending is not None:
                inputs = {t: (self._written[t] if t in self._written else pending.inputs.get(t, inputs[t]))
                          for t in inputs}
            fp = Fingerprint(pending.config if pending else self.config_digest(step), inputs,
                             {t: versions.get(t) for t in self.outputs_of(step)})
            self._written.update(fp.outputs)
        self.store.save(step.id, fp, run_id)
        with self._lock:
            if self._state is not None:
                self._state[step.id] = StepState(step.id, fp.digest, run_id, datetime.now(UTC).isoformat(), fp)
        return fp

    def forget(self, step: Step) -> None:
        """A step failed: it runs again next time whatever changed (its old state no longer describes its tables
        for certain)."""
        self.store.forget([step.id])
        with self._lock:
            if self._state is not None:
                self._state.pop(step.id, None)

    # -- dbt files -------------------------------------------------------------------------------------------
    def _dbt_dir(self) -> Path | None:
        folder = self.project.config.gold.dbt_project
        return Path(self.project.resolve(folder)) if folder else None

    def _dbt_paths(self, key: str, default: str) -> list[Path]:
        from airduck.gold.sources import read_dbt_project

        dbt_dir = self._dbt_dir()
        if dbt_dir is None:
            return []
        try:
            conf = read_dbt_project(dbt_dir)
        except Exception:
            return [dbt_dir / default]
        return [dbt_dir / str(p) for p in (conf.get(key) or [default])]

    def _model_file(self, step: Step) -> Path | None:
        dbt_dir = self._dbt_dir()
        if dbt_dir is None:
            return None
        for key in ("original_file_path", "file", "path"):
            rel = step.get(key)
            if rel:
                path = dbt_dir / str(rel)
                return path if path.is_file() else None
        seed = step.get("resource_type") == "seed"
        roots = self._dbt_paths("seed-paths", "seeds") if seed else self._dbt_paths("model-paths", "models")
        suffixes = (".csv",) if seed else (".sql", ".py")
        for root in roots:
            for suffix in suffixes:
                found = sorted(root.rglob(f"{step.name}{suffix}")) if root.is_dir() else []
                if found:
                    return found[0]
        return None

    def _dbt_shared_digest(self) -> str | None:
        """The dbt project's files every model depends on: all but the models' and seeds' own files, dbt's output
        folders and the sources file airduck generates."""
        with self._lock:
            if self._dbt_shared is not None:
                return self._dbt_shared
            dbt_dir = self._dbt_dir()
            if dbt_dir is None or not dbt_dir.is_dir():
                return None
            own = [p for p in (*self._dbt_paths("model-paths", "models"), *self._dbt_paths("seed-paths", "seeds"))]
            digest = hashlib.sha256()
            for path in sorted(dbt_dir.rglob("*")):
                rel = path.relative_to(dbt_dir)
                if (rel.parts[0] in _DBT_OUTPUTS or any(p.startswith(".") for p in rel.parts) or not path.is_file()
                        or path.name == _GENERATED):
                    continue
                if path.suffix in (".sql", ".py", ".csv") and any(path.is_relative_to(r) for r in own):
                    continue
                digest.update(rel.as_posix().encode() + b"\0" + hashlib.sha256(path.read_bytes()).digest())
            self._dbt_shared = digest.hexdigest()
            return self._dbt_shared


def _why(step: Step, old: Fingerprint | None, new: Fingerprint) -> str:
    if old is None:
        return "changed"
    if old.config != new.config:
        return {StepKind.SILVER: "its rule changed", StepKind.GOLD: "its model or the dbt project changed"}.get(
            step.kind, "its configuration changed")
    for table, version in sorted(new.inputs.items()):
        before = old.inputs.get(table)
        if before != version:
            if version is None:
                return f"{table} is missing"
            return f"{table} changed (snapshot {before} -> {version})" if before is not None else f"{table} is new"
    for table, version in sorted(new.outputs.items()):
        before = old.outputs.get(table)
        if before != version:
            if version is None:
                return f"{table} is missing"
            return f"{table} was changed since this step wrote it (snapshot {before} -> {version})"
    return "its inputs or outputs changed"


def _dump(model: Any) -> Any:
    if model is None:
        return None
    if hasattr(model, "model_dump"):
        return model.model_dump(mode="json", by_alias=True)
    return model


def _served(tables: list[Any], name: str) -> Any:
    for t in tables:
        short = t.name or t.table.split(".")[-1].strip('"')
        if name in (short, t.table):
            return t
    return None


_PASSWORD_PAIR = re.compile(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", re.I)
_URL_PASSWORD = re.compile(r"(://[^:/@\s]*):[^@/\s]*@")


def _without_password(dsn: str) -> str:
    return _URL_PASSWORD.sub(r"\1@", _PASSWORD_PAIR.sub(r"\1", dsn or ""))


def _file_digest(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


__all__ = ["DATA_CHANGES", "Fingerprint", "StepFreshness", "StepState", "StepStateStore", "carry_over", "publish_state",
           "table_versions"]
