"""The ``fov_*`` metrics of plans whose treatment region meets the edge of the scan (latplan.planning.fov).

Found on a real CT (TotalSegmentator's example at 3 mm, a 25 mm lesion inserted 9 mm below the scan's top
face): the MWA zone was clipped by the image and the IBT CTV passed its face, yet both read "reaches".
References: the crop geometry itself (gaps and margins are whole voxels, so the overshoot is exact) and
the affine (which patient side an index face is, DICOM LPS)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from latplan.case import Case
from latplan.planning.fov import fov_check
from latplan.planning.ibt import plan_ibt
from latplan.planning.sbrt import plan_sbrt
from tests.planning.helpers import cut_along_i, synthetic_thermal_case


def test_fov_check_overshoot_faces_and_zone_cut() -> None:
    """A 4-voxel cube lesion 2 voxels (2 × 2 mm) from the last i face: grown by 5 mm it passes that face by
    5 − 4 = 1.0 mm and no other (≥ 10 voxels of room elsewhere); with the i axis along −x (a flipped
    affine) the same face is the patient's right. A zone on a crop touching the image's first k slice is
    cut there; the same zone on a crop away from the image edge is not."""
    case = synthetic_thermal_case()
    shape = case.labels.shape
    lesion = np.zeros(shape, bool)
    lesion[20:24, 20:24, shape[2] - 6:shape[2] - 2] = True
    out = fov_check(case, lesion, 5.0, "the target")
    assert out["fov_limited_faces"] == ["left (i = last slice)"] and out["fov_extension_mm"] == pytest.approx(1.0)
    assert out["fov_zone_cut_faces"] == [] and "the target extends 1 mm beyond the left" in out["fov_limited_note"]
    assert fov_check(case, lesion, 4.0, "the target")["fov_limited"] is False  # reaches the face, not past it
    aff = case.labels.affine.copy()
    aff[:3, 0] *= -1.0
    flipped = Case(patient=case.patient, image=type(case.image)(case.image.array, aff), label_table=case.label_table,
                   labels=type(case.labels)(case.labels.array, aff))
    assert fov_check(flipped, lesion, 5.0, "the target")["fov_limited_faces"] == ["right (i = last slice)"]
    zone = np.zeros((5, 5, 5), bool)
    zone[0, 2, 2] = True
    cut = fov_check(case, lesion, 0.0, "the target", zone, (0, 10, 10))
    assert cut["fov_zone_cut_faces"] == ["inferior (k = first slice)"] and cut["fov_extension_mm"] == 0.0
    assert fov_check(case, lesion, 0.0, "the target", zone, (3, 10, 10))["fov_limited"] is False


def test_sbrt_and_ibt_targets_past_the_image_edge_are_fov_limited() -> None:
    """The image face 2 voxels (4 mm) past the lesion: the SBRT PTV (lesion + the set-up margin, grown by the
    dose region its organ screen must see) and the IBT CTV (lesion + 10 mm, the protocol's margin) pass it by
    their reach − 4 mm; the uncut case is not limited."""
    whole = synthetic_thermal_case()
    cut = cut_along_i(whole, 2)
    s = plan_sbrt(cut, "lesion_1").metrics
    assert s["fov_limited"] is True and s["fov_limited_faces"] == ["left (i = last slice)"]
    # SBRT: the PTV grown by the region where its fall-off estimate exceeds the lowest serial limit (TG-101
    # 3 fractions: duodenum 11.4 Gy to 10 cc), x = λ·ln(45 Gy / 11.4 Gy) (tests/planning/test_sbrt.py)
    x_mm = s["falloff_lambda_mm"] * math.log(45.0 / 11.4)
    assert s["fov_dose_region_mm"] == pytest.approx(x_mm, abs=0.06)
    assert s["fov_extension_mm"] == pytest.approx(s["ptv_margin_mm"] + s["fov_dose_region_mm"] - 4.0, abs=0.06)
    assert plan_sbrt(whole, "lesion_1").metrics["fov_limited"] is False
    b = plan_ibt(cut, "lesion_1", ctv_margin_mm=10.0)
    assert b.metrics["fov_limited"] is True and b.metrics["fov_extension_mm"] == pytest.approx(6.0)
    assert any("conditional — field of view: the CTV (lesion + 10 mm)" in c for c in b.caveats)
