"""airduck.bronze: sources land raw in `bronze.<name>`.

The pipeline runner calls :func:`ingest_source` once per source inside the run's open transaction.
The table contract is in :mod:`airduck.bronze.table`, the incremental state in :mod:`airduck.bronze.state`,
and each kind of source in :mod:`~airduck.bronze.files`, :mod:`~airduck.bronze.postgres` and
:mod:`~airduck.bronze.http`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from airduck.bronze.config import Source
    from airduck.core.context import RunContext
    from airduck.core.model import StepResult

# Nothing heavy at import time: airduck.project imports airduck.bronze.config (and so this package).
__all__ = ["ingest_source"]


def ingest_source(ctx: RunContext, name: str, source: Source) -> StepResult:
    """Land one source into `bronze.<name>` (and `bronze.<name>__rejects`) on the run's open transaction.

    Does not BEGIN/COMMIT/ROLLBACK: if the runner rolls back, nothing of it (rows, rejects, incremental
    state) is visible and the next run ingests the same inputs again. With `ctx.reingest` the source's bronze rows,
    rejects and state are deleted first (same transaction), so every input is read again and replaces them. Outside the lake it only writes
    copies of the raw inputs to the landing zone (`ctx.landing`).
    """
    from airduck.bronze.config import FilesSource, HttpSource, PostgresSource

    if ctx.reingest:
        from airduck.bronze.state import clear_source, ensure_state_tables

        ensure_state_tables(ctx.con)
        clear_source(ctx.con, name)
    if isinstance(source, FilesSource):
        from airduck.bronze.files import ingest_files

        return ingest_files(ctx, name, source)
    if isinstance(source, PostgresSource):
        from airduck.bronze.postgres import ingest_postgres

        return ingest_postgres(ctx, name, source)
    if isinstance(source, HttpSource):
        from airduck.bronze.http import ingest_http

        return ingest_http(ctx, name, source)
    raise TypeError(f"unknown source type {type(source).__name__} for source {name}")
