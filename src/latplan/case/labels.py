"""Label tables: label value → structure name and role.

A case folder ships ``labels.yaml`` mapping integer values to names. Names are the
canonical vocabulary (vocabulary.CANONICAL_STRUCTURES) or foreign names with a known
mapping (TotalSegmentator v2, see :data:`TOTALSEGMENTATOR_TO_CANONICAL`, and every class of the
tasks in ``case/data/totalsegmentator.yaml`` via :func:`latplan.case.totalsegmentator.ts_class`). An entry may
also be a mapping ``{name: ..., role: ...}`` for names outside both vocabularies.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from latplan.case.totalsegmentator import ts_class
from latplan.case.vocabulary import StructureRole, coerce, role_of
from latplan.errors import UnknownStructureError

#: TotalSegmentator 'total' (v2) names → canonical latplan names; several may merge into one
TOTALSEGMENTATOR_TO_CANONICAL: dict[str, str] = {
    "liver": "liver",
    "gallbladder": "gallbladder",
    "stomach": "stomach",
    "duodenum": "duodenum",
    "small_bowel": "small_bowel",
    "colon": "colon",
    "esophagus": "esophagus",
    "kidney_right": "kidney_right",
    "kidney_left": "kidney_left",
    "spleen": "spleen",
    "pancreas": "pancreas",
    "adrenal_gland_right": "adrenal_gland_right",
    "adrenal_gland_left": "adrenal_gland_left",
    "aorta": "aorta",
    "inferior_vena_cava": "inferior_vena_cava",
    "portal_vein_and_splenic_vein": "portal_vein",
    "heart": "heart",
    "spinal_cord": "spinal_cord",
    "lung_upper_lobe_left": "lung_left",
    "lung_lower_lobe_left": "lung_left",
    "lung_upper_lobe_right": "lung_right",
    "lung_middle_lobe_right": "lung_right",
    "lung_lower_lobe_right": "lung_right",
    **{f"rib_{side}_{n}": "ribs" for side in ("left", "right") for n in range(1, 13)},
    **{f"vertebrae_{p}{n}": "spine" for p, r in (("C", 7), ("T", 12), ("L", 5)) for n in range(1, r + 1)},
    "sacrum": "spine",
    "tumor": "lesion_1",
    "tumour": "lesion_1",
}

#: foreign names that are known but carry no structure latplan uses (muscles etc.)
_IGNORED_PREFIXES = ("autochthon_", "iliopsoas_", "gluteus_", "femur_", "hip_", "humerus_", "scapula_", "clavicula_",
                     "costal_cartilages", "sternum", "urinary_bladder", "prostate", "brain", "skull", "thyroid",
                     "trachea", "iliac_", "common_carotid", "subclavian", "brachiocephalic", "pulmonary_",
                     "atrial_appendage", "kidney_cyst")


@dataclass(frozen=True)
class LabelEntry:
    value: int
    name: str
    role: StructureRole
    source_name: str


class LabelTable:
    """Maps label values to canonical structure names and roles (many values may share a name)."""

    def __init__(self, entries: list[LabelEntry]) -> None:
        values = [e.value for e in entries]
        if len(set(values)) != len(values):
            raise UnknownStructureError("the label table lists a label value twice; each value must be unique.")
        if any(v <= 0 for v in values):
            raise UnknownStructureError("label value 0 is background; structure labels must be positive integers.")
        self.entries = tuple(sorted(entries, key=lambda e: e.value))

    @classmethod
    def from_mapping(cls, mapping: Mapping[Any, Any], *, allow_ignored: bool = True) -> LabelTable:
        """Build from ``{value: name}`` or ``{value: {name, role}}``; foreign names are mapped."""
        entries: list[LabelEntry] = []
        for raw_value, spec in mapping.items():
            try:
                value = int(raw_value)
            except (TypeError, ValueError):
                raise UnknownStructureError(f"label value {raw_value!r} is not an integer.") from None
            if isinstance(spec, Mapping):
                name = str(spec.get("name", "")).strip()
                role = coerce(StructureRole, spec["role"]) if "role" in spec else None
            else:
                name, role = str(spec).strip(), None
            if not name:
                raise UnknownStructureError(f"label {value} has no name.")
            source = name
            canonical = TOTALSEGMENTATOR_TO_CANONICAL.get(name, name)
            ts = ts_class(name)
            if ts is not None and name not in TOTALSEGMENTATOR_TO_CANONICAL:
                canonical = ts.name  # every TotalSegmentator class name is known (unplanned → role other)
                if role is None:
                    role = ts.role
            if role is None:
                try:
                    role = role_of(canonical)
                except UnknownStructureError:
                    if allow_ignored and name.startswith(_IGNORED_PREFIXES):
                        role = StructureRole.OTHER
                    else:
                        raise UnknownStructureError(
                            f"label {value}: unknown structure name {name!r}. Use a canonical name "
                            "(docs/case-format.md), a TotalSegmentator name, or give {name, role} explicitly."
                        ) from None
            entries.append(LabelEntry(value, canonical, role, source))
        return cls(entries)

    def values_for(self, name: str) -> list[int]:
        return [e.value for e in self.entries if e.name == name]

    def names(self) -> list[str]:
        """Canonical names present, in label order, without duplicates."""
        seen: dict[str, None] = {}
        for e in self.entries:
            seen.setdefault(e.name, None)
        return list(seen)

    def role(self, name: str) -> StructureRole:
        for e in self.entries:
            if e.name == name:
                return e.role
        raise UnknownStructureError(f"structure {name!r} is not in the label table; present: {', '.join(self.names())}.")

    def lesion_names(self) -> list[str]:
        return [n for n in self.names() if self.role(n) == StructureRole.LESION]

    def to_mapping(self) -> dict[int, str]:
        return {e.value: e.name for e in self.entries}

    def __contains__(self, name: object) -> bool:
        return any(e.name == name for e in self.entries)
