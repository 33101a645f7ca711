"""Field of view: what the image edge hides, body/skin from the image, paths that can be verified.

Why: a scan ends somewhere. Taking the grid edge as anatomy made a lesion 22.6 mm from the real
liver boundary "3.0 mm to the capsule, subcapsular", and with no body label the grid edge became
the skin, so needle entries lay on (or beyond) the top face of the scan and were called safe.
The functions here are for :class:`latplan.anatomy.geometry.CaseGeometry`, the measurements and
the trajectory planners (they hold no clinical numbers):

- :func:`touches_image_edge`: a structure touching the edge of the image is (possibly) truncated;
- :func:`capsule_distance_in_fov`: lesion → liver surface distance using only liver surface that is
  *inside* the image (never the grid edge), plus whether the edge is nearer than that surface (the
  true value may then be smaller: ``limited_by_fov``), and the distance to that edge (a lower bound);
- :func:`body_mask_from_image`: body from the image when there is no body label — CT voxels above
  :data:`BODY_HU_THRESHOLD` (air −1000 HU, lung ≈ −850…−500, fat ≈ −100; Hounsfield scale), MR
  above Otsu's threshold of the intensity histogram (Otsu N, IEEE Trans Syst Man Cybern
  1979;9:62–66); each axial slice's holes are filled (lungs, bowel gas) and the largest 3-D
  component is kept;
- :func:`path_inside_image_and_through_body`: walks a straight path from the target outwards; it is
  verifiable only if the path leaves the body *inside* the image (the abdominal wall is shown), and
  returns the skin point there.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage

from latplan.errors import InvalidInputError
from latplan.imaging.volume import Volume

__all__ = [
    "BODY_HU_THRESHOLD",
    "FovDistance",
    "PathCheck",
    "body_mask_from_image",
    "capsule_distance_in_fov",
    "edge_faces",
    "face_name",
    "faces_reached_beyond",
    "faces_touched",
    "path_inside_image_and_through_body",
    "skin_mask",
    "touches_image_edge",
]

#: CT: voxels above this (HU) are body (between lung parenchyma and air; −400 as anatomy's body map)
BODY_HU_THRESHOLD = -400.0
#: path sampling step as a fraction of the smallest voxel spacing
_STEP_FRACTION = 0.5

BoolArray = NDArray[np.bool_]


def edge_faces(mask: BoolArray) -> list[str]:
    """Faces of the array the mask touches: ``k0``, ``k1``, ``j0``, ``j1``, ``i0``, ``i1``."""
    m = np.asarray(mask, bool)
    faces = {"k0": m[0], "k1": m[-1], "j0": m[:, 0], "j1": m[:, -1], "i0": m[:, :, 0], "i1": m[:, :, -1]}
    return [name for name, face in faces.items() if face.any()]


#: LPS axis → (words for +, words for −)
_LPS_SIDES = (("left", "right"), ("posterior", "anterior"), ("superior", "inferior"))


def face_name(affine: NDArray[np.float64], ax: int, upper: bool) -> str:
    """Anatomical side of the image face at the lower/upper end of index axis ``ax`` (k, j, i), from the
    grid's direction (DICOM LPS): ``"left (i = last slice)"``."""
    col = np.asarray(affine, float)[:3, 2 - ax] * (1.0 if upper else -1.0)
    d = int(np.argmax(np.abs(col)))
    return f"{_LPS_SIDES[d][0 if col[d] > 0 else 1]} ({'kji'[ax]} = {'last' if upper else 'first'} slice)"


def faces_touched(mask: BoolArray, affine: NDArray[np.float64], lo: tuple[int, int, int] = (0, 0, 0),
                  image_shape: tuple[int, ...] | None = None) -> list[str]:
    """The image faces ``mask`` touches (:func:`face_name` each). ``mask`` may lie on a crop starting at index
    ``lo`` of an image of ``image_shape`` (default: the mask is the whole image): only the crop's faces that are
    the image's count."""
    n_img = mask.shape if image_shape is None else image_shape
    out = []
    for ax in range(3):
        for upper in (False, True):
            at_edge = lo[ax] + mask.shape[ax] == n_img[ax] if upper else lo[ax] == 0
            if at_edge and np.take(mask, mask.shape[ax] - 1 if upper else 0, axis=ax).any():
                out.append(face_name(affine, ax, upper))
    return out


def faces_reached_beyond(mask: BoolArray, reach_mm: float, spacing_kji_mm: NDArray[np.float64],
                         affine: NDArray[np.float64]) -> dict[str, float]:
    """{image face: mm} for each face that ``mask`` grown by ``reach_mm`` passes: how far the grown region
    would extend beyond the image (``reach_mm`` − the gap between the mask's outermost voxel and the face,
    both voxel boundaries). Why: a treatment region (lesion + target margin) that reaches past the edge of
    the scan cannot be checked there — what lies beyond is not shown."""
    idx = np.nonzero(np.asarray(mask, bool))
    if len(idx[0]) == 0:
        return {}
    h = np.asarray(spacing_kji_mm, float)
    out: dict[str, float] = {}
    for ax in range(3):
        n = mask.shape[ax]
        for upper, gap_vox in ((False, int(idx[ax].min())), (True, int(n - 1 - idx[ax].max()))):
            beyond = float(reach_mm) - gap_vox * float(h[ax])
            if beyond > 1e-9:
                out[face_name(affine, ax, upper)] = round(beyond, 1)
    return out


def touches_image_edge(mask: BoolArray) -> bool:
    """True when the structure reaches the edge of the image (the field of view may cut it)."""
    return bool(edge_faces(mask))


@dataclass(frozen=True)
class FovDistance:
    """A distance measured inside the image and whether the image edge limits it.

    ``distance_mm``: to the nearest structure surface shown in the image (None: none shown).
    ``limited_by_fov``: the image edge (inside the envelope) is nearer than that surface, so the true
    distance may be smaller — report "≥ ``edge_distance_mm`` (limited by the field of view)" or the
    number with the flag, never the number as the true value.
    ``edge_distance_mm``: distance to the nearest envelope voxel on the image edge (inf: not cut).
    """

    distance_mm: float | None
    limited_by_fov: bool
    edge_distance_mm: float


def _surface_points_mm(volume: Volume, envelope: BoolArray) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Envelope voxels next to a non-envelope voxel inside the image / on the image edge (mm)."""
    env = np.asarray(envelope, bool)
    inner = ndimage.binary_erosion(env, structure=ndimage.generate_binary_structure(3, 1), border_value=1)
    true_surface = env & ~inner
    on_edge = np.zeros_like(env)
    on_edge[0], on_edge[-1] = env[0], env[-1]
    on_edge[:, 0], on_edge[:, -1] = env[:, 0], env[:, -1]
    on_edge[:, :, 0], on_edge[:, :, -1] = env[:, :, 0], env[:, :, -1]
    return volume.index_to_mm(np.argwhere(true_surface)), volume.index_to_mm(np.argwhere(on_edge))


def capsule_distance_in_fov(volume: Volume, lesion: BoolArray, envelope: BoolArray) -> FovDistance:
    """Lesion → capsule distance (voxel centre to surface voxel centre, mm) from the surface inside the image.

    ``envelope``: the liver with everything inside it (vessels, lesions); its surface voxels that touch
    a non-envelope voxel *inside* the image are the capsule; voxels on the array edge are not.
    """
    from scipy.spatial import cKDTree

    les = np.asarray(lesion, bool)
    if not les.any():
        raise InvalidInputError("capsule_distance_in_fov needs a non-empty lesion mask.")
    lesion_pts = volume.index_to_mm(np.argwhere(les))
    capsule_pts, edge_pts = _surface_points_mm(volume, envelope)
    distance = float(cKDTree(capsule_pts).query(lesion_pts)[0].min()) if len(capsule_pts) else None
    edge = float(cKDTree(edge_pts).query(lesion_pts)[0].min()) if len(edge_pts) else float("inf")
    limited = distance is None or edge < distance
    return FovDistance(distance_mm=distance, limited_by_fov=bool(limited), edge_distance_mm=edge)


def _fill_slices(mask: BoolArray) -> BoolArray:
    out = np.zeros_like(mask)
    for k in range(mask.shape[0]):
        out[k] = ndimage.binary_fill_holes(mask[k])
    return out


def body_mask_from_image(image: Volume, modality: str) -> BoolArray:
    """Body from the image (no body label): CT HU threshold / MR Otsu; slice holes filled; largest component."""
    arr = np.asarray(image.array, float)
    if str(modality).upper() == "CT":
        raw = arr > BODY_HU_THRESHOLD
    else:
        from skimage.filters import threshold_otsu

        finite = arr[np.isfinite(arr)]
        if finite.size == 0 or float(finite.max()) <= float(finite.min()):
            return np.ones(arr.shape, bool)
        raw = arr > float(threshold_otsu(finite))
    filled = _fill_slices(raw)
    comp, n = ndimage.label(filled)
    if n == 0:
        return np.zeros(arr.shape, bool)
    sizes = np.bincount(comp.ravel())[1:]
    return np.asarray(comp == int(np.argmax(sizes)) + 1, bool)


def skin_mask(body: BoolArray) -> BoolArray:
    """Body voxels next to a non-body voxel inside the image (the skin shown by the image)."""
    b = np.asarray(body, bool)
    inner = ndimage.binary_erosion(b, structure=ndimage.generate_binary_structure(3, 1), border_value=1)
    return np.asarray(b & ~inner, bool)


@dataclass(frozen=True)
class PathCheck:
    """Can the straight path target → entry be checked on this image?

    ``verifiable``: the path leaves the body inside the image (the abdominal wall along it is shown).
    ``skin_point_mm``: where it leaves the body (LPS mm), None when not verifiable.
    ``entry_inside_image``: the planned entry lies inside the image.
    ``entry_to_skin_mm``: distance from the planned entry to ``skin_point_mm`` (None when unknown).
    ``reason``: why it cannot be verified (None when it can).
    """

    verifiable: bool
    skin_point_mm: tuple[float, float, float] | None
    entry_inside_image: bool
    entry_to_skin_mm: float | None
    reason: str | None


def _inside(volume: Volume, pts_mm: NDArray[np.float64]) -> NDArray[np.bool_]:
    idx = volume.mm_to_index(pts_mm)
    hi = np.asarray(volume.shape, float) - 0.5
    return np.asarray(np.all((idx >= -0.5) & (idx <= hi), axis=-1), bool)


def path_inside_image_and_through_body(
    image: Volume, body: BoolArray, target_mm: NDArray[np.float64] | tuple[float, float, float],
    entry_mm: NDArray[np.float64] | tuple[float, float, float],
) -> PathCheck:
    """Walk from the target along (entry − target) until the path leaves the body or the image."""
    t = np.asarray(target_mm, float)
    e = np.asarray(entry_mm, float)
    direction = e - t
    length = float(np.linalg.norm(direction))
    if length <= 0 or not np.all(np.isfinite(direction)):
        raise InvalidInputError("entry and target must be two different finite points (LPS mm).")
    direction /= length
    b = np.asarray(body, bool)
    entry_inside = bool(_inside(image, e[None])[0])
    step = _STEP_FRACTION * float(np.min(image.spacing_mm))
    diag = float(np.linalg.norm(np.asarray(image.shape, float) * image.spacing_kji_mm))
    s = np.arange(0.0, diag + length + step, step)
    pts = t + s[:, None] * direction
    inside = _inside(image, pts)
    if not inside[0]:
        return PathCheck(False, None, entry_inside, None, "the target lies outside the image")
    last = int(np.argmin(inside)) if not inside.all() else len(s)
    idx = np.clip(np.rint(image.mm_to_index(pts[:last])).astype(int), 0, np.asarray(image.shape) - 1)
    in_body = b[idx[:, 0], idx[:, 1], idx[:, 2]]
    out = np.nonzero(~in_body)[0]
    if out.size == 0:
        return PathCheck(False, None, entry_inside, None,
                         "the path reaches the edge of the image still inside the body: the image does not show "
                         "the abdominal wall along it (field of view), so the trajectory cannot be verified")
    skin = pts[max(int(out[0]) - 1, 0)]
    return PathCheck(True, (float(skin[0]), float(skin[1]), float(skin[2])), entry_inside,
                     float(np.linalg.norm(e - skin)), None)
