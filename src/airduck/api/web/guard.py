"""Who may see a page: the browser session of airduck.api.auth, with redirects and pages instead of JSON errors.

A page asks for `page_user(role)`: a visitor who is not signed in is sent to ``/signin`` (an htmx request gets an
``HX-Redirect``), one whose role is too low or whose form lacks the session's CSRF token gets a 403 page. The
checks themselves are airduck.api.auth's (`authenticate`): the same rules as the API.
"""

from __future__ import annotations

from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.security import HTTPAuthorizationCredentials

from airduck.api.auth import SESSION_COOKIE, Principal, authenticate
from airduck.api.errors import Forbidden, Unauthorized, status_of
from airduck.config.secrets import redact
from airduck.errors import AirduckError


class SignInRequired(Exception):
    """The visitor is not signed in (or the session expired): show the sign-in page."""


class PageForbidden(Exception):
    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


class PageFailed(Exception):
    """An airduck error that ends a page before it renders (e.g. ``?branch=`` names no branch): shown as the error
    page with the status the API would give it (:func:`airduck.api.errors.status_of`), never a traceback."""

    def __init__(self, error: AirduckError, title: str, hint: str | None = None) -> None:
        super().__init__(error.message)
        self.error = error
        self.title = title
        self.hint = hint or error.hint


def page_user(role: str = "read"):
    """A dependency: the signed-in visitor, who must hold `role`; unsafe methods need the session's CSRF token."""

    async def dependency(request: Request) -> Principal:
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        bearer = (HTTPAuthorizationCredentials(scheme="Bearer", credentials=token.strip())
                  if scheme.lower() == "bearer" and token.strip() else None)
        try:
            principal = await authenticate(request, bearer, request.cookies.get(SESSION_COOKIE))
        except Unauthorized:
            raise SignInRequired() from None
        except Forbidden as exc:
            raise PageForbidden(exc.message, exc.hint) from None
        if not principal.may(role):
            raise PageForbidden(f"you are signed in as {principal.name!r} with the role {principal.role!r}; "
                                f"this needs {role!r}", "sign in with a token that has that role")
        return principal

    dependency.__name__ = f"page_{role}"
    return dependency


def install_handlers(app: FastAPI) -> None:
    from airduck.api.web.render import render

    @app.exception_handler(SignInRequired)
    async def sign_in_first(request: Request, exc: SignInRequired) -> Response:
        target = "/signin?next=" + quote(request.url.path + (f"?{request.url.query}" if request.url.query else ""))
        if request.headers.get("hx-request"):
            return Response(status_code=401, headers={"HX-Redirect": target})
        if request.method != "GET":
            return render(request, "error.html", {"title": "Sign in first", "message": "your session ended",
                                                  "hint": "sign in again, then repeat what you did"}, status=401)
        return RedirectResponse(target, status_code=303)

    @app.exception_handler(PageForbidden)
    async def forbidden(request: Request, exc: PageForbidden) -> HTMLResponse:
        return render(request, "error.html", {"title": "Not allowed", "message": exc.message, "hint": exc.hint},
                      status=403, partial=bool(request.headers.get("hx-request")))

    @app.exception_handler(PageFailed)
    async def failed(request: Request, exc: PageFailed) -> HTMLResponse:
        return render(request, "error.html", {"title": exc.title, "message": redact(exc.error.message),
                                              "hint": redact(exc.hint) if exc.hint else None},
                      status=status_of(exc.error), partial=bool(request.headers.get("hx-request")))
