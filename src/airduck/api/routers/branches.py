"""`GET /branches`. The facades of `?branch=NAME` are :mod:`airduck.api.facades` (through
:func:`airduck.api.routers.common.lakehouse`)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from airduck.api.routers.common import PROTECTED, READ, jsonable, lakehouse

router = APIRouter(tags=["branches"])


@router.get("/branches", responses=PROTECTED, summary="Every branch of the lake (not main): base, fork, head, changes")
def branches(request: Request, _=READ) -> dict[str, Any]:
    return {"branches": jsonable([b.to_dict() for b in lakehouse(request).branches()])}
