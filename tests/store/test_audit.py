"""The audit log is a hash chain: ``latplan audit verify`` detects edits, deletions and reordering.

Reference: issue [N] "Roles and audit" (each row holds the hash of the previous one); the
attack of the issue — drop the append-only trigger, change rows, recreate the trigger — is
replayed on SQLite and PostgreSQL. The hash is recomputed independently here with hashlib
from the row's canonical JSON (the construction documented in ``latplan.store.audit``).
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Callable, Iterator

import pytest
from sqlalchemy import Engine, text
from typer.testing import CliRunner

from latplan.store import audit
from latplan.store.db import make_engine, migrate, session_factory, transaction


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    eng = make_engine(db_url)
    migrate(eng)
    with transaction(session_factory(eng)) as s:
        for n in range(6):
            audit.record(s, "view", username=f"u{n}", object_type="case", object_id=n, detail={"n": n, "x": 0.5})
    yield eng
    eng.dispose()


def _tamper(eng: Engine, sql: str) -> None:
    dialect = eng.dialect.name
    with eng.begin() as conn:
        if dialect == "sqlite":
            conn.execute(text("DROP TRIGGER audit_events_no_update"))
            conn.execute(text("DROP TRIGGER audit_events_no_delete"))
        else:
            conn.execute(text("ALTER TABLE audit_events DISABLE TRIGGER USER"))
        conn.execute(text(sql))
        if dialect != "sqlite":
            conn.execute(text("ALTER TABLE audit_events ENABLE TRIGGER USER"))


def _verify(eng: Engine) -> audit.ChainReport:
    with session_factory(eng)() as s:
        return audit.verify(s)


def _in_threads(fn: Callable[[int], None], n: int) -> list[BaseException]:
    """Run ``fn(0) … fn(n - 1)`` in ``n`` threads started together (each joined within 60 s); the exceptions raised."""
    errors: list[BaseException] = []

    def run(k: int) -> None:
        try:
            fn(k)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(k,)) for k in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return errors


def test_intact_chain_verifies_and_matches_an_independent_hash(engine):
    report = _verify(engine)
    assert report.ok and report.rows == 6
    with session_factory(engine)() as s:
        rows = list(s.scalars(audit.select(audit.AuditEvent).order_by(audit.AuditEvent.id)))
    prev = "0" * 64
    for ev in rows:
        body = {"id": ev.id, "at": ev.at.isoformat(timespec="microseconds"), "user_id": ev.user_id,
                "username": ev.username, "action": ev.action, "object_type": ev.object_type,
                "object_id": ev.object_id, "detail": ev.detail, "ip": ev.ip}
        want = hashlib.sha256(prev.encode() + b"\n" + json.dumps(body, sort_keys=True, separators=(",", ":")).encode())
        assert ev.prev_hash == prev and ev.row_hash == want.hexdigest()
        prev = ev.row_hash
    assert report.head_hash == prev


@pytest.mark.parametrize(("what", "sql", "words"), [
    ("edit", "UPDATE audit_events SET username = 'someone-else' WHERE id = 3", "edited"),
    ("delete in the middle", "DELETE FROM audit_events WHERE id = 3", "does not follow"),
    ("delete the tail", "DELETE FROM audit_events WHERE id = 6", "rows at the end"),
    ("reorder", "UPDATE audit_events SET id = CASE id WHEN 2 THEN 1002 WHEN 4 THEN 2 ELSE id END "
                "WHERE id IN (2, 4)", "does not follow"),
])
def test_tampering_is_detected(engine, what, sql, words):
    """Edit, deletion (middle and tail) and reordering each break the chain (both databases)."""
    _tamper(engine, sql)
    report = _verify(engine)
    assert not report.ok, what
    assert any(words in p for p in report.problems), (what, report.problems)


def test_cli_audit_verify(tmp_path):
    """`latplan audit verify` exits 0 on an intact log and 1, naming the row, after an edit."""
    from latplan.cli import app

    data = tmp_path / "d"
    env = {"LATPLAN_DATA_DIR": str(data)}
    data.mkdir()
    eng = make_engine(f"sqlite:///{data / 'latplan.db'}")
    migrate(eng)
    with transaction(session_factory(eng)) as s:
        audit.record(s, "login", username="a")
        audit.record(s, "view", username="a", object_type="case", object_id=1)
    runner = CliRunner()
    r = runner.invoke(app, ["audit", "verify"], env=env)
    assert r.exit_code == 0 and "intact: 2 events" in r.output, r.output
    _tamper(eng, "UPDATE audit_events SET action = 'logout' WHERE id = 1")
    eng.dispose()
    r = runner.invoke(app, ["audit", "verify"], env=env)
    assert r.exit_code == 1 and "event 1" in r.output, r.output


def test_concurrent_writers_keep_one_chain(db_url):
    """20 threads appending at once: one unbroken chain of 20 rows (the head row serialises writers)."""
    eng = make_engine(db_url)
    migrate(eng)
    factory = session_factory(eng)

    def write(n: int) -> None:
        with transaction(factory) as s:
            audit.record(s, "view", username=f"t{n}")

    assert _in_threads(write, 20) == []
    report = _verify(eng)
    eng.dispose()
    assert report.ok and report.rows == 20


def test_group_commit_writes_one_chain_in_few_transactions(db_url, monkeypatch):
    """20 threads recording through one GroupWriter (as 20 page views at once): each gets its own
    committed row, the chain verifies, and the 19 that queued behind the first share one commit.

    Reference: the chain construction of ``latplan.store.audit`` (checked by ``verify`` and, in
    the first test above, by an independent hashlib recomputation); the batching is forced by
    holding the first writer inside its transaction until the other 19 have queued.
    """
    import time

    from sqlalchemy import event

    eng = make_engine(db_url)
    migrate(eng)
    factory = session_factory(eng)
    writer = audit.GroupWriter()
    commits: list[int] = []
    event.listen(eng, "commit", lambda conn: commits.append(1))
    release = threading.Event()
    real_append = audit.append

    def held_append(session, entries):
        if not release.is_set():
            deadline = time.monotonic() + 30
            while len(writer._pending) < 19 and time.monotonic() < deadline:
                time.sleep(0.01)
            release.set()
        return real_append(session, entries)

    monkeypatch.setattr(audit, "append", held_append)
    ids: list[int] = []

    def view(n: int) -> None:
        with factory() as s:
            ids.append(writer.record(s, "view", username=f"t{n}", object_type="case", object_id=n))

    errors = _in_threads(view, 20)
    report = _verify(eng)
    with factory() as s:
        stored = {(e.id, e.username) for e in s.scalars(audit.select(audit.AuditEvent))}
    eng.dispose()
    assert errors == []
    assert report.ok and report.rows == 20
    assert sorted(ids) == sorted(i for i, _ in stored) and len(set(ids)) == 20
    assert len(commits) == 2  # the first view alone, then the 19 that queued meanwhile


def test_group_commit_failure_reaches_every_caller_and_leaves_the_chain_intact(db_url, monkeypatch):
    """A batch that cannot be written raises AuditWriteError in its caller (the page is not shown
    unlogged), nothing of it is stored, and the next event chains to the last stored row."""
    eng = make_engine(db_url)
    migrate(eng)
    factory = session_factory(eng)
    writer = audit.GroupWriter()
    with factory() as s:
        writer.record(s, "view", username="before")
    real_append = audit.append

    def broken(session, entries):
        real_append(session, entries)
        raise RuntimeError("disk full")

    monkeypatch.setattr(audit, "append", broken)
    with factory() as s, pytest.raises(audit.AuditWriteError):
        writer.record(s, "view", username="lost")
    monkeypatch.setattr(audit, "append", real_append)
    with factory() as s:
        writer.record(s, "view", username="after")
    report = _verify(eng)
    with factory() as s:
        names = [e.username for e in s.scalars(audit.select(audit.AuditEvent).order_by(audit.AuditEvent.id))]
    eng.dispose()
    assert report.ok and report.rows == 2
    assert names == ["before", "after"]
