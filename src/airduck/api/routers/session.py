"""Browser sign-in: a token in, an HttpOnly SameSite=Strict session cookie and a CSRF token out."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel

from airduck.api.auth import Principal, auth_of, csrf_token, sign_in, sign_out
from airduck.api.errors import responses
from airduck.api.routers.common import PROTECTED, READ

router = APIRouter(tags=["session"])


class SignIn(BaseModel):
    token: str


class SessionInfo(BaseModel):
    name: str
    role: str
    via: str
    csrf_token: str | None = None


@router.post("/session", response_model=SessionInfo, responses=responses(401, 422),
             summary="Sign in with a token (sets the session cookie; returns the CSRF token)")
def open_session(body: SignIn, request: Request, response: Response) -> SessionInfo:
    session = sign_in(response, auth_of(request), body.token, secure=request.url.scheme == "https")
    request.state.principal = session.principal
    return SessionInfo(**session.principal.to_dict(), csrf_token=session.csrf)


@router.get("/session", response_model=SessionInfo, responses=PROTECTED, summary="Who is signed in")
def who(request: Request, principal: Principal = READ) -> SessionInfo:
    return SessionInfo(**principal.to_dict(), csrf_token=csrf_token(request) if principal.via == "session" else None)


@router.delete("/session", status_code=204, responses=PROTECTED, summary="Sign out (needs the CSRF token)")
def close_session(request: Request, response: Response, principal: Principal = READ) -> Response:
    out = Response(status_code=204)
    sign_out(request, out)
    return out
