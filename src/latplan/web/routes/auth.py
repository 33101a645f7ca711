"""Login, logout and the CSRF token of a session.

Login limits (:class:`latplan.store.accounts.LoginPolicy`): one counter per account and one per
address, reserved atomically before the password is checked; exponential back-off (429 with
``Retry-After``) instead of a lock-out; one argon2 verification on every path.
"""

from __future__ import annotations

import os

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from sqlalchemy.orm import Session

from latplan.store import accounts, audit
from latplan.web.deps import (
    Ctx,
    client_ip,
    csrf_dep,
    ctx_dep,
    error_response,
    get_db,
    is_https,
    page,
    pre_cookie,
    session_cookie,
    state_of,
    tx,
    wants_json,
)
from latplan.web.security import csrf_token

router = APIRouter()


@router.get("/healthz")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/", response_model=None)
def root() -> RedirectResponse:
    return RedirectResponse("/cases", status_code=303)


@router.get("/login", response_class=HTMLResponse)
def login_form(request: Request) -> HTMLResponse:
    st = state_of(request)
    pre = request.cookies.get(pre_cookie(request)) or os.urandom(16).hex()
    resp = page(request, "login.html", {"csrf": csrf_token(st.settings.secret_key, "pre:" + pre), "user": None})
    resp.set_cookie(pre_cookie(request), pre, httponly=True, samesite="strict", secure=is_https(request), path="/")
    return resp


@router.post("/login", dependencies=[Depends(csrf_dep)], response_model=None)
def login(request: Request, username: str = Form(..., max_length=200), password: str = Form(..., max_length=1000),
          db: Session = Depends(get_db)) -> Response:
    st = state_of(request)
    ip = client_ip(request)
    try:
        accounts.reserve_attempt(st.factory, username, ip, st.login_policy)
    except accounts.RateLimitedError as exc:
        with tx(db):
            audit.record(db, "login_failed", username=username[:80], ip=ip, detail={"reason": "rate limited"})
        return error_response(request, 429, str(exc), headers={"Retry-After": str(int(exc.retry_after_s) + 1)})
    try:
        with tx(db):
            user = accounts.authenticate(db, username, password, ip)
            previous = request.cookies.get(session_cookie(request))
            if previous:  # a new login ends the session this browser had
                accounts.revoke_session(db, previous)
            token = accounts.open_session(db, user, st.settings.session_lifetime_s)
            audit.record(db, "login", user, ip=ip)
    except accounts.AuthError as exc:
        with tx(db):
            db.add(accounts.LoginAttempt(username=username[:80], ip=ip[:64], success=False))
            audit.record(db, "login_failed", username=username[:80], ip=ip)
        pre = request.cookies.get(pre_cookie(request)) or ""
        return page(request, "login.html", {"csrf": csrf_token(st.settings.secret_key, "pre:" + pre),
                                            "error": str(exc), "user": None}, 401)
    resp: Response = RedirectResponse("/cases", status_code=303)
    if wants_json(request):
        resp = JSONResponse({"user": user.username, "role": user.role})
    resp.set_cookie(session_cookie(request), token, httponly=True, samesite="strict", secure=is_https(request),
                    max_age=st.settings.session_lifetime_s, path="/")
    resp.delete_cookie(pre_cookie(request), path="/")
    return resp


@router.post("/logout", dependencies=[Depends(csrf_dep)], response_model=None)
def logout(request: Request, ctx: Ctx = Depends(ctx_dep)) -> Response:
    with tx(ctx.db):
        accounts.revoke_session(ctx.db, ctx.token)
        audit.record(ctx.db, "logout", ctx.user, ip=ctx.ip)
    resp = RedirectResponse("/login", status_code=303)
    resp.delete_cookie(session_cookie(request), path="/")
    return resp


@router.get("/api/csrf")
def api_csrf(ctx: Ctx = Depends(ctx_dep)) -> dict[str, str]:
    """The CSRF token of this session (for API clients that post JSON/forms)."""
    return {"csrf_token": ctx.csrf}
