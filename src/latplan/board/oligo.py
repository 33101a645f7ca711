"""Oligometastatic status by a named definition (a parameter, shown in the output).

One source of truth: ``latplan/anatomy/oligometastatic_definitions.yaml`` and
:func:`latplan.anatomy.measure.oligometastatic_status` (the board used to carry its own table and
algorithm, which disagreed with the definitions file on the colorectal definition's primary
control). The board's historical names stay usable: ``seed`` = ``kovacs2021`` (Kovács 2021: 1–3
organs, < 5 lesions, primary resected or resectable) and ``esmo-crc`` = ``crc_5_in_2_organs``
(1–5 metastases in ≤ 2 organs; ESMO 2016 consensus discussion). Not applicable to
HCC/cholangiocarcinoma. Unknown when the metastatic sites or the primary's status (where the
definition needs it) are not recorded — never assumed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from latplan.anatomy import measure
from latplan.case.patient import Patient
from latplan.errors import InvalidInputError

__all__ = ["ALIASES", "OligoDefinition", "definitions", "oligometastatic_status", "resolve_definition"]

#: the board's earlier names → keys of oligometastatic_definitions.yaml
ALIASES = {"seed": "kovacs2021", "esmo-crc": "crc_5_in_2_organs"}


#: missing inputs that are fields of case.yaml's patient
_PATIENT_FIELDS = ("primary_status", "metastatic_sites")


@dataclass(frozen=True)
class OligoDefinition:
    """One definition of the definitions file (``key`` as there, ``name`` its display name)."""

    key: str
    name: str
    max_organs: int
    max_lesions: int           # inclusive
    requires_primary_controlled: bool
    source: str

    def to_json(self) -> dict[str, Any]:
        return {"id": self.key, "name": self.name, "max_organs": self.max_organs, "max_lesions": self.max_lesions,
                "requires_primary_controlled": self.requires_primary_controlled, "source": self.source}


def definitions() -> dict[str, OligoDefinition]:
    """Every definition of the definitions file, by key."""
    data = measure.load_oligometastatic_definitions()
    return {k: OligoDefinition(k, str(d["name"]), int(d["max_organs"]), int(d["max_lesions"]),
                               bool(d["requires_primary_controlled"]), " ".join(str(d["source"]).split()))
            for k, d in data["definitions"].items()}


def resolve_definition(definition: str | OligoDefinition | Mapping[str, Any] | None) -> OligoDefinition:
    """A definition by key or alias (default: the file's default), or a custom mapping."""
    if isinstance(definition, OligoDefinition):
        return definition
    known = definitions()
    if definition is None:
        return known[str(measure.load_oligometastatic_definitions()["default"])]
    if isinstance(definition, str):
        key = ALIASES.get(definition, definition)
        if key not in known:
            raise InvalidInputError(f"unknown oligometastatic definition {definition!r}; use one of "
                                    f"{', '.join([*known, *ALIASES])} or a mapping (name, max_organs, max_lesions, "
                                    "requires_primary_controlled, source).")
        return known[key]
    try:
        return OligoDefinition(str(definition.get("id", definition["name"])), str(definition["name"]),
                               int(definition["max_organs"]), int(definition["max_lesions"]),
                               bool(definition["requires_primary_controlled"]), str(definition["source"]))
    except (KeyError, TypeError, ValueError):
        raise InvalidInputError("an oligometastatic definition mapping needs name, max_organs, max_lesions, "
                                "requires_primary_controlled and source.") from None


def oligometastatic_status(patient: Patient, liver_lesions: Sequence[Mapping[str, Any]],
                           definition: OligoDefinition) -> dict[str, Any]:
    """{status, definition, missing, reason} for the patient with ``liver_lesions`` on the images
    (status: oligometastatic | not_oligometastatic | not_applicable | unknown)."""
    counts = measure.count_lesions_by_organ(patient, ["liver"] * len(liver_lesions))
    out = measure.oligometastatic_status(patient, counts, definition.to_json())
    # the board names missing inputs by their rule path (patient.<field>), as cannot_assess does
    out["missing"] = [f"patient.{m}" if m in _PATIENT_FIELDS else m for m in out["missing"]]
    return out
