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
    depends_on: tuple[str, ...] = ()

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
            depends_on=tuple((m.get("depends_on") or {}).get("nodes") or ()),
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


def _dbt_build(
    project: Project, select: list[str] | None, *, run_id: str, reporter: Reporter, artifacts_dir: Path,
    full_refresh: bool = False, prepared: tuple[Path, Path, dict[str, str]] | None = None,
) -> tuple[DbtInvocation, list[_Node], dict[str, str]]:
    """One `dbt build` of `select` (all models when None) into `gold_stage`; its invocation, nodes and artifacts."""
    cfg = project.config.gold
    if prepared is None:
        dbt_dir, profiles_dir, env, _, _ = _prepare(project)
    else:
        dbt_dir, profiles_dir, env = prepared
    artifacts_dir = Path(artifacts_dir)
    artifacts_dir.mkdir(parents=True, exist_ok=True)
    args: list[str] = []
    if select:
        args += ["--select", *select]
    if full_refresh:
        args.append("--full-refresh")
    if cfg.vars:
        args += ["--vars", json.dumps(cfg.vars, default=str)]
    reporter.message(f"dbt build {' '.join(select or [])} -> {STAGE}".replace("  ", " "))
    env = {**env, **dbt_commit_env(f"run {run_id}: dbt build into {STAGE}", step="gold-stage", run_id=run_id)}
    inv = run_dbt(
        ["build"], project_dir=dbt_dir, profiles_dir=profiles_dir, target_path=artifacts_dir / "target",
        log_path=artifacts_dir / "logs", env=env, extra_args=args, on_event=_event_reporter(reporter),
        timeout=cfg.timeout, partial_parse_cache=_dbt_state(project) / "partial_parse.msgpack",
    )
    _refresh_graph(project, dbt_dir, inv)
    return inv, _nodes(inv), _artifacts(inv, artifacts_dir)


def _refresh_graph(project: Project, dbt_dir: Path, inv: DbtInvocation) -> None:
    """Keep the plan's cached dbt graph (airduck.gold.manifest) in step with the sources file this build wrote:
    the build parsed the whole project, so its manifest is the graph of the project as it is now. Without this the
    next plan would see a changed project (the sources file now lists the lake's tables too) and run `dbt parse`."""
    import os

    from airduck.gold.manifest import GRAPH_FILE, graph_from_manifest

    manifest = inv.manifest()
    if manifest is None:
        return
    graph = graph_from_manifest(manifest, fingerprint(project, dbt_dir, None))
    cache = _dbt_state(project) / GRAPH_FILE
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(graph.to_json(), sort_keys=True), encoding="utf-8")
    tmp.replace(cache)


@dataclass
class _Outcome:
    """What dbt did to one model or seed, before publishing."""

    node: _Node
    status: str  # ok | warn | failed | upstream failed | skipped
    error: str | None = None
    tests: list[_Node] = field(default_factory=list)  # its failing or warning tests
    publish: bool = False
    reason: str | None = None


def _outcomes(project: Project, inv: DbtInvocation, nodes: list[_Node]) -> dict[str, _Outcome]:
    """Per model/seed that dbt ran (by name): published or not, and why. A model is published when it built and
    none of its tests failed (with `gold.fail_on_warn`, warned); dbt skips the models downstream of a failed one."""
    cfg = project.config.gold
    fail_states = ("fail", "warn", "error") if cfg.fail_on_warn else ("fail", "error")
    by_id = {n.unique_id: n for n in nodes}
    tests: dict[str, list[_Node]] = {}
    for t in nodes:
        if t.resource_type in ("test", "unit_test") and t.status in ("fail", "warn", "error"):
            owners = [t.attached] if t.attached else list(t.depends_on)
            for owner in owners:
                if owner in by_id and by_id[owner].resource_type in PUBLISHED_RESOURCES:
                    tests.setdefault(owner, []).append(t)
    out: dict[str, _Outcome] = {}
    for n in nodes:
        if n.resource_type not in PUBLISHED_RESOURCES:
            continue
        bad = tests.get(n.unique_id, [])
        failing = [t for t in bad if t.status in fail_states]
        if n.status == "error":
            out[n.name] = _Outcome(n, "failed", redact(error_line(n.message)) or "dbt could not build it", bad)
        elif n.status == "skipped":
            out[n.name] = _Outcome(n, "upstream failed", "not built: a model or test upstream of it failed", bad,
                                   reason="upstream failed")
        elif n.status != "success":
            out[n.name] = _Outcome(n, "failed", f"dbt status {n.status}", bad)
        elif failing:
            worst = failing[0]
            out[n.name] = _Outcome(n, "failed", redact(error_line(worst.message)) or f"test {worst.name} failed", bad,
                                   reason="quality gate failed")
        elif not (n.materialized in PUBLISHED_MATERIALIZATIONS or n.resource_type == "seed"):
            out[n.name] = _Outcome(n, "ok", None, bad, reason=f"{n.materialized}: not published")
        elif n.database != LAKE or n.schema != STAGE:
            out[n.name] = _Outcome(n, "skipped", None, bad, reason=f"built outside {STAGE}")
        else:
            out[n.name] = _Outcome(n, "warn" if bad else "ok", None, bad, publish=True)
    return out


def _step_of(o: _Outcome, *, rows: int = 0, snapshot: int | None = None) -> StepResult:
    from airduck.core.model import Dataset, DatasetVersion

    n = o.node
    details: dict[str, Any] = {"model": n.name, "unique_id": n.unique_id, "materialized": n.materialized,
                               "resource_type": n.resource_type}
    if o.reason:
        details["reason"] = o.reason
    if o.tests:
        worst = next((t for t in o.tests if t.status in ("fail", "error")), o.tests[0])
        details.update({"test": worst.name, "failures": worst.failures, "severity": worst.severity,
                        "tests": [{"test": t.name, "status": t.status, "failures": t.failures,
                                   "severity": t.severity} for t in o.tests]})
        if o.status == "warn" and o.error is None:
            o.error = redact(error_line(worst.message)) or None
    table = f"{GOLD}.{n.alias or n.name}" if o.status != "skipped" else f"{n.schema}.{n.alias or n.name}"
    step = StepResult(layer="gold", table=table, status=o.status, rows_out=rows, details=details, error=o.error,
                      step_id=f"gold:{n.name}")
    if o.publish and o.status in ("ok", "warn"):
        step.outputs = [DatasetVersion(Dataset.lake(table), snapshot, rows)]
    return step


def run_models(
    project: Project, models: list[str], *, run_id: str, reporter: Reporter | None = None, artifacts_dir: Path,
    full_refresh: bool = False, sources: list[str] | None = None,
) -> dict[str, StepResult]:
    """Build these dbt models (and seeds) with ONE `dbt build --select <models>` into `gold_stage`, then publish
    every one that built and passed its tests to `gold`, all in ONE lake commit; keyed by model name.

    A model whose build or tests fail is a ``failed`` step and its `gold` table stays as it was; the models dbt
    skipped because something upstream of them failed are ``upstream failed``. The others are published all the
    same (each table is atomic; there is no all-or-nothing across gold tables). `full_refresh` passes
    ``--full-refresh`` to dbt (incremental models are rebuilt). With no models, dbt is not started. `sources`: lake
    tables the models read (``silver.orders``) whose dbt source tests run in the same build (``source:silver.orders``).

    Each published step has ``step_id`` ``gold:<model>`` and an output ``gold.<alias>`` at the publish snapshot.
    Raises only for problems of the project as a whole (ConfigError: no dbt project); a dbt that fails
    before running any model makes every requested model a failed step with dbt's error.
    """
    if not models:
        return {}
    reporter = reporter or Reporter()
    reporter.start("gold")
    try:
        select = list(models) + [f"source:{t}" for t in sources or ()]
        inv, nodes, _ = _dbt_build(project, select, run_id=run_id, reporter=reporter,
                                   artifacts_dir=artifacts_dir, full_refresh=full_refresh)
    except DbtError as exc:  # a timeout
        reporter.finish("gold", status="failed")
        return {m: StepResult("gold", f"{GOLD}.{m}", status="failed", error=redact(str(exc)), step_id=f"gold:{m}",
                              details={"model": m}) for m in models}
    outcomes = _outcomes(project, inv, nodes)
    for o in outcomes.values():
        if o.reason == f"built outside {STAGE}":
            reporter.message(f"gold: {o.node.name} was built in {o.node.database}.{o.node.schema}, not "
                             f"{LAKE}.{STAGE}; not published (remove its custom database/schema config)",
                             level="warning")
    published = [o for o in outcomes.values() if o.publish and o.status in ("ok", "warn")]
    counts, snapshot = publish_snapshot(project, [o.node.alias or o.node.name for o in published], run_id=run_id,
                                        models=[o.node.name for o in published]) if published else ({}, None)
    results: dict[str, StepResult] = {}
    first_error = inv.first_error() if inv.run_results() is None or inv.returncode != 0 else None
    for m in models:
        o = outcomes.get(m)
        if o is None:
            error = (f"dbt build failed before running it: {first_error}" if inv.run_results() is None
                     else f"dbt did not build {m} (is it a model or seed of the dbt project?)")
            results[m] = StepResult("gold", f"{GOLD}.{m}", status="failed", error=error, step_id=f"gold:{m}",
                                    details={"model": m, "log": str(inv.log_path / "dbt.log")})
            continue
        results[m] = _step_of(o, rows=counts.get(o.node.alias or o.node.name, 0), snapshot=snapshot)
    from airduck.quality.dbt import attach_to_steps, results_from_run_results

    # every test dbt ran, as quality results of the model it tests; tests of no requested model (e.g. of a
    # source) go on the first step
    attach_to_steps(list(results.values()), results_from_run_results(
        inv.run_results(), inv.manifest(), run_id, fail_on_warn=project.config.gold.fail_on_warn))
    failed = sum(1 for r in results.values() if r.status in ("failed", "upstream failed"))
    reporter.finish("gold", status="failed" if failed else "ok", published=len(published))
    return results


def run_gold(
    project: Project, *, run_id: str, select: list[str] | None = None, reporter: Reporter | None = None,
    artifacts_dir: Path, skip_unchanged: bool = False, full_refresh: bool = False,
) -> GoldResult:
    """All of gold at once (the sequential runner's way; the plan's runner calls :func:`run_models`): build the
    marts (`select`: dbt selectors, all models when None) with one `dbt build` into `gold_stage`, then publish
    them to `gold` in one commit only if every model built and passed its tests.

    Raises :class:`QualityGateFailed` when a dbt test of severity error fails (or a warning, with
    `gold.fail_on_warn`), and :class:`DbtError` when dbt cannot compile or run a model. In both
    cases `gold` is left exactly as it was.

    `skip_unchanged`: do not run dbt (and add no snapshot) when neither the lake (outside the staging
    schema) nor the dbt project changed since the last publish (see :func:`unchanged_since`).
    """
    reporter = reporter or Reporter()
    dbt_dir, profiles_dir, env, digest, unchanged = _prepare(project, select, skip_unchanged)
    if unchanged is not None:
        reporter.message(f"gold: nothing changed since it was published (snapshot {unchanged}); dbt not run")
        return GoldResult(steps=[StepResult("gold", GOLD, status="skipped", details={
            "reason": "unchanged", "published_snapshot": unchanged})], unchanged_since=unchanged)
    reporter.start("gold")
    inv, nodes, artifacts = _dbt_build(project, select, run_id=run_id, reporter=reporter,
                                       artifacts_dir=artifacts_dir, full_refresh=full_refresh,
                                       prepared=(dbt_dir, profiles_dir, env))
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

    from airduck.quality.dbt import attach_to_steps, results_from_run_results

    # every test dbt ran, as quality results of the model it tests (a failing test: a failed result of its model)
    quality = results_from_run_results(inv.run_results(), inv.manifest(), run_id,
                                       fail_on_warn=project.config.gold.fail_on_warn)
    outcomes = _outcomes(project, inv, nodes)
    fail_states = ("fail", "warn") if project.config.gold.fail_on_warn else ("fail",)
    owned = {t.unique_id for o in outcomes.values() for t in o.tests}
    # failing tests of nothing airduck publishes (e.g. a singular test on sources) gate the build too
    orphans = [StepResult("gold", f"{GOLD}.{t.name}", status="failed", error=redact(error_line(t.message)),
                          details={"test": t.name, "failures": t.failures, "severity": t.severity})
               for t in nodes if t.resource_type in ("test", "unit_test") and t.status in fail_states
               and t.unique_id not in owned]
    failed_tests = [t for o in outcomes.values() if o.status == "failed" for t in o.tests if t.status in fail_states]
    if failed_tests or orphans:
        steps = [_step_of(o) for o in outcomes.values() if o.status == "failed"] + orphans
        for o in outcomes.values():
            if o.status != "failed" and o.reason != f"built outside {STAGE}" and (o.publish or o.status != "ok"):
                step = _step_of(o)
                step.status = "skipped"
                step.details["reason"] = ("quality gate failed" if o.publish
                                          else "not built: an upstream test failed")
                steps.append(step)
        names = ", ".join(f"{t.name} ({plural(t.failures, 'failing row')})" if t.failures else t.name
                          for t in failed_tests) or ", ".join(str(s.details["test"]) for s in orphans)
        reporter.finish("gold", status="failed", failed_tests=len(failed_tests) + len(orphans))
        exc = QualityGateFailed(
            f"dbt tests failed, nothing was published to gold: {names}",
            hint=f"fix the data or the models; see {artifacts.get('run_results', inv.target_path)}",
        )
        exc.steps = attach_to_steps(steps, quality)  # type: ignore[attr-defined]
        exc.artifacts = artifacts  # type: ignore[attr-defined]
        raise exc
    steps: list[StepResult] = []
    for o in outcomes.values():
        if o.reason == f"built outside {STAGE}":
            reporter.message(f"gold: {o.node.name} was built in {o.node.database}.{o.node.schema}, not "
                             f"{LAKE}.{STAGE}; not published (remove its custom database/schema config)",
                             level="warning")
            steps.append(_step_of(o))
    publishable = [o for o in outcomes.values() if o.publish]
    counts, snapshot = publish_snapshot(project, [o.node.alias or o.node.name for o in publishable], run_id=run_id,
                                        fingerprint=digest, models=[o.node.name for o in publishable]
                                        ) if publishable else ({}, None)
    steps += [_step_of(o, rows=counts.get(o.node.alias or o.node.name, 0), snapshot=snapshot) for o in publishable]
    # warnings of tests on models not published
    steps += [_step_of(o) for o in outcomes.values() if not o.publish and o.tests and o.status != "skipped"]
    published = [s.table for s in steps if s.outputs]
    attach_to_steps(steps, quality)
    reporter.finish("gold", status="ok", published=len(published))
    return GoldResult(steps=steps, published=published, artifacts=artifacts)


def publish(project: Project, tables: list[str], *, run_id: str, fingerprint: str | None = None) -> dict[str, int]:
    """Replace each `gold.<t>` by `gold_stage.<t>` in ONE lake commit; returns row counts.
    `fingerprint` (of the dbt project, see :func:`fingerprint`) is kept in the commit's extra info."""
    return publish_snapshot(project, tables, run_id=run_id, fingerprint=fingerprint)[0]


def publish_snapshot(project: Project, tables: list[str], *, run_id: str, fingerprint: str | None = None,
                     models: list[str] | None = None) -> tuple[dict[str, int], int | None]:
    """:func:`publish`, also returning the snapshot of the publish commit."""
    con = open_lake(project)
    message = f"publish gold (run {run_id})"
    try:
        counts: dict[str, int] = {}
        with write(con, message, step="gold", run_id=run_id, tables=tables, fingerprint=fingerprint,
                   steps=[f"gold:{m}" for m in (models or tables)]):
            for name in tables:
                src, dst = TableRef(STAGE, name), TableRef(GOLD, name)
                con.execute(f"CREATE OR REPLACE TABLE {dst.sql} AS SELECT * FROM {src.sql}")
                counts[name] = int(con.execute(f"SELECT count(*) FROM {dst.sql}").fetchone()[0])
        row = con.execute(f"SELECT max(snapshot_id) FROM {LAKE}.snapshots() WHERE commit_message = ?",
                          [message]).fetchone()
        return counts, (int(row[0]) if row and row[0] is not None else None)
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


__all__ = ["GOLD", "STAGE", "GoldResult", "build_docs", "dbt_project_dir", "publish", "publish_snapshot", "run_gold",
           "run_models"]
