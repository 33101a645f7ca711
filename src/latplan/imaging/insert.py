"""Insert a synthetic lesion into a real case (turns lesion-free real CTs into test cases).

Decisions (docs/imaging.md):
- Overwrite policy: by default (``overwrite="liver"``) the lesion claims only background (0)
  and liver/liver-segment voxels, so a lesion placed next to a real vessel, stomach or
  gallbladder abuts it instead of eating it (the organ stays intact, the gap is real);
  ``overwrite="all"`` claims every voxel of the shape. Other lesions are never overwritten
  in ``"liver"`` mode.
- Intensity: a hypodense, metastasis-like value: the liver's median minus
  ``LESION_CONTRAST_HU`` (CT), with Gaussian noise of the liver's own robust spread, seeded.
  For non-CT images the lesion gets ``LESION_RELATIVE_INTENSITY`` × the liver median. The
  imaging defaults below are rendering choices for synthetic test data, not clinical data.
- Size: a lesion covering fewer than ``MIN_LESION_VOXELS`` voxels is refused
  (:class:`~latplan.errors.EmptyStructureError`): it could not be measured at this resolution.
- ``diameter_mm`` is the full diameter of a sphere, the largest extent of a blob; an
  ellipsoid takes ``axes_mm`` = its three full diameters along the patient x (L), y (P), z (S)
  axes. Sizes must be positive and at most ``MAX_LESION_DIAMETER_MM``
  (:class:`~latplan.imaging.errors.LesionSizeError`).
- Where it lands: at least ``MIN_INSIDE_FRACTION`` (95 %) of the lesion's voxels must lie in the
  target organ (``organ``, default the liver; with ``segment`` the Couinaud segment
  ``liver_segment_<S>``), else :class:`~latplan.imaging.errors.LesionOutsideOrganError` naming the
  fraction. Without a centre the lesion is placed at the organ's (segment's) deepest organ-like point from
  which it stays inside the image (:func:`_default_centre_mm`), or a named error asks for a centre.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

from latplan.case import Case, LabelTable
from latplan.case.labels import LabelEntry
from latplan.case.vocabulary import StructureRole
from latplan.errors import EmptyStructureError, InvalidInputError, UnknownStructureError
from latplan.imaging.errors import LesionOutsideOrganError, LesionSizeError
from latplan.imaging.volume import Volume

__all__ = [
    "LESION_CONTRAST_HU",
    "MAX_LESION_DIAMETER_MM",
    "MIN_INSIDE_FRACTION",
    "MIN_LESION_VOXELS",
    "derivation_description",
    "insert_lesion",
    "lesion_shape_mask",
]

#: hypodense metastasis vs enhanced liver parenchyma (portal-venous CT), HU below liver median
LESION_CONTRAST_HU = 45.0
#: non-CT images: lesion intensity as a fraction of the liver median
LESION_RELATIVE_INTENSITY = 0.7
#: fallback noise (HU) when no liver is labelled; noise spread is clipped to this range
NOISE_HU_DEFAULT, NOISE_HU_MIN, NOISE_HU_MAX = 10.0, 3.0, 30.0
#: fallback lesion value when the case has no liver label (CT)
LESION_HU_NO_LIVER = 40.0
#: fewer voxels than this cannot be measured (diameter, sphericity) meaningfully
MIN_LESION_VOXELS = 8
#: largest synthetic lesion (mm): beyond any liver (craniocaudal span ≈ 15–20 cm); a rendering bound
MAX_LESION_DIAMETER_MM = 200.0
#: share of the lesion's voxels that must lie in the target organ (issue [L]: ≥ 95 %)
MIN_INSIDE_FRACTION = 0.95
#: blob (lobulated) shape: relative amplitude of the radial modulation
BLOB_AMPLITUDE = 0.18

#: default centre: clearance (mm) beyond the lesion radius to the image's face voxels, when the image allows it
EDGE_CLEARANCE_MM = 5.0
#: default centre: organ-like voxels lie within this many robust spreads of the organ's median intensity
ORGAN_LIKE_SPREADS = 2.5

_SHAPES = ("sphere", "ellipsoid", "blob")


def _blob_radius_factor(directions: np.ndarray, seed: int) -> np.ndarray:
    """Radial factor in (0, 1] for unit ``directions`` (..., 3): smooth random lobulation, max 1."""
    rng = np.random.default_rng(seed)
    n_lobes = 5
    axes = rng.normal(size=(n_lobes, 3))
    axes /= np.linalg.norm(axes, axis=1, keepdims=True)
    freq = rng.uniform(1.5, 3.0, size=n_lobes)
    phase = rng.uniform(0, 2 * np.pi, size=n_lobes)
    mod = np.zeros(directions.shape[:-1])
    for a, f, ph in zip(axes, freq, phase, strict=True):
        mod += np.cos(f * np.arccos(np.clip(directions @ a, -1, 1)) * 2 + ph)
    mod /= n_lobes
    factor = 1.0 + BLOB_AMPLITUDE * mod
    # normalise so the largest possible radius is exactly 1 (bound: 1 + amplitude)
    return factor / (1.0 + BLOB_AMPLITUDE)


def lesion_shape_mask(
    grid: Volume,
    center_mm: Sequence[float],
    diameter_mm: float,
    shape: str = "sphere",
    axes_mm: Sequence[float] | None = None,
    seed: int = 0,
) -> np.ndarray:
    """Boolean (k, j, i) mask of the lesion shape on ``grid`` (voxel centres inside the shape)."""
    c = np.asarray(center_mm, dtype=float)
    if c.shape != (3,) or not np.all(np.isfinite(c)):
        raise InvalidInputError(f"center_mm must be three finite numbers (x, y, z in LPS mm); got {center_mm!r}.")
    if shape not in _SHAPES:
        raise InvalidInputError(f"unknown lesion shape {shape!r}; use one of {', '.join(_SHAPES)}.")
    if shape == "ellipsoid":
        if axes_mm is None:
            raise InvalidInputError("an ellipsoid needs axes_mm: its three full diameters (mm) along x, y, z.")
        semi = np.asarray(axes_mm, dtype=float) / 2.0
        if semi.shape != (3,) or np.any(~np.isfinite(semi)) or np.any(semi <= 0):
            raise InvalidInputError(f"axes_mm must be three positive diameters in mm; got {axes_mm!r}.")
    else:
        if not np.isfinite(diameter_mm) or diameter_mm <= 0:
            raise InvalidInputError(f"diameter_mm must be a positive number of mm; got {diameter_mm!r}.")
        semi = np.full(3, diameter_mm / 2.0)
    r_max = float(semi.max())
    # bounding box in index space from the 8 corners of the mm box
    offs = np.array([[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)], dtype=float) * (r_max + 1e-6)
    idx = grid.mm_to_index(c + offs)
    lo = np.maximum(np.floor(idx.min(axis=0)).astype(int), 0)
    hi = np.minimum(np.ceil(idx.max(axis=0)).astype(int) + 1, np.asarray(grid.shape))
    mask = np.zeros(grid.shape, dtype=bool)
    if np.any(hi <= lo):
        return mask
    kk, jj, ii = np.meshgrid(*(np.arange(a, b) for a, b in zip(lo, hi, strict=True)), indexing="ij")
    pts = grid.index_to_mm(np.stack([kk, jj, ii], axis=-1)) - c
    if shape == "blob":
        r = np.linalg.norm(pts, axis=-1)
        with np.errstate(invalid="ignore", divide="ignore"):
            dirs = np.where(r[..., None] > 0, pts / np.maximum(r[..., None], 1e-12), np.array([0.0, 0.0, 1.0]))
        inside = r <= r_max * _blob_radius_factor(dirs, seed)
    else:
        inside = np.sum((pts / semi) ** 2, axis=-1) <= 1.0
    mask[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]] = inside
    return mask


def _next_lesion_id(table: LabelTable) -> str:
    nums = [int(m.group(1)) for n in table.names() if (m := re.fullmatch(r"lesion_(\d+)", n))]
    return f"lesion_{max(nums, default=0) + 1}"


def derivation_description(lesion_ids: Sequence[str], diameter_mm: float, shape: str) -> str:
    """DICOM DerivationDescription of an image with inserted synthetic lesion(s)."""
    return (f"latplan insert-lesion: synthetic {shape} lesion {', '.join(lesion_ids)} ({diameter_mm:g} mm) inserted "
            "into the source image; not an acquired image")


def _radius_mm(diameter_mm: float, shape: str, axes_mm: Sequence[float] | None) -> float:
    """Largest half-extent of the requested shape (mm)."""
    if shape == "ellipsoid" and axes_mm is not None:
        return float(max(float(x) for x in axes_mm)) / 2.0
    return float(diameter_mm) / 2.0


def _check_size(diameter_mm: float, shape: str, axes_mm: Sequence[float] | None) -> None:
    sizes = [float(x) for x in axes_mm] if shape == "ellipsoid" and axes_mm is not None else [float(diameter_mm)]
    bad = [x for x in sizes if not np.isfinite(x) or x <= 0 or x > MAX_LESION_DIAMETER_MM]
    if bad and not (shape == "ellipsoid" and axes_mm is None):
        raise LesionSizeError(
            f"lesion size {bad[0]} mm is outside (0, {MAX_LESION_DIAMETER_MM:.0f}] mm; give the full diameter "
            "(sphere, blob) or the three axes (ellipsoid) in mm."
        )


def _target_mask(case: Case, organ: str, segment: str | None) -> tuple[np.ndarray, str]:
    """Voxels of the target organ (liver = liver + its segments) or of one Couinaud segment."""
    if segment is not None:
        name = f"liver_segment_{str(segment).strip().lower()}"
        if not case.has(name):
            present = [n for n in case.structure_names() if n.startswith("liver_segment_")]
            raise UnknownStructureError(
                f"segment {segment!r}: this case has no {name} (segments present: {', '.join(present) or 'none'}). "
                "Segment the liver (e.g. TotalSegmentator --task liver_segments) or omit --segment."
            )
        return case.mask_array(name), name
    if not case.has(organ):
        raise UnknownStructureError(
            f"target organ {organ!r} is not segmented in this case (present: {', '.join(case.structure_names())}); "
            "a synthetic lesion must be placed in a labelled organ."
        )
    mask = case.mask_array(organ)
    if organ == "liver":
        seg_values = [e.value for e in case.label_table.entries if e.role == StructureRole.LIVER_SEGMENT]
        mask = mask | np.isin(case.labels.array, seg_values)
    return mask, organ


def _organ_like(case: Case, mask: np.ndarray) -> np.ndarray:
    """Voxels of ``mask`` whose locally averaged (3 × 3 × 3) intensity lies within
    ``ORGAN_LIKE_SPREADS`` robust spreads of the organ's median: a segmentation that also holds fat or air at
    its edge (the dcmqi liver SEG: 10 % of its voxels below −20 HU) does not attract the default centre."""
    from scipy import ndimage

    vox = case.image.array[mask]
    if vox.size < 10:
        return mask
    med = float(np.median(vox))
    spread = max(float(1.4826 * np.median(np.abs(vox - med))), NOISE_HU_MIN)
    smooth = ndimage.uniform_filter(case.image.array.astype(np.float32), size=3, mode="nearest")
    like = mask & (np.abs(smooth - med) <= ORGAN_LIKE_SPREADS * spread)
    return like if like.any() else mask


def _edge_distance_mm(shape: tuple[int, int, int], spacing_kji: np.ndarray, offset_voxels: float = 0.0) -> np.ndarray:
    """Per voxel: distance (mm) from its centre to the nearest centre of a voxel on the image's faces
    (``offset_voxels`` 0.5: to the image's outer faces, its physical extent)."""
    out = np.full(shape, np.inf)
    for axis, (n, s) in enumerate(zip(shape, spacing_kji, strict=True)):
        k = np.arange(n, dtype=float)
        d = (np.minimum(k, n - 1 - k) + offset_voxels) * float(s)
        view = [1, 1, 1]
        view[axis] = n
        out = np.minimum(out, d.reshape(view))
    return out


def _default_centre_mm(case: Case, mask: np.ndarray, radius_mm: float, target_name: str) -> np.ndarray:
    """The default lesion centre: the deepest organ-like point (:func:`_organ_like`) from which a lesion of
    ``radius_mm`` stays inside the image.

    The organ depth is measured to the organ's surface the image shows (the image edge is not a surface:
    a liver cut by the field of view continues beyond it). The image edge is a separate limit, tried in
    order: the lesion clears the faces by ``EDGE_CLEARANCE_MM`` more than its radius; it does not touch the
    voxels on the faces (measurement would mark it ``truncated_by_fov``); it fits within the image's
    physical extent (an image thinner than the lesion: the lesion reaches the face layer and is measured
    as cut). Within a limit, a centre deep enough to hold the whole lesion in the organ wins; otherwise the
    deepest one (the ≥ 95 % inside check decides). No centre within any limit → :class:`LesionOutsideOrganError`
    asking for ``--at``. (Round 2 took the argmax of the depth alone: on a scan cutting the liver it lay on
    the cut face, half a lesion; padding the mask instead made every voxel of a 3-slice image tie at the
    slab's half-thickness and the first in raster order, at the SEG's fatty edge (−58 HU), won.)"""
    from scipy import ndimage

    spacing = case.image.spacing_kji_mm
    like = _organ_like(case, mask)
    depth = ndimage.distance_transform_edt(like, sampling=spacing)
    edge = _edge_distance_mm(mask.shape, spacing)
    faces = _edge_distance_mm(mask.shape, spacing, 0.5)
    limits = (edge >= radius_mm + EDGE_CLEARANCE_MM, edge > radius_mm + 1e-6, faces >= radius_mm - 1e-6)
    for fits_wholly in (True, False):
        for allowed in limits:
            ok = like & allowed
            if fits_wholly:
                ok &= depth >= radius_mm
            if ok.any():
                score = np.where(ok, depth, -1.0)
                return case.image.index_to_mm(np.asarray(np.unravel_index(int(np.argmax(score)), mask.shape), float))
    extent = np.round(np.asarray(mask.shape) * spacing, 1).tolist()
    raise LesionOutsideOrganError(
        f"no default centre: a lesion of {2 * radius_mm:g} mm does not fit inside this image ({extent} mm along "
        f"k, j, i) within {target_name}. Pass --at X Y Z (mm, LPS) to place it yourself (a lesion cut by the image "
        "edge is measured as truncated), or use a smaller --diameter-mm."
    )


def _check_centre(case: Case, c: np.ndarray) -> None:
    if c.shape != (3,) or not np.all(np.isfinite(c)):
        raise InvalidInputError(f"the lesion centre must be three finite numbers X Y Z (mm, LPS); got {c.tolist()}.")
    kji = case.image.mm_to_index(c)
    if np.any(kji < -0.5) or np.any(kji > np.asarray(case.image.shape) - 0.5):
        lo = case.image.index_to_mm(np.zeros(3))
        hi = case.image.index_to_mm(np.asarray(case.image.shape) - 1.0)
        raise InvalidInputError(
            f"lesion centre {np.round(c, 1).tolist()} mm (LPS) lies outside the image, which spans "
            f"{np.round(np.minimum(lo, hi), 1).tolist()} .. {np.round(np.maximum(lo, hi), 1).tolist()} mm. "
            "Coordinates are DICOM patient LPS (x to the left, y posterior, z superior)."
        )


def _lesion_intensity(case: Case, claim: np.ndarray, hu: float | None, seed: int) -> np.ndarray:
    img = case.image.array.astype(np.float32, copy=True)
    labels = case.labels.array
    liver_values = [e.value for e in case.label_table.entries if e.role == StructureRole.LIVER]
    liver_vox = img[np.isin(labels, liver_values)] if liver_values else np.empty(0, np.float32)
    is_ct = str(case.image_modality).upper() == "CT"
    if liver_vox.size >= 10:
        med = float(np.median(liver_vox))
        spread = float(1.4826 * np.median(np.abs(liver_vox - med)))
        noise = float(np.clip(spread, NOISE_HU_MIN, NOISE_HU_MAX)) if is_ct else spread
        mean = med - LESION_CONTRAST_HU if is_ct else med * LESION_RELATIVE_INTENSITY
    else:
        noise = NOISE_HU_DEFAULT if is_ct else 0.0
        mean = LESION_HU_NO_LIVER
    if hu is not None:
        if not np.isfinite(hu):
            raise InvalidInputError(f"hu must be a finite number; got {hu!r}.")
        mean = float(hu)
    rng = np.random.default_rng(seed)
    img[claim] = (mean + noise * rng.standard_normal(int(claim.sum()))).astype(np.float32)
    return img


def insert_lesion(
    case: Case,
    center_mm: Sequence[float] | None,
    diameter_mm: float,
    shape: str = "sphere",
    axes_mm: Sequence[float] | None = None,
    lesion_id: str | None = None,
    seed: int = 0,
    hu: float | None = None,
    overwrite: str = "liver",
    organ: str = "liver",
    segment: str | None = None,
    min_inside_fraction: float = MIN_INSIDE_FRACTION,
) -> Case:
    """Return a new Case with a synthetic hypodense lesion ``lesion_N`` added (input unchanged).

    Parameters
    ----------
    case:
        The case (image + labels) to add the lesion to.
    center_mm:
        Lesion centre, LPS mm (x, y, z); None = the deepest point of the target organ / segment.
    diameter_mm:
        Full diameter (sphere) or largest extent (blob), mm. Ignored for ellipsoids.
    shape:
        ``"sphere"``, ``"ellipsoid"`` (needs ``axes_mm``) or ``"blob"`` (lobulated, from ``seed``).
    axes_mm:
        Ellipsoid full diameters along x, y, z (mm).
    lesion_id:
        Name of the new structure; default the next free ``lesion_N``.
    seed:
        Seed of the noise and of the blob's lobulation (deterministic output).
    hu:
        Mean lesion intensity (HU for CT); default liver median − 45 HU.
    overwrite:
        ``"liver"`` (default: claim only background and liver voxels) or ``"all"``.
    organ, segment:
        Target organ (default the liver, with its segments) or Couinaud segment (``"6"`` →
        ``liver_segment_6``) that must hold ≥ ``min_inside_fraction`` of the lesion's voxels.
    """
    if overwrite not in ("liver", "all"):
        raise InvalidInputError(f"overwrite must be 'liver' or 'all'; got {overwrite!r}.")
    _check_size(diameter_mm, shape, axes_mm)
    target, target_name = _target_mask(case, organ, segment)
    c = (_default_centre_mm(case, target, _radius_mm(diameter_mm, shape, axes_mm), target_name) if center_mm is None
         else np.asarray(center_mm, dtype=float))
    _check_centre(case, c)
    name = lesion_id or _next_lesion_id(case.label_table)
    if not (name == "lesion" or name.startswith("lesion_")):
        raise UnknownStructureError(f"lesion_id must be 'lesion_<id>' (e.g. lesion_3); got {name!r}.")
    if name in case.label_table:
        raise InvalidInputError(f"{name!r} already exists in this case; choose another lesion_id (or omit it).")
    shape_mask = lesion_shape_mask(case.image, [float(x) for x in c], diameter_mm, shape, axes_mm, seed)
    labels = case.labels.array
    if overwrite == "liver":
        allowed_values = [0] + [
            e.value for e in case.label_table.entries if e.role in (StructureRole.LIVER, StructureRole.LIVER_SEGMENT)
        ]
        claim = shape_mask & np.isin(labels, allowed_values)
    else:
        claim = shape_mask
    n = int(claim.sum())
    if n < MIN_LESION_VOXELS:
        raise EmptyStructureError(
            f"the lesion would cover {n} voxel(s) (shape has {int(shape_mask.sum())}, the rest belongs to other "
            f"structures): fewer than {MIN_LESION_VOXELS}, too small to measure on "
            f"{np.round(case.image.spacing_mm, 2).tolist()} mm voxels. Use a larger diameter, move the centre into "
            "the liver, or overwrite='all'."
        )
    inside = float(np.count_nonzero(claim & target)) / n
    if inside < min_inside_fraction:
        raise LesionOutsideOrganError(
            f"only {inside * 100:.1f} % of the lesion ({n} voxels at {np.round(c, 1).tolist()} mm) would lie in "
            f"{target_name}; at least {min_inside_fraction * 100:.0f} % must. Move the centre deeper into "
            f"{target_name}, make the lesion smaller, or omit --at to place it at the deepest point."
        )
    img = _lesion_intensity(case, claim, hu, seed)
    new_labels = labels.astype(np.int32, copy=True)
    value = int(max([e.value for e in case.label_table.entries] + [int(labels.max()) if labels.size else 0])) + 1
    new_labels[claim] = value
    table = LabelTable([*case.label_table.entries, LabelEntry(value, name, StructureRole.LESION, name)])
    return Case(
        patient=case.patient,
        image=case.image.with_array(img),
        labels=case.labels.with_array(new_labels),
        label_table=table,
        source_dir=None,
        input_hashes=dict(case.input_hashes),
        image_modality=case.image_modality,
    )
