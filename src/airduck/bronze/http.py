"""The `http` source: a paged JSON REST API.

Pages are fetched with httpx (pagination styles ``none``, ``page``, ``offset``, ``cursor`` and ``link``; retries
with exponential backoff on 429, 5xx, timeouts and connection errors, honouring a small ``Retry-After``; at
most ``max_pages``; an empty page ends the read). Each response body is landed as received at
``<source>/<load_id>/page-00001.json``; the records are then loaded from those bytes in bulk by DuckDB
(``read_text`` + JSON functions), like NDJSON files: objects become rows, anything else is rejected with its
text. A page whose body is not JSON is rejected as a whole and ends the read.

Header values (tokens) are never put in messages, details or logs. ``_source_file`` is the URL of the page
(with its query string), ``_row_number`` the record's position in its page. Incremental reads are not
supported: every run appends what the API returns.
"""

from __future__ import annotations

import contextlib
import email.utils
import hashlib
import json
import logging
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from airduck.bronze.config import HttpSource
from airduck.bronze.records import load_records
from airduck.bronze.table import (
    base_params,
    ensure_meta_only_table,
    ensure_rejects_table,
    rejects_insert_sql,
    rejects_ref,
    run,
)
from airduck.config.secrets import redact
from airduck.core.context import RunContext
from airduck.core.model import StepResult
from airduck.errors import SourceError, StorageError, Transient
from airduck.lake.connection import quote_ident
from airduck.text import plural

#: the longest Retry-After (seconds) that is honoured; longer ones fall back to the exponential backoff
MAX_RETRY_AFTER = 60.0
MAX_BACKOFF = 60.0
_RETRY_STATUS = frozenset({429, 500, 502, 503, 504})


class SourceUnreachable(SourceError, Transient):
    """An HTTP source kept failing (429/5xx/timeouts) after all retries: worth running again later."""


@dataclass
class Page:
    number: int
    url: str
    body: bytes
    records: int  # -1 when the body is not usable JSON
    error: str | None = None
    landing_key: str | None = None
    version: str | None = None
    local: Path | None = None


@dataclass
class Fetched:
    pages: list[Page] = field(default_factory=list)
    requests: int = 0
    retries: int = 0
    max_pages_reached: bool = False


def dig(doc: Any, path: str | None) -> Any:
    """The value at a dotted path (`data.items`) of a parsed JSON document; None when a step is missing."""
    if not path:
        return doc
    node = doc
    for part in path.split("."):
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return None
    return node


def _no_constants(value: str) -> Any:
    raise ValueError(f"{value} is not valid JSON")


def parse_page(body: bytes, records_path: str | None) -> tuple[Any, int, str | None]:
    """(document, number of records, error): records are a list at `records_path` (or the body), or one object."""
    try:
        doc = json.loads(body.decode("utf-8"), parse_constant=_no_constants)
    except (UnicodeDecodeError, ValueError) as exc:
        return None, -1, f"the response is not JSON: {exc}"
    recs = dig(doc, records_path)
    if recs is None:
        return doc, 0, None
    if isinstance(recs, list):
        return doc, len(recs), None
    return doc, 1, None


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
        return max(0.0, (when - datetime.now(UTC)).total_seconds())
    except (TypeError, ValueError):
        return None


def _safe_url(url: str | httpx.URL) -> str:
    return redact(str(url))


class _RedactUrls(logging.Filter):
    """httpx logs every request's full URL at INFO (`HTTP Request: GET https://…?api_key=…`); an Airflow task or
    a script with INFO logging would print the source's keys. Mask them in the record, keep the line."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(redact(str(a)) if isinstance(a, str | httpx.URL) else a for a in record.args)
        elif isinstance(record.msg, str) and not record.args:
            record.msg = redact(record.msg)
        return True


logging.getLogger("httpx").addFilter(_RedactUrls())


def _with_query(url: str, params: dict[str, Any] | None) -> tuple[str, Any]:
    """The URL without its query string, and that query merged with `params` (`params` win): httpx's
    `params=` replaces a URL's own query instead of adding to it, which dropped `url: …?key=value`."""
    parsed = httpx.URL(url)
    if not parsed.query:
        return url, params
    return str(parsed.copy_with(query=None)), httpx.QueryParams(parsed.query).merge(params or {})


class Fetcher:
    """Fetches the pages of one HTTP source with retries."""

    def __init__(self, name: str, cfg: HttpSource, client: httpx.Client, sleep: Any = time.sleep) -> None:
        self.name = name
        self.cfg = cfg
        self.client = client
        self.sleep = sleep
        self.out = Fetched()

    def get(self, url: str, params: dict[str, Any] | None) -> httpx.Response:
        attempts = self.cfg.retries + 1
        last = ""
        for attempt in range(attempts):
            self.out.requests += 1
            delay = min(self.cfg.backoff * (2**attempt), MAX_BACKOFF)
            try:
                bare, query = _with_query(url, params)
                response = self.client.get(bare, params=query)
            except httpx.TimeoutException:
                last = f"timed out after {self.cfg.timeout:g} s"
            except httpx.TransportError as exc:
                last = f"connection failed ({type(exc).__name__})"
            else:
                if response.status_code < 400:
                    return response
                where = _safe_url(response.request.url)
                if response.status_code not in _RETRY_STATUS:
                    raise SourceError(
                        f"source {self.name}: GET {where} returned HTTP {response.status_code}",
                        hint="check the url, params and headers (token) of the source",
                    )
                last = f"HTTP {response.status_code}"
                after = _retry_after(response)
                if after is not None and after <= MAX_RETRY_AFTER:
                    delay = after
            if attempt + 1 < attempts:
                self.out.retries += 1
                self.sleep(delay)
        raise SourceUnreachable(
            f"source {self.name}: GET {_safe_url(url)} failed after {plural(attempts, 'attempt')}: {last}",
            hint="the API is busy or down; run again later or raise `retries`",
        )

    def fetch(self) -> Fetched:
        cfg = self.cfg
        pg = cfg.pagination
        params: dict[str, Any] = dict(cfg.params)
        url: str | None = cfg.url
        page_no = pg.start_page
        offset = int(params.get(pg.offset_param, 0) or 0) if pg.style == "offset" else 0
        cursor: Any = None
        first = True
        while url is not None:
            if len(self.out.pages) >= cfg.max_pages:
                self.out.max_pages_reached = True
                break
            req_params: dict[str, Any] | None = dict(params)
            if pg.style == "page":
                req_params[pg.page_param] = page_no
                if pg.size_param and pg.page_size:
                    req_params[pg.size_param] = pg.page_size
            elif pg.style == "offset":
                req_params[pg.offset_param] = offset
                if pg.page_size:
                    req_params[pg.limit_param] = pg.page_size
            elif pg.style == "cursor" and cursor is not None:
                req_params[pg.cursor_param] = cursor
            elif pg.style == "link" and not first:
                req_params = None  # the next link carries its own query string
            response = self.get(url, req_params)
            first = False
            doc, count, error = parse_page(response.content, cfg.records_path)
            self.out.pages.append(Page(len(self.out.pages) + 1, str(response.url), response.content, count, error))
            if error is not None or count == 0:
                break
            short = pg.page_size is not None and count < pg.page_size
            if pg.style == "page":
                page_no += 1
                url = None if short else url
            elif pg.style == "offset":
                offset += count
                url = None if short else url
            elif pg.style == "cursor":
                nxt_cursor = dig(doc, pg.cursor_path) if pg.cursor_path else None
                # a cursor that does not move would fetch the same page until max_pages
                url = url if nxt_cursor not in (None, "") and nxt_cursor != cursor else None
                cursor = nxt_cursor
            elif pg.style == "link":
                nxt = response.links.get("next", {}).get("url")
                nxt_url = str(response.url.join(nxt)) if nxt else None
                url = nxt_url if nxt_url != str(response.url) else None
            else:
                url = None
        return self.out


def ingest_http(ctx: RunContext, name: str, cfg: HttpSource, *, client: httpx.Client | None = None,
                sleep: Any = time.sleep) -> StepResult:
    """Fetch the pages of an HTTP source, land them, and load their records into `bronze.<name>`."""
    table = f"bronze.{name}"
    con = ctx.con
    ensure_rejects_table(con, name)
    own = client is None
    client = client or httpx.Client(timeout=cfg.timeout, headers=cfg.headers, follow_redirects=True)
    try:
        fetched = Fetcher(name, cfg, client, sleep).fetch()
    finally:
        if own:
            client.close()
    rows = rejects = 0
    new_columns: list[str] = []
    with tempfile.TemporaryDirectory(prefix="airduck-http-") as tmp:
        for page in fetched.pages:
            key = f"{name}/{ctx.run_id}/page-{page.number:05d}.json"
            try:
                put = ctx.landing.put(key, page.body)
            except StorageError as exc:
                raise StorageError(f"source {name}: cannot land page {page.number}: {exc.message}", hint=exc.hint) from None
            page.landing_key = key
            page.version = put.version_id or hashlib.sha256(page.body).hexdigest()
            page.local = Path(tmp) / f"page-{page.number:05d}.json"
            page.local.write_bytes(page.body)
        good = [p for p in fetched.pages if p.error is None and p.records > 0]
        mismatch = None
        if good:
            loaded = _load_pages(ctx, name, cfg, good)
            rows, rejects, new_columns = loaded.rows, loaded.rejects, loaded.new_columns
            expected = sum(p.records for p in good)
            if rows + rejects != expected:  # never silently: the pages held more (or fewer) records
                mismatch = f"the pages held {plural(expected, 'record')}, {rows} were loaded and {rejects} rejected"
                ctx.reporter.message(f"source {name}: {mismatch}", "warning")
        for page in fetched.pages:
            if page.error is not None:
                _reject_page(ctx, name, page)
                rejects += 1
    ensure_meta_only_table(con, name)
    details: dict[str, Any] = {
        "pages": len(fetched.pages), "requests": fetched.requests, "retries": fetched.retries,
        "max_pages_reached": fetched.max_pages_reached, "new_columns": new_columns,
        "landing_keys": [p.landing_key for p in fetched.pages[:100]],
    }
    status = "ok"
    if mismatch:
        details["mismatch"] = mismatch
        status = "warn"
    if fetched.max_pages_reached:
        status = "warn"
        ctx.reporter.message(f"source {name}: stopped at max_pages={cfg.max_pages}; more pages remain", "warning")
    if rejects:
        status = "warn"
        ctx.reporter.message(f"source {name}: {plural(rejects, 'rejected record')} kept in {rejects_ref(name)}", "warning")
    ctx.reporter.advance("bronze", table, rows=rows, done=len(fetched.pages))
    return StepResult(layer="bronze", table=table, status=status, rows_in=rows + rejects, rows_out=rows,
                      rows_rejected=rejects, files=len(fetched.pages), details=details)


def _load_pages(ctx: RunContext, name: str, cfg: HttpSource, pages: list[Page]):
    import pyarrow as pa

    from airduck.bronze.records import json_path

    con = ctx.con
    files = [str(p.local) for p in pages]
    path_sql = "CAST($records_path AS VARCHAR)"
    params: dict[str, Any] = {**base_params(ctx, name), "files": files}
    if cfg.records_path:
        params["records_path"] = "$" + "".join(
            f"[{part}]" if part.isdigit() else json_path(part)[1:] for part in cfg.records_path.split("."))
        extract = f"coalesce(json_extract(CAST(content AS JSON), {path_sql}), CAST('[]' AS JSON))"
    else:
        extract = "CAST(content AS JSON)"

    def relation(with_meta: bool) -> str:
        meta = ", m.url AS __url, m.version AS __version, m.landing_key AS __landing" if with_meta else ""
        join = f" JOIN {quote_ident(view)} AS m ON m.path = t.filename" if with_meta else ""
        lists = (
            f"SELECT t.filename{meta}, CASE json_type(x) WHEN 'ARRAY' THEN CAST(x AS JSON[]) ELSE [x] END AS recs "
            f"FROM (SELECT filename, {extract} AS x FROM read_text($files)) AS t{join}"
        )
        carried = ", __url, __version, __landing" if with_meta else ""
        return (
            f"SELECT __j, CAST(__j AS VARCHAR) AS __raw, __rn{carried} FROM (SELECT unnest(recs) AS __j, "
            f"unnest(generate_series(1, len(recs))) AS __rn{carried} FROM ({lists}) AS l)"
        )

    view = f"__airduck_pages_{uuid.uuid4().hex[:8]}"
    meta_table = pa.table({
        "path": [str(p.local) for p in pages],
        "url": [_safe_url(p.url) for p in pages],
        "version": [p.version for p in pages],
        "landing_key": [p.landing_key for p in pages],
    })
    con.register(view, meta_table)
    try:
        with contextlib.closing(con.cursor()) as probe:
            return load_records(
                con, probe, name, probe_relation=relation(False), load_relation=relation(True), params=params,
                meta={"_source_file": "__url", "_source_version": "__version", "_landing_key": "__landing"},
                extra_cols=("__url", "__version", "__landing"),
            )
    finally:
        con.unregister(view)


def _reject_page(ctx: RunContext, name: str, page: Page) -> None:
    sql = rejects_insert_sql(
        name, "SELECT CAST(NULL AS BIGINT) AS __line, $raw AS __raw, $reason AS __reason",
        {"_source_file": "$url", "_source_version": "$version", "_landing_key": "$landing"},
    )
    raw = page.body[:100_000].decode("utf-8", errors="backslashreplace")
    run(ctx.con, sql, {**base_params(ctx, name), "raw": raw, "reason": page.error, "url": _safe_url(page.url),
                       "version": page.version, "landing": page.landing_key})
