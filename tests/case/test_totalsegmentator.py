"""TotalSegmentator class names as latplan structures (latplan.case.totalsegmentator, labels.py).

Reference: TotalSegmentator's class maps (wasserth/TotalSegmentator @0e65a448,
totalsegmentator/map_to_binary.py: `total` 117 classes, `total_mr` 50, `liver_vessels` 2,
`liver_segments` 8, `body` 2, `liver_lesions` 1), and issue [L]'s list of names refused before.
"""

from __future__ import annotations

import pytest

from latplan.case import LabelTable
from latplan.case.totalsegmentator import ts_class, ts_task_classes, ts_tasks
from latplan.case.vocabulary import StructureRole
from latplan.errors import UnknownStructureError

CLASS_COUNTS = {"total": 117, "total_mr": 50, "liver_vessels": 2, "liver_segments": 8, "body": 2, "liver_lesions": 1,
                "liver_segments_mr": 8, "body_mr": 2, "liver_lesions_mr": 1}


@pytest.mark.parametrize("task", sorted(CLASS_COUNTS))
def test_every_class_of_every_task_maps(task: str) -> None:
    """Each task's class map has TotalSegmentator's class count and builds a label table with no error."""
    classes = ts_task_classes(task)
    assert len(classes) == CLASS_COUNTS[task]
    table = LabelTable.from_mapping(classes)
    assert len(table.entries) == CLASS_COUNTS[task]


def test_names_that_were_refused_now_map() -> None:
    """Issue [L]'s refused names: planned ones get their roles, the rest role other (never an error)."""
    expect = {
        "vertebrae_S1": ("spine", StructureRole.BONE),
        "vertebrae": ("spine", StructureRole.BONE),
        "superior_vena_cava": ("superior_vena_cava", StructureRole.OTHER),
        "intervertebral_discs": ("intervertebral_discs", StructureRole.OTHER),
        "liver_vessels": ("liver_vessels", StructureRole.PORTAL_VEIN),
        "liver_tumor": ("lesion_1", StructureRole.LESION),
        "liver_lesions": ("lesion_1", StructureRole.LESION),
        "body_trunc": ("body", StructureRole.BODY),
        "body_extremities": ("body_extremities", StructureRole.OTHER),
        "liver_segment_4": ("liver_segment_4", StructureRole.LIVER_SEGMENT),
        "portal_vein_and_splenic_vein": ("portal_vein", StructureRole.PORTAL_VEIN),
    }
    for name, (canonical, role) in expect.items():
        ts = ts_class(name)
        assert ts is not None and (ts.name, ts.role) == (canonical, role), name
    table = LabelTable.from_mapping({i + 1: n for i, n in enumerate(expect)})
    assert table.role("liver_vessels") == StructureRole.PORTAL_VEIN
    assert "total" in ts_tasks() and "liver_vessels" in ts_tasks()
    with pytest.raises(UnknownStructureError, match="unknown TotalSegmentator task 'totl'"):
        ts_task_classes("totl")
