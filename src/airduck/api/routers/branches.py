"""`GET /branches` and the facades of `?branch=NAME` (docs/branches.md): one Lakehouse per branch, cached on the app
(`app.state.branch_lakehouses`) and used for reads only. A branch merged (forked again) or deleted and created again
has a new registry row: its cached facade is closed and a new one opened."""

from __future__ import annotations

import threading
from typing import Any

from fastapi import APIRouter, FastAPI, Request

from airduck.api.routers.common import PROTECTED, READ, jsonable, lakehouse
from airduck.lakehouse import Lakehouse

router = APIRouter(tags=["branches"])
_LOCK = threading.Lock()


@router.get("/branches", responses=PROTECTED, summary="Every branch of the lake (not main): base, fork, head, changes")
def branches(request: Request, _=READ) -> dict[str, Any]:
    return {"branches": jsonable([b.to_dict() for b in lakehouse(request).branches()])}


def on_branch(app: FastAPI, name: str) -> Lakehouse:
    """The cached read facade of branch `name` (NotFound: 404 when there is no such branch)."""
    from airduck.lake import branches as lake_branches

    main: Lakehouse = app.state.lakehouse
    b = lake_branches.get(main.project, lake_branches.check_name(name))
    key = (b.location, b.created_at.isoformat(), b.fork_snapshot)
    with _LOCK:
        cache = _cache(app)
        hit = cache.get(name)
        if hit and hit[0] == key:
            return hit[1]
        if hit:
            hit[1].close()
        lh = main.on_branch(name)
        cache[name] = (key, lh)
        return lh


def _cache(app: FastAPI) -> dict[str, tuple[tuple, Lakehouse]]:
    cache = getattr(app.state, "branch_lakehouses", None)
    if cache is None:
        cache = app.state.branch_lakehouses = {}
    return cache


def close_all(app: FastAPI) -> None:
    """Close the branch facades (the app's lifespan, at shutdown)."""
    with _LOCK:
        for _, lh in _cache(app).values():
            lh.close()
        _cache(app).clear()
