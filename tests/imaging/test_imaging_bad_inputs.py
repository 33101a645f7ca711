"""The bad-input corpus of issue [L]: every input below is refused by name, through the CLI.

Each entry is generated at test time into ``tmp_path`` from one small valid case folder (or a
synthetic DICOM CT series written with pydicom). The reference for what is "bad" is the format
specification each input violates — NIfTI-1 (pixdim > 0, vox_offset + voxels × bitpix/8 bytes),
NRRD 0004 (sizes × type size bytes, non-zero space directions), DICOM PS3.3 C.7.6.2
(ImageOrientationPatient orthonormal, ImagePositionPatient along the normal), YAML 1.2 §3.2.1.1
(mapping keys are unique) and UTF-8 (RFC 3629) — and docs/imaging.md's table of refused inputs.

Every entry is checked for: exit code ≠ 0 from ``latplan measure CASE --out OUT.json`` (typer's
CliRunner), a :class:`~latplan.errors.LatplanError` subclass of the documented type, one message
that names the offending file, no traceback, and nothing written (OUT.json absent, no temp
folders left). A sample also runs as a real subprocess through ``latplan.cli.main`` (exit 2,
``error: ...`` on stderr, no traceback).
"""

from __future__ import annotations

import gzip
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
import pytest
from dicom_builders import rtstruct_dataset
from pydicom.dataset import FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid
from typer.testing import CliRunner

from latplan.case import Case, LabelTable, Patient
from latplan.cli import app
from latplan.errors import (
    CaseFolderError,
    DicomError,
    EmptyStructureError,
    GeometryMismatchError,
    InvalidImageError,
    InvalidInputError,
    LatplanError,
    OrientationError,
    UnknownStructureError,
)
from latplan.imaging import Volume
from latplan.imaging import errors as ie
from latplan.imaging.case_folder import save_case_folder
from latplan.imaging.nifti import write_nifti

SHAPE = (8, 10, 12)  # k, j, i
SPACING = (2.0, 2.0, 3.0)  # i, j, k mm


def _affine(origin: tuple[float, float, float] | None = None) -> np.ndarray:
    aff = np.diag([*SPACING, 1.0])
    # symmetric about the origin: mirrored label maps land on the same voxel centres
    centre = [-(n - 1) * s / 2 for n, s in zip(SHAPE[::-1], SPACING, strict=True)]
    aff[:3, 3] = origin if origin is not None else centre
    return aff


def _labels_array() -> np.ndarray:
    lab = np.zeros(SHAPE, np.uint8)
    lab[1:7, 2:8, 2:7] = 5  # liver, on the patient's right half (i < 6)
    lab[3:5, 4:6, 3:5] = 9  # lesion_1
    return lab


def _base_case() -> Case:
    lab = _labels_array()
    img = np.where(lab > 0, 60.0, -1000.0).astype(np.float32)
    aff = _affine()
    table = LabelTable.from_mapping({5: "liver", 9: "lesion_1"})
    return Case(Patient(id="BAD-1", primary="colorectal"), Volume(img, aff), Volume(lab.astype(np.int32), aff), table)


# --------------------------------------------------------------------------------------------
# file mutators
# --------------------------------------------------------------------------------------------
def _cut(path: Path, fraction: float) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * fraction)])


def _nifti_set_pixdim(path: Path, idx: int, value: float) -> None:
    """Patch pixdim[idx] in the raw NIfTI-1 header (offset 76, float32; NIfTI-1 §pixdim), data untouched."""
    raw = bytearray(gzip.decompress(path.read_bytes()))
    raw[76 + 4 * idx : 80 + 4 * idx] = np.float32(value).tobytes()
    path.write_bytes(gzip.compress(bytes(raw)))


def _write_array(path: Path, arr: np.ndarray, aff: np.ndarray | None = None) -> None:
    import SimpleITK as sitk

    vector = arr.ndim == 4 and arr.shape[-1] == 3
    img = sitk.GetImageFromArray(arr, isVector=vector)
    extra = 0 if vector else arr.ndim - 3
    img.SetSpacing([*SPACING, *([1.0] * extra)])
    img.SetOrigin([float(x) for x in (aff if aff is not None else _affine())[:3, 3]] + [0.0] * extra)
    sitk.WriteImage(img, str(path))


def _nrrd(path: Path, header_extra: str, data: bytes, encoding: str = "raw", sizes: str = "12 10 8") -> None:
    head = (
        "NRRD0004\ntype: float\ndimension: 3\nspace: left-posterior-superior\n"
        f"sizes: {sizes}\nendian: little\nencoding: {encoding}\nspace origin: ({_ORIGIN})\n{header_extra}\n"
    )
    path.write_bytes(head.encode() + b"\n" + data)


_ORIGIN = ",".join(str(x) for x in _affine()[:3, 3])


def _nrrd_voxels() -> bytes:
    return np.full(SHAPE, 40.0, np.float32).tobytes()


def _swap_image(folder: Path, name: str) -> None:
    (folder / "image.nii.gz").unlink()
    text = (folder / "case.yaml").read_text(encoding="utf-8")
    (folder / "case.yaml").write_text(text + f"image: {name}\n", encoding="utf-8")


def _case_yaml(folder: Path, extra: str) -> None:
    text = (folder / "case.yaml").read_text(encoding="utf-8")
    (folder / "case.yaml").write_text(text + extra, encoding="utf-8")


BILLION_LAUGHS = (
    'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n'
    + "".join(
        f"{chr(98 + n)}: &{chr(98 + n)} [" + ",".join([f"*{chr(97 + n)}"] * 9) + "]\n" for n in range(8)
    )
)


# --------------------------------------------------------------------------------------------
# DICOM: a synthetic CT series (PS3.3 CT Image IOD, the attributes readers and highdicom need)
# --------------------------------------------------------------------------------------------
STUDY_UID = generate_uid()
FOR_UID = generate_uid()


def _ct_slice(k: int, series_uid: str, rows: int = 12, cols: int = 12, z: float | None = None) -> pydicom.Dataset:
    ds = pydicom.Dataset()
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = generate_uid()
    ds.Modality = "CT"
    ds.PatientID, ds.PatientName, ds.PatientBirthDate, ds.PatientSex = "BAD-DCM", "Bad^Input", "19600101", "O"
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = STUDY_UID, series_uid, FOR_UID
    ds.StudyID, ds.StudyDate, ds.StudyTime, ds.AccessionNumber, ds.ReferringPhysicianName = "1", "20240101", "120000", "A1", ""
    ds.SeriesNumber, ds.InstanceNumber = 1, k + 1
    ds.Manufacturer = "test"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.ImagePositionPatient = [0.0, 0.0, float(z if z is not None else 3.0 * k)]
    ds.PixelSpacing = [2.0, 2.0]
    ds.SliceThickness = 3.0
    ds.Rows, ds.Columns = rows, cols
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
    ds.RescaleSlope, ds.RescaleIntercept = 1, -1024
    arr = np.full((rows, cols), 1084, np.int16)
    arr[3:9, 3:9] = 1100
    ds.PixelData = arr.tobytes()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    return ds


def _dicom_folder(folder: Path, n: int = 6, edit: Callable[[int, pydicom.Dataset], None] | None = None) -> Path:
    dcm = folder / "dicom"
    dcm.mkdir(parents=True, exist_ok=True)
    uid = generate_uid()
    for k in range(n):
        ds = _ct_slice(k, uid)
        if edit is not None:
            edit(k, ds)
        ds.save_as(str(dcm / f"{k:03d}.dcm"), enforce_file_format=True)
    return dcm


def _rtstruct(folder: Path, contours: list[np.ndarray]) -> None:
    rtstruct_dataset({"GTV": contours}).save_as(str(folder / "rtstruct.dcm"), enforce_file_format=True)


def _square(cx: float, cy: float, half: float, z: float) -> np.ndarray:
    return np.array([[cx - half, cy - half, z], [cx + half, cy - half, z], [cx + half, cy + half, z], [cx - half, cy + half, z]])


def _to_dicom_case(folder: Path, n: int = 6, edit: Callable[[int, pydicom.Dataset], None] | None = None) -> None:
    """Replace the NIfTI image by a DICOM series; labels become an RTSTRUCT square (valid by default)."""
    for name in ("image.nii.gz", "labels.nii.gz", "labels.yaml"):
        (folder / name).unlink()
    _dicom_folder(folder, n, edit)


def _dicom_with_rtstruct(folder: Path, contours: list[np.ndarray], n: int = 6,
                         edit: Callable[[int, pydicom.Dataset], None] | None = None) -> None:
    _to_dicom_case(folder, n, edit)
    _rtstruct(folder, contours)


_GOOD_CONTOURS = [_square(10.0, 10.0, 4.0, 3.0 * k) for k in (2, 3)]


def _seg_case(folder: Path, mutate: Callable[[Path], None]) -> None:
    from latplan.imaging.dicom_series import load_dicom_series
    from latplan.imaging.seg import write_seg

    _to_dicom_case(folder)
    series = load_dicom_series(folder / "dicom")
    lab = np.zeros(series.volume.shape, np.int32)
    lab[2:4, 3:9, 3:9] = 1
    write_seg(series.volume.with_array(lab), {1: "liver"}, folder / "dicom", folder / "seg.dcm")
    mutate(folder / "seg.dcm")


def _seg_shift(path: Path) -> None:
    ds = pydicom.dcmread(str(path))
    for fg in ds.PerFrameFunctionalGroupsSequence:
        pos = fg.PlanePositionSequence[0].ImagePositionPatient
        fg.PlanePositionSequence[0].ImagePositionPatient = [float(pos[0]) + 0.7, float(pos[1]), float(pos[2])]
    ds.save_as(str(path))


def _seg_is_ct(path: Path) -> None:
    shutil.copyfile(path.parent / "dicom" / "000.dcm", path)


# --------------------------------------------------------------------------------------------
# the corpus
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Bad:
    id: str
    mutate: Callable[[Path], None]
    error: type[LatplanError]
    names: str  # the file name the message must contain
    env: tuple[tuple[str, str], ...] = ()


def _img(folder: Path) -> Path:
    return folder / "image.nii.gz"


def _lab(folder: Path) -> Path:
    return folder / "labels.nii.gz"


def _file_text(name: str, text: str | bytes) -> Callable[[Path], None]:
    """A mutation writing ``text`` (str as UTF-8, bytes as they are) into the case folder's file ``name``."""
    def mutate(folder: Path) -> None:
        p = folder / name
        if isinstance(text, bytes):
            p.write_bytes(text)
        else:
            p.write_text(text, encoding="utf-8")

    return mutate


def _labels_yaml(text: str | bytes) -> Callable[[Path], None]:
    return _file_text("labels.yaml", text)


def _case_text(text: str | bytes) -> Callable[[Path], None]:
    return _file_text("case.yaml", text)


def _pixdim(target: Callable[[Path], Path], idx: int, value: float) -> Callable[[Path], None]:
    return lambda f: _nifti_set_pixdim(target(f), idx, value)


def _labels_volume(arr: np.ndarray | None = None, aff: np.ndarray | None = None) -> Callable[[Path], None]:
    def mutate(folder: Path) -> None:
        a = _labels_array() if arr is None else arr
        write_nifti(Volume(a, _affine() if aff is None else aff), _lab(folder))

    return mutate


def _mirror(signs: tuple[float, float, float]) -> Callable[[Path], None]:
    def mutate(folder: Path) -> None:
        aff = np.diag([*signs, 1.0]) @ _affine()
        write_nifti(Volume(_labels_array(), aff), _lab(folder))

    return mutate


def _image_values(value: float) -> Callable[[Path], None]:
    def mutate(folder: Path) -> None:
        arr = np.where(_labels_array() > 0, 60.0, -1000.0).astype(np.float32)
        arr[4, 5, 6] = value
        write_nifti(Volume(np.zeros(SHAPE, np.float32), _affine()), _img(folder))  # valid header first
        _write_array(_img(folder), arr)

    return mutate


def _symlink_out(name: str, outside: str = "outside") -> Callable[[Path], None]:
    def mutate(folder: Path) -> None:
        target = folder.parent / outside / name
        target.parent.mkdir(exist_ok=True)
        shutil.move(str(folder / name), target)
        (folder / name).symlink_to(target)

    return mutate


def _dicom_symlink(folder: Path) -> None:
    _to_dicom_case(folder)
    _rtstruct(folder, _GOOD_CONTOURS)
    outside = folder.parent / "outside"
    outside.mkdir()
    shutil.move(str(folder / "dicom" / "002.dcm"), outside / "002.dcm")
    (folder / "dicom" / "002.dcm").symlink_to(outside / "002.dcm")


def _edit(fn: Callable[[int, pydicom.Dataset], None], n: int = 6) -> Callable[[Path], None]:
    return lambda f: _dicom_with_rtstruct(f, _GOOD_CONTOURS, n, fn)


def _drop_slice(folder: Path) -> None:
    _dicom_with_rtstruct(folder, _GOOD_CONTOURS)
    (folder / "dicom" / "003.dcm").unlink()


def _truncate_slice(folder: Path) -> None:
    _dicom_with_rtstruct(folder, _GOOD_CONTOURS)
    _cut(folder / "dicom" / "002.dcm", 0.9)  # header intact, pixel data short


def _second_series(folder: Path) -> None:
    _dicom_with_rtstruct(folder, _GOOD_CONTOURS)
    uid = generate_uid()
    for k in range(3):
        _ct_slice(k, uid, z=100.0 + 3 * k).save_as(str(folder / "dicom" / f"x{k}.dcm"), enforce_file_format=True)


def _set(attr: str, value: object, only: int | None = None) -> Callable[[int, pydicom.Dataset], None]:
    def fn(k: int, ds: pydicom.Dataset) -> None:
        if only is None or k == only:
            setattr(ds, attr, value)

    return fn


def _z(values: dict[int, float]) -> Callable[[int, pydicom.Dataset], None]:
    def fn(k: int, ds: pydicom.Dataset) -> None:
        if k in values:
            ds.ImagePositionPatient = [0.0, 0.0, values[k]]

    return fn


def _tilt(k: int, ds: pydicom.Dataset) -> None:
    ds.ImagePositionPatient = [0.0, 0.6 * k, 3.0 * k]


def _empty_dicom(folder: Path) -> None:
    _to_dicom_case(folder)
    for f in (folder / "dicom").iterdir():
        f.unlink()
    (folder / "dicom" / "readme.txt").write_text("no slices here")
    _rtstruct(folder, _GOOD_CONTOURS)


def _too_many_aliases() -> str:
    return "anchors: &a x\nlist: [" + ", ".join(["*a"] * 150) + "]\n5: liver\n9: lesion_1\n"


def _image_4d(folder: Path) -> None:
    _write_array(_img(folder), np.zeros((2, *SHAPE), np.float32))


def _image_rgb(folder: Path) -> None:
    _write_array(_img(folder), np.zeros((*SHAPE, 3), np.uint8))


def _gz_cut(target: Callable[[Path], Path], fraction: float) -> Callable[[Path], None]:
    def mutate(folder: Path) -> None:
        p = target(folder)
        raw = gzip.decompress(p.read_bytes())
        p.write_bytes(gzip.compress(raw[: int(len(raw) * fraction)]))

    return mutate


def _plain_nii_cut(folder: Path) -> None:
    import nibabel as nib

    img = nib.load(str(_img(folder)))
    nib.save(img, str(folder / "image.nii"))
    _swap_image(folder, "image.nii")
    _cut(folder / "image.nii", 0.7)


def _nrrd_case(header_extra: str, data: bytes | None = None, encoding: str = "raw") -> Callable[[Path], None]:
    def mutate(folder: Path) -> None:
        _swap_image(folder, "image.nrrd")
        payload = _nrrd_voxels() if data is None else data
        if encoding == "gzip":
            payload = gzip.compress(payload)
        _nrrd(folder / "image.nrrd", header_extra, payload, encoding)

    return mutate


def _nrrd_gz_cut(folder: Path) -> None:
    _swap_image(folder, "image.nrrd")
    noise = np.random.default_rng(0).normal(40.0, 20.0, SHAPE).astype(np.float32).tobytes()  # incompressible
    _nrrd(folder / "image.nrrd", _OK_DIRS, gzip.compress(noise)[:1500], "gzip")


def _nhdr_missing(folder: Path) -> None:
    _swap_image(folder, "image.nhdr")
    (folder / "image.nhdr").write_text(  # the origin matches; the data file is absent
        "NRRD0004\ntype: float\ndimension: 3\nspace: left-posterior-superior\nsizes: 12 10 8\nendian: little\n"
        f"encoding: raw\nspace directions: (2,0,0) (0,2,0) (0,0,3)\nspace origin: ({_ORIGIN})\ndata file: image.raw\n"
    )


_OK_DIRS = "space directions: (2,0,0) (0,2,0) (0,0,3)"

CORPUS: list[Bad] = [
    # --- image: NIfTI ---------------------------------------------------------------------------
    Bad("image-gz-truncated-half", lambda f: _cut(_img(f), 0.5), ie.TruncatedImageError, "image.nii.gz"),
    Bad("image-gz-truncated-90pct", lambda f: _cut(_img(f), 0.9), ie.TruncatedImageError, "image.nii.gz"),
    Bad("image-gz-stream-short", _gz_cut(_img, 0.66), ie.TruncatedImageError, "image.nii.gz"),
    Bad("image-nii-truncated", _plain_nii_cut, ie.TruncatedImageError, "image.nii"),
    Bad("image-pixdim-x-zero", _pixdim(_img, 1, 0.0), ie.InvalidSpacingError, "image.nii.gz"),
    Bad("image-pixdim-y-zero", _pixdim(_img, 2, 0.0), ie.InvalidSpacingError, "image.nii.gz"),
    Bad("image-pixdim-z-zero", _pixdim(_img, 3, 0.0), ie.InvalidSpacingError, "image.nii.gz"),
    Bad("image-pixdim-negative", _pixdim(_img, 1, -2.0), ie.InvalidSpacingError, "image.nii.gz"),
    Bad("image-pixdim-nan", _pixdim(_img, 3, float("nan")), ie.InvalidSpacingError, "image.nii.gz"),
    Bad("image-pixdim-inf", _pixdim(_img, 2, float("inf")), ie.InvalidSpacingError, "image.nii.gz"),
    Bad("image-nan-voxel", _image_values(float("nan")), ie.NonFiniteVoxelError, "image.nii.gz"),
    Bad("image-posinf-voxel", _image_values(float("inf")), ie.NonFiniteVoxelError, "image.nii.gz"),
    Bad("image-neginf-voxel", _image_values(float("-inf")), ie.NonFiniteVoxelError, "image.nii.gz"),
    Bad("image-4d", _image_4d, InvalidImageError, "image.nii.gz"),
    Bad("image-rgb", _image_rgb, InvalidImageError, "image.nii.gz"),
    Bad("image-not-nifti", lambda f: _img(f).write_bytes(b"this is not an image"), InvalidImageError, "image.nii.gz"),
    Bad("image-zero-bytes", lambda f: _img(f).write_bytes(b""), InvalidImageError, "image.nii.gz"),
    Bad("image-over-memory-limit", lambda f: None, ie.ImageTooLargeError, "image.nii.gz",
        env=(("LATPLAN_MAX_IMAGE_GB", "0.000001"),)),
    Bad("memory-limit-not-a-number", lambda f: None, InvalidInputError, "LATPLAN_MAX_IMAGE_GB",
        env=(("LATPLAN_MAX_IMAGE_GB", "lots"),)),
    Bad("image-missing", lambda f: _img(f).unlink(), CaseFolderError, "image.nii.gz"),
    Bad("image-two-candidates", lambda f: shutil.copyfile(_img(f), f / "image.nii"), CaseFolderError, "image.nii"),
    # --- image: NRRD ----------------------------------------------------------------------------
    Bad("nrrd-zero-direction", _nrrd_case("space directions: (0,0,0) (0,2,0) (0,0,3)"), ie.InvalidSpacingError,
        "image.nrrd"),
    Bad("nrrd-nan-direction", _nrrd_case("space directions: (nan,0,0) (0,2,0) (0,0,3)"), ie.InvalidSpacingError,
        "image.nrrd"),
    Bad("nrrd-negative-spacings", _nrrd_case("spacings: -2 2 3"), ie.InvalidSpacingError, "image.nrrd"),
    Bad("nrrd-zero-spacings", _nrrd_case("spacings: 2 0 3"), ie.InvalidSpacingError, "image.nrrd"),
    Bad("nrrd-raw-truncated", _nrrd_case(_OK_DIRS, _nrrd_voxels()[:1000]), ie.TruncatedImageError, "image.nrrd"),
    Bad("nrrd-gzip-truncated", _nrrd_gz_cut, ie.TruncatedImageError, "image.nrrd"),
    Bad("nrrd-detached-data-missing", _nhdr_missing, ie.TruncatedImageError, "image.nhdr"),
    # --- label map ------------------------------------------------------------------------------
    Bad("labels-gz-truncated", lambda f: _cut(_lab(f), 0.5), ie.TruncatedImageError, "labels.nii.gz"),
    Bad("labels-gz-stream-short", _gz_cut(_lab, 0.6), ie.TruncatedImageError, "labels.nii.gz"),
    Bad("labels-pixdim-zero", _pixdim(_lab, 3, 0.0), ie.InvalidSpacingError, "labels.nii.gz"),
    Bad("labels-pixdim-negative", _pixdim(_lab, 2, -1.0), ie.InvalidSpacingError, "labels.nii.gz"),
    Bad("labels-non-integer", _labels_volume(_labels_array().astype(np.float32) + 0.5), InvalidImageError,
        "labels.nii.gz"),
    Bad("labels-negative", _labels_volume(-_labels_array().astype(np.int16)), InvalidImageError, "labels.nii.gz"),
    Bad("labels-all-zero", _labels_volume(np.zeros(SHAPE, np.uint8)), ie.EmptyLabelMapError, "labels.nii.gz"),
    Bad("labels-nan", lambda f: _write_array(_lab(f), np.where(_labels_array() > 0, np.nan, 0).astype(np.float32)),
        ie.NonFiniteVoxelError, "labels.nii.gz"),
    Bad("labels-shifted-origin", _labels_volume(aff=_affine((5.0, 5.0, 5.0))), GeometryMismatchError, "labels.nii.gz"),
    Bad("labels-other-shape", _labels_volume(np.zeros((8, 10, 11), np.uint8) + 5), GeometryMismatchError,
        "labels.nii.gz"),
    Bad("labels-mirrored-x-symmetric-grid", _mirror((-1.0, 1.0, 1.0)), OrientationError, "labels.nii.gz"),
    Bad("labels-mirrored-y-symmetric-grid", _mirror((1.0, -1.0, 1.0)), OrientationError, "labels.nii.gz"),
    Bad("labels-mirrored-z-symmetric-grid", _mirror((1.0, 1.0, -1.0)), OrientationError, "labels.nii.gz"),
    Bad("labels-ras-as-lps", _mirror((-1.0, -1.0, 1.0)), OrientationError, "labels.nii.gz"),
    Bad("labels-missing", lambda f: _lab(f).unlink(), CaseFolderError, "labels.nii.gz"),
    Bad("labels-yaml-missing", lambda f: (f / "labels.yaml").unlink(), CaseFolderError, "labels.yaml"),
    # --- labels.yaml ----------------------------------------------------------------------------
    Bad("labels-yaml-duplicate-key", _labels_yaml("5: liver\n9: lesion_1\n9: gallbladder\n"), ie.DuplicateYamlKeyError,
        "labels.yaml"),
    Bad("labels-yaml-billion-laughs", _labels_yaml(BILLION_LAUGHS + "5: liver\n"), ie.YamlLimitError, "labels.yaml"),
    Bad("labels-yaml-many-aliases", _labels_yaml(_too_many_aliases()), ie.YamlLimitError, "labels.yaml"),
    Bad("labels-yaml-latin1", _labels_yaml("5: liver\n9: lesion_1  # läsion\n".encode("latin-1")),
        ie.YamlEncodingError, "labels.yaml"),
    Bad("labels-yaml-utf16", _labels_yaml("5: liver\n9: lesion_1\n".encode("utf-16")), ie.YamlEncodingError,
        "labels.yaml"),
    Bad("labels-yaml-too-large", _labels_yaml("5: liver\n9: lesion_1\n" + "#" * 1_100_000 + "\n"), ie.YamlLimitError,
        "labels.yaml"),
    Bad("labels-yaml-unknown-name", _labels_yaml("5: liver\n9: tumour_blob\n"), UnknownStructureError, "labels.yaml"),
    Bad("labels-yaml-value-zero", _labels_yaml("0: liver\n9: lesion_1\n"), UnknownStructureError, "labels.yaml"),
    Bad("labels-yaml-non-integer-key", _labels_yaml("five: liver\n9: lesion_1\n"), UnknownStructureError, "labels.yaml"),
    Bad("labels-yaml-list", _labels_yaml("- liver\n- lesion_1\n"), CaseFolderError, "labels.yaml"),
    Bad("labels-yaml-empty", _labels_yaml(""), CaseFolderError, "labels.yaml"),
    Bad("labels-yaml-syntax", _labels_yaml("5: liver\n9: [lesion_1\n"), CaseFolderError, "labels.yaml"),
    Bad("labels-yaml-bad-role", _labels_yaml("5: liver\n9: {name: blob, role: tumourish}\n"), UnknownStructureError,
        "labels.yaml"),
    # --- case.yaml ------------------------------------------------------------------------------
    Bad("case-yaml-duplicate-key", _case_text("patient: {id: A, primary: hcc}\npatient: {id: B, primary: hcc}\n"),
        ie.DuplicateYamlKeyError, "case.yaml"),
    Bad("case-yaml-duplicate-nested", _case_text("patient: {id: A, primary: hcc, id: B}\n"), ie.DuplicateYamlKeyError,
        "case.yaml"),
    Bad("case-yaml-billion-laughs", _case_text(BILLION_LAUGHS.replace("a:", "x:", 1) + "patient: {id: A, primary: hcc}\n"),
        ie.YamlLimitError, "case.yaml"),
    Bad("case-yaml-latin1", _case_text("patient: {id: Müller, primary: hcc}\n".encode("latin-1")), ie.YamlEncodingError,
        "case.yaml"),
    Bad("case-yaml-unknown-key", lambda f: _case_yaml(f, "surgeon: Dr X\n"), CaseFolderError, "case.yaml"),
    Bad("case-yaml-unknown-patient-key", _case_text("patient: {id: A, primary: hcc, shoe_size: 44}\n"), CaseFolderError,
        "case.yaml"),
    Bad("case-yaml-no-patient", _case_text("image_modality: CT\n"), CaseFolderError, "case.yaml"),
    Bad("case-yaml-no-primary", _case_text("patient: {id: A}\n"), CaseFolderError, "case.yaml"),
    Bad("case-yaml-bad-primary", _case_text("patient: {id: A, primary: appendix-ish}\n"), CaseFolderError, "case.yaml"),
    Bad("case-yaml-list", _case_text("- patient\n"), CaseFolderError, "case.yaml"),
    Bad("case-yaml-syntax", _case_text("patient: {id: A, primary: hcc\n"), CaseFolderError, "case.yaml"),
    Bad("case-yaml-missing", lambda f: (f / "case.yaml").unlink(), CaseFolderError, "case.yaml"),
    # --- paths ----------------------------------------------------------------------------------
    Bad("path-image-absolute", lambda f: _case_yaml(f, f"image: {_img(f)}\n"), ie.PathOutsideCaseError, "case.yaml"),
    Bad("path-image-dotdot", lambda f: _case_yaml(f, "image: ../case/image.nii.gz\n"), ie.PathOutsideCaseError,
        "case.yaml"),
    Bad("path-image-etc-passwd", lambda f: _case_yaml(f, "image: /etc/passwd\n"), ie.PathOutsideCaseError, "case.yaml"),
    Bad("path-labels-absolute", lambda f: _case_yaml(f, f"labels: {_lab(f)}\n"), ie.PathOutsideCaseError, "case.yaml"),
    Bad("path-labels-dotdot", lambda f: _case_yaml(f, "labels: sub/../../x/labels.nii.gz\n"), ie.PathOutsideCaseError,
        "case.yaml"),
    Bad("path-table-absolute", lambda f: _case_yaml(f, f"label_table: {f / 'labels.yaml'}\n"), ie.PathOutsideCaseError,
        "case.yaml"),
    Bad("path-table-dotdot", lambda f: _case_yaml(f, "label_table: ../labels.yaml\n"), ie.PathOutsideCaseError,
        "case.yaml"),
    Bad("path-image-home", lambda f: _case_yaml(f, "image: ~/image.nii.gz\n"), ie.PathOutsideCaseError, "case.yaml"),
    Bad("path-image-not-a-string", lambda f: _case_yaml(f, "image: [a, b]\n"), ie.PathOutsideCaseError, "case.yaml"),
    Bad("path-image-windows-drive", lambda f: _case_yaml(f, "image: 'C:\\\\data\\\\image.nii.gz'\n"),
        ie.PathOutsideCaseError, "case.yaml"),
    Bad("path-image-named-missing", lambda f: _case_yaml(f, "image: other.nii.gz\n"), CaseFolderError, "other.nii.gz"),
    Bad("symlink-image-leaves", _symlink_out("image.nii.gz"), ie.PathOutsideCaseError, "image.nii.gz"),
    Bad("symlink-labels-leaves", _symlink_out("labels.nii.gz"), ie.PathOutsideCaseError, "labels.nii.gz"),
    Bad("symlink-table-leaves", _symlink_out("labels.yaml"), ie.PathOutsideCaseError, "labels.yaml"),
    Bad("symlink-case-yaml-leaves", _symlink_out("case.yaml"), ie.PathOutsideCaseError, "case.yaml"),
    Bad("symlink-inside-dicom-leaves", _dicom_symlink, ie.PathOutsideCaseError, "002.dcm"),
    # --- DICOM series ---------------------------------------------------------------------------
    Bad("dicom-truncated-slice", _truncate_slice, ie.TruncatedDicomError, "002.dcm"),
    Bad("dicom-missing-slice", _drop_slice, ie.MissingSliceError, "dicom"),
    Bad("dicom-duplicate-slice", _edit(_z({3: 6.0})), ie.DuplicateSliceError, ".dcm"),
    Bad("dicom-non-uniform", _edit(_z({5: 15.8})), ie.NonUniformSpacingError, "dicom"),
    Bad("dicom-two-series", _second_series, ie.MixedSeriesError, "dicom"),
    Bad("dicom-two-orientations", _edit(_set("ImageOrientationPatient", [1, 0, 0, 0, 0, -1], only=4)),
        ie.MixedSeriesError, "004.dcm"),
    Bad("dicom-non-orthonormal", _edit(_set("ImageOrientationPatient", [1, 0, 0, 0.2, 1, 0])),
        ie.NonOrthonormalOrientationError, ".dcm"),
    Bad("dicom-gantry-tilt", _edit(_tilt), ie.GantryTiltError, "dicom"),
    Bad("dicom-pixel-spacing-zero", _edit(_set("PixelSpacing", [0.0, 2.0])), InvalidImageError, ".dcm"),
    Bad("dicom-matrix-mixed", _edit(_set("Columns", 10, only=2)), DicomError, "002.dcm"),
    Bad("dicom-no-slices", _empty_dicom, ie.NotDicomSeriesError, "dicom"),
    Bad("dicom-over-memory-limit", lambda f: _dicom_with_rtstruct(f, _GOOD_CONTOURS), ie.ImageTooLargeError, "dicom",
        env=(("LATPLAN_MAX_IMAGE_GB", "0.000001"),)),
    # --- DICOM SEG ------------------------------------------------------------------------------
    Bad("seg-truncated", lambda f: _seg_case(f, lambda p: _cut(p, 0.6)), ie.TruncatedDicomError, "seg.dcm"),
    Bad("seg-is-a-ct-slice", lambda f: _seg_case(f, _seg_is_ct), ie.NotDicomSeriesError, "seg.dcm"),
    Bad("seg-off-the-grid", lambda f: _seg_case(f, _seg_shift), GeometryMismatchError, "seg.dcm"),
    # --- RTSTRUCT -------------------------------------------------------------------------------
    Bad("rtstruct-outside-image-z", lambda f: _dicom_with_rtstruct(f, [_square(10, 10, 4, z) for z in (300.0, 303.0)]),
        ie.ContoursOutsideImageError, "rtstruct.dcm"),
    Bad("rtstruct-outside-image-xy", lambda f: _dicom_with_rtstruct(f, [_square(500, 500, 4, z) for z in (6.0, 9.0)]),
        ie.ContoursOutsideImageError, "rtstruct.dcm"),
    Bad("rtstruct-no-contours", lambda f: _dicom_with_rtstruct(f, []), EmptyStructureError, "rtstruct.dcm"),
    Bad("rtstruct-truncated", lambda f: (_dicom_with_rtstruct(f, _GOOD_CONTOURS), _cut(f / "rtstruct.dcm", 0.5)),
        ie.TruncatedDicomError, "rtstruct.dcm"),
]


def _snapshot(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*")}


@pytest.fixture(scope="module")
def base_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_case_folder(_base_case(), tmp_path_factory.mktemp("base") / "case")


def test_corpus_is_large_enough() -> None:
    """Issue [L] asks for ≥ 80 generated bad inputs; ids are unique."""
    assert len(CORPUS) >= 80
    assert len({b.id for b in CORPUS}) == len(CORPUS)


def test_base_case_is_valid(base_folder: Path, tmp_path: Path) -> None:
    """The unmutated folder loads and measures (exit 0): every failure below is caused by its mutation."""
    work = tmp_path / "case"
    shutil.copytree(base_folder, work)
    result = CliRunner().invoke(app, ["measure", str(work), "--json"])
    assert result.exit_code == 0, result.output
    assert '"lesion_1"' in result.output


@pytest.mark.parametrize("bad", CORPUS, ids=[b.id for b in CORPUS])
def test_bad_input_is_refused_by_name(bad: Bad, base_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Exit ≠ 0, the documented LatplanError subclass, the file named, no traceback, nothing written."""
    work = tmp_path / "case"
    shutil.copytree(base_folder, work)
    bad.mutate(work)
    for key, value in bad.env:
        monkeypatch.setenv(key, value)
    before = _snapshot(tmp_path)
    out = tmp_path / "measure.json"
    result = CliRunner().invoke(app, ["measure", str(work), "--out", str(out)])
    assert result.exit_code != 0
    exc = result.exception
    assert isinstance(exc, bad.error), f"{type(exc).__name__}: {exc}"
    message = str(exc)
    assert bad.names in message, message
    assert "Traceback" not in message and "\n" not in message.strip()
    assert not out.exists()
    assert _snapshot(tmp_path) == before


SUBPROCESS_SAMPLE = ["image-gz-truncated-half", "labels-yaml-duplicate-key", "case-yaml-latin1",
                     "path-image-etc-passwd", "labels-mirrored-x-symmetric-grid", "rtstruct-outside-image-z"]


@pytest.mark.slow  # end-to-end: one `latplan` process per input (≈ 2 s each)
@pytest.mark.parametrize("bad_id", SUBPROCESS_SAMPLE)
def test_bad_input_through_the_console_script(bad_id: str, base_folder: Path, tmp_path: Path) -> None:
    """The real entry point (latplan.cli:main): exit code 2, one 'error: ...' line naming the file (the last line;
    notes logged while loading may precede it), no traceback."""
    bad = next(b for b in CORPUS if b.id == bad_id)
    work = tmp_path / "case"
    shutil.copytree(base_folder, work)
    bad.mutate(work)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.run(
        [sys.executable, "-c", "from latplan.cli import main; main()", "measure", str(work)],
        capture_output=True, text=True, env=env, timeout=120, check=False,
    )
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
    assert lines and lines[-1].startswith("error: ")
    assert sum(ln.startswith("error:") for ln in lines) == 1
    assert bad.names in lines[-1]


# --------------------------------------------------------------------------------------------
# bad requests to the commands that write: insert-lesion (sizes, placement, --out) and
# case import-totalsegmentator (task, outputs, clinical file, --out)
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class BadCommand:
    id: str
    args: Callable[[Path, Path], list[str]]  # (case folder, tmp) → argv
    error: type[LatplanError]
    names: str  # text the message must contain (a file name, an option, the fraction)


def _ts_args(tmp: Path, case: Path, seg: str | None = None, extra: tuple[str, ...] = ()) -> list[str]:
    return ["case", "import-totalsegmentator", str(case / "image.nii.gz"), seg or str(case / "labels.nii.gz"),
            "--out", str(tmp / "out"), *extra]


def _write_seg_other_grid(tmp: Path) -> str:
    p = tmp / "seg_other.nii.gz"
    write_nifti(Volume(np.ones((4, 4, 4), np.uint8), np.eye(4)), p)
    return str(p)


def _write_empty_seg(tmp: Path) -> str:
    p = tmp / "seg_empty.nii.gz"
    write_nifti(Volume(np.zeros(SHAPE, np.uint8), _affine()), p)
    return str(p)


def _clinical(tmp: Path, data: bytes) -> str:
    p = tmp / "clinical.yaml"
    p.write_bytes(data)
    return str(p)


def _blocker(tmp: Path) -> Path:
    p = tmp / "blocker.txt"
    p.write_text("x")
    return p


def _existing(tmp: Path) -> Path:
    p = tmp / "out"
    p.mkdir()
    (p / "someone-elses.txt").write_text("x")
    return p


def _insert(case: Path, tmp: Path, *extra: str, out: Path | None = None) -> list[str]:
    return ["insert-lesion", str(case), "--out", str(out or tmp / "out"), *extra]


COMMANDS: list[BadCommand] = [
    BadCommand("insert-diameter-1e6", lambda c, t: _insert(c, t, "--diameter-mm", "1e6"), ie.LesionSizeError, "200"),
    BadCommand("insert-diameter-zero", lambda c, t: _insert(c, t, "--diameter-mm", "0"), ie.LesionSizeError, "0.0 mm"),
    BadCommand("insert-diameter-negative", lambda c, t: _insert(c, t, "--diameter-mm", "-5"), ie.LesionSizeError,
               "-5.0 mm"),
    BadCommand("insert-ellipsoid-axis-huge", lambda c, t: _insert(c, t, "--diameter-mm", "5", "--shape", "ellipsoid",
                                                                  "--axes-mm", "5", "5", "900"),
               ie.LesionSizeError, "900.0 mm"),
    BadCommand("insert-half-outside-liver", lambda c, t: _insert(c, t, "--diameter-mm", "9", "--at", "-7", "0", "0"),
               ie.LesionOutsideOrganError, "would lie in liver"),
    BadCommand("insert-outside-liver-entirely", lambda c, t: _insert(c, t, "--diameter-mm", "6", "--at", "9", "7", "9"),
               ie.LesionOutsideOrganError, "0.0 %"),
    BadCommand("insert-segment-missing", lambda c, t: _insert(c, t, "--diameter-mm", "6", "--segment", "7"),
               UnknownStructureError, "liver_segment_7"),
    BadCommand("insert-centre-outside-image", lambda c, t: _insert(c, t, "--diameter-mm", "6", "--at", "500", "0", "0"),
               InvalidInputError, "outside the image"),
    BadCommand("insert-out-unwritable", lambda c, t: _insert(c, t, "--diameter-mm", "9", "--at", "-2", "2", "4.5",
                                                            out=_blocker(t) / "new"),
               ie.OutputNotWritableError, "blocker.txt"),
    BadCommand("insert-out-exists", lambda c, t: _insert(c, t, "--diameter-mm", "9", "--at", "-2", "2", "4.5",
                                                        out=_existing(t)),
               CaseFolderError, "already exists"),
    BadCommand("ts-unknown-task", lambda c, t: _ts_args(t, c, extra=("--task", "totl")), UnknownStructureError, "totl"),
    BadCommand("ts-output-missing", lambda c, t: _ts_args(t, c, seg=str(t / "nope")), InvalidInputError, "nope"),
    BadCommand("ts-folder-without-nifti", lambda c, t: _ts_args(t, c, seg=str(t)), CaseFolderError, "per-class"),
    BadCommand("ts-seg-other-grid", lambda c, t: _ts_args(t, c, seg=_write_seg_other_grid(t)), GeometryMismatchError,
               "seg_other.nii.gz"),
    BadCommand("ts-seg-empty", lambda c, t: _ts_args(t, c, seg=_write_empty_seg(t)), ie.EmptyLabelMapError,
               "seg_empty.nii.gz"),
    BadCommand("ts-clinical-no-patient", lambda c, t: _ts_args(t, c, extra=("--clinical", _clinical(t, b"x: 1\n"))),
               CaseFolderError, "clinical.yaml"),
    BadCommand("ts-clinical-latin1", lambda c, t: _ts_args(t, c, extra=(
        "--clinical", _clinical(t, "patient: {id: Müller, primary: hcc}\n".encode("latin-1")))),
               ie.YamlEncodingError, "clinical.yaml"),
    BadCommand("ts-clinical-duplicate", lambda c, t: _ts_args(t, c, extra=(
        "--clinical", _clinical(t, b"patient: {id: A, primary: hcc}\npatient: {id: B, primary: hcc}\n"))),
               ie.DuplicateYamlKeyError, "clinical.yaml"),
    BadCommand("ts-out-exists", lambda c, t: ["case", "import-totalsegmentator", str(c / "image.nii.gz"),
                                              str(c / "labels.nii.gz"), "--out", str(_existing(t))],
               CaseFolderError, "already exists"),
    BadCommand("ts-image-truncated", lambda c, t: (_cut(c / "image.nii.gz", 0.5), _ts_args(t, c))[1],
               ie.TruncatedImageError, "image.nii.gz"),
]


def test_corpus_with_commands_is_large_enough() -> None:
    """Together with the case-folder corpus well above the ≥ 80 inputs of issue [L]; ids unique."""
    assert len(CORPUS) + len(COMMANDS) >= 120
    assert len({b.id for b in COMMANDS}) == len(COMMANDS)


@pytest.mark.parametrize("bad", COMMANDS, ids=[b.id for b in COMMANDS])
def test_bad_command_is_refused_by_name(bad: BadCommand, base_folder: Path, tmp_path: Path) -> None:
    """Exit ≠ 0, the documented error, the message names what is wrong, no traceback, no output written."""
    case = tmp_path / "case"
    shutil.copytree(base_folder, case)
    work = tmp_path / "work"
    work.mkdir()
    args = bad.args(case, work)
    before = _snapshot(tmp_path)
    result = CliRunner().invoke(app, args)
    assert result.exit_code != 0
    exc = result.exception
    assert isinstance(exc, bad.error), f"{type(exc).__name__}: {exc}"
    assert bad.names in str(exc), str(exc)
    assert "Traceback" not in str(exc)
    assert _snapshot(tmp_path) == before  # nothing written, no staging folder left
