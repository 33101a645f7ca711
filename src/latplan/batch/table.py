"""The cohort table (issue [O] part 2): one row per lesion of every planned case.

Read from each case's published ``plan.json`` (the schema in ``latplan/board/plan.schema.json``):
case, patient, primary, lesion, organ, size, segment(s), for every modality ``<m>_tier`` (the board's
``tier`` when plan.json has it, else the option's eligibility), ``<m>_rank`` and, when simulated,
``<m>_coverage_percent``, ``<m>_min_margin_mm``, ``<m>_d100_gy``; the top-ranked option and the top
strategy, the needs-review flags, and the modality actually given (``treatments.yaml``) when the
case folder has one. Absent values stay empty (unknown), never zero.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from latplan.batch.jobs import CASES_DIR, Manifest, read_manifest
from latplan.errors import CaseFolderError
from latplan.followup.timepoints import load_treatments

__all__ = ["LesionRow", "ModalityCell", "cohort_frame", "lesion_rows", "write_cohort_table"]

#: simulation metrics copied per modality (plan.json ``simulation`` keys)
SIM_METRICS = ("coverage_percent", "min_margin_mm", "d100_gy")


@dataclass(frozen=True)
class ModalityCell:
    """One modality's verdict for one lesion."""

    modality: str
    tier: str
    rank: int | None
    needs_review: bool
    coverage_percent: float | None = None
    min_margin_mm: float | None = None
    d100_gy: float | None = None


@dataclass(frozen=True)
class LesionRow:
    """One lesion of one planned case."""

    case: str
    patient_id: str
    primary: str
    lesion: str
    organ: str
    max_diameter_mm: float | None
    volume_ml: float | None
    segment: str
    top_option: str | None
    top_option_tier: str | None
    top_strategy: str | None
    top_strategy_kind: str | None
    needs_review: bool
    strategy_needs_review: bool
    options_needing_review: int
    given_modality: str | None
    report: str
    cells: tuple[ModalityCell, ...] = field(default_factory=tuple)


def _float(v: object) -> float | None:
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else None


def _cell(opt: dict[str, object]) -> ModalityCell:
    sim = opt.get("simulation")
    sim = sim if isinstance(sim, dict) else {}
    rank = opt.get("rank")
    return ModalityCell(str(opt.get("modality")), str(opt.get("tier") or opt.get("eligibility") or "unknown"),
                        int(rank) if isinstance(rank, int) else None, bool(opt.get("needs_review")),
                        *(_float(sim.get(k)) for k in SIM_METRICS))


def lesion_rows(name: str, result_dir: Path, case_dir: Path) -> list[LesionRow]:
    """The rows of one planned case (its ``plan.json``)."""
    plan = json.loads((result_dir / "plan.json").read_text(encoding="utf-8"))
    strategies = sorted(plan.get("strategies") or [], key=lambda s: s.get("rank", 1 << 30))
    top_s = strategies[0] if strategies else {}
    try:
        given = {t.lesion: t.modality.value for t in reversed(load_treatments(case_dir))}
    except CaseFolderError:  # an unreadable treatments.yaml: the given modality is unknown, the plan still counts
        given = {}
    rows: list[LesionRow] = []
    for les in plan.get("lesions") or []:
        meas = les.get("measurements") or {}
        options = sorted(les.get("options") or [], key=lambda o: o.get("rank") or 1 << 30)
        cells = tuple(_cell(o) for o in options)
        top = cells[0] if cells else None
        rows.append(LesionRow(
            case=name, patient_id=str(plan["patient"]["id"]), primary=str(plan["patient"].get("primary")),
            lesion=str(les["id"]), organ=str(meas.get("organ", "liver")),
            max_diameter_mm=_float(meas.get("max_diameter_mm")), volume_ml=_float(meas.get("volume_ml")),
            segment="/".join(str(s) for s in meas.get("segments") or []),
            top_option=top.modality if top else None, top_option_tier=top.tier if top else None,
            top_strategy=top_s.get("title"), top_strategy_kind=top_s.get("kind"),
            needs_review=bool(top.needs_review) if top else True,
            strategy_needs_review=bool(top_s.get("needs_review")),
            options_needing_review=sum(c.needs_review for c in cells),
            given_modality=given.get(str(les["id"])), report=f"{CASES_DIR}/{name}/report.html", cells=cells))
    return rows


def _flat(row: LesionRow) -> dict[str, object]:
    out: dict[str, object] = {k: v for k, v in row.__dict__.items() if k != "cells"}
    for c in row.cells:
        out[f"{c.modality}_tier"] = c.tier
        out[f"{c.modality}_rank"] = c.rank
        for k in SIM_METRICS:
            out[f"{c.modality}_{k}"] = getattr(c, k)
    return out


def cohort_frame(rows: list[LesionRow]) -> pd.DataFrame:
    """The rows as a DataFrame (modality columns in a stable order: base columns, then by modality)."""
    base = [k for k in LesionRow.__dataclass_fields__ if k != "cells"]
    mods = sorted({c.modality for r in rows for c in r.cells})
    cols = base + [f"{m}_{k}" for m in mods for k in ("tier", "rank", *SIM_METRICS)]
    df = pd.DataFrame([_flat(r) for r in rows], columns=cols)
    for m in mods:
        df[f"{m}_rank"] = df[f"{m}_rank"].astype("Int64")
        for k in SIM_METRICS:
            df[f"{m}_{k}"] = pd.to_numeric(df[f"{m}_{k}"], errors="coerce").astype("float64")
    for k in ("max_diameter_mm", "volume_ml"):
        df[k] = pd.to_numeric(df[k], errors="coerce").astype("float64")
    return df


def collect(out_dir: Path, cases: dict[str, Path]) -> tuple[list[LesionRow], dict[str, Manifest]]:
    """Rows of every successfully planned case and every case's manifest (``None`` cases omitted)."""
    rows: list[LesionRow] = []
    manifests: dict[str, Manifest] = {}
    for name, case_dir in sorted(cases.items()):
        result = out_dir / CASES_DIR / name
        manifest = read_manifest(result)
        if manifest is None:
            continue
        manifests[name] = manifest
        if manifest.status == "ok":
            rows.extend(lesion_rows(name, result, case_dir))
    return rows, manifests


def write_cohort_table(df: pd.DataFrame, out_dir: Path) -> dict[str, Path]:
    """``OUT/cohort.parquet`` (pyarrow) and ``OUT/cohort.csv``, each written then renamed into place."""
    paths = {"parquet": out_dir / "cohort.parquet", "csv": out_dir / "cohort.csv"}
    tmp_parquet, tmp_csv = out_dir / ".cohort.parquet.tmp", out_dir / ".cohort.csv.tmp"
    df.to_parquet(tmp_parquet, engine="pyarrow", index=False)
    df.to_csv(tmp_csv, index=False)
    tmp_parquet.replace(paths["parquet"])
    tmp_csv.replace(paths["csv"])
    return paths
