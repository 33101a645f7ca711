"""[L] distances the field of view limits are shown as lower bounds ("≥ d") with the reason, in the report.

Reference: the measurement contract of ``latplan.anatomy.measure_case`` / ``latplan.imaging.fov`` — a distance
named in ``distances_limited_by_fov`` is the gap measured inside the image, and the true gap beyond the image edge
may be smaller, so it is a lower bound. The expected strings follow from the input values (exact).
"""

from __future__ import annotations

from latplan.report.context import (
    FOV_DISTANCE_WHY,
    _measurement_pairs,
    _plain_local_control,
    _vessel_text,
    capsule_text,
)


def _lesion(**kw):
    base = {"id": "lesion_1", "max_diameter_mm": 20.0, "capsule_distance_mm": 6.0,
            "distances_mm": {"stomach": 12.5, "gallbladder": 30.0, "liver": 0.0},
            "nearest_vessels": [{"name": "inferior_vena_cava", "distance_mm": 18.0, "calibre_mm": 20.0},
                                {"name": "portal_vein", "distance_mm": 9.0, "calibre_mm": 12.0}]}
    base.update(kw)
    return base


def test_every_fov_limited_distance_reads_at_least_with_the_reason() -> None:
    pairs = dict(_measurement_pairs(_lesion(distances_limited_by_fov=["stomach", "inferior_vena_cava"])))
    structures = pairs["nearest structures"]
    assert "stomach ≥ 12.5 mm (limited by the field of view)" in structures
    assert "gallbladder 30 mm" in structures and "gallbladder ≥" not in structures
    vessels = pairs["nearest vessels"]
    assert "inferior vena cava, ≥ 18 mm (limited by the field of view) away" in vessels
    assert "portal vein, 9 mm away" in vessels
    why = pairs["distances limited by the field of view"]
    assert why == "inferior vena cava, stomach: " + FOV_DISTANCE_WHY


def test_no_mark_without_the_list_and_capsule_mark_kept() -> None:
    pairs = dict(_measurement_pairs(_lesion()))
    assert "≥" not in pairs["nearest structures"] and "≥" not in pairs["nearest vessels"]
    assert "distances limited by the field of view" not in pairs
    assert capsule_text({"capsule_distance_mm": 6.0, "capsule_distance_limited_by_fov": True}, " mm") == \
        "≥ 6 mm (limited by the field of view)"
    assert capsule_text({"capsule_distance_mm": 6.0}, " mm") == "6 mm"
    assert _vessel_text({"name": "portal_vein", "distance_mm": 9.0}, frozenset({"portal_vein"})) == \
        "portal vein, ≥ 9 mm (limited by the field of view) away"


def test_patient_sheet_words_overall_survival_about_people() -> None:
    """Reference: SURF final analysis (Kawaguchi/Hasegawa, J Clin Oncol 2025, abstract): 5-year overall
    survival 70.4 % after RFA. An overall-survival figure is about the person, so the patient sheet says
    "were alive", never "the tumour did not grow back" (a local-control wording)."""
    text = _plain_local_control({"value_percent": 70.4, "endpoint": "overall_survival", "time_point_months": 60})
    assert text == "In studies, about 70 in 100 people treated this way were alive after 5 years."
    assert "grow back" not in text
