"""Input integrity checks that run *before* voxels are read (and the NaN check after).

Why: a reader that trusts a header silently produces wrong numbers (a truncated
``image.nii.gz`` read as 66 % zeros, zero spacing replaced by 1 mm) or dies deep inside numpy
(an allocation error after a minute). Each check here raises a named
:class:`~latplan.errors.LatplanError` subclass whose message names the file and the fix:

- raw header spacing (NIfTI ``pixdim``, NRRD ``space directions``/``spacings``): zero,
  negative or non-finite → :class:`~latplan.imaging.errors.InvalidSpacingError`;
- memory the array needs (from the header) above ``LATPLAN_MAX_IMAGE_GB`` (default
  :data:`DEFAULT_MAX_IMAGE_GB`) → :class:`~latplan.imaging.errors.ImageTooLargeError`;
- file (or decompressed gzip stream) shorter than the header's voxel count × type size →
  :class:`~latplan.imaging.errors.TruncatedImageError`;
- NaN/Inf voxel values → :class:`~latplan.imaging.errors.NonFiniteVoxelError`.
"""

from __future__ import annotations

import gzip
import os
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from latplan.errors import InvalidInputError
from latplan.imaging.errors import (
    ImageTooLargeError,
    InvalidSpacingError,
    NonFiniteVoxelError,
    TruncatedImageError,
)

__all__ = [
    "DEFAULT_MAX_IMAGE_GB",
    "MAX_IMAGE_GB_ENV",
    "HeaderInfo",
    "check_header_before_reading",
    "check_memory_estimate",
    "max_image_bytes",
    "read_header_info",
    "require_file",
    "require_finite_voxels",
]

#: environment variable holding the memory limit (GB) for one loaded image
MAX_IMAGE_GB_ENV = "LATPLAN_MAX_IMAGE_GB"
#: default limit: a 512×512×2000 CT as float32 plus its on-disk copy is ≈ 4 GB
DEFAULT_MAX_IMAGE_GB = 8.0
#: bytes per voxel latplan adds while loading (float32 image / int32 labels copy)
_WORKING_BYTES_PER_VOXEL = 4
_CHUNK = 16 << 20

#: NIfTI datatype codes of floating-point voxels (FLOAT32, FLOAT64, FLOAT128, COMPLEX64/128/256)
_NIFTI_FLOAT_TYPES = frozenset({16, 32, 64, 1536, 1792, 2048})
_NRRD_TYPES = {
    "signed char": 1, "int8": 1, "int8_t": 1, "uchar": 1, "unsigned char": 1, "uint8": 1, "uint8_t": 1,
    "short": 2, "short int": 2, "signed short": 2, "signed short int": 2, "int16": 2, "int16_t": 2,
    "ushort": 2, "unsigned short": 2, "unsigned short int": 2, "uint16": 2, "uint16_t": 2,
    "int": 4, "signed int": 4, "int32": 4, "int32_t": 4, "uint": 4, "unsigned int": 4, "uint32": 4,
    "uint32_t": 4, "longlong": 8, "long long": 8, "long long int": 8, "signed long long": 8,
    "signed long long int": 8, "int64": 8, "int64_t": 8, "ulonglong": 8, "unsigned long long": 8,
    "unsigned long long int": 8, "uint64": 8, "uint64_t": 8, "float": 4, "double": 8,
}


@dataclass(frozen=True)
class HeaderInfo:
    """What a file header declares, read without touching the voxel data."""

    shape: tuple[int, ...]
    itemsize: int
    data_path: Path
    data_offset: int
    compressed: bool
    spacing_problem: str | None
    float_data: bool = False


def require_file(path: Path, what: str) -> None:
    """Raise :class:`InvalidInputError` naming ``path`` when it does not exist."""
    if not path.exists():
        raise InvalidInputError(f"{what} {path} does not exist; check the path.")


def max_image_bytes(max_gb: float | None = None) -> float:
    """The memory limit in bytes: ``max_gb``, else ``LATPLAN_MAX_IMAGE_GB``, else the default."""
    if max_gb is None:
        raw = os.environ.get(MAX_IMAGE_GB_ENV)
        if raw is None or not raw.strip():
            max_gb = DEFAULT_MAX_IMAGE_GB
        else:
            try:
                max_gb = float(raw)
            except ValueError:
                raise InvalidInputError(
                    f"{MAX_IMAGE_GB_ENV}={raw!r} is not a number; set it to the memory limit in GB (e.g. 8)."
                ) from None
    if not np.isfinite(max_gb) or max_gb <= 0:
        raise InvalidInputError(f"the image memory limit must be a positive number of GB; got {max_gb}.")
    return float(max_gb) * 1e9


def check_memory_estimate(path: Path, shape: tuple[int, ...], itemsize: int, max_gb: float | None = None) -> None:
    """Refuse an image whose array (plus latplan's working copy) exceeds the memory limit."""
    nvox = float(np.prod([float(n) for n in shape])) if shape else 0.0
    need = nvox * (itemsize + _WORKING_BYTES_PER_VOXEL)
    limit = max_image_bytes(max_gb)
    if need > limit:
        raise ImageTooLargeError(
            f"image {path}: loading {' × '.join(str(n) for n in shape)} voxels ({itemsize} byte(s) each) needs "
            f"≈ {need / 1e9:.1f} GB, above the limit of {limit / 1e9:.1f} GB ({MAX_IMAGE_GB_ENV}). Crop or resample "
            f"the image to the abdomen, or raise {MAX_IMAGE_GB_ENV} if this machine has the memory."
        )


def _raw_nifti_bytes(p: Path, n: int) -> bytes:
    if p.name.lower().endswith(".gz"):
        try:
            with gzip.open(p, "rb") as fh:
                return fh.read(n)
        except (EOFError, OSError, zlib.error):
            return b""
    with open(p, "rb") as fh:
        return fh.read(n)


def _nifti_header(p: Path) -> HeaderInfo | None:
    """NIfTI-1/-2 header fields read from the raw bytes (nibabel silently turns pixdim 0 into 1)."""
    raw = _raw_nifti_bytes(p, 540)
    if len(raw) < 348:
        if p.name.lower().endswith(".gz"):
            _, why = _gunzip_length(p, 0, 1 << 62)
            if why is not None:
                raise TruncatedImageError(f"image {p} is truncated: {why}. Copy or export the file again.")
        return None
    for endian in ("<", ">"):
        size = int(np.frombuffer(raw[:4], dtype=f"{endian}i4")[0])
        if size == 348:
            dim = np.frombuffer(raw[40:56], dtype=f"{endian}i2").astype(int)
            datatype = int(np.frombuffer(raw[70:72], dtype=f"{endian}i2")[0])
            bitpix = int(np.frombuffer(raw[72:74], dtype=f"{endian}i2")[0])
            pixdim = np.frombuffer(raw[76:108], dtype=f"{endian}f4").astype(float)
            offset = int(np.frombuffer(raw[108:112], dtype=f"{endian}f4")[0])
            break
        if size == 540 and len(raw) >= 540:
            dim = np.frombuffer(raw[16:80], dtype=f"{endian}i8").astype(int)
            datatype = int(np.frombuffer(raw[12:14], dtype=f"{endian}i2")[0])
            bitpix = int(np.frombuffer(raw[14:16], dtype=f"{endian}i2")[0])
            pixdim = np.frombuffer(raw[104:168], dtype=f"{endian}f8").astype(float)
            offset = int(np.frombuffer(raw[168:176], dtype=f"{endian}i8")[0])
            break
    else:
        return None
    ndim = int(dim[0])
    if not 1 <= ndim <= 7:
        return None
    shape = tuple(int(n) for n in dim[1 : ndim + 1])
    nsp = min(ndim, 3)
    problem = None
    if not np.all(np.isfinite(pixdim[1 : nsp + 1])) or np.any(pixdim[1 : nsp + 1] <= 0):
        problem = f"pixdim {pixdim[1 : nsp + 1].tolist()}"
    single_file = p.name.lower().endswith((".nii", ".nii.gz"))
    return HeaderInfo(
        shape=shape,
        itemsize=max(bitpix // 8, 0),
        data_path=p,
        data_offset=max(offset, 352 if size == 348 else 544) if single_file else offset,
        compressed=p.name.lower().endswith(".gz"),
        spacing_problem=problem,
        float_data=datatype in _NIFTI_FLOAT_TYPES,
    )


def _nrrd_fields(p: Path) -> tuple[dict[str, str], int]:
    with open(p, "rb") as fh:
        head = fh.read(65536)
    end = head.find(b"\n\n")
    if end < 0:
        end = len(head)
    text = head[:end].decode("latin-1", errors="replace")
    fields: dict[str, str] = {}
    for line in text.splitlines()[1:]:
        if line.startswith("#") or ":" not in line:
            continue
        key, _, value = line.partition(":")
        fields[key.strip().lower()] = value.lstrip("=").strip()
    return fields, end + 2


def _nrrd_spacing_problem(fields: dict[str, str]) -> str | None:
    if "space directions" in fields:
        for vec in fields["space directions"].split(")"):
            vec = vec.strip().lstrip("(")
            if not vec or vec.lower() == "none":
                continue
            try:
                v = np.asarray([float(x) for x in vec.split(",")], dtype=float)
            except ValueError:
                return f"space directions: {fields['space directions']}"
            if not np.all(np.isfinite(v)) or float(np.linalg.norm(v)) <= 0:
                return f"space directions: {fields['space directions']}"
    if "spacings" in fields:
        try:
            s = np.asarray([float(x) for x in fields["spacings"].split()], dtype=float)
        except ValueError:
            return f"spacings: {fields['spacings']}"
        if not np.all(np.isfinite(s)) or np.any(s <= 0):
            return f"spacings: {fields['spacings']}"
    return None


def _nrrd_header(p: Path) -> HeaderInfo | None:
    fields, offset = _nrrd_fields(p)
    try:
        shape = tuple(int(x) for x in fields.get("sizes", "").split())
    except ValueError:
        return None
    itemsize = _NRRD_TYPES.get(fields.get("type", "").lower(), 0)
    encoding = fields.get("encoding", "raw").lower()
    datafile = fields.get("data file") or fields.get("datafile")
    data_path, data_offset = p, offset
    if datafile and datafile.upper() != "LIST" and "%" not in datafile:
        data_path, data_offset = p.parent / datafile, 0
    return HeaderInfo(
        shape=shape,
        itemsize=itemsize if encoding in ("raw", "gzip", "gz") else 0,
        data_path=data_path,
        data_offset=data_offset,
        compressed=encoding in ("gzip", "gz"),
        spacing_problem=_nrrd_spacing_problem(fields),
    )


def read_header_info(path: Path) -> HeaderInfo | None:
    """Header facts of a NIfTI (.nii/.nii.gz) or NRRD (.nrrd/.nhdr) file; None for other formats."""
    name = path.name.lower()
    if name.endswith((".nii", ".nii.gz")):
        return _nifti_header(path)
    if name.endswith((".nrrd", ".nhdr")):
        return _nrrd_header(path)
    return None


def _gunzip_length(path: Path, offset: int, need: int) -> tuple[int, str | None]:
    """Bytes available after ``offset`` in a gzip stream (stops once ``need`` is reached)."""
    total = 0
    try:
        with open(path, "rb") as raw:
            raw.seek(offset)
            with gzip.GzipFile(fileobj=raw) as fh:
                while total < need:
                    chunk = fh.read(_CHUNK)
                    if not chunk:
                        break
                    total += len(chunk)
    except EOFError:
        return total, "the gzip stream ends before its end marker (the file was cut)"
    except (OSError, zlib.error) as exc:
        return total, f"the gzip stream is damaged ({exc})"
    return total, None


def _check_size(path: Path, info: HeaderInfo) -> None:
    if info.itemsize <= 0 or not info.shape:
        return
    need = int(np.prod([int(n) for n in info.shape])) * info.itemsize
    if not info.data_path.is_file():
        raise TruncatedImageError(
            f"image {path}: its header points to the data file {info.data_path}, which does not exist. "
            "Keep the header and its data file together."
        )
    if info.compressed:
        nifti_gz = path.name.lower().endswith(".nii.gz")  # the gzip stream holds header + data
        need_stream = need + (info.data_offset if nifti_gz else 0)
        have, why = _gunzip_length(info.data_path, 0 if nifti_gz else info.data_offset, need_stream)
        if have < need_stream:
            reason = f"; {why}" if why else ""
            raise TruncatedImageError(
                f"image {path} is truncated: its header declares {' × '.join(str(n) for n in info.shape)} voxels "
                f"({need} bytes uncompressed) but only {max(have - (need_stream - need), 0)} bytes of voxel data "
                f"could be read{reason}. Copy or export the file again."
            )
        return
    have = info.data_path.stat().st_size - info.data_offset
    if have < need:
        raise TruncatedImageError(
            f"image {path} is truncated: its header declares {' × '.join(str(n) for n in info.shape)} voxels "
            f"({need} bytes) but the file holds {max(have, 0)} bytes of voxel data. Copy or export the file again."
        )


def check_header_before_reading(path: Path, max_gb: float | None = None) -> None:
    """Spacing, memory and size checks of a NIfTI/NRRD file, before any voxel is read."""
    info = read_header_info(path)
    if info is None:
        return
    if info.spacing_problem is not None:
        raise InvalidSpacingError(
            f"image {path}: the header gives a zero, negative or NaN voxel spacing ({info.spacing_problem}). "
            "Fix the NIfTI pixdim / NRRD space directions; spacing must be positive mm."
        )
    check_memory_estimate(path, info.shape, max(info.itemsize, 1), max_gb)
    _check_size(path, info)
    if info.float_data:
        _check_nifti_finite(path)


def _check_nifti_finite(path: Path) -> None:
    """ITK's NIfTI reader turns NaN voxels into 0 silently: scan the stored values (nibabel) first."""
    import nibabel as nib

    try:
        data = np.asarray(nib.load(str(path)).dataobj)  # type: ignore[attr-defined]  # Nifti1Image has dataobj
    except Exception:  # an unreadable file is reported by the reader itself
        return
    require_finite_voxels(data.transpose(2, 1, 0) if data.ndim == 3 else data, path)  # (i, j, k) → (k, j, i)


def require_finite_voxels(array: np.ndarray, path: Path | str) -> None:
    """Refuse NaN/Inf voxel values, naming how many and where the first one is."""
    if array.dtype.kind not in "fc":
        return
    bad = ~np.isfinite(array)
    if bad.any():
        first = np.unravel_index(int(np.argmax(bad)), array.shape)
        raise NonFiniteVoxelError(
            f"image {path} holds {int(bad.sum())} NaN or infinite voxel value(s) (first at index k, j, i = "
            f"{[int(x) for x in first]}). Replace them (e.g. by the background value) and save the image again."
        )
