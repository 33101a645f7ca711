"""Y-90 by the EANM 2022 guideline (Weber et al., EJNMMI 49:1682, 2022; issue [K] item 8): BSA method for resin
spheres (SIR-Spheres IFU formula, DuBois BSA), MIRD single compartment and partition for glass and resin, targets
by tumour and sphere type, segmentectomy intent, cirrhosis limit, unknown lung shunt → cannot assess."""

from __future__ import annotations

import pytest
from rad_case_helpers import make_case

from latplan.case import Case, Patient
from latplan.errors import InvalidInputError
from latplan.physics import y90
from latplan.planning.tare import plan_tare


def test_dubois_bsa_and_bsa_activity_hand_computed() -> None:
    """DuBois 1916: 175 cm, 70 kg → 0.007184·70^0.425·175^0.725 = 1.8481 m² (hand, 1e-4); BSA activity
    (BSA − 0.2) + V_T/V_L = 1.8481 − 0.2 + 100/1600 = 1.7106 GBq; right lobe 60 % → × 0.6 = 1.0264 GBq."""
    bsa = y90.body_surface_area_m2(175.0, 70.0)
    assert bsa == pytest.approx(1.8481, abs=1e-4)
    assert y90.bsa_activity_gbq(bsa, 100.0, 1600.0) == pytest.approx(bsa - 0.2 + 0.0625, rel=1e-12)
    assert y90.bsa_activity_gbq(bsa, 100.0, 1600.0, 960.0) == pytest.approx((bsa - 0.2 + 0.0625) * 0.6, rel=1e-12)
    with pytest.raises(InvalidInputError, match="tumour volume"):
        y90.bsa_activity_gbq(bsa, 2000.0, 1600.0)


def _case(primary: str, cirrhosis: bool | None = None) -> Case:
    c = make_case()
    return Case(Patient(id="y1", primary=primary, cirrhosis=cirrhosis), c.image, c.labels, c.label_table)


def test_unknown_lung_shunt_cannot_be_assessed() -> None:
    """No MAA scan: no activity is proposed (never LSF = 0) and the plan says it cannot be assessed."""
    p = plan_tare(_case("colorectal"), ["lesion_1"])
    assert p.metrics["activity_gbq"] is None and p.metrics["assessable"] is False
    assert p.metrics["limiting"] == "lung_shunt_unknown"
    assert p.metrics["lung_shunt_fraction"] is None
    assert any("MAA" in c for c in p.caveats)


def test_bsa_plan_resin() -> None:
    """Resin, BSA method on the phantom: activity = ((BSA − 0.2) + V_T/V_L) × V_perf/V_L (IFU formula, with the
    phantom's volumes from the plan; 1e-3 rounding)."""
    p = plan_tare(_case("colorectal", False), ["lesion_1"], lung_shunt_fraction=0.05, sphere="resin",
                  height_cm=175.0, weight_kg=70.0, perfusion="lobe")
    m = p.metrics
    assert m["method"] == "bsa" and m["sphere"] == "resin" and m["intent"] == "lobar"
    c = make_case()
    liver_ml = (c.mask_array("liver_segment_7") | c.mask_array("liver_segment_8") | c.mask_array("lesion_1")).sum() * 0.008
    tum_ml = c.mask_array("lesion_1").sum() * 0.008
    expected = (1.8481 - 0.2 + tum_ml / liver_ml) * m["perfused_volume_ml"] / liver_ml
    assert m["activity_gbq"] == pytest.approx(expected, rel=2e-3)
    with pytest.raises(InvalidInputError, match="resin"):
        plan_tare(_case("colorectal"), ["lesion_1"], lung_shunt_fraction=0.05, sphere="glass", method="bsa",
                  height_cm=175.0, weight_kg=70.0)


def test_targets_by_sphere_tumour_type_and_cirrhosis() -> None:
    """Partition model: HCC + glass → tumour goal 205 Gy (DOSISPHERE-01, Garin 2021); HCC + resin → 120 Gy
    (Levillain 2021); the normal-liver limit falls with cirrhosis (resin 70 → 40 Gy, Levillain 2021/Kao 2012);
    unknown cirrhosis → the cirrhotic limit; TN ratio holds D_T = TN·D_N (partition formula)."""
    g = plan_tare(_case("hcc", False), ["lesion_1"], lung_shunt_fraction=0.05, tumour_to_normal_ratio=3.0, sphere="glass")
    assert g.metrics["method"] == "partition" and g.metrics["tumour_goal_gy"] == 205.0
    r = plan_tare(_case("hcc", False), ["lesion_1"], lung_shunt_fraction=0.05, tumour_to_normal_ratio=3.0, sphere="resin")
    assert r.metrics["tumour_goal_gy"] == 120.0 and r.metrics["normal_liver_limit_gy"] == 70.0
    rc = plan_tare(_case("hcc", True), ["lesion_1"], lung_shunt_fraction=0.05, tumour_to_normal_ratio=3.0, sphere="resin")
    assert rc.metrics["normal_liver_limit_gy"] == 40.0
    ru = plan_tare(_case("hcc", None), ["lesion_1"], lung_shunt_fraction=0.05, tumour_to_normal_ratio=3.0, sphere="resin")
    assert ru.metrics["normal_liver_limit_gy"] == 40.0 and any("cirrhosis status unknown" in c for c in ru.caveats)
    assert rc.metrics["normal_liver_dose_gy"] <= 40.0 + 0.05
    assert rc.metrics["tumour_dose_gy"] == pytest.approx(3.0 * rc.metrics["normal_liver_dose_gy"], rel=2e-3)


def test_segmentectomy_intent_mird() -> None:
    """Glass segmentectomy (≤ 2 segments perfused): MIRD perfused dose goal 400 Gy (Salem 2019), A = D·M/50 with
    M = perfused volume × 1.03 g/ml; lobar glass MIRD uses 120 Gy."""
    p = plan_tare(_case("hcc", False), ["lesion_1"], lung_shunt_fraction=0.02, sphere="glass", method="mird")
    m = p.metrics
    assert m["intent"] == "segmentectomy" and m["target_dose_gy"] == 400.0
    assert m["activity_gbq"] == pytest.approx(400 * m["perfused_volume_ml"] * 1.03e-3 / (50 * 0.98), rel=2e-3)
    lob = plan_tare(_case("hcc", False), ["lesion_1"], lung_shunt_fraction=0.02, sphere="glass", method="mird",
                    intent="lobar")
    assert lob.metrics["target_dose_gy"] == 120.0
