"""What the routers share: the facade of the request, the role dependencies, the declared error responses."""

from __future__ import annotations

from fastapi import Depends, Request

from airduck.api.auth import Principal, require_role
from airduck.api.errors import responses
from airduck.api.results import jsonable
from airduck.lakehouse import Lakehouse

READ = Depends(require_role("read"))
WRITE = Depends(require_role("write"))
ADMIN = Depends(require_role("admin"))

#: errors every protected route may answer
PROTECTED = responses(400, 401, 403, 404, 422, 503)


def lakehouse(request: Request) -> Lakehouse:
    return request.app.state.lakehouse


__all__ = ["ADMIN", "PROTECTED", "READ", "WRITE", "Principal", "jsonable", "lakehouse"]
