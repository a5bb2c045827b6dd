"""Rich rendering of run progress (the core reports events; this draws them)."""

from __future__ import annotations

from typing import Any

from rich.progress import Progress, SpinnerColumn, TaskID, TextColumn, TimeElapsedColumn

from airduck.cli.render import console, err_console
from airduck.events import Reporter
from airduck.text import plural


class RichReporter(Reporter):
    def __init__(self, quiet: bool = False) -> None:
        self.progress = Progress(
            SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(),
            console=err_console, transient=False, disable=quiet,
        )
        self.tasks: dict[tuple[str, str | None], TaskID] = {}

    def __enter__(self) -> RichReporter:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def start(self, step: str, table: str | None = None, total: int | None = None) -> None:
        if step == "run":
            return
        label = f"[bold]{step:<6}[/bold] {table or ''}"
        self.tasks[(step, table)] = self.progress.add_task(label, total=total)

    def advance(self, step: str, table: str | None = None, rows: int = 0, done: int | None = None) -> None:
        task = self.tasks.get((step, table))
        if task is not None:
            self.progress.update(task, description=f"[bold]{step:<6}[/bold] {table or ''}  {plural(rows, 'row', sep=True)}",
                                 completed=done)

    def finish(self, step: str, table: str | None = None, status: str = "ok", **stats: Any) -> None:
        task = self.tasks.get((step, table))
        if task is None:
            return
        color = {"ok": "green", "failed": "red", "warn": "yellow", "warned": "yellow"}.get(status, "cyan")
        parts = [f"{k}={v:,}" if isinstance(v, int) else f"{k}={v}" for k, v in stats.items() if v]
        self.progress.update(task, description=f"[{color}]{status:<6}[/{color}] [bold]{step}[/bold] {table or ''}  "
                             f"[dim]{' '.join(parts)}[/dim]", total=1, completed=1)
        self.progress.stop_task(task)

    def message(self, text: str, level: str = "info") -> None:
        color = {"warning": "yellow", "error": "red"}.get(level, "dim")
        self.progress.console.print(f"[{color}]{text}[/{color}]", highlight=False)


__all__ = ["RichReporter", "console"]
