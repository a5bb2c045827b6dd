"""The `airduck` command: thin over the Lakehouse facade (parse, call, render)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from airduck._version import __version__
from airduck.cli import render
from airduck.text import plural

app = typer.Typer(
    name="airduck",
    help="A lakehouse in one folder: sources -> bronze -> silver -> gold (dbt) -> PostgreSQL, on DuckLake.",
    no_args_is_help=True,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)


class State:
    project: Path | None = None
    debug: bool = False
    #: `run` and `maintain` exit EXIT_TRANSIENT (75) on a transient failure, for orchestrators to retry on
    exit_transient: bool = False


state = State()

JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON (stable keys).")]


def _version(value: bool) -> None:
    if value:
        typer.echo(f"airduck {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    project: Annotated[Path | None, typer.Option("-p", "--project", help="Project folder (default: search upwards from here).")] = None,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks on errors (secrets stay masked).")] = False,
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version.")] = False,
) -> None:
    state.project = project
    state.debug = debug


def lakehouse():
    from airduck.lakehouse import Lakehouse

    return Lakehouse.open(state.project)


# -- project ------------------------------------------------------------------------------------
@app.command()
def init(
    directory: Annotated[Path, typer.Argument(help="Folder of the new project (created if missing).")],
    name: Annotated[str | None, typer.Option(help="Project name (default: the folder name).")] = None,
    demo: Annotated[bool, typer.Option("--demo", help="Create the job-market demo project with generated data.")] = False,
    days: Annotated[int, typer.Option(help="--demo: days of data to generate.", min=0)] = 14,
    seed: Annotated[int, typer.Option(help="--demo: random seed (same seed, same data).")] = 42,
    source_dsn: Annotated[str | None, typer.Option(help="--demo: PostgreSQL DSN to load the companies into (a postgres source).", envvar="DEMO_SOURCE_DSN")] = None,
    serve_dsn: Annotated[str | None, typer.Option(help="--demo: PostgreSQL DSN to publish the marts to.", envvar="DEMO_SERVE_DSN")] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing airduck.yml.")] = False,
) -> None:
    """Create a new project with a commented airduck.yml (or, with --demo, the demo project)."""
    import airduck

    path = airduck.init(directory, name=name, force=force, demo=demo, days=days, seed=seed, source_dsn=source_dsn,
                        serve_dsn=serve_dsn)
    render.ok(f"created {path}")
    from airduck.cli.invocation import command, command_prefix

    prefix = command_prefix()
    then = "" if demo else f"add a source to {path} (see its commented examples), then "
    render.console.print(f"next: {then}{command('doctor', '-p', str(directory), prefix=prefix)} && "
                         f"{command('run', '-p', str(directory), prefix=prefix)}", highlight=False, soft_wrap=True)


class _DemoGroup(TyperGroup):
    """`airduck demo [DIR]`: a first word that is not a subcommand (`generate`) is the demo folder (as `--dir`)."""

    def parse_args(self, ctx: typer.Context, args: list[str]) -> list[str]:
        i = 0
        while i < len(args) and args[i].startswith("-") and args[i] != "--":
            i += 2 if args[i] in ("--dir", "--days") else 1
        if i < len(args) and args[i] == "--":
            i += 1
        if i < len(args) and args[i] not in self.commands:
            args = [*args[:i], "--dir", args[i], *args[i + 1:]]
        return super().parse_args(ctx, args)


demo_app = typer.Typer(cls=_DemoGroup, invoke_without_command=True, subcommand_metavar="[DIR] | generate [OPTIONS]",
                       help="The job-market demo: `airduck demo [DIR]` creates it in DIR (default airduck-demo, "
                       "the same as --dir DIR) if needed and runs it; `airduck demo generate` adds days of data.")
app.add_typer(demo_app, name="demo")


@demo_app.callback()
def demo_run(
    ctx: typer.Context,
    directory: Annotated[Path, typer.Option("--dir", help="Folder of the demo project (or give it as DIR).")] = Path("airduck-demo"),
    days: Annotated[int, typer.Option(help="Days of data to generate when the project is created.", min=1)] = 14,
    quiet: Annotated[bool, typer.Option("-q", "--quiet", help="No progress display.")] = False,
) -> None:
    """Create the demo project (if it does not exist yet) and run the whole pipeline on it."""
    if ctx.invoked_subcommand is not None:
        return
    import airduck
    from airduck.cli.progress import RichReporter
    from airduck.lakehouse import Lakehouse

    if airduck.ensure_demo_project(directory, days=days):
        render.ok(f"created the demo project in {directory}/ ({plural(days, 'day')} of job-market data)")
    else:
        render.console.print(f"using the existing demo project in {directory}/ (run `airduck demo generate` "
                             "for more days)", highlight=False)
    with RichReporter(quiet=quiet) as reporter, Lakehouse.open(directory, reporter) as lh:
        result = lh.run()
        rec = lh.run_info(result.record.run_id)
        marts = [t.qualified for t in lh.tables() if t.schema == "gold"]
    _run_summary(rec)
    export = lh.project.config.serve.export
    render.console.print("\n[bold]Where to look[/bold] (from this folder)", highlight=False)
    from airduck.cli.invocation import activate_command, command, command_prefix

    prefix = command_prefix()
    here = ["-p", str(directory)]

    def hint(words: list[str], note: str = "") -> None:
        render.console.print(f"  {command(*words, *here, prefix=prefix)}" + (f"   # {note}" if note else ""),
                             highlight=False, soft_wrap=True)

    hint(["tables"], "every table with rows, files, size")
    for mart in marts[:3]:
        hint(["head", mart])
    hint(["head", "silver.vacancies__quarantine"], "rows that broke a rule, and why")
    hint(["runs", "show", rec.run_id])
    activate = activate_command()
    if prefix != ["airduck"] and activate:
        render.console.print(f"  (or run `{activate}` once, then type `airduck …` alone)", highlight=False,
                             soft_wrap=True)
    if export:
        render.console.print(f"  exported marts (Parquet): {lh.project.resolve(export.path)}", highlight=False,
                             soft_wrap=True)


@demo_app.command("generate")
def demo_generate(
    days: Annotated[int, typer.Option(help="New days of data to add after the last one.", min=1)] = 1,
    as_json: JsonOpt = False,
) -> None:
    """Add new days of demo data to the current (demo) project; the next `airduck run` picks them up."""
    import airduck

    result = airduck.generate_demo_data(state.project, days)
    if as_json:
        render.print_json({"days": [d.isoformat() for d in result.days], "files": [str(f) for f in result.files],
                           "vacancy_lines": result.vacancy_lines, "company_rows": result.company_rows})
        return
    render.ok(f"added {plural(len(result.days), 'day')}: {result.first_day} .. {result.last_day} "
              f"({result.vacancy_lines:,} vacancy lines, {result.company_rows:,} company rows)")


@app.command()
def docs(
    out: Annotated[Path | None, typer.Option(help="Folder for the docs (default .airduck/docs).")] = None,
) -> None:
    """Build the dbt docs of the gold project (dbt docs generate) and say where they are."""
    from airduck.cli.progress import RichReporter
    from airduck.lakehouse import Lakehouse

    with RichReporter() as reporter, Lakehouse.open(state.project, reporter) as lh:  # shows a wait for the gold lock
        folder = lh.docs(out)
    render.ok(f"dbt docs in {folder} (open index.html, or: python -m http.server -d {folder})")


@app.command()
def doctor(as_json: JsonOpt = False) -> None:
    """Check the project: config, extensions, catalog, storage. Each line says ok or fail and the fix."""
    checks = lakehouse().doctor()
    if as_json:
        render.print_json([c.to_dict() for c in checks])
    else:
        for c in checks:
            mark = "[green]ok  [/green]" if c.ok else "[red]fail[/red]"
            line = f"{mark} {c.name}: {render.cell(c.detail)}"
            if not c.ok and c.fix:
                line += f"\n       fix: {render.cell(c.fix)}"
            render.console.print(line, highlight=False)
    if not all(c.ok for c in checks):
        raise typer.Exit(1)


@app.command()
def setup(as_json: JsonOpt = False) -> None:
    """Create the folders/buckets the project needs; versioning and lifecycle rules on the landing zone."""
    with lakehouse() as lh:
        steps = lh.setup()
        lh.current_snapshot()  # creates the catalog and the bronze/silver/gold schemas
    if as_json:
        render.print_json([s.__dict__ for s in steps])
        return
    render.table(["target", "action", "status", "detail"], [(s.target, s.action, s.status, s.detail) for s in steps])
    if any(s.status == "failed" for s in steps):
        raise typer.Exit(1)


# -- reading ------------------------------------------------------------------------------------
@app.command()
def tables(as_json: JsonOpt = False, all_: Annotated[bool, typer.Option("--all", help="Include airduck's own tables.")] = False) -> None:
    """List the lake's tables."""
    with lakehouse() as lh:
        if as_json:
            refs = lh.tables(include_system=all_)
            render.print_json([{"schema": t.schema, "name": t.name, "table": t.qualified} for t in refs])
            return
        rows = []
        for d in lh.describe_tables(include_system=all_):
            size = "in catalog" if d.inlined_rows and not d.file_count else _bytes(d.file_bytes)
            rows.append((d.schema, d.name, d.row_count, _files(d), size))
    render.table(["schema", "table", "rows", "files", "size"], rows)


def _files(d) -> str:
    """The files of a table, saying when (some of) its rows are inlined in the catalog instead."""
    if not d.inlined_rows:
        return str(d.file_count)
    return "inlined" if not d.file_count else f"{d.file_count} + inlined"


def _bytes(n: int) -> str:
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return str(n)


@app.command()
def describe(table: Annotated[str, typer.Argument(help="schema.table")], as_json: JsonOpt = False) -> None:
    """Columns and types, row count, file count and bytes of a table."""
    with lakehouse() as lh:
        d = lh.describe(table)
    if as_json:
        render.print_json(d.to_dict())
        return
    inlined = f" (+{d.inlined_rows} inlined in the catalog)" if d.inlined_rows else ""
    render.console.print(f"[bold]{d.schema}.{d.name}[/bold]  rows={d.row_count}  files={d.file_count}{inlined}  "
                         f"size={_bytes(d.file_bytes)}  delete_files={d.delete_file_count}  snapshot={d.snapshot_id}",
                         highlight=False)
    render.table(["column", "type", "nullable"], [(c.name, c.type, "yes" if c.nullable else "no") for c in d.columns])


@app.command()
def head(
    table: Annotated[str, typer.Argument(help="schema.table")],
    n: Annotated[int, typer.Option("-n", "--rows", min=1, help="Rows to show.")] = 20,
    at: Annotated[str | None, typer.Option("--at", help="Snapshot id or tag to read at (time travel).")] = None,
    at_time: Annotated[str | None, typer.Option("--at-time", help="Timestamp to read at, e.g. 2026-11-01T10:00:00Z.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Preview rows of a table, now or at a snapshot/time."""
    with lakehouse() as lh:
        cols, rows = lh.head(table, n, at=at, at_time=at_time)
    if as_json:
        render.print_json(render.rows_as_dicts(cols, rows))
    else:
        render.table(cols, rows)


@app.command()
def sql(
    query: Annotated[str, typer.Argument(help="One read-only SELECT; tables as schema.table.")],
    limit: Annotated[int | None, typer.Option(min=0, max=10**12, help="At most this many rows (0: the columns only). "
                                              "Default: every row with --json; the table shows at most 1,000.")] = None,
    timeout: Annotated[float | None, typer.Option(min=0, max=7 * 24 * 3600, help="Stop the query after this many seconds (0: no limit). "
                                                  "Default: lake.sql_timeout_seconds of airduck.yml (300).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Run a read-only SQL query on the lake (writes, files, system views and settings are refused)."""
    shown = limit if as_json else min(limit, render.DISPLAY_ROWS) if limit is not None else render.DISPLAY_ROWS
    with lakehouse() as lh:  # the table view counts the rows it does not show (one run of the query)
        result = lh.sql(query, limit=shown, timeout=timeout, count_all=not as_json and shown != limit)
    if as_json:
        render.print_json(render.rows_as_dicts(result.columns, result.rows))
    else:
        render.table(result.columns, result.rows)
    render.sql_cut_note(result, limit, as_json)


@app.command()
def snapshots(
    table: Annotated[str | None, typer.Argument(help="Only snapshots that changed this table.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """List snapshots with their commit messages (optionally of one table)."""
    with lakehouse() as lh:
        snaps = lh.snapshots(table)
        tags: dict[int, list[str]] = {}
        for t in lh.tags():
            tags.setdefault(t.snapshot_id, []).append(t.name)
    if as_json:
        render.print_json([{**s.to_dict(), "tags": tags.get(s.snapshot_id, [])} for s in snaps])
        return
    render.table(
        ["id", "time", "message", "author", "tags", "changes"],
        [(s.snapshot_id, s.time.strftime("%Y-%m-%d %H:%M:%S"), s.message or "", s.author or "",
          ", ".join(tags.get(s.snapshot_id, [])), "; ".join(f"{k}: {', '.join(v)}" for k, v in s.tables.items()))
         for s in snaps],
    )


# -- changing history ---------------------------------------------------------------------------
@app.command()
def rollback(
    table: Annotated[str, typer.Argument(help="schema.table")],
    to: Annotated[str, typer.Option("--to", help="Snapshot id or tag to go back to.")],
    as_json: JsonOpt = False,
) -> None:
    """Make a table hold what it held at a snapshot, as a new snapshot (history is kept)."""
    with lakehouse() as lh:
        new = lh.rollback(table, to)
    if as_json:
        render.print_json({"table": table, "to": to, "snapshot_id": new})
    else:
        then = {"bronze": "; the next `airduck run` ingests again what it no longer holds and rebuilds the silver "
                          "tables that read it",
                "silver": "; the next `airduck run` brings it up to date from its source again (roll the source "
                          "back too to undo its input)"}.get(table.split(".")[0], "")
        render.ok(f"{table} rolled back to {to} (new snapshot {new}){then}")


@app.command()
def tag(
    name: Annotated[str | None, typer.Argument(help="Tag name.")] = None,
    snapshot: Annotated[str | None, typer.Option("--snapshot", help="Snapshot id or tag (default: current).")] = None,
    note: Annotated[str | None, typer.Option(help="A note kept with the tag.")] = None,
    force: Annotated[bool, typer.Option("--force", help="Move an existing tag.")] = False,
    delete: Annotated[bool, typer.Option("--delete", help="Delete the tag.")] = False,
    list_: Annotated[bool, typer.Option("--list", help="List tags.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Name a snapshot so it is never expired and can be read back by name (--at NAME)."""
    if delete and name is None:
        raise typer.BadParameter("--delete needs the NAME of the tag to delete", param_hint="NAME")
    with lakehouse() as lh:
        if list_ or name is None:
            tags = lh.tags()
            if as_json:
                render.print_json([t.to_dict() for t in tags])
            else:
                render.table(["tag", "snapshot", "created", "by", "note"],
                             [(t.name, t.snapshot_id, t.created_at, t.created_by, t.note) for t in tags])
            return
        if delete:
            lh.untag(name)
            render.ok(f"tag {name} deleted")
            return
        t = lh.tag(name, snapshot, note, force)
    if as_json:
        render.print_json(t.to_dict())
    else:
        render.ok(f"tag {t.name} -> snapshot {t.snapshot_id}")


def _maintenance_steps(value: list[str] | None) -> list[str] | None:
    from airduck.lakehouse import UnknownStep, check_maintenance_steps

    try:
        check_maintenance_steps(value or [])
    except UnknownStep as exc:
        raise typer.BadParameter(exc.message, param_hint="--step") from None
    return value


@app.command()
def maintain(
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only say what would be done.")] = False,
    step: Annotated[list[str] | None, typer.Option("--step", callback=_maintenance_steps, help="Only these steps: flush, merge, rewrite, expire, cleanup.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Flush inlined data, merge small files, rewrite deletes, expire old snapshots, clean up files."""
    state.exit_transient = True
    with lakehouse() as lh:
        steps = lh.maintain(dry_run=dry_run, steps=tuple(step) if step else None)
    if as_json:
        render.print_json([s.to_dict() for s in steps])
        return
    render.table(["step", "what", "would do" if dry_run else "done", "details"],
                 [(s.name, s.description, s.would_do if dry_run else (s.done or ""), "\n".join(s.items[:10]) +
                   (f"\n... {len(s.items) - 10} more" if len(s.items) > 10 else "")) for s in steps],
                 title="maintenance plan (dry run: nothing changed)" if dry_run else "maintenance")


# -- runs ---------------------------------------------------------------------------------------
@app.command()
def plan(
    select: Annotated[list[str] | None, typer.Option("-s", "--select", help="Steps to show: a layer (bronze, silver, gold, serve), a step id (ingest:orders), a table (silver.orders), a source or model name, tag:<dbt tag>; +x adds what x depends on, x+ what depends on x. Repeatable or comma-separated.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """The run's steps in the order they can run: id, kind, what each reads and writes, what it waits for.

    Built from airduck.yml and the dbt project (dbt's graph is read once per version of the dbt project).
    Opens no lake and writes nothing to it (dbt's graph is cached in .airduck/dbt/)."""
    with lakehouse() as lh:
        the_plan = lh.plan(select)
    if as_json:
        render.print_json(the_plan.to_dict())
        return
    if not len(the_plan):
        render.console.print("nothing to run: the project has no sources, silver tables, gold or serve", highlight=False)
        return
    render.table(["step", "kind", "reads", "writes", "depends on"],
                 [[s.id, s.kind.value, ", ".join(str(d) for d in s.inputs), ", ".join(str(d) for d in s.outputs),
                   ", ".join(s.depends_on)] for s in the_plan], no_wrap=["step"])


@app.command()
def run(
    select: Annotated[list[str] | None, typer.Option("-s", "--select", help="Layers (bronze, silver, gold, serve), tables (bronze.x, silver.x, gold.x, x), step ids, tag:x; +x adds upstream, x+ downstream. Repeatable.")] = None,
    full_refresh: Annotated[bool, typer.Option("--full-refresh", help="Rebuild silver and gold from what bronze holds (sources are not read again).")] = False,
    reingest: Annotated[bool, typer.Option("--reingest", help="Re-read every selected source, replacing its bronze rows and rejects, then rebuild silver and gold.")] = False,
    threads: Annotated[int | None, typer.Option("--threads", min=1, help="Steps run at once (default: the number of cores).")] = None,
    step: Annotated[str | None, typer.Option("--step", help="Run exactly this step (e.g. ingest:orders), not its dependencies; see `airduck plan`.")] = None,
    quiet: Annotated[bool, typer.Option("-q", "--quiet", help="No progress display.")] = False,
    as_json: JsonOpt = False,
    atomic: Annotated[bool | None, typer.Option("--atomic/--no-atomic", help="Write-audit-publish: run on a temporary branch, audit, then merge in one commit (default: run.atomic).")] = None,
) -> None:
    """Run the pipeline's steps: ingest -> silver -> gold (dbt) -> serve; each step commits its tables on its own.

    Independent steps run at once (--threads). A step whose inputs, rule or model did not change since it last
    succeeded is skipped (sources are always read for new data; --full-refresh runs every step). A failed step
    stops the steps below it (`upstream failed`); the others finish. Prints this run's record. Exit code 1 on a
    failure, 75 on a transient one (a network hiccup, a commit conflict: worth retrying)."""
    state.exit_transient = True
    from airduck.cli.progress import RichReporter
    from airduck.errors import RunFailed
    from airduck.lakehouse import Lakehouse
    from airduck.project import load_project

    with RichReporter(quiet=quiet or as_json) as reporter, Lakehouse(load_project(state.project), reporter) as lh:
        try:
            result = lh.run(select, full_refresh, reingest, threads=threads, step=step, atomic=atomic)
        except RunFailed as exc:  # this run's own record (never an older run's), then the error line
            if as_json:
                render.print_json(exc.record.to_dict())
            elif exc.recorded:
                _run_summary(exc.record)
            raise
        rec = lh.run_info(result.record.run_id)
    if as_json:
        render.print_json(rec.to_dict())
        return
    _run_summary(rec)


STATUS_COLORS = {"ok": "green", "warned": "yellow", "warn": "yellow", "running": "cyan"}


def _run_summary(rec, timings: bool = False) -> None:
    cols = ["layer", "table", "status", "in", "out", "quar.", "rej."]
    rows = [[s["layer"], s["table_name"], s["status"], s["rows_in"], s["rows_out"], s["rows_quarantined"],
             s["rows_rejected"]] for s in rec.steps]
    if timings:
        cols.append("secs")
        for row, s in zip(rows, rec.steps, strict=True):
            row.append(_step_seconds(s))
    render.table(cols, rows, title=f"run {rec.run_id}: {rec.status}")
    secs = f" in {rec.seconds:.1f}s" if rec.seconds is not None else ""
    color = STATUS_COLORS.get(rec.status, "red")
    render.console.print(f"[{color}]{rec.status}[/{color}]{secs}: snapshot {rec.snapshot_before} -> {rec.snapshot_after}; "
                         f"{plural(rec.rows_in, 'row', sep=True)} in, {rec.rows_out:,} out, {rec.rows_quarantined:,} quarantined, "
                         f"{rec.rows_rejected:,} rejected", highlight=False)
    notes = [(s["table_name"], s.get("error") or (s.get("details") or {}).get("warning")) for s in rec.steps
             if s["status"] in ("warn", "failed") and (s.get("error") or (s.get("details") or {}).get("warning"))]
    for table, note in notes:  # a step's error often starts with its table already
        note = note.removeprefix(f"{table}: ")
        render.console.print(f"  [yellow]{render.cell(table)}[/yellow]: {render.cell(note)}", highlight=False)


def _step_seconds(step: dict) -> str:
    from datetime import datetime

    try:
        started, finished = (datetime.fromisoformat(step[k]) for k in ("started_at", "finished_at"))
    except (KeyError, TypeError, ValueError):
        return ""
    return f"{(finished - started).total_seconds():.1f}"


runs_app = typer.Typer(help="Run records: list runs, or `runs show ID`.", invoke_without_command=True,
                       no_args_is_help=False)
app.add_typer(runs_app, name="runs")

from airduck.cli.lineage import lineage as _lineage  # noqa: E402  (issue 12: lineage)

app.command("lineage")(_lineage)


@runs_app.callback()
def runs_list(
    ctx: typer.Context,
    limit: Annotated[int, typer.Option("-n", "--limit", min=1, help="How many runs, newest first.")] = 20,
    as_json: JsonOpt = False,
) -> None:
    """List recent runs, newest first."""
    if ctx.invoked_subcommand is not None:
        return
    with lakehouse() as lh:
        runs = lh.runs(limit)
    if as_json:
        render.print_json([r.to_dict() for r in runs])
        return
    cols = ["run", "status", "started", "secs", "in", "out", "quar.", "rej.", "snapshots"]
    rows = [[r.run_id, r.status, r.started_at.strftime("%Y-%m-%d %H:%M:%S"),
             f"{r.seconds:.1f}" if r.seconds is not None else "", r.rows_in, r.rows_out, r.rows_quarantined,
             r.rows_rejected, f"{r.snapshot_before}->{r.snapshot_after}"] for r in runs]
    if any(r.error for r in runs):
        cols.append("error")
        for row, r in zip(rows, runs, strict=True):
            row.append((r.error or "")[:80])
    render.table(cols, rows)


@runs_app.command("show")
def runs_show(run_id: Annotated[str, typer.Argument(help="Run id (or a unique prefix).")], as_json: JsonOpt = False) -> None:
    """One run with its steps: rows in/out/quarantined/rejected per table, timings, errors, quality results."""
    with lakehouse() as lh:
        rec = lh.run_info(run_id)
        checks = lh.quality(run_id=rec.run_id, limit=None)
    if as_json:
        render.print_json({**rec.to_dict(), "quality": [q.to_dict() for q in checks]})
        return
    _run_summary(rec, timings=True)
    if checks:
        from airduck.cli.quality import quality_table

        quality_table(checks, title=f"quality results ({plural(len(checks), 'check')})")
    finished = rec.finished_at.strftime("%Y-%m-%d %H:%M:%S %Z") if rec.finished_at else "-"
    render.console.print(f"started {rec.started_at.strftime('%Y-%m-%d %H:%M:%S %Z')}, finished {finished}; "
                         f"command: {render.cell(rec.command or '-')}; host {render.cell(rec.host)} pid {rec.pid}",
                         highlight=False)
    for name, path in rec.artifacts.items():
        render.console.print(f"  {name}: {render.cell(path)}", highlight=False)
    if rec.error:
        render.console.print(f"[red]error:[/red] {render.cell(rec.error)}", highlight=False)


@app.command()
def quality(
    table: Annotated[str | None, typer.Option("-t", "--table", help="Only this table (schema.table, or a bare name in any layer).")] = None,
    run_id: Annotated[str | None, typer.Option("--run", help="Only this run's results (a run id or a unique prefix).")] = None,
    failed: Annotated[bool, typer.Option("--failed", help="Only results that did not pass.")] = False,
    limit: Annotated[int, typer.Option("-n", "--limit", min=1, help="At most this many results.")] = 1000,
    gate: Annotated[bool, typer.Option("--gate", help="Exit 1 when a shown check that stops the data (action fail) did not pass.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Quality results: silver expectations, casts, required columns, lookups and dbt tests, per table.

    Rows checked and failing, the action (warn: kept, drop: quarantined, fail: the step failed), failing keys.

    Without --run: the latest result of each check (the most recent run that checked it).
    """
    from airduck.cli.quality import nothing_note, quality_by_run

    with lakehouse() as lh:
        results = lh.quality(table=table, run_id=run_id, failed=failed, limit=limit)
    if as_json:
        render.print_json([q.to_dict() for q in results])
        _quality_gate(results, gate)
        return
    if not results:
        render.console.print(nothing_note(table, run_id, failed), highlight=False)
        return
    quality_by_run(results, latest=not run_id)
    _quality_gate(results, gate)


def _quality_gate(results: list, gate: bool) -> None:
    gates = [q for q in results if gate and not q.passed and q.action == "fail"]
    if gates:
        from airduck.errors import QualityGateFailed

        raise QualityGateFailed(f"{plural(len(gates), 'quality gate')} failed: "
                                + ", ".join(f"{q.table} {q.name}" for q in gates[:5]))


from airduck.cli.airflow import app as airflow_app  # noqa: E402  (its commands import Airflow only when run)

app.add_typer(airflow_app, name="airflow")


from airduck.cli.serve import serve  # noqa: E402  (issue 11: the API server)

app.command()(serve)


from airduck.cli import branch as _branch  # noqa: E402

_branch.register(app)

_PROJECT_FLAGS = ("-p", "--project")


def hoist_project(args: list[str]) -> list[str]:
    """Move `-p DIR`, `--project DIR` and `--project=DIR` to the front, so they work after the subcommand too
    (`airduck tables -p DIR`, like `git -C`). Only tokens that are exactly these flags move, never after `--`."""
    front: list[str] = []
    rest: list[str] = []
    i = 0
    while i < len(args):
        token = args[i]
        if token == "--":
            rest += args[i:]
            break
        if token in _PROJECT_FLAGS and i + 1 < len(args):
            front += [token, args[i + 1]]
            i += 2
            continue
        if token.startswith("--project="):
            front.append(token)
        else:
            rest.append(token)
        i += 1
    return front + rest


def main(argv: list[str] | None = None) -> Any:
    """Entry point: one red line and exit 1 for airduck errors; tracebacks only with --debug."""
    import duckdb

    from airduck.errors import AirduckError
    from airduck.lake.errors import translate

    args = hoist_project(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    try:
        return app(args=args, prog_name="airduck")
    except (AirduckError, duckdb.Error) as exc:
        if debug:
            import traceback

            from airduck.config.secrets import redact

            sys.stderr.write(redact("".join(traceback.format_exception(exc))))
        render.error(str(translate(exc)))
        from airduck.errors import EXIT_TRANSIENT

        sys.exit(EXIT_TRANSIENT if state.exit_transient and getattr(translate(exc), "transient", False) else 1)


from airduck.cli.freshness import freshness  # noqa: E402 (issue 12: data-age freshness)

app.command()(freshness)
