"""Post-ablation margin check: observed zone vs registered tumour, predicted vs observed zone.

Why: the minimal ablative margin measured on the post-procedure scan is the strongest
predictor of local progression (Wang X et al., Cardiovasc Intervent Radiol 2013;36:166-175,
PMC4122121), and comparing the zone the simulation predicted with the zone that was achieved is
how the simulations earn trust (in vivo-validated RFA models reach Dice 0.42–0.73, mean surface
deviation 1.1–8.7 mm, in a systematic review of 35 articles: van Erp GCM et al., Cancers
2023;15:5684).

The margin itself is :func:`latplan.physics.margins.ablative_margin` of engineer [C] (the
planners use the same function on the predicted zone, so both answer the same question the
same way). Surface distances here are mm-true: the Euclidean distance transform honours the
voxel spacing of each axis.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import ndimage

from latplan.errors import EmptyStructureError
from latplan.followup.registration import dice
from latplan.imaging.volume import Volume
from latplan.knowledge.margins import margin_histogram_percent
from latplan.physics.margins import MarginResult, ablative_margin

__all__ = ["MarginCheck", "ZoneComparison", "compare_zones", "margin_check", "surface_distances_mm"]


def _surface(mask: np.ndarray) -> np.ndarray:
    padded = np.pad(mask, 1, constant_values=False)
    eroded = ndimage.binary_erosion(padded, structure=ndimage.generate_binary_structure(3, 1))
    return (padded & ~eroded)[1:-1, 1:-1, 1:-1]


def surface_distances_mm(a: np.ndarray, b: np.ndarray, spacing_kji_mm: np.ndarray) -> np.ndarray:
    """Symmetric surface distances (mm): every surface voxel of A to B's surface and vice versa."""
    a = np.asarray(a, bool)
    b = np.asarray(b, bool)
    if not a.any() or not b.any():
        raise EmptyStructureError("surface distance needs two non-empty masks (predicted and observed zone).")
    both = a | b
    idx = np.nonzero(both)
    lo = [max(int(x.min()) - 1, 0) for x in idx]
    hi = [min(int(x.max()) + 2, n) for x, n in zip(idx, both.shape, strict=True)]
    sl = tuple(slice(p, q) for p, q in zip(lo, hi, strict=True))
    sa, sb = _surface(a[sl]), _surface(b[sl])
    sp = np.asarray(spacing_kji_mm, float)
    da = ndimage.distance_transform_edt(~sb, sampling=sp)[sa]
    db = ndimage.distance_transform_edt(~sa, sampling=sp)[sb]
    return np.concatenate([da, db]).astype(float)


@dataclass
class ZoneComparison:
    """Predicted vs observed zone on one grid: overlap and surface distances (mm)."""

    dice: float
    mean_surface_distance_mm: float
    hd95_mm: float
    max_surface_distance_mm: float
    predicted_volume_ml: float
    observed_volume_ml: float

    def to_dict(self) -> dict[str, float]:
        return {k: round(float(v), 4) for k, v in self.__dict__.items()}


def compare_zones(predicted: Volume, observed: Volume) -> ZoneComparison:
    """Dice, mean and 95th-percentile symmetric surface distance (mm) of two zones on one grid."""
    predicted.require_same_geometry(observed, "the predicted and the observed ablation zone")
    p = predicted.array != 0
    o = observed.array != 0
    d = surface_distances_mm(p, o, predicted.spacing_kji_mm)
    return ZoneComparison(
        dice=dice(p, o),
        mean_surface_distance_mm=float(d.mean()),
        hd95_mm=float(np.percentile(d, 95)),
        max_surface_distance_mm=float(d.max()),
        predicted_volume_ml=float(p.sum()) * predicted.voxel_volume_ml,
        observed_volume_ml=float(o.sum()) * observed.voxel_volume_ml,
    )


@dataclass
class MarginCheck:
    """Result of the post-ablation margin check of one lesion."""

    lesion_id: str
    margin: MarginResult
    target_margin_mm: float | None = None
    zone_comparison: ZoneComparison | None = None

    @property
    def target_reached(self) -> bool | None:
        if self.target_margin_mm is None:
            return None
        return bool(self.margin.min_margin_mm >= self.target_margin_mm)

    @property
    def histogram_percent(self) -> dict[str, float]:
        """Percent of the tumour surface in each clinical margin bin (knowledge/margin_bins.yaml)."""
        return margin_histogram_percent(self.margin.surface_margins_mm)

    def to_dict(self) -> dict[str, Any]:
        geometry = self.margin.to_dict()
        out: dict[str, Any] = {
            "lesion_id": self.lesion_id,
            "min_margin_mm": geometry.pop("min_margin_mm"),
            "margin_histogram_percent": {k: round(v, 2) for k, v in self.histogram_percent.items()},
            **geometry,
        }
        out["target_margin_mm"] = self.target_margin_mm
        out["target_reached"] = self.target_reached
        out["predicted_vs_observed"] = None if self.zone_comparison is None else self.zone_comparison.to_dict()
        return out


def margin_check(
    lesion_id: str,
    tumour: Volume,
    observed_zone: Volume,
    predicted_zone: Volume | None = None,
    target_margin_mm: float | None = None,
) -> MarginCheck:
    """Margin of the baseline ``tumour`` in the ``observed_zone`` (registered onto the tumour's grid).

    ``predicted_zone`` (same grid), when given, is compared with the observed zone.
    ``target_margin_mm``: the margin the plan aimed at (e.g. 5 mm, 10 mm for RAS-mutant
    colorectal metastases — decided by [D]'s knowledge, passed in here).
    """
    result = ablative_margin(tumour, observed_zone)
    comp = compare_zones(predicted_zone, observed_zone) if predicted_zone is not None else None
    return MarginCheck(lesion_id, result, target_margin_mm, comp)
