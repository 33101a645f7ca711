"""Store tests: migrations from empty (SQLite and PostgreSQL), SQLite pragmas, the content-addressed
file store, and the ``latplan user add`` / ``latplan serve`` commands.

Reference: issue 7 (Storage, Users and roles); SQLite documentation of ``journal_mode`` and
``synchronous`` (FULL = 2).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from sqlalchemy import inspect, text
from typer.testing import CliRunner
from webtest_helpers import LiveServer

from latplan.store.blobs import BlobStore, tree_sha256
from latplan.store.db import HEAD_REVISION, current_revision, downgrade, make_engine, migrate

TABLES = {"users", "boards", "board_members", "web_sessions", "login_attempts", "meetings", "cases", "jobs",
          "plan_options", "decisions", "audit_events"}


def test_web_migration_up_from_empty(db_url):
    """Empty database → head; running it again is a no-op; down to base and up again works."""
    eng = make_engine(db_url)
    assert current_revision(eng) is None
    migrate(eng)
    assert current_revision(eng) == HEAD_REVISION
    assert TABLES <= set(inspect(eng).get_table_names())
    migrate(eng)
    downgrade(eng, "base")
    assert not (TABLES & set(inspect(eng).get_table_names()))
    migrate(eng)
    assert current_revision(eng) == HEAD_REVISION
    eng.dispose()


def test_web_sqlite_pragmas(tmp_path):
    """Every SQLite connection runs in WAL mode with synchronous=FULL (2) and foreign keys on."""
    eng = make_engine(f"sqlite:///{tmp_path / 'p.db'}")
    with eng.connect() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert conn.execute(text("PRAGMA synchronous")).scalar() == 2
        assert conn.execute(text("PRAGMA foreign_keys")).scalar() == 1
    eng.dispose()


def test_web_blob_store_content_addressed(tmp_path):
    """Same content → same address, stored once; a different byte → a different address."""
    store = BlobStore(tmp_path / "data")
    digests = []
    for payload in (b"abc", b"abc", b"abd"):
        d = store.new_tmp_dir()
        (d / "sub").mkdir()
        (d / "sub" / "f.txt").write_bytes(payload)
        digests.append(store.put_folder(d))
    assert digests[0] == digests[1] != digests[2]
    assert len(list(store.objects.glob("*/*"))) == 2
    assert tree_sha256(store.folder_path(digests[0])) == digests[0]
    assert list(store.tmp.iterdir()) == []


def test_web_cli_user_add(tmp_path):
    """`latplan user add --password-stdin` creates the user with an argon2 hash; no password → error."""
    from latplan.cli import app

    env = {"LATPLAN_DATA_DIR": str(tmp_path / "d")}
    runner = CliRunner()
    r = runner.invoke(app, ["user", "add", "ada", "--role", "admin", "--board", "Liver board", "--password-stdin"],
                      input="correct-horse-battery\n", env=env)
    assert r.exit_code == 0, r.output
    assert "correct-horse-battery" not in r.output
    eng = make_engine(f"sqlite:///{tmp_path / 'd' / 'latplan.db'}")
    with eng.connect() as conn:
        h = conn.execute(text("SELECT password_hash FROM users WHERE username='ada'")).scalar()
    eng.dispose()
    assert h.startswith("$argon2id$")
    r = runner.invoke(app, ["user", "add", "bob", "--role", "viewer", "--password-stdin"], input="\n", env=env)
    assert r.exit_code != 0 and "no password" in str(r.exception)
    r = runner.invoke(app, ["user", "add", "eve", "--role", "wizard", "--password-stdin"], input="long-enough-pw\n", env=env)
    assert r.exit_code != 0 and "role 'wizard' is unknown" in str(r.exception)


@pytest.mark.slow  # measured ≥ 4 CPU s (tests/support/ci_schedule.py DURATIONS_S): out of `make test-fast`
def test_web_cli_serve_starts(tmp_path):
    """`latplan serve --no-worker` listens on 127.0.0.1, applies migrations and answers /healthz and /login."""
    port = LiveServer(None).port
    env = {**os.environ, "LATPLAN_DATA_DIR": str(tmp_path / "d")}
    env.pop("LATPLAN_DATABASE_URL", None)
    env.pop("LATPLAN_SECRET_KEY", None)
    proc = subprocess.Popen([sys.executable, "-c", "from latplan.cli import main; main()", "serve", "--port", str(port),
                             "--no-worker"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 180  # a start deadline, not a timing assertion
        while True:
            try:
                r = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline and proc.poll() is None, "latplan serve did not start"
                time.sleep(0.2)
        assert r.json() == {"status": "ok"}
        assert httpx.get(f"http://127.0.0.1:{port}/login").status_code == 200
        assert (Path(tmp_path / "d" / "secret_key")).exists()
        eng = make_engine(f"sqlite:///{tmp_path / 'd' / 'latplan.db'}")
        assert current_revision(eng) == HEAD_REVISION
        eng.dispose()
    finally:
        proc.terminate()
        proc.wait(15)
