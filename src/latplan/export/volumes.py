"""Results as NIfTI volumes and surface meshes, in a folder 3D Slicer loads as it is.

Layout under ``OUT/volumes/``::

    image.nii.gz                              the case image (CT/MR), the background
    <lesion>/lesion.nii.gz                    lesion mask (uint8)
    <lesion>/<modality>-zone.nii.gz           predicted treated zone (uint8 0/1), on the case grid
    <lesion>/<modality>-dose.nii.gz           absorbed dose (float32, Gy), on the case grid (not the SBRT screen)
    <lesion>/<modality>-ctv.nii.gz            the plan's target (CTV; PTV for the SBRT screen), uint8
    meshes/<name>.stl                         surfaces of lesions, zones, organs (binary STL, LPS mm)
    README.md                                 what each file is, and the colour of each structure

Every volume is on the case grid (the image's affine): plans computed on a crop or a coarser grid
are resampled by physical position (labels nearest neighbour, dose linear, 0 Gy outside).

Why STL in LPS with ``SPACE=LPS`` in the header: 3D Slicer (≥ 4.11) reads STL/OBJ coordinates as
LPS unless the header says otherwise, and writes that header itself, so the meshes land on the
NIfTI volumes without a transform. Vertices come from :func:`latplan.imaging.meshes.mask_surface_ras_mm`
(RAS) flipped back to LPS (x, y negated: a rotation, so the outward normals stay outward).
"""

from __future__ import annotations

import json
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from latplan.case import Case
from latplan.case.vocabulary import StructureRole
from latplan.imaging.io import write_nifti
from latplan.imaging.meshes import LPS_TO_RAS, SurfaceMesh, mask_surface_ras_mm
from latplan.imaging.resample import resample_image_to, resample_labels_to
from latplan.imaging.volume import Volume
from latplan.planning.types import TreatmentPlan
from latplan.report.colours import OVERLAY_COLOURS, colour_for

__all__ = ["ResultVolumes", "case_grid", "result_volumes", "write_stl", "write_volume_files"]

#: modalities whose dose grid is a screen estimate, not a plan: no dose file, no RTDOSE
SCREEN_ONLY = frozenset({"sbrt"})
#: roles not meshed (the segments tile the liver; the body is the whole patient)
_NOT_MESHED = frozenset({StructureRole.LIVER_SEGMENT, StructureRole.BODY})


@dataclass
class ResultVolumes:
    """One plan's volumes on the case grid (``None`` where the plan has none)."""

    lesion_id: str
    modality: str
    zone: Volume | None
    dose_gy: Volume | None
    target: Volume | None

    @property
    def target_name(self) -> str:
        return "ptv" if self.modality == "sbrt" else "ctv"


def case_grid(case: Case) -> Volume:
    return case.image


def _on_grid_mask(vol: Volume | None, grid: Volume) -> Volume | None:
    if vol is None:
        return None
    mask = vol.with_array((np.asarray(vol.array) > 0).astype(np.uint8))
    if not mask.same_geometry(grid):
        mask = resample_labels_to(mask, grid)
    out = grid.with_array((np.asarray(mask.array) > 0).astype(np.uint8))
    return out if out.array.any() else None


def _on_grid_dose(vol: Volume | None, grid: Volume) -> Volume | None:
    if vol is None:
        return None
    dose = vol.with_array(np.asarray(vol.array, dtype=np.float32))
    if not dose.same_geometry(grid):
        dose = resample_image_to(dose, grid, default_value=0.0)
    return grid.with_array(np.clip(np.asarray(dose.array, dtype=np.float32), 0.0, None))


def result_volumes(case: Case, plan: TreatmentPlan) -> ResultVolumes:
    """The plan's zone, dose and target on the case grid."""
    grid = case_grid(case)
    modality = str(plan.modality).lower()
    dose = None if modality in SCREEN_ONLY else _on_grid_dose(plan.dose, grid)
    return ResultVolumes(plan.lesion_id, modality, _on_grid_mask(plan.zone, grid), dose,
                         _on_grid_mask(plan.target, grid))


def write_stl(mesh: SurfaceMesh, path: Path, name: str = "") -> Path:
    """Binary STL of ``mesh`` in LPS mm, header ``SPACE=LPS`` (3D Slicer's convention)."""
    lps = np.asarray(mesh.vertices_ras_mm, dtype=np.float64) * LPS_TO_RAS
    tri = lps[np.asarray(mesh.faces)]
    normals = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    length = np.linalg.norm(normals, axis=1, keepdims=True)
    normals = np.divide(normals, length, out=np.zeros_like(normals), where=length > 0)
    header = f"SPACE=LPS latplan {name}".encode("ascii", "replace")[:80].ljust(80, b" ")
    rec = np.zeros(len(tri), dtype=[("n", "<f4", 3), ("v", "<f4", (3, 3)), ("attr", "<u2")])
    rec["n"], rec["v"] = normals, tri
    with open(path, "wb") as fh:
        fh.write(header)
        fh.write(struct.pack("<I", len(tri)))
        fh.write(rec.tobytes())
    return path


def _mesh(mask: Volume, path: Path, name: str, written: dict[str, Path], key: str) -> None:
    mesh = mask_surface_ras_mm(mask)
    if mesh is not None:
        written[key] = write_stl(mesh, path, name)


def _hex(name: str, role: StructureRole | None = None) -> str:
    return colour_for(name, role)


def write_volume_files(case: Case, plans: Mapping[tuple[str, str], TreatmentPlan], out_dir: Path,
                       results: Mapping[tuple[str, str], ResultVolumes] | None = None) -> dict[str, Path]:
    """Write ``OUT/volumes`` (NIfTI, STL meshes, README); return ``{key: path}``.

    ``results``: the plans' volumes on the case grid when the caller has them already
    (:func:`result_volumes` per plan; the DICOM export needs the same resampled volumes)."""
    root = out_dir / "volumes"
    meshes = root / "meshes"
    meshes.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {"volumes_image": write_nifti(case.image, root / "image.nii.gz")}
    legend: list[tuple[str, str, str]] = []  # (file, what, colour)
    for lid in case.lesion_ids:
        (root / lid).mkdir(exist_ok=True)
        mask = case.lesion_mask(lid)
        mask = mask.with_array(np.asarray(mask.array).astype(np.uint8))
        written[f"volumes/{lid}/lesion"] = write_nifti(mask, root / lid / "lesion.nii.gz")
        _mesh(mask, meshes / f"{lid}.stl", lid, written, f"meshes/{lid}")
        legend.append((f"{lid}/lesion.nii.gz, meshes/{lid}.stl", f"lesion {lid}", _hex(lid, StructureRole.LESION)))
    for (lid, _modality), plan in sorted(plans.items()):
        rv = results[(lid, _modality)] if results is not None else result_volumes(case, plan)
        (root / lid).mkdir(exist_ok=True)
        code = rv.modality
        if rv.zone is not None:
            written[f"volumes/{lid}/{code}-zone"] = write_nifti(rv.zone, root / lid / f"{code}-zone.nii.gz")
            _mesh(rv.zone, meshes / f"{lid}-{code}-zone.stl", f"{lid} {code} zone", written, f"meshes/{lid}-{code}-zone")
            legend.append((f"{lid}/{code}-zone.nii.gz, meshes/{lid}-{code}-zone.stl",
                           f"{code.upper()} predicted zone of {lid}", OVERLAY_COLOURS["zone"]))
        if rv.dose_gy is not None:
            written[f"volumes/{lid}/{code}-dose"] = write_nifti(rv.dose_gy, root / lid / f"{code}-dose.nii.gz")
            legend.append((f"{lid}/{code}-dose.nii.gz", f"{code.upper()} dose of {lid} (Gy, float32)",
                           "colour map (e.g. Slicer 'Rainbow'), threshold at the prescription"))
        if rv.target is not None:
            name = rv.target_name
            written[f"volumes/{lid}/{code}-{name}"] = write_nifti(rv.target, root / lid / f"{code}-{name}.nii.gz")
            _mesh(rv.target, meshes / f"{lid}-{code}-{name}.stl", f"{lid} {code} {name}", written,
                  f"meshes/{lid}-{code}-{name}")
            legend.append((f"{lid}/{code}-{name}.nii.gz, meshes/{lid}-{code}-{name}.stl",
                           f"{code.upper()} {name.upper()} of {lid}", OVERLAY_COLOURS["target"]))
    for name in case.structure_names():
        role = case.role(name)
        if role in _NOT_MESHED or role == StructureRole.LESION:
            continue
        _mesh(case.mask(name), meshes / f"{name}.stl", name, written, f"meshes/{name}")
        if f"meshes/{name}" in written:
            legend.append((f"meshes/{name}.stl", f"organ: {name.replace('_', ' ')}", _hex(name, role)))
    written.update(write_lesion_bookmarks(case, root))
    legend.append(("lesions.mrk.json", "one point per lesion centre (Slicer markups: jump to a lesion)", "—"))
    written["volumes_readme"] = _write_readme(root / "README.md", case, legend)
    return written


#: Slicer's markups file schema (the file names it; Slicer reads the markups from the file itself)
_MARKUPS_SCHEMA = ("https://raw.githubusercontent.com/slicer/slicer/master/Modules/Loadable/Markups/Resources/Schema/"
                   "markups-schema-v1.0.3.json#")


def write_lesion_bookmarks(case: Case, root: Path) -> dict[str, Path]:
    """The per-lesion "go to lesion" bookmarks: ``bookmarks.json`` (viewer: centre in LPS and RAS mm and
    the voxel index k, j, i) and ``lesions.mrk.json`` (3D Slicer markups, LPS)."""
    marks, points = [], []
    for n, lid in enumerate(case.lesion_ids, start=1):
        mask = np.asarray(case.lesion_mask(lid).array) > 0
        kji = np.argwhere(mask).mean(axis=0)
        lps = case.image.index_to_mm(kji[None])[0]
        marks.append({"lesion_id": lid, "centre_lps_mm": [round(float(x), 2) for x in lps],
                      "centre_ras_mm": [round(float(x), 2) for x in lps * LPS_TO_RAS],
                      "voxel_kji": [round(float(x)) for x in kji], "volume_ml": round(float(mask.sum())
                                                                                       * case.image.voxel_volume_ml, 3)})
        points.append({"id": str(n), "label": lid, "position": [round(float(x), 2) for x in lps],
                       "orientation": [-1.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 1.0], "selected": True,
                       "locked": True, "visibility": True, "positionStatus": "defined"})
    bookmarks = root / "bookmarks.json"
    bookmarks.write_text(json.dumps({"coordinates": "LPS and RAS mm; voxel_kji indexes image.nii.gz's array",
                                     "lesions": marks}, indent=2), encoding="utf-8")
    markups = root / "lesions.mrk.json"
    markups.write_text(json.dumps({"@schema": _MARKUPS_SCHEMA, "markups": [{
        "type": "Fiducial", "coordinateSystem": "LPS", "coordinateUnits": "mm", "locked": True,
        "controlPoints": points}]}, indent=2), encoding="utf-8")
    return {"volumes_bookmarks": bookmarks, "volumes_markups": markups}


def _write_readme(path: Path, case: Case, legend: list[tuple[str, str, str]]) -> Path:
    lines = [
        f"# latplan results for {case.patient.id}: volumes and meshes (research use, not for clinical use)",
        "",
        "Open in 3D Slicer: drag this folder onto Slicer (or File → Add Data → Choose Directory) and load",
        "`image.nii.gz` as a volume, the `*-zone`, `*-ctv`, `lesion` files as segmentations (label maps),",
        "`*-dose.nii.gz` as a scalar volume and `meshes/*.stl` as models. Every file is in the same patient",
        "coordinates (NIfTI: RAS on disk; STL: LPS, header `SPACE=LPS`, Slicer's convention): no transform.",
        "",
        "| file | what | colour |",
        "|---|---|---|",
    ]
    lines += [f"| `{f}` | {what} | {colour} |" for f, what, colour in legend]
    lines += ["", "Colours are latplan's colour table (`latplan.report.colours`), the same as in report.pdf.", ""]
    path.write_text("\n".join(lines), encoding="utf-8")
    return path

