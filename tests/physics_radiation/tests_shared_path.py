"""Where ../shared/data/tg43 lives (same rule as tests/conftest.py), for parametrised tests."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]


def shared_tg43() -> Path:
    base = Path(os.environ.get("LATPLAN_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))
    path = base / "tg43"
    if not path.is_dir():
        if os.environ.get("LATPLAN_REQUIRE_SHARED_DATA") == "1":
            pytest.fail(f"shared TG-43 data not found at {path} (LATPLAN_REQUIRE_SHARED_DATA=1).")
        pytest.skip(f"shared TG-43 data not found at {path}; set LATPLAN_SHARED_DATA.")
    return path
