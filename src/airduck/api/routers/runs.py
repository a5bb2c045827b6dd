"""Runs: the plan, the list, one run with its steps and quality results, starting one (`write`), following it
(polling or server-sent events), stored quality results, and the lineage graph."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field

from airduck.api.errors import responses
from airduck.api.routers.common import PROTECTED, READ, WRITE, jsonable, lakehouse
from airduck.config.secrets import redact
from airduck.errors import NotFound

router = APIRouter(tags=["runs"])


@router.get("/plan", responses=PROTECTED, summary="The plan: steps with their inputs, outputs and dependencies")
def plan(request: Request, select: list[str] | None = Query(None), _=READ) -> dict[str, Any]:
    return lakehouse(request).plan(select).to_dict()


@router.get("/runs", responses=PROTECTED, summary="The latest runs, newest first")
def runs(request: Request, limit: int = Query(20, ge=1, le=1000), _=READ) -> dict[str, Any]:
    live = request.app.state.runs
    out = []
    for rec in lakehouse(request).runs(limit):
        d = jsonable(rec.to_dict())
        started = live.get(rec.run_id)
        if started is not None and not started.done:
            d["status"] = started.status
        out.append(d)
    return {"runs": out}


class NewRun(BaseModel):
    select: list[str] | None = Field(None, description="plan selectors (silver.orders+, +gold.x, layers, step ids)")
    full_refresh: bool = False
    reingest: bool = False
    step: str | None = Field(None, description="exactly one step id, without its dependencies")


@router.post("/runs", status_code=202, responses={**PROTECTED, **responses(409)},
             summary="Start a run in the background (write); returns its id")
def start_run(request: Request, body: NewRun, _=WRITE) -> dict[str, Any]:
    live = request.app.state.runs.start(body.select, full_refresh=body.full_refresh, reingest=body.reingest,
                                        step=body.step)
    return {"run_id": live.run_id, "status": live.status,
            "events": f"{request.scope.get('root_path', '')}/api/v1/runs/{live.run_id}/events"}


@router.get("/runs/{run_id}", responses=PROTECTED, summary="A run: its steps, quality results and live progress")
def run(request: Request, run_id: str, _=READ) -> dict[str, Any]:
    lh = lakehouse(request)
    live = request.app.state.runs.get(run_id)
    try:
        rec = lh.run_info(run_id)
    except NotFound:
        if live is None:
            raise
        rec = None
    out: dict[str, Any] = jsonable(rec.to_dict()) if rec is not None else {"run_id": run_id, "steps": []}
    if rec is not None:
        out["quality"] = jsonable([q.to_dict() for q in lh.quality(run_id=rec.run_id, limit=None)])
    if live is not None:
        out["live"] = {"status": live.status, "done": live.done, "events": len(live.events), "error": live.error}
        if not live.done:
            out["status"] = live.status
    return out


@router.get("/runs/{run_id}/events", responses={**PROTECTED, 200: {"content": {"text/event-stream": {
            "schema": {"type": "string"}}}}}, summary="The run's typed events as server-sent events")
def events(request: Request, run_id: str, since: int = Query(0, ge=0), _=READ) -> StreamingResponse:
    live = request.app.state.runs.get(run_id)
    if live is None:
        rec = lakehouse(request).run_info(run_id)  # NotFound when there is no such run
        final = {"type": "RunFinished", "run_id": rec.run_id, "status": rec.status}

        def recorded() -> Iterator[bytes]:
            yield f"event: RunFinished\ndata: {json.dumps(jsonable(final))}\n\n".encode()

        return StreamingResponse(recorded(), media_type="text/event-stream")

    def stream() -> Iterator[bytes]:
        for i, event in live.follow(since):
            if event is None:
                yield b": keep-alive\n\n"
                continue
            yield f"id: {i}\nevent: {event['type']}\ndata: {json.dumps(jsonable(event))}\n\n".encode()
        if live.error is not None:
            yield f"event: error\ndata: {json.dumps(live.error)}\n\n".encode()

    return StreamingResponse(stream(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})


@router.get("/quality", responses=PROTECTED, summary="Stored quality results, newest first")
def quality(request: Request, table: str | None = None, run_id: str | None = None, failed: bool = False,
            limit: int = Query(1000, ge=1, le=100_000), _=READ) -> dict[str, Any]:
    found = lakehouse(request).quality(table=table, run_id=run_id, failed=failed, limit=limit)
    return {"quality": jsonable([q.to_dict() for q in found])}


@router.get("/lineage", responses=PROTECTED,
            summary="The graph of datasets and steps (sources -> bronze -> silver -> gold -> serving)")
def lineage(request: Request, table: str | None = Query(None, description="only the neighbourhood of this table"),
            upstream: bool = True, downstream: bool = True,
            columns: bool = Query(False, description="with column lineage"), _=READ) -> dict[str, Any]:
    graph = lakehouse(request).lineage(table, upstream=upstream, downstream=downstream, columns=columns)
    # names carry catalog and source locations: masked like every other output (a DSN's password never shows)
    return json.loads(redact(json.dumps(jsonable(graph.to_dict()))))
