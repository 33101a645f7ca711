"""`Case`: the image, its label map, the label table and the patient — one planning input.

Lesions are labelled structures whose role is ``lesion``; their id is the structure name
(``lesion_1``...). Masks are computed on demand from the label map and always come back
as :class:`~latplan.imaging.Volume` on the image grid.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from latplan.case.labels import LabelTable
from latplan.case.patient import Patient
from latplan.case.vocabulary import StructureRole
from latplan.errors import EmptyStructureError, UnknownStructureError
from latplan.imaging.volume import Volume


@dataclass(frozen=True)
class Structure:
    """A named structure with its role and boolean mask (on the case grid)."""

    name: str
    role: StructureRole
    mask: Volume

    @property
    def volume_ml(self) -> float:
        return float(np.count_nonzero(self.mask.array)) * self.mask.voxel_volume_ml


@dataclass(eq=False)
class Case:
    """One patient's planning input. ``labels`` must share ``image``'s geometry."""

    patient: Patient
    image: Volume
    labels: Volume
    label_table: LabelTable
    source_dir: Path | None = None
    input_hashes: dict[str, str] = field(default_factory=dict)
    image_modality: str = "CT"
    #: what was adapted while loading (labels resampled, empty structures...), shown in reports
    notes: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.image.require_same_geometry(self.labels, "image and label map")
        if self.labels.array.dtype.kind not in "iu":
            arr = self.labels.array
            if not np.allclose(arr, np.round(arr)):
                raise UnknownStructureError("the label map holds non-integer values; it must be an integer label image.")
            self.labels = self.labels.with_array(np.round(arr).astype(np.int32))
        self._mask_cache: dict[str, np.ndarray] = {}
        self._names: list[str] | None = None

    # --- structures ---------------------------------------------------------------------------
    def structure_names(self) -> list[str]:
        """Names in the label table whose mask is not empty (plus a derived ``liver``, see :meth:`mask_array`)."""
        if self._names is None:
            present = set(np.unique(self.labels.array).tolist())
            names = [n for n in self.label_table.names() if any(v in present for v in self.label_table.values_for(n))]
            if "liver" not in names and any(n.startswith("liver_segment_") for n in names):
                names.insert(0, "liver")
            self._names = names
        return list(self._names)

    def _segment_values(self) -> list[int]:
        return [e.value for e in self.label_table.entries if e.name.startswith("liver_segment_")]

    def has(self, name: str) -> bool:
        return name in self.structure_names()

    def mask_array(self, name: str) -> np.ndarray:
        """Boolean mask array (k, j, i) of a structure; raises if it is not in the label table."""
        if name not in self._mask_cache:
            values = self.label_table.values_for(name)
            if name == "liver" and not values:
                # A label map that holds Couinaud segments instead of one liver label (one label per
                # voxel): the liver is the union of its segments (lesions are not included).
                values = self._segment_values()
            if not values:
                raise UnknownStructureError(
                    f"structure {name!r} is not in this case's label table; present: {', '.join(self.label_table.names())}."
                )
            self._mask_cache[name] = np.isin(self.labels.array, values)
        return self._mask_cache[name]

    def mask(self, name: str) -> Volume:
        return self.labels.with_array(self.mask_array(name))

    def role(self, name: str) -> StructureRole:
        """Role of a structure present in this case (the derived ``liver`` is role liver)."""
        if name == "liver" and "liver" not in self.label_table and self._segment_values():
            return StructureRole.LIVER
        return self.label_table.role(name)

    def structure(self, name: str) -> Structure:
        return Structure(name, self.role(name), self.mask(name))

    def names_with_role(self, role: StructureRole) -> list[str]:
        return [n for n in self.structure_names() if self.role(n) == role]

    @property
    def lesion_ids(self) -> list[str]:
        return self.names_with_role(StructureRole.LESION)

    def lesion_mask(self, lesion_id: str) -> Volume:
        if lesion_id not in self.label_table.lesion_names():
            raise UnknownStructureError(f"no lesion {lesion_id!r} in this case; lesions: {', '.join(self.lesion_ids) or 'none'}.")
        m = self.mask(lesion_id)
        if not m.array.any():
            raise EmptyStructureError(f"lesion {lesion_id!r} has an empty mask: it has no voxels on the label map.")
        return m
