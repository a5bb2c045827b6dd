"""Read-only SQL with a row limit and a time limit that interrupts the query."""

from __future__ import annotations

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field

from airduck.api.results import TABULAR_CONTENT, needs_arrow, pick_format, respond
from airduck.api.routers.common import BRANCH, PROTECTED, READ, lakehouse
from airduck.lake.sqlguard import QueryTimeout

router = APIRouter(tags=["sql"])


class SqlQuery(BaseModel):
    sql: str = Field(description="one SELECT over the lake's tables")
    limit: int | None = Field(None, ge=0, description="at most this many rows (default and cap: api.sql_max_rows)")
    timeout: float | None = Field(None, gt=0, description="seconds (default and cap: api.sql_timeout_seconds)")


@router.post("/sql", responses={**PROTECTED, 200: {"content": TABULAR_CONTENT}},
             summary="Run one read-only query (row and time limits; JSON, CSV, Parquet or Arrow)")
def sql(request: Request, body: SqlQuery, format: str | None = Query(None), branch: str | None = BRANCH,
        _=READ) -> Response:
    fmt = pick_format(request, format)
    lh = lakehouse(request, branch)
    api = lh.project.config.api
    limit = api.sql_max_rows if body.limit is None else min(body.limit, api.sql_max_rows)
    timeout = api.sql_timeout_seconds if body.timeout is None else min(body.timeout, api.sql_timeout_seconds)
    try:
        result = lh.sql(body.sql, limit, timeout=timeout, arrow=needs_arrow(fmt))
    except QueryTimeout as exc:
        raise QueryTimeout(exc.message, hint=f"ask for a longer one with \"timeout\" (at most "
                           f"api.sql_timeout_seconds = {api.sql_timeout_seconds:g} s)") from None
    return respond(result, fmt, {}, filename="query")
