"""The CTV DVH of a latplan export read back by dicompyler-core (another reader than latplan's), shared by
tests/export/test_export.py and tests/export/test_export_demo.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def dicompyler_ctv_dvh(files: dict[str, Path], lesion_id: str, prescription_gy: float) -> tuple[Any, float, float]:
    """(dicompyler-core DVH, D90 Gy, V100 %) of the ROI ``"<lesion_id> IBT CTV"`` from the export's RTSTRUCT and the
    lesion's IBT RTDOSE.

    dicompyler-core 0.5.6 (its latest release) imports ``pydicom.dicomio.read_file``, a name pydicom 3 removed (it
    is ``pydicom.dcmread``); the alias is restored here so the released reader runs as is."""
    import pydicom
    import pydicom.dicomio

    if not hasattr(pydicom.dicomio, "read_file"):
        pydicom.dicomio.read_file = pydicom.dcmread  # type: ignore[attr-defined]
    from dicompylercore import dicomparser, dvhcalc

    rtstruct = str(files["dicom_rtstruct"])
    ss = dicomparser.DicomParser(rtstruct)
    roi = next(n for n, s in ss.GetStructures().items() if s["name"] == f"{lesion_id} IBT CTV")
    dvh = dvhcalc.get_dvh(rtstruct, str(files[f"dicom_rtdose/{lesion_id}/ibt"]), roi)
    d90 = float(dvh.relative_volume.statistic("D90").value)
    v100 = float(dvh.relative_volume.statistic(f"V{prescription_gy:g}Gy").value)
    return dvh, d90, v100
