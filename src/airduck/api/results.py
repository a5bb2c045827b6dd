"""Tabular answers as JSON, CSV, Parquet or Arrow IPC, picked by `format=` or the Accept header, streamed."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from typing import Any

from fastapi import Request
from fastapi.responses import Response, StreamingResponse

from airduck.api.errors import BadRequest
from airduck.lakehouse import SqlResult

MEDIA = {"json": "application/json", "csv": "text/csv; charset=utf-8", "parquet": "application/vnd.apache.parquet",
         "arrow": "application/vnd.apache.arrow.stream"}
_ACCEPT = {"application/json": "json", "text/csv": "csv", "application/vnd.apache.parquet": "parquet",
           "application/x-parquet": "parquet", "application/vnd.apache.arrow.stream": "arrow",
           "application/vnd.apache.arrow.file": "arrow"}
#: answers up to this many rows are sent in one piece; larger ones are streamed in chunks of it
CHUNK_ROWS = 2000

#: the OpenAPI `content` of a tabular 200 answer
TABULAR_CONTENT: dict[str, Any] = {
    "application/json": {"schema": {"type": "object"}},
    "text/csv": {"schema": {"type": "string"}},
    "application/vnd.apache.parquet": {"schema": {"type": "string", "format": "binary"}},
    "application/vnd.apache.arrow.stream": {"schema": {"type": "string", "format": "binary"}},
}


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


def pick_format(request: Request, given: str | None) -> str:
    """`format=` if given, else the first known type of the Accept header, else JSON."""
    if given:
        fmt = given.lower()
        if fmt not in MEDIA:
            raise BadRequest(f"unknown format {given!r}", hint=f"use one of {', '.join(MEDIA)}")
        return fmt
    for part in request.headers.get("accept", "").split(","):
        kind = part.split(";")[0].strip().lower()
        if kind in _ACCEPT:
            return _ACCEPT[kind]
    return "json"


def needs_arrow(fmt: str) -> bool:
    return fmt in ("parquet", "arrow")


def respond(result: SqlResult, fmt: str, meta: dict[str, Any], filename: str = "result") -> Response:
    """`result` in `fmt`; JSON carries `meta` beside columns and rows, the others a header X-Airduck-Truncated."""
    headers = {"X-Airduck-Truncated": "true" if result.truncated else "false"}
    if fmt != "json":
        ext = {"csv": "csv", "parquet": "parquet", "arrow": "arrows"}[fmt]
        headers["Content-Disposition"] = f'attachment; filename="{filename}.{ext}"'
    if fmt == "json":
        head = {**meta, "columns": result.columns, "truncated": result.truncated, "limit": result.limit}
        if len(result.rows) <= CHUNK_ROWS:
            body = json.dumps({**head, "rows": [[jsonable(v) for v in row] for row in result.rows]},
                              separators=(",", ":"))
            return Response(body, media_type=MEDIA["json"], headers=headers)
        return StreamingResponse(_json_chunks(head, result.rows), media_type=MEDIA["json"], headers=headers)
    if fmt == "csv":
        return StreamingResponse(_csv_chunks(result.columns, result.rows), media_type=MEDIA["csv"], headers=headers)
    table = result.arrow
    if fmt == "parquet":
        import pyarrow.parquet as pq

        sink = io.BytesIO()
        pq.write_table(table, sink, compression="zstd")
        return StreamingResponse(_bytes_chunks(sink.getvalue()), media_type=MEDIA["parquet"], headers=headers)
    return StreamingResponse(_arrow_chunks(table), media_type=MEDIA["arrow"], headers=headers)


def _json_chunks(head: dict[str, Any], rows: list[tuple]) -> Iterator[bytes]:
    yield json.dumps(head, separators=(",", ":"))[:-1].encode() + b',"rows":['
    for start in range(0, len(rows), CHUNK_ROWS):
        part = json.dumps([[jsonable(v) for v in row] for row in rows[start:start + CHUNK_ROWS]], separators=(",", ":"))
        yield (("," if start else "") + part[1:-1]).encode()
    yield b"]}"


def _csv_chunks(columns: list[str], rows: list[tuple]) -> Iterator[bytes]:
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(columns)
    for start in range(0, max(len(rows), 1), CHUNK_ROWS):
        for row in rows[start:start + CHUNK_ROWS]:
            writer.writerow(["" if v is None else v for v in row])
        yield buf.getvalue().encode()
        buf.seek(0)
        buf.truncate()


def _bytes_chunks(data: bytes, size: int = 1 << 20) -> Iterator[bytes]:
    for start in range(0, max(len(data), 1), size):
        yield data[start:start + size]


def _arrow_chunks(table: Any) -> Iterator[bytes]:
    import pyarrow as pa

    sink = io.BytesIO()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        for batch in table.to_batches(max_chunksize=65536):
            writer.write_batch(batch)
            yield sink.getvalue()
            sink.seek(0)
            sink.truncate()
    yield sink.getvalue()
