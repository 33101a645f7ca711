"""Small imaging phantoms with follow-up timepoints (synthetic cohort, demos, tests).

A textured abdomen with an ellipsoid liver and one spherical lesion; timepoints show an
ablation zone (post-procedure), its involution (3 months) and — for a *locally recurring*
lesion — a nodule at the zone edge on the side of the thinnest margin (6 months). Each
timepoint is acquired with a known rigid patient motion (baseline → follow-up transform),
and paired landmarks are written, so registration and TRE can be checked.

Deterministic from ``seed``; 3 mm voxels keep each case below a second to write.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from latplan.followup._io import sitk_to_volume, volume_to_sitk, write_volume, write_yaml
from latplan.imaging.volume import Volume

__all__ = ["PhantomScene", "rigid_transform", "warp", "write_imaging_followup", "write_timepoint"]

LIVER, LESION, ZONE = 1, 2, 3
TIMEPOINT_TABLE = {
    LIVER: {"name": "liver", "role": "liver"},
    LESION: {"name": "lesion_1", "role": "lesion"},
    ZONE: {"name": "ablation_zone", "role": "ablation_zone"},
}


def rigid_transform(rotation_deg: tuple[float, float, float], translation_mm: tuple[float, float, float],
                    centre_mm: tuple[float, float, float] = (0.0, 0.0, 0.0)) -> sitk.Euler3DTransform:
    """Baseline→follow-up rigid transform (Euler angles about x, y, z in degrees; mm)."""
    tx = sitk.Euler3DTransform()
    tx.SetCenter(tuple(float(c) for c in centre_mm))
    tx.SetRotation(*(float(np.deg2rad(a)) for a in rotation_deg))
    tx.SetTranslation(tuple(float(t) for t in translation_mm))
    return tx


def warp(vol: Volume, tx: sitk.Transform | None, labels: bool = False, default: float = 0.0) -> Volume:
    """Content of ``vol`` seen after the patient moved by ``tx`` (baseline→follow-up), same grid."""
    if tx is None:
        return vol
    img = volume_to_sitk(vol, np.int32 if labels else np.float32)
    out = sitk.Resample(img, img, tx.GetInverse(), sitk.sitkNearestNeighbor if labels else sitk.sitkLinear, default)
    return sitk_to_volume(out)


class PhantomScene:
    """Baseline anatomy on a grid; :meth:`render` draws an image + label map for given structures."""

    def __init__(self, seed: int, shape_kji: tuple[int, int, int] = (48, 56, 56), spacing_mm: float = 3.0,
                 lesion_radius_mm: float = 12.0) -> None:
        self.rng = np.random.default_rng(seed)
        aff = np.diag([spacing_mm, spacing_mm, spacing_mm, 1.0])
        aff[:3, 3] = -(np.asarray(shape_kji[::-1], float) - 1) * spacing_mm / 2.0
        self.grid = Volume(np.zeros(shape_kji, np.float32), aff)
        xyz = self.grid.grid_mm()
        self.xyz = xyz
        half = (np.asarray(shape_kji[::-1], float) - 1) * spacing_mm / 2.0
        self.body = ((xyz / (0.92 * half)) ** 2).sum(-1) <= 1.0
        lc = np.array([-0.15, 0.05, 0.05]) * half
        self.liver = (((xyz - lc) / (np.array([0.55, 0.5, 0.5]) * half)) ** 2).sum(-1) <= 1.0
        self.texture = ndimage.gaussian_filter(self.rng.normal(size=shape_kji), 1.5).astype(np.float32)
        self.texture /= float(self.texture.std()) or 1.0
        self.lesion_centre_mm = lc + np.array([0.1, -0.05, 0.0]) * half
        self.lesion_radius_mm = lesion_radius_mm
        self.lesion = self.sphere(self.lesion_centre_mm, lesion_radius_mm)
        # landmarks: textured points spread in the body (baseline LPS mm)
        self.landmarks_mm = {
            f"L{i + 1}": (np.asarray(p) * half).round(1)
            for i, p in enumerate([[-0.4, -0.3, -0.3], [0.4, -0.2, 0.3], [0.0, 0.4, -0.2], [-0.3, 0.3, 0.4],
                                   [0.3, 0.3, -0.4], [0.0, 0.0, 0.0]])
        }
        self.landmarks_mm["tumour_centre"] = self.lesion_centre_mm.round(1)

    def sphere(self, centre_mm: np.ndarray, radius_mm: float) -> np.ndarray:
        return np.linalg.norm(self.xyz - np.asarray(centre_mm), axis=-1) <= radius_mm

    def render(self, lesion: np.ndarray | None, zone: np.ndarray | None,
               extra_labels: dict[int, np.ndarray] | None = None) -> tuple[Volume, Volume]:
        """Image (HU-like) and label map on the baseline grid for the given masks."""
        img = np.full(self.grid.shape, -1000.0, np.float32)
        img[self.body] = 0.0 + 25.0 * self.texture[self.body]
        img[self.liver] = 60.0 + 15.0 * self.texture[self.liver]
        lab = np.zeros(self.grid.shape, np.int16)
        lab[self.liver] = LIVER
        if zone is not None:
            img[zone] = 15.0 + 5.0 * self.texture[zone]
            lab[zone] = ZONE
        if lesion is not None:
            img[lesion] = 35.0 + 5.0 * self.texture[lesion]
            lab[lesion] = LESION
        for value, m in (extra_labels or {}).items():
            lab[m] = value
        return self.grid.with_array(img), self.grid.with_array(lab)


def write_timepoint(case_dir: Path, label: str, spec: dict[str, Any], image: Volume, labels: Volume,
                    table: dict[int, Any]) -> Path:
    """Write ``timepoints/<label>/`` (timepoint.yaml, image.nii.gz, labels.nii.gz, labels.yaml)."""
    folder = Path(case_dir) / "timepoints" / label
    write_volume(image, folder / "image.nii.gz", np.float32)
    write_volume(labels, folder / "labels.nii.gz", np.int16)
    write_yaml({int(k): v for k, v in table.items()}, folder / "labels.yaml")
    write_yaml(spec, folder / "timepoint.yaml")
    return folder


def _points_after(tx: sitk.Transform, pts: dict[str, np.ndarray]) -> dict[str, list[float]]:
    return {k: [round(float(c), 4) for c in tx.TransformPoint(tuple(float(v) for v in p))] for k, p in pts.items()}


def write_imaging_followup(
    case_dir: str | Path,
    trajectory: str = "shrinking",
    start: dt.date = dt.date(2020, 1, 6),
    seed: int = 0,
    modality: str = "mwa",
    margin_mm: float = 6.0,
    patient: dict[str, Any] | None = None,
) -> Path:
    """Write a small imaging case with post-procedure, 3- and 6-month timepoints.

    ``trajectory``: ``shrinking`` (zone involutes, no tumour), ``stable`` (zone unchanged) or
    ``locally_recurring`` (eccentric zone with ~1 mm minimal margin; a nodule at that edge at 6 months).
    Writes the baseline (case.yaml if absent, image, labels, labels.yaml), landmarks.yaml,
    treatments.yaml (if absent) and the timepoints. Returns the case folder.
    """
    if trajectory not in ("shrinking", "stable", "locally_recurring"):
        raise ValueError(f"unknown trajectory {trajectory!r}; use shrinking, stable or locally_recurring")
    case_dir = Path(case_dir)
    scene = PhantomScene(seed)
    base_img, base_lab = scene.render(scene.lesion, None)
    write_volume(base_img, case_dir / "image.nii.gz", np.float32)
    write_volume(base_lab, case_dir / "labels.nii.gz", np.int16)
    write_yaml({LIVER: "liver", LESION: "lesion_1"}, case_dir / "labels.yaml")
    if not (case_dir / "case.yaml").exists():
        write_yaml({"patient": patient or {"id": f"FU-{seed:04d}", "primary": "colorectal"}}, case_dir / "case.yaml")
    write_yaml({k: v.tolist() for k, v in scene.landmarks_mm.items()}, case_dir / "landmarks.yaml")
    if not (case_dir / "treatments.yaml").exists():
        write_yaml({"treatments": [{"lesion": "lesion_1", "modality": modality, "date": start.isoformat(),
                                    "diameter_mm": 2 * scene.lesion_radius_mm}]}, case_dir / "treatments.yaml")
    c, r = scene.lesion_centre_mm, scene.lesion_radius_mm
    direction = np.array([1.0, 0.0, 0.0])
    if trajectory == "locally_recurring":
        zone_centre, zone_r = c - direction * (margin_mm - 1.0), r + margin_mm  # 1 mm margin on +x side
    else:
        zone_centre, zone_r = c, r + margin_mm
    rng = np.random.default_rng(seed + 1)
    plan = [
        ("post-procedure", 1, "post_procedure", zone_r, False),
        ("3m", 91, "follow_up", zone_r * (0.85 if trajectory == "shrinking" else 1.0), False),
        ("6m", 182, "follow_up", zone_r * (0.75 if trajectory == "shrinking" else 1.0), trajectory == "locally_recurring"),
    ]
    for label, days, kind, zr, recur in plan:
        zone = scene.sphere(zone_centre, zr)
        lesion = None
        if recur:
            edge = zone_centre + direction * zr
            lesion = scene.sphere(edge, 6.0) & scene.liver
        img, lab = scene.render(lesion, zone)
        tx = rigid_transform(tuple(rng.uniform(-3, 3, 3)), tuple(rng.uniform(-6, 6, 3)))
        spec = {
            "date": (start + dt.timedelta(days=days)).isoformat(),
            "kind": kind,
            "ablation_zone": {"ablation_zone": "lesion_1"},
            "landmarks_mm": _points_after(tx, scene.landmarks_mm),
        }
        write_timepoint(case_dir, label, spec, warp(img, tx, default=-1000.0), warp(lab, tx, labels=True),
                        TIMEPOINT_TABLE)
    return case_dir

