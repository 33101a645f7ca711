"""One target per kind of treatment, judged the same way for every modality of that kind.

Why: the board compares like with like. Every *ablative* option (RFA, MWA, cryo, HIFU, ECT,
IRE) is judged against lesion + the required ablative margin (5 mm; 10 mm RAS-mutant
colorectal — Wang 2013, Odisio 2017, Calandri 2018); tumour coverage alone is not enough.
*Radiation* options (IBT, SBRT, TARE) are judged by their protocol dose to the CTV and
organ limits ([K]), and report the dose at lesion + 5 / + 10 mm beside it.

Status: ``reaches`` (nominal value meets the target), ``uncertain`` (only the optimistic end
of the uncertainty band meets it, or a key the judgement needs is absent, or the lesion is cut by
the field of view), ``misses``, ``not_simulated`` (no planner, simulations off) and
``simulation_failed`` (the planner raised or reported ``placement_failed``: ranked below a miss). Keys follow the cross-helper contract; an absent key is unknown, never safe.
A plan whose needle/catheter path could not be verified on the image (``trajectory_verified: false``, [L]:
the abdominal wall is outside the field of view) is at best ``uncertain`` and carries
:data:`TRAJECTORY_CONDITION`.

Organs in the predicted ablation zone (``organ_volumes_in_zone_ml`` ≥ 0.1 ml of gallbladder,
kidney, stomach, bowel, heart or central bile duct) are a relative contraindication naming
organ, volume and the protective measure; the diaphragm is a caution (CIRSE 2020).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

ABLATIVE = ("rfa", "mwa", "cryo", "hifu", "ect", "ire")
RADIATION = ("ibt", "sbrt", "tare")
#: field solvers: beyond the image the edge tissue is continued (planning.electroporation)
ELECTROPORATION = ("ect", "ire")
#: coverage (percent of the target) counted as complete: one boundary voxel layer of tolerance
COVERAGE_COMPLETE_PERCENT = 99.0
#: organ volume inside a predicted ablation zone that counts as involvement (ml)
ORGAN_IN_ZONE_ML = 0.1
#: organ role → (words, protective measure); roles as in latplan.case.vocabulary
ORGANS_AT_RISK: dict[str, tuple[str, str]] = {
    "gallbladder": ("gallbladder", "hydrodissection or a non-thermal method"),
    "kidney": ("kidney", "hydrodissection or repositioning"),
    "stomach": ("stomach", "hydrodissection or balloon interposition"),
    "bowel": ("bowel", "hydrodissection or balloon interposition"),
    "duodenum": ("duodenum", "hydrodissection or balloon interposition"),
    "colon": ("colon", "hydrodissection or balloon interposition"),
    "small_bowel": ("small bowel", "hydrodissection or balloon interposition"),
    "hollow_organ": ("hollow organ", "hydrodissection or balloon interposition"),
    "heart": ("heart", "another modality or approach (no safe displacement)"),
    "bile_duct": ("central bile duct", "bile-duct cooling or a non-thermal method (IRE/ECT)"),
}
CAUTION_ORGANS = {"diaphragm": "diaphragm (caution: pain, diaphragmatic injury; artificial ascites may protect it)"}
#: within a tier: reaches > uncertain = not simulated (no planner, simulations off: unknown) > misses > the
#: simulation failed (the planner raised or could not place the applicators: a simulated result, even a miss, is
#: evidence; a failed one is none, and it must not outrank it — issue 13)
STATUS_ORDER = {"reaches": 0, "uncertain": 1, "not_simulated": 1, "misses": 2, "simulation_failed": 3}
#: plan metrics by which a planner says it could not place its applicators (a failed simulation)
PLACEMENT_FAILED_KEY, PLACEMENT_FAILED_WHY_KEY = "placement_failed", "placement_failed_why"
#: simulate.simulate_job's ``why`` prefixes of a planner that ran and failed (not: no planner / switched off)
FAILED_WHY_PREFIXES = ("planner failed", "planner could not produce a plan")
#: issue 13: the condition every option of a lesion cut by the field of view carries
TRUNCATED_CONDITION = ("conditional — the lesion is cut by the edge of the scan: its size and margins are lower "
                       "bounds — image the whole lesion before deciding")
#: [L] the condition an option carries when its needle/catheter path could not be verified on the image
TRAJECTORY_CONDITION = ("conditional — verify the access path on imaging (the image does not show the abdominal "
                        "wall along the path)")


@dataclass
class TargetJudgement:
    status: str
    text: str
    target: dict[str, Any]
    organs: list[tuple[str, float, str]] = field(default_factory=list)   # (organ words, ml, measure)
    cautions: list[str] = field(default_factory=list)
    unchecked: list[str] = field(default_factory=list)
    by_margin: dict[str, str] = field(default_factory=dict)             # RAS unknown: margin → status
    trajectory_unverified: bool = False                                 # [L] path not verifiable on the image
    truncated_lesion: bool = False                                      # issue 13: lesion cut by the FOV
    fov_limited: str | None = None                                      # ECT/IRE field past the image edge

    def to_json(self) -> dict[str, Any]:
        return {"status": self.status, "text": self.text, "target": self.target,
                "organs_in_zone": [{"organ": o, "volume_ml": round(v, 2), "protective_measure": m}
                                   for o, v, m in self.organs],
                "cautions": self.cautions, "unchecked_organs": self.unchecked,
                "status_by_margin_mm": self.by_margin or None}


def _num(v: Any) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def _ablative_status(m: Mapping[str, Any], margin_mm: float) -> tuple[str, str]:
    planned = _num(m.get("target_margin_mm"))
    tcov = _num(m.get("target_coverage_percent"))
    cov = _num(m.get("coverage_percent"))
    mmin = _num(m.get("min_margin_mm"))
    rng = m.get("min_margin_range_mm")
    hi = _num(rng[1]) if isinstance(rng, (list, tuple)) and len(rng) == 2 else None
    if cov is not None and cov < COVERAGE_COMPLETE_PERCENT:
        return "misses", f"the predicted zone covers {cov:.1f} % of the lesion (incomplete)"
    if mmin is not None:
        if mmin >= margin_mm:
            return "reaches", f"minimal margin {mmin:.1f} mm ≥ {margin_mm:g} mm"
        if hi is not None and hi >= margin_mm:
            return "uncertain", (f"minimal margin {mmin:.1f} mm < {margin_mm:g} mm; reached only at the optimistic end "
                                 f"of the uncertainty band ({hi:.1f} mm)")
        return "misses", f"minimal margin {mmin:.1f} mm < {margin_mm:g} mm target"
    if tcov is not None and planned is not None and planned >= margin_mm:
        if tcov >= COVERAGE_COMPLETE_PERCENT:
            return "reaches", f"covers {tcov:.1f} % of lesion + {planned:g} mm"
        return "misses", f"covers only {tcov:.1f} % of lesion + {planned:g} mm"
    if cov is None and tcov is None:
        return "uncertain", "the simulation reports no coverage"
    return "uncertain", f"coverage reported but no margin against the {margin_mm:g} mm target"


def _radiation_status(modality: str, m: Mapping[str, Any], prescription_gy: float | None) -> tuple[str, str]:
    ok = m.get("constraints_met", m.get("oar_constraints_met"))
    if modality == "ibt":
        d100 = _num(m.get("d100_gy"))
        if d100 is None:
            return "uncertain", "no D100 reported"
        if prescription_gy is not None and d100 < prescription_gy * 0.995:
            return "misses", f"CTV D100 {d100:.1f} Gy < {prescription_gy:g} Gy protocol dose"
        if ok is False:
            return "misses", "an organ dose limit is exceeded"
        return ("reaches" if ok is True else "uncertain"), (f"CTV D100 {d100:.1f} Gy reaches the protocol dose"
                                                            + ("" if ok is True else "; organ limits not reported"))
    if modality == "sbrt":
        feasible = m.get("feasible")
        if feasible is False or ok is False:
            return "misses", f"protocol dose not deliverable (limiting: {m.get('limiting_organ') or 'not named'})"
        if feasible is True:
            return "reaches", f"protocol dose deliverable, BED10 {m.get('bed10_gy', m.get('bed_gy', 'n/a'))} Gy"
        return "uncertain", "feasibility not reported"
    act = _num(m.get("activity_gbq"))
    if act is None:
        return "uncertain", "no activity reported"
    if "lung" in str(m.get("limiting") or ""):
        return "misses", "activity limited by the lung dose; the tumour dose goal is not reached"
    return "reaches", f"activity {act:g} GBq"


def simulation_failed_why(metrics: Mapping[str, Any] | None, why: str | None) -> str | None:
    """Why the simulation failed (planner raised, or ``placement_failed`` in its metrics), or None."""
    if metrics is not None:
        if metrics.get(PLACEMENT_FAILED_KEY) is True:
            return str(metrics.get(PLACEMENT_FAILED_WHY_KEY) or "the planner could not place its applicators")
        return None
    if why is not None and why.startswith(FAILED_WHY_PREFIXES):
        return why
    return None


def judge(modality: str, metrics: Mapping[str, Any] | None, margin_mm: float | None,
          prescription_gy: float | None = None, alt_margins_mm: tuple[float, ...] = (),
          failed_why: str | None = None, truncated_lesion: bool = False) -> TargetJudgement:
    """The target judgement of one option (metrics None → not simulated; ``failed_why`` → the simulation failed;
    ``truncated_lesion``: the lesion is cut by the field of view, so at best ``uncertain``)."""
    if modality in ABLATIVE:
        target: dict[str, Any] = {"kind": "ablative", "definition": f"lesion + {margin_mm or 0:g} mm ablative margin",
                                  "margin_mm": margin_mm}
    elif modality in RADIATION:
        target = {"kind": "radiation", "definition": "protocol dose to the CTV; dose at lesion + 5 / + 10 mm reported",
                  "prescription_gy": prescription_gy}
    else:
        target = {"kind": "other", "definition": "no geometric target (surgical or regional/systemic)"}
    if failed_why is not None:
        j = TargetJudgement("simulation_failed", f"simulation failed ({failed_why}): target not checked; ranked "
                            "below the simulated options of its tier", target)
    elif metrics is None:
        j = TargetJudgement("not_simulated", "not simulated: target not checked", target)
    else:
        j = _fov_limited(_unverified_path(_judge_simulated(modality, metrics, margin_mm, prescription_gy,
                                                           alt_margins_mm, target), metrics), metrics, modality)
    return _truncated(j, truncated_lesion)


def _fov_limited(j: TargetJudgement, metrics: Mapping[str, Any], modality: str) -> TargetJudgement:
    """``fov_limited``: ECT/IRE — the simulated region reaches past the image edge (tissue there assumed);
    RFA/MWA/cryo — the target or the zone reaches past it (:func:`latplan.planning.thermal.fov_check`).
    "reaches" is at best "uncertain" (tier kept); ``fov_limited_faces`` / ``fov_extension_mm`` shown."""
    if metrics.get("fov_limited") is not True:
        return j
    faces = ", ".join(str(f) for f in metrics.get("fov_limited_faces") or []) or "an image face"
    ext = _num(metrics.get("fov_extension_mm"))
    ext = ext if ext is not None and ext > 0 else None  # 0: only the zone is cut (thermal), no overshoot known
    j.target["fov_limited"] = True
    j.fov_limited = (f"the simulated field reaches {'' if ext is None else f'{ext:g} mm '}past the image edge "
                     f"({faces}); tissue there was assumed") if modality in ELECTROPORATION else (
        f"the treatment region reaches {'' if ext is None else f'{ext:g} mm '}past the image edge ({faces}); "
        "the zone and what lies there are not shown")
    if j.status == "reaches":
        j.status = "uncertain"
        j.text += f"; {j.fov_limited}"
    return j


def _truncated(j: TargetJudgement, truncated_lesion: bool) -> TargetJudgement:
    """Issue 13: a lesion cut by the field of view — its true extent is unknown, so a simulated ablative or
    radiation result is ``uncertain`` either way: a reach may not hold beyond the image, and a miss may be the
    cut itself (the zone meets the image edge: a 0 mm margin there). Tier kept; the option carries
    :data:`TRUNCATED_CONDITION` ("image the whole lesion before deciding")."""
    if not truncated_lesion:
        return j
    j.truncated_lesion = True
    j.target["lesion_truncated_by_fov"] = True
    if j.status in ("reaches", "misses") and j.target.get("kind") in ("ablative", "radiation"):
        j.text += (f"; simulated: {j.status}, but the lesion is cut by the edge of the scan (its true extent and "
                   "margins are unknown): not conclusive")
        j.status = "uncertain"
    return j


def _unverified_path(j: TargetJudgement, metrics: Mapping[str, Any]) -> TargetJudgement:
    """[L] ``trajectory_verified: false``: the path is unknown, never safe — "reaches" becomes "uncertain"
    (ranked below options that reach their target, in the same tier; issue [I] part 4); "misses" stays."""
    if metrics.get("trajectory_verified") is not False:
        return j
    j.target["trajectory_verified"] = False
    j.trajectory_unverified = True
    if j.status == "reaches":
        j.status = "uncertain"
        j.text += "; the access path could not be verified on the image (abdominal wall outside the field of view)"
    return j


def _judge_simulated(modality: str, metrics: Mapping[str, Any], margin_mm: float | None,
                     prescription_gy: float | None, alt_margins_mm: tuple[float, ...],
                     target: dict[str, Any]) -> TargetJudgement:
    if modality in ABLATIVE:
        status, text = _ablative_status(metrics, float(margin_mm or 0.0))
        j = TargetJudgement(status, text, target)
        for alt in alt_margins_mm:
            j.by_margin[f"{alt:g}"] = _ablative_status(metrics, alt)[0]
        _organs(j, metrics)
        return j
    if modality in RADIATION:
        status, text = _radiation_status(modality, metrics, prescription_gy)
        md = metrics.get("margin_dose_gy")
        if isinstance(md, Mapping):
            target["dose_at_margin_gy"] = {k: dict(v) for k, v in md.items() if isinstance(v, Mapping)}
        if metrics.get("ctv_margin_mm") is not None:
            target["ctv_margin_mm"] = metrics.get("ctv_margin_mm")
        if margin_mm is not None:
            target["rule_margin_mm"] = margin_mm
        j = TargetJudgement(status, text, target)
        # organs of the dose limits that the case does not segment: unchecked, never assumed within their limits
        j.unchecked.extend(str(role) for role in metrics.get("unsegmented_organs") or [])
        return j
    return TargetJudgement("not_simulated", "no target judgement for this modality", target)


def _organs(j: TargetJudgement, metrics: Mapping[str, Any]) -> None:
    vols = metrics.get("organ_volumes_in_zone_ml")
    if isinstance(vols, Mapping):
        for role, ml in sorted(vols.items()):
            v = _num(ml)
            if v is None:
                continue
            key = str(role).lower()
            base = next((k for k in ORGANS_AT_RISK if key == k or key.startswith(k)), None)
            if base is not None and v >= ORGAN_IN_ZONE_ML:
                words, measure = ORGANS_AT_RISK[base]
                j.organs.append((words, v, measure))
            elif key in CAUTION_ORGANS and v >= ORGAN_IN_ZONE_ML:
                j.cautions.append(f"{v:.2f} ml of {CAUTION_ORGANS[key]}")
    else:
        j.unchecked.append("organs in the predicted zone (not reported by the planner)")
    for role in metrics.get("unsegmented_organs") or []:
        j.unchecked.append(str(role))
