"""Small I/O helpers of the follow-up package: Volume ⇄ SimpleITK, NIfTI, label tables.

Why here and not in :mod:`latplan.imaging`: timepoint folders hold only image + labels
(no ``case.yaml``), and the registration works on SimpleITK images. When the shared
case-folder reader of [A1] (``latplan.imaging.case_folder``) is importable it is used for
the *baseline* case; these helpers read the timepoints. SimpleITK reads NIfTI (RAS on disk)
into DICOM LPS, which is the :class:`~latplan.imaging.volume.Volume` convention.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk
import yaml

from latplan.case.labels import LabelTable
from latplan.errors import CaseFolderError, InvalidImageError
from latplan.imaging.volume import Volume

IMAGE_NAMES = ("image.nii.gz", "image.nii", "image.nrrd", "image.mha")
LABEL_NAMES = ("labels.nii.gz", "labels.nii", "labels.nrrd", "labels.mha")


def volume_to_sitk(vol: Volume, dtype: Any | None = None) -> sitk.Image:
    """SimpleITK image with the Volume's grid (origin, spacing, direction in LPS mm)."""
    arr = vol.array if dtype is None else vol.array.astype(dtype)
    if arr.dtype == bool:
        arr = arr.astype(np.uint8)
    img = sitk.GetImageFromArray(np.ascontiguousarray(arr))
    spacing = vol.spacing_mm
    img.SetSpacing([float(s) for s in spacing])
    img.SetOrigin([float(o) for o in vol.origin_mm])
    img.SetDirection([float(d) for d in vol.direction.flatten()])
    return img


def sitk_to_volume(img: sitk.Image) -> Volume:
    """Volume (array (k, j, i), affine LPS) from a SimpleITK 3-D image."""
    if img.GetDimension() != 3:
        raise InvalidImageError(f"expected a 3-D image, got {img.GetDimension()}-D.")
    arr = sitk.GetArrayFromImage(img)
    direction = np.asarray(img.GetDirection(), float).reshape(3, 3)
    affine = np.eye(4)
    affine[:3, :3] = direction * np.asarray(img.GetSpacing(), float)
    affine[:3, 3] = img.GetOrigin()
    return Volume(arr, affine)


def find_file(folder: Path, names: tuple[str, ...], what: str) -> Path:
    for n in names:
        p = folder / n
        if p.is_file():
            return p
    raise CaseFolderError(f"{folder}: no {what} found; expected one of {', '.join(names)}.")


def read_volume(path: Path) -> Volume:
    try:
        return sitk_to_volume(sitk.ReadImage(str(path)))
    except RuntimeError as exc:
        raise InvalidImageError(f"cannot read image {path}: {exc}".splitlines()[0]) from None


def write_volume(vol: Volume, path: Path, dtype: Any | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(volume_to_sitk(vol, dtype), str(path), True)


def read_yaml(path: Path) -> Any:
    try:
        with path.open(encoding="utf-8") as fh:
            return yaml.safe_load(fh)
    except yaml.YAMLError as exc:
        raise CaseFolderError(f"{path} is not valid YAML: {exc}") from None


def write_yaml(data: Any, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as fh:
        yaml.safe_dump(data, fh, sort_keys=False, allow_unicode=True)


def read_label_table(folder: Path) -> LabelTable:
    """``labels.yaml``: ``{value: name}`` or ``{value: {name, role}}``, optionally under ``labels:``."""
    path = folder / "labels.yaml"
    if not path.is_file():
        raise CaseFolderError(f"{folder}: labels.yaml is missing; it maps label values to structure names.")
    data = read_yaml(path)
    if isinstance(data, dict) and "labels" in data and isinstance(data["labels"], dict):
        data = data["labels"]
    if not isinstance(data, dict):
        raise CaseFolderError(f"{path}: expected a mapping value → name.")
    return LabelTable.from_mapping(data)


def label_table_mapping(table: LabelTable) -> dict[int, dict[str, str]]:
    """labels.yaml content that round-trips names and roles."""
    return {e.value: {"name": e.name, "role": e.role.value} for e in table.entries}
