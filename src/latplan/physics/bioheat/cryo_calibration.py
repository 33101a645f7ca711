"""Cryoprobe calibration on the published phantom isotherms (``cryo_isotherms.yaml``).

The one free parameter per probe type is its effective surface temperature during a freeze
(argon Joule–Thomson probes in a heat load stay well above the gas temperature). It is fitted
so that one probe reproduces the measured single-probe lethal diameter in the phantom of the
source (agar at 39 °C, one 15-min freeze, no perfusion); the 2-, 3- and 4-probe diameters are
then predictions, checked against the same table (tests/physics/test_cryo.py). The chart's
length and depth (not measured by the source) come from the same runs
(:func:`derive_chart_shapes`; ``python -m latplan.physics.bioheat.cryo_calibration`` prints them).
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


def feret_extents_mm(mask2d: np.ndarray, h_mm: float, upsample: int = 4, field: np.ndarray | None = None,
                     level: float = 0.0) -> tuple[float, float]:
    """(largest, smallest) in-plane extent (Feret diameters, 36 directions) of an isotherm in a
    slice. With ``field`` the isotherm ``field ≤ level`` is located sub-voxel (bilinear upsampling)."""
    if field is not None:
        fine = ndimage.zoom(field.astype(np.float64), upsample, order=1, mode="nearest")
        mask2d = fine <= level
        h_mm = h_mm * field.shape[0] / fine.shape[0]
    pts = np.argwhere(mask2d) * h_mm
    if not len(pts):
        return 0.0, 0.0
    ext = []
    for a in np.linspace(0.0, math.pi, 36, endpoint=False):
        p = pts @ np.array([math.cos(a), math.sin(a)])
        ext.append(float(p.max() - p.min()) + h_mm)
    return max(ext), min(ext)


def feret_diameter_mm(mask2d: np.ndarray, h_mm: float, upsample: int = 4, field: np.ndarray | None = None,
                      level: float = 0.0) -> float:
    """Largest in-plane extent (Feret diameter, 36 directions) of an isotherm in a slice. With
    ``field`` the isotherm ``field ≤ level`` is located sub-voxel (bilinear upsampling)."""
    return feret_extents_mm(mask2d, h_mm, upsample, field, level)[0]


def _axial_span_mm(profile: np.ndarray, h_mm: float, level: float) -> tuple[float, float]:
    """(first, last) position (mm, index × h) where a 1-D minimum-temperature profile crosses
    ``level``, interpolated linearly between voxel centres."""
    below = np.nonzero(profile <= level)[0]
    if below.size == 0:
        return 0.0, 0.0
    i0, i1 = int(below[0]), int(below[-1])
    lo = float(i0) - ((level - profile[i0]) / (profile[i0 - 1] - profile[i0]) if i0 > 0 else 0.0)
    hi = float(i1) + ((level - profile[i1]) / (profile[i1 + 1] - profile[i1]) if i1 < profile.size - 1 else 0.0)
    return lo * h_mm, hi * h_mm


@dataclass(frozen=True)
class IsothermShape:
    """An isotherm of a probe cluster in the phantom: ``width_mm`` (largest mid-plane extent,
    the measure of the source), ``depth_mm`` (smallest mid-plane extent), ``length_mm`` along the
    probes, the centre's offset from the tips (mm, < 0 back along the shaft), the volume (ml) and
    the isotherm's area in the mid-plane (mm², sub-voxel: bilinear upsampling ×4)."""

    level_c: float
    width_mm: float
    depth_mm: float
    length_mm: float
    centre_offset_from_tip_mm: float
    volume_ml: float
    midplane_area_mm2: float = 0.0


def phantom_isotherm_shapes(probe_count: int, probe: CryoProbeModel, levels: tuple[float, ...], *,
                            probe_c: float | None = None, grid_mm: float = 1.0,
                            baseline_c: float | None = None) -> dict[float, IsothermShape]:
    """Isotherm shapes of ``probe_count`` probes in the source's phantom (one freeze of the
    source's duration; ``baseline_c`` overrides the phantom's start temperature)."""
    data = cryo_data()
    ph = data["phantom"]
    spacing = float(data["probe_spacing_mm"])
    half_w = 0.5 * spacing + 25.0 if probe_count > 1 else 20.0
    la = probe.active_length_mm
    length = la + 40.0
    n = [round(length / grid_mm) | 1, round(2 * half_w / grid_mm) | 1, round(2 * half_w / grid_mm) | 1]
    c = [(x // 2) * grid_mm for x in n]
    tip_k_mm = c[0] + 0.5 * la
    probes = [CryoProbe((tip_k_mm, c[1] + o[0], c[2] + o[1]), (1.0, 0.0, 0.0), la, probe.diameter_mm)
              for o in cryo_probe_offsets_mm(probe_count, spacing)]
    tp = probe.probe_c if probe_c is None else probe_c
    t0 = float(ph["baseline_c"]) if baseline_c is None else float(baseline_c)
    res = simulate_cryo(np.zeros(n, np.uint8), [phantom_tissue()], (grid_mm,) * 3, probes=probes,
                        phases=(CryoPhase("freeze", 60.0 * float(ph["freeze_min"]), tp),),
                        latent_heat_j_m3=float(ph["latent_heat_j_m3"]), initial_temperature_c=t0,
                        freezing_range_c=(float(ph["freezing_range_c"][0]), float(ph["freezing_range_c"][1])),
                        lethal_c=float(data["lethal_isotherm_c"]))
    assert res.min_temperature_c is not None
    tmin = res.min_temperature_c.astype(np.float64)
    mid = tmin[n[0] // 2]
    profile = tmin.min(axis=(1, 2))
    out = {}
    fine = ndimage.zoom(mid, 4, order=1, mode="nearest")
    fine_h_mm = grid_mm * mid.shape[0] / fine.shape[0]
    for lv in levels:
        w, d = feret_extents_mm(mid <= lv, grid_mm, field=mid, level=lv)
        k0, k1 = _axial_span_mm(profile, grid_mm, lv)
        out[lv] = IsothermShape(lv, w, d, k1 - k0, 0.5 * (k0 + k1) - tip_k_mm,
                                float((tmin <= lv).sum()) * grid_mm**3 / 1000.0,
                                float((fine <= lv).sum()) * fine_h_mm**2)
    return out


@dataclass(frozen=True)
class LethalShare:
    """Lethal (−30 °C) share of the ice ball (0 °C) in the mid-plane of a probe cluster:
    ``diameter_squared`` = (lethal width / ice-ball width)², the measure the shares of Littrup 2009
    behave as (their 1.7 mm probes: areas 71 % = 0.84² of diameters 84 %), and ``area`` the true
    mid-plane area ratio (smaller for the flat 2-probe zone)."""

    probe_count: int
    diameter_squared: float
    area: float


def lethal_share(probe_count: int, shapes: dict[float, IsothermShape]) -> LethalShare:
    """Lethal share of the ice ball from the 0 °C and lethal-isotherm shapes of one run."""
    lethal = float(cryo_data()["lethal_isotherm_c"])
    if 0.0 not in shapes or lethal not in shapes:
        raise InvalidInputError(f"lethal_share needs the 0 °C and {lethal:g} °C isotherms; got {sorted(shapes)}.")
    s = shapes
    return LethalShare(probe_count, (s[lethal].width_mm / s[0.0].width_mm) ** 2,
                       s[lethal].midplane_area_mm2 / s[0.0].midplane_area_mm2)


def phantom_lethal_share(probe_count: int, probe: CryoProbeModel, *, grid_mm: float = 1.0) -> LethalShare:
    """Lethal share of the ice ball of ``probe_count`` probes in the source's phantom (one freeze)."""
    lethal = float(cryo_data()["lethal_isotherm_c"])
    return lethal_share(probe_count, phantom_isotherm_shapes(probe_count, probe, (0.0, lethal), grid_mm=grid_mm))


def phantom_lethal_diameter_mm(probe_count: int, probe: CryoProbeModel, *, probe_c: float | None = None,
                               grid_mm: float = 1.0) -> float:
    """Lethal-isotherm diameter (mid-plane Feret) of ``probe_count`` probes in the source's phantom."""
    lethal = float(cryo_data()["lethal_isotherm_c"])
    return phantom_isotherm_shapes(probe_count, probe, (lethal,), probe_c=probe_c, grid_mm=grid_mm)[lethal].width_mm


def derive_chart_shapes(key: str, *, grid_mm: float = 1.0,
                        counts: tuple[int, ...] = (1, 2, 3, 4)) -> dict[int, dict[str, float]]:
    """The ``chart_shape`` entries of probe type ``key`` (data file): per probe count the −30 °C
    isotherm's full length along the probes, depth/width and centre offset from the tips, from
    the calibrated physics in the source's phantom (the source measured only the width)."""
    probe = cryo_probe_model(key)
    lethal = float(cryo_data()["lethal_isotherm_c"])
    out = {}
    for n in counts:
        s = phantom_isotherm_shapes(n, probe, (lethal,), grid_mm=grid_mm)[lethal]
        out[n] = {"length_mm": round(s.length_mm, 1), "depth_over_width": round(s.depth_mm / s.width_mm, 2),
                  "centre_offset_from_tip_mm": round(s.centre_offset_from_tip_mm, 1)}
    return out


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


if __name__ == "__main__":  # pragma: no cover - data-file derivation, run by hand
    for _key in cryo_data()["probes"]:
        print(_key, derive_chart_shapes(_key))
