"""The web data browser: server-rendered pages (Jinja2) with htmx for partial updates, over the facade.

`create_app` (airduck.api.app) calls :func:`include`, which adds the page routers (left out of the OpenAPI
schema: they are pages, not API), the static files under ``/static`` (the hand-written stylesheet and script and
the vendored libraries, see ``static/vendor/VENDORED.md``) and the handler that sends a visitor who is not signed
in to the sign-in page. Pages call the facade (``app.state.lakehouse``), the run manager (``app.state.runs``) and
the object store of the API helper; no business logic lives here: routes parse, call, render.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI

HERE = Path(__file__).parent


def include(app: FastAPI) -> None:
    """Add the browser's pages and static files to `app`."""
    from starlette.staticfiles import StaticFiles

    from airduck.api.web.guard import install_handlers
    from airduck.api.web.pages import router

    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    install_handlers(app)
    app.include_router(router, include_in_schema=False)
