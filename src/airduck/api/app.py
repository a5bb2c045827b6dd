"""`create_app`: the FastAPI app over a project's `Lakehouse` (the REST API under /api/v1, and the browser pages).

Routers parse, call the facade and shape JSON; nothing else lives here. The browser pages are a separate package,
`airduck.api.web`: when it exists, `create_app` calls its ``include(app)`` (it adds its routers and static files
and may use the auth dependencies of :mod:`airduck.api.auth`).

`app.state`: ``lakehouse`` (one Lakehouse for the process: its read session serves reads from many threads),
``branches`` (:class:`airduck.api.facades.BranchFacades`: the facades of ``?branch=NAME``, leased per request),
``auth`` (:class:`airduck.api.auth.Auth`), ``runs`` (:class:`airduck.api.runs.RunManager`), ``objects`` (the
object store, opened on first use).
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import duckdb
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from airduck._version import __version__
from airduck.api.auth import Auth
from airduck.api.errors import ERROR_SCHEMA, Unauthorized, body_of, error_body, status_of
from airduck.api.logs import RequestLog
from airduck.errors import AirduckError
from airduck.lakehouse import Lakehouse

log = logging.getLogger("airduck.api")

API = "/api/v1"
OPENAPI_URL = f"{API}/openapi.json"
DOCS_URL = "/api/docs"
WEB_PACKAGE = "airduck.api.web"


def create_app(lakehouse: Lakehouse | str | Path | None = None, *, auth: Auth | None = None,
               environ: Mapping[str, str] | None = None, web: bool = True) -> FastAPI:
    """The app over `lakehouse` (a Lakehouse, or a project folder to open; None: search up from here).

    `auth`: the tokens to accept (default: `Auth.from_project`, which makes a random admin token when none is
    configured: read it from ``app.state.auth.generated``). `web`: include `airduck.api.web` if it exists."""
    lh = lakehouse if isinstance(lakehouse, Lakehouse) else Lakehouse.open(lakehouse)
    auth = auth or Auth.from_project(lh.project, environ)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        app.state.runs.shutdown()
        app.state.branches.close()
        lh.close()

    app = FastAPI(title=f"airduck: {lh.project.config.name}", version=__version__, openapi_url=None,
                  docs_url=None, redoc_url=None, lifespan=lifespan,
                  description="The REST API of an airduck lakehouse: tables, rows, read-only SQL, snapshots, runs, "
                              "lineage and objects. Send `Authorization: Bearer <token>`; `/health` is the only open endpoint.")
    from airduck.api.facades import BranchFacades, ReleaseLeases
    from airduck.api.runs import RunManager

    app.state.lakehouse = lh
    app.state.branches = BranchFacades(lh)
    app.state.auth = auth
    app.state.runs = RunManager(lh)
    app.state.objects = None
    _handlers(app)
    app.add_middleware(ReleaseLeases)
    app.add_middleware(RequestLog)

    @app.get("/health", tags=["health"], summary="Liveness (open: no token)")
    def health() -> dict[str, str]:
        return {"status": "ok", "version": __version__}

    from airduck.api.routers import ROUTERS

    for router in ROUTERS:
        app.include_router(router, prefix=API)
    from airduck.api.errors import responses as error_responses
    from airduck.api.routers.common import READ
    from airduck.metrics.http import install as install_metrics

    # issue 12: GET /metrics (request metrics per route template + the lake gauges), for a `read` token
    app.state.metrics = install_metrics(app, lh, dependencies=[READ], responses=error_responses(401, 403))
    if web and importlib.util.find_spec(WEB_PACKAGE) is not None:
        importlib.import_module(WEB_PACKAGE).include(app)
    _openapi_errors(app)
    _docs(app, READ)
    return app


def _docs(app: FastAPI, read: Any) -> None:
    """The OpenAPI schema and the Swagger UI, behind a `read` token or a signed-in browser like everything but
    /health (the schema names the project). Swagger UI is vendored (static/swagger-ui, from npm's swagger-ui-dist
    with its license), never fetched from a CDN."""
    from fastapi.openapi.docs import get_swagger_ui_html
    from starlette.staticfiles import StaticFiles

    here = Path(__file__).parent / "static" / "swagger-ui"
    app.mount("/api/static/swagger-ui", StaticFiles(directory=here), name="swagger-ui")

    @app.get(OPENAPI_URL, include_in_schema=False, dependencies=[read])
    def openapi_json() -> JSONResponse:
        return JSONResponse(app.openapi())

    @app.get(DOCS_URL, include_in_schema=False, dependencies=[read])
    def docs() -> Any:
        return get_swagger_ui_html(openapi_url=OPENAPI_URL, title=f"{app.title} — API docs",
                                   swagger_js_url="/api/static/swagger-ui/swagger-ui-bundle.js",
                                   swagger_css_url="/api/static/swagger-ui/swagger-ui.css",
                                   swagger_favicon_url="/api/static/swagger-ui/favicon-32x32.png")


def _error(status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(body, status_code=status, headers=headers)


def _handlers(app: FastAPI) -> None:
    @app.exception_handler(AirduckError)
    async def airduck_error(request: Request, exc: AirduckError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if isinstance(exc, Unauthorized) else None
        return _error(status_of(exc), body_of(exc), headers)

    @app.exception_handler(duckdb.Error)
    async def duckdb_error(request: Request, exc: duckdb.Error) -> JSONResponse:
        from airduck.lake.errors import translate

        err = translate(exc)
        return _error(status_of(err), body_of(err))

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        parts = []
        for err in exc.errors()[:5]:
            where = ".".join(str(p) for p in err.get("loc", ()) if p not in ("body", "query", "path", "header"))
            parts.append(f"{where or 'request'}: {err.get('msg', 'invalid')}")
        return _error(422, error_body("InvalidRequest", "; ".join(parts) or "invalid request",
                                      "see the API docs at /api/docs"))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        kinds = {404: "NotFound", 405: "MethodNotAllowed", 401: "Unauthorized", 403: "Forbidden"}
        return _error(exc.status_code, error_body(kinds.get(exc.status_code, "HttpError"), str(exc.detail)),
                      getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        request_id = request.scope.get("state", {}).get("request_id")
        log.error("unexpected error on %s %s (request %s)", request.method, request.url.path, request_id,
                  exc_info=exc)
        return _error(500, error_body("InternalError", f"the server failed (request {request_id})",
                                      "the server log has the details under that request id"))


def _openapi_errors(app: FastAPI) -> None:
    """Declare the error shape in the schema (422 uses it too, not FastAPI's default)."""
    from fastapi.openapi.utils import get_openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
        schema.setdefault("components", {}).setdefault("schemas", {})["Error"] = ERROR_SCHEMA
        for path in schema.get("paths", {}).values():
            for op in path.values():
                if not isinstance(op, dict) or "responses" not in op:
                    continue
                if "422" in op["responses"]:
                    op["responses"]["422"] = {"description": "Invalid parameters", "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
