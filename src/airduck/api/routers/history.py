"""History: snapshots (with commit messages), tags; rollback, tagging and maintenance need `admin`."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, Field

from airduck.api.routers.common import ADMIN, BRANCH, PROTECTED, READ, jsonable, lakehouse

router = APIRouter(tags=["history"])


@router.get("/snapshots", responses=PROTECTED, summary="Every snapshot (oldest first), or those that changed `table`")
def snapshots(request: Request, table: str | None = None, branch: str | None = BRANCH, _=READ) -> dict[str, Any]:
    return {"snapshots": jsonable([s.to_dict() for s in lakehouse(request, branch).snapshots(table)])}


@router.get("/tags", responses=PROTECTED, summary="Every tag (a named snapshot)")
def tags(request: Request, _=READ) -> dict[str, Any]:
    return {"tags": [t.to_dict() for t in lakehouse(request).tags()]}


class NewTag(BaseModel):
    name: str
    snapshot: str | None = Field(None, description="snapshot id or tag (default: the latest snapshot)")
    note: str | None = None
    force: bool = False


@router.post("/tags", status_code=201, responses=PROTECTED, summary="Tag a snapshot (admin)")
def tag(request: Request, body: NewTag, _=ADMIN) -> dict[str, Any]:
    snapshot: str | int | None = body.snapshot
    return lakehouse(request).tag(body.name, snapshot, body.note, body.force).to_dict()


@router.delete("/tags/{name}", status_code=204, responses=PROTECTED, summary="Remove a tag (admin)")
def untag(request: Request, name: str, _=ADMIN) -> Response:
    lakehouse(request).untag(name)
    return Response(status_code=204)


class Rollback(BaseModel):
    to: str = Field(description="snapshot id or tag")


@router.post("/tables/{name}/rollback", responses=PROTECTED,
             summary="Make a table hold what it held at a snapshot, as a new snapshot (admin)")
def rollback(request: Request, name: str, body: Rollback, _=ADMIN) -> dict[str, Any]:
    return {"table": name, "snapshot": lakehouse(request).rollback(name, body.to)}


class Maintain(BaseModel):
    dry_run: bool = False
    steps: list[str] | None = Field(None, description="some of the maintenance steps (default: all)")


@router.post("/maintain", responses=PROTECTED, summary="Run lake maintenance (admin)")
def maintain(request: Request, body: Maintain, _=ADMIN) -> dict[str, Any]:
    steps = lakehouse(request).maintain(dry_run=body.dry_run, steps=tuple(body.steps) if body.steps else None)
    return {"steps": [s.to_dict() for s in steps]}
