"""Heat sink of a Ø 5 mm vessel 5 mm from the applicator, RFA against MWA, through the planners
(the path a plan takes: chart placement → Pennes runs with and without the vessels on the case →
``metrics["heat_sink"]``). Issue 14 [J] 3."""

from __future__ import annotations

import numpy as np
import pytest

from latplan.case import Case
from tests.planning.helpers import centred_case

VESSEL_AXIS_MM = 5.0       # vessel axis from the lesion centre (the applicator passes through it)
VESSEL_CALIBRE_MM = 5.0


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
    return case, {"rfa": plan_rfa(case, "lesion_1", None), "mwa": plan_mwa(case, "lesion_1", None)}


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
    "issue 14 [J] 3 goal not reached on the planner path (still failing with the electro-thermal RFA now in the "
    "planner; removed when [J] 3 is met). Measured on s3/mwa (former analytic RFA source, "
    "boundary-layer vessel wall): cut-back RFA 7.0 mm vs MWA 5.2 mm (planner's interim MWA η); with the "
    "ex vivo-calibrated MWA (no wall film) 8.7 vs 6.2 mm. Both zone edges are conduction-driven beside "
    "the vessel: the model's MWA deposits too little power beyond it (docs/ablation-physics.md, "
    "'MWA in the planner'). The physics-level RFA > MWA test (tests/physics/test_bioheat.py, by calibre) passes"))
def test_heat_sink_rfa_cut_back_at_least_twice_mwa(plans) -> None:  # type: ignore[no-untyped-def]
    """Reference: Primavesi et al., Oncol Lett 2018;15:2913 (online Dec 2017) (perfused porcine liver: significant
    heat-sink effect for RFA, none for MWA) and Yu et al. 2008 (MWA injury reached the vein wall in
    every section). Goal of issue 14 [J] 3: a Ø 5 mm vessel 5 mm from the applicator cuts the RFA zone
    back at least twice as far as the MWA zone (cut-back as the plan reports it)."""
    _, ps = plans
    rfa, mwa = _cut_back_mm(ps["rfa"]), _cut_back_mm(ps["mwa"])
    assert rfa >= 2.0 * mwa, (rfa, mwa)
