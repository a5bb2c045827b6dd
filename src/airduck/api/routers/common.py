"""What the routers share: the facade of the request, the role dependencies, the declared error responses."""

from __future__ import annotations

from typing import Any

from fastapi import Depends, Request

from airduck.api.auth import Principal, require_role
from airduck.api.errors import responses
from airduck.lakehouse import Lakehouse

READ = Depends(require_role("read"))
WRITE = Depends(require_role("write"))
ADMIN = Depends(require_role("admin"))

#: errors every protected route may answer
PROTECTED = responses(400, 401, 403, 404, 422, 503)


def lakehouse(request: Request) -> Lakehouse:
    return request.app.state.lakehouse


def jsonable(value: Any) -> Any:
    """Rows and values as JSON: dates and decimals as strings, bytes as hex, nested lists and dicts kept."""
    import datetime
    import decimal
    import uuid

    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if value == value and value not in (float("inf"), float("-inf")) else str(value)
    if isinstance(value, datetime.datetime | datetime.date | datetime.time):
        return value.isoformat()
    if isinstance(value, decimal.Decimal | uuid.UUID | datetime.timedelta):
        return str(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).hex()
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    return str(value)


__all__ = ["ADMIN", "PROTECTED", "READ", "WRITE", "Principal", "jsonable", "lakehouse"]
