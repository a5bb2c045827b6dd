"""Write-audit-publish runs (`airduck run --atomic`): the plan runs on a temporary branch forked from the target,
is audited there (its gates and dbt tests fail it as on main; then every `audit:` query must return no rows), and
only then merged into the target in one commit. Serving (PostgreSQL marts, exports) happens after the merge, from
the target. A failed run, audit or merge keeps the branch for inspection and says so. See docs/branches.md."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from airduck.errors import AirduckError, RunFailed, Terminal
from airduck.lake import branches
from airduck.lake.connection import MAIN_BRANCH, branch_of
from airduck.pipeline.freshness import StepStateStore, carry_over, publish_state, table_versions
from airduck.pipeline.locks import catalog_lock, project_lock

#: the prefix of the branches atomic runs make
PREFIX = "run-"


class AuditFailed(Terminal):
    """An `audit:` query of an atomic run returned rows: nothing was merged."""


def _kept(error: AirduckError, name: str, what: str) -> str:
    return (f"{error.message}; nothing was merged, the run's branch {name} is kept ({what}: "
            f"`airduck tables --branch {name}`, `airduck head TABLE --branch {name}`; `airduck branch delete {name}`)")


def expire_failed(project, now: datetime | None = None) -> list[str]:
    """Delete the branches of failed atomic runs older than `branches.keep_failed_days`."""
    now = now or datetime.now(UTC)
    keep = timedelta(days=project.config.branches.keep_failed_days)
    gone = []
    for b in branches.list_branches(project):
        if b.name.startswith(PREFIX) and now - b.created_at > keep:
            with catalog_lock(project):
                branches.delete(project, b.name)
            StepStateStore(branches.on(project, b.name)).forget()
            gone.append(b.name)
    return gone


def run_atomic(lh, on_branch, select: list[str] | None, full_refresh: bool, reingest: bool, *,
               threads: int | None, step: str | None):
    """Run `lh`'s plan as one all-or-nothing commit on its branch (main by default). `on_branch(name, serve)`
    returns a Lakehouse of the same project on branch `name` (`serve=False`: without the serve steps)."""
    project = lh.project
    target = branch_of(project) or MAIN_BRANCH
    lh.current_snapshot()  # the target's catalog exists (a new lake: created now)
    lh.close()  # SQLite: a connection that has read the catalog holds a lock others' commits would wait for
    expire_failed(project)
    name = f"{PREFIX}{datetime.now(UTC):%Y%m%d-%H%M%S}-{uuid.uuid4().hex[:6]}"
    with catalog_lock(project):
        fork = branches.create(project, name, target).fork_snapshot
    # the branch is the target as of `fork`: it skips what a plain run on the target would skip
    carry_over(project, target, name, fork)
    with on_branch(name, False) as blh:
        try:
            result = blh.run(select, full_refresh, reingest, threads=threads, step=step, atomic=False)
        except RunFailed as exc:
            exc.message = _kept(exc, name, "the failed run")
            exc.args = (exc.message,)
            exc.branch = name
            raise
        failed = audit(blh)
        head = table_versions(blh.con)  # the branch's tables as they are merged
    if failed:
        error = AuditFailed(f"the audit of the run failed: {'; '.join(failed)}")
        error.message = _kept(error, name, "the audited data")
        error.args = (error.message,)
        error.branch = name
        raise error
    try:
        # one merge into a target at a time (PostgreSQL too: DuckLake lets two commits append to one table, so two
        # merges checked at once could both pass)
        with project_lock(project, f"merge:{target}"), catalog_lock(project):
            merged = branches.merge(project, name, target, keep=False, run_id=result.record.run_id,
                                    message=f"atomic run {result.record.run_id} (branch {name}) into {target}")
            # the steps this run ran count as run on the target: the next run there skips what is unchanged
            publish_state(project, name, target, fork=fork, head=head, snapshot=merged.snapshot_id,
                          merged=[t.table for t in merged.tables if t.change != "dropped"],
                          run_id=result.record.run_id)
        if merged.snapshot_id is None:  # nothing to merge: the merge left the branch as it was
            with catalog_lock(project):
                branches.delete(project, name)
        StepStateStore(blh.project).forget()
    except branches.MergeConflict as exc:
        exc.message = _kept(exc, name, "the run")
        exc.args = (exc.message,)
        exc.branch = name
        raise
    result.merge = merged
    result.branch = name
    serve = [s for s in lh.plan().ids if s.startswith(("serve:", "export:"))] if _serves(project) else []
    if serve and merged.snapshot_id is not None:
        lh.run(serve, threads=threads, atomic=False, _serving=True)
    return result


def _serves(project) -> bool:
    cfg = project.config.serve
    return bool(cfg.postgres or cfg.export)


def audit(lh) -> list[str]:
    """The `audit:` queries (name -> SELECT) of the project that return rows, as 'name: N rows (first: ...)'."""
    failed = []
    for name, query in lh.project.config.audit.items():
        result = lh.sql(query, limit=5)
        if result.rows:
            first: Any = dict(zip(result.columns, result.rows[0], strict=True))
            more = "more than 5" if result.truncated else str(len(result.rows))
            failed.append(f"{name}: {more} row(s) (first: {first})")
    return failed
