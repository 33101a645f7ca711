"""CLI group ``latplan case``: ``import-totalsegmentator`` (parse, call the library, print; no logic here)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

case_app = typer.Typer(name="case", help="Build case folders from other tools' output.", no_args_is_help=True)


@case_app.command("import-totalsegmentator")
def import_totalsegmentator_cmd(
    image: Annotated[Path, typer.Argument(help="The image TotalSegmentator ran on (NIfTI/NRRD file or DICOM folder).")],
    segs: Annotated[list[Path], typer.Argument(
        help="TotalSegmentator output(s): a folder of per-class .nii.gz files or a multilabel file (--ml).")],
    out: Annotated[Path, typer.Option("--out", help="Case folder to write (must not exist unless --overwrite).")],
    task: Annotated[list[str] | None, typer.Option(
        "--task", help="Task of each SEG in order (total, total_mr, liver_vessels, liver_segments, body, "
                       "liver_lesions, ...); one --task applies to all.")] = None,
    clinical: Annotated[Path | None, typer.Option(
        "--clinical", help="case.yaml with the patient's clinical data (copied into the case folder).")] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing output folder.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Write a case folder (image, merged label map, labels.yaml with TotalSegmentator's names, case.yaml)."""
    from latplan.errors import InvalidInputError
    from latplan.imaging.totalsegmentator import TsInput, import_totalsegmentator

    tasks = list(task or [])
    if len(tasks) not in (0, 1, len(segs)):
        raise InvalidInputError(f"give one --task for all outputs or one per output ({len(segs)}); got {len(tasks)}.")
    per: list[str | None] = [*tasks] * len(segs) if len(tasks) == 1 else [*tasks] or [None] * len(segs)
    result = import_totalsegmentator(image, [TsInput(p, t) for p, t in zip(segs, per, strict=True)], out,
                                     clinical=clinical, overwrite=overwrite)
    if as_json:
        typer.echo(json.dumps({"out": str(result.out), "labels": result.labels, "notes": result.notes}, indent=2))
        return
    typer.echo(f"wrote {result.out} ({len(result.labels)} structures)")
    for note in result.notes:
        typer.echo(f"note: {note}")


def register(app: typer.Typer) -> None:
    """Add the ``case`` command group to the main app."""
    app.add_typer(case_app, name="case")
