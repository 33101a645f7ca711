"""Fixtures of the report tests ([E]); the builders live in report_builders.py (a unique module
name, so that other test folders' conftest.py files never shadow them)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from report_builders import make_case, make_proposal

from latplan.case import Case


@pytest.fixture(scope="module")
def synthetic_case() -> Case:
    return make_case()


@pytest.fixture(scope="module")
def synthetic_proposal() -> SimpleNamespace:
    return make_proposal()
