"""The board summary (page 1 of report.pdf) and the compact per-lesion pages of the main report.

What the board needs first (issue [M] part 1): the patient in one line and the disease status;
per lesion the options of the best tier with the one simulated figure that decides (margin range
and coverage for ablation, D100/D90 and BED for radiation) and the conditions to verify; the top
three whole-patient strategies with their steps, evidence level and why; and one list of what is
not known and what it would change. Everything else (every option's full reasons, all figures,
the basis) goes to the appendix.

As in :mod:`latplan.report.context`, nothing is computed here: every figure comes from plan.json
or the plans' ``metrics``. Absent keys read "unknown", never "safe".
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from latplan.report.context import format_number, format_value, modality_name, plain_language

__all__ = ["SummaryLesion", "SummaryOption", "Unknown", "build_summary", "key_figure", "option_tier", "top_tier_options"]

#: board tiers (plan.json ``tier``, board helper), best first
TIERS: tuple[str, ...] = ("indicated", "eligible", "conditional", "relative", "not_recommended", "contraindicated",
                          "refer")
#: tiers that are ranked together (the board ranks indicated and eligible options in one tier)
_TIER_GROUP = {"indicated": 0, "eligible": 0, "conditional": 1, "relative": 2, "refer": 3, "not_recommended": 4,
               "contraindicated": 5}
#: plan.json ``eligibility`` → tier, for plans written before the board added ``tier``
_ELIGIBILITY_TIER = {"indicated": "indicated", "eligible": "eligible", "relative_contraindication": "relative",
                     "contraindicated": "contraindicated"}
TIER_TEXT = {"indicated": "indicated", "eligible": "eligible", "conditional": "conditional",
             "relative": "relative contra\u00adindication", "not_recommended": "not recommended",
             "contraindicated": "contra\u00adindicated", "refer": "refer"}
#: options shown per lesion on page 1
SUMMARY_OPTIONS = 3
#: strategies shown on page 1
SUMMARY_STRATEGIES = 3
#: unknowns listed on page 1 (the full list is in the appendix)
SUMMARY_UNKNOWNS = 4
RADIATION = frozenset({"ibt", "sbrt", "tare"})
_ABLATIVE = frozenset({"rfa", "mwa", "cryo", "hifu", "ect", "ire", "laser", "lita"})


@dataclass
class SummaryOption:
    modality: str
    name: str
    rank: int | None
    tier: str
    tier_text: str
    evidence_level: str
    figure: str
    conditions: list[str]
    more_conditions: int
    rank_reason: str
    target_status: str | None = None


@dataclass
class SummaryLesion:
    id: str
    title: str
    size: str
    options: list[SummaryOption]


@dataclass
class Unknown:
    what: str
    rules: list[str]
    options: list[str] = field(default_factory=list)

    @property
    def changes(self) -> str:
        """The rules these inputs decide (the first on page 1; all of them in the appendix's table)."""
        return self.rules[0] + (f" (+{len(self.rules) - 1} more rule{'s' if len(self.rules) > 2 else ''})"
                                if len(self.rules) > 1 else "")

    @property
    def all_rules(self) -> str:
        return " / ".join(self.rules)

    @property
    def scope(self) -> str:
        return unknown_scope(self)


def option_tier(option: Mapping[str, Any]) -> str:
    """The option's tier: plan.json ``tier`` when the board wrote it, else from its eligibility."""
    tier = option.get("tier")
    if isinstance(tier, str) and tier in _TIER_GROUP:
        return tier
    return _ELIGIBILITY_TIER.get(str(option.get("eligibility")), "conditional")


def _rank_key(o: Mapping[str, Any]) -> tuple[bool, float, str]:
    rank = o.get("rank")
    return (not isinstance(rank, (int, float)), float(rank) if isinstance(rank, (int, float)) else 0.0,
            str(o.get("modality")))


def top_tier_options(options: Sequence[Mapping[str, Any]], n: int = SUMMARY_OPTIONS) -> list[Mapping[str, Any]]:
    """The best-ranked ``n`` options of the best tier group present (contraindicated ones never)."""
    usable = [o for o in options if option_tier(o) not in ("contraindicated", "not_recommended")]
    if not usable:
        return []
    best = min(_TIER_GROUP[option_tier(o)] for o in usable)
    return sorted((o for o in usable if _TIER_GROUP[option_tier(o)] == best), key=_rank_key)[:n]


def _num(metrics: Mapping[str, Any], key: str) -> float | None:
    v = metrics.get(key)
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def _range_text(v: Any, unit: str) -> str | None:
    if isinstance(v, Sequence) and not isinstance(v, str) and len(v) == 2 and all(
            isinstance(x, (int, float)) for x in v):
        return f"{format_number(float(v[0]))}–{format_number(float(v[1]))} {unit}"
    return None


def _unsegmented(metrics: Mapping[str, Any]) -> list[str]:
    """Organs with a dose limit that the case does not segment (SBRT and IBT ``unsegmented_organs``)."""
    v = metrics.get("unsegmented_organs")
    return [str(o).replace("_", " ") for o in v] if isinstance(v, Sequence) and not isinstance(v, str) else []


def key_figure(modality: str, metrics: Mapping[str, Any] | None) -> str:
    """The one simulated figure that decides, as text ('margin 1.2–3.0 mm; coverage 100 %')."""
    if not metrics:
        return ""
    code = modality.lower()
    parts: list[str] = []
    unseen = _unsegmented(metrics) if code in RADIATION else []
    if code == "sbrt":
        feasible = metrics.get("feasible")
        met = "constraints met" + (" by the segmented organs" if unseen else "")
        parts.append("screen: " + (met if feasible is True else
                                   "constraints NOT met" if feasible is False else "feasibility unknown"))
        if metrics.get("limiting_organ"):
            parts.append(f"limiting organ {format_value(metrics['limiting_organ'])}")
    if code in RADIATION:
        for key, label in (("d100_gy", "D100"), ("d90_gy", "D90")):
            v = _num(metrics, key)
            if v is not None:
                parts.append(f"{label} {format_number(v)} Gy")
        bed = _num(metrics, "bed10_gy") if _num(metrics, "bed10_gy") is not None else _num(metrics, "bed_gy")
        if bed is not None:
            parts.append(f"BED10 {format_number(bed)} Gy")
        margin = metrics.get("margin_dose_gy")
        if isinstance(margin, Mapping):
            for mm, d in sorted(margin.items(), key=lambda kv: float(kv[0])):
                if isinstance(d, Mapping) and isinstance(d.get("d90_gy"), (int, float)):
                    parts.append(f"D90 at +{mm} mm {format_number(float(d['d90_gy']))} Gy")
        v = _num(metrics, "activity_gbq")
        if v is not None:
            parts.append(f"activity {format_number(v)} GBq")
        if unseen:
            # an organ with a dose limit that the case does not segment was not checked: never read as spared
            # (ablation zones list theirs as "verify clearance" conditions; their key figure stays the margin)
            parts.append("not checked (not segmented): " + ", ".join(unseen))
    else:
        rng = _range_text(metrics.get("min_margin_range_mm"), "mm")
        v = _num(metrics, "min_margin_mm")
        if rng:
            parts.append(f"margin {rng}" + (f" (nominal {format_number(v)} mm)" if v is not None else ""))
        elif v is not None:
            parts.append(f"margin {format_number(v)} mm")
        cov = _num(metrics, "coverage_percent")
        if cov is not None:
            parts.append(f"coverage {format_number(cov)} %")
        zone = _num(metrics, "zone_volume_ml")
        zrng = metrics.get("zone_volume_range_ml")   # [J] the zone's uncertainty band (physics.zone_uncertainty)
        if zone is not None:
            zr = _range_text(zrng, "ml")
            parts.append(f"zone {format_number(zone)} ml" + (f" ({zr})" if zr else ""))
        target = _num(metrics, "target_margin_mm")
        if target is not None:
            parts.append(f"target margin {format_number(target)} mm")
    return "; ".join(parts)


def option_metrics(option: Mapping[str, Any], plan: Any) -> Mapping[str, Any]:
    """The plan's metrics when simulated, else plan.json's ``simulation`` block (if it holds figures)."""
    if plan is not None and getattr(plan, "metrics", None):
        return dict(plan.metrics)
    sim = option.get("simulation")
    if isinstance(sim, Mapping) and set(sim) - {"why"}:
        return sim
    return {}


def _figure_text(option: Mapping[str, Any], plan: Any) -> str:
    code = str(option.get("modality", ""))
    text = key_figure(code, option_metrics(option, plan))
    if text:
        return text
    sim = option.get("simulation")
    why = option.get("simulation_why") or (sim.get("why") if isinstance(sim, Mapping) else None)
    return f"not simulated{': ' + str(why) if why else ''}"


#: conditions that decide the option come first on page 1 (one line per option there): the lesion cut by the
#: scan, a failed simulation, a standard of care resting on unrecorded clinical fields, the RAS status that changes
#: the target; then the clearances to verify
_DECISIVE_CONDITIONS = ("conditional — the lesion is cut by the edge of the scan", "simulation failed",
                        "standard of care only if confirmed", "RAS status would change the target")


def _condition_priority(text: str) -> int:
    return next((i for i, p in enumerate(_DECISIVE_CONDITIONS) if text.startswith(p)), len(_DECISIVE_CONDITIONS))


def _conditions(option: Mapping[str, Any]) -> list[str]:
    """plan.json ``conditions`` (board helper) when present, the decisive ones first; else the rules that
    could not be assessed."""
    conds = option.get("conditions")
    if isinstance(conds, Sequence) and not isinstance(conds, str):
        return sorted((str(c) for c in conds), key=_condition_priority)
    out = []
    for c in option.get("cannot_assess") or []:
        text = str(c.get("text", "")) if isinstance(c, Mapping) else str(c)
        text = text.removeprefix("cannot assess: ").strip()
        if text and text not in out:
            out.append(text)
    return out


def _short(text: str, limit: int = 110) -> str:
    return text if len(text) <= limit else text[: limit - 1].rsplit(" ", 1)[0] + " …"


def summary_option(option: Mapping[str, Any], plan: Any, max_conditions: int = 2) -> SummaryOption:
    code = str(option.get("modality", ""))
    tier = option_tier(option)
    lc = option.get("local_control")
    ps = option.get("profile_source")
    profile: Mapping[str, Any] = ps if isinstance(ps, Mapping) else {}
    evidence = option.get("evidence_level") or (lc.get("evidence_level") if isinstance(lc, Mapping) else None) \
        or profile.get("evidence_level")
    conds = _conditions(option)
    rk = option.get("ranking")
    ranking: Mapping[str, Any] = rk if isinstance(rk, Mapping) else {}
    status = option.get("target_status")
    rank = option.get("rank")
    return SummaryOption(
        modality=code, name=modality_name(code), rank=int(rank) if isinstance(rank, (int, float)) else None,
        tier=tier, tier_text=("indicated if confirmed" if option.get("standard_of_care_conditional") is True
                              else TIER_TEXT.get(tier, tier)), evidence_level=format_value(evidence) if evidence else "not stated",
        figure=_figure_text(option, plan), conditions=[_short(c, 90) for c in conds[:max_conditions]],
        more_conditions=max(len(conds) - max_conditions, 0), rank_reason=_rank_reason(ranking),
        target_status=str(status).replace("_", " ") if status else None)


def _rank_reason(ranking: Mapping[str, Any]) -> str:
    """The rank's explanation in one short line (the full formula stays in the appendix)."""
    reason = ranking.get("reason")
    if not reason:
        return ""
    text = str(reason).split(" (rules ")[0]
    return _short(text, 140)


def _lesion_size(meas: Mapping[str, Any]) -> str:
    bits = []
    at_least = "≥ " if meas.get("truncated_by_fov") is True else ""   # cut by the field of view: lower bounds
    if isinstance(meas.get("max_diameter_mm"), (int, float)):
        bits.append(f"{at_least}{format_number(float(meas['max_diameter_mm']))} mm")
    if isinstance(meas.get("volume_ml"), (int, float)):
        bits.append(f"{at_least}{format_number(float(meas['volume_ml']))} ml")
    segs = meas.get("segments") or []
    if segs:
        bits.append("segment " + ", ".join(str(s).replace("liver_segment_", "") for s in segs))
    return ", ".join(bits) or "size unknown"


def truncation_alerts(plan_json: Mapping[str, Any], measurements: Mapping[str, Any]) -> list[str]:
    """Page 1 (issue 13): every lesion cut by the edge of the scan, said first — its size and margins are lower
    bounds, every option of it is conditional."""
    m_by_id = {str(m.get("id")): m for m in measurements.get("lesions", []) or []}
    out = []
    for le in plan_json.get("lesions", []) or []:
        lid = str(le.get("id"))
        meas = m_by_id.get(lid) or le.get("measurements") or {}
        if meas.get("truncated_by_fov") is not True:
            continue
        faces = ", ".join(str(f) for f in meas.get("truncated_by_fov_faces") or []) or "an edge"
        out.append(f"{lid.replace('_', ' ')} is cut by the edge of the scan ({faces}): its size ({_lesion_size(meas)}) "
                   "and margins are lower bounds, and every option for it is conditional — image the whole lesion "
                   "before deciding.")
    return out


def _input_name(key: str) -> str:
    return key.removeprefix("patient.").replace("_", " ")


def _unknowns(plan_json: Mapping[str, Any], measurements: Mapping[str, Any]) -> list[Unknown]:
    """Every set of missing inputs once (the rules it leaves open named together), with the options it touches."""
    found: dict[tuple[str, ...], Unknown] = {}
    for le in plan_json.get("lesions", []) or []:
        for o in le.get("options", []) or []:
            name = modality_name(str(o.get("modality")))
            for c in o.get("cannot_assess") or []:
                if not isinstance(c, Mapping):
                    continue
                text = _short(str(c.get("text", "")).removeprefix("cannot assess: ").strip().rstrip("."), 80)
                missing = tuple(sorted(str(m) for m in c.get("missing") or [])) or (str(c.get("rule_id") or text),)
                u = found.setdefault(missing, Unknown(", ".join(_input_name(m) for m in missing), []))
                if text not in u.rules:
                    u.rules.append(text)
                if name not in u.options:
                    u.options.append(name)
    for m in measurements.get("lesions", []) or []:
        for s in m.get("not_segmented") or []:
            u = found.setdefault((f"segmentation.{s}",), Unknown(
                f"{str(s).replace('_', ' ')} (not segmented)",
                ["distances to it cannot be measured: rules on its proximity stay open"]))
            lid = str(m.get("id", "")).replace("_", " ")
            if lid and lid not in u.options:
                u.options.append(lid)
    return sorted(found.values(), key=lambda u: (-len(u.options), u.what))


def unknown_scope(u: Unknown, limit: int = 3) -> str:
    """'MWA, RFA' or '9 options' (the names are in the appendix)."""
    return ", ".join(u.options) if len(u.options) <= limit else f"{len(u.options)} options"


def _flips(plan_json: Mapping[str, Any]) -> list[str]:
    sens = plan_json.get("sensitivity")
    if not isinstance(sens, Mapping):
        return []
    out = []
    for lid, flips in (sens.get("lesions") or {}).items():
        for f in flips or []:
            if isinstance(f, Mapping) and f.get("text"):
                out.append(f"{str(lid).replace('_', ' ')}: {f['text']}")
    for f in sens.get("strategies") or []:
        if isinstance(f, Mapping) and f.get("text"):
            out.append(f"whole-patient strategy: {f['text']}")
    return out


def _strategies(plan_json: Mapping[str, Any]) -> list[dict[str, Any]]:
    out = []
    ordered = sorted(plan_json.get("strategies", []) or [], key=lambda s: (s.get("rank") is None, s.get("rank") or 0))
    for s in ordered:
        steps = sorted(s.get("steps", []) or [], key=lambda st: st.get("order") or 0)
        out.append({
            "rank": s.get("rank"),
            "title": str(s.get("title") or ""),
            "steps": [f"{modality_name(str(st.get('modality')))} — "
                      f"{', '.join(str(x).replace('_', ' ') for x in st.get('lesion_ids', []) or []) or 'all'}"
                      for st in steps],
            "evidence_level": format_value(s.get("evidence_level")) if s.get("evidence_level") else "not stated",
            "why": format_value(s.get("rationale")) if s.get("rationale") else "no rationale given",
        })
        out[-1]["why_short"] = _short(out[-1]["why"], 120)
    return out


def patient_line(case: Any, measurements: Mapping[str, Any]) -> str:
    p = case.patient
    primary = str(p.primary.value if hasattr(p.primary, "value") else p.primary)
    bits = [f"Patient {p.id}", f"{primary} primary"]
    if p.age is not None:
        bits.append(f"{p.age} years")
    if p.sex:
        bits.append(str(p.sex))
    bits.append(f"ECOG {format_value(p.ecog)}")
    if p.child_pugh:
        bits.append(f"Child–Pugh {p.child_pugh}")
    n = (measurements.get("patient") or {}).get("lesion_count", len(case.lesion_ids))
    bits.append(f"{n} lesion{'s' if n != 1 else ''}")
    return " · ".join(bits)


def build_summary(proposal: Any) -> dict[str, Any]:
    """The view model of the board summary and the compact lesion pages."""
    plan_json: Mapping[str, Any] = proposal.plan_json or {}
    measurements: Mapping[str, Any] = proposal.measurements or {}
    plans: Mapping[tuple[str, str], Any] = dict(getattr(proposal, "plans", {}) or {})
    m_by_id = {str(m.get("id")): m for m in measurements.get("lesions", []) or []}
    lesions = []
    for le in plan_json.get("lesions", []) or []:
        lid = str(le.get("id"))
        meas = m_by_id.get(lid) or le.get("measurements") or {}
        top = top_tier_options(le.get("options", []) or [])
        lesions.append(SummaryLesion(lid, lid.replace("_", " "), _lesion_size(meas),
                                     [summary_option(o, plans.get((lid, str(o.get("modality")))), max_conditions=1)
                                      for o in top]))
    strategies = _strategies(plan_json)
    unknowns = _unknowns(plan_json, measurements)
    return {
        "patient_line": patient_line(proposal.case, measurements),
        "alerts": truncation_alerts(plan_json, measurements),
        "summary_lesions": lesions,
        "top_strategies": strategies[:SUMMARY_STRATEGIES],
        "all_strategies": strategies,
        "unknowns": unknowns[:SUMMARY_UNKNOWNS],
        "unknowns_more": max(len(unknowns) - SUMMARY_UNKNOWNS, 0),
        "all_unknowns": unknowns,
        "flips": _flips(plan_json),
        "disclaimer": str(plan_json.get("disclaimer") or ""),
    }


def lesion_option_rows(options: Sequence[Mapping[str, Any]], plans: Mapping[tuple[str, str], Any],
                       lesion_id: str) -> list[SummaryOption]:
    """Every option of one lesion as compact grid rows (rank with its reason, tier, evidence, figure)."""
    return [summary_option(o, plans.get((lesion_id, str(o.get("modality")))), max_conditions=1)
            for o in sorted(options, key=_rank_key)]


@dataclass
class MainLesion:
    id: str
    title: str
    size: str
    views: Any
    rows: list[SummaryOption]
    dvhs: list[Any]


def main_context(proposal: Any, ctx: Mapping[str, Any]) -> dict[str, Any]:
    """The main report's view model: the full context (``build_context``, for the header and the
    already drawn figures) plus the summary and the compact lesion pages.

    A lesion page shows the slices, every option in one grid (the evidence level of each), and the
    DVH (with its D90) of every radiation option in the best tier.
    """
    summary = build_summary(proposal)
    plans: Mapping[tuple[str, str], Any] = dict(getattr(proposal, "plans", {}) or {})
    pj_by_id = {str(le.get("id")): le for le in (proposal.plan_json or {}).get("lesions", []) or []}
    m_by_id = {str(m.get("id")): m for m in (proposal.measurements or {}).get("lesions", []) or []}
    lesions = []
    for sec in ctx["sections"]:
        options = pj_by_id.get(sec.id, {}).get("options", []) or []
        top = {str(o.get("modality")) for o in top_tier_options(options)} & RADIATION
        dvhs = [img for sim in sec.simulated if sim.modality in top for img in sim.images if img.key == "dvh"]
        meas = m_by_id.get(sec.id) or pj_by_id.get(sec.id, {}).get("measurements") or {}
        lesions.append(MainLesion(sec.id, sec.title, _lesion_size(meas), sec.views,
                                  lesion_option_rows(options, plans, sec.id), dvhs))
    short_status = [(k, _short(str(v), 95)) for k, v in ctx["disease_rows"]]  # the full text is in the appendix
    standard = [str(x) for x in plain_language()["report_limitations"]]
    return {**ctx, **summary, "main_lesions": lesions, "disease_rows_short": short_status,
            "standard_limitations": standard,
            "plan_caveat_count": len([x for x in ctx["limitations"] if x not in standard]),
            "appendix_name": "report-appendix.pdf / report-appendix.html"}
