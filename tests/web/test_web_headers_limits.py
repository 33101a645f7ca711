"""Headers, cookies, idle sessions, body limits before login, huge numbers, file modes.

References: issue [N] Medium (body limit) and Low findings; OWASP ASVS 5 V3.4 (security headers:
nosniff, X-Frame-Options / frame-ancestors, HSTS), V7.3 (inactivity timeout), V3.3 (``__Host-``
cookies, RFC 6265bis §4.1.3.2), V14.3 (``Cache-Control: no-store`` on sensitive data).
"""

from __future__ import annotations

import datetime as dt
import stat

from fastapi.testclient import TestClient
from sqlalchemy import update
from webtest_helpers import login, make_settings, seed_users, upload

from latplan.store.db import make_engine, session_factory, transaction
from latplan.store.models import WebSession

J = {"accept": "application/json"}


def test_security_headers_everywhere(sqlite_client, case_zip):
    """nosniff + X-Frame-Options DENY on every response, frame-ancestors 'none' on pages,
    no-store on patient responses; only the report frame may be framed, by this site."""
    csrf = login(sqlite_client, "coord")
    case_id = upload(sqlite_client, csrf, case_zip).json()["id"]
    for path in ("/login", "/cases", f"/cases/{case_id}", f"/cases/{case_id}/job", "/nowhere", "/healthz"):
        r = sqlite_client.get(path)
        assert r.headers["x-content-type-options"] == "nosniff", path
        assert r.headers["x-frame-options"] == "DENY", path
        assert r.headers["cache-control"] == "no-store", path
    page = sqlite_client.get(f"/cases/{case_id}")
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    assert "strict-transport-security" not in page.headers  # plain HTTP: no HSTS
    assert sqlite_client.get(f"/cases/{case_id}/report").headers["x-frame-options"] in ("SAMEORIGIN", "DENY")


def test_https_hsts_and_host_prefixed_cookies(sqlite_settings):
    """Over HTTPS: HSTS, and the session cookie is __Host-latplan_session (Secure, Path=/, no Domain)."""
    from latplan.web.app import create_app

    seed_users(sqlite_settings)
    with TestClient(create_app(sqlite_settings), base_url="https://127.0.0.1") as client:
        page = client.get("/login")
        assert page.headers["strict-transport-security"].startswith("max-age=")
        import re

        token = re.search(r'name="csrf_token" value="([0-9a-f]+)"', page.text).group(1)
        r = client.post("/login", data={"username": "doc", "password": "doctor-pass-123456", "csrf_token": token},
                        follow_redirects=False)
        assert r.status_code == 303, r.text
        cookie = next(v for k, v in r.headers.multi_items() if k == "set-cookie" and "latplan_session" in v)
        assert cookie.startswith("__Host-latplan_session=") and "Secure" in cookie and "Path=/" in cookie
        assert "Domain" not in cookie
        assert client.get("/cases", headers=J).status_code == 200


def test_idle_session_ends(sqlite_client, sqlite_settings):
    """A session unused for longer than the idle timeout is refused (and revoked)."""
    login(sqlite_client, "doc")
    assert sqlite_client.get("/cases", headers=J).status_code == 200
    eng = make_engine(sqlite_settings.database_url)
    with transaction(session_factory(eng)) as s:
        s.execute(update(WebSession).values(last_seen_at=dt.datetime(2000, 1, 1), created_at=dt.datetime(2000, 1, 1),
                                            expires_at=dt.datetime(2999, 1, 1)))
    eng.dispose()
    assert sqlite_client.get("/cases", headers=J).status_code == 401


def test_small_body_limit_before_authentication(tmp_path):
    """Anonymous bodies above 1 MiB are refused with 413 on every route; the large limit applies only to
    the upload of a logged-in user who may upload (before: 1 GiB read on any route)."""
    from latplan.web.app import create_app

    settings = make_settings(f"sqlite:///{tmp_path / 'b.db'}", tmp_path / "data", max_upload_bytes=8_000_000)
    seed_users(settings)
    with TestClient(create_app(settings), base_url="http://127.0.0.1") as client:
        big = bytes(2_000_000)
        for path in ("/login", "/cases", "/logout", "/cases/1/plan"):
            assert client.post(path, content=big, headers={"content-type": "application/octet-stream"}
                               ).status_code == 413, path
        csrf = login(client, "view")  # logged in, but a viewer may not upload: still the small limit
        assert upload(client, csrf, big).status_code == 413
        csrf = login(client, "coord")
        r = upload(client, csrf, big)
        assert r.status_code == 422  # read and judged (not a zip), not refused by size
        assert upload(client, csrf, bytes(9_500_000)).status_code == 413


def test_huge_numbers_are_4xx(sqlite_client):
    """Ids and paging numbers beyond 64 bits → 422 (before: OverflowError → 500)."""
    csrf = login(sqlite_client, "coord")
    huge = "9" * 40
    for path in (f"/cases/{huge}", f"/cases/{huge}/job", f"/cases/{huge}/report", f"/cases/{huge}/viewer/index.json",
                 f"/cases/{huge}/export.json", f"/cases?limit={huge}", f"/cases?offset={huge}",
                 f"/cases?meeting={huge}", "/cases/-1"):
        r = sqlite_client.get(path, headers=J)
        assert 400 <= r.status_code < 500, (path, r.status_code)
    r = sqlite_client.post(f"/cases/{huge}/plan", headers={"X-CSRF-Token": csrf, **J})
    assert 400 <= r.status_code < 500
    r = sqlite_client.post("/cases", files={"upload": ("c.zip", b"x", "application/zip")},
                           data={"board_id": huge, "order": huge, "csrf_token": csrf}, headers=J)
    assert r.status_code == 422 and "Traceback" not in r.text


def test_data_files_owner_only(sqlite_client, sqlite_settings, case_zip):
    """Database, stored case files and the data folder are 0600/0700 even under umask 022."""
    import os

    old = os.umask(0o022)
    try:
        csrf = login(sqlite_client, "coord")
        assert upload(sqlite_client, csrf, case_zip).status_code == 201
    finally:
        os.umask(old)
    data = sqlite_settings.data_dir
    for folder in (data, data / "objects", data / "tmp", data / "results"):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700, folder
    stored = [p for p in (data / "objects").rglob("*")]
    assert stored
    for p in stored:
        assert stat.S_IMODE(p.stat().st_mode) == (0o700 if p.is_dir() else 0o600), p
    db_file = sqlite_settings.database_url.removeprefix("sqlite:///")
    assert stat.S_IMODE(os.stat(db_file).st_mode) == 0o600
