"""Export round trips: DICOM SEG (lesions and predicted zones) read back with [A1]'s reader, and
the derived CT series it references lies on the case grid.

Reference: highdicom round-trip habit (highdicom tests/utils.py write_and_read_dataset: every writer is read back); tolerance: voxel
counts equal (binary segments on the same grid).
"""

from __future__ import annotations

import io
import zipfile

import numpy as np
from webtest_helpers import login, small_case, upload

from latplan.imaging.io import read_dicom_series, read_seg
from latplan.web.jobs import run_worker


def test_web_seg_export_round_trip(sqlite_client, sqlite_settings, case_zip, tmp_path):
    """export.seg.zip → seg.dcm + ct/ series; lesion_1 and its MWA zone come back voxel for voxel."""
    csrf = login(sqlite_client, "coord")
    case_id = upload(sqlite_client, csrf, case_zip).json()["id"]
    sqlite_client.post(f"/cases/{case_id}/plan", headers={"X-CSRF-Token": csrf})
    run_worker(sqlite_settings, once=True)
    r = sqlite_client.get(f"/cases/{case_id}/export.seg.zip")
    assert r.status_code == 200 and r.headers["content-type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(r.content)) as zf:
        zf.extractall(tmp_path / "x")
    ct = read_dicom_series(tmp_path / "x" / "ct")
    case = small_case()
    np.testing.assert_allclose(ct.affine, case.image.affine, atol=1e-4)
    np.testing.assert_allclose(ct.array, case.image.array, atol=0.01)  # HU kept through the derived series
    labels, names = read_seg(tmp_path / "x" / "seg.dcm", reference=ct)
    by_name = {v: k for k, v in names.items()}
    assert {"lesion_1", "zone lesion_1 mwa"} <= set(by_name)
    lesion = labels.array == by_name["lesion_1"]
    assert lesion.sum() == case.mask_array("lesion_1").sum() and np.array_equal(lesion, case.mask_array("lesion_1"))
    zone = labels.array == by_name["zone lesion_1 mwa"]
    assert zone.sum() > 0 and not (zone & lesion).any()  # lesion wins where both (one value a voxel)
