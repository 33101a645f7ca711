"""Whole-patient strategies: every step scored, each step with its own contraindications.

Why: the board decides for the patient, not per lesion. A strategy is a sequence of steps
(TACE → IBT; systemic → re-board; resection + ablation; two-stage hepatectomy with portal
vein embolisation ...). Each lesion step carries the per-lesion option it uses, so its tier,
target status and contraindications count; a sequence is scored on *all* its steps.

Score of a strategy = mean over its steps of the step value + Σ fired strategy-rule scores
(``knowledge/rules/core-strategy.yaml``) − :data:`EXTRA_STEP_PENALTY` per step beyond the
first. A lesion step's value is the mean over its lesions of (option total + tier value:
indicated +0.3, eligible 0, relative −0.3); a systemic/supportive step starts at
:data:`SYSTEMIC_BASE` / :data:`BSC_BASE` and the strategy rules move it. Strategies use only
modalities the centre offers (``knowledge/centre.yaml``); a strategy that needs another is
kept with a "refer" note. Step modalities are :data:`STEP_MODALITIES`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from latplan.case.vocabulary import Eligibility
from latplan.knowledge.conditions import Truth
from latplan.knowledge.profiles import ModalityProfile
from latplan.knowledge.rules import RuleSet
from latplan.modalities.steps import StepModality

from .options import Option
from .systemic import systemic_context

#: value of a lesion step by the option's tier
TIER_VALUE = {"indicated": 0.3, "eligible": 0.0, "relative": -0.3, "refer": -0.3}
#: kept for callers of round 1: penalty of a relative-contraindication step
RELATIVE_STEP_PENALTY = 0.3
#: burden of each treatment step beyond the first
EXTRA_STEP_PENALTY = 0.05
#: starting value of a systemic step; strategy rules move it
SYSTEMIC_BASE = 0.45
#: starting value of best supportive care (comparator; raised by rules for BCLC D / ECOG >= 3)
BSC_BASE = 0.1
#: starting value of a transplant referral (raised by the Milan / up-to-7 rules)
TRANSPLANT_BASE = 0.3
#: the local step after systemic therapy depends on the response
SYSTEMIC_FIRST_DELAY = 0.05
REGIONAL = ("tace", "tare", "hai")
ABLATIVE_LOCAL = ("rfa", "mwa", "cryo", "hifu", "ect", "ire", "ibt", "sbrt")
#: modalities a strategy step may name (hcore's StepModality: lesion modalities + whole-patient steps)
STEP_MODALITIES = tuple(m.value for m in StepModality)

#: strategy kinds offered only when one of their strategy rules fires with a positive score
RULE_GATED_KINDS = frozenset({"tace_then_ablation", "transplant", "best_supportive_care"})

_EVIDENCE_ORDER = ["CEBM 1a", "CEBM 1b", "CEBM 1c", "CEBM 2a", "CEBM 2b", "CEBM 2c", "CEBM 3a", "CEBM 3b",
                   "CEBM 4", "CEBM 5"]
_GRADE_AS_CEBM = {"GRADE high": "CEBM 1b", "GRADE moderate": "CEBM 2b", "GRADE low": "CEBM 3b",
                  "GRADE very low": "CEBM 5"}


@dataclass
class Strategy:
    kind: str
    title: str
    steps: list[dict[str, Any]]
    base_score: float
    rationale: list[str]
    evidence_level: str
    reasons: list[dict[str, Any]] = field(default_factory=list)
    cannot_assess: list[dict[str, Any]] = field(default_factory=list)
    score: float = 0.0
    rank: int | None = None
    excluded: str | None = None
    refer: list[str] = field(default_factory=list)

    def key(self) -> tuple:
        return tuple((s["order"], tuple(s["lesion_ids"]), s["modality"]) for s in self.steps)

    @property
    def tier(self) -> str:
        """Worst tier of the options its lesion steps use (a strategy is as good as its weakest step)."""
        tiers = [t for st in self.steps for t in (st.get("tiers") or {}).values()]
        order = list(TIER_VALUE)
        return max(tiers, key=lambda t: order.index(t) if t in order else len(order)) if tiers else "eligible"

    def to_json(self) -> dict[str, Any]:
        return {"rank": self.rank, "kind": self.kind, "title": self.title, "tier": self.tier, "steps": self.steps,
                "rationale": " ".join(self.rationale), "evidence_level": self.evidence_level,
                "score": round(self.score, 4), "reasons": self.reasons, "cannot_assess": self.cannot_assess,
                "needs_review": bool(self.cannot_assess) or any(s.get("needs_review") for s in self.steps),
                "refer": self.refer}


def _value(o: Option) -> float:
    return (o.total or 0.0) + TIER_VALUE.get(o.tier_name, -0.3)


def _level(lv: str) -> str:
    return _GRADE_AS_CEBM.get(lv, lv)


def _weakest(levels: Sequence[str]) -> str:
    known = [_level(lv) for lv in levels if _level(lv) in _EVIDENCE_ORDER]
    return max(known, key=_EVIDENCE_ORDER.index) if known else (levels[0] if levels else "CEBM 5")


def _step(order: int, lids: Sequence[str], modality: str, opts: Sequence[Option] = (), note: str | None = None,
          value: float | None = None) -> dict[str, Any]:
    st: dict[str, Any] = {"order": order, "lesion_ids": sorted(lids), "modality": modality,
                          "needs_review": any(o.assessment.needs_review for o in opts)}
    if opts:
        st["value"] = round(sum(_value(o) for o in opts) / len(opts), 4)
        st["tiers"] = {o.lesion_id: o.tier_name for o in opts}
        st["target_status"] = {o.lesion_id: o.target_status for o in opts}
        contra = sorted({r.rule_id for o in opts for r in o.assessment.reasons + o.extra_reasons
                         if r.effect.startswith(("relative_contraindication", "contraindicated"))})
        if contra:
            st["contraindications"] = contra
        conds = sorted({c for o in opts for c in o.conditions})
        if conds:
            st["conditions"] = conds
    elif value is not None:
        st["value"] = round(value, 4)
    if note:
        st["note"] = note
    return st


def _group_steps(choice: Mapping[str, Option], order_start: int = 1) -> list[dict[str, Any]]:
    by_mod: dict[str, list[str]] = {}
    for lid, o in choice.items():
        by_mod.setdefault(o.modality, []).append(lid)
    steps = []
    for i, (mod, lids) in enumerate(sorted(by_mod.items(), key=lambda kv: min(choice[x].profile.invasiveness for x in kv[1]))):
        steps.append(_step(order_start + i, lids, mod, [choice[x] for x in lids]))
    return steps


def _score(steps: Sequence[Mapping[str, Any]]) -> float:
    vals = [float(s["value"]) for s in steps if "value" in s]
    return (sum(vals) / len(vals) if vals else 0.0) - EXTRA_STEP_PENALTY * (len(steps) - 1)


def _title(steps: Sequence[Mapping[str, Any]]) -> str:
    return " + ".join(f"{s['modality'].upper()} of {', '.join(s['lesion_ids'])}" for s in steps)


def _usable(o: Option | None) -> bool:
    return o is not None and o.rankable and o.offered


def _best(ranked: Sequence[Option], allowed: Sequence[str]) -> Option | None:
    return next((o for o in ranked if o.modality in allowed and o.offered), None)


def build_strategies(options: Mapping[str, Sequence[Option]], rules: RuleSet, patient_ctx: Mapping[str, Any],
                     profiles: Mapping[str, Any]) -> list[Strategy]:
    """Candidate strategies from the ranked per-lesion options, scored and ranked."""
    all_ids = list(options)
    ranked = {lid: [o for o in sorted(opts, key=lambda o: o.rank or 999) if o.rank is not None] for lid, opts in options.items()}
    by_mod = {lid: {o.modality: o for o in opts} for lid, opts in options.items()}
    handoff = {lid: next((o.handoff for o in opts if o.handoff), None) for lid, opts in options.items()}
    lesion_ids = [lid for lid in all_ids if ranked[lid] and handoff[lid] is None]
    left_out = [lid for lid in all_ids if lid not in lesion_ids]
    if not all_ids:
        return []
    out: list[Strategy] = []
    if lesion_ids:
        # named strategies first: a local combination with the same steps is then dropped as a duplicate
        out += _ablate_all(lesion_ids, ranked)
        out += _resection_plans(lesion_ids, ranked, by_mod, patient_ctx)
        out += _local(lesion_ids, ranked)
        primary = patient_ctx.get("primary")
        out += _tace_sequences(lesion_ids, ranked, by_mod, profiles["tace"], primary)
        out += _regional(lesion_ids, by_mod, profiles, primary)
        out += _systemic_then_local(lesion_ids, all_ids, ranked)
    out += _whole_patient(all_ids, patient_ctx, bool(lesion_ids))
    _hand_off(out, left_out, handoff)
    return _apply_rules(out, rules, patient_ctx)


def _local(lesion_ids: Sequence[str], ranked: Mapping[str, Sequence[Option]]) -> list[Strategy]:
    """k-th best non-regional option per lesion (k = 1..3): combinations across lesions."""
    out: list[Strategy] = []
    for k in range(3):
        choice: dict[str, Option] = {}
        for lid in lesion_ids:
            local = [o for o in ranked[lid] if o.modality not in REGIONAL and o.offered]
            if not local:
                return out
            choice[lid] = local[min(k, len(local) - 1)]
        steps = _group_steps(choice)
        kind = "local" if len(steps) == 1 else "combination"
        rationale = [f"{choice[lid].modality.upper()} is option #{choice[lid].rank} for {lid} "
                     f"({choice[lid].tier_name}, target {choice[lid].target_status})." for lid in lesion_ids]
        out.append(Strategy(kind, _title(steps), steps, _score(steps), rationale,
                            _weakest([choice[lid].evidence_level for lid in lesion_ids])))
    return out


def _ablate_all(lesion_ids: Sequence[str], ranked: Mapping[str, Sequence[Option]]) -> list[Strategy]:
    """Every lesion by its best ablative option (always built when each lesion has one)."""
    choice = {lid: _best(ranked[lid], ABLATIVE_LOCAL) for lid in lesion_ids}
    if not all(choice.values()):
        return []
    ch = {k: v for k, v in choice.items() if v is not None}
    steps = _group_steps(ch)
    return [Strategy("ablate_all", "Ablate all liver lesions: " + _title(steps), steps, _score(steps),
                     [f"All-local strategy: every liver lesion treated by ablation or radioablation "
                      f"({len(ch)} lesion(s))."], _weakest([o.evidence_level for o in ch.values()]))]


def _resection_plans(lesion_ids: Sequence[str], ranked: Mapping[str, Sequence[Option]],
                     by_mod: Mapping[str, Mapping[str, Option]], pctx: Mapping[str, Any]) -> list[Strategy]:
    out: list[Strategy] = []
    res = {lid: by_mod[lid]["resection"] for lid in lesion_ids}
    flr = pctx.get("resection_flr_percent")
    flr_txt = (f"Remnant after the planned resection ({pctx.get('resection_plan')}): {flr:.0f} % of the liver."
               if flr is not None else "Remnant unknown (liver volume or segments missing): resection needs volumetry.")
    if all(_usable(o) for o in res.values()):
        steps = [_step(1, lesion_ids, "resection", list(res.values()))]
        out.append(Strategy("resection", "Resection of all liver lesions", steps, _score(steps),
                            ["Resection has the lowest local recurrence (seed).", flr_txt],
                            _weakest([o.evidence_level for o in res.values()])))
    # parenchyma-sparing resection of the lesions resection suits best + ablation of the rest
    if len(lesion_ids) >= 2:
        abl = {lid: _best(ranked[lid], ABLATIVE_LOCAL) for lid in lesion_ids}
        resect = [lid for lid in lesion_ids if _usable(res[lid]) and _resection_suits_better(res[lid], abl[lid])]
        if not resect:
            cands = [lid for lid in lesion_ids if _usable(res[lid])]
            resect = [max(cands, key=lambda x: (-res[x].tier, res[x].diameter_mm or 0.0))] if cands else []
        ablate = [lid for lid in lesion_ids if lid not in resect]
        if resect and ablate and all(abl[lid] is not None for lid in ablate):
            steps = [_step(1, resect, "resection", [res[x] for x in resect],
                           note="parenchyma-sparing resection, 1 cm margin")]
            steps += _group_steps({lid: abl[lid] for lid in ablate}, order_start=2)  # type: ignore[misc]
            out.append(Strategy("ablate_and_resect", "Parenchyma-sparing resection + ablation: " + _title(steps), steps,
                                _score(steps) + EXTRA_STEP_PENALTY * (len(steps) - 1) * 0.5,
                                ["Resection and ablation combined in one session spare parenchyma (CLOCC arm, seed).",
                                 flr_txt], _weakest([o.evidence_level for o in [res[x] for x in resect]])))
    out += _two_stage(lesion_ids, res, pctx)
    return out


def _resection_suits_better(res: Option, abl: Option | None) -> bool:
    return abl is None or abl.target_status in ("misses", "simulation_failed") or abl.tier > res.tier


def _two_stage(lesion_ids: Sequence[str], res: Mapping[str, Option], pctx: Mapping[str, Any]) -> list[Strategy]:
    """Two-stage hepatectomy by hemi-liver: clear the future remnant's side, PVE, then hemihepatectomy."""
    if len(lesion_ids) < 2 or pctx.get("lesions_one_lobe") is not False or pctx.get("cirrhosis") is not False:
        return []
    if not all(o.rankable or any(r.rule_id.startswith("RES-FLR") for r in o.assessment.reasons) for o in res.values()):
        return []
    lobes: dict[str, list[str]] = {"left": [], "right": []}
    for lid in lesion_ids:
        lobe = _lobe(res[lid])
        if lobe not in lobes:
            return []
        lobes[lobe].append(lid)
    if not lobes["left"] or not lobes["right"]:
        return []
    steps = [_step(1, lobes["left"], "resection", [res[x] for x in lobes["left"]],
                   note="stage 1: clear the future remnant (left hemi-liver) by parenchyma-sparing resection"),
             _step(2, lobes["right"], StepModality.PORTAL_VEIN_EMBOLISATION.value, value=0.0, note="right portal vein embolisation; remnant regrowth 4-6 weeks"),
             _step(3, lobes["right"], "resection", [res[x] for x in lobes["right"]],
                   note="stage 2: right hemihepatectomy once the remnant is adequate")]
    base = sum(float(s["value"]) for s in (steps[0], steps[2])) / 2 - 2 * EXTRA_STEP_PENALTY
    return [Strategy("two_stage", "Two-stage hepatectomy with portal vein embolisation", steps, base,
                     ["Bilobar disease: stage 1 clears the left hemi-liver, portal vein embolisation grows it, "
                      "stage 2 removes the right hemi-liver (remnant computed after the planned resection)."],
                     "CEBM 3a")]


def _lobe(o: Option) -> str | None:
    return o.lobe


#: rule categories that judge a procedure's safety (kept for adjunct TACE); the others judge TACE as
#: regional therapy of liver-dominant disease and do not apply to its adjunct use
SAFETY_CATEGORIES = frozenset({"function", "history", "patient", "proximity", "anatomy", "simulation"})
_SCORE = re.compile(r"score ([+-]?\d+(?:\.\d+)?)")


def _adjunct_step(order: int, lesion_ids: Sequence[str], tace: Sequence[Option], note: str) -> dict[str, Any]:
    """TACE as an adjunct (devascularisation, Lipiodol marking; seed Figure 1) is its own indication: only
    its safety rules count (biliary history, liver function, renal function, portal vein), not the rules on
    regional therapy of liver-dominant disease."""
    tiers: dict[str, str] = {}
    values = []
    for o in tace:
        elig = Eligibility.ELIGIBLE
        score = 0.0
        for r in o.assessment.reasons + o.extra_reasons:
            if r.category not in SAFETY_CATEGORIES:
                continue
            head = r.effect.split(";")[0]
            if head in ("relative_contraindication", "contraindicated"):
                elig = Eligibility(head) if head == "contraindicated" or elig != Eligibility.CONTRAINDICATED else elig
            m = _SCORE.search(r.effect)
            if m:
                score += float(m.group(1))
        tier = {Eligibility.ELIGIBLE: "eligible", Eligibility.RELATIVE_CONTRAINDICATION: "relative"}.get(elig, "relative")
        tiers[o.lesion_id] = tier
        values.append(o.evidence_weight * (o.preference_score or 0.0) + score + TIER_VALUE[tier])
    st = _step(order, lesion_ids, "tace", tace, note=note)
    st["tiers"] = tiers
    st["value"] = round(sum(values) / len(values), 4)
    st["indication"] = "adjunct (devascularisation / Lipiodol marking before a second local therapy)"
    return st


def _tace_sequences(lesion_ids: Sequence[str], ranked: Mapping[str, Sequence[Option]],
                    by_mod: Mapping[str, Mapping[str, Option]], tace_profile: ModalityProfile, primary: str | None) -> list[Strategy]:
    """TACE → IBT and TACE → ablation, naming the primary's TACE drug where the profile data give one."""
    out = []
    regimen, note = tace_profile.regimen(primary), tace_profile.regimen_note(primary)
    label = f"TACE ({regimen[0]})" if regimen else "TACE"
    drug = f"; {note}" if note else ""
    tace = [by_mod[lid]["tace"] for lid in lesion_ids]
    ibt = [by_mod[lid]["ibt"] for lid in lesion_ids]
    if all(o.rankable and o.offered for o in tace) and all(_usable(o) for o in ibt):
        steps = [_adjunct_step(1, lesion_ids, tace, note=f"adjunct {label}: devascularisation and Lipiodol "
                                                         f"marking of a lesion hard to see or to reach{drug}"),
                 _step(2, lesion_ids, "ibt", ibt, note="IBT of the residual tumour")]
        out.append(Strategy("sequence_tace_ibt", f"{label} first, then interstitial brachytherapy of the residual",
                            steps, _score(steps), ["Sequence of both seed case reports (Figures 1-2); scored on both "
                                                   "steps, each with its own contraindications."], "CEBM 4"))
    thermal = {lid: _best(ranked[lid], ("mwa", "rfa", "cryo")) for lid in lesion_ids}
    if all(_usable(o) for o in tace) and all(thermal.values()):
        steps = [_adjunct_step(1, lesion_ids, tace, note=f"{label} before ablation: devascularisation{drug}")]
        steps += _group_steps({lid: o for lid, o in thermal.items() if o is not None}, order_start=2)
        out.append(Strategy("tace_then_ablation", "TACE first, then thermal ablation", steps, _score(steps),
                            ["TACE reduces the blood supply, then ablation treats the lesion."], "CEBM 2a"))
    return out


def _regional(lesion_ids: Sequence[str], by_mod: Mapping[str, Mapping[str, Option]],
              profiles: Mapping[str, Any], primary: str | None) -> list[Strategy]:
    """One regional strategy per arterial modality; its title names the primary's drug where the data give one."""
    out = []
    for mod in REGIONAL:
        opts = [by_mod[lid][mod] for lid in lesion_ids]
        if opts and all(_usable(o) for o in opts):
            steps = [_step(1, lesion_ids, mod, opts, note=profiles[mod].regimen_note(primary))]
            out.append(Strategy("regional", f"{profiles[mod].titled(primary)} of all liver lesions", steps,
                                _score(steps), [f"{profiles[mod].name} treats every liver lesion in one approach."],
                                _weakest([o.evidence_level for o in opts])))
    return out


def _systemic_then_local(lesion_ids: Sequence[str], all_ids: Sequence[str],
                         ranked: Mapping[str, Sequence[Option]]) -> list[Strategy]:
    choice = {lid: next((o for o in ranked[lid] if o.modality not in REGIONAL and o.offered), ranked[lid][0])
              for lid in lesion_ids}
    steps = [_step(1, all_ids, "systemic", value=SYSTEMIC_BASE)]
    steps += _group_steps(choice, order_start=2)
    local = _score(steps[1:]) + EXTRA_STEP_PENALTY * (len(steps) - 2)
    base = local - SYSTEMIC_FIRST_DELAY - EXTRA_STEP_PENALTY * (len(steps) - 1)
    return [Strategy("systemic_then_local", "Systemic therapy first, then local therapy after re-staging", steps,
                     base, ["Systemic therapy first; local therapy of residual disease after re-staging."], "CEBM 5")]


def _whole_patient(all_ids: Sequence[str], pctx: Mapping[str, Any], has_local: bool) -> list[Strategy]:
    sys_note = systemic_context(pctx)
    out = [Strategy("systemic", "Systemic therapy alone", [_step(1, all_ids, "systemic", value=SYSTEMIC_BASE,
                                                                   note=sys_note.text)],
                    SYSTEMIC_BASE, ["Systemic therapy is the comparator of every local strategy.", sys_note.text],
                    sys_note.evidence_level, reasons=list(sys_note.reasons))]
    if pctx.get("primary") == "colorectal" and has_local:
        steps = [_step(1, all_ids, StepModality.CONVERSION_CHEMOTHERAPY.value, value=SYSTEMIC_BASE,
                       note=sys_note.text + " Re-stage after 2-4 months and re-board for resection / ablation.")]
        out.append(Strategy("conversion", "Conversion chemotherapy, then re-board for local therapy", steps,
                            SYSTEMIC_BASE - EXTRA_STEP_PENALTY, ["Initially unresectable or borderline disease: "
                                                                 "chemotherapy to convert, then local therapy."],
                            "CEBM 2a"))
    out.append(Strategy("best_supportive_care", "Best supportive care", [_step(1, all_ids, StepModality.BEST_SUPPORTIVE_CARE.value,
                                                                               value=BSC_BASE)],
                        BSC_BASE, ["Symptom control without tumour-directed therapy."], "CEBM 2a"))
    if pctx.get("primary") == "hcc":
        out.append(Strategy("transplant", "Referral for liver transplantation assessment",
                            [_step(1, all_ids, StepModality.TRANSPLANT_REFERRAL.value, value=TRANSPLANT_BASE,
                                   note="bridging therapy (ablation / TACE) while listed")],
                            TRANSPLANT_BASE, ["HCC within transplant criteria: transplantation treats tumour and "
                                              "cirrhosis."], "CEBM 2a"))
    return out


def _hand_off(out: list[Strategy], left_out: Sequence[str], handoff: Mapping[str, str | None]) -> None:
    if not left_out:
        return
    for st in out:
        if st.kind in ("systemic", "best_supportive_care"):
            continue
        notes = []
        for lid in left_out:
            team = handoff.get(lid)
            notes.append(f"{lid}: handed to the {team}." if team else
                         f"{lid}: no local liver option; covered by systemic therapy or re-assessment.")
            if team:
                st.steps.append({"order": len(st.steps) + 1, "lesion_ids": [lid], "modality": StepModality.REFER.value,
                                 "needs_review": False, "note": f"handed to the {team}"})
        st.rationale.extend(notes)


def _apply_rules(out: list[Strategy], rules: RuleSet, patient_ctx: Mapping[str, Any]) -> list[Strategy]:
    kept: list[Strategy] = []
    seen: set[tuple] = set()
    for s in out:
        if s.key() in seen:
            continue
        seen.add(s.key())
        score = s.base_score
        # a strategy rule reads the patient and the strategy it scores (e.g. "TACE first line" lifts TACE only)
        ctx = {"patient": patient_ctx,
               "strategy": {"kind": s.kind, "modalities": [str(st.get("modality")) for st in s.steps]}}
        for rule in rules.for_strategy(s.kind):
            res = rule.condition.evaluate(ctx)
            if res.truth == Truth.TRUE:
                score += rule.effect.score
                s.reasons.append({"rule_id": rule.id, "text": rule.statement, "citation": rule.citation_text,
                                  "evidence_level": rule.evidence_level, "effect": rule.effect.describe()})
                s.rationale.append(rule.statement)
                if rule.effect.eligibility == Eligibility.CONTRAINDICATED:
                    s.excluded = rule.id
                if rule.effect.score > 0 and _level(rule.evidence_level) in _EVIDENCE_ORDER and \
                        s.kind in ("regional", "systemic", "transplant", "best_supportive_care", "conversion"):
                    s.evidence_level = min(_level(s.evidence_level), _level(rule.evidence_level),
                                           key=_EVIDENCE_ORDER.index) if _level(s.evidence_level) in _EVIDENCE_ORDER \
                        else _level(rule.evidence_level)
            elif res.truth == Truth.UNKNOWN and rule.on_unknown != "ignore":
                s.cannot_assess.append({"rule_id": rule.id, "text": f"cannot assess: {rule.statement}",
                                        "missing": res.missing, "citation": rule.citation_text})
                if rule.conditional_on(res.missing):  # standard of care, unknown through clinical fields only
                    words = rule.if_confirmed(res.missing)
                    score += rule.effect.score
                    s.reasons.append({"rule_id": rule.id, "text": rule.statement, "citation": rule.citation_text,
                                      "evidence_level": rule.evidence_level,
                                      "effect": f"{rule.effect.describe()} — {words}", "conditional": True})
                    s.rationale.append(f"{rule.statement} ({words}.)")
        s.score = score
        if s.kind in RULE_GATED_KINDS and not any(r["effect"].startswith("score +") and not r.get("conditional")
                                                 for r in s.reasons):
            continue  # offered only where the evidence base supports it
        if s.excluded is None:
            kept.append(s)
    kept.sort(key=lambda s: -s.score)
    rank = 0
    prev: float | None = None
    for i, s in enumerate(kept, start=1):
        if prev is None or abs(s.score - prev) > 1e-9:
            rank = i
        s.rank = rank
        prev = s.score
    return kept
