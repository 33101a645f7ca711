"""Trajectories and the field of view (latplan.planning.applicators.find_trajectory, issue [L] part 4).

References: analytic geometry of a box phantom on the grid (the nearest body wall shown in the image is
at a known distance; tolerance one voxel for the 600-direction sampling, ≈ 8° apart: 24 mm / cos 8° =
24.2 mm); the real TotalSegmentator CT (../shared/data/external/totalseg-ct-3mm, TotalSegmentator
example, Apache-2.0), whose top and bottom slices cut through the abdomen (liver and body touch the
k = 0 and k = 29 faces, data README) while the abdominal wall is shown in-plane.
"""

from __future__ import annotations

import numpy as np
import pytest

from latplan.anatomy.geometry import case_geometry
from latplan.case import Case, LabelTable, Patient
from latplan.imaging.volume import Volume
from latplan.planning.applicators import UNVERIFIED_NOTE, Trajectory, find_trajectory, heat_sink_vessels
from latplan.report.context import TRAJECTORY_UNVERIFIED, metric_rows

N = 40
H = 2.0


def _box_case(body_hu_box: tuple[slice, slice, slice] | None) -> Case:
    """CT phantom: soft tissue (+40 HU) in ``body_hu_box`` (None: the whole grid), air (−1000 HU) elsewhere;
    no body label; a liver block reaching the top slice (k = 39) and a lesion 6 mm below the top face."""
    img = np.full((N, N, N), -1000.0, np.float32)
    img[body_hu_box if body_hu_box is not None else (slice(None),) * 3] = 40.0
    lab = np.zeros((N, N, N), np.int16)
    lab[20:, 12:30, 12:30] = 1  # liver, cut by the top face
    lab[35:38, 19:22, 19:22] = 2  # lesion: centroid k = 36 (6 mm below the k = 39 voxel)
    aff = np.diag([H, H, H, 1.0])
    table = LabelTable.from_mapping({1: "liver", 2: "lesion_1"})
    return Case(Patient(id="FOV-1", primary="colorectal"), Volume(img, aff), Volume(lab, aff), table)


def _index(case: Case, p: np.ndarray) -> np.ndarray:
    return np.asarray(case.labels.mm_to_index(np.asarray(p, float)[None])[0], float)


def _strictly_inside(case: Case, p: np.ndarray) -> bool:
    """Inside the image and not on one of its faces (the outermost voxel layer)."""
    idx = np.rint(_index(case, p))
    return bool(np.all(idx >= 1) and np.all(idx <= np.asarray(case.labels.shape) - 2))


def test_entry_on_the_skin_inside_the_image_not_through_the_cut_face():
    """Body box i 8..39 × j 5..34, cut by the top and bottom faces (k): the shortest way out (6 mm up through
    the top face) is not verifiable; the entry is the skin at i = 8 (24 mm from the lesion centroid
    i = 20, analytic), inside the image, and CaseGeometry.path_check agrees."""
    case = _box_case((slice(None), slice(5, 35), slice(8, 40)))
    t = find_trajectory(case, "lesion_1", n_directions=600)
    assert t.verified is True and t.safe is True
    assert t.skin_point_mm is not None
    np.testing.assert_allclose(t.entry_mm, t.skin_point_mm)
    assert _strictly_inside(case, t.entry_mm)
    assert t.depth_mm == pytest.approx(24.0, abs=H)
    assert abs(_index(case, t.entry_mm)[2] - 8.0) <= 0.5
    check = case_geometry(case).path_check(t.target_mm, t.entry_mm)
    assert check.verifiable and check.skin_point_mm is not None
    np.testing.assert_allclose(check.skin_point_mm, t.skin_point_mm, atol=0.5 * H)


def test_no_wall_in_the_image_cannot_be_verified_never_safe():
    """The body fills the whole image (a field of view inside the abdomen): no path leaves the body inside
    the image, so the trajectory cannot be verified — not safe, no skin point, the entry not beyond the
    image; the report row says "cannot be verified", never "yes"."""
    case = _box_case(None)
    t = find_trajectory(case, "lesion_1", n_directions=200)
    assert t.verified is False and t.safe is False and t.skin_point_mm is None
    assert UNVERIFIED_NOTE in t.note
    idx = _index(case, t.entry_mm)
    assert np.all(idx >= -0.5) and np.all(idx <= N - 0.5)  # never beyond the image face
    metrics = {"trajectory_safe": None, "trajectory_verified": t.verified, "covered": True}
    rows = {r.name: r.value for r in metric_rows(metrics)}
    assert rows["trajectory safe"] == TRAJECTORY_UNVERIFIED
    assert "trajectory verified" not in rows
    verified_rows = {r.name: r.value for r in metric_rows({"trajectory_safe": True, "trajectory_verified": True})}
    assert verified_rows["trajectory safe"] == "yes"


def _crop_case(case: Case, lo: tuple[int, int, int], hi: tuple[int, int, int]) -> Case:
    return Case(case.patient, case.image.crop(lo, hi), case.labels.crop(lo, hi), case.label_table)


@pytest.mark.shared_data
def test_real_ct_cut_through_the_abdomen(shared_data):
    """Real CT (top and bottom of the scan cut through the abdomen, no body label): a lesion 6 mm below the
    top face gets an entry on the skin inside the image, off the cut faces; cropped in-plane inside the
    body (no abdominal wall in the image) the MWA plan's trajectory "cannot be verified" and is not safe."""
    from latplan.imaging.case_folder import load_case_folder
    from latplan.imaging.insert import insert_lesion
    from latplan.planning.thermal import plan_mwa

    case = load_case_folder(shared_data / "external" / "totalseg-ct-3mm", patient={"id": "TS-3MM", "primary": "colorectal"})
    assert "body" not in case.structure_names()
    case = insert_lesion(case, case.labels.index_to_mm(np.array([27.0, 47.0, 87.0])), 9.0)
    lid = case.lesion_ids[0]
    t: Trajectory = find_trajectory(case, lid)
    assert t.verified is True and t.skin_point_mm is not None
    assert _strictly_inside(case, t.entry_mm)
    assert not case_geometry(case).body[tuple(np.rint(_index(case, t.entry_mm + 3.0 * (-t.direction))).astype(int))]
    # a field of view inside the body: k all, j 35..65, i 65..105 (liver tissue around the lesion)
    small = _crop_case(case, (0, 35, 65), (30, 66, 106))
    assert case_geometry(small).body.all()
    ts = find_trajectory(small, lid, n_directions=200)
    assert ts.verified is False and ts.safe is False and ts.skin_point_mm is None
    plan = plan_mwa(small, lid, None, target_margin_mm=5.0, heat_sink_check=False)
    assert plan.metrics["trajectory_verified"] is False
    assert plan.metrics["trajectory_safe"] is None
    assert "cannot be verified" in plan.metrics["reason"]
    rows = {r.name: r.value for r in metric_rows(plan.metrics, "mwa")}
    assert rows["trajectory safe"] == TRAJECTORY_UNVERIFIED


def test_heat_sink_vessels_without_measurements_reads_the_one_calibre_map():
    """A straight tube of diameter 8 mm (2 mm grid) 6 mm from a 12 mm lesion, no measurements given:
    calibre from the case's one calibre map (CaseGeometry.vessel_calibre_mm) — analytic 8 mm within one
    voxel (2 mm); gap lesion surface → tube wall analytic 6 mm within one voxel."""
    n = 48
    k, j, i = np.indices((n, n, n)) * H
    c = 0.5 * (n - 1) * H
    lab = np.zeros((n, n, n), np.int16)
    lab[4:-4, 4:-4, 4:-4] = 1  # liver
    lesion_r, tube_r, gap = 6.0, 4.0, 6.0
    lab[(k - c) ** 2 + (j - c) ** 2 + (i - c) ** 2 <= lesion_r ** 2] = 2
    tube_axis_i = c + lesion_r + gap + tube_r  # the tube runs along j
    lab[((k - c) ** 2 + (i - tube_axis_i) ** 2 <= tube_r ** 2) & (lab == 1)] = 3
    aff = np.diag([H, H, H, 1.0])
    case = Case(Patient(id="SINK-1", primary="colorectal"), Volume(np.zeros((n, n, n), np.float32), aff),
                Volume(lab, aff), LabelTable.from_mapping({1: "liver", 2: "lesion_1", 3: "portal_vein"}))
    sinks = heat_sink_vessels(case, "lesion_1")
    assert [s["name"] for s in sinks] == ["portal_vein"]
    assert sinks[0]["calibre_mm"] == pytest.approx(2 * tube_r, abs=H)
    assert sinks[0]["distance_mm"] == pytest.approx(gap, abs=H)
    geo = case_geometry(case)
    assert sinks[0]["calibre_mm"] == pytest.approx(float(geo.vessel_calibre_mm[lab == 3].max()), abs=0.05)


def _blob_cases(seed: int, count: int):  # type: ignore[no-untyped-def]
    """Random ellipsoid masks (some touching the array's edge) with specks, random anisotropic spacing (mm)."""
    rng = np.random.default_rng(seed)
    for _ in range(count):
        n = rng.integers(15, 40, 3)
        kk, jj, ii = np.meshgrid(*[np.arange(x) for x in n], indexing="ij")
        c = rng.integers(0, n)
        mask = ((kk - c[0]) ** 2 + 1.3 * (jj - c[1]) ** 2 + 0.7 * (ii - c[2]) ** 2) < rng.uniform(2.0, 12.0) ** 2
        mask |= rng.random(n) < 0.001
        if mask.any():
            yield mask, rng.uniform(0.7, 3.0, 3), rng


def test_target_mask_and_zone_band_in_boxes_equal_the_whole_array() -> None:
    """The distance maps behind the target (lesion + margin) and the zone's uncertainty band are taken in
    the mask's box grown by the reach (+ 1 voxel). Reference: scipy's Euclidean distance transform of the
    whole array (the earlier form), on 60 random masks, some at the array's edge: identical, voxel for voxel."""
    from scipy import ndimage

    from latplan.physics.margins import ablative_margin_arrays
    from latplan.planning.applicators import target_mask, zone_uncertainty_band

    for mask, h, rng in _blob_cases(7, 60):
        m = float(rng.uniform(0.5, 15.0))
        assert np.array_equal(target_mask(mask, m, h), ndimage.distance_transform_edt(~mask, sampling=h) <= m)
        lesion = ndimage.binary_erosion(mask, iterations=2)
        lesion = lesion if lesion.any() else mask
        exclude = rng.random(mask.shape) < 0.05
        vox = float(np.prod(h)) / 1000.0
        d = 0.11 * (3.0 * float(mask.sum()) * vox * 1000.0 / (4.0 * np.pi)) ** (1.0 / 3.0) + 0.35 * float(h.mean())
        inner = ndimage.distance_transform_edt(mask, sampling=h) > d
        outer = (ndimage.distance_transform_edt(~mask, sampling=h) <= d) & ~exclude
        ref = ([round(float(z.sum()) * vox, 2) for z in (inner, outer)],
               [round(float(ablative_margin_arrays(lesion, z, h).min_margin_mm), 2) if z.any() else -1e3
                for z in (inner, outer)])
        assert zone_uncertainty_band(mask, lesion, tuple(h), 0.11, exclude) == ref
