"""Shared builders of the thermal planner tests (synthetic cases on a centred, axis-aligned grid)."""

from __future__ import annotations

import numpy as np

from latplan.case import Case, LabelTable, Patient, PrimaryTumour
from latplan.imaging.volume import Volume


def centred_case(lab: np.ndarray, spacing_mm: float, names: dict[int, str], patient_id: str) -> Case:
    """A colorectal case from a label array of ``n³`` voxels of ``spacing_mm``, centred on the
    origin (identity orientation), with an empty image and the label table ``names``."""
    n = lab.shape[0]
    aff = np.diag([spacing_mm, spacing_mm, spacing_mm, 1.0])
    aff[:3, 3] = -n * spacing_mm / 2
    labels = Volume(lab, aff)
    return Case(Patient(id=patient_id, primary=PrimaryTumour.COLORECTAL), labels.with_array(np.zeros(lab.shape, np.int16)),
                labels, LabelTable.from_mapping(names))
