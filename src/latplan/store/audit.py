"""Append-only audit log: who viewed, uploaded, planned, decided, exported what, and when.

Only :func:`record` writes to ``audit_events`` (INSERT); there is no update or delete path in
the code, and database triggers reject UPDATE/DELETE (and TRUNCATE on PostgreSQL).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from latplan.store.models import AuditEvent, User

ACTIONS = ("login", "login_failed", "logout", "view", "upload", "upload_rejected", "plan", "planned",
           "plan_failed", "decide", "export", "user_add", "user_deactivate", "board_add", "denied")


def record(
    session: Session,
    action: str,
    user: User | None = None,
    object_type: str | None = None,
    object_id: str | int | None = None,
    detail: dict[str, Any] | None = None,
    ip: str | None = None,
    username: str | None = None,
) -> AuditEvent:
    if action not in ACTIONS:
        raise ValueError(f"unknown audit action {action!r}")
    ev = AuditEvent(
        user_id=user.id if user else None,
        username=user.username if user else username,
        action=action,
        object_type=object_type,
        object_id=None if object_id is None else str(object_id),
        detail=detail or {},
        ip=ip,
    )
    session.add(ev)
    session.flush()
    return ev


def recent(session: Session, limit: int = 500, action: str | None = None) -> list[AuditEvent]:
    q = select(AuditEvent).order_by(AuditEvent.id.desc()).limit(limit)
    if action:
        q = q.where(AuditEvent.action == action)
    return list(session.scalars(q))
