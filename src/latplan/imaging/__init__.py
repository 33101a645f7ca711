"""Imaging I/O and geometry: `Volume` (array + LPS-mm affine), readers, writers, resampling.

Public entry points (docs/imaging.md): :func:`read_image`, :func:`read_labels`,
:func:`read_dicom_series`, :func:`read_seg`, :func:`read_rtstruct`, :func:`write_nifti`,
:func:`write_seg`, :func:`resample_labels_to`, :func:`resample_image_to`, :func:`reorient`,
:func:`load_case_folder`, :func:`save_case_folder`, :func:`insert_lesion`.
Heavy modules are imported lazily so ``from latplan.imaging import Volume`` stays cheap.
"""

from __future__ import annotations

from typing import Any

from latplan.imaging.volume import Volume

__all__ = [
    "Volume",
    "insert_lesion",
    "load_case_folder",
    "load_case_from_images",
    "read_dicom_series",
    "read_image",
    "read_labels",
    "read_rtstruct",
    "read_seg",
    "reorient",
    "resample_image_to",
    "resample_labels_to",
    "save_case_folder",
    "write_nifti",
    "write_seg",
]

_LAZY = {
    "read_image": "latplan.imaging.io",
    "read_labels": "latplan.imaging.io",
    "read_dicom_series": "latplan.imaging.io",
    "read_seg": "latplan.imaging.io",
    "read_rtstruct": "latplan.imaging.io",
    "write_nifti": "latplan.imaging.io",
    "write_seg": "latplan.imaging.io",
    "resample_labels_to": "latplan.imaging.resample",
    "resample_image_to": "latplan.imaging.resample",
    "reorient": "latplan.imaging.orientation",
    "load_case_folder": "latplan.imaging.case_folder",
    "load_case_from_images": "latplan.imaging.case_folder",
    "save_case_folder": "latplan.imaging.case_folder",
    "insert_lesion": "latplan.imaging.insert",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'latplan.imaging' has no attribute {name!r}")
