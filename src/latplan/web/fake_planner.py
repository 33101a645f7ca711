"""A deterministic stand-in planner (tests, demos of the web app without the engines).

It writes what the real planner writes — ``plan.json`` in the shape of issue [D], a small
``report/report.html`` and the viewer files with one spherical "ablation zone" (lesion
dilated by 5 mm) and one "dose" (1/r² falloff) per lesion — so the job machinery, the case
page and the exports can be tested on their own. ``LATPLAN_FAKE_PLANNER_DELAY_S`` makes it
slow (crash tests kill the worker in the middle of it).
"""

from __future__ import annotations

import html
import json
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

from latplan.errors import PlanningError
from latplan.imaging.case_folder import load_case_folder
from latplan.planning.types import TreatmentPlan
from latplan.web.progress import ProgressFn
from latplan.web.viewer import write_viewer_files

MODALITIES = ("mwa", "rfa", "ibt", "sbrt")


def fake_planner(case_dir: Path, out_dir: Path, progress: ProgressFn,
                 parameters: Mapping[str, Any] | None = None) -> None:
    delay_s = float(os.environ.get("LATPLAN_FAKE_PLANNER_DELAY_S", "0"))
    case = load_case_folder(case_dir)
    lesions, plans = [], []
    ids = case.lesion_ids
    for n, lesion_id in enumerate(ids):
        m = case.lesion_mask(lesion_id)
        spacing = np.asarray(m.spacing_kji_mm)
        dist_out = ndimage.distance_transform_edt(~m.array, sampling=spacing)
        zone = dist_out <= 5.0
        centre = np.array(ndimage.center_of_mass(m.array))
        kk, jj, ii = np.indices(m.array.shape)
        r2 = sum(((g - c) * s) ** 2 for g, c, s in zip((kk, jj, ii), centre, spacing, strict=True)) + 25.0
        dose = 20.0 * 100.0 / r2
        plans.append(TreatmentPlan("mwa", lesion_id, {"min_margin_mm": 5.0, "coverage_percent": 100.0},
                                   zone=m.with_array(zone)))
        plans.append(TreatmentPlan("ibt", lesion_id, {"d100_gy": 15.0}, dose=m.with_array(dose.astype(np.float32)),
                                   prescription_gy=15.0))
        options = [
            {"modality": mod, "eligibility": "eligible", "rank": r + 1,
             "reasons": [{"rule_id": "FAKE-1", "text": "stand-in planner", "citation": "none"}],
             "simulation": None}
            for r, mod in enumerate(MODALITIES)
        ]
        options.append({"modality": "tace", "eligibility": "contraindicated", "rank": None,
                         "reasons": [{"rule_id": "FAKE-2", "text": "stand-in", "citation": "none"}], "simulation": None})
        volume_ml = float(m.array.sum()) * m.voxel_volume_ml
        lesions.append({"id": lesion_id, "measurements": {
                            "volume_ml": round(volume_ml, 2),
                            # stand-in: the equivalent-sphere diameter (mm) where [D] reports the maximum diameter
                            "max_diameter_mm": round(2.0 * (3.0 * volume_ml * 1000.0 / (4.0 * np.pi)) ** (1 / 3), 1)},
                        "options": options})
        steps = 4
        for s in range(steps):
            time.sleep(delay_s / max(1, len(ids)) / steps)
            progress(0.1 + 0.7 * (n + (s + 1) / steps) / max(1, len(ids)), f"planning {lesion_id} ({s + 1}/{steps})")
    plan = {
        "rule_set": {"name": "fake", "version": "0"},
        "parameters": dict(parameters or {}),
        "patient": {"id": str(case.patient.id), "primary": str(case.patient.primary),
                    "oligometastatic": {"status": "unknown", "definition": "n/a"}},
        "lesions": lesions,
        "strategies": [
            {"rank": 1, "steps": [{"lesion_ids": ids, "modality": "mwa", "order": 1}], "rationale": "stand-in",
             "evidence_level": "n/a"},
            {"rank": 2, "steps": [{"lesion_ids": ids, "modality": "ibt", "order": 1}], "rationale": "stand-in",
             "evidence_level": "n/a"},
        ],
    }
    (out_dir / "plan.json").write_text(json.dumps(plan, indent=1))
    (out_dir / "report").mkdir()
    rows = "".join(f"<li>{html.escape(str(le['id']))}: {len(le['options'])} options</li>" for le in lesions)
    (out_dir / "report" / "report.html").write_text(
        "<!doctype html><html><head><meta charset='utf-8'><title>Report</title></head><body>"
        f"<h1>Stand-in report for {html.escape(str(case.patient.id))}</h1><ul>{rows}</ul></body></html>"
    )
    progress(0.9, "writing the viewer volumes")
    write_viewer_files(case, plans, out_dir / "viewer")
    progress(1.0, "done")


def failing_planner(case_dir: Path, out_dir: Path, progress: ProgressFn,
                    parameters: Mapping[str, Any] | None = None) -> None:
    """Writes a partial file, then fails the way a real engine does (tests of the failure path)."""
    progress(0.5, "half way")
    (out_dir / "partial.txt").write_text("half-written")
    raise PlanningError("the stand-in planner failed on purpose: dwell optimisation did not converge.")
