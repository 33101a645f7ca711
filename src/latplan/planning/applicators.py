"""Applicator placement: safe percutaneous trajectories and zone fitting over a lesion.

Why: a modality is only an option if applicators can reach the lesion safely and their
zones can cover lesion + target margin. This module proposes where they go; the planners
in :mod:`latplan.planning.thermal` / :mod:`latplan.planning.electroporation` simulate.

Decisions
---------
* **Trajectory**: straight line from the skin to the lesion centroid. The skin is where the path
  leaves the body *inside the image* (``body`` label ∪ labelled voxels, or without a body label the
  body from the image: CT > −400 HU, MR > Otsu; :attr:`latplan.anatomy.geometry.CaseGeometry.body`);
  a path that reaches the edge of the image still inside the body *cannot be verified* (the image
    does not show the abdominal wall along it): never safe, chosen only when no verified path is
  clear. 600 candidate directions (Fibonacci sphere); a path is *safe* when it and four parallel rays 2.5 mm off its axis (applicator radius +
  safety) are verified and cross none of: bone (ribs, spine), lung, heart, hollow organs (stomach, duodenum,
  small bowel, colon, oesophagus), gallbladder, kidney, spleen, spinal cord, and vessels of
  calibre ≥ 3 mm (local calibre from the vessel's distance transform). Among safe paths the
  score is depth (mm) + 1 mm per degree of cranio-caudal tilt beyond 20° (CT-guided
  in-plane access) + 30 mm when the path crosses < 10 mm of liver before the lesion
  (no parenchymal cover for subcapsular lesions). Depth limit 250 mm.
* **Zone fitting** (chart zones): the target is the lesion dilated by the target margin plus
  half a voxel (so that the voxel-measured margin reaches the target). An ellipsoid contains
  the target when every target surface point satisfies (z/A)² + (x/B)² + (y/C)² ≤ 1 in the
  applicator frame; the zone centre is optimised (Nelder–Mead on the worst point). Device
  settings are tried from the smallest zone up; the first whose rasterised zone gives a
  measured minimal margin ≥ target wins.
* **Several applicators**: parallel units (same direction) in a line / triangle / square
  pattern in the plane across the applicator, spacing searched 5–45 mm, up to
  ``max_units``; the first (fewest units, smallest setting, smallest spacing) covering
  pattern wins.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import ndimage, optimize

from latplan.anatomy.geometry import LARGE_VESSEL_CALIBRE_MM, CaseGeometry, geometry_for, structure_role
from latplan.case import Case, StructureRole
from latplan.case.vocabulary import HOLLOW_ORGAN_ROLES, VESSEL_ROLES
from latplan.imaging.volume import Volume
from latplan.physics.ablation_zones import ZoneEllipsoid, ZoneSize, perpendicular_axes, rasterise_zones
from latplan.physics.margins import MarginResult, ablative_margin_arrays

__all__ = [
    "AVOID_ROLES",
    "COLLATERAL_ROLES",
    "PlacementResult",
    "Trajectory",
    "collateral_structures",
    "continued",
    "crop_around",
    "crop_beyond",
    "find_trajectory",
    "fit_units",
    "grown_box",
    "grown_grid",
    "heat_sink_vessels",
    "inside_of",
    "margin_beyond",
    "shared_trajectory",
    "target_mask",
    "trajectory_key",
    "unit_pattern_mm",
]

#: structures a percutaneous path must not cross
AVOID_ROLES = frozenset({StructureRole.BONE, StructureRole.LUNG, StructureRole.HEART, StructureRole.GALLBLADDER,
                         StructureRole.KIDNEY, StructureRole.SPLEEN, StructureRole.SPINAL_CORD,
                         StructureRole.AORTA, StructureRole.INFERIOR_VENA_CAVA} | HOLLOW_ORGAN_ROLES)
#: structures reported when an ablation zone reaches them
COLLATERAL_ROLES = frozenset({StructureRole.BILE_DUCT, StructureRole.GALLBLADDER, StructureRole.KIDNEY,
                              StructureRole.DIAPHRAGM, StructureRole.LUNG, StructureRole.HEART,
                              StructureRole.ADRENAL, StructureRole.PANCREAS, StructureRole.SPLEEN} | HOLLOW_ORGAN_ROLES)
MAX_DEPTH_MM = 250.0
RAY_OFFSET_MM = 2.5


#: what the report and the plan say when the image does not show the abdominal wall along a path
UNVERIFIED_NOTE = "cannot be verified (the image does not show the abdominal wall along this path)"


@dataclass
class Trajectory:
    """A straight path: ``direction`` entry → target (unit, LPS), depth in mm.

    ``verified``: True when the path leaves the body *inside* the image (the abdominal wall along it is
    shown) — then ``entry_mm`` is ``skin_point_mm``, the skin point inside the image; False when the path
    reaches the edge of the image still inside the body — then ``entry_mm`` is where the image ends (not
    a skin entry), ``skin_point_mm`` is None and ``safe`` is False ("cannot be verified", never "safe");
    None when no path was found at all.
    """

    target_mm: np.ndarray
    direction: np.ndarray
    entry_mm: np.ndarray
    depth_mm: float
    safe: bool
    crossed: list[str] = field(default_factory=list)
    liver_path_mm: float = 0.0
    note: str = ""
    verified: bool | None = None
    skin_point_mm: np.ndarray | None = None


def _padded_bounds(mask: np.ndarray, pad_vox: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Index bounds [lo, hi) of ``mask`` padded by ``pad_vox`` voxels per axis, not clipped to the array."""
    idx = np.nonzero(mask)
    lo = np.array([int(a.min()) for a in idx]) - pad_vox
    hi = np.array([int(a.max()) + 1 for a in idx]) + pad_vox
    return lo, hi


def crop_around(mask: np.ndarray, pad_mm: float, spacing_kji_mm: np.ndarray) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
    """Index box [lo, hi) of ``mask`` padded by ``pad_mm`` and clipped to the array."""
    lo, hi = _padded_bounds(mask, np.ceil(pad_mm / np.asarray(spacing_kji_mm)).astype(int))
    lo, hi = np.maximum(lo, 0), np.minimum(hi, mask.shape)
    return (int(lo[0]), int(lo[1]), int(lo[2])), (int(hi[0]), int(hi[1]), int(hi[2]))


def crop_beyond(mask: np.ndarray, pad_mm: float, spacing_kji_mm: np.ndarray) -> list[tuple[int, int]]:
    """Per axis (k, j, i): the voxels before/after the image that :func:`crop_around`'s box would need
    (0, 0 when the padded box fits in the image)."""
    lo, hi = _padded_bounds(mask, np.ceil(pad_mm / np.asarray(spacing_kji_mm)).astype(int))
    return [(int(max(-a, 0)), int(max(b - n, 0))) for a, b, n in zip(lo, hi, mask.shape, strict=True)]


def grown_box(mask: np.ndarray, reach_mm: float, h: np.ndarray) -> tuple[slice, ...]:
    """Index box of ``mask`` grown by ``reach_mm`` + 1 voxel per axis, clipped to the array (all of it when
    ``mask`` is empty). A distance map taken inside it is the whole array's for every voxel within
    ``reach_mm`` of the mask, and for every mask voxel's nearest outside voxel."""
    if not mask.any():
        return tuple(slice(0, n) for n in mask.shape)
    lo, hi = _padded_bounds(mask, np.ceil(reach_mm / np.asarray(h, float)).astype(int) + 1)
    return tuple(slice(int(max(a, 0)), int(min(b, n))) for a, b, n in zip(lo, hi, mask.shape, strict=True))


def target_mask(lesion: np.ndarray, margin_mm: float, spacing_kji_mm: np.ndarray) -> np.ndarray:
    """Lesion dilated by ``margin_mm`` (mm-true, Euclidean); distances within the lesion's box grown by the
    margin (+ 1 voxel), which holds every voxel within reach (exact, and small next to the crop)."""
    if margin_mm <= 0 or not lesion.any():
        return lesion.copy()
    h = np.asarray(spacing_kji_mm, float)
    box = grown_box(lesion, margin_mm, h)
    out = np.zeros(lesion.shape, bool)
    out[box] = ndimage.distance_transform_edt(~lesion[box], sampling=h) <= margin_mm
    return out


def _names_with_roles(case: Case, roles: frozenset[StructureRole] | set[StructureRole]) -> list[str]:
    return [n for n in case.structure_names() if structure_role(case, n) in roles]


def _fibonacci_directions(n: int) -> np.ndarray:
    i = np.arange(n) + 0.5
    phi = np.arccos(1 - 2 * i / n)
    theta = math.pi * (1 + 5**0.5) * i
    return np.stack([np.cos(theta) * np.sin(phi), np.sin(theta) * np.sin(phi), np.cos(phi)], axis=1)


DEFAULT_DIRECTIONS = 600


def find_trajectory(case: Case, lesion_id: str, *, n_directions: int = DEFAULT_DIRECTIONS,
                    geometry: CaseGeometry | None = None) -> Trajectory:
    """Best safe straight path from the skin to the centroid of ``lesion_id`` (see module doc).

    The skin is where the path leaves the body (:attr:`CaseGeometry.body`: the body label, or the body
    from the image) *inside* the image. A path that reaches the edge of the image still inside the
    body cannot be verified (the image does not show the abdominal wall along it): it is chosen only
    when no verified path avoids every structure at risk, and then it is not safe (``verified`` False).

    Computed once per case, lesion and ``n_directions`` (kept on the case's :class:`CaseGeometry`,
    :meth:`~CaseGeometry.memo`; every planner of the lesion reads the same path, also in worker
    processes when the pipeline computed it before they started); each call returns its own copy.
    """
    geo = geometry_for(case, geometry)
    traj = geo.memo(trajectory_key(lesion_id, n_directions),
                    lambda: _find_trajectory(geo, lesion_id, n_directions))
    return copy.deepcopy(traj)


def shared_trajectory(case: Case, lesion_id: str, geometry: CaseGeometry) -> dict[Hashable, Trajectory]:
    """:func:`find_trajectory` of the lesion (default directions), computed once onto ``geometry``, as
    its memo entry (the pipeline runs it before simulations fan out and sends it to every worker
    planning the lesion: all its planners read the same path)."""
    geo = geometry_for(case, geometry)
    key = trajectory_key(lesion_id)
    return {key: geo.memo(key, lambda: _find_trajectory(geo, lesion_id, DEFAULT_DIRECTIONS))}


def trajectory_key(lesion_id: str, n_directions: int = DEFAULT_DIRECTIONS) -> tuple[str, str, int]:
    """The :meth:`CaseGeometry.memo` key of :func:`find_trajectory`'s result."""
    return "trajectory", lesion_id, int(n_directions)


def _find_trajectory(geometry: CaseGeometry, lesion_id: str, n_directions: int) -> Trajectory:
    case = geometry.case
    labels = case.labels
    lesion = case.lesion_mask(lesion_id).array
    h = labels.spacing_kji_mm
    target = labels.index_to_mm(np.argwhere(lesion).mean(axis=0))
    lab = labels.array
    value_to_name: dict[int, str] = {}
    for n in geometry.names_with_roles(AVOID_ROLES):
        for value in case.label_table.values_for(n):
            value_to_name[int(value)] = n
    forbidden = np.isin(lab, list(value_to_name)) if value_to_name else np.zeros(lab.shape, bool)
    forbidden = forbidden | geometry.large_vessels
    body = geometry.body  # body label ∪ labelled voxels, or the body from the image ([L] field of view)
    # liver parenchyma: the case's liver without its lesions (a path's cover of liver tissue)
    liver = geometry.liver & ~geometry.lesions if geometry.liver is not None else np.zeros(lab.shape, bool)
    lesion_dil = target_mask(lesion, 2.0, h)

    step = 0.5 * float(h.min())
    s = np.arange(0.0, MAX_DEPTH_MM + step, step)
    # best per kind: verified and clear / not verified but clear / crossing something (fewest voxels)
    best: dict[str, tuple[float, Trajectory]] = {}
    for d in _fibonacci_directions(n_directions):  # unit vectors pointing from the target back to the skin
        traj, bad, score = _evaluate_direction(case, target, d, s, step, body, forbidden, liver, lesion_dil,
                                               value_to_name)
        if traj is None:
            continue
        kind = "crossing" if bad else ("verified" if traj.verified else "unverified")
        key = float(bad) if bad else score
        if kind not in best or key < best[kind][0]:
            best[kind] = (key, traj)
    if "verified" in best:
        return best["verified"][1]
    if "unverified" in best:
        t = best["unverified"][1]
        t.note = f"trajectory {UNVERIFIED_NOTE}"
        return t
    if "crossing" in best:
        t = best["crossing"][1]
        t.note = ("no straight percutaneous path avoids every structure at risk; the least-crossing path "
                  f"crosses {', '.join(t.crossed)}")
        if not t.verified:
            t.note += f"; the trajectory {UNVERIFIED_NOTE}"
        return t
    return Trajectory(target, np.array([0.0, 0.0, -1.0]), target, 0.0, False, [],
                      note="no path leaves the body within 250 mm")


def _evaluate_direction(case: Case, target: np.ndarray, d: np.ndarray, s: np.ndarray, step: float,
                        body: np.ndarray, forbidden: np.ndarray, liver: np.ndarray, lesion_dil: np.ndarray,
                        value_to_name: dict[int, str]) -> tuple[Trajectory | None, int, float]:
    """(trajectory, forbidden voxels crossed, score) of the path from ``target`` along ``d`` (None: it
    does not leave the body within :data:`MAX_DEPTH_MM`)."""
    labels = case.labels
    lab = labels.array
    inv = np.linalg.inv(labels.affine)
    shape = np.asarray(lab.shape)
    pts = target[None, :] + s[:, None] * d[None, :]
    ijk = pts @ inv[:3, :3].T + inv[:3, 3]
    kji = np.round(ijk[:, ::-1]).astype(int)
    inb = np.all((kji >= 0) & (kji < shape), axis=1)
    ins = np.zeros(len(s), bool)
    ins[inb] = body[tuple(kji[inb].T)]
    out_idx = np.nonzero(~ins)[0]  # the first sample (walking out) that is not body inside the image
    if not out_idx.size:
        return None, 0, 0.0
    exit_i = int(out_idx[0])
    # leaving through the edge of the image while inside the body: the abdominal wall is not shown
    verified = bool(inb[exit_i])
    if verified:
        skin: np.ndarray | None = pts[max(exit_i - 1, 0)]
        end = skin
    else:
        skin = None
        end = pts[max(exit_i - 1, 0)]  # the last sample inside the image: where the image ends
    depth = float(np.linalg.norm(end - target))
    crossed: set[str] = set()
    bad = 0
    u, v = perpendicular_axes(d)
    for off in (np.zeros(3), RAY_OFFSET_MM * u, -RAY_OFFSET_MM * u, RAY_OFFSET_MM * v, -RAY_OFFSET_MM * v):
        p = target[None, :] + off[None, :] + s[:exit_i, None] * d[None, :]
        kk = np.round((p @ inv[:3, :3].T + inv[:3, 3])[:, ::-1]).astype(int)
        kk = kk[np.all((kk >= 0) & (kk < shape), axis=1)]
        fb = forbidden[tuple(kk.T)] & ~lesion_dil[tuple(kk.T)]
        if fb.any():
            bad += int(fb.sum())
            for vv in np.unique(lab[tuple(kk[fb].T)]):
                crossed.add(value_to_name.get(int(vv), "large vessel"))
    kk0 = kji[:exit_i][inb[:exit_i]]
    liver_path = float(np.count_nonzero(liver[tuple(kk0.T)] & ~lesion_dil[tuple(kk0.T)])) * step
    # cranio-caudal tilt: angle between the path and the axial plane (LPS z = superior)
    tilt = math.degrees(math.asin(min(1.0, abs(float(d[2])))))
    score = depth + max(0.0, tilt - 20.0) + (30.0 if liver_path < 10.0 else 0.0)
    traj = Trajectory(target, -d, target + depth * d, depth, bad == 0 and verified, sorted(crossed), liver_path,
                      verified=verified, skin_point_mm=skin)
    return traj, bad, score


# --------------------------------------------------------------------------------------------
# zone fitting
# --------------------------------------------------------------------------------------------
def unit_pattern_mm(n: int) -> np.ndarray:
    """In-plane unit positions (n, 2) for 1–4 units at unit spacing (line, triangle, square)."""
    if n == 1:
        return np.zeros((1, 2))
    if n == 2:
        return np.array([[-0.5, 0.0], [0.5, 0.0]])
    if n == 3:
        r = 1.0 / math.sqrt(3.0)
        return np.array([[r * math.cos(a), r * math.sin(a)] for a in np.pi / 2 + np.arange(3) * 2 * np.pi / 3])
    if n == 4:
        return np.array([[-0.5, -0.5], [0.5, -0.5], [0.5, 0.5], [-0.5, 0.5]])
    ang = np.arange(n) * 2 * np.pi / n
    r = 0.5 / math.sin(math.pi / n)
    return np.stack([r * np.cos(ang), r * np.sin(ang)], axis=1)


@dataclass
class PlacementResult:
    """Fitted units: zone ellipsoids, their sizes, the applicator tips, and the measured margin."""

    ellipsoids: list[ZoneEllipsoid]
    sizes: list[ZoneSize]
    tips_mm: list[np.ndarray]
    direction: np.ndarray
    covers: bool
    margin: MarginResult
    zone: Volume
    spacing_mm: float = 0.0
    tried: list[str] = field(default_factory=list)
    #: the zone on the crop grown past the image's cut faces (``fit_units(beyond_vox=…)``), else None
    zone_beyond: np.ndarray | None = None


def _frame(direction: np.ndarray) -> np.ndarray:
    a = direction / np.linalg.norm(direction)
    u, v = perpendicular_axes(a)
    return np.stack([a, u, v])  # rows


def _worst_q(points_f: np.ndarray, centres_f: np.ndarray, semi: np.ndarray) -> np.ndarray:
    """Per point, min over units of the ellipsoid quadratic form (≤ 1 = inside some unit)."""
    q = np.full(points_f.shape[0], np.inf)
    for c in centres_f:
        q = np.minimum(q, np.sum(((points_f - c) / semi) ** 2, axis=1))
    return q


def fit_units(
    ref: Volume,
    lesion: np.ndarray,
    target: np.ndarray,
    direction: np.ndarray,
    sizes: Sequence[ZoneSize],
    *,
    target_margin_mm: float,
    max_units: int = 1,
    unit_sizes: Callable[[int], Sequence[ZoneSize]] | None = None,
    spacings_mm: Sequence[float] = tuple(np.arange(5.0, 45.1, 2.5)),
    beyond_vox: Sequence[tuple[int, int]] | None = None,
) -> PlacementResult:
    """Smallest set of parallel units (≤ ``max_units``) whose zones cover ``target``.

    ``sizes`` are the candidate zones of one unit (device settings); ``unit_sizes(n)`` may
    give different candidates for ``n`` units. Returns the best found even when nothing
    covers (``covers`` False, largest zone / most units tried). ``beyond_vox``: per axis (k, j, i)
    the voxels before/after the crop ``ref`` that lie past the image's edge; the margin is then
    measured on the grid grown by them (the chart zone continues there, analytically; the lesion
    does not), so the image edge is never taken as the zone's edge (:func:`margin_beyond`).
    """
    h = ref.spacing_kji_mm
    grown = grown_grid(ref, beyond_vox) if beyond_vox is not None and any(a or b for a, b in beyond_vox) else None
    frame = _frame(direction)
    surf = target & ~ndimage.binary_erosion(target)
    pts_mm = ref.index_to_mm(np.argwhere(surf).astype(float))
    pts_f = pts_mm @ frame.T
    centre0 = 0.5 * (pts_f.min(axis=0) + pts_f.max(axis=0))
    tried: list[str] = []
    best_fail: PlacementResult | None = None
    best_fail_key = (-1.0, -np.inf)

    def realise(centres_f: list[np.ndarray], size: ZoneSize, spacing: float) -> PlacementResult:
        ells, tips = [], []
        for c in centres_f:
            c_mm = c @ frame
            ells.append(ZoneEllipsoid(tuple(c_mm.tolist()), tuple(frame[0].tolist()), size.length_mm, size.width_mm,
                                      size.depth_mm))
            tips.append(c_mm - size.centre_offset_from_tip_mm * frame[0])
        if grown is None or beyond_vox is None:
            zone, beyond = rasterise_zones(ref, ells), None
            margin = ablative_margin_arrays_safe(lesion, zone.array, h)
        else:  # one rasterisation on the grown grid; the crop's zone is its inside
            beyond = rasterise_zones(grown, ells).array
            zone = ref.with_array(beyond[inside_of(beyond_vox, lesion.shape)])
            margin = margin_beyond(lesion, zone.array, beyond, beyond_vox, h)
        return PlacementResult(ells, [size] * len(ells), tips, frame[0], margin.min_margin_mm >= target_margin_mm - 1e-6,
                               margin, zone, spacing, list(tried), beyond)

    for n in range(1, max_units + 1):
        cands = list(unit_sizes(n)) if unit_sizes is not None else list(sizes)
        cands.sort(key=lambda z: z.volume_ml)
        pattern = unit_pattern_mm(n)
        # orient the pattern along the target's widest in-plane direction
        cov = np.cov((pts_f[:, 1:] - centre0[1:]).T) if len(pts_f) > 3 else np.eye(2)
        _w, vecs = np.linalg.eigh(cov)
        rot = vecs[:, ::-1]
        for size in cands:
            semi = 0.5 * np.array([size.length_mm, size.width_mm, size.depth_mm])
            for spacing in (spacings_mm if n > 1 else (0.0,)):
                offs = np.zeros((n, 3))
                offs[:, 1:] = (pattern * spacing) @ rot.T

                def worst(x: np.ndarray, offs: np.ndarray = offs, semi: np.ndarray = semi) -> float:
                    return float(_worst_q(pts_f, centre0 + x + offs, semi).max())

                x0 = np.zeros(3)
                q0 = worst(x0)
                if q0 > 4.0:  # hopeless by far: skip the optimiser
                    tried.append(f"{n}×{size.device} {size.settings} spacing {spacing:g} mm: too small")
                    continue
                res = optimize.minimize(worst, x0, method="Nelder-Mead",
                                        options={"xatol": 0.2, "fatol": 1e-3, "maxiter": 200})
                qbest = float(res.fun)
                centres = [centre0 + res.x + o for o in offs]
                if qbest <= 1.0:
                    pr = realise(centres, size, spacing)
                    if pr.covers:
                        pr.tried = tried
                        return pr
                    tried.append(f"{n}×{size.device} {size.settings}: measured margin "
                                 f"{pr.margin.min_margin_mm:.1f} mm < target")
                key = (float(n), -qbest)
                if key > best_fail_key and (n == max_units or n == 1):
                    best_fail_key = key
                    best_fail = (centres, size, spacing)  # type: ignore[assignment]
    if best_fail is None:
        size = max(sizes, key=lambda z: z.volume_ml)
        best_fail = ([centre0], size, 0.0)  # type: ignore[assignment]
    centres, size, spacing = best_fail  # type: ignore[misc]
    pr = realise(centres, size, spacing)
    pr.tried = tried
    pr.covers = False
    return pr


def grown_grid(ref: Volume, beyond_vox: Sequence[tuple[int, int]]) -> Volume:
    """``ref`` grown by (before, after) voxels per axis (k, j, i), its affine shifted (array zeros: a grid
    for analytic zones past the edge of the image)."""
    before = np.array([b for b, _a in beyond_vox], float)
    shape = tuple(int(n + b + a) for n, (b, a) in zip(ref.shape, beyond_vox, strict=True))
    aff = np.array(ref.affine)
    aff[:3, 3] = ref.index_to_mm(-before)
    return Volume(np.zeros(shape, bool), aff)


def inside_of(beyond_vox: Sequence[tuple[int, int]], shape: Sequence[int]) -> tuple[slice, ...]:
    """The crop (of ``shape``) inside the grid grown by ``beyond_vox`` (:func:`grown_grid`)."""
    return tuple(slice(b, b + n) for (b, _a), n in zip(beyond_vox, shape, strict=True))


def continued(zone: np.ndarray, zone_grown: np.ndarray, beyond_vox: Sequence[tuple[int, int]],
              *on_crop: np.ndarray) -> tuple[np.ndarray, ...]:
    """``zone`` (on the crop) continued past the image's edge by ``zone_grown`` (on the grown grid), and each
    of ``on_crop`` on the grown grid (False beyond the crop): the arrays a margin past the edge is measured on."""
    inside = inside_of(beyond_vox, zone.shape)
    z = zone_grown.copy()
    z[inside] = zone
    out = [z]
    for a in on_crop:
        g = np.zeros(z.shape, bool)
        g[inside] = a
        out.append(g)
    return tuple(out)


def margin_beyond(lesion: np.ndarray, zone: np.ndarray, zone_grown: np.ndarray,
                  beyond_vox: Sequence[tuple[int, int]], h: np.ndarray) -> MarginResult:
    """Margin of ``lesion`` (on the crop) in ``zone`` (on the crop) continued past the image's edge by
    ``zone_grown`` (on the grown grid of :func:`grown_grid`): inside the image the zone is ``zone`` (the
    modelled one: vessels, heat sink), beyond it the chart zone. Why: an image face is not the zone's
    edge — measured on the crop, a zone cut by the scan 3 mm above a lesion gave a "3.0 mm, misses"
    margin that was the distance to the face (found on a real CT). The plan says it is conditional
    (:func:`latplan.planning.fov.fov_check`). Surface indices are on the grown grid."""
    z, les = continued(zone, zone_grown, beyond_vox, lesion)
    return ablative_margin_arrays_safe(les, z, h)


def ablative_margin_arrays_safe(lesion: np.ndarray, zone: np.ndarray, h: np.ndarray) -> MarginResult:
    """Margin of ``lesion`` in ``zone``; an empty zone gives −∞-like margin and 0 % coverage."""
    if not zone.any():
        surf = lesion & ~ndimage.binary_erosion(lesion)
        return MarginResult(-1e3, 0.0, np.full(int(surf.sum()), -1e3), np.argwhere(surf))
    return ablative_margin_arrays(lesion, zone, h)


# --------------------------------------------------------------------------------------------
# anatomy around the zone
# --------------------------------------------------------------------------------------------
def collateral_structures(case: Case, zone: Volume, lo: Sequence[int]) -> list[dict[str, Any]]:
    """Structures at risk (bile duct, bowel, gallbladder, …) inside a zone given on a crop at ``lo``."""
    sl = tuple(slice(a, a + n) for a, n in zip(lo, zone.shape, strict=True))
    lab = case.labels.array[sl]
    out = []
    vox_ml = case.labels.voxel_volume_ml
    for n in _names_with_roles(case, COLLATERAL_ROLES):
        m = np.isin(lab, case.label_table.values_for(n)) & zone.array
        if m.any():
            role = structure_role(case, n)
            out.append({"name": n, "role": role.value if role is not None else "other",
                        "volume_ml": round(float(m.sum()) * vox_ml, 3)})
    return sorted(out, key=lambda d: -d["volume_ml"])


def heat_sink_vessels(case: Case, lesion_id: str, *, within_mm: float = 10.0,
                      min_calibre_mm: float = LARGE_VESSEL_CALIBRE_MM,
                      measurements: dict[str, Any] | None = None,
                      geometry: CaseGeometry | None = None) -> list[dict[str, Any]]:
    """Vessels ≥ ``min_calibre_mm`` within ``within_mm`` of the lesion: name, calibre, distance.

    Uses the anatomy measurements (``heat_sink_vessels``) when given, else measures on the
    label map (distance = lesion surface to vessel voxels; calibre = the largest local calibre of the
    vessel within the search region, from the case's one calibre map
    :attr:`~latplan.anatomy.geometry.CaseGeometry.vessel_calibre_mm`).
    """
    if measurements and isinstance(measurements.get("heat_sink_vessels"), list):
        return [
            {"name": v.get("name"), "calibre_mm": v.get("calibre_mm"), "distance_mm": v.get("distance_mm")}
            for v in measurements["heat_sink_vessels"]
            if v.get("calibre_mm") is not None and v["calibre_mm"] >= min_calibre_mm
            and v.get("distance_mm") is not None and v["distance_mm"] <= within_mm
        ]
    geo = geometry_for(case, geometry)
    lesion = case.lesion_mask(lesion_id).array
    h = case.labels.spacing_kji_mm
    lo, hi = crop_around(lesion, within_mm + 10.0, h)
    sl = tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))
    les = lesion[sl]
    dist = ndimage.distance_transform_edt(~les, sampling=h)
    calibre_map = geo.vessel_calibre_mm[sl]
    out = []
    for n in geo.names_with_roles(VESSEL_ROLES):
        m = case.mask_array(n)[sl]
        if not m.any():
            continue
        near = m & (dist <= within_mm + 0.5 * float(h.max()))
        if not near.any():
            continue
        calibre = float(calibre_map[m & (dist <= within_mm + 6.0)].max())
        if calibre < min_calibre_mm:
            continue
        gap = max(0.0, float(dist[near].min()) - 0.5 * float(h.mean()))
        out.append({"name": n, "calibre_mm": round(calibre, 1), "distance_mm": round(gap, 1)})
    return sorted(out, key=lambda d: d["distance_mm"])


#: organs the board checks for thermal/field injury (roles); absent from the label map → "unsegmented"
ORGAN_CHECK_ROLES: tuple[StructureRole, ...] = (
    StructureRole.GALLBLADDER, StructureRole.KIDNEY, StructureRole.STOMACH, StructureRole.DUODENUM,
    StructureRole.SMALL_BOWEL, StructureRole.COLON, StructureRole.HEART, StructureRole.BILE_DUCT,
    StructureRole.DIAPHRAGM,
)


def organ_volumes_in_zone(case: Case, zone: np.ndarray, lo: Sequence[int]) -> tuple[dict[str, float], list[str]]:
    """({organ role: ml inside the zone} for every segmented organ of :data:`ORGAN_CHECK_ROLES`
    and the other collateral roles present, [roles of the check list not segmented]). ``zone`` is
    a boolean crop at ``lo``; an organ that is segmented but outside the zone reads 0 ml."""
    sl = tuple(slice(a, a + n) for a, n in zip(lo, zone.shape, strict=True))
    lab = case.labels.array[sl]
    vox_ml = case.labels.voxel_volume_ml
    found: dict[str, float] = {}
    for n in _names_with_roles(case, set(ORGAN_CHECK_ROLES) | set(COLLATERAL_ROLES)):
        r = structure_role(case, n)
        role = r.value if r is not None else "other"
        ml = float(np.sum(np.isin(lab, case.label_table.values_for(n)) & zone)) * vox_ml
        found[role] = round(found.get(role, 0.0) + ml, 3)
    missing = [r.value for r in ORGAN_CHECK_ROLES if r.value not in found]
    return dict(sorted(found.items())), missing


def zone_uncertainty_band(zone: np.ndarray, lesion: np.ndarray, spacing_mm: Sequence[float], rel_diameter: float,
                          exclude: np.ndarray | None = None) -> tuple[list[float], list[float]]:
    """([zone ml lo, hi], [min margin mm lo, hi]) when the zone edge moves in or out by
    ``rel_diameter`` × its equivalent radius (a zone-size uncertainty as a fraction of the
    diameter); ``exclude`` (e.g. the large-vessel lumen) never joins the zone."""
    h = np.asarray(spacing_mm, float)
    vox_ml = float(np.prod(h)) / 1000.0
    vol_ml = float(zone.sum()) * vox_ml
    if vol_ml <= 0 or rel_diameter <= 0:
        return [round(vol_ml, 2)] * 2, [-1e3, -1e3]
    r_eq = (3.0 * vol_ml * 1000.0 / (4.0 * math.pi)) ** (1.0 / 3.0)
    # distances between voxel centres: the zone's edge lies on average ≈ ⅓ voxel beyond the centres
    d = rel_diameter * r_eq
    c = 0.35 * float(h.mean())
    # distances within the zone's box grown by d + c (+ 1 voxel): every voxel within d + c of the zone, and
    # every zone voxel's nearest outside voxel, lie in it, so both maps are the whole array's (exact)
    box = grown_box(zone, d + c, h)
    inner = np.zeros(zone.shape, bool)
    outer = np.zeros(zone.shape, bool)
    inner[box] = ndimage.distance_transform_edt(zone[box], sampling=h) > d + c
    outer[box] = ndimage.distance_transform_edt(~zone[box], sampling=h) <= d + c
    if exclude is not None:
        outer &= ~exclude
    vols = [round(float(z.sum()) * vox_ml, 2) for z in (inner, outer)]
    margins = [round(float(ablative_margin_arrays(lesion, z, h).min_margin_mm), 2) if z.any() else -1e3
               for z in (inner, outer)]
    return vols, margins
