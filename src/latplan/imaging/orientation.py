"""Re-orient a `Volume` without changing its physical content (metamorphic-test helper).

Why: every distance and size latplan reports is in mm and must not depend on how the
scanner stored the voxels. :func:`reorient` permutes and flips the *array* axes and
rewrites the affine so that each voxel keeps its LPS position; [A2]'s invariance tests
run the same measurement on all 48 storage orders (6 permutations × 8 flip patterns).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from itertools import permutations, product

import numpy as np

from latplan.errors import InvalidInputError
from latplan.imaging.volume import Volume

__all__ = ["all_orientations", "axis_codes", "reorient", "reorient_case"]


def _check(permutation: Sequence[int], flips: Sequence[bool]) -> tuple[tuple[int, int, int], tuple[bool, bool, bool]]:
    perm = tuple(int(p) for p in permutation)
    if sorted(perm) != [0, 1, 2]:
        raise InvalidInputError(f"permutation must be an ordering of the array axes (0, 1, 2); got {tuple(permutation)}.")
    fl = tuple(bool(f) for f in flips)
    if len(fl) != 3:
        raise InvalidInputError(f"flips needs one flag per array axis (3); got {len(fl)}.")
    return perm, fl  # type: ignore[return-value]


def reorient(volume: Volume, permutation: Sequence[int] = (0, 1, 2), flips: Sequence[bool] = (False, False, False)) -> Volume:
    """Store ``volume`` in another axis order/direction, same physical content.

    Parameters
    ----------
    volume:
        Input volume (array indexed (k, j, i)).
    permutation:
        New array axis ``a`` is old array axis ``permutation[a]`` (numpy ``transpose`` semantics,
        array-axis order (k, j, i)).
    flips:
        After the transpose, reverse new array axis ``a`` when ``flips[a]`` is true.

    Returns
    -------
    Volume
        ``new.index_to_mm(idx)`` of every voxel equals the old position of the same value, so
        any mm-based measurement is unchanged (up to floating-point rounding).
    """
    perm, fl = _check(permutation, flips)
    arr = np.transpose(volume.array, perm)
    for axis, f in enumerate(fl):
        if f:
            arr = np.flip(arr, axis=axis)
    arr = np.ascontiguousarray(arr)
    # old affine column for array axis ax (k, j, i) is affine[:3, 2 - ax]
    old = volume.affine
    new = np.eye(4)
    old_index_of_new_origin = np.zeros(3)
    for a in range(3):
        step = old[:3, 2 - perm[a]].copy()
        if fl[a]:
            step = -step
            old_index_of_new_origin[perm[a]] = volume.shape[perm[a]] - 1
        new[:3, 2 - a] = step
    new[:3, 3] = volume.index_to_mm(old_index_of_new_origin)
    return Volume(arr, new)


def all_orientations() -> Iterator[tuple[tuple[int, int, int], tuple[bool, bool, bool]]]:
    """Every (permutation, flips) pair: 6 × 8 = 48 storage orders of the same content."""
    for perm in permutations(range(3)):
        for fl in product((False, True), repeat=3):
            yield perm, fl  # type: ignore[misc]


def axis_codes(volume: Volume) -> str:
    """Orientation code of the (i, j, k) axes, e.g. ``"LPS"`` or ``"RAS"`` (dominant direction).

    Letters name the patient direction each index axis *increases* towards (DICOM/ITK
    convention: "LPS" = i towards patient left, j posterior, k superior).
    """
    letters = (("R", "L"), ("A", "P"), ("I", "S"))
    out = []
    for col in volume.direction.T:
        ax = int(np.argmax(np.abs(col)))
        out.append(letters[ax][1] if col[ax] > 0 else letters[ax][0])
    return "".join(out)


def reorient_case(case: object, permutation: Sequence[int], flips: Sequence[bool]) -> object:
    """Return a copy of a `latplan.case.Case` with image and labels reoriented alike."""
    from latplan.case import Case

    if not isinstance(case, Case):
        raise InvalidInputError(f"reorient_case needs a latplan Case; got {type(case).__name__}.")
    return Case(
        patient=case.patient,
        image=reorient(case.image, permutation, flips),
        labels=reorient(case.labels, permutation, flips),
        label_table=case.label_table,
        source_dir=case.source_dir,
        input_hashes=dict(case.input_hashes),
        image_modality=case.image_modality,
    )
