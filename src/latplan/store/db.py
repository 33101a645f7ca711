"""Engines, sessions and migrations of the tumor-board store.

SQLite (default): WAL journal (readers never block the writer), ``synchronous=FULL`` (a
committed decision survives a power cut), ``foreign_keys=ON`` and a busy timeout, all set on
every new connection through a connect event. PostgreSQL when the URL says so
(``postgresql+psycopg://...``). Migrations (Alembic) are applied on start.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.orm import Session, sessionmaker

from latplan.errors import InvalidInputError

HEAD_REVISION = "0002_leases_audit_chain"


def make_engine(url: str, **kwargs: Any) -> Engine:
    """An engine for ``url`` with the SQLite pragmas above (no-op on PostgreSQL)."""
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://"):]
    if url.startswith("sqlite"):
        kwargs.setdefault("connect_args", {"check_same_thread": False, "timeout": 30})
        engine = create_engine(url, **kwargs)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=FULL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        return engine
    if url.startswith("postgresql"):
        kwargs.setdefault("pool_pre_ping", True)
        kwargs.setdefault("pool_size", 10)
        kwargs.setdefault("max_overflow", 20)
        return create_engine(url, **kwargs)
    raise InvalidInputError(
        f"unsupported LATPLAN_DATABASE_URL {url.split(':', 1)[0]!r}: use sqlite:///PATH or "
        "postgresql+psycopg://USER:PASSWORD@HOST:PORT/DB."
    )


def _alembic(engine: Engine, action: str, revision: str) -> None:
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(resources.files("latplan.store") / "migrations"))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        if action == "upgrade":
            command.upgrade(cfg, revision)
        else:
            command.downgrade(cfg, revision)


def migrate(engine: Engine, revision: str = "head") -> None:
    """Apply pending Alembic migrations (from an empty database up to ``revision``).

    A SQLite database file (and its WAL/SHM files) is made owner-only (0600).
    """
    _alembic(engine, "upgrade", revision)
    restrict_sqlite_file(engine)


def restrict_sqlite_file(engine: Engine) -> None:
    """chmod 0600 the SQLite file of ``engine`` and its -wal/-shm companions (no-op for PostgreSQL)."""
    if engine.dialect.name != "sqlite" or not engine.url.database or engine.url.database == ":memory:":
        return
    for suffix in ("", "-wal", "-shm"):
        path = Path(engine.url.database + suffix)
        if path.exists():
            os.chmod(path, 0o600)


def downgrade(engine: Engine, revision: str = "base") -> None:
    """Revert migrations down to ``revision`` (``base`` = empty; drops every table: tests only)."""
    _alembic(engine, "downgrade", revision)


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        try:
            return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
        except Exception:
            return None


def session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(bind=engine, expire_on_commit=False)


@contextlib.contextmanager
def transaction(factory: sessionmaker[Session]) -> Iterator[Session]:
    """One unit of work: commit on success, roll back on any exception."""
    with factory() as session, session.begin():
        yield session
