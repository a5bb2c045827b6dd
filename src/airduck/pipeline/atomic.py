"""Write-audit-publish runs (`airduck run --atomic`): the plan runs on a temporary branch forked from the target,
is audited there (its gates and dbt tests fail it as on main; then every `audit:` query must return no rows), and
only then merged into the target in one commit. Serving (PostgreSQL marts, exports) happens after the merge, from
the target. A failed run, audit or merge keeps the branch for inspection and says so. See docs/branches.md."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from airduck.errors import AirduckError, AuditFailed, NotFound, RunFailed
from airduck.lake import branches
from airduck.lake.connection import MAIN_BRANCH, branch_of
from airduck.pipeline.freshness import StepStateStore, carry_over, publish_state, table_versions
from airduck.pipeline.locks import catalog_lock, project_lock
from airduck.text import RUN_BRANCH_PREFIX

#: the prefix of the branches atomic runs make (and orchestrated runs: airduck.text.run_branch)
PREFIX = RUN_BRANCH_PREFIX

__all__ = ["PREFIX", "AuditFailed", "audit", "drop", "expire_failed", "fork", "kept", "publish", "run_atomic"]


def kept(message: str, name: str, what: str) -> str:
    """`message` and what a failed write-audit-publish run leaves: nothing merged, its branch `name` kept."""
    return (f"{message}; nothing was merged, the run's branch {name} is kept ({what}: "
            f"`airduck tables --branch {name}`, `airduck head TABLE --branch {name}`; `airduck branch delete {name}`)")


def _keep(error: AirduckError, name: str, what: str) -> AirduckError:
    """`error`, its message saying that nothing was merged and the run's branch `name` is kept (`error.branch`)."""
    error.message = kept(error.message, name, what)
    error.args = (error.message,)
    error.branch = name  # type: ignore[attr-defined]
    return error


def fork(project, name: str, target: str | None = None) -> tuple[branches.Branch, bool]:
    """Branch `name` of `target` (default main) for a run, and whether it was made now: a branch of that name that
    exists already (a retried task, a DAG run started again) is reused when it was forked from `target`. A run's
    branch (``run-…``) first deletes the branches of failed runs older than `branches.keep_failed_days`."""
    target = target or MAIN_BRANCH
    if name.startswith(PREFIX):
        expire_failed(project)
    with catalog_lock(project):
        made = None
        if name not in branches.names(project):
            try:
                made = branches.create(project, name, target)
            except branches.BranchExists:  # another fork of it made it just now (PostgreSQL: no catalog lock)
                pass
        if made is None:
            b = branches.get(project, name)
            if b.base != target:
                raise branches.BranchError(f"branch {name} exists but was forked from {b.base}, not {target}",
                                           hint=f"`airduck branch delete {name}`, or run into {b.base}")
            return b, False
    carry_over(project, made.base, name, made.fork_snapshot)  # it skips what a run on the target would skip
    return made, True


def drop(project, name: str, *, missing_ok: bool = False) -> list[str]:
    """Delete branch `name` (its catalog, its registry row and the data files no other catalog references: their
    keys are returned) and forget its step state, so a new branch of that name starts afresh. NotFound when there
    is no such branch; with `missing_ok` a branch already gone (a merge deleted it, or another process) only has
    its state forgotten."""
    deleted: list[str] = []
    with catalog_lock(project):  # SQLite: the registry is in main's catalog file
        if not missing_ok or name in branches.names(project):
            deleted = branches.delete(project, name)
    StepStateStore(branches.on(project, name)).forget()
    return deleted


def publish(project, name: str, target: str | None = None, *, message: str | None = None,
            **extra: Any) -> branches.MergeResult:
    """Merge a run's branch `name` into `target` (default main) in one commit and delete it. Idempotent: when
    `target` has a commit that merged `name` and the branch is gone (or is still at what that commit merged: killed
    between the commit and the delete), nothing is merged again (``already``) and the branch is deleted. A conflict
    or a failure keeps the branch and its message says so."""
    target = target or MAIN_BRANCH
    # one merge into a target at a time (see run_atomic)
    with project_lock(project, f"merge:{target}"):
        with catalog_lock(project):
            done = branches.merge_commit(project, name, target)
            if name not in branches.names(project):
                if done is None:
                    raise NotFound(f"there is no branch {name} and {target} has no merge of it",
                                   hint="see `airduck branch list`; start the run again")
                merged = branches.MergeResult(name, target, done[0], [], already=True)
            elif (done is not None and done[1].get("fork") == branches.get(project, name).fork_snapshot
                  and done[1].get("head") == branches.head_snapshot(project, name)):
                # killed between the merge commit and the delete: the delete is what is left to do
                merged = branches.MergeResult(name, target, done[0], [], already=True)
            else:
                try:
                    merged = branches.merge(project, name, target, keep=False, message=message or
                                            f"run branch {name} into {target}", **extra)
                except AirduckError as exc:
                    _keep(exc, name, "the run")
                    raise
        # merge() deleted the branch, unless there was nothing to merge (it keeps it; a run's goes)
        drop(project, name, missing_ok=True)
    return merged


def expire_failed(project, now: datetime | None = None) -> list[str]:
    """Delete the branches of failed atomic runs older than `branches.keep_failed_days`."""
    now = now or datetime.now(UTC)
    keep = timedelta(days=project.config.branches.keep_failed_days)
    gone = []
    for b in branches.list_branches(project):
        if b.name.startswith(PREFIX) and now - b.created_at > keep:
            drop(project, b.name, missing_ok=True)  # another run may be expiring it too
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
    name = f"{PREFIX}{datetime.now(UTC):%Y%m%d-%H%M%S}-{uuid.uuid4().hex[:6]}"
    fork_snapshot = fork(project, name, target)[0].fork_snapshot  # with the target's step state
    with on_branch(name, False) as blh:
        try:
            result = blh.run(select, full_refresh, reingest, threads=threads, step=step, atomic=False)
        except RunFailed as exc:
            _keep(exc, name, "the failed run")
            raise
        failed = audit(blh)
        head = table_versions(blh.con)  # the branch's tables as they are merged
    if failed:
        raise _keep(AuditFailed(f"the audit of the run failed: {'; '.join(failed)}"), name, "the audited data")
    try:
        # one merge into a target at a time (PostgreSQL too: DuckLake lets two commits append to one table, so two
        # merges checked at once could both pass)
        with project_lock(project, f"merge:{target}"), catalog_lock(project):
            merged = branches.merge(project, name, target, keep=False, run_id=result.record.run_id,
                                    message=f"atomic run {result.record.run_id} (branch {name}) into {target}")
            # the steps this run ran count as run on the target: the next run there skips what is unchanged
            publish_state(project, name, target, fork=fork_snapshot, head=head, snapshot=merged.snapshot_id,
                          merged=[t.table for t in merged.tables if t.change != "dropped"],
                          run_id=result.record.run_id)
        # merge() deleted the branch, unless there was nothing to merge (it left the branch as it was)
        drop(project, name, missing_ok=True)
    except branches.MergeConflict as exc:
        _keep(exc, name, "the run")
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
