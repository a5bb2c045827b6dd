"""The stage-facing progress API: stages call start/advance/finish/message; a run turns them into events."""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger("airduck")


class Reporter:
    """Receives progress events. The default does nothing; subclasses render them."""

    def start(self, step: str, table: str | None = None, total: int | None = None) -> None: ...

    def advance(self, step: str, table: str | None = None, rows: int = 0, done: int | None = None) -> None: ...

    def finish(self, step: str, table: str | None = None, status: str = "ok", **stats: Any) -> None: ...

    def message(self, text: str, level: str = "info") -> None: ...


class LogReporter(Reporter):
    """Progress as log lines (Airflow tasks, scripts)."""

    def start(self, step: str, table: str | None = None, total: int | None = None) -> None:
        log.info("start %s %s", step, table or "")

    def finish(self, step: str, table: str | None = None, status: str = "ok", **stats: Any) -> None:
        log.info("%s %s %s %s", status, step, table or "", " ".join(f"{k}={v}" for k, v in stats.items()))

    def message(self, text: str, level: str = "info") -> None:
        log.log(logging.getLevelName(level.upper()) if isinstance(logging.getLevelName(level.upper()), int) else 20, text)
