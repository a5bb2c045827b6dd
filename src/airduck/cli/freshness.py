"""`airduck freshness`: every table's data age and its status against `freshness:` (like dbt source freshness)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

import typer

from airduck.cli import render


def _parse_now(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(f"{value!r} is not an ISO time such as 2026-12-01T06:00:00+00:00") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


_STYLE = {"ok": "green", "warn": "yellow", "error": "red", "none": "dim"}


def freshness(
    as_json: Annotated[bool, typer.Option("--json", help="Print machine-readable JSON (stable keys).")] = False,
    alert: Annotated[bool, typer.Option("--alert", help="Send the `stale` alert (warn and error tables) to the "
                                        "webhooks of `alerts:`.")] = False,
    now: Annotated[str | None, typer.Option("--now", metavar="TIME", help="Judge ages as of this ISO time, e.g. "
                                            "2026-12-01T06:00:00+02:00 (UTC without an offset; default: now).")] = None,
) -> None:
    """Every table's data age and its freshness status: ok, warn or error.

    The age is the time since the latest snapshot that changed the table; the status comes from its
    `freshness: {warn_after: 6h, error_after: 24h}` (sources and silver tables), `none` without a policy.

    Exit code 1 when any table is `error` (a table with a policy that was never written is `error`), else 0.
    """
    from airduck.cli.app import lakehouse
    from airduck.config.staleness import format_duration
    from airduck.metrics.staleness import worst

    clock = _parse_now(now)
    with lakehouse() as lh:
        ages = lh.freshness(now=clock)
        deliveries = lh.alert_stale(ages) if alert else []
    status = worst(ages)
    if as_json:
        render.print_json({"status": status, "tables": [a.to_dict() for a in ages],
                           "alerts": [d.to_dict() for d in deliveries]})
    else:
        rows = [[a.table, f"[{_STYLE[a.status]}]{a.status}[/]", format_duration(a.age_seconds) if a.age_seconds
                 is not None else "never written", a.last_change.strftime("%Y-%m-%d %H:%M:%S") if a.last_change
                 else "-", format_duration(a.warn_after) if a.warn_after else "-",
                 format_duration(a.error_after) if a.error_after else "-"] for a in ages]
        if not rows:
            render.console.print("no tables yet: `airduck run` writes them", highlight=False)
        else:
            _table(rows)
        for d in deliveries:
            line = f"alert {d.kind} to {d.target}: " + ("sent" if d.ok else f"failed after {d.attempts} attempts "
                                                          f"({d.error})")
            render.console.print(render.cell(line), highlight=False)
    if status == "error":
        raise typer.Exit(1)


def _table(rows: list[list[str]]) -> None:
    from rich import box
    from rich.table import Table

    widest = max(len(r[0]) for r in rows)
    # 80 columns (a cron mail, a CI log) must show every column: there, no box lines, long names and the time wrap
    narrow = render.console.width < widest + 75
    t = Table(header_style="bold", box=box.SIMPLE_HEAD if narrow else box.HEAVY_HEAD, pad_edge=not narrow)
    for c in ("table", "status", "age", "last change (UTC)", "warn", "error"):
        t.add_column(c, no_wrap=c in ("status", "warn", "error"), overflow="fold",
                     min_width=min(widest, 40) if c == "table" and not narrow else None)
    for r in rows:
        t.add_row(*r)
    render.console.print(t)
