"""Demo follow-up of the seed's Figure 2 case (Kovács et al. 2021, Fig. 2 A–C).

Story: a progressive solitary colorectal metastasis on the border of segments IVa/VIII under
third-line chemotherapy is treated with TACE (DEB-IRI); contrast MRI 3 months later shows
subtotal devascularisation with a *still vital tumour margin on the right lateral-apical side*
(Fig. 2C). That residue is what the board re-plans for interstitial brachytherapy (Fig. 2D).

:func:`build_fig2_followup` writes the baseline case (phantom demo spec
``fig2-seg4a8-third-line`` of [A2]), ``treatments.yaml`` (TACE), ``landmarks.yaml`` and a
``timepoints/3m`` with the devascularised zone and the residual rim, acquired after a known
small patient motion. ``latplan followup`` analyses it; :func:`~latplan.followup.representation.case_for_timepoint`
(or ``latplan timepoint-case``) turns the 3-month scan into a plannable case with the TACE
in the patient's prior therapies.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from pathlib import Path

import numpy as np
from scipy import ndimage

from latplan.case.model import Case
from latplan.errors import LatplanError
from latplan.followup._io import write_yaml
from latplan.followup.analysis import followup_summary
from latplan.followup.figures import response_figure
from latplan.followup.imaging_phantom import rigid_transform, warp, write_timepoint
from latplan.followup.representation import write_timepoint_case
from latplan.imaging.case_folder import save_case_folder
from latplan.imaging.volume import Volume
from latplan.phantom import build_demo_case

__all__ = ["FIG2_SPEC", "build_fig2_followup", "write_fig2_followup_demo"]

log = logging.getLogger(__name__)
FIG2_SPEC = "fig2-seg4a8-third-line"
#: patient's right (−x in LPS) and apical (+z): where the seed's residual margin lies
RESIDUAL_DIRECTION_LPS = np.array([-1.0, 0.0, 1.0]) / np.sqrt(2.0)
RIM_THICKNESS_MM = 6.0
RIM_HALF_ANGLE_DEG = 55.0


def _baseline(voxel_mm: float | None) -> tuple[Case, str]:
    return build_demo_case(FIG2_SPEC, voxel_mm), f"baseline: phantom demo spec {FIG2_SPEC!r} ([A2])"


def build_fig2_followup(out_dir: str | Path, voxel_mm: float | None = None, overwrite: bool = False,
                        tace_date: dt.date = dt.date(2020, 3, 2)) -> Path:
    """Write the Figure 2 case with a 3-month follow-up showing a residual rim; returns the folder."""
    out = Path(out_dir)
    case, note = _baseline(voxel_mm)
    lesions = case.lesion_ids
    if not lesions:
        raise LatplanError(f"the demo case {FIG2_SPEC!r} has no lesion to follow.")
    lid = lesions[0]
    save_case_folder(case, out, overwrite=overwrite)
    write_yaml({"treatments": [{
        "lesion": lid, "modality": "tace", "date": tace_date.isoformat(), "site": "segment 4a/8 border",
        "settings": {"agent": "DEB-IRI (irinotecan-loaded drug-eluting beads)"},
        "notes": "Seed Fig. 2B: initial transarterial chemoembolisation.",
    }]}, out / "treatments.yaml")

    tumour = case.mask_array(lid)
    xyz = case.image.grid_mm()
    centre = xyz[tumour].mean(axis=0)
    depth = ndimage.distance_transform_edt(tumour, sampling=case.image.spacing_kji_mm)
    vec = xyz - centre
    norm = np.linalg.norm(vec, axis=-1) + 1e-9
    cosang = (vec @ RESIDUAL_DIRECTION_LPS) / norm
    rim = tumour & (depth <= RIM_THICKNESS_MM) & (cosang >= np.cos(np.deg2rad(RIM_HALF_ANGLE_DEG)))
    necrotic = tumour & ~rim

    zone_value = int(max(e.value for e in case.label_table.entries)) + 1
    labels = np.array(case.labels.array, copy=True)
    labels[necrotic] = zone_value
    img = np.array(case.image.array, dtype=np.float32, copy=True)
    tumour_mean = float(img[tumour].mean())
    img[necrotic] = tumour_mean - 35.0  # devascularised: no enhancement
    img[rim] = tumour_mean + 25.0  # vital rim: enhancing

    table = {e.value: {"name": e.name, "role": e.role.value} for e in case.label_table.entries}
    table[zone_value] = {"name": "devascularised_zone", "role": "ablation_zone"}
    tx = rigid_transform((1.5, -1.0, 2.0), (4.0, -3.0, 5.0), centre_mm=tuple(centre))
    base_pts = {
        "tumour_centre": centre,
        **{f"L{i + 1}": centre + np.asarray(d, float) for i, d in
           enumerate([[40, 0, 0], [-40, 20, 0], [0, -30, 20], [10, 30, -30], [-30, -20, -20]])},
    }
    write_yaml({k: [round(float(c), 3) for c in v] for k, v in base_pts.items()}, out / "landmarks.yaml")
    spec = {
        "date": (tace_date + dt.timedelta(days=91)).isoformat(),
        "kind": "follow_up",
        "image_modality": "MR",
        "lesions": {lid: lid},
        "ablation_zone": {"devascularised_zone": lid},
        "landmarks_mm": {k: [round(float(c), 4) for c in tx.TransformPoint(tuple(float(x) for x in v))]
                         for k, v in base_pts.items()},
        "notes": "Seed Fig. 2C: subtotal devascularisation with a still vital tumour margin on the right "
                 "lateral-apical side. " + note,
    }
    background = float(np.percentile(img, 1))
    write_timepoint(out, "3m", spec, warp(Volume(img, case.image.affine), tx, default=background),
                    warp(case.labels.with_array(labels.astype(np.int16)), tx, labels=True), table)
    log.info("wrote the Figure 2 follow-up demo to %s (%s)", out, note)
    return out


def write_fig2_followup_demo(out_dir: str | Path, voxel_mm: float | None = None, *,
                             overwrite: bool = True) -> dict[str, Path]:
    """The follow-up demo's analysis (planning the residue is :func:`latplan.pipeline.run_fig2_followup_demo`).

    Writes ``out_dir/case`` (Figure 2 case + 3-month timepoint), ``followup.json`` and ``response.png``
    (analysis) and ``case-3m`` (the 3-month scan as a plannable case with the TACE in its prior
    therapies); returns their paths (keys ``case``, ``followup_json``, ``response_png``, ``case_3m``).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    case_dir = build_fig2_followup(out / "case", voxel_mm=voxel_mm, overwrite=overwrite)
    summary = followup_summary(case_dir)
    files: dict[str, Path] = {"case": case_dir}
    (out / "followup.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    files["followup_json"] = out / "followup.json"
    import matplotlib.pyplot as plt  # third-party; response_figure selects the Agg backend first

    fig = response_figure(summary)
    fig.savefig(out / "response.png", dpi=110)
    plt.close(fig)
    files["response_png"] = out / "response.png"
    files["case_3m"] = write_timepoint_case(case_dir, "3m", out / "case-3m", overwrite=overwrite)
    return files
