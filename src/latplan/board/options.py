"""Per-lesion options: every modality, assessed, simulated where a planner exists, ranked.

Ranking (visible in each option's ``ranking``):
1. contraindicated options are not ranked;
2. tier: options whose eligibility — counting unknown rules as if they fired (unknown is
   not safe) — is indicated/eligible come before relative contraindications;
3. within a tier, total = patient-weighted criteria sum (0–1, :mod:`latplan.board.preferences`)
   + clinical score (sum of fired rule score effects, +0.15 when indicated, ∓ simulation).

Where a simulation exists it decides coverage and margin: a failed simulation makes the
option at best a relative contraindication; a successful one overturns relative size
priors (``category: size`` rules). Both the prior and the verdict are shown.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from latplan.case.patient import Patient
from latplan.case.vocabulary import Eligibility
from latplan.errors import LatplanError, NotAvailableError, PlanningError
from latplan.knowledge.conditions import Truth
from latplan.knowledge.profiles import ModalityProfile, OutcomeFigure, figures_for
from latplan.knowledge.rules import RuleSet
from latplan.modalities import LESION_MODALITIES, MODULES
from latplan.modalities.base import Assessment, Reason, Site, assess_with_rules, build_context, worse
from latplan.modalities.simulate import PLANNERS, verdict
from latplan.planning.types import TreatmentPlan

from .preferences import criteria_values, weighted_sum

#: clinical-score bonus of an indicated option over an eligible one (rank tie-breaker scale)
INDICATED_BONUS = 0.15
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

    @property
    def rankable(self) -> bool:
        return self.eligibility != Eligibility.CONTRAINDICATED

    @property
    def tier(self) -> int:
        return 0 if self.ranking_basis in (Eligibility.INDICATED, Eligibility.ELIGIBLE) else 1

    def criteria(self) -> dict[str, float]:
        return criteria_values(self.profile, self.lc_value)


def _rule_reason(rules: RuleSet, rule_id: str, rule_text: str, effect: str, category: str) -> Reason:
    cite_rule = rules.rules.get(rule_id)
    fallback = rules.citations.get("latplan-estimate")
    citation = cite_rule.citation_text if cite_rule else (fallback.render() if fallback else "latplan team (no source)")
    level = cite_rule.evidence_level if cite_rule else "CEBM 5"
    return Reason(rule_id, rule_text, citation, level, effect, category)


def _simulate(option: Option, case: Any, measurements: Mapping[str, Any] | None, site: Site,
              progress: Callable[[str], None] | None) -> None:
    code = option.modality
    if code not in PLANNERS:
        option.simulation_why = f"no simulation engine for {code} in this release; assessed by rules only"
        return
    if case is None:
        option.simulation_why = "no image case given (rules-only assessment)"
        return
    if option.eligibility == Eligibility.CONTRAINDICATED:
        option.simulation_why = "not simulated: contraindicated by rule"
        return
    if progress:
        progress(f"{site.lesion_id}: simulating {code}")
    t0 = time.perf_counter()
    try:
        plan = MODULES[code].plan(site, case, measurements=measurements, parameters=option.assessment.parameters)
    except NotAvailableError as exc:
        option.simulation_why = str(exc)
        return
    except PlanningError as exc:
        limiting = getattr(exc, "limiting", None)
        option.simulation_why = f"planner could not produce a plan: {exc}" + (f" (limiting: {limiting})" if limiting else "")
        return
    except (LatplanError, TypeError, ValueError) as exc:
        option.simulation_why = f"planner failed: {type(exc).__name__}: {exc}"
        return
    finally:
        option.runtime_s = time.perf_counter() - t0
    option.plan = plan


def _apply_verdict(option: Option, rules: RuleSet) -> None:
    plan = option.plan
    if plan is None:
        return
    a = option.assessment
    target = a.parameters.get("target_margin_mm")
    v, text = verdict(option.modality, plan, target)
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
            basis = new
            for c in a.cannot_assess:
                head = c.would_be.split(";")[0]
                if head in ("relative_contraindication", "contraindicated"):
                    basis = worse(basis, Eligibility(head))
            option.ranking_basis = basis
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


def assess_options(site: Site, patient: Patient, rules: RuleSet,
                   profiles: Mapping[str, ModalityProfile]) -> tuple[dict[str, Any], list[Option]]:
    """Every modality for one lesion, assessed by the rules (no simulation yet); returns (context, options)."""
    ctx = build_context(site, patient)
    options: list[Option] = []
    for code in LESION_MODALITIES:
        a = assess_with_rules(code, site, patient, rules, context=ctx)
        score = (a.score + (INDICATED_BONUS if a.eligibility == Eligibility.INDICATED else 0.0)
                 - UNKNOWN_PENALTY * a.unknown_adverse)
        options.append(Option(code, site.lesion_id, a, profiles[code], a.eligibility, a.worst_case, score))
    return ctx, options


def simulate_options(jobs: Sequence[tuple[Option, Site, Mapping[str, Any] | None]], case: Any, rules: RuleSet, *,
                     simulate: bool | Collection[str] = True, workers: int = 1,
                     progress: Callable[[str], None] | None = None) -> None:
    """Run the planners for (option, site, lesion measurements) jobs, then judge each plan.

    ``simulate``: True (every modality with a planner), False, or the modality codes to simulate.
    ``workers`` > 1 runs planners in threads (the engines release the GIL in numpy/numba; planners
    must not share mutable state — the default is sequential).
    """
    wanted = None if simulate is True else (set() if simulate is False else set(simulate))
    todo = []
    for opt, site, meas in jobs:
        if wanted is not None and opt.modality not in wanted:
            opt.simulation_why = ("simulations switched off (simulate=False)" if simulate is False
                                  else f"not simulated in this run (simulate={sorted(wanted)})")
            continue
        todo.append((opt, site, meas))
    if workers > 1 and len(todo) > 1:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            list(pool.map(lambda job: _simulate(job[0], case, job[2], job[1], progress), todo))
    else:
        for opt, site, meas in todo:
            _simulate(opt, case, meas, site, progress)
    for opt, _site, _meas in todo:
        _apply_verdict(opt, rules)


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


def _compare_local_control(options: list[Option]) -> None:
    """Pick one (endpoint, time point) shared by most rankable options; others are 'not comparable'.

    Only ``local_control`` figures with a time point are comparable; ties go to the longest
    follow-up, so the shortest follow-up can never win a ranking.
    """
    counts: dict[tuple[str, float], int] = {}
    for o in options:
        if not o.rankable:
            continue
        keys = {(f.endpoint, f.time_point_months) for f in o.figures
                if f.endpoint == "local_control" and f.time_point_months is not None and f.value_percent is not None}
        for k in keys:
            counts[k] = counts.get(k, 0) + 1  # type: ignore[index]
    ref: tuple[str, float] | None = None
    if counts:
        ref = max(counts, key=lambda k: (counts[k], k[1]))
        if counts[ref] < 2:
            ref = None
    for o in options:
        figs = [f.to_json() for f in o.figures]
        chosen = None
        if ref is not None:
            chosen = next((f for f in o.figures if (f.endpoint, f.time_point_months) == ref and f.value_percent is not None),
                          None)
        if chosen is not None:
            o.lc_value = chosen.value_percent / 100.0  # type: ignore[operator]
            lc = chosen.to_json()
            lc.update({"comparable": True, "compared_on": {"endpoint": ref[0], "time_point_months": ref[1]},  # type: ignore[index]
                       "note": "compared with other options on the same endpoint and time point"})
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
        o.total = o.preference_score + o.score
    ranked.sort(key=lambda o: (o.tier, -(o.total or 0.0), LESION_MODALITIES.index(o.modality)))
    for i, o in enumerate(ranked, start=1):
        o.rank = i
        tier_txt = ("indicated/eligible" if o.tier == 0 else "relative contraindication")
        if o.ranking_basis != o.eligibility:
            tier_txt += (f" (ranked as {o.ranking_basis.value.replace('_', ' ')} until "
                         f"{', '.join(sorted({m for c in o.assessment.cannot_assess for m in c.missing}))} is known)")
        o.ranking_reason = (f"tier {tier_txt}; total {o.total:.3f} = preference-weighted criteria {o.preference_score:.3f}"
                            f" + clinical score {o.score:+.3f} (rules {', '.join(o.assessment.fired) or 'none'}"
                            + ("; simulation " + o.verdict[0] if o.verdict else "")
                            + (f"; {o.assessment.unknown_adverse} unassessable adverse rule(s) × −{UNKNOWN_PENALTY}"
                               if o.assessment.unknown_adverse else "") + ")")
    for o in options:
        if not o.rankable:
            o.rank = None
            o.preference_score = weighted_sum(o.criteria(), weights)
            o.total = None
            o.ranking_reason = "not ranked: contraindicated (" + ", ".join(
                r.rule_id for r in o.assessment.reasons + o.extra_reasons
                if r.effect.startswith("contraindicated")) + ")"
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
                    "reason": o.ranking_reason},
        "reasons": reasons,
        "needs_review": a.needs_review,
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
