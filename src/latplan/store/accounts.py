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
import time
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from latplan.errors import InvalidInputError, LatplanError
from latplan.store.models import (
    ROLES,
    Board,
    BoardMember,
    LoginAttempt,
    LoginThrottle,
    User,
    WebSession,
    utcnow,
)
from latplan.store.passwords import MIN_PASSWORD_CHARS, check_password

__all__ = ["MIN_PASSWORD_CHARS", "AuthError", "LoginPolicy", "RateLimitedError", "authenticate", "create_user",
           "hash_password", "open_session", "reserve_attempt", "revoke_session", "session_user", "verify_password"]

_hasher = PasswordHasher()
#: a session unused for this long ends (OWASP ASVS 5 V7.3: inactivity timeout)
IDLE_TIMEOUT_S = 30 * 60
_TOUCH_EVERY_S = 60


class AuthError(LatplanError):
    """Login refused (wrong user/password, disabled account); the message never says which."""


class RateLimitedError(AuthError):
    """Too many failed logins for this user name or address: wait ``retry_after_s``."""

    def __init__(self, message: str, retry_after_s: float = 60.0) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


def hash_password(password: str) -> str:
    """The argon2id hash of a new password (refused when weak: :mod:`latplan.store.passwords`)."""
    check_password(password)
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


@dataclass(frozen=True)
class LoginPolicy:
    """Failed-login limits, one counter per account and one per address (neither resets the other).

    The first ``free_failures`` failures of a key cost nothing; after that each attempt must wait
    ``base_delay_s`` × 2^(failures − free_failures) since the last failure (capped at ``max_delay_s``):
    exponential back-off, never a permanent lock-out of the account's owner. A key's counter
    starts again after ``window_s`` without failures.
    """

    free_failures: int = 5
    window_s: int = 300
    base_delay_s: float = 15.0
    max_delay_s: float = 300.0

    def delay_s(self, failures: int) -> float:
        if failures < self.free_failures:
            return 0.0
        return min(self.max_delay_s, self.base_delay_s * 2.0 ** (failures - self.free_failures))


def throttle_keys(username: str, ip: str) -> tuple[str, str]:
    return f"user:{username.strip().lower()[:80]}", f"ip:{ip[:64]}"


def _lock_throttle(session: Session, keys: tuple[str, ...]) -> dict[str, LoginThrottle]:
    """Lock (SQLite: the write lock; PostgreSQL: the rows) and return the counters of ``keys``."""
    session.execute(update(LoginThrottle).where(LoginThrottle.key.in_(keys)).values(failures=LoginThrottle.failures))
    rows = {r.key: r for r in session.scalars(select(LoginThrottle).where(LoginThrottle.key.in_(keys))
                                               .with_for_update().execution_options(populate_existing=True))}
    for key in keys:
        if key not in rows:
            rows[key] = LoginThrottle(key=key, failures=0)
            session.add(rows[key])
    session.flush()
    return rows


def reserve_attempt(factory: sessionmaker[Session], username: str, ip: str, policy: LoginPolicy) -> None:
    """Refuse a login while its account or address is in back-off; otherwise count it as failed in advance.

    Counting before the password check, in a committed transaction of its own that holds the
    lock, makes the limit atomic: of 20 parallel attempts only ``free_failures`` get through.
    A successful login then takes its own count back (:func:`settle_success`).
    """
    for attempt in range(20):
        try:
            with factory() as s, s.begin():
                rows = _lock_throttle(s, throttle_keys(username, ip))
                now = utcnow()  # after the lock: a concurrent attempt's time is never in our future
                waits = []
                for row in rows.values():
                    if row.last_failure_at and (now - row.last_failure_at).total_seconds() > policy.window_s:
                        row.failures = 0
                    delay_s = policy.delay_s(row.failures)
                    if delay_s > 0 and row.last_failure_at:
                        ready = row.last_failure_at + dt.timedelta(seconds=delay_s)
                        if ready > now:
                            waits.append((ready - now).total_seconds())
                if waits:
                    raise RateLimitedError(
                        f"too many failed logins; wait {max(waits):.0f} s before the next attempt "
                        "(each further failure doubles the wait, up to "
                        f"{policy.max_delay_s / 60:.0f} minutes).", retry_after_s=max(waits))
                for row in rows.values():
                    row.failures += 1
                    row.last_failure_at = now
            return
        except IntegrityError:  # two first attempts created the same counter row: take it again
            time.sleep(0.01 * (attempt + 1))
    raise RateLimitedError("the login service is busy; try again in a moment.", retry_after_s=1.0)


def settle_success(session: Session, username: str, ip: str) -> None:
    """A successful login: the account's counter starts again; the address only takes back this attempt."""
    user_key, ip_key = throttle_keys(username, ip)
    rows = _lock_throttle(session, (user_key, ip_key))
    rows[user_key].failures = 0
    rows[ip_key].failures = max(0, rows[ip_key].failures - 1)


def authenticate(session: Session, username: str, password: str, ip: str) -> User:
    """Return the user if the password matches; record the attempt; raise AuthError otherwise.

    One argon2 verification on every path — unknown user (a dummy hash with the same
    parameters), deactivated account, wrong password — so the answer time does not tell them
    apart. Call :func:`reserve_attempt` first.
    """
    user = session.scalar(select(User).where(User.username == username))
    matches = verify_password(user.password_hash if user is not None else _DUMMY_HASH, password)
    ok = user is not None and matches and user.active
    session.add(LoginAttempt(username=username[:80], ip=ip[:64], success=ok))
    session.flush()
    if not ok or user is None:
        raise AuthError("user name or password is wrong (or the account is disabled).")
    settle_success(session, username, ip)
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


def session_user(session: Session, token: str | None,
                 idle_timeout_s: int = IDLE_TIMEOUT_S) -> tuple[User, WebSession] | None:
    """The user of a live session; ends (revokes) one unused for ``idle_timeout_s``.

    ``last_seen_at`` is refreshed at most once a minute; the caller commits.
    """
    if not token:
        return None
    ws = session.get(WebSession, token_digest(token))
    now = utcnow()
    if ws is None or ws.revoked_at is not None or ws.expires_at < now:
        return None
    seen = ws.last_seen_at or ws.created_at
    if (now - seen).total_seconds() > idle_timeout_s:
        ws.revoked_at = now
        return None
    user = session.get(User, ws.user_id)
    if user is None or not user.active:
        return None
    if (now - seen).total_seconds() > _TOUCH_EVERY_S:
        ws.last_seen_at = now
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
