"""Who is calling: bearer tokens with roles (read < write < admin), and browser sessions with a CSRF token.

Tokens come from `api.tokens` in airduck.yml (values from ``${ENV}``) and from ``AIRDUCK_API_TOKEN`` (an admin
token named ``env``). With none configured, `airduck serve` makes a random admin token for the process and prints it
once. A token is compared with every configured token in constant time (`hmac.compare_digest`); it is never logged
or echoed: requests are logged with the token's *name*.

Browser: ``POST /api/v1/session`` with a token sets an HttpOnly, SameSite=Strict cookie holding a random session id
(never the token) and returns a CSRF token. A cookie-authenticated request with an unsafe method (POST, PUT, PATCH,
DELETE) must send that CSRF token in the ``X-CSRF-Token`` header or a ``csrf_token`` form field.

Routers (the API's and the web pages' in `airduck.api.web`) protect a route with a dependency::

    @router.get("/x")
    def x(who: Principal = Depends(require_role("read"))): ...

It accepts either ``Authorization: Bearer <token>`` or the session cookie (+ CSRF for unsafe methods), raises
401 (no or a wrong credential) or 403 (too low a role, a missing CSRF token), and puts the caller on
``request.state.principal``. Pages that want to redirect to a sign-in form instead call `principal_of(request)`
(None when not signed in). `sign_in(response, auth, token, secure=...)` / `sign_out(request, response)` do the
cookie part for a form-based sign-in.
"""

from __future__ import annotations

import hmac
import os
import secrets
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from fastapi import Depends, Request, Response
from fastapi.security import APIKeyCookie, HTTPAuthorizationCredentials, HTTPBearer

from airduck.api.config import ROLES
from airduck.api.errors import Forbidden, Unauthorized
from airduck.config.secrets import register_secret

if TYPE_CHECKING:
    from airduck.project import Project

ENV_TOKEN = "AIRDUCK_API_TOKEN"
SESSION_COOKIE = "airduck_session"
CSRF_HEADER = "X-CSRF-Token"
CSRF_FIELD = "csrf_token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
#: sessions kept at most (the oldest are dropped first): a flood of sign-ins cannot exhaust memory
MAX_SESSIONS = 10_000


@dataclass(frozen=True)
class Principal:
    """The caller: the token's name and role (never the token)."""

    name: str
    role: str
    via: str = "token"  # "token" (bearer header) or "session" (browser cookie)

    def may(self, role: str) -> bool:
        return ROLES.index(self.role) >= ROLES.index(role)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "role": self.role, "via": self.via}


@dataclass
class Session:
    id: str
    principal: Principal
    csrf: str
    expires: float


@dataclass
class Auth:
    """The tokens a server accepts and its browser sessions."""

    tokens: list[tuple[str, bytes, str]]  # (name, token, role)
    session_seconds: float = 12 * 3600
    generated: str | None = None  # the random admin token made for this process, if any (printed once by serve)
    _sessions: dict[str, Session] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def from_project(cls, project: Project, environ: Mapping[str, str] | None = None, *,
                     generate: bool = True) -> Auth:
        """The tokens of `api.tokens` and AIRDUCK_API_TOKEN; with none and `generate`, one random admin token.

        An `api:` token whose ``${VAR}`` is unset is an error (the literal ``${VAR}`` must never be a token)."""
        project.require(("api",))
        env = os.environ if environ is None else environ
        tokens = [(name, t.token.get_secret_value().encode(), t.role) for name, t in project.config.api.tokens.items()]
        from_env = (env.get(ENV_TOKEN) or project.env.get(ENV_TOKEN) or "").strip()
        if from_env:
            register_secret(from_env)
            tokens.append(("env", from_env.encode(), "admin"))
        generated = None
        if not tokens and generate:
            generated = secrets.token_urlsafe(32)
            register_secret(generated)
            tokens.append(("generated", generated.encode(), "admin"))
        return cls(tokens, session_seconds=project.config.api.session_hours * 3600, generated=generated)

    @property
    def configured(self) -> bool:
        """Whether the tokens were configured (airduck.yml or the environment), not made up for this process."""
        return any(name != "generated" for name, _, _ in self.tokens)

    def check(self, token: str | None) -> Principal | None:
        """The principal of `token`, or None. Compares with every token, in constant time for each."""
        if not token:
            return None
        given = token.encode("utf-8", "surrogateescape")
        found: Principal | None = None
        for name, value, role in self.tokens:
            if hmac.compare_digest(given, value) and found is None:
                found = Principal(name, role)
        return found

    # -- browser sessions
    def open_session(self, principal: Principal) -> Session:
        session = Session(secrets.token_urlsafe(32), Principal(principal.name, principal.role, "session"),
                          secrets.token_urlsafe(32), time.time() + self.session_seconds)
        with self._lock:
            now = time.time()
            for sid in [sid for sid, s in self._sessions.items() if s.expires < now]:
                del self._sessions[sid]
            while len(self._sessions) >= MAX_SESSIONS:
                del self._sessions[next(iter(self._sessions))]
            self._sessions[session.id] = session
        return session

    def session(self, sid: str | None) -> Session | None:
        if not sid:
            return None
        with self._lock:
            session = self._sessions.get(sid)
            if session is not None and session.expires < time.time():
                del self._sessions[sid]
                return None
            return session

    def close_session(self, sid: str | None) -> None:
        with self._lock:
            self._sessions.pop(sid or "", None)


def auth_of(request: Request) -> Auth:
    return request.app.state.auth


def sign_in(response: Response, auth: Auth, token: str, *, secure: bool = False) -> Session:
    """Check `token` and set the session cookie on `response`; Unauthorized if the token is wrong."""
    principal = auth.check(token)
    if principal is None:
        raise Unauthorized("that token is not valid", hint="use a token of api.tokens or the one `airduck serve` printed")
    session = auth.open_session(principal)
    response.set_cookie(SESSION_COOKIE, session.id, max_age=int(auth.session_seconds), httponly=True,
                        samesite="strict", secure=secure, path="/")
    return session


def sign_out(request: Request, response: Response) -> None:
    auth_of(request).close_session(request.cookies.get(SESSION_COOKIE))
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict")


def session_of(request: Request) -> Session | None:
    return auth_of(request).session(request.cookies.get(SESSION_COOKIE))


def principal_of(request: Request) -> Principal | None:
    """The caller by bearer header or session cookie, or None (no CSRF check: for pages that redirect)."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return auth_of(request).check(token.strip())
    session = session_of(request)
    return session.principal if session is not None else None


def csrf_token(request: Request) -> str | None:
    """The CSRF token of the request's browser session (for a page's forms), or None."""
    session = session_of(request)
    return session.csrf if session is not None else None


_bearer = HTTPBearer(auto_error=False, description="An API token (api.tokens in airduck.yml, AIRDUCK_API_TOKEN, "
                     "or the one `airduck serve` printed)")
_cookie = APIKeyCookie(name=SESSION_COOKIE, auto_error=False,
                       description="A browser session (POST /api/v1/session); unsafe methods also need X-CSRF-Token")


async def _csrf_from(request: Request) -> str | None:
    given = request.headers.get(CSRF_HEADER)
    if given:
        return given
    kind = request.headers.get("content-type", "")
    if kind.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
        form = await request.form()
        value = form.get(CSRF_FIELD)
        return value if isinstance(value, str) else None
    return None


async def authenticate(request: Request, bearer: HTTPAuthorizationCredentials | None,
                       cookie: str | None) -> Principal:
    auth = auth_of(request)
    if bearer is not None or request.headers.get("authorization"):
        principal = auth.check(bearer.credentials if bearer is not None else None)
        if principal is None:
            raise Unauthorized("that token is not valid", hint="send `Authorization: Bearer <token>` with a token "
                               "of api.tokens (or the one `airduck serve` printed)")
    else:
        session = auth.session(cookie)
        if session is None:
            raise Unauthorized("sign in first: no token was sent",
                               hint="send `Authorization: Bearer <token>`, or sign in with POST /api/v1/session")
        if request.method not in SAFE_METHODS:
            given = await _csrf_from(request)
            if not given or not hmac.compare_digest(given.encode(), session.csrf.encode()):
                raise Forbidden("missing or wrong CSRF token",
                                hint=f"a browser request that changes something sends the {CSRF_HEADER} header "
                                     "(the csrf_token of the sign-in answer)")
        principal = session.principal
    request.state.principal = principal
    return principal


def require_role(role: str):
    """A FastAPI dependency: the caller, who must hold at least `role` (read, write or admin)."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}")

    async def dependency(request: Request, bearer: HTTPAuthorizationCredentials | None = Depends(_bearer),
                         cookie: str | None = Depends(_cookie)) -> Principal:
        principal = await authenticate(request, bearer, cookie)
        if not principal.may(role):
            raise Forbidden(f"the token {principal.name!r} has the role {principal.role!r}; this needs {role!r}",
                            hint=f"use a token with role {role} (api.tokens in airduck.yml)")
        return principal

    dependency.__name__ = f"require_{role}"
    return dependency
