"""Rendering quality results (`airduck quality`, `airduck runs show`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airduck.cli import render
from airduck.text import plural

#: below this terminal width the examples column is left out (the others would not fit)
NARROW = 110
COLUMNS = ["table", "check", "name", "checked", "failing", "action", "result", "examples"]


def quality_table(results: Sequence[Any], title: str | None = None) -> None:
    """A table of quality results: rows checked and failing, the action taken, pass/fail, failing keys (the
    examples only when the terminal has room for them: --json always has them)."""
    from rich import box
    from rich.table import Table

    rows = [[q.table, q.check, q.name, "" if q.rows_checked is None else f"{q.rows_checked:,}", f"{q.rows_failing:,}",
             q.action, "pass" if q.passed else "fail", ", ".join(q.examples)] for q in results]
    cols = list(COLUMNS)
    caption = None
    narrow = render.console.width < NARROW
    if narrow and any(r[-1] for r in rows):
        cols, rows = cols[:-1], [r[:-1] for r in rows]
        caption = "failing keys: a wider terminal, or --json"
    t = Table(title=title, caption=caption, header_style="bold", box=box.SIMPLE_HEAD if narrow else box.HEAVY_HEAD,
              pad_edge=not narrow)
    cap = 14 if narrow else 28
    for i, c in enumerate(cols):
        widest = max([len(c), *(len(str(r[i])) for r in rows)])
        if c == "examples":  # takes what is left, folded
            t.add_column(c, overflow="fold", min_width=len(c))
        else:  # short names stay whole; numbers and words always
            t.add_column(c, overflow="fold", no_wrap=c not in ("table", "name"), min_width=min(widest, cap),
                         justify="right" if c in ("checked", "failing") else "left")
    for r in rows:
        t.add_row(*(render.cell(v) for v in r))
    render.console.print(t)


def quality_by_run(results: Sequence[Any], latest: bool) -> None:
    """One table per run (newest first), titled by its run id; `latest`: the newest result of each check."""
    runs: dict[str, list[Any]] = {}
    for q in results:
        runs.setdefault(q.run_id or "-", []).append(q)
    for run_id, found in runs.items():
        what = "latest results" if latest else "quality results"
        quality_table(found, title=f"run {run_id}: {what} ({plural(len(found), 'check')})")


def nothing_note(table: str | None, run_id: str | None, failed: bool) -> str:
    """The line shown when no result matches."""
    what = "failing quality results" if failed else "quality results"
    where = "".join([f" for table {table}" if table else "", f" in run {run_id}" if run_id else ""])
    return (f"no {what}{where}: silver rules (expectations, casts, required columns, lookups) and dbt tests "
            "record them when `airduck run` checks rows")
