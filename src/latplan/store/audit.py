"""Append-only, hash-chained audit log: who viewed, uploaded, planned, decided, exported what, and when.

Only :func:`record` writes to ``audit_events`` (INSERT); there is no update or delete path in
the code, and database triggers reject UPDATE/DELETE (and TRUNCATE on PostgreSQL).

Triggers can be dropped by whoever owns the database, so each row also carries
``row_hash`` = SHA-256(``prev_hash`` ‖ canonical JSON of the row), ``prev_hash`` being the
previous row's ``row_hash`` (the first row chains to :data:`GENESIS`), and the one-row table
``audit_head`` holds the id, hash and count of the last row. :func:`verify` recomputes the
chain: an edited row changes its hash, a deleted or reordered row breaks the link to its
neighbour, a deleted tail no longer matches the head. (Someone who can rewrite *every* row and
the head can forge a consistent chain; ``latplan audit verify`` prints the head hash so that
it can be noted outside the database — a periodic anchor — to detect that too.)

Writers are serialised by updating the head row first: on SQLite that statement takes the
write lock, on PostgreSQL the row lock, so two transactions never chain to the same row.

Group commit (:class:`GroupWriter`): an event that is the only write of its request (a page
view, a file read, a denial, a CSRF failure) does not need its own transaction. Threads that
record such events at the same moment queue them; one of them (the leader) appends the whole
queue in one transaction of its own session — one head lock and one commit (one fsync) for
the batch — and wakes the others, whose events are then committed. Every caller still
returns only after its row is durable, so no read goes unlogged; what changes is that 20
concurrent page views cost one serialised commit instead of twenty (the head lock was held
across each commit, and page views queued behind each other's fsync: ``docs/web.md``,
Performance).
"""

from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import dataclass, field
from typing import Any, cast

from sqlalchemy import CursorResult, func, select, update
from sqlalchemy.orm import Session

from latplan.errors import LatplanError
from latplan.store.models import AuditEvent, AuditHead, User, utcnow

ACTIONS = ("login", "login_failed", "logout", "view", "read", "upload", "upload_rejected", "plan", "planned",
           "plan_failed", "decide", "export", "export_failed", "user_add", "user_deactivate", "board_add",
           "denied", "csrf_failed", "audit_read")

#: ``prev_hash`` of the first row
GENESIS = "0" * 64


def _canonical(ev: AuditEvent) -> bytes:
    at = ev.at.isoformat(timespec="microseconds")
    body = {"id": ev.id, "at": at, "user_id": ev.user_id, "username": ev.username, "action": ev.action,
            "object_type": ev.object_type, "object_id": ev.object_id, "detail": ev.detail, "ip": ev.ip}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), default=str).encode()


def chain_hash(prev_hash: str, ev: AuditEvent) -> str:
    """The row hash of ``ev`` chained to ``prev_hash``."""
    return hashlib.sha256(prev_hash.encode() + b"\n" + _canonical(ev)).hexdigest()


def _lock_head(session: Session) -> AuditHead:
    res = cast(CursorResult[Any], session.execute(update(AuditHead).where(AuditHead.id == 1)
                                                  .values(count=AuditHead.count)))
    if not res.rowcount:
        session.add(AuditHead(id=1, last_id=0, last_hash=GENESIS, count=0))
        session.flush()
    head = session.execute(select(AuditHead).where(AuditHead.id == 1).execution_options(populate_existing=True)
                           ).scalar_one()
    return head


@dataclass(frozen=True)
class EventFields:
    """What a caller says about one event (the id, time and hashes are set when it is appended)."""

    action: str
    user_id: int | None
    username: str | None
    object_type: str | None
    object_id: str | None
    detail: dict[str, Any]
    ip: str | None


def event_fields(
    action: str,
    user: User | None = None,
    object_type: str | None = None,
    object_id: str | int | None = None,
    detail: dict[str, Any] | None = None,
    ip: str | None = None,
    username: str | None = None,
) -> EventFields:
    """Check and normalise one event's fields (unknown actions are refused)."""
    if action not in ACTIONS:
        raise ValueError(f"unknown audit action {action!r}")
    return EventFields(action=action, user_id=user.id if user else None,
                       username=(user.username if user else username), object_type=object_type,
                       object_id=None if object_id is None else str(object_id)[:120],
                       detail=json.loads(json.dumps(detail or {}, default=str)), ip=ip)


def append(session: Session, entries: list[EventFields]) -> list[AuditEvent]:
    """Append ``entries`` in order, chained to the last row, inside the caller's transaction."""
    head = _lock_head(session)
    last_id, last_hash = head.last_id, head.last_hash
    events = []
    for f in entries:
        ev = AuditEvent(
            id=last_id + 1,  # explicit: the head lock makes ids and links one sequence
            at=utcnow(), user_id=f.user_id, username=f.username, action=f.action, object_type=f.object_type,
            object_id=f.object_id, detail=f.detail, ip=f.ip, prev_hash=last_hash,
        )
        ev.row_hash = chain_hash(last_hash, ev)
        last_id, last_hash = ev.id, ev.row_hash
        events.append(ev)
    session.add_all(events)
    head.last_id, head.last_hash, head.count = last_id, last_hash, head.count + len(events)
    session.flush()
    return events


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
    """Append one event, chained to the last one (inside the caller's transaction)."""
    return append(session, [event_fields(action, user, object_type, object_id, detail, ip, username)])[0]


class AuditWriteError(LatplanError, RuntimeError):
    """The batch holding this event could not be written (the database error is its cause)."""


class _Slot:
    __slots__ = ("done", "error", "event_id", "fields", "lead")

    def __init__(self, fields: EventFields) -> None:
        self.fields = fields
        self.done = threading.Event()
        self.lead = False
        self.error: BaseException | None = None
        self.event_id = 0


class GroupWriter:
    """Group commit of standalone events (see the module docstring): one per web process.

    :meth:`record` returns the event's id once the transaction holding it has committed. The
    caller's ``session`` must have nothing uncommitted that it would not commit anyway: when
    the calling thread leads a batch, the batch is written and committed in that session.
    """

    def __init__(self, max_batch: int = 256) -> None:
        self.max_batch = max_batch
        self._mutex = threading.Lock()
        self._pending: list[_Slot] = []
        self._writing = False

    def record(
        self,
        session: Session,
        action: str,
        user: User | None = None,
        object_type: str | None = None,
        object_id: str | int | None = None,
        detail: dict[str, Any] | None = None,
        ip: str | None = None,
        username: str | None = None,
    ) -> int:
        slot = _Slot(event_fields(action, user, object_type, object_id, detail, ip, username))
        with self._mutex:
            self._pending.append(slot)
            slot.lead = not self._writing
            self._writing = True
        if not slot.lead:
            slot.done.wait()  # set when another thread committed this event, or handed over the lead
        if slot.lead:
            self._lead(session, slot)
        if slot.error is not None:
            raise AuditWriteError(f"the audit event {action!r} could not be written") from slot.error
        return slot.event_id

    def _lead(self, session: Session, mine: _Slot) -> None:
        """Write one batch (which holds ``mine``: it is first in the queue), then hand over the lead."""
        with self._mutex:
            batch, self._pending = self._pending[:self.max_batch], self._pending[self.max_batch:]
        try:
            try:
                events = append(session, [s.fields for s in batch])
                session.commit()
            except BaseException:
                session.rollback()
                raise
            for s, ev in zip(batch, events, strict=True):
                s.event_id = ev.id
        except BaseException as exc:  # every waiter of the batch learns of it; the caller re-raises
            for s in batch:
                s.error = exc
        finally:
            with self._mutex:
                if self._pending:
                    nxt = self._pending[0]
                    nxt.lead = True
                    nxt.done.set()
                else:
                    self._writing = False
            for s in batch:
                if s is not mine:
                    s.done.set()


def recent(session: Session, limit: int = 500, action: str | None = None,
           user_ids: set[int] | None = None) -> list[AuditEvent]:
    """The newest events (``user_ids``: only events of these users, plus those of no user)."""
    q = select(AuditEvent).order_by(AuditEvent.id.desc()).limit(limit)
    if action:
        q = q.where(AuditEvent.action == action)
    if user_ids is not None:
        q = q.where(AuditEvent.user_id.in_(user_ids) | AuditEvent.user_id.is_(None))
    return list(session.scalars(q))


@dataclass
class ChainReport:
    """What :func:`verify` found: rows checked, the head hash, and every break (empty = intact)."""

    rows: int
    head_hash: str
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def verify(session: Session, batch: int = 5000) -> ChainReport:
    """Recompute the chain over all rows in id order and compare it with the head row."""
    problems: list[str] = []
    prev, n, last_id = GENESIS, 0, 0
    while True:
        rows = list(session.scalars(select(AuditEvent).where(AuditEvent.id > last_id)
                                    .order_by(AuditEvent.id).limit(batch)))
        if not rows:
            break
        for ev in rows:
            n += 1
            if ev.prev_hash != prev:
                problems.append(f"event {ev.id} ({ev.action}): it does not follow the previous row "
                                "(a row before it was deleted, inserted or reordered)")
            if ev.row_hash != chain_hash(ev.prev_hash or "", ev):
                problems.append(f"event {ev.id} ({ev.action}): its content does not match its hash (edited)")
            prev = ev.row_hash or ""
            last_id = ev.id
    head = session.get(AuditHead, 1)
    total = session.scalar(select(func.count()).select_from(AuditEvent)) or 0
    if head is None:
        if total:
            problems.append("the audit head row is missing")
    else:
        if head.last_hash != prev or head.last_id != last_id:
            problems.append(f"the last row is event {last_id}, but the head records event {head.last_id}: "
                            "rows at the end were deleted or added outside latplan")
        if head.count != n:
            problems.append(f"the head counts {head.count} events, the table holds {n}")
    return ChainReport(rows=n, head_hash=prev, problems=problems)


def backfill(session: Session) -> int:
    """Chain rows that have no hash yet (rows written before the chain existed); returns how many."""
    prev = GENESIS
    n = 0
    for ev in session.scalars(select(AuditEvent).order_by(AuditEvent.id)):
        ev.prev_hash = prev
        ev.row_hash = chain_hash(prev, ev)
        prev = ev.row_hash
        n += 1
    last = session.scalar(select(func.max(AuditEvent.id))) or 0
    session.merge(AuditHead(id=1, last_id=last, last_hash=prev, count=n))
    session.flush()
    return n

