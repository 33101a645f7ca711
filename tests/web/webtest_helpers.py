"""Helpers of the web tests (imported by conftest.py and the test modules; unique module name)."""

from __future__ import annotations

import io
import os
import re
import zipfile
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text

from latplan.case import Case, Patient
from latplan.imaging.case_folder import label_table_from_names
from latplan.imaging.volume import Volume
from latplan.store import accounts
from latplan.store.config import MIB, StoreSettings
from latplan.store.db import make_engine, migrate, session_factory, transaction

PG_ENV = "LATPLAN_TEST_POSTGRES_URL"
USERS = (
    ("admin", "admin", "Ada Admin", None, "Liver board"),
    ("coord", "coordinator", "Cora Coord", "coordination", "Liver board"),
    ("doc", "physician", "Dr Doc", "interventional radiology", "Liver board"),
    ("phys", "physicist", "Phil Phys", "medical physics", "Liver board"),
    ("view", "viewer", "Val View", None, "Liver board"),
    ("outsider", "physician", "Otto Out", "surgery", "Other board"),
)
_HASHES: dict[str, str] = {}


def _hash(name: str) -> str:
    """A cheap argon2id hash of the test user's password (the production cost, ≈0.5 s per hash and
    per login on 2 cores, would cost the suite a minute). argon2 verification reads its parameters
    from the hash, so logins of these users are fast while the app's code path is unchanged."""
    if name not in _HASHES:
        from argon2 import PasswordHasher

        _HASHES[name] = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1).hash(PASSWORDS[name])
    return _HASHES[name]


PASSWORDS = {
    "admin": "admin-pass-123456",
    "coord": "coord-pass-123456",
    "doc": "doctor-pass-123456",
    "phys": "physicist-pass-123456",
    "view": "viewer-pass-123456",
    "outsider": "outsider-pass-123456",
}


def postgres_url() -> str:
    url = os.environ.get(PG_ENV)
    if not url:
        msg = (f"{PG_ENV} is not set: start a local PostgreSQL with `source .ci/services.sh` to run the "
               "PostgreSQL variants of the store/API tests.")
        if os.environ.get("CI") == "true":
            pytest.fail(msg + " CI=true, so this is a failure, not a skip.")
        pytest.skip(msg)
    return _worker_database(url)


def _worker_database(url: str) -> str:
    """One database per pytest-xdist worker: each PostgreSQL test drops and re-creates the ``public``
    schema, so two workers sharing a database would delete each other's tables mid-test."""
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if not worker:
        return url
    base, _, name = url.rpartition("/")
    db = f"{name}_{worker}"
    eng = create_engine(f"{base}/postgres", isolation_level="AUTOCOMMIT")
    with eng.connect() as conn:
        if conn.execute(text("SELECT 1 FROM pg_database WHERE datname = :d"), {"d": db}).first() is None:
            conn.execute(text(f'CREATE DATABASE "{db}"'))
    eng.dispose()
    return f"{base}/{db}"


def reset_postgres(url: str) -> None:
    eng = create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1) if url.startswith("postgresql://") else url)
    with eng.begin() as conn:
        conn.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))
    eng.dispose()


#: the database backends of the ``db_url`` fixtures (tests/web/conftest.py, tests/store/conftest.py)
DB_BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


def empty_db_url(backend: str, sqlite_file: Path) -> str:
    """The URL of an EMPTY database: the SQLite file ``sqlite_file``, or a fresh schema on the test PostgreSQL."""
    if backend == "sqlite":
        return f"sqlite:///{sqlite_file}"
    url = postgres_url()
    reset_postgres(url)
    return url


def make_settings(db_url: str, data_dir: Path, **kw: object) -> StoreSettings:
    base: dict[str, object] = {
        "database_url": db_url, "data_dir": data_dir, "secret_key": "test-secret-" + "x" * 40,
        "start_worker": False, "planner": "latplan.web.fake_planner:fake_planner",
        "max_upload_bytes": 64 * MIB, "max_uncompressed_bytes": 256 * MIB, "max_zip_entries": 2000,
        "parse_timeout_s": 60.0, "parse_memory_bytes": 3072 * MIB, "worker_poll_s": 0.2,
    }
    base.update(kw)
    data_dir.mkdir(parents=True, exist_ok=True)
    return StoreSettings(**base)  # type: ignore[arg-type]


def seed_users(settings: StoreSettings) -> None:
    engine = make_engine(settings.database_url)
    migrate(engine)
    with transaction(session_factory(engine)) as s:
        for name, role, full, spec, board in USERS:
            accounts.create_user(s, name, PASSWORDS[name], role, full, spec, [board], password_hash=_hash(name))
    engine.dispose()


def login(client: TestClient, username: str, password: str | None = None) -> str:
    """Log in through the form (CSRF included); returns the session's CSRF token."""
    client.cookies.clear()
    page = client.get("/login")
    token = re.search(r'name="csrf_token" value="([0-9a-f]+)"', page.text).group(1)  # type: ignore[union-attr]
    r = client.post("/login", data={"username": username, "password": password or PASSWORDS[username],
                                    "csrf_token": token}, follow_redirects=False)
    assert r.status_code == 303, r.text
    return client.get("/api/csrf").json()["csrf_token"]


def small_case(patient_id: str = "WEB-01", shape: tuple[int, int, int] = (20, 32, 32), lesions: int = 1,
               offsets: list[tuple[int, int, int]] | None = None) -> Case:
    """A small CT-like case: a liver ellipsoid with spherical lesions, 3 mm voxels.

    ``offsets``: each lesion's centre (k, j, i voxels) from the grid centre; default (0, -4 + 8 n, 3).
    """
    k, j, i = np.indices(shape)
    c = np.array(shape) / 2.0
    liver = ((k - c[0]) / 8) ** 2 + ((j - c[1]) / 12) ** 2 + ((i - c[2]) / 12) ** 2 <= 1
    labels = np.where(liver, 1, 0).astype(np.uint8)
    names = {1: "liver"}
    for n in range(lesions if offsets is None else len(offsets)):
        cen = c + np.array([0, -4 + 8 * n, 3] if offsets is None else offsets[n])
        les = ((k - cen[0]) ** 2 + (j - cen[1]) ** 2 + (i - cen[2]) ** 2) <= 3.0**2
        labels[les] = 2 + n
        names[2 + n] = f"lesion_{n + 1}"
    rng = np.random.default_rng(1)
    image = np.where(liver, 60.0, -100.0) + np.where(labels >= 2, 30.0, 0.0) + rng.normal(0, 5, shape)
    affine = np.diag([3.0, 3.0, 3.0, 1.0])
    affine[:3, 3] = [-48.0, -48.0, -30.0]
    img = Volume(image.astype(np.float32), affine)
    return Case(Patient(id=patient_id, primary="colorectal"), img, img.with_array(labels),
                label_table_from_names(names))


def zip_folder(folder: Path, prefix: str = "") -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for p in sorted(folder.rglob("*")):
            if p.is_file():
                zf.write(p, prefix + p.relative_to(folder).as_posix())
    return buf.getvalue()


def upload(client: TestClient, csrf: str, data: bytes, board_id: int = 1, name: str = "case.zip",
           meeting_date: str = "2026-12-01", order: int = 1) -> object:
    return client.post("/cases", files={"upload": (name, data, "application/zip")},
                       data={"board_id": str(board_id), "meeting_date": meeting_date, "order": str(order),
                             "csrf_token": csrf}, headers={"accept": "application/json"}, follow_redirects=False)


class LiveServer:
    """The app served by uvicorn on 127.0.0.1 (a free port) in a background thread."""

    def __init__(self, app: object) -> None:
        import socket

        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.app = app

    def __enter__(self) -> LiveServer:
        import threading
        import time

        import uvicorn

        self.server = uvicorn.Server(uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_level="warning",
                                                    access_log=False, lifespan="on"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 180  # a start deadline, not a timing assertion
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the test server did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(15)


def http_login(client: object, username: str) -> str:
    """Log in an ``httpx.Client`` bound to a live server; returns the CSRF token of the session."""
    page = client.get("/login")  # type: ignore[attr-defined]
    token = re.search(r'name="csrf_token" value="([0-9a-f]+)"', page.text).group(1)  # type: ignore[union-attr]
    r = client.post("/login", data={"username": username, "password": PASSWORDS[username], "csrf_token": token})  # type: ignore[attr-defined]
    assert r.status_code in (200, 303), r.text
    return client.get("/api/csrf").json()["csrf_token"]  # type: ignore[attr-defined]
