"""Heat sink of a Ø 5 mm vessel 5 mm from the applicator, RFA against MWA, through the planners
(the path a plan takes: chart placement → Pennes runs with and without the vessels on the case →
``metrics["heat_sink"]``). Issue 14 [J] 3."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage
from scipy.stats import binomtest

from latplan.case import Case
from tests.planning.helpers import centred_case

VESSEL_AXIS_MM = 5.0       # vessel axis from the lesion centre (the applicator passes through it)
VESSEL_CALIBRE_MM = 5.0
#: Yu et al., J Vasc Interv Radiol 2008;19:1087 (in vivo porcine MWA, 45 W, 5–10 min, within 1 cm of
#: hepatic veins, sections every 0.5 cm): injury reached the vein wall around the whole circumference,
#: without distortion of the margin, in 27 of 48 sections beside medium (3–6 mm) veins
YU_MEDIUM_UNDISTORTED, YU_MEDIUM_SECTIONS = 27, 48
#: tissue within this distance of the lumen counts as the vein wall (one 1.5 mm case voxel, rounded up)
WALL_MM = 1.6


def _vessel_beside_the_applicator_case() -> Case:
    """Body ⊃ liver ⊃ Ø 12 mm lesion at the origin; a Ø 5 mm vessel parallel to x (the only free
    skin is the −x face, so the path runs along x), its axis 5 mm from the lesion centre (it
    indents the lesion, as a tumour abutting a vein); 1.5 mm voxels."""
    n, h = 80, 1.5
    ax = np.arange(n) * h - n * h / 2
    kk, jj, ii = np.meshgrid(ax, ax, ax, indexing="ij")
    lab = np.ones((n, n, n), np.int16) * 4
    lab[(np.abs(kk) < 50) & (np.abs(jj) < 50) & (ii > -45)] = 1
    lab[kk**2 + jj**2 + ii**2 <= 6.0**2] = 2
    lab[((jj - VESSEL_AXIS_MM) ** 2 + kk**2 <= (VESSEL_CALIBRE_MM / 2) ** 2) & (ii > -35)] = 3
    lab[:, :, :3] = 0
    return centred_case(lab, h, {1: "liver", 2: "lesion_1", 3: "portal_vein", 4: "body"}, "SYN-HS5")


@pytest.fixture(scope="module")
def plans():  # type: ignore[no-untyped-def]
    from latplan.planning.thermal import plan_mwa, plan_rfa

    case = _vessel_beside_the_applicator_case()
    # one applicator each: the set-up is "the vessel 5 mm from the applicator" (the RFA planner, sizing on the
    # in vivo zone, would otherwise add a second electrode for this 22 mm target)
    return case, {"rfa": plan_rfa(case, "lesion_1", None, max_applicators=1),
                  "mwa": plan_mwa(case, "lesion_1", None, max_applicators=1)}


def _vein_wall(case: Case) -> np.ndarray:
    """Vein-wall tissue: within ``WALL_MM`` of the lumen, on the case grid."""
    lumen = case.labels.array == 3
    out: np.ndarray = ~lumen & (ndimage.distance_transform_edt(~lumen, sampling=case.labels.spacing_kji_mm) <= WALL_MM)
    return out


def _undistorted_section_fraction(case: Case, plan) -> tuple[int, int]:  # type: ignore[no-untyped-def]
    """(sections without perivascular loss, sections where the vessel-free zone meets the vein wall):
    case-grid slices across the vessel (x = const); a section is distorted when any wall voxel there
    is tissue the vessel removed from the zone (``plan.heat_sink_lost``)."""
    wall = _vein_wall(case)
    zone, lost = plan.zone.array, plan.heat_sink_lost.array
    assert zone.shape == wall.shape                      # the plan's zone is on the case grid
    met = [i for i in range(wall.shape[2]) if np.sum(wall[:, :, i] & (zone | lost)[:, :, i]) >= 3]
    return sum(not np.any(wall[:, :, i] & lost[:, :, i]) for i in met), len(met)


def _cut_back_mm(plan) -> float:  # type: ignore[no-untyped-def]
    hs = plan.metrics["heat_sink"]
    assert hs["vessels"][0]["name"] == "portal_vein"
    return float(hs["cut_back_mm"])


@pytest.mark.slow
def test_heat_sink_5mm_vessel_5mm_from_applicator_both_modalities(plans) -> None:  # type: ignore[no-untyped-def]
    """Reference: Yu et al., J Vasc Interv Radiol 2008;19:1087 (in vivo MWA beside hepatic veins:
    concave distortion of the margin in 39 % of sections, more for larger veins) and Lu et al., AJR
    2002;178:47 (RFA: vessels ≥ 3 mm cut the zone back). Set-up check: the applicator passes within
    1 mm of the lesion centre, so the vessel axis lies 5 ± 1 mm from it. Both modalities: the vessel
    cuts the physics zone back (cut-back > 0, lost tissue drawn), the lumen of the vessel is never in
    the zone, and RFA is cut back more than MWA."""
    case, ps = plans
    cuts = {}
    for name, p in ps.items():
        a = p.applicators[0]
        tip, d = np.asarray(a["tip_mm"], float), np.asarray(a["direction"], float)
        d /= np.linalg.norm(d)
        off = -tip - np.dot(-tip, d) * d                    # lesion centre (origin) to the applicator line
        assert np.linalg.norm(off) <= 1.0, (name, off)
        cuts[name] = _cut_back_mm(p)
        assert cuts[name] > 0.0 and p.heat_sink_lost is not None and p.heat_sink_lost.array.any()
        lo = np.round(case.labels.mm_to_index(p.zone.index_to_mm(np.zeros(3)))).astype(int)
        crop = case.labels.array[tuple(slice(o, o + n) for o, n in zip(lo, p.zone.shape, strict=True))]
        assert not np.any(p.zone.array & (crop == 3)), name
    assert cuts["rfa"] > cuts["mwa"], cuts


@pytest.mark.slow
@pytest.mark.xfail(strict=True, reason=(
    "issue 14 [J] 3 goal not reached on the planner path (removed when [J] 3 is met). Measured 2026-12-02 "
    "(main 337090c, electro-thermal RFA, interim MWA η, wall film Nu 3.66): cut-back RFA 6.5 mm vs MWA 5.2 mm. "
    "The MWA cut-back is the whole 5 mm shell behind the vessel (the lost region is counted within "
    "HEAT_SINK_REACH_MM = 5 mm of the wall): "
    "5.2 mm with the interim η, 5.2 with the ex vivo calibration + cooled shaft, 5.4 without the shaft, "
    "so ≥ 2× needs RFA ≥ 10.4 mm, i.e. a zone pulled back > 5 mm off the near wall as well "
    "(docs/ablation-physics.md, 'Heat sink, MWA side'). Removed by issue [J] 14 part 3 (MWA heat sink from the physics)."))
def test_heat_sink_rfa_cut_back_at_least_twice_mwa(plans) -> None:  # type: ignore[no-untyped-def]
    """Reference: Primavesi et al., Oncol Lett 2018;15:2913 (online Dec 2017) (perfused porcine liver: significant
    heat-sink effect for RFA, none for MWA) and Yu et al. 2008 (MWA injury reached the vein wall all
    around in 63 of 103 sections, 61 %). Goal of issue 14 [J] 3: a Ø 5 mm vessel 5 mm from the applicator cuts the RFA zone
    back at least twice as far as the MWA zone (cut-back as the plan reports it)."""
    _, ps = plans
    rfa, mwa = _cut_back_mm(ps["rfa"]), _cut_back_mm(ps["mwa"])
    assert rfa >= 2.0 * mwa, (rfa, mwa)


@pytest.mark.slow
@pytest.mark.xfail(strict=True, reason=(
    "the model's MWA heat sink is stronger than Yu 2008's: measured 2026-12-02, 0 of 17 sections (1.5 mm) "
    "without perivascular loss beside the Ø 5 mm vessel (the zone does not close behind the vessel: 1.8 % "
    "of the absorbed power is deposited there directly, 5.8 % in the lumen); published 27/48 for 3–6 mm veins; "
    "physics level with Yu's 45 W for 300/600 s: 0 %/26 % (docs). Caveat: this vessel runs along the antenna "
    "through the whole zone, a worst case against Yu's veins within 1 cm in any orientation "
    "(docs/ablation-physics.md, 'Heat sink, MWA side'). Removed by issue [J] 14 part 3 (MWA heat sink from the physics)."))
def test_mwa_sections_without_perivascular_distortion_match_yu_2008(plans) -> None:  # type: ignore[no-untyped-def]
    """Reference: Yu et al., J Vasc Interv Radiol 2008;19:1087 (in vivo porcine MWA at 45 W for 5–10 min
    within 1 cm of hepatic veins; histology every 0.5 cm): beside medium (3–6 mm) veins the injury reached
    the vein wall around the whole circumference without distortion of the margin in 27 of 48 sections
    (56 %). Tolerance: the Wilson 95 % interval of 27/48, lower bound 42 %. The MWA plan beside the Ø 5 mm
    vessel (45 W / 240 s, the chart row the planner picks): the share of sections across the vessel,
    where the vessel-free zone meets the wall, in which no wall tissue was lost to the vessel."""
    case, ps = plans
    undistorted, sections = _undistorted_section_fraction(case, ps["mwa"])
    lower = binomtest(YU_MEDIUM_UNDISTORTED, YU_MEDIUM_SECTIONS).proportion_ci(0.95, method="wilson").low
    assert sections >= 3
    assert undistorted / sections >= lower, (undistorted, sections, round(float(lower), 3))
