"""Tests of the thermal and electroporation planners (latplan.planning.thermal / .electroporation)."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest

from latplan.case import Case
from latplan.planning.electroporation import plan_ect
from latplan.planning.thermal import plan_cryo, plan_mwa, plan_rfa
from tests.planning.helpers import cut_along_i, synthetic_thermal_case

THERMAL_KEYS = {"min_margin_mm", "coverage_percent", "applicator_count", "covered", "heat_sink_vessels",
                "collateral_structures", "reason"}


def test_planner_mwa_metrics_and_margin_parameter() -> None:
    """Plan contract: metric keys of plan.json, JSON-serialisable summary, the chart caveat;
    a 10 mm target margin (RAS-mutant colorectal) needs a larger zone than 5 mm. The chart zone
    (heat-sink check off): with the check, the physics zone stops a voxel short of the 6 mm vessel
    6 mm from the lesion and the 5 mm margin towards it is not met (tests/planning/test_thermal.py)."""
    case = synthetic_thermal_case()
    p5 = plan_mwa(case, "lesion_1", None, target_margin_mm=5.0, heat_sink_check=False)
    p10 = plan_mwa(case, "lesion_1", None, target_margin_mm=10.0, heat_sink_check=False)
    assert THERMAL_KEYS <= set(p5.metrics)
    json.dumps(p5.summary())
    assert any("over-estimate" in c for c in p5.caveats)
    assert p5.metrics["covered"] and p5.metrics["min_margin_mm"] >= 5.0
    assert p5.metrics["coverage_percent"] == pytest.approx(100.0)
    assert p10.metrics["zone_volume_ml"] > p5.metrics["zone_volume_ml"]
    assert p5.applicators[0]["type"] == "mwa" and "power_w" in p5.applicators[0]["settings"]
    assert p5.zone is not None and p5.zone.array.any()
    # the 6 mm vessel 6 mm from the lesion is reported as a heat sink
    names = [v["name"] for v in p5.metrics["heat_sink_vessels"]]
    assert "portal_vein" in names
    assert set(p5.margin_histogram) == {"<0", "0-5", ">=5"}


def test_planner_rfa_cryo_onsynthetic_thermal_case() -> None:
    """RFA reports the heat sink in its caveats; cryo lists every probe as an applicator."""
    case = synthetic_thermal_case()
    rfa = plan_rfa(case, "lesion_1")
    assert any("heat sink" in c for c in rfa.caveats)
    cryo = plan_cryo(case, "lesion_1")
    assert cryo.metrics["applicator_count"] == len(cryo.applicators)
    assert all(a["type"] == "cryo" for a in cryo.applicators)


def test_planner_ect_small_lesion() -> None:
    """ECT plan contract: one applicator per needle, one voltage per pulsed pair, a monotonic
    coverage curve, the field grid and a JSON-serialisable summary."""
    case = synthetic_thermal_case(lesion_radius_mm=5.0)
    p = plan_ect(case, "lesion_1", target_margin_mm=2.0, iterations=2)
    curve = p.metrics["coverage_curve"]["coverage_percent"]
    assert all(a >= b for a, b in itertools.pairwise(curve))
    assert p.field_v_per_cm is not None and p.metrics["applicator_count"] == len(p.applicators) >= 2
    assert len(p.metrics["voltages_v"]) == len(p.metrics["pairs"]) >= 1
    assert {"min_margin_mm", "coverage_percent", "covered"} <= set(p.metrics)
    json.dumps(p.summary())


@pytest.mark.slow
def test_planner_demo_seg6_one_mwa_antenna_covers_with_5mm() -> None:
    """Issue 4 demo check: the 1.8 cm segment VI lesion (demo case seg6-peripheral-18mm)
    is covered with ≥ 5 mm margin by one MWA antenna."""
    from latplan.phantom.demo import build_demo_case

    case = build_demo_case("seg6-peripheral-18mm")
    p = plan_mwa(case, case.lesion_ids[0], None, target_margin_mm=5.0)
    assert p.metrics["covered"] is True
    assert p.metrics["applicator_count"] == 1
    assert p.metrics["min_margin_mm"] >= 5.0
    assert p.metrics["trajectory_safe"] is True


@pytest.mark.slow
def test_planner_demo_large_lesion_not_one_rfa_electrode() -> None:
    """Issue 4 demo check: the 6 cm lesion (demo case large-60mm) cannot be covered by one
    RFA electrode, and the output says so."""
    from latplan.phantom.demo import build_demo_case

    case = build_demo_case("large-60mm")
    p = plan_rfa(case, case.lesion_ids[0], None, target_margin_mm=5.0)
    assert p.metrics["single_applicator_covers"] is False
    assert "one RFA electrode cannot cover" in p.metrics["reason"]


@pytest.mark.slow  # ≥ 5 CPU s (tests/support/ci_schedule.py): runs in make test / CI, not in make test-fast
def test_planner_heat_sink_cuts_rfa_more_than_mwa() -> None:
    """Reference: Lu et al., AJR 2002;178:47 (PMID 11756085) / seed (Kovács 2021) — RFA suffers most from the heat sink of vessels ≥ 3 mm (heat
    sink in 73 % of veins > 3 mm), MWA much less. On the perivascular demo case (Ø 10 mm portal
    vein 2 mm from the lesion) the planners run the Pennes engine with and without the vessels
    and the zone is the calibrated physics zone with the vessels (it wraps around the vein, no
    islands); what only the vessel-free run ablates within 5 mm of the large vessel is drawn as
    lost; the zone is cut back beside the vein more for RFA than for MWA (≥ 2 mm; the margin never rises
    with the vessels). RFA's "before" is the model's own vessel-free in vivo zone, so the comparison is
    the vein's effect alone (before 2026-12-04 it was the ex vivo chart, and the "heat-sink" margin drop
    was mostly the ex vivo → in vivo difference). Without the check the MWA plan is the chart zone
    (lumen of vessels ≥ 3 mm excluded in both)."""
    from latplan.anatomy import measure_case
    from latplan.phantom.demo import build_demo_case

    case = build_demo_case("perivascular-rfa")
    meas = measure_case(case)
    drops = {}
    for name, planner in (("rfa", plan_rfa), ("mwa", plan_mwa)):
        p = planner(case, "lesion_1", meas)
        hs = p.metrics["heat_sink"]
        assert hs["vessels"][0]["name"] == "portal_vein"
        assert hs["min_margin_with_heat_sink_mm"] <= hs["min_margin_without_heat_sink_mm"]
        assert p.metrics["min_margin_mm"] == pytest.approx(hs["min_margin_with_heat_sink_mm"])
        assert hs["simulated_zone_ml_with_vessels"] < hs["simulated_zone_ml_without_vessels"]
        assert p.heat_sink_lost is not None and p.heat_sink_lost.array.any()
        # what the sink removes is no longer in the predicted zone, and it lies beside the portal vein
        assert not np.any(p.heat_sink_lost.array & p.zone.array)
        # independent of the planner's calibre rule: every lost voxel lies within the 5 mm reach
        # (+ one voxel) of some vessel voxel of the label map
        from scipy import ndimage

        from latplan.case.vocabulary import VESSEL_ROLES

        lost = p.heat_sink_lost
        lo = np.round(case.labels.mm_to_index(lost.index_to_mm(np.zeros(3)))).astype(int)
        crop = case.labels.array[tuple(slice(o, o + n) for o, n in zip(lo, lost.shape, strict=True))]
        vessels = np.isin(crop, [v for n in case.structure_names() if case.role(n) in VESSEL_ROLES
                                 for v in case.label_table.values_for(n)])
        d = ndimage.distance_transform_edt(~vessels, sampling=case.labels.spacing_kji_mm)
        assert d[lost.array].max() <= 5.0 + float(case.labels.spacing_kji_mm.max())
        drops[name] = float(hs["cut_back_mm"])
        plain = planner(case, "lesion_1", meas, heat_sink_check=False)
        assert "heat_sink" not in plain.metrics and plain.heat_sink_lost is None
        if name == "mwa":  # MWA: "before" is the chart zone, the plan without the check
            assert plain.metrics["min_margin_mm"] == pytest.approx(hs["min_margin_without_heat_sink_mm"])
    # the margin itself is bounded by the lumen here (2 mm from the lesion, never ablated) for both, so the
    # sink shows as the zone cut back beside the vein: measured 2026-12-05 RFA 4.5 mm (3 switched electrodes sized on the
    # in vivo zone) vs MWA 2.8 mm (before: a margin drop from the ex vivo chart to the in vivo model, not the vein's)
    assert drops["rfa"] >= 2.0 and drops["rfa"] > drops["mwa"]
    rfa = plan_rfa(case, "lesion_1", meas)
    # "margin < 0 and not covered" moved to tests/planning/test_thermal.py::
    # test_perivascular_rfa_leaves_viable_tumour_beside_the_vein (xfail: not reproduced by the
    # grid-converged RFA model, margin 0.0 mm); the plan still misses the 5 mm target margin
    assert not rfa.metrics["covered"]
    assert "heat sink: the portal vein" in rfa.metrics["reason"]


def test_planner_no_heat_sink_check_without_large_vessel() -> None:
    """No vessel ≥ 3 mm within 10 mm → no Pennes comparison run, no heat-sink entry."""
    case = synthetic_thermal_case()
    lab = case.labels.array.copy()
    lab[lab == 3] = 1  # the portal vein becomes liver
    case2 = Case(case.patient, case.image, case.labels.with_array(lab), case.label_table)
    p = plan_mwa(case2, "lesion_1")
    assert "heat_sink" not in p.metrics and p.heat_sink_lost is None


@pytest.mark.parametrize("plan", [plan_mwa, plan_rfa, plan_cryo], ids=["mwa", "rfa", "cryo"])
def test_planner_thermal_target_past_the_image_edge_is_fov_limited(plan) -> None:  # type: ignore[no-untyped-def]
    """Found on a real CT (TotalSegmentator example, a 25 mm lesion 9 mm below the scan's top face): the MWA
    zone was clipped by the image and its margin read off the part shown ("8.5 mm, reaches"). Reference: the
    crop geometry — the image face 2 voxels (4 mm) past the lesion, the 5 mm target passes it by 5 − 4 =
    1.0 mm (exact, voxel boundaries); the zone reaches the face, so it is cut there. The plan says so
    (``fov_limited``, the face named from the affine: +i is patient left), the margin is the uncut scan's
    (second reference: the same plan on the whole image), and the board's target is "uncertain" with the
    condition in words; the uncut case is not FOV-limited (0.0 mm)."""
    from latplan.board.targets import judge

    whole = synthetic_thermal_case()
    cut = cut_along_i(whole, 2)
    kw = {} if plan is plan_cryo else {"heat_sink_check": False}
    m = plan(cut, "lesion_1", None, target_margin_mm=5.0, **kw).metrics
    assert m["fov_limited"] is True and m["fov_limited_faces"] == ["left (i = last slice)"]
    assert m["fov_extension_mm"] == pytest.approx(1.0, abs=1e-9)
    assert m["fov_zone_cut_faces"] == ["left (i = last slice)"]
    assert "conditional — field of view" in m["reason"] and "1 mm beyond the left" in m["fov_limited_note"]
    ok = plan(whole, "lesion_1", None, target_margin_mm=5.0, **kw).metrics
    assert ok["fov_limited"] is False and ok["fov_limited_faces"] == [] and ok["fov_extension_mm"] == 0.0
    assert ok["fov_limited_note"] == ""
    # the image face is not the zone's edge: the margin (and its band) is the uncut scan's, exactly (the chart
    # zone continues past the face analytically), not the 4 mm gap to the face; the board calls it uncertain
    assert m["min_margin_mm"] == ok["min_margin_mm"]
    if plan is plan_rfa:  # three grown in vivo zones meet the face: the band's ends within one voxel (1.5 mm)
        assert m["min_margin_range_mm"] == pytest.approx(ok["min_margin_range_mm"], abs=1.5)
    else:
        assert m["min_margin_range_mm"] == ok["min_margin_range_mm"]
    j = judge(plan.__name__.removeprefix("plan_"), m, 5.0)
    assert j.fov_limited is not None
    assert j.status == "uncertain"
    if plan is plan_rfa:
        # RFA sizes on its in vivo zone (22 mm across per electrode): 3 electrodes reach 2.8 mm nominal here, the
        # 5 mm only at the band's optimistic end; still "uncertain", the field-of-view condition still named
        assert m["min_margin_mm"] < 5.0 <= m["min_margin_range_mm"][1]
    else:
        assert m["min_margin_mm"] >= 5.0
    assert "1 mm past the image edge (left (i = last slice))" in j.fov_limited
