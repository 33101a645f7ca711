"""Typed measurement contract: one JSON schema in and out.

References: measure.schema.json (validation) and the measure_case document itself (the typed
objects must give back the same keys and values, exactly); the oligometastatic definitions file
(anatomy/oligometastatic_definitions.yaml) as the one source of truth for the board's status.
"""

from __future__ import annotations

import json

import pytest
from anatomy_cases import synthetic_case

from latplan.anatomy import load_oligometastatic_definitions, measure_case, validate_measurements
from latplan.anatomy.measurements import CaseMeasurements, measure
from latplan.board.oligo import oligometastatic_status, resolve_definition
from latplan.case import Patient
from latplan.errors import InvalidInputError


def test_round_trip_is_exact() -> None:
    doc = measure_case(synthetic_case())
    typed = CaseMeasurements.from_json(doc)
    back = typed.to_json()
    validate_measurements(back)
    assert json.dumps(back, sort_keys=True) == json.dumps(doc, sort_keys=True)
    les = typed.lesion("lesion_1")
    assert isinstance(les.volume_ml, float) and les.organ == "liver"
    assert typed.patient.oligometastatic.status in ("oligometastatic", "not_oligometastatic", "unknown")


def test_invalid_document_is_refused_with_the_schema_message() -> None:
    doc = measure_case(synthetic_case())
    doc["lesions"][0]["volume_ml"] = -1.0
    with pytest.raises(InvalidInputError):
        CaseMeasurements.from_json(doc)


def test_measure_is_measure_case_typed() -> None:
    case = synthetic_case()
    assert measure(case).to_json()["lesions"] == measure_case(case)["lesions"]


@pytest.mark.parametrize(("alias", "key"), [("seed", "kovacs2021"), ("esmo-crc", "crc_5_in_2_organs")])
def test_board_definitions_are_the_definitions_file(alias: str, key: str) -> None:
    yaml_def = load_oligometastatic_definitions()["definitions"][key]
    d = resolve_definition(alias)
    assert (d.key, d.max_organs, d.max_lesions, d.requires_primary_controlled) == (
        key, yaml_def["max_organs"], yaml_def["max_lesions"], yaml_def["requires_primary_controlled"])


def test_board_and_anatomy_agree_on_the_status() -> None:
    """Colorectal, 2 liver lesions, lung metastases (1 lesion), primary in place: the colorectal
    definition (1–5 in ≤ 2 organs, no primary control) says oligometastatic; Kovács 2021 (primary
    must be resected or resectable) says not oligometastatic — as measure_case says for the same case."""
    patient = Patient.model_validate({"id": "P", "primary": "colorectal", "primary_status": "in_place",
                                      "metastatic_sites": [{"organ": "lung", "lesion_count": 1}]})
    case = synthetic_case(patient=patient)
    lesions = [{"id": "a", "organ": "liver"}, {"id": "b", "organ": "liver"}]
    crc = oligometastatic_status(patient, lesions, resolve_definition("esmo-crc"))
    seed = oligometastatic_status(patient, lesions, resolve_definition("seed"))
    assert crc["status"] == "oligometastatic"
    assert seed["status"] == "not_oligometastatic"
    measured = measure_case(case, oligo_definition="kovacs2021")["patient"]["oligometastatic"]
    assert measured["status"] == seed["status"]
