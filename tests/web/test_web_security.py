"""Security tests (issue 7, Verification → Security): CSRF, logout, rate limit, no clear passwords.

Reference: issue 7; OWASP session-management rules (token bound to the session, invalid
after logout). Each test asserts the refusal and its HTTP status.
"""

from __future__ import annotations

import logging
import re

from sqlalchemy import text
from webtest_helpers import PASSWORDS, login, upload

from latplan.store.db import make_engine


def test_web_csrf_less_post_rejected(app_client, case_zip):
    """POSTs without (or with a wrong) CSRF token are refused with 403 and change nothing."""
    csrf = login(app_client, "coord")
    r = app_client.post("/cases", files={"upload": ("c.zip", case_zip, "application/zip")},
                        data={"board_id": "1"}, headers={"accept": "application/json"})
    assert r.status_code == 403 and "CSRF" in r.json()["error"]
    r = app_client.post("/cases", files={"upload": ("c.zip", case_zip, "application/zip")},
                        data={"board_id": "1", "csrf_token": "0" * 64}, headers={"accept": "application/json"})
    assert r.status_code == 403
    assert app_client.get("/cases", headers={"accept": "application/json"}).json()["total"] == 0
    assert app_client.post("/logout", headers={"accept": "application/json"}).status_code == 403
    # login form too: no token → 403
    app_client.cookies.clear()
    r = app_client.post("/login", data={"username": "coord", "password": PASSWORDS["coord"]})
    assert r.status_code == 403
    assert csrf  # the session token exists; only its CSRF token is missing above


def test_web_session_invalid_after_logout(app_client):
    """The session cookie stops working after logout, even when replayed."""
    csrf = login(app_client, "doc")
    cookie = app_client.cookies.get("latplan_session")
    assert app_client.get("/cases", headers={"accept": "application/json"}).status_code == 200
    r = app_client.post("/logout", headers={"X-CSRF-Token": csrf}, follow_redirects=False)
    assert r.status_code == 303
    app_client.cookies.set("latplan_session", cookie)
    assert app_client.get("/cases", headers={"accept": "application/json"}).status_code == 401
    r = app_client.get("/cases", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/login"


def test_web_login_rate_limit(app_client):
    """After 5 failed logins within 5 minutes the 6th attempt is refused (429), even with the right password."""
    page = app_client.get("/login")
    token = re.search(r'name="csrf_token" value="([0-9a-f]+)"', page.text).group(1)
    for _ in range(5):
        r = app_client.post("/login", data={"username": "doc", "password": "wrong-password-x", "csrf_token": token})
        assert r.status_code == 401 and "wrong" in r.text
    r = app_client.post("/login", data={"username": "doc", "password": PASSWORDS["doc"], "csrf_token": token},
                        headers={"accept": "application/json"})
    assert r.status_code == 429 and "too many failed logins" in r.json()["error"]


def test_web_passwords_never_in_clear(app_client, settings, caplog, case_zip):
    """No clear password in any database column, the SQLite file/WAL, or the logs."""
    caplog.set_level(logging.DEBUG)
    for name in ("coord", "doc"):
        login(app_client, name)
    app_client.post("/login", data={"username": "doc", "password": "not-the-password-1"})
    eng = make_engine(settings.database_url)
    with eng.connect() as conn:
        hashes = [row[0] for row in conn.execute(text("SELECT password_hash FROM users"))]
        dumps = []
        for table in ("users", "audit_events", "login_attempts", "web_sessions"):
            dumps += [repr(tuple(row)) for row in conn.execute(text(f"SELECT * FROM {table}"))]
    eng.dispose()
    assert all(h.startswith("$argon2id$") for h in hashes)
    blob = "\n".join(dumps) + caplog.text
    if settings.database_url.startswith("sqlite"):
        db_file = settings.database_url.removeprefix("sqlite:///")
        for suffix in ("", "-wal"):
            try:
                with open(db_file + suffix, "rb") as f:
                    blob += f.read().decode("latin-1")
            except FileNotFoundError:
                pass
    for pw in (*PASSWORDS.values(), "not-the-password-1"):
        assert pw not in blob


def test_web_secret_generated_and_kept(tmp_path):
    """LATPLAN_SECRET_KEY absent → a secret is generated once into the data folder (mode 0600) and reused."""
    from latplan.store.config import StoreSettings

    s1 = StoreSettings.from_env({"LATPLAN_DATA_DIR": str(tmp_path / "d")})
    s2 = StoreSettings.from_env({"LATPLAN_DATA_DIR": str(tmp_path / "d")})
    key = tmp_path / "d" / "secret_key"
    assert s1.secret_key == s2.secret_key and len(s1.secret_key) >= 32
    assert (key.stat().st_mode & 0o777) == 0o600
    assert s1.database_url == f"sqlite:///{tmp_path / 'd' / 'latplan.db'}"


def test_web_upload_requires_login(app_client, case_zip):
    """Unauthenticated upload → 401 (not a redirect to a page that would swallow the file)."""
    r = upload(app_client, "x", case_zip)
    assert r.status_code in (401, 403)


def test_web_admin_adds_and_deactivates_users(app_client):
    """Admin creates a user on the page (argon2, board membership); deactivation ends that user's sessions."""
    csrf = login(app_client, "admin")
    r = app_client.post("/admin/users", headers={"accept": "application/json"}, data={
        "csrf_token": csrf, "username": "nina", "password": "short", "role": "physician", "boards": "Liver board"})
    assert r.status_code == 422 and "too short" in r.json()["error"]
    r = app_client.post("/admin/users", headers={"accept": "application/json"}, data={
        "csrf_token": csrf, "username": "nina", "password": "nina-pass-123456", "role": "physician",
        "specialty": "hepatology", "boards": "Liver board, Tumour board 2"})
    assert r.status_code == 201
    users = {u["username"]: u for u in app_client.get("/admin/users", headers={"accept": "application/json"}).json()["users"]}
    assert users["nina"]["boards"] == ["Liver board", "Tumour board 2"] and users["nina"]["role"] == "physician"
    nina_csrf = login(app_client, "nina", "nina-pass-123456")
    nina_cookie = app_client.cookies.get("latplan_session")
    assert nina_csrf
    csrf = login(app_client, "admin")
    r = app_client.post("/admin/users/nina/deactivate", headers={"X-CSRF-Token": csrf, "accept": "application/json"})
    assert r.json() == {"username": "nina", "active": False, "sessions_revoked": 1}
    app_client.cookies.clear()
    app_client.cookies.set("latplan_session", nina_cookie)
    assert app_client.get("/cases", headers={"accept": "application/json"}).status_code == 401
    login(app_client, "doc")
    assert app_client.get("/admin/users", headers={"accept": "application/json"}).status_code == 403
