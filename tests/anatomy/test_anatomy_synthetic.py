"""Measurements on small synthetic cases with analytic truth, and their invariance under storage order.

Each case is built in memory from numpy arrays (no files): a liver block, a spherical lesion,
straight vessel tubes of known radius, a stomach box. Reference values are analytic
(sphere volume 4/3·π·r³, tube diameter 2r, gap between surfaces = centre distance − radii).
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from anatomy_cases import synthetic_case

from latplan.anatomy import liver_mask, measure_case, validate_measurements
from latplan.case import Case
from latplan.errors import EmptyStructureError, InvalidInputError
from latplan.imaging.orientation import reorient_case


def _lesion(m, lid="lesion_1"):
    return next(les for les in m["lesions"] if les["id"] == lid)


def test_sphere_size_volume_and_shape():
    """Reference: analytic sphere r = 8 mm: V = 2.145 ml (±5 %), Feret and axial diameter 16 mm
    (± one voxel), equivalent-sphere diameter 16 mm (± 2 %), sphericity ≈ 1 (> 0.9)."""
    m = measure_case(synthetic_case())
    les = _lesion(m)
    assert les["volume_ml"] == pytest.approx(4 / 3 * math.pi * 8**3 / 1000, rel=0.05)
    assert abs(les["max_diameter_mm"] - 16.0) <= 1.0
    assert abs(les["axial_diameter_mm"] - 16.0) <= 1.0
    assert les["equivalent_sphere_diameter_mm"] == pytest.approx(16.0, rel=0.02)
    assert les["sphericity"] > 0.9
    assert les["centroid_mm"] == pytest.approx([45.0, 45.0, 40.0], abs=0.5)
    assert les["organ"] == "liver" and les["planned_in_this_release"] is True


@pytest.mark.parametrize("spacing", [(1.0, 1.0, 1.0), (0.8, 0.8, 2.5)])
def test_distances_and_calibres_match_the_construction(spacing):
    """Reference: construction (PV gap 4 mm, PV Ø 6 mm, HV gap 10 mm, HV Ø 10 mm, stomach gap 6 mm);
    tolerance one voxel (largest spacing)."""
    h = max(spacing)
    m = measure_case(synthetic_case(spacing))
    validate_measurements(m)
    les = _lesion(m)
    d = les["distances_mm"]
    assert abs(d["portal_vein"] - 4.0) <= h
    assert abs(d["hepatic_vein_right"] - 10.0) <= h
    assert abs(d["stomach"] - 6.0) <= h
    vessels = {v["name"]: v for v in les["nearest_vessels"]}
    assert abs(vessels["portal_vein"]["calibre_mm"] - 6.0) <= h
    assert abs(vessels["hepatic_vein_right"]["calibre_mm"] - 10.0) <= h
    # portal and hepatic veins are segmented and a Ø 6 mm PV lies 4 mm away: perivascular is decided True
    assert les["perivascular"] is True
    assert any(v["name"] == "portal_vein" for v in les["heat_sink_vessels"])


@pytest.mark.parametrize("r_mm", [1.5, 2.5, 4.0, 7.0, 10.0])
def test_calibre_of_tubes_within_one_voxel(r_mm):
    """Reference: straight tube of radius r (Ø = 2r); measured local calibre within one voxel (1 mm)."""
    m = measure_case(synthetic_case(pv_r=r_mm, pv_gap=3.0))
    cal = {v["name"]: v["calibre_mm"] for v in _lesion(m)["nearest_vessels"]}["portal_vein"]
    assert abs(cal - 2 * r_mm) <= 1.0




ORIENTATIONS = [((0, 1, 2), f) for f in itertools.product((False, True), repeat=3)] + [
    ((2, 1, 0), (False, True, False)), ((1, 0, 2), (True, False, False)), ((1, 2, 0), (False, False, True))]


@pytest.mark.parametrize(("perm", "flips"), ORIENTATIONS)
def test_measurements_invariant_under_storage_order(perm, flips):
    """Metamorphic (issue [A]): the 8 flip patterns and axis permutations of an anisotropic grid
    (0.8 × 1.2 × 2.0 mm) give the same mm results within half a voxel (0.4 mm; sphericity ± 0.02)."""
    base = synthetic_case((0.8, 1.2, 2.0))
    ref = _lesion(measure_case(base))
    got = _lesion(measure_case(reorient_case(base, perm, flips)))
    tol = 0.4
    for key in ("volume_ml", "max_diameter_mm", "axial_diameter_mm", "equivalent_sphere_diameter_mm",
                "capsule_distance_mm"):
        assert abs(got[key] - ref[key]) <= tol, key
    assert got["centroid_mm"] == pytest.approx(ref["centroid_mm"], abs=tol)
    assert abs(got["sphericity"] - ref["sphericity"]) <= 0.02
    for name, dist in ref["distances_mm"].items():
        if dist is None:
            assert got["distances_mm"][name] is None
        else:
            assert abs(got["distances_mm"][name] - dist) <= tol, name
    for a, b in zip(ref["nearest_vessels"], got["nearest_vessels"], strict=True):
        assert a["name"] == b["name"]
        assert abs(a["calibre_mm"] - b["calibre_mm"]) <= 2 * tol


def test_not_segmented_structures_are_null_and_listed():
    """Reference: issue [A] 'unknown is not far': absent structures → null distance + not_segmented."""
    les = _lesion(measure_case(synthetic_case()))
    for name in ("bile_duct", "hepatic_artery", "gallbladder", "duodenum", "colon", "liver_segment_8"):
        assert name in les["not_segmented"]
    for name in ("bile_duct", "hepatic_artery", "gallbladder", "duodenum", "colon"):
        assert les["distances_mm"][name] is None
    assert les["segments"] is None  # segments unknown, not "none"
    assert les["near_hollow_organ"] is True  # stomach at 6 mm decides it even with duodenum/colon unknown
    far = _lesion(measure_case(synthetic_case(stomach_gap=15.0)))
    assert far["near_hollow_organ"] is None  # stomach far, duodenum/colon unknown → cannot tell
    m = measure_case(synthetic_case())
    assert m["patient"]["future_liver_remnant"] is None


def test_liver_mask_is_union_with_liver_lesions():
    """liver_mask = liver ∪ segments ∪ liver lesions (the lesion is surrounded by liver)."""
    case = synthetic_case()
    lm = liver_mask(case).array
    assert lm[case.mask_array("lesion_1")].all()
    assert not lm[case.mask_array("stomach")].any()


def test_single_voxel_lesion_is_refused():
    """Reference: issue [A] bad input: a one-voxel lesion cannot be measured → EmptyStructureError."""
    base = synthetic_case()
    lab = np.where(base.labels.array == 2, 1, base.labels.array).astype(np.int16)
    lab[40, 45, 45] = 2
    case = Case(patient=base.patient, image=base.image, labels=base.labels.with_array(lab),
                label_table=base.label_table)
    with pytest.raises(EmptyStructureError, match="single voxel"):
        measure_case(case)


def test_unknown_parameter_and_definition_are_errors():
    case = synthetic_case()
    with pytest.raises(InvalidInputError, match="unknown measurement parameter"):
        measure_case(case, parameters={"subcapsular_cm": 1})
    with pytest.raises(InvalidInputError, match="unknown oligometastatic definition"):
        measure_case(case, oligo_definition="nope")
