"""Hand-written vignettes in the shape of ``latplan.anatomy.measure_case`` (issue [A] item 3).

Why by hand: the board's rules must be checkable without the phantom or the planners; the
same checks run on phantom demo cases (test_board_demo_cases.py) once those exist.
"""

from __future__ import annotations

from typing import Any

import pytest

from latplan.case import Patient

FAR = {"stomach": 80.0, "duodenum": 70.0, "colon": 40.0, "bile_duct": 35.0, "gallbladder": 45.0, "diaphragm": 40.0}


def lesion(lid: str = "lesion_1", d: float = 18.0, segments: tuple[str, ...] = ("6",), *, dist: dict | None = None,
           vessels: list | None = None, not_segmented: list | None = None, capsule: float = 8.0) -> dict[str, Any]:
    dd = dict(FAR)
    dd.update(dist or {})
    for n in not_segmented or []:
        dd.pop(n, None)
    if vessels is None:
        vessels = [{"name": "portal_vein", "role": "portal_vein", "distance_mm": 25.0, "calibre_mm": 4.0},
                   {"name": "hepatic_vein_right", "role": "hepatic_vein", "distance_mm": 22.0, "calibre_mm": 4.0},
                   {"name": "inferior_vena_cava", "role": "inferior_vena_cava", "distance_mm": 70.0, "calibre_mm": 20.0}]
    return {"id": lid, "volume_ml": 4 / 3 * 3.14159 * (d / 20) ** 3, "max_diameter_mm": d, "axial_diameter_mm": d * 0.95,
            "segments": [f"liver_segment_{s}" for s in segments], "distances_mm": dd, "nearest_vessels": vessels,
            "not_segmented": list(not_segmented or []), "capsule_distance_mm": capsule, "subcapsular": capsule < 10,
            "centroid_mm": [0.0, 0.0, 0.0]}


def measurements(*lesions: dict[str, Any], flr_percent: float | None = 70.0) -> dict[str, Any]:
    return {"lesions": list(lesions),
            "patient": {"lesion_count": len(lesions), "organs_involved": ["liver"], "liver_volume_ml": 1500.0,
                        "future_liver_remnant": None if flr_percent is None else {"ml": 15 * flr_percent,
                                                                                  "percent": flr_percent}}}


def patient(**kw: Any) -> Patient:
    base: dict[str, Any] = dict(
        id="VIG-01", primary="colorectal", age=64, ecog=1, molecular={"ras": "wildtype"}, child_pugh="A",
        cirrhosis=False, chemotherapy_cycles=4, extrahepatic_sites=[], primary_status="resected",
        metastatic_sites=[{"organ": "liver", "lesion_count": 1}], labs={"bilirubin_mg_dl": 0.8},
        portal_vein_thrombosis=False, biliary={"bilioenteric_anastomosis": False, "stent": False, "sphincterotomy": False},
        pacemaker=False, arrhythmia=False, metal_implants_near_liver=False, prior_radiotherapy=[],
        prior_therapies=[{"kind": "systemic", "line": 1, "regimen": "FOLFOX", "response": "partial"}],
        tare={"lung_shunt_fraction": 0.05})
    base.update(kw)
    return Patient(**base)


@pytest.fixture
def vignette():
    """Access to the builders: vignette.lesion(...), vignette.measurements(...), vignette.patient(...)."""

    class V:
        pass

    v = V()
    v.lesion = lesion  # type: ignore[attr-defined]
    v.measurements = measurements  # type: ignore[attr-defined]
    v.patient = patient  # type: ignore[attr-defined]
    return v
