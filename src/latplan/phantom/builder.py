"""`build_phantom(spec) -> Case`: paint the fixed anatomy, place the lesions, render CT intensities.

Painting order decides what wins where shapes meet (a voxel has one label): body → lungs →
diaphragm → liver segments → spleen, kidneys, stomach, heart, duodenum, colon, small bowel → gallbladder →
bile ducts, portal vein, hepatic artery, hepatic veins → IVC, aorta → spine, cord, ribs →
lesions. Organs painted later carve the liver (renal impression, gallbladder fossa), as in
real anatomy.

Lesions claim liver parenchyma and peripheral vessel/duct branches thinner than
:data:`ENGULFABLE_CALIBRE_MM` (tumours encase small branches); any other voxel under a
lesion (a large vessel, another organ, outside the liver, another lesion) makes the spec
unsatisfiable → :class:`~latplan.errors.PhantomSpecError`.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

from latplan.case import Case, LabelTable
from latplan.errors import PhantomSpecError
from latplan.imaging.volume import Volume
from latplan.phantom import geometry as g
from latplan.phantom.spec import LesionSpec, PhantomSpec, parse_spec

__all__ = ["ENGULFABLE_CALIBRE_MM", "PhantomBuild", "build_phantom", "build_phantom_detailed"]

#: vessel/duct branches thinner than this (mm) may be encased by a lesion
ENGULFABLE_CALIBRE_MM = 4.0
#: structures a spec may name in ``abut``
ABUTTABLE = tuple(n for n in g.LABELS if n not in ("body", "liver") and not n.startswith("liver_segment_"))


# ---------------------------------------------------------------------------------------------
# grid and painting helpers
# ---------------------------------------------------------------------------------------------
class _Canvas:
    """Label array on the phantom grid plus box-limited evaluation of implicit shapes."""

    def __init__(self, voxel_mm: tuple[float, float, float], fov_mm: tuple | None = None) -> None:
        self.spacing = np.asarray(voxel_mm, float)  # x, y, z
        lo, hi = (g.FOV_LO_MM, g.FOV_HI_MM) if fov_mm is None else (np.asarray(fov_mm[0], float),
                                                                      np.asarray(fov_mm[1], float))
        self.origin = lo.copy()
        n = np.floor((hi - lo) / self.spacing + 1e-9).astype(int) + 1
        self.n_xyz = n
        self.shape = (int(n[2]), int(n[1]), int(n[0]))
        self.labels = np.zeros(self.shape, np.int16)
        self.engulfable = np.zeros(self.shape, bool)
        self.radius = np.zeros(self.shape, np.float16)   # built tube radius (mm) of tube voxels
        self.axes = [self.origin[a] + np.arange(n[a]) * self.spacing[a] for a in range(3)]

    @property
    def affine(self) -> np.ndarray:
        aff = np.eye(4)
        aff[:3, :3] = np.diag(self.spacing)
        aff[:3, 3] = self.origin
        return aff

    def box(self, lo_mm: np.ndarray, hi_mm: np.ndarray):
        """Slices (k, j, i) and broadcastable X, Y, Z of the voxels inside [lo, hi], or None."""
        lo = np.ceil((np.asarray(lo_mm) - self.origin) / self.spacing - 1e-9).astype(int)
        hi = np.floor((np.asarray(hi_mm) - self.origin) / self.spacing + 1e-9).astype(int) + 1
        lo = np.clip(lo, 0, self.n_xyz)
        hi = np.clip(hi, 0, self.n_xyz)
        if np.any(hi <= lo):
            return None
        sl = (slice(lo[2], hi[2]), slice(lo[1], hi[1]), slice(lo[0], hi[0]))
        X = self.axes[0][lo[0]:hi[0]][None, None, :]
        Y = self.axes[1][lo[1]:hi[1]][None, :, None]
        Z = self.axes[2][lo[2]:hi[2]][:, None, None]
        return sl, X, Y, Z

    def paint(self, lo_mm, hi_mm, fn, value: int, only_on: tuple[int, ...] | None = None) -> None:
        b = self.box(lo_mm, hi_mm)
        if b is None:
            return
        sl, X, Y, Z = b
        m = np.broadcast_to(fn(X, Y, Z), self.labels[sl].shape)
        sub = self.labels[sl]
        if only_on is not None:
            m = m & np.isin(sub, only_on)
        sub[m] = value
        self.engulfable[sl][m] = False
        self.radius[sl][m] = 0

    def paint_tube(self, tube: g.Tube, value: int) -> None:
        for a, b_, ra, rb in tube.segments():
            rmax = max(ra, rb)
            box = self.box(np.minimum(a, b_) - rmax, np.maximum(a, b_) + rmax)
            if box is None:
                continue
            sl, X, Y, Z = box
            d = b_ - a
            dd = float(d @ d)
            t = ((X - a[0]) * d[0] + (Y - a[1]) * d[1] + (Z - a[2]) * d[2]) / dd
            t = np.clip(t, 0.0, 1.0)
            dist = np.sqrt((X - a[0] - t * d[0]) ** 2 + (Y - a[1] - t * d[1]) ** 2 + (Z - a[2] - t * d[2]) ** 2)
            r = ra + t * (rb - ra)
            m = dist <= r
            self.labels[sl][m] = value
            self.engulfable[sl][m] = (2.0 * r < ENGULFABLE_CALIBRE_MM)[m]
            self.radius[sl][m] = r[m]


def _ellipsoid_fn(centre, semi, grow=0.0):
    return lambda X, Y, Z: g.ellipsoid_q(X, Y, Z, centre, semi, grow) <= 1.0


def _ellipsoid_box(centre, semi, grow=0.0) -> tuple[np.ndarray, np.ndarray]:
    c, s = np.asarray(centre, float), np.asarray(semi, float) + grow
    return c - s, c + s


@lru_cache(maxsize=1)
def segment_centres_mm() -> dict[str, tuple[float, float, float]]:
    """Centroid (LPS mm) of each Couinaud segment of the uncarved liver, on a fixed 3 mm grid.

    Used as the end points of the segmental portal branches, so the portal tree is the same
    whatever voxel size the phantom is built at.
    """
    lo = np.minimum(*(np.asarray(c) - np.asarray(s) for c, s in (g.LIVER_RIGHT, g.LIVER_LEFT)))
    hi = np.maximum(*(np.asarray(c) + np.asarray(s) for c, s in (g.LIVER_RIGHT, g.LIVER_LEFT)))
    ax = [np.arange(lo[a], hi[a] + 1e-9, 3.0) for a in range(3)]
    X, Y, Z = np.meshgrid(*ax, indexing="ij")
    inside = g.liver_inside(X, Y, Z)
    ivc = np.hypot(X - g.IVC_XY[0], Y - g.IVC_XY[1]) <= g.IVC_RADIUS_MM + 3
    inside &= ~ivc
    idx = g.couinaud_index(X, Y, Z)
    out = {}
    for n, s in enumerate(g.SEGMENTS):
        m = inside & (idx == n)
        out[s] = (float(X[m].mean()), float(Y[m].mean()), float(Z[m].mean()))
    return out


def portal_tubes() -> list[g.Tube]:
    """The whole portal tree: trunk + one segmental branch per Couinaud segment."""
    tubes = list(g.PORTAL_TRUNK)
    centres = segment_centres_mm()
    for s, (parent, r0, waypoints) in g.PORTAL_BRANCH_FROM.items():
        nodes = (parent, *waypoints, centres[s])
        lengths = np.r_[0.0, np.cumsum(np.linalg.norm(np.diff(np.asarray(nodes, float), axis=0), axis=1))]
        radii = tuple(float(r0 + (g.PV_TIP_RADIUS_MM - r0) * f) for f in lengths / lengths[-1])
        tubes.append(g.Tube("portal_vein", nodes, radii))
    return tubes


def all_tubes() -> list[g.Tube]:
    """Every tube of the phantom (vessels, ducts, bowel), in painting order."""
    return [*g.BILE_DUCTS, *portal_tubes(), *g.HEPATIC_ARTERY, *g.HEPATIC_VEINS, g.ivc_tube(), g.aorta_tube()]


# ---------------------------------------------------------------------------------------------
# anatomy
# ---------------------------------------------------------------------------------------------
def _paint_anatomy(cv: _Canvas, segmented: bool) -> None:
    L = g.LABELS
    big = (g.FOV_LO_MM - 10, g.FOV_HI_MM + 10)
    cv.paint(*big, lambda X, Y, Z: g.body_rho(X, Y) <= 1.0, L["body"])

    organs_below_diaphragm = [(g.LIVER_RIGHT, "liver"), (g.LIVER_LEFT, "liver"), (g.STOMACH, "x"), (g.SPLEEN, "x")]

    def under_diaphragm(X, Y, Z, grow):
        m = np.zeros(np.broadcast_shapes(X.shape, Y.shape, Z.shape), bool)
        for (c, s), _ in organs_below_diaphragm:
            m |= g.ellipsoid_q(X, Y, Z, c, s, grow) <= 1.0
        return m

    for lung, name in ((g.LUNG_RIGHT, "lung_right"), (g.LUNG_LEFT, "lung_left")):
        def lung_fn(X, Y, Z, lung=lung):
            m = g.ellipsoid_q(X, Y, Z, *lung) <= 1.0
            m &= (g.body_rho(X, Y) < g.RIBCAGE_RHO) & (Z > g.LUNG_MIN_Z_MM)
            m &= ~under_diaphragm(X, Y, Z, g.DIAPHRAGM_THICKNESS_MM)
            m &= g.ellipsoid_q(X, Y, Z, *g.HEART, 3.0) > 1.0
            return m
        cv.paint(*_ellipsoid_box(*lung), lung_fn, L[name])

    def diaphragm_fn(X, Y, Z):
        # the layer over the abdominal organs where they face the thorax (lungs, heart)
        grown = under_diaphragm(X, Y, Z, g.DIAPHRAGM_THICKNESS_MM)
        inside = under_diaphragm(X, Y, Z, 0.0)
        thorax = ((g.ellipsoid_q(X, Y, Z, *g.LUNG_RIGHT, 10.0) <= 1.0) | (g.ellipsoid_q(X, Y, Z, *g.LUNG_LEFT, 10.0) <= 1.0)
                  | (g.ellipsoid_q(X, Y, Z, *g.HEART, 10.0) <= 1.0))
        return grown & ~inside & thorax & (g.body_rho(X, Y) < g.RIBCAGE_RHO + 0.03)

    lo = np.minimum(*(_ellipsoid_box(*o, g.DIAPHRAGM_THICKNESS_MM)[0] for o, _ in organs_below_diaphragm[:2]))
    hi = np.maximum(*(_ellipsoid_box(*o, g.DIAPHRAGM_THICKNESS_MM)[1] for o, _ in organs_below_diaphragm[:2]))
    for o, _ in organs_below_diaphragm[2:]:
        lo = np.minimum(lo, _ellipsoid_box(*o, g.DIAPHRAGM_THICKNESS_MM)[0])
        hi = np.maximum(hi, _ellipsoid_box(*o, g.DIAPHRAGM_THICKNESS_MM)[1])
    cv.paint(lo, hi, diaphragm_fn, L["diaphragm"])

    # liver: label = segment (or one 'liver' label when segments are not wanted)
    seg_values = np.array([g.SEGMENT_LABELS[s] for s in g.SEGMENTS], np.int16)
    llo = np.minimum(_ellipsoid_box(*g.LIVER_RIGHT)[0], _ellipsoid_box(*g.LIVER_LEFT)[0])
    lhi = np.maximum(_ellipsoid_box(*g.LIVER_RIGHT)[1], _ellipsoid_box(*g.LIVER_LEFT)[1])
    box = cv.box(llo, lhi)
    assert box is not None
    sl, X, Y, Z = box
    inside = g.liver_inside(X, Y, Z)
    sub = cv.labels[sl]
    if segmented:
        idx = g.couinaud_index(X, Y, Z)
        sub[inside] = seg_values[idx[inside]]
    else:
        sub[inside] = L["liver"]

    for organ, name in ((g.SPLEEN, "spleen"), (g.KIDNEY_RIGHT, "kidney_right"), (g.KIDNEY_LEFT, "kidney_left"),
                        (g.STOMACH, "stomach"), (g.HEART, "heart")):
        cv.paint(*_ellipsoid_box(*organ), _ellipsoid_fn(*organ), L[name])
    cv.paint_tube(g.DUODENUM, L["duodenum"])
    cv.paint_tube(g.COLON, L["colon"])
    cv.paint_tube(g.SMALL_BOWEL, L["small_bowel"])
    cv.paint(*_ellipsoid_box(*g.GALLBLADDER), _ellipsoid_fn(*g.GALLBLADDER), L["gallbladder"])
    for tube in all_tubes():
        cv.paint_tube(tube, L[tube.name])

    sx, sy = g.SPINE_CENTRE_XY
    cx, cy = g.CANAL_CENTRE_XY
    cv.paint(*big, lambda X, Y, Z: np.broadcast_to(np.hypot(X - sx, Y - sy) <= g.SPINE_RADIUS_MM,
                                                    np.broadcast_shapes(X.shape, Y.shape, Z.shape)), L["spine"])

    def arch(X, Y, Z):
        r = np.hypot(X - cx, Y - cy)
        return np.broadcast_to((r >= g.CANAL_RADIUS_MM) & (r <= g.ARCH_RADIUS_MM) & (Y >= cy - 8),
                               np.broadcast_shapes(X.shape, Y.shape, Z.shape))
    cv.paint(*big, arch, L["spine"])
    cv.paint(*big, lambda X, Y, Z: np.broadcast_to(np.hypot(X - cx, Y - cy) <= g.CORD_RADIUS_MM,
                                                    np.broadcast_shapes(X.shape, Y.shape, Z.shape)), L["spinal_cord"])

    def ribs(X, Y, Z):
        rho = g.body_rho(X, Y)
        ring = (rho >= g.RIB_RHO[0]) & (rho <= g.RIB_RHO[1]) & ~((Y < 0) & (np.abs(X) < 25))
        m = np.zeros(np.broadcast_shapes(X.shape, Y.shape, Z.shape), bool)
        for z0 in g.RIB_LEVELS_Z_MM:
            m |= np.abs(Z - (z0 + g.RIB_SLOPE * Y)) <= g.RIB_HALF_WIDTH_MM
        return ring & m
    cv.paint(*big, ribs, L["ribs"])


def _apply_omit(cv: _Canvas, omit: list[str], segmented: bool) -> None:
    """Unlabel omitted structures: intrahepatic ones become liver, others body (image keeps them)."""
    for name in omit:
        value = g.LABELS[name]
        idx = np.nonzero(cv.labels == value)
        if not idx[0].size:
            continue
        X = cv.axes[0][idx[2]]
        Y = cv.axes[1][idx[1]]
        Z = cv.axes[2][idx[0]]
        inside = g.liver_inside(X, Y, Z)
        if segmented:
            seg_values = np.array([g.SEGMENT_LABELS[s] for s in g.SEGMENTS], np.int16)
            liver_val = seg_values[g.couinaud_index(X, Y, Z)]
        else:
            liver_val = np.full(X.shape, g.LABELS["liver"], np.int16)
        cv.labels[idx] = np.where(inside, liver_val, g.LABELS["body"])


# ---------------------------------------------------------------------------------------------
# lesions
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Shape:
    """Lesion shape relative to its centre: a union of balls, or an axis-aligned ellipsoid."""

    balls: tuple[tuple[tuple[float, float, float], float], ...] = ()
    semi_mm: tuple[float, float, float] | None = None

    @property
    def extent_mm(self) -> float:
        if self.semi_mm is not None:
            return max(self.semi_mm)
        return max(float(np.linalg.norm(c)) + r for c, r in self.balls)

    def support_mm(self, u: np.ndarray) -> np.ndarray:
        """Support function h(u) = max_{p in shape} p·u for unit vectors u (..., 3)."""
        if self.semi_mm is not None:
            return np.sqrt(((u * np.asarray(self.semi_mm)) ** 2).sum(-1))
        return np.max(np.stack([u @ np.asarray(c) + r for c, r in self.balls], -1), -1)

    def inside(self, dX, dY, dZ) -> np.ndarray:
        if self.semi_mm is not None:
            a, b, c = self.semi_mm
            return (dX / a) ** 2 + (dY / b) ** 2 + (dZ / c) ** 2 <= 1.0
        m = None
        for (cx, cy, cz), r in self.balls:
            mm = (dX - cx) ** 2 + (dY - cy) ** 2 + (dZ - cz) ** 2 <= r * r
            m = mm if m is None else (m | mm)
        return m if m is not None else np.zeros(np.broadcast(dX, dY, dZ).shape, bool)  # no balls: empty


def _lesion_shape(les: LesionSpec, seed: int, n: int) -> _Shape:
    r = les.diameter_mm / 2.0
    if les.shape == "sphere":
        return _Shape(balls=(((0.0, 0.0, 0.0), r),))
    if les.shape == "ellipsoid":
        assert les.axes_mm is not None
        return _Shape(semi_mm=tuple(a / 2.0 for a in les.axes_mm))  # type: ignore[arg-type]
    # lobulated: core ball 0.72 r + 5 lobes of 0.42 r whose outer edge reaches r (max diameter = D)
    rng = np.random.default_rng([seed, n, 1729])
    dirs = rng.normal(size=(5, 3))
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    # two lobes opposite each other so the largest extent is the full diameter
    dirs[1] = -dirs[0]
    lobe_r = 0.42 * r
    balls = [((0.0, 0.0, 0.0), 0.72 * r)] + [(tuple((d * (r - lobe_r)).tolist()), lobe_r) for d in dirs]
    return _Shape(balls=tuple(balls))  # type: ignore[arg-type]


def _edt(mask_not: np.ndarray, sampling: np.ndarray, indices: bool = False):
    """Distance (mm) from each voxel to the nearest voxel where ``mask_not`` is False."""
    if not (~mask_not).any():
        big = np.full(mask_not.shape, np.inf)
        return (big, None) if indices else big
    if indices:
        d, ind = ndimage.distance_transform_edt(mask_not, sampling=sampling, return_indices=True)
        return d, ind
    return ndimage.distance_transform_edt(mask_not, sampling=sampling)


def _place_lesion(cv: _Canvas, les: LesionSpec, shape: _Shape, lesion_values: list[int],
                  segmented: bool) -> np.ndarray:
    """Return the centre (LPS mm) of the lesion, or raise PhantomSpecError."""
    h = cv.spacing[::-1]  # k, j, i spacing
    in_liver = les.organ == "liver"
    if in_liver:
        seg_value = g.SEGMENT_LABELS[les.segment] if segmented else g.LABELS["liver"]  # type: ignore[index]
        allowed_values = list(g.LIVER_LABELS)
        where = f"segment {les.segment}"
    else:
        seg_value = g.LABELS[les.organ]
        allowed_values = [seg_value]
        where = f"the {les.organ}"
    extent = shape.extent_mm
    if les.center_mm is not None:
        return np.asarray(les.center_mm, float)

    seg_idx = np.nonzero(cv.labels == seg_value)
    if not seg_idx[0].size:
        raise PhantomSpecError(f"{les.id}: {where} has no free voxels left in this phantom (or is outside the field of view).")
    gap = les.gap_mm or 0.0
    pad_mm = extent + gap + 3 * float(h.max()) + 2.0
    pad = np.ceil(pad_mm / h).astype(int)
    lo = np.maximum(np.array([i.min() for i in seg_idx]) - pad, 0)
    hi = np.minimum(np.array([i.max() for i in seg_idx]) + pad + 1, cv.shape)
    sl = tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))
    lab = cv.labels[sl]
    eng = cv.engulfable[sl]
    free = np.isin(lab, allowed_values)
    if in_liver:
        free |= eng & ~np.isin(lab, lesion_values)
    in_seg = lab == seg_value
    if les.abut is not None:
        structure = lab == g.LABELS[les.abut]
        target = structure
        if les.abut_min_calibre_mm is not None:
            target = structure & (cv.radius[sl].astype(float) * 2.0 >= les.abut_min_calibre_mm - 1e-6)
        if not target.any():
            what = les.abut if les.abut_min_calibre_mm is None else f"{les.abut} of calibre ≥ {les.abut_min_calibre_mm:g} mm"
            raise PhantomSpecError(
                f"{les.id}: structure {what!r} is not next to segment {les.segment}: it lies more than "
                f"{pad_mm:.0f} mm from every voxel of the segment. Choose a segment that touches {les.abut}."
            )
        free_fit = (free & ~structure) | target
    else:
        free_fit = free
    d_forb = _edt(free_fit, h)
    d_seg = _edt(in_seg, h)  # depth inside the segment (mm)
    # lesions must also keep clear of previously placed lesions
    # the abut placement later shifts the centre by up to half a voxel: keep that much clearance
    fit = in_seg & (d_forb > extent + (0.5 * float(h.max()) if les.abut is not None else 0.0))
    if les.border_with is not None:
        other = lab == (g.SEGMENT_LABELS[les.border_with] if segmented else -1)
        if not other.any():
            raise PhantomSpecError(f"{les.id}: segment {les.segment} does not border segment {les.border_with}.")
        fit &= _edt(~other, h) <= 1.01 * float(h.max())
    if les.abut is not None:
        d_t, ind = _edt(~target, h, indices=True)
        kji = np.indices(lab.shape)
        vec = (ind - kji) * h[:, None, None, None]  # k, j, i components (mm) to nearest target voxel
        norm = np.maximum(np.linalg.norm(vec, axis=0), 1e-9)
        u_kji = vec / norm
        u_xyz = np.moveaxis(u_kji[::-1], 0, -1)
        half = 0.5 * (np.abs(u_kji) * h[:, None, None, None]).sum(0)
        gap_here = d_t - half - shape.support_mm(u_xyz)
        err = gap_here - gap
        ok = fit & (np.abs(err) <= 0.5 * float(h.max()))
        if not ok.any():
            reachable = in_seg & (d_forb > extent)
            closest_gap = float(np.min(gap_here[reachable])) if reachable.any() else float("nan")
            raise PhantomSpecError(
                f"{les.id}: cannot place a {les.diameter_mm:g} mm lesion in segment {les.segment} at "
                f"{gap:g} mm from {les.abut}: {les.abut} is not next to segment {les.segment} for a lesion this "
                f"size (closest achievable gap while staying inside the liver: {closest_gap:.1f} mm). Choose another "
                "segment, gap or diameter."
            )
        if les.abut_min_calibre_mm is not None:  # thinner parts of the same structure keep at least the gap
            rest = structure & ~target
            if rest.any():
                ok &= _edt(~rest, h) > extent + gap + 0.5 * float(h.max())
                if not ok.any():
                    raise PhantomSpecError(
                        f"{les.id}: every place {gap:g} mm from {les.abut} ≥ {les.abut_min_calibre_mm:g} mm in segment "
                        f"{les.segment} lies closer to a thinner branch; choose another segment or gap."
                    )
        score = np.where(ok, np.minimum(d_seg, extent) + 0.1 * d_forb - np.abs(err), -np.inf)
    else:
        ok = fit
        if not ok.any():
            raise PhantomSpecError(
                f"{les.id}: a {les.diameter_mm:g} mm lesion does not fit inside {where} "
                "(it would leave the organ or overlap a large vessel, another organ or lesion). "
                "Choose a smaller diameter or another place."
            )
        if les.placement == "peripheral":
            envelope = np.isin(lab, [*g.LIVER_LABELS, *(g.LABELS[t] for t in g.INTRAHEPATIC_TUBES), *lesion_values])
            d_cap = _edt(envelope, h)
            vessels = np.isin(lab, [g.LABELS[t] for t in (*g.INTRAHEPATIC_TUBES, "inferior_vena_cava", "aorta")])
            d_ves = _edt(~vessels, h)
            near_cap = ok & (d_cap <= extent + 10.0)
            if near_cap.any():
                ok = near_cap
            score = np.where(ok, np.minimum(d_ves, 30.0) + np.minimum(d_seg, extent) - 0.1 * d_cap, -np.inf)
        else:
            score = np.where(ok, d_seg + 0.01 * d_forb, -np.inf)
    best_kji = np.unravel_index(int(np.argmax(score)), score.shape)
    centre_kji = np.asarray(best_kji) + lo
    centre = cv.origin + centre_kji[::-1] * cv.spacing
    if les.abut is not None:
        u = u_xyz[best_kji]
        centre = centre + float(err[best_kji]) * u
    return centre


def _paint_lesion(cv: _Canvas, les: LesionSpec, shape: _Shape, centre: np.ndarray, value: int,
                  lesion_values: list[int], segmented: bool) -> int:
    ext = shape.extent_mm
    box = cv.box(centre - ext - 1e-6, centre + ext + 1e-6)
    if box is None:
        raise PhantomSpecError(f"{les.id}: centre {np.round(centre, 1).tolist()} mm lies outside the phantom.")
    sl, X, Y, Z = box
    m = np.broadcast_to(shape.inside(X - centre[0], Y - centre[1], Z - centre[2]), cv.labels[sl].shape)
    sub = cv.labels[sl]
    eng = cv.engulfable[sl]
    if not m.any():
        raise PhantomSpecError(f"{les.id}: diameter {les.diameter_mm:g} mm covers no voxel at this voxel size.")
    under = sub[m]
    if les.organ == "liver":
        bad = ~(np.isin(under, g.LIVER_LABELS) | (eng[m] & ~np.isin(under, lesion_values)))
    else:
        bad = under != g.LABELS[les.organ]
    if bad.any():
        names = {v: n for n, v in g.LABELS.items()}
        hit = sorted({names.get(int(v), "another lesion" if v >= g.LESION_LABEL_BASE else "outside the body")
                      for v in under[bad]})
        hit = [f"outside the {les.organ}" if n == "body" else n for n in hit]
        raise PhantomSpecError(
            f"{les.id}: the lesion at {np.round(centre, 1).tolist()} mm (diameter {les.diameter_mm:g} mm) would "
            f"leave the {'liver parenchyma' if les.organ == 'liver' else les.organ}: {int(bad.sum())} voxels fall on "
            f"{', '.join(hit)}. Move it "
            "(center_mm), make it smaller, or let the placement choose (omit center_mm)."
        )
    # the centre must lie in the spec's segment
    cx = g.couinaud_index(np.array(centre[0]), np.array(centre[1]), np.array(centre[2]))
    if les.organ == "liver" and segmented and g.SEGMENTS[int(cx)] != les.segment:
        raise PhantomSpecError(
            f"{les.id}: its centre {np.round(centre, 1).tolist()} mm lies in segment {g.SEGMENTS[int(cx)]}, "
            f"not in segment {les.segment} as the spec says. Fix center_mm or segment."
        )
    sub[m] = value
    eng[m] = False
    return int(m.sum())


# ---------------------------------------------------------------------------------------------
# public
# ---------------------------------------------------------------------------------------------
@dataclass
class PhantomBuild:
    """A built phantom with the ground truth tests need."""

    case: Case
    spec: PhantomSpec
    lesion_centres_mm: dict[str, np.ndarray]
    tubes: list[g.Tube]


def build_phantom_detailed(spec: PhantomSpec | dict[str, Any] | str | Path) -> PhantomBuild:
    """Build the phantom and also return the truth (lesion centres, vessel tubes)."""
    sp = parse_spec(spec)
    for name in sp.omit:
        if name not in g.LABELS or name == "liver" or name.startswith("liver_segment_"):
            raise PhantomSpecError(
                f"omit: {name!r} is not a structure of the phantom that can be left out; "
                f"choose from {', '.join(ABUTTABLE)} (use liver_segments: false for the segments)."
            )
    for les in sp.lesions:
        if les.abut is not None:
            if les.abut not in ABUTTABLE:
                raise PhantomSpecError(
                    f"{les.id}: abut: {les.abut!r} is not a structure of the phantom; "
                    f"known structures: {', '.join(ABUTTABLE)}."
                )
            if les.abut in sp.omit:
                raise PhantomSpecError(f"{les.id}: abut: {les.abut!r} is listed in omit; it cannot be abutted.")
        if les.border_with is not None and not sp.liver_segments:
            raise PhantomSpecError(f"{les.id}: border_with needs liver_segments: true.")
    cv = _Canvas(sp.voxel_mm, sp.field_of_view_mm)
    _paint_anatomy(cv, sp.liver_segments)
    centres: dict[str, np.ndarray] = {}
    lesion_values: list[int] = []
    lesion_labels: dict[int, str] = {}
    for n, les in enumerate(sp.lesions, start=1):
        shape = _lesion_shape(les, sp.seed, n)
        centre = _place_lesion(cv, les, shape, lesion_values, sp.liver_segments)
        value = g.LESION_LABEL_BASE + n
        _paint_lesion(cv, les, shape, centre, value, lesion_values, sp.liver_segments)
        lesion_values.append(value)
        lesion_labels[value] = les.id
        centres[les.id] = centre
    image = _render(cv, lesion_values, sp.seed)  # before omitting: unsegmented structures stay visible
    _apply_omit(cv, sp.omit, sp.liver_segments)

    # label table: every painted structure except omitted ones
    present = set(np.unique(cv.labels).tolist())
    mapping: dict[int, str] = {}
    for name, value in g.LABELS.items():
        if value in present and name not in sp.omit:
            mapping[value] = name
    mapping.update(lesion_labels)
    table = LabelTable.from_mapping(mapping)

    aff = cv.affine
    case = Case(patient=sp.patient, image=Volume(image, aff), labels=Volume(cv.labels, aff), label_table=table)
    return PhantomBuild(case=case, spec=sp, lesion_centres_mm=centres, tubes=all_tubes())


def build_phantom(spec: PhantomSpec | dict[str, Any] | str | Path) -> Case:
    """Build a phantom `Case` from a spec (model, mapping or YAML path). Deterministic given the spec."""
    return build_phantom_detailed(spec).case


def _render(cv: _Canvas, lesion_values: list[int], seed: int) -> np.ndarray:
    """CT-like image (HU, int16): one intensity per label + muscle wall + Gaussian noise (seeded)."""
    lut = np.full(int(max(cv.labels.max(), g.LESION_LABEL_BASE) + 64), g.INTENSITY_HU["body"], np.float32)
    lut[0] = g.INTENSITY_HU["air"]
    for name, value in g.LABELS.items():
        key = "liver" if name.startswith("liver") else name
        lut[value] = g.INTENSITY_HU[key]
    for v in lesion_values:
        lut[v] = g.INTENSITY_HU["lesion"]
    img = lut[cv.labels]
    # muscle wall: outer ring of the body
    rho = g.body_rho(cv.axes[0][None, :], cv.axes[1][:, None])
    wall = (rho > g.MUSCLE_RHO) & (rho <= 1.0)
    img[:, wall] = np.where(cv.labels[:, wall] == g.LABELS["body"], g.INTENSITY_HU["muscle"], img[:, wall])
    rng = np.random.default_rng(seed)
    noise = rng.standard_normal(img.shape, dtype=np.float32) * g.NOISE_SIGMA_HU
    img += noise
    return np.clip(np.round(img), -1024, 3071).astype(np.int16)
