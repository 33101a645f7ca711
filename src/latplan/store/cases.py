"""Queries of the tumor-board pages: boards, cases, meetings, jobs, users, idempotency keys.

The web routers call these and hold no SQL of their own. Board isolation lives here: a case
is visible to a user only through :func:`visible_case`, which checks the board membership.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from latplan.store.models import Board, BoardMember, CaseRecord, IdempotencyKey, Job, Meeting, User

#: the largest id a route accepts (SQLite and PostgreSQL integers are 64-bit; ids stay far below)
MAX_ID = 2**31 - 1


def boards_of(session: Session, user: User) -> list[Board]:
    return list(session.scalars(select(Board).join(BoardMember, BoardMember.board_id == Board.id)
                                .where(BoardMember.user_id == user.id).order_by(Board.name)))


def board_ids_of_user(session: Session, user_id: int) -> set[int]:
    return set(session.scalars(select(BoardMember.board_id).where(BoardMember.user_id == user_id)))


def is_member(session: Session, board_id: int, user_id: int) -> bool:
    return session.get(BoardMember, (board_id, user_id)) is not None


def visible_case(session: Session, user: User, case_id: int) -> tuple[CaseRecord | None, bool]:
    """(the case if ``user`` may see it, whether a case of that id exists at all)."""
    case = session.get(CaseRecord, case_id)
    if case is None:
        return None, False
    return (case if is_member(session, case.board_id, user.id) else None), True


@dataclass(frozen=True)
class MeetingRef:
    id: int
    date: dt.date
    title: str | None


@dataclass(frozen=True)
class CaseRow:
    """One line of the case list (plain values: no ORM object, no summary document)."""

    id: int
    patient_ref: str
    title: str | None
    status: str
    board_id: int
    order_index: int
    lesion_count: int
    meeting: MeetingRef | None


def _lesion_count(session: Session) -> Any:
    """SQL for the number of lesion ids in ``cases.summary`` (the JSON is read by the database)."""
    if session.get_bind().dialect.name == "postgresql":
        return func.json_array_length(CaseRecord.summary.op("->")("lesion_ids"))
    return func.json_array_length(CaseRecord.summary, "$.lesion_ids")


def list_cases(session: Session, board_ids: list[int], meeting_id: int | None, limit: int,
               offset: int) -> tuple[list[CaseRow], int]:
    """Cases of ``board_ids`` in meeting order (newest meeting first), and their total.

    One query of the listed columns only: the list does not load each case's summary document
    (see docs/web.md, Performance)."""
    q = (select(CaseRecord.id, CaseRecord.patient_ref, CaseRecord.title, CaseRecord.status, CaseRecord.board_id,
                CaseRecord.order_index, _lesion_count(session), Meeting.id, Meeting.date, Meeting.title)
         .outerjoin(Meeting, Meeting.id == CaseRecord.meeting_id).where(CaseRecord.board_id.in_(board_ids)))
    if meeting_id is not None:
        q = q.where(CaseRecord.meeting_id == meeting_id)
    q = q.order_by(Meeting.date.desc().nulls_last(), CaseRecord.meeting_id, CaseRecord.order_index,
                   CaseRecord.id).limit(limit).offset(offset)
    meetings: dict[int, MeetingRef] = {}
    rows = []
    for cid, ref, title, status, board_id, order, n_lesions, mid, mdate, mtitle in session.execute(q):
        meeting = None if mid is None else meetings.setdefault(mid, MeetingRef(mid, mdate, mtitle))
        rows.append(CaseRow(cid, ref, title, status, board_id, order, int(n_lesions or 0), meeting))
    total = session.scalar(select(func.count()).select_from(CaseRecord).where(CaseRecord.board_id.in_(board_ids)))
    return rows, int(total or 0)


def meeting_for(session: Session, board_id: int, day: dt.date | None) -> Meeting | None:
    """The board's meeting on ``day`` (created when absent); None without a day."""
    if day is None:
        return None
    meeting = session.scalar(select(Meeting).where(Meeting.board_id == board_id, Meeting.date == day))
    if meeting is None:
        meeting = Meeting(board_id=board_id, date=day, title=None)
        session.add(meeting)
        session.flush()
    return meeting


def add_case(session: Session, board_id: int, meeting: Meeting | None, order: int, patient_ref: str,
             title: str | None, digest: str, summary: dict[str, Any], uploaded_by: int) -> CaseRecord:
    case = CaseRecord(board_id=board_id, meeting_id=meeting.id if meeting else None, order_index=order,
                      status="uploaded", patient_ref=patient_ref, title=title, content_sha256=digest,
                      summary=summary, uploaded_by=uploaded_by)
    session.add(case)
    session.flush()
    return case


def mark_decided(session: Session, case_id: int) -> None:
    session.execute(update(CaseRecord).where(CaseRecord.id == case_id).values(status="decided"))


def job_by_key(session: Session, key: str | None) -> Job | None:
    return session.scalar(select(Job).where(Job.job_key == key)) if key else None


def shown_job(session: Session, case: CaseRecord) -> Job | None:
    """The job whose plan the case page shows: the current one when done, else the last finished one."""
    job = job_by_key(session, case.job_key)
    if job is not None and job.status == "done":
        return job
    return job_by_key(session, case.last_done_job_key)


def usernames(session: Session, ids: set[int]) -> dict[int, str]:
    if not ids:
        return {}
    return {u.id: u.username for u in session.scalars(select(User).where(User.id.in_(ids)))}


@dataclass(frozen=True)
class UserListing:
    user: User
    boards: list[str]


def users_in_boards(session: Session, board_ids: set[int]) -> list[UserListing]:
    """Users who belong to at least one of ``board_ids``, each with all their board names."""
    names = {b.id: b.name for b in session.scalars(select(Board))}
    members: dict[int, list[str]] = {}
    for m in session.scalars(select(BoardMember)):
        members.setdefault(m.user_id, []).append(names.get(m.board_id, str(m.board_id)))
    visible = set(session.scalars(select(BoardMember.user_id).where(BoardMember.board_id.in_(board_ids))))
    users = session.scalars(select(User).where(User.id.in_(visible)).order_by(User.username))
    return [UserListing(u, sorted(members.get(u.id, []))) for u in users]


def boards_by_id(session: Session, board_ids: set[int]) -> list[Board]:
    return list(session.scalars(select(Board).where(Board.id.in_(board_ids)).order_by(Board.name)))


def board_by_name(session: Session, name: str) -> Board | None:
    return session.scalar(select(Board).where(Board.name == name))


def user_by_name(session: Session, username: str) -> User | None:
    return session.scalar(select(User).where(User.username == username))


# ---------------------------------------------------------------------------- idempotency keys
@dataclass(frozen=True)
class StoredAnswer:
    """The first answer to a request with an ``Idempotency-Key`` (returned again on a repeat)."""

    status: int
    body: dict[str, Any]


def idempotent_answer(session: Session, user_id: int, scope: str, key: str | None) -> StoredAnswer | None:
    if not key:
        return None
    row = session.scalar(select(IdempotencyKey).where(IdempotencyKey.user_id == user_id,
                                                      IdempotencyKey.scope == scope, IdempotencyKey.key == key))
    if row is None:
        return None
    return StoredAnswer(int(row.response.get("status", 200)), dict(row.response.get("body") or {}))


def remember_answer(session: Session, user_id: int, scope: str, key: str | None, object_id: str,
                    status: int, body: dict[str, Any]) -> None:
    """Store the answer in the caller's transaction; a concurrent twin makes the flush raise IntegrityError."""
    if not key:
        return
    session.add(IdempotencyKey(user_id=user_id, scope=scope, key=key[:128], object_id=object_id,
                               response={"status": status, "body": body}))
    session.flush()


__all__ = ["MAX_ID", "CaseRow", "IntegrityError", "MeetingRef", "StoredAnswer", "UserListing", "add_case", "boards_of",
           "idempotent_answer", "is_member", "list_cases", "meeting_for", "remember_answer", "shown_job",
           "users_in_boards", "visible_case"]
