"""Composite dose of several radiation plans of one strategy (IBT × n, IBT + SBRT, TARE + IBT).

Why: every lesion plan meets the liver rule on its own, but four IBT plans together can put far more
than a third of the normal liver above 5 Gy. Here the physical dose of every plan is recomputed on
one sub-sampled case grid (normal liver = liver − every lesion, and the hollow organs) and

* summed per treatment session (plans given the same session number; by default every IBT plan in
  session 1, every SBRT course and every TARE treatment in a session of its own), checked against
  the single-fraction limits of knowledge/radiation/ibt.yaml ``composite.session_limits``
  (normal-liver V5Gy ≤ 1/3, ≥ 700 ml of liver below 9.1 Gy, hollow-organ D1cc ≤ 14 Gy);
* when an IBT session breaks a limit, its plans are split into the fewest sessions that each meet
  the limits (greedy, largest normal-liver V5 first) — ``split`` says so;
* across sessions the voxel-wise EQD2 is summed with the cited recovery assumption (none:
  conservative) and checked against the cumulative limits (mean normal-liver EQD2 ≤ 30 Gy,
  α/β 2.5 Gy; QUANTEC, Pan 2010).

Dose models: IBT by TG-43 from the plan's dwell positions, directions and times (BED with the
protraction factor of its delivery time, Dale 1985); SBRT by its fall-off estimate around the PTV
(the screen's own model, an estimate); TARE as the uniform normal-liver dose of the partition/MIRD
model in the perfused volume, BED of a decaying permanent implant (Dale 1985,
BED = D·[1 + D·λ/((μ + λ)·α/β)]).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from latplan.case.vocabulary import HOLLOW_ORGAN_ROLES
from latplan.errors import InvalidInputError
from latplan.knowledge import radiation as rk
from latplan.physics import sbrt_screen, tg43
from latplan.planning.ibt import ibt_source, liver_mask, structure_names_cached
from latplan.planning.types import TreatmentPlan

__all__ = ["CompositeDose", "CumulativeDose", "SessionDose", "composite_dose"]

_RADIATION = ("ibt", "sbrt", "tare")


@dataclass(frozen=True)
class SessionDose:
    """Physical dose summed over the plans of one session, and the single-fraction checks."""

    session: int
    plans: tuple[str, ...]
    kind: str                                   # "ibt" (single-fraction limits apply), "sbrt" or "tare"
    normal_liver_v5gy_ml: float
    normal_liver_v5gy_percent: float
    normal_liver_mean_gy: float
    liver_spared_below_9_1gy_ml: float
    hollow_organ_d1cc_gy: dict[str, float]
    limits_met: bool | None                     # None: no single-fraction limit applies to this kind
    violations: tuple[str, ...] = ()


@dataclass(frozen=True)
class CumulativeDose:
    """Voxel-wise EQD2 summed across sessions (recovery assumption stated) and the cumulative checks."""

    normal_liver_mean_eqd2_gy: float
    normal_liver_mean_eqd2_limit_gy: float
    hollow_organ_d1cc_eqd2_gy: dict[str, float]
    limits_met: bool
    violations: tuple[str, ...]
    recovery_fraction: float
    recovery_assumption: str
    interval_days: float


@dataclass(frozen=True)
class CompositeDose:
    """Result for ``strategies[].composite_dose`` (``as_dict`` gives the JSON form)."""

    sessions: tuple[SessionDose, ...]
    cumulative: CumulativeDose
    split: bool
    summed_plans: tuple[str, ...]
    not_summed: tuple[str, ...]
    grid_mm: float
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def session_limits_met(self) -> bool:
        return all(s.limits_met is not False for s in self.sessions)

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["session_limits_met"] = self.session_limits_met
        out["n_sessions"] = len(self.sessions)
        return out


@dataclass
class _PlanDose:
    label: str
    kind: str
    physical_gy: np.ndarray      # on the sampled points
    eqd2_liver_gy: np.ndarray
    eqd2_organ_gy: np.ndarray


def _label(p: TreatmentPlan) -> str:
    return f"{p.modality}:{p.lesion_id}"


def _sample_points(case: Any, grid_mm: float) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray], float, np.ndarray]:
    """Sub-sampled case grid: (kji, LPS mm points, masks over the points, ml per point, normal-liver flag)."""
    lab = case.labels
    stride = np.maximum(1, np.rint(grid_mm / lab.spacing_kji_mm).astype(int))
    sl = tuple(slice(0, None, int(s)) for s in stride)
    liver = liver_mask(case)
    if liver is None:
        raise InvalidInputError("the case has no liver mask: the composite liver dose cannot be computed; "
                                "segment the liver (case folder labels) and plan again.")
    lesions = np.zeros(liver.shape, bool)
    for n in case.lesion_ids:
        lesions |= case.mask_array(n)
    normal = liver & ~lesions
    organs: dict[str, np.ndarray] = {}
    for n in structure_names_cached(case):
        if case.role(n) in HOLLOW_ORGAN_ROLES:
            organs[n] = case.mask_array(n)
    keep = normal.copy()
    for m in organs.values():
        keep |= m
    sub = keep[sl]
    kji = np.argwhere(sub) * stride[None, :]
    pts = lab.index_to_mm(kji.astype(float))
    masks = {n: m[tuple(kji.T)] for n, m in organs.items()}
    return kji, pts, masks, lab.voxel_volume_ml * float(np.prod(stride)), normal[tuple(kji.T)]


def _ibt_dose(plan: TreatmentPlan, pts: np.ndarray) -> np.ndarray:
    src = ibt_source()
    if plan.parameters.get("source", src.name) != src.name:
        raise InvalidInputError(f"IBT plan of {plan.lesion_id} uses source {plan.parameters.get('source')!r}; the "
                                f"composite recomputes dose with the default source {src.name!r} only.")
    pos, dirs, times = [], [], []
    for a in plan.applicators:
        dw = np.asarray(a["dwell_positions_mm"], float).reshape(-1, 3)
        pos.append(dw)
        dirs.append(np.repeat(np.asarray(a["direction"], float)[None], len(dw), 0))
        times.append(np.asarray(a["dwell_times_s"], float))
    return tg43.dose_gy(pts, np.concatenate(pos), np.concatenate(dirs), np.concatenate(times),
                        float(plan.parameters["sk_u"]), src, method="lookup")


def _sbrt_dose(case: Any, plan: TreatmentPlan, kji: np.ndarray) -> np.ndarray:
    if plan.target is None:
        raise InvalidInputError(f"SBRT plan of {plan.lesion_id} carries no PTV; it cannot be summed.")
    rx = float(plan.parameters["fractions"]) * float(plan.parameters["dose_per_fraction_gy"])
    est = sbrt_screen.estimate_dose_gy(plan.target, rx, float(plan.parameters["falloff_lambda_mm"]))
    if est.shape != case.labels.shape:
        raise InvalidInputError("SBRT PTV grid differs from the case grid; it cannot be summed.")
    return np.asarray(est.array, float)[tuple(kji.T)]


def _tare_dose(case: Any, plan: TreatmentPlan, kji: np.ndarray) -> np.ndarray:
    m = plan.metrics
    d = m.get("normal_liver_dose_gy", m.get("perfused_dose_gy"))
    if d is None or plan.target is None:
        raise InvalidInputError(f"TARE plan of {plan.lesion_id} reports no normal-liver dose; it cannot be summed.")
    perf = np.asarray(plan.target.array, bool)
    return np.where(perf[tuple(kji.T)], float(d), 0.0)


def _eqd2(kind: str, plan: TreatmentPlan, dose: np.ndarray, alpha_beta_gy: float) -> np.ndarray:
    cfg = rk.ibt_config()
    if kind == "ibt":
        g = float(plan.metrics.get("protraction_g", 1.0))
        bed = dose * (1.0 + g * dose / alpha_beta_gy)
    elif kind == "sbrt":
        n = int(plan.parameters["fractions"])
        bed = dose * (1.0 + dose / n / alpha_beta_gy)
    else:  # permanent Y-90 implant, exponentially decaying dose rate (Dale 1985)
        lam = math.log(2) / float(cfg["composite"]["y90_half_life_h"])
        mu = math.log(2) / float(cfg["composite"]["y90_repair_half_time_h"])
        bed = dose * (1.0 + dose * lam / ((mu + lam) * alpha_beta_gy))
    return np.asarray(bed / (1.0 + 2.0 / alpha_beta_gy))


def _d_ml(values: np.ndarray, ml_per_point: float, volume_ml: float) -> float:
    if values.size == 0:
        return 0.0
    srt = np.sort(values)[::-1]
    n = max(math.ceil(volume_ml / ml_per_point - 1e-9) - 1, 0)
    return float(srt[min(n, srt.size - 1)])


def _session(number: int, members: Sequence[_PlanDose], normal: np.ndarray, organ_masks: Mapping[str, np.ndarray],
             ml: float) -> SessionDose:
    lim = rk.ibt_config()["composite"]["session_limits"]
    total = np.sum([p.physical_gy for p in members], axis=0)
    liver_d = total[normal]
    v5_ml = float(np.sum(liver_d >= 5.0)) * ml
    liver_ml = float(liver_d.size) * ml
    thr = float(lim["normal_liver_spared_ml"]["threshold_gy"])
    spared = float(np.sum(liver_d < thr)) * ml
    organs = {n: round(_d_ml(total[m], ml, 1.0), 2) for n, m in organ_masks.items() if m.any()}
    kinds = {p.kind for p in members}
    kind = "ibt" if "ibt" in kinds else sorted(kinds)[0]
    violations: list[str] = []
    met: bool | None = None
    if kind == "ibt":
        frac = float(lim["normal_liver_v5gy_fraction_max"]["value"])
        if v5_ml > frac * liver_ml:
            violations.append(f"normal-liver V5Gy {v5_ml:.0f} ml = {100 * v5_ml / liver_ml:.0f} % > "
                              f"{100 * frac:.0f} % ({lim['normal_liver_v5gy_fraction_max']['citation']})")
        if spared < float(lim["normal_liver_spared_ml"]["value"]) and liver_ml >= float(lim["normal_liver_spared_ml"]["value"]):
            violations.append(f"only {spared:.0f} ml of liver below {thr:g} Gy (< "
                              f"{lim['normal_liver_spared_ml']['value']:g} ml, TG-101)")
        organ_lim = float(lim["hollow_organ_d1cc_gy"]["value"])
        violations += [f"{n} D1cc {v:.1f} Gy > {organ_lim:g} Gy (Mohnike 2016)" for n, v in organs.items() if v > organ_lim]
        met = not violations
    return SessionDose(number, tuple(p.label for p in members), kind, round(v5_ml, 1),
                       round(100 * v5_ml / liver_ml, 2) if liver_ml else 0.0,
                       round(float(liver_d.mean()) if liver_d.size else 0.0, 3), round(spared, 1), organs, met,
                       tuple(violations))


def _split(ibt: list[_PlanDose], normal: np.ndarray, organ_masks: Mapping[str, np.ndarray], ml: float
           ) -> list[list[_PlanDose]]:
    """Fewest IBT sessions (greedy, largest normal-liver V5 first) that each meet the session limits."""
    order = sorted(ibt, key=lambda p: -float(np.sum(p.physical_gy[normal] >= 5.0)))
    groups: list[list[_PlanDose]] = []
    for p in order:
        for g in groups:
            if _session(0, [*g, p], normal, organ_masks, ml).limits_met:
                g.append(p)
                break
        else:
            groups.append([p])
    return groups


def composite_dose(case: Any, plans: Sequence[TreatmentPlan], *, sessions: Sequence[int] | None = None,
                   interval_days: float | None = None, grid_mm: float = 4.0, split_sessions: bool = True
                   ) -> CompositeDose:
    """Sum the radiation plans of one strategy per session and cumulatively (see the module docstring).

    ``sessions``: session number per plan (same order); None → every IBT plan in session 1, each SBRT
    and TARE plan in a session of its own. ``grid_mm``: spacing of the sub-sampled case grid.
    """
    cfg = rk.ibt_config()["composite"]
    interval = float(cfg["session_interval_days"] if interval_days is None else interval_days)
    if sessions is not None and len(sessions) != len(plans):
        raise InvalidInputError(f"give one session number per plan ({len(plans)}); got {len(sessions)}.")
    kji, pts, organ_masks, ml, normal = _sample_points(case, grid_mm)
    ab_liver = float(cfg["cumulative_limits"]["normal_liver_mean_eqd2_gy"]["alpha_beta_gy"])
    ab_organ = float(cfg["cumulative_limits"]["hollow_organ_alpha_beta_gy"])
    doses: list[_PlanDose] = []
    session_of: list[int] = []
    not_summed: list[str] = []
    next_session = 2
    for idx, p in enumerate(plans):
        if p.modality not in _RADIATION:
            continue
        try:
            if p.modality == "ibt":
                d = _ibt_dose(p, pts)
            elif p.modality == "sbrt":
                d = _sbrt_dose(case, p, kji)
            else:
                d = _tare_dose(case, p, kji)
        except (InvalidInputError, KeyError) as exc:
            not_summed.append(f"{_label(p)}: {exc}")
            continue
        doses.append(_PlanDose(_label(p), p.modality, d, _eqd2(p.modality, p, d, ab_liver),
                               _eqd2(p.modality, p, d, ab_organ)))
        if sessions is not None:
            session_of.append(int(sessions[idx]))
        elif p.modality == "ibt":
            session_of.append(1)
        else:
            session_of.append(next_session)
            next_session += 1
    groups: dict[int, list[_PlanDose]] = {}
    for pd, num in zip(doses, session_of, strict=True):
        groups.setdefault(num, []).append(pd)
    split = False
    final: list[list[_PlanDose]] = []
    for num in sorted(groups):
        members = groups[num]
        s = _session(num, members, normal, organ_masks, ml)
        ibt = [m for m in members if m.kind == "ibt"]
        if split_sessions and s.limits_met is False and len(ibt) > 1:
            parts = _split(ibt, normal, organ_masks, ml)
            if len(parts) > 1:
                split = True
                others = [m for m in members if m.kind != "ibt"]
                final += parts + ([others] if others else [])
                continue
        final.append(members)
    out_sessions = tuple(_session(i + 1, g, normal, organ_masks, ml) for i, g in enumerate(final))
    cumulative = _cumulative(doses, normal, organ_masks, ml, interval)
    notes = ["dose on a case grid sub-sampled to about "
             f"{grid_mm:g} mm; normal liver = liver minus every lesion; SBRT dose is the screen's fall-off estimate; "
             "TARE dose is the uniform normal-liver dose of its perfused volume"]
    if split:
        notes.append(f"IBT plans split into {sum(1 for g in final if any(m.kind == 'ibt' for m in g))} sessions so "
                     "that each session meets the single-fraction liver and organ limits")
    return CompositeDose(out_sessions, cumulative, split, tuple(pd.label for pd in doses), tuple(not_summed),
                         float(grid_mm), tuple(notes))


def _cumulative(doses: Sequence[_PlanDose], normal: np.ndarray, organ_masks: Mapping[str, np.ndarray], ml: float,
                interval_days: float) -> CumulativeDose:
    cfg = rk.ibt_config()["composite"]
    lim = cfg["cumulative_limits"]
    rec = float(cfg["recovery"]["fraction"])
    # no recovery (rec = 0): the EQD2 of every session counts in full
    liver = np.sum([d.eqd2_liver_gy for d in doses], axis=0) if doses else np.zeros(len(normal))
    organ = np.sum([d.eqd2_organ_gy for d in doses], axis=0) if doses else np.zeros(len(normal))
    liver *= 1.0 - rec
    organ *= 1.0 - rec
    mean = float(liver[normal].mean()) if normal.any() else 0.0
    limit = float(lim["normal_liver_mean_eqd2_gy"]["value"])
    organs = {n: round(_d_ml(organ[m], ml, 1.0), 2) for n, m in organ_masks.items() if m.any()}
    violations = [f"mean normal-liver EQD2 {mean:.1f} Gy > {limit:g} Gy (QUANTEC, Pan 2010)"] if mean > limit else []
    # hollow organs: the single-fraction 14 Gy D1cc limit in EQD2 (α/β 3 Gy, no recovery)
    organ_single = float(cfg["session_limits"]["hollow_organ_d1cc_gy"]["value"])
    organ_limit = organ_single * (1 + organ_single / float(lim["hollow_organ_alpha_beta_gy"])) / (
        1 + 2 / float(lim["hollow_organ_alpha_beta_gy"]))
    violations += [f"{n} cumulative D1cc EQD2 {v:.1f} Gy > {organ_limit:.1f} Gy (the 14 Gy single-fraction limit "
                   "in EQD2)" for n, v in organs.items() if v > organ_limit]
    return CumulativeDose(round(mean, 2), limit, organs, not violations, tuple(violations), rec,
                          str(cfg["recovery"]["citation_text"]), interval_days)
