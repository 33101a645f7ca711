"""Case discovery: which folders of a cohort are planned.

Reference: docs/case-format.md (a case folder holds case.yaml, the image, labels and labels.yaml;
a TotalSegmentator import without clinical data has labels.yaml but no case.yaml yet) and
docs/followup.md (follow-up images live under ``timepoints/``, which are not cases of their own).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from latplan.batch import discover_cases
from latplan.errors import CaseFolderError


def test_discovery(tmp_path: Path) -> None:
    for rel, name in (("A", "case.yaml"), ("site2/B", "case.yaml"), ("ts-import", "labels.yaml"),
                      ("A/timepoints/3m", "labels.yaml"), (".trash/C", "case.yaml"), ("notes", "readme.txt")):
        (tmp_path / rel).mkdir(parents=True, exist_ok=True)
        (tmp_path / rel / name).write_text("x")
    found = discover_cases(tmp_path)
    assert found == {"A": tmp_path / "A", "site2__B": tmp_path / "site2" / "B", "ts-import": tmp_path / "ts-import"}


def test_empty_cohort_is_a_named_error(tmp_path: Path) -> None:
    with pytest.raises(CaseFolderError, match="holds no case folder"):
        discover_cases(tmp_path)
    with pytest.raises(CaseFolderError, match="does not exist"):
        discover_cases(tmp_path / "missing")
