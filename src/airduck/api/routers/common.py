"""What the routers share: the facade of the request, the role dependencies, the declared error responses."""

from __future__ import annotations

from fastapi import Depends, Query, Request

from airduck.api.auth import Principal, require_role
from airduck.api.errors import responses
from airduck.api.facades import for_request
from airduck.api.results import jsonable
from airduck.lakehouse import Lakehouse

READ = Depends(require_role("read"))
WRITE = Depends(require_role("write"))
ADMIN = Depends(require_role("admin"))

#: `?branch=NAME` of the read routes (docs/branches.md)
BRANCH = Query(None, description="read this branch of the lake (default: main); unknown: 404")

#: errors every protected route may answer
PROTECTED = responses(400, 401, 403, 404, 422, 503)


def lakehouse(request: Request, branch: str | None = None) -> Lakehouse:
    """The facade of the request: the app's, or (`branch`: a branch's name) that branch's, for reads only, leased
    to the request until its response is sent (:mod:`airduck.api.facades`; NotFound, a 404, when there is no
    such branch)."""
    if branch in (None, "", "main"):
        return request.app.state.lakehouse
    return for_request(request, branch)


__all__ = ["ADMIN", "BRANCH", "PROTECTED", "READ", "WRITE", "Principal", "jsonable", "lakehouse"]
