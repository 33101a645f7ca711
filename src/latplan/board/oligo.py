"""Oligometastatic status by a named definition (a parameter, shown in the output).

Definitions (CLINICAL.md): ``seed`` — metastases in 1–3 organs and < 5 lesions with the
primary resected or resectable (Kovács 2021); ``esmo-crc`` — up to 2 organs (occasionally 3)
and ≤ 5 lesions (ESMO 2016 consensus for colorectal cancer; latplan uses 2 organs, 5
lesions, primary controlled). Not applicable to HCC/cholangiocarcinoma. Unknown when the
primary's status or the metastatic sites are not recorded — never assumed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from latplan.case.patient import Patient
from latplan.errors import InvalidInputError


@dataclass(frozen=True)
class OligoDefinition:
    name: str
    max_organs: int
    max_lesions: int           # inclusive
    primary_controlled: tuple[str, ...] = ("resected", "resectable")
    citation: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "max_organs": self.max_organs, "max_lesions": self.max_lesions,
                "primary_status_allowed": list(self.primary_controlled), "citation": self.citation}


DEFINITIONS: dict[str, OligoDefinition] = {
    "seed": OligoDefinition("seed", 3, 4, citation="Kovács A et al. Front Oncol 2021;11:616058 (1-3 organs, < 5 lesions)"),
    "esmo-crc": OligoDefinition("esmo-crc", 2, 5, citation="Van Cutsem E et al. Ann Oncol 2016;27:1386 (ESMO consensus)"),
}


def resolve_definition(definition: str | OligoDefinition | Mapping[str, Any] | None) -> OligoDefinition:
    if definition is None:
        return DEFINITIONS["seed"]
    if isinstance(definition, OligoDefinition):
        return definition
    if isinstance(definition, str):
        try:
            return DEFINITIONS[definition]
        except KeyError:
            raise InvalidInputError(f"unknown oligometastatic definition {definition!r}; use one of "
                                    f"{', '.join(DEFINITIONS)} or a mapping {{name, max_organs, max_lesions}}.") from None
    try:
        return OligoDefinition(str(definition["name"]), int(definition["max_organs"]), int(definition["max_lesions"]),
                               tuple(definition.get("primary_controlled", ("resected", "resectable"))),
                               str(definition.get("citation", "")))
    except (KeyError, TypeError, ValueError):
        raise InvalidInputError("an oligometastatic definition mapping needs name, max_organs, max_lesions.") from None


def oligometastatic_status(patient: Patient, liver_lesions: Sequence[Mapping[str, Any]],
                           definition: OligoDefinition) -> dict[str, Any]:
    """{status, definition, organs, lesion_count, missing} — status: oligometastatic |
    not_oligometastatic | not_applicable | unknown."""
    out: dict[str, Any] = {"definition": definition.to_json(), "missing": []}
    if not patient.is_metastatic:
        out.update(status="not_applicable", reason="primary liver tumour: the oligometastatic concept does not apply")
        return out
    missing = []
    if patient.primary_status in (None, "unknown"):
        missing.append("patient.primary_status")
    if patient.metastatic_sites is None and patient.extrahepatic_sites is None:
        missing.append("patient.metastatic_sites")
    organs: set[str] = set()
    n = len(liver_lesions)
    if liver_lesions:
        organs.add("liver")
    for s in patient.metastatic_sites or []:
        if s.organ.lower() == "liver":
            continue  # counted from the images, not twice
        organs.add(s.organ.lower())
        if s.lesion_count is None:
            missing.append(f"patient.metastatic_sites[{s.organ}].lesion_count")
        else:
            n += s.lesion_count
    for site in patient.extrahepatic_sites or []:
        if site.lower() not in organs:
            organs.add(site.lower())
            if not any(s.organ.lower() == site.lower() for s in patient.metastatic_sites or []):
                missing.append(f"lesion count of {site}")
    out.update(organs=sorted(organs), lesion_count=n)
    too_many = len(organs) > definition.max_organs or n > definition.max_lesions
    if too_many:
        out.update(status="not_oligometastatic", missing=missing,
                   reason=f"{len(organs)} organ(s), {n}+ lesion(s) exceed {definition.max_organs} organs / "
                          f"{definition.max_lesions} lesions")
        return out
    if missing:
        out.update(status="unknown", missing=missing, reason="missing: " + ", ".join(missing))
        return out
    if patient.primary_status not in definition.primary_controlled:
        out.update(status="not_oligometastatic", reason=f"primary {patient.primary_status}, not controlled")
        return out
    out.update(status="oligometastatic", reason=f"{len(organs)} organ(s), {n} lesion(s), primary {patient.primary_status}")
    return out
