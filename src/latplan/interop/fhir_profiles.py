"""Offline check of a FHIR bundle against the mCODE profile rules it claims (``meta.profile``).

Why a small checker of our own: the reference validator (HL7's Java validator) downloads the
implementation-guide packages and their terminology at run time, which this deployment cannot
do; no maintained Python library validates profiles. ``fhir.resources`` validates the base
resource structure; this module adds what the claimed mCODE profiles require beyond it —
cardinalities, fixed codes, enumerated required bindings, profile-typed references and named
invariants — as encoded, with sources, in ``fhir_mcode_rules.yaml``. It does not check
value-set membership of SNOMED CT / ICD-10-CM / LOINC codes (external terminologies).

A claim without rules is itself a violation: the export must not claim a profile that is not
checked here.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from importlib import resources
from typing import Any

import yaml

from latplan.errors import InvalidInputError

__all__ = ["Violation", "check_bundle", "load_rules"]

_EXT = re.compile(r"^extension\((?P<url>[^)]+)\)$")


@dataclass(frozen=True)
class Violation:
    """One broken rule: which resource (fullUrl), which profile, which rule, and why it exists."""

    full_url: str
    profile: str
    rule_id: str
    message: str

    def __str__(self) -> str:
        return f"{self.full_url} [{self.profile.rsplit('/', 1)[-1]}] {self.rule_id}: {self.message}"


@functools.cache
def load_rules() -> dict[str, Any]:
    """The encoded profile rules (``fhir_mcode_rules.yaml``: IG version, sources, rules per profile)."""
    text = (resources.files("latplan.interop") / "fhir_mcode_rules.yaml").read_text(encoding="utf-8")
    data = yaml.safe_load(text)
    if not isinstance(data, dict) or "profiles" not in data or "ig" not in data:
        raise InvalidInputError("fhir_mcode_rules.yaml must hold `ig` and `profiles`; the file is damaged.")
    return data


def _segments(path: str) -> list[str]:
    """Split a rule path on dots outside ``extension(...)`` (URLs contain dots)."""
    out, depth, cur = [], 0, ""
    for ch in path:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "." and depth == 0:
            out.append(cur)
            cur = ""
        else:
            cur += ch
    out.append(cur)
    return out


def _step(node: Any, segment: str) -> list[Any]:
    m = _EXT.match(segment)
    if m:
        exts = node.get("extension", []) if isinstance(node, dict) else []
        return [e for e in exts if isinstance(e, dict) and e.get("url") == m.group("url")]
    if not isinstance(node, dict) or segment not in node:
        return []
    value = node[segment]
    return list(value) if isinstance(value, list) else [value]


def _nodes(root: Any, path: str) -> list[Any]:
    nodes = [root]
    for segment in _segments(path):
        nodes = [child for node in nodes for child in _step(node, segment)]
    return nodes


def _matches(node: Any, pattern: dict[str, Any]) -> bool:
    return isinstance(node, dict) and all(node.get(k) == v for k, v in pattern.items())


def _claims(entry: dict[str, Any]) -> list[str]:
    return list(((entry.get("resource") or {}).get("meta") or {}).get("profile") or [])


def _check_rule(rule: dict[str, Any], resource: dict[str, Any], by_url: dict[str, dict[str, Any]]) -> list[str]:
    """Messages for every way ``resource`` breaks ``rule`` (empty when it holds)."""
    why = rule.get("why", "")
    if "exactly_one_of" in rule:
        present = [p for p in rule["exactly_one_of"] if _nodes(resource, p)]
        return [] if len(present) == 1 else [f"exactly one of {rule['exactly_one_of']} must be present, found {present} ({why})"]
    path = rule["path"]
    nodes = _nodes(resource, path)
    out: list[str] = []
    if "slice" in rule:
        sl = rule["slice"]
        members = [n for n in nodes if not _check_rule(sl["where"], n, by_url)]
        if len(members) < sl.get("min", 0):
            out.append(f"{path}: {len(members)} slice member(s), at least {sl['min']} required ({why})")
        if "max" in sl and len(members) > sl["max"]:
            out.append(f"{path}: {len(members)} slice member(s), at most {sl['max']} allowed ({why})")
        for member in members:
            for sub in sl.get("rules", []):
                out.extend(f"{path}[slice] {sub.get('id', '?')}: {msg}" for msg in _check_rule(sub, member, by_url))
        return out
    if "min" in rule and len(nodes) < rule["min"]:
        out.append(f"{path}: {len(nodes)} present, at least {rule['min']} required ({why})")
    if "max" in rule and len(nodes) > rule["max"]:
        out.append(f"{path}: {len(nodes)} present, at most {rule['max']} allowed ({why})")
    for key in rule.get("each_has", []):
        if any(not _nodes(n, key) for n in nodes):
            out.append(f"{path}: every element needs {key} ({why})")
    if "each_any_of" in rule:
        for n in nodes:
            if not any(_nodes(n, alt) for alt in rule["each_any_of"]):
                out.append(f"{path}: an element has none of {rule['each_any_of']} ({why})")
    if "contains_any" in rule and not any(_matches(n, p) for n in nodes for p in rule["contains_any"]):
        out.append(f"{path}: no element matches any of {rule['contains_any']} ({why})")
    if "in" in rule:
        bad = [n for n in nodes if n not in rule["in"]]
        if bad:
            out.append(f"{path}: {bad} not in {rule['in']} ({why})")
    if "references" in rule:
        wanted = rule["references"] if isinstance(rule["references"], list) else [rule["references"]]
        for ref in nodes:
            target = by_url.get(str(ref))
            if target is None:
                out.append(f"{path}: {ref!r} does not resolve to an entry of the bundle ({why})")
            elif not set(_claims(target)) & set(wanted):
                out.append(f"{path}: {ref!r} does not claim {wanted} ({why})")
    return out


def check_bundle(bundle: dict[str, Any]) -> list[Violation]:
    """Every violation of the claimed mCODE profiles in ``bundle`` (a Bundle as JSON); [] when it conforms."""
    rules = load_rules()["profiles"]
    entries = [e for e in bundle.get("entry") or [] if isinstance(e, dict)]
    by_url = {str(e.get("fullUrl")): e for e in entries if e.get("fullUrl")}
    violations: list[Violation] = []
    for entry in entries:
        resource = entry.get("resource") or {}
        full_url = str(entry.get("fullUrl", resource.get("id", "?")))
        for profile in _claims(entry):
            spec = rules.get(profile)
            if spec is None:
                violations.append(Violation(full_url, profile, "unchecked-claim",
                                            "the bundle claims a profile that latplan does not check; drop the claim or encode its rules"))
                continue
            if resource.get("resourceType") != spec["resource"]:
                violations.append(Violation(full_url, profile, "resource-type",
                                            f"{resource.get('resourceType')} cannot claim a {spec['resource']} profile"))
                continue
            for rule in [*spec.get("rules", []), *spec.get("extra_rules", [])]:
                for message in _check_rule(rule, resource, by_url):
                    violations.append(Violation(full_url, profile, str(rule.get("id", "?")), message))
    return violations
