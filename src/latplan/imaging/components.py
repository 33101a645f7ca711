"""Lesions as connected components: two lesions in one label are two lesions.

Why: automatic segmenters (TotalSegmentator's ``liver_tumor``, nnU-Net lesion tasks, a SEG with
one "Neoplasm" segment, an RTSTRUCT "GTV" with two contours) deliver every lesion of a liver in
one label. Measured as one structure they give a false volume and a Feret diameter spanning both
(11.42 ml, 58.4 mm for two separate 2 cm metastases). Each lesion label is therefore split into
its 26-connected components when the case is loaded, whatever the input format:

- the largest component keeps the label's name (``lesion_1``); the others are named
  ``<name>_2``, ``<name>_3``... in decreasing size (ties: first voxel in array order) and get
  new label values above the largest one in use;
- components smaller than ``min_voxels`` (the size floor, default
  :data:`~latplan.imaging.insert.MIN_LESION_VOXELS`) are not lesions of their own: they stay
  with the largest component (their voxels are not relabelled) and a note says so;
- every split is reported in a note naming the label, the new ids and their volumes.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from latplan.case.labels import LabelEntry, LabelTable
from latplan.case.vocabulary import StructureRole
from latplan.imaging.insert import MIN_LESION_VOXELS
from latplan.imaging.volume import Volume

__all__ = ["MIN_COMPONENT_VOXELS", "split_lesion_components"]

#: size floor of a separate lesion (voxels): the smallest lesion latplan measures
MIN_COMPONENT_VOXELS = MIN_LESION_VOXELS
_STRUCTURE_26 = np.ones((3, 3, 3), dtype=bool)


def _components(mask: np.ndarray) -> tuple[np.ndarray, list[int]]:
    """Component map and component ids ordered by decreasing size (ties by first voxel)."""
    comp, n = ndimage.label(mask, structure=_STRUCTURE_26)
    if n <= 1:
        return comp, list(range(1, n + 1))
    sizes = np.bincount(comp.ravel())[1:]
    first = ndimage.minimum(np.arange(comp.size).reshape(comp.shape), comp, index=np.arange(1, n + 1))
    order = sorted(range(1, n + 1), key=lambda c: (-int(sizes[c - 1]), float(first[c - 1])))
    return comp, order


def split_lesion_components(
    labels: Volume, table: LabelTable, notes: list[str] | None = None, min_voxels: int = MIN_COMPONENT_VOXELS
) -> tuple[Volume, LabelTable]:
    """Split every lesion label into connected components (see module docstring)."""
    arr = np.asarray(labels.array)
    out: np.ndarray | None = None
    entries = list(table.entries)
    taken = {e.name for e in entries}
    next_value = max([int(arr.max()) if arr.size else 0, *(e.value for e in entries)]) + 1
    ml_per_voxel = labels.voxel_volume_ml
    for name in table.lesion_names():
        values = table.values_for(name)
        mask = np.isin(arr, values)
        comp, order = _components(mask)
        if len(order) <= 1:
            continue
        sizes = {c: int(np.count_nonzero(comp == c)) for c in order}
        big = [c for c in order[1:] if sizes[c] >= min_voxels]
        small = [c for c in order[1:] if sizes[c] < min_voxels]
        if small and notes is not None:
            notes.append(
                f"lesion {name!r}: {len(small)} fragment(s) below the size floor of {min_voxels} voxels "
                f"({sum(sizes[c] for c in small)} voxel(s)) are kept with its largest component, not counted as lesions."
            )
        if not big:
            continue
        if out is None:
            out = arr.copy()
        source = next(e for e in entries if e.name == name)
        new_ids = []
        for rank, c in enumerate(big, start=2):
            new_name = f"{name}_{rank}"
            while new_name in taken:
                new_name += "b"
            taken.add(new_name)
            out[comp == c] = next_value
            entries.append(LabelEntry(next_value, new_name, StructureRole.LESION, source.source_name))
            new_ids.append(f"{new_name} ({sizes[c] * ml_per_voxel:.2f} ml, label {next_value})")
            next_value += 1
        if notes is not None:
            notes.append(
                f"lesion label {name!r} (value {', '.join(str(v) for v in values)}) holds {len(big) + 1} separate "
                f"connected components (26-connected): measured as {len(big) + 1} lesions — {name} "
                f"({sizes[order[0]] * ml_per_voxel:.2f} ml), {', '.join(new_ids)}."
            )
    if out is None:
        return labels, table
    return labels.with_array(out), LabelTable(entries)
