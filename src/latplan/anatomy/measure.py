"""Per-lesion and patient-level measurements of a `Case` (issue [A] "Measurements").

All lengths are mm and do not depend on how the voxels are stored: every computation runs
in the *array frame scaled by the voxel spacing* (k, j, i) · (h_k, h_j, h_i), which is an
isometry of LPS space for any orthonormal direction matrix (flips, permutations, obliques).

Conventions (decisions, docs/measurements.md):

- **Surface-to-surface distance** between two voxel sets = the smallest gap between their
  voxels seen as solid boxes: for a pair of voxel centres with per-axis separation Δ,
  gap = ‖max(0, |Δ| − h)‖. Touching voxels give 0. For smooth surfaces this estimate is
  unbiased within ± one voxel.
- **Liver** = union of ``liver`` and every ``liver_segment_*`` structure (a voxel has one
  label, so a segmented liver has no ``liver`` label) plus lesions whose organ is the liver.
  Intrahepatic vessels are not counted in the liver volume.
- **Capsule** = outer surface of the liver envelope (liver ∪ liver lesions ∪ portal vein,
  hepatic veins, hepatic artery, bile duct, IVC): vessels inside the liver are not capsule.
- **Calibre** of a vessel near a lesion = 2 × (largest inscribed radius), read on the
  vessel's Euclidean distance transform by climbing from the vessel voxel nearest to the
  lesion to the local centre line (max over a ± 2-voxel neighbourhood), plus the mean
  lattice bias of a voxel-centre EDT (:data:`LATTICE_RADIUS_BIAS_VOXELS`).
- A structure that is not segmented gives ``null`` and is listed in ``not_segmented``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from typing import Any

import numpy as np
import yaml
from scipy import ndimage
from scipy.spatial import ConvexHull, QhullError, cKDTree

from latplan.case import Case, Patient, PrimaryTumour, StructureRole
from latplan.case.vocabulary import HOLLOW_ORGAN_ROLES, VESSEL_ROLES
from latplan.errors import EmptyStructureError, InvalidInputError
from latplan.imaging.volume import Volume

# the public names: latplan.anatomy.__all__ (the package re-exports them; one list)

MEASURE_SCHEMA_VERSION = "1.0"
#: mean underestimate (voxels) of a digitised tube's inscribed radius by the voxel-centre EDT
LATTICE_RADIUS_BIAS_VOXELS = 0.17
SEGMENT_CODES = ("1", "2", "3", "4a", "4b", "5", "6", "7", "8")
SEGMENT_NAMES = tuple(f"liver_segment_{s}" for s in SEGMENT_CODES)
#: roles whose voxels are "liver" when deciding the organ a lesion lies in
_LIVER_ROLES = {StructureRole.LIVER, StructureRole.LIVER_SEGMENT, StructureRole.PORTAL_VEIN,
                StructureRole.HEPATIC_VEIN, StructureRole.HEPATIC_ARTERY, StructureRole.BILE_DUCT}
#: roles inside the liver envelope (capsule = its outer surface)
_ENVELOPE_ROLES = _LIVER_ROLES | {StructureRole.INFERIOR_VENA_CAVA}
#: organ name reported for a lesion surrounded by a structure of this role
_ORGAN_OF_ROLE = {
    StructureRole.LUNG: "lung", StructureRole.KIDNEY: "kidney", StructureRole.ADRENAL: "adrenal",
    StructureRole.BONE: "bone", StructureRole.SPLEEN: "spleen", StructureRole.PANCREAS: "pancreas",
    StructureRole.STOMACH: "stomach", StructureRole.DUODENUM: "duodenum", StructureRole.SMALL_BOWEL: "small_bowel",
    StructureRole.COLON: "colon", StructureRole.HEART: "heart", StructureRole.BODY: "soft_tissue",
    StructureRole.DIAPHRAGM: "diaphragm", StructureRole.GALLBLADDER: "gallbladder",
    StructureRole.ESOPHAGUS: "esophagus", StructureRole.SPINAL_CORD: "spinal_cord",
}
#: names in metastatic_sites / extrahepatic_sites → organ names used here
_ORGAN_SYNONYMS = {
    "hepatic": "liver", "lungs": "lung", "pulmonary": "lung", "lung_left": "lung", "lung_right": "lung",
    "adrenal_gland": "adrenal", "adrenals": "adrenal", "adrenal_gland_left": "adrenal",
    "adrenal_gland_right": "adrenal", "bones": "bone", "osseous": "bone", "brain": "brain",
    "lymph_nodes": "lymph_node", "nodes": "lymph_node", "node": "lymph_node", "nodal": "lymph_node",
    "peritoneal": "peritoneum", "kidney_left": "kidney", "kidney_right": "kidney", "kidneys": "kidney",
}


# ---------------------------------------------------------------------------------------------
# data files
# ---------------------------------------------------------------------------------------------
def _data(name: str) -> Any:
    return yaml.safe_load((resources.files("latplan.anatomy") / name).read_text(encoding="utf-8"))


@lru_cache(maxsize=1)
def _parameters_file() -> dict[str, Any]:
    out: dict[str, Any] = _data("measurement_parameters.yaml")
    return out


def measurement_parameters() -> dict[str, Any]:
    """Default parameters {name: value} (thresholds in mm etc.), from measurement_parameters.yaml."""
    raw = _parameters_file()
    return {k: (v["value"] if isinstance(v, dict) and "value" in v else v) for k, v in raw.items()}


@lru_cache(maxsize=1)
def load_oligometastatic_definitions() -> dict[str, Any]:
    """The named oligometastatic definitions (with sources) and the default name."""
    out: dict[str, Any] = _data("oligometastatic_definitions.yaml")
    return out


def _definition(oligo_definition: str | Mapping[str, Any] | None) -> tuple[str, dict[str, Any]]:
    data = load_oligometastatic_definitions()
    if oligo_definition is None:
        oligo_definition = data["default"]
    if isinstance(oligo_definition, Mapping):
        d = dict(oligo_definition)
        missing = [k for k in ("name", "max_organs", "max_lesions", "requires_primary_controlled", "source")
                   if k not in d]
        if missing:
            raise InvalidInputError(
                f"a custom oligometastatic definition needs {', '.join(missing)}; "
                "give name, max_organs, max_lesions, requires_primary_controlled and source."
            )
        return str(d.get("id", d["name"])), d
    key = str(oligo_definition)
    if key not in data["definitions"]:
        raise InvalidInputError(
            f"unknown oligometastatic definition {key!r}; known: {', '.join(data['definitions'])} "
            "(or pass a mapping with name, max_organs, max_lesions, requires_primary_controlled, source)."
        )
    return key, dict(data["definitions"][key])


# ---------------------------------------------------------------------------------------------
# structure helpers others use
# ---------------------------------------------------------------------------------------------
def _liver_names(case: Case) -> list[str]:
    return [n for n in case.structure_names()
            if case.role(n) in (StructureRole.LIVER, StructureRole.LIVER_SEGMENT)]


def liver_mask(case: Case, include_lesions: bool = True) -> Volume:
    """Boolean liver mask: ``liver`` ∪ all ``liver_segment_*`` (∪ lesions inside the liver).

    Use this rather than ``case.mask("liver")``: a segmented liver (phantom, Couinaud
    label maps) has no voxel labelled ``liver``. Raises EmptyStructureError without a liver.
    """
    names = _liver_names(case)
    if not names:
        raise EmptyStructureError(
            "this case has no liver segmentation (no 'liver' or 'liver_segment_*' label); "
            "add a liver label to the label map."
        )
    m = np.zeros(case.labels.shape, bool)
    for n in names:
        m |= case.mask_array(n)
    if include_lesions:
        for lid in case.lesion_ids:
            lm = case.mask_array(lid)
            shell = ndimage.binary_dilation(lm, iterations=1) & ~lm
            if shell.any() and (m[shell].mean() >= 0.5):
                m |= lm
    return case.labels.with_array(m)


def structure_mask(case: Case, name: str) -> Volume:
    """Mask of a structure name, also for derived names: ``liver`` (see :func:`liver_mask`) and
    ``hepatic_veins`` (union of the three hepatic veins when only those are labelled)."""
    if name == "liver":
        return liver_mask(case)
    if name == "hepatic_veins" and "hepatic_veins" not in case.label_table:
        hv = [n for n in case.names_with_role(StructureRole.HEPATIC_VEIN)]
        if not hv:
            raise EmptyStructureError("no hepatic vein is segmented in this case.")
        m = np.zeros(case.labels.shape, bool)
        for n in hv:
            m |= case.mask_array(n)
        return case.labels.with_array(m)
    return case.mask(name)


# ---------------------------------------------------------------------------------------------
# geometry context (computed once per case)
# ---------------------------------------------------------------------------------------------
@dataclass
class _Ctx:
    case: Case
    labels: np.ndarray
    h: np.ndarray                       # spacing (k, j, i), mm
    names: list[str]
    roles: dict[str, StructureRole]
    values: dict[str, list[int]]
    counts: np.ndarray                  # voxel count per label value
    bpts: dict[int, np.ndarray] = field(default_factory=dict)   # label value → boundary voxel indices (n, 3)
    trees: dict[str, cKDTree | None] = field(default_factory=dict)
    capsule_tree: cKDTree | None = None
    edge_values: frozenset[int] = frozenset()   # [L] label values on the array's faces (truncated)
    face_values: tuple[frozenset[int], ...] = ()  # [L] per face (k0, k1, j0, j1, i0, i1)

    def tree(self, key: str, values: list[int]) -> cKDTree | None:
        if key not in self.trees:
            pts = [self.bpts[v] for v in values if v in self.bpts]
            self.trees[key] = cKDTree(np.concatenate(pts) * self.h) if pts else None
        return self.trees[key]


def _boundary_points(labels: np.ndarray) -> dict[int, np.ndarray]:
    """Voxels (k, j, i) that have a 6-neighbour with another label (or lie on the array edge), by label."""
    b = np.zeros(labels.shape, bool)
    for ax in range(3):
        n = labels.shape[ax]
        lo = [slice(None)] * 3
        hi = [slice(None)] * 3
        lo[ax], hi[ax] = slice(0, n - 1), slice(1, n)
        diff = labels[tuple(lo)] != labels[tuple(hi)]
        b[tuple(lo)] |= diff
        b[tuple(hi)] |= diff
        edge: list[slice | int] = [slice(None)] * 3
        edge[ax] = 0
        b[tuple(edge)] = True
        edge[ax] = n - 1
        b[tuple(edge)] = True
    idx = np.nonzero(b & (labels != 0))
    lab = labels[idx]
    order = np.argsort(lab, kind="stable")
    pts = np.stack(idx, axis=1)[order]
    lab = lab[order]
    uniq, start = np.unique(lab, return_index=True)
    stops = [*start[1:].tolist(), len(lab)]
    return {int(v): pts[a:z] for v, a, z in zip(uniq, start.tolist(), stops, strict=True)}


def _context(case: Case) -> _Ctx:
    lab = case.labels.array
    if lab.dtype.kind not in "iu" or lab.min() < 0:
        lab = lab.astype(np.int64)
    counts = np.bincount(lab.ravel().astype(np.intp, copy=False) if lab.dtype.itemsize < 8 else lab.ravel())
    table = case.label_table
    names = [n for n in table.names() if any(v < len(counts) and counts[v] > 0 for v in table.values_for(n))]
    roles = {n: table.role(n) for n in names}
    values = {n: table.values_for(n) for n in names}
    ctx = _Ctx(case=case, labels=lab, h=case.labels.spacing_kji_mm, names=names, roles=roles, values=values,
               counts=counts)
    ctx.bpts = _boundary_points(lab)
    ctx.face_values = _face_values(lab)
    ctx.edge_values = frozenset().union(*ctx.face_values)
    return ctx


def _face_values(labels: np.ndarray) -> tuple[frozenset[int], ...]:
    """[L] label values on each face of the array (k0, k1, j0, j1, i0, i1): structures the field of view may cut."""
    faces = [labels[0], labels[-1], labels[:, 0], labels[:, -1], labels[:, :, 0], labels[:, :, -1]]
    return tuple(frozenset(int(v) for v in np.unique(f) if v != 0) for f in faces)


#: LPS axis → (words for +, words for −)
_LPS_WORDS = (("left", "right"), ("posterior", "anterior"), ("superior", "inferior"))


def _faces_touched(ctx: _Ctx, lesion_values: list[int]) -> list[str]:
    """[L] the image faces a lesion touches, in patient words from the grid's direction: ``"superior (k = 29)"``."""
    shape = ctx.labels.shape
    grid = ctx.case.labels
    origin = grid.index_to_mm(np.zeros(3))
    out = []
    for face, values in enumerate(ctx.face_values):
        if not any(v in values for v in lesion_values):
            continue
        ax, high = face // 2, face % 2 == 1
        step = np.zeros(3)
        step[ax] = 1.0
        direction = (grid.index_to_mm(step) - origin) * (1.0 if high else -1.0)
        lps = int(np.argmax(np.abs(direction)))
        words = _LPS_WORDS[lps][0 if direction[lps] > 0 else 1]
        out.append(f"{words} ({'kji'[ax]} = {shape[ax] - 1 if high else 0})")
    return out


def _size_bounds(volume_ml: float, feret_mm: float | None, truncated: bool) -> dict[str, Any]:
    """[L] a lesion cut by the field of view: its measured size is a lower bound (new keys; the numbers stay)."""
    return {"size_is_lower_bound": truncated,
            "volume_lower_bound_ml": _round(volume_ml, 3) if truncated else None,
            "max_diameter_lower_bound_mm": _round(feret_mm) if truncated and feret_mm is not None else None}


def _distances_limited_by_fov(ctx: _Ctx, surf_kji: np.ndarray, distances: dict[str, float | None]) -> list[str]:
    """[L] structures whose gap may be smaller beyond the image: the structure reaches a face of the image
    and the lesion's gap to that face (to its voxel layer, as the capsule's edge) is below the measured gap."""
    shape = np.asarray(ctx.labels.shape)
    out = []
    for face, values in enumerate(ctx.face_values):
        ax = face // 2
        to_face = surf_kji[:, ax] if face % 2 == 0 else shape[ax] - 1 - surf_kji[:, ax]
        gap = float(np.maximum(to_face - 1, 0).min()) * float(ctx.h[ax])
        out += [n for n, d in distances.items()
                if d is not None and n in ctx.values and set(ctx.values[n]) & values and gap < d]
    return sorted(set(out))


def _box_gap(p: np.ndarray, q: np.ndarray, h: np.ndarray) -> np.ndarray:
    """Gap (mm) between voxel boxes centred at p and q (mm, array frame), spacing h."""
    gap: np.ndarray = np.linalg.norm(np.maximum(np.abs(p - q) - h, 0.0), axis=-1)
    return gap


def _gap_to(ctx: _Ctx, lesion: _LesionSurface, key: str, values: list[int]) -> tuple[float, np.ndarray, np.ndarray] | None:
    """(gap mm, lesion point, structure point) of the closest pair, or None when absent."""
    tree = ctx.tree(key, values)
    if tree is None:
        return None
    return _closest_pair(tree, lesion, ctx.h)


@dataclass
class _LesionSurface:
    """Surface voxel centres of one lesion (mm, array frame) with a KD-tree and a subsample."""

    pts: np.ndarray
    tree: cKDTree = field(init=False)
    sub: np.ndarray = field(init=False)
    lo: np.ndarray = field(init=False)
    hi: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.tree = cKDTree(self.pts)
        self.sub = self.pts[:: max(1, len(self.pts) // 64)]
        self.lo, self.hi = self.pts.min(0), self.pts.max(0)


def _closest_pair(tree: cKDTree, lesion: _LesionSurface, h: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """Smallest voxel-box gap between a lesion surface and a tree of structure voxel centres.

    A coarse pass (64 lesion points) gives an upper bound ``ub``; then only the structure points
    inside the lesion's bounding box grown by ``ub`` are matched against the lesion's own KD-tree
    (gap ≥ centre distance − ‖h‖, so no closer pair is missed).
    """
    _, j = tree.query(lesion.sub)
    ub = float(_box_gap(lesion.sub, tree.data[j], h).min()) + float(np.linalg.norm(h)) * 1.01 + 1e-6
    data = tree.data
    inb = np.all((data >= lesion.lo - ub) & (data <= lesion.hi + ub), axis=1)
    q = data[inb]
    d, j = lesion.tree.query(q, distance_upper_bound=ub)
    ok = np.isfinite(d)
    q, p = q[ok], lesion.pts[j[ok]]
    gaps = _box_gap(p, q, h)
    i = int(np.argmin(gaps))
    return float(gaps[i]), p[i], q[i]


# ---------------------------------------------------------------------------------------------
# size and shape
# ---------------------------------------------------------------------------------------------
def _max_pairwise(points: np.ndarray) -> float:
    if len(points) < 2:
        return 0.0
    try:
        hull = ConvexHull(points)
        pts = points[hull.vertices]
    except (QhullError, ValueError):
        pts = np.unique(points, axis=0)
    best = 0.0
    for start in range(0, len(pts), 512):
        d = np.linalg.norm(pts[start:start + 512, None, :] - pts[None, :, :], axis=-1)
        best = max(best, float(d.max()))
    return best


def _face_points(centres: np.ndarray, h: np.ndarray, axes: tuple[int, ...] = (0, 1, 2)) -> np.ndarray:
    """Centres of the voxel faces normal to ``axes`` (mm, array frame)."""
    out = []
    for a in axes:
        off = np.zeros(3)
        off[a] = h[a] / 2
        out += [centres + off, centres - off]
    return np.concatenate(out)


def _axial_diameter(ctx: _Ctx, vox: np.ndarray) -> float:
    """Longest in-plane diameter on any axial (⊥ S-I) slice, RECIST 1.1 style (mm)."""
    vol = ctx.case.labels
    direction = vol.direction  # columns i, j, k in LPS
    dir_kji = direction[:, ::-1]  # columns k, j, i
    zrow = dir_kji[2]  # z component of each array axis
    az = int(np.argmax(np.abs(zrow)))
    in_plane = tuple(a for a in range(3) if a != az)
    h = ctx.h
    if abs(zrow[az]) < 0.97:  # oblique slices: bin voxels into slabs one voxel thick along z
        z = (vox * h) @ zrow
        slab = np.round(z / float(h.min())).astype(int)
        in_plane = (0, 1, 2)
    else:
        slab = vox[:, az]
    best = 0.0
    centres = vox * h
    order = np.argsort(slab, kind="stable")
    s_sorted = slab[order]
    _, start = np.unique(s_sorted, return_index=True)
    stops = [*start[1:].tolist(), len(order)]
    for a, b in zip(start.tolist(), stops, strict=True):
        sel = centres[order[a:b]]
        pts = _face_points(sel, h, in_plane)
        # project on the axial plane: drop the S-I component (LPS z) of the array-frame vector
        lps = pts @ dir_kji.T
        xy = lps[:, :2]
        best = max(best, _max_pairwise_2d(xy))
    return best


def _max_pairwise_2d(xy: np.ndarray) -> float:
    xy = np.unique(np.round(xy, 6), axis=0)
    if len(xy) < 2:
        return 0.0
    try:
        hull = ConvexHull(xy)
        pts = xy[hull.vertices]
    except (QhullError, ValueError):
        pts = xy
    d = np.linalg.norm(pts[:, None, :] - pts[None, :, :], axis=-1)
    return float(d.max())


def _surface_area_mm2(mask: np.ndarray, h: np.ndarray) -> float:
    from skimage.measure import marching_cubes, mesh_surface_area

    padded = np.pad(mask.astype(np.float32), 1)
    if padded.sum() < 2:
        return float(2 * (h[0] * h[1] + h[1] * h[2] + h[0] * h[2]))
    verts, faces, _, _ = marching_cubes(padded, level=0.5, spacing=tuple(float(x) for x in h))  # type: ignore[no-untyped-call]
    return float(mesh_surface_area(verts, faces))  # type: ignore[no-untyped-call]


# ---------------------------------------------------------------------------------------------
# vessel calibre
# ---------------------------------------------------------------------------------------------
def _calibre_at(ctx: _Ctx, values: list[int], point_kji: np.ndarray, search_mm: float) -> float | None:
    """Local calibre (mm) of the vessel with ``values`` near voxel ``point_kji`` (indices).

    The distance transform is computed in a small box around the point, grown until the
    centre line found lies well inside the box (at most ``search_mm``).
    """
    radius = 8.0
    while True:
        res = _calibre_in_box(ctx, values, point_kji, radius)
        if res is None:
            return None
        cal, reach_mm = res
        if reach_mm < radius - 2.0 * float(ctx.h.max()) or radius >= search_mm:
            return cal
        radius = min(2.0 * radius, search_mm)


def _calibre_in_box(ctx: _Ctx, values: list[int], point_kji: np.ndarray, radius_mm: float) -> tuple[float, float] | None:
    h = ctx.h
    r = np.ceil(radius_mm / h).astype(int)
    p = np.asarray(point_kji, int)
    lo = np.maximum(p - r, 0)
    hi = np.minimum(p + r + 1, ctx.labels.shape)
    sl = tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))
    vmask = np.isin(ctx.labels[sl], values)
    q = p - lo
    if not vmask[tuple(q)]:
        return None
    # outside the box is unknown, not background: pad with the edge values
    pad = np.pad(vmask, 1, mode="edge")
    dist = ndimage.distance_transform_edt(pad, sampling=h)[1:-1, 1:-1, 1:-1]
    shape = np.asarray(vmask.shape)
    for _ in range(500):  # hill-climb to the local centre line
        a = np.maximum(q - 1, 0)
        b = np.minimum(q + 2, shape)
        sub = dist[a[0]:b[0], a[1]:b[1], a[2]:b[2]]
        k = np.unravel_index(int(np.argmax(sub)), sub.shape)
        nq = a + np.asarray(k)
        if dist[tuple(nq)] <= dist[tuple(q)] + 1e-9:
            break
        q = nq
    # small neighbourhood max along the centre line (discretisation dips)
    rr = 2
    a = np.maximum(q - rr, 0)
    b = np.minimum(q + rr + 1, shape)
    sub = dist[a[0]:b[0], a[1]:b[1], a[2]:b[2]]
    k = np.unravel_index(int(np.argmax(sub)), sub.shape)
    q = a + np.asarray(k)
    d = float(dist[tuple(q)])
    # EDT on voxel centres underestimates the inscribed radius of a digitised tube by ≈ 0.17 voxel on
    # average (range −0.6…+0.5 voxel over random sub-voxel offsets, r = 1.3–10 voxels; docs/measurements.md):
    # add that mean bias back.
    radius = d + LATTICE_RADIUS_BIAS_VOXELS * float(np.exp(np.log(h).mean()))
    reach = float(np.linalg.norm((q - (p - lo)) * h)) + d
    return max(2.0 * radius, float(h.min())), reach


# ---------------------------------------------------------------------------------------------
# per lesion
# ---------------------------------------------------------------------------------------------
def _round(x: float | None, nd: int = 2) -> float | None:
    return None if x is None else round(float(x), nd)


def _lesion_organ(ctx: _Ctx, lm: np.ndarray, sl: tuple[slice, ...], lesion_values: set[int]) -> str:
    shell = ndimage.binary_dilation(lm, iterations=2) & ~lm
    labs = ctx.labels[sl][shell]
    labs = labs[(labs != 0) & ~np.isin(labs, list(lesion_values))]
    if not labs.size:
        return "unknown"
    vals, counts = np.unique(labs, return_counts=True)
    votes: dict[str, int] = {}
    value_role = {v: ctx.roles[n] for n in ctx.names for v in ctx.values[n]}
    for v, c in zip(vals.tolist(), counts.tolist(), strict=True):
        role = value_role.get(v)
        if role is None:
            continue
        organ = "liver" if role in _LIVER_ROLES else _ORGAN_OF_ROLE.get(role, role.value)
        votes[organ] = votes.get(organ, 0) + c
    if not votes:
        return "unknown"
    return max(votes.items(), key=lambda kv: kv[1])[0]


def _segments(ctx: _Ctx, lm: np.ndarray, sl: tuple[slice, ...], centroid_kji: np.ndarray,
              lo: np.ndarray, min_fraction: float) -> tuple[list[str] | None, dict[str, float] | None]:
    seg_names = [n for n in (*SEGMENT_NAMES, "liver_segment_4") if n in ctx.values]
    if not seg_names:
        return None, None
    sub = ctx.labels[sl]
    seg_val = {v: n for n in seg_names for v in ctx.values[n]}
    is_seg = np.isin(sub, list(seg_val))
    if not is_seg.any():
        return [], {}
    _, ind = ndimage.distance_transform_edt(~is_seg, sampling=ctx.h, return_indices=True)
    near = sub[ind[0], ind[1], ind[2]]
    lv = near[lm]
    vals, counts = np.unique(lv, return_counts=True)
    frac = {seg_val[int(v)].removeprefix("liver_segment_"): c / lv.size
            for v, c in zip(vals.tolist(), counts.tolist(), strict=True) if int(v) in seg_val}
    c = np.clip(np.round(centroid_kji - lo).astype(int), 0, np.asarray(sub.shape) - 1)
    cseg = seg_val.get(int(near[tuple(c)]))
    first = cseg.removeprefix("liver_segment_") if cseg else None
    listed = sorted((s for s, f in frac.items() if f >= min_fraction or s == first),
                    key=lambda s: (s != first, -frac[s]))
    return listed, {s: round(f, 4) for s, f in sorted(frac.items(), key=lambda kv: -kv[1])}


def _measure_lesion(ctx: _Ctx, lid: str, params: dict[str, Any], required: list[str],
                    lesion_values: set[int], envelope_values: set[int]) -> dict[str, Any]:
    h = ctx.h
    vols = ctx.values[lid]
    sl, clo, lm, nvox = _lesion_crop(ctx, lid, vols)
    vox = np.argwhere(lm) + clo
    volume_ml = nvox * ctx.case.labels.voxel_volume_ml
    centroid_kji = vox.mean(0)
    centroid_mm = ctx.case.labels.index_to_mm(centroid_kji)
    surf = np.concatenate([ctx.bpts[v] for v in vols if v in ctx.bpts])
    surf_mm = surf * h
    lsurf = _LesionSurface(surf_mm)
    feret = _max_pairwise(_face_points(surf_mm, h))
    axial = _axial_diameter(ctx, surf)
    eq_d = (6.0 * volume_ml * 1000.0 / math.pi) ** (1.0 / 3.0)
    area = _surface_area_mm2(lm, h)
    sphericity = (math.pi ** (1 / 3)) * (6.0 * volume_ml * 1000.0) ** (2 / 3) / area if area > 0 else None
    organ = _lesion_organ(ctx, lm, sl, lesion_values)
    segments, fractions = _segments(ctx, lm, sl, centroid_kji, clo, params["segment_min_fraction"])
    if organ != "liver" and segments is not None:
        segments, fractions = [], {}

    others, liver_vals, distances, nearest_pt, lesion_distances, not_segmented = _structure_distances(
        ctx, lid, lsurf, organ, required)

    # capsule: gap to the nearest voxel outside the liver envelope
    capsule = None
    if liver_vals and organ == "liver":
        capsule = _capsule_distance(ctx, lsurf, envelope_values | lesion_values)

    nearest_vessels, vessel_names, by_role = _nearest_vessels(ctx, others, distances, nearest_pt, params)
    heat_sink = _heat_sink_vessels(ctx, lsurf, vessel_names, params)

    subcapsular, perivascular, near_hollow, dome = _lesion_flags(
        ctx, others, distances, not_segmented, capsule, heat_sink, by_role, params)
    fov = _capsule_fov(ctx, lsurf, envelope_values | lesion_values, capsule, vols, params["subcapsular_mm"])
    subcapsular = fov.pop("subcapsular", subcapsular)
    fov["distances_limited_by_fov"] = _distances_limited_by_fov(ctx, surf, distances)
    entry: dict[str, Any] = {
        "id": lid,
        "organ": organ,
        "planned_in_this_release": organ == "liver",
        "volume_ml": _round(volume_ml, 3),
        "max_diameter_mm": _round(feret),
        "axial_diameter_mm": _round(axial),
        "equivalent_sphere_diameter_mm": _round(eq_d),
        "sphericity": _round(sphericity, 3),
        "centroid_mm": [round(float(x), 2) for x in centroid_mm],
        "segments": segments,
        "segment_fractions": fractions,
        "capsule_distance_mm": _round(capsule),
        "distances_mm": distances,
        "lesion_distances_mm": lesion_distances,
        "nearest_vessels": nearest_vessels,
        "heat_sink_vessels": heat_sink,
        "not_segmented": not_segmented,
        "subcapsular": subcapsular,
        "perivascular": perivascular,
        "near_hollow_organ": near_hollow,
        "dome": dome,
        "voxel_count": nvox,
        **fov,
        **_size_bounds(volume_ml, feret, bool(fov.get("truncated_by_fov"))),
    }
    if organ != "liver":
        entry["note"] = (f"lesion lies in the {organ}, not the liver: it is measured and counted for its organ; "
                         "this release plans liver lesions only.")
    return entry


def _lesion_crop(ctx: _Ctx, lid: str, vols: list[int]
                 ) -> tuple[tuple[slice, ...], np.ndarray, np.ndarray, int]:
    """Bounding box of the lesion (+3 mm and 2 voxels), its lower corner, the mask inside it and its
    voxel count; a missing or single-voxel lesion is refused."""
    h = ctx.h
    lab = ctx.labels
    bps = [ctx.bpts[v] for v in vols if v in ctx.bpts]
    if not bps:
        raise EmptyStructureError(f"lesion {lid!r} has no voxels on the label map.")
    allb = np.concatenate(bps)
    lo = allb.min(0)
    hi = allb.max(0) + 1
    margin = np.ceil(3.0 / h).astype(int) + 2
    clo = np.maximum(lo - margin, 0)
    chi = np.minimum(hi + margin, lab.shape)
    sl = tuple(slice(a, b) for a, b in zip(clo, chi, strict=True))
    lm = np.isin(lab[sl], vols)
    nvox = int(lm.sum())
    if nvox == 0:
        raise EmptyStructureError(f"lesion {lid!r} has no voxels on the label map.")
    if nvox < 2:
        raise EmptyStructureError(
            f"lesion {lid!r} is a single voxel: too small to measure (diameter, sphericity) at this "
            "resolution. Check the segmentation or resample to a finer grid."
        )
    return sl, clo, lm, nvox


def _structure_distances(ctx: _Ctx, lid: str, lsurf: _LesionSurface, organ: str, required: list[str]
                         ) -> tuple[list[str], list[int], dict[str, float | None], dict[str, np.ndarray],
                                    dict[str, float | None], list[str]]:
    """Gaps from the lesion surface to every structure present (null for required ones absent) and to
    the other lesions; also the non-lesion structures, the liver's label values and what is missing."""
    distances: dict[str, float | None] = {}
    nearest_pt: dict[str, np.ndarray] = {}
    others = [n for n in ctx.names if ctx.roles[n] not in (StructureRole.LESION, StructureRole.BODY,
                                                            StructureRole.LIVER_SEGMENT)]
    liver_vals = [v for n in ctx.names if ctx.roles[n] in (StructureRole.LIVER, StructureRole.LIVER_SEGMENT)
                  for v in ctx.values[n]]
    for n in others:
        if n == "liver":
            continue
        res = _gap_to(ctx, lsurf, n, ctx.values[n])
        if res is not None:
            distances[n] = res[0]
            nearest_pt[n] = res[2]
    if liver_vals:
        if organ == "liver":
            distances["liver"] = 0.0
        else:
            res = _gap_to(ctx, lsurf, "__liver__", liver_vals)
            if res is not None:
                distances["liver"] = res[0]
    lesion_distances = {}
    for other in ctx.names:
        if ctx.roles[other] == StructureRole.LESION and other != lid:
            res = _gap_to(ctx, lsurf, other, ctx.values[other])
            if res is not None:
                lesion_distances[other] = _round(res[0])
    not_segmented = _not_segmented(ctx, required)
    for n in not_segmented:
        distances.setdefault(n, None)
    distances = {k: _round(v) for k, v in sorted(distances.items())}
    return others, liver_vals, distances, nearest_pt, lesion_distances, not_segmented


def _nearest_vessels(ctx: _Ctx, others: list[str], distances: dict[str, float | None],
                     nearest_pt: dict[str, np.ndarray], params: dict[str, Any]
                     ) -> tuple[list[dict[str, Any]], list[str], dict[StructureRole, list[str]]]:
    """The nearest vessel of each kind with its calibre there, the vessel structures and them by role."""
    h = ctx.h
    nearest_vessels: list[dict[str, Any]] = []
    vessel_names = [n for n in others if ctx.roles[n] in VESSEL_ROLES]
    by_role: dict[StructureRole, list[str]] = {}
    for n in vessel_names:
        by_role.setdefault(ctx.roles[n], []).append(n)
    for role, names in sorted(by_role.items(), key=lambda kv: kv[0].value):
        cands = [(distances[n], n) for n in names if distances.get(n) is not None]
        if not cands:
            continue
        dmin, name = min(cands)
        q_kji = np.round(nearest_pt[name] / h).astype(int)
        cal = _calibre_at(ctx, ctx.values[name], q_kji, params["vessel_search_mm"])
        nearest_vessels.append({"name": name, "role": role.value, "distance_mm": _round(dmin),
                                "calibre_mm": _round(cal)})
    nearest_vessels.sort(key=lambda v: v["distance_mm"])
    return nearest_vessels, vessel_names, by_role


def _lesion_flags(ctx: _Ctx, others: list[str], distances: dict[str, float | None], not_segmented: list[str],
                  capsule: float | None, heat_sink: list[dict[str, Any]],
                  by_role: dict[StructureRole, list[str]], params: dict[str, Any]
                  ) -> tuple[bool | None, bool | None, bool | None, bool | None]:
    """Subcapsular, perivascular, near a hollow organ, dome (None = cannot tell: a structure it needs
    is not segmented)."""
    subcapsular = None if capsule is None else capsule <= params["subcapsular_mm"]
    vessel_kinds_needed = {"portal_vein", "hepatic_vein"}
    present_kinds = {r.value for r in by_role}
    perivascular: bool | None = bool(heat_sink)
    if not perivascular and not vessel_kinds_needed <= present_kinds:
        perivascular = None
    hollow = [n for n in others if ctx.roles[n] in HOLLOW_ORGAN_ROLES]
    near_hollow: bool | None = any(
        distances.get(n) is not None and distances[n] <= params["near_hollow_organ_mm"] for n in hollow)
    if not near_hollow and any(n in not_segmented for n in ("stomach", "duodenum", "colon")):
        near_hollow = None
    dome: bool | None
    if distances.get("diaphragm") is not None:
        dome = distances["diaphragm"] <= params["dome_mm"]
    else:
        near = [distances.get(n) for n in ("lung_right", "lung_left", "heart") if distances.get(n) is not None]
        dome = (min(near) <= params["dome_mm"] + params["diaphragm_thickness_mm"]) if near else None  # type: ignore[type-var]
    return subcapsular, perivascular, near_hollow, dome


def _not_segmented(ctx: _Ctx, required: list[str]) -> list[str]:
    present = set(ctx.names)
    out = []
    for n in required:
        if n == "liver":
            if not any(ctx.roles[m] in (StructureRole.LIVER, StructureRole.LIVER_SEGMENT) for m in present):
                out.append(n)
            continue
        if n.startswith("hepatic_vein_") and "hepatic_veins" in present:
            continue
        if n not in present:
            out.append(n)
    segs_present = [s for s in SEGMENT_NAMES if s in present]
    if not segs_present and "liver_segment_4" not in present:
        out.extend(SEGMENT_NAMES)
    else:
        for s in SEGMENT_NAMES:
            if s not in present and not (s in ("liver_segment_4a", "liver_segment_4b") and "liver_segment_4" in present):
                out.append(s)
    return out


def _capsule_points(ctx: _Ctx, envelope_values: set[int]) -> tuple[np.ndarray, np.ndarray] | None:
    """Voxels (k, j, i) just outside the liver envelope inside the image (6-adjacent to it: the capsule
    the image shows) and envelope voxels on the array edge (where the field of view cuts the liver)."""
    env_list = sorted(envelope_values)
    pts = [ctx.bpts[v] for v in env_list if v in ctx.bpts]
    if not pts:
        return None
    allp = np.concatenate(pts)
    lo = np.maximum(allp.min(0) - 1, 0)
    hi = np.minimum(allp.max(0) + 2, ctx.labels.shape)
    sub = ctx.labels[tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))]
    env = np.isin(sub, env_list)
    shell = ndimage.binary_dilation(env) & ~env
    edge = np.zeros_like(env)
    for ax in range(3):
        for end, at_edge in ((0, lo[ax] == 0), (-1, hi[ax] == ctx.labels.shape[ax])):
            if at_edge:
                idx: list[slice | int] = [slice(None)] * 3
                idx[ax] = end
                edge[tuple(idx)] |= env[tuple(idx)]
    return np.argwhere(shell) + lo, np.argwhere(edge) + lo


def _capsule_tree(ctx: _Ctx, envelope_values: set[int]) -> cKDTree | None:
    """KD-tree of the voxels just outside the liver envelope (6-adjacent to it), built once; the array
    edge counts as outside (the capsule may be cut by the field of view: :func:`_capsule_fov`)."""
    if ctx.capsule_tree is None:
        found = _capsule_points(ctx, envelope_values)
        if found is None:
            return None
        spts = np.concatenate(found)
        if not len(spts):
            return None
        ctx.capsule_tree = cKDTree(spts * ctx.h)
    return ctx.capsule_tree


def _capsule_fov(ctx: _Ctx, lesion: _LesionSurface, envelope_values: set[int], capsule: float | None,
                 lesion_values: list[int], subcapsular_mm: float) -> dict[str, Any]:
    """[L] field of view: the capsule distance from liver surface *inside* the image vs the image edge.

    The rule of :func:`latplan.imaging.fov.capsule_distance_in_fov`: when the image edge (liver voxels on
    the array's faces) is nearer than the liver surface the image shows, the true distance may lie
    anywhere between the two — ``capsule_distance_mm`` (the gap to the nearer of them, a lower bound)
    is then ``capsule_distance_limited_by_fov`` and ``subcapsular`` is decided only when that lower
    bound already exceeds the subcapsular limit. Keys: ``capsule_distance_limited_by_fov``,
    ``capsule_distance_in_image_mm`` (gap to the liver surface shown, when there is one),
    ``truncated_by_fov`` (the lesion touches the image edge), ``truncated_by_fov_faces`` (which faces) and
    ``subcapsular`` when limited."""
    out: dict[str, Any] = {"truncated_by_fov": any(v in ctx.edge_values for v in lesion_values)}
    out["truncated_by_fov_faces"] = _faces_touched(ctx, lesion_values)
    if capsule is None:
        return out
    if "__capsule_shell__" not in ctx.trees:
        found = _capsule_points(ctx, envelope_values)
        shell, edge = found if found is not None else (np.zeros((0, 3), int), np.zeros((0, 3), int))
        ctx.trees["__capsule_shell__"] = cKDTree(shell * ctx.h) if len(shell) else None
        ctx.trees["__capsule_edge__"] = cKDTree(edge * ctx.h) if len(edge) else None
    shell_tree, edge_tree = ctx.trees["__capsule_shell__"], ctx.trees["__capsule_edge__"]
    in_image = _closest_pair(shell_tree, lesion, ctx.h)[0] if shell_tree is not None else None
    at_edge = _closest_pair(edge_tree, lesion, ctx.h)[0] if edge_tree is not None else None
    limited = at_edge is not None and (in_image is None or at_edge < in_image)
    out["capsule_distance_limited_by_fov"] = bool(limited)
    if in_image is not None:
        out["capsule_distance_in_image_mm"] = _round(in_image)
    if limited:
        out["subcapsular"] = False if capsule > subcapsular_mm else None
    return out


def _capsule_distance(ctx: _Ctx, lesion: _LesionSurface, envelope_values: set[int]) -> float | None:
    """Gap (mm) from the lesion to the nearest voxel outside the liver envelope."""
    tree = _capsule_tree(ctx, envelope_values)
    if tree is None:
        return None
    return _closest_pair(tree, lesion, ctx.h)[0]


def _heat_sink_vessels(ctx: _Ctx, lesion: _LesionSurface, vessel_names: list[str], params: dict[str, Any]) -> list[dict[str, Any]]:
    """Vessels ≥ min calibre within perivascular_mm of the lesion (sampled along the vessel)."""
    out = []
    h = ctx.h
    lim = params["perivascular_mm"]
    ltree = lesion.tree
    surf_mm = lesion.pts
    for n in vessel_names:
        tree = ctx.tree(n, ctx.values[n])
        if tree is None:
            continue
        reach = lim + 2 * float(h.max())
        data = tree.data
        data = data[np.all((data >= lesion.lo - reach) & (data <= lesion.hi + reach), axis=1)]
        if not len(data):
            continue
        d, _ = ltree.query(data, distance_upper_bound=reach)
        near = np.nonzero(np.isfinite(d))[0]
        if not near.size:
            continue
        pts = data[near]
        _, j = ltree.query(pts)
        gaps = _box_gap(pts, surf_mm[j], h)
        keep = gaps < lim
        if not keep.any():
            continue
        pts, gaps = pts[keep], gaps[keep]
        order = np.argsort(gaps)
        step = max(1, len(order) // 8)
        best = None
        for k in order[::step][:8]:
            cal = _calibre_at(ctx, ctx.values[n], np.round(pts[k] / h).astype(int), params["vessel_search_mm"])
            if cal is not None and cal >= params["perivascular_min_calibre_mm"]:
                if best is None or gaps[k] < best[0] - 1e-9 or (abs(gaps[k] - best[0]) < 1e-9 and cal > best[1]):
                    best = (float(gaps[k]), cal)
        if best is not None:
            out.append({"name": n, "role": ctx.roles[n].value, "distance_mm": _round(best[0]),
                        "calibre_mm": _round(best[1])})
    return sorted(out, key=lambda v: v["distance_mm"])


# ---------------------------------------------------------------------------------------------
# patient level
# ---------------------------------------------------------------------------------------------
def _norm_organ(name: str) -> str:
    s = name.strip().lower().replace(" ", "_").replace("-", "_")
    return _ORGAN_SYNONYMS.get(s, s)


def _oligometastatic(patient: Patient, organ_counts: dict[str, int | None], key: str,
                     definition: dict[str, Any]) -> dict[str, Any]:
    d_out = {"id": key, "name": definition["name"], "max_organs": definition["max_organs"],
             "max_lesions": definition["max_lesions"],
             "requires_primary_controlled": definition["requires_primary_controlled"],
             "source": " ".join(str(definition["source"]).split())}
    if patient.primary in (PrimaryTumour.HCC, PrimaryTumour.CHOLANGIOCARCINOMA):
        return {"status": "not_applicable", "definition": d_out, "missing": [],
                "reason": f"primary liver tumour ({patient.primary.value}): not metastatic disease."}
    missing: list[str] = []
    reasons: list[str] = []
    n_organs = len([o for o in organ_counts if o != "unknown"])
    if "unknown" in organ_counts:
        missing.append("organ of lesion(s) in unlabelled tissue")
    known = [c for c in organ_counts.values() if c is not None]
    n_lesions_min = sum(known)
    counts_complete = len(known) == len(organ_counts)
    sites_known = patient.metastatic_sites is not None or patient.extrahepatic_sites is not None
    if not sites_known:
        missing.append("metastatic_sites")
    if not counts_complete:
        missing.append("lesion_count of " + ", ".join(o for o, c in organ_counts.items() if c is None))
    primary_ok: bool | None = None
    if definition["requires_primary_controlled"]:
        ps = patient.primary_status
        if ps is None or ps == "unknown":
            missing.append("primary_status")
        else:
            primary_ok = ps in ("resected", "resectable")
    # decisive negatives hold whatever the missing data are (more data only adds organs/lesions)
    if n_organs > definition["max_organs"]:
        reasons.append(f"{n_organs} organs involved > {definition['max_organs']}")
    if n_lesions_min > definition["max_lesions"]:
        reasons.append(f"{n_lesions_min} lesions > {definition['max_lesions']}")
    if primary_ok is False:
        reasons.append(f"primary is {patient.primary_status} (not resected or resectable)")
    if reasons:
        return {"status": "not_oligometastatic", "definition": d_out, "missing": missing, "reason": "; ".join(reasons)}
    if missing:
        return {"status": "unknown", "definition": d_out, "missing": missing,
                "reason": "needs " + ", ".join(missing) + " to decide."}
    return {"status": "oligometastatic", "definition": d_out, "missing": [],
            "reason": f"{n_organs} organ(s), {n_lesions_min} lesion(s)"
                      + (", primary controlled" if definition["requires_primary_controlled"] else "")}


def count_lesions_by_organ(patient: Patient, lesion_organs: list[str]) -> dict[str, int | None]:
    """Lesions per organ: those on the images (``lesion_organs``, one entry per lesion) merged with the
    patient's recorded metastatic sites, without double counting; ``None`` = count not recorded."""
    organ_counts: dict[str, int | None] = {}
    for o in lesion_organs:
        organ_counts[o] = (organ_counts.get(o) or 0) + 1
    image_counts = dict(organ_counts)
    if patient.metastatic_sites is not None:
        for site in patient.metastatic_sites:
            o = _norm_organ(site.organ)
            n_img = image_counts.get(o)
            if site.lesion_count is None:
                organ_counts[o] = n_img if n_img else None
            else:
                organ_counts[o] = max(site.lesion_count, n_img or 0)
    if patient.extrahepatic_sites:
        for s in patient.extrahepatic_sites:
            o = _norm_organ(s)
            if o not in organ_counts:
                organ_counts[o] = None
    return organ_counts


def oligometastatic_status(patient: Patient, organ_counts: Mapping[str, int | None],
                           oligo_definition: str | Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Oligometastatic status by a definition of ``oligometastatic_definitions.yaml`` (the one source of
    truth; default ``kovacs2021``): {status, definition, missing, reason}."""
    key, definition = _definition(oligo_definition)
    return _oligometastatic(patient, dict(organ_counts), key, definition)


def measure_case(case: Case, oligo_definition: str | Mapping[str, Any] | None = None,
                 parameters: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Measure every lesion and the patient-level summary; JSON-serialisable (measure.schema.json).

    Parameters
    ----------
    case:
        The case (image, labels, label table, patient).
    oligo_definition:
        Name of a definition in ``oligometastatic_definitions.yaml`` (default ``kovacs2021``,
        the seed's) or a mapping with name, max_organs, max_lesions, requires_primary_controlled, source.
    parameters:
        Overrides of ``measurement_parameters.yaml`` (e.g. ``{"near_hollow_organ_mm": 20}``).
    """
    params = measurement_parameters()
    if parameters:
        unknown = set(parameters) - set(params)
        if unknown:
            raise InvalidInputError(f"unknown measurement parameter(s) {sorted(unknown)}; known: {sorted(params)}.")
        params.update(parameters)
    required = list(params["required_structures"])
    key, definition = _definition(oligo_definition)
    ctx = _context(case)
    lesion_ids = [n for n in ctx.names if ctx.roles[n] == StructureRole.LESION]
    lesion_values = {v for lid in lesion_ids for v in ctx.values[lid]}
    envelope_values = {v for n in ctx.names if ctx.roles[n] in _ENVELOPE_ROLES for v in ctx.values[n]}
    lesions = [_measure_lesion(ctx, lid, params, required, lesion_values, envelope_values) for lid in lesion_ids]

    # liver volume: parenchyma + liver lesions (intrahepatic vessels excluded)
    liver_names = [n for n in ctx.names if ctx.roles[n] in (StructureRole.LIVER, StructureRole.LIVER_SEGMENT)]
    vml = case.labels.voxel_volume_ml
    vol_of = {n: sum(int(ctx.counts[v]) for v in ctx.values[n] if v < len(ctx.counts)) * vml for n in ctx.names}
    liver_lesions = [les for les in lesions if les["organ"] == "liver"]
    burden = sum(les["volume_ml"] for les in liver_lesions)
    liver_volume = (sum(vol_of[n] for n in liver_names) + burden) if liver_names else None

    # future liver remnant of the smallest segmental resection removing all liver lesions
    flr = None
    seg_present = [n for n in ctx.names if ctx.roles[n] == StructureRole.LIVER_SEGMENT]
    if seg_present and liver_volume and all(les["segments"] is not None for les in liver_lesions):
        resected = sorted({s for les in liver_lesions for s in (les["segments"] or [])},
                          key=lambda s: SEGMENT_CODES.index(s) if s in SEGMENT_CODES else 99)
        resected_names = {f"liver_segment_{s}" for s in resected}
        unsegmented_liver = sum(vol_of[n] for n in liver_names if ctx.roles[n] == StructureRole.LIVER)
        remnant = sum(vol_of[n] for n in seg_present if n not in resected_names)
        flr = {"ml": round(remnant, 1), "percent": round(100.0 * remnant / liver_volume, 1),
               "resected_segments": resected,
               "note": "anatomic resection of every segment a liver lesion overlaps; remnant excludes lesions"
                       + ("; unsegmented liver voxels counted as resected" if unsegmented_liver else "")}

    # organs involved and lesion counts (images + case.yaml, no double counting)
    patient = case.patient
    organ_counts = count_lesions_by_organ(patient, [str(les["organ"]) for les in lesions])
    lesion_count = sum(c for c in organ_counts.values() if c is not None)
    oligo = _oligometastatic(patient, organ_counts, key, definition)
    return {
        "schema_version": MEASURE_SCHEMA_VERSION,
        "case_id": patient.id,
        "voxel_mm": [round(float(x), 4) for x in case.labels.spacing_mm],
        "parameters": {k: v for k, v in params.items() if k != "required_structures"},
        "lesions": lesions,
        "patient": {
            "lesion_count": lesion_count,
            "lesion_count_complete": all(c is not None for c in organ_counts.values()),
            "liver_lesion_count": len(liver_lesions),
            "lesions_by_organ": organ_counts,
            "organs_involved": sorted(o for o in organ_counts if o != "unknown"),
            "liver_volume_ml": _round(liver_volume, 1),
            "tumour_burden_ml": _round(burden, 2),
            "tumour_burden_percent": _round(100.0 * burden / liver_volume, 2) if liver_volume else None,
            "future_liver_remnant": flr,
            "oligometastatic": oligo,
            # [L] structures touching the image edge: the field of view may cut them
            "structures_truncated_by_fov": sorted(n for n in ctx.names if set(ctx.values[n]) & ctx.edge_values),
        },
        "note": "liver lesions are what this release plans; lesions in other organs are measured and counted.",
    }


def measure_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of :func:`measure_case` output."""
    import json

    schema: dict[str, Any] = json.loads((resources.files("latplan.anatomy") / "measure.schema.json")
                                        .read_text(encoding="utf-8"))
    return schema


def validate_measurements(data: Mapping[str, Any]) -> None:
    """Raise InvalidInputError when ``data`` does not follow measure.schema.json."""
    import jsonschema

    try:
        jsonschema.validate(dict(data), measure_schema())
    except jsonschema.ValidationError as exc:
        path = "/".join(str(p) for p in exc.absolute_path)
        raise InvalidInputError(f"measurement output does not follow measure.schema.json at {path or '(root)'}: "
                                f"{exc.message}") from None
