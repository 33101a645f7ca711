"""The rule condition language: three-valued (Kleene) logic, unknown inputs named, no eval().

Reference: Kleene's strong three-valued logic (False ∧ Unknown = False, True ∨ Unknown = True);
latplan requirement "unknown is not safe" (docs/architecture.md) (a missing structure is unknown, never far away).
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


def test_lower_bound_decides_only_when_sufficient() -> None:
    """An unsegmented organ outside the liver is at least capsule_distance_mm away (geometry: the lesion is
    inside the liver). With the bound 12 mm, `< 10` is False and `>= 10` True; with 3 mm both stay unknown."""
    from latplan.knowledge.features import lesion_features

    for capsule, expect in ((12.0, (Truth.FALSE, Truth.TRUE)), (3.0, (Truth.UNKNOWN, Truth.UNKNOWN))):
        les = lesion_features({"id": "lesion_1", "max_diameter_mm": 20, "capsule_distance_mm": capsule,
                               "distances_mm": {"stomach": 40.0}, "not_segmented": ["small_bowel", "bile_duct"],
                               "nearest_vessels": []})
        ctx = {"lesion": les}
        near = Condition.compile("any(lesion.hollow_organs, distance_mm < 10)", validate_path).evaluate(ctx)
        far = Condition.compile("lesion.distance_mm.small_bowel >= 10", validate_path).evaluate(ctx)
        assert (near.truth, far.truth) == expect
        if near.truth == Truth.UNKNOWN:
            assert near.missing == ["lesion.hollow_organs[small_bowel].distance_mm"]
        # an intrahepatic structure gets no bound: the bile duct stays unknown however deep the lesion is
        duct = Condition.compile("lesion.distance_mm.bile_duct < 10", validate_path).evaluate(ctx)
        assert duct.truth == Truth.UNKNOWN
