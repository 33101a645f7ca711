"""Per-lesion options: every modality, assessed, simulated where a planner exists, ranked.

Ranking (visible in each option's ``ranking``):
1. contraindicated options are not ranked;
2. tier: ``indicated`` (a guideline's standard of care, named) > ``eligible`` > ``relative``
   (relative contraindication, target missed, organ in the zone) > ``refer`` (not offered at
   this centre); an unknown input keeps the tier and adds a *condition* ("verify clearance
   of X on imaging"): unknown is shown and never assumed safe, but it does not silently
   demote an option below weaker ones; a guideline's standard of care unknown only through
   clinical fields (``on_unknown: conditional``: ECOG, extrahepatic disease not recorded) keeps
   the indicated tier *as a condition* ("standard of care only if confirmed (not recorded: …)");
3. within a tier, options that reach their target come before uncertain / not simulated
   ones, those before options that miss it, and a failed simulation (planner raised or could not place
   its applicators) last (:mod:`latplan.board.targets`); a lesion cut by the field of view makes every
   option conditional and its targets at best uncertain (tier kept);
4. then total = evidence weight × patient-weighted criteria sum (0–1,
   :mod:`latplan.board.preferences`) + clinical score (fired rule score effects, ∓ simulation,
   − a small cost per unknown adverse rule).

Where a simulation exists it decides coverage and margin: a failed simulation makes the
option at best a relative contraindication; a successful one overturns relative size
priors (``category: size`` rules). Both the prior and the verdict are shown.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from latplan.anatomy.geometry import CaseGeometry
from latplan.case.patient import Patient
from latplan.case.vocabulary import Eligibility
from latplan.knowledge.centre import offered_modalities
from latplan.knowledge.conditions import Truth
from latplan.knowledge.profiles import ENDPOINTS, ModalityProfile, OutcomeFigure, figures_for
from latplan.knowledge.rules import RuleSet
from latplan.modalities import LESION_MODALITIES
from latplan.modalities.base import Assessment, Reason, Site, assess_with_rules, build_context, worse
from latplan.modalities.simulate import PLANNERS, SimulationJob, SimulationResult, simulate_job, verdict
from latplan.planning.types import TreatmentPlan

from .preferences import criteria_values, weighted_sum
from .targets import (
    ABLATIVE,
    STATUS_ORDER,
    TRAJECTORY_CONDITION,
    TRUNCATED_CONDITION,
    TargetJudgement,
    judge,
    simulation_failed_why,
)

#: tier names (plan.json ``tier``) in ranking order
TIERS = ("indicated", "eligible", "relative", "refer")
#: weight of the preference score by the evidence level of the option's strongest positive reason
EVIDENCE_WEIGHT = {"1": 1.0, "2": 0.9, "3": 0.8, "4": 0.7, "5": 0.6,
                   "high": 1.0, "moderate": 0.9, "low": 0.75, "very low": 0.6}
#: clinical-score change from a simulation verdict
SIMULATION_ACHIEVES_BONUS = 0.05
SIMULATION_FAILS_PENALTY = -0.2
#: clinical-score cost of each rule that could count against an option but cannot be assessed
UNKNOWN_PENALTY = 0.03

_SIM_CITATION_RULE = {"rfa": "MARGIN-5MM", "mwa": "MARGIN-5MM", "cryo": "MARGIN-5MM", "ect": "MARGIN-5MM",
                      "ire": "MARGIN-5MM", "ibt": "TOOLBOX-IBT", "sbrt": "TOOLBOX-SBRT", "tare": "TOOLBOX-TARE"}


@dataclass
class Option:
    modality: str
    lesion_id: str
    assessment: Assessment
    profile: ModalityProfile
    eligibility: Eligibility
    ranking_basis: Eligibility
    score: float
    extra_reasons: list[Reason] = field(default_factory=list)
    plan: TreatmentPlan | None = None
    simulation_why: str | None = None
    verdict: tuple[str, str] | None = None
    figures: list[OutcomeFigure] = field(default_factory=list)
    local_control: dict[str, Any] | None = None
    lc_value: float | None = None
    rank: int | None = None
    preference_score: float | None = None
    total: float | None = None
    ranking_reason: str = ""
    runtime_s: float | None = None
    offered: bool = True
    target: TargetJudgement | None = None
    conditions: list[str] = field(default_factory=list)
    handoff: str | None = None
    lobe: str | None = None
    diameter_mm: float | None = None
    truncated: bool = False        # issue 13: the lesion is cut by the field of view (size/margins lower bounds)

    @property
    def rankable(self) -> bool:
        return self.eligibility != Eligibility.CONTRAINDICATED

    @property
    def tier_name(self) -> str:
        if self.handoff is not None:
            return "refer"
        if self.eligibility == Eligibility.CONTRAINDICATED:
            return "contraindicated"
        if not self.offered:
            return "refer"
        return {Eligibility.INDICATED: "indicated", Eligibility.ELIGIBLE: "eligible"}.get(self.ranking_basis, "relative")

    @property
    def tier(self) -> int:
        """Ranking tier index (0 = indicated … 3 = refer)."""
        name = self.tier_name
        return TIERS.index(name) if name in TIERS else len(TIERS)

    @property
    def target_status(self) -> str:
        return self.target.status if self.target is not None else "not_simulated"

    @property
    def evidence_level(self) -> str:
        """Evidence level of the strongest positive reason (indicated first, then eligible)."""
        best = None
        for r in self.assessment.reasons:
            if r.effect.startswith("indicated"):
                return r.evidence_level
            if r.effect.startswith("eligible") and best is None:
                best = r.evidence_level
        return best or "CEBM 5"

    @property
    def evidence_weight(self) -> float:
        lv = self.evidence_level.removeprefix("CEBM ").removeprefix("GRADE ")
        return EVIDENCE_WEIGHT.get(lv[:1] if lv[:1].isdigit() else lv, 0.6)

    @property
    def guideline(self) -> str | None:
        """The rule and source that make this option the standard of care (indicated tier)."""
        for r in self.assessment.reasons:
            if r.effect.startswith("indicated"):
                first = r.citation.split(";")[0]
                words = self.assessment.conditional.get(r.rule_id)
                cond = f" ({words})" if words else ""
                return f"{r.rule_id}{cond}: {first[:110]}{'…' if len(first) > 110 else ''}"
        return None

    @property
    def guideline_conditional(self) -> bool:
        """True when the indicated tier rests on a standard of care whose clinical inputs are not recorded
        (``on_unknown: conditional``): "indicated if confirmed" on the report."""
        return (self.tier_name == "indicated" and bool(self.assessment.conditional)
                and not any(r.effect.startswith("indicated") and r.rule_id not in self.assessment.conditional
                            for r in self.assessment.reasons))

    def criteria(self) -> dict[str, float]:
        return criteria_values(self.profile, self.lc_value)


def _rule_reason(rules: RuleSet, rule_id: str, rule_text: str, effect: str, category: str) -> Reason:
    cite_rule = rules.rules.get(rule_id)
    fallback = rules.citations.get("latplan-estimate")
    citation = cite_rule.citation_text if cite_rule else (fallback.render() if fallback else "latplan team (no source)")
    level = cite_rule.evidence_level if cite_rule else "CEBM 5"
    return Reason(rule_id, rule_text, citation, level, effect, category)


def simulation_skip(option: Option, has_case: bool, simulate: bool | Collection[str] = True) -> str | None:
    """Why ``option`` is not simulated in this run (shown as ``simulation_why``), or None when it is."""
    code = option.modality
    if simulate is not True and (simulate is False or code not in set(simulate)):
        return ("simulations switched off (simulate=False)" if simulate is False
                else f"not simulated in this run (simulate={sorted(set(simulate))})")
    if code not in PLANNERS:
        return f"no simulation engine for {code} in this release; assessed by rules only"
    if not has_case:
        return "no image case given (rules-only assessment)"
    if option.eligibility == Eligibility.CONTRAINDICATED:
        return "not simulated: contraindicated by rule"
    return None


def simulation_job(option: Option, lesion: Mapping[str, Any]) -> SimulationJob:
    """The simulation of ``option`` on the lesion measured as ``lesion``, with the rules' target margin."""
    margin = option.assessment.parameters.get("target_margin_mm")
    return SimulationJob(option.lesion_id, option.modality, lesion, None if margin is None else float(margin))


def apply_simulation(option: Option, result: SimulationResult) -> None:
    """Attach a simulation result (the plan, or why there is none) to its option."""
    option.plan, option.runtime_s = result.plan, result.runtime_s
    if result.why is not None:
        option.simulation_why = result.why


def judge_simulation(option: Option, rules: RuleSet) -> None:
    """Re-assess with the simulated plan: the verdict (coverage/margin/dose), then the one target of its
    kind, organs in the zone and unchecked structures (:mod:`latplan.board.targets`)."""
    _apply_verdict(option, rules)
    _judge_target(option, rules)


#: RAS unknown: the ablative targets shown side by side (wild-type 5 mm, mutant 10 mm: MARGIN-5MM, MARGIN-RAS-10MM)
RAS_ALTERNATIVE_MARGINS_MM = (5.0, 10.0)


def _target_judgement(option: Option) -> tuple[TargetJudgement, tuple[float, ...]]:
    """The option's one target (targets.py): simulated metrics, a failed simulation, a lesion cut by the field
    of view; RAS unknown (the conservative 10 mm applied) → both targets, and a miss of 10 mm that reaches 5 mm is
    ``uncertain`` (the unknown RAS decides: a condition, not a demotion of the ablative kind — issue [I] item 2)."""
    a = option.assessment
    margin = a.parameters.get("target_margin_mm")
    alts: tuple[float, ...] = ()
    if "conservative_because_unknown" in a.parameters and option.modality in ABLATIVE:
        alts = RAS_ALTERNATIVE_MARGINS_MM
    plan = option.plan
    metrics = dict(plan.metrics) if plan is not None else None
    t = judge(option.modality, metrics, margin, plan.prescription_gy if plan is not None else None, alts,
              failed_why=simulation_failed_why(metrics, option.simulation_why), truncated_lesion=option.truncated)
    lower = f"{min(alts):g}" if alts else None
    if t.status == "misses" and lower is not None and t.by_margin.get(lower) in ("reaches", "uncertain"):
        t.status = "uncertain"
        t.text += (f"; reaches the {lower} mm target of RAS wild-type disease: the unknown RAS status decides "
                   "(test RAS before deciding)")
    return t, alts


def _judge_target(option: Option, rules: RuleSet) -> None:
    """One target per kind (targets.py); organs in the zone → relative contraindication naming them."""
    option.target, alts = _target_judgement(option)
    plan = option.plan
    t = option.target
    if alts:
        by = ", ".join(f"{k} mm: {v}" for k, v in t.by_margin.items()) if t.by_margin else "not simulated"
        option.conditions.append(f"RAS status would change the target (5 mm wild-type, 10 mm mutant; {by})")
    if t.status == "simulation_failed":
        option.conditions.append(f"simulation failed — {t.text}")
    if t.fov_limited is not None:
        option.conditions.append(f"conditional — field of view: {t.fov_limited}; image the whole region")
    for organ, ml, measure in t.organs:
        option.eligibility = worse(option.eligibility, Eligibility.RELATIVE_CONTRAINDICATION)
        option.ranking_basis = worse(option.ranking_basis, Eligibility.RELATIVE_CONTRAINDICATION)
        option.extra_reasons.append(_rule_reason(
            rules, "THERMAL-HOLLOW-5MM", f"Predicted zone holds {ml:.2f} ml of the {organ}: relative contraindication; "
            f"protective measure: {measure}.", "relative_contraindication", "simulation"))
    for c in t.cautions:
        option.conditions.append(f"caution: predicted zone touches {c}")
    if plan is not None and t.status == "misses" and (option.verdict is None or option.verdict[0] != "fails"):
        option.eligibility = worse(option.eligibility, Eligibility.RELATIVE_CONTRAINDICATION)
        option.ranking_basis = worse(option.ranking_basis, Eligibility.RELATIVE_CONTRAINDICATION)
        option.score += SIMULATION_FAILS_PENALTY
        option.extra_reasons.append(_rule_reason(rules, _SIM_CITATION_RULE.get(option.modality, ""),
                                                 f"Target missed: {t.text}.", "relative_contraindication", "simulation"))
    for u in t.unchecked:  # once each: the rules' unknown anatomy may have asked for the same structure
        text = (f"conditional — {u.replace('_', ' ')} not segmented: its dose limit was not checked; contour it or "
                "verify its dose" if t.target.get("kind") == "radiation" else
                f"conditional — verify clearance of {u} on imaging")
        if text not in option.conditions:
            option.conditions.append(text)
    _unverified_path_condition(option)


def _unverified_path_condition(option: Option) -> None:
    """[L] an unverified access path: a condition (once), and confidence drops like an unknown (tier kept)."""
    if option.target is None or not option.target.trajectory_unverified or TRAJECTORY_CONDITION in option.conditions:
        return
    option.conditions.append(TRAJECTORY_CONDITION)
    option.score -= UNKNOWN_PENALTY


def _apply_verdict(option: Option, rules: RuleSet) -> None:
    plan = option.plan
    if plan is None:
        return
    a = option.assessment
    target = a.parameters.get("target_margin_mm")
    v, text = verdict(option.modality, plan, target)
    if v == "fails" and (option.modality in ABLATIVE or option.truncated):
        j = _target_judgement(option)[0]
        if j.status == "uncertain":  # optimistic end of the band, RAS unknown, lesion cut by the FOV: tier kept
            v, text = "unclear", j.text
    option.verdict = (v, text)
    cite_id = _SIM_CITATION_RULE.get(option.modality, "")
    if v == "fails":
        option.eligibility = worse(option.eligibility, Eligibility.RELATIVE_CONTRAINDICATION)
        option.ranking_basis = worse(option.ranking_basis, Eligibility.RELATIVE_CONTRAINDICATION)
        option.score += SIMULATION_FAILS_PENALTY
        option.extra_reasons.append(_rule_reason(rules, cite_id, f"Simulation: {text}; the simulation decides over the "
                                                 f"size prior ({a.size_prior.value}).", "relative_contraindication",
                                                 "simulation"))
    elif v == "achieves":
        option.score += SIMULATION_ACHIEVES_BONUS
        if a.overturnable and option.eligibility == Eligibility.RELATIVE_CONTRAINDICATION:
            # recompute without the overturned size rules
            remaining = [r for r in a.reasons if r.rule_id not in a.overturnable]
            neg = [Eligibility(r.effect.split(";")[0]) for r in remaining
                   if r.effect.split(";")[0] in ("relative_contraindication", "contraindicated")]
            pos = [r.effect.split(";")[0] for r in remaining]
            new = neg[0] if neg else (Eligibility.INDICATED if "indicated" in pos else Eligibility.ELIGIBLE)
            for n in neg:
                new = worse(new, n)
            option.eligibility = new
            option.ranking_basis = new
            option.extra_reasons.append(_rule_reason(
                rules, cite_id, f"Simulation overturns the size prior ({', '.join(a.overturnable)}): {text}.",
                new.value, "simulation"))
        else:
            option.extra_reasons.append(_rule_reason(rules, cite_id, f"Simulation confirms: {text}.", "information",
                                                     "simulation"))
    else:
        option.extra_reasons.append(_rule_reason(rules, cite_id, f"Simulation inconclusive: {text}.", "information",
                                                 "simulation"))


def _figures(option: Option, ctx: Mapping[str, Any], figures: Sequence[OutcomeFigure] | None) -> None:
    sim = dict(option.plan.metrics) if option.plan is not None else {}
    fctx = dict(ctx)
    fctx["simulation"] = sim
    fctx["option"] = {"target_margin_mm": option.assessment.parameters.get("target_margin_mm"), "modality": option.modality}
    out = []
    for f in figures_for(option.modality, figures):
        if f.condition.evaluate(fctx).truth == Truth.TRUE:
            out.append(f)
    option.figures = out


#: organ of an extrahepatic lesion → the team and the options it weighs
HANDOFF = {"lung": "thoracic board: SBRT, resection or ablation of the lung nodule",
           "bone": "radiation oncology: palliative or stereotactic radiotherapy",
           "lymph_node": "surgical / radiation oncology: nodal resection or SBRT",
           "peritoneum": "peritoneal surface malignancy team: cytoreduction ± HIPEC assessment",
           "adrenal": "endocrine surgery / radiation oncology: adrenalectomy, SBRT or ablation",
           "brain": "neuro-oncology: stereotactic radiosurgery or resection"}


def _structure_name(missing: str) -> str:
    """'lesion.distance_mm.bile_duct' → bile_duct; 'lesion.vessels[hepatic_vein].distance_mm' → hepatic_vein."""
    if missing.startswith("lesion.distance_mm."):
        return missing.removeprefix("lesion.distance_mm.")
    if "[" in missing and "]" in missing:
        return missing.split("[", 1)[1].split("]", 1)[0]
    return missing.removeprefix("lesion.")


def _conditions_from_unknowns(option: Option) -> None:
    """Unknown anatomy → 'conditional — verify clearance of X'; unknown clinical fields → 'confirm X'."""
    seen: set[str] = set(option.conditions)
    for r in option.assessment.reasons:  # a standard of care unknown through clinical fields (on_unknown: conditional)
        if r.rule_id in option.assessment.conditional:
            option.conditions.append(f"{option.assessment.conditional[r.rule_id]} — {r.rule_id}: {r.text}")
    clinical: dict[str, None] = {}
    for c in option.assessment.cannot_assess:
        head = c.would_be.split(";")[0]
        adverse = head in ("relative_contraindication", "contraindicated") or "score -" in c.would_be
        if not adverse:
            continue
        for m in c.missing:
            if m.startswith("lesion."):
                name = _structure_name(m)
                text = f"conditional — verify clearance of {name} on imaging"
            else:
                clinical.setdefault(m.removeprefix("patient."), None)
                continue
            if text not in seen:
                seen.add(text)
                option.conditions.append(text)
    if "pacemaker" in clinical:
        clinical.pop("cardiac_device", None)  # the same question (pacemaker/ICD)
    if clinical:
        option.conditions.append("confirm before the procedure (not recorded): " + ", ".join(clinical))


def assess_options(site: Site, patient: Patient, rules: RuleSet,
                   profiles: Mapping[str, ModalityProfile],
                   offered: Collection[str] | None = None) -> tuple[dict[str, Any], list[Option]]:
    """Every modality for one lesion, assessed by the rules (no simulation yet); returns (context, options).

    The ranking basis is the rules' eligibility: an unknown input becomes a condition on the option
    (and costs :data:`UNKNOWN_PENALTY` per adverse rule), it does not change the tier.
    """
    ctx = build_context(site, patient)
    options: list[Option] = []
    organ = str(ctx["lesion"].get("organ") or "liver")
    for code in LESION_MODALITIES:
        a = assess_with_rules(code, site, patient, rules, context=ctx)
        score = a.score - UNKNOWN_PENALTY * a.unknown_adverse
        o = Option(code, site.lesion_id, a, profiles[code], a.eligibility, a.eligibility, score)
        o.offered = code in (offered if offered is not None else offered_modalities())
        o.lobe = ctx["lesion"].get("lobe")
        o.diameter_mm = ctx["lesion"].get("max_diameter_mm")
        if ctx["lesion"].get("in_liver") is False:
            o.handoff = HANDOFF.get(organ, f"the {organ.replace('_', ' ')} team (outside the liver)")
        if site.lesion.get("truncated_by_fov") is True:
            o.truncated = True
            o.conditions.append(TRUNCATED_CONDITION)
        _conditions_from_unknowns(o)
        pf = ctx["patient"]
        for flag in ((pf.get("child_pugh_detail") or {}).get("disagreement"), pf.get("bclc_disagreement")):
            if flag:
                o.conditions.append(f"check: {flag} (the recorded value is used)")
        options.append(o)
    return ctx, options


def simulate_options(jobs: Sequence[tuple[Option, Site, Mapping[str, Any] | None]], case: Any, rules: RuleSet, *,
                     simulate: bool | Collection[str] = True, workers: int = 1,
                     progress: Callable[[str], None] | None = None, geometry: CaseGeometry | None = None) -> None:
    """Run the planners for (option, site, lesion measurements) jobs, then judge each plan.

    ``simulate``: True (every modality with a planner), False, or the modality codes to simulate.
    ``workers`` > 1 runs planners in threads (the engines release the GIL in numpy/numba; planners
    must not share mutable state — the default is sequential). ``geometry``: the case's
    :class:`CaseGeometry`, computed once by the pipeline and passed to every planner.
    (The pipeline runs the same steps as stages: :mod:`latplan.pipeline.stages`.)
    """
    todo: list[tuple[Option, SimulationJob]] = []
    for opt, site, meas in jobs:
        why = simulation_skip(opt, case is not None, simulate)
        if why is not None:
            opt.simulation_why = why
        else:
            todo.append((opt, simulation_job(opt, meas if meas is not None else site.lesion)))

    def run(item: tuple[Option, SimulationJob]) -> None:
        if progress:
            progress(f"{item[1].lesion_id}: simulating {item[1].modality}")
        apply_simulation(item[0], simulate_job(item[1], case, geometry))

    if workers > 1 and len(todo) > 1:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            list(pool.map(run, todo))
    else:
        for item in todo:
            run(item)
    for opt, _site, _meas in jobs:
        judge_simulation(opt, rules)


def finish_options(options: list[Option], ctx: Mapping[str, Any], figures: Sequence[OutcomeFigure] | None) -> None:
    """Attach outcome figures (using simulated metrics) and compare local control like with like."""
    for opt in options:
        _figures(opt, ctx, figures)
    _compare_local_control(options)


def build_options(site: Site, patient: Patient, rules: RuleSet, profiles: Mapping[str, ModalityProfile], *,
                  case: Any = None, measurements: Mapping[str, Any] | None = None,
                  simulate: bool | Collection[str] = True, figures: Sequence[OutcomeFigure] | None = None,
                  progress: Callable[[str], None] | None = None) -> list[Option]:
    """Every modality for one lesion: assessment, simulation (if any), matching outcome figures."""
    ctx, options = assess_options(site, patient, rules, profiles)
    simulate_options([(o, site, measurements) for o in options], case, rules, simulate=simulate, progress=progress)
    finish_options(options, ctx, figures)
    return options


def _shared_reference(options: Sequence[Option], endpoints: Collection[str]) -> tuple[str, float] | None:
    """The (endpoint, time point) of ``endpoints`` shared by most rankable options (≥ 2); ties → longest follow-up."""
    counts: dict[tuple[str, float], int] = {}
    for o in options:
        if not o.rankable:
            continue
        keys = {(f.endpoint, f.time_point_months) for f in o.figures
                if f.endpoint in endpoints and f.time_point_months is not None and f.value_percent is not None}
        for k in keys:
            counts[k] = counts.get(k, 0) + 1  # type: ignore[index]
    if not counts:
        return None
    ref = max(counts, key=lambda k: (counts[k], k[1], k[0] == "overall_survival"))
    return ref if counts[ref] >= 2 else None


def _compare_local_control(options: list[Option]) -> None:
    """Pick one (endpoint, time point) shared by most rankable options; others are 'not comparable'.

    ``local_control`` figures with a time point come first, and only they feed the local-control criterion
    (``lc_value``) of the ranking; ties go to the longest follow-up, so the shortest follow-up can never win a
    ranking. Without a shared local-control figure, another endpoint shared by ≥ 2 options (HCC: 5-year overall
    survival after resection and RFA, SURF) is set side by side for the board and the patient sheet only —
    it does not enter the ranking.
    """
    ref = _shared_reference(options, ("local_control",))
    if ref is None:
        ref = _shared_reference(options, [e for e in ENDPOINTS if e != "local_control"])
    for o in options:
        figs = [f.to_json() for f in o.figures]
        chosen = None
        if ref is not None:
            chosen = next((f for f in o.figures if (f.endpoint, f.time_point_months) == ref and f.value_percent is not None),
                          None)
        if chosen is not None:
            o.lc_value = chosen.value_percent / 100.0 if chosen.endpoint == "local_control" else None  # type: ignore[operator]
            lc = chosen.to_json()
            lc.update({"comparable": True, "compared_on": {"endpoint": ref[0], "time_point_months": ref[1]},  # type: ignore[index]
                       "note": "compared with other options on the same endpoint and time point"
                       + ("" if chosen.endpoint == "local_control" else
                          f" ({chosen.endpoint.replace('_', ' ')}: shown to the board, not used as the local-control"
                          " criterion of the ranking)")})
        else:
            o.lc_value = None
            best = figs[0] if figs else None
            lc = dict(best) if best else {"value_percent": None, "endpoint": None, "time_point_months": None,
                                          "population": None, "evidence_level": None, "citation": None}
            why = ("no other option has a figure at the same endpoint and time point" if figs
                   else "no outcome figure in the knowledge base matches this option"
                   + (" (depends on the simulated margin/dose)" if o.plan is None and o.modality in ("rfa", "mwa", "sbrt")
                      else ""))
            lc.update({"comparable": False, "compared_on": None if ref is None else
                       {"endpoint": ref[0], "time_point_months": ref[1]}, "note": f"not compared: {why}"})
        lc["figures"] = figs
        o.local_control = lc


def rank_options(options: Sequence[Option], weights: Mapping[str, float]) -> list[Option]:
    """Assign ``rank`` (1 = best) to rankable options under ``weights``; returns them best first."""
    ranked = [o for o in options if o.rankable]
    for o in ranked:
        o.preference_score = weighted_sum(o.criteria(), weights)
        o.total = o.evidence_weight * o.preference_score + o.score
    ranked.sort(key=lambda o: (o.tier, STATUS_ORDER.get(o.target_status, 1), -(o.total or 0.0),
                               LESION_MODALITIES.index(o.modality)))
    for i, o in enumerate(ranked, start=1):
        o.rank = i
        tier_txt = o.tier_name + (f" — standard of care: {o.guideline}" if o.tier_name == "indicated" else "")
        if o.tier_name == "refer":
            tier_txt += " (not offered at this centre)"
        o.ranking_reason = (f"tier {tier_txt}; target {o.target_status}; total {o.total:.3f} = evidence weight "
                            f"{o.evidence_weight:g} ({o.evidence_level}) × preference-weighted criteria "
                            f"{o.preference_score:.3f} + clinical score {o.score:+.3f} (rules "
                            f"{', '.join(o.assessment.fired) or 'none'}"
                            + (f"; as a condition: {', '.join(o.assessment.conditional)}" if o.assessment.conditional
                               else "")
                            + ("; simulation " + o.verdict[0] if o.verdict else "")
                            + (f"; {o.assessment.unknown_adverse} unassessable adverse rule(s) × −{UNKNOWN_PENALTY}"
                               if o.assessment.unknown_adverse else "")
                            + (f"; access path not verified on the image × −{UNKNOWN_PENALTY}"
                               if o.target is not None and o.target.trajectory_unverified else "") + ")"
                            + (f"; conditions: {len(o.conditions)}" if o.conditions else ""))
    for o in options:
        if not o.rankable:
            o.rank = None
            o.preference_score = weighted_sum(o.criteria(), weights)
            o.total = None
            o.ranking_reason = "not ranked: contraindicated (" + ", ".join(
                r.rule_id for r in o.assessment.reasons + o.extra_reasons
                if r.effect.startswith("contraindicated")) + ")"
            if o.handoff is not None:
                o.ranking_reason = f"not ranked in the liver plan: handed to the {o.handoff}"
    return ranked


def option_json(o: Option) -> dict[str, Any]:
    """The plan.json form of one option."""
    a = o.assessment
    reasons = [r.to_json() for r in a.reasons + o.extra_reasons]
    sim = None
    if o.plan is not None:
        sim = o.plan.summary()
        sim.setdefault("applicators", o.plan.applicators)
    prior = None
    if o.verdict is not None:
        agree = not ((o.verdict[0] == "fails" and a.size_prior in (Eligibility.INDICATED, Eligibility.ELIGIBLE))
                     or (o.verdict[0] == "achieves" and a.size_prior not in (Eligibility.INDICATED, Eligibility.ELIGIBLE)))
        prior = {"size_prior": a.size_prior.value, "simulation_verdict": o.verdict[0], "simulation_text": o.verdict[1],
                 "agree": agree}
    p = o.profile
    return {
        "modality": o.modality,
        "name": p.name,
        "eligibility": o.eligibility.value,
        "rule_eligibility": a.eligibility.value,
        "rank": o.rank,
        "ranking": {"tier": o.tier if o.rankable else None, "basis": o.ranking_basis.value, "total": _r(o.total),
                    "preference_score": _r(o.preference_score), "clinical_score": _r(o.score),
                    "evidence_weight": o.evidence_weight, "reason": o.ranking_reason},
        "tier": o.tier_name,
        "standard_of_care": o.guideline,
        "standard_of_care_conditional": o.guideline_conditional,
        "evidence_level": o.evidence_level,
        "target_status": o.target_status,
        "target": o.target.to_json() if o.target is not None else None,
        "conditions": list(o.conditions),
        "offered_here": o.offered,
        "handoff": o.handoff,
        "local_control_basis": "figure" if o.lc_value is not None else "ordinal class (no comparable figure)",
        "reasons": reasons,
        # an unverified access path ([L]) is a fact the team must still check, like an unassessable rule
        "needs_review": a.needs_review or o.truncated or (o.target is not None and o.target.trajectory_unverified),
        "lesion_truncated_by_fov": o.truncated,
        "cannot_assess": [c.to_json() for c in a.cannot_assess],
        "parameters": {k: v for k, v in a.parameters.items()},
        "simulation": sim,
        "simulation_why": None if sim is not None else (o.simulation_why or "not simulated"),
        "prior_vs_simulation": prior,
        "local_control": o.local_control,
        "invasiveness": {"level": p.invasiveness, "route": p.route},
        "hospital_stay_days": p.hospital_stay_days,
        "recovery_days": p.recovery_days,
        "sessions": p.sessions,
        "main_risks": list(p.main_risks),
        "repeatability": {"level": p.repeatability, "text": p.repeatability_text},
        "profile_source": {"evidence_level": p.evidence_level, "citation": "; ".join(c.render() for c in p.citations)},
        "criteria": {k: _r(v) for k, v in o.criteria().items()},
    }


def _r(v: float | None) -> float | None:
    return None if v is None else round(float(v), 4)
