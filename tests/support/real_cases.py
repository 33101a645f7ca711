"""Case folders assembled from the real data of ../shared/data/external for the imaging tests."""

from __future__ import annotations

import shutil
from pathlib import Path


def dcmqi_seg_case_folder(shared_data: Path, folder: Path, patient_id: str) -> Path:
    """``folder`` as a DICOM case folder (docs/case-format.md): the three dcmqi CT slices in ``dicom/``, the dcmqi
    liver SEG as ``seg.dcm`` (QIICR/dcmqi @b6137d9e, BSD-3) and a case.yaml naming ``patient_id`` (HCC primary)."""
    d = shared_data / "external" / "dcmqi-liver-seg"
    shutil.copytree(d / "ct", folder / "dicom")
    shutil.copyfile(d / "liver-seg.dcm", folder / "seg.dcm")
    (folder / "case.yaml").write_text(f"patient: {{id: {patient_id}, primary: hcc}}\n", encoding="utf-8")
    return folder
