"""Typed measurement contract: frozen dataclasses for what :func:`latplan.anatomy.measure_case`
measures, with one JSON schema in and out (``measure.schema.json``; the JSON keys are those of
``latplan measure --json``).

``CaseMeasurements.from_json(doc)`` validates ``doc`` against the schema and builds the typed
objects; ``to_json()`` gives the document back (the same keys and values; a number stays a
number). Layers that read measurements (the board, the planners) take these objects.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from latplan.anatomy.measure import measure_case, validate_measurements
from latplan.case import Case

__all__ = ["CaseMeasurements", "FutureLiverRemnant", "LesionMeasurement", "OligometastaticStatus",
           "PatientMeasurements", "VesselMeasurement", "measure"]

JsonObject = dict[str, Any]


@dataclass(frozen=True)
class VesselMeasurement:
    name: str
    role: str
    distance_mm: float
    calibre_mm: float | None

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> VesselMeasurement:
        return cls(str(d["name"]), str(d["role"]), float(d["distance_mm"]),
                   None if d["calibre_mm"] is None else float(d["calibre_mm"]))

    def to_json(self) -> JsonObject:
        return {"name": self.name, "role": self.role, "distance_mm": self.distance_mm, "calibre_mm": self.calibre_mm}


def _num(x: Any) -> float | None:
    return None if x is None else float(x)


@dataclass(frozen=True)
class LesionMeasurement:
    """One lesion (see docs/measurements.md for each quantity; distances are surface to surface, mm)."""

    id: str
    organ: str
    planned_in_this_release: bool
    volume_ml: float
    max_diameter_mm: float
    axial_diameter_mm: float
    equivalent_sphere_diameter_mm: float
    sphericity: float | None
    centroid_mm: tuple[float, float, float]
    segments: tuple[str, ...] | None
    capsule_distance_mm: float | None
    distances_mm: Mapping[str, float | None]
    nearest_vessels: tuple[VesselMeasurement, ...]
    not_segmented: tuple[str, ...]
    subcapsular: bool | None
    perivascular: bool | None
    near_hollow_organ: bool | None
    dome: bool | None
    segment_fractions: Mapping[str, float] | None = None
    lesion_distances_mm: Mapping[str, float] = field(default_factory=dict)
    heat_sink_vessels: tuple[VesselMeasurement, ...] = ()
    voxel_count: int | None = None
    #: [L] field of view: the image edge limits the capsule distance (then ``capsule_distance_mm`` is a
    #: lower bound), the gap to the liver surface shown in the image, the lesion touches the image edge
    capsule_distance_limited_by_fov: bool | None = None
    capsule_distance_in_image_mm: float | None = None
    truncated_by_fov: bool | None = None
    distances_limited_by_fov: tuple[str, ...] | None = None
    #: issue 13: the faces a truncated lesion touches; its size is then a lower bound (the numbers above stay)
    truncated_by_fov_faces: tuple[str, ...] | None = None
    size_is_lower_bound: bool | None = None
    volume_lower_bound_ml: float | None = None
    max_diameter_lower_bound_mm: float | None = None
    note: str | None = None

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> LesionMeasurement:
        c = d["centroid_mm"]
        fr = d.get("segment_fractions")
        return cls(
            id=str(d["id"]), organ=str(d["organ"]), planned_in_this_release=bool(d["planned_in_this_release"]),
            volume_ml=float(d["volume_ml"]), max_diameter_mm=float(d["max_diameter_mm"]),
            axial_diameter_mm=float(d["axial_diameter_mm"]),
            equivalent_sphere_diameter_mm=float(d["equivalent_sphere_diameter_mm"]),
            sphericity=_num(d["sphericity"]), centroid_mm=(float(c[0]), float(c[1]), float(c[2])),
            segments=None if d["segments"] is None else tuple(str(s) for s in d["segments"]),
            capsule_distance_mm=_num(d["capsule_distance_mm"]),
            distances_mm={str(k): _num(v) for k, v in d["distances_mm"].items()},
            nearest_vessels=tuple(VesselMeasurement.from_json(v) for v in d["nearest_vessels"]),
            not_segmented=tuple(str(s) for s in d["not_segmented"]),
            subcapsular=d["subcapsular"], perivascular=d["perivascular"], near_hollow_organ=d["near_hollow_organ"],
            dome=d["dome"],
            segment_fractions=None if fr is None else {str(k): float(v) for k, v in fr.items()},
            lesion_distances_mm={str(k): float(v) for k, v in (d.get("lesion_distances_mm") or {}).items()},
            heat_sink_vessels=tuple(VesselMeasurement.from_json(v) for v in d.get("heat_sink_vessels") or ()),
            voxel_count=None if d.get("voxel_count") is None else int(d["voxel_count"]),
            capsule_distance_limited_by_fov=d.get("capsule_distance_limited_by_fov"),
            capsule_distance_in_image_mm=_num(d.get("capsule_distance_in_image_mm")),
            truncated_by_fov=d.get("truncated_by_fov"),
            distances_limited_by_fov=None if d.get("distances_limited_by_fov") is None else
            tuple(str(n) for n in d["distances_limited_by_fov"]),
            truncated_by_fov_faces=None if d.get("truncated_by_fov_faces") is None else
            tuple(str(n) for n in d["truncated_by_fov_faces"]),
            size_is_lower_bound=d.get("size_is_lower_bound"),
            volume_lower_bound_ml=_num(d.get("volume_lower_bound_ml")),
            max_diameter_lower_bound_mm=_num(d.get("max_diameter_lower_bound_mm")),
            note=None if d.get("note") is None else str(d["note"]))

    def to_json(self) -> JsonObject:
        out: JsonObject = {
            "id": self.id, "organ": self.organ, "planned_in_this_release": self.planned_in_this_release,
            "volume_ml": self.volume_ml, "max_diameter_mm": self.max_diameter_mm,
            "axial_diameter_mm": self.axial_diameter_mm,
            "equivalent_sphere_diameter_mm": self.equivalent_sphere_diameter_mm, "sphericity": self.sphericity,
            "centroid_mm": list(self.centroid_mm), "segments": None if self.segments is None else list(self.segments),
            "segment_fractions": None if self.segment_fractions is None else dict(self.segment_fractions),
            "capsule_distance_mm": self.capsule_distance_mm, "distances_mm": dict(self.distances_mm),
            "lesion_distances_mm": dict(self.lesion_distances_mm),
            "nearest_vessels": [v.to_json() for v in self.nearest_vessels],
            "heat_sink_vessels": [v.to_json() for v in self.heat_sink_vessels],
            "not_segmented": list(self.not_segmented), "subcapsular": self.subcapsular,
            "perivascular": self.perivascular, "near_hollow_organ": self.near_hollow_organ, "dome": self.dome,
        }
        if self.voxel_count is not None:
            out["voxel_count"] = self.voxel_count
        if self.capsule_distance_limited_by_fov is not None:
            out["capsule_distance_limited_by_fov"] = self.capsule_distance_limited_by_fov
        if self.capsule_distance_in_image_mm is not None:
            out["capsule_distance_in_image_mm"] = self.capsule_distance_in_image_mm
        if self.truncated_by_fov is not None:
            out["truncated_by_fov"] = self.truncated_by_fov
        if self.distances_limited_by_fov is not None:
            out["distances_limited_by_fov"] = list(self.distances_limited_by_fov)
        if self.truncated_by_fov_faces is not None:
            out["truncated_by_fov_faces"] = list(self.truncated_by_fov_faces)
        if self.size_is_lower_bound is not None:
            out["size_is_lower_bound"] = self.size_is_lower_bound
            out["volume_lower_bound_ml"] = self.volume_lower_bound_ml
            out["max_diameter_lower_bound_mm"] = self.max_diameter_lower_bound_mm
        if self.note is not None:
            out["note"] = self.note
        return out


@dataclass(frozen=True)
class FutureLiverRemnant:
    ml: float
    percent: float
    resected_segments: tuple[str, ...]
    note: str | None = None

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> FutureLiverRemnant:
        return cls(float(d["ml"]), float(d["percent"]), tuple(str(s) for s in d["resected_segments"]),
                   None if d.get("note") is None else str(d["note"]))

    def to_json(self) -> JsonObject:
        out: JsonObject = {"ml": self.ml, "percent": self.percent, "resected_segments": list(self.resected_segments)}
        if self.note is not None:
            out["note"] = self.note
        return out


@dataclass(frozen=True)
class OligometastaticStatus:
    """Status by one definition of ``oligometastatic_definitions.yaml`` (the definition as written there)."""

    status: str
    definition: Mapping[str, Any]
    missing: tuple[str, ...]
    reason: str | None = None

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> OligometastaticStatus:
        return cls(str(d["status"]), dict(d["definition"]), tuple(str(m) for m in d["missing"]),
                   None if d.get("reason") is None else str(d["reason"]))

    def to_json(self) -> JsonObject:
        out: JsonObject = {"status": self.status, "definition": dict(self.definition), "missing": list(self.missing)}
        if self.reason is not None:
            out["reason"] = self.reason
        return out


@dataclass(frozen=True)
class PatientMeasurements:
    lesion_count: int
    organs_involved: tuple[str, ...]
    liver_volume_ml: float | None
    future_liver_remnant: FutureLiverRemnant | None
    oligometastatic: OligometastaticStatus
    lesion_count_complete: bool | None = None
    liver_lesion_count: int | None = None
    lesions_by_organ: Mapping[str, int | None] | None = None
    tumour_burden_ml: float | None = None
    tumour_burden_percent: float | None = None
    #: [L] structures touching the edge of the image (the field of view may cut them)
    structures_truncated_by_fov: tuple[str, ...] | None = None

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> PatientMeasurements:
        flr = d["future_liver_remnant"]
        by_organ = d.get("lesions_by_organ")
        return cls(
            lesion_count=int(d["lesion_count"]), organs_involved=tuple(str(o) for o in d["organs_involved"]),
            liver_volume_ml=_num(d["liver_volume_ml"]),
            future_liver_remnant=None if flr is None else FutureLiverRemnant.from_json(flr),
            oligometastatic=OligometastaticStatus.from_json(d["oligometastatic"]),
            lesion_count_complete=d.get("lesion_count_complete"), liver_lesion_count=d.get("liver_lesion_count"),
            lesions_by_organ=None if by_organ is None else
            {str(k): None if v is None else int(v) for k, v in by_organ.items()},
            tumour_burden_ml=_num(d.get("tumour_burden_ml")), tumour_burden_percent=_num(d.get("tumour_burden_percent")),
            structures_truncated_by_fov=None if d.get("structures_truncated_by_fov") is None else
            tuple(str(n) for n in d["structures_truncated_by_fov"]))

    def to_json(self) -> JsonObject:
        out: JsonObject = {"lesion_count": self.lesion_count}
        if self.lesion_count_complete is not None:
            out["lesion_count_complete"] = self.lesion_count_complete
        if self.liver_lesion_count is not None:
            out["liver_lesion_count"] = self.liver_lesion_count
        if self.lesions_by_organ is not None:
            out["lesions_by_organ"] = dict(self.lesions_by_organ)
        out.update({
            "organs_involved": list(self.organs_involved), "liver_volume_ml": self.liver_volume_ml,
            "tumour_burden_ml": self.tumour_burden_ml, "tumour_burden_percent": self.tumour_burden_percent,
            "future_liver_remnant": None if self.future_liver_remnant is None else self.future_liver_remnant.to_json(),
            "oligometastatic": self.oligometastatic.to_json()})
        if self.structures_truncated_by_fov is not None:
            out["structures_truncated_by_fov"] = list(self.structures_truncated_by_fov)
        return out


@dataclass(frozen=True)
class CaseMeasurements:
    """Everything ``measure_case`` measures for one case."""

    schema_version: str
    case_id: str
    voxel_mm: tuple[float, float, float]
    parameters: Mapping[str, Any]
    lesions: tuple[LesionMeasurement, ...]
    patient: PatientMeasurements
    note: str | None = None

    def lesion(self, lesion_id: str) -> LesionMeasurement:
        return next(les for les in self.lesions if les.id == lesion_id)

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> CaseMeasurements:
        """Validate ``doc`` against measure.schema.json, then type it."""
        validate_measurements(doc)
        v = doc["voxel_mm"]
        return cls(str(doc["schema_version"]), str(doc["case_id"]), (float(v[0]), float(v[1]), float(v[2])),
                   dict(doc["parameters"]), tuple(LesionMeasurement.from_json(les) for les in doc["lesions"]),
                   PatientMeasurements.from_json(doc["patient"]), None if doc.get("note") is None else str(doc["note"]))

    def to_json(self) -> JsonObject:
        out: JsonObject = {"schema_version": self.schema_version, "case_id": self.case_id,
                           "voxel_mm": list(self.voxel_mm), "parameters": dict(self.parameters),
                           "lesions": [les.to_json() for les in self.lesions], "patient": self.patient.to_json()}
        if self.note is not None:
            out["note"] = self.note
        return out


def measure(case: Case, oligo_definition: str | Mapping[str, Any] | None = None,
            parameters: Mapping[str, Any] | None = None) -> CaseMeasurements:
    """:func:`latplan.anatomy.measure_case`, typed."""
    return CaseMeasurements.from_json(measure_case(case, oligo_definition, parameters))


def lesions_json(lesions: Sequence[LesionMeasurement]) -> list[JsonObject]:
    return [les.to_json() for les in lesions]
