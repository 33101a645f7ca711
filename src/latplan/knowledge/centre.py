"""The centre file: which modalities this centre offers (``knowledge/centre.yaml``).

Why: a board recommends what it can deliver and refers the rest. Options a centre does not
offer keep their assessment but are tiered "refer"; strategies use only offered modalities.
A hospital points ``LATPLAN_CENTRE_FILE`` at its own file (same keys).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path

import yaml

from latplan.errors import KnowledgeError
from latplan.knowledge.rules import MODALITY_CODES


@dataclass(frozen=True)
class Centre:
    name: str
    version: str
    offered: frozenset[str]
    source: str


def parse_centre(text: str, source: str) -> Centre:
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise KnowledgeError(f"centre file {source} is not valid YAML: {exc}") from None
    meta = data.get("centre") or {}
    offered = data.get("offered")
    if not isinstance(offered, list) or not offered:
        raise KnowledgeError(f"centre file {source}: needs 'offered: [modality codes]' (e.g. [resection, mwa, ibt]).")
    bad = [m for m in offered if m not in MODALITY_CODES]
    if bad:
        raise KnowledgeError(f"centre file {source}: unknown modality code(s) {bad}; codes: {', '.join(MODALITY_CODES)}.")
    return Centre(str(meta.get("name", source)), str(meta.get("version", "")), frozenset(str(m) for m in offered), source)


@lru_cache(maxsize=8)
def load_centre(path: str | None = None) -> Centre:
    """The centre file at ``path``, else ``$LATPLAN_CENTRE_FILE``, else the shipped one (everything offered)."""
    chosen = path or os.environ.get("LATPLAN_CENTRE_FILE")
    if chosen:
        p = Path(chosen)
        if not p.is_file():
            raise KnowledgeError(f"centre file {p} does not exist; fix LATPLAN_CENTRE_FILE or the path given.")
        return parse_centre(p.read_text(encoding="utf-8"), str(p))
    return parse_centre((resources.files("latplan.knowledge") / "centre.yaml").read_text(encoding="utf-8"), "centre.yaml")


def offered_modalities(path: str | None = None) -> frozenset[str]:
    return load_centre(path).offered
