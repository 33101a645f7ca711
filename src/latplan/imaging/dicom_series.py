"""DICOM CT/MR series (pydicom): grouping, slice geometry checks, HU rescaling.

Geometry comes from ImagePositionPatient along the slice normal, never from SliceThickness,
which is not the spacing between slices. Problems are named subclasses of
:class:`~latplan.errors.DicomError` whose message names the file and the position.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from latplan.errors import InvalidImageError
from latplan.imaging.errors import (
    DuplicateSliceError,
    GantryTiltError,
    MissingSliceError,
    MixedSeriesError,
    NonOrthonormalOrientationError,
    NonUniformSpacingError,
    NotDicomSeriesError,
    TruncatedDicomError,
)
from latplan.imaging.integrity import check_memory_estimate
from latplan.imaging.volume import Volume

if TYPE_CHECKING:
    from pydicom import Dataset

__all__ = [
    "DicomSeries",
    "datasets_from_source",
    "dcmread_checked",
    "list_dicom_series",
    "load_dicom_series",
    "read_dicom_series",
    "slice_orientation",
]

log = logging.getLogger(__name__)

#: tolerances of the DICOM series checks (geometry, not clinical numbers)
MISSING_SLICE_FACTOR = 1.5  # a gap > 1.5 × median spacing means a slice is missing (brief)
SPACING_REL_TOL = 0.01  # spacing deviating more than 1 % from the median is "non-uniform"
SPACING_ABS_TOL_MM = 0.01  # ... but ignore rounding below 0.01 mm
ORTHONORMAL_TOL = 1e-3  # |r|, |c| = 1 and r·c = 0 within this
TILT_TOL = 1e-3  # lateral drift of slice origins per mm along the normal


@dataclass
class DicomSeries:
    """One DICOM image series read into a `Volume`, with its sorted datasets (pixel data included)."""

    volume: Volume
    datasets: list[Dataset] = field(repr=False)
    files: list[Path]
    series_uid: str
    frame_of_reference_uid: str | None
    modality: str
    skipped: list[str] = field(default_factory=list)


def _is_dicom_file(path: Path) -> bool:
    try:
        with open(path, "rb") as fh:
            head = fh.read(132)
    except OSError:
        return False
    return len(head) >= 132 and head[128:132] == b"DICM"


def dcmread_checked(path: Path, stop_before_pixels: bool = False) -> Dataset:
    import warnings

    import pydicom

    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            ds = pydicom.dcmread(str(path), stop_before_pixels=stop_before_pixels)
    except Exception as exc:  # pydicom raises many types for damaged files
        raise TruncatedDicomError(
            f"DICOM file {path.name} (in {path.parent}) cannot be parsed: {type(exc).__name__}: {exc}. "
            "The file is truncated or damaged; re-export the series."
        ) from None
    eof = [str(w.message) for w in caught if "end of file" in str(w.message).lower()]
    if eof or ("SOPClassUID" not in ds and "Modality" not in ds):
        why = eof[0].split(" in file ")[0] if eof else "no SOPClassUID/Modality could be read"
        raise TruncatedDicomError(
            f"DICOM file {path.name} (in {path.parent}) is truncated: {why}. Re-export the series or remove the file."
        )
    return ds


def _series_key(ds: Dataset) -> str:
    return str(getattr(ds, "SeriesInstanceUID", "") or "")


def _is_image(ds: Dataset) -> bool:
    return "PixelData" in ds and "ImagePositionPatient" in ds and "ImageOrientationPatient" in ds  # type: ignore[operator]


def _is_localizer(ds: Dataset) -> bool:
    image_type = [str(t).upper() for t in (getattr(ds, "ImageType", None) or [])]
    return "LOCALIZER" in image_type


def _scan_folder(folder: Path) -> tuple[dict[str, list[tuple[Path, Dataset]]], list[str]]:
    """Group image datasets of ``folder`` by SeriesInstanceUID; return groups and skip notes."""
    if not folder.is_dir():
        raise NotDicomSeriesError(f"{folder} is not a folder; read_dicom_series needs the folder of one series.")
    groups: dict[str, list[tuple[Path, Dataset]]] = {}
    skipped: list[str] = []
    for path in sorted(p for p in folder.iterdir() if p.is_file()):
        if path.name.upper() == "DICOMDIR":
            continue
        if not _is_dicom_file(path):
            if path.suffix.lower() in (".dcm", ".ima", ""):
                # no DICM preamble: try anyway (older files), failures are truncation
                try:
                    ds = dcmread_checked(path)
                except TruncatedDicomError:
                    if path.suffix.lower() == ".dcm":
                        raise
                    skipped.append(f"{path.name}: not a DICOM file")
                    continue
            else:
                skipped.append(f"{path.name}: not a DICOM file")
                continue
        else:
            ds = dcmread_checked(path)
        if "ImagePositionPatient" in ds and "PixelData" not in ds and "Rows" in ds:  # type: ignore[operator]
            raise TruncatedDicomError(
                f"DICOM file {path.name} (in {folder}) has an image header but no pixel data: the file is "
                "truncated. Re-export or remove it."
            )
        if not _is_image(ds):
            skipped.append(f"{path.name}: not an image slice ({getattr(ds, 'Modality', '?')})")
            continue
        if _is_localizer(ds):
            skipped.append(f"{path.name}: localizer skipped")
            continue
        groups.setdefault(_series_key(ds), []).append((path, ds))
    if not groups:
        subdirs = sorted(p.name for p in folder.iterdir() if p.is_dir())
        hint = f" It has sub-folders ({', '.join(subdirs[:5])}): point to the one holding the slices." if subdirs else ""
        raise NotDicomSeriesError(
            f"no DICOM image slices found in {folder}" + (f" (skipped: {'; '.join(skipped[:5])})" if skipped else "")
            + ". Point to the folder that holds the CT/MR slices." + hint
        )
    return groups, skipped


def list_dicom_series(folder: str | os.PathLike[str]) -> list[dict[str, object]]:
    """Describe the image series found in ``folder``: uid, number of slices, description, modality."""
    groups, _ = _scan_folder(Path(folder))
    out = []
    for uid, items in groups.items():
        ds = items[0][1]
        out.append(
            {
                "series_uid": uid,
                "slices": len(items),
                "description": str(getattr(ds, "SeriesDescription", "") or ""),
                "modality": str(getattr(ds, "Modality", "") or ""),
                "files": [p.name for p, _ in items],
            }
        )
    return out


def slice_orientation(ds: Dataset, name: str) -> tuple[np.ndarray, np.ndarray]:
    iop = np.asarray([float(x) for x in ds.ImageOrientationPatient], dtype=np.float64)
    if iop.shape != (6,) or not np.all(np.isfinite(iop)):
        raise NonOrthonormalOrientationError(f"{name}: ImageOrientationPatient must hold 6 finite numbers; got {iop.tolist()}.")
    r, c = iop[:3], iop[3:]
    nr, nc, dot = float(np.linalg.norm(r)), float(np.linalg.norm(c)), float(np.dot(r, c))
    if abs(nr - 1) > ORTHONORMAL_TOL or abs(nc - 1) > ORTHONORMAL_TOL or abs(dot) > ORTHONORMAL_TOL:
        raise NonOrthonormalOrientationError(
            f"{name}: ImageOrientationPatient {iop.tolist()} is not orthonormal (|row| = {nr:.4f}, "
            f"|column| = {nc:.4f}, row·column = {dot:.4f}; each must be 1, 1, 0 within {ORTHONORMAL_TOL}). "
            "The header is corrupt or the series was resliced incorrectly."
        )
    return r / nr, c / nc


def _stack_geometry(
    items: Sequence[tuple[Path, Dataset]], folder: Path
) -> tuple[list[tuple[Path, Dataset]], np.ndarray]:
    """Check and sort slices; return sorted items and the affine."""
    first_path, first = items[0]
    r, c = slice_orientation(first, first_path.name)
    rows, cols = int(first.Rows), int(first.Columns)  # type: ignore[attr-defined]
    ps = [float(x) for x in first.PixelSpacing]  # type: ignore[attr-defined]
    for path, ds in items[1:]:
        r2, c2 = slice_orientation(ds, path.name)
        if np.max(np.abs(r2 - r)) > ORTHONORMAL_TOL or np.max(np.abs(c2 - c)) > ORTHONORMAL_TOL:
            raise MixedSeriesError(
                f"{path.name} has orientation {np.round(np.r_[r2, c2], 4).tolist()} but {first_path.name} has "
                f"{np.round(np.r_[r, c], 4).tolist()}: one series holds slices of two orientations (e.g. axial + "
                f"a reformat) in {folder}. Move one set of slices to its own folder."
            )
        if int(ds.Rows) != rows or int(ds.Columns) != cols:  # type: ignore[attr-defined]
            raise MixedSeriesError(
                f"{path.name} is {ds.Rows}×{ds.Columns} pixels but {first_path.name} is {rows}×{cols}: "  # type: ignore[attr-defined]
                f"slices of different matrix sizes mixed in {folder}."
            )
        ps2 = [float(x) for x in ds.PixelSpacing]  # type: ignore[attr-defined]
        if np.max(np.abs(np.subtract(ps2, ps))) > 1e-3:
            raise MixedSeriesError(
                f"{path.name} has PixelSpacing {ps2} mm but {first_path.name} has {ps} mm: mixed series in {folder}."
            )
    if min(ps) <= 0 or not np.all(np.isfinite(ps)):
        raise InvalidImageError(f"{first_path.name}: PixelSpacing {ps} mm must be positive and finite.")
    normal = np.cross(r, c)
    pos = np.asarray([[float(x) for x in ds.ImagePositionPatient] for _, ds in items])  # type: ignore[attr-defined]
    if not np.all(np.isfinite(pos)):
        bad_files = [items[int(n)][0].name for n in np.nonzero(~np.all(np.isfinite(pos), axis=1))[0]]
        raise InvalidImageError(f"ImagePositionPatient is not finite in {', '.join(bad_files)} ({folder}).")
    along = pos @ normal
    order = np.argsort(along, kind="stable")
    items = [items[n] for n in order]
    pos, along = pos[order], along[order]
    names = [p.name for p, _ in items]
    n = len(items)
    if n == 1:
        ds = items[0][1]
        dz = float(getattr(ds, "SpacingBetweenSlices", None) or getattr(ds, "SliceThickness", None) or 1.0)
        step = normal * abs(dz)
    else:
        diffs = np.diff(along)
        dup = np.nonzero(diffs < SPACING_ABS_TOL_MM)[0]
        if dup.size:
            a = dup[0]
            raise DuplicateSliceError(
                f"{names[a]} and {names[a + 1]} lie at the same position {along[a]:.3f} mm along the slice normal "
                f"in {folder}: two acquisitions (or duplicated files) are mixed. Keep one of them."
            )
        med = float(np.median(diffs))
        big = np.nonzero(diffs > MISSING_SLICE_FACTOR * med)[0]
        if big.size:
            a = big[0]
            raise MissingSliceError(
                f"slice missing in {folder}: the gap between {names[a]} (at {along[a]:.2f} mm along the normal, "
                f"position {np.round(pos[a], 2).tolist()}) and {names[a + 1]} (at {along[a + 1]:.2f} mm) is "
                f"{diffs[a]:.2f} mm, more than {MISSING_SLICE_FACTOR}× the median spacing {med:.2f} mm "
                f"({len(big)} such gap(s)). Re-export the complete series."
            )
        dev = np.abs(diffs - med)
        bad = np.nonzero(dev > max(SPACING_REL_TOL * med, SPACING_ABS_TOL_MM))[0]
        if bad.size:
            a = bad[0]
            raise NonUniformSpacingError(
                f"non-uniform slice spacing in {folder}: {names[a]} → {names[a + 1]} is {diffs[a]:.3f} mm while the "
                f"median is {med:.3f} mm (spacings range {diffs.min():.3f}–{diffs.max():.3f} mm). latplan needs "
                "a regular grid: resample the series to uniform spacing first."
            )
        total = pos[-1] - pos[0]
        lateral = total - np.dot(total, normal) * normal
        if np.linalg.norm(lateral) > TILT_TOL * max(abs(float(np.dot(total, normal))), 1.0) + 1e-3:
            tilt_deg = float(np.degrees(np.arctan2(np.linalg.norm(lateral), abs(np.dot(total, normal)))))
            raise GantryTiltError(
                f"gantry tilt / sheared stack in {folder}: slice origins drift {np.linalg.norm(lateral):.2f} mm "
                f"sideways between {names[0]} and {names[-1]} (≈ {tilt_deg:.2f}° from the slice normal). "
                "Resample the series onto an orthogonal grid (tilt correction) before loading."
            )
        step = normal * float(np.mean(diffs))
    tilt_attr = getattr(items[0][1], "GantryDetectorTilt", None)
    if tilt_attr not in (None, "") and abs(float(tilt_attr)) > 0.01 and n > 1:
        log.info("GantryDetectorTilt %.2f° in %s, but slice positions follow the normal: accepted.", float(tilt_attr), folder)
    aff = np.eye(4)
    aff[:3, 0] = r * ps[1]  # i: along a row (column index), spacing between columns
    aff[:3, 1] = c * ps[0]  # j: down a column (row index), spacing between rows
    aff[:3, 2] = step
    aff[:3, 3] = pos[0]
    return items, aff


def _pixels_hu(path: Path, ds: Dataset) -> np.ndarray:
    try:
        arr = ds.pixel_array  # type: ignore[attr-defined]
    except Exception as exc:
        raise TruncatedDicomError(
            f"pixel data of {path.name} (in {path.parent}) cannot be decoded: {type(exc).__name__}: {exc}. "
            "The file is truncated or uses an unsupported compression; re-export it uncompressed."
        ) from None
    if arr.ndim != 2:
        raise NotDicomSeriesError(
            f"{path.name} holds {arr.ndim}-D pixel data (multi-frame or colour); latplan reads one 2-D slice per file."
        )
    slope = float(getattr(ds, "RescaleSlope", None) or 1.0)
    intercept = float(getattr(ds, "RescaleIntercept", None) or 0.0)
    out: np.ndarray = (arr.astype(np.float32) * np.float32(slope) + np.float32(intercept)).astype(np.float32)
    return out


def _series_from_items(
    items: list[tuple[Path, Dataset]], folder: Path, uid: str, skipped: list[str], max_gb: float | None = None
) -> DicomSeries:
    items, aff = _stack_geometry(items, folder)
    ds_first = items[0][1]
    bits = int(getattr(ds_first, "BitsAllocated", 16) or 16)
    check_memory_estimate(
        folder, (len(items), int(ds_first.Rows), int(ds_first.Columns)), max(bits // 8, 1), max_gb  # type: ignore[attr-defined]
    )
    slices = [_pixels_hu(p, ds) for p, ds in items]
    vol = Volume(np.stack(slices, axis=0), aff)
    ds0 = items[0][1]
    return DicomSeries(
        volume=vol,
        datasets=[ds for _, ds in items],
        files=[p for p, _ in items],
        series_uid=uid,
        frame_of_reference_uid=str(getattr(ds0, "FrameOfReferenceUID", "") or "") or None,
        modality=str(getattr(ds0, "Modality", "") or "CT"),
        skipped=skipped,
    )


def load_dicom_series(
    folder: str | os.PathLike[str], series_uid: str | None = None, max_gb: float | None = None
) -> DicomSeries:
    """Read one DICOM image series from ``folder`` with its datasets (for SEG writing).

    Several series in one folder raise :class:`MixedSeriesError` listing them, unless
    ``series_uid`` picks one (see :func:`list_dicom_series`). Localizers and non-image objects
    (SEG, RTSTRUCT...) in the folder are skipped.
    """
    folder = Path(folder)
    groups, skipped = _scan_folder(folder)
    if series_uid is not None:
        if series_uid not in groups:
            raise MixedSeriesError(f"series {series_uid!r} not found in {folder}; present: {', '.join(groups) or 'none'}.")
        return _series_from_items(groups[series_uid], folder, series_uid, skipped, max_gb)
    if len(groups) > 1:
        desc = "; ".join(
            f"{uid or '<no SeriesInstanceUID>'}: {len(items)} slices (e.g. {items[0][0].name})" for uid, items in groups.items()
        )
        raise MixedSeriesError(
            f"{folder} mixes {len(groups)} DICOM series ({desc}). Put each series in its own folder, or pass "
            "series_uid= to pick one."
        )
    uid, items = next(iter(groups.items()))
    return _series_from_items(items, folder, uid, skipped, max_gb)


def read_dicom_series(
    folder: str | os.PathLike[str], series_uid: str | None = None, max_gb: float | None = None
) -> Volume:
    """Read a DICOM CT/MR series into a float32 `Volume` (HU for CT: stored × slope + intercept)."""
    return load_dicom_series(folder, series_uid, max_gb).volume


def datasets_from_source(source: str | os.PathLike[str] | Sequence[Dataset]) -> DicomSeries:
    if isinstance(source, str | os.PathLike):
        return load_dicom_series(source)
    items = []
    for n, ds in enumerate(source):
        name = Path(str(getattr(ds, "filename", "") or f"dataset_{n}"))
        items.append((name, ds))
    if not items:
        raise NotDicomSeriesError("no source datasets given.")
    return _series_from_items(items, Path("<datasets>"), _series_key(items[0][1]), [])
