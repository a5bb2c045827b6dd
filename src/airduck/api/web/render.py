"""Rendering: one Jinja2 environment (autoescaped), the filters the templates use, and the page context."""

from __future__ import annotations

import datetime as dt
import functools
import json
import logging
from decimal import Decimal
from typing import Any
from urllib.parse import urlencode

from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, pass_context, select_autoescape

from airduck.api.auth import csrf_token
from airduck.api.web import HERE

log = logging.getLogger("airduck.api.web")

LAYERS = ("source", "bronze", "silver", "gold", "serve")


def number(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, int | Decimal) or (isinstance(value, float) and value.is_integer()):
        return f"{int(value):,}"
    if isinstance(value, float):
        return f"{value:,.2f}"
    return str(value)


def size(n: int | None) -> str:
    if n is None:
        return ""
    step = 1024.0
    value = float(n)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if value < step or unit == "TB":
            return f"{value:,.0f} {unit}" if unit == "B" else f"{value:,.1f} {unit}"
        value /= step
    return f"{n} B"


def when(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        try:
            value = dt.datetime.fromisoformat(value)
        except ValueError:
            return value
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return str(value)


def seconds(value: float | None) -> str:
    if value is None:
        return ""
    if value < 59.95:
        return f"{value:.1f} s"
    minutes, rest = divmod(round(value), 60)
    return f"{minutes} min {rest} s"


def cell(value: Any, width: int = 120) -> str:
    """A value as the grid shows it (long values cut; the full value is in the title)."""
    if isinstance(value, bytes):
        text = value[:48].hex() + ("…" if len(value) > 48 else "")
    elif isinstance(value, dt.datetime | dt.date | dt.time):
        text = value.isoformat(sep=" ") if isinstance(value, dt.datetime) else value.isoformat()
    elif isinstance(value, list | dict | tuple):
        text = json.dumps(value, default=str, ensure_ascii=False)
    else:
        text = str(value)
    return text if len(text) <= width else text[: width - 1] + "…"


def layer_of(schema: str) -> str:
    return schema if schema in LAYERS else ("gold" if schema.startswith("gold") else "other")


@pass_context
def url(ctx: Any, path: str, **params: Any) -> str:
    """`path` with the query `params` (None left out) and the branch the page reads (``branch=``, when not main):
    every link and form of a page keeps the branch, so a URL is the whole view (shareable; back and forward work)."""
    query = {k: v for k, v in params.items() if v is not None}
    if ctx.get("branch"):
        query["branch"] = ctx["branch"]
    if not query:
        return path
    return path + ("&" if "?" in path else "?") + urlencode(query, safe="/")


def _branches(request: Request) -> list[Any]:
    """The branches for the header's menu, from the registry only (no branch's catalog is opened). A registry
    that cannot be read leaves the menu with main alone: the page itself still renders."""
    lh = getattr(request.app.state, "lakehouse", None)
    if lh is None:
        return []
    try:
        return lh.branches(heads=False)
    except Exception as exc:  # the menu is not worth failing a page over
        log.warning("the branches menu cannot list the branches: %s", type(exc).__name__)
        return []


def _without_branch(request: Request) -> str:
    """This page's URL on main (its query without ``branch``)."""
    rest = [(k, v) for k, v in request.query_params.multi_items() if k != "branch"]
    return request.url.path + (f"?{urlencode(rest)}" if rest else "")


@functools.cache
def environment() -> Environment:
    env = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(["html"]),
                      trim_blocks=True, lstrip_blocks=True)
    env.filters.update(number=number, size=size, when=when, seconds=seconds, cell=cell, layer=layer_of,
                       tojson_attr=lambda v: json.dumps(v, default=str))
    env.globals["url"] = url
    return env


def render(request: Request, template: str, context: dict[str, Any] | None = None, *, status: int = 200,
           partial: bool = False, headers: dict[str, str] | None = None) -> HTMLResponse:
    """Render `template` with the page context (who is signed in, the CSRF token, the project's name, the branch
    the page reads and the branches for the header's menu)."""
    if partial and template == "error.html":
        template = "partials/error.html"
    lh = getattr(request.app.state, "lakehouse", None)
    principal = getattr(request.state, "principal", None)
    whole_page = not template.startswith("partials/")  # only a whole page has the header with the branch menu
    branches = _branches(request) if principal is not None and whole_page else []
    branch = getattr(request.state, "branch", None)  # set by the page once the branch is known to exist
    ctx = {
        "request": request,
        "principal": principal,
        "branch": branch,
        "branches": branches,
        "branch_info": next((b for b in branches if b.name == branch), None),
        "csrf": csrf_token(request) if getattr(request.app.state, "auth", None) is not None else None,
        "project": lh.project.config.name if lh is not None else "airduck",
        "path": request.url.path,
        "on_main": _without_branch(request),
        **(context or {}),
    }
    html = environment().get_template(template).render(ctx)
    return HTMLResponse(html, status_code=status, headers=headers)
