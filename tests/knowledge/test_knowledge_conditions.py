"""The rule condition language: three-valued (Kleene) logic, unknown inputs named, no eval().

Reference: Kleene's strong three-valued logic (False ∧ Unknown = False, True ∨ Unknown = True);
CLINICAL.md "Unknown is not safe" (a missing structure is unknown, never far away).
"""

from __future__ import annotations

import pytest

from latplan.errors import KnowledgeError
from latplan.knowledge.conditions import Condition, Truth
from latplan.knowledge.features import validate_path

CTX = {
    "lesion": {"max_diameter_mm": 40.0, "distance_mm": {"stomach": 3.0, "bile_duct": None},
               "vessels": [{"name": "portal_vein", "calibre_mm": 8.0, "distance_mm": 4.0},
                           {"name": "hepatic_veins", "calibre_mm": None, "distance_mm": None}]},
    "patient": {"molecular": {"ras": "mutant"}, "pacemaker": None, "primary": "colorectal"},
}


def ev(text: str) -> tuple[Truth, list[str]]:
    r = Condition.compile(text, validate_path).evaluate(CTX)
    return r.truth, r.missing


@pytest.mark.parametrize(("text", "truth"), [
    ("lesion.max_diameter_mm > 35", Truth.TRUE),
    ("lesion.max_diameter_mm <= 35", Truth.FALSE),
    ('patient.molecular.ras == "mutant"', Truth.TRUE),
    ('patient.primary in ["hcc", "colorectal"]', Truth.TRUE),
    ("not lesion.max_diameter_mm > 35", Truth.FALSE),
    ("lesion.distance_mm.stomach < 5 and lesion.max_diameter_mm > 30", Truth.TRUE),
])
def test_known_inputs_give_two_valued_answers(text: str, truth: Truth) -> None:
    """Plain comparisons on known values behave like Python's (reference: the numbers in CTX)."""
    assert ev(text)[0] == truth


def test_unknown_structure_is_not_far_away() -> None:
    """A null distance (bile duct not segmented) makes `< 10` and `>= 10` both UNKNOWN, naming the input."""
    for text in ("lesion.distance_mm.bile_duct < 10", "lesion.distance_mm.bile_duct >= 10",
                 "not lesion.distance_mm.bile_duct < 10"):
        truth, missing = ev(text)
        assert truth == Truth.UNKNOWN
        assert missing == ["lesion.distance_mm.bile_duct"]


def test_kleene_and_or() -> None:
    """False ∧ Unknown = False; True ∨ Unknown = True; True ∧ Unknown = Unknown (Kleene)."""
    assert ev("lesion.max_diameter_mm < 10 and patient.pacemaker == true")[0] == Truth.FALSE
    assert ev("lesion.max_diameter_mm > 10 or patient.pacemaker == true")[0] == Truth.TRUE
    truth, missing = ev("lesion.max_diameter_mm > 10 and patient.pacemaker == true")
    assert truth == Truth.UNKNOWN and missing == ["patient.pacemaker"]


def test_any_over_vessels() -> None:
    """any(): true as soon as one element is true; unknown elements only matter when none is true."""
    assert ev("any(lesion.vessels, calibre_mm >= 5 and distance_mm < 10)")[0] == Truth.TRUE
    truth, missing = ev("any(lesion.vessels, calibre_mm >= 10 and distance_mm < 10)")
    assert truth == Truth.UNKNOWN
    assert any("hepatic_veins" in m for m in missing)


@pytest.mark.parametrize("text", ["__import__('os')", "lesion.max_diameter_mm >", "lesion.max_diameter_mm > 3 ;",
                                  "lesion.nonexistent_mm > 3", "patient.molecular.kras == 1",
                                  "lesion.distance_mm.moon < 3", "os.system"])
def test_malformed_or_unknown_fields_are_rejected(text: str) -> None:
    """No eval(): anything outside the grammar or the feature list is a KnowledgeError."""
    with pytest.raises(KnowledgeError):
        Condition.compile(text, validate_path)
