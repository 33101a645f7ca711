"""Case folders: load (validate) and save (atomically) one patient's planning input.

Layout (docs/case-format.md)::

    case.yaml        patient: {...}  (+ optional image:, labels:, label_table:, image_modality:)
    image.nii.gz     or image.nii / image.nrrd / image.mha, or dicom/ (one CT/MR series)
    labels.nii.gz    or labels.nii / labels.nrrd / label.nrrd / labels.mha, or seg.dcm, or rtstruct.dcm
    labels.yaml      label value → name, or value → {name, role}

Decisions (recorded in docs/imaging.md):
- image and labels must share geometry. A label map that covers *the same voxel centres*
  stored with flipped/permuted axes (e.g. TotalSegmentator's DICOM label map with y reversed)
  is resampled by physical position, and a note says so (never silently misaligned).
  Anything else is a :class:`~latplan.errors.GeometryMismatchError` naming what differs;
  a label map whose affine is the image's with x and y negated is an
  :class:`~latplan.errors.OrientationError` ("RAS presented as LPS").
- notes (what was adapted while loading) are logged at WARNING and appended to the
  optional ``notes`` list argument and kept in ``Case.notes``.
- ``case.yaml`` may be absent only when the caller passes ``patient=``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from pydantic import ValidationError

from latplan.case import Case, LabelTable, Patient
from latplan.case.labels import TOTALSEGMENTATOR_TO_CANONICAL
from latplan.case.vocabulary import CANONICAL_STRUCTURES, role_of
from latplan.errors import (
    CaseFolderError,
    InvalidInputError,
    LatplanError,
    OrientationError,
    UnknownStructureError,
)
from latplan.imaging.components import split_lesion_components
from latplan.imaging.dicom_series import dcmread_checked
from latplan.imaging.errors import ContoursOutsideImageError, EmptyLabelMapError, TruncatedDicomError
from latplan.imaging.hashing import file_sha256
from latplan.imaging.nifti import read_image, read_labels
from latplan.imaging.output import output_dir
from latplan.imaging.paths import confine, require_inside
from latplan.imaging.resample import resample_labels_to, same_physical_grid
from latplan.imaging.rtstruct import RTSTRUCT_SOP_CLASS, read_rtstruct
from latplan.imaging.safe_yaml import load_yaml_file
from latplan.imaging.seg import SEG_SOP_CLASSES, read_seg
from latplan.imaging.volume import Volume

__all__ = [
    "CASE_YAML_KEYS",
    "align_labels_to_image",
    "file_sha256",
    "label_table_from_names",
    "load_case_folder",
    "load_case_from_images",
    "load_label_table",
    "parse_patient",
    "save_case_folder",
]

log = logging.getLogger(__name__)

#: top-level keys allowed in case.yaml
CASE_YAML_KEYS = ("patient", "image", "labels", "label_table", "image_modality")
IMAGE_CANDIDATES = ("image.nii.gz", "image.nii", "image.nrrd", "image.mha", "dicom")
LABEL_CANDIDATES = (
    "labels.nii.gz", "labels.nii", "labels.nrrd", "label.nrrd", "labels.mha", "seg.dcm", "rtstruct.dcm",
)
LABEL_TABLE_NAME = "labels.yaml"
#: label map affines closer than this (mm) to the image's are snapped to it (float32 storage noise)
SNAP_TOL_MM = 1e-2


def _note(notes: list[str] | None, msg: str) -> None:
    log.warning(msg)
    if notes is not None:
        notes.append(msg)


def _hash_inputs(folder: Path, paths: list[Path]) -> dict[str, str]:
    out: dict[str, str] = {}
    for p in paths:
        files = sorted(q for q in p.rglob("*") if q.is_file()) if p.is_dir() else [p]
        for f in files:
            try:
                key = f.relative_to(folder).as_posix()
            except ValueError:
                key = f.as_posix()
            out[key] = file_sha256(f)
    return out


def _read_yaml(path: Path) -> Any:
    """UTF-8 YAML without duplicate keys or alias bombs (:mod:`latplan.imaging.safe_yaml`)."""
    return load_yaml_file(path)


def parse_patient(data: Any, source: str = "case.yaml") -> Patient:
    """Validate a ``patient:`` mapping; pydantic errors become one CaseFolderError naming each field."""
    if isinstance(data, Patient):
        return data
    if not isinstance(data, Mapping):
        raise CaseFolderError(f"{source}: 'patient' must be a mapping of fields (id, primary, ...); got {type(data).__name__}.")
    try:
        return Patient.model_validate(dict(data))
    except ValidationError as exc:
        parts = []
        for err in exc.errors():
            loc = ".".join(str(x) for x in err["loc"])
            if err["type"] == "extra_forbidden":
                parts.append(f"unknown key 'patient.{loc}' (put site-specific fields under patient.extra)")
            else:
                parts.append(f"patient.{loc}: {err['msg']}")
        raise CaseFolderError(f"{source}: " + "; ".join(parts) + ". See docs/case-format.md.") from None


def _canonical(name: str) -> str:
    n = str(name).strip()
    if n in TOTALSEGMENTATOR_TO_CANONICAL or n in CANONICAL_STRUCTURES:
        return n
    low = n.lower().replace(" ", "_").replace("-", "_")
    return low


def label_table_from_names(names: Mapping[int, str], notes: list[str] | None = None) -> LabelTable:
    """Label table for names found inside a SEG/RTSTRUCT (no labels.yaml given).

    Names are normalised (lower case, spaces → _) and mapped to the canonical vocabulary;
    names that stay unknown get role ``other`` and a note (they are still usable by name).
    """
    mapping: dict[int, Any] = {}
    for value, raw in names.items():
        name = _canonical(raw)
        try:
            role_of(TOTALSEGMENTATOR_TO_CANONICAL.get(name, name))
            mapping[int(value)] = name
        except UnknownStructureError:
            mapping[int(value)] = {"name": name, "role": "other"}
            _note(notes, f"structure {raw!r} (label {value}) is not in the vocabulary: kept as {name!r} with role 'other'. "
                         "Add a labels.yaml naming it canonically (docs/case-format.md) if it matters for planning.")
    return LabelTable.from_mapping(mapping)


def load_label_table(path: str | os.PathLike[str]) -> LabelTable:
    """Read ``labels.yaml`` (value → name, or value → {name, role}); unknown names raise."""
    p = Path(path)
    if not p.is_file():
        raise CaseFolderError(f"label table {p} not found: write labels.yaml mapping label values to structure names.")
    data = _read_yaml(p)
    if isinstance(data, Mapping) and "labels" in data and isinstance(data["labels"], Mapping):
        data = data["labels"]
    if not isinstance(data, Mapping) or not data:
        raise CaseFolderError(f"{p} must be a mapping 'value: name' (e.g. '5: liver'); got {type(data).__name__}.")
    try:
        return LabelTable.from_mapping(data)
    except UnknownStructureError as exc:
        raise UnknownStructureError(f"{p.name}: {exc}") from None


_MIRRORS: tuple[tuple[str, tuple[float, float, float]], ...] = (
    ("x and y (RAS coordinates presented as LPS)", (-1.0, -1.0, 1.0)),
    ("x (left-right)", (-1.0, 1.0, 1.0)),
    ("y (anterior-posterior)", (1.0, -1.0, 1.0)),
    ("z (superior-inferior)", (1.0, 1.0, -1.0)),
    ("x and z", (-1.0, 1.0, -1.0)),
    ("y and z", (1.0, -1.0, -1.0)),
    ("x, y and z", (-1.0, -1.0, -1.0)),
)


def world_mirror(image: Volume, labels: Volume) -> str | None:
    """Name the world axes by which ``labels``' affine is ``image``'s mirrored, or None.

    Affine comparison, so it does not depend on grid asymmetry: a label map whose affine equals
    the image's with world axes negated (``diag(±1) @ image.affine``) is mirrored anatomy even
    when, on a grid symmetric about the origin, its voxel centres coincide with the image's.
    """
    labels_cover_image = same_physical_grid(image, labels)
    for name, signs in _MIRRORS:
        flip = np.diag([*signs, 1.0])
        try:
            mirrored = Volume(np.zeros(labels.shape, dtype=np.uint8), flip @ labels.affine)
        except LatplanError:
            return None
        same_affine = np.allclose(mirrored.affine[:3, :3], image.affine[:3, :3], atol=1e-4) and np.allclose(
            mirrored.affine[:3, 3], image.affine[:3, 3], atol=SNAP_TOL_MM
        )
        if same_affine or (not labels_cover_image and same_physical_grid(image, mirrored)):
            return name
    return None


def align_labels_to_image(
    image: Volume, labels: Volume, notes: list[str] | None = None, what: str = "label map"
) -> Volume:
    """Return ``labels`` on ``image``'s grid or raise naming what differs (see module docstring)."""
    if image.same_geometry(labels):
        return labels
    if image.same_geometry(labels, tol_mm=SNAP_TOL_MM):
        _note(notes, f"{what}: affine differs from the image by < {SNAP_TOL_MM} mm (storage rounding); snapped to the image grid.")
        return Volume(labels.array, image.affine)
    mirror = world_mirror(image, labels)
    if mirror is not None:
        raise OrientationError(
            f"{what} is mirrored along {mirror}: its affine is the image's with those world axes negated "
            f"({image.geometry_difference(labels)}). Re-export the label map from the same tool as the image, or "
            "negate the matching rows of its affine."
        )
    if same_physical_grid(image, labels):
        _note(
            notes,
            f"{what} covers the image's voxels but is stored with other axis directions/order "
            f"({image.geometry_difference(labels)}); resampled by physical position (nearest neighbour).",
        )
        return resample_labels_to(labels, image)
    image.require_same_geometry(labels, f"image and {what}")
    return labels  # pragma: no cover - require_same_geometry raised


def _pick(folder: Path, explicit: object, candidates: tuple[str, ...], what: str) -> Path:
    if explicit is not None:
        p = confine(folder, explicit, what, str(folder / "case.yaml"))
        if not p.exists():
            raise CaseFolderError(f"case.yaml names {what} {explicit!r} but {p} does not exist.")
        return p
    found = [folder / c for c in candidates if (folder / c).exists()]
    if not found:
        raise CaseFolderError(
            f"no {what} in {folder}: expected one of {', '.join(candidates)} (or name it in case.yaml)."
        )
    if len(found) > 1:
        raise CaseFolderError(
            f"{folder} holds several {what}s ({', '.join(p.name for p in found)}); keep one or name it in case.yaml."
        )
    require_inside(folder, found[0], what)
    return found[0]


def _dicom_modality(path: Path) -> str:
    ds = dcmread_checked(path, stop_before_pixels=True)
    modality = str(getattr(ds, "Modality", "") or "").upper()
    sop = str(getattr(ds, "SOPClassUID", "") or "")
    if modality:
        return modality
    if sop == RTSTRUCT_SOP_CLASS:
        return "RTSTRUCT"
    if sop in SEG_SOP_CLASSES:
        return "SEG"
    raise TruncatedDicomError(
        f"DICOM file {path} has no Modality and an unknown SOP Class UID {sop!r}: it is truncated or damaged. "
        "Export the segmentation again."
    )


def _first_dicom_modality(folder: Path) -> str:
    for f in sorted(folder.iterdir()):
        if f.is_file():
            try:
                return _dicom_modality(f)
            except LatplanError:
                continue
    return "CT"


def _read_labels_any(
    path: Path, image: Volume, table_path: Path | None, notes: list[str] | None
) -> tuple[Volume, LabelTable]:
    dicom_modality = _dicom_modality(path) if path.is_file() and path.name.lower().endswith(".dcm") else None
    if dicom_modality == "RTSTRUCT":
        labels, names, empty = read_rtstruct(path, image, notes)
        if not labels.same_geometry(image):
            had = {int(v) for v in np.unique(labels.array)} - {0}
            labels = resample_labels_to(labels, image)
            kept = {int(v) for v in np.unique(labels.array)} - {0}
            if had and not kept:
                raise ContoursOutsideImageError(
                    f"RTSTRUCT {path}: every contour lies outside the image ({image.shape[0]} slice(s), "
                    f"{image.shape[1]}×{image.shape[2]} pixels): the structure set was drawn on another series. "
                    "Export the RTSTRUCT for this image (same Frame of Reference) or use the matching CT."
                )
            lost = sorted(names[v] for v in had - kept if v in names)
            if lost:
                _note(notes, f"{path.name}: structure(s) entirely outside the image: {', '.join(lost)} (not labelled).")
            _note(notes, f"{path.name}: contours rasterised on their own grid were resampled onto the image grid "
                         "(nearest neighbour by position); parts outside the image are dropped.")
        elif not labels.array.any():
            raise ContoursOutsideImageError(
                f"RTSTRUCT {path}: no contour covers a voxel centre of the image ({image.shape[1]}×{image.shape[2]} "
                "pixels per slice): the contours lie outside the image in-plane. Export the RTSTRUCT for this image "
                "(same Frame of Reference) or use the matching CT."
            )
        if empty:
            _note(notes, f"{path.name}: structure(s) with no voxels: {', '.join(empty)} (reported as empty, not labelled).")
    elif dicom_modality is not None:
        labels, names = read_seg(path, image)
    else:
        labels = read_labels(path)
        names = None
    if table_path is not None and table_path.exists():
        table = load_label_table(table_path)
    elif names is not None:
        table = label_table_from_names(names, notes)
    else:
        raise CaseFolderError(
            f"{path.name} is a plain label map but there is no {LABEL_TABLE_NAME} beside it: write one mapping each "
            "label value to a structure name (e.g. '5: liver')."
        )
    labels = align_labels_to_image(image, labels, notes, path.name)
    if not labels.array.any():
        raise EmptyLabelMapError(
            f"label map {path} holds no labelled voxel on the image grid (all zero): no structure is segmented. "
            "Export the segmentation again, or check that it belongs to this image."
        )
    present = {int(v) for v in np.unique(labels.array)} - {0}
    unnamed = sorted(present - {e.value for e in table.entries})
    if unnamed:
        _note(notes, f"label values {unnamed} in {path.name} have no entry in the label table; they are ignored.")
    return labels, table


def _build_case(
    folder: Path | None,
    patient: Patient,
    image_path: Path,
    labels_path: Path,
    table_path: Path | None,
    extra_hashed: list[Path],
    modality: str | None,
    notes: list[str] | None,
) -> Case:
    if notes is None:
        notes = []  # the Case keeps them (Case.notes) so reports can show what was adapted
    image = read_image(image_path)
    if image.array.dtype.kind not in "f":
        image = image.with_array(image.array.astype(np.float32))
    labels, table = _read_labels_any(labels_path, image, table_path, notes)
    labels, table = split_lesion_components(labels, table, notes)
    if modality is None:
        modality = _first_dicom_modality(image_path) if image_path.is_dir() else "CT"
    base = folder if folder is not None else image_path.parent
    hashed = [image_path, labels_path, *([table_path] if table_path is not None and table_path.exists() else []), *extra_hashed]
    case = Case(
        patient=patient,
        image=image,
        labels=labels,
        label_table=table,
        source_dir=folder,
        input_hashes=_hash_inputs(base, hashed),
        image_modality=str(modality).upper(),
        notes=notes,
    )
    _check_lesions(case, notes)
    return case


def _check_lesions(case: Case, notes: list[str] | None) -> None:
    """Loading does not judge lesion size; it passes tiny/empty lesions on with a note.

    Measurement ([A2] anatomy) raises for them; ``Case.lesion_mask`` raises for empty ones.
    """
    from latplan.imaging.insert import MIN_LESION_VOXELS

    for name in case.label_table.lesion_names():
        n = int(np.count_nonzero(case.mask_array(name)))
        if n == 0:
            _note(notes, f"lesion {name!r} is in the label table but has no voxels in the label map (empty mask).")
        elif n < MIN_LESION_VOXELS:
            _note(notes, f"lesion {name!r} has only {n} voxel(s): too small to measure diameter/shape reliably.")


def load_case_folder(
    folder: str | os.PathLike[str],
    patient: Patient | Mapping[str, Any] | None = None,
    notes: list[str] | None = None,
) -> Case:
    """Load and validate a case folder (docs/case-format.md).

    Parameters
    ----------
    folder:
        The case folder.
    patient:
        Patient record to use when the folder has no ``case.yaml`` (or to override it).
    notes:
        Optional list that receives one line per adaptation made while loading (labels
        resampled from a flipped axis, unnamed label values, empty RTSTRUCT structures...).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise CaseFolderError(f"case folder {folder} does not exist or is not a folder.")
    case_yaml = folder / "case.yaml"
    spec: dict[str, Any] = {}
    if case_yaml.exists():
        require_inside(folder, case_yaml, "case.yaml")
        data = _read_yaml(case_yaml)
        if data is None:
            data = {}
        if not isinstance(data, Mapping):
            raise CaseFolderError(f"{case_yaml} must be a mapping with a top-level 'patient:' key.")
        unknown = [k for k in data if k not in CASE_YAML_KEYS]
        if unknown:
            raise CaseFolderError(
                f"{case_yaml}: unknown top-level key(s) {', '.join(repr(k) for k in unknown)}; allowed: "
                f"{', '.join(CASE_YAML_KEYS)}. Patient fields go under 'patient:'."
            )
        spec = dict(data)
    if patient is not None:
        pat = parse_patient(patient, "patient argument")
        if "patient" in spec:
            _note(notes, f"patient record from the caller overrides the one in {case_yaml.name}.")
    elif "patient" in spec:
        pat = parse_patient(spec["patient"], str(case_yaml))
    elif case_yaml.exists():
        raise CaseFolderError(f"{case_yaml} has no 'patient:' mapping; at least patient.id and patient.primary are required.")
    else:
        raise CaseFolderError(
            f"{folder} has no case.yaml: write one holding at least 'patient: {{id: ..., primary: ...}}' "
            "(docs/case-format.md, examples/case.yaml); `latplan case import-totalsegmentator ... --clinical case.yaml` "
            "writes a complete case folder, and `latplan insert-lesion` alone also accepts --patient-id ID --primary "
            "colorectal."
        )
    image_path = _pick(folder, spec.get("image"), IMAGE_CANDIDATES, "image")
    labels_path = _pick(folder, spec.get("labels"), LABEL_CANDIDATES, "label map")
    table_path = (
        confine(folder, spec["label_table"], "label_table", str(case_yaml)) if spec.get("label_table") is not None
        else folder / LABEL_TABLE_NAME
    )
    if table_path.exists():
        require_inside(folder, table_path, "label table")
    if spec.get("label_table") and not table_path.exists():
        raise CaseFolderError(f"case.yaml names label_table {spec['label_table']!r} but {table_path} does not exist.")
    extra = [case_yaml] if case_yaml.exists() else []
    return _build_case(folder, pat, image_path, labels_path, table_path, extra, spec.get("image_modality"), notes)


def load_case_from_images(
    image_path: str | os.PathLike[str],
    labels_path: str | os.PathLike[str],
    label_table_path: str | os.PathLike[str] | None,
    patient: Patient | Mapping[str, Any],
    notes: list[str] | None = None,
    image_modality: str | None = None,
) -> Case:
    """Build a Case from loose files (NIfTI/NRRD image + label map + labels.yaml, or a SEG/RTSTRUCT)."""
    pat = parse_patient(patient, "patient argument")
    ip, lp = Path(image_path), Path(labels_path)
    for p, what in ((ip, "image"), (lp, "label map")):
        if not p.exists():
            raise InvalidInputError(f"{what} {p} does not exist.")
    tp = Path(label_table_path) if label_table_path is not None else None
    if tp is not None and not tp.exists():
        raise CaseFolderError(f"label table {tp} does not exist.")
    return _build_case(None, pat, ip, lp, tp, [], image_modality, notes)


# ---------------------------------------------------------------------------------------------
# saving
# ---------------------------------------------------------------------------------------------
def _label_table_yaml(table: LabelTable) -> dict[int, Any]:
    out: dict[int, Any] = {}
    for e in table.entries:
        try:
            default_role = role_of(e.name)
        except UnknownStructureError:
            default_role = None
        out[int(e.value)] = e.name if default_role == e.role else {"name": e.name, "role": e.role.value}
    return out


def _labels_dtype(arr: np.ndarray) -> np.ndarray:
    mx = int(arr.max()) if arr.size else 0
    if mx <= np.iinfo(np.uint8).max:
        return arr.astype(np.uint8)
    if mx <= np.iinfo(np.uint16).max:
        return arr.astype(np.uint16)
    return arr.astype(np.int32)


def save_case_folder(case: Case, folder: str | os.PathLike[str], overwrite: bool = False) -> Path:
    """Write ``case`` as a case folder (case.yaml, image.nii.gz, labels.nii.gz, labels.yaml), atomically.

    Everything is written into a temporary sibling folder which is renamed into place only when
    complete (:func:`latplan.imaging.output.output_dir`), so a
    failure never leaves a half-written case. An existing folder is an error unless ``overwrite``
    (then it is replaced in one rename; the old one is removed after).
    """
    from latplan.imaging.nifti import write_nifti

    folder = Path(folder)
    if folder.exists() and not overwrite:
        raise CaseFolderError(f"{folder} already exists; choose another output folder or pass overwrite=True.")
    with output_dir(folder, overwrite=True, kind="case", replace_latplan_output=False, manifest=False) as tmp:
        spec = {"patient": case.patient.model_dump(mode="json", exclude_none=True), "image_modality": case.image_modality}
        with open(tmp / "case.yaml", "w", encoding="utf-8") as fh:
            fh.write("# latplan case folder (docs/case-format.md)\n")
            yaml.safe_dump(spec, fh, sort_keys=False, allow_unicode=True)
        img = case.image
        if img.array.dtype == np.float64:
            img = img.with_array(img.array.astype(np.float32))
        write_nifti(img, tmp / "image.nii.gz")
        write_nifti(case.labels.with_array(_labels_dtype(case.labels.array)), tmp / "labels.nii.gz")
        with open(tmp / LABEL_TABLE_NAME, "w", encoding="utf-8") as fh:
            fh.write("# label value -> structure name (or {name, role}); docs/case-format.md\n")
            yaml.safe_dump(_label_table_yaml(case.label_table), fh, sort_keys=True, allow_unicode=True)
    return folder
