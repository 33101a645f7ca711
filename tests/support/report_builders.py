"""Builders of small in-memory cases, plans and a hand-made plan.json for the report tests ([E]).

Built from numpy arrays so the report tests do not depend on the phantom, the board or
the physics engines; integration tests with the real ones live in test_report_integration.py.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from latplan.case import Case, LabelTable, Patient
from latplan.imaging.volume import Volume
from latplan.planning.types import DVHCurve, TreatmentPlan

# grid: 40 slices × 64 rows × 72 columns, spacing i=2.0, j=2.0, k=2.5 mm (non-cubic on purpose)
SPACING_IJK_MM = (2.0, 2.0, 2.5)
SHAPE_KJI = (40, 64, 72)
ORIGIN_MM = (-72.0, -64.0, -50.0)
LESION_CENTRE_MM = np.array([-20.0, 0.0, 0.0])   # patient's right side of the liver
LESION_RADIUS_MM = 10.0

LABELS = {1: "liver", 2: "lesion_1", 3: "portal_vein", 4: "stomach", 5: "liver_segment_6", 6: "liver_segment_7",
          7: "lesion_2"}


def _affine() -> np.ndarray:
    aff = np.eye(4)
    aff[0, 0], aff[1, 1], aff[2, 2] = SPACING_IJK_MM
    aff[:3, 3] = ORIGIN_MM
    return aff


def make_case() -> Case:
    aff = _affine()
    ref = Volume(np.zeros(SHAPE_KJI, np.int16), aff)
    xyz = ref.grid_mm()
    x, y, z = xyz[..., 0], xyz[..., 1], xyz[..., 2]
    image = np.full(SHAPE_KJI, -80.0, np.float32)  # fat
    labels = np.zeros(SHAPE_KJI, np.int16)
    liver = ((x + 15) / 50) ** 2 + (y / 40) ** 2 + (z / 35) ** 2 <= 1
    labels[liver & (y >= 0)] = 5
    labels[liver & (y < 0)] = 6
    image[liver] = 60.0
    vessel = ((x + 5) ** 2 + (y - 5) ** 2 <= 4.0**2) & liver
    labels[vessel] = 3
    image[vessel] = 160.0
    stomach = ((x - 45) / 14) ** 2 + ((y + 5) / 18) ** 2 + (z / 20) ** 2 <= 1
    labels[stomach] = 4
    image[stomach] = 20.0
    r = np.linalg.norm(xyz - LESION_CENTRE_MM, axis=-1)
    lesion = r <= LESION_RADIUS_MM
    labels[lesion] = 2
    image[lesion] = 30.0
    lesion2 = np.linalg.norm(xyz - np.array([-30.0, -20.0, 15.0]), axis=-1) <= 6.0
    labels[lesion2] = 7
    image[lesion2] = 35.0
    # liver (value 1) is the union of segments in the label table: give it its own value on the rim
    table = LabelTable.from_mapping(LABELS)
    patient = Patient(id="RPT-001", primary="colorectal", age=64, ecog=1)
    img = Volume(image, aff)
    return Case(patient=patient, image=img, labels=img.with_array(labels), label_table=table,
                input_hashes={"image.nii.gz": "sha256:abc123", "labels.nii.gz": "sha256:def456"})


def make_plans(case: Case) -> dict[tuple[str, str], TreatmentPlan]:
    xyz = case.image.grid_mm()
    r = np.linalg.norm(xyz - LESION_CENTRE_MM, axis=-1)
    # MWA zone: sphere of 16 mm radius shifted 4 mm to the patient's left → min margin ≈ 2 mm on the right
    zone_centre = LESION_CENTRE_MM + np.array([4.0, 0.0, 0.0])
    zone = np.linalg.norm(xyz - zone_centre, axis=-1) <= 16.0
    mwa = TreatmentPlan(
        modality="mwa", lesion_id="lesion_1",
        metrics={"min_margin_mm": 2.0, "coverage_percent": 100.0},
        applicators=[{"tip_mm": (zone_centre + np.array([0, 0, -8])).tolist(), "entry_mm": (zone_centre + np.array([0, -60, 20])).tolist()}],
        zone=case.image.with_array(zone), margin_histogram={"<0": 0.0, "0-5": 55.0, ">=5": 45.0},
        caveats=["zone from the manufacturer's ex-vivo chart; in-vivo zones are smaller"],
        parameters={"power_w": 100, "time_s": 300}, engine="ablation_zones", engine_version="0.1",
        verification="device chart within 2 mm",
    )
    # IBT: point-source-like dose with prescription 20 Gy at the lesion edge (r = 10 mm)
    rx = 20.0
    dose = rx * (LESION_RADIUS_MM / np.maximum(r, 2.0)) ** 2
    dvh_d = np.linspace(0, 80, 161)
    ibt = TreatmentPlan(
        modality="ibt", lesion_id="lesion_1",
        metrics={"d100_gy": 19.1, "d90_gy": 24.5, "v100_percent": 98.2, "v150_percent": 41.0, "v200_percent": 18.0,
                 "oar_d1cc_gy": {"stomach": 3.1}, "liver_v5gy_percent": 9.5},
        dose=case.image.with_array(dose.astype(np.float32)), prescription_gy=rx,
        dvh=[DVHCurve("lesion_1", dvh_d, 100.0 * np.clip(1 - (dvh_d - 19) / 60, 0, 1), 4.2),
             DVHCurve("stomach", dvh_d, 100.0 * np.exp(-dvh_d / 1.5), 300.0),
             DVHCurve("liver", dvh_d, 100.0 * np.exp(-dvh_d / 3.0), 1500.0)],
        engine="tg43", engine_version="0.1", verification="TG-43 consensus tables within 0.5 %",
    )
    ptv = r <= LESION_RADIUS_MM + 5.0
    sbrt = TreatmentPlan(
        modality="sbrt", lesion_id="lesion_1",
        metrics={"feasible": False, "limiting_organ": "stomach", "bed_gy": 72.0,
                 "constraints": [{"organ": "stomach", "estimate_gy": 25.0, "limit_gy": 22.2},
                                 {"organ": "liver", "estimate_gy": 8.0, "limit_gy": 15.0}]},
        target=case.image.with_array(ptv), caveats=["SBRT estimate is not a plan"],
        engine="sbrt_screen", engine_version="0.1",
    )
    tare = TreatmentPlan(modality="tare", lesion_id="lesion_1", metrics={"activity_gbq": 1.2},
                         engine="y90", engine_version="0.1")
    return {("lesion_1", "mwa"): mwa, ("lesion_1", "ibt"): ibt, ("lesion_1", "sbrt"): sbrt, ("lesion_1", "tare"): tare}


def make_plan_json() -> dict:
    reason = {"rule_id": "size.rfa.max", "text": "lesion ≤ 3 cm", "citation": "Seed review, Table 1"}

    def option(modality, eligibility, rank, simulation=None):
        return {
            "modality": modality, "eligibility": eligibility, "rank": rank, "reasons": [reason],
            "simulation": simulation if simulation is not None else {"why": "not simulated in this test"},
            "local_control": {"value_percent": 85, "endpoint": "local tumour progression-free", "time_point": "2 y",
                              "citation": "Seed review"},
            "invasiveness": "percutaneous", "stay": "1–2 days", "main_risks": ["bleeding", "pain"],
            "evidence_level": "2b", "needs_review": False, "cannot_assess": [],
        }

    return {
        "rule_set": {"name": "latplan-default", "version": "0.1.0"},
        "patient": {"id": "RPT-001", "oligometastatic": {"status": "yes", "definition": "ESTRO/EORTC 2020: ≤ 5 lesions"}},
        "lesions": [
            {"id": "lesion_1", "measurements": {"volume_ml": 4.2, "max_diameter_mm": 20.0},
             "options": [option("mwa", "indicated", 1, {"min_margin_mm": 2.0, "coverage_percent": 100.0}),
                         option("ibt", "eligible", 2, {"d100_gy": 19.1, "d90_gy": 24.5, "v100_percent": 98.2}),
                         option("sbrt", "relative_contraindication", 3),
                         option("tare", "eligible", 4),
                         option("tace", "eligible", 5),
                         option("resection", "contraindicated", None)]},
            {"id": "lesion_2", "measurements": {"volume_ml": 0.9, "max_diameter_mm": 12.0},
             "options": [option("rfa", "indicated", 1)]},
        ],
        "strategies": [
            {"rank": 1, "steps": [{"lesion_ids": ["lesion_1"], "modality": "mwa", "order": 1},
                                  {"lesion_ids": ["lesion_2"], "modality": "rfa", "order": 1}],
             "rationale": "both lesions small and away from vessels", "evidence_level": "2b"},
        ],
        "preferences": {"elicited": False, "weights": {"local_control": 1, "invasiveness": 1}},
        "sensitivity": {"flip_points": [{"criterion": "invasiveness", "weight": 4.0, "new_top": "ibt"}]},
        "versions": {"latplan": "0.1.0"},
        "input_hashes": {"image.nii.gz": "sha256:abc123"},
    }


def make_measurements() -> dict:
    return {
        "lesions": [
            {"id": "lesion_1", "volume_ml": 4.2, "max_diameter_mm": 20.0, "axial_diameter_mm": 20.0,
             "centroid_mm": LESION_CENTRE_MM.tolist(), "segments": ["6"], "distances_mm": {"stomach": 38.0},
             "nearest_vessels": [{"name": "portal_vein", "distance_mm": 4.0, "calibre_mm": 8.0}],
             "capsule_distance_mm": 12.0, "not_segmented": ["bile_duct", "hepatic_veins"]},
            {"id": "lesion_2", "volume_ml": 0.9, "max_diameter_mm": 12.0, "axial_diameter_mm": 12.0,
             "centroid_mm": [-30.0, -20.0, 15.0], "segments": ["7"], "distances_mm": {}, "nearest_vessels": [],
             "capsule_distance_mm": 5.0, "not_segmented": []},
        ],
        "patient": {"lesion_count": 2, "organs_involved": ["liver"], "liver_volume_ml": 1500.0,
                    "future_liver_remnant": None,
                    "oligometastatic": {"status": "yes", "definition": "ESTRO/EORTC 2020", "missing": []}},
    }


def make_proposal() -> SimpleNamespace:
    case = make_case()
    return SimpleNamespace(case=case, measurements=make_measurements(), plan_json=make_plan_json(),
                           plans=make_plans(case))
