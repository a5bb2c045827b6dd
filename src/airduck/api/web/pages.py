"""The browser's pages: each parses its request, calls the facade (or the run manager / object store of the API),
and renders a template. Full pages on a normal request; the partial alone on an htmx request (``HX-Request``).

An airduck error (a table that does not exist, a refused query, a bad key) is shown in the page with its hint and
the status the API would give it; it never becomes a traceback.

Branches (docs/branches.md, "Web browser"): every page takes ``?branch=NAME`` and reads that branch of the lake
through the API's cached read facade of the branch (:func:`airduck.api.routers.common.lakehouse`); the templates
carry it into every link and form (``url()`` of :mod:`airduck.api.web.render`). An unknown branch is the 404 error
page. Runs and quality results are recorded for the whole project and objects are one store: those pages are the
same on every branch. The browser writes only where it wrote before: starting a run on a branch is refused (a run
from the browser runs on main), and objects are not branched.
"""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import urlsplit

from fastapi import APIRouter, Depends, File, Form, Query, Request, UploadFile
from fastapi.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse

from airduck.api.auth import Principal, auth_of, sign_in, sign_out
from airduck.api.errors import Conflict, status_of
from airduck.api.routers.common import lakehouse
from airduck.api.web import graph
from airduck.api.web.guard import PageFailed, page_user
from airduck.api.web.render import render
from airduck.config.secrets import redact
from airduck.errors import AirduckError
from airduck.lakehouse import Lakehouse
from airduck.text import is_id

router = APIRouter()
READ = Depends(page_user("read"))
WRITE = Depends(page_user("write"))

#: rows per page of a table preview
PAGE_ROWS = 50
#: rows the SQL page shows (downloads hold up to api.sql_max_rows)
SQL_SHOWN_ROWS = 500
#: runs the quality chart of a table looks back over
QUALITY_RUNS = 30
#: objects listed under a prefix
OBJECTS_SHOWN = 1000
UPLOAD_CHUNK = 1024 * 1024


def _lh(request: Request) -> Lakehouse:
    """The facade the page reads: main's, or with ``?branch=NAME`` that branch's (PageFailed: the 404 page when
    there is no such branch). Remembers the branch for the templates (``request.state.branch``)."""
    name = request.query_params.get("branch") or None
    if name in (None, "main"):
        return request.app.state.lakehouse
    try:
        lh = lakehouse(request, name)
    except AirduckError as exc:
        raise PageFailed(exc, "No such branch", "choose a branch in the menu at the top right, or see "
                         "the branches page") from None
    request.state.branch = name
    return lh


def _main(request: Request) -> Lakehouse:
    """Main's facade, for what is not branched (run records, quality results, objects); checks ``?branch=``."""
    _lh(request)
    return request.app.state.lakehouse


def _partial(request: Request) -> bool:
    return bool(request.headers.get("hx-request"))


def _error(exc: AirduckError) -> dict[str, Any]:
    return {"message": redact(exc.message), "hint": redact(exc.hint) if exc.hint else None}


def _failed(request: Request, exc: AirduckError, title: str = "Something went wrong") -> HTMLResponse:
    return render(request, "error.html", {"title": title, **_error(exc)}, status=status_of(exc),
                  partial=_partial(request))


def _safe_next(target: str | None) -> str:
    """Only a path on this server (never //host or a scheme): no open redirect after sign-in."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    parts = urlsplit(target)
    return target if not parts.scheme and not parts.netloc else "/"


# -- sign-in -----------------------------------------------------------------------------------------------------
@router.get("/signin")
def signin_page(request: Request, next: str = "/") -> HTMLResponse:
    return render(request, "signin.html", {"next": _safe_next(next)})


@router.post("/signin")
def signin(request: Request, token: str = Form(""), next: str = Form("/")) -> Response:
    target = _safe_next(next)
    response = RedirectResponse(target, status_code=303)
    try:
        sign_in(response, auth_of(request), token.strip(), secure=request.url.scheme == "https")
    except AirduckError as exc:
        return render(request, "signin.html", {"next": target, "error": exc.message, "hint": exc.hint}, status=401)
    return response


@router.post("/signout")
def signout(request: Request, _: Principal = READ) -> Response:
    response = RedirectResponse("/signin", status_code=303)
    sign_out(request, response)
    return response


# -- home and catalog ----------------------------------------------------------------------------------------------
def _by_schema(tables: list[Any]) -> list[tuple[str, list[Any]]]:
    order = {"bronze": 0, "silver": 1, "gold": 2}
    groups: dict[str, list[Any]] = {}
    for t in tables:
        groups.setdefault(t.schema, []).append(t)
    return sorted(groups.items(), key=lambda kv: (order.get(kv[0], 3), kv[0]))


def _snapshot(tables: list[Any]) -> int | None:
    return tables[0].snapshot_id if tables else None


@router.get("/")
def home(request: Request, _: Principal = READ) -> HTMLResponse:
    lh = _lh(request)
    try:
        tables = lh.describe_tables()
        runs = lh.runs(limit=8)
    except AirduckError as exc:
        return _failed(request, exc, "The lake cannot be read")
    lake = lh.project.config.lake
    return render(request, "home.html", {
        "lake": {"catalog": redact(lake.catalog), "data": redact(lake.data_path)},
        "tables": tables, "layers": _by_schema(tables), "runs": runs, "snapshot": _snapshot(tables),
        "total_rows": sum(t.row_count for t in tables), "total_bytes": sum(t.file_bytes for t in tables)})


@router.get("/catalog")
def catalog_page(request: Request, _: Principal = READ) -> HTMLResponse:
    try:
        tables = _lh(request).describe_tables()
    except AirduckError as exc:
        return _failed(request, exc, "The lake cannot be read")
    return render(request, "catalog.html", {"schemas": _by_schema(tables), "snapshot": _snapshot(tables)})


# -- a table -------------------------------------------------------------------------------------------------------
TABS = ("columns", "preview", "profile", "history", "quality", "lineage", "files")


def _quality_series(lh: Lakehouse, name: str) -> tuple[dict[str, Any], list[Any]]:
    """Failing rows per check over the runs that checked `name` (oldest first), and the latest result of each."""
    latest = lh.quality(table=name)
    runs = [r for r in reversed(lh.runs(limit=QUALITY_RUNS))]
    per_run = [(r, lh.quality(table=name, run_id=r.run_id)) for r in runs]
    per_run = [(r, q) for r, q in per_run if q]
    checks = sorted({f"{q.check}:{q.name}" for _, results in per_run for q in results})
    values = []
    for check in checks:
        line: list[int | None] = []
        for _, results in per_run:
            found = [q.rows_failing for q in results if f"{q.check}:{q.name}" == check]
            line.append(found[0] if found else None)
        values.append(line)
    series = {"runs": [r.run_id for r, _ in per_run], "labels": [r.started_at.strftime("%m-%d %H:%M")
                                                                for r, _ in per_run],
              "checks": checks, "values": values}
    return series, latest


@router.get("/tables/{name}")
def table_page(request: Request, name: str, tab: str = "columns", at: str | None = None,
               column: str | None = None, _: Principal = READ) -> HTMLResponse:
    lh = _lh(request)
    tab = tab if tab in TABS else "columns"
    ctx: dict[str, Any] = {"name": name, "tab": tab, "at": at}
    try:
        desc = lh.describe(name)
        ctx["desc"] = desc
        name = ctx["name"] = f"{desc.schema}.{desc.name}"
        if tab == "preview":
            ctx.update(_preview(lh, name, 0, PAGE_ROWS, at, desc.row_count if at is None else None))
        elif tab == "profile":
            ctx["column"] = column or (desc.columns[0].name if desc.columns else None)
        elif tab == "history":
            ctx["snapshots"] = lh.snapshots(name)
        elif tab == "quality":
            ctx["series"], ctx["latest"] = _quality_series(lh, name)
        elif tab == "files":
            ctx["files"] = lh.table_files(name)
    except AirduckError as exc:
        return _failed(request, exc, f"Cannot show {name}")
    return render(request, "table.html", ctx)


def _preview(lh: Lakehouse, name: str, offset: int, limit: int, at: str | None, total: int | None) -> dict[str, Any]:
    result = lh.rows(name, limit=limit, offset=offset, at=at)
    return {"result": result, "offset": offset, "limit": limit, "total": total, "name": name, "at": at}


@router.get("/tables/{name}/preview")
def table_preview(request: Request, name: str, offset: int = Query(0, ge=0), limit: int = Query(PAGE_ROWS, ge=1, le=500),
                  at: str | None = None, _: Principal = READ) -> HTMLResponse:
    lh = _lh(request)
    try:
        total = lh.describe(name).row_count if at is None else None
        ctx = _preview(lh, name, offset, limit, at, total)
    except AirduckError as exc:
        return _failed(request, exc, f"Cannot read {name}")
    return render(request, "partials/preview.html", ctx)


@router.get("/tables/{name}/profile")
def table_profile(request: Request, name: str, column: str, _: Principal = READ) -> HTMLResponse:
    try:
        p = _lh(request).profile(name, column)
    except AirduckError as exc:
        return _failed(request, exc, f"Cannot profile {name}.{column}")
    return render(request, "partials/profile.html", {"p": p})


@router.get("/tables/{name}/diff")
def table_diff(request: Request, name: str, start: str, end: str | None = None, _: Principal = READ) -> HTMLResponse:
    limit = 200
    try:
        first, last = (start, end)
        if end is not None and is_id(start) and is_id(end) and int(end) < int(start):
            first, last = end, start  # picked the other way round: the diff goes forward in time
        d = _lh(request).table_changes(name, first, last, limit=limit)
    except AirduckError as exc:
        return _failed(request, exc, "Cannot diff")
    return render(request, "partials/diff.html", {"d": d, "limit": limit})


# -- SQL -----------------------------------------------------------------------------------------------------------
EXAMPLE_SQL = "SELECT *\nFROM {table}\nLIMIT 100"


def _table_names(lh: Lakehouse) -> list[str]:
    try:
        return [str(t) for t in lh.tables()]
    except AirduckError:
        return []


@router.get("/sql")
def sql_page(request: Request, sql: str | None = None, _: Principal = READ) -> HTMLResponse:
    lh = _lh(request)
    tables = _table_names(lh)
    default = EXAMPLE_SQL.format(table=next((t for t in tables if t.startswith("gold.")), tables[0])) if tables else ""
    return render(request, "sql.html", {"sql": sql if sql is not None else default, "tables": tables,
                                        "limit": SQL_SHOWN_ROWS, "download_limit": lh.project.config.api.sql_max_rows})


@router.post("/sql")
def sql_run(request: Request, sql: str = Form(""), _: Principal = READ) -> HTMLResponse:
    lh = _lh(request)
    api = lh.project.config.api
    started = time.perf_counter()
    ctx: dict[str, Any] = {"sql": sql, "limit": SQL_SHOWN_ROWS, "download_limit": api.sql_max_rows}
    status = 200
    try:
        if not sql.strip():
            raise _Empty("write a query first", hint="for example SELECT * FROM silver.orders LIMIT 10")
        ctx["result"] = lh.sql(sql, SQL_SHOWN_ROWS, timeout=api.sql_timeout_seconds, count_all=True)
    except AirduckError as exc:
        ctx["error"] = _error(exc)
        status = status_of(exc)
    ctx["ms"] = (time.perf_counter() - started) * 1000
    if _partial(request):
        return render(request, "partials/sql_result.html", ctx, status=status)
    return render(request, "sql.html", {**ctx, "tables": _table_names(lh)}, status=status)


class _Empty(AirduckError):
    pass


class _OnBranch(Conflict):
    """A run started from a page that reads a branch: the browser's runs run on main, so it is refused."""

    def __init__(self, branch: str) -> None:
        super().__init__(f"this page reads branch {branch!r}, and a run started in the browser runs on main",
                         hint=f"switch to main in the branch menu to start a run on main; to run on the branch: "
                              f"`airduck run --branch {branch}`")


@router.post("/sql/download")
def sql_download(request: Request, sql: str = Form(""), format: str = Form("csv"),
                 _: Principal = READ) -> Response:
    from airduck.api.results import needs_arrow, respond

    lh = _lh(request)
    api = lh.project.config.api
    fmt = format if format in ("csv", "parquet") else "csv"
    try:
        if not sql.strip():
            raise _Empty("write a query first")
        result = lh.sql(sql, api.sql_max_rows, timeout=api.sql_timeout_seconds, arrow=needs_arrow(fmt))
    except AirduckError as exc:
        return _failed(request, exc, "The query was refused")
    return respond(result, fmt, {}, filename="query")


# -- branches ------------------------------------------------------------------------------------------------------
#: changed rows of each table the diff page shows
DIFF_SAMPLE = 5


@router.get("/branches")
def branches_page(request: Request, _: Principal = READ) -> HTMLResponse:
    try:
        found = _main(request).branches()
    except AirduckError as exc:
        return _failed(request, exc, "Cannot list the branches")
    return render(request, "branches.html", {"items": found})


@router.get("/branches/{name}")
def branch_diff_page(request: Request, name: str, _: Principal = READ) -> HTMLResponse:
    """What branch `name` changed since its fork, per table (its base..it: rows inserted, deleted, updated)."""
    lh = _main(request)
    try:
        d = lh.diff(name, sample=DIFF_SAMPLE)
    except AirduckError as exc:
        return _failed(request, exc, f"Cannot diff {name}")
    tables = [{"t": t, "sample": {"columns": list(t.sample[0]), "rows": [list(r.values()) for r in t.sample]}
               if t.sample else None} for t in d.tables]
    return render(request, "branch.html", {"d": d, "tables": tables, "sample": DIFF_SAMPLE})


# -- runs ----------------------------------------------------------------------------------------------------------
@router.get("/runs")
def runs_page(request: Request, _: Principal = READ) -> HTMLResponse:
    try:
        runs = _lh(request).runs(limit=50)
    except AirduckError as exc:
        return _failed(request, exc, "Cannot list the runs")
    return render(request, "runs.html", {"runs": runs})


@router.post("/runs")
def start_run(request: Request, select: str = Form(""), _: Principal = WRITE) -> Response:
    selection = [s for s in select.replace(",", " ").split() if s] or None
    _main(request)
    try:
        if getattr(request.state, "branch", None):
            raise _OnBranch(request.state.branch)
        live = request.app.state.runs.start(selection)
    except AirduckError as exc:
        return _failed(request, exc, "The run did not start")
    if _partial(request):
        return render(request, "partials/run_started.html", {"run_id": live.run_id},
                      headers={"HX-Redirect": f"/runs/{live.run_id}"})
    return RedirectResponse(f"/runs/{live.run_id}", status_code=303)


def _steps(run: Any) -> list[dict[str, Any]]:
    """The run's steps with their place on the timeline (left/width in % of the run's span)."""
    from datetime import datetime

    def ts(value: Any) -> datetime | None:
        if isinstance(value, str):
            try:
                return datetime.fromisoformat(value)
            except ValueError:
                return None
        return value

    steps = []
    begin = run.started_at
    ends = [ts(s.get("finished_at")) for s in run.steps]
    end = run.finished_at or max([e for e in ends if e] or [begin])
    span = max((end - begin).total_seconds(), 0.001)
    known = {"bronze", "silver", "gold"}
    for s in run.steps:
        a, b = ts(s.get("started_at")) or begin, ts(s.get("finished_at")) or end
        table = s.get("table_name") or s.get("table") or ""
        steps.append({**s, "table": table, "seconds": (b - a).total_seconds(),
                      "left": round(100 * max(0.0, (a - begin).total_seconds()) / span, 2),
                      "width": round(max(0.4, 100 * (b - a).total_seconds() / span), 2),
                      "linkable": table.split(".", 1)[0] in known and "." in table})
    return steps


def _run_context(request: Request, run_id: str) -> dict[str, Any]:
    lh = _lh(request)
    run = lh.run_info(run_id)
    live = request.app.state.runs.get(run.run_id) if getattr(request.app.state, "runs", None) else None
    running = run.status == "running" or (live is not None and not live.done)
    total = done = 0
    if live is not None:
        events = list(live.events)
        started = next((e for e in events if e.get("type") == "RunStarted"), None)
        total = len(started.get("steps") or []) if started else 0
        done = sum(1 for e in events if e.get("type") in ("StepFinished", "StepFailed", "StepSkipped"))
    return {"run": run, "steps": _steps(run), "quality": lh.quality(run_id=run.run_id, limit=None),
            "live": running, "total": total, "done": done}


@router.get("/runs/{run_id}")
def run_page(request: Request, run_id: str, _: Principal = READ) -> HTMLResponse:
    try:
        ctx = _run_context(request, run_id)
    except AirduckError as exc:
        return _failed(request, exc, f"No run {run_id}")
    return render(request, "run.html", ctx)


@router.get("/runs/{run_id}/live")
def run_live(request: Request, run_id: str, _: Principal = READ) -> HTMLResponse:
    try:
        ctx = _run_context(request, run_id)
    except AirduckError as exc:
        return _failed(request, exc, f"No run {run_id}")
    return render(request, "partials/run_live.html", ctx)


# -- lineage -------------------------------------------------------------------------------------------------------
@router.get("/lineage")
def lineage_page(request: Request, _: Principal = READ) -> HTMLResponse:
    _lh(request)  # the graph is the plan's (the same on every branch); its tables open on the page's branch
    return render(request, "lineage.html")


@router.get("/lineage.json")
def lineage_json(request: Request, focus: str | None = None, _: Principal = READ) -> Response:
    from fastapi.responses import JSONResponse

    try:
        found = _lh(request).lineage(focus)
    except (AirduckError, PageFailed) as failed:
        exc = failed.error if isinstance(failed, PageFailed) else failed
        return JSONResponse({"error": {"type": type(exc).__name__, **_error(exc)}}, status_code=status_of(exc))
    return JSONResponse(graph.elements(found.to_dict(), focus))


# -- quarantine and rejects ----------------------------------------------------------------------------------------
@router.get("/quarantine")
def quarantine_page(request: Request, table: str | None = None, _: Principal = READ) -> HTMLResponse:
    lh = _lh(request)
    try:
        tables = [t for t in lh.describe_tables() if t.name.endswith(("__quarantine", "__rejects"))]
        names = [f"{t.schema}.{t.name}" for t in tables]
        chosen = table if table in names else next((n for t, n in zip(tables, names, strict=True) if t.row_count),
                                                   names[0] if names else None)
        ctx: dict[str, Any] = {"tables": tables, "chosen": chosen}
        if chosen:
            count = next(t.row_count for t, n in zip(tables, names, strict=True) if n == chosen)
            ctx.update(_preview(lh, chosen, 0, PAGE_ROWS, None, count))
    except AirduckError as exc:
        return _failed(request, exc, "Cannot read the quarantine")
    return render(request, "quarantine.html", ctx)


# -- objects -------------------------------------------------------------------------------------------------------
def _objects(request: Request) -> Any:
    """The project's one object store (objects are not branched: the same store on every branch)."""
    main = _main(request)
    state = request.app.state
    if getattr(state, "objects", None) is None:
        state.objects = main.objects()
    return state.objects


def _listing(objects: Any, prefix: str) -> dict[str, Any]:
    """The folders and objects directly under `prefix` (keys are split on '/')."""
    found = objects.list(prefix)
    folders: dict[str, str] = {}
    files = []
    for info in found:
        rest = info.key[len(prefix):]
        if "/" in rest:
            head = rest.split("/", 1)[0]
            folders.setdefault(head, prefix + head + "/")
        else:
            files.append({"key": info.key, "name": rest, "size": info.size, "modified": info.last_modified})
    crumbs = []
    acc = ""
    for part in [p for p in prefix.split("/") if p]:
        acc += part + "/"
        crumbs.append((part, acc))
    return {"prefix": prefix, "folders": sorted(folders.items()), "objects": files[:OBJECTS_SHOWN],
            "more": len(files) > OBJECTS_SHOWN, "crumbs": crumbs}


def _objects_page(request: Request, prefix: str, status: int = 200, **extra: Any) -> HTMLResponse:
    ctx: dict[str, Any] = {"prefix": prefix, "folders": [], "objects": [], "crumbs": [], "store_url": "", **extra}
    try:
        objects = _objects(request)
        ctx["store_url"] = redact(_lh(request).project.config.lake.objects)
        ctx["versioned"] = objects.versioned
        ctx.update(_listing(objects, prefix))
    except AirduckError as exc:
        ctx["error"] = _error(exc)
        status = max(status, status_of(exc))
    return render(request, "objects.html", ctx, status=status)


@router.get("/objects")
def objects_page(request: Request, prefix: str = "", _: Principal = READ) -> HTMLResponse:
    if prefix and not prefix.endswith("/"):
        prefix += "/"
    return _objects_page(request, prefix)


@router.post("/objects/upload")
def objects_upload(request: Request, prefix: str = Form(""), file: UploadFile = File(...),
                   _: Principal = WRITE) -> Response:
    name = (file.filename or "").replace("\\", "/").rsplit("/", 1)[-1]
    key = prefix + name
    try:
        if not name:
            raise _Empty("choose a file to upload")
        limit = _lh(request).project.config.api.max_upload_bytes

        def chunks():
            while chunk := file.file.read(UPLOAD_CHUNK):
                yield chunk

        put = _objects(request).put_stream(key, chunks(), limit)
    except AirduckError as exc:
        return _objects_page(request, prefix, status=status_of(exc), error=_error(exc))
    return _objects_page(request, prefix, message=f"Uploaded {put.key} ({put.size:,} bytes).")


@router.get("/objects/download")
def objects_download(request: Request, key: str, _: Principal = READ) -> Response:
    try:
        objects = _objects(request)
        info = objects.head(key)
        body = objects.open(key)
    except AirduckError as exc:
        return _failed(request, exc, f"Cannot download {key}")
    filename = key.rsplit("/", 1)[-1].replace('"', "")
    return StreamingResponse(body, media_type="application/octet-stream", headers={
        "Content-Disposition": f'attachment; filename="{filename}"', "Content-Length": str(info.size)})


@router.post("/objects/delete")
def objects_delete(request: Request, key: str = Form(...), prefix: str = Form(""), _: Principal = WRITE) -> Response:
    try:
        existed = _objects(request).delete(key)
    except AirduckError as exc:
        return _objects_page(request, prefix, status=status_of(exc), error=_error(exc))
    return _objects_page(request, prefix, message=f"Deleted {key}." if existed else f"{key} was already gone.")
