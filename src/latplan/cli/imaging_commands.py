"""CLI commands of the imaging layer: ``insert-lesion``, ``inspect-image`` (no logic here)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table


def register(app: typer.Typer) -> None:
    """Add this module's commands to the main app."""

    @app.command("insert-lesion")
    def insert_lesion_cmd(
        case_dir: Annotated[Path, typer.Argument(help="Case folder (or image+labels+labels.yaml folder).")],
        diameter_mm: Annotated[float, typer.Option("--diameter-mm", help="Diameter (sphere) / largest extent (blob), mm.")],
        out: Annotated[Path, typer.Option("--out", help="New case folder to write (must not exist).")],
        at: Annotated[tuple[float, float, float] | None, typer.Option(
            "--at", help="Lesion centre X Y Z in mm (DICOM LPS); default the deepest point of the organ/segment.")] = None,
        segment: Annotated[str | None, typer.Option(
            "--segment", help="Couinaud segment (1..8, 4a, 4b) that must hold the lesion (≥ 95 %).")] = None,
        shape: Annotated[str, typer.Option(help="sphere | ellipsoid | blob")] = "sphere",
        axes_mm: Annotated[
            tuple[float, float, float] | None, typer.Option("--axes-mm", help="Ellipsoid diameters along x y z, mm.")
        ] = None,
        lesion_id: Annotated[str | None, typer.Option("--lesion-id", help="Default: next free lesion_N.")] = None,
        seed: Annotated[int, typer.Option(help="Seed of noise and blob shape.")] = 0,
        hu: Annotated[float | None, typer.Option(help="Mean lesion HU (default liver median − 45 HU).")] = None,
        overwrite: Annotated[str, typer.Option(help="liver (claim background+liver voxels only) | all")] = "liver",
        patient_id: Annotated[
            str | None, typer.Option("--patient-id", help="Creates case.yaml when CASE_DIR has none.")
        ] = None,
        primary: Annotated[str | None, typer.Option(help="Primary tumour, used with --patient-id.")] = None,
        as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
    ) -> None:
        """Insert a synthetic lesion into a real case and write it as a new case folder."""
        from latplan.errors import CaseFolderError
        from latplan.imaging.case_folder import load_case_folder, save_case_folder
        from latplan.imaging.derived_dicom import dicom_image_folder, save_case_as_derived_dicom
        from latplan.imaging.insert import derivation_description, insert_lesion

        patient = None
        if patient_id is not None or primary is not None:
            if patient_id is None or primary is None:
                raise CaseFolderError("--patient-id and --primary go together (they create the patient record).")
            patient = {"id": patient_id, "primary": primary}
        notes: list[str] = []
        case = load_case_folder(case_dir, patient=patient, notes=notes)
        before = set(case.lesion_ids)
        new = insert_lesion(
            case, at, diameter_mm, shape=shape, axes_mm=axes_mm, lesion_id=lesion_id, seed=seed, hu=hu,
            overwrite=overwrite, segment=segment,
        )
        added = [n for n in new.lesion_ids if n not in before]
        dicom_src = dicom_image_folder(case_dir)
        if dicom_src is None:
            save_case_folder(new, out)
        else:  # DICOM in → DICOM out: derived series + SEG
            save_case_as_derived_dicom(new, dicom_src, out, derivation_description(added, diameter_mm, shape))
        vol_ml = float(new.mask_array(added[0]).sum() * new.image.voxel_volume_ml) if added else 0.0
        result = {"out": str(out), "lesion_id": added[0] if added else None, "volume_ml": round(vol_ml, 3),
                  "center_mm": list(at) if at is not None else "deepest point of the organ/segment",
                  "notes": notes}
        if as_json:
            typer.echo(json.dumps(result, indent=2))
            return
        table = Table("field", "value", title=f"lesion inserted → {out}")
        for key in ("lesion_id", "volume_ml", "center_mm"):
            table.add_row(key, str(result[key]))
        Console().print(table)
        for n in notes:
            Console().print(f"[yellow]note:[/yellow] {n}")

    @app.command("inspect-image")
    def inspect_image_cmd(
        path: Annotated[Path, typer.Argument(help="NIfTI/NRRD file or DICOM series folder.")],
        as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
    ) -> None:
        """Print an image's grid: shape, spacing, orientation, origin, value range."""
        from latplan.imaging.nifti import read_image
        from latplan.imaging.orientation import axis_codes

        vol = read_image(path)
        info = {
            "shape_kji": list(vol.shape),
            "spacing_mm_ijk": [round(float(s), 5) for s in vol.spacing_mm],
            "orientation": axis_codes(vol),
            "origin_mm": [round(float(x), 3) for x in vol.origin_mm],
            "min": float(vol.array.min()),
            "max": float(vol.array.max()),
            "dtype": str(vol.array.dtype),
        }
        if as_json:
            typer.echo(json.dumps(info, indent=2))
            return
        table = Table("field", "value", title=str(path))
        for k, v in info.items():
            table.add_row(k, str(v))
        Console().print(table)
