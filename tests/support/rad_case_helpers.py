"""In-memory test cases for the radiation planners (no files, deterministic)."""

from __future__ import annotations

import numpy as np

from latplan.case import Case, LabelTable, Patient
from latplan.imaging.volume import Volume

LABELS = {1: "body", 2: "liver", 3: "lesion_1", 4: "stomach", 5: "ribs", 6: "portal_vein",
          7: "liver_segment_8", 8: "liver_segment_7", 9: "lung_right"}


def make_case(spacing_mm: float = 2.0, lesion_radius_mm: float = 12.0, stomach_gap_mm: float = 15.0,
              primary: str = "colorectal", affine: np.ndarray | None = None, shape: tuple[int, int, int] = (60, 80, 80),
              with_vessel: bool = True) -> Case:
    """Body cylinder (axis k), liver block, spherical lesion, stomach block at ``stomach_gap_mm``
    from the lesion surface (along +x), a rib arc, a 10 mm portal vein, segments 7/8 split in y.

    Coordinates: index (k, j, i) → LPS mm through ``affine`` (default: diagonal spacing, origin 0).
    """
    nk, nj, ni = shape
    if affine is None:
        affine = np.diag([spacing_mm, spacing_mm, spacing_mm, 1.0])
    vol = Volume(np.zeros(shape, np.int16), affine)
    # geometry is defined in index-space mm (so a rotated affine rotates the whole phantom)
    k, j, i = np.meshgrid(*(np.arange(n) * spacing_mm for n in shape), indexing="ij")
    cx, cy, cz = ni * spacing_mm / 2, nj * spacing_mm / 2, nk * spacing_mm / 2
    lab = np.zeros(shape, np.int16)
    body = ((i - cx) / (0.48 * ni * spacing_mm)) ** 2 + ((j - cy) / (0.45 * nj * spacing_mm)) ** 2 <= 1
    lab[body] = 1
    liver = body & (np.abs(i - cx) < 45) & (np.abs(j - cy) < 40) & (np.abs(k - cz) < 45)
    lab[liver & (j < cy)] = 7
    lab[liver & (j >= cy)] = 8
    lung = body & (k > cz + 47)
    lab[lung] = 9
    lc = np.array([cx - 10, cy, cz])
    r = np.sqrt((i - lc[0]) ** 2 + (j - lc[1]) ** 2 + (k - lc[2]) ** 2)
    les = r <= lesion_radius_mm
    sx = lc[0] + lesion_radius_mm + stomach_gap_mm
    stomach = body & (i >= sx) & (i < sx + 25) & (np.abs(j - cy) < 20) & (np.abs(k - cz) < 20)
    lab[stomach] = 4
    if with_vessel:
        pv = ((i - (cx - 10)) ** 2 + (j - (cy + 30)) ** 2 <= 5.0**2) & liver
        lab[pv] = 6
    ring = np.hypot((i - cx) / (0.48 * ni * spacing_mm), (j - cy) / (0.45 * nj * spacing_mm))
    ribs = (ring > 0.9) & (ring <= 0.97) & ((np.round(k / 16) % 2) == 0) & (j > cy)  # posterior rib stripes
    lab[ribs & body] = 5
    lab[les] = 3
    table = LabelTable.from_mapping(LABELS)
    image = vol.with_array(np.where(lab > 0, 40, -1000).astype(np.int16))
    return Case(Patient(id="t1", primary=primary), image, vol.with_array(lab), table)
