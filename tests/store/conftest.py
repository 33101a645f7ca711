"""The store tests reuse the web tests' helpers (databases, users, a small case)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[1] / "web"))

import pytest
from webtest_helpers import DB_BACKENDS, empty_db_url


@pytest.fixture(params=DB_BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A URL of an EMPTY database: a SQLite file, or a fresh schema on the test PostgreSQL."""
    return empty_db_url(request.param, tmp_path / "store.db")
