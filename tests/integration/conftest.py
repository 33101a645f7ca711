"""End-to-end fixtures: demo phantoms on a coarse grid, built once per session and per case.

The report tests' HTML checker (tests/report/test_report_html.py) is reused for the reports the
pipeline writes.
"""

from __future__ import annotations

from functools import cache

import pytest

from latplan.case import Case
from latplan.phantom import build_demo_case, demo_cases

COARSE_VOXEL_MM = 3.0  # demo phantoms on a coarse grid keep the tests fast (at 4 mm the 60 mm lesion no longer fits)


@cache
def coarse_demo_case(name: str) -> Case:
    """The demo case ``name`` on the coarse grid, built once per session (run_demo saves and reloads it)."""
    return build_demo_case(name, voxel_mm=COARSE_VOXEL_MM)


@pytest.fixture(scope="session")
def demo_names() -> list[str]:
    names = list(demo_cases())
    assert names, "latplan.phantom ships no demo case"
    return names
