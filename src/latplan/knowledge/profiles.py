"""Outcome figures (``outcomes.yaml``) and modality profiles (``modalities.yaml``).

Why: local-control figures must carry endpoint, time point, population and evidence level
so that the board compares only like with like; invasiveness, stay, risks and
repeatability feed the option grid and the patient's preference criteria. Both are data
with citations, validated on load (:class:`~latplan.errors.KnowledgeError`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from latplan.errors import KnowledgeError
from latplan.knowledge.conditions import Condition
from latplan.knowledge.features import validate_path
from latplan.knowledge.rules import _EVIDENCE, MODALITY_CODES, Citation, load_citations

ENDPOINTS = ("local_control", "complete_response", "overall_survival")


@dataclass(frozen=True)
class OutcomeFigure:
    id: str
    modalities: tuple[str, ...]
    endpoint: str
    time_point_months: float | None
    value_percent: float | None
    value_range_percent: tuple[float, float] | None
    population: str
    condition: Condition
    evidence_level: str
    citation: Citation
    where: str | None = None  # where the number stands in the paper (abstract, table, figure)

    def to_json(self) -> dict[str, Any]:
        return {
            "figure_id": self.id,
            "endpoint": self.endpoint,
            "time_point_months": self.time_point_months,
            "value_percent": self.value_percent,
            "value_range_percent": list(self.value_range_percent) if self.value_range_percent else None,
            "population": self.population,
            "evidence_level": self.evidence_level,
            "citation": self.citation.render(),
            "source_location": self.where,
        }


@dataclass(frozen=True)
class ModalityProfile:
    code: str
    name: str
    route: str
    invasiveness: int
    hospital_stay_days: float
    recovery_days: float
    side_effect_burden: int
    sessions: int
    repeatability: int
    repeatability_text: str
    main_risks: tuple[str, ...]
    evidence_level: str
    citations: tuple[Citation, ...] = field(default_factory=tuple)
    local_control_class: int = 3
    #: primary tumour → (short label, text with its source) of the drug, e.g. DEBIRI for colorectal TACE
    regimen_by_primary: Mapping[str, tuple[str, str]] = field(default_factory=dict)

    def regimen(self, primary: str | None) -> tuple[str, str] | None:
        """The (short, text) drug of this modality for ``primary``; None where the data name none."""
        return self.regimen_by_primary.get(str(primary)) if primary else None

    def regimen_note(self, primary: str | None) -> str | None:
        """"DEBIRI: irinotecan-loaded drug-eluting beads (source)" for a step note; None where the data name none."""
        reg = self.regimen(primary)
        return f"{reg[0]}: {reg[1]}" if reg else None

    def titled(self, primary: str | None) -> str:
        """The name with the primary's regimen: "Chemoembolisation (TACE: DEBIRI)" (the name alone otherwise)."""
        reg = self.regimen(primary)
        if not reg:
            return self.name
        return f"{self.name[:-1]}: {reg[0]})" if self.name.endswith(")") else f"{self.name} ({reg[0]})"

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name, "route": self.route, "invasiveness": self.invasiveness,
            "hospital_stay_days": self.hospital_stay_days, "recovery_days": self.recovery_days,
            "side_effect_burden": self.side_effect_burden, "sessions": self.sessions,
            "repeatability": self.repeatability, "repeatability_text": self.repeatability_text,
            "main_risks": list(self.main_risks), "evidence_level": self.evidence_level,
            "local_control_class": self.local_control_class,
            "citation": "; ".join(c.render() for c in self.citations),
        }


def _text(name: str) -> str:
    return (resources.files("latplan.knowledge") / name).read_text(encoding="utf-8")


def parse_outcomes(data: Mapping[str, Any], source: str = "outcomes.yaml") -> list[OutcomeFigure]:
    cites = load_citations()
    out: list[OutcomeFigure] = []
    seen: set[str] = set()
    for raw in data.get("outcomes") or []:
        fid = str(raw.get("id", ""))
        where = f"{source}: outcome {fid or '?'}"
        if not fid or fid in seen:
            raise KnowledgeError(f"{where}: needs a unique id.")
        seen.add(fid)
        for key in ("endpoint", "population", "evidence_level", "citation", "modalities"):
            if not raw.get(key):
                raise KnowledgeError(f"{where}: '{key}' is required (figures carry endpoint, time point, population, evidence).")
        if "time_point_months" not in raw:
            raise KnowledgeError(f"{where}: 'time_point_months' is required (null when the source gives none).")
        if raw["endpoint"] not in ENDPOINTS:
            raise KnowledgeError(f"{where}: endpoint {raw['endpoint']!r} must be one of {ENDPOINTS}.")
        if not _EVIDENCE.match(str(raw["evidence_level"])):
            raise KnowledgeError(f"{where}: evidence_level {raw['evidence_level']!r} is not CEBM/GRADE.")
        if raw["citation"] not in cites:
            raise KnowledgeError(f"{where}: unknown citation {raw['citation']!r}.")
        mods = tuple(raw["modalities"])
        for m in mods:
            if m not in MODALITY_CODES:
                raise KnowledgeError(f"{where}: unknown modality {m!r}.")
        vr = raw.get("value_range_percent")
        if raw.get("value_percent") is None and not vr:
            raise KnowledgeError(f"{where}: needs value_percent or value_range_percent.")
        cond = Condition.compile(str(raw.get("condition", "true")), validate_path)
        tp = raw["time_point_months"]
        out.append(OutcomeFigure(fid, mods, raw["endpoint"], None if tp is None else float(tp),
                                 None if raw.get("value_percent") is None else float(raw["value_percent"]),
                                 (float(vr[0]), float(vr[1])) if vr else None, str(raw["population"]), cond,
                                 str(raw["evidence_level"]), cites[raw["citation"]],
                                 None if raw.get("where") is None else str(raw["where"])))
    return out


@lru_cache(maxsize=1)
def load_outcomes() -> tuple[OutcomeFigure, ...]:
    """The shipped outcome figures plus those [B] keeps for IBT/SBRT (if its loader offers them)."""
    return tuple(parse_outcomes(yaml.safe_load(_text("outcomes.yaml")) or {}))


def parse_profiles(data: Mapping[str, Any], source: str = "modalities.yaml") -> dict[str, ModalityProfile]:
    cites = load_citations()
    keys = data.get("citation") or []
    keys = [keys] if isinstance(keys, str) else list(keys)
    for k in keys:
        if k not in cites:
            raise KnowledgeError(f"{source}: unknown citation {k!r}.")
    ev = str(data.get("evidence_level", ""))
    if not _EVIDENCE.match(ev):
        raise KnowledgeError(f"{source}: evidence_level {ev!r} is not CEBM/GRADE.")
    out: dict[str, ModalityProfile] = {}
    for code, raw in (data.get("modalities") or {}).items():
        if code not in MODALITY_CODES:
            raise KnowledgeError(f"{source}: unknown modality {code!r}.")
        try:
            out[code] = ModalityProfile(
                code, str(raw["name"]), str(raw["route"]), int(raw["invasiveness"]), float(raw["hospital_stay_days"]),
                float(raw["recovery_days"]), int(raw["side_effect_burden"]), int(raw["sessions"]),
                int(raw["repeatability"]), str(raw["repeatability_text"]), tuple(raw["main_risks"]), ev,
                tuple(cites[k] for k in keys), int(raw.get("local_control_class", 3)),
                {str(k): (str(v["short"]), str(v["text"])) for k, v in (raw.get("regimen_by_primary") or {}).items()})
        except (KeyError, TypeError, ValueError) as exc:
            raise KnowledgeError(f"{source}: modality {code!r} is incomplete or malformed ({exc}).") from None
    missing = set(MODALITY_CODES) - set(out)
    if missing:
        raise KnowledgeError(f"{source}: no profile for {sorted(missing)}.")
    return out


@lru_cache(maxsize=4)
def load_profiles(path: str | None = None) -> dict[str, ModalityProfile]:
    """Modality profiles; ``path`` = a hospital profile file replacing the shipped one."""
    text = Path(path).read_text(encoding="utf-8") if path else _text("modalities.yaml")
    return parse_profiles(yaml.safe_load(text) or {}, path or "modalities.yaml")


def figures_for(modality: str, figures: Sequence[OutcomeFigure] | None = None) -> list[OutcomeFigure]:
    return [f for f in (figures if figures is not None else load_outcomes()) if modality in f.modalities]
