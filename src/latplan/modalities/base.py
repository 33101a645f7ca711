"""One interface for every therapy: ``assess(site, patient, rules) -> Assessment``.

Why: eligibility must come only from the rule set (data with citations), never from
thresholds in code, and every modality must be judged the same way so that the board
can put them side by side. A rule whose input is unknown gives a ``cannot_assess`` entry
naming the missing input and flags the option for review; for ranking, such an option is
treated as if the unknown rule's worst effect applied (unknown is not safe).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from latplan.case.patient import Patient
from latplan.case.vocabulary import Eligibility, role_of
from latplan.errors import UnknownStructureError
from latplan.knowledge.conditions import Truth
from latplan.knowledge.features import INTRAHEPATIC_ROLES, lesion_features, patient_features
from latplan.knowledge.rules import Rule, RuleSet, load_rule_set

#: worst → best for combining contraindications; best → worst order for display
_SEVERITY = {Eligibility.INDICATED: 0, Eligibility.ELIGIBLE: 1, Eligibility.RELATIVE_CONTRAINDICATION: 2,
             Eligibility.CONTRAINDICATED: 3}
_NEGATIVE = (Eligibility.RELATIVE_CONTRAINDICATION, Eligibility.CONTRAINDICATED)

_DEFAULT_RULES: RuleSet | None = None


def default_rules() -> RuleSet:
    global _DEFAULT_RULES
    if _DEFAULT_RULES is None:
        _DEFAULT_RULES = load_rule_set()
    return _DEFAULT_RULES


def worse(a: Eligibility, b: Eligibility) -> Eligibility:
    return a if _SEVERITY[a] >= _SEVERITY[b] else b


@dataclass(frozen=True)
class Site:
    """One lesion as the rules see it: its measurement dict and the patient-level measurements."""

    lesion: Mapping[str, Any]
    patient_measurements: Mapping[str, Any] = field(default_factory=dict)
    all_lesions: tuple[Mapping[str, Any], ...] = ()

    @property
    def lesion_id(self) -> str:
        return str(self.lesion.get("id"))

    @classmethod
    def coerce(cls, site: Site | Mapping[str, Any]) -> Site:
        if isinstance(site, Site):
            return site
        return cls(lesion=site, all_lesions=(site,))


@dataclass
class Reason:
    rule_id: str
    text: str
    citation: str
    evidence_level: str
    effect: str
    category: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"rule_id": self.rule_id, "text": self.text, "citation": self.citation,
                "evidence_level": self.evidence_level, "effect": self.effect, "category": self.category}


@dataclass
class CannotAssess:
    rule_id: str
    text: str
    missing: list[str]
    citation: str
    would_be: str

    def to_json(self) -> dict[str, Any]:
        return {"rule_id": self.rule_id, "text": self.text, "missing": self.missing, "citation": self.citation,
                "would_be": self.would_be}


@dataclass
class Assessment:
    """Eligibility of one modality for one lesion, with every fired rule and every unknown."""

    modality: str
    lesion_id: str
    eligibility: Eligibility
    reasons: list[Reason]
    cannot_assess: list[CannotAssess]
    parameters: dict[str, Any]
    score: float                                  # sum of fired score adjustments (clinical prior)
    size_prior: Eligibility                       # what the size rules alone say
    worst_case: Eligibility                       # eligibility if every unknown rule fired (ranking basis)
    fired: list[str] = field(default_factory=list)
    overturnable: list[str] = field(default_factory=list)  # fired size rules a simulation may overturn
    unknown_adverse: int = 0                      # unknown rules whose effect would count against the option
    conditional: dict[str, str] = field(default_factory=dict)  # rule id → "standard of care only if confirmed (…)"

    @property
    def needs_review(self) -> bool:
        return bool(self.cannot_assess)


_LESION_GEOMETRY = ("lesion.max_diameter_mm", "lesion.axial_diameter_mm", "lesion.volume_ml", "lesion.segments",
                    "lesion.lobe", "lesion.in_liver")


def demotes(missing: str) -> bool:
    """True when an unknown input is intrahepatic anatomy or the lesion itself.

    Why: an unsegmented bile duct or hepatic vein may lie right at the lesion and nothing else in
    the data bounds its distance, so an option that such a rule could contraindicate is ranked as
    if it did. Organs outside the liver are bounded by the capsule distance (see
    :class:`~latplan.knowledge.conditions.AtLeast`) and missing clinical fields are a checklist item
    for the board: both flag the option for review and cost a small fixed penalty, but do not
    change its tier (otherwise missing paperwork would decide the ranking). For the same reason a
    standard-of-care rule marked ``on_unknown: conditional`` applies as a condition when only clinical
    fields are missing (:meth:`~latplan.knowledge.rules.Rule.conditional_on`).
    """
    if missing.startswith(("lesion.vessels[", "lesion.nearest_vessel")) or missing.startswith(_LESION_GEOMETRY):
        return True
    if missing.startswith("lesion.distance_mm."):
        name = missing.removeprefix("lesion.distance_mm.")
        try:
            return role_of(name) in INTRAHEPATIC_ROLES
        except UnknownStructureError:
            return True
    return False


def build_context(site: Site, patient: Patient) -> dict[str, Any]:
    lesions = site.all_lesions or (site.lesion,)
    return {"lesion": lesion_features(site.lesion),
            "patient": patient_features(patient, site.patient_measurements, lesions)}


def assess_with_rules(modality: str, site: Site | Mapping[str, Any], patient: Patient,
                      rules: RuleSet | None = None, *, context: Mapping[str, Any] | None = None) -> Assessment:
    """Evaluate every lesion/patient rule of ``rules`` that applies to ``modality``."""
    site = Site.coerce(site)
    rules = rules or default_rules()
    ctx = dict(context) if context is not None else build_context(site, patient)
    reasons: list[Reason] = []
    unknown: list[CannotAssess] = []
    params: dict[str, Any] = {}
    params_unknown: dict[str, Any] = {}
    score = 0.0
    negative: Eligibility | None = None
    positive: Eligibility | None = None
    size_prior = Eligibility.ELIGIBLE
    worst_case_neg: Eligibility | None = None
    fired: list[str] = []
    overturnable: list[str] = []
    unknown_adverse = 0
    conditional: dict[str, str] = {}
    applicable: list[Rule] = rules.for_modality(modality, "lesion") + rules.for_modality(modality, "patient")
    for rule in applicable:
        res = rule.condition.evaluate(ctx)
        eff = rule.effect
        if res.truth == Truth.TRUE:
            fired.append(rule.id)
            reasons.append(Reason(rule.id, rule.statement, rule.citation_text, rule.evidence_level, eff.describe(),
                                  rule.category))
            score += eff.score
            for k, v in eff.parameters.items():
                params[k] = max(params[k], v) if k in params and isinstance(v, (int, float)) else v
            if eff.eligibility in _NEGATIVE:
                negative = eff.eligibility if negative is None else worse(negative, eff.eligibility)
                if rule.category == "size":
                    size_prior = worse(size_prior, eff.eligibility)
                    if eff.eligibility == Eligibility.RELATIVE_CONTRAINDICATION:
                        overturnable.append(rule.id)
            elif eff.eligibility is not None:
                positive = eff.eligibility if positive is None else (
                    Eligibility.INDICATED if Eligibility.INDICATED in (positive, eff.eligibility) else positive)
        elif res.truth == Truth.UNKNOWN and rule.conditional_on(res.missing):
            # a guideline's standard of care unknown only through clinical fields: ranked as the guideline ranks
            # it, shown as a condition to confirm (knowledge/rules.py, on_unknown: conditional)
            unknown.append(CannotAssess(rule.id, f"cannot assess: {rule.statement}", res.missing, rule.citation_text,
                                        eff.describe()))
            conditional[rule.id] = rule.if_confirmed(res.missing)
            reasons.append(Reason(rule.id, rule.statement, rule.citation_text, rule.evidence_level,
                                  f"{eff.describe()} — {conditional[rule.id]}", rule.category))
            score += eff.score
            if eff.eligibility == Eligibility.INDICATED:
                positive = Eligibility.INDICATED
        elif res.truth == Truth.UNKNOWN and rule.on_unknown != "ignore":
            unknown.append(CannotAssess(rule.id, f"cannot assess: {rule.statement}", res.missing, rule.citation_text,
                                        eff.describe()))
            for k, v in eff.parameters.items():
                params_unknown[k] = v
            if eff.eligibility in _NEGATIVE or eff.score < 0:
                unknown_adverse += 1
            if eff.eligibility in _NEGATIVE and any(demotes(m) for m in res.missing):
                worst_case_neg = eff.eligibility if worst_case_neg is None else worse(worst_case_neg, eff.eligibility)
    # unknown parameter rules apply conservatively (e.g. RAS unknown → the larger margin)
    for k, v in params_unknown.items():
        if isinstance(v, (int, float)) and (k not in params or v > params[k]):
            params[k] = v
            params.setdefault("conservative_because_unknown", []).append(k)
    if negative is not None:
        elig = negative
    else:
        elig = positive or Eligibility.ELIGIBLE
    worst_case = elig if worst_case_neg is None else worse(elig, worst_case_neg)
    return Assessment(modality, site.lesion_id, elig, reasons, unknown, params, score, size_prior, worst_case,
                      fired, overturnable, unknown_adverse, conditional)
