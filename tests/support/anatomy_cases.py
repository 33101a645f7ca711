"""Synthetic in-memory cases with analytic truth, shared by the anatomy tests (not a test module)."""

from __future__ import annotations

import numpy as np

from latplan.case import Case, LabelTable, Patient
from latplan.imaging.volume import Volume

LABELS = {1: "liver", 2: "lesion_1", 3: "portal_vein", 4: "hepatic_vein_right", 5: "stomach", 6: "lung_right",
          7: "lesion_2"}


def synthetic_case(spacing_xyz=(1.0, 1.0, 1.0), lesion_r=8.0, pv_r=3.0, pv_gap=4.0, hv_r=5.0,
                   stomach_gap=6.0, patient=None, lung_lesion=False) -> Case:
    """A 100 × 90 × 80 mm grid: liver block x∈[10, 75], lesion at (45, 45, 40) mm, PV tube along z
    (+x side), HV tube along y (below), stomach box on the −x side."""
    sx, sy, sz = spacing_xyz
    nx, ny, nz = round(100 / sx), round(90 / sy), round(80 / sz)
    x = (np.arange(nx) + 0.5) * sx
    y = (np.arange(ny) + 0.5) * sy
    z = (np.arange(nz) + 0.5) * sz
    Z, Y, X = np.meshgrid(z, y, x, indexing="ij")
    lab = np.zeros((nz, ny, nx), np.int16)
    lab[(X > 10) & (X < 75) & (Y > 5) & (Y < 85) & (Z > 5) & (Z < 75)] = 1
    c = np.array([45.0, 45.0, 40.0])
    # portal vein along z at x = c + r + gap + pv_r
    px = c[0] + lesion_r + pv_gap + pv_r
    lab[(X - px) ** 2 + (Y - c[1]) ** 2 <= pv_r**2] = 3
    # hepatic vein along y, below the lesion
    hz = c[2] - lesion_r - 10.0 - hv_r
    lab[((X - c[0]) ** 2 + (Z - hz) ** 2 <= hv_r**2) & (Y > 5) & (Y < 85)] = 4
    # stomach: box on the lesion's −x side, its face stomach_gap mm from the lesion surface
    sxf = c[0] - lesion_r - stomach_gap
    lab[(X <= sxf) & (X > sxf - 12) & (np.abs(Y - c[1]) < 10) & (np.abs(Z - c[2]) < 10)] = 5
    lab[(X - c[0]) ** 2 + (Y - c[1]) ** 2 + (Z - c[2]) ** 2 <= lesion_r**2] = 2
    if lung_lesion:
        lab[(X > 10) & (X < 75) & (Y > 5) & (Y < 85) & (Z >= 75)] = 6
        lab[(X - 40) ** 2 + (Y - 45) ** 2 + (Z - 78) ** 2 <= 2.5**2] = 7
    aff = np.diag([sx, sy, sz, 1.0])
    aff[:3, 3] = [sx / 2, sy / 2, sz / 2]
    img = np.where(lab > 0, 60.0, -100.0).astype(np.float32)
    present = {v: n for v, n in LABELS.items() if (lab == v).any()}
    return Case(patient=patient or Patient(id="SYN", primary="colorectal"), image=Volume(img, aff),
                labels=Volume(lab, aff), label_table=LabelTable.from_mapping(present))
