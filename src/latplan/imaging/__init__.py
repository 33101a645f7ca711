"""Imaging I/O and geometry: `Volume` (array + LPS-mm affine), readers, writers, resampling.

Modules (docs/imaging.md): :mod:`~latplan.imaging.nifti` (``read_image``, ``read_labels``,
``write_nifti``), :mod:`~latplan.imaging.dicom_series` (``read_dicom_series``),
:mod:`~latplan.imaging.seg` (``read_seg``, ``write_seg``), :mod:`~latplan.imaging.rtstruct`
(``read_rtstruct``), :mod:`~latplan.imaging.integrity` (checks before loading),
:mod:`~latplan.imaging.resample`, :mod:`~latplan.imaging.orientation`,
:mod:`~latplan.imaging.case_folder` (``load_case_folder``, ``save_case_folder``),
:mod:`~latplan.imaging.output` (``prepare_output_dir``), :mod:`~latplan.imaging.insert`
(``insert_lesion``), :mod:`~latplan.imaging.totalsegmentator` (import of TotalSegmentator output).
Only `Volume` is re-exported here, so ``from latplan.imaging import Volume`` stays cheap and
the package imports nothing that imports :mod:`latplan.case`.
"""

from __future__ import annotations

from latplan.imaging.volume import Volume

__all__ = ["Volume"]
