"""Tables: the list (with rows, files, bytes in one call), a table's columns, pages of rows, column profiles, diffs."""

from __future__ import annotations

import base64
import json
from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from airduck.api.errors import BadRequest
from airduck.api.results import TABULAR_CONTENT, needs_arrow, pick_format, respond
from airduck.api.routers.common import BRANCH, PROTECTED, READ, jsonable, lakehouse

router = APIRouter(tags=["tables"])

NAME = "schema.table, e.g. silver.orders"
AT = Query(None, description="a snapshot id or a tag")
AT_TIME = Query(None, description="a point in time (ISO 8601), instead of `at`")
FORMAT = Query(None, description="json (default), csv, parquet or arrow; or send an Accept header")


@router.get("/tables", responses=PROTECTED, summary="Every table with its columns, rows, files and bytes")
def tables(request: Request, include_system: bool = False, branch: str | None = BRANCH, _=READ) -> dict[str, Any]:
    found = lakehouse(request, branch).describe_tables(include_system)
    return {"tables": [d.to_dict() for d in found]}


@router.get("/tables/{name}", responses=PROTECTED, summary="A table: its columns, rows, files and bytes")
def table(request: Request, name: str, branch: str | None = BRANCH, _=READ) -> dict[str, Any]:
    return lakehouse(request, branch).describe(name).to_dict()


def _cursor(text: str) -> dict[str, Any]:
    try:
        data = json.loads(base64.urlsafe_b64decode(text.encode() + b"==="))
        if not isinstance(data, dict) or not isinstance(data.get("offset"), int) or data["offset"] < 0:
            raise ValueError
        return data
    except (ValueError, UnicodeDecodeError, TypeError):
        raise BadRequest("invalid cursor", hint="pass back the next_cursor of the previous page as it was") from None


def _make_cursor(offset: int, at: str | None, at_time: str | None) -> str:
    raw = json.dumps({"offset": offset, "at": at, "at_time": at_time}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


@router.get("/tables/{name}/rows", responses={**PROTECTED, 200: {"content": TABULAR_CONTENT}},
            summary="A page of rows (limit/offset or cursor), now, at a snapshot or tag, or at a time")
def rows(request: Request, name: str, limit: int = Query(100, ge=0, le=100_000), offset: int = Query(0, ge=0),
         cursor: str | None = Query(None, description="the next_cursor of the previous page"),
         at: str | None = AT, at_time: str | None = AT_TIME, format: str | None = FORMAT,
         branch: str | None = BRANCH, _=READ) -> Response:
    if cursor:
        state = _cursor(cursor)
        offset, at, at_time = state["offset"], state.get("at"), state.get("at_time")
    fmt = pick_format(request, format)
    lh = lakehouse(request, branch)
    result = lh.rows(name, limit=limit, offset=offset, at=at, at_time=at_time,
                     timeout=lh.project.config.api.sql_timeout_seconds, arrow=needs_arrow(fmt))
    meta = {"table": name, "offset": offset,
            "next_cursor": _make_cursor(offset + limit, at, at_time) if result.truncated else None}
    return respond(result, fmt, meta, filename=name)


@router.get("/tables/{name}/profile", responses=PROTECTED,
            summary="A column's profile: nulls, distinct values, min, max, top values")
def profile(request: Request, name: str, column: str, top: int = Query(10, ge=0, le=1000),
            at: str | None = AT, at_time: str | None = AT_TIME, _=READ) -> dict[str, Any]:
    lh = lakehouse(request)
    return jsonable(lh.profile(name, column, top=top, at=at, at_time=at_time,
                               timeout=lh.project.config.api.sql_timeout_seconds))


@router.get("/tables/{name}/diff", responses=PROTECTED,
            summary="Rows inserted, deleted and updated between two snapshots (DuckLake's change feed)")
def diff(request: Request, name: str, from_: str = Query(..., alias="from", description="snapshot id or tag"),
         to: str | None = Query(None, description="snapshot id or tag (default: now)"),
         limit: int = Query(100, ge=0, le=100_000), _=READ) -> dict[str, Any]:
    lh = lakehouse(request)
    return jsonable(lh.table_changes(name, from_, to, limit=limit, timeout=lh.project.config.api.sql_timeout_seconds))


@router.get("/tables/{name}/snapshots", responses=PROTECTED, summary="The snapshots that changed this table")
def table_snapshots(request: Request, name: str, _=READ) -> dict[str, Any]:
    return {"snapshots": [s.to_dict() for s in lakehouse(request).snapshots(name)]}
