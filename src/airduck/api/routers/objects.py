"""Unstructured objects: list under a prefix, upload (raw body, streamed, size limit), download (streamed, Range),
delete (`write`), versions where the bucket keeps them. Keys are checked in `airduck.storage.objects`."""

from __future__ import annotations

import queue
import re
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response, StreamingResponse
from starlette.concurrency import run_in_threadpool

from airduck.api.errors import ApiError, PayloadTooLarge, responses
from airduck.api.routers.common import PROTECTED, READ, WRITE, jsonable, lakehouse
from airduck.storage.base import ObjectInfo

router = APIRouter(tags=["objects"])

_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


class RangeNotSatisfiable(ApiError):
    status = 416


def _objects(request: Request):
    state = request.app.state
    if state.objects is None:
        state.objects = lakehouse(request).objects()
    return state.objects


def _info(info: ObjectInfo) -> dict[str, Any]:
    return jsonable({"key": info.key, "size": info.size, "etag": info.etag, "last_modified": info.last_modified,
                     "version_id": info.version_id})


@router.get("/objects", responses=PROTECTED, summary="The objects under a prefix")
def list_objects(request: Request, prefix: str = "", limit: int = Query(1000, ge=1, le=100_000),
                 _=READ) -> dict[str, Any]:
    objects = _objects(request)
    found = objects.list(prefix)
    return {"prefix": prefix, "objects": [_info(i) for i in found[:limit]], "truncated": len(found) > limit}


@router.get("/objects/{key:path}", responses={**PROTECTED, **responses(409), 206: {"description": "A byte range"},
                                               200: {"content": {"application/octet-stream": {
                                                   "schema": {"type": "string", "format": "binary"}},
                                                   "application/json": {"schema": {"type": "object"}}}}},
            summary="Download an object (streamed; Range; version_id), or its versions with ?versions=true")
def get_object(request: Request, key: str, version_id: str | None = None, versions: bool = False,
               _=READ) -> Response:
    objects = _objects(request)
    if versions:
        return Response(_json({"key": key, "versioned": objects.versioned,
                               "versions": [_info(i) for i in objects.versions(key)]}), media_type="application/json")
    info = objects.head(key) if version_id is None else _version(objects, key, version_id)
    size = info.size
    start, end, status = 0, None, 200
    header = request.headers.get("range")
    headers = {"Accept-Ranges": "bytes", "Content-Disposition": f'attachment; filename="{key.rsplit("/", 1)[-1]}"'}
    if info.etag:
        headers["ETag"] = f'"{info.etag}"'
    if info.version_id:
        headers["X-Airduck-Version-Id"] = info.version_id
    if header:
        start, end = _parse_range(header, size)
        status = 206
        headers["Content-Range"] = f"bytes {start}-{end}/{size}"
    length = size - start if end is None else end - start + 1
    headers["Content-Length"] = str(length)
    body = objects.open(key, start, end, version_id) if length else iter(())
    return StreamingResponse(body, status_code=status, media_type="application/octet-stream", headers=headers)


def _version(objects: Any, key: str, version_id: str) -> ObjectInfo:
    from airduck.storage import ObjectNotFound

    for info in objects.versions(key):
        if info.version_id == version_id:
            return info
    raise ObjectNotFound(f"no version {version_id!r} of object {key!r}", hint="see ?versions=true")


def _parse_range(header: str, size: int) -> tuple[int, int]:
    m = _RANGE.match(header.strip())
    if not m or (not m.group(1) and not m.group(2)):
        raise RangeNotSatisfiable(f"cannot serve the range {header!r}", hint="send one range: bytes=START-END")
    if not m.group(1):  # the last N bytes
        start, end = max(0, size - int(m.group(2))), size - 1
    else:
        start = int(m.group(1))
        end = min(int(m.group(2)), size - 1) if m.group(2) else size - 1
    if start >= size or end < start:
        raise RangeNotSatisfiable(f"the range {header!r} is outside the object ({size} bytes)")
    return start, end


def _json(value: Any) -> str:
    import json

    return json.dumps(value, separators=(",", ":"))


@router.put("/objects/{key:path}", status_code=201, responses={**PROTECTED, **responses(413)},
            openapi_extra={"requestBody": {"required": True, "content": {"application/octet-stream": {
                "schema": {"type": "string", "format": "binary"}}}}},
            summary="Upload an object: the request body is its bytes (streamed; api.max_upload_mb)")
async def put_object(request: Request, key: str, _=WRITE) -> dict[str, Any]:
    objects = await run_in_threadpool(_objects, request)
    from airduck.storage.objects import check_key

    check_key(key)
    limit = lakehouse(request).project.config.api.max_upload_bytes
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"the object is larger than the limit of {limit:,} bytes",
                              hint="raise api.max_upload_mb in airduck.yml")
    chunks: queue.Queue[bytes | None] = queue.Queue(maxsize=8)
    result: dict[str, Any] = {}

    ended = threading.Event()

    def received() -> Iterator[bytes]:
        while (chunk := chunks.get()) is not None:
            yield chunk
        ended.set()

    def write() -> None:
        try:
            result["put"] = objects.put_stream(key, received(), limit)
        except BaseException as exc:  # re-raised in the request's task
            result["error"] = exc
            while not ended.is_set() and chunks.get() is not None:  # drain so the reader never blocks
                pass

    writer = threading.Thread(target=write, name="airduck-api-upload", daemon=True)
    writer.start()
    try:
        async for chunk in _body(request):
            if "error" in result:
                break
            await run_in_threadpool(chunks.put, chunk)
    finally:
        await run_in_threadpool(chunks.put, None)
        await run_in_threadpool(writer.join)
    if "error" in result:
        raise result["error"]
    put = result["put"]
    return {"key": put.key, "size": put.size, "etag": put.etag, "version_id": put.version_id}


async def _body(request: Request) -> AsyncIterator[bytes]:
    async for chunk in request.stream():
        if chunk:
            yield chunk


@router.delete("/objects/{key:path}", status_code=204, responses=PROTECTED, summary="Delete an object (write)")
def delete_object(request: Request, key: str, _=WRITE) -> Response:
    from airduck.storage import ObjectNotFound

    if not _objects(request).delete(key):
        raise ObjectNotFound(f"no object {key!r}")
    return Response(status_code=204)


__all__ = ["Iterator", "router"]
