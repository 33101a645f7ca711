"""Whole-patient strategies: combinations across lesions, sequences, regional and systemic.

Why: the board decides for the patient, not per lesion: lesion 1 by MWA + lesion 2 by
IBT; TACE (DEBIRI) first, then IBT of the residual tumour (both seed figures); systemic
first then local; two-stage resection. Each strategy's score starts from its steps'
option scores (the per-lesion ranking, patient-weighted) and adds the strategy rules that
fire on the patient's data (``knowledge/rules/core-strategy.yaml``) — never the case name.

Score of a strategy = mean over its lesion steps of (option total − 0.3 × tier)
+ Σ fired strategy-rule scores (− 0.05 per extra treatment step, the burden of a
sequence). Systemic therapy alone starts at :data:`SYSTEMIC_BASE`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from latplan.case.vocabulary import Eligibility
from latplan.knowledge.conditions import Truth
from latplan.knowledge.rules import RuleSet

from .options import Option

#: penalty of a relative-contraindication step inside a strategy
RELATIVE_STEP_PENALTY = 0.3
#: burden of each treatment step beyond the first
EXTRA_STEP_PENALTY = 0.05
#: starting score of systemic therapy alone (comparator); strategy rules move it
SYSTEMIC_BASE = 0.45
#: the second step of "systemic first, then local" is uncertain (response decides)
SYSTEMIC_FIRST_DELAY = 0.05

#: strategy kinds offered only when one of their strategy rules fires with a positive score
RULE_GATED_KINDS = frozenset({"tace_then_ablation"})

_EVIDENCE_ORDER = ["CEBM 1a", "CEBM 1b", "CEBM 1c", "CEBM 2a", "CEBM 2b", "CEBM 2c", "CEBM 3a", "CEBM 3b",
                   "CEBM 4", "CEBM 5"]


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

    def key(self) -> tuple:
        return tuple((s["order"], tuple(s["lesion_ids"]), s["modality"]) for s in self.steps)

    def to_json(self) -> dict[str, Any]:
        return {"rank": self.rank, "kind": self.kind, "title": self.title, "steps": self.steps,
                "rationale": " ".join(self.rationale), "evidence_level": self.evidence_level,
                "score": round(self.score, 4), "reasons": self.reasons, "cannot_assess": self.cannot_assess,
                "needs_review": bool(self.cannot_assess) or any(s.get("needs_review") for s in self.steps)}


def _value(o: Option) -> float:
    return (o.total or 0.0) - RELATIVE_STEP_PENALTY * o.tier


def _evidence(o: Option) -> str:
    """The evidence level of an option's strongest positive reason (indicated > eligible > toolbox)."""
    best = None
    for r in o.assessment.reasons:
        if r.effect.startswith("indicated"):
            return r.evidence_level
        if r.effect.startswith("eligible") and best is None:
            best = r.evidence_level
    return best or "CEBM 5"


def _weakest(levels: Sequence[str]) -> str:
    known = [lv for lv in levels if lv in _EVIDENCE_ORDER]
    return max(known, key=_EVIDENCE_ORDER.index) if known else (levels[0] if levels else "CEBM 5")


def _group_steps(choice: Mapping[str, Option], order_start: int = 1) -> list[dict[str, Any]]:
    by_mod: dict[str, list[str]] = {}
    for lid, o in choice.items():
        by_mod.setdefault(o.modality, []).append(lid)
    steps = []
    for i, (mod, lids) in enumerate(sorted(by_mod.items(), key=lambda kv: min(choice[x].profile.invasiveness for x in kv[1]))):
        steps.append({"order": order_start + i, "lesion_ids": sorted(lids), "modality": mod,
                      "needs_review": any(choice[x].assessment.needs_review for x in lids)})
    return steps


def build_strategies(options: Mapping[str, Sequence[Option]], rules: RuleSet, patient_ctx: Mapping[str, Any],
                     profiles: Mapping[str, Any]) -> list[Strategy]:
    """Candidate strategies from the ranked per-lesion options, scored and ranked."""
    all_ids = list(options)
    ranked = {lid: [o for o in sorted(opts, key=lambda o: o.rank or 999) if o.rank is not None] for lid, opts in options.items()}
    by_mod = {lid: {o.modality: o for o in opts} for lid, opts in options.items()}
    out: list[Strategy] = []
    # lesions without any rankable option (e.g. outside the liver) are left to systemic therapy
    lesion_ids = [lid for lid in all_ids if ranked[lid]]
    left_out = [lid for lid in all_ids if not ranked[lid]]
    if not all_ids:
        return out
    if not lesion_ids:
        out.append(Strategy("systemic", "Systemic therapy alone", [{"order": 1, "lesion_ids": sorted(all_ids),
                                                                    "modality": "systemic", "needs_review": False}],
                            SYSTEMIC_BASE, ["No lesion has a local option."], "CEBM 1a"))
        lesion_ids = []

    # 1. local: k-th best option per lesion (k = 1..3) — combinations across lesions
    for k in range(3 if lesion_ids else 0):
        if not all(ranked[lid] for lid in lesion_ids):
            break
        choice = {lid: ranked[lid][min(k, len(ranked[lid]) - 1)] for lid in lesion_ids}
        if any(choice[lid].modality in ("tace", "tare", "hai") for lid in lesion_ids):
            continue  # regional therapies appear as their own strategies
        steps = _group_steps(choice)
        mods = sorted({o.modality for o in choice.values()})
        kind = "local" if len(mods) == 1 else "combination"
        title = " + ".join(f"{s['modality'].upper()} of {', '.join(s['lesion_ids'])}" for s in steps)
        base = sum(_value(o) for o in choice.values()) / len(choice) - EXTRA_STEP_PENALTY * (len(steps) - 1)
        rationale = [f"{choice[lid].modality.upper()} is option #{choice[lid].rank} for {lid}." for lid in lesion_ids]
        out.append(Strategy(kind, title, steps, base, rationale, _weakest([_evidence(o) for o in choice.values()])))

    # 2. TACE (DEBIRI) → IBT of the residual tumour (seed Figures 1 and 2)
    if lesion_ids and all(by_mod[lid]["tace"].rankable and by_mod[lid]["ibt"].rankable for lid in lesion_ids):
        ibt = [by_mod[lid]["ibt"] for lid in lesion_ids]
        base = sum(_value(o) for o in ibt) / len(ibt) - EXTRA_STEP_PENALTY
        steps = [{"order": 1, "lesion_ids": sorted(lesion_ids), "modality": "tace",
                  "needs_review": any(by_mod[lid]["tace"].assessment.needs_review for lid in lesion_ids),
                  "note": "DEBIRI: devascularisation and lipiodol marking for navigation"},
                 {"order": 2, "lesion_ids": sorted(lesion_ids), "modality": "ibt",
                  "needs_review": any(o.assessment.needs_review for o in ibt), "note": "IBT of the residual tumour"}]
        out.append(Strategy("sequence_tace_ibt", "TACE (DEBIRI) first, then interstitial brachytherapy of the residual",
                            steps, base, ["Sequence of both seed case reports (Figures 1-2)."], "CEBM 4"))

    # 2b. TACE then thermal ablation (offered only where a strategy rule supports it, e.g. HCC 3-7 cm)
    thermal = {lid: next((o for o in ranked[lid] if o.modality in ("mwa", "rfa", "cryo")), None) for lid in lesion_ids}
    if lesion_ids and all(by_mod[lid]["tace"].rankable and thermal[lid] is not None for lid in lesion_ids):
        abl = [thermal[lid] for lid in lesion_ids]
        base = sum(_value(o) for o in abl) / len(abl) - EXTRA_STEP_PENALTY  # type: ignore[arg-type]
        steps = [{"order": 1, "lesion_ids": sorted(lesion_ids), "modality": "tace",
                  "needs_review": any(by_mod[lid]["tace"].assessment.needs_review for lid in lesion_ids)}]
        steps += _group_steps({lid: thermal[lid] for lid in lesion_ids}, order_start=2)  # type: ignore[misc]
        out.append(Strategy("tace_then_ablation", "TACE first, then thermal ablation", steps, base,
                            ["TACE reduces the blood supply, then ablation treats the lesion."], "CEBM 2a"))

    # 3. regional therapies treating all liver lesions at once
    for mod in ("tace", "tare", "hai"):
        opts = [by_mod[lid][mod] for lid in lesion_ids]
        if opts and all(o.rankable for o in opts):
            base = sum(_value(o) for o in opts) / len(opts)
            steps = [{"order": 1, "lesion_ids": sorted(lesion_ids), "modality": mod,
                      "needs_review": any(o.assessment.needs_review for o in opts)}]
            out.append(Strategy("regional", f"{profiles[mod].name} of all liver lesions", steps, base,
                                [f"{profiles[mod].name} treats every liver lesion in one approach."],
                                _weakest([_evidence(o) for o in opts])))

    # 4. resection of all lesions
    res = [by_mod[lid]["resection"] for lid in lesion_ids]
    if res and all(o.rankable for o in res):
        base = sum(_value(o) for o in res) / len(res)
        steps = [{"order": 1, "lesion_ids": sorted(lesion_ids), "modality": "resection",
                  "needs_review": any(o.assessment.needs_review for o in res)}]
        flr = patient_ctx.get("flr_percent")
        flr_txt = (f"Future liver remnant after removing all lesions: {flr:.0f} % of the liver." if flr is not None
                   else "Future liver remnant unknown (segments not labelled): resection needs volumetry.")
        out.append(Strategy("resection", "Resection of all liver lesions", steps, base,
                            ["Resection has the lowest local recurrence (seed).", flr_txt],
                            _weakest([_evidence(o) for o in res])))
    elif len(lesion_ids) >= 2 and all(o.eligibility != Eligibility.CONTRAINDICATED or
                                      any(r.rule_id.startswith("RES-FLR") for r in o.assessment.reasons) for o in res):
        # remnant too small for one operation: two-stage hepatectomy
        half = sorted(lesion_ids)
        steps = [{"order": 1, "lesion_ids": half[: len(half) // 2], "modality": "resection", "needs_review": True},
                 {"order": 2, "lesion_ids": half[len(half) // 2:], "modality": "resection", "needs_review": True,
                  "note": "after portal vein embolisation / liver regeneration"}]
        base = sum((o.total or 0.0) for o in res) / len(res) - RELATIVE_STEP_PENALTY - EXTRA_STEP_PENALTY
        out.append(Strategy("two_stage", "Two-stage hepatectomy", steps, base,
                            ["The remnant is too small for one operation."], "CEBM 3a"))

    # 5. systemic first, then local therapy of residual lesions
    if lesion_ids:
        choice = {lid: next((o for o in ranked[lid] if o.modality not in ("tace", "tare", "hai")), ranked[lid][0])
                  for lid in lesion_ids}
        steps = [{"order": 1, "lesion_ids": sorted(all_ids), "modality": "systemic", "needs_review": False}]
        steps += _group_steps(choice, order_start=2)
        base = sum(_value(o) for o in choice.values()) / len(choice) - SYSTEMIC_FIRST_DELAY - EXTRA_STEP_PENALTY * (len(steps) - 1)
        out.append(Strategy("systemic_then_local", "Systemic therapy first, then local therapy after re-staging", steps,
                            base, ["Systemic therapy first; local therapy of residual disease after re-staging."],
                            "CEBM 5"))

    # 6. systemic therapy alone (comparator / context)
    if lesion_ids:
        out.append(Strategy("systemic", "Systemic therapy alone", [{"order": 1, "lesion_ids": sorted(all_ids),
                                                                    "modality": "systemic", "needs_review": False}],
                            SYSTEMIC_BASE, ["Systemic therapy is the comparator of every local strategy."], "CEBM 1a"))
    if left_out:
        note = (f"{', '.join(left_out)}: no local option (every modality contraindicated, e.g. outside the liver); "
                "covered by systemic therapy or re-assessment.")
        for st in out:
            if st.kind not in ("systemic", "systemic_then_local"):
                st.rationale.append(note)

    # strategy rules
    ctx = {"patient": patient_ctx}
    kept: list[Strategy] = []
    seen: set[tuple] = set()
    for s in out:
        if s.key() in seen:
            continue
        seen.add(s.key())
        score = s.base_score
        for rule in rules.for_strategy(s.kind):
            res = rule.condition.evaluate(ctx)
            if res.truth == Truth.TRUE:
                score += rule.effect.score
                s.reasons.append({"rule_id": rule.id, "text": rule.statement, "citation": rule.citation_text,
                                  "evidence_level": rule.evidence_level, "effect": rule.effect.describe()})
                s.rationale.append(rule.statement)
                if rule.effect.eligibility == Eligibility.CONTRAINDICATED:
                    s.excluded = rule.id
                if rule.effect.score > 0 and rule.evidence_level in _EVIDENCE_ORDER and s.kind in ("regional", "systemic"):
                    s.evidence_level = min(s.evidence_level, rule.evidence_level, key=_EVIDENCE_ORDER.index) \
                        if s.evidence_level in _EVIDENCE_ORDER else rule.evidence_level
            elif res.truth == Truth.UNKNOWN and rule.on_unknown == "review":
                s.cannot_assess.append({"rule_id": rule.id, "text": f"cannot assess: {rule.statement}",
                                        "missing": res.missing, "citation": rule.citation_text})
        s.score = score
        if s.kind in RULE_GATED_KINDS and not any(r["effect"].startswith("score +") for r in s.reasons):
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
