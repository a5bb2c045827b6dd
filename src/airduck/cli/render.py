"""Rendering for the CLI: Rich tables for people, JSON for scripts."""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Sequence
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from rich.console import Console
from rich.table import Table

from airduck.config.secrets import redact
from airduck.text import plural

console = Console()
err_console = Console(stderr=True)
#: at most this many rows in a table view (`airduck sql`); --json prints every row
DISPLAY_ROWS = 1000


def _default(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if hasattr(value, "to_dict"):
        return value.to_dict()
    return str(value)


def print_json(data: Any) -> None:
    sys.stdout.write(redact(json.dumps(data, default=_default, indent=2, ensure_ascii=False)) + "\n")


def cell(value: Any) -> str:
    if value is None:
        return "[dim]NULL[/dim]"
    if isinstance(value, datetime | date):
        return value.isoformat()
    return redact(str(value)).replace("[", "\\[")


_NUMBER = re.compile(r"^-?[\d,]+(\.\d+)?%?$|^\d+->\d+$")


def _is_number(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int | float | Decimal):
        return True
    return isinstance(value, str) and bool(_NUMBER.match(value))


def table(columns: Sequence[str], rows: Sequence[Sequence[Any]], title: str | None = None,
          no_wrap: Sequence[str] = ()) -> None:
    """A Rich table. Headers and numbers are never broken (numeric columns are right-aligned, no wrap,
    at least as wide as their header); other columns fold when the terminal is narrow."""
    t = Table(title=title, show_lines=False, header_style="bold")
    for i, c in enumerate(columns):
        values = [r[i] for r in rows if i < len(r) and r[i] is not None and r[i] != ""]
        numeric = bool(values) and all(_is_number(v) for v in values)
        widest = max((len(str(v)) for v in values), default=0)
        t.add_column(str(c), overflow="fold", no_wrap=numeric or c in no_wrap, justify="right" if numeric else "left",
                     min_width=max(len(str(c)), widest) if numeric else len(str(c)))
    for row in rows:
        t.add_row(*(cell(v) for v in row))
    console.print(t)


def rows_as_dicts(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[dict[str, Any]]:
    return [dict(zip(columns, r, strict=False)) for r in rows]


def error(message: str) -> None:
    err_console.print(f"[bold red]error:[/bold red] {redact(message)}", highlight=False, soft_wrap=True)


def ok(message: str) -> None:
    console.print(f"[green]✓[/green] {message}", highlight=False)


def note(message: str) -> None:
    """A line for people on stderr (stdout stays the answer, e.g. JSON)."""
    err_console.print(f"[yellow]note:[/yellow] {redact(message)}", highlight=False, soft_wrap=True)


def sql_cut_note(result: Any, limit: int | None, as_json: bool) -> None:
    """Say on stderr when `airduck sql` shows fewer rows than the query returned, and how to get the rest."""
    if not result.truncated:
        return
    shown = len(result.rows)
    if limit is not None and shown == limit:
        note(f"{plural(shown, 'row', sep=True)} shown (--limit {limit}); the query returned more: "
             "raise --limit, or drop it" + (" for every row" if as_json else " and use --json for every row"))
        return
    total = f"{result.total:,}" if result.total is not None else f"more than {shown:,}"
    note(f"{shown:,} of {total} rows shown (the table shows at most {DISPLAY_ROWS:,}); "
         "--json prints every row, --limit N a given number")
