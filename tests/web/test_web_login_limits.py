"""Login limits per account and per address, atomic, with back-off; uniform work; no proxy trust.

References: issue [N] Medium (login); OWASP ASVS 5 V6.3 (brute-force defences: limits per
account that an attacker cannot reset, no easy lock-out of the owner), OWASP Authentication
Cheat Sheet ("Login Throttling"; "the application should respond with a generic error message
… and should take the same time"). Uniform timing is checked structurally — one argon2
verification on every path, with a hash of the production parameters — not with a stopwatch.
"""

from __future__ import annotations

import re
import threading

import httpx
import pytest
from sqlalchemy import select
from webtest_helpers import PASSWORDS, LiveServer, http_login, login, make_settings, seed_users

from latplan.store import accounts
from latplan.store.db import make_engine, session_factory, transaction
from latplan.store.models import AuditEvent


def _token(client) -> str:
    page = client.get("/login")
    return re.search(r'name="csrf_token" value="([0-9a-f]+)"', page.text).group(1)


def _post(client, token, user, password):
    return client.post("/login", data={"username": user, "password": password, "csrf_token": token},
                       headers={"accept": "application/json"}, follow_redirects=False)


def test_success_on_another_account_does_not_reset_the_address_limit(app_client):
    """4 failures on 'doc', a success on 'coord' from the same address, 1 more failure on 'doc':
    the next attempt on 'doc' is refused (before: the success reset the count, guessing went on)."""
    token = _token(app_client)
    for _ in range(4):
        assert _post(app_client, token, "doc", "wrong-password-x").status_code == 401
    assert _post(app_client, token, "coord", PASSWORDS["coord"]).status_code == 200
    app_client.cookies.clear()
    token = _token(app_client)
    assert _post(app_client, token, "doc", "wrong-password-x").status_code == 401
    r = _post(app_client, token, "doc", "wrong-password-x")
    assert r.status_code == 429 and "too many failed logins" in r.json()["error"]
    assert int(r.headers["retry-after"]) >= 1


def test_backoff_not_lockout(sqlite_settings):
    """The wait doubles per failure beyond the free ones and is capped: the owner is delayed, never locked out."""
    policy = accounts.LoginPolicy(free_failures=5, base_delay_s=15.0, max_delay_s=300.0)
    assert [policy.delay_s(n) for n in (4, 5, 6, 7, 8)] == [0.0, 15.0, 30.0, 60.0, 120.0]
    assert policy.delay_s(40) == 300.0


def test_backoff_expires_and_owner_logs_in(sqlite_settings):
    """Once the back-off has passed, the right password works (no permanent lock)."""
    import datetime as dt

    from latplan.store.models import LoginThrottle

    seed_users(sqlite_settings)
    eng = make_engine(sqlite_settings.database_url)
    factory = session_factory(eng)
    policy = accounts.LoginPolicy(free_failures=2, base_delay_s=15.0)
    for _ in range(2):
        accounts.reserve_attempt(factory, "doc", "10.0.0.1", policy)
    with pytest.raises(accounts.RateLimitedError):
        accounts.reserve_attempt(factory, "doc", "10.0.0.1", policy)
    with transaction(factory) as s:  # 16 s later
        for row in s.scalars(select(LoginThrottle)):
            row.last_failure_at -= dt.timedelta(seconds=16)
    accounts.reserve_attempt(factory, "doc", "10.0.0.1", policy)
    with transaction(factory) as s:
        assert accounts.authenticate(s, "doc", PASSWORDS["doc"], "10.0.0.1").username == "doc"
    eng.dispose()


def test_parallel_attempts_counted_atomically(settings):
    """20 parallel wrong logins against a limit of 5: exactly 5 are checked, 15 refused (before: 9 checked).
    SQLite and PostgreSQL."""
    seed_users(settings)
    eng = make_engine(settings.database_url)
    factory = session_factory(eng)
    policy = accounts.LoginPolicy(free_failures=5)
    results: list[str] = []
    lock = threading.Lock()
    barrier = threading.Barrier(20)

    def attempt() -> None:
        barrier.wait()
        try:
            accounts.reserve_attempt(factory, "doc", "10.9.9.9", policy)
            outcome = "checked"
        except accounts.RateLimitedError:
            outcome = "refused"
        with lock:
            results.append(outcome)

    threads = [threading.Thread(target=attempt) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    eng.dispose()
    assert sorted(results).count("checked") == 5 and results.count("refused") == 15


def test_one_verification_on_every_path(sqlite_settings, monkeypatch):
    """Unknown user, deactivated account and wrong password each run exactly one argon2 verification
    with the production cost (before: a deactivated account skipped it, answering 25× faster)."""
    seed_users(sqlite_settings)
    eng = make_engine(sqlite_settings.database_url)
    factory = session_factory(eng)
    with transaction(factory) as s:
        accounts.create_user(s, "dora", "deactivated-account-pw", "physician", boards=["Liver board"])
        accounts.create_user(s, "wendy", "wrong-password-owner", "physician", boards=["Liver board"])
        s.scalar(select(accounts.User).where(accounts.User.username == "dora")).active = False
    calls: list[str] = []
    real = accounts.verify_password

    def counting(stored_hash: str, password: str) -> bool:
        calls.append(stored_hash.split("$")[3])  # the argon2 parameters m=…,t=…,p=…
        return real(stored_hash, password)

    monkeypatch.setattr(accounts, "verify_password", counting)
    for name, pw in (("nobody-here", "some-password-1"), ("dora", "deactivated-account-pw"),
                     ("wendy", "not-wendys-password")):
        calls.clear()
        with transaction(factory) as s, pytest.raises(accounts.AuthError):
            accounts.authenticate(s, name, pw, "10.1.1.1")
        assert len(calls) == 1, name
        assert calls[0] == accounts._hasher.hash("x" * 12).split("$")[3], name
    eng.dispose()


def test_forwarded_for_not_trusted_by_default(tmp_path):
    """X-Forwarded-For from 127.0.0.1 does not change the address the audit log and limits see,
    unless --forwarded-allow-ips names the proxy (before: uvicorn trusted 127.0.0.1)."""
    import time

    import uvicorn

    from latplan.web.app import create_app
    from latplan.web.server import server_config

    for allow, expected in (("", "127.0.0.1"), ("127.0.0.1", "203.0.113.7")):
        settings = make_settings(f"sqlite:///{tmp_path / f'f{bool(allow)}.db'}", tmp_path / f"d{bool(allow)}")
        seed_users(settings)
        srv = LiveServer(None)
        server = uvicorn.Server(server_config(create_app(settings), "127.0.0.1", srv.port, allow))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        while not server.started:
            time.sleep(0.05)
        try:
            with httpx.Client(base_url=srv.url, headers={"X-Forwarded-For": "203.0.113.7"}) as c:
                http_login(c, "doc")
        finally:
            server.should_exit = True
            thread.join(15)
        eng = make_engine(settings.database_url)
        with session_factory(eng)() as s:
            ev = s.scalar(select(AuditEvent).where(AuditEvent.action == "login"))
        eng.dispose()
        assert ev.ip == expected, (allow, ev.ip)


def test_rate_limit_test_helper_still_logs_in(app_client):
    """The ordinary login keeps working (the limit counts failures only)."""
    for _ in range(8):
        assert login(app_client, "doc")
