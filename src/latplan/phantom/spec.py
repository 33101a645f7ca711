"""Phantom spec (YAML): what the user writes to get a digital liver phantom case.

Validated with pydantic (``extra="forbid"``: an unknown key is an error naming the key).
Example::

    seed: 7
    voxel_mm: [2, 2, 2]          # x, y, z spacing in mm
    patient: {id: DEMO-01, primary: colorectal, primary_status: resected}
    lesions:
      - {id: lesion_1, segment: 8, diameter_mm: 28}
      - {id: lesion_2, segment: 3, diameter_mm: 30, abut: stomach, gap_mm: 1}

Lesion placement (decided here, documented in docs/phantom.md): a lesion lies in its
``segment`` (the segment holding its centre). Without ``center_mm``/``abut`` it goes to the
most spacious point of the segment (``placement: deep``) or to a point near the capsule and
away from vessels (``placement: peripheral``); ``border_with`` asks for the centre on the
border with another segment. ``abut`` + ``gap_mm`` places it that far (surface to surface)
from the named structure. Nothing is ever moved silently: an unsatisfiable request raises
:class:`~latplan.errors.PhantomSpecError`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from latplan.case import Patient
from latplan.errors import PhantomSpecError

SegmentCode = Literal["1", "2", "3", "4a", "4b", "5", "6", "7", "8"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _segment_str(v: object) -> object:
    if isinstance(v, int) and not isinstance(v, bool):
        return str(v)
    if isinstance(v, str):
        s = v.strip().lower()
        for prefix in ("liver_segment_", "segment_", "segment ", "s"):
            if s.startswith(prefix):
                s = s[len(prefix):]
        return s
    return v


class LesionSpec(_Strict):
    """One synthetic lesion. Sizes in mm; positions in LPS mm."""

    id: str = Field(pattern=r"^lesion_[A-Za-z0-9]+$", description="structure name, e.g. lesion_1")
    segment: SegmentCode | None = Field(default=None, description="Couinaud segment holding the lesion's centre")
    organ: Literal["liver", "lung_right", "lung_left", "kidney_right", "kidney_left", "spleen"] = Field(
        default="liver", description="organ holding the lesion; non-liver lesions are measured and counted, not planned")
    diameter_mm: float = Field(gt=2.0, le=150.0, description="sphere/lobulated: largest diameter")
    shape: Literal["sphere", "ellipsoid", "lobulated"] = "sphere"
    axes_mm: tuple[float, float, float] | None = Field(
        default=None, description="ellipsoid full diameters along x (L), y (P), z (S), mm")
    abut: str | None = Field(default=None, description="structure name the lesion is placed next to")
    gap_mm: float | None = Field(default=None, ge=0.0, le=50.0, description="surface-to-surface gap to `abut`")
    abut_min_calibre_mm: float | None = Field(
        default=None, gt=0.0, description="abut only the parts of the vessel at least this thick (mm)")
    center_mm: tuple[float, float, float] | None = Field(default=None, description="explicit centre (LPS mm)")
    placement: Literal["deep", "peripheral"] = "deep"
    border_with: SegmentCode | None = Field(default=None, description="centre on the border with this segment")

    _seg = field_validator("segment", "border_with", mode="before")(_segment_str)

    @model_validator(mode="after")
    def _consistent(self) -> LesionSpec:
        if self.organ == "liver" and self.segment is None:
            raise ValueError(f"{self.id}: a liver lesion needs segment (1, 2, 3, 4a, 4b, 5, 6, 7 or 8)")
        if self.organ != "liver":
            if self.segment is not None:
                raise ValueError(f"{self.id}: segment is for liver lesions; this lesion's organ is {self.organ}")
            if self.abut is not None or self.border_with is not None or self.placement != "deep":
                raise ValueError(f"{self.id}: a lesion in the {self.organ} takes only center_mm (or none: deepest place)")
        if self.shape == "ellipsoid":
            if self.axes_mm is None:
                raise ValueError(f"{self.id}: shape ellipsoid needs axes_mm [x, y, z] (full diameters, mm)")
            if min(self.axes_mm) <= 2.0:
                raise ValueError(f"{self.id}: ellipsoid axes_mm must all be > 2 mm; got {list(self.axes_mm)}")
        elif self.axes_mm is not None:
            raise ValueError(f"{self.id}: axes_mm is only used with shape: ellipsoid (shape is {self.shape})")
        if self.abut_min_calibre_mm is not None and self.abut is None:
            raise ValueError(f"{self.id}: abut_min_calibre_mm needs abut: <vessel name>")
        if self.gap_mm is not None and self.abut is None:
            raise ValueError(f"{self.id}: gap_mm needs abut: <structure name>")
        if self.abut is not None and self.center_mm is not None:
            raise ValueError(f"{self.id}: give either abut (+gap_mm) or center_mm, not both")
        if self.border_with is not None and (self.center_mm is not None or self.abut is not None):
            raise ValueError(f"{self.id}: border_with cannot be combined with center_mm or abut")
        if self.border_with is not None and self.border_with == self.segment:
            raise ValueError(f"{self.id}: border_with must name another segment than {self.segment}")
        return self

    @property
    def extent_radius_mm(self) -> float:
        """Largest distance (mm) from the centre to the lesion surface."""
        if self.shape == "ellipsoid":
            assert self.axes_mm is not None
            return max(self.axes_mm) / 2.0
        return self.diameter_mm / 2.0


class PhantomSpec(_Strict):
    """A whole phantom: seed, voxel size, patient record, lesions, options."""

    seed: int = Field(default=0, ge=0)
    voxel_mm: tuple[float, float, float] = Field(default=(2.0, 2.0, 2.0), description="x, y, z spacing (mm)")
    patient: Patient
    lesions: list[LesionSpec] = Field(default_factory=list)
    liver_segments: bool = Field(default=True, description="false: one 'liver' label, segments unknown")
    omit: list[str] = Field(default_factory=list, description="structures left unsegmented (still in the image)")
    field_of_view_mm: tuple[tuple[float, float, float], tuple[float, float, float]] | None = Field(
        default=None, description="[[x0, y0, z0], [x1, y1, z1]] LPS mm box to build (default: whole phantom)")
    description: str | None = None

    @field_validator("voxel_mm", mode="before")
    @classmethod
    def _voxel(cls, v: object) -> object:
        if isinstance(v, int | float):
            return (v, v, v)
        return v

    @model_validator(mode="after")
    def _check(self) -> PhantomSpec:
        if any(s < 0.3 or s > 6.0 for s in self.voxel_mm):
            raise ValueError(f"voxel_mm must lie in 0.3–6 mm per axis; got {list(self.voxel_mm)}")
        if self.field_of_view_mm is not None:
            lo, hi = self.field_of_view_mm
            if any(b <= a for a, b in zip(lo, hi, strict=True)):
                raise ValueError(f"field_of_view_mm: each upper bound must exceed the lower one; got {lo} .. {hi}")
        ids = [les.id for les in self.lesions]
        dup = sorted({i for i in ids if ids.count(i) > 1})
        if dup:
            raise ValueError(f"lesion ids must be unique; repeated: {', '.join(dup)}")
        return self


def _format_validation(exc: ValidationError, source: str) -> str:
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"])
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown key (check spelling; see docs/phantom.md for the spec fields)"
        parts.append(f"{loc or '(top level)'}: {msg}")
    return f"invalid phantom spec {source}: " + "; ".join(parts)


def parse_spec(data: PhantomSpec | dict[str, Any] | str | Path) -> PhantomSpec:
    """Validate a spec given as a model, a mapping, or the path of a YAML file."""
    if isinstance(data, PhantomSpec):
        return data
    source = "(mapping)"
    if isinstance(data, str | Path):
        path = Path(data)
        source = str(path)
        if not path.is_file():
            raise PhantomSpecError(f"phantom spec file {path} does not exist; give the path of a YAML spec.")
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except yaml.YAMLError as exc:
            raise PhantomSpecError(f"phantom spec {path} is not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise PhantomSpecError(f"phantom spec {source} must be a mapping with seed, voxel_mm, patient, lesions.")
    try:
        return PhantomSpec.model_validate(data)
    except ValidationError as exc:
        raise PhantomSpecError(_format_validation(exc, source)) from None
