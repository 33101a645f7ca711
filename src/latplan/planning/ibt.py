"""Interstitial HDR brachytherapy (IBT) plan for one liver lesion.

Steps (docs/radiation-physics.md):

1. CTV = lesion + the protocol CTV margin (knowledge/radiation/ibt.yaml, cited), replaced by the
   rules' ``target_margin_mm`` when larger; Euclidean in mm, kept inside liver ∪ lesion.
2. Catheters: straight percutaneous lines from a body-surface entry through the CTV, chosen by
   sampling candidate directions (Fibonacci sphere) and scoring them; lines closer than
   ``safety_mm`` to bone, large vessels (calibre ≥ ``vessel_min_calibre_mm``), bile ducts,
   gallbladder, hollow and solid organs are rejected. The count follows the CTV size; pierce points
   are spread over the CTV cross-section and the catheters run parallel to the main direction where
   that is safe (near-parallel otherwise), no two axes closer than ``min_catheter_spacing_mm``
   inside the target. User catheters are used as given.
3. Dwell positions every ``dwell_step_mm`` along each catheter inside the CTV ± ``dwell_extension_mm``.
4. Dwell times by LP (:mod:`latplan.physics.dwell_opt`) with cutting planes on every CTV voxel
   centre and 3×3×3 sub-points of the surface voxels; optionally on the CTV under rigid catheter
   shifts (``plan_for_robustness``). An automatically placed catheter carrying < 5 % of the dwell
   time is removed and the plan re-optimised.
5. Metrics (direct TG-43 on the points, no dose interpolation): D100/D98/D90/D50, V100/V150/V200,
   conformity (COIN/Paddick) and DHI of the CTV (sub-voxel sampling); D100/D90 at lesion + 5 mm and
   + 10 mm (``margin_dose_gy``); worst CTV D100/D90 under ±3/±5 mm shifts (``robustness``);
   D0.1cc/D1cc/D2cc of the organs; V5Gy/V10Gy/mean of the normal liver (liver − lesions); BED10 of
   D100 with the protraction factor of the delivery time (Dale 1985); source decay to the treatment date.
"""

from __future__ import annotations

import datetime as dt
import time
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np
from scipy import ndimage as ndi

from latplan.anatomy.geometry import CaseGeometry, geometry_for
from latplan.case.vocabulary import HOLLOW_ORGAN_ROLES, VESSEL_ROLES, StructureRole
from latplan.errors import EmptyStructureError, InvalidInputError, PlanningError
from latplan.imaging.volume import Volume
from latplan.physics import dvh, lq, tg43
from latplan.physics.dwell_opt import OARConstraint, optimise_dwell_times
from latplan.planning.fov import fov_check
from latplan.planning.types import DVHCurve, TreatmentPlan

__all__ = [
    "Catheter",
    "catheter_min_spacing_mm",
    "ctv_mask",
    "ibt_source",
    "liver_mask",
    "place_catheters",
    "plan_ibt",
    "segment_distance_mm",
    "structure_names_cached",
    "subvoxel_points",
]

ENGINE = "latplan.ibt"
ENGINE_VERSION = "0.2"

#: roles a catheter must never cross (vessels only above the calibre limit, see below)
_FORBIDDEN_ROLES = frozenset({
    StructureRole.BONE, StructureRole.BILE_DUCT, StructureRole.GALLBLADDER, StructureRole.HEART,
    StructureRole.KIDNEY, StructureRole.SPLEEN, StructureRole.PANCREAS, StructureRole.SPINAL_CORD,
    StructureRole.ADRENAL, StructureRole.INFERIOR_VENA_CAVA, StructureRole.AORTA,
}) | HOLLOW_ORGAN_ROLES
_PENALISED_ROLES = frozenset({StructureRole.LUNG})


@dataclass
class Catheter:
    """A straight catheter: entry on the skin, tip beyond the CTV (LPS mm); dwells along it."""

    entry_mm: np.ndarray
    tip_mm: np.ndarray
    dwell_positions_mm: np.ndarray
    user_given: bool = False
    clearance_mm: float | None = None

    @property
    def direction(self) -> np.ndarray:
        v = self.tip_mm - self.entry_mm
        return v / np.linalg.norm(v)

    def as_dict(self, times_s: np.ndarray | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {
            "type": "catheter",
            "entry_mm": np.round(self.entry_mm, 2).tolist(),
            "tip_mm": np.round(self.tip_mm, 2).tolist(),
            "direction": np.round(self.direction, 5).tolist(),
            "length_mm": round(float(np.linalg.norm(self.tip_mm - self.entry_mm)), 1),
            "dwell_positions_mm": np.round(self.dwell_positions_mm, 2).tolist(),
            "user_given": self.user_given,
        }
        if self.clearance_mm is not None:
            out["clearance_mm"] = round(float(self.clearance_mm), 1)
        if times_s is not None:
            out["dwell_times_s"] = np.round(times_s, 3).tolist()
            out["total_time_s"] = round(float(np.sum(times_s)), 2)
        return out


# ------------------------------------------------------------------------------------------------
# Target
# ------------------------------------------------------------------------------------------------
def ctv_mask(case: Any, lesion_id: str, margin_mm: float) -> Volume:
    """CTV = lesion dilated by ``margin_mm`` (mm, anisotropic spacing honoured), inside liver ∪ lesion."""
    if margin_mm < 0 or not np.isfinite(margin_mm):
        raise InvalidInputError(f"CTV margin must be ≥ 0 mm; got {margin_mm}.")
    les = case.lesion_mask(lesion_id)
    arr = les.array.astype(bool)
    if margin_mm > 0:
        ctv = _lesion_distance_mm(case, lesion_id, arr, les.spacing_kji_mm) <= margin_mm
    else:
        ctv = arr.copy()
    liver = liver_mask(case)
    if liver is not None:
        ctv &= liver | arr
    return les.with_array(ctv)


_LESION_DIST: weakref.WeakKeyDictionary[Any, dict[str, tuple[np.ndarray, np.ndarray]]] = weakref.WeakKeyDictionary()


def _lesion_distance_mm(case: Any, lesion_id: str, lesion: np.ndarray, spacing_kji_mm: np.ndarray) -> np.ndarray:
    """Distance (mm) to the lesion on the case grid, once per case and lesion: the plan's CTV and the
    +5/+10 mm margin targets are thresholds of the same map (it was recomputed for each)."""
    try:
        per_case = _LESION_DIST.setdefault(case, {})
    except TypeError:
        return np.asarray(ndi.distance_transform_edt(~lesion, sampling=spacing_kji_mm), float)
    hit = per_case.get(lesion_id)
    if hit is None or hit[0].shape != lesion.shape or not np.array_equal(hit[0], lesion):
        hit = (lesion.copy(), np.asarray(ndi.distance_transform_edt(~lesion, sampling=spacing_kji_mm), float))
        per_case[lesion_id] = hit
    return hit[1]


_NAMES: weakref.WeakKeyDictionary[Any, list[str]] = weakref.WeakKeyDictionary()


def _names(case: Any) -> list[str]:
    """``case.structure_names()`` once per case (it scans the whole label map)."""
    try:
        hit = _NAMES.get(case)
    except TypeError:
        return case.structure_names()
    if hit is None:
        hit = case.structure_names()
        try:
            _NAMES[case] = hit
        except TypeError:
            pass
    return hit


def _has(case: Any, name: str) -> bool:
    return name in _names(case)


#: per-case cached ``structure_names()`` (also used by the SBRT/TARE planners)
structure_names_cached = _names


def liver_mask(case: Any, geometry: CaseGeometry | None = None) -> np.ndarray | None:
    """Liver ∪ every lesion (lesions are labelled over the liver: they count as liver tissue); None
    when the case has no liver. The liver is the case's one liver mask
    (:attr:`latplan.anatomy.geometry.CaseGeometry.liver`); a new array each call."""
    geo = geometry_for(case, geometry)
    if geo.liver is None:
        return None
    return np.asarray(geo.liver | geo.lesions, bool)


# ------------------------------------------------------------------------------------------------
# Catheter placement
# ------------------------------------------------------------------------------------------------
def _fibonacci_dirs(n: int) -> np.ndarray:
    i = np.arange(n) + 0.5
    phi = np.arccos(1 - 2 * i / n)
    golden = np.pi * (1 + 5**0.5)
    th = golden * i
    return np.stack([np.cos(th) * np.sin(phi), np.sin(th) * np.sin(phi), np.cos(phi)], axis=1)


def _forbidden_distance(case: Any, vessel_min_calibre_mm: float, lesion_names: set[str],
                        stride: np.ndarray | None = None, geometry: CaseGeometry | None = None,
                        ) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(distance to the nearest forbidden voxel in mm, penalised mask, names of forbidden structures),
    on the grid subsampled by ``stride`` (k, j, i) — the EDT runs on the coarse grid (speed/memory).

    A vessel is forbidden where its local calibre (the case's one calibre map,
    :attr:`~latplan.anatomy.geometry.CaseGeometry.vessel_calibre_mm`) is ≥ ``vessel_min_calibre_mm``.
    Once per case and arguments (:meth:`~latplan.anatomy.geometry.CaseGeometry.memo`): it does not
    depend on the lesion planned. The arrays returned are shared: do not modify them."""
    geo = geometry_for(case, geometry)
    stride = np.ones(3, int) if stride is None else np.asarray(stride, int)
    key = ("ibt_forbidden_distance", float(vessel_min_calibre_mm), tuple(sorted(lesion_names)),
           tuple(int(x) for x in stride))
    dist, penal, names = geo.memo(key, lambda: _forbidden_distance_uncached(geo, vessel_min_calibre_mm,
                                                                           lesion_names, stride))
    return dist, penal, list(names)


def _forbidden_distance_uncached(geometry: CaseGeometry, vessel_min_calibre_mm: float, lesion_names: set[str],
                                 stride: np.ndarray) -> tuple[np.ndarray, np.ndarray, list[str]]:
    case = geometry.case
    shape = case.labels.shape
    forbidden = np.zeros(shape, bool)
    penal = np.zeros(shape, bool)
    names = []
    sp = case.labels.spacing_kji_mm
    big_vessel = geometry.vessel_calibre_mm >= vessel_min_calibre_mm
    for name in geometry.structure_names:
        if name in lesion_names:
            continue
        role = case.role(name)
        if role in _FORBIDDEN_ROLES:
            forbidden |= case.mask_array(name)
            names.append(name)
        elif role in VESSEL_ROLES:
            big = case.mask_array(name) & big_vessel
            if big.any():
                forbidden |= big
                names.append(name)
        elif role in _PENALISED_ROLES:
            penal |= case.mask_array(name)
    sl = tuple(slice(0, None, int(x)) for x in stride)
    if stride.max() > 1:
        # keep thin structures: a coarse voxel is forbidden when any fine voxel of its block is
        forbidden = ndi.maximum_filter(forbidden, size=tuple(int(x) for x in stride))
    f = forbidden[sl]
    dist = ndi.distance_transform_edt(~f, sampling=sp * stride) if f.any() else np.full(f.shape, 1e6)
    return dist, penal[sl], names


def _placement_stride(spacing_kji_mm: np.ndarray) -> np.ndarray:
    """Catheter placement works on a ~2 mm grid: placement needs no finer resolution."""
    return np.maximum(1, np.rint(2.0 / np.asarray(spacing_kji_mm, float)).astype(int))


@dataclass
class _PlacementContext:
    grid: Volume
    body: np.ndarray
    ctv: np.ndarray
    dist: np.ndarray
    penal: np.ndarray


def _sample(ctx: _PlacementContext, arr: np.ndarray, pts_mm: np.ndarray, fill: float) -> np.ndarray:
    idx = np.rint(ctx.grid.mm_to_index(pts_mm)).astype(int)
    shape = np.asarray(arr.shape)
    inside = np.all((idx >= 0) & (idx < shape), axis=-1)
    out = np.full(idx.shape[:-1], fill, dtype=float)
    ii = idx[inside]
    out[inside] = arr[ii[:, 0], ii[:, 1], ii[:, 2]]
    return out


def _evaluate_lines(ctx: _PlacementContext, pierce_mm: np.ndarray, dirs: np.ndarray, *, safety_mm: float,
                    extension_mm: float, step_mm: float = 1.0, reach_mm: float = 350.0) -> list[dict[str, Any]]:
    """Score the lines through ``pierce_mm`` along each direction (towards the tip), vectorised.

    Along each line (1 mm steps): the CTV chord, the skin entry (last point outside the body
    before the CTV), the tip (CTV exit + extension + 5 mm), the clearance to forbidden
    structures over entry → tip, the length inside lung, and the angle out of the axial plane.
    cost = depth + 5·lung_mm + 0.5·axial_angle − 2·min(clearance, 10 mm), + 1000 when the skin entry is not
    on the image (the line leaves the field of view still inside the body: not verifiable, [L]).
    """
    s = np.arange(-reach_mm, reach_mm / 2 + step_mm, step_mm)
    pts = pierce_mm[None, None, :] + s[None, :, None] * dirs[:, None, :]
    body = _sample(ctx, ctx.body, pts, 0.0) > 0.5
    ctv = _sample(ctx, ctx.ctv, pts, 0.0) > 0.5
    dist = _sample(ctx, ctx.dist, pts, 1e6)
    lung = _sample(ctx, ctx.penal, pts, 0.0) > 0.5
    in_image = _sample(ctx, np.ones(ctx.body.shape, np.float32), pts, 0.0) > 0.5
    n_s = len(s)
    idx = np.arange(n_s)[None, :]
    has = ctv.any(axis=1)
    first = np.argmax(ctv, axis=1)
    last = n_s - 1 - np.argmax(ctv[:, ::-1], axis=1)
    tip_i = np.minimum(n_s - 1, last + int(np.ceil((extension_mm + 5.0) / step_mm)))
    out_before = ~body & (idx <= first[:, None])
    leaves = out_before.any(axis=1)
    entry_i = np.where(out_before, idx, -1).max(axis=1) + 1
    seg = (idx >= entry_i[:, None]) & (idx <= tip_i[:, None])
    clearance = np.where(seg, dist, np.inf).min(axis=1)
    ok = has & leaves & (clearance >= safety_mm)
    depth = (first - entry_i) * step_mm
    lung_mm = (lung & seg).sum(axis=1) * step_mm
    axial = np.degrees(np.arcsin(np.minimum(1.0, np.abs(dirs[:, 2]))))
    # [L] a line that "leaves the body" only because it leaves the image (a side cropped by the field of
    # view) has no skin entry on the image: it cannot be verified. Such lines are kept as a last resort
    # (cost + 1000) so that any verifiable path is preferred when there is a choice.
    verifiable = in_image[np.arange(len(dirs)), np.maximum(entry_i - 1, 0)]
    cost = depth + 5.0 * lung_mm + 0.5 * axial - 2.0 * np.minimum(clearance, 10.0) + np.where(verifiable, 0.0, 1000.0)
    out = []
    for n in np.flatnonzero(ok):
        out.append({"dir": dirs[n], "entry": pierce_mm + s[entry_i[n]] * dirs[n], "tip": pierce_mm + s[tip_i[n]] * dirs[n],
                    "cost": float(cost[n]), "clearance": float(clearance[n]), "depth": float(depth[n]),
                    "lung_mm": float(lung_mm[n]), "verifiable": bool(verifiable[n])})
    return out


def _n_catheters(ctv_ml: float) -> int:
    """Catheter count from the CTV size: one up to ≈ 25 mm equivalent diameter, then ∝ cross-section."""
    d_eq_mm = (6.0 * ctv_ml * 1000.0 / np.pi) ** (1.0 / 3.0)
    return int(np.clip(np.ceil((d_eq_mm / 22.0) ** 2), 1, 12))


def _kmeans_2d(pts: np.ndarray, k: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if k >= len(pts):
        return pts.copy()
    # farthest-point initialisation, then Lloyd iterations (deterministic)
    centres = [pts[np.argmin(np.linalg.norm(pts - pts.mean(0), axis=1))]]
    for _ in range(1, k):
        d = np.min(np.linalg.norm(pts[:, None] - np.array(centres)[None], axis=2), axis=1)
        centres.append(pts[np.argmax(d)])
    c = np.array(centres, float)
    for _ in range(30):
        lab = np.argmin(np.linalg.norm(pts[:, None] - c[None], axis=2), axis=1)
        new = np.array([pts[lab == i].mean(0) if np.any(lab == i) else c[i] for i in range(k)])
        if np.allclose(new, c):
            break
        c = new
    del rng
    return c


def place_catheters(case: Any, ctv: Volume, *, safety_mm: float = 3.0, vessel_min_calibre_mm: float = 3.0,
                    dwell_step_mm: float = 5.0, dwell_extension_mm: float = 2.5, n_catheters: int | None = None,
                    n_directions: int = 800, lesion_names: Sequence[str] = (), min_spacing_mm: float = 5.0,
                    max_divergence_deg: float = 15.0,
                    geometry: CaseGeometry | None = None) -> tuple[list[Catheter], list[str]]:
    """Propose percutaneous catheters through the CTV; returns (catheters, notes).

    The main direction is the cheapest safe line through the CTV centre; the other catheters pass
    through pierce points spread over the CTV cross-section (k-means) and run parallel to it where
    that line is safe, otherwise within ``max_divergence_deg`` of it. A catheter whose axis comes
    closer than ``min_spacing_mm`` to an accepted one inside the target is not used. The body and the
    vessel calibre are the case's (:class:`~latplan.anatomy.geometry.CaseGeometry`, ``geometry``).
    """
    geo = geometry_for(case, geometry)
    notes: list[str] = []
    ctv_arr = ctv.array.astype(bool)
    if not ctv_arr.any():
        raise EmptyStructureError("the CTV is empty; no catheter can be placed.")
    stride = _placement_stride(ctv.spacing_kji_mm)
    sl = tuple(slice(0, None, int(s)) for s in stride)
    grid = Volume(ctv_arr[sl], _strided_affine(ctv, stride))
    dist, penal, names = _forbidden_distance(case, vessel_min_calibre_mm, set(lesion_names), stride, geo)
    ctx = _PlacementContext(grid, geo.body[sl], ctv_arr[sl], dist, penal)
    if names:
        notes.append("catheters avoid " + ", ".join(sorted(set(names))) + f" by ≥ {safety_mm:g} mm "
                     f"(vessels only where the calibre is ≥ {vessel_min_calibre_mm:g} mm)")
    kji = np.argwhere(ctv_arr)
    pts_mm = ctv.index_to_mm(kji.astype(float))
    centre = pts_mm.mean(0)
    ctv_ml = float(ctv_arr.sum() * ctv.voxel_volume_ml)
    k = n_catheters or _n_catheters(ctv_ml)
    dirs = _fibonacci_dirs(n_directions)
    cands = _evaluate_lines(ctx, centre, dirs, safety_mm=safety_mm, extension_mm=dwell_extension_mm)
    if not cands:
        raise PlanningError(
            "no safe straight percutaneous path to the CTV centre was found: every sampled direction crosses bone, "
            "a large vessel, a bile duct, the gallbladder or a hollow organ within the safety distance "
            f"({safety_mm:g} mm). Give catheters explicitly (catheters=[{{'entry_mm':..., 'tip_mm':...}}])."
        )
    best = min(cands, key=lambda c: c["cost"])
    u0 = best["dir"]
    pierce = [centre]
    if k > 1:
        # spread pierce points over the CTV cross-section perpendicular to the main direction
        a = np.cross(u0, [1.0, 0, 0] if abs(u0[0]) < 0.9 else [0, 1.0, 0])
        a /= np.linalg.norm(a)
        b = np.cross(u0, a)
        rel = pts_mm - centre
        proj = np.stack([rel @ a, rel @ b], axis=1)
        step = max(1, len(proj) // 20000)
        c2 = _kmeans_2d(proj[::step], k)
        pierce = []
        for cx, cy in c2:
            # pierce point: the CTV point nearest to the cluster centre's line
            along = rel @ u0
            sel = np.argmin((proj[:, 0] - cx) ** 2 + (proj[:, 1] - cy) ** 2)
            pierce.append(centre + cx * a + cy * b + along[sel] * u0)
    catheters = _lay_catheters(ctx, ctv, pierce, u0, dirs, notes, safety_mm=safety_mm, dwell_step_mm=dwell_step_mm,
                               dwell_extension_mm=dwell_extension_mm, min_spacing_mm=min_spacing_mm,
                               max_divergence_deg=max_divergence_deg)
    if not catheters:
        raise PlanningError("no catheter with dwell positions inside the CTV could be placed; give catheters explicitly.")
    notes.append(f"{len(catheters)} catheter(s) for a {ctv_ml:.1f} ml CTV (rule: ⌈(D_eq/22 mm)²⌉, 1–12)")
    return catheters, notes


def _segment_in_target(c: Catheter, extension_mm: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """(start, end) of the part of a catheter inside the target: its dwell train (± ``extension_mm``)."""
    dw = c.dwell_positions_mm
    u = c.direction
    return dw[0] - extension_mm * u, dw[-1] + extension_mm * u


def segment_distance_mm(p0: np.ndarray, p1: np.ndarray, q0: np.ndarray, q1: np.ndarray, n: int = 400) -> float:
    """Shortest distance (mm) between segments p0–p1 and q0–q1 (dense sampling of one, exact to the other)."""
    t = np.linspace(0.0, 1.0, n)[:, None]
    pts = p0[None] + t * (p1 - p0)[None]
    d = q1 - q0
    dd = float(d @ d)
    s = np.clip(((pts - q0[None]) @ d) / dd, 0.0, 1.0) if dd > 0 else np.zeros(n)
    return float(np.min(np.linalg.norm(pts - (q0[None] + s[:, None] * d[None]), axis=1)))


def catheter_min_spacing_mm(catheters: Sequence[Catheter]) -> float | None:
    """Smallest distance (mm) between two catheter axes inside the target (None for < 2 catheters)."""
    best: float | None = None
    for i in range(len(catheters)):
        a0, a1 = _segment_in_target(catheters[i])
        for j in range(i + 1, len(catheters)):
            b0, b1 = _segment_in_target(catheters[j])
            d = segment_distance_mm(a0, a1, b0, b1)
            best = d if best is None else min(best, d)
    return best


def _lay_catheters(ctx: _PlacementContext, ctv: Volume, pierce: list[np.ndarray], u0: np.ndarray, dirs: np.ndarray,
                   notes: list[str], *, safety_mm: float, dwell_step_mm: float, dwell_extension_mm: float,
                   min_spacing_mm: float, max_divergence_deg: float) -> list[Catheter]:
    """One catheter per pierce point: parallel to ``u0`` when safe, else the cheapest line within the divergence
    limit (then any safe line) that keeps ``min_spacing_mm`` to the catheters already laid."""
    near = dirs[dirs @ u0 >= np.cos(np.radians(max_divergence_deg))]
    a = np.cross(u0, [1.0, 0, 0] if abs(u0[0]) < 0.9 else [0, 1.0, 0])
    a /= np.linalg.norm(a)
    b = np.cross(u0, a)
    # pierce points nudged across the main direction (3 and 6 mm) keep catheters parallel past a vessel
    nudges = [np.zeros(3)] + [r * (np.cos(t) * a + np.sin(t) * b) for r in (3.0, 6.0)
                              for t in np.arange(8) * np.pi / 4]
    catheters: list[Catheter] = []
    for p in pierce:
        chosen: Catheter | None = None
        tries = [(p + n, pool) for pool in (u0[None], near) for n in nudges] + [(p, dirs)]
        for pp, pool in tries:
            if not _sample(ctx, ctx.ctv, pp[None], 0.0)[0] > 0.5:
                continue
            cands = _evaluate_lines(ctx, pp, pool, safety_mm=safety_mm, extension_mm=dwell_extension_mm)
            # prefer small divergence from the main direction (near-parallel), then the path cost
            for bc in sorted(cands, key=lambda x: x["cost"] + 2.0 * float(np.degrees(np.arccos(
                    np.clip(x["dir"] @ u0, -1.0, 1.0))))):
                dw = _dwell_positions(ctv, bc["entry"], bc["tip"], dwell_step_mm, dwell_extension_mm)
                if len(dw) == 0:
                    continue
                cand = Catheter(bc["entry"], bc["tip"], dw, False, bc["clearance"])
                a0, a1 = _segment_in_target(cand)
                if all(segment_distance_mm(a0, a1, *_segment_in_target(o)) >= min_spacing_mm for o in catheters):
                    chosen = cand
                    break
            if chosen is not None:
                break
        if chosen is None:
            notes.append(f"no safe path through pierce point {np.round(p, 1).tolist()} mm keeping ≥ "
                         f"{min_spacing_mm:g} mm to the other catheters; catheter dropped")
            continue
        catheters.append(chosen)
    if len(catheters) > 1:
        ang = max(float(np.degrees(np.arccos(np.clip(c.direction @ u0, -1.0, 1.0)))) for c in catheters)
        notes.append(f"catheters within {ang:.0f}° of the main direction; axes ≥ {min_spacing_mm:g} mm apart inside "
                     f"the target (closest {catheter_min_spacing_mm(catheters):.1f} mm)")
    return catheters


def _strided_affine(vol: Volume, stride_kji: np.ndarray) -> np.ndarray:
    aff = np.array(vol.affine)
    aff[:3, 0] *= stride_kji[2]
    aff[:3, 1] *= stride_kji[1]
    aff[:3, 2] *= stride_kji[0]
    return aff


def _dwell_positions(ctv: Volume, entry: np.ndarray, tip: np.ndarray, step_mm: float, extension_mm: float) -> np.ndarray:
    """Dwell positions every ``step_mm`` where the catheter is inside the CTV, plus ``extension_mm`` each end."""
    if not (2.5 - 1e-9 <= step_mm <= 5.0 + 1e-9):
        raise InvalidInputError(f"dwell step must be 2.5–5 mm; got {step_mm} mm.")
    length = float(np.linalg.norm(tip - entry))
    u = (tip - entry) / length
    s = np.arange(0.0, length, 0.5)
    pts = entry[None] + s[:, None] * u[None]
    idx = np.rint(ctv.mm_to_index(pts)).astype(int)
    shape = np.asarray(ctv.shape)
    ok = np.all((idx >= 0) & (idx < shape), axis=1)
    inside = np.zeros(len(s), bool)
    inside[ok] = ctv.array[idx[ok, 0], idx[ok, 1], idx[ok, 2]]
    if not inside.any():
        return np.zeros((0, 3))
    s0 = max(0.0, s[inside].min() - extension_mm)
    s1 = min(length, s[inside].max() + extension_mm)
    n = int(np.floor((s1 - s0) / step_mm)) + 1
    # centre the dwell train on the CTV chord
    start = s0 + 0.5 * ((s1 - s0) - (n - 1) * step_mm)
    return entry[None] + (start + step_mm * np.arange(n))[:, None] * u[None]


def _user_catheters(catheters: Sequence[Mapping[str, Any]], ctv: Volume, step_mm: float,
                    extension_mm: float) -> list[Catheter]:
    out = []
    for i, c in enumerate(catheters):
        try:
            entry = np.asarray(c["entry_mm"], float).reshape(3)
            tip = np.asarray(c["tip_mm"], float).reshape(3)
        except (KeyError, ValueError, TypeError):
            raise InvalidInputError(f"catheter {i}: give 'entry_mm' and 'tip_mm' as [x, y, z] LPS mm.") from None
        if np.linalg.norm(tip - entry) < 1.0:
            raise InvalidInputError(f"catheter {i}: entry and tip coincide; a catheter needs a length.")
        if c.get("dwell_positions_mm") is not None:
            dw = np.asarray(c["dwell_positions_mm"], float).reshape(-1, 3)
        else:
            dw = _dwell_positions(ctv, entry, tip, step_mm, extension_mm)
        if len(dw) == 0:
            raise InvalidInputError(f"catheter {i} does not pass through the CTV: it has no dwell positions.")
        out.append(Catheter(entry, tip, dw, True))
    return out


# ------------------------------------------------------------------------------------------------
# Dose sampling helpers
# ------------------------------------------------------------------------------------------------
def _points(vol_like: Volume, mask: np.ndarray, stride: np.ndarray | None = None) -> tuple[np.ndarray, float]:
    """(LPS mm points of mask voxels, volume per point ml), optionally on a strided sub-grid."""
    if stride is None or np.all(stride == 1):
        kji = np.argwhere(mask)
        return vol_like.index_to_mm(kji.astype(float)), vol_like.voxel_volume_ml
    sl = tuple(slice(0, None, int(s)) for s in stride)
    sub = mask[sl]
    kji = np.argwhere(sub) * stride[None, :]
    return vol_like.index_to_mm(kji.astype(float)), vol_like.voxel_volume_ml * float(np.prod(stride))


def _cap_stride(mask: np.ndarray, spacing_kji: np.ndarray, max_points: int) -> np.ndarray:
    n = int(mask.sum())
    stride = np.ones(3, int)
    while n / np.prod(stride) > max_points:
        stride[np.argmin(spacing_kji * stride)] += 1
    return stride


# ------------------------------------------------------------------------------------------------
# Planner
# ------------------------------------------------------------------------------------------------
#: robustness shifts: every catheter moved rigidly by ±s along each LPS axis
_AXES = np.array([[1.0, 0, 0], [-1.0, 0, 0], [0, 1.0, 0], [0, -1.0, 0], [0, 0, 1.0], [0, 0, -1.0]])


def subvoxel_points(grid: Volume, mask: np.ndarray, n_sub: int = 3,
                    max_points: int = 300_000) -> tuple[np.ndarray, np.ndarray]:
    """(LPS mm points, ml per point) of a mask: voxel centres inside, ``n_sub``³ sub-points in each surface voxel.

    Why: the minimum dose of a brachytherapy target sits on its surface, where the dose changes by
    several % per mm; voxel centres alone miss the cold corners of the surface voxels.
    """
    sp = grid.spacing_kji_mm
    surface = mask & ~ndi.binary_erosion(mask)
    interior = mask & ~surface
    pts_list, vol_list = [], []
    if interior.any():
        pi, vi = _points(grid, interior, _cap_stride(interior, sp, max_points))
        pts_list.append(pi)
        vol_list.append(np.full(len(pi), vi))
    n_surf = int(surface.sum())
    while n_sub > 1 and n_surf * n_sub**3 > max_points:
        n_sub -= 1
    kji = np.argwhere(surface).astype(float)
    offs = (np.arange(n_sub) + 0.5) / n_sub - 0.5
    sub = np.stack(np.meshgrid(offs, offs, offs, indexing="ij"), -1).reshape(-1, 3)
    ps = grid.index_to_mm((kji[:, None, :] + sub[None, :, :]).reshape(-1, 3))
    pts_list.append(ps)
    vol_list.append(np.full(len(ps), grid.voxel_volume_ml / n_sub**3))
    return np.concatenate(pts_list), np.concatenate(vol_list)


@dataclass
class _Sampled:
    """Points of the optimisation problem (independent of the catheters)."""

    ctv_pts: np.ndarray                 # LP target rows (shifted copies included when planning for robustness)
    check_pts: np.ndarray               # cutting-plane points: every CTV voxel centre + sub-voxel surface points
    oars: list[tuple[str, np.ndarray, float, Mapping[str, Any]]]   # (organ, points, ml per point, limit spec)
    normal_pts: np.ndarray
    hot_pts: np.ndarray                 # CTV sample for the optional V150 objective


@dataclass
class _DoseCalc:
    sk_u: float
    src: tg43.SourceModel

    def matrix(self, pts: np.ndarray, cats: Sequence[Catheter]) -> np.ndarray:
        pos, dirs, _ = _dwell_arrays(cats)
        return tg43.dose_matrix_gy_per_s(pts, pos, dirs, self.sk_u, self.src, method="lookup")

    def dose(self, pts: np.ndarray, cats: Sequence[Catheter], times: np.ndarray, shift_mm: np.ndarray | None = None
             ) -> np.ndarray:
        pos, dirs, _ = _dwell_arrays(cats)
        if shift_mm is not None:
            pos = pos + shift_mm[None]
        return tg43.dose_gy(pts, pos, dirs, times, self.sk_u, self.src, method="lookup")


def _dwell_arrays(cats: Sequence[Catheter]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    pos = np.concatenate([c.dwell_positions_mm for c in cats])
    dirs = np.concatenate([np.repeat(c.direction[None], len(c.dwell_positions_mm), 0) for c in cats])
    cat_of = np.concatenate([np.full(len(c.dwell_positions_mm), i) for i, c in enumerate(cats)])
    return pos, dirs, cat_of


def _box_distance(mask: np.ndarray, sp: np.ndarray, pad_mm: float) -> np.ndarray:
    """Distance (mm) to ``mask`` inside its bounding box + ``pad_mm`` (inf elsewhere; the EDT of a CT is costly)."""
    kji = np.argwhere(mask)
    pad = np.ceil(pad_mm / sp).astype(int)
    lo = np.maximum(kji.min(0) - pad, 0)
    hi = np.minimum(kji.max(0) + pad + 1, np.asarray(mask.shape))
    box = tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))
    out = np.full(mask.shape, np.inf)
    out[box] = ndi.distance_transform_edt(~mask[box], sampling=sp)
    return out


def _sample_problem(case: Any, grid: Volume, ctv_arr: np.ndarray, dist_ctv: np.ndarray,
                    oar_structs: Mapping[str, np.ndarray], oar_limits: Mapping[str, Mapping[str, Any]],
                    liver: np.ndarray | None, grid_mm: float, robust_shift_mm: float | None) -> _Sampled:
    sp = grid.spacing_kji_mm
    opt_stride = np.maximum(1, np.rint(grid_mm / sp).astype(int))
    ctv_pts, _ = _points(grid, ctv_arr, np.maximum(opt_stride, _cap_stride(ctv_arr, sp, 6000)))
    surface = ctv_arr & ~ndi.binary_erosion(ctv_arr)
    surf_pts, _ = _points(grid, surface, _cap_stride(surface, sp, 4000))
    ctv_pts = np.unique(np.concatenate([ctv_pts, surf_pts]), axis=0)
    check, _ = _points(grid, ctv_arr, _cap_stride(ctv_arr, sp, 300_000 if robust_shift_mm is None else 50_000))
    sub, _ = subvoxel_points(grid, surface, 3, 150_000 if robust_shift_mm is None else 30_000)
    check = np.concatenate([check, sub])
    hot_pts = ctv_pts
    if robust_shift_mm:
        # moving every catheter by +v gives the dose of the unmoved plan at p − v: prescribe to shifted copies
        shifts = robust_shift_mm * _AXES
        ctv_pts = np.concatenate([ctv_pts] + [ctv_pts - v[None] for v in shifts])
        check = np.concatenate([check] + [check - v[None] for v in shifts])
    near = dist_ctv <= 40.0   # organ voxels within 40 mm of the CTV carry the hottest volumes
    oars = []
    for organ, m in oar_structs.items():
        # full resolution (as in the evaluation) so D1cc on the LP points is D1cc of the plan
        pts, pv = _points(grid, m & near, _cap_stride(m & near, sp, 60_000))
        if len(pts):
            oars.append((organ, pts, pv, oar_limits[organ]))
    shell = (dist_ctv > 0) & (dist_ctv <= 20.0)
    if liver is not None:
        shell &= liver
    normal_pts, _ = _points(grid, shell, np.maximum(opt_stride, _cap_stride(shell, sp, 4000)))
    return _Sampled(ctv_pts, check, oars, normal_pts, hot_pts)


def _optimise(sm: _Sampled, cats: Sequence[Catheter], calc: _DoseCalc, prescription_gy: float,
              max_modulation: float | None, target_mean_weight: float, min_share: float = 0.0,
              v150_weight: float = 0.0) -> tuple[Any, int]:
    """LP dwell times with cutting planes on every CTV voxel centre and sub-voxel surface point → (result, rows).

    ``min_share`` > 0: every catheter carries at least that share of the total dwell time (LP constraint)."""
    groups = _dwell_arrays(cats)[2] if min_share > 0 and len(cats) > 1 else None
    oar_cons = [OARConstraint(organ, calc.matrix(pts, cats), float(spec["limit_gy"]), float(spec.get("volume_ml", 1.0)),
                              pv, bool(spec.get("hard", True))) for organ, pts, pv, spec in sm.oars]
    if v150_weight > 0:
        # V150 objective: every Gy above 1.5 × Rx at a CTV point costs v150_weight / (n · Rx), the scale of the
        # normalised mean normal-tissue dose of the objective
        n = len(sm.hot_pts)
        oar_cons.append(OARConstraint("v150_objective", calc.matrix(sm.hot_pts, cats), 1.5 * prescription_gy, 0.0,
                                      0.0, hard=False, weight=v150_weight / (n * prescription_gy), objective_only=True))
    a_ctv = calc.matrix(sm.ctv_pts, cats)
    a_norm = calc.matrix(sm.normal_pts, cats) if len(sm.normal_pts) else None
    res = None
    for _ in range(4):
        res = optimise_dwell_times(a_ctv, prescription_gy * (1 + 5e-4), oars=oar_cons, normal_matrix_gy_per_s=a_norm,
                                   max_modulation=max_modulation, target_mean_weight=target_mean_weight,
                                   dwell_groups=groups, min_group_share=min_share if groups is not None else 0.0)
        d_all = calc.dose(sm.check_pts, cats, res.times_s)
        low = d_all < prescription_gy * (1 - 1e-4)
        if not low.any() or not res.feasible:
            break
        add = sm.check_pts[low]
        if len(add) > 3000:
            add = add[np.argsort(d_all[low])[:3000]]
        a_ctv = np.concatenate([a_ctv, calc.matrix(add, cats)])
    assert res is not None
    return res, int(a_ctv.shape[0])


def _time_shares(cats: Sequence[Catheter], times: np.ndarray) -> np.ndarray:
    _, _, cat_of = _dwell_arrays(cats)
    total = float(times.sum())
    per = np.array([float(times[cat_of == i].sum()) for i in range(len(cats))])
    return per / total if total > 0 else np.zeros(len(cats))


def _optimise_and_prune(sm: _Sampled, cats: list[Catheter], calc: _DoseCalc, prescription_gy: float,
                        max_modulation: float | None, target_mean_weight: float, min_share: float,
                        user_given: bool, v150_weight: float = 0.0) -> tuple[list[Catheter], Any, int, list[str]]:
    """Optimise with every automatically placed catheter carrying ≥ ``min_share`` of the dwell time (the count
    was chosen from the target: spread catheters). When that plan cannot cover the CTV, optimise freely and
    remove the catheter carrying the smallest share while it is < ``min_share`` (a puncture that adds risk and
    no dose), re-optimising each time."""
    notes: list[str] = []
    if not user_given and len(cats) > 1 and min_share > 0:
        res, rows = _optimise(sm, cats, calc, prescription_gy, max_modulation, target_mean_weight, min_share,
                              v150_weight)
        if res.feasible:
            notes.append(f"every catheter carries ≥ {100 * min_share:g} % of the dwell time (LP constraint)")
            return cats, res, rows, notes
    res, rows = _optimise(sm, cats, calc, prescription_gy, max_modulation, target_mean_weight, 0.0, v150_weight)
    while len(cats) > 1:
        share = _time_shares(cats, res.times_s)
        i = int(np.argmin(share))
        if share[i] >= min_share:
            break
        if user_given:
            notes.append(f"user catheter {i + 1} carries {100 * share[i]:.1f} % (< {100 * min_share:g} %) of the "
                         "dwell time: consider leaving it out")
            break
        trial = cats[:i] + cats[i + 1:]
        r2, rows2 = _optimise(sm, trial, calc, prescription_gy, max_modulation, target_mean_weight, 0.0, v150_weight)
        if res.feasible and not r2.feasible:
            notes.append(f"catheter {i + 1} carries {100 * share[i]:.1f} % of the dwell time but coverage needs it: kept")
            break
        notes.append(f"a catheter carrying {100 * share[i]:.1f} % (< {100 * min_share:g} %) of the dwell time was "
                     "removed and the plan re-optimised")
        cats, res, rows = trial, r2, rows2
    return cats, res, rows, notes


def _structure_dose(name: str, pts: np.ndarray, vols: np.ndarray, calc: _DoseCalc, cats: Sequence[Catheter],
                    times: np.ndarray, shift_mm: np.ndarray | None = None) -> dvh.StructureDose:
    d = calc.dose(pts, cats, times, shift_mm)
    order = np.argsort(-d, kind="stable")
    return dvh.StructureDose(name, d[order], vols[order])


def _robustness(ctv_pts: np.ndarray, ctv_vols: np.ndarray, calc: _DoseCalc, cats: Sequence[Catheter],
                times: np.ndarray, shifts_mm: Sequence[float]) -> dict[str, dict[str, Any]]:
    """Worst CTV D100/D90 (Gy) over rigid shifts of all catheters by ±s along each LPS axis (keys: s in mm)."""
    out: dict[str, dict[str, Any]] = {}
    for s in shifts_mm:
        d100, d90, worst_axis = np.inf, np.inf, None
        for v in _AXES:
            sd = _structure_dose("CTV", ctv_pts, ctv_vols, calc, cats, times, s * v)
            if sd.d_percent(100) < d100:
                worst_axis = v.tolist()
            d100 = min(d100, sd.d_percent(100))
            d90 = min(d90, sd.d_percent(90))
        out[f"{s:g}"] = {"d100_gy_worst": round(float(d100), 3), "d90_gy_worst": round(float(d90), 3),
                         "worst_shift_direction": worst_axis, "n_shifts": len(_AXES)}
    return out


def _quality(ctv_sd: dvh.StructureDose, prescription_gy: float, grid: Volume, ctv_arr: np.ndarray,
             dist_ctv: np.ndarray, calc: _DoseCalc, cats: Sequence[Catheter], times: np.ndarray) -> dict[str, Any]:
    """Conformity and homogeneity: COIN/Paddick CI = CTV_ref² / (CTV · V_ref) (Baltas 1998 without the OAR factor;
    Paddick 2000) and DHI = (V100 − V150) / V100 (Wu 1988); V_ref from the tissue within 30 mm of the CTV."""
    sp = grid.spacing_kji_mm
    outside = (dist_ctv > 0) & (dist_ctv <= 30.0)
    pts, pv = _points(grid, outside, _cap_stride(outside, sp, 200_000))
    d_out = calc.dose(pts, cats, times)
    ctv_ref = ctv_sd.v_ml(prescription_gy)
    v_ref = ctv_ref + float(np.sum(d_out >= prescription_gy)) * pv
    v100 = ctv_sd.v_ml(prescription_gy)
    v150 = ctv_sd.v_ml(1.5 * prescription_gy)
    return {"conformity_index": round(ctv_ref**2 / (ctv_sd.total_ml * v_ref), 4) if v_ref > 0 else 0.0,
            "prescription_isodose_volume_ml": round(v_ref, 2),
            "dose_homogeneity_index": round((v100 - v150) / v100, 4) if v100 > 0 else 0.0,
            "v150_ml": round(v150, 2), "v200_ml": round(ctv_sd.v_ml(2.0 * prescription_gy), 2)}


@dataclass
class _Protocol:
    prescription_gy: float
    ctv_margin_mm: float
    target_margin_mm: float | None
    oar_limits: Mapping[str, Mapping[str, Any]]
    ras_status: str
    caveats: list[str]


def _protocol(case: Any, prescription_gy: float | None, ctv_margin_mm: float | None, target_margin_mm: float | None,
              oar_limits: Mapping[str, Mapping[str, Any]] | None, ras_status: str | None) -> _Protocol:
    """Prescription, CTV margin (protocol value, or the rule's target margin when larger), organ limits, RAS."""
    from latplan.knowledge import radiation as rk

    caveats: list[str] = []
    patient = getattr(case, "patient", None)
    primary = getattr(patient, "primary", None)
    if prescription_gy is None:
        prescription_gy, cite = rk.ibt_prescription_gy(primary)
        caveats.append(f"prescription D100 {prescription_gy:g} Gy from the knowledge base ({cite}) for primary "
                       f"{getattr(primary, 'value', primary) or 'unknown'}")
    if not (prescription_gy > 0):
        raise InvalidInputError(f"prescription must be > 0 Gy; got {prescription_gy}.")
    cfg = rk.ibt_config()
    margin = float(cfg["ctv_margin_mm"]["value"]) if ctv_margin_mm is None else float(ctv_margin_mm)
    if ctv_margin_mm is None:
        caveats.append(f"CTV = lesion + {margin:g} mm (protocol parameter, {cfg['ctv_margin_mm']['citation']})")
    if target_margin_mm is not None and float(target_margin_mm) > margin:
        margin = float(target_margin_mm)
        caveats.append(f"CTV margin {margin:g} mm: the rules' target margin replaces the protocol margin")
    if ras_status is None:
        mol = getattr(patient, "molecular", None)
        ras_status = getattr(mol, "ras", None) if mol is not None else None
    ras = str(ras_status) if ras_status else "unknown"
    if ras == "unknown" and str(getattr(primary, "value", primary)).lower() == "colorectal":
        caveats.append("RAS status unknown: RAS-mutant colorectal metastases need a ≥ 10 mm margin (Odisio 2017); "
                       "margin_dose_gy['10'] gives the dose at lesion + 10 mm")
    elif ras == "mutant":
        caveats.append(f"RAS-mutant: the plan's CTV margin is {margin:g} mm (≥ 10 mm recommended, Odisio 2017)")
    return _Protocol(float(prescription_gy), margin, None if target_margin_mm is None else float(target_margin_mm),
                     rk.ibt_oar_limits() | rk.ibt_biliary_limits() if oar_limits is None else oar_limits, ras, caveats)


def _organ_masks(case: Any, oar_limits: Mapping[str, Mapping[str, Any]], ctv_arr: np.ndarray) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    for organ, spec in oar_limits.items():
        names = [n for n in spec.get("structures", [organ]) if _has(case, n)]
        if not names:
            continue
        m = np.zeros(ctv_arr.shape, bool)
        for n in names:
            m |= case.mask_array(n)
        m &= ~ctv_arr
        if m.any():
            out[organ] = m
    return out


@cache
def ibt_source() -> tg43.SourceModel:
    """The default TG-43 source with the near-source clamp only inside the catheter (knowledge radius)."""
    from latplan.knowledge import radiation as rk

    radius_mm = float(rk.ibt_config()["catheter_outer_radius_mm"]["value"])
    return tg43.default_source().with_catheter_clamp(radius_mm / 10.0)


def _source_strength(sk_u: float, calibration_date: Any, treatment_date: Any) -> tuple[float, dict[str, Any]]:
    """Air-kerma strength (U) on the treatment date from the calibration value (Ir-192 decay), and the record."""
    from latplan.knowledge import radiation as rk

    if calibration_date is None or treatment_date is None:
        return sk_u, {"sk_u": sk_u, "decay_corrected": False}
    cal, treat = _as_date(calibration_date), _as_date(treatment_date)
    days = float((treat - cal).days)
    if days < 0:
        raise InvalidInputError(f"treatment date {treat} is before the source calibration date {cal}; fix the dates.")
    half = float(rk.ibt_config()["source"]["half_life_d"])
    sk = tg43.decayed_air_kerma_strength_u(sk_u, days, half)
    return sk, {"sk_u": round(sk, 1), "sk_calibration_u": sk_u, "decay_corrected": True, "elapsed_days": days,
                "half_life_d": half, "calibration_date": cal.isoformat(), "treatment_date": treat.isoformat()}


def _as_date(value: Any) -> dt.date:
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    try:
        return dt.date.fromisoformat(str(value))
    except ValueError:
        raise InvalidInputError(f"date {value!r} is not an ISO date (YYYY-MM-DD).") from None


def _biology(d100_gy: float, total_time_s: float, alpha_beta_gy: float) -> dict[str, Any]:
    """BED/EQD2 of the CTV minimum dose with the protraction factor G of the real delivery time (Dale 1985)."""
    from latplan.knowledge import radiation as rk

    t_half_h = float(rk.ibt_config()["protraction"]["repair_half_time_h"])
    g = lq.lea_catcheside_g(total_time_s, t_half_h * 3600.0)
    return {"bed10_min_gy": round(float(lq.bed_gy(d100_gy, 1, alpha_beta_gy)), 2),
            "bed10_gy": round(float(lq.bed_gy(d100_gy, 1, alpha_beta_gy, g)), 2),
            "eqd2_gy": round(float(lq.eqd2_gy(d100_gy, 1, alpha_beta_gy, g)), 2),
            "protraction_g": round(g, 4), "delivery_time_s": round(total_time_s, 1),
            "repair_half_time_h": t_half_h, "alpha_beta_gy": alpha_beta_gy}


def _oar_evaluation(oar_structs: Mapping[str, np.ndarray], oar_limits: Mapping[str, Mapping[str, Any]], grid: Volume,
                    calc: _DoseCalc, cats: Sequence[Catheter], times: np.ndarray
                    ) -> tuple[dict[str, float], dict[str, dict[str, float]], list[tuple[float, str]], list[DVHCurve]]:
    sp = grid.spacing_kji_mm
    d1cc: dict[str, float] = {}
    detail: dict[str, dict[str, float]] = {}
    violations: list[tuple[float, str]] = []
    curves: list[DVHCurve] = []
    for organ, m in oar_structs.items():
        pts, pv = _points(grid, m, _cap_stride(m, sp, 300_000))
        sd = _structure_dose(organ, pts, np.full(len(pts), pv), calc, cats, times)
        om = dvh.oar_metrics(sd)
        spec = oar_limits[organ]
        value = sd.d_ml(float(spec.get("volume_ml", 1.0)))
        d1cc[organ] = round(om["d1cc_gy"], 3)
        detail[organ] = {k: round(v, 3) for k, v in om.items()}
        detail[organ]["limit_gy"] = float(spec["limit_gy"])
        if value > float(spec["limit_gy"]) * (1 + 1e-3) and bool(spec.get("hard", True)):
            violations.append((value - float(spec["limit_gy"]), organ))
        elif value > float(spec["limit_gy"]) * (1 + 1e-3):
            detail[organ]["soft_limit_exceeded"] = True
        curves.append(sd.curve())
    return d1cc, detail, violations, curves


def _liver_evaluation(case: Any, liver: np.ndarray | None, ctv_arr: np.ndarray, grid: Volume, calc: _DoseCalc,
                      cats: Sequence[Catheter], times: np.ndarray) -> tuple[dict[str, Any], list[DVHCurve]]:
    """Normal liver = liver − every lesion (the CTV's healthy margin is normal liver); V5/V10 and mean dose."""
    if liver is None:
        return {}, []
    sp = grid.spacing_kji_mm
    lesions = np.zeros(liver.shape, bool)
    for n in case.lesion_ids:
        lesions |= case.mask_array(n)
    out: dict[str, Any] = {}
    curves = []
    for name, m in (("normal_liver", liver & ~lesions), ("liver_minus_ctv", liver & ~ctv_arr)):
        if not m.any():
            continue
        pts, pv = _points(grid, m, _cap_stride(m, sp, 300_000))
        sd = _structure_dose(name, pts, np.full(len(pts), pv), calc, cats, times)
        curves.append(sd.curve())
        if name == "normal_liver":
            out.update({"liver_v5gy_ml": round(sd.v_ml(5.0), 2), "liver_v5gy_percent": round(sd.v_percent(5.0), 3),
                        "liver_v10gy_ml": round(sd.v_ml(10.0), 2),
                        "liver_v10gy_percent": round(sd.v_percent(10.0), 3),
                        "normal_liver_volume_ml": round(sd.total_ml, 1),
                        "normal_liver_mean_gy": round(float(np.sum(sd.dose_gy * sd.volume_ml) / sd.total_ml), 3),
                        "normal_liver_definition": "liver minus every lesion"})
    return out, curves


def _cardiac_device(case: Any, calc: _DoseCalc, cats: Sequence[Catheter], times: np.ndarray) -> dict[str, Any] | None:
    """Cardiac implantable device (patient.pacemaker): the heart's maximum dose as a conservative proxy for the
    device dose, against the TG-203 2 Gy limit; unknown when the heart is not segmented."""
    from latplan.knowledge import radiation as rk

    if not getattr(getattr(case, "patient", None), "pacemaker", None):
        return None
    limit = float(rk.ibt_config()["cardiac_device"]["limit_gy"])
    if not _has(case, "heart"):
        return {"limit_gy": limit, "dose_gy_estimate": None, "ok": None,
                "note": "heart not segmented: device dose not assessed"}
    m = case.mask_array("heart")
    pts, _ = _points(case.labels, m, _cap_stride(m, case.labels.spacing_kji_mm, 100_000))
    dmax = float(calc.dose(pts, cats, times).max())
    return {"limit_gy": limit, "dose_gy_estimate": round(dmax, 3), "ok": dmax <= limit,
            "note": "maximum heart dose used as a conservative proxy for the device position (AAPM TG-203)"}


def plan_ibt(case: Any, lesion_id: str, measurements: Mapping[str, Any] | None = None, *,
             geometry: CaseGeometry | None = None,
             prescription_gy: float | None = None, ctv_margin_mm: float | None = None,
             target_margin_mm: float | None = None, margin_mm: float | None = None,
             oar_limits: Mapping[str, Mapping[str, Any]] | None = None, source: tg43.SourceModel | None = None,
             grid_mm: float = 2.5, catheters: Sequence[Mapping[str, Any]] | None = None,
             sk_u: float = 40700.0, source_calibration_date: Any = None, treatment_date: Any = None,
             dwell_step_mm: float = 5.0, dwell_extension_mm: float = 2.5,
             max_modulation: float | None = 10.0, safety_mm: float = 3.0, vessel_min_calibre_mm: float = 3.0,
             n_catheters: int | None = None, min_catheter_spacing_mm: float = 5.0, min_catheter_time_share: float = 0.05,
             plan_for_robustness: bool = False, robust_shift_mm: float = 3.0, robustness_shifts_mm: Sequence[float] = (3.0, 5.0),
             ras_status: str | None = None, alpha_beta_gy: float = 10.0, dose_pad_mm: float = 20.0,
             target_mean_weight: float = 0.3, v150_weight: float = 0.0, **_ignored: Any) -> TreatmentPlan:
    """Plan single-fraction HDR brachytherapy of one lesion → :class:`TreatmentPlan`.

    ``prescription_gy``: minimum CTV dose (D100); None → knowledge default for the primary (colorectal
    20 Gy, otherwise 15 Gy; Walter 2021). CTV margin: ``ctv_margin_mm`` (None → the protocol value in
    knowledge/radiation/ibt.yaml), replaced by the rules' ``target_margin_mm`` when larger
    (``margin_mm`` is the old name of ``ctv_margin_mm``). ``oar_limits``: {organ: {"limit_gy",
    "volume_ml" (1 for D1cc), "hard", "structures"}}; None → IBT knowledge limits. ``catheters``:
    user catheters [{"entry_mm", "tip_mm"[, "dwell_positions_mm"]}] (LPS mm). ``sk_u``: air-kerma
    strength (U) on ``source_calibration_date``; with ``treatment_date`` it is decayed (Ir-192).
    ``plan_for_robustness``: prescribe D100 to the CTV under rigid catheter shifts of ±``robust_shift_mm``.
    ``target_mean_weight``: weight of the mean CTV dose in the LP objective (0.3 by default: it spreads dwell
    time over the catheters instead of concentrating it in one, which also makes the plan more robust).
    ``v150_weight`` > 0: V150 objective (dose above 1.5 × Rx in the CTV penalised; 1 ≈ the weight of the
    normal-tissue mean dose). ``max_modulation``: dwell-time modulation restriction t_i ≤ k · mean t.
    ``geometry``: the case's :class:`~latplan.anatomy.geometry.CaseGeometry`, computed once by the pipeline.
    """
    t_start = time.perf_counter()
    geo = geometry_for(case, geometry)  # the pipeline's CaseGeometry of this case (its maps are the case's maps)
    proto = _protocol(case, prescription_gy, margin_mm if ctv_margin_mm is None else ctv_margin_mm, target_margin_mm,
                      oar_limits, ras_status)
    rx = proto.prescription_gy
    caveats = list(proto.caveats)
    sk_treat, source_record = _source_strength(float(sk_u), source_calibration_date, treatment_date)
    calc = _DoseCalc(sk_treat, source or ibt_source())
    ctv = ctv_mask(case, lesion_id, proto.ctv_margin_mm)
    ctv_arr = ctv.array
    grid = case.labels
    lesion_names = set(case.lesion_ids)
    if catheters:
        cats = _user_catheters(catheters, ctv, dwell_step_mm, dwell_extension_mm)
        notes = [f"{len(cats)} user-given catheter(s)"]
    else:
        cats, notes = place_catheters(case, ctv, safety_mm=safety_mm, vessel_min_calibre_mm=vessel_min_calibre_mm,
                                      dwell_step_mm=dwell_step_mm, dwell_extension_mm=dwell_extension_mm,
                                      n_catheters=n_catheters, lesion_names=sorted(lesion_names),
                                      min_spacing_mm=min_catheter_spacing_mm, geometry=geo)
    dist_ctv = _box_distance(ctv_arr, grid.spacing_kji_mm, 45.0)
    oar_structs = _organ_masks(case, proto.oar_limits, ctv_arr)
    liver = liver_mask(case, geo)
    sm = _sample_problem(case, grid, ctv_arr, dist_ctv, oar_structs, proto.oar_limits, liver, grid_mm,
                         robust_shift_mm if plan_for_robustness else None)
    cats, res, n_rows, prune_notes = _optimise_and_prune(sm, list(cats), calc, rx, max_modulation, target_mean_weight,
                                                         min_catheter_time_share, bool(catheters), v150_weight)
    notes += prune_notes
    times = res.times_s
    metrics, curves, more = _evaluate(case, lesion_id, proto, grid, ctv_arr, dist_ctv, oar_structs, liver, calc, cats,
                                      times, robustness_shifts_mm, alpha_beta_gy, geo)
    caveats += more
    fov = fov_check(case, case.lesion_mask(lesion_id).array, proto.ctv_margin_mm,
                    f"the CTV (lesion + {proto.ctv_margin_mm:g} mm)")
    metrics.update(fov)
    if fov["fov_limited"]:
        caveats.append(str(fov["fov_limited_note"]))
    limiting = metrics["limiting_constraint"] or (None if metrics["feasible"] else res.limiting_constraint
                                                  or "catheter_geometry")
    metrics["limiting_constraint"] = limiting
    metrics.update({"n_rows_lp": n_rows, "source": source_record, "plan_for_robustness": plan_for_robustness,
                    "optimiser": {"solve_time_s": round(res.solve_time_s, 3), "message": res.message,
                                  "sampled_ctv_points": n_rows}})
    if not metrics["feasible"]:
        caveats.append(f"constraints cannot all be met: limiting constraint {limiting}; " + (
            "CTV D100 {:.2f} Gy < {:.3g} Gy".format(metrics["d100_gy"], rx) if metrics["oar_constraints_met"] else
            "organ limit exceeded: " + ", ".join(f"{o} {metrics['oar'][o]['d1cc_gy']:.1f} Gy"
                                                for o in metrics["oar"] if o == limiting)))
    caveats.append("TG-43 water-based dose (no tissue heterogeneity); single fraction; BED10 of D100 with the "
                   "protraction factor G of the delivery time (Dale 1985); not an input to SBRT dose-response curves")
    caveats.extend(notes)
    return _assemble(case, lesion_id, metrics, curves, caveats, cats, times, calc, proto, ctv_arr, grid_mm, dose_pad_mm,
                     {"ctv_margin_mm": proto.ctv_margin_mm, "margin_mm": proto.ctv_margin_mm, "sk_u": sk_treat,
                      "source": calc.src.name, "source_dataset": calc.src.dataset, "dwell_step_mm": dwell_step_mm,
                      "dwell_extension_mm": dwell_extension_mm, "max_modulation": max_modulation,
                      "safety_mm": safety_mm, "vessel_min_calibre_mm": vessel_min_calibre_mm, "grid_mm": grid_mm,
                      "min_catheter_spacing_mm": min_catheter_spacing_mm,
                      "min_catheter_time_share": min_catheter_time_share, "v150_weight": v150_weight,
                      "target_mean_weight": target_mean_weight,
                      "oar_limits": {k: {kk: vv for kk, vv in v.items() if kk in ("limit_gy", "volume_ml", "hard")}
                                     for k, v in proto.oar_limits.items()}},
                     time.perf_counter() - t_start)


def _evaluate(case: Any, lesion_id: str, proto: _Protocol, grid: Volume, ctv_arr: np.ndarray, dist_ctv: np.ndarray,
              oar_structs: Mapping[str, np.ndarray], liver: np.ndarray | None, calc: _DoseCalc,
              cats: Sequence[Catheter], times: np.ndarray, robustness_shifts_mm: Sequence[float],
              alpha_beta_gy: float, geometry: CaseGeometry) -> tuple[dict[str, Any], list[DVHCurve], list[str]]:
    """Every metric of the plan (DVH metrics from sub-voxel sampling of the targets)."""
    rx = proto.prescription_gy
    caveats: list[str] = []
    ctv_pts, ctv_vols = subvoxel_points(grid, ctv_arr)
    ctv_sd = _structure_dose("CTV", ctv_pts, ctv_vols, calc, cats, times)
    metrics: dict[str, Any] = {k: (round(v, 3) if isinstance(v, float) else v)
                               for k, v in dvh.brachy_metrics(ctv_sd, rx).items()}
    metrics["ctv_volume_ml"] = metrics.pop("volume_ml")
    metrics["dvh_sampling"] = "voxel centres inside, 3×3×3 sub-points in each surface voxel of the target"
    curves = [ctv_sd.curve()]
    les = case.lesion_mask(lesion_id).array
    lp, lv = subvoxel_points(grid, les)
    les_sd = _structure_dose(lesion_id, lp, lv, calc, cats, times)
    metrics["lesion_d100_gy"] = round(les_sd.d_percent(100), 3)
    curves.append(les_sd.curve())
    margin_dose: dict[str, dict[str, float]] = {}
    for m_mm in (5.0, 10.0):
        mp, mv = subvoxel_points(grid, ctv_mask(case, lesion_id, m_mm).array, 3, 150_000)
        sd = _structure_dose(f"lesion+{m_mm:g}mm", mp, mv, calc, cats, times)
        margin_dose[f"{m_mm:g}"] = {"d100_gy": round(sd.d_percent(100), 3), "d90_gy": round(sd.d_percent(90), 3)}
    metrics["margin_dose_gy"] = margin_dose
    metrics["ctv_margin_mm"] = proto.ctv_margin_mm
    metrics["target_margin_mm"] = proto.target_margin_mm
    metrics["ras_status"] = proto.ras_status
    d1cc, detail, violations, oc = _oar_evaluation(oar_structs, proto.oar_limits, grid, calc, cats, times)
    curves += oc
    metrics["oar_d1cc_gy"] = d1cc
    metrics["oar"] = detail
    lm, lc = _liver_evaluation(case, liver, ctv_arr, grid, calc, cats, times)
    metrics.update(lm)
    curves += lc
    if liver is None:
        caveats.append("no liver mask: normal-liver V5Gy/V10Gy not computed")
    coverage_ok = metrics["d100_gy"] >= rx * (1 - 1e-3)
    metrics["feasible"] = bool(coverage_ok and not violations)
    metrics["constraints_met"] = metrics["feasible"]
    metrics["oar_constraints_met"] = not violations
    # organs with a dose limit that the case does not segment: not checked, never assumed within the limit
    metrics["unsegmented_organs"] = [o for o, spec in proto.oar_limits.items()
                                     if not any(_has(case, n) for n in spec.get("structures", [o]))]
    if metrics["unsegmented_organs"]:
        caveats.append("not segmented, limits not checked: " + ", ".join(metrics["unsegmented_organs"]))
    metrics["limiting_constraint"] = max(violations)[1] if violations else None
    total_s = float(times.sum())
    metrics.update(_biology(metrics["d100_gy"], total_s, alpha_beta_gy))
    metrics["prescription_gy"] = rx
    metrics["n_catheters"] = len(cats)
    metrics["n_dwells"] = int(sum(len(c.dwell_positions_mm) for c in cats))
    metrics["total_dwell_time_s"] = round(total_s, 2)
    metrics["catheter_time_share"] = [round(float(x), 4) for x in _time_shares(cats, times)]
    spacing = catheter_min_spacing_mm(cats)
    metrics["catheter_min_spacing_mm"] = None if spacing is None else round(spacing, 2)
    metrics["robustness"] = _robustness(ctv_pts, ctv_vols, calc, cats, times, robustness_shifts_mm)
    metrics.update(_quality(ctv_sd, rx, grid, ctv_arr, dist_ctv, calc, cats, times))
    device = _cardiac_device(case, calc, cats, times)
    if device is not None:
        metrics["cardiac_device"] = device
        if device["ok"] is False:
            caveats.append(f"cardiac device: estimated dose {device['dose_gy_estimate']:.2f} Gy > "
                           f"{device['limit_gy']:g} Gy (TG-203); cardiology review needed")
    verified, unverified = _catheter_paths_verified(geometry, cats)
    metrics["trajectory_verified"] = verified
    caveats.extend(unverified)
    return metrics, curves, caveats


def _catheter_paths_verified(geometry: CaseGeometry, cats: Sequence[Catheter]) -> tuple[bool, list[str]]:
    """Does the image show each catheter leaving the body inside it ([L] skin and entry)?

    A path that reaches the image edge still inside the body cannot be verified on this image (the
    abdominal wall along it is not shown): the plan says so instead of calling it safe.
    """
    notes: list[str] = []
    for n, cat in enumerate(cats, 1):
        check = geometry.path_check(np.asarray(cat.tip_mm, float), np.asarray(cat.entry_mm, float))
        if not check.verifiable:
            notes.append(f"catheter {n}: cannot be verified ({check.reason})")
    return not notes, notes


def _assemble(case: Any, lesion_id: str, metrics: dict[str, Any], curves: list[DVHCurve], caveats: list[str],
              cats: Sequence[Catheter], times: np.ndarray, calc: _DoseCalc, proto: _Protocol, ctv_arr: np.ndarray,
              grid_mm: float, dose_pad_mm: float, parameters: dict[str, Any], runtime_s: float) -> TreatmentPlan:
    grid = case.labels
    dw_pos, dw_dir, cat_of = _dwell_arrays(cats)
    opt_stride = np.maximum(1, np.rint(grid_mm / grid.spacing_kji_mm).astype(int))
    dose_vol = _dose_grid(grid, ctv_arr, opt_stride, dose_pad_mm, dw_pos, dw_dir, times, calc.sk_u, calc.src)
    tgt_idx = np.rint(dose_vol.mm_to_index(grid.index_to_mm(np.argwhere(ctv_arr).astype(float)))).astype(int)
    tgt = np.zeros(dose_vol.shape, bool)
    ok = np.all((tgt_idx >= 0) & (tgt_idx < np.asarray(dose_vol.shape)), axis=1)
    tgt[tuple(tgt_idx[ok].T)] = True
    return TreatmentPlan(
        modality="ibt", lesion_id=lesion_id, metrics=metrics,
        applicators=[c.as_dict(times[cat_of == i]) for i, c in enumerate(cats)],
        dose=dose_vol, target=dose_vol.with_array(tgt), dvh=curves, prescription_gy=proto.prescription_gy,
        caveats=caveats, parameters=parameters, engine=ENGINE, engine_version=ENGINE_VERSION,
        verification=("TG-43 line source reproduces the consensus QA along-away table (GammaMed PDR Plus) within 0.5 % "
                      "for r ≥ 0.5 cm; LP dwell optimisation with D100 enforced on every CTV voxel centre and "
                      "sub-voxel surface point; dose recomputed by an independent TG-43 implementation "
                      "(tests/planning/test_ibt_second_check.py)"),
        runtime_s=runtime_s,
    )


def _dose_grid(grid: Volume, ctv_arr: np.ndarray, stride: np.ndarray, pad_mm: float, dw_pos: np.ndarray,
               dw_dir: np.ndarray, times: np.ndarray, sk_u: float, src: tg43.SourceModel) -> Volume:
    """Dose on a crop of the case grid around the CTV (+ pad), subsampled by ``stride``; affine kept."""
    kji = np.argwhere(ctv_arr)
    pad = np.ceil(pad_mm / grid.spacing_kji_mm).astype(int)
    lo = np.maximum(kji.min(0) - pad, 0)
    hi = np.minimum(kji.max(0) + pad + 1, np.asarray(grid.shape))
    crop = grid.crop(tuple(lo), tuple(hi))
    sl = tuple(slice(0, None, int(s)) for s in stride)
    sub = Volume(np.zeros(crop.array[sl].shape, np.float32), _strided_affine(crop, stride))
    return tg43.dose_on_volume_gy(sub, dw_pos, dw_dir, times, sk_u, src, method="lookup")
