"""Files for the browser viewer (niivue): the image and overlays as NIfTI, plus ``index.json``.

The server writes, per planned case, into ``<result>/viewer/``: ``image.nii.gz`` (CT/MR),
one binary mask per structure group (lesions, vessels, bile ducts, hollow organs, liver),
and per simulated option its predicted zone (``zone_<lesion>_<modality>.nii.gz``), its dose
as isodose bands (``isodose_<lesion>_<modality>.nii.gz``: 1 = ≥50 %, 2 = ≥100 %, 3 = ≥150 %,
4 = ≥200 % of the prescription) and its electric field when present. Next to the volumes it
writes surface meshes (GIfTI, RAS mm, see :mod:`latplan.imaging.meshes`): one per lesion, one per
structure group, one per predicted zone and the prescription (100 %) isodose surface of each
dose. ``index.json`` lists the layers with their colour map and window, the meshes with
their colour, so the page can load them without guessing, and the lesions (``lesions``: id,
label, centre in LPS mm — the measurement centroid when measurements are given, else the mask's
voxel centroid — and that centre's voxel index ``centre_ijk`` on the image grid, NIfTI i, j, k
order); the page opens at the first lesion and has a "go to lesion" button per lesion.
Grids keep their own affine (a plan's dose grid may differ from the image grid); niivue
resamples overlays into the image space.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from latplan.case import Case, StructureRole
from latplan.imaging.io import write_nifti
from latplan.imaging.meshes import mask_surface_ras_mm, write_gifti_mesh
from latplan.imaging.volume import Volume
from latplan.planning.types import TreatmentPlan

#: structure groups shown as overlays: (file stem, label, roles, niivue colour map, opacity)
GROUPS: tuple[tuple[str, str, tuple[str, ...], str, float], ...] = (
    ("liver", "liver", ("liver",), "winter", 0.12),
    ("vessels", "vessels", ("portal_vein", "hepatic_vein", "inferior_vena_cava", "aorta", "hepatic_artery", "vessel"),
     "blue", 0.45),
    ("bile_ducts", "bile ducts", ("bile_duct", "gallbladder"), "green", 0.45),
    ("hollow_organs", "stomach / bowel", ("stomach", "duodenum", "small_bowel", "colon", "bowel"), "warm", 0.4),
    ("lesions", "lesions", ("lesion",), "red", 0.6),
)


#: mesh colours (RGBA 0–255) and opacities per kind; structure groups by file stem
MESH_STYLE: dict[str, tuple[tuple[int, int, int, int], float]] = {
    "liver": ((205, 150, 125, 255), 0.25),
    "vessels": ((70, 110, 235, 255), 1.0),
    "bile_ducts": ((60, 190, 90, 255), 1.0),
    "hollow_organs": ((235, 160, 60, 255), 0.6),
    "lesion": ((230, 40, 40, 255), 1.0),
    "zone": ((40, 210, 90, 255), 0.45),
    "isodose": ((255, 210, 0, 255), 0.45),
}


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)[:60]


def _write(volume: Volume, path: Path) -> None:
    write_nifti(volume, path)


def _role_value(role: StructureRole) -> str:
    return str(role.value).lower()


def _add_mesh(meshes: list[dict[str, Any]], mask: Volume, out_dir: Path, stem: str, name: str, kind: str,
              style: str, visible: bool, **extra: Any) -> None:
    """Mesh ``mask`` into ``mesh_<stem>.gii`` and list it (nothing for an empty mask)."""
    surface = mask_surface_ras_mm(mask)
    if surface is None or len(surface.faces) == 0:
        return
    url = f"mesh_{_safe(stem)}.gii"
    write_gifti_mesh(surface, out_dir / url, name)
    rgba, opacity = MESH_STYLE[style]
    meshes.append({"url": url, "kind": kind, "name": name, "rgba255": list(rgba), "opacity": opacity,
                   "visible": visible, "faces": len(surface.faces), **extra})


def _lesion_label(lesion_id: str, m: Mapping[str, Any] | None) -> str:
    """"lesion_1 · 19 mm · segment 6" (only the parts the measurements give)."""
    parts = [lesion_id]
    if m:
        d = m.get("max_diameter_mm")
        if d is not None:
            parts.append(f"{float(d):.0f} mm")
        segs = [str(x) for x in (m.get("segments") or [])]
        if segs:
            parts.append(("segment " if len(segs) == 1 else "segments ") + ", ".join(segs))
    return " · ".join(parts)


def lesion_bookmarks(case: Case, measurements: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
    """One entry per lesion of ``case``: id, label, centre (LPS mm) and its voxel index on the image grid.

    The centre is the measurement's ``centroid_mm`` (``measurements``: the ``measure_case`` document)
    when there is one for the lesion, else the voxel centroid of the lesion's mask.
    """
    by_id = {str(m["id"]): m for m in (measurements or {}).get("lesions") or [] if "id" in m}
    out: list[dict[str, Any]] = []
    for lid in case.lesion_ids:
        m = by_id.get(lid)
        if m is not None and m.get("centroid_mm") is not None:
            centre = np.asarray(m["centroid_mm"], dtype=float)
        else:
            vox = np.argwhere(case.mask_array(lid))
            if not len(vox):
                continue
            centre = case.labels.index_to_mm(vox.mean(0))
        kji = case.image.mm_to_index(centre)
        ijk = [round(float(x)) for x in kji[::-1]]
        out.append({"id": lid, "label": _lesion_label(lid, m), "centre_lps_mm": [round(float(x), 2) for x in centre],
                    "centre_ijk": ijk,
                    "max_diameter_mm": None if m is None else m.get("max_diameter_mm"),
                    "segments": None if m is None else m.get("segments")})
    return out


def write_viewer_files(case: Case, plans: list[TreatmentPlan], out_dir: Path,
                       measurements: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Write the viewer folder for ``case`` and its ``plans``; returns the index written.

    ``measurements`` (the ``measure_case`` document) labels the lesion bookmarks with diameter and
    segment and gives their centres; without it the centres are the masks' voxel centroids.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    layers: list[dict[str, Any]] = []
    meshes: list[dict[str, Any]] = []
    img = case.image
    arr = np.asarray(img.array, dtype=np.float32)
    # CT in HU fits int16 (half the bytes the browser downloads); anything else stays float32
    fits_int16 = arr.size and float(arr.min()) >= -32768 and float(arr.max()) <= 32767
    if fits_int16 and str(case.image_modality).upper() == "CT":
        _write(img.with_array(np.round(arr).astype(np.int16)), out_dir / "image.nii.gz")
    else:
        _write(img.with_array(arr), out_dir / "image.nii.gz")
    is_ct = str(case.image_modality).upper() == "CT"
    lo, hi = (-160.0, 240.0) if is_ct else tuple(float(x) for x in np.percentile(arr, [1, 99]))
    layers.append({"url": "image.nii.gz", "kind": "image", "name": "image", "colormap": "gray", "opacity": 1.0,
                   "cal_min": lo, "cal_max": hi, "visible": True})
    names = case.structure_names()
    for stem, label, roles, cmap, opacity in GROUPS:
        members = [n for n in names if _role_value(case.role(n)) in roles
                   or any(n.startswith(r) for r in roles)]
        if not members:
            continue
        mask = np.zeros(case.labels.array.shape, dtype=np.uint8)
        for n in members:
            mask[case.mask_array(n)] = 1
        _write(case.labels.with_array(mask), out_dir / f"{stem}.nii.gz")
        layers.append({"url": f"{stem}.nii.gz", "kind": "structure", "name": label, "colormap": cmap,
                       "opacity": opacity, "cal_min": 0.5, "cal_max": 1.0, "visible": True, "members": members})
        if stem == "lesions":  # one mesh per lesion: the board points at "lesion 2", not at "the lesions"
            for n in members:
                _add_mesh(meshes, case.labels.with_array(case.mask_array(n).astype(np.uint8)), out_dir, n,
                          n, "lesion", "lesion", True, lesion_id=n)
        else:
            _add_mesh(meshes, case.labels.with_array(mask), out_dir, stem, label, "structure", stem, True)
    for plan in plans:
        tag = _safe(f"{plan.lesion_id}_{plan.modality}")
        if plan.zone is not None:
            _write(plan.zone.with_array(np.asarray(plan.zone.array, dtype=np.uint8)), out_dir / f"zone_{tag}.nii.gz")
            layers.append({"url": f"zone_{tag}.nii.gz", "kind": "zone", "name": f"{plan.lesion_id} {plan.modality} zone",
                           "colormap": "green", "opacity": 0.35, "cal_min": 0.5, "cal_max": 1.0, "visible": False,
                           "lesion_id": plan.lesion_id, "modality": plan.modality})
            _add_mesh(meshes, plan.zone, out_dir, f"zone_{tag}", f"{plan.lesion_id} {plan.modality} zone", "zone",
                      "zone", False, lesion_id=plan.lesion_id, modality=plan.modality)
        if plan.dose is not None:
            rx = plan.prescription_gy or float(np.percentile(plan.dose.array, 99.5)) or 1.0
            dose = np.asarray(plan.dose.array, dtype=np.float64)
            bands = np.zeros(dose.shape, dtype=np.uint8)
            for level, frac in enumerate((0.5, 1.0, 1.5, 2.0), start=1):
                bands[dose >= frac * rx] = level
            _write(plan.dose.with_array(bands), out_dir / f"isodose_{tag}.nii.gz")
            layers.append({"url": f"isodose_{tag}.nii.gz", "kind": "isodose",
                           "name": f"{plan.lesion_id} {plan.modality} isodoses (50/100/150/200 % of {rx:.1f} Gy)",
                           "colormap": "hot", "opacity": 0.45, "cal_min": 0.5, "cal_max": 4.0, "visible": False,
                           "prescription_gy": rx, "lesion_id": plan.lesion_id, "modality": plan.modality})
            _add_mesh(meshes, plan.dose.with_array((dose >= rx).astype(np.uint8)), out_dir, f"isodose100_{tag}",
                      f"{plan.lesion_id} {plan.modality} 100 % isodose ({rx:.1f} Gy)", "isodose", "isodose", False,
                      prescription_gy=rx, lesion_id=plan.lesion_id, modality=plan.modality)
        if plan.field_v_per_cm is not None:
            fld = np.asarray(plan.field_v_per_cm.array, dtype=np.float32)
            _write(plan.field_v_per_cm.with_array(fld), out_dir / f"field_{tag}.nii.gz")
            layers.append({"url": f"field_{tag}.nii.gz", "kind": "field", "name": f"{plan.lesion_id} {plan.modality} |E| (V/cm)",
                           "colormap": "plasma", "opacity": 0.4, "cal_min": 400.0, "cal_max": 1500.0, "visible": False,
                           "lesion_id": plan.lesion_id, "modality": plan.modality})
    index = {"layers": layers, "meshes": meshes, "lesions": lesion_bookmarks(case, measurements)}
    (out_dir / "index.json").write_text(json.dumps(index, indent=1))
    return index


def lesion_role_names(case: Case) -> list[str]:
    return case.names_with_role(StructureRole.LESION)
