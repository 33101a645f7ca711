"""RECIST 1.1 / mRECIST classification and diameter measurement (issue 8)."""

from __future__ import annotations

import numpy as np
import pytest

from latplan.followup.models import CirseGrade, Complication
from latplan.followup.response import (
    LesionBaseline,
    Response,
    assess_response,
    longest_axial_diameter_mm,
    overall_response,
    select_targets,
)
from latplan.imaging.volume import Volume


def _box(shape, lo, size) -> np.ndarray:
    m = np.zeros(shape, bool)
    m[lo[0] : lo[0] + size[0], lo[1] : lo[1] + size[1], lo[2] : lo[2] + size[2]] = True
    return m


def _aff(spacing_ijk=(1.0, 1.0, 2.5)) -> np.ndarray:
    return np.diag([*spacing_ijk, 1.0])


def test_followup_diameter_box_is_diagonal() -> None:
    """Reference: geometry — an axis-aligned box of 20 × 10 voxels (1 × 1 mm in-plane) has a
    longest axial diameter equal to its in-plane diagonal √(20² + 10²) mm (edge to edge); 1e-9."""
    m = _box((6, 40, 40), (1, 5, 5), (3, 10, 20))
    assert longest_axial_diameter_mm(Volume(m, _aff())) == pytest.approx(np.hypot(20, 10), abs=1e-9)


def test_followup_diameter_sphere_and_orientation() -> None:
    """Reference: a sphere of diameter 30 mm measures 30 mm ± 1.5 voxel (1 mm voxels, edge to edge);
    a 90° in-plane rotation of the array with the matching affine gives the same mm result."""
    n = 40
    aff = _aff((1.0, 1.0, 1.0))
    vol = Volume(np.zeros((n, n, n), bool), aff)
    xyz = vol.grid_mm()
    m = np.linalg.norm(xyz - 19.5, axis=-1) <= 15.0
    d = longest_axial_diameter_mm(vol.with_array(m))
    assert abs(d - 30.0) <= 1.5
    # swap i and j axes: array transposed, affine columns swapped → same physical object
    aff2 = aff.copy()
    aff2[:, [0, 1]] = aff[:, [1, 0]]
    d2 = longest_axial_diameter_mm(Volume(np.swapaxes(m, 1, 2), aff2))
    assert d2 == pytest.approx(d, abs=1e-9)


@pytest.mark.parametrize(
    ("scale", "expected"),
    [(0.8, Response.SD), (0.7, Response.PR), (0.0, Response.CR), (1.2, Response.PD)],
)
def test_followup_recist_shrink_grow_phantom(scale: float, expected: Response) -> None:
    """Reference: RECIST 1.1 (Eisenhauer 2009): −20 % → SD, −30 % → PR, −100 % → CR,
    +20 % (≥ 5 mm) → PD. Phantom lesions are voxel boxes scaled exactly (40 × 20 → 28 × 14
    voxels etc., 44.7 mm → +8.9 mm for PD), measured by :func:`longest_axial_diameter_mm`; thresholds inclusive."""
    shape = (8, 70, 70)
    base = _box(shape, (2, 5, 5), (3, 20, 40))
    if scale == 0.0:
        cur = np.zeros(shape, bool)
    else:
        cur = _box(shape, (2, 5, 5), (3, round(20 * scale), round(40 * scale)))
    d0 = longest_axial_diameter_mm(Volume(base, _aff()))
    d1 = longest_axial_diameter_mm(Volume(cur, _aff()))
    res = assess_response([LesionBaseline("lesion_1", d0)], [], {"lesion_1": d1})
    assert res.target == expected
    assert res.overall == expected
    assert res.per_lesion["lesion_1"]["response"] == expected.value


def test_followup_recist_sum_on_targets_only() -> None:
    """Reference: RECIST 1.1 — ≤ 2 targets per organ, ≤ 5 in all, lesions < 10 mm not measurable;
    the sum uses target lesions only: a non-target lesion doubling does not change the target
    sum (but may make non-target PD by the stated proxy)."""
    baseline = [
        LesionBaseline("lesion_1", 40.0),
        LesionBaseline("lesion_2", 30.0),
        LesionBaseline("lesion_3", 20.0),  # third in the liver → non-target
        LesionBaseline("lesion_4", 8.0),  # not measurable → non-target
        LesionBaseline("lung_1", 15.0, organ="lung"),
    ]
    targets, nontargets = select_targets(baseline)
    assert targets == ["lesion_1", "lesion_2", "lung_1"]
    assert set(nontargets) == {"lesion_3", "lesion_4"}
    cur = {"lesion_1": 28.0, "lesion_2": 21.0, "lesion_3": 20.0, "lesion_4": 8.0, "lung_1": 10.5}
    res = assess_response(baseline, [], cur)
    assert res.baseline_sum_mm == pytest.approx(85.0)
    assert res.current_sum_mm == pytest.approx(59.5)  # exactly −30 %
    assert res.target == Response.PR
    assert res.overall == Response.PR
    cur2 = dict(cur, lesion_3=40.0)
    res2 = assess_response(baseline, [], cur2)
    assert res2.current_sum_mm == pytest.approx(59.5)
    assert res2.nontarget == Response.PD and res2.overall == Response.PD


def test_followup_recist_pd_from_nadir_and_absolute() -> None:
    """Reference: RECIST 1.1 — PD is judged against the nadir and needs ≥ 5 mm absolute increase:
    40 → 20 (nadir) → 24 mm is +20 % but only +4 mm → not PD (PR vs baseline); → 25 mm is PD."""
    b = [LesionBaseline("lesion_1", 40.0)]
    assert assess_response(b, [{"lesion_1": 20.0}], {"lesion_1": 24.0}).target == Response.PR
    assert assess_response(b, [{"lesion_1": 20.0}], {"lesion_1": 25.0}).target == Response.PD


def test_followup_recist_new_lesion_is_pd() -> None:
    """Reference: RECIST 1.1 Table 1 — any new lesion makes the overall response PD."""
    res = assess_response([LesionBaseline("lesion_1", 30.0)], [], {"lesion_1": 0.0}, new_lesions=["lesion_9"])
    assert res.target == Response.CR and res.overall == Response.PD
    assert overall_response(Response.CR, Response.NON_CR_NON_PD, False) == Response.PR


def test_followup_cirse_grades() -> None:
    """Reference: CIRSE classification (Filippiadis et al., CVIR 2017): six grades, 6 = death;
    strings such as 'grade 3' are accepted; grade 7 is rejected."""
    assert [g.value for g in CirseGrade] == [1, 2, 3, 4, 5, 6]
    assert CirseGrade(6).definition == "Death."
    assert "Filippiadis" in CirseGrade(1).citation
    c = Complication(grade="grade 3", description="abscess drained")
    assert c.grade == CirseGrade.GRADE_3
    with pytest.raises(ValueError, match="grade"):
        Complication(grade=7, description="x")
