"""Digital liver phantom: determinism, vocabulary, LPS placement, intensities, built calibres, spec errors."""

from __future__ import annotations

import numpy as np
import pytest

from latplan.case.vocabulary import CANONICAL_STRUCTURES, StructureRole
from latplan.errors import PhantomSpecError
from latplan.phantom import build_phantom, build_phantom_detailed, parse_spec
from latplan.phantom import geometry as g
from latplan.phantom.builder import portal_tubes

PATIENT = {"id": "T-1", "primary": "colorectal"}


def _spec(**kw):
    base = {"seed": 3, "voxel_mm": [3, 3, 3], "patient": PATIENT}
    base.update(kw)
    return base


@pytest.fixture(scope="module")
def coarse():
    return build_phantom(_spec(lesions=[{"id": "lesion_1", "segment": 6, "diameter_mm": 20}]))


def test_phantom_is_deterministic_given_the_seed():
    """Reference: issue [A] 'deterministic from a seed'. Same spec → identical image and labels;
    another seed changes only the noise (labels identical for sphere lesions)."""
    a = build_phantom(_spec(lesions=[{"id": "lesion_1", "segment": 7, "diameter_mm": 20}]))
    b = build_phantom(_spec(lesions=[{"id": "lesion_1", "segment": 7, "diameter_mm": 20}]))
    c = build_phantom(_spec(seed=4, lesions=[{"id": "lesion_1", "segment": 7, "diameter_mm": 20}]))
    assert np.array_equal(a.image.array, b.image.array)
    assert np.array_equal(a.labels.array, b.labels.array)
    assert np.array_equal(a.labels.array, c.labels.array)
    assert not np.array_equal(a.image.array, c.image.array)


def test_phantom_uses_the_canonical_vocabulary(coarse):
    """Reference: issue [A] vocabulary list; every phantom name is canonical (or a lesion)."""
    names = coarse.structure_names()
    need = ["portal_vein", "hepatic_artery", "hepatic_vein_right", "hepatic_vein_middle", "hepatic_vein_left",
            "inferior_vena_cava", "aorta", "bile_duct", "gallbladder", "stomach", "duodenum", "colon", "small_bowel",
            "kidney_right", "heart", "lung_right", "lung_left", "ribs", "spinal_cord", "body", "diaphragm",
            *[f"liver_segment_{s}" for s in g.SEGMENTS], "lesion_1"]
    assert set(need) <= set(names)
    for n in names:
        assert n.startswith("lesion_") or n in CANONICAL_STRUCTURES
    assert coarse.label_table.role("lesion_1") == StructureRole.LESION


def test_phantom_anatomy_sits_where_lps_says(coarse):
    """Reference: DICOM patient LPS (+x left, +y posterior, +z superior): liver on the patient's right
    (x < 0), stomach and spleen on the left, spine posterior of the aorta, heart above the liver."""
    def centroid(name):
        return coarse.labels.index_to_mm(np.argwhere(coarse.mask_array(name)).mean(0))
    liver = np.mean([centroid(f"liver_segment_{s}") for s in ("5", "6", "7", "8")], axis=0)
    assert liver[0] < -20
    assert centroid("stomach")[0] > 20 and centroid("spleen")[0] > 20
    assert centroid("spinal_cord")[1] > centroid("aorta")[1]
    assert centroid("heart")[2] > liver[2] + 50
    assert centroid("liver_segment_8")[2] > centroid("liver_segment_5")[2]  # portal plane: 8 above 5
    assert centroid("liver_segment_7")[1] > centroid("liver_segment_8")[1]  # 7 posterior to 8


def test_phantom_intensities_are_ct_like(coarse):
    """Reference: the requested rendering (liver ≈ 60 HU, contrast vessels ≈ 150 HU, lesion ≈ 35 HU,
    lung ≈ −800 HU, Gaussian noise σ ≈ 10 HU); tolerance 3 HU on medians, 1.5 HU on σ."""
    img = coarse.image.array.astype(float)
    liver = img[coarse.mask_array("liver_segment_8")]
    assert abs(np.median(liver) - 60) < 3
    assert abs(liver.std() - g.NOISE_SIGMA_HU) < 1.5
    assert abs(np.median(img[coarse.mask_array("lesion_1")]) - 35) < 3
    assert abs(np.median(img[coarse.mask_array("portal_vein")]) - 160) < 3
    assert abs(np.median(img[coarse.mask_array("lung_right")]) + 800) < 3


def test_built_vessel_calibres_follow_the_issue():
    """Reference: issue [A]: main portal vein ≈ 12–14 mm tapering to ≤ 3 mm branches; hepatic veins
    ≈ 10–12 mm at the IVC confluence tapering to ≤ 3 mm; IVC ≈ 20 mm (built truth, exact)."""
    main = g.PORTAL_TRUNK[0]
    assert all(12.0 <= 2 * r <= 14.0 for r in main.radii_mm)
    assert all(2 * t.radii_mm[-1] <= 3.0 for t in portal_tubes()[len(g.PORTAL_TRUNK):])
    for hv in g.HEPATIC_VEINS:
        assert 10.0 <= 2 * hv.radii_mm[1] <= 12.0
        assert 2 * hv.radii_mm[-1] <= 3.0
    assert 2 * g.IVC_RADIUS_MM == pytest.approx(20.0)


def test_segment_volumes_are_plausible():
    """Reference: adult liver ≈ 1.2–2.0 l (CT volumetry ranges); every Couinaud segment present and > 30 ml."""
    case = build_phantom(_spec(voxel_mm=[4, 4, 4]))
    vols = {s: case.structure(f"liver_segment_{s}").volume_ml for s in g.SEGMENTS}
    assert all(v > 30 for v in vols.values()), vols
    assert 1200 < sum(vols.values()) < 2000


@pytest.mark.parametrize(
    ("lesion", "match"),
    [
        ({"id": "lesion_1", "segment": 6, "diameter_mm": 20, "colour": "red"}, "unknown key"),
        ({"id": "lesion_1", "segment": 9, "diameter_mm": 20}, "segment"),
        ({"id": "lesion_1", "segment": 6, "diameter_mm": 20, "abut": "pancreas"}, "not a structure of the phantom"),
        ({"id": "lesion_1", "segment": 3, "diameter_mm": 20, "abut": "kidney_right", "gap_mm": 1}, "not next to segment 3"),
        ({"id": "lesion_1", "segment": 2, "diameter_mm": 120}, "does not fit inside segment 2"),
        ({"id": "lesion_1", "segment": 6, "diameter_mm": 20, "center_mm": [-150, 0, 0]}, "leave the liver"),
        ({"id": "lesion_1", "segment": 6, "diameter_mm": 20, "center_mm": [-56, 7, 50]}, "not in segment 6"),
        ({"id": "lesion_1", "segment": 6, "diameter_mm": 20, "shape": "ellipsoid"}, "axes_mm"),
        ({"id": "lesion_1", "segment": 6, "diameter_mm": 20, "gap_mm": 2}, "gap_mm needs abut"),
    ],
)
def test_impossible_specs_raise_clear_errors(lesion, match):
    """Reference: issue [A]: an unsatisfiable spec is a clear error, never a silently moved lesion."""
    with pytest.raises(PhantomSpecError, match=match):
        build_phantom(_spec(lesions=[lesion]))


def test_spec_file_errors(tmp_path):
    """Missing file / non-mapping YAML / duplicate ids → PhantomSpecError naming the problem."""
    with pytest.raises(PhantomSpecError, match="does not exist"):
        parse_spec(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("- 1\n- 2\n")
    with pytest.raises(PhantomSpecError, match="must be a mapping"):
        parse_spec(bad)
    with pytest.raises(PhantomSpecError, match="repeated: lesion_1"):
        parse_spec(_spec(lesions=[{"id": "lesion_1", "segment": 6, "diameter_mm": 10}] * 2))


def test_omit_and_unsegmented_liver():
    """`omit` leaves structures out of the label map (image unchanged); liver_segments: false gives one 'liver' label."""
    full = build_phantom(_spec(voxel_mm=[4, 4, 4]))
    part = build_phantom(_spec(voxel_mm=[4, 4, 4], omit=["bile_duct", "hepatic_vein_left"], liver_segments=False))
    assert "bile_duct" not in part.structure_names() and "hepatic_vein_left" not in part.structure_names()
    assert part.has("liver") and not part.has("liver_segment_8")
    assert np.array_equal(full.image.array, part.image.array)
    with pytest.raises(PhantomSpecError, match="omit"):
        build_phantom(_spec(omit=["liver_segment_8"]))


def test_detailed_build_reports_truth():
    """The detailed build returns lesion centres inside the requested segment (Couinaud planes of geometry.py)."""
    b = build_phantom_detailed(_spec(lesions=[{"id": "lesion_1", "segment": "7", "diameter_mm": 20}]))
    c = b.lesion_centres_mm["lesion_1"]
    assert g.SEGMENTS[int(g.couinaud_index(np.array(c[0]), np.array(c[1]), np.array(c[2])))] == "7"


def test_extrahepatic_lesion_is_built_and_counted_for_its_organ():
    """Reference: issue [A]: a lesion outside the liver is measured and counted against its organ
    (a lung metastasis changes the oligometastatic count), and the output says it is not planned."""
    from latplan.anatomy import measure_case

    spec = _spec(patient={"id": "T-2", "primary": "colorectal", "primary_status": "resected",
                          "extrahepatic_sites": ["lung"]},
                 lesions=[{"id": "lesion_1", "segment": 6, "diameter_mm": 20},
                          {"id": "lesion_2", "organ": "lung_right", "diameter_mm": 15}])
    m = measure_case(build_phantom(spec))
    lung = next(les for les in m["lesions"] if les["id"] == "lesion_2")
    assert lung["organ"] == "lung" and lung["planned_in_this_release"] is False
    assert lung["segments"] == [] and lung["capsule_distance_mm"] is None
    assert m["patient"]["lesions_by_organ"] == {"liver": 1, "lung": 1}
    assert m["patient"]["oligometastatic"]["status"] == "oligometastatic"
    with pytest.raises(PhantomSpecError, match="segment is for liver lesions"):
        parse_spec(_spec(lesions=[{"id": "lesion_1", "organ": "spleen", "segment": 6, "diameter_mm": 10}]))
    with pytest.raises(PhantomSpecError, match="needs segment"):
        parse_spec(_spec(lesions=[{"id": "lesion_1", "diameter_mm": 10}]))
