"""Ablative margin of a tumour inside an (ablation or field) zone, in true millimetres.

Why this module: the planners report the margin of a *predicted* zone; follow-up uses the same
function on the *observed* post-ablation zone, so both answer the same question the same way.
This module is geometry only: how the surface margins are grouped and what a group means
clinically (the margin histogram bins) is knowledge, :mod:`latplan.knowledge.margins`.

Definition (surface-to-surface, mm-true on anisotropic grids):

* tumour surface voxels = tumour voxels with at least one 6-neighbour outside the tumour;
* zone boundary voxels = zone voxels with at least one 6-neighbour outside the zone;
* margin at a tumour surface voxel = Euclidean distance (mm, ``distance_transform_edt``
  with ``sampling=spacing_kji_mm``) to the nearest zone boundary voxel, positive when the
  surface voxel lies inside the zone, negative when it lies outside;
* ``min_margin_mm`` = smallest surface margin; when part of the tumour is not covered it is
  −(largest distance of any uncovered tumour voxel to the zone boundary).

Measuring boundary voxel to boundary voxel makes both discretisation biases (each set lies
up to half a voxel inside its true surface) cancel to first order: a sphere of radius R in
a concentric zone of radius R + m gives m within one voxel (property test).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from latplan.errors import EmptyStructureError, InvalidInputError
from latplan.imaging.volume import Volume

__all__ = ["MarginResult", "ablative_margin", "ablative_margin_arrays"]


@dataclass
class MarginResult:
    """Margins of one tumour in one zone.

    Attributes
    ----------
    min_margin_mm:
        Minimal margin (mm); negative when the tumour is not fully inside the zone.
    coverage_percent:
        Percent of the tumour volume (voxels) inside the zone.
    surface_margins_mm:
        Signed margin (mm) of every tumour surface voxel (same order as ``surface_index_kji``).
    surface_index_kji:
        (n, 3) integer indices (k, j, i) of the tumour surface voxels.
    """

    min_margin_mm: float
    coverage_percent: float
    surface_margins_mm: np.ndarray = field(repr=False)
    surface_index_kji: np.ndarray = field(repr=False)

    @property
    def covered(self) -> bool:
        """True when every tumour voxel lies inside the zone (margin ≥ 0)."""
        return self.min_margin_mm >= 0.0

    def reaches(self, target_margin_mm: float) -> bool:
        """True when the minimal margin reaches ``target_margin_mm`` (mm)."""
        return self.min_margin_mm >= target_margin_mm

    def to_dict(self) -> dict[str, object]:
        """JSON-serialisable summary (arrays left out)."""
        return {
            "min_margin_mm": round(float(self.min_margin_mm), 2),
            "coverage_percent": round(float(self.coverage_percent), 2),
            "surface_voxels": int(self.surface_margins_mm.size),
        }


def _boundary(mask: np.ndarray) -> np.ndarray:
    """Voxels of ``mask`` with a 6-neighbour outside it (array edges count as outside)."""
    padded = np.pad(mask, 1, constant_values=False)
    eroded = ndimage.binary_erosion(padded, structure=ndimage.generate_binary_structure(3, 1))
    out: np.ndarray = (padded & ~eroded)[1:-1, 1:-1, 1:-1]
    return out


def ablative_margin_arrays(
    tumour: np.ndarray, zone: np.ndarray, spacing_kji_mm: tuple[float, float, float] | np.ndarray
) -> MarginResult:
    """Array form of :func:`ablative_margin` (boolean arrays (k, j, i), spacing in mm).

    The arrays are cropped to the bounding box of tumour ∪ zone (plus one voxel) before the
    distance transform, so cost scales with the lesion, not the whole CT.
    """
    t = np.asarray(tumour, dtype=bool)
    z = np.asarray(zone, dtype=bool)
    if t.shape != z.shape:
        raise InvalidInputError(f"tumour and zone arrays differ in shape: {t.shape} vs {z.shape}.")
    sp = np.asarray(spacing_kji_mm, dtype=float)
    if sp.shape != (3,) or np.any(sp <= 0):
        raise InvalidInputError(f"spacing_kji_mm must be three positive numbers (mm); got {sp.tolist()}.")
    if not t.any():
        raise EmptyStructureError("the tumour mask is empty: there is no tumour to measure a margin around.")
    if not z.any():
        raise EmptyStructureError(
            "the zone mask is empty: no ablation zone to measure the margin against. Check the zone "
            "segmentation or the simulated plan."
        )
    both = t | z
    idx = np.nonzero(both)
    lo = [max(int(a.min()) - 1, 0) for a in idx]
    hi = [min(int(a.max()) + 2, n) for a, n in zip(idx, both.shape, strict=True)]
    sl = tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))
    tc, zc = t[sl], z[sl]

    zone_edge = _boundary(zc)
    dist_to_edge = ndimage.distance_transform_edt(~zone_edge, sampling=sp)
    surf = _boundary(tc)
    signed = np.where(zc, dist_to_edge, -dist_to_edge)
    surface_margins = signed[surf].astype(float)

    uncovered = tc & ~zc
    if uncovered.any():
        min_margin = -float(dist_to_edge[uncovered].max())
        min_margin = min(min_margin, float(surface_margins.min()))
    else:
        min_margin = float(surface_margins.min())

    coverage = 100.0 * float(np.count_nonzero(tc & zc)) / float(np.count_nonzero(tc))
    surf_idx = np.argwhere(surf) + np.asarray(lo)
    return MarginResult(
        min_margin_mm=min_margin,
        coverage_percent=coverage,
        surface_margins_mm=surface_margins,
        surface_index_kji=surf_idx,
    )


def ablative_margin(tumour: Volume, zone: Volume) -> MarginResult:
    """Minimal ablative margin, signed surface margins and coverage of ``tumour`` in ``zone``.

    Parameters
    ----------
    tumour, zone:
        Boolean (or 0/1) volumes on the same grid (shape and affine). The zone is the
        predicted or observed ablation zone (or field ≥ threshold region).

    Returns
    -------
    MarginResult
        Distances are mm-true (the voxel spacing of each axis is honoured).

    Raises
    ------
    GeometryMismatchError
        The two volumes do not share a grid (resample one onto the other first).
    EmptyStructureError
        The tumour or the zone holds no voxel.
    """
    tumour.require_same_geometry(zone, "the tumour mask and the ablation zone")
    return ablative_margin_arrays(tumour.array != 0, zone.array != 0, tumour.spacing_kji_mm)
