"""Tumour response: RECIST 1.1, mRECIST (HCC) and local tumour progression (LTP).

Thresholds and citations come from ``criteria.yaml`` (RECIST 1.1: Eisenhauer et al., Eur J
Cancer 2009; mRECIST: Lencioni & Llovet, Semin Liver Dis 2010; LTP terminology: Ahmed et
al., Radiology 2014). The classification functions work on numbers (diameters in mm) so
they can be tested exactly; :func:`longest_axial_diameter_mm` measures a mask.

Decisions (docs/followup.md):

* Diameter = longest in-plane distance between outer voxel *edges* (caliper-like) on any
  axial slice; "axial" is the array axis most aligned with the patient z axis.
* Target lesions: measurable (≥ 10 mm) baseline lesions, largest first, ≤ 5 in all and ≤ 2
  per organ; the organ of a lesion is the structure that surrounds it most.
* PR compares the target sum with the baseline sum; PD with the nadir (smallest sum on study,
  baseline included) and needs ≥ 5 mm absolute increase; any new lesion is PD.
* Non-target "unequivocal progression" is qualitative in RECIST; latplan flags it when a
  non-target lesion grows by ≥ 20 % and ≥ 5 mm vs its nadir (stated proxy, in criteria.yaml).
* mRECIST measures the viable (arterially enhancing) part: label ``lesion_N_enhancing``, or
  lesion voxels ≥ the timepoint's ``enhancement_threshold``; at baseline, without either,
  the whole lesion is taken as viable (untreated HCC enhances).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import numpy as np
from scipy.spatial import ConvexHull, QhullError

from latplan.followup.models import criteria
from latplan.imaging.volume import Volume

__all__ = [
    "LesionBaseline",
    "Response",
    "ResponseAssessment",
    "assess_response",
    "lesion_response",
    "longest_axial_diameter_mm",
    "overall_response",
    "select_targets",
    "target_response",
]

_EPS = 1e-9


class Response(StrEnum):
    CR = "CR"
    PR = "PR"
    SD = "SD"
    PD = "PD"
    NON_CR_NON_PD = "non-CR/non-PD"
    NE = "NE"  # not evaluable


def _rc() -> dict[str, Any]:
    return criteria()["recist_1_1"]


# --- measurement ------------------------------------------------------------------------------

def _axial_axis(vol: Volume) -> int:
    """Array axis (0=k, 1=j, 2=i) whose direction is most aligned with the patient z axis."""
    d = vol.direction  # columns = i, j, k
    zcomp = np.abs(d[2, :])  # z component of i, j, k
    ijk_axis = int(np.argmax(zcomp))
    return 2 - ijk_axis


def longest_axial_diameter_mm(mask: Volume | np.ndarray, affine: np.ndarray | None = None) -> float:
    """Longest diameter (mm) of a mask on any axial slice, between outer voxel edges; 0 if empty."""
    vol = mask if isinstance(mask, Volume) else Volume(np.asarray(mask), np.asarray(affine))
    m = vol.array != 0
    if not m.any():
        return 0.0
    ax = _axial_axis(vol)
    best = 0.0
    offsets = np.array([[a, b] for a in (-0.5, 0.5) for b in (-0.5, 0.5)])
    other = [a for a in range(3) if a != ax]
    for s in np.unique(np.nonzero(m)[ax]):
        sl = np.take(m, s, axis=ax)
        pts2 = np.argwhere(sl).astype(float)  # (n, 2) indices along `other`
        corners = (pts2[:, None, :] + offsets[None, :, :]).reshape(-1, 2)
        kji = np.zeros((corners.shape[0], 3))
        kji[:, ax] = s
        kji[:, other[0]] = corners[:, 0]
        kji[:, other[1]] = corners[:, 1]
        xyz = vol.index_to_mm(kji)
        cand = np.unique(corners, axis=0).shape[0]
        if cand > 3:
            try:
                hull = ConvexHull(corners)
                xyz = xyz[hull.vertices]
            except QhullError:
                pass
        diff = xyz[:, None, :] - xyz[None, :, :]
        best = max(best, float(np.sqrt((diff**2).sum(-1)).max()))
    return best


# --- classification on numbers -----------------------------------------------------------------

@dataclass(frozen=True)
class LesionBaseline:
    """Baseline facts of one lesion for target selection."""

    lesion_id: str
    diameter_mm: float
    organ: str = "liver"


def select_targets(lesions: Sequence[LesionBaseline]) -> tuple[list[str], list[str]]:
    """RECIST 1.1 target selection: measurable lesions, largest first, ≤ 5 total, ≤ 2 per organ.

    Returns (target ids, non-target ids).
    """
    rc = _rc()
    targets: list[str] = []
    per_organ: dict[str, int] = {}
    for les in sorted(lesions, key=lambda x: (-x.diameter_mm, x.lesion_id)):
        if les.diameter_mm + _EPS < rc["min_measurable_diameter_mm"]:
            continue
        if len(targets) >= rc["max_target_lesions"] or per_organ.get(les.organ, 0) >= rc["max_target_per_organ"]:
            continue
        targets.append(les.lesion_id)
        per_organ[les.organ] = per_organ.get(les.organ, 0) + 1
    nontargets = [x.lesion_id for x in lesions if x.lesion_id not in targets]
    return targets, nontargets


def target_response(baseline_sum_mm: float, nadir_sum_mm: float, current_sum_mm: float) -> Response:
    """RECIST 1.1 target response from the sums of longest diameters (mm)."""
    rc = _rc()
    if current_sum_mm <= _EPS:
        return Response.CR
    increase = current_sum_mm - nadir_sum_mm
    if nadir_sum_mm > _EPS:
        rel_inc = 100.0 * increase / nadir_sum_mm
    else:
        rel_inc = np.inf if increase > _EPS else 0.0
    if rel_inc >= rc["pd_increase_percent"] - _EPS and increase >= rc["pd_min_absolute_increase_mm"] - _EPS:
        return Response.PD
    if baseline_sum_mm > _EPS:
        rel_dec = 100.0 * (baseline_sum_mm - current_sum_mm) / baseline_sum_mm
        if rel_dec >= rc["pr_decrease_percent"] - _EPS:
            return Response.PR
    return Response.SD


def lesion_response(baseline_mm: float, nadir_mm: float, current_mm: float) -> Response:
    """One lesion classified with the RECIST thresholds applied to its own diameter (mm).

    RECIST is defined on the target sum; per lesion this is the informative view a board
    reads beside it (and identical for a single target lesion).
    """
    return target_response(baseline_mm, nadir_mm, current_mm)


def nontarget_response(nadir_mm: Mapping[str, float], current_mm: Mapping[str, float]) -> Response:
    """Non-target lesions: CR when all have disappeared, PD on the stated growth proxy, else non-CR/non-PD."""
    rc = _rc()
    if not current_mm:
        return Response.NE if not nadir_mm else Response.CR
    if all(v <= _EPS for v in current_mm.values()):
        return Response.CR
    for lid, cur in current_mm.items():
        nad = nadir_mm.get(lid, cur)
        inc = cur - nad
        if nad > _EPS and 100.0 * inc / nad >= rc["nontarget_pd_increase_percent"] - _EPS and \
                inc >= rc["nontarget_pd_min_absolute_increase_mm"] - _EPS:
            return Response.PD
    return Response.NON_CR_NON_PD


def overall_response(target: Response | None, nontarget: Response | None, new_lesions: bool) -> Response:
    """RECIST 1.1 overall response (Eisenhauer 2009, Table 1 and 2)."""
    if new_lesions or target == Response.PD or nontarget == Response.PD:
        return Response.PD
    if target is None:  # non-target disease only (Table 2)
        if nontarget == Response.CR:
            return Response.CR
        return Response.NON_CR_NON_PD if nontarget == Response.NON_CR_NON_PD else Response.NE
    if target == Response.CR:
        return Response.CR if nontarget in (Response.CR, None) else Response.PR
    if target == Response.PR:
        return Response.PR
    if target == Response.SD:
        return Response.SD
    return Response.NE


@dataclass
class ResponseAssessment:
    """Response at one timepoint under one criterion (RECIST 1.1 or mRECIST)."""

    criterion: str
    targets: list[str]
    nontargets: list[str]
    baseline_sum_mm: float
    nadir_sum_mm: float
    current_sum_mm: float
    target: Response | None
    nontarget: Response | None
    new_lesions: list[str]
    overall: Response
    per_lesion: dict[str, dict[str, Any]] = field(default_factory=dict)
    citation: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "criterion": self.criterion,
            "target_lesions": self.targets,
            "nontarget_lesions": self.nontargets,
            "baseline_sum_mm": round(self.baseline_sum_mm, 2),
            "nadir_sum_mm": round(self.nadir_sum_mm, 2),
            "current_sum_mm": round(self.current_sum_mm, 2),
            "change_from_baseline_percent": None if self.baseline_sum_mm <= 0 else round(
                100.0 * (self.current_sum_mm - self.baseline_sum_mm) / self.baseline_sum_mm, 1),
            "target_response": None if self.target is None else self.target.value,
            "nontarget_response": None if self.nontarget is None else self.nontarget.value,
            "new_lesions": self.new_lesions,
            "overall_response": self.overall.value,
            "per_lesion": self.per_lesion,
            "citation": self.citation,
        }


def assess_response(
    baseline: Sequence[LesionBaseline],
    history_mm: Sequence[Mapping[str, float]],
    current_mm: Mapping[str, float],
    new_lesions: Sequence[str] = (),
    criterion: str = "RECIST 1.1",
) -> ResponseAssessment:
    """RECIST-type assessment at one timepoint.

    Parameters
    ----------
    baseline:
        Baseline lesions (diameter mm, organ); targets are selected from them.
    history_mm:
        Diameters {lesion id: mm} at earlier follow-up timepoints (for the nadir).
    current_mm:
        Diameters now; a baseline lesion missing here counts as 0 mm (disappeared).
    new_lesions:
        Ids of lesions not present at baseline.
    """
    targets, nontargets = select_targets(baseline)
    base = {b.lesion_id: b.diameter_mm for b in baseline}
    cur = {lid: float(current_mm.get(lid, 0.0)) for lid in base}
    base_sum = sum(base[t] for t in targets)
    sums = [base_sum] + [sum(float(h.get(t, 0.0)) for t in targets) for h in history_mm]
    nadir_sum = min(sums)
    cur_sum = sum(cur[t] for t in targets)
    tr = target_response(base_sum, nadir_sum, cur_sum) if targets else None
    nadir_each = {lid: min([base[lid]] + [float(h.get(lid, 0.0)) for h in history_mm]) for lid in base}
    ntr = nontarget_response({n: nadir_each[n] for n in nontargets}, {n: cur[n] for n in nontargets}) \
        if nontargets else None
    overall = overall_response(tr, ntr, bool(new_lesions))
    per = {}
    for lid in base:
        per[lid] = {
            "baseline_mm": round(base[lid], 2),
            "nadir_mm": round(nadir_each[lid], 2),
            "current_mm": round(cur[lid], 2),
            "role": "target" if lid in targets else "non-target",
            "response": lesion_response(base[lid], nadir_each[lid], cur[lid]).value,
        }
    key = "mrecist" if criterion.lower().startswith("mrecist") else "recist_1_1"
    return ResponseAssessment(
        criterion, targets, nontargets, base_sum, nadir_sum, cur_sum, tr, ntr, list(new_lesions), overall, per,
        citation=str(criteria()[key]["citation"]),
    )
