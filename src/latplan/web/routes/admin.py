"""Administration within the administrator's boards: users and the audit log.

An administrator manages only the boards they belong to: the user list shows members of
those boards; a new user can join only those boards (or a new board, which the administrator
then joins too); deactivation needs every board of the target to be one of the
administrator's. The audit log shows events of users who share a board with the
administrator (and those of no user: the worker, failed logins); reading it is itself audited.
An operator with shell access uses ``latplan user add`` (audited as ``cli``).
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response

from latplan.errors import InvalidInputError
from latplan.store import accounts, audit
from latplan.store import cases as case_store
from latplan.store.models import ROLES
from latplan.web.deps import (
    Ctx,
    ForbiddenError,
    NotFoundError,
    csrf_dep,
    ctx_dep,
    log_event,
    page,
    require,
    tx,
    wants_json,
)

router = APIRouter()
ADMIN = {"admin"}


@router.get("/admin/audit", response_model=None)
def audit_log(request: Request, ctx: Ctx = Depends(ctx_dep),
              action: str | None = Query(None, max_length=40)) -> Response:
    require(ctx, ADMIN, "read the audit log")
    boards = case_store.board_ids_of_user(ctx.db, ctx.user.id)
    visible = {u.user.id for u in case_store.users_in_boards(ctx.db, boards)}
    events = audit.recent(ctx.db, 500, action, user_ids=visible)
    log_event(ctx, "audit_read", "audit", None, detail={"action": action})
    if wants_json(request):
        return JSONResponse({"events": [
            {"id": e.id, "at": e.at.isoformat(), "username": e.username, "action": e.action,
             "object_type": e.object_type, "object_id": e.object_id, "detail": e.detail, "ip": e.ip}
            for e in events]})
    return page(request, "audit.html", {"user": ctx.user, "csrf": ctx.csrf, "events": events})


@router.get("/admin/users", response_model=None)
def admin_users(request: Request, ctx: Ctx = Depends(ctx_dep)) -> Response:
    require(ctx, ADMIN, "manage users")
    board_ids = case_store.board_ids_of_user(ctx.db, ctx.user.id)
    listing = case_store.users_in_boards(ctx.db, board_ids)
    if wants_json(request):
        return JSONResponse({"users": [{"username": u.user.username, "role": u.user.role, "active": u.user.active,
                                        "boards": u.boards} for u in listing]})
    return page(request, "users.html", {"user": ctx.user, "csrf": ctx.csrf, "users": [u.user for u in listing],
                                        "members": {u.user.id: u.boards for u in listing}, "roles": ROLES,
                                        "boards": case_store.boards_by_id(ctx.db, board_ids)})


def _deny(ctx: Ctx, what: str, target: str) -> ForbiddenError:
    with tx(ctx.db):
        audit.record(ctx.db, "denied", ctx.user, "user", target, detail={"reason": "board", "what": what}, ip=ctx.ip)
    return ForbiddenError(f"you may {what} only within your own boards.")


@router.post("/admin/users", dependencies=[Depends(csrf_dep)], response_model=None)
def admin_add_user(request: Request, ctx: Ctx = Depends(ctx_dep), username: str = Form(..., max_length=200),
                   password: str = Form(..., max_length=1000), role: str = Form(..., max_length=40),
                   full_name: str = Form("", max_length=200), specialty: str = Form("", max_length=120),
                   boards: str = Form("", max_length=2000)) -> Response:
    """Create a user in the admin's boards; ``boards`` is comma-separated, a new name creates a board."""
    require(ctx, ADMIN, "manage users")
    board_names = [b.strip() for b in boards.split(",") if b.strip()]
    if not board_names:
        raise InvalidInputError("name at least one board for the new user (one of yours, or a new one).")
    mine = case_store.board_ids_of_user(ctx.db, ctx.user.id)
    for name in board_names:
        existing = case_store.board_by_name(ctx.db, name)
        if existing is not None and existing.id not in mine:
            raise _deny(ctx, "add users", username[:80])
    with tx(ctx.db):
        new = accounts.create_user(ctx.db, username, password, role, full_name.strip() or None,
                                   specialty.strip() or None, board_names)
        for name in board_names:  # a board the admin created here is one of the admin's boards
            accounts.add_member(ctx.db, accounts.ensure_board(ctx.db, name), ctx.user)
        audit.record(ctx.db, "user_add", ctx.user, "user", new.username, ip=ctx.ip,
                     detail={"role": role, "boards": board_names})
    if wants_json(request):
        return JSONResponse({"username": new.username, "role": new.role, "boards": board_names}, status_code=201)
    return RedirectResponse("/admin/users", status_code=303)


@router.post("/admin/users/{username}/deactivate", dependencies=[Depends(csrf_dep)], response_model=None)
def admin_deactivate(request: Request, username: str, ctx: Ctx = Depends(ctx_dep)) -> Response:
    """Disable an account and revoke its sessions at once (accounts are never deleted: audit)."""
    require(ctx, ADMIN, "manage users")
    target = case_store.user_by_name(ctx.db, username[:80])
    if target is None:
        raise NotFoundError(f"no user {username[:80]!r}.")
    if target.id == ctx.user.id:
        raise InvalidInputError("you cannot deactivate your own account; ask another administrator.")
    theirs = case_store.board_ids_of_user(ctx.db, target.id)
    if not theirs or not theirs <= case_store.board_ids_of_user(ctx.db, ctx.user.id):
        raise _deny(ctx, "deactivate users", username[:80])
    with tx(ctx.db):
        target.active = False
        n = accounts.revoke_all_sessions(ctx.db, target)
        audit.record(ctx.db, "user_deactivate", ctx.user, "user", username, ip=ctx.ip,
                     detail={"sessions_revoked": n})
    if wants_json(request):
        return JSONResponse({"username": username, "active": False, "sessions_revoked": n})
    return RedirectResponse("/admin/users", status_code=303)
