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


def synthetic_thermal_case(lesion_radius_mm: float = 9.0, h: float = 2.0) -> Case:
    """Body ⊃ liver block ⊃ spherical lesion, a 6 mm vessel beside it, a bowel loop below."""
    n = 60
    ax = np.arange(n) * h - n * h / 2
    kk, jj, ii = np.meshgrid(ax, ax, ax, indexing="ij")
    lab = np.ones((n, n, n), np.int16) * 4                      # body
    lab[(np.abs(kk) < 50) & (np.abs(jj) < 40) & (np.abs(ii) < 50)] = 1   # liver
    lab[(jj - 18) ** 2 + (ii - 0) ** 2 <= 3.0**2] = 3            # portal vein along k, 6 mm
    lab[(kk + 0) ** 2 + (jj + 42) ** 2 + ii**2 <= 6.0**2] = 5     # bowel loop below the liver
    lab[kk**2 + jj**2 + ii**2 <= lesion_radius_mm**2] = 2        # lesion
    lab[:, :, :2] = 0
    aff = np.diag([h, h, h, 1.0])
    aff[:3, 3] = -n * h / 2
    labels = Volume(lab, aff)
    table = LabelTable.from_mapping({1: "liver", 2: "lesion_1", 3: "portal_vein", 4: "body", 5: "colon"})
    return Case(Patient(id="SYN-1", primary="colorectal"), labels.with_array(np.zeros(lab.shape, np.int16)),
                labels, table)


def cut_along_i(case: Case, gap_vox: int, lesion_id: str = "lesion_1") -> Case:
    """``case`` with its image cut along i ``gap_vox`` voxels past the lesion's last voxel (a cropped scan)."""
    m = case.lesion_mask(lesion_id).array
    at = int(np.nonzero(m)[2].max()) + 1 + gap_vox
    lo, hi = (0, 0, 0), (m.shape[0], m.shape[1], at)
    return Case(patient=case.patient, image=case.image.crop(lo, hi), labels=case.labels.crop(lo, hi),
                label_table=case.label_table)
