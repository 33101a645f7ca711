"""Electroporation: needle representation on coarse grids, solver options, and ECT/IRE planning
with voltage escalation within the generator limits (latplan.physics / latplan.planning.electroporation)."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from latplan.physics import electroporation as ep
from latplan.planning.electroporation import (
    LAYOUTS,
    layout_offsets_mm,
    plan_ect,
    plan_electroporation,
    plan_ire,
)

CONST = ep.ElectroTissue("const", 0.2, 0.2, 1e9, 1e9)


@pytest.mark.parametrize("h_mm", [2.0, 1.0])
def test_field_thin_needle_matches_two_cylinder_solution_on_coarse_grids(h_mm: float) -> None:
    """Reference: two parallel cylinders (radius a = 0.6 mm, centres d = 20 mm apart, voltage U) in
    a homogeneous medium, 2-D: E(midpoint) = U / (b · arccosh(d / 2a)), b = √((d/2)² − a²)
    (image line charges). The needle is one voxel line on both grids (a < h); with the sub-voxel
    face correction the midpoint field at the *given voltage* is within 4 % (measured +2.5 % at
    2 mm, +0.6 % at 1 mm; a plain Dirichlet voxel line gives −8 % and −23 %)."""
    d, a, u = 20.0, 0.6, 2000.0
    n = round(200.0 / h_mm) + 1
    c = (n // 2) * h_mm
    lab = np.zeros((1, n, n), np.int64)
    needles = [ep.Needle((5.0, c + s * d / 2, c), (1.0, 0.0, 0.0), 10.0, a) for s in (1, -1)]
    assert all(ep.electrode_voxels(lab.shape, (1.0, h_mm, h_mm), nd).mask.sum() == 1 for nd in needles)
    res = ep.solve_field(lab, [CONST], (1.0, h_mm, h_mm), needles, [(0, 1)], u, iterations=1)
    b = math.sqrt((d / 2) ** 2 - a * a)
    exact = u / (b / 10.0 * math.acosh(d / (2 * a)))
    assert res.field_v_per_cm[0, n // 2, n // 2] == pytest.approx(exact, rel=0.04)


def _tumour_problem() -> tuple[np.ndarray, list[ep.Needle], list[ep.ElectroTissue]]:
    t = ep.default_electro_tissues()
    n, h = 25, 2.0
    lab = np.zeros((n, n, n), np.int64)
    kk, jj, ii = np.meshgrid(*(np.arange(n) * h - 24.0,) * 3, indexing="ij")
    lab[kk**2 + jj**2 + ii**2 <= 8.0**2] = 1
    needles = ep.hexagonal_array((24.0, 24.0, 24.0), (1.0, 0.2, 0.1), 10.0, active_length_mm=16.0)
    return lab, needles, [t["liver"], t["tumour"]]


def test_field_solver_options_agree() -> None:
    """Reference: the same problem solved with the diagonal (Jacobi) preconditioner at a tight
    tolerance (1e-10). MIC(0) at the default 1e-6 changes the field < 0.1 % where it is ≥ 50 V/cm;
    one or two worker threads give bit-identical results (each pair is solved serially)."""
    lab, needles, tissues = _tumour_problem()
    kw = {"voltage_to_distance_v_per_cm": 1000.0, "iterations": 2}
    ref = ep.solve_field(lab, tissues, (2.0,) * 3, needles, preconditioner="jacobi", rtol=1e-10, **kw)
    one = ep.solve_field(lab, tissues, (2.0,) * 3, needles, workers=1, **kw)
    two = ep.solve_field(lab, tissues, (2.0,) * 3, needles, workers=2, **kw)
    sel = ref.field_v_per_cm >= 50.0
    assert np.max(np.abs(one.field_v_per_cm[sel] / ref.field_v_per_cm[sel] - 1.0)) < 1e-3
    assert np.array_equal(one.field_v_per_cm, two.field_v_per_cm) and one.currents_a == two.currents_a
    assert one.info["cg_iterations"] < ref.info["cg_iterations"]


def test_planner_layouts_pair_distances() -> None:
    """Geometry of the layouts: neighbour spacing as given (pentagon/hexagon: centre to outer
    needle), square diagonals √2·s, pentagon rim 2·s·sin 36°, hexagon rim = s (12 pairs)."""
    s = 20.0
    for lay in LAYOUTS:
        off, pairs = layout_offsets_mm(lay, s)
        dist = sorted(float(np.linalg.norm(off[a] - off[b])) for a, b in pairs)
        expected = {"pair": [s], "triangle": [s] * 3, "square4": [s] * 4 + [s * math.sqrt(2)] * 2,
                    "pentagonal6": sorted([s] * 5 + [2 * s * math.sin(math.pi / 5)] * 5), "hexagonal7": [s] * 12}[lay]
        assert dist == pytest.approx(expected, rel=1e-9)
        assert len(set(pairs)) == len(pairs)


@pytest.fixture(scope="module")
def seg6_case():  # type: ignore[no-untyped-def]
    from latplan.phantom.demo import build_demo_case

    return build_demo_case("seg6-peripheral-18mm")


def test_planner_ect_demo_lesion_reaches_95_percent(seg6_case) -> None:  # type: ignore[no-untyped-def]
    """Issue 4: ECT of the 18 mm segment VI demo lesion (tumour, reversible threshold 400 V/cm)
    reaches the 95 % coverage goal within the generator's limits, verified on a 1 mm grid; the
    plan carries pair voltages/currents, needles, exposure and its citations."""
    p = plan_ect(seg6_case, seg6_case.lesion_ids[0])
    m = p.metrics
    assert m["covered"] is True and m["limited_by"] is None
    assert m["target_coverage_percent"] >= 95.0 and m["coverage_target"] == "tumour"
    assert max(m["voltages_v"]) <= m["max_voltage_v"] == 3000.0
    assert 0.0 < max(m["currents_a"]) <= m["max_current_a"]
    assert len(p.applicators) == m["applicator_count"] == len({tuple(a["tip_mm"]) for a in p.applicators})
    assert all(a["settings"]["exposure_mm"] == m["exposure_mm"] and "entry_mm" in a for a in p.applicators)
    assert all(r["voltage_v"] <= 3000.0 and r["distance_mm"] > 0 for r in m["pairs"])
    assert m["min_field_tumour_v_per_cm"] > 0.0
    curve = m["coverage_curve"]["coverage_percent"]
    assert all(x >= y for x, y in itertools.pairwise(curve))
    cites = " ".join(p.parameters["citations"])
    assert "Go-Smart" in cites and "Cliniporator" in cites and "Miklavcic" in cites
    assert p.parameters["verify_grid_mm"] == 1.0


@pytest.mark.slow
def test_planner_ire_demo_lesion_with_margin(seg6_case) -> None:  # type: ignore[no-untyped-def]
    """IRE of the demo lesion + 5 mm (irreversible thresholds 800/700 V/cm): within the NanoKnife
    limits (≤ 6 probes, 3000 V) the target reaches 95 % (measured 96.2 % at 3000 V, 6 probes,
    two pull-backs — close to the goal: the tumour's higher conductivity shields it)."""
    p = plan_ire(seg6_case, seg6_case.lesion_ids[0], target_margin_mm=5.0)
    m = p.metrics
    assert m["coverage_target"] == "tumour+margin"
    assert m["applicator_count"] <= 6 and max(m["voltages_v"]) <= 3000.0
    assert m["covered"] is True and m["target_coverage_percent"] >= 95.0
    assert m["exposure_mm"] <= 25.0 and m["pullbacks"] * m["exposure_mm"] >= 25.0
    assert "NanoKnife" in " ".join(p.parameters["citations"])


@pytest.mark.slow
def test_planner_ire_too_large_lesion_reported_with_reason() -> None:
    """A 40 mm lesion + 5 mm margin cannot be covered at 3000 V: the plan says so, names the
    voltage limit and the best coverage, and never exceeds the limit."""
    from tests.planning.helpers import synthetic_thermal_case

    p = plan_ire(synthetic_thermal_case(lesion_radius_mm=20.0), "lesion_1")
    m = p.metrics
    assert m["covered"] is False and m["limited_by"] == "voltage"
    assert m["target_coverage_percent"] < 95.0
    assert "cannot reach 95 %" in m["reason"] and "3000 V maximum" in m["reason"]
    assert f"{m['target_coverage_percent']:.1f} %" in m["reason"]
    assert max(m["voltages_v"]) <= 3000.0


@pytest.mark.slow  # ≥ 5 CPU s (tests/support/ci_schedule.py): runs in make test / CI, not in make test-fast
def test_planner_generator_limits_are_respected(seg6_case) -> None:  # type: ignore[no-untyped-def]
    """Lower generator limits bind: at 800 V no pair voltage (searched or planned) exceeds 800 V,
    the goal is missed (measured 37 % coverage) and the plan names the voltage limit; at 5 A even
    the standard protocol draws too much current (≈ 13 A per pair estimated) and the plan says so.
    (The limit was 1200 V while the field took 3 plain σ(E) updates: that field stopped in the low
    phase of its period-2 oscillation; converged, 1200 V reaches 99.6 % and no longer binds.)"""
    lesion = seg6_case.lesion_ids[0]
    pv = plan_electroporation("ect", seg6_case, lesion, max_voltage_v=800.0, max_geometries=2)
    assert max(pv.metrics["voltages_v"]) <= 800.0
    assert all(e["max_pair_voltage_v"] <= 800.0 for e in pv.metrics["search"])
    assert pv.metrics["covered"] is False and pv.metrics["limited_by"] == "voltage"
    assert "800 V maximum" in pv.metrics["reason"]
    pc = plan_electroporation("ect", seg6_case, lesion, max_current_a=5.0, max_geometries=1)
    assert pc.metrics["covered"] is False and pc.metrics["limited_by"] == "current"
    assert "5 A maximum" in pc.metrics["reason"]


def _cropped(case, beyond_lesion_mm: float):  # type: ignore[no-untyped-def]
    """The case with its image cut along i (the scan's last i slices removed) ``beyond_lesion_mm``
    past the lesion's last voxel (negative: through the lesion) — a lesion at the edge of a cropped CT."""
    from tests.planning.helpers import cut_along_i

    return cut_along_i(case, round(beyond_lesion_mm / float(case.labels.spacing_kji_mm[2])), case.lesion_ids[0])


def test_planner_lesion_cut_by_the_image_edge_is_a_failed_simulation(seg6_case) -> None:  # type: ignore[no-untyped-def]
    """Found on a real cropped CT (a 20 mm lesion on the scan's cut face): the planner raised a bare
    "needle N lies outside the grid". Reference: the geometry of the crop itself — the cut face holds
    lesion voxels (the lesion continues beyond the image), or the face lies 2 mm past the lesion, closer
    than any array's needles (the smallest, a 20 mm triangle, sits ≈ 2.5 mm outside an 18 mm lesion).
    Either way no needle array can be placed and verified inside the image: a named PlanningError
    (``limiting`` = "field_of_view", the board's *failed simulation*) that says so in plain words."""
    from latplan.errors import InfeasiblePlanError, PlanningError

    cut = _cropped(seg6_case, -4.0)
    assert cut.lesion_mask(seg6_case.lesion_ids[0]).array[:, :, -1].any()  # the face cuts the lesion
    with pytest.raises(InfeasiblePlanError) as err:
        plan_ect(cut, seg6_case.lesion_ids[0])
    assert isinstance(err.value, PlanningError) and err.value.limiting == "field_of_view"
    msg = str(err.value)
    assert "cannot be placed inside the image" in msg and "image the whole lesion" in msg and "i = last slice" in msg
    near = _cropped(seg6_case, 2.0)
    with pytest.raises(InfeasiblePlanError) as err:
        plan_ect(near, seg6_case.lesion_ids[0])
    assert err.value.limiting == "field_of_view" and "triangle 20 mm" in str(err.value)


def test_planner_field_region_past_the_image_edge_is_fov_limited(seg6_case) -> None:  # type: ignore[no-untyped-def]
    """The image face 8 mm past the lesion: the needles fit inside the image but the simulated region
    (needles + 12 mm of tissue, insulating beyond) does not. Reference: the crop geometry — every needle
    tip lies inside the image's index box, the simulated region extends > 0 and ≤ 12 mm (the crop pad)
    past the cut face, and the plan says it is conditional on the tissue beyond (``fov_limited``); the
    uncut case is not FOV-limited."""
    from latplan.planning.electroporation import CROP_PAD_MM

    lesion = seg6_case.lesion_ids[0]
    cut = _cropped(seg6_case, 8.0)
    p = plan_ect(cut, lesion)
    m = p.metrics
    assert m["fov_limited"] is True and m["fov_limited_faces"] == ["left (i = last slice)"]
    assert 0.0 < m["fov_extension_mm"] <= CROP_PAD_MM
    assert "conditional — field of view" in m["reason"] and any("field of view" in c for c in p.caveats)
    shape = np.asarray(cut.labels.shape)
    for a in p.applicators:
        idx = cut.labels.mm_to_index(np.asarray(a["tip_mm"]))
        assert np.all(idx >= -0.5) and np.all(idx <= shape - 0.5)
    assert p.zone is not None and p.zone.shape[2] <= int(shape[2])
    whole = plan_ect(seg6_case, lesion).metrics
    assert whole["fov_limited"] is False and whole["fov_limited_faces"] == [] and whole["fov_extension_mm"] == 0.0


def test_planner_target_dilation_in_the_lesion_box_is_the_full_one() -> None:
    """Reference: latplan.planning.applicators.target_mask on the whole array (Euclidean distance
    transform). The planner dilates only inside the lesion's box + margin: the same voxels, exactly,
    on isotropic and anisotropic grids, a lesion at the array's edge and an empty mask."""
    from latplan.planning.applicators import target_mask
    from latplan.planning.electroporation import _dilated

    rng = np.random.default_rng(0)
    for shape, h in (((45, 45, 45), np.array([1.0, 1.0, 1.0])), ((30, 40, 50), np.array([2.0, 1.5, 0.8]))):
        for sl in ((slice(12, 22), slice(15, 27), slice(18, 30)), (slice(0, 8), slice(30, 40), slice(40, 50))):
            m = np.zeros(shape, bool)
            m[sl] = rng.random(m[sl].shape) > 0.3
            for mm in (0.0, 5.0, 10.5):
                assert np.array_equal(_dilated(m, mm, h), target_mask(m, mm, h))
    assert not _dilated(np.zeros((5, 5, 5), bool), 5.0, np.ones(3)).any()
