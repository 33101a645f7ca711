"""Viewer lesion bookmarks (issue 17 part 5): ``index.json`` lists every lesion with its centre in
LPS mm and that centre's voxel index on the image grid; the page opens at the first lesion.

Reference: the lesion's centroid from :func:`latplan.anatomy.measure.measure_case` (``centroid_mm``,
LPS mm), and the written ``image.nii.gz``'s own affine (nibabel, RAS mm) for the voxel index.
"""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
from webtest_helpers import small_case

from latplan.anatomy.measure import measure_case
from latplan.web.viewer import write_viewer_files


def _check(index, case, measured, folder):
    img = nib.load(str(folder / "image.nii.gz"))
    spacing = np.asarray(case.image.spacing_kji_mm)
    assert [le["id"] for le in index["lesions"]] == case.lesion_ids
    for le in index["lesions"]:
        ref = np.asarray(measured[le["id"]]["centroid_mm"])
        centre = np.asarray(le["centre_lps_mm"])
        # within one voxel of the measurement centroid, axis by axis
        assert np.all(np.abs(centre - ref) <= spacing.max() + 1e-6), (le, ref)
        # the voxel index the page shows: the NIfTI affine (RAS) maps it back onto the centre (LPS)
        ras = img.affine @ np.array([*le["centre_ijk"], 1.0])
        lps = np.array([-ras[0], -ras[1], ras[2]])
        assert np.all(np.abs(lps - ref) <= spacing.max() + 1e-6), (le, lps, ref)


def test_web_viewer_lesion_centres_from_measurements(tmp_path):
    case = small_case(lesions=2)
    doc = measure_case(case)
    measured = {m["id"]: m for m in doc["lesions"]}
    index = write_viewer_files(case, [], tmp_path / "viewer", doc)
    assert json.loads((tmp_path / "viewer" / "index.json").read_text())["lesions"] == index["lesions"]
    _check(index, case, measured, tmp_path / "viewer")
    first = index["lesions"][0]
    m = measured[first["id"]]
    assert first["label"].startswith(f"{first['id']} · {m['max_diameter_mm']:.0f} mm")
    if m["segments"]:
        assert "segment" in first["label"] and str(m["segments"][0]) in first["label"]


def test_web_viewer_lesion_centres_without_measurements(tmp_path):
    """Without measurements (the stand-in planner) the centre is the mask's centroid: the same point."""
    case = small_case(lesions=2)
    measured = {m["id"]: m for m in measure_case(case)["lesions"]}
    index = write_viewer_files(case, [], tmp_path / "viewer")
    _check(index, case, measured, tmp_path / "viewer")
    assert [le["label"] for le in index["lesions"]] == case.lesion_ids
