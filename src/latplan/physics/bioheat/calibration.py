"""MWA calibration of the bioheat model against the (ex vivo) device charts.

Model (decisions, docs/ablation-physics.md "MWA"):

* Source: the teardrop of :func:`~latplan.physics.bioheat.sources.mwa_source` (δ = 15 mm, core
  2 mm), elongation γ = the chart's mean length/width, centred on the chart's zone centre.
* Antenna: water-cooled shaft (all three devices are cooled antennas) held at 25 °C from the tip
  back to the grid's edge, radius 1.2 mm (13 G); it takes part of the heat (a boundary loss).
* Vaporisation: latent heat of the tissue water over 99–100 °C (enthalpy method, no energy
  deleted); dried voxels absorb no more microwave power, which moves to wet tissue (the absorbed
  total is unchanged; dielectric loss collapses on dehydration, Ji & Brace, Phys Med Biol 2011).
* Absorbed power ``P_abs(t) = η · P · (P/P_ref)^(β−1) · (max(t, t₀)/t₀)^(−a)`` per device:
  η the absorbed fraction, β its power dependence and a its decline in time — the antenna's match
  and the cooled shaft's share change as the tissue dries (Brace, Curr Probl Diagn Radiol
  2009;38:135). Three parameters, fitted per device on its chart rows (9–15 rows each) with
  **perfusion off**: the charts are ex vivo bovine liver. In vivo zones are then the same model
  with perfused liver (:func:`simulate_mwa_zone` ``perfused=True``).
* Zone volume as the charts define it: a chart's volume is π/6·L·W·D of its three axes (data
  file header), not the coagulated volume itself; the model's zone is compared the same way —
  π/6 × its length and two widths (:func:`chart_volume_ml`). The simulated teardrop holds ≈ 7 %
  more tissue than the ellipsoid of its axes, so counting voxels compared unlike quantities.
* Fit: on a cached table of simulated chart-equivalent zone volumes (:class:`MwaTable`: absorbed
  power ladder × time-decline exponent × chart times, one 3-D run per ladder point with zone
  snapshots, 2 mm grid), log-interpolated; robust (Huber) least squares in log volume.
  :func:`leave_one_out` refits without each row.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
from scipy import optimize

from latplan.errors import OutOfRangeError, SourceDataError
from latplan.physics.ablation_zones import load_mwa_chart
from latplan.physics.bioheat.controllers import simulate_heating
from latplan.physics.bioheat.data import BioheatResult, Tissue, default_tissues
from latplan.physics.bioheat.grid import zone_dimensions_mm
from latplan.physics.bioheat.sources import antenna_shaft_mask, mwa_source

#: cached calibration tables (engine output, rebuilt by benchmarks/bench_bioheat.py --rebuild-mwa)
TABLE_FILE = Path(__file__).resolve().parent.parent / "data" / "ablation" / "mwa_calibration_table.json"
#: reference time t₀ (s) of the decline and reference power P_ref (W) of the power dependence
T_REF_S = 60.0
P_REF_W = 60.0
#: time-decline exponents a and absorbed powers (W at t ≤ t₀) of the table
A_GRID = (0.0, 0.5, 1.0, 1.5, 2.0, 2.5)
#: grid of the calibration table (mm): zones ≥ 3 ml are ≥ 890 voxels; the zone axes (chart volume) are
#: quantised by one voxel, 2 mm gave 28/33 in leave-one-out, 1.5 mm 30/33
TABLE_SPACING_MM = 1.5
#: Huber scale of the fit in log volume (≈ 5 %)
HUBER_LOG = 0.05
LADDER_W = tuple(round(4.0 * 1.6**i, 3) for i in range(11))
#: the devices with a chart and a calibration
MWA_DEVICES = ("covidien_emprint", "amica", "acculis")
#: kept for callers of the former one-row calibration: every unflagged row is used now
MWA_CALIBRATION_ROWS: dict[str, tuple[float, float]] = {
    "covidien_emprint": (75.0, 300.0),
    "amica": (60.0, 300.0),
    "acculis": (100.0, 240.0),
}


@dataclass(frozen=True)
class MwaModel:
    """Calibrated MWA source of one antenna (see module doc; perfusion off at calibration)."""

    device: str
    efficiency: float
    power_exponent: float
    time_decline: float
    feed_offset_from_tip_mm: float
    elongation: float
    penetration_mm: float = 15.0
    core_mm: float = 2.0
    vaporisation_c: float = 100.0
    dried_sar_fraction: float = 0.0
    shaft_c: float | None = 25.0          # water-cooled antenna shaft held here (None = not cooled)
    shaft_radius_mm: float = 1.2          # 13 G antenna
    spacing_mm: float = 1.5
    calibration_setting: tuple[float, float] = (0.0, 0.0)   # former single row; unused

    def absorbed_power_w(self, power_w: float, time_s: float) -> float:
        """Absorbed power (W) at ``time_s`` for generator power ``power_w``."""
        scale = self.efficiency * power_w * (power_w / P_REF_W) ** (self.power_exponent - 1.0)
        return float(scale * (max(time_s, T_REF_S) / T_REF_S) ** (-self.time_decline))

    def power_trace(self, power_w: float, time_s: float, dt_s: float = 1.0) -> tuple[float, np.ndarray]:
        """``(dt_s, absorbed W per interval)`` for :func:`simulate_heating`'s ``power_trace``."""
        t = (np.arange(math.ceil(time_s / dt_s) + 1) + 0.5) * dt_s
        return dt_s, np.array([self.absorbed_power_w(power_w, float(x)) for x in t], np.float32)


def run_mwa(model: MwaModel, labels: np.ndarray, tissues: Sequence[Tissue], spacing_kji_mm: Sequence[float],
            source_w_m3_per_w: np.ndarray, power_w: float, time_s: float, *, units: int = 1,
            zone_snapshots_s: Sequence[float] = (), shaft: np.ndarray | None = None) -> BioheatResult:
    """One MWA run of ``units`` antennas at generator ``power_w`` each (the calibrated absorbed-
    power history, latent heat, dehydration); ``source_w_m3_per_w`` integrates to 1 W. ``shaft``
    (bool, :func:`antenna_shaft_mask`): the water-cooled antennas, held at ``model.shaft_c`` (their
    voxels absorb nothing; the source is renormalised over the tissue)."""
    dt, trace = model.power_trace(power_w, time_s)
    t0: float | np.ndarray = 37.0
    q = source_w_m3_per_w
    if shaft is not None and model.shaft_c is not None and shaft.any():
        lab = np.asarray(labels).astype(np.uint8).copy()
        lab[shaft] = len(tissues)
        tissues = [*tissues, Tissue("cooled_antenna", 8000.0, 500.0, 16.0, fixed=True)]
        labels = lab
        t0 = np.full(lab.shape, 37.0, np.float32)
        t0[shaft] = model.shaft_c
        q = np.where(shaft, np.float32(0.0), q).astype(np.float32)
        q *= np.float32(float(source_w_m3_per_w.sum(dtype=np.float64)) / max(float(q.sum(dtype=np.float64)), 1e-30))
    return simulate_heating(labels, tissues, spacing_kji_mm, time_s, source_w_m3_per_w=q, initial_temperature_c=t0,
                            power_trace=(dt, trace * units), vaporisation_c=model.vaporisation_c,
                            dried_sar_fraction=model.dried_sar_fraction, zone_snapshots_s=zone_snapshots_s)


def _single_antenna(model: MwaModel, n: int, h: float) -> tuple[np.ndarray, np.ndarray]:
    """(source, cooled shaft) of one antenna along +k, its zone centre at the centre of an n³ grid."""
    c = (n // 2) * h
    q = mwa_source((n, n, n), (h, h, h), (c, c, c), (1.0, 0.0, 0.0), penetration_mm=model.penetration_mm,
                   elongation=model.elongation, core_mm=model.core_mm)
    tip = (c - model.feed_offset_from_tip_mm, c, c)
    return q, antenna_shaft_mask((n, n, n), (h, h, h), tip, (1.0, 0.0, 0.0), radius_mm=model.shaft_radius_mm)


def _liver(perfused: bool) -> Tissue:
    liver = default_tissues()["liver"]
    if perfused:
        return liver
    return Tissue("liver_ex_vivo", liver.density_kg_m3, liver.heat_capacity_j_kg_k, liver.conductivity_w_m_k, 0.0)


def _box(length_mm: float, spacing_mm: float) -> int:
    return math.ceil((length_mm + 40.0) / spacing_mm) | 1


def chart_volume_ml(zone: np.ndarray, spacing_mm: float) -> float:
    """The chart-equivalent volume (ml) of a zone along k: π/6 · length · width · depth, the
    charts' own definition (mwa_charts.yaml header), from :func:`zone_dimensions_mm`."""
    d = zone_dimensions_mm(zone, (spacing_mm,) * 3, (1.0, 0.0, 0.0))
    return math.pi / 6.0 * d["length_mm"] * d["width_mm"] * d["depth_mm"] / 1000.0 if d["volume_ml"] > 0 else 0.0


def simulate_mwa_zone(model: MwaModel, power_w: float, time_s: float, *, spacing_mm: float | None = None,
                      perfused: bool = False, box_mm: float | None = None) -> dict[str, float]:
    """Zone dimensions (mm, ml) of one antenna in homogeneous liver (axis along k): ex vivo
    (``perfused=False``, the charts' condition) or in vivo (perfused liver). ``volume_ml`` is the
    coagulated volume, ``chart_volume_ml`` the chart-equivalent π/6·L·W·D."""
    h = spacing_mm or model.spacing_mm
    n = _box(box_mm or 60.0, h)
    q, shaft = _single_antenna(model, n, h)
    r = run_mwa(model, np.zeros((n, n, n), np.uint8), [_liver(perfused)], (h, h, h), q, power_w, time_s, shaft=shaft)
    out = zone_dimensions_mm(r.zone, (h, h, h), (1.0, 0.0, 0.0))
    out["chart_volume_ml"] = chart_volume_ml(r.zone, h)
    return out


# --------------------------------------------------------------------------------------------
# the simulated volume table and the fit
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class MwaTable:
    """Simulated ex vivo chart-equivalent zone volumes (ml, π/6·L·W·D) of one device's source: ``volume_ml[a, p, t]`` for
    time-decline exponent ``a_grid[a]``, absorbed power ``ladder_w[p]`` (at t ≤ t₀), time ``times_s[t]``."""

    device: str
    spacing_mm: float
    elongation: float
    a_grid: tuple[float, ...]
    ladder_w: tuple[float, ...]
    times_s: tuple[float, ...]
    volume_ml: np.ndarray

    def volumes(self, absorbed_w: np.ndarray, a: float, time_s: np.ndarray) -> np.ndarray:
        """Volumes (ml) at absorbed powers ``absorbed_w`` (W at t ≤ t₀) and exponent ``a``: bilinear
        in (log power, a) of log volume, linear extrapolation beyond the ladder's ends."""
        lv = np.log(np.maximum(self.volume_ml, 1e-3))
        lp = np.log(np.asarray(self.ladder_w))
        ag = np.asarray(self.a_grid)
        ti = np.searchsorted(np.asarray(self.times_s), np.asarray(time_s, float))
        x = np.log(np.maximum(np.asarray(absorbed_w, float), 1e-6))
        j = np.clip(np.searchsorted(lp, x) - 1, 0, len(lp) - 2)
        u = (x - lp[j]) / (lp[j + 1] - lp[j])
        i = int(np.clip(np.searchsorted(ag, a) - 1, 0, len(ag) - 2))
        v = (a - ag[i]) / (ag[i + 1] - ag[i])
        lo = lv[i, j, ti] * (1 - u) + lv[i, j + 1, ti] * u
        hi = lv[i + 1, j, ti] * (1 - u) + lv[i + 1, j + 1, ti] * u
        out: np.ndarray = np.exp(lo * (1 - v) + hi * v)
        return out

    def volume(self, absorbed_w: float, a: float, time_s: float) -> float:
        """One volume (ml), see :meth:`volumes`."""
        return float(self.volumes(np.array([absorbed_w]), a, np.array([time_s]))[0])


def _unflagged(device: str) -> list[Any]:
    return [r for r in load_mwa_chart(device).rows if not r.flag]


def _base_model(device: str, spacing_mm: float = 1.5) -> MwaModel:
    rows = _unflagged(device)
    gam = float(np.mean([r.length_mm / r.width_mm for r in rows]))
    off = float(np.mean([r.centre_offset_from_tip_mm for r in rows]))
    return MwaModel(device, 0.3, 1.0, 0.0, off, max(1.0, gam), spacing_mm=spacing_mm)


def build_mwa_table(device: str, *, spacing_mm: float = TABLE_SPACING_MM, a_grid: Sequence[float] = A_GRID,
                    ladder_w: Sequence[float] = LADDER_W) -> MwaTable:
    """Simulate the table (one run per (a, absorbed power) with snapshots at the chart times)."""
    rows = _unflagged(device)
    times = tuple(sorted({float(r.time_s) for r in rows}))
    base = _base_model(device, spacing_mm)
    h = spacing_mm
    n = _box(max(r.length_mm for r in rows), h)
    q, shaft = _single_antenna(base, n, h)
    vol = np.zeros((len(a_grid), len(ladder_w), len(times)))
    lab = np.zeros((n, n, n), np.uint8)
    for i, a in enumerate(a_grid):
        for j, p in enumerate(ladder_w):
            m = MwaModel(**{**base.__dict__, "efficiency": p / P_REF_W, "time_decline": a})
            r = run_mwa(m, lab, [_liver(False)], (h, h, h), q, P_REF_W, max(times), zone_snapshots_s=times, shaft=shaft)
            vol[i, j] = [chart_volume_ml(z, h) for z in r.info["zone_snapshots"]]
    return MwaTable(device, h, base.elongation, tuple(a_grid), tuple(ladder_w), times, vol)


def table_to_json(tables: Sequence[MwaTable]) -> str:
    return json.dumps({"note": "simulated ex vivo MWA zone volumes (ml, chart-equivalent pi/6*L*W*D of the zone's "
                               "axes), latplan.physics.bioheat.calibration.build_mwa_table; rebuild: "
                               "benchmarks/bench_bioheat.py --rebuild-mwa",
                       "tables": [{"device": t.device, "spacing_mm": t.spacing_mm, "elongation": t.elongation,
                                   "a_grid": list(t.a_grid), "ladder_w": list(t.ladder_w), "times_s": list(t.times_s),
                                   "volume_ml": np.round(t.volume_ml, 4).tolist()} for t in tables]}, indent=1)


@cache
def mwa_table(device: str) -> MwaTable:
    """The cached table of ``device`` (data file)."""
    try:
        data = json.loads(TABLE_FILE.read_text())
        t = next(x for x in data["tables"] if x["device"] == device)
    except (OSError, ValueError, KeyError, StopIteration) as exc:
        raise SourceDataError(f"{TABLE_FILE} has no MWA calibration table for {device!r} ({exc}); rebuild it with "
                              "benchmarks/bench_bioheat.py --rebuild-mwa.") from None
    return MwaTable(t["device"], float(t["spacing_mm"]), float(t["elongation"]), tuple(t["a_grid"]),
                    tuple(t["ladder_w"]), tuple(float(x) for x in t["times_s"]), np.asarray(t["volume_ml"], float))


def _fit(table: MwaTable, rows: Sequence[Any]) -> tuple[float, float, float]:
    """(η, β, a) minimising the Huber loss of log(V_model/V_chart) over ``rows`` (bounded: β 0.5–2,
    a in the grid). Robust (scale ``HUBER_LOG``): vendor charts hold rows inconsistent with their
    neighbours (the source flags 4), which a plain least-squares fit lets pull the whole device."""
    pw = np.array([float(r.power_w) for r in rows])
    ts = np.array([float(r.time_s) for r in rows])
    lv = np.log(np.array([float(r.volume_ml) for r in rows]))

    def resid(x: np.ndarray) -> float:
        eta, beta, a = math.exp(x[0]), x[1], x[2]
        if not (0.5 <= beta <= 2.0 and table.a_grid[0] <= a <= table.a_grid[-1]):
            return 1e6
        e = np.abs(np.log(table.volumes(eta * pw * (pw / P_REF_W) ** (beta - 1.0), a, ts)) - lv)
        return float(np.sum(np.where(e <= HUBER_LOG, 0.5 * e**2, HUBER_LOG * (e - 0.5 * HUBER_LOG))))

    best = None
    for a0 in (0.2, 0.7, 1.2):
        res = optimize.minimize(resid, np.array([math.log(0.3), 1.0, a0]), method="Nelder-Mead",
                                options={"xatol": 1e-4, "fatol": 1e-8, "maxiter": 600})
        if best is None or res.fun < best.fun:
            best = res
    assert best is not None
    return math.exp(float(best.x[0])), float(best.x[1]), float(best.x[2])


def calibrate_mwa(device: str, rows: Sequence[Any] | None = None) -> MwaModel:
    """Fit (η, β, a) of ``device`` to its unflagged chart rows (or ``rows``), perfusion off."""
    if device not in MWA_DEVICES:
        raise OutOfRangeError(f"no MWA chart calibration for {device!r}; devices: {', '.join(MWA_DEVICES)}.")
    table = mwa_table(device)
    eta, beta, a = _fit(table, rows if rows is not None else _unflagged(device))
    base = _base_model(device, table.spacing_mm)
    return MwaModel(**{**base.__dict__, "efficiency": round(eta, 4), "power_exponent": round(beta, 4),
                       "time_decline": round(a, 4)})


@dataclass(frozen=True)
class ChartCheck:
    """One chart row against the model: ``model_ml`` from a calibration that did (in-sample) or
    did not (leave-one-out) see the row."""

    device: str
    power_w: float
    time_s: float
    chart_ml: float
    model_ml: float

    @property
    def diff_percent(self) -> float:
        return 100.0 * (self.model_ml / self.chart_ml - 1.0)


def leave_one_out(device: str) -> list[ChartCheck]:
    """Each unflagged row predicted by the fit on the device's other rows (table volumes)."""
    rows = _unflagged(device)
    table = mwa_table(device)
    out = []
    for r in rows:
        eta, beta, a = _fit(table, [x for x in rows if x is not r])
        v = table.volume(eta * r.power_w * (r.power_w / P_REF_W) ** (beta - 1.0), a, float(r.time_s))
        out.append(ChartCheck(device, float(r.power_w), float(r.time_s), float(r.volume_ml), round(v, 2)))
    return out


def chart_consistency(device: str, model: MwaModel, *, spacing_mm: float | None = None) -> list[ChartCheck]:
    """Direct 3-D simulation of every unflagged chart row with ``model`` (ex vivo)."""
    return [ChartCheck(device, float(r.power_w), float(r.time_s), float(r.volume_ml),
                       round(simulate_mwa_zone(model, r.power_w, r.time_s, spacing_mm=spacing_mm,
                                               box_mm=r.length_mm)["chart_volume_ml"], 2))
            for r in _unflagged(device)]


@cache
def mwa_model(device: str = "covidien_emprint") -> MwaModel:
    """The calibrated model of an antenna: the fit on all its unflagged chart rows (cached table)."""
    return calibrate_mwa(device)
