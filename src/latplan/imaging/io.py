"""Re-exports of the per-format readers and writers (kept for code outside the imaging package).

New code imports from the format modules directly: :mod:`latplan.imaging.nifti` (NIfTI/NRRD/MHA),
:mod:`latplan.imaging.dicom_series`, :mod:`latplan.imaging.seg` (DICOM SEG) and
:mod:`latplan.imaging.rtstruct`. Input checks shared by all of them are in
:mod:`latplan.imaging.integrity`.
"""

from __future__ import annotations

from latplan.imaging.dicom_series import DicomSeries, list_dicom_series, load_dicom_series, read_dicom_series
from latplan.imaging.nifti import read_image, read_labels, volume_from_sitk, volume_to_sitk, write_nifti
from latplan.imaging.rtstruct import read_rtstruct, rtstruct_masks
from latplan.imaging.seg import read_seg, write_seg

__all__ = [
    "DicomSeries",
    "list_dicom_series",
    "load_dicom_series",
    "read_dicom_series",
    "read_image",
    "read_labels",
    "read_rtstruct",
    "read_seg",
    "rtstruct_masks",
    "volume_from_sitk",
    "volume_to_sitk",
    "write_nifti",
    "write_seg",
]
