"""Fixtures of the web/store tests: databases (SQLite and PostgreSQL), settings, users, a small case zip.

PostgreSQL runs when ``LATPLAN_TEST_POSTGRES_URL`` is set (``.ci/services.sh`` starts one and
exports it); without it the PostgreSQL variants skip with the reason, or FAIL when ``CI=true``.
Each PostgreSQL test starts from an empty ``public`` schema (migration from empty).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

sys.path.insert(0, str(Path(__file__).parent))

from webtest_helpers import DB_BACKENDS, empty_db_url, make_settings, seed_users, small_case, zip_folder

from latplan.imaging.case_folder import save_case_folder
from latplan.store.config import StoreSettings


@pytest.fixture(params=DB_BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A URL of an EMPTY database: a SQLite file, or a fresh schema on the test PostgreSQL."""
    return empty_db_url(request.param, tmp_path / "web.db")


@pytest.fixture
def settings(db_url: str, tmp_path: Path) -> StoreSettings:
    return make_settings(db_url, tmp_path / "data")


@pytest.fixture
def app_client(settings: StoreSettings) -> Iterator[TestClient]:
    from latplan.web.app import create_app

    seed_users(settings)
    with TestClient(create_app(settings), base_url="http://127.0.0.1") as client:
        yield client


@pytest.fixture(scope="session")
def case_zip(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    folder = tmp_path_factory.mktemp("case") / "WEB-01"
    save_case_folder(small_case(), folder)
    return zip_folder(folder, "WEB-01/")


@pytest.fixture
def sqlite_settings(tmp_path: Path) -> StoreSettings:
    """Settings on SQLite only, for tests where the database backend does not matter."""
    return make_settings(f"sqlite:///{tmp_path / 'web.db'}", tmp_path / "data")


@pytest.fixture
def sqlite_client(sqlite_settings: StoreSettings) -> Iterator[TestClient]:
    from latplan.web.app import create_app

    seed_users(sqlite_settings)
    with TestClient(create_app(sqlite_settings), base_url="http://127.0.0.1") as client:
        yield client
