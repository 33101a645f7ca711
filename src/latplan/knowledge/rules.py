"""Rule sets: versioned YAML files of clinical rules, validated on load, overridable by id.

A rule file (``knowledge/rules/*.yaml``)::

    rule_set: {name: latplan-core, version: "2026.11"}
    citations:                       # key → full reference (a file may add its own)
      seed: {text: "Kovács A et al. Front Oncol 2021;11:616058", url: ...}
    rules:
      - id: RFA-SIZE-35                # stable id; a later file with the same id overrides it
        statement: RFA is limited to lesions up to 3.5 cm.
        modalities: [rfa]              # or [all]; 'strategy' rules use strategies: [...]
        scope: lesion                  # lesion | patient | strategy | simulation
        category: size                 # size rules are priors a simulation may overturn
        condition: lesion.max_diameter_mm > 35
        effect: relative_contraindication   # | indicated | eligible | contraindicated
                                            # | {score: -0.2} | {parameter: {target_margin_mm: 10}}
        evidence_level: CEBM 5          # Oxford CEBM 1a..5 or GRADE high|moderate|low|very low
        citation: seed                  # key(s) of citations
        on_unknown: review              # review (default: cannot_assess + needs_review) | ignore
                                        # | conditional (standard-of-care rules only, see below)

``on_unknown: conditional`` is for a guideline's standard-of-care statement (effect ``indicated`` or a
positive score) whose condition is unknown only through clinical fields (``patient.*``: ECOG, extrahepatic
disease ...). The effect is applied *as a condition*: the option or strategy is ranked as the guideline
would rank it, carries "standard of care only if confirmed (not recorded: …)" and needs review. Why: without
it a missing ECOG dropped resection of a single 35 mm colorectal metastasis from first (standard of care) to
below systemic therapy alone, i.e. missing paperwork silently demoted the standard of care. Unknown anatomy,
unknown lesion geometry and every adverse rule keep the ``review`` behaviour (never assumed safe).

Validation (:class:`~latplan.errors.KnowledgeError`): missing citation or unknown citation
key, duplicate id inside one file, unknown field in a condition, bad effect, bad evidence
level. Later files override earlier ones by id (``override: true`` is then recorded) and
may add rules; the result's ``name``/``version`` say which files were combined.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from latplan.case.vocabulary import Eligibility, Modality
from latplan.errors import KnowledgeError
from latplan.knowledge.conditions import Condition
from latplan.knowledge.features import validate_path

SCOPES = ("lesion", "patient", "strategy", "simulation")
CATEGORIES = ("size", "proximity", "anatomy", "patient", "tumour", "evidence", "simulation", "strategy", "toolbox",
              "function", "history", "margin")
STRATEGY_KINDS = ("local", "combination", "sequence_tace_ibt", "systemic_then_local", "regional", "two_stage",
                  "resection", "systemic", "ablate_and_resect", "tace_then_ablation", "ablate_all", "conversion",
                  "best_supportive_care", "transplant")
_EVIDENCE = re.compile(r"^(CEBM (1a|1b|1c|2a|2b|2c|3a|3b|4|5)|GRADE (high|moderate|low|very low))$")
_ID = re.compile(r"^[A-Z0-9][A-Z0-9-]*[A-Z0-9]$")
_ALLOWED_KEYS = {"id", "statement", "modalities", "strategies", "scope", "category", "condition", "effect",
                 "evidence_level", "citation", "on_unknown", "text_false", "note"}
MODALITY_CODES = tuple(m.value for m in Modality)


@dataclass(frozen=True)
class Citation:
    key: str
    text: str
    url: str | None = None

    def render(self) -> str:
        return self.text + (f" ({self.url})" if self.url else "")


@dataclass(frozen=True)
class Effect:
    eligibility: Eligibility | None = None
    score: float = 0.0
    parameters: Mapping[str, Any] = field(default_factory=dict)

    def favours(self) -> bool:
        """True for a standard-of-care effect: ``indicated`` or a positive score, nothing else."""
        if self.parameters or self.score < 0:
            return False
        return self.eligibility == Eligibility.INDICATED or (self.eligibility is None and self.score > 0)

    def describe(self) -> str:
        parts = []
        if self.eligibility:
            parts.append(self.eligibility.value)
        if self.score:
            parts.append(f"score {self.score:+g}")
        if self.parameters:
            parts.append(", ".join(f"{k}={v}" for k, v in self.parameters.items()))
        return "; ".join(parts) or "information"


@dataclass(frozen=True)
class Rule:
    id: str
    statement: str
    scope: str
    category: str
    condition: Condition
    effect: Effect
    evidence_level: str
    citations: tuple[Citation, ...]
    modalities: tuple[str, ...] = ()
    strategies: tuple[str, ...] = ()
    on_unknown: str = "review"
    source_file: str = ""
    overrides: str | None = None   # source file of the rule this one replaced

    def applies_to(self, modality: str) -> bool:
        return "all" in self.modalities or modality in self.modalities

    def conditional_on(self, missing: Sequence[str]) -> bool:
        """True when this rule's effect applies as a condition for an unknown result with ``missing``
        inputs: ``on_unknown: conditional`` and every missing input a clinical field (``patient.*``)."""
        return self.on_unknown == "conditional" and bool(missing) and all(m.startswith("patient.") for m in missing)

    def if_confirmed(self, missing: Sequence[str]) -> str:
        """The words of a conditional standard of care: "standard of care only if confirmed (not recorded: …)"."""
        return f"standard of care only if confirmed (not recorded: {', '.join(m.removeprefix('patient.') for m in missing)})"

    @property
    def citation_text(self) -> str:
        return "; ".join(c.render() for c in self.citations)


@dataclass
class RuleSet:
    """The rules in force, with the name/version of every file combined."""

    name: str
    version: str
    rules: dict[str, Rule]
    citations: dict[str, Citation]
    sources: list[dict[str, str]] = field(default_factory=list)

    def for_modality(self, modality: str, scope: str = "lesion") -> list[Rule]:
        return [r for r in self.rules.values() if r.scope == scope and r.applies_to(modality)]

    def for_strategy(self, kind: str) -> list[Rule]:
        return [r for r in self.rules.values() if r.scope == "strategy" and ("all" in r.strategies or kind in r.strategies)]

    def __getitem__(self, rule_id: str) -> Rule:
        try:
            return self.rules[rule_id]
        except KeyError:
            raise KnowledgeError(f"rule {rule_id!r} is not in rule set {self.name} {self.version}.") from None

    def __len__(self) -> int:
        return len(self.rules)


def _parse_effect(raw: Any, where: str) -> Effect:
    if isinstance(raw, str):
        try:
            return Effect(eligibility=Eligibility(raw))
        except ValueError:
            raise KnowledgeError(f"{where}: effect {raw!r} is not one of {[e.value for e in Eligibility]} "
                                 "or a mapping {eligibility, score, parameter}.") from None
    if isinstance(raw, Mapping):
        unknown = set(raw) - {"eligibility", "score", "parameter"}
        if unknown:
            raise KnowledgeError(f"{where}: unknown effect key(s) {sorted(unknown)}; use eligibility, score, parameter.")
        elig = None
        if raw.get("eligibility") is not None:
            try:
                elig = Eligibility(raw["eligibility"])
            except ValueError:
                raise KnowledgeError(f"{where}: eligibility {raw['eligibility']!r} is not valid.") from None
        try:
            score = float(raw.get("score", 0.0))
        except (TypeError, ValueError):
            raise KnowledgeError(f"{where}: score must be a number.") from None
        params = raw.get("parameter") or {}
        if not isinstance(params, Mapping):
            raise KnowledgeError(f"{where}: parameter must be a mapping such as {{target_margin_mm: 10}}.")
        return Effect(elig, score, dict(params))
    raise KnowledgeError(f"{where}: effect is missing or malformed ({raw!r}).")


def _read_yaml(path: Path | str, text: str | None = None) -> dict[str, Any]:
    try:
        data = yaml.safe_load(text if text is not None else Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise KnowledgeError(f"rule file {path} does not exist.") from None
    except yaml.YAMLError as exc:
        raise KnowledgeError(f"rule file {path} is not valid YAML: {exc}") from None
    if not isinstance(data, Mapping):
        raise KnowledgeError(f"rule file {path}: the top level must be a mapping with rule_set and rules.")
    return dict(data)


def _parse_file(data: Mapping[str, Any], source: str, citations: dict[str, Citation]) -> tuple[dict[str, str], list[Rule]]:
    meta = data.get("rule_set")
    if not isinstance(meta, Mapping) or not meta.get("name") or not meta.get("version"):
        raise KnowledgeError(f"{source}: needs 'rule_set: {{name: ..., version: ...}}' so output can say which rules were used.")
    for key, c in (data.get("citations") or {}).items():
        if isinstance(c, str):
            c = {"text": c}
        if not isinstance(c, Mapping) or not c.get("text"):
            raise KnowledgeError(f"{source}: citation {key!r} needs a text.")
        citations[str(key)] = Citation(str(key), str(c["text"]), c.get("url"))
    raw_rules = data.get("rules") or []
    if not isinstance(raw_rules, list):
        raise KnowledgeError(f"{source}: 'rules' must be a list.")
    seen: set[str] = set()
    out: list[Rule] = []
    for i, raw in enumerate(raw_rules):
        if not isinstance(raw, Mapping):
            raise KnowledgeError(f"{source}: rule #{i + 1} is not a mapping.")
        rid = str(raw.get("id", "")).strip()
        where = f"{source}: rule {rid or '#' + str(i + 1)}"
        if not rid or not _ID.match(rid):
            raise KnowledgeError(f"{where}: needs an id of capitals, digits and dashes (e.g. RFA-SIZE-35).")
        if rid in seen:
            raise KnowledgeError(f"{source}: duplicate rule id {rid!r}; ids must be unique within a file.")
        seen.add(rid)
        extra = set(raw) - _ALLOWED_KEYS
        if extra:
            raise KnowledgeError(f"{where}: unknown key(s) {sorted(extra)}; allowed: {sorted(_ALLOWED_KEYS)}.")
        cites = raw.get("citation")
        if not cites:
            raise KnowledgeError(f"{where}: has no citation; every rule must cite its source.")
        keys = [cites] if isinstance(cites, str) else list(cites)
        resolved = []
        for k in keys:
            if k not in citations:
                raise KnowledgeError(f"{where}: citation {k!r} is not defined in any 'citations:' section.")
            resolved.append(citations[k])
        ev = str(raw.get("evidence_level", "")).strip()
        if not _EVIDENCE.match(ev):
            raise KnowledgeError(f"{where}: evidence_level {ev!r} must be 'CEBM 1a'…'CEBM 5' or 'GRADE high|moderate|low|very low'.")
        scope = raw.get("scope", "lesion")
        if scope not in SCOPES:
            raise KnowledgeError(f"{where}: scope {scope!r} must be one of {SCOPES}.")
        category = raw.get("category", "evidence")
        if category not in CATEGORIES:
            raise KnowledgeError(f"{where}: category {category!r} must be one of {CATEGORIES}.")
        mods = tuple(str(m) for m in (raw.get("modalities") or []))
        for m in mods:
            if m != "all" and m not in MODALITY_CODES:
                raise KnowledgeError(f"{where}: unknown modality {m!r}; codes: {', '.join(MODALITY_CODES)}.")
        strats = tuple(str(s) for s in (raw.get("strategies") or []))
        for s in strats:
            if s != "all" and s not in STRATEGY_KINDS:
                raise KnowledgeError(f"{where}: unknown strategy kind {s!r}; kinds: {', '.join(STRATEGY_KINDS)}.")
        if scope == "strategy" and not strats:
            raise KnowledgeError(f"{where}: a strategy rule needs 'strategies: [...]'.")
        if scope != "strategy" and not mods:
            raise KnowledgeError(f"{where}: needs 'modalities: [...]' (codes or all).")
        statement = str(raw.get("statement", "")).strip()
        if not statement:
            raise KnowledgeError(f"{where}: needs a statement in words.")
        on_unknown = raw.get("on_unknown", "review")
        if on_unknown not in ("review", "ignore", "conditional"):
            raise KnowledgeError(f"{where}: on_unknown must be 'review', 'ignore' or 'conditional'.")
        try:
            cond = Condition.compile(str(raw.get("condition", "")), validate_path)
        except KnowledgeError as exc:
            raise KnowledgeError(f"{where}: {exc}") from None
        effect = _parse_effect(raw.get("effect"), where)
        if on_unknown == "conditional" and not effect.favours():
            raise KnowledgeError(f"{where}: on_unknown: conditional is only for standard-of-care rules (effect "
                                 "'indicated' or a positive score, no parameters); use 'review' for this rule.")
        out.append(Rule(rid, statement, scope, category, cond, effect, ev,
                        tuple(resolved), mods, strats, on_unknown, source))
    return {"name": str(meta["name"]), "version": str(meta["version"]), "file": source}, out


def load_citations() -> dict[str, Citation]:
    """The shipped citation registry (``knowledge/citations.yaml``), key → :class:`Citation`."""
    text = (resources.files("latplan.knowledge") / "citations.yaml").read_text(encoding="utf-8")
    data = yaml.safe_load(text) or {}
    out: dict[str, Citation] = {}
    for key, c in (data.get("citations") or {}).items():
        out[str(key)] = Citation(str(key), str(c["text"]), c.get("url"))
    return out


def default_rule_files() -> list[Path]:
    """The shipped core rule files, in load order."""
    folder = resources.files("latplan.knowledge") / "rules"
    return sorted(Path(str(p)) for p in folder.iterdir() if str(p).endswith(".yaml"))


def load_rule_set(paths: Sequence[str | Path] | None = None, *, include_defaults: bool = True) -> RuleSet:
    """Load the core rules, then each file of ``paths`` in order (later ids override earlier).

    The returned set's ``name``/``version`` are those of the last file that declares
    ``rule_set`` (a hospital file names itself), and ``sources`` lists all of them.
    """
    files: list[Path] = (default_rule_files() if include_defaults else []) + [Path(p) for p in (paths or [])]
    if not files:
        raise KnowledgeError("no rule files given: pass paths or keep include_defaults=True.")
    citations: dict[str, Citation] = load_citations()
    rules: dict[str, Rule] = {}
    sources: list[dict[str, str]] = []
    for f in files:
        data = _read_yaml(f)
        meta, file_rules = _parse_file(data, f.name, citations)
        sources.append(meta)
        for r in file_rules:
            if r.id in rules:
                r = Rule(**{**r.__dict__, "overrides": rules[r.id].source_file})
            rules[r.id] = r
    last = sources[-1]
    core = [s for s in sources if s["name"] == sources[0]["name"]]
    name = last["name"] if last["name"] == sources[0]["name"] else f"{last['name']} (over {sources[0]['name']})"
    version = last["version"] if len(core) == len(sources) else f"{last['version']} (core {sources[0]['version']})"
    return RuleSet(name=name, version=version, rules=rules, citations=citations, sources=sources)


def rules_from_text(text: str, source: str = "<text>") -> RuleSet:
    """A rule set from YAML text alone (tests, the web app's rule editor)."""
    citations: dict[str, Citation] = load_citations()
    meta, file_rules = _parse_file(_read_yaml(source, text), source, citations)
    return RuleSet(meta["name"], meta["version"], {r.id: r for r in file_rules}, citations, [meta])


def iter_citations(rules: Iterable[Rule]) -> list[Citation]:
    seen: dict[str, Citation] = {}
    for r in rules:
        for c in r.citations:
            seen.setdefault(c.key, c)
    return list(seen.values())
