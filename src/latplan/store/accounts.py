"""Users, boards, sessions and the login rate limit.

Passwords are hashed with argon2id (argon2-cffi defaults, RFC 9106 low-memory profile);
the clear password is never stored, logged or returned. Session tokens are 256 random
bits; the database keeps only their SHA-256, so a session is revoked by a row update
and a copy of the database does not let anyone log in.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from latplan.errors import InvalidInputError, LatplanError
from latplan.store.models import ROLES, Board, BoardMember, LoginAttempt, User, WebSession, utcnow

_hasher = PasswordHasher()
MIN_PASSWORD_CHARS = 10


class AuthError(LatplanError):
    """Login refused (wrong user/password, disabled account); the message never says which."""


class RateLimitedError(AuthError):
    """Too many failed logins for this user name or address within the window."""


def hash_password(password: str) -> str:
    if len(password) < MIN_PASSWORD_CHARS:
        raise InvalidInputError(
            f"the password is too short ({len(password)} characters); use at least {MIN_PASSWORD_CHARS}."
        )
    return _hasher.hash(password)


def verify_password(stored_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(stored_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def create_user(
    session: Session,
    username: str,
    password: str,
    role: str,
    full_name: str | None = None,
    specialty: str | None = None,
    boards: list[str] | None = None,
    password_hash: str | None = None,
) -> User:
    """Add a user (and the named boards, created if absent, with the user as a member).

    ``password_hash`` (an argon2 hash made by :func:`hash_password`) replaces ``password`` when
    given: used to copy accounts between stores without ever seeing the clear password.
    """
    username = username.strip()
    if not username or len(username) > 80 or any(c.isspace() for c in username):
        raise InvalidInputError(f"user name {username!r} is not valid: 1–80 characters without spaces.")
    if role not in ROLES:
        raise InvalidInputError(f"role {role!r} is unknown; choose one of {', '.join(ROLES)}.")
    if session.scalar(select(User).where(User.username == username)) is not None:
        raise InvalidInputError(f"user {username!r} exists already; choose another name.")
    if password_hash is not None and not password_hash.startswith("$argon2"):
        raise InvalidInputError("password_hash must be an argon2 hash (made by hash_password).")
    user = User(username=username, password_hash=password_hash or hash_password(password), role=role, full_name=full_name,
                specialty=specialty, active=True)
    session.add(user)
    session.flush()
    for name in boards or []:
        add_member(session, ensure_board(session, name), user)
    return user


def ensure_board(session: Session, name: str) -> Board:
    board = session.scalar(select(Board).where(Board.name == name))
    if board is None:
        board = Board(name=name)
        session.add(board)
        session.flush()
    return board


def add_member(session: Session, board: Board, user: User) -> None:
    if session.get(BoardMember, (board.id, user.id)) is None:
        session.add(BoardMember(board_id=board.id, user_id=user.id))
        session.flush()


def board_ids_of(session: Session, user: User) -> list[int]:
    return list(session.scalars(select(BoardMember.board_id).where(BoardMember.user_id == user.id)))


def check_rate_limit(session: Session, username: str, ip: str, max_failures: int, window_s: int) -> None:
    since = utcnow() - dt.timedelta(seconds=window_s)
    for column, value in ((LoginAttempt.username, username), (LoginAttempt.ip, ip)):
        last_ok = session.scalar(
            select(func.max(LoginAttempt.at)).where(column == value, LoginAttempt.success.is_(True))
        )
        start = max(since, last_ok) if last_ok else since
        n = session.scalar(
            select(func.count()).select_from(LoginAttempt).where(
                column == value, LoginAttempt.success.is_(False), LoginAttempt.at > start
            )
        ) or 0
        if n >= max_failures:
            raise RateLimitedError(
                f"too many failed logins ({n} in the last {window_s // 60} minutes); wait a few minutes and try again."
            )


def authenticate(session: Session, username: str, password: str, ip: str, max_failures: int, window_s: int) -> User:
    """Return the user if the password matches; record the attempt; raise AuthError otherwise."""
    check_rate_limit(session, username, ip, max_failures, window_s)
    user = session.scalar(select(User).where(User.username == username))
    ok = user is not None and user.active and verify_password(user.password_hash, password)
    if user is None:
        verify_password(_DUMMY_HASH, password)  # same cost whether the user exists or not
    session.add(LoginAttempt(username=username[:80], ip=ip[:64], success=ok))
    session.flush()
    if not ok or user is None:
        raise AuthError("user name or password is wrong (or the account is disabled).")
    return user


_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def open_session(session: Session, user: User, lifetime_s: int) -> str:
    """Create a server-side session; returns the cookie token (only its hash is stored)."""
    token = secrets.token_urlsafe(32)
    now = utcnow()
    session.add(WebSession(token_sha256=token_digest(token), user_id=user.id, created_at=now,
                           expires_at=now + dt.timedelta(seconds=lifetime_s)))
    session.flush()
    return token


def session_user(session: Session, token: str | None) -> tuple[User, WebSession] | None:
    if not token:
        return None
    ws = session.get(WebSession, token_digest(token))
    if ws is None or ws.revoked_at is not None or ws.expires_at < utcnow():
        return None
    user = session.get(User, ws.user_id)
    if user is None or not user.active:
        return None
    return user, ws


def revoke_session(session: Session, token: str) -> None:
    ws = session.get(WebSession, token_digest(token))
    if ws is not None and ws.revoked_at is None:
        ws.revoked_at = utcnow()


def revoke_all_sessions(session: Session, user: User) -> int:
    rows = list(session.scalars(select(WebSession).where(WebSession.user_id == user.id, WebSession.revoked_at.is_(None))))
    for ws in rows:
        ws.revoked_at = utcnow()
    return len(rows)
