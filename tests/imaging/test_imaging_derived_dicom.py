"""insert-lesion on a DICOM case writes DICOM: a derived series + SEG (issue [L] §5).

References: DICOM PS3.3 C.7.6.1 (Image Type value 1 DERIVED, value 2 SECONDARY; Derivation Description),
C.7.1.1 / C.7.2.1 (Patient and Study identity kept), PS3.3 C.8.20 (Segmentation referencing the series);
data: dcmqi CT slices + liver SEG (QIICR/dcmqi @b6137d9e, BSD-3). Stored values round-trip exactly
(RescaleSlope 1, integer HU values are representable).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pydicom
import pytest
from real_cases import dcmqi_seg_case_folder
from typer.testing import CliRunner

from latplan.cli import app
from latplan.imaging.case_folder import load_case_folder


@pytest.mark.shared_data
def test_insert_lesion_dicom_in_dicom_out(shared_data: Path, tmp_path: Path) -> None:
    src = dcmqi_seg_case_folder(shared_data, tmp_path / "src", "DCM-1")
    out = tmp_path / "out"
    r = CliRunner().invoke(app, ["insert-lesion", str(src), "--diameter-mm", "3", "--out", str(out), "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["lesion_id"] == "lesion_1"
    assert sorted(p.name for p in out.iterdir()) == ["case.yaml", "dicom", "seg.dcm"]
    old = [pydicom.dcmread(str(p)) for p in sorted((src / "dicom").iterdir())]
    new = [pydicom.dcmread(str(p)) for p in sorted((out / "dicom").iterdir())]
    assert len(new) == len(old)
    assert {ds.PatientID for ds in new} == {old[0].PatientID}
    assert {ds.StudyInstanceUID for ds in new} == {old[0].StudyInstanceUID}
    assert len({ds.SeriesInstanceUID for ds in new}) == 1 and new[0].SeriesInstanceUID != old[0].SeriesInstanceUID
    assert not {ds.SOPInstanceUID for ds in new} & {ds.SOPInstanceUID for ds in old}
    assert all(ds.ImageType[0] == "DERIVED" and ds.ImageType[1] == "SECONDARY" for ds in new)
    assert all("synthetic" in ds.DerivationDescription and "lesion_1" in ds.DerivationDescription for ds in new)
    seg = pydicom.dcmread(str(out / "seg.dcm"))
    assert seg.StudyInstanceUID == old[0].StudyInstanceUID
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == new[0].SeriesInstanceUID
    before = load_case_folder(src)
    after = load_case_folder(out)
    assert after.lesion_ids == ["lesion_1"] and after.image.same_geometry(before.image)
    lesion = after.mask_array("lesion_1")
    assert lesion.sum() >= 8
    np.testing.assert_array_equal(after.image.array[~lesion], before.image.array[~lesion])
    assert float(after.image.array[lesion].mean()) < float(before.image.array[lesion].mean()) - 20
