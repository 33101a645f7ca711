"""Readers and writers: NIfTI/NRRD (SimpleITK), DICOM series (pydicom), DICOM SEG (highdicom), RTSTRUCT.

Every reader returns a :class:`~latplan.imaging.volume.Volume` (array indexed (k, j, i),
affine (i, j, k, 1) → LPS mm). Geometry always comes from the file's own geometry fields
(ITK direction/origin/spacing, DICOM ImagePositionPatient along the slice normal), never
from SliceThickness, which is not the spacing between slices.

Problems are raised as named subclasses of :class:`~latplan.errors.DicomError` /
:class:`~latplan.errors.InvalidImageError` whose message names the file and the position.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from latplan.errors import (
    DicomError,
    EmptyStructureError,
    GeometryMismatchError,
    InvalidImageError,
    InvalidInputError,
)
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
from latplan.imaging.volume import Volume

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

log = logging.getLogger(__name__)

#: tolerances of the DICOM series checks (geometry, not clinical numbers)
MISSING_SLICE_FACTOR = 1.5  # a gap > 1.5 × median spacing means a slice is missing (brief)
SPACING_REL_TOL = 0.01  # spacing deviating more than 1 % from the median is "non-uniform"
SPACING_ABS_TOL_MM = 0.01  # ... but ignore rounding below 0.01 mm
ORTHONORMAL_TOL = 1e-3  # |r|, |c| = 1 and r·c = 0 within this
TILT_TOL = 1e-3  # lateral drift of slice origins per mm along the normal

_SEG_SOP_CLASSES = ("1.2.840.10008.5.1.4.1.1.66.4", "1.2.840.10008.5.1.4.1.1.66.7")  # SEG, Label Map SEG
_RTSTRUCT_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.481.3"
_LABEL_TRACKING_PREFIX = "latplan-label-"


# ---------------------------------------------------------------------------------------------
# SimpleITK bridge (NIfTI, NRRD, MHA...)
# ---------------------------------------------------------------------------------------------
def volume_from_sitk(image: object, source: str = "image") -> Volume:
    """Convert a SimpleITK image (LPS, ITK index order i, j, k) to a `Volume` (array k, j, i)."""
    import SimpleITK as sitk

    assert isinstance(image, sitk.Image)
    if image.GetDimension() != 3:
        raise InvalidImageError(
            f"{source}: expected a 3-D image, got {image.GetDimension()}-D (size {image.GetSize()}). "
            "Split 4-D series or stack 2-D slices first."
        )
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise InvalidImageError(
            f"{source}: expected one value per voxel, got {image.GetNumberOfComponentsPerPixel()} components "
            "(RGB or vector image); convert to a scalar image."
        )
    spacing = np.asarray(image.GetSpacing(), dtype=float)
    if not np.all(np.isfinite(spacing)) or np.any(spacing <= 0):
        raise InvalidImageError(
            f"{source}: voxel spacing {spacing.tolist()} mm (i, j, k) is not positive and finite. "
            "Fix the header (NIfTI pixdim / NRRD space directions)."
        )
    direction = np.asarray(image.GetDirection(), dtype=float).reshape(3, 3)
    aff = np.eye(4)
    aff[:3, :3] = direction @ np.diag(spacing)
    aff[:3, 3] = image.GetOrigin()
    arr = sitk.GetArrayFromImage(image)
    try:
        return Volume(arr, aff)
    except InvalidImageError as exc:
        raise InvalidImageError(f"{source}: {exc}") from None


def volume_to_sitk(volume: Volume) -> object:
    """Convert a `Volume` to a SimpleITK image (bool → uint8, int64 → int32 when it fits)."""
    import SimpleITK as sitk

    arr = volume.array
    if arr.dtype == bool:
        arr = arr.astype(np.uint8)
    elif arr.dtype == np.int64 or arr.dtype == np.uint64:
        if arr.size and (arr.min() < np.iinfo(np.int32).min or arr.max() > np.iinfo(np.int32).max):
            raise InvalidImageError("label values exceed the int32 range; renumber the labels.")
        arr = arr.astype(np.int32)
    elif arr.dtype == np.float16:
        arr = arr.astype(np.float32)
    img = sitk.GetImageFromArray(np.ascontiguousarray(arr))
    img.SetSpacing([float(s) for s in volume.spacing_mm])
    img.SetDirection([float(x) for x in volume.direction.reshape(-1)])
    img.SetOrigin([float(x) for x in volume.origin_mm])
    return img


def _require_file(path: Path, what: str) -> None:
    if not path.exists():
        raise InvalidInputError(f"{what} {path} does not exist; check the path.")


def _precheck_spacing(p: Path) -> None:
    """Catch NaN/zero spacing that ITK would silently replace by 1 mm (NRRD) or accept (NIfTI)."""
    name = p.name.lower()
    bad: str | None = None
    if name.endswith((".nrrd", ".nhdr")):
        with open(p, "rb") as fh:
            head = fh.read(4096).split(b"\n\n")[0].decode("latin-1", errors="replace").lower()
        for line in head.splitlines():
            if line.startswith(("space directions:", "spacings:")) and "nan" in line:
                bad = line.strip()
    elif name.endswith((".nii", ".nii.gz")):
        import nibabel as nib

        try:
            zooms = np.asarray(nib.load(str(p)).header.get_zooms()[:3], dtype=float)
        except Exception:  # unreadable headers are reported by SimpleITK below
            return
        if not np.all(np.isfinite(zooms)) or np.any(zooms <= 0):
            bad = f"pixdim {zooms.tolist()}"
    if bad is not None:
        raise InvalidImageError(
            f"image {p}: the header gives a zero, negative or NaN voxel spacing ({bad}). "
            "Fix the NIfTI pixdim / NRRD space directions; spacing must be positive mm."
        )


def read_image(path: str | os.PathLike[str]) -> Volume:
    """Read a 3-D image: NIfTI/NRRD/MHA file (SimpleITK) or a DICOM series folder (pydicom).

    CT images keep their stored values (HU for NIfTI exports; DICOM is rescaled to HU float32).
    """
    p = Path(path)
    _require_file(p, "image")
    if p.is_dir():
        return read_dicom_series(p)
    if p.suffix.lower() == ".dcm":
        raise NotDicomSeriesError(
            f"{p} is a single DICOM file; pass the folder holding the whole series (read_dicom_series)."
        )
    import SimpleITK as sitk

    _precheck_spacing(p)
    try:
        img = sitk.ReadImage(str(p))
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[-1] if str(exc).strip() else ""
        if "spacing" in str(exc).lower():
            raise InvalidImageError(
                f"image {p}: the header gives a zero, negative or NaN voxel spacing ({first.strip()}). "
                "Fix the NIfTI pixdim / NRRD space directions; spacing must be positive mm."
            ) from None
        raise InvalidImageError(
            f"cannot read image {p}: {first}. Supported: .nii, .nii.gz, .nrrd, .mha/.mhd, or a DICOM folder."
        ) from None
    return volume_from_sitk(img, str(p))


def read_labels(path: str | os.PathLike[str]) -> Volume:
    """Read an integer label map (NIfTI/NRRD); float maps holding whole numbers are accepted."""
    vol = read_image(path)
    arr = vol.array
    if arr.dtype.kind == "f":
        if not np.allclose(arr, np.round(arr)):
            raise InvalidImageError(
                f"label map {path} holds non-integer values (e.g. {arr[arr != np.round(arr)][:3].tolist()}); "
                "a label map must hold integer label values. Is this an image rather than labels?"
            )
        arr = np.round(arr).astype(np.int32)
    elif arr.dtype.kind == "b":
        arr = arr.astype(np.int32)
    else:
        arr = arr.astype(np.int32)
    if arr.size and arr.min() < 0:
        raise InvalidImageError(f"label map {path} holds negative values ({int(arr.min())}); labels must be ≥ 0.")
    return vol.with_array(arr)


def write_nifti(volume: Volume, path: str | os.PathLike[str]) -> Path:
    """Write a `Volume` as NIfTI (.nii or .nii.gz) with its LPS affine (ITK converts to RAS on disk)."""
    import SimpleITK as sitk

    p = Path(path)
    if not (p.name.endswith(".nii") or p.name.endswith(".nii.gz")):
        raise InvalidInputError(f"write_nifti needs a .nii or .nii.gz file name; got {p.name}.")
    d = volume.direction
    if not np.allclose(d.T @ d, np.eye(3), atol=1e-4):
        raise InvalidImageError("NIfTI cannot store a non-orthonormal direction matrix; resample the volume first.")
    sitk.WriteImage(volume_to_sitk(volume), str(p), useCompression=p.name.endswith(".gz"))
    return p


# ---------------------------------------------------------------------------------------------
# DICOM series
# ---------------------------------------------------------------------------------------------
@dataclass
class DicomSeries:
    """One DICOM image series read into a `Volume`, with its sorted datasets (pixel data included)."""

    volume: Volume
    datasets: list = field(repr=False)
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


def _dcmread(path: Path, stop_before_pixels: bool = False) -> object:
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


def _series_key(ds: object) -> str:
    return str(getattr(ds, "SeriesInstanceUID", "") or "")


def _is_image(ds: object) -> bool:
    return "PixelData" in ds and "ImagePositionPatient" in ds and "ImageOrientationPatient" in ds  # type: ignore[operator]


def _is_localizer(ds: object) -> bool:
    image_type = [str(t).upper() for t in (getattr(ds, "ImageType", None) or [])]
    return "LOCALIZER" in image_type


def _scan_folder(folder: Path) -> tuple[dict[str, list[tuple[Path, object]]], list[str]]:
    """Group image datasets of ``folder`` by SeriesInstanceUID; return groups and skip notes."""
    if not folder.is_dir():
        raise NotDicomSeriesError(f"{folder} is not a folder; read_dicom_series needs the folder of one series.")
    groups: dict[str, list[tuple[Path, object]]] = {}
    skipped: list[str] = []
    for path in sorted(p for p in folder.iterdir() if p.is_file()):
        if path.name.upper() == "DICOMDIR":
            continue
        if not _is_dicom_file(path):
            if path.suffix.lower() in (".dcm", ".ima", ""):
                # no DICM preamble: try anyway (older files), failures are truncation
                try:
                    ds = _dcmread(path)
                except TruncatedDicomError:
                    if path.suffix.lower() == ".dcm":
                        raise
                    skipped.append(f"{path.name}: not a DICOM file")
                    continue
            else:
                skipped.append(f"{path.name}: not a DICOM file")
                continue
        else:
            ds = _dcmread(path)
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


def _orientation(ds: object, name: str) -> tuple[np.ndarray, np.ndarray]:
    iop = np.asarray([float(x) for x in ds.ImageOrientationPatient], dtype=float)  # type: ignore[attr-defined]
    if iop.shape != (6,) or not np.all(np.isfinite(iop)):
        raise NonOrthonormalOrientationError(f"{name}: ImageOrientationPatient must hold 6 finite numbers; got {iop.tolist()}.")
    r, c = iop[:3], iop[3:]
    nr, nc, dot = np.linalg.norm(r), np.linalg.norm(c), float(np.dot(r, c))
    if abs(nr - 1) > ORTHONORMAL_TOL or abs(nc - 1) > ORTHONORMAL_TOL or abs(dot) > ORTHONORMAL_TOL:
        raise NonOrthonormalOrientationError(
            f"{name}: ImageOrientationPatient {iop.tolist()} is not orthonormal (|row| = {nr:.4f}, "
            f"|column| = {nc:.4f}, row·column = {dot:.4f}; each must be 1, 1, 0 within {ORTHONORMAL_TOL}). "
            "The header is corrupt or the series was resliced incorrectly."
        )
    return r / nr, c / nc


def _stack_geometry(
    items: Sequence[tuple[Path, object]], folder: Path
) -> tuple[list[tuple[Path, object]], np.ndarray]:
    """Check and sort slices; return sorted items and the affine."""
    first_path, first = items[0]
    r, c = _orientation(first, first_path.name)
    rows, cols = int(first.Rows), int(first.Columns)  # type: ignore[attr-defined]
    ps = [float(x) for x in first.PixelSpacing]  # type: ignore[attr-defined]
    for path, ds in items[1:]:
        r2, c2 = _orientation(ds, path.name)
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
        bad = [items[n][0].name for n in np.nonzero(~np.all(np.isfinite(pos), axis=1))[0]]
        raise InvalidImageError(f"ImagePositionPatient is not finite in {', '.join(bad)} ({folder}).")
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


def _pixels_hu(path: Path, ds: object) -> np.ndarray:
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
    return (arr.astype(np.float32) * np.float32(slope) + np.float32(intercept)).astype(np.float32)


def _series_from_items(items: list[tuple[Path, object]], folder: Path, uid: str, skipped: list[str]) -> DicomSeries:
    items, aff = _stack_geometry(items, folder)
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


def load_dicom_series(folder: str | os.PathLike[str], series_uid: str | None = None) -> DicomSeries:
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
        return _series_from_items(groups[series_uid], folder, series_uid, skipped)
    if len(groups) > 1:
        desc = "; ".join(
            f"{uid or '<no SeriesInstanceUID>'}: {len(items)} slices (e.g. {items[0][0].name})" for uid, items in groups.items()
        )
        raise MixedSeriesError(
            f"{folder} mixes {len(groups)} DICOM series ({desc}). Put each series in its own folder, or pass "
            "series_uid= to pick one."
        )
    uid, items = next(iter(groups.items()))
    return _series_from_items(items, folder, uid, skipped)


def read_dicom_series(folder: str | os.PathLike[str], series_uid: str | None = None) -> Volume:
    """Read a DICOM CT/MR series into a float32 `Volume` (HU for CT: stored × slope + intercept)."""
    return load_dicom_series(folder, series_uid).volume


def _datasets_from_source(source: str | os.PathLike[str] | Sequence[object]) -> DicomSeries:
    if isinstance(source, str | os.PathLike):
        return load_dicom_series(source)
    items = []
    for n, ds in enumerate(source):
        name = Path(str(getattr(ds, "filename", "") or f"dataset_{n}"))
        items.append((name, ds))
    if not items:
        raise NotDicomSeriesError("no source datasets given.")
    return _series_from_items(items, Path("<datasets>"), _series_key(items[0][1]), [])


# ---------------------------------------------------------------------------------------------
# DICOM SEG
# ---------------------------------------------------------------------------------------------
def _seg_frame_attr(ds: object, frame: int, seq: str) -> object | None:
    pf = getattr(ds, "PerFrameFunctionalGroupsSequence", None)
    if pf is not None and seq in pf[frame]:
        return pf[frame][seq][0]
    sf = getattr(ds, "SharedFunctionalGroupsSequence", None)
    if sf is not None and seq in sf[0]:
        return sf[0][seq][0]
    return None


def read_seg(
    path: str | os.PathLike[str], reference: Volume | None = None
) -> tuple[Volume, dict[int, str]]:
    """Read a DICOM SEG into a label map on the ``reference`` grid (or the SEG's own grid).

    Each frame is placed by its ImagePositionPatient (mm), so frame order does not matter.
    Label value = segment number, unless the segment was written by latplan (TrackingID
    ``latplan-label-<value>``), which restores the original label values. Overlapping
    segments: the higher segment number wins (a label map holds one value per voxel).
    """
    p = Path(path)
    _require_file(p, "SEG file")
    ds = _dcmread(p)
    if str(getattr(ds, "SOPClassUID", "")) not in _SEG_SOP_CLASSES:
        raise NotDicomSeriesError(f"{p.name} is not a DICOM SEG (SOP class {getattr(ds, 'SOPClassUID', '?')}).")
    try:
        frames = np.asarray(ds.pixel_array)
    except Exception as exc:
        raise TruncatedDicomError(f"pixel data of SEG {p.name} cannot be decoded: {type(exc).__name__}: {exc}.") from None
    n_frames = int(getattr(ds, "NumberOfFrames", 1) or 1)
    if frames.ndim == 2:
        frames = frames[None]
    if frames.shape[0] != n_frames:
        raise TruncatedDicomError(f"SEG {p.name} declares {n_frames} frames but holds {frames.shape[0]}.")
    seg_type = str(getattr(ds, "SegmentationType", "BINARY")).upper()
    if seg_type == "FRACTIONAL":
        maxv = float(getattr(ds, "MaximumFractionalValue", 255) or 255)
        frames = (frames.astype(float) / maxv) >= 0.5
    # segment number → label value and name
    seg_value: dict[int, int] = {}
    names: dict[int, str] = {}
    for item in ds.SegmentSequence:
        num = int(item.SegmentNumber)
        if num == 0:  # LABELMAP SEGs may describe the background as segment 0
            continue
        value = num
        tid = str(getattr(item, "TrackingID", "") or "")
        if tid.startswith(_LABEL_TRACKING_PREFIX):
            try:
                value = int(tid[len(_LABEL_TRACKING_PREFIX) :])
            except ValueError:
                value = num
        seg_value[num] = value
        names[value] = str(getattr(item, "SegmentLabel", "") or f"segment_{num}")
    # geometry of frames
    orient = _seg_frame_attr(ds, 0, "PlaneOrientationSequence")
    measures = _seg_frame_attr(ds, 0, "PixelMeasuresSequence")
    if orient is None or measures is None:
        raise DicomError(f"SEG {p.name} lacks PlaneOrientationSequence/PixelMeasuresSequence: cannot place its frames.")
    r, c = _orientation(orient, p.name)
    ps = [float(x) for x in measures.PixelSpacing]
    positions = []
    segnums = []
    for f in range(n_frames):
        pp = _seg_frame_attr(ds, f, "PlanePositionSequence")
        si = _seg_frame_attr(ds, f, "SegmentIdentificationSequence")
        if pp is None:
            raise DicomError(f"SEG {p.name} frame {f + 1} has no ImagePositionPatient; cannot place it.")
        positions.append([float(x) for x in pp.ImagePositionPatient])
        segnums.append(int(si.ReferencedSegmentNumber) if si is not None else 1)
    positions_arr = np.asarray(positions)
    if reference is None:
        normal = np.cross(r, c)
        along = positions_arr @ normal
        uniq = np.unique(np.round(along, 3))
        if uniq.size > 1:
            dz = float(np.median(np.diff(uniq)))
        else:
            dz = float(getattr(measures, "SpacingBetweenSlices", None) or getattr(measures, "SliceThickness", None) or 1.0)
        first = positions_arr[int(np.argmin(along))]
        n_k = int(np.rint((uniq[-1] - uniq[0]) / dz)) + 1 if uniq.size > 1 else 1
        aff = np.eye(4)
        aff[:3, 0], aff[:3, 1], aff[:3, 2], aff[:3, 3] = r * ps[1], c * ps[0], normal * dz, first
        reference = Volume(np.zeros((n_k, int(ds.Rows), int(ds.Columns)), np.int32), aff)
    else:
        if np.max(np.abs(reference.direction[:, 0] - r)) > 1e-3 or np.max(np.abs(reference.direction[:, 1] - c)) > 1e-3:
            raise GeometryMismatchError(
                f"SEG {p.name} frames are oriented {np.round(np.r_[r, c], 4).tolist()} but the reference image "
                f"rows/columns run along {np.round(reference.direction[:, :2].T.reshape(-1), 4).tolist()}; "
                "give the series the SEG was drawn on."
            )
        if abs(reference.spacing_mm[0] - ps[1]) > 1e-3 or abs(reference.spacing_mm[1] - ps[0]) > 1e-3:
            raise GeometryMismatchError(
                f"SEG {p.name} pixel spacing {ps} mm differs from the reference's "
                f"{np.round(reference.spacing_mm[1::-1], 4).tolist()} mm (row, column)."
            )
    out = np.zeros(reference.shape, dtype=np.int32)
    lut = np.zeros(max(seg_value, default=0) + 1, dtype=np.int32)
    for num, value in seg_value.items():
        lut[num] = value
    idx = reference.mm_to_index(positions_arr)  # (k, j, i) of each frame's first pixel
    rows, cols = frames.shape[1:]
    order = np.argsort(segnums, kind="stable")  # higher segment numbers painted last
    for f in order:
        k, j0, i0 = idx[f]
        kr, jr, ir = int(np.rint(k)), int(np.rint(j0)), int(np.rint(i0))
        if abs(k - kr) > 0.1 or abs(j0 - jr) > 0.1 or abs(i0 - ir) > 0.1:
            raise GeometryMismatchError(
                f"SEG {p.name} frame {f + 1} at {np.round(positions_arr[f], 2).tolist()} mm does not fall on a voxel "
                f"of the reference grid (index k, j, i = {np.round(idx[f], 2).tolist()}); the SEG was not drawn on "
                "this series."
            )
        if not 0 <= kr < reference.shape[0]:
            raise GeometryMismatchError(
                f"SEG {p.name} frame {f + 1} at {np.round(positions_arr[f], 2).tolist()} mm lies outside the reference "
                f"series (slice index {kr}, series has {reference.shape[0]}); the referenced series is incomplete."
            )
        j1, i1 = max(jr, 0), max(ir, 0)
        j2, i2 = min(jr + rows, reference.shape[1]), min(ir + cols, reference.shape[2])
        if j2 <= j1 or i2 <= i1:
            continue
        window = frames[f][j1 - jr : j2 - jr, i1 - ir : i2 - ir]
        if seg_type == "LABELMAP":  # pixel values are segment numbers
            vals = lut[np.clip(window.astype(np.int64), 0, lut.size - 1)]
            out[kr, j1:j2, i1:i2][vals > 0] = vals[vals > 0]
        else:
            out[kr, j1:j2, i1:i2][window.astype(bool)] = seg_value.get(segnums[f], segnums[f])
    return reference.with_array(out), names


def _segment_codes(name: str) -> tuple[object, object]:
    from pydicom.sr.codedict import codes

    if name.startswith("lesion") or name in ("tumour", "tumor"):
        return codes.SCT.MorphologicallyAbnormalStructure, codes.SCT.Neoplasm
    if name == "liver":
        return codes.SCT.Organ, codes.SCT.Liver
    return codes.SCT.AnatomicalStructure, codes.SCT.Organ


def write_seg(
    labels: Volume,
    label_names: Mapping[int, str],
    source_folder_or_datasets: str | os.PathLike[str] | Sequence[object],
    path: str | os.PathLike[str],
) -> Path:
    """Write a label map as a BINARY DICOM SEG (highdicom) referencing its source series.

    ``labels`` must lie on the source series grid (checked). Each label value present becomes a
    segment (numbered 1..N in value order) named by ``label_names`` with TrackingID
    ``latplan-label-<value>``, so :func:`read_seg` restores the original values.
    """
    import highdicom as hd
    from pydicom.uid import generate_uid

    series = _datasets_from_source(source_folder_or_datasets)
    series.volume.require_same_geometry(labels, "label map and SEG source series")
    arr = np.asarray(labels.array)
    values = [int(v) for v in np.unique(arr) if v != 0]
    if not values:
        raise EmptyStructureError("the label map is empty (all zero): a DICOM SEG needs at least one labelled voxel.")
    missing = [v for v in values if v not in label_names]
    if missing:
        raise InvalidInputError(f"label values {missing} present in the map have no name in label_names; name them.")
    seg_arr = np.zeros(arr.shape, dtype=np.uint16)
    descriptions = []
    for num, v in enumerate(values, start=1):
        seg_arr[arr == v] = num
        cat, typ = _segment_codes(label_names[v])
        descriptions.append(
            hd.seg.SegmentDescription(
                segment_number=num,
                segment_label=str(label_names[v])[:64],
                segmented_property_category=cat,
                segmented_property_type=typ,
                algorithm_type=hd.seg.SegmentAlgorithmTypeValues.MANUAL,
                tracking_uid=generate_uid(),
                tracking_id=f"{_LABEL_TRACKING_PREFIX}{v}",
            )
        )
    import warnings

    import pydicom

    datasets = []
    for src in series.datasets:  # shallow copies: clean header quirks without touching the source
        ds = pydicom.Dataset(src)
        ds.file_meta = getattr(src, "file_meta", pydicom.dataset.FileMetaDataset())
        if "SpecificCharacterSet" in ds and not str(ds.SpecificCharacterSet or "").strip():
            del ds.SpecificCharacterSet
        datasets.append(ds)
    for ds in datasets:  # highdicom needs a series UID; some exports leave it empty
        if not str(getattr(ds, "SeriesInstanceUID", "") or ""):
            raise DicomError(
                "the source series has an empty SeriesInstanceUID; a DICOM SEG must reference it. "
                "Give the slices a SeriesInstanceUID first."
            )
    try:
        from latplan import __version__ as version
    except ImportError:  # pragma: no cover
        version = "0"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # person-name style warnings about the source header
        seg = _make_seg(hd, datasets, seg_arr, descriptions, version)
    out = Path(path)
    seg.save_as(str(out))
    return out


def _make_seg(hd: object, datasets: list, seg_arr: np.ndarray, descriptions: list, version: str) -> object:
    from pydicom.uid import generate_uid

    return hd.seg.Segmentation(  # type: ignore[attr-defined]
        source_images=datasets,
        pixel_array=seg_arr,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descriptions,
        series_instance_uid=generate_uid(),
        series_number=900,
        sop_instance_uid=generate_uid(),
        instance_number=1,
        manufacturer="latplan",
        manufacturer_model_name="latplan",
        software_versions=str(version),
        device_serial_number="0",
        omit_empty_frames=True,
    )


# ---------------------------------------------------------------------------------------------
# RTSTRUCT
# ---------------------------------------------------------------------------------------------
def _contour_data(item: object) -> np.ndarray:
    """ContourData as floats; parses the raw DS bytes directly (pydicom's DS conversion is slow)."""
    raw = item.get_item(0x30060050)  # type: ignore[attr-defined]
    value = getattr(raw, "value", None)
    if isinstance(value, bytes | bytearray):
        try:
            return np.asarray(bytes(value).strip(b" \x00").split(b"\\"), dtype=float)
        except ValueError:
            pass
    return np.asarray([float(x) for x in item.ContourData], dtype=float)  # type: ignore[attr-defined]


def _fill_even_odd(polygons: Sequence[np.ndarray], shape: tuple[int, int]) -> np.ndarray:
    """Rasterise polygons (each (N, 2) as fractional (row, col)) with the even-odd rule.

    A pixel is inside when its centre lies inside an odd number of polygons (so inner
    contours are holes). Scanline with half-open crossing rule, vectorised over all edges.
    """
    nj, ni = shape
    rows_all: list[np.ndarray] = []
    xs_all: list[np.ndarray] = []
    for poly in polygons:
        y0, x0 = poly[:, 0], poly[:, 1]
        y1, x1 = np.roll(y0, -1), np.roll(x0, -1)
        lo, hi = np.minimum(y0, y1), np.maximum(y0, y1)
        r_lo = np.maximum(np.ceil(lo), 0).astype(int)  # rows j with lo <= j < hi
        r_hi = np.minimum(np.ceil(hi), nj).astype(int)
        n = np.maximum(r_hi - r_lo, 0)
        if not n.any():
            continue
        e = np.repeat(np.arange(y0.size), n)
        start = np.repeat(r_lo, n)
        offs = np.arange(e.size) - np.repeat(np.cumsum(n) - n, n)
        rows = start + offs
        t = (rows - y0[e]) / (y1[e] - y0[e])
        rows_all.append(rows)
        xs_all.append(x0[e] + t * (x1[e] - x0[e]))
    out = np.zeros(shape, dtype=bool)
    if not rows_all:
        return out
    rows = np.concatenate(rows_all)
    xs = np.concatenate(xs_all)
    order = np.lexsort((xs, rows))
    rows, xs = rows[order], xs[order]
    # pair consecutive crossings within each row (counts are even for closed polygons)
    diff = np.zeros((nj, ni + 1), dtype=np.int32)
    start_of_row = np.r_[True, rows[1:] != rows[:-1]]
    rank = np.arange(rows.size) - np.maximum.accumulate(np.where(start_of_row, np.arange(rows.size), 0))
    opens = np.nonzero(rank % 2 == 0)[0]
    closes = opens + 1
    ok = closes < rows.size
    ok[ok] &= rows[closes[ok]] == rows[opens[ok]]  # an odd crossing count leaves the last one unpaired
    opens, closes = opens[ok], closes[ok]
    ia = np.clip(np.ceil(xs[opens]).astype(int), 0, ni)
    ib = np.clip(np.ceil(xs[closes]).astype(int), 0, ni)
    np.add.at(diff, (rows[opens], ia), 1)
    np.add.at(diff, (rows[closes], ib), -1)
    out[:] = np.cumsum(diff, axis=1)[:, :ni] > 0
    return out


def _rt_contours(ds: object) -> tuple[dict[int, str], dict[int, list[np.ndarray]]]:
    names: dict[int, str] = {}
    for roi in getattr(ds, "StructureSetROISequence", []) or []:
        names[int(roi.ROINumber)] = str(getattr(roi, "ROIName", "") or f"roi_{roi.ROINumber}")
    contours: dict[int, list[np.ndarray]] = {n: [] for n in names}
    for rc in getattr(ds, "ROIContourSequence", []) or []:
        num = int(rc.ReferencedROINumber)
        for ct in getattr(rc, "ContourSequence", []) or []:
            if str(getattr(ct, "ContourGeometricType", "CLOSED_PLANAR")).upper() not in ("CLOSED_PLANAR", ""):
                continue
            data = _contour_data(ct)
            if data.size < 9 or data.size % 3:
                continue
            contours.setdefault(num, []).append(data.reshape(-1, 3))
    return names, contours


def _grid_from_contours(contours: Mapping[int, list[np.ndarray]], reference: Volume | None) -> Volume:
    """Grid built from the contours' own extent (in-plane spacing/orientation from ``reference``)."""
    if reference is not None:
        r, c = reference.direction[:, 0], reference.direction[:, 1]
        di, dj = float(reference.spacing_mm[0]), float(reference.spacing_mm[1])
    else:
        r, c = np.array([1.0, 0, 0]), np.array([0, 1.0, 0])
        di = dj = 1.0
    normal = np.cross(r, c)
    pts = np.concatenate([p for lst in contours.values() for p in lst], axis=0)
    planes = np.unique(np.round(np.concatenate([[float(np.mean(p @ normal))] for lst in contours.values() for p in lst]), 2))
    dz = float(np.median(np.diff(planes))) if planes.size > 1 else (float(reference.spacing_mm[2]) if reference else 1.0)
    if dz <= 0:
        dz = 1.0
    u, v = pts @ r, pts @ c
    pad = 2
    u0, v0 = u.min() - pad * di, v.min() - pad * dj
    ni = int(np.ceil((u.max() - u.min()) / di)) + 2 * pad + 1
    nj = int(np.ceil((v.max() - v.min()) / dj)) + 2 * pad + 1
    nk = int(np.rint((planes[-1] - planes[0]) / dz)) + 1
    aff = np.eye(4)
    aff[:3, 0], aff[:3, 1], aff[:3, 2] = r * di, c * dj, normal * dz
    aff[:3, 3] = r * u0 + c * v0 + normal * planes[0]
    return Volume(np.zeros((nk, nj, ni), dtype=np.int32), aff)


def rtstruct_masks(
    path: str | os.PathLike[str], reference: Volume | None = None, notes: list[str] | None = None
) -> tuple[Volume, dict[str, np.ndarray], list[str]]:
    """Rasterise every RTSTRUCT ROI to its own boolean mask (overlaps kept).

    Contours are rasterised slice by slice in mm: a voxel belongs to the ROI when its centre
    lies inside an odd number of the ROI's contours on that slice (even-odd rule, so inner
    contours are holes). When ``reference`` is None or does not cover every contour plane
    (e.g. an incomplete CT series), a grid is built from the contours' own extent with the
    reference's in-plane spacing and orientation, and the slice spacing of the contour planes.

    Returns the grid (zeros), ``{roi name: mask (k, j, i)}`` and the names of empty ROIs.
    """
    p = Path(path)
    _require_file(p, "RTSTRUCT file")
    ds = _dcmread(p)
    if str(getattr(ds, "SOPClassUID", "")) != _RTSTRUCT_SOP_CLASS and str(getattr(ds, "Modality", "")) != "RTSTRUCT":
        raise NotDicomSeriesError(f"{p.name} is not an RTSTRUCT (Modality {getattr(ds, 'Modality', '?')}).")
    names, contours = _rt_contours(ds)
    with_data = {n: lst for n, lst in contours.items() if lst}
    if not with_data:
        raise EmptyStructureError(f"RTSTRUCT {p.name} holds no closed planar contours; nothing to rasterise.")
    grid = reference
    if grid is not None:
        all_pts = np.concatenate([q for lst in with_data.values() for q in lst])
        k = grid.mm_to_index(all_pts)[:, 0]
        if k.min() < -0.5 or k.max() > grid.shape[0] - 0.5:
            msg = (
                f"RTSTRUCT {p.name}: contours span slice indices {k.min():.1f}..{k.max():.1f} but the referenced series "
                f"has {grid.shape[0]} slice(s); rasterised onto a grid built from the contours' own extent "
                "(in-plane spacing from the image), not on the image grid."
            )
            log.warning(msg)
            if notes is not None:
                notes.append(msg)
            grid = _grid_from_contours(with_data, reference)
    else:
        grid = _grid_from_contours(with_data, None)
    nk, nj, ni = grid.shape
    masks: dict[str, np.ndarray] = {}
    empty: list[str] = []
    for num, name in names.items():
        m = np.zeros(grid.shape, dtype=bool)
        per_slice: dict[int, list[np.ndarray]] = {}
        for pts in contours.get(num, []):
            idx = grid.mm_to_index(pts)
            kk = idx[:, 0]
            kr = int(np.rint(float(np.mean(kk))))
            if np.ptp(kk) > 0.5:
                raise DicomError(
                    f"RTSTRUCT {p.name}: a contour of ROI {name!r} is not planar in the image grid "
                    f"(spans slice indices {kk.min():.2f}..{kk.max():.2f}); oblique contours are not supported."
                )
            if 0 <= kr < nk:
                per_slice.setdefault(kr, []).append(idx[:, 1:])
        for kr, polys in per_slice.items():
            m[kr] = _fill_even_odd(polys, (nj, ni))
        if name in masks:  # duplicate ROI names: merge
            masks[name] |= m
        else:
            masks[name] = m
    for name, m in masks.items():
        if not m.any():
            empty.append(name)
    return grid, masks, empty


def read_rtstruct(
    path: str | os.PathLike[str], reference: Volume | None = None, notes: list[str] | None = None
) -> tuple[Volume, dict[int, str], list[str]]:
    """Read an RTSTRUCT into a label map; returns (labels, {value: ROI name}, empty ROI names).

    Label value = ROINumber. Overlapping ROIs share voxels in RTSTRUCT but not in a label map:
    the larger ROIs are painted first, so a small structure inside a large one (tumour inside
    BODY) keeps its voxels. Use :func:`rtstruct_masks` for the overlapping masks. ROIs without
    any voxel are listed as empty (not given a label value in the table).
    """
    grid, masks, empty = rtstruct_masks(path, reference, notes)
    ds = _dcmread(Path(path), stop_before_pixels=True)
    names, _ = _rt_contours(ds)
    number_of = {}
    for num, name in names.items():
        number_of.setdefault(name, num)
    out = np.zeros(grid.shape, dtype=np.int32)
    order = sorted((n for n in masks if n not in empty), key=lambda n: -int(masks[n].sum()))
    for name in order:
        out[masks[name]] = number_of[name]
    table = {number_of[n]: n for n in order}
    return grid.with_array(out), dict(sorted(table.items())), empty
