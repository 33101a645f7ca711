"""Thermal planners: the zone beside large vessels from the physics, board metric keys, bands."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import ndimage

from latplan.case.vocabulary import VESSEL_ROLES
from latplan.planning.applicators import zone_uncertainty_band
from tests.planning.helpers import centred_case


def _vessel_case():  # type: ignore[no-untyped-def]
    """Body ⊃ liver block ⊃ Ø 18 mm lesion, a Ø 6 mm vessel 6 mm beside it, 2 mm voxels."""
    n, h = 60, 2.0
    ax = np.arange(n) * h - n * h / 2
    kk, jj, ii = np.meshgrid(ax, ax, ax, indexing="ij")
    lab = np.ones((n, n, n), np.int16) * 4
    lab[(np.abs(kk) < 50) & (np.abs(jj) < 40) & (np.abs(ii) < 50)] = 1
    lab[(jj - 18) ** 2 + ii**2 <= 3.0**2] = 3
    lab[kk**2 + jj**2 + ii**2 <= 9.0**2] = 2
    lab[:, :, :2] = 0
    return centred_case(lab, h, {1: "liver", 2: "lesion_1", 3: "portal_vein", 4: "body"}, "SYN-V")


@pytest.fixture(scope="module")
def perivascular_plans():  # type: ignore[no-untyped-def]
    from latplan.anatomy import measure_case
    from latplan.phantom.demo import build_demo_case
    from latplan.planning.thermal import plan_mwa, plan_rfa

    case = build_demo_case("perivascular-rfa")
    meas = measure_case(case)
    return case, {"rfa": plan_rfa(case, "lesion_1", meas), "mwa": plan_mwa(case, "lesion_1", meas)}


def _large_lumen(case, zone):  # type: ignore[no-untyped-def]
    """Vessel voxels of the zone's crop whose inscribed diameter is ≥ 3 mm (an own EDT, not the planner's)."""
    lo = np.round(case.labels.mm_to_index(zone.index_to_mm(np.zeros(3)))).astype(int)
    crop = case.labels.array[tuple(slice(o, o + n) for o, n in zip(lo, zone.shape, strict=True))]
    vessel = np.isin(crop, [v for n in case.structure_names() if case.role(n) in VESSEL_ROLES
                            for v in case.label_table.values_for(n)])
    h = case.labels.spacing_kji_mm
    inside = ndimage.distance_transform_edt(np.pad(vessel, 1), sampling=h)[1:-1, 1:-1, 1:-1]
    return vessel & (2.0 * ndimage.maximum_filter(inside, size=5) >= 3.0)


@pytest.mark.slow
def test_perivascular_zone_spares_lumen_and_leaves_tumour_beside_the_vein(perivascular_plans) -> None:  # type: ignore[no-untyped-def]
    """Reference: Lu et al., AJR 2002;178:47-51 (RFA in vivo: vessels ≥ 3 mm adjacent to the tumour
    leave perivascular viable tumour; smaller vessels coagulate) and Yu et al. 2008 / Neizert 2022
    (MWA much less affected). Flowing blood in a vessel ≥ 3 mm is not coagulated: no zone voxel in
    its lumen (0 voxels, both modalities). The plan reports, per vessel ≥ 3 mm, the target left
    unablated within 5 mm of the wall and the tumour left viable there: on the perivascular demo
    case (Ø 10 mm portal vein 2 mm from the lesion) MWA leaves no viable tumour there, and the vein cuts the
    RFA zone back farther than the MWA zone (measured 2026-12-05, switched electrodes: 4.5 vs 2.8 mm; both ablate the tumour
    beside the vein once RFA's electrodes are sized on its in vivo zone — see the xfail below)."""
    case, plans = perivascular_plans
    rows = {}
    for name, p in plans.items():
        assert not np.any(p.zone.array & _large_lumen(case, p.zone)), name
        peri = {r["vessel"]: r for r in p.metrics["perivascular"]}
        assert "portal_vein" in peri and peri["portal_vein"]["lumen_in_zone_ml"] == 0.0
        # the calibre is the anatomy's one measurement (one calibre per vessel in plan.json)
        sink = next(v for v in p.metrics["heat_sink_vessels"] if v["name"] == "portal_vein")
        assert peri["portal_vein"]["calibre_mm"] == pytest.approx(sink["calibre_mm"])
        rows[name] = peri["portal_vein"]
    assert rows["mwa"]["viable_tumour_ml"] == 0.0
    assert rows["rfa"]["unablated_target_ml"] >= rows["mwa"]["unablated_target_ml"]
    assert plans["rfa"].metrics["heat_sink"]["cut_back_mm"] > plans["mwa"].metrics["heat_sink"]["cut_back_mm"]
    # the zone is the physics zone itself: no isolated islands cut out of a chart zone
    for p in plans.values():
        _, n_holes = ndimage.label(~p.zone.array & ndimage.binary_fill_holes(p.zone.array))
        assert n_holes == 0


@pytest.mark.slow
@pytest.mark.xfail(strict=True, reason=(
    "not reproduced once the RFA planner sizes its electrodes on the model's in vivo zone (2026-12-04): the "
    "former 0.04 ml viable beside the vein came from ONE electrode fitted on the 48.3 ml ex vivo chart whose "
    "in vivo zone (≈ 12 ml) missed the lesion everywhere, not from the vein. Now 3 electrodes fed in turn by one "
    "200 W generator (80.1 kJ, 9 roll-offs) ablate it (viable 0.0 ml, 0.02 ml of target unablated within 5 mm; "
    "margin 2.8 mm, bounded by the lumen; the vein cuts the zone back 4.5 mm, MWA 2.8 mm). "
    "Lu 2002's perivascular residue is a clinical rate (48 % vs 7 %), not a certainty for each geometry; the "
    "switching controller's dwell (30 s) is an assumption: 10 s gives a 2.8 mm cut-back "
    "(issue 14 [J] 1/2, docs/ablation-physics.md)"))
def test_perivascular_rfa_leaves_viable_tumour_beside_the_vein(perivascular_plans) -> None:  # type: ignore[no-untyped-def]
    """Reference: Lu et al., AJR 2002;178:47-51 (RFA in vivo: vessels ≥ 3 mm adjacent to the tumour
    leave perivascular viable tumour). Moved here from the test above (and the margin < 0 check
    from tests/planning/test_thermal_planners.py::test_planner_heat_sink_cuts_rfa_more_than_mwa):
    on the perivascular demo case (Ø 10 mm portal vein 2 mm from the lesion) RFA leaves viable
    tumour beside the vein (> 0 ml), its minimal margin is negative and the plan is not covered
    (measured 2026-12-02 with k(T) and the CT-measured liver perfusion: 0.04 ml viable within 5 mm
    of the vein, margin 2.8 → −2.0 mm, coverage 94.4 %; before, 0.0 ml: a strict xfail)."""
    _, plans = perivascular_plans
    row = next(r for r in plans["rfa"].metrics["perivascular"] if r["vessel"] == "portal_vein")
    assert row["viable_tumour_ml"] > 0.0
    assert plans["rfa"].metrics["min_margin_mm"] < 0 and not plans["rfa"].metrics["covered"]


@pytest.mark.slow
def test_board_metric_keys_and_bands(perivascular_plans) -> None:  # type: ignore[no-untyped-def]
    """Contract keys (CONTRACT.md "Cross-helper keys"): coverage of lesion + target margin, organs
    in the zone by role (segmented ones, 0 ml allowed) and the roles that could not be checked;
    the bands bracket the nominal zone volume and minimal margin."""
    _, plans = perivascular_plans
    for p in plans.values():
        m = p.metrics
        assert m["target_margin_mm"] == 5.0 and 0.0 <= m["target_coverage_percent"] <= m["coverage_percent"]
        lo, hi = m["zone_volume_range_ml"]
        assert lo <= m["zone_volume_ml"] <= hi and lo < hi
        mlo, mhi = m["min_margin_range_mm"]
        assert mlo <= m["min_margin_mm"] <= mhi
        assert all(v >= 0.0 for v in m["organ_volumes_in_zone_ml"].values())
        assert isinstance(m["unsegmented_organs"], list)
        assert not set(m["unsegmented_organs"]) & set(m["organ_volumes_in_zone_ml"])


def test_zone_band_of_a_sphere_matches_the_analytic_shells() -> None:
    """Reference: a sphere of radius R = 12 mm; its edge moved by ±f·R (f = 0.2) gives the volumes
    4/3 π (R(1 ± f))³ and, around a concentric lesion of radius 6 mm, minimal margins that differ
    from the nominal one by ∓ f·R. Tolerance: 5 % in volume and one voxel (1 mm) in margin."""
    n, h, r, rl, f = 41, 1.0, 12.0, 6.0, 0.2
    ax = np.arange(n) * h - 20.0
    kk, jj, ii = np.meshgrid(ax, ax, ax, indexing="ij")
    rr = np.sqrt(kk**2 + jj**2 + ii**2)
    vols, margins = zone_uncertainty_band(rr <= r, rr <= rl, (h, h, h), f)
    for v, rad in zip(vols, (r * (1 - f), r * (1 + f)), strict=True):
        assert v == pytest.approx(4.0 / 3.0 * math.pi * rad**3 / 1000.0, rel=0.05)
    from latplan.physics.margins import ablative_margin_arrays

    nominal = ablative_margin_arrays(rr <= rl, rr <= r, np.array([h, h, h])).min_margin_mm
    assert nominal - margins[0] == pytest.approx(f * r, abs=1.0)
    assert margins[1] - nominal == pytest.approx(f * r, abs=1.0)


@pytest.mark.slow
def test_mwa_margin_towards_a_6mm_vessel_comes_from_the_physics() -> None:
    """Reference: Lu et al., AJR 2002;178:47 and Yu et al., J Vasc Interv Radiol 2008;19:1087 — with
    MWA the thermal injury reached the wall of the hepatic vein in every section, the margin being
    concavely distorted in 39 % of them (more for larger veins): the vessel still cools (less so
    with MWA, but not none). Synthetic case: Ø 6 mm vessel 6 mm from an 18 mm lesion, 2 mm voxels.
    The chart zone reaches the vessel wall (margin ≥ 5 mm); the physics zone with the vessel is
    smaller than without it and its margin is at most the chart's; the lumen is never in either
    zone. (Formerly asserted: the physics zone stops one voxel short of the wall, margin < 5 mm —
    an effect of the grid-dependent wall heat transfer, ≈ 2× Chato's film value at 1 mm; with the
    boundary-layer wall (data file vessels.wall_nusselt) the MWA zone reaches the wall, as Yu 2008.)"""
    from latplan.planning.thermal import plan_mwa

    case = _vessel_case()
    chart = plan_mwa(case, "lesion_1", None, target_margin_mm=5.0, heat_sink_check=False)
    phys = plan_mwa(case, "lesion_1", None, target_margin_mm=5.0)
    assert chart.metrics["covered"] and chart.metrics["min_margin_mm"] >= 5.0
    hs = phys.metrics["heat_sink"]
    assert hs["min_margin_without_heat_sink_mm"] == pytest.approx(chart.metrics["min_margin_mm"])
    assert hs["simulated_zone_ml_with_vessels"] < hs["simulated_zone_ml_without_vessels"]
    assert phys.metrics["min_margin_mm"] <= hs["min_margin_without_heat_sink_mm"]
    for p in (chart, phys):
        assert not np.any(p.zone.array & _large_lumen(case, p.zone))
