"""`airduck branch create|list|delete`, `airduck diff`, `airduck merge`, and `--branch` on the commands that read or
write one branch of the lake (docs/branches.md)."""

from __future__ import annotations

import functools
import inspect
import os
import typing
from typing import Annotated

import typer

from airduck.cli import render
from airduck.text import plural

#: the commands that take `--branch NAME` (or AIRDUCK_BRANCH)
BRANCH_COMMANDS = ("run", "tables", "head", "sql", "snapshots", "rollback", "tag", "plan", "describe", "maintain")

branch_app = typer.Typer(help="Branches of the lake: zero-copy copies of its catalog to run, diff and merge.",
                         no_args_is_help=True)


def _lakehouse():
    from airduck.cli.app import lakehouse

    return lakehouse()


def _retryable() -> None:
    """The command is an orchestrated run's task (safe to retry): a transient failure exits EXIT_TRANSIENT."""
    from airduck.cli.app import state

    state.exit_transient = True


@branch_app.command("create")
def create(
    name: Annotated[str, typer.Argument(help="Name of the new branch (a-z, 0-9, - and _).")],
    source: Annotated[str | None, typer.Option("--from", help="What to fork (default: main): main or a BRANCH (its head), a TAG or SNAPSHOT id of main (the lake as it was then), or BRANCH@TAG|SNAPSHOT of a branch (e.g. dev@12; main@12 when a branch is named like the tag or id).")] = None,
    if_missing: Annotated[bool, typer.Option("--if-missing", help="A branch of that name forked from the same branch is kept as it is (exit 0): retries of an orchestrated run.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")] = False,
) -> None:
    """Create a branch: a copy of the catalog's metadata (no data file is copied), at the head of what it forks or
    cut back to a past snapshot (`--from TAG|SNAPSHOT`); diff and merge then count changes from that snapshot."""
    if if_missing:
        _retryable()
    with _lakehouse() as lh:
        b = lh.create_branch(name, source or "main", if_missing=if_missing)
    if as_json:
        render.print_json(b.to_dict())
        return
    render.ok(f"created branch {b.name} from {b.base} at snapshot {b.fork_snapshot}")
    render.console.print(f"next: airduck run --branch {b.name}, then airduck diff {b.base}..{b.name} and "
                         f"airduck merge {b.name}", highlight=False, soft_wrap=True)


@branch_app.command("list")
def list_(as_json: Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")] = False) -> None:
    """Every branch: base, fork snapshot, head snapshot, tables changed since the fork, created by/at."""
    with _lakehouse() as lh:
        found = lh.branches()
    if as_json:
        render.print_json([b.to_dict() for b in found])
        return
    if not found:
        render.console.print("no branches (main only): `airduck branch create NAME` makes one", highlight=False)
        return
    render.table(["branch", "base", "fork", "head", "tables changed", "created by", "created at"],
                 [[b.name, b.base, b.fork_snapshot, b.head_snapshot, len(b.tables_changed), b.created_by,
                   b.created_at.strftime("%Y-%m-%d %H:%M:%S")] for b in found])


@branch_app.command("delete")
def delete(name: Annotated[str, typer.Argument(help="The branch to delete.")]) -> None:
    """Delete a branch, and the data files only it referenced."""
    with _lakehouse() as lh:
        files = lh.delete_branch(name)
    render.ok(f"deleted branch {name} ({plural(len(files), 'file')} only it referenced)")


def diff(
    spec: Annotated[str, typer.Argument(help="BASE..BRANCH (or BRANCH: against the branch it was forked from).")],
    table: Annotated[str | None, typer.Option("--table", help="Only this table (schema.table).")] = None,
    sample: Annotated[bool, typer.Option("--sample", help="Also print a few of each table's new rows (always with --table).")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")] = False,
) -> None:
    """What a branch changed since its fork, per table (rows inserted/deleted/updated, schema changes; a sample of
    new rows with --sample or --table), read from its change feed; and the tables changed on both sides (a merge
    refuses them)."""
    base, _, name = spec.rpartition("..")
    with _lakehouse() as lh:
        d = lh.diff(name, base or None, table=table)
    if as_json:
        render.print_json(d.to_dict())
        return
    render.console.print(f"{d.base}..{d.branch}: branch snapshots {d.fork_snapshot} -> {d.head_snapshot}",
                         highlight=False)
    if not d.tables:
        render.console.print(f"{d.branch} has changed nothing since its fork", highlight=False)
    else:
        render.table(["table", "change", "inserted", "deleted", "updated", "columns"],
                     [[t.table, t.change, t.inserted, t.deleted, t.updated,
                       "" if t.columns_before == t.columns_after else
                       f"{len(t.columns_before)} -> {len(t.columns_after)}"] for t in d.tables])
    for t in d.tables if sample or table else []:
        if t.sample:
            columns = [c for c in t.sample[0] if not c.startswith("_")][:8]  # the user's columns, not airduck's
            render.table(columns, [[row.get(c) for c in columns] for row in t.sample[:3]],
                         title=f"{t.table}: new rows (sample)")
    if d.conflicts:
        render.note(f"changed on {d.base} too since the fork (a merge refuses them): {', '.join(d.conflicts)}")


def merge(
    name: Annotated[str, typer.Argument(help="The branch to merge.")],
    into: Annotated[str | None, typer.Option("--into", help="Target (default: the branch it was forked from).")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only say what would be merged.")] = False,
    delete: Annotated[bool, typer.Option("--delete", help="Delete the branch after merging it; a branch this merged already is not merged again (exit 0): retries of an orchestrated run.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")] = False,
) -> None:
    """Merge a branch into its base in one commit. A table changed on both sides since the fork is a conflict:
    nothing is merged, exit 1."""
    if delete:
        _retryable()
    with _lakehouse() as lh:
        result = lh.merge(name, into, dry_run=dry_run, delete=delete)
    if as_json:
        render.print_json(result.to_dict())
        return
    what = ", ".join(f"{t.table} ({t.change})" for t in result.tables) or "nothing"
    if dry_run:
        render.console.print(f"would merge into {result.into}: {what}", highlight=False, soft_wrap=True)
    elif result.already:
        render.ok(f"{name} was merged into {result.into} already (snapshot {result.snapshot_id}): nothing to do")
    elif result.snapshot_id is None:
        render.ok(f"{name} has no changes to merge")
    else:
        render.ok(f"merged {name} into {result.into} as snapshot {result.snapshot_id}: {what}")


def audit(as_json: Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")] = False) -> None:
    """Run the `audit:` queries of airduck.yml (each must return no rows) on the lake or a branch: exit 1 when one
    returns rows. What `run --atomic` checks before it merges."""
    from airduck.errors import AuditFailed

    _retryable()
    with _lakehouse() as lh:
        queries = len(lh.project.config.audit)
        failed = lh.audit()
        branch = lh.branch
    if as_json:
        render.print_json({"branch": branch, "queries": queries, "failed": failed})
    if failed:
        raise AuditFailed(f"the audit of {branch} failed: {'; '.join(failed)}",
                          hint="see the rows with `airduck sql` (`--branch` for a branch)")
    if not as_json:
        render.ok(f"audit of {branch}: {plural(queries, 'query', 'queries')} returned no rows")


def _with_branch(fn):
    """`fn` (a command) with a `--branch NAME` option: it sets AIRDUCK_BRANCH, which every project loaded by the
    command then uses."""
    hints = typing.get_type_hints(fn, include_extras=True)
    sig = inspect.signature(fn)
    params = [p.replace(annotation=hints.get(p.name, p.annotation)) for p in sig.parameters.values()]
    params.append(inspect.Parameter(
        "branch", inspect.Parameter.KEYWORD_ONLY, default=None,
        annotation=Annotated[str | None, typer.Option("--branch", envvar="AIRDUCK_BRANCH",
                                                      help="Branch of the lake (default: main).")]))

    @functools.wraps(fn)
    def command(*args, branch: str | None = None, **kwargs):
        if branch:
            os.environ["AIRDUCK_BRANCH"] = branch
        return fn(*args, **kwargs)

    command.__signature__ = sig.replace(parameters=params)  # type: ignore[attr-defined]
    return command


def register(app: typer.Typer) -> None:
    """Add the branch commands to `app` and `--branch` to the commands of BRANCH_COMMANDS."""
    for info in app.registered_commands:
        name = info.name or (info.callback.__name__.replace("_", "-") if info.callback else "")
        if name in BRANCH_COMMANDS and info.callback is not None:
            info.callback = _with_branch(info.callback)
    app.add_typer(branch_app, name="branch")
    app.command("diff")(diff)
    app.command("merge")(merge)
    app.command("audit")(_with_branch(audit))
