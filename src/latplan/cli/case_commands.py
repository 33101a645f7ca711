"""CLI commands of the phantom and measurement layer: ``phantom``, ``measure`` (no logic here)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table


def _fmt(v: Any, nd: int = 1) -> str:
    if v is None:
        return "unknown"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:.{nd}f}"
    if isinstance(v, list):
        return ", ".join(str(x) for x in v) if v else "–"
    return str(v)


def _print_measurements(m: dict[str, Any]) -> None:
    console = Console()
    t = Table(title=f"Lesions of {m['case_id']} (mm, ml; 'unknown' = structure not segmented)")
    for col in ("lesion", "organ", "segments", "vol ml", "Feret", "axial", "capsule", "nearest vessel (calibre)",
                "sub-caps.", "perivasc.", "hollow organ", "dome"):
        t.add_column(col)
    for les in m["lesions"]:
        nv = les["nearest_vessels"][0] if les["nearest_vessels"] else None
        vessel = f"{nv['name']} {nv['distance_mm']:.1f} ({_fmt(nv['calibre_mm'])})" if nv else "unknown"
        t.add_row(les["id"], les["organ"], _fmt(les["segments"]), _fmt(les["volume_ml"], 2),
                  _fmt(les["max_diameter_mm"]), _fmt(les["axial_diameter_mm"]),
                  # [L] a capsule distance the image edge limits is a lower bound
                  ("≥ " if les.get("capsule_distance_limited_by_fov") else "") + _fmt(les["capsule_distance_mm"]),
                  vessel, _fmt(les["subcapsular"]), _fmt(les["perivascular"]), _fmt(les["near_hollow_organ"]),
                  _fmt(les["dome"]))
    console.print(t)
    p = m["patient"]
    flr = p["future_liver_remnant"]
    oligo = p["oligometastatic"]
    s = Table(title="Patient", show_header=False)
    s.add_column("field")
    s.add_column("value")
    s.add_row("lesions", f"{p['lesion_count']}" + ("" if p.get("lesion_count_complete", True) else " (at least)"))
    s.add_row("organs involved", _fmt(p["organs_involved"]))
    s.add_row("liver volume", f"{_fmt(p['liver_volume_ml'])} ml")
    s.add_row("tumour burden", f"{_fmt(p['tumour_burden_ml'], 2)} ml ({_fmt(p['tumour_burden_percent'], 2)} %)")
    s.add_row("future liver remnant",
              "unknown (segments not segmented)" if flr is None else
              f"{flr['ml']:.0f} ml = {flr['percent']:.1f} % after resecting segment(s) {', '.join(flr['resected_segments'])}")
    s.add_row("oligometastatic", f"{oligo['status']} — {oligo['definition']['name']}"
              + (f"; missing: {', '.join(oligo['missing'])}" if oligo["missing"] else ""))
    console.print(s)
    missing = sorted({n for les in m["lesions"] for n in les["not_segmented"]})
    if missing:
        console.print(f"not segmented (treated as unknown): {', '.join(missing)}")
    if any(not les["planned_in_this_release"] for les in m["lesions"]):
        console.print("note: lesions outside the liver are measured and counted; this release plans liver lesions.")


def register(app: typer.Typer) -> None:
    """Add this module's commands to the main app."""

    @app.command("phantom")
    def phantom_cmd(
        out: Annotated[Path, typer.Option("--out", help="Case folder to write (must not exist unless --overwrite).")],
        spec: Annotated[Path | None, typer.Option("--spec", help="Phantom spec YAML (docs/phantom.md).")] = None,
        demo: Annotated[str | None, typer.Option("--demo", help="Name of a built-in demo case instead of --spec.")] = None,
        voxel_mm: Annotated[float | None, typer.Option("--voxel-mm", help="Override the spec's voxel size (mm).")] = None,
        overwrite: Annotated[bool, typer.Option(help="Replace an existing output folder.")] = False,
        as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
    ) -> None:
        """Build a digital liver phantom case folder from a spec (or a built-in demo case)."""
        from latplan.errors import PhantomSpecError
        from latplan.imaging.case_folder import save_case_folder
        from latplan.phantom import build_phantom, demo_spec, parse_spec

        if (spec is None) == (demo is None):
            raise PhantomSpecError("give exactly one of --spec SPEC.yaml or --demo NAME (see `latplan demo-cases`).")
        if demo is not None:
            sp = demo_spec(demo, voxel_mm)
        else:
            assert spec is not None
            sp = parse_spec(spec)
            if voxel_mm is not None:
                sp = sp.model_copy(update={"voxel_mm": (voxel_mm,) * 3})
        case = build_phantom(sp)
        save_case_folder(case, out, overwrite=overwrite)
        result = {"out": str(out), "lesions": case.lesion_ids, "shape_kji": list(case.labels.shape),
                  "voxel_mm": [float(x) for x in case.labels.spacing_mm]}
        if as_json:
            typer.echo(json.dumps(result, indent=2))
        else:
            typer.echo(f"wrote {out} ({', '.join(case.lesion_ids) or 'no lesions'}; grid {case.labels.shape}, "
                       f"voxels {sp.voxel_mm} mm)")

    @app.command("demo-cases")
    def demo_cases_cmd(as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False) -> None:
        """List the built-in demo cases (phantom specs shipped with latplan)."""
        from latplan.phantom import demo_cases, demo_spec

        rows = [{"name": n, "description": demo_spec(n).description or ""} for n in demo_cases()]
        if as_json:
            typer.echo(json.dumps(rows, indent=2))
            return
        t = Table(title="Built-in demo cases")
        t.add_column("name")
        t.add_column("description")
        for r in rows:
            t.add_row(r["name"], r["description"])
        Console().print(t)

    @app.command("measure")
    def measure_cmd(
        case_dir: Annotated[Path, typer.Argument(help="Case folder (case.yaml + image + labels).")],
        as_json: Annotated[bool, typer.Option("--json", help="Print the measurements as JSON (measure.schema.json).")] = False,
        definition: Annotated[
            str | None, typer.Option("--oligo-definition", help="Oligometastatic definition (default kovacs2021).")
        ] = None,
        out: Annotated[Path | None, typer.Option("--out", help="Also write the JSON to this file.")] = None,
    ) -> None:
        """Measure every lesion (size, segments, distances, vessels) and the patient-level summary."""
        from latplan.anatomy import measure_case
        from latplan.imaging.case_folder import load_case_folder

        case = load_case_folder(case_dir)
        m = measure_case(case, oligo_definition=definition)
        if out is not None:
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps(m, indent=2), encoding="utf-8")
        if as_json:
            typer.echo(json.dumps(m, indent=2))
        else:
            _print_measurements(m)
