"""Electroporation planners: ECT (reversible, with bleomycin) and IRE (irreversible).

Why: ECT and IRE treat what the field reaches above a tissue threshold, and the field depends
on the needle geometry, the voltage of every pulsed pair and the tissue conductivities (a
tumour more conductive than liver is shielded). A standard protocol applied blindly leaves
part of the lesion below threshold, so the planner does what variable-geometry treatment
planning does (Miklavčič et al. 2010; Pavliha et al. 2012; Kos et al. 2010 — as named in the
data file, not checked here): choose a needle geometry, escalate the pair voltages up to the
generator's limits and verify the coverage on a fine grid — or say that it cannot.

Decisions
---------
* **Target.** IRE: tumour + ``target_margin_mm`` (IRE is an ablation; the margin comes from the
  modalities layer: 5 mm, 10 mm RAS-mutant). ECT: the tumour — ECT coverage is defined (Miklavčič et al., BioMed Eng OnLine 2010;9:10)
  as the fraction of tumour volume above the reversible threshold, and neither the seed nor
  (as far as checked here) any other source gives an ECT ablative margin (the 5/10 mm margins come from thermal
  ablation series); the margin achieved is still reported, and
  ``coverage_target="tumour+margin"`` asks for it. Vessel lumen (blood) is not target.
  Thresholds are tissue-specific (tumour / liver; reversible for ECT, irreversible for IRE),
  or one value (``threshold_v_per_cm``). Goal: ``coverage_goal_percent`` (95 %) of the target.
* **Needles** run parallel along the safe trajectory (:func:`find_trajectory`). Layouts, in
  order of invasiveness: pair, triangle, square (4), pentagon (6: centre + 5), hexagon (7:
  centre + 6; ECT only — the NanoKnife drives at most 6 probes); spacings from
  the data file (ECT 10–25 mm, IRE 15–25 mm — NanoKnife 1.5–2.5 cm). A layout is tried when its
  needles enclose the target's cross-section (inradius + ¼ spacing ≥ target radius) and are not
  far outside it (circumradius ≤ target radius + 10 mm); per layout the smallest such spacing
  is tried, and the larger one only for the last layout; at most ``max_geometries`` (4). The
  first geometry that reaches the goal wins (fewest needle punctures, then the lowest voltage).
  If no layout encloses the target, the largest array is tried and the reason says so.
* **Exposure** (active length) spans the target along the needles plus 2.5 mm beyond each end
  (the field falls off at the needle ends), rounded up to 5 mm, within the device range; a longer target is treated in pull-backs (the field is the maximum over
  the pull-back positions, each pulsed with the same pairs).
* **Voltage**: pair voltage = ratio × centre distance, the ratio escalated from the standard
  protocol (ECT 1000 V/cm for pairs, 730 V/cm hexagonal — ESOPE; IRE 1500 V/cm — NanoKnife) in
  the data file's factors, each pair capped at the generator's maximum voltage, with a last step
  of every pair at the maximum. A step whose estimated pair current exceeds the generator's
  maximum current is not allowed. Coverage rises with voltage, the current too: per geometry
  the highest allowed step is solved first (found by bisection when the current limit binds);
  if it reaches the goal, bisection finds the lowest step that does (≤ 4 solves per geometry
  without a current limit).
* **Grids**: the search solves on ``search_grid_mm`` (2 mm, labels by nearest neighbour); the
  chosen plan (or, if none reaches the goal, the best one) is re-solved on ``verify_grid_mm``
  (1 mm; 1.5 mm when voxels × pulsed pairs exceed 3 M) and its numbers (coverage, minimum
  tumour field, currents, margins) come from that solve; if the verification falls short of
  the goal, up to two higher steps are verified. Field: :func:`latplan.physics.electroporation.solve_field`
  with the σ(E) fixed point solved to < 1 % change (under-relaxed; ``converged``, ``field_iterations``,
  ``field_residual`` in the metrics) and an adiabatic Joule-heating bound (``max_temperature_c``).
  Every solve of a lesion is kept (:attr:`_Setup.solves`): a voltage step starts from the nearest
  step solved for that geometry, the verification from the search solve (``warm_start``), so the
  fine grid needs 2–4 σ(E) solves per pair instead of 4–7.
* **Image edge** (found on a cropped real CT): the image edge is not the body's, so the simulated
  region is never cut at it. A lesion that touches an image face (its extent beyond the scan is
  unknown), or a target around which no candidate array's needles stay inside the image, is not
  planned: :class:`~latplan.errors.InfeasiblePlanError` with ``limiting`` = ``"field_of_view"``
  ("the needle array cannot be placed inside the image: the lesion lies at the edge of the scan …;
  image the whole lesion") — a failed simulation for the board. A candidate whose needles leave the
  image is skipped (search outcome "needles outside the image"). Where the needles fit but the
  simulated region (needles + ``CROP_PAD_MM``) extends past the image, the region beyond is the
  edge voxels' tissue continued and the plan says so: ``fov_limited`` true, ``fov_limited_faces``,
  ``fov_extension_mm`` and a "conditional — field of view" reason and caveat.
* **Currents** are estimates (finite-volume flux out of the anode needle voxels; the needle is
  a voxel line with the sub-voxel radius correction on these grids) and the inactive needles'
  metal is not modelled.
* Speed (fig1 demo lesion, ECT + IRE tumour + 5 mm): ≈ 3.4× less CPU and wall time than before the
  warm starts at the same load (``benchmarks/bench_field.py``, planning table; idle figures there).
* Measured (demo 18 mm segment VI lesion, busy 2-core machine): ECT triangle 20 mm at 2500 V,
  99.7 % of the tumour, ≈ 2 s; IRE tumour + 5 mm: pentagon 15 mm, 3000 V, two 20 mm pull-backs,
  96.2 % (1.5 mm check), 4–9 s; a 40 mm lesion: IRE 28 % at 3000 V, reported as not covered.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from latplan.anatomy.geometry import CaseGeometry, geometry_for
from latplan.case import Case, StructureRole
from latplan.case.vocabulary import VESSEL_ROLES
from latplan.errors import InfeasiblePlanError, InvalidInputError, SourceDataError
from latplan.imaging.fov import face_name, faces_touched
from latplan.knowledge.margins import margin_histogram_percent
from latplan.physics import electroporation as ep
from latplan.physics.ablation_zones import perpendicular_axes, zone_uncertainty_fraction
from latplan.physics.margins import ablative_margin_arrays
from latplan.planning.applicators import (
    collateral_structures,
    find_trajectory,
    heat_sink_vessels,
    organ_volumes_in_zone,
    structure_role,
    target_mask,
)
from latplan.planning.types import TreatmentPlan

__all__ = ["LAYOUTS", "layout_offsets_mm", "plan_ect", "plan_electroporation", "plan_ire"]

ENGINE_VERSION = "electroporation-planner-2.0"
VERIFICATION = ("field solver vs the analytic two-line-charge solution for a parallel needle pair (3 %), "
                "monotonic coverage curve, configurable thresholds (tests/physics/test_electroporation_field.py); "
                "planner: voltage escalation within the generator limits, coverage goal on the demo lesion "
                "(tests/planning/test_electroporation.py)")

#: needle layouts in order of invasiveness (needle count)
LAYOUTS = ("pair", "triangle", "square4", "pentagonal6", "hexagonal7")
#: transverse distance beyond the target edge at which needles still count as "around" it (mm)
MAX_NEEDLE_OUTSIDE_MM = 10.0
#: exposure beyond each end of the target along the needles (mm): the field falls off at the
#: needle ends (demo lesion, ECT: 99.8 % → 100 % tumour coverage, margin −1.0 → 5.7 mm with 2.5 mm)
EXPOSURE_BEYOND_TARGET_MM = 2.5
#: verification at 1 mm while voxels × pulsed pairs stay below this budget, else at 1.5 mm
#: (demo 18 mm lesion, IRE, 6 needles × 2 pull-backs: 13 s at 1 mm vs 1.5 s at 1.5 mm on the busy
#: 2-core machine; target coverage 93.2 % vs 92.2 %)
VERIFY_BUDGET_VOXEL_PAIRS = 3.0e6
#: tissue kept beyond the outermost needles (mm); the crop's outer faces are insulating.
#: The tumour coverage changes by < 0.5 % between 12 and 25 mm (demo lesion, ECT).
CROP_PAD_MM = 12.0


def layout_offsets_mm(layout: str, spacing_mm: float) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """Needle positions (n, 2) in the plane across the needles (mm) and the pulsed pairs.

    ``spacing_mm`` is the distance between neighbouring needles of the pair, triangle and square,
    and the centre-to-outer distance of the pentagon (centre + 5) and hexagon (centre + 6).
    Pairs: every needle pair of the pair/triangle/square (square: sides and diagonals); for the
    pentagon and hexagon centre–outer and adjacent outer needles (10 and 12 pairs).
    """
    s = float(spacing_mm)
    if layout == "pair":
        return np.array([[-0.5 * s, 0.0], [0.5 * s, 0.0]]), [(0, 1)]
    if layout == "triangle":
        r = s / math.sqrt(3.0)
        ang = np.deg2rad([90.0, 210.0, 330.0])
        return np.stack([r * np.cos(ang), r * np.sin(ang)], axis=1), [(0, 1), (1, 2), (2, 0)]
    if layout == "square4":
        off = 0.5 * s * np.array([[-1.0, -1.0], [1.0, -1.0], [1.0, 1.0], [-1.0, 1.0]])
        return off, [(0, 1), (1, 2), (2, 3), (3, 0), (0, 2), (1, 3)]
    if layout == "pentagonal6":
        ang = np.pi / 2.0 + np.arange(5) * 2.0 * math.pi / 5.0
        off = np.vstack([[0.0, 0.0], np.stack([s * np.cos(ang), s * np.sin(ang)], axis=1)])
        return off, [(0, i) for i in range(1, 6)] + [(i, i % 5 + 1) for i in range(1, 6)]
    if layout == "hexagonal7":
        ang = np.arange(6) * math.pi / 3.0
        off = np.vstack([[0.0, 0.0], np.stack([s * np.cos(ang), s * np.sin(ang)], axis=1)])
        return off, ep.hexagonal_pairs()
    raise InvalidInputError(f"needle layout must be one of {', '.join(LAYOUTS)}; got {layout!r}.")


def _inradius_mm(layout: str, s: float) -> float:
    return {"pair": 0.0, "triangle": s / (2.0 * math.sqrt(3.0)), "square4": 0.5 * s,
            "pentagonal6": math.cos(math.pi / 5.0) * s, "hexagonal7": 0.5 * math.sqrt(3.0) * s}[layout]


def _circumradius_mm(layout: str, s: float) -> float:
    return {"pair": 0.5 * s, "triangle": s / math.sqrt(3.0), "square4": s / math.sqrt(2.0), "pentagonal6": s,
            "hexagonal7": s}[layout]


def _tissue_table() -> tuple[list[ep.ElectroTissue], dict[str, int]]:
    t = ep.default_electro_tissues()
    order = ["soft_tissue", "liver", "tumour", "blood"]
    return [t[n] for n in order], {n: i for i, n in enumerate(order)}


def _labels(case: Case, sl: tuple[slice, ...]) -> np.ndarray:
    """Electro-tissue index per voxel of the crop (soft tissue, liver, tumour, blood)."""
    _, idx = _tissue_table()
    lab_case = case.labels.array[sl]
    out = np.full(lab_case.shape, idx["soft_tissue"], np.int64)
    for n in case.structure_names():
        r = structure_role(case, n)
        vals = case.label_table.values_for(n)
        if r in (StructureRole.LIVER, StructureRole.LIVER_SEGMENT, StructureRole.BILE_DUCT):
            out[np.isin(lab_case, vals)] = idx["liver"]
        elif r == StructureRole.LESION:
            out[np.isin(lab_case, vals)] = idx["tumour"]
        elif r in VESSEL_ROLES:
            out[np.isin(lab_case, vals)] = idx["blood"]
    return out


def _dilated(mask: np.ndarray, margin_mm: float, h: np.ndarray) -> np.ndarray:
    """:func:`target_mask` (``mask`` dilated by ``margin_mm``, Euclidean) computed in the box of ``mask``
    + the margin only (the same voxels: every voxel within the margin lies in that box)."""
    if margin_mm <= 0 or not mask.any():
        return mask.copy()
    lo, hi = _box(mask, margin_mm + float(np.max(h)), np.asarray(h, float))
    box = tuple(slice(int(max(a, 0)), int(min(b, n))) for a, b, n in zip(lo, hi, mask.shape, strict=True))
    out = np.zeros_like(mask)
    out[box] = target_mask(mask[box], margin_mm, h)
    return out


def _resample_nearest(a: np.ndarray, h_old: np.ndarray, h_new: float) -> np.ndarray:
    """Nearest-neighbour resampling onto an isotropic grid of ``h_new`` mm with the same origin
    (voxel 0 centre) — labels and masks keep their values; needle millimetres stay valid."""
    idx = []
    for n, ho in zip(a.shape, h_old, strict=True):
        m = math.floor((n - 1) * ho / h_new + 1e-9) + 1
        idx.append(np.clip(np.rint(np.arange(m) * h_new / ho).astype(int), 0, n - 1))
    return np.ascontiguousarray(a[np.ix_(*idx)])


def _sample_on(a: np.ndarray, h_src: float, shape: tuple[int, ...], h_dst: np.ndarray) -> np.ndarray:
    """Values of ``a`` (isotropic ``h_src`` grid) at the voxel centres of a grid ``shape``/``h_dst``."""
    idx = [np.clip(np.rint(np.arange(n) * hd / h_src).astype(int), 0, a.shape[ax] - 1)
           for ax, (n, hd) in enumerate(zip(shape, h_dst, strict=True))]
    return a[np.ix_(*idx)]


@dataclass
class _Geometry:
    layout: str
    spacing_mm: float
    offsets_mm: np.ndarray
    pairs: list[tuple[int, int]]
    ratio_v_per_cm: float

    @property
    def label(self) -> str:
        return f"{self.layout} {self.spacing_mm:g} mm"

    def pair_distances_mm(self) -> list[float]:
        return [float(np.linalg.norm(self.offsets_mm[a] - self.offsets_mm[b])) for a, b in self.pairs]


@dataclass
class _Grid:
    """One simulation grid of the crop: tissue labels, thresholds, target and tumour masks."""

    h_mm: float
    labels: np.ndarray
    threshold: np.ndarray
    target: np.ndarray
    tumour: np.ndarray


@dataclass
class _Solve:
    """Field of one geometry at one voltage step on one grid."""

    step: int
    voltages_v: list[float]
    currents_a: list[float]
    field_v_per_cm: np.ndarray
    target_coverage_percent: float
    wall_s: float
    info: dict[str, Any] = field(default_factory=dict)
    #: per-pair potentials and fields, to start the next solve of this geometry from (fine grid,
    #: other voltage step): :class:`latplan.physics.electroporation.WarmStart`
    states: ep.WarmStart | None = None


def _make_grid(lab: np.ndarray, lesion: np.ndarray, h_case: np.ndarray, h_mm: float, thr_table: np.ndarray,
               threshold_v_per_cm: float | None, margin_mm: float, blood: int) -> _Grid:
    lab_g = _resample_nearest(lab, h_case, h_mm)
    tum_g = _resample_nearest(lesion, h_case, h_mm)
    hv = np.full(3, h_mm)
    tgt = _dilated(tum_g, margin_mm + (0.5 * h_mm if margin_mm > 0 else 0.0), hv)
    tgt &= lab_g != blood
    thr = thr_table[lab_g] if threshold_v_per_cm is None else np.full(lab_g.shape, float(threshold_v_per_cm))
    return _Grid(h_mm, lab_g, thr, tgt, tum_g)


@dataclass
class _Setup:
    """One lesion's electroporation problem: the needle frame, the crop, the tissues and the limits."""

    kind: str
    case: Case
    lesion_id: str
    traj: Any
    h: np.ndarray                 # case voxel size (k, j, i) mm
    lo: Any                       # lower corner of the display crop ``ref`` (case voxels, inside the image)
    ref: Any                      # the crop's Volume (display grid: the part of the simulation inside the image)
    lab: np.ndarray               # tissue-class labels of the simulation crop
    lesion: np.ndarray            # tumour mask of the simulation crop
    margin_for_target_mm: float
    centre: np.ndarray            # target centre in the crop (k, j, i mm)
    d_kji: np.ndarray             # needle direction and two perpendicular axes
    u_kji: np.ndarray
    v_kji: np.ndarray
    a0: float                     # start of the exposure span along the needles (mm from the centre)
    segments: list[float]         # pull-back offsets (mm)
    exposure_mm: float
    radius_mm: float
    geoms: list[_Geometry]
    span_note: str | None
    tissues: list[ep.ElectroTissue]
    blood: int
    thr_table: np.ndarray
    factors: list[float]
    u_max: float
    i_max: float
    pulses: Mapping[str, Any]
    gen: Mapping[str, Any]
    plan_cfg: Mapping[str, Any]
    consts: Mapping[str, Any]
    rho_c: float
    iterations: int | None
    threshold_v_per_cm: float | None
    #: lower corner of the simulation crop (case voxels; < 0 or beyond the image where it extends past
    #: the image edge: there the tissue is the edge voxels' continued, see :func:`_fov_padding`)
    sim_lo: np.ndarray = field(default_factory=lambda: np.zeros(3, int))
    #: the image part of the simulation crop (slices of the simulation crop = ``ref``)
    inside: tuple[slice, ...] = (slice(None), slice(None), slice(None))
    #: image faces the simulation crop extends beyond and by how much (mm): empty inside the image
    fov_faces: dict[str, float] = field(default_factory=dict)
    #: every solve made for this lesion, by (geometry label, grid mm): the next solve of that geometry
    #: starts from the nearest voltage step on the finest grid solved so far (its own grid first)
    solves: dict[tuple[str, float], list[_Solve]] = field(default_factory=dict)

    @property
    def n_steps(self) -> int:
        return len(self.factors) + 1

    def grid(self, h_mm: float) -> _Grid:
        return _make_grid(self.lab, self.lesion, self.h, h_mm, self.thr_table, self.threshold_v_per_cm,
                          self.margin_for_target_mm, self.blood)

    def needles_for(self, g: _Geometry) -> list[list[ep.Needle]]:
        out = []
        for s0 in self.segments:
            tip_along = self.a0 + s0 + self.exposure_mm
            out.append([ep.Needle(tuple((self.centre + tip_along * self.d_kji + o[0] * self.u_kji
                                         + o[1] * self.v_kji).tolist()),
                                  tuple(self.d_kji.tolist()), self.exposure_mm, self.radius_mm)
                        for o in g.offsets_mm])
        return out

    def needles_outside_image(self, g: _Geometry) -> bool:
        """True when the active part of any needle of ``g`` (any pull-back) leaves the image: the image
        does not show where it would go (no needle is placed in tissue the scan does not show)."""
        shape = np.asarray(self.case.labels.shape, float)
        for pos in self.needles_for(g):
            for nd in pos:
                tip = np.asarray(nd.tip_kji_mm)
                for p in (tip, tip - nd.active_length_mm * np.asarray(nd.direction_kji)):
                    idx = p / self.h + self.sim_lo
                    if np.any(idx < -0.5) or np.any(idx > shape - 0.5):
                        return True
        return False

    def on_ref(self, a: np.ndarray, h_mm: float) -> np.ndarray:
        """A simulation-grid array (isotropic ``h_mm``) sampled on the display crop ``ref``."""
        return _sample_on(a, h_mm, self.lab.shape, self.h)[self.inside]

    def volts_for(self, g: _Geometry, step: int) -> list[float]:
        dist = g.pair_distances_mm()
        if step >= len(self.factors):  # last step: every pair at the generator maximum
            return [self.u_max] * len(dist)
        return [min(self.u_max, round(g.ratio_v_per_cm * self.factors[step] * dd / 10.0 / 10.0) * 10.0)
                for dd in dist]

    def warm_start(self, g: _Geometry, step: int, h_mm: float) -> ep.WarmStart | None:
        """The earlier solve of ``g`` to start from: on this grid the nearest voltage step, else on
        the finest coarser grid (the search grid for the verification) the nearest step."""
        same = self.solves.get((g.label, h_mm))
        if not same:
            grids = sorted(hh for (lab, hh) in self.solves if lab == g.label and hh > h_mm)
            same = self.solves.get((g.label, grids[0])) if grids else None
        if not same:
            return None
        return min(same, key=lambda s: abs(s.step - step)).states

    def solve(self, g: _Geometry, step: int, grid: _Grid) -> _Solve:
        """All pull-back positions in one call (the needles of the other positions are tissue then,
        as are the unpulsed needles of one position): field = max over positions and pairs. Starts
        from the nearest earlier solve of this geometry (:meth:`warm_start`)."""
        t0 = time.perf_counter()
        volts = self.volts_for(g, step)
        n = len(g.offsets_mm)
        needles = [nd for pos in self.needles_for(g) for nd in pos]
        pairs = [(a + m * n, b + m * n) for m in range(len(self.segments)) for a, b in g.pairs]
        res = ep.solve_field(grid.labels, self.tissues, (grid.h_mm,) * 3, needles, pairs, volts * len(self.segments),
                             iterations=self.iterations, warm_start=self.warm_start(g, step, grid.h_mm),
                             keep_states=True)
        currents = np.abs(np.reshape(res.currents_a, (len(self.segments), len(g.pairs)))).max(axis=0).tolist()
        emax = res.field_v_per_cm
        cov = 100.0 * float(np.mean(emax[grid.target] >= grid.threshold[grid.target]))
        heat = res.adiabatic_temperature_rise_c(int(self.pulses["pulses"]),
                                                float(self.pulses["pulse_width_us"]) * 1e-6, self.rho_c)
        out = _Solve(step, volts, currents, emax, cov, time.perf_counter() - t0,
                     {"cg_iterations": int(res.info["cg_iterations"]), "converged": res.converged,
                      "iterations": res.iterations, "residual": res.residual,
                      "max_temperature_c": 37.0 + float(heat.max())}, res.warm_start)
        self.solves.setdefault((g.label, grid.h_mm), []).append(out)
        return out


def plan_electroporation(
    kind: str,
    case: Case,
    lesion_id: str,
    measurements: Mapping[str, Any] | None = None,
    *,
    geometry: CaseGeometry | None = None,
    target_margin_mm: float = 5.0,
    threshold_v_per_cm: float | None = None,
    coverage_goal_percent: float = 95.0,
    coverage_target: str | None = None,
    iterations: int | None = None,
    search_grid_mm: float = 2.0,
    verify_grid_mm: float | None = None,
    max_geometries: int = 4,
    max_voltage_v: float | None = None,
    max_current_a: float | None = None,
) -> TreatmentPlan:
    """ECT (``kind="ect"``) or IRE (``"ire"``) plan for one lesion; see the module doc.

    ``threshold_v_per_cm`` overrides the tissue-specific thresholds with one value (V/cm);
    ``coverage_target`` is ``"tumour"`` (ECT default) or ``"tumour+margin"`` (IRE default);
    ``max_voltage_v`` / ``max_current_a`` override the generator limits of the data file. ``geometry``:
    the case's :class:`~latplan.anatomy.geometry.CaseGeometry`, computed once by the pipeline.
    """
    t_start = time.perf_counter()
    geometry_for(case, geometry)  # the pipeline's CaseGeometry of this case (its maps are the case's maps)
    coverage_target = _check_arguments(kind, coverage_target, coverage_goal_percent, target_margin_mm,
                                       search_grid_mm, verify_grid_mm)
    setup = _set_up(kind, case, lesion_id, target_margin_mm if coverage_target == "tumour+margin" else 0.0,
                    threshold_v_per_cm, iterations, max_geometries, max_voltage_v, max_current_a)
    tried, best, chosen = _search(setup, setup.grid(search_grid_mm), coverage_goal_percent)
    if best is None and chosen is None:  # every candidate's needles leave the image
        raise InfeasiblePlanError(
            "the needle array cannot be placed inside the image: the lesion lies at the edge of the scan ("
            + ", ".join(f"{f}: the field region extends {mm:g} mm beyond it" for f, mm in setup.fov_faces.items())
            + f"; tried {', '.join(e['geometry'] for e in tried)}); image the whole lesion", limiting=FOV_LIMITING)
    # verification on the fine grid (the plan's numbers)
    g_v = chosen[0] if chosen is not None else best[0]  # type: ignore[index]
    if verify_grid_mm is None:  # 1 mm unless the verification would exceed the size budget
        n_1mm = float(np.prod((np.asarray(setup.lab.shape) - 1) * setup.h + 1.0))
        verify_grid_mm = (1.0 if n_1mm * len(g_v.pairs) * len(setup.segments) <= VERIFY_BUDGET_VOXEL_PAIRS
                          else 1.5)
    verify = setup.grid(verify_grid_mm)
    verified: list[dict[str, Any]] = []
    g, fin, limit, covered = _verify(setup, verify, chosen, best, coverage_goal_percent, verified)
    plan = _electroporation_plan(setup, measurements, g, fin, verify, limit, covered, tried, verified,
                                 target_margin_mm, coverage_goal_percent, coverage_target, search_grid_mm,
                                 verify_grid_mm)
    plan.runtime_s = time.perf_counter() - t_start
    return plan


def _check_arguments(kind: str, coverage_target: str | None, coverage_goal_percent: float, target_margin_mm: float,
                     search_grid_mm: float, verify_grid_mm: float | None) -> str:
    """Refuse bad arguments; returns the coverage target (the kind's default when not given)."""
    if kind not in ("ect", "ire"):
        raise InvalidInputError(f"electroporation kind must be 'ect' or 'ire'; got {kind!r}.")
    coverage_target = coverage_target or ("tumour" if kind == "ect" else "tumour+margin")
    if coverage_target not in ("tumour", "tumour+margin"):
        raise InvalidInputError(f"coverage_target must be 'tumour' or 'tumour+margin'; got {coverage_target!r}.")
    if not 0.0 < coverage_goal_percent <= 100.0:
        raise InvalidInputError(f"coverage_goal_percent must lie in (0, 100]; got {coverage_goal_percent}.")
    if target_margin_mm < 0:
        raise InvalidInputError(f"target_margin_mm must be ≥ 0 mm; got {target_margin_mm}.")
    if not (0.25 <= (verify_grid_mm or 1.0) <= search_grid_mm <= 5.0):
        raise InvalidInputError("grids must satisfy 0.25 ≤ verify_grid_mm ≤ search_grid_mm ≤ 5 mm; got "
                                f"{verify_grid_mm} and {search_grid_mm}.")
    return coverage_target


def _set_up(kind: str, case: Case, lesion_id: str, margin_for_target: float, threshold_v_per_cm: float | None,
            iterations: int | None, max_geometries: int, max_voltage_v: float | None,
            max_current_a: float | None) -> _Setup:
    """Constants, limits, the needle frame along the safe trajectory, the candidate geometries and the
    simulation crop (the needles of every candidate + CROP_PAD_MM of tissue; insulating box beyond)."""
    consts = ep.electroporation_constants()
    pulses = consts["pulses"][kind]
    gen, plan_cfg = _planning_constants(consts, kind)
    u_max = float(gen["max_voltage_v"] if max_voltage_v is None else max_voltage_v)
    i_max = float(gen["max_current_a"] if max_current_a is None else max_current_a)
    if u_max <= 0 or i_max <= 0:
        raise InvalidInputError(f"generator limits must be > 0; got {u_max} V, {i_max} A.")
    radius = float(consts["needle"]["radius_mm"])

    lesion_full = case.lesion_mask(lesion_id).array
    h = np.asarray(case.labels.spacing_kji_mm, float)
    cut = faces_touched(lesion_full, case.labels.affine)
    if cut:
        raise InfeasiblePlanError(
            f"the needle array cannot be placed inside the image: the lesion lies at the edge of the scan (cut by "
            f"the image's {', '.join(cut)} face), so its extent beyond the image is unknown and no field can be "
            f"verified around it; image the whole lesion", limiting=FOV_LIMITING)
    traj = find_trajectory(case, lesion_id)
    # target geometry in the needle frame (k, j, i millimetres of a first, tight crop)
    lo0, hi0 = _box(lesion_full, margin_for_target + 2.0 * float(h.max()), h)
    lesion0 = _padded(lesion_full, lo0, hi0)
    inv = np.linalg.inv(case.labels.affine)[:3, :3]
    d_kji = (inv @ traj.direction)[::-1] * h
    d_kji /= np.linalg.norm(d_kji)
    u_kji, v_kji = perpendicular_axes(d_kji)
    tgt0 = _dilated(lesion0, margin_for_target, h)
    tpts = np.argwhere(tgt0) * h
    centre0 = tpts.mean(axis=0)
    along = (tpts - centre0) @ d_kji
    across = np.linalg.norm((tpts - centre0) - np.outer(along, d_kji), axis=1)
    r_target = float(across.max() + 0.5 * h.max())
    ext = 0.5 * float(h.max()) + EXPOSURE_BEYOND_TARGET_MM
    a0, a1 = float(along.min()) - ext, float(along.max()) + ext
    segments, exposure = _pullbacks(a1 - a0, float(plan_cfg["exposure_mm"][0]), float(plan_cfg["exposure_mm"][1]))
    geoms, span_note = _candidate_geometries(kind, pulses, plan_cfg, r_target, max_geometries)

    # simulation crop: the needles of every candidate + CROP_PAD_MM of tissue (insulating box beyond)
    outside = max(0.0, max(_circumradius_mm(g.layout, g.spacing_mm) for g in geoms) - r_target)
    sim_lo, sim_hi = _box(lesion_full, margin_for_target + outside + CROP_PAD_MM, h)
    lo, hi, before, after, fov_faces = _fov_padding(sim_lo, sim_hi, case.labels.shape, h, case.labels.affine)
    sl = tuple(slice(p, q) for p, q in zip(lo, hi, strict=True))
    centre = centre0 + (np.asarray(lo0) - sim_lo) * h
    ref = case.labels.crop(lo, hi)
    widths = list(zip(before, after, strict=True))
    lesion = np.pad(lesion_full[sl], widths, constant_values=False)
    lab = np.pad(_labels(case, sl), widths, mode="edge")  # beyond the image: the edge tissue continued
    inside = tuple(slice(b, b + (q - p)) for b, p, q in zip(before, lo, hi, strict=True))
    tissues, idx = _tissue_table()
    tissues = ep.protocol_tissues(kind, tissues)
    lethal = ep.lethal_thresholds_v_per_cm(kind)
    thr_table = np.array([lethal.get(t.name, t.reversible_v_per_cm if kind == "ect" else t.irreversible_v_per_cm)
                          for t in tissues])
    factors = [float(f) for f in plan_cfg["escalation_factors"]]
    rho_c = float(((consts.get("protocols") or {}).get("ire") or {}).get("thermal", {}).get("rho_c_j_m3_k", 3.82e6))
    return _Setup(kind=kind, case=case, lesion_id=lesion_id, traj=traj, h=h, lo=lo, ref=ref, lab=lab, lesion=lesion,
                  margin_for_target_mm=margin_for_target, centre=centre, d_kji=d_kji, u_kji=u_kji, v_kji=v_kji,
                  a0=a0, segments=segments, exposure_mm=exposure, radius_mm=radius, geoms=geoms,
                  span_note=span_note, tissues=tissues, blood=idx["blood"], thr_table=thr_table, factors=factors,
                  u_max=u_max, i_max=i_max, pulses=pulses, gen=gen, plan_cfg=plan_cfg, consts=consts, rho_c=rho_c,
                  iterations=iterations, threshold_v_per_cm=threshold_v_per_cm, sim_lo=sim_lo, inside=inside,
                  fov_faces=fov_faces)


#: ``limiting`` of the InfeasiblePlanError raised when the image does not hold the lesion or the needles
FOV_LIMITING = "field_of_view"


def _padded(a: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """``a[lo:hi]`` for a box that may extend beyond ``a``; False/0 there."""
    n = np.asarray(a.shape)
    lo_in, hi_in = np.maximum(lo, 0), np.minimum(hi, n)
    out = np.zeros(tuple(int(x) for x in hi - lo), a.dtype)
    out[tuple(slice(int(p - q), int(r - q)) for p, r, q in zip(lo_in, hi_in, lo, strict=True))] = \
        a[tuple(slice(int(p), int(r)) for p, r in zip(lo_in, hi_in, strict=True))]
    return out


def _box(mask: np.ndarray, pad_mm: float, h: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Index box [lo, hi) of ``mask`` padded by ``pad_mm``, not clipped to the array."""
    idx = np.nonzero(mask)
    pad = np.ceil(pad_mm / h).astype(int)
    return (np.array([int(a.min()) for a in idx]) - pad, np.array([int(a.max()) + 1 for a in idx]) + pad)


def _fov_padding(sim_lo: np.ndarray, sim_hi: np.ndarray, shape: Sequence[int], h: np.ndarray, affine: np.ndarray
                 ) -> tuple[tuple[int, int, int], tuple[int, int, int], list[int], list[int], dict[str, float]]:
    """The simulation box clipped to the image (lo, hi), the voxels it extends beyond the image before/after
    along each axis, and {image face: mm} for each face it extends beyond.

    Why: the image edge is not the body's edge; an insulating box at the image edge would confine the
    current and inflate the field. Beyond the image the tissue labels of the edge voxels are continued
    (an assumption the plan reports as ``fov_limited``)."""
    n = np.asarray(shape, int)
    lo, hi = np.maximum(sim_lo, 0), np.minimum(sim_hi, n)
    before, after = (lo - sim_lo).tolist(), (sim_hi - hi).tolist()
    faces = {}
    for ax in range(3):
        for upper, vox in ((False, before[ax]), (True, after[ax])):
            if vox > 0:
                faces[face_name(affine, ax, upper)] = round(float(vox * h[ax]), 1)
    return (int(lo[0]), int(lo[1]), int(lo[2])), (int(hi[0]), int(hi[1]), int(hi[2])), before, after, faces


_Candidate = tuple[_Geometry, _Solve, str]


def _search(setup: _Setup, search: _Grid, goal_percent: float
            ) -> tuple[list[dict[str, Any]], _Candidate | None, tuple[_Geometry, _Solve] | None]:
    """Search on the coarse grid, geometry by geometry in order of invasiveness; the first that reaches
    the goal wins. Returns what was tried, the best allowed candidate (or, when no step is allowed, the
    lowest over-current one) and the winner (None when no geometry reaches the goal)."""
    tried: list[dict[str, Any]] = []
    best: _Candidate | None = None  # best allowed (within the current limit)
    over_current: _Candidate | None = None  # used only if no step is allowed
    chosen: tuple[_Geometry, _Solve] | None = None
    for g in setup.geoms:
        if setup.needles_outside_image(g):
            tried.append({"geometry": g.label, "needles": len(g.offsets_mm), "pairs": len(g.pairs),
                          "coverage_percent": None, "max_pair_voltage_v": None, "outcome": "needles outside the image",
                          "solves": 0, "wall_s": 0.0})
            continue
        entry, top_limit, s_top, reached = _search_geometry(setup, search, g, goal_percent)
        tried.append(entry)
        if reached is not None:
            chosen = (g, reached)
            break
        if s_top is None:
            continue
        if top_limit == "current-first":
            if over_current is None:
                over_current = (g, s_top, "current")
            continue
        if best is None or s_top.target_coverage_percent > best[1].target_coverage_percent:
            best = (g, s_top, top_limit)
    return tried, best or over_current, chosen


def _search_geometry(setup: _Setup, search: _Grid, g: _Geometry, goal_percent: float
                     ) -> tuple[dict[str, Any], str, _Solve | None, _Solve | None]:
    """Voltage escalation of one geometry: the highest step within the current limit (bisection when the
    top is not allowed), then, if it reaches the goal, the lowest step that does. Returns the tried-entry,
    the limit at the top ("voltage", "current", or "current-first" when even the lowest step is over the
    current limit), the top (or lowest over-current) solve and the winning solve (None: goal not reached)."""
    cache: dict[tuple[float, ...], _Solve] = {}  # by pair voltages: capped steps can coincide

    def at(step: int) -> _Solve:
        key = tuple(setup.volts_for(g, step))
        if key not in cache:
            cache[key] = setup.solve(g, step, search)
        return cache[key]

    def allowed(s: _Solve) -> bool:
        return max(s.currents_a) <= setup.i_max

    # highest allowed step (currents rise with voltage): bisection when the top is not allowed
    top = setup.n_steps - 1
    top_limit = "voltage"
    if not allowed(at(top)):
        top_limit = "current"
        lo_s, hi_s = -1, top  # invariant: hi_s not allowed; lo_s allowed (or -1)
        while hi_s - lo_s > 1:
            mid = (lo_s + hi_s) // 2
            lo_s, hi_s = (mid, hi_s) if allowed(at(mid)) else (lo_s, mid)
        top = lo_s
    entry: dict[str, Any] = {"geometry": g.label, "needles": len(g.offsets_mm), "pairs": len(g.pairs)}
    if top < 0:
        entry.update({"coverage_percent": None, "max_pair_voltage_v": max(at(0).voltages_v),
                      "outcome": f"the lowest step already exceeds {setup.i_max:g} A", "solves": len(cache),
                      "wall_s": round(sum(c.wall_s for c in cache.values()), 2)})
        return entry, "current-first", at(0), None
    s_top = at(top)
    if s_top.target_coverage_percent >= goal_percent:
        lo_s, hi_s = -1, top  # smallest step reaching the goal
        while hi_s - lo_s > 1:
            mid = (lo_s + hi_s) // 2
            lo_s, hi_s = (lo_s, mid) if at(mid).target_coverage_percent >= goal_percent else (mid, hi_s)
        entry.update({"coverage_percent": round(at(hi_s).target_coverage_percent, 1),
                      "max_pair_voltage_v": max(at(hi_s).voltages_v), "outcome": "reaches the goal",
                      "solves": len(cache), "wall_s": round(sum(c.wall_s for c in cache.values()), 2)})
        return entry, top_limit, s_top, at(hi_s)
    entry.update({"coverage_percent": round(s_top.target_coverage_percent, 1),
                  "max_pair_voltage_v": max(s_top.voltages_v),
                  "outcome": f"below the goal at the {top_limit} limit", "solves": len(cache),
                  "wall_s": round(sum(c.wall_s for c in cache.values()), 2)})
    return entry, top_limit, s_top, None


def _verify(setup: _Setup, verify: _Grid, chosen: tuple[_Geometry, _Solve] | None, best: _Candidate | None,
            goal_percent: float, verified: list[dict[str, Any]]) -> tuple[_Geometry, _Solve, str | None, bool]:
    """Re-solve the winner (or the best candidate) on the fine grid, up to two steps higher when it falls
    short there; returns the geometry, its final solve, what limits it (None: covered) and covered."""
    def check(g: _Geometry, step: int) -> _Solve:
        out = setup.solve(g, step, verify)
        verified.append({"geometry": g.label, "max_pair_voltage_v": max(out.voltages_v),
                         "coverage_percent": round(out.target_coverage_percent, 1), "wall_s": round(out.wall_s, 2)})
        return out

    limit: str | None
    if chosen is not None:
        g, s = chosen
        fin = check(g, s.step)
        step = s.step
        limit = None
        tries = 0
        while fin.target_coverage_percent < goal_percent and step + 1 < setup.n_steps and tries < 2:
            step += 1
            if setup.volts_for(g, step) == fin.voltages_v:
                continue
            nxt = check(g, step)
            tries += 1
            if max(nxt.currents_a) > setup.i_max:
                limit = "current"
                break
            fin = nxt
        if limit is None:
            limit = "voltage" if min(fin.voltages_v) >= setup.u_max else "search"
    else:
        assert best is not None
        g, s, best_limit = best
        limit = best_limit
        fin = check(g, s.step)
    covered = bool(fin.target_coverage_percent >= goal_percent and max(fin.currents_a) <= setup.i_max)
    if covered:
        limit = None
    elif max(fin.currents_a) > setup.i_max:
        limit = "current"
    return g, fin, limit, covered


def _reason(setup: _Setup, g: _Geometry, fin: _Solve, limit: str | None, covered: bool, target_words: str,
            goal_percent: float) -> list[str]:
    """Why the plan reaches the goal (geometry, exposure, voltage) or what stops it."""
    if covered:
        reason = (f"{g.label} array ({len(g.offsets_mm)} needles, exposure {setup.exposure_mm:g} mm × "
                  f"{len(setup.segments)} position(s)), {max(fin.voltages_v):g} V max per pair: "
                  f"{fin.target_coverage_percent:.1f} % of the {target_words} reaches the threshold "
                  f"(goal {goal_percent:g} %)")
    else:
        why = {"voltage": f"the generator's {setup.u_max:g} V maximum is reached",
               "current": f"the estimated pair current would exceed the generator's {setup.i_max:g} A maximum",
               "search": "the fine-grid check falls short of the 2 mm search and the search stops two "
                         "voltage steps above it"}[limit or "voltage"]
        reason = (f"cannot reach {goal_percent:g} % coverage of the {target_words}: best "
                  f"{fin.target_coverage_percent:.1f} % with {g.label} at {max(fin.voltages_v):g} V max per pair — "
                  f"{why}")
        if setup.span_note:
            reason += f"; {setup.span_note}"
    reasons = [reason]
    if setup.fov_faces:
        reasons.append(_fov_condition(setup))
    if not setup.traj.safe:
        reasons.append(setup.traj.note or "no safe straight path")
    return reasons


def _fov_condition(setup: _Setup) -> str:
    """The condition of a field-of-view-limited plan, in words."""
    where = ", ".join(f"{mm:g} mm beyond the {face} face" for face, mm in setup.fov_faces.items())
    return (f"conditional — field of view: the simulated region extends {where} of the image, where the tissue is "
            "assumed to continue as at the image edge; image the whole treatment region to confirm")


def _caveats(setup: _Setup) -> list[str]:
    caveats = [
        "field thresholds and conductivities are literature values (Go-Smart; 460/700 V/cm also quoted): "
        "coverage depends strongly on them" if setup.kind == "ect" else
        "IRE lethal field calibrated to in vivo porcine liver (Ben-David 2012, 438 V/cm liver; tumour value "
        "assumed): coverage depends strongly on it",
        "needles not in the pulsed pair are modelled as tissue; metal clips/stents distort the field",
        "pair currents are estimates from the voxelised needles; pulse heating is an adiabatic upper bound "
        "(no conduction or perfusion between pulses) at voxel resolution: max_temperature_c",
        f"generator limits ({setup.gen['name']}: {setup.u_max:g} V, {setup.i_max:g} A) are to be verified "
        "against the device manual",
    ]
    if setup.fov_faces:
        caveats.append(_fov_condition(setup))
    if setup.kind == "ect":
        caveats.append("ECT spares vessels and collagenous structures (vessels > 5 mm preserved); "
                       "bleomycin dose limits apply")
    return caveats


def _electroporation_plan(setup: _Setup, measurements: Mapping[str, Any] | None, g: _Geometry, fin: _Solve,
                          verify: _Grid, limit: str | None, covered: bool, tried: list[dict[str, Any]],
                          verified: list[dict[str, Any]], target_margin_mm: float, coverage_goal_percent: float,
                          coverage_target: str, search_grid_mm: float, verify_grid_mm: float) -> TreatmentPlan:
    """Plan outputs: verification-grid metrics, zone/field on the case crop for display."""
    case, lesion_id, kind, ref, h, lo = setup.case, setup.lesion_id, setup.kind, setup.ref, setup.h, setup.lo
    hv = np.full(3, verify.h_mm)
    zone_v = fin.field_v_per_cm >= verify.threshold
    margin = ablative_margin_arrays(verify.tumour, zone_v, hv) if zone_v.any() else None
    tum_cov = 100.0 * float(np.mean(zone_v[verify.tumour]))
    f_tum = fin.field_v_per_cm[verify.tumour]
    field_ref = setup.on_ref(fin.field_v_per_cm, verify.h_mm)
    zone_ref = setup.on_ref(zone_v, verify.h_mm)
    th, curve = ep.coverage_curve(fin.field_v_per_cm, verify.tumour)
    apps = _applicators(kind, setup.needles_for(g), g, ref, setup.traj, setup.exposure_mm, setup.segments,
                        setup.pulses, setup.gen, setup.radius_mm, setup.sim_lo - np.asarray(lo))
    pair_rows = [{"anode": a, "cathode": b, "distance_mm": round(dd, 1), "voltage_v": round(v, 0),
                  "voltage_to_distance_v_per_cm": round(v / (dd / 10.0), 0), "current_a": round(c, 1)}
                 for (a, b), dd, v, c in zip(g.pairs, g.pair_distances_mm(), fin.voltages_v, fin.currents_a,
                                             strict=True)]
    target_words = "tumour" if coverage_target == "tumour" else f"tumour + {target_margin_mm:g} mm"
    reasons = _reason(setup, g, fin, limit, covered, target_words, coverage_goal_percent)
    caveats = _caveats(setup)
    zone_vol = ref.with_array(zone_ref)
    organs, unsegmented = organ_volumes_in_zone(case, zone_ref, lo)
    vol_range, margin_range = _threshold_band(fin.field_v_per_cm, verify, hv, zone_uncertainty_fraction(kind))
    sinks = heat_sink_vessels(case, lesion_id, measurements=_lesion_meas(measurements, lesion_id))
    mm = margin.min_margin_mm if margin is not None else -1e3
    metrics: dict[str, Any] = {
        "min_margin_mm": round(float(mm), 2),
        "coverage_percent": round(tum_cov, 2),
        "target_coverage_percent": round(fin.target_coverage_percent, 2),
        "coverage_goal_percent": float(coverage_goal_percent),
        "coverage_target": coverage_target,
        "applicator_count": len(g.offsets_mm),
        "covered": covered,
        "limited_by": limit,
        "target_margin_mm": float(target_margin_mm),
        "layout": g.layout,
        "spacing_mm": g.spacing_mm,
        "exposure_mm": setup.exposure_mm,
        "pullbacks": len(setup.segments),
        "pairs": pair_rows,
        "voltages_v": [r["voltage_v"] for r in pair_rows],
        "currents_a": [r["current_a"] for r in pair_rows],
        "max_voltage_v": setup.u_max,
        "max_current_a": setup.i_max,
        "min_field_tumour_v_per_cm": round(float(f_tum.min()), 1),
        "converged": bool(fin.info["converged"]),
        "field_iterations": int(fin.info["iterations"]),
        "field_residual": round(float(fin.info["residual"]), 4),
        "max_temperature_c": round(float(fin.info["max_temperature_c"]), 1),
        "field_tumour_p05_v_per_cm": round(float(np.percentile(f_tum, 5)), 1),
        "threshold_v_per_cm": "tissue-specific" if setup.threshold_v_per_cm is None else float(setup.threshold_v_per_cm),
        "coverage_curve": {"threshold_v_per_cm": th[::4].tolist(), "coverage_percent": np.round(curve[::4], 2).tolist()},
        "zone_volume_ml": round(float(zone_v.sum()) * verify.h_mm**3 / 1000.0, 2),
        "zone_volume_range_ml": vol_range,
        "min_margin_range_mm": margin_range,
        "threshold_uncertainty_fraction": zone_uncertainty_fraction(kind),
        "organ_volumes_in_zone_ml": organs,
        "unsegmented_organs": unsegmented,
        "heat_sink_vessels": sinks,
        "collateral_structures": collateral_structures(case, zone_vol, lo),
        # [L] None (unknown) when the image does not show the abdominal wall along the path
        "trajectory_safe": bool(setup.traj.safe) if setup.traj.verified is not False else None,
        "trajectory_verified": setup.traj.verified,
        # the simulated region extends past the image edge (tissue assumed there): at best "uncertain"
        "fov_limited": bool(setup.fov_faces),
        "fov_limited_faces": list(setup.fov_faces),
        "fov_extension_mm": max(setup.fov_faces.values(), default=0.0),
        "search": tried,
        "verification": verified,
        "reason": "; ".join(reasons),
    }
    lesion, margin_for_target = setup.lesion, setup.margin_for_target_mm
    return TreatmentPlan(
        modality=kind,
        lesion_id=lesion_id,
        metrics=metrics,
        applicators=apps,
        zone=zone_vol,
        field_v_per_cm=ref.with_array(field_ref.astype(np.float32)),
        target=ref.with_array(_dilated(lesion, margin_for_target, h)[setup.inside]),
        margin_histogram=({k: round(v, 2) for k, v in margin_histogram_percent(margin.surface_margins_mm).items()}
                          if margin else None),
        caveats=caveats,
        parameters={"target_margin_mm": float(target_margin_mm), "coverage_goal_percent": float(coverage_goal_percent),
                    "coverage_target": coverage_target, "iterations": setup.iterations,
                    "search_grid_mm": float(search_grid_mm), "verify_grid_mm": float(verify_grid_mm),
                    "escalation_factors": setup.factors, "generator": setup.gen["name"],
                    "citations": [str(setup.consts["citation"]).strip(), str(setup.gen["citation"]).strip(),
                                  str(setup.plan_cfg["citation"]).strip()]},
        engine="latplan.physics.electroporation",
        engine_version=ENGINE_VERSION,
        verification=VERIFICATION,
    )


def _threshold_band(field_v_per_cm: np.ndarray, grid: _Grid, hv: np.ndarray,
                    fraction: float) -> tuple[list[float], list[float]]:
    """([zone ml, …], [min margin mm, …]) at the lethal threshold × (1 + f) and × (1 − f): the
    band from the threshold's uncertainty (its in vivo calibration tolerance, data file)."""
    vols, margins = [], []
    for scale in (1.0 + fraction, 1.0 - fraction):
        z = field_v_per_cm >= grid.threshold * scale
        vols.append(round(float(z.sum()) * grid.h_mm**3 / 1000.0, 2))
        margins.append(round(float(ablative_margin_arrays(grid.tumour, z, hv).min_margin_mm), 2) if z.any() else -1e3)
    return vols, margins


def _planning_constants(consts: Mapping[str, Any], kind: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Generator limits and planning ranges of ``kind`` from the data file."""
    try:
        gen = dict(consts["generators"][kind])
        cfg = dict(consts["planning"][kind])
        for k in ("name", "max_voltage_v", "max_current_a", "citation"):
            gen[k]
        for k in ("layouts", "spacings_mm", "exposure_mm", "escalation_factors", "citation"):
            cfg[k]
    except (KeyError, TypeError) as exc:
        raise SourceDataError(f"{ep.DATA_FILE} lacks the generator/planning entry {exc} for {kind}.") from None
    return gen, cfg


def _pullbacks(length_mm: float, min_exposure_mm: float, max_exposure_mm: float) -> tuple[list[float], float]:
    """Start offsets (mm from the proximal target end) and the exposure covering ``length_mm``."""
    n = max(1, math.ceil(length_mm / max_exposure_mm - 1e-9))
    exposure = float(min(max_exposure_mm, max(min_exposure_mm, 5.0 * math.ceil(length_mm / n / 5.0 - 1e-9))))
    if n == 1:
        return [0.5 * (length_mm - exposure)], exposure
    step = (length_mm - exposure) / (n - 1)
    return [m * step for m in range(n)], exposure


def _candidate_geometries(kind: str, pulses: Mapping[str, Any], cfg: Mapping[str, Any], r_target_mm: float,
                          max_geometries: int) -> tuple[list[_Geometry], str]:
    """Layouts around the target cross-section (module doc), fewest needles first."""
    ratios = pulses["voltage_to_distance_v_per_cm"]
    layouts = [lay for lay in LAYOUTS if lay in cfg["layouts"]]
    spacings = sorted(float(s) for s in cfg["spacings_mm"])
    out: list[_Geometry] = []
    for lay in layouts:
        fits = [s for s in spacings if _inradius_mm(lay, s) + 0.25 * s >= r_target_mm
                and _circumradius_mm(lay, s) <= r_target_mm + MAX_NEEDLE_OUTSIDE_MM]
        for s in fits[:2]:
            off, pairs = layout_offsets_mm(lay, s)
            ratio = float(ratios["hexagonal" if lay == "hexagonal7" else "pair"])
            out.append(_Geometry(lay, s, off, pairs, ratio))
    note = ""
    if not out:
        lay, s = layouts[-1], spacings[-1]
        off, pairs = layout_offsets_mm(lay, s)
        out = [_Geometry(lay, s, off, pairs, float(ratios["hexagonal" if lay == "hexagonal7" else "pair"]))]
        note = (f"the target's cross-section (radius {r_target_mm:.0f} mm) is larger than the largest array "
                f"({lay} {s:g} mm) encloses")
    # smallest fitting spacing per layout first; a second spacing only for the last layout
    firsts = [g for i, g in enumerate(out) if i == 0 or out[i - 1].layout != g.layout]
    seconds = [g for g in out if g not in firsts and g.layout == out[-1].layout]
    return (firsts + seconds)[:max(1, max_geometries)], note


def _applicators(kind: str, needles: Sequence[Sequence[ep.Needle]], g: _Geometry, ref: Any, traj: Any,
                 exposure: float, segments: Sequence[float], pulses: Mapping[str, Any], gen: Mapping[str, Any],
                 radius: float, offset_vox: np.ndarray) -> list[dict[str, Any]]:
    """One entry per needle (deepest pull-back position), LPS millimetres, as the thermal planners;
    ``offset_vox``: the simulation crop's corner in ``ref`` voxels (≠ 0 where it extends past the image)."""
    h = np.asarray(ref.spacing_kji_mm, float)
    deepest = needles[-1]
    step = float(segments[1] - segments[0]) if len(segments) > 1 else 0.0
    out = []
    for i, nd in enumerate(deepest):
        tip_mm = ref.index_to_mm(np.asarray(nd.tip_kji_mm) / h + offset_vox)
        entry = tip_mm - (traj.depth_mm + float(np.dot(tip_mm - traj.target_mm, traj.direction))) * traj.direction
        out.append({"type": kind, "device": "needle electrode", "needle": i,
                    "tip_mm": [round(float(x), 2) for x in tip_mm],
                    "direction": [round(float(x), 4) for x in traj.direction],
                    "entry_mm": [round(float(x), 2) for x in entry],
                    "depth_mm": round(float(np.linalg.norm(tip_mm - entry)), 1),
                    "settings": {"exposure_mm": exposure, "active_length_mm": exposure, "radius_mm": radius,
                                 "layout": g.layout, "spacing_mm": g.spacing_mm, "pullbacks": len(segments),
                                 "pullback_step_mm": round(step, 1), "pulses": pulses["pulses"],
                                 "pulse_width_us": pulses["pulse_width_us"], "generator": gen["name"]}})
    return out


def _lesion_meas(measurements: Mapping[str, Any] | None, lesion_id: str) -> dict[str, Any] | None:
    if not measurements:
        return None
    if isinstance(measurements.get("lesions"), list):
        for e in measurements["lesions"]:
            if isinstance(e, Mapping) and e.get("id") == lesion_id:
                return dict(e)
        return None
    return dict(measurements)


def plan_ect(case: Case, lesion_id: str, measurements: Mapping[str, Any] | None = None, *,
             geometry: CaseGeometry | None = None,
             target_margin_mm: float = 5.0, threshold_v_per_cm: float | None = None,
             coverage_goal_percent: float = 95.0, coverage_target: str | None = None,
             iterations: int | None = None) -> TreatmentPlan:
    """Electrochemotherapy plan: ≥ ``coverage_goal_percent`` of the tumour above the reversible threshold."""
    return plan_electroporation("ect", case, lesion_id, measurements, geometry=geometry,
                                target_margin_mm=target_margin_mm,
                                threshold_v_per_cm=threshold_v_per_cm, coverage_goal_percent=coverage_goal_percent,
                                coverage_target=coverage_target, iterations=iterations)


def plan_ire(case: Case, lesion_id: str, measurements: Mapping[str, Any] | None = None, *,
             geometry: CaseGeometry | None = None,
             target_margin_mm: float = 5.0, threshold_v_per_cm: float | None = None,
             coverage_goal_percent: float = 95.0, coverage_target: str | None = None,
             iterations: int | None = None) -> TreatmentPlan:
    """Irreversible electroporation plan: ≥ ``coverage_goal_percent`` of tumour + margin above the
    irreversible threshold."""
    return plan_electroporation("ire", case, lesion_id, measurements, geometry=geometry,
                                target_margin_mm=target_margin_mm,
                                threshold_v_per_cm=threshold_v_per_cm, coverage_goal_percent=coverage_goal_percent,
                                coverage_target=coverage_target, iterations=iterations)
