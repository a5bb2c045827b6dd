"""Gold with write-audit-publish: dbt builds into `gold_stage`, airduck publishes to `gold` atomically."""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb

from airduck.config.project import Project
from airduck.config.secrets import redact
from airduck.core.model import StepResult
from airduck.errors import ConfigError, DbtError, QualityGateFailed
from airduck.events import Reporter
from airduck.gold.dbt import DbtInvocation, error_line, run_dbt
from airduck.gold.profile import generated_profile, profile_env
from airduck.gold.sources import read_dbt_project, write_sources
from airduck.lake.catalog import TableRef, table_names
from airduck.lake.commit import author, commit_info, write
from airduck.lake.connection import LAKE, open_lake
from airduck.text import plural

GOLD = "gold"
STAGE = "gold_stage"
#: dbt's intermediate relations; a crashed dbt run can leave them behind in the staging schema
DBT_LEFTOVER_SUFFIXES = ("__dbt_tmp", "__dbt_backup")
#: materialisations whose result airduck publishes (views and incremental models become tables)
PUBLISHED_MATERIALIZATIONS = ("table", "view", "incremental")
PUBLISHED_RESOURCES = ("model", "seed")


@dataclass
class GoldResult:
    """What a gold run did: one step per model (and per failing test), the published tables, artifacts."""

    steps: list[StepResult] = field(default_factory=list)
    published: list[str] = field(default_factory=list)  # e.g. ["gold.orders_by_day"]
    artifacts: dict[str, str] = field(default_factory=dict)  # manifest / run_results / log -> path
    #: set when nothing gold depends on changed since this publish snapshot, so dbt did not run
    unchanged_since: int | None = None


@dataclass
class _Node:
    unique_id: str
    resource_type: str
    name: str
    status: str
    message: str | None
    failures: int | None
    database: str | None
    schema: str | None
    alias: str | None
    materialized: str | None
    severity: str | None
    attached: str | None
    file: str | None

    @property
    def label(self) -> str:
        return f"{self.resource_type} {self.name}" + (f" ({self.file})" if self.file else "")


def _dbt_dir(project: Project) -> Path:
    cfg = project.config.gold
    if not cfg.dbt_project:
        raise ConfigError(f"{project.file}: gold.dbt_project is not set",
                          hint="add `gold: {dbt_project: gold/}` pointing at a dbt project folder")
    path = Path(project.resolve(cfg.dbt_project))
    read_dbt_project(path)  # a clear ConfigError when it is not a dbt project
    return path


def _dbt_state(project: Project) -> Path:
    return project.state_dir / "dbt"


def _prepare(project: Project, select: list[str] | None = None, skip_unchanged: bool = False
             ) -> tuple[Path, Path, dict[str, str], str, int | None]:
    """Install extensions, clean the staging schema, (re)generate sources.yml and the profile; returns the
    dbt folder, the profiles folder, dbt's environment, the project's fingerprint and (with
    `skip_unchanged`) the snapshot gold is unchanged since, if it is."""
    from airduck.lake.extensions import install_all

    dbt_dir = _dbt_dir(project)
    install_all()
    con = open_lake(project)
    try:
        _drop_leftovers(con)
        write_sources(project, dbt_dir, con)
        digest = fingerprint(project, dbt_dir, select)
        unchanged = unchanged_since(con, digest) if skip_unchanged else None
    finally:
        con.close()
    profiles_dir = _dbt_state(project) / "profile"
    generated_profile(project, profiles_dir, STAGE)
    env = {**project.env, **profile_env(project)}
    return dbt_dir, profiles_dir, env, digest, unchanged


def dbt_commit_env(message: str, **extra: Any) -> dict[str, str]:
    """The variable that gives every lake commit of the dbt process `message` (see airduck.gold.dbt_commits)."""
    from airduck.gold.dbt_commits import ENV

    return {ENV: json.dumps({"lake": LAKE, "author": author(), "message": message,
                             "extra_info": commit_info(**extra)}, default=str)}


def _lake_tables(con: duckdb.DuckDBPyConnection, schema: str) -> list[str]:
    rows = con.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_catalog = ? AND table_schema = ?",
        [LAKE, schema],
    ).fetchall()
    return [r[0] for r in rows]


def _drop_leftovers(con: duckdb.DuckDBPyConnection) -> list[str]:
    """Drop `__dbt_tmp`/`__dbt_backup` relations a crashed dbt run left in the staging schema."""
    leftovers = [t for t in _lake_tables(con, STAGE) if t.endswith(DBT_LEFTOVER_SUFFIXES)]
    if leftovers:
        with write(con, "gold: drop leftover dbt relations", step="gold"):
            for name in leftovers:
                kind = con.execute(
                    "SELECT table_type FROM information_schema.tables WHERE table_catalog = ? "
                    "AND table_schema = ? AND table_name = ?", [LAKE, STAGE, name]).fetchone()[0]
                what = "VIEW" if kind == "VIEW" else "TABLE"
                con.execute(f"DROP {what} IF EXISTS {TableRef(STAGE, name).sql}")
    return leftovers


#: folders of a dbt project that are dbt's output, not its input
_NOT_INPUTS = ("target", "logs")


def fingerprint(project: Project, dbt_dir: Path, select: list[str] | None) -> str:
    """A digest of what a gold build depends on besides the lake: the dbt project's files (packages and the
    generated sources file included), `gold.vars`, `gold.fail_on_warn` and the dbt selection."""
    digest = hashlib.sha256()
    for path in sorted(dbt_dir.rglob("*")):
        rel = path.relative_to(dbt_dir)
        if rel.parts[0] in _NOT_INPUTS or any(p.startswith(".") for p in rel.parts) or not path.is_file():
            continue
        digest.update(rel.as_posix().encode() + b"\0" + hashlib.sha256(path.read_bytes()).digest())
    cfg = project.config.gold
    digest.update(json.dumps({"vars": cfg.vars, "fail_on_warn": cfg.fail_on_warn, "select": select or []},
                             sort_keys=True, default=str).encode())
    return digest.hexdigest()


def unchanged_since(con: duckdb.DuckDBPyConnection, digest: str) -> int | None:
    """The snapshot of the last gold publish if it was built from the same dbt project (`digest`) and no
    snapshot since then changed anything but the staging schema; else None (gold must be rebuilt)."""
    rows = con.execute(f"SELECT snapshot_id, commit_message, commit_extra_info, changes FROM {LAKE}.snapshots() "
                       "ORDER BY snapshot_id DESC").fetchall()
    names: dict[str, str] | None = None
    for sid, message, extra, changes in rows:
        try:
            info = json.loads(extra) if extra else {}
        except ValueError:
            info = {}
        if info.get("step") == "gold" and (message or "").startswith("publish gold"):
            return int(sid) if info.get("fingerprint") == digest else None
        if names is None:
            names = table_names(con)
        for kind, values in (changes or {}).items():
            for value in values:
                name = names.get(str(value), str(value)) if not kind.startswith("schemas") else f"{value}."
                if not name.strip('"').startswith(f"{STAGE}."):
                    return None
    return None


def _nodes(inv: DbtInvocation) -> list[_Node]:
    results = inv.run_results() or {}
    manifest = inv.manifest() or {}
    mnodes = manifest.get("nodes", {})
    out = []
    for r in results.get("results", []):
        uid = r.get("unique_id", "")
        m = mnodes.get(uid, {})
        cfg = m.get("config", {})
        out.append(_Node(
            unique_id=uid,
            resource_type=m.get("resource_type") or uid.split(".", 1)[0],
            name=m.get("name") or uid.rsplit(".", 1)[-1],
            status=str(r.get("status", "")),
            message=r.get("message"),
            failures=r.get("failures"),
            database=m.get("database"),
            schema=m.get("schema"),
            alias=m.get("alias") or m.get("name"),
            materialized=cfg.get("materialized"),
            severity=str(cfg.get("severity", "error")).lower() if m.get("resource_type") == "test" else None,
            attached=m.get("attached_node"),
            file=m.get("original_file_path"),
        ))
    return out


def _event_reporter(reporter: Reporter) -> Any:
    done = 0

    def on_event(event: dict[str, Any]) -> None:
        nonlocal done
        name = event.get("info", {}).get("name")
        data = event.get("data", {})
        node = data.get("node_info") or {}
        if name in ("LogModelResult", "LogTestResult", "LogSeedResult", "LogSnapshotResult"):
            done += 1
            reporter.advance("gold", table=node.get("node_name"), done=done)

    return on_event


def _artifacts(inv: DbtInvocation, artifacts_dir: Path) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, src in (("manifest", inv.manifest_path), ("run_results", inv.run_results_path)):
        if src.is_file():
            dest = artifacts_dir / src.name
            shutil.copyfile(src, dest)
            out[key] = str(dest)
    out["target"] = str(inv.target_path)
    log = inv.log_path / "dbt.log"
    if log.is_file():
        out["log"] = str(log)
    return out


def run_gold(
    project: Project, *, run_id: str, select: list[str] | None = None, reporter: Reporter | None = None,
    artifacts_dir: Path, skip_unchanged: bool = False,
) -> GoldResult:
    """Build the gold marts with `dbt build` into `gold_stage`, then publish them to `gold` in one commit.

    Raises :class:`QualityGateFailed` when a dbt test of severity error fails (or a warning, with
    `gold.fail_on_warn`), and :class:`DbtError` when dbt cannot compile or run a model. In both
    cases `gold` is left exactly as it was.

    `skip_unchanged`: do not run dbt (and add no snapshot) when neither the lake (outside the staging
    schema) nor the dbt project changed since the last publish (see :func:`unchanged_since`).
    """
    reporter = reporter or Reporter()
    cfg = project.config.gold
    dbt_dir, profiles_dir, env, digest, unchanged = _prepare(project, select, skip_unchanged)
    if unchanged is not None:
        reporter.message(f"gold: nothing changed since it was published (snapshot {unchanged}); dbt not run")
        return GoldResult(steps=[StepResult("gold", GOLD, status="skipped", details={
            "reason": "unchanged", "published_snapshot": unchanged})], unchanged_since=unchanged)
    artifacts_dir = Path(artifacts_dir)
    artifacts_dir.mkdir(parents=True, exist_ok=True)
    args: list[str] = []
    if select:
        args += ["--select", *select]
    if cfg.vars:
        args += ["--vars", json.dumps(cfg.vars, default=str)]
    reporter.start("gold")
    reporter.message(f"dbt build {' '.join(select or [])} -> {STAGE}".replace("  ", " "))
    env = {**env, **dbt_commit_env(f"run {run_id}: dbt build into {STAGE}", step="gold-stage", run_id=run_id)}
    inv = run_dbt(
        ["build"], project_dir=dbt_dir, profiles_dir=profiles_dir, target_path=artifacts_dir / "target",
        log_path=artifacts_dir / "logs", env=env, extra_args=args, on_event=_event_reporter(reporter),
        timeout=cfg.timeout, partial_parse_cache=_dbt_state(project) / "partial_parse.msgpack",
    )
    artifacts = _artifacts(inv, artifacts_dir)
    nodes = _nodes(inv)
    if inv.run_results() is None:
        raise DbtError(f"dbt build failed before running any model: {inv.first_error()}",
                       hint=f"dbt log: {inv.log_path / 'dbt.log'}")

    broken = [n for n in nodes if n.status == "error"]
    if broken:
        first = broken[0]
        raise DbtError(f"dbt {first.label} failed: {redact(error_line(first.message))}",
                       hint=f"gold was not changed; dbt log: {inv.log_path / 'dbt.log'}")
    if inv.returncode != 0 and not any(n.status in ("fail", "warn") for n in nodes):
        raise DbtError(f"dbt build failed: {inv.first_error()}", hint=f"dbt log: {inv.log_path / 'dbt.log'}")

    fail_states = ("fail", "warn") if cfg.fail_on_warn else ("fail",)
    failed_tests = [n for n in nodes if n.resource_type in ("test", "unit_test") and n.status in fail_states]
    # one step per gold table: a model's failing or warning tests go into its step, never a second row for it
    by_id = {n.unique_id: n for n in nodes}
    tests: dict[str, list[_Node]] = {}
    for t in nodes:
        if t.resource_type in ("test", "unit_test") and t.status in ("fail", "warn"):
            model = by_id.get(t.attached or "")
            tests.setdefault(f"{GOLD}.{model.alias if model else t.name}", []).append(t)

    def step(table: str, status: str, **details: Any) -> StepResult:
        bad = tests.pop(table, [])
        if bad:
            worst = next((t for t in bad if t in failed_tests), bad[0])
            status = "failed" if worst in failed_tests else ("warn" if status == "ok" else status)
            details = {"test": worst.name, "failures": worst.failures, "severity": worst.severity, **details,
                       "tests": [{"test": t.name, "status": t.status, "failures": t.failures,
                                  "severity": t.severity} for t in bad]}
            return StepResult(layer="gold", table=table, status=status, error=redact(error_line(worst.message)),
                              details=details)
        return StepResult(layer="gold", table=table, status=status, details=details)

    def test_steps() -> list[StepResult]:
        """Tests of tables that have no step of their own (singular tests, models not published)."""
        return [step(table, "ok") for table in list(tests)]

    steps: list[StepResult] = []
    to_publish = [n for n in nodes if n.resource_type in PUBLISHED_RESOURCES and n.status == "success"
                  and (n.materialized in PUBLISHED_MATERIALIZATIONS or n.resource_type == "seed")]
    if failed_tests:
        for n in to_publish:
            steps.append(step(f"{GOLD}.{n.alias}", "skipped", reason="quality gate failed", model=n.name))
        for n in nodes:  # dbt build does not build the models downstream of a failing test
            if n.resource_type in PUBLISHED_RESOURCES and n.status == "skipped":
                steps.append(step(f"{GOLD}.{n.alias}", "skipped", reason="not built: an upstream test failed",
                                  model=n.name))
        steps = [s for s in steps if s.status == "failed"] + test_steps() + [s for s in steps if s.status != "failed"]
        names = ", ".join(f"{t.name} ({plural(t.failures, 'failing row')})" if t.failures else t.name
                          for t in failed_tests)
        reporter.finish("gold", status="failed", failed_tests=len(failed_tests))
        exc = QualityGateFailed(
            f"dbt tests failed, nothing was published to gold: {names}",
            hint=f"fix the data or the models; see {artifacts.get('run_results', inv.target_path)}",
        )
        exc.steps = steps  # type: ignore[attr-defined]
        exc.artifacts = artifacts  # type: ignore[attr-defined]
        raise exc

    publishable: list[_Node] = []
    for n in to_publish:
        if n.database != LAKE or n.schema != STAGE:
            reporter.message(f"gold: {n.name} was built in {n.database}.{n.schema}, not {LAKE}.{STAGE}; "
                             "not published (remove its custom database/schema config)", level="warning")
            steps.append(StepResult(layer="gold", table=f"{n.schema}.{n.alias}", status="skipped",
                                    details={"reason": f"built outside {STAGE}", "model": n.name}))
            continue
        publishable.append(n)
    counts = publish(project, [n.alias or n.name for n in publishable], run_id=run_id,
                     fingerprint=digest) if publishable else {}
    published = []
    for n in publishable:
        table = f"{GOLD}.{n.alias}"
        published.append(table)
        done = step(table, "ok", model=n.name, materialized=n.materialized, resource_type=n.resource_type)
        done.rows_out = counts.get(n.alias or n.name, 0)
        steps.append(done)
    steps += test_steps()
    reporter.finish("gold", status="ok", published=len(published))
    return GoldResult(steps=steps, published=published, artifacts=artifacts)


def publish(project: Project, tables: list[str], *, run_id: str, fingerprint: str | None = None) -> dict[str, int]:
    """Replace each `gold.<t>` by `gold_stage.<t>` in ONE lake commit; returns row counts.
    `fingerprint` (of the dbt project, see :func:`fingerprint`) is kept in the commit's extra info."""
    con = open_lake(project)
    try:
        counts: dict[str, int] = {}
        with write(con, f"publish gold (run {run_id})", step="gold", run_id=run_id, tables=tables,
                   fingerprint=fingerprint):
            for name in tables:
                src, dst = TableRef(STAGE, name), TableRef(GOLD, name)
                con.execute(f"CREATE OR REPLACE TABLE {dst.sql} AS SELECT * FROM {src.sql}")
                counts[name] = int(con.execute(f"SELECT count(*) FROM {dst.sql}").fetchone()[0])
        return counts
    finally:
        con.close()


def dbt_project_dir(project: Project) -> Path:
    """The folder of the gold dbt project; ConfigError naming the fix when `gold.dbt_project` is unset or is not
    a dbt project."""
    return _dbt_dir(project)


def build_docs(project: Project, out_dir: Path) -> Path:
    """`dbt docs generate` into `out_dir` (index.html, manifest.json, catalog.json); returns it."""
    out_dir = Path(out_dir)
    dbt_dir, profiles_dir, env, _, _ = _prepare(project)
    env = {**env, **dbt_commit_env("dbt docs generate", step="docs")}
    inv = run_dbt(
        ["docs", "generate"], project_dir=dbt_dir, profiles_dir=profiles_dir, target_path=out_dir,
        log_path=out_dir / "logs", env=env, timeout=project.config.gold.timeout,
        partial_parse_cache=_dbt_state(project) / "partial_parse.msgpack",
    )
    if inv.returncode != 0 or not (out_dir / "index.html").is_file():
        raise DbtError(f"dbt docs generate failed: {inv.first_error()}", hint=f"dbt log: {inv.log_path / 'dbt.log'}")
    return out_dir


__all__ = ["GOLD", "STAGE", "GoldResult", "build_docs", "dbt_project_dir", "publish", "run_gold"]
