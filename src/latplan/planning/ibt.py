"""Interstitial HDR brachytherapy (IBT) plan for one liver lesion.

Steps (docs/radiation-physics.md):

1. CTV = lesion + ``margin_mm`` (Euclidean, in mm), kept inside liver ∪ lesion when a liver
   mask exists (the margin does not extend into stomach or bowel).
2. Catheters: straight percutaneous lines from a body-surface entry through the CTV,
   chosen by sampling candidate directions (Fibonacci sphere) and scoring them; lines that
   come closer than ``safety_mm`` to bone, large vessels (local calibre ≥
   ``vessel_min_calibre_mm``, from the EDT of the vessel masks), bile ducts, gallbladder,
   hollow organs and other solid organs are rejected; lung crossing is penalised. The
   number of catheters grows with the CTV size; pierce points are spread over the CTV
   cross-section (k-means). User catheters (entry/tip in mm) are used as given.
3. Dwell positions every ``dwell_step_mm`` along each catheter inside the CTV plus
   ``dwell_extension_mm``; the source axis of a dwell is its catheter direction.
4. Dwell times by LP (:mod:`latplan.physics.dwell_opt`) on CTV points of a grid of about
   ``grid_mm``; CTV voxels of the full-resolution grid that fall below the prescription
   are then added as constraints and the LP re-solved (cutting planes), so D100 holds on
   every CTV voxel centre.
5. Metrics from the dose at every voxel centre of each structure (direct TG-43, no dose
   interpolation): D100/D98/D90/D50, V100/V150/V200 of the CTV, D0.1cc/D1cc/D2cc of the
   hollow organs, V5Gy/V10Gy of the normal liver, BED of D100 (α/β 10).
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import ndimage as ndi

from latplan.case.vocabulary import HOLLOW_ORGAN_ROLES, VESSEL_ROLES, StructureRole
from latplan.errors import EmptyStructureError, InvalidInputError, PlanningError
from latplan.imaging.volume import Volume
from latplan.physics import dvh, lq, tg43
from latplan.physics.dwell_opt import OARConstraint, optimise_dwell_times
from latplan.planning.types import TreatmentPlan

__all__ = ["Catheter", "ctv_mask", "liver_mask", "place_catheters", "plan_ibt", "structure_names_cached"]

ENGINE = "latplan.ibt"
ENGINE_VERSION = "0.1"

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
        dist = ndi.distance_transform_edt(~arr, sampling=les.spacing_kji_mm)
        ctv = dist <= margin_mm
    else:
        ctv = arr.copy()
    liver = liver_mask(case)
    if liver is not None:
        ctv &= liver | arr
    return les.with_array(ctv)


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


def liver_mask(case: Any) -> np.ndarray | None:
    """Liver = the ``liver`` structure ∪ Couinaud segments ∪ lesions inside them; None when absent."""
    parts = [n for n in _names(case)
             if n == "liver" or case.role(n) == StructureRole.LIVER_SEGMENT]
    if not parts:
        return None
    m = np.zeros(case.labels.shape, bool)
    for n in parts:
        m |= case.mask_array(n)
    for n in case.lesion_ids:  # lesions are labelled over the liver: count them as liver tissue
        m |= case.mask_array(n)
    return m


# ------------------------------------------------------------------------------------------------
# Catheter placement
# ------------------------------------------------------------------------------------------------
def _fibonacci_dirs(n: int) -> np.ndarray:
    i = np.arange(n) + 0.5
    phi = np.arccos(1 - 2 * i / n)
    golden = np.pi * (1 + 5**0.5)
    th = golden * i
    return np.stack([np.cos(th) * np.sin(phi), np.sin(th) * np.sin(phi), np.cos(phi)], axis=1)


def _body_mask(case: Any) -> np.ndarray:
    if _has(case, "body"):
        # the label map holds one label per voxel: organs inside the body are not "body" voxels
        return case.mask_array("body") | (np.asarray(case.labels.array) > 0)
    if str(getattr(case, "image_modality", "CT")).upper() == "CT":
        body = np.asarray(case.image.array) > -400
        if body.any() and body.mean() < 0.999:
            return ndi.binary_fill_holes(body)
    return np.ones(case.labels.shape, bool)


def _forbidden_distance(case: Any, vessel_min_calibre_mm: float, lesion_names: set[str],
                        stride: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(distance to the nearest forbidden voxel in mm, penalised mask, names of forbidden structures),
    on the grid subsampled by ``stride`` (k, j, i) — the EDT runs on the coarse grid (speed/memory)."""
    shape = case.labels.shape
    forbidden = np.zeros(shape, bool)
    penal = np.zeros(shape, bool)
    names = []
    sp = case.labels.spacing_kji_mm
    for name in _names(case):
        if name in lesion_names:
            continue
        role = case.role(name)
        if role in _FORBIDDEN_ROLES:
            forbidden |= case.mask_array(name)
            names.append(name)
        elif role in VESSEL_ROLES:
            m = case.mask_array(name)
            # local calibre ≈ 2 × the largest inscribed radius (EDT) within ± the calibre limit;
            # computed inside the vessel's bounding box only (speed)
            size = np.maximum(1, np.ceil(vessel_min_calibre_mm / sp).astype(int) * 2 + 1)
            idx = np.argwhere(m)
            if idx.size == 0:
                continue
            lo = np.maximum(idx.min(0) - size, 0)
            hi = np.minimum(idx.max(0) + size + 1, np.asarray(shape))
            box = tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))
            radius = ndi.distance_transform_edt(np.pad(m[box], 1), sampling=sp)[1:-1, 1:-1, 1:-1]
            local = ndi.maximum_filter(radius, size=tuple(size))
            big = np.zeros(shape, bool)
            big[box] = m[box] & (2.0 * local >= vessel_min_calibre_mm)
            if big.any():
                forbidden |= big
                names.append(name)
        elif role in _PENALISED_ROLES:
            penal |= case.mask_array(name)
    stride = np.ones(3, int) if stride is None else np.asarray(stride, int)
    sl = tuple(slice(0, None, int(x)) for x in stride)
    if stride.max() > 1:
        # keep thin structures: a coarse voxel is forbidden when any fine voxel of its block is
        forbidden = ndi.maximum_filter(forbidden, size=tuple(int(x) for x in stride))
    f = forbidden[sl]
    dist = ndi.distance_transform_edt(~f, sampling=sp * stride) if f.any() else np.full(f.shape, 1e6)
    return dist, penal[sl], names


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
    cost = depth + 5·lung_mm + 0.5·axial_angle − 2·min(clearance, 10 mm).
    """
    s = np.arange(-reach_mm, reach_mm / 2 + step_mm, step_mm)
    pts = pierce_mm[None, None, :] + s[None, :, None] * dirs[:, None, :]
    body = _sample(ctx, ctx.body, pts, 0.0) > 0.5
    ctv = _sample(ctx, ctx.ctv, pts, 0.0) > 0.5
    dist = _sample(ctx, ctx.dist, pts, 1e6)
    lung = _sample(ctx, ctx.penal, pts, 0.0) > 0.5
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
    cost = depth + 5.0 * lung_mm + 0.5 * axial - 2.0 * np.minimum(clearance, 10.0)
    out = []
    for n in np.flatnonzero(ok):
        out.append({"dir": dirs[n], "entry": pierce_mm + s[entry_i[n]] * dirs[n], "tip": pierce_mm + s[tip_i[n]] * dirs[n],
                    "cost": float(cost[n]), "clearance": float(clearance[n]), "depth": float(depth[n]),
                    "lung_mm": float(lung_mm[n])})
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
                    n_directions: int = 800, lesion_names: Sequence[str] = ()) -> tuple[list[Catheter], list[str]]:
    """Propose percutaneous catheters through the CTV; returns (catheters, notes)."""
    notes: list[str] = []
    ctv_arr = ctv.array.astype(bool)
    if not ctv_arr.any():
        raise EmptyStructureError("the CTV is empty; no catheter can be placed.")
    # work on a ~2 mm grid: placement needs no finer resolution
    stride = np.maximum(1, np.rint(2.0 / ctv.spacing_kji_mm).astype(int))
    sl = tuple(slice(0, None, int(s)) for s in stride)
    grid = Volume(ctv_arr[sl], _strided_affine(ctv, stride))
    dist, penal, names = _forbidden_distance(case, vessel_min_calibre_mm, set(lesion_names), stride)
    ctx = _PlacementContext(grid, _body_mask(case)[sl], ctv_arr[sl], dist, penal)
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
    catheters: list[Catheter] = []
    near = dirs[dirs @ u0 >= np.cos(np.radians(25.0))]
    for p in pierce:
        c = _evaluate_lines(ctx, p, near, safety_mm=safety_mm, extension_mm=dwell_extension_mm)
        if not c:
            c = _evaluate_lines(ctx, p, dirs, safety_mm=safety_mm, extension_mm=dwell_extension_mm)
        if not c:
            notes.append(f"no safe path through pierce point {np.round(p, 1).tolist()} mm; catheter dropped")
            continue
        bc = min(c, key=lambda x: x["cost"])
        dw = _dwell_positions(ctv, bc["entry"], bc["tip"], dwell_step_mm, dwell_extension_mm)
        if len(dw) == 0:
            continue
        catheters.append(Catheter(bc["entry"], bc["tip"], dw, False, bc["clearance"]))
    if not catheters:
        raise PlanningError("no catheter with dwell positions inside the CTV could be placed; give catheters explicitly.")
    notes.append(f"{len(catheters)} catheter(s) for a {ctv_ml:.1f} ml CTV (rule: ⌈(D_eq/22 mm)²⌉, 1–12)")
    return catheters, notes


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
def plan_ibt(case: Any, lesion_id: str, measurements: Mapping[str, Any] | None = None, *,
             prescription_gy: float | None = None, margin_mm: float = 5.0,
             oar_limits: Mapping[str, Mapping[str, Any]] | None = None, source: tg43.SourceModel | None = None,
             grid_mm: float = 2.5, catheters: Sequence[Mapping[str, Any]] | None = None,
             sk_u: float = 40700.0, dwell_step_mm: float = 5.0, dwell_extension_mm: float = 2.5,
             max_modulation: float | None = 10.0, safety_mm: float = 3.0, vessel_min_calibre_mm: float = 3.0,
             n_catheters: int | None = None, alpha_beta_gy: float = 10.0, dose_pad_mm: float = 20.0,
             target_mean_weight: float = 0.0, **_ignored: Any) -> TreatmentPlan:
    """Plan single-fraction HDR brachytherapy of one lesion → :class:`TreatmentPlan`.

    ``prescription_gy``: minimum CTV dose (D100); when None, the knowledge default for the
    patient's primary (colorectal 20 Gy, otherwise 15 Gy; Walter 2021). ``oar_limits``:
    {organ name: {"limit_gy", "volume_ml" (1 for D1cc), "hard", "structures": [...]}}; when
    None, the IBT knowledge limits (D1cc ≤ 14 Gy stomach/duodenum/bowel, Mohnike 2016).
    ``catheters``: user catheters [{"entry_mm", "tip_mm"[, "dwell_positions_mm"]}] (mm, LPS).
    ``sk_u``: air-kerma strength of the source (U). ``grid_mm``: spacing of the optimisation
    and the returned dose grid.
    """
    t_start = time.perf_counter()
    from latplan.knowledge import radiation as rk

    src = source or tg43.default_source()
    caveats: list[str] = []
    if prescription_gy is None:
        primary = getattr(getattr(case, "patient", None), "primary", None)
        prescription_gy, cite = rk.ibt_prescription_gy(primary)
        caveats.append(f"prescription D100 {prescription_gy:g} Gy from the knowledge base ({cite}) for primary "
                       f"{getattr(primary, 'value', primary) or 'unknown'}")
    if not (prescription_gy > 0):
        raise InvalidInputError(f"prescription must be > 0 Gy; got {prescription_gy}.")
    if oar_limits is None:
        oar_limits = rk.ibt_oar_limits()
    ctv = ctv_mask(case, lesion_id, margin_mm)
    ctv_arr = ctv.array
    grid = case.labels
    sp = grid.spacing_kji_mm
    lesion_names = set(case.lesion_ids)
    # --- catheters -----------------------------------------------------------------------------
    if catheters:
        cats = _user_catheters(catheters, ctv, dwell_step_mm, dwell_extension_mm)
        notes = [f"{len(cats)} user-given catheter(s)"]
    else:
        cats, notes = place_catheters(case, ctv, safety_mm=safety_mm, vessel_min_calibre_mm=vessel_min_calibre_mm,
                                      dwell_step_mm=dwell_step_mm, dwell_extension_mm=dwell_extension_mm,
                                      n_catheters=n_catheters, lesion_names=sorted(lesion_names))
    dw_pos = np.concatenate([c.dwell_positions_mm for c in cats])
    dw_dir = np.concatenate([np.repeat(c.direction[None], len(c.dwell_positions_mm), 0) for c in cats])
    cat_of = np.concatenate([np.full(len(c.dwell_positions_mm), i) for i, c in enumerate(cats)])
    # --- sampled problem -------------------------------------------------------------------------
    opt_stride = np.maximum(1, np.rint(grid_mm / sp).astype(int))
    ctv_pts, _ = _points(grid, ctv_arr, np.maximum(opt_stride, _cap_stride(ctv_arr, sp, 6000)))
    # always include the CTV surface voxels (where the minimum dose sits)
    surface = ctv_arr & ~ndi.binary_erosion(ctv_arr)
    surf_pts, _ = _points(grid, surface, _cap_stride(surface, sp, 4000))
    ctv_pts = np.unique(np.concatenate([ctv_pts, surf_pts]), axis=0)
    # organs at risk: voxels within 40 mm of the CTV carry the hottest volumes
    # distance to the CTV (mm) inside a box of CTV + 45 mm only (the EDT of a whole CT is costly)
    kji = np.argwhere(ctv_arr)
    pad = np.ceil(45.0 / sp).astype(int)
    lo = np.maximum(kji.min(0) - pad, 0)
    hi = np.minimum(kji.max(0) + pad + 1, np.asarray(grid.shape))
    box = tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))
    dist_ctv = np.full(grid.shape, np.inf)
    dist_ctv[box] = ndi.distance_transform_edt(~ctv_arr[box], sampling=sp)
    near = dist_ctv <= 40.0
    oar_structs: dict[str, np.ndarray] = {}
    for organ, spec in oar_limits.items():
        names = [n for n in spec.get("structures", [organ]) if _has(case, n)]
        if not names:
            continue
        m = np.zeros(grid.shape, bool)
        for n in names:
            m |= case.mask_array(n)
        m &= ~ctv_arr
        if m.any():
            oar_structs[organ] = m
    def k_gy_s(pts: np.ndarray) -> np.ndarray:
        return tg43.dose_matrix_gy_per_s(pts, dw_pos, dw_dir, sk_u, src, method="lookup")

    oar_cons: list[OARConstraint] = []
    for organ, m in oar_structs.items():
        spec = oar_limits[organ]
        # full resolution (as in the evaluation) so D1cc on the LP points is D1cc of the plan;
        # constraint generation keeps the LP small whatever the number of points
        pts, pv = _points(grid, m & near, _cap_stride(m & near, sp, 60_000))
        if len(pts) == 0:
            continue
        oar_cons.append(OARConstraint(organ, k_gy_s(pts), float(spec["limit_gy"]), float(spec.get("volume_ml", 1.0)),
                                      pv, bool(spec.get("hard", True))))
    liver = liver_mask(case)
    shell = (dist_ctv > 0) & (dist_ctv <= 20.0)
    if liver is not None:
        shell &= liver
    normal_pts, _ = _points(grid, shell, np.maximum(opt_stride, _cap_stride(shell, sp, 4000)))
    a_ctv = k_gy_s(ctv_pts)
    a_norm = k_gy_s(normal_pts) if len(normal_pts) else None
    # --- optimise with cutting planes on the full-resolution CTV -----------------------------------
    all_ctv_pts, _ctv_pv = _points(grid, ctv_arr, _cap_stride(ctv_arr, sp, 300_000))
    res = None
    for _ in range(4):
        res = optimise_dwell_times(a_ctv, prescription_gy * (1 + 5e-4), oars=oar_cons, normal_matrix_gy_per_s=a_norm,
                                   max_modulation=max_modulation, target_mean_weight=target_mean_weight)
        d_all = tg43.dose_gy(all_ctv_pts, dw_pos, dw_dir, res.times_s, sk_u, src, method="lookup")
        low = d_all < prescription_gy * (1 - 1e-4)
        if not low.any() or not res.feasible:
            break
        add = all_ctv_pts[low]
        if len(add) > 3000:
            add = add[np.argsort(d_all[low])[:3000]]
        a_ctv = np.concatenate([a_ctv, k_gy_s(add)])
    assert res is not None
    times = res.times_s
    # --- evaluation on full-resolution structure voxels -------------------------------------------
    def struct_dose(name: str, mask: np.ndarray, max_points: int = 300_000) -> dvh.StructureDose:
        pts, pv = _points(grid, mask, _cap_stride(mask, sp, max_points))
        d = tg43.dose_gy(pts, dw_pos, dw_dir, times, sk_u, src, method="lookup")
        order = np.argsort(-d, kind="stable")
        return dvh.StructureDose(name, d[order], np.full(len(d), pv))

    ctv_sd = struct_dose("CTV", ctv_arr)
    metrics: dict[str, Any] = dvh.brachy_metrics(ctv_sd, prescription_gy)
    metrics = {k: (round(v, 3) if isinstance(v, float) else v) for k, v in metrics.items()}
    metrics["ctv_volume_ml"] = metrics.pop("volume_ml")
    curves = [ctv_sd.curve()]
    les_sd = struct_dose(lesion_id, case.lesion_mask(lesion_id).array)
    metrics["lesion_d100_gy"] = round(les_sd.d_percent(100), 3)
    curves.append(les_sd.curve())
    oar_d1cc: dict[str, float] = {}
    oar_detail: dict[str, dict[str, float]] = {}
    violations = []
    for organ, m in oar_structs.items():
        sd = struct_dose(organ, m)
        om = dvh.oar_metrics(sd)
        spec = oar_limits[organ]
        vol = float(spec.get("volume_ml", 1.0))
        value = sd.d_ml(vol)
        oar_d1cc[organ] = round(om["d1cc_gy"], 3)
        oar_detail[organ] = {k: round(v, 3) for k, v in om.items()}
        oar_detail[organ]["limit_gy"] = float(spec["limit_gy"])
        if value > float(spec["limit_gy"]) * (1 + 1e-3):
            violations.append((value - float(spec["limit_gy"]), organ))
        curves.append(sd.curve())
    metrics["oar_d1cc_gy"] = oar_d1cc
    metrics["oar"] = oar_detail
    if liver is not None:
        normal = liver & ~ctv_arr
        if normal.any():
            lsd = struct_dose("liver_minus_ctv", normal)
            metrics["liver_v5gy_ml"] = round(lsd.v_ml(5.0), 2)
            metrics["liver_v5gy_percent"] = round(lsd.v_percent(5.0), 3)
            metrics["liver_v10gy_ml"] = round(lsd.v_ml(10.0), 2)
            metrics["liver_v10gy_percent"] = round(lsd.v_percent(10.0), 3)
            metrics["normal_liver_volume_ml"] = round(lsd.total_ml, 1)
            curves.append(lsd.curve())
    else:
        caveats.append("no liver mask: normal-liver V5Gy/V10Gy not computed")
    coverage_ok = metrics["d100_gy"] >= prescription_gy * (1 - 1e-3)
    feasible = bool(coverage_ok and not violations)
    limiting = None
    if violations:
        limiting = max(violations)[1]
    elif not coverage_ok:
        limiting = res.limiting_constraint or "catheter_geometry"
    metrics["feasible"] = feasible
    metrics["oar_constraints_met"] = not violations
    metrics["limiting_constraint"] = limiting
    metrics["bed10_min_gy"] = round(float(lq.bed_gy(metrics["d100_gy"], 1, alpha_beta_gy)), 2)
    metrics["prescription_gy"] = prescription_gy
    metrics["n_catheters"] = len(cats)
    metrics["n_dwells"] = len(dw_pos)
    metrics["total_dwell_time_s"] = round(float(times.sum()), 2)
    metrics["optimiser"] = {"solve_time_s": round(res.solve_time_s, 3), "message": res.message,
                            "sampled_ctv_points": int(a_ctv.shape[0])}
    if not feasible:
        caveats.append(
            f"constraints cannot all be met: limiting constraint {limiting}; "
            + ("CTV D100 {:.2f} Gy < {:.3g} Gy".format(metrics["d100_gy"], prescription_gy) if not coverage_ok else
               "organ limit exceeded: " + ", ".join(f"{o} {oar_detail[o]['d1cc_gy']:.1f} Gy" for _, o in violations))
        )
    caveats.append("TG-43 water-based dose (no tissue heterogeneity); single fraction; BED of D100 uses α/β "
                   f"{alpha_beta_gy:g} Gy and is not an input to SBRT dose-response curves")
    caveats.extend(notes)
    # --- display dose grid -------------------------------------------------------------------------
    dose_vol = _dose_grid(grid, ctv_arr, opt_stride, dose_pad_mm, dw_pos, dw_dir, times, sk_u, src)
    tgt_idx = np.rint(dose_vol.mm_to_index(grid.index_to_mm(np.argwhere(ctv_arr).astype(float)))).astype(int)
    tgt = np.zeros(dose_vol.shape, bool)
    ok = np.all((tgt_idx >= 0) & (tgt_idx < np.asarray(dose_vol.shape)), axis=1)
    tgt[tuple(tgt_idx[ok].T)] = True
    applicators = [c.as_dict(times[cat_of == i]) for i, c in enumerate(cats)]
    return TreatmentPlan(
        modality="ibt",
        lesion_id=lesion_id,
        metrics=metrics,
        applicators=applicators,
        dose=dose_vol,
        target=dose_vol.with_array(tgt),
        dvh=curves,
        prescription_gy=float(prescription_gy),
        caveats=caveats,
        parameters={"margin_mm": margin_mm, "sk_u": sk_u, "source": src.name, "source_dataset": src.dataset,
                    "dwell_step_mm": dwell_step_mm, "dwell_extension_mm": dwell_extension_mm,
                    "max_modulation": max_modulation, "safety_mm": safety_mm,
                    "vessel_min_calibre_mm": vessel_min_calibre_mm, "grid_mm": grid_mm,
                    "oar_limits": {k: {kk: vv for kk, vv in v.items() if kk in ("limit_gy", "volume_ml", "hard")}
                                   for k, v in oar_limits.items()}},
        engine=ENGINE,
        engine_version=ENGINE_VERSION,
        verification=("TG-43 line source reproduces the consensus QA along-away table (GammaMed PDR Plus) within 0.5 % "
                      "for r ≥ 0.5 cm; LP dwell optimisation with D100 enforced on every CTV voxel centre; "
                      "DVH checked against analytic cases (tests/physics_radiation)"),
        runtime_s=time.perf_counter() - t_start,
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
