"""Load the follow-up parts of a case folder: timepoints, treatments, landmarks, outcomes.

A :class:`Timepoint` carries its image and label map on *its own* grid; registration
(:mod:`latplan.followup.registration`) brings it onto the baseline grid. Lesion identity:
:meth:`Timepoint.baseline_id` maps a lesion name at the timepoint to the baseline lesion id.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from pydantic import ValidationError

from latplan.case.labels import LabelTable
from latplan.case.model import Case
from latplan.case.patient import Patient
from latplan.case.vocabulary import StructureRole
from latplan.errors import CaseFolderError, UnknownStructureError
from latplan.followup._io import (
    IMAGE_NAMES,
    LABEL_NAMES,
    find_file,
    read_label_table,
    read_volume,
    read_yaml,
)
from latplan.followup.models import Outcomes, TimepointSpec, TreatmentRecord, TreatmentsFile
from latplan.imaging.case_folder import load_case_folder
from latplan.imaging.volume import Volume

__all__ = [
    "ENHANCING_SUFFIX",
    "Timepoint",
    "load_baseline",
    "load_landmarks",
    "load_outcomes",
    "load_timepoint",
    "load_timepoints",
    "load_treatments",
]

#: label names ``lesion_N_enhancing`` hold the enhancing (viable) part of lesion N (mRECIST)
ENHANCING_SUFFIX = "_enhancing"


def _validation_message(path: Path, exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        loc = ".".join(str(x) for x in err["loc"])
        parts.append(f"{loc}: {err['msg']}")
    return f"{path}: " + "; ".join(parts)


@dataclass(eq=False)
class Timepoint:
    """One follow-up timepoint: spec (timepoint.yaml), image, label map and label table."""

    label: str
    folder: Path
    spec: TimepointSpec
    image: Volume
    labels: Volume
    label_table: LabelTable
    _cache: dict[str, np.ndarray] = field(default_factory=dict, repr=False)

    def mask_array(self, name: str) -> np.ndarray:
        if name not in self._cache:
            values = self.label_table.values_for(name)
            if not values:
                raise UnknownStructureError(
                    f"timepoint {self.label!r}: structure {name!r} is not in its labels.yaml; "
                    f"present: {', '.join(self.label_table.names())}."
                )
            self._cache[name] = np.isin(self.labels.array, values)
        return self._cache[name]

    def has(self, name: str) -> bool:
        return name in self.label_table and bool(self.mask_array(name).any())

    def lesion_names(self) -> list[str]:
        """Lesion label names at this timepoint (enhancing-part labels excluded), present or listed."""
        names = [n for n in self.label_table.names() if self.label_table.role(n) == StructureRole.LESION]
        return [n for n in names if not n.endswith(ENHANCING_SUFFIX)]

    def baseline_id(self, name: str, baseline_lesions: list[str]) -> str | None:
        """Baseline lesion id of lesion ``name`` at this timepoint; None = a new lesion."""
        mapped = self.spec.lesions.get(name)
        if mapped is not None:
            return None if mapped.lower() == "new" else mapped
        return name if name in baseline_lesions else None

    def name_for(self, baseline_id: str) -> str | None:
        """Label name at this timepoint of baseline lesion ``baseline_id`` (None: not labelled)."""
        for n in self.lesion_names():
            mapped = self.spec.lesions.get(n)
            if mapped == baseline_id or (mapped is None and n == baseline_id):
                return n
        return None

    def enhancing_name(self, name: str) -> str | None:
        cand = f"{name}{ENHANCING_SUFFIX}"
        return cand if cand in self.label_table else None

    def zone_names(self) -> list[str]:
        return [z for z in self.spec.zone_lesions() if z in self.label_table]


def load_timepoint(case_dir: str | Path, label: str) -> Timepoint:
    """Load ``case_dir/timepoints/<label>/`` (timepoint.yaml, image, labels, labels.yaml)."""
    folder = Path(case_dir) / "timepoints" / label
    if not folder.is_dir():
        avail = ", ".join(sorted(p.name for p in (Path(case_dir) / "timepoints").glob("*") if p.is_dir())) or "none"
        raise CaseFolderError(f"{case_dir}: no timepoint {label!r} (timepoints/{label}/); available: {avail}.")
    spec_path = folder / "timepoint.yaml"
    if not spec_path.is_file():
        raise CaseFolderError(f"{folder}: timepoint.yaml is missing (date, kind, lesion identity); see docs/followup.md.")
    raw = read_yaml(spec_path) or {}
    try:
        spec = TimepointSpec.model_validate(raw)
    except ValidationError as exc:
        raise CaseFolderError(_validation_message(spec_path, exc)) from None
    image = read_volume(find_file(folder, IMAGE_NAMES, "image"))
    labels = read_volume(find_file(folder, LABEL_NAMES, "label map"))
    image.require_same_geometry(labels, f"timepoint {label!r}: image and label map", tol_mm=1e-2)
    larr = labels.array
    if larr.dtype.kind not in "iu":
        larr = np.round(larr).astype(np.int32)
    labels = Volume(larr, image.affine)
    table = read_label_table(folder)
    for z in spec.zone_lesions():
        if z not in table:
            raise CaseFolderError(
                f"{spec_path}: ablation_zone names {z!r}, which is not in {folder / 'labels.yaml'} "
                f"(present: {', '.join(table.names())})."
            )
    return Timepoint(label, folder, spec, image, labels, table)


def load_timepoints(case_dir: str | Path) -> list[Timepoint]:
    """All timepoints of a case, sorted by date (empty list when the case has none)."""
    root = Path(case_dir) / "timepoints"
    if not root.is_dir():
        return []
    tps = [load_timepoint(case_dir, p.name) for p in sorted(root.iterdir()) if p.is_dir()]
    return sorted(tps, key=lambda t: (t.spec.date, t.label))


def load_treatments(case_dir: str | Path) -> list[TreatmentRecord]:
    """``treatments.yaml`` records sorted by date (empty list when the file is absent)."""
    path = Path(case_dir) / "treatments.yaml"
    if not path.is_file():
        return []
    raw = read_yaml(path) or {}
    if isinstance(raw, list):
        raw = {"treatments": raw}
    try:
        return sorted(TreatmentsFile.model_validate(raw).treatments, key=lambda t: t.date)
    except ValidationError as exc:
        raise CaseFolderError(_validation_message(path, exc)) from None


def load_landmarks(case_dir: str | Path) -> dict[str, np.ndarray]:
    """Baseline landmarks ``landmarks.yaml`` {name: [x, y, z]} (LPS mm); empty when absent."""
    path = Path(case_dir) / "landmarks.yaml"
    if not path.is_file():
        return {}
    raw = read_yaml(path) or {}
    if isinstance(raw, dict) and "landmarks_mm" in raw:
        raw = raw["landmarks_mm"]
    out = {}
    for name, p in raw.items():
        arr = np.asarray(p, dtype=float)
        if arr.shape != (3,):
            raise CaseFolderError(f"{path}: landmark {name!r} needs [x, y, z] in LPS mm; got {p!r}.")
        out[str(name)] = arr
    return out


def load_outcomes(case_dir: str | Path) -> Outcomes | None:
    path = Path(case_dir) / "outcomes.yaml"
    if not path.is_file():
        return None
    try:
        return Outcomes.model_validate(read_yaml(path) or {})
    except ValidationError as exc:
        raise CaseFolderError(_validation_message(path, exc)) from None


def load_patient(case_dir: str | Path) -> Patient:
    """Patient of ``case.yaml`` (the whole file, or its ``patient:`` block)."""
    path = Path(case_dir) / "case.yaml"
    if not path.is_file():
        raise CaseFolderError(f"{case_dir}: case.yaml is missing (patient id, primary tumour, ...).")
    raw = read_yaml(path) or {}
    if isinstance(raw, dict) and isinstance(raw.get("patient"), dict):
        raw = raw["patient"]
    try:
        return Patient.model_validate(raw)
    except ValidationError as exc:
        raise CaseFolderError(_validation_message(path, exc)) from None


def load_baseline(case_dir: str | Path) -> Case:
    """The baseline case (the shared case-folder reader, :func:`latplan.imaging.case_folder.load_case_folder`)."""
    return load_case_folder(Path(case_dir))
