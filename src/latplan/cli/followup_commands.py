"""CLI commands of the follow-up layer: ``followup``, ``outcomes``, ``timepoint-case``,
``synthetic-cohort``, ``fig2-followup`` (no logic here: parse, call latplan.followup, print)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table


def _fmt(v: Any, nd: int = 2) -> str:
    if v is None:
        return "—"
    if isinstance(v, float):
        return f"{v:.{nd}f}"
    return str(v)


def _print_followup(summary: dict[str, Any]) -> None:
    con = Console(width=max(Console().width, 150))
    con.print(f"[bold]follow-up of {summary['patient_id']}[/bold] ({summary['primary']}) — {summary['case']}")
    if not summary["timepoints"]:
        con.print("[yellow]no follow-up timepoints[/yellow] (timepoints/<label>/ with timepoint.yaml, image, labels; "
                  "see docs/followup.md).")
        return
    t = Table("timepoint", "date", "kind", "mode", "final metric", "TRE mean/max mm", "liver Dice",
              title="registration to baseline")
    for tp in summary["timepoints"]:
        r = tp["registration"]
        if r is None:
            t.add_row(tp["label"], tp["date"], tp["kind"], "—", "—", "—", tp["registration_note"] or "—")
            continue
        tre = "—" if r["mean_tre_mm"] is None else f"{r['mean_tre_mm']:.2f} / {r['max_tre_mm']:.2f}"
        t.add_row(tp["label"], tp["date"], tp["kind"], r["mode"], f"{r['final_metric']:.4g}", tre, _fmt(r["liver_dice"], 3))
    con.print(t)
    m = Table("timepoint", "lesion", "min margin mm", "<0 %", "0–5 %", "≥5 %", "coverage %", "target mm",
              "reached", "pred/obs Dice", "MSD mm", "HD95 mm", title="margin check (baseline tumour vs observed zone)")
    for tp in summary["timepoints"]:
        for c in tp["margin_checks"]:
            h = c["margin_histogram_percent"]
            comp = c["predicted_vs_observed"] or {}
            m.add_row(tp["label"], c["lesion_id"], _fmt(c["min_margin_mm"]), _fmt(h["<0"], 1), _fmt(h["0-5"], 1),
                      _fmt(h[">=5"], 1), _fmt(c["coverage_percent"], 1), _fmt(c["target_margin_mm"], 0),
                      _fmt(c["target_reached"]), _fmt(comp.get("dice"), 3),
                      _fmt(comp.get("mean_surface_distance_mm")), _fmt(comp.get("hd95_mm")))
    if m.row_count:
        con.print(m)
    r = Table("timepoint", "criterion", "target sum mm (baseline→now)", "change %", "target", "non-target",
              "new lesions", "overall", "local status", title="response")
    for tp in summary["timepoints"]:
        local = ", ".join(f"{k}: {v['status']}" for k, v in tp["local_status"].items()) or "—"
        for key in ("recist", "mrecist"):
            a = tp[key]
            if a is None:
                continue
            r.add_row(tp["label"], a["criterion"], f"{a['baseline_sum_mm']:.1f} → {a['current_sum_mm']:.1f}",
                      _fmt(a["change_from_baseline_percent"], 1), _fmt(a["target_response"]),
                      _fmt(a["nontarget_response"]), ", ".join(a["new_lesions"]) or "—", a["overall_response"],
                      local if key == "recist" else "")
    con.print(r)
    for tp in summary["timepoints"]:
        for n in tp["notes"]:
            con.print(f"[yellow]note ({tp['label']}):[/yellow] {n}")
    if summary["complications"]:
        c = Table("when", "grade (CIRSE)", "description", title="complications")
        for comp in summary["complications"]:
            c.add_row(comp.get("treatment_date") or comp.get("timepoint", ""), str(comp["grade"]), comp["description"])
        con.print(c)


def register(app: typer.Typer) -> None:
    """Add this module's commands to the main app."""

    @app.command("followup")
    def followup_cmd(
        case_dir: Annotated[Path, typer.Argument(help="Case folder with timepoints/ and treatments.yaml.")],
        as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
        mode: Annotated[str, typer.Option(help="Registration: rigid | affine | tumour_rigid.")] = "affine",
        metric: Annotated[str, typer.Option(help="Registration metric: mattes_mi | mean_squares.")] = "mattes_mi",
        no_save: Annotated[bool, typer.Option("--no-save", help="Do not store registration.tfm/.json.")] = False,
        no_registration: Annotated[
            bool, typer.Option("--no-registration", help="Map labels by scanner coordinates (identity).")
        ] = False,
    ) -> None:
        """Registration quality, margin check and response for every follow-up timepoint of a case."""
        from latplan.followup.analysis import followup_summary

        summary = followup_summary(case_dir, mode=mode, metric=metric, save_transforms=not no_save,
                                   register_images=not no_registration)
        if as_json:
            typer.echo(json.dumps(summary, indent=2))
            return
        _print_followup(summary)

    @app.command("outcomes")
    def outcomes_cmd(
        cohort_dir: Annotated[Path, typer.Argument(help="Folder of case folders with treatments.yaml + outcomes.yaml.")],
        out: Annotated[Path, typer.Option("--out", help="Output folder for figures (PNG) and CSV.")],
        as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
        from_images: Annotated[bool, typer.Option(
            "--from-images", help="Lesions missing in outcomes.yaml: LTP date and margin from the imaging timepoints.")] = False,
    ) -> None:
        """Kaplan–Meier LTP-free survival by modality, overall survival and a Cox model over a cohort."""
        from latplan.followup.cohort import run_outcomes

        summary = run_outcomes(cohort_dir, out, derive_from_images=from_images)
        if as_json:
            typer.echo(json.dumps(summary, indent=2))
            return
        con = Console()
        t = Table("curve", "group", "n", "events", "median months (95 % CI)",
                  title=f"cohort outcomes: {summary['patients']} patients, {summary['lesions']} lesions")
        for curve, key in (("LTP-free", "ltp_free"), ("overall survival", "overall_survival")):
            for g, v in summary[key].items():
                med = "not reached" if v["median_months"] is None else (
                    f"{v['median_months']:.1f} ({_fmt(v['ci_lower'], 1)}–{_fmt(v['ci_upper'], 1)})")
                t.add_row(curve, g, str(v["n"]), str(v["events"]), med)
        con.print(t)
        cox = summary["cox_ltp"]
        if cox["fitted"]:
            c = Table("covariate", "HR", "95 % CI", "p", title=f"Cox model of LTP (n={cox['n']}, events={cox['events']})")
            for k, v in cox["covariates"].items():
                c.add_row(k, f"{v['exp(coef)']:.3f}", f"{v['exp(coef) lower 95%']:.3f}–{v['exp(coef) upper 95%']:.3f}",
                          f"{v['p']:.3g}")
            con.print(c)
        else:
            con.print(f"[yellow]Cox model not fitted:[/yellow] {cox['reason']}")
        for s in summary["skipped"]:
            con.print(f"[yellow]skipped:[/yellow] {s}")
        con.print(f"written to {out}: {', '.join(summary['files'])}")

    @app.command("timepoint-case")
    def timepoint_case_cmd(
        case_dir: Annotated[Path, typer.Argument(help="Case folder with timepoints/.")],
        label: Annotated[str, typer.Argument(help="Timepoint label, e.g. 3m.")],
        out: Annotated[Path, typer.Option("--out", help="New case folder to write (plan it with `latplan plan`).")],
        overwrite: Annotated[bool, typer.Option(help="Replace OUT if it exists.")] = False,
    ) -> None:
        """Write a follow-up timepoint as a plannable case with the prior treatments in case.yaml."""
        from latplan.followup.representation import write_timepoint_case

        path = write_timepoint_case(case_dir, label, out, overwrite=overwrite)
        typer.echo(f"wrote {path} (timepoint {label}); plan it with: latplan plan {path}")

    @app.command("synthetic-cohort")
    def synthetic_cohort_cmd(
        out: Annotated[Path, typer.Argument(help="Folder to write the synthetic case folders into.")],
        patients: Annotated[int, typer.Option(help="Number of patients.")] = 80,
        seed: Annotated[int, typer.Option(help="Seed (the cohort is deterministic from it).")] = 2021,
        os_median_months: Annotated[float, typer.Option(help="Median overall survival (exponential), months.")] = 36.0,
        imaging_cases: Annotated[int, typer.Option(help="How many cases also get phantom images + timepoints.")] = 0,
    ) -> None:
        """Write a synthetic follow-up cohort (stated exponential distributions; docs/followup.md)."""
        from latplan.followup.synthetic import SyntheticCohortSpec, generate_cohort

        spec = SyntheticCohortSpec(n_patients=patients, seed=seed, os_median_months=os_median_months,
                                   imaging_cases=imaging_cases)
        folders = generate_cohort(out, spec)
        typer.echo(f"wrote {len(folders)} synthetic cases to {out}; analyse with: latplan outcomes {out} --out OUT")

    @app.command("fig2-followup")
    def fig2_cmd(
        out: Annotated[Path, typer.Argument(help="Case folder to write.")],
        voxel_mm: Annotated[float | None, typer.Option(help="Phantom voxel size (mm).")] = None,
        overwrite: Annotated[bool, typer.Option(help="Replace OUT if it exists.")] = False,
    ) -> None:
        """Write the seed's Figure 2 case with its 3-month follow-up (residual rim after TACE)."""
        from latplan.followup.demo import build_fig2_followup

        path = build_fig2_followup(out, voxel_mm=voxel_mm, overwrite=overwrite)
        typer.echo(f"wrote {path}; analyse with: latplan followup {path}; re-plan with: "
                   f"latplan timepoint-case {path} 3m --out OUT")
