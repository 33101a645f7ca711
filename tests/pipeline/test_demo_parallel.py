"""`latplan demo` in worker processes: cases run longest first (lesion count), the results come back
in the order asked for, as in one process.

References: the demo specs' own lesion counts (``demo_spec(name).lesions``) for the order; the
one-process run of the same cases for the index rows and reports (rules only, coarse grid: the
simulations' invariance is tests/pipeline/test_plan.py and test_shared_work.py).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from latplan.case import Case
from latplan.phantom import build_demo_case, demo_spec
from latplan.pipeline import demo as demo_module
from latplan.pipeline import run_demo

NAMES = ["seg6-peripheral-18mm", "four-lesions-right-lobe"]


def coarse(name: str) -> Case:
    """Module level: picklable for the worker processes."""
    return build_demo_case(name, voxel_mm=6.0)


def test_case_cost_is_the_lesion_count() -> None:
    for name in NAMES:
        assert demo_module._case_cost(name) == len(demo_spec(name).lesions)
    assert demo_module._case_cost("four-lesions-right-lobe") > demo_module._case_cost("seg6-peripheral-18mm")


def _rows(index: Path) -> list[str]:
    return re.findall(r"reports/([^/\"]+)/report\.html", index.read_text(encoding="utf-8"))


@pytest.mark.slow
def test_parallel_demo_gives_the_rows_of_one_process(tmp_path: Path) -> None:
    one = run_demo(tmp_path / "one", NAMES, simulate=False, pdf=False, build_case=coarse, followup=False)
    two = run_demo(tmp_path / "two", NAMES, simulate=False, pdf=False, build_case=coarse, followup=False,
                   workers=2)
    assert one.errors == two.errors == {}
    assert list(two.reports) == list(one.reports) == NAMES
    assert _rows(two.index_html) == _rows(one.index_html)
    assert all(set(two.reports[n]) == set(one.reports[n]) for n in NAMES)
