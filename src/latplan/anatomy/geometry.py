"""``CaseGeometry``: the anatomy every planner needs, computed once per case.

Liver mask, vessel masks with their local calibre, the large-vessel map (calibre ≥ 3 mm), the
body mask, distance maps and lesion crops. Planners and measurements read them from here
instead of rebuilding them per lesion × modality (issue [H] part 4).

Every array is on the case's label grid (``geometry.affine``, LPS mm; index order k, j, i).
Maps are computed on first use and kept for as long as the :class:`~latplan.case.Case` object
lives (a cache keyed weakly by the case): every :class:`CaseGeometry` of one case shares them.

Definitions (one implementation each):

* liver: :func:`latplan.anatomy.measure.liver_mask` (``liver`` ∪ Couinaud segments ∪ lesions
  lying in them).
* vessel calibre at a vessel voxel: 2 × (the largest inscribed radius within a 5-voxel
  neighbourhood + the lattice bias), i.e. the local tube diameter. The inscribed radius is the
  Euclidean distance transform inside the vessel (mm); on voxel centres it underestimates a
  digitised tube's radius by :data:`~latplan.anatomy.measure.LATTICE_RADIUS_BIAS_VOXELS` voxel on
  average (docs/measurements.md), the same correction :func:`latplan.anatomy.measure_case` applies.
* large vessels: the voxels of a vessel within half the calibre limit + one voxel of its voxels
  whose calibre ≥ :data:`LARGE_VESSEL_CALIBRE_MM` (the core and its wall).
  Vessels ≥ 3 mm are those whose perfusion cools an ablation zone measurably (Lu DSK et al.,
  J Vasc Interv Radiol 2003;14:1267–1274: incomplete RFA beside vessels ≥ 3 mm), the limit
  latplan's planners use.
* body: the ``body`` label ∪ every labelled voxel; without one, the body from the image
  (:func:`latplan.imaging.fov.body_mask_from_image`: CT > −400 HU, MR > Otsu threshold, axial holes
  filled, largest component) ∪ every labelled voxel; the whole volume when that finds nothing.
* per-lesion results of higher layers (e.g. the planners' trajectory of a lesion):
  :meth:`CaseGeometry.memo` keeps them under a key, once per case, like the maps (anatomy does not
  know what they are; the pipeline computes them in the parent process before simulations fan
  out, so every worker reads the same one).
* field of view ([L]): :meth:`CaseGeometry.capsule_in_fov` (capsule from liver surface inside the
  image, ``limited_by_fov``), :meth:`CaseGeometry.path_check` (verifiable only through a body wall
  shown in the image) and ``fov_limited`` (structures touching the edge).
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage

from latplan.anatomy.measure import LATTICE_RADIUS_BIAS_VOXELS, liver_mask
from latplan.case import Case
from latplan.case.vocabulary import VESSEL_ROLES, StructureRole, role_of
from latplan.errors import EmptyStructureError, InvalidInputError, UnknownStructureError
from latplan.imaging.fov import (
    FovDistance,
    PathCheck,
    body_mask_from_image,
    capsule_distance_in_fov,
    path_inside_image_and_through_body,
)

__all__ = ["LARGE_VESSEL_CALIBRE_MM", "CaseGeometry", "case_geometry", "crop_box", "geometry_for", "structure_role"]

#: vessels at least this wide (mm) count as large (heat sink, catheter/needle obstacles)
LARGE_VESSEL_CALIBRE_MM = 3.0
#: body threshold on CT (HU): air is −1000, lung ≈ −850…−500, fat ≈ −100
BODY_HU_THRESHOLD = -400.0

BoolArray = NDArray[np.bool_]
FloatArray = NDArray[np.float64]


def crop_box(mask: BoolArray, pad_mm: float, spacing_kji_mm: FloatArray) -> tuple[slice, slice, slice]:
    """Index box of ``mask`` padded by ``pad_mm`` on each side and clipped to the array."""
    idx = np.nonzero(mask)
    if not idx[0].size:
        raise EmptyStructureError("cannot crop around an empty mask.")
    pad = np.ceil(pad_mm / np.asarray(spacing_kji_mm, float)).astype(int)
    lo = [int(max(a.min() - p, 0)) for a, p in zip(idx, pad, strict=True)]
    hi = [int(min(a.max() + 1 + p, n)) for a, p, n in zip(idx, pad, mask.shape, strict=True)]
    return slice(lo[0], hi[0]), slice(lo[1], hi[1]), slice(lo[2], hi[2])


def structure_role(case: Case, name: str) -> StructureRole | None:
    """Role of a structure of ``case``: its label table first, then the canonical vocabulary; None if unknown."""
    try:
        return case.role(name)
    except UnknownStructureError:
        try:
            return role_of(name)
        except UnknownStructureError:
            return None


def _inscribed_radius_mm(mask: BoolArray, spacing: FloatArray) -> FloatArray:
    """Distance (mm) of each mask voxel centre to the nearest non-mask voxel (mask padded by one)."""
    return np.asarray(ndimage.distance_transform_edt(np.pad(mask, 1), sampling=spacing)[1:-1, 1:-1, 1:-1], float)


_MAPS: weakref.WeakKeyDictionary[Case, dict[str, Any]] = weakref.WeakKeyDictionary()
#: the key of the memo table (per-lesion results of higher layers) among a case's maps
_MEMO = "_memo"
_T = TypeVar("_T")


def _cached(fn: Callable[[CaseGeometry], _T]) -> property:
    """A geometry map computed once per case (shared by every CaseGeometry of that case)."""
    name = fn.__name__

    def get(self: CaseGeometry) -> _T:
        maps = _MAPS.setdefault(self.case, {})
        if name not in maps:
            maps[name] = fn(self)
        value: _T = maps[name]
        return value

    get.__doc__ = fn.__doc__
    return property(get)


@dataclass(frozen=True, eq=False)
class CaseGeometry:
    """Anatomy maps of one case, computed once (see the module doc for each definition)."""

    case: Case

    def __reduce__(self) -> tuple[Callable[[Case, dict[str, Any]], CaseGeometry], tuple[Case, dict[str, Any]]]:
        """Pickled with the maps computed so far (a worker process then does not recompute them)."""
        maps = dict(_MAPS.get(self.case, {}))
        if _MEMO in maps:
            maps[_MEMO] = dict(maps[_MEMO])
        return _restore, (self.case, maps)

    def memo(self, key: Hashable, compute: Callable[[], _T]) -> _T:
        """``compute()`` once per case and ``key`` (kept and pickled with the maps; see the module doc).

        For results that depend only on the case and ``key`` (e.g. ``("trajectory", lesion_id, n)``).
        The caller must not mutate what it gets back (copy it first)."""
        memo = _MAPS.setdefault(self.case, {}).setdefault(_MEMO, {})
        if key not in memo:
            memo[key] = compute()
        value: _T = memo[key]
        return value

    def remember(self, entries: Mapping[Hashable, Any]) -> None:
        """Add memo entries computed elsewhere (another process's :meth:`memo` of this case); a key
        already held is kept."""
        memo = _MAPS.setdefault(self.case, {}).setdefault(_MEMO, {})
        for key, value in entries.items():
            memo.setdefault(key, value)

    def has_memo(self, key: Hashable) -> bool:
        """Is ``key`` already in :meth:`memo`?"""
        return key in _MAPS.get(self.case, {}).get(_MEMO, {})

    @property
    def affine(self) -> FloatArray:
        return np.asarray(self.case.labels.affine, float)

    @property
    def spacing_kji_mm(self) -> FloatArray:
        return np.asarray(self.case.labels.spacing_kji_mm, float)

    @property
    def shape(self) -> tuple[int, int, int]:
        s = self.case.labels.shape
        return int(s[0]), int(s[1]), int(s[2])

    @_cached
    def fov_limited(self) -> dict[str, bool]:
        """Liver, segment and lesion names → does the mask touch the volume's edge (the field of view
        may cut it)."""
        return {n: _touches_edge(np.asarray(self.case.mask_array(n), bool)) for n in self.structure_names
                if structure_role(self.case, n) in (StructureRole.LIVER, StructureRole.LIVER_SEGMENT, StructureRole.LESION)}

    def names_with_roles(self, roles: frozenset[StructureRole] | set[StructureRole]) -> list[str]:
        return [n for n in self.structure_names if structure_role(self.case, n) in roles]

    @_cached
    def structure_names(self) -> list[str]:
        return list(self.case.structure_names())

    @_cached
    def liver(self) -> BoolArray | None:
        """Liver mask (None when the case has no liver segmentation)."""
        try:
            return np.asarray(liver_mask(self.case).array, bool)
        except EmptyStructureError:
            return None

    @_cached
    def lesions(self) -> BoolArray:
        """Every lesion voxel (union of the case's lesions)."""
        out = np.zeros(self.shape, bool)
        for lid in self.case.lesion_ids:
            out |= np.asarray(self.case.mask_array(lid), bool)
        return out

    @_cached
    def vessel_names(self) -> list[str]:
        return self.names_with_roles(VESSEL_ROLES)

    @_cached
    def vessels(self) -> BoolArray:
        """Every vessel voxel (all vessel roles)."""
        out = np.zeros(self.shape, bool)
        for n in self.vessel_names:
            out |= self.case.mask_array(n)
        return out

    @_cached
    def vessel_calibre_mm(self) -> FloatArray:
        """Local calibre (mm) at each vessel voxel, 0 elsewhere (per vessel, on its padded box)."""
        h = self.spacing_kji_mm
        bias_mm = LATTICE_RADIUS_BIAS_VOXELS * float(np.exp(np.log(h).mean()))
        out = np.zeros(self.shape, float)
        for n in self.vessel_names:
            m = self.case.mask_array(n)
            if not m.any():
                continue
            box = crop_box(m, 3.0 * float(h.max()), h)
            sub = m[box]
            local = 2.0 * (ndimage.maximum_filter(_inscribed_radius_mm(sub, h), size=5) + bias_mm) * sub
            out[box] = np.maximum(out[box], local)
        return out

    @_cached
    def large_vessels(self) -> BoolArray:
        """Vessel voxels of vessels ≥ :data:`LARGE_VESSEL_CALIBRE_MM` (core and its wall)."""
        h = self.spacing_kji_mm
        core = self.vessel_calibre_mm >= LARGE_VESSEL_CALIBRE_MM
        if not core.any():
            return np.zeros(self.shape, bool)
        out = np.zeros(self.shape, bool)
        for n in self.vessel_names:
            m = self.case.mask_array(n) & ~out
            if not (m & core).any():
                continue
            box = crop_box(m, 4.0, h)
            near = ndimage.distance_transform_edt(~(m[box] & core[box]), sampling=h) \
                <= 0.5 * LARGE_VESSEL_CALIBRE_MM + float(h.max())
            out[box] |= m[box] & near
        return out

    @_cached
    def distance_to_large_vessel_mm(self) -> FloatArray:
        """Distance (mm) of each voxel centre to the nearest large-vessel voxel (inf without one)."""
        if not self.large_vessels.any():
            return np.full(self.shape, np.inf)
        return np.asarray(ndimage.distance_transform_edt(~self.large_vessels, sampling=self.spacing_kji_mm), float)

    @_cached
    def body(self) -> BoolArray:
        """Body mask (see the module doc)."""
        case = self.case
        labels = np.asarray(case.labels.array)
        if "body" in self.structure_names:
            # the label map holds one label per voxel: organs inside the body are not "body" voxels
            return np.asarray(case.mask_array("body") | (labels > 0), bool)
        # [L] field of view (imaging helper): body from the image — CT HU / MR intensity, axial holes
        # (lungs, bowel gas) filled per slice, largest component — see latplan.imaging.fov
        body = body_mask_from_image(case.image, str(case.image_modality)) | (labels > 0)
        if body.any() and body.mean() < 0.999:
            return np.asarray(body, bool)
        return np.ones(self.shape, bool)

    def capsule_in_fov(self, lesion_id: str) -> FovDistance:
        """[L] lesion → capsule from liver surface inside the image, with ``limited_by_fov`` (imaging.fov)."""
        lesion = np.asarray(self.case.lesion_mask(lesion_id).array, bool)
        envelope = lesion if self.liver is None else (self.liver | lesion)
        return capsule_distance_in_fov(self.case.labels, lesion, envelope)

    def path_check(self, target_mm: FloatArray, entry_mm: FloatArray) -> PathCheck:
        """[L] can a straight path be verified on this image (leaves the body inside it)? (imaging.fov)"""
        return path_inside_image_and_through_body(self.case.image, self.body, target_mm, entry_mm)

    def lesion_crop(self, lesion_id: str, pad_mm: float) -> tuple[slice, slice, slice]:
        """Index box of the lesion padded by ``pad_mm``."""
        return crop_box(np.asarray(self.case.lesion_mask(lesion_id).array, bool), pad_mm, self.spacing_kji_mm)

    def distance_to_lesion_mm(self, lesion_id: str, box: tuple[slice, slice, slice] | None = None) -> FloatArray:
        """Distance (mm) to the lesion, on ``box`` (default: the whole grid)."""
        les = np.asarray(self.case.lesion_mask(lesion_id).array, bool)
        sub = les if box is None else les[box]
        return np.asarray(ndimage.distance_transform_edt(~sub, sampling=self.spacing_kji_mm), float)


def _touches_edge(mask: BoolArray) -> bool:
    return bool(mask[0].any() or mask[-1].any() or mask[:, 0].any() or mask[:, -1].any()
                or mask[:, :, 0].any() or mask[:, :, -1].any())


def case_geometry(case: Case) -> CaseGeometry:
    """The geometry of ``case`` (its maps are computed once per case object)."""
    return CaseGeometry(case)


def _restore(case: Case, maps: dict[str, Any]) -> CaseGeometry:
    """Unpickle a :class:`CaseGeometry`: its maps become the (unpickled) case's maps."""
    held = _MAPS.setdefault(case, {})
    for name, value in maps.items():
        if name == _MEMO:
            held.setdefault(_MEMO, {}).update({k: v for k, v in value.items() if k not in held[_MEMO]})
        else:
            held.setdefault(name, value)
    return CaseGeometry(case)


def geometry_for(case: Case, geometry: CaseGeometry | None) -> CaseGeometry:
    """The geometry a planner uses: the one the pipeline computed and passed (it must be of ``case``),
    or, for a direct call without one, :func:`case_geometry` of ``case``."""
    if geometry is None:
        return case_geometry(case)
    if geometry.case is not case:
        raise InvalidInputError("the CaseGeometry passed to the planner belongs to another case: pass "
                                "case_geometry(case) of the case being planned (latplan.anatomy.geometry).")
    return geometry
