"""MWA calibration of the bioheat model against a device chart."""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np

from latplan.errors import OutOfRangeError
from latplan.physics.ablation_zones import load_mwa_chart
from latplan.physics.bioheat.controllers import simulate_heating
from latplan.physics.bioheat.data import Tissue, default_tissues, thermal_constants
from latplan.physics.bioheat.grid import zone_dimensions_mm
from latplan.physics.bioheat.sources import mwa_source


# --------------------------------------------------------------------------------------------
# MWA: calibration against a device chart
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class MwaModel:
    """Calibrated MWA source of one antenna.

    ``efficiency`` η = absorbed / generator power, fitted so that the simulated zone volume
    equals the chart volume at ``calibration_setting`` (perfused liver, temperatures capped
    at ``vaporisation_c``); ``feed_offset_from_tip_mm`` = the chart's zone-centre offset at
    that setting (the teardrop is centred there).
    """

    device: str
    efficiency: float
    calibration_setting: tuple[float, float]
    feed_offset_from_tip_mm: float
    elongation: float
    penetration_mm: float = 15.0
    core_mm: float = 2.0
    vaporisation_c: float = 100.0
    spacing_mm: float = 1.5
    perfused: bool = True


def _mwa_box(length_mm: float, spacing_mm: float) -> int:
    return math.ceil((length_mm + 40.0) / spacing_mm) | 1


def simulate_mwa_zone(model: MwaModel, power_w: float, time_s: float, *, spacing_mm: float | None = None,
                      perfused: bool | None = None, box_mm: float | None = None) -> dict[str, float]:
    """Zone dimensions (mm, ml) of a single antenna in homogeneous liver (axis along k)."""
    h = spacing_mm or model.spacing_mm
    n = _mwa_box(box_mm or 100.0, h)
    sp_ = (h, h, h)
    liver = default_tissues()["liver"]
    perf = model.perfused if perfused is None else perfused
    if not perf:
        liver = Tissue(liver.name, liver.density_kg_m3, liver.heat_capacity_j_kg_k, liver.conductivity_w_m_k, 0.0)
    lab = np.zeros((n, n, n), np.uint8)
    c = (n // 2) * h
    q = mwa_source(lab.shape, sp_, (c, c, c), (1.0, 0.0, 0.0), penetration_mm=model.penetration_mm,
                   elongation=model.elongation, core_mm=model.core_mm)
    r = simulate_heating(lab, [liver], sp_, time_s, source_w_m3_per_w=q, power_w=model.efficiency * power_w,
                         vaporisation_c=model.vaporisation_c)
    return zone_dimensions_mm(r.zone, sp_, (1.0, 0.0, 0.0))


def calibrate_mwa(chart: Any, power_w: float, time_s: float, *, spacing_mm: float = 1.5,
                  tol_percent: float = 1.0) -> MwaModel:
    """Fit η so the simulated zone volume equals ``chart``'s volume at (power_w, time_s).

    ``chart`` is a :class:`latplan.physics.ablation_zones.DeviceChart`. Rows flagged
    inconsistent in the source are refused. Bisection on η (monotonic volume).
    """
    row = chart.row(power_w, time_s)
    if row is None:
        raise OutOfRangeError(f"{chart.label} has no chart row at {power_w:g} W / {time_s:g} s to calibrate on.")
    if row.flag:
        raise OutOfRangeError(f"the {power_w:g} W / {time_s:g} s row of {chart.label} is flagged "
                              f"'{row.flag}' in the source: choose another calibration row.")
    base = MwaModel(chart.key, 0.3, (power_w, time_s), row.centre_offset_from_tip_mm,
                    max(1.0, row.length_mm / row.width_mm), spacing_mm=spacing_mm)
    lo, hi = 0.02, 1.0
    eff = 0.3
    for _ in range(20):
        eff = 0.5 * (lo + hi)
        m = MwaModel(**{**base.__dict__, "efficiency": eff})
        v = simulate_mwa_zone(m, power_w, time_s, box_mm=row.length_mm)["volume_ml"]
        if abs(v / row.volume_ml - 1.0) * 100.0 <= tol_percent:
            break
        if v < row.volume_ml:
            lo = eff
        else:
            hi = eff
    return MwaModel(**{**base.__dict__, "efficiency": eff})


def chart_consistency(chart: Any, model: MwaModel, *, spacing_mm: float | None = None) -> list[dict[str, Any]]:
    """Simulated vs chart zone at every chart row: one dict per row (volume difference in %)."""
    out = []
    for r in chart.rows:
        d = simulate_mwa_zone(model, r.power_w, r.time_s, spacing_mm=spacing_mm, box_mm=r.length_mm)
        out.append({
            "power_w": r.power_w, "time_s": r.time_s, "chart_ml": r.volume_ml, "model_ml": round(d["volume_ml"], 2),
            "diff_percent": round(100.0 * (d["volume_ml"] / r.volume_ml - 1.0), 1),
            "chart_length_mm": r.length_mm, "model_length_mm": d["length_mm"],
            "chart_width_mm": r.width_mm, "model_width_mm": d["width_mm"],
            "flag": r.flag, "calibration_row": (r.power_w, r.time_s) == model.calibration_setting,
        })
    return out


#: calibration rows per antenna (decision: a mid-power, mid-time row without a source note)
MWA_CALIBRATION_ROWS: dict[str, tuple[float, float]] = {
    "covidien_emprint": (75.0, 300.0),
    "amica": (60.0, 300.0),
    "acculis": (100.0, 240.0),
}


@cache
def mwa_model(device: str = "covidien_emprint") -> MwaModel:
    """The calibrated model of an antenna (η from the data file when stored, else fitted now)."""
    stored = thermal_constants().get("mwa_calibration", {}) or {}
    chart = load_mwa_chart(device)
    p, t = MWA_CALIBRATION_ROWS.get(device, (chart.calibration_rows()[0].power_w, chart.calibration_rows()[0].time_s))
    row = chart.row(p, t)
    assert row is not None
    if device in stored:
        return MwaModel(device, float(stored[device]), (p, t), row.centre_offset_from_tip_mm,
                        max(1.0, row.length_mm / row.width_mm))
    return calibrate_mwa(chart, p, t)
