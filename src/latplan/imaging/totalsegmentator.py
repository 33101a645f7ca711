"""Import TotalSegmentator output as a latplan case folder (``latplan case import-totalsegmentator``).

Input: the image TotalSegmentator ran on (NIfTI/NRRD file or DICOM folder) and one or more task
outputs, each either a folder of per-class NIfTI files (TotalSegmentator's default: ``liver.nii.gz``,
``liver_vessels.nii.gz``... — the file name is the class name) or one multilabel file (``--ml``: class
names from the file's NIfTI extension written by TotalSegmentator, else from the task's class map,
``case/data/totalsegmentator.yaml``).

Output: a case folder whose ``labels.yaml`` uses TotalSegmentator's own class names (value → name),
which ``latplan measure`` / ``latplan plan`` read directly. Several task outputs are merged into one
label map by the precedence in the data file (body < total < liver segments < liver vessels < lesions:
a later group overwrites an earlier one where both label a voxel). When liver segments and a liver
label are both present, the liver is represented by its segments and liver voxels outside every
segment go to the nearest segment (a note says how many).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml
from scipy import ndimage

from latplan.case.totalsegmentator import ts_class, ts_precedence, ts_task_classes
from latplan.errors import CaseFolderError, InvalidInputError
from latplan.imaging.case_folder import align_labels_to_image, load_case_folder, parse_patient
from latplan.imaging.errors import EmptyLabelMapError
from latplan.imaging.nifti import read_image, read_labels, write_nifti
from latplan.imaging.output import output_dir
from latplan.imaging.safe_yaml import load_yaml_file
from latplan.imaging.volume import Volume

__all__ = ["ImportResult", "TsInput", "import_totalsegmentator", "merge_classes", "read_task_output"]

_NIFTI_SUFFIXES = (".nii.gz", ".nii")
_CARET_LABEL = re.compile(r'<Label\s+Key="(\d+)"[^>]*>\s*<!\[CDATA\[(.*?)\]\]>', re.S)


@dataclass(frozen=True)
class TsInput:
    """One TotalSegmentator output (folder of per-class files or a multilabel file) and its task."""

    path: Path
    task: str | None = None


@dataclass(frozen=True)
class ImportResult:
    """What was written: the case folder, its label table (value → TotalSegmentator name) and notes."""

    out: Path
    labels: dict[int, str]
    notes: list[str] = field(default_factory=list)
    has_case_yaml: bool = True


def _class_name_of(path: Path) -> str:
    name = path.name
    for suffix in _NIFTI_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def _extension_names(path: Path) -> dict[int, str]:
    """Label names TotalSegmentator stores in a multilabel NIfTI's extension (CaretExtension XML)."""
    import nibabel as nib

    try:
        img = nib.load(str(path))
    except Exception:
        return {}
    names: dict[int, str] = {}
    for ext in getattr(img.header, "extensions", []):
        try:
            text = ext.get_content().decode("utf-8", errors="replace")
        except (AttributeError, UnicodeDecodeError):
            continue
        names.update({int(k): v.strip() for k, v in _CARET_LABEL.findall(text)})
    return names


def _folder_classes(folder: Path, task: str | None, image: Volume, notes: list[str]) -> list[tuple[str, np.ndarray]]:
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.name.lower().endswith(_NIFTI_SUFFIXES))
    if not files:
        raise CaseFolderError(
            f"{folder} holds no per-class NIfTI files (liver.nii.gz, ...): pass TotalSegmentator's output folder "
            "or its multilabel file (--ml)."
        )
    known = set(ts_task_classes(task).values()) if task else None
    out: list[tuple[str, np.ndarray]] = []
    for f in files:
        name = _class_name_of(f)
        if known is not None and name not in known:
            notes.append(f"{f.name}: class {name!r} is not in TotalSegmentator task {task!r}; kept with its own name.")
        vol = read_labels(f, allow_empty=True)
        vol = align_labels_to_image(image, vol, notes, f.name)
        mask = vol.array > 0
        if mask.any():
            out.append((name, mask))
    return out


def _multilabel_classes(path: Path, task: str | None, image: Volume, notes: list[str]) -> list[tuple[str, np.ndarray]]:
    vol = align_labels_to_image(image, read_labels(path, allow_empty=True), notes, path.name)
    names = _extension_names(path)
    source = "the file's own label names"
    if not names:
        names = ts_task_classes(task or "total")
        source = f"task {task or 'total'}'s class map"
    elif task is not None:
        expected = ts_task_classes(task)
        if any(expected.get(v) not in (None, n) for v, n in names.items()):
            notes.append(f"{path.name}: its stored label names differ from task {task!r}'s class map; the file's own "
                         "names are used.")
    out: list[tuple[str, np.ndarray]] = []
    for value in sorted(int(v) for v in np.unique(vol.array) if v != 0):
        name = names.get(value)
        if name is None:
            name = f"{task or 'total'}_label_{value}"
            notes.append(f"{path.name}: label {value} is not in {source}; kept as {name!r} (role other).")
        out.append((name, vol.array == value))
    notes.append(f"{path.name}: label names from {source}.")
    return out


def read_task_output(item: TsInput, image: Volume, notes: list[str]) -> list[tuple[str, np.ndarray]]:
    """``[(class name, mask on the image grid)]`` of one task output (empty classes left out)."""
    if item.task is not None:
        ts_task_classes(item.task)  # unknown task: named error
    if not item.path.exists():
        raise InvalidInputError(f"TotalSegmentator output {item.path} does not exist; check the path.")
    if item.path.is_dir():
        return _folder_classes(item.path, item.task, image, notes)
    return _multilabel_classes(item.path, item.task, image, notes)


def _segments_replace_liver(classes: list[tuple[str, np.ndarray]], notes: list[str]) -> list[tuple[str, np.ndarray]]:
    segments = [(n, m) for n, m in classes if n.startswith("liver_segment_")]
    liver = [m for n, m in classes if n == "liver"]
    if not segments or not liver:
        return classes
    seg_index = np.zeros(liver[0].shape, np.int32)
    for i, (_, m) in enumerate(segments, start=1):
        seg_index[m] = i
    orphan = liver[0] & (seg_index == 0)
    if orphan.any():
        _, nearest = ndimage.distance_transform_edt(seg_index == 0, return_indices=True)
        fill = seg_index[tuple(nearest)]
        segments = [(n, m | (orphan & (fill == i))) for i, (n, m) in enumerate(segments, start=1)]
    notes.append(
        f"liver represented by its {len(segments)} segments (liver_segments task); {int(orphan.sum())} liver "
        "voxel(s) outside every segment were given to the nearest segment."
    )
    return [(n, m) for n, m in classes if n != "liver" and not n.startswith("liver_segment_")] + segments


def merge_classes(classes: Sequence[tuple[str, np.ndarray]], notes: list[str]) -> tuple[np.ndarray, dict[int, str]]:
    """One label map from class masks by the documented precedence; returns (array, {value: name})."""
    merged: dict[str, np.ndarray] = {}
    for name, mask in classes:  # the same class from two outputs: union
        merged[name] = merged[name] | mask if name in merged else mask
    items = _segments_replace_liver(list(merged.items()), notes)
    order = sorted(range(len(items)), key=lambda i: (ts_precedence(items[i][0]), i))
    shape = items[0][1].shape
    out = np.zeros(shape, np.int32)
    table: dict[int, str] = {}
    overwritten = 0
    for value, i in enumerate(order, start=1):
        name, mask = items[i]
        overwritten += int(np.count_nonzero(mask & (out > 0)))
        out[mask] = value
        table[value] = name
    if overwritten:
        notes.append(f"{overwritten} voxel(s) labelled by several classes were resolved by precedence "
                     "(body < organs < liver segments < liver vessels < lesions).")
    present = {int(v) for v in np.unique(out)} - {0}
    return out, {v: n for v, n in table.items() if v in present}


def _clinical_spec(clinical: Path | None) -> dict[str, object] | None:
    if clinical is None:
        return None
    data = load_yaml_file(clinical)
    if not isinstance(data, dict) or "patient" not in data:
        raise CaseFolderError(f"{clinical} must be a case.yaml with a 'patient:' mapping (docs/case-format.md).")
    parse_patient(data["patient"], str(clinical))
    spec = {k: v for k, v in data.items() if k in ("patient", "image_modality")}
    return spec


def import_totalsegmentator(
    image_path: Path,
    outputs: Sequence[TsInput],
    out: Path,
    clinical: Path | None = None,
    overwrite: bool = False,
    image_modality: str | None = None,
) -> ImportResult:
    """Write a case folder from an image and TotalSegmentator output(s) (see module docstring)."""
    if not outputs:
        raise InvalidInputError("give at least one TotalSegmentator output (folder of per-class files or a .nii.gz).")
    if out.exists() and not overwrite:
        raise CaseFolderError(f"{out} already exists; choose another output folder or pass --overwrite.")
    notes: list[str] = []
    spec = _clinical_spec(clinical)
    image = read_image(image_path)
    if image.array.dtype.kind != "f":
        image = image.with_array(image.array.astype(np.float32))
    classes = [c for item in outputs for c in read_task_output(item, image, notes)]
    if not classes:
        raise EmptyLabelMapError(
            f"no class of {', '.join(str(o.path) for o in outputs)} holds a voxel on the image {image_path}: "
            "check that the segmentation belongs to this image."
        )
    labels, table = merge_classes(classes, notes)
    if any(ts_class(n) is not None and ts_class(n).name == "liver_vessels" for n in table.values()):  # type: ignore[union-attr]
        notes.append("liver_vessels: TotalSegmentator does not separate portal from hepatic veins inside the liver; "
                     "the class is treated as one intrahepatic vessel tree (role portal_vein).")
    if spec is not None and image_modality is not None:
        spec["image_modality"] = image_modality
    with output_dir(out, overwrite=True, kind="case", replace_latplan_output=False, manifest=False) as staging:
        write_nifti(image, staging / "image.nii.gz")
        lab_dtype = np.uint8 if max(table, default=0) < 256 else np.uint16
        write_nifti(image.with_array(labels.astype(lab_dtype)), staging / "labels.nii.gz")
        with open(staging / "labels.yaml", "w", encoding="utf-8") as fh:
            fh.write("# label value -> TotalSegmentator class name (latplan maps them; docs/case-format.md)\n")
            yaml.safe_dump(table, fh, sort_keys=True, allow_unicode=True)
        if spec is not None:
            with open(staging / "case.yaml", "w", encoding="utf-8") as fh:
                fh.write(f"# latplan case folder imported from TotalSegmentator output; clinical data from {clinical}\n")
                yaml.safe_dump(spec, fh, sort_keys=False, allow_unicode=True)
        check_patient = None if spec is not None else {"id": "import-check", "primary": "other"}
        load_case_folder(staging, patient=check_patient, notes=[])  # the folder must load as written
    if clinical is None:
        notes.append(f"no --clinical case.yaml: {out} has no case.yaml yet; write one (docs/case-format.md) before "
                     "`latplan measure` / `latplan plan`.")
    return ImportResult(out=out, labels=table, notes=notes, has_case_yaml=spec is not None)
