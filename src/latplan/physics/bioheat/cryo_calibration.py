"""Cryoprobe calibration on the published phantom isotherms (``cryo_isotherms.yaml``).

The one free parameter per probe type is its effective surface temperature during a freeze
(argon Joule–Thomson probes in a heat load stay well above the gas temperature). It is fitted
so that one probe reproduces the measured single-probe lethal diameter in the phantom of the
source (agar at 39 °C, one 15-min freeze, no perfusion); the 2-, 3- and 4-probe diameters are
then predictions, checked against the same table (tests/physics/test_cryo.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np
import yaml
from scipy import ndimage

from latplan.errors import InvalidInputError
from latplan.physics.ablation_zones import cryo_probe_offsets_mm
from latplan.physics.bioheat.cryo import CryoPhase, CryoProbe, simulate_cryo
from latplan.physics.bioheat.data import DATA_FILE, Tissue

CRYO_DATA_FILE = DATA_FILE.parent / "cryo_isotherms.yaml"


@cache
def cryo_data() -> dict[str, Any]:
    """The cryo isotherm file (probe types, lethal isotherm, phantom, fitted probe temperatures)."""
    with open(CRYO_DATA_FILE, encoding="utf-8") as fh:
        data: dict[str, Any] = yaml.safe_load(fh)
    for key in ("lethal_isotherm_c", "probes", "phantom", "probe_spacing_mm"):
        if key not in data:
            raise InvalidInputError(f"{CRYO_DATA_FILE}: missing key {key!r}; restore it from git.")
    return data


@dataclass(frozen=True)
class CryoProbeModel:
    """A probe type: real diameter, assumed freezing length, fitted effective surface temperature."""

    key: str
    diameter_mm: float
    active_length_mm: float
    probe_c: float
    label: str


def cryo_probe_model(key: str) -> CryoProbeModel:
    """The probe type ``key`` of the data file (e.g. ``cryo_1.7mm``)."""
    probes = cryo_data()["probes"]
    if key not in probes:
        raise InvalidInputError(f"no cryoprobe {key!r} in {CRYO_DATA_FILE.name}; available: {', '.join(probes)}.")
    p = probes[key]
    return CryoProbeModel(key, float(p["diameter_mm"]), float(p["active_length_mm"]), float(p["fitted_probe_c"]),
                          str(p["label"]))


def phantom_tissue() -> Tissue:
    """The phantom of the source as a tissue (water/ice properties, no perfusion; data file)."""
    ph = cryo_data()["phantom"]
    return Tissue("phantom", float(ph["density_kg_m3"]), float(ph["heat_capacity_j_kg_k"]), float(ph["conductivity_w_m_k"]),
                  0.0, frozen_conductivity_w_m_k=float(ph["frozen_conductivity_w_m_k"]),
                  frozen_heat_capacity_j_kg_k=float(ph["frozen_heat_capacity_j_kg_k"]))


def feret_diameter_mm(mask2d: np.ndarray, h_mm: float, upsample: int = 4, field: np.ndarray | None = None,
                      level: float = 0.0) -> float:
    """Largest in-plane extent (Feret diameter, 36 directions) of an isotherm in a slice. With
    ``field`` the isotherm ``field ≤ level`` is located sub-voxel (bilinear upsampling)."""
    if field is not None:
        fine = ndimage.zoom(field.astype(np.float64), upsample, order=1, mode="nearest")
        mask2d = fine <= level
        h_mm = h_mm * field.shape[0] / fine.shape[0]
    pts = np.argwhere(mask2d) * h_mm
    if not len(pts):
        return 0.0
    best = 0.0
    for a in np.linspace(0.0, math.pi, 36, endpoint=False):
        p = pts @ np.array([math.cos(a), math.sin(a)])
        best = max(best, float(p.max() - p.min()) + h_mm)
    return best


def phantom_lethal_diameter_mm(probe_count: int, probe: CryoProbeModel, *, probe_c: float | None = None,
                               grid_mm: float = 1.0) -> float:
    """Lethal-isotherm diameter (mid-plane Feret) of ``probe_count`` probes in the source's phantom."""
    data = cryo_data()
    ph = data["phantom"]
    spacing = float(data["probe_spacing_mm"])
    half_w = 0.5 * spacing + 25.0 if probe_count > 1 else 20.0
    length = probe.active_length_mm + 30.0
    n = [round(length / grid_mm) | 1, round(2 * half_w / grid_mm) | 1, round(2 * half_w / grid_mm) | 1]
    c = [(x // 2) * grid_mm for x in n]
    la = probe.active_length_mm
    probes = [CryoProbe((c[0] + 0.5 * la, c[1] + o[0], c[2] + o[1]), (1.0, 0.0, 0.0), la, probe.diameter_mm)
              for o in cryo_probe_offsets_mm(probe_count, spacing)]
    tp = probe.probe_c if probe_c is None else probe_c
    lethal = float(data["lethal_isotherm_c"])
    res = simulate_cryo(np.zeros(n, np.uint8), [phantom_tissue()], (grid_mm,) * 3, probes=probes,
                        phases=(CryoPhase("freeze", 60.0 * float(ph["freeze_min"]), tp),),
                        latent_heat_j_m3=float(ph["latent_heat_j_m3"]), initial_temperature_c=float(ph["baseline_c"]),
                        freezing_range_c=(float(ph["freezing_range_c"][0]), float(ph["freezing_range_c"][1])),
                        lethal_c=lethal)
    assert res.min_temperature_c is not None
    mid = res.min_temperature_c[n[0] // 2]
    return feret_diameter_mm(mid <= lethal, grid_mm, field=mid, level=lethal)


def fit_probe_temperature(key: str, *, grid_mm: float = 1.0, tol_mm: float = 0.1) -> float:
    """Effective probe temperature (°C) that reproduces the single-probe lethal diameter of
    ``key`` (secant/bisection between −60 and −160 °C)."""
    probe = cryo_probe_model(key)
    target = float(cryo_data()["probes"][key]["lethal_diameter_mm"][1])
    lo, hi = -60.0, -160.0
    d_lo = phantom_lethal_diameter_mm(1, probe, probe_c=lo, grid_mm=grid_mm)
    d_hi = phantom_lethal_diameter_mm(1, probe, probe_c=hi, grid_mm=grid_mm)
    if not d_lo <= target <= d_hi:
        raise InvalidInputError(f"cryoprobe {key}: the lethal diameter {target} mm is outside {d_lo:.1f}–{d_hi:.1f} mm "
                                "reachable with probe temperatures −60…−160 °C.")
    tp = lo
    for _ in range(12):
        tp = lo + (target - d_lo) * (hi - lo) / (d_hi - d_lo)
        d = phantom_lethal_diameter_mm(1, probe, probe_c=tp, grid_mm=grid_mm)
        if abs(d - target) < tol_mm:
            break
        if d < target:
            lo, d_lo = tp, d
        else:
            hi, d_hi = tp, d
    return tp
