"""Thermal ablation planners: RFA, MWA, cryo → :class:`~latplan.planning.types.TreatmentPlan`.

Each planner finds a safe trajectory (:func:`latplan.planning.applicators.find_trajectory`),
fits device zones over lesion + target margin (one applicator first, then several), and
reports the predicted zone, applicators, minimal margin, margin histogram, coverage, the
vessels acting as heat sinks and collateral structures inside the zone.

Engines: ``engine="chart"`` (default, fast: device-chart ellipsoids, manufacturer charts in physics/data/ablation/*.yaml)
or ``engine="bioheat"`` (the chart placement, then a Pennes simulation on a crop of the
case with perfusion, vessels as heat sinks and coagulation; slower, seconds).

Vessels ≥ 3 mm (both engines, all modalities): their lumen is flowing blood and never part of
a zone. Heat sink (RFA and MWA): when such a vessel lies within 10 mm of the lesion the zone is
the thermal model's own, on the patient's anatomy: two Pennes runs of the fitted applicators on
the crop (vessels as heat sinks by calibre, and vessels replaced by liver). MWA (``ZONE_LEVEL``
"chart"): the damage level Ω* whose zone in the vessel-free run has the chart zone's volume
calibrates the model to the device chart, and the plan's zone is Ω ≥ Ω* of the run with the
vessels within 10 mm of a vessel ≥ 3 mm — it wraps around them (no chart zone with islands cut
out) — and the chart zone farther away. RFA ("device"): the electro-thermal model
(:func:`_rfa_run`) is calibrated once per device to its ex vivo chart with perfusion off (a damage
level in rfa_generator.yaml); the electrodes are sized on that model's in vivo zone
(:func:`rfa_in_vivo_zone_size`) and the plan's zone is the model's in vivo (perfused) zone of them on
the anatomy, with or without a vessel nearby (``metrics["rfa_model"]`` when no vessel ≥ 3 mm is near). What the
vessels remove within 5 mm of a vessel ≥ 3 mm is ``heat_sink_lost`` (drawn in the report);
``metrics["heat_sink"]`` holds the cut-back, the lost volume and the margin before (MWA: the chart zone;
RFA: the model's vessel-free run) and after (physics, with the vessels); ``metrics["perivascular"]`` reports, per vessel ≥ 3 mm, the target left
unablated within 5 mm of its wall and the tumour left viable there. ``chart_volume_reached`` is
false when the model's zone (vessel-free run) is smaller than the chart's; the zone is the model's.

The target margin is a clinical parameter passed by :mod:`latplan.modalities`
(5 mm default; 10 mm for RAS-mutant colorectal metastases).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from latplan.anatomy.geometry import CaseGeometry, case_geometry, geometry_for
from latplan.case import Case
from latplan.case.vocabulary import VESSEL_ROLES
from latplan.errors import InvalidInputError
from latplan.knowledge.margins import margin_histogram_percent
from latplan.physics import ablation_zones as az
from latplan.physics.margins import MarginResult, ablative_margin_arrays
from latplan.planning.applicators import (
    PlacementResult,
    Trajectory,
    collateral_structures,
    continued,
    crop_around,
    crop_beyond,
    find_trajectory,
    fit_units,
    grown_box,
    heat_sink_vessels,
    margin_beyond,
    organ_volumes_in_zone,
    structure_role,
    target_mask,
    zone_uncertainty_band,
)
from latplan.planning.fov import fov_check
from latplan.planning.types import TreatmentPlan

__all__ = ["plan_cryo", "plan_mwa", "plan_rfa", "plan_thermal"]

ENGINE_VERSION = "thermal-planner-1.0"
VERIFICATION_CHART = (
    "chart zones reproduce the vendor/published charts (tests/physics/test_ablation_zones.py); "
    "margins verified on concentric spheres ±1 voxel (tests/physics/test_margins.py)"
)
VERIFICATION_BIOHEAT = (
    "Pennes solver vs analytic point-source solutions (2 %, second-order convergence), energy conservation, "
    "heat-sink behaviour and MWA chart consistency table (tests/physics/test_bioheat.py)"
)
#: most units a planner combines (practice: up to 3 synchronous MWA antennas / switched RFA
#: electrodes; cryo: up to 2 clusters of 4 probes = 8 probes)
MAX_UNITS = {"mwa": 3, "rfa": 3, "cryo": 2}


def _unit_name(modality: str) -> str:
    return {"mwa": "MWA antenna", "rfa": "RFA electrode", "cryo": "cryoprobe cluster"}[modality]


def _candidates(modality: str, device: str | None) -> tuple[str, list[az.ZoneSize], Any]:
    if modality == "mwa":
        dev = device or "covidien_emprint"
        chart = az.load_mwa_chart(dev)
        return dev, [chart.predict(r.power_w, r.time_s) for r in chart.calibration_rows()], None
    if modality == "rfa":
        dev = device or "cooltip"
        return dev, [rfa_in_vivo_zone_size(dev)], None
    if modality == "cryo":
        dev = device or "cryo_2.4mm"
        sizes = [az.cryo_zone_size(k, dev) for k in (1, 2, 3, 4)]

        def unit_sizes(n: int) -> list[az.ZoneSize]:
            return sizes if n == 1 else [sizes[-1]]

        return dev, sizes, unit_sizes
    raise InvalidInputError(f"unknown thermal modality {modality!r}; expected rfa, mwa or cryo.")


#: the RFA devices the electro-thermal model is calibrated for (rfa_generator.yaml `calibration`)
RFA_CALIBRATED_DEVICES = ("cooltip",)


def rfa_in_vivo_zone_size(device: str = "cooltip") -> az.ZoneSize:
    """The zone the RFA planner sizes its electrodes on: the in vivo (perfused, vessel-free) zone of the
    electro-thermal model calibrated to the device's ex vivo chart (rfa_generator.yaml `calibration`,
    measured there), as a spheroid of its extents.

    Why not the ex vivo chart: in vivo zones are about a third to a half of the ex vivo ones (Song 2015:
    7.79 vs 23.86 ml for this electrode), so a fit on the chart promised zones the model — and the
    liver — do not deliver (one electrode "covering" a 24 mm lesion whose simulated zone then missed).
    The chart's 5 cm protocol is not offered: the model simulates the one calibrated electrode and
    12-min protocol; larger targets get more electrodes (up to ``MAX_UNITS``)."""
    from latplan.physics.bioheat import rfa

    if device not in RFA_CALIBRATED_DEVICES:
        raise InvalidInputError(
            f"the RFA model is calibrated for {', '.join(RFA_CALIBRATED_DEVICES)} only (rfa_generator.yaml); "
            f"got device {device!r}. Plan with the default device or calibrate the model for this one.")
    chart = az.rfa_zone_size(device, "3cm")
    cal = rfa.rfa_constants()["calibration"]
    width = float(cal["in_vivo_width_mm"])
    return az.ZoneSize(
        modality="rfa", device=device, length_mm=float(cal["in_vivo_length_mm"]), width_mm=width, depth_mm=width,
        centre_offset_from_tip_mm=float(cal["in_vivo_centre_offset_from_tip_mm"]),
        settings={"protocol": "3cm", "ex_vivo_volume_ml": float(chart.settings["ex_vivo_volume_ml"]),
                  "in_vivo_volume_ml": float(cal["in_vivo_volume_ml"]), "time_s": RFA_DURATION_S},
        caveat=chart.caveat,
        method="in vivo zone of the electro-thermal model calibrated to the ex vivo chart (spheroid of its extents)",
        notes=(*chart.notes, f"in vivo (perfused liver, vessel-free): {float(cal['in_vivo_volume_ml']):g} ml "
                             "in the model (rfa_generator.yaml calibration)"))


def _applicator_dicts(modality: str, device: str, fit: PlacementResult, traj: Trajectory) -> list[dict[str, Any]]:
    out = []
    d = fit.direction
    for tip, size in zip(fit.tips_mm, fit.sizes, strict=True):
        entry = tip - (traj.depth_mm + float(np.dot(tip - traj.target_mm, d))) * d
        if modality == "cryo":
            n = int(size.settings["probe_count"])
            u, v = az.perpendicular_axes(d)
            for off in az.cryo_probe_offsets_mm(n, float(size.settings["probe_spacing_mm"])):
                t = tip + off[0] * u + off[1] * v
                e = entry + off[0] * u + off[1] * v
                a = az.Applicator("cryo", device, tuple(t), tuple(d), dict(size.settings), tuple(e))
                out.append(a.to_dict())
        else:
            a = az.Applicator(modality, device if modality != "mwa" else size.device, tuple(tip), tuple(d),
                              dict(size.settings), tuple(entry))
            out.append(a.to_dict())
    return out


@dataclass
class _Fitted:
    """The crop around the lesion (at index ``lo`` of the case grid) and the chart zones fitted on it."""

    lo: tuple[int, int, int]
    sl: tuple[slice, ...]
    ref: Any  # the crop's Volume
    lesion: np.ndarray
    target: np.ndarray
    beyond_vox: list[tuple[int, int]]
    fit: PlacementResult
    single: PlacementResult

    def measured(self, z: np.ndarray) -> MarginResult:
        """The margin of the lesion in the zone ``z`` (on the crop), continued past the image's edge."""
        h = self.ref.spacing_kji_mm
        if self.fit.zone_beyond is None:
            return ablative_margin_arrays(self.lesion, z, h)
        return margin_beyond(self.lesion, z, self.fit.zone_beyond, self.beyond_vox, h)


def _fit(case: Case, lesion_full: np.ndarray, biggest: az.ZoneSize, sizes: Any, unit_sizes: Any, max_units: int,
         target_margin_mm: float, traj: Trajectory) -> _Fitted:
    """Crop around the lesion and fit the chart zones (the best set, and the best single unit); past the
    image's edge the margin sees the chart zone continued there (``beyond_vox``)."""
    h = case.labels.spacing_kji_mm
    pad = 0.5 * max(biggest.length_mm, biggest.width_mm) + 45.0 + target_margin_mm
    lo, hi = crop_around(lesion_full, pad, h)
    sl = tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))
    ref = case.labels.crop(lo, hi)
    lesion = lesion_full[sl]
    target = target_mask(lesion, target_margin_mm + 0.5 * float(h.max()), h)
    beyond_vox = crop_beyond(lesion_full, pad, h)
    fit = fit_units(ref, lesion, target, traj.direction, sizes, target_margin_mm=target_margin_mm,
                    max_units=max_units, unit_sizes=unit_sizes, beyond_vox=beyond_vox)
    single = fit_units(ref, lesion, target, traj.direction, sizes, target_margin_mm=target_margin_mm,
                       max_units=1, unit_sizes=unit_sizes, beyond_vox=beyond_vox) \
        if len(fit.ellipsoids) > 1 or not fit.covers else fit
    return _Fitted(lo, sl, ref, lesion, target, beyond_vox, fit, single)


@dataclass
class _PhysicsZone:
    """The zone the thermal model gives on the anatomy (heat-sink runs, or RFA's one in vivo run)."""

    zone: Any
    margin: MarginResult
    heat_sink: dict[str, Any] | None = None
    lost: Any = None
    rfa_model: dict[str, Any] | None = None


def _physics_zone(modality: str, case: Case, fitted: _Fitted, dev: str, zone: Any, margin: MarginResult,
                  lumen: np.ndarray, sinks: list[dict[str, Any]]) -> _PhysicsZone | None:
    """RFA and MWA beside a vessel ≥ 3 mm: the heat-sink runs (zone with the vessels, what they remove); RFA
    with no such vessel: the model's in vivo zone of the fitted electrodes (one run, never the fitted shape)."""
    ref, lo, fit, measured = fitted.ref, fitted.lo, fitted.fit, fitted.measured
    if not zone.array.any() or modality not in ("rfa", "mwa") or (modality == "mwa" and not sinks):
        return None
    if sinks:
        heat_sink, phys_zone, lost, free = heat_sink_effect(modality, case, ref, lo, fit, dev, zone.array)
        heat_sink["vessels"] = sinks
        # RFA: before = the model's vessel-free in vivo zone (so the change is the vessels' alone); MWA: the chart
        before = measured(free & ~lumen) if modality == "rfa" and np.any(free & ~lumen) else margin
        heat_sink["min_margin_without_heat_sink_mm"] = round(float(before.min_margin_mm), 2)
        out = _PhysicsZone(zone.with_array(phys_zone & ~lumen), margin, heat_sink,
                           ref.with_array(lost) if lost.any() else None)
        if out.zone.array.any():
            out.margin = measured(out.zone.array)
        heat_sink["min_margin_with_heat_sink_mm"] = round(float(out.margin.min_margin_mm), 2)
        return out
    phys, _, info = bioheat_zone(modality, case, ref, lo, fit, dev)
    out = _PhysicsZone(zone, margin)
    if np.any(phys.array & ~lumen):
        out.zone = zone.with_array(phys.array & ~lumen)
        out.margin = measured(out.zone.array)
    out.rfa_model = {k: info[k] for k in ("energy_kj", "rolloffs", "grid_spacing_mm", "model") if k in info}
    out.rfa_model["zone_ml"] = round(float(out.zone.array.sum()) * case.labels.voxel_volume_ml, 2)
    return out


def plan_thermal(
    modality: str,
    case: Case,
    lesion_id: str,
    measurements: Mapping[str, Any] | None = None,
    *, geometry: CaseGeometry | None = None,
    target_margin_mm: float = 5.0,
    engine: str = "chart",
    device: str | None = None,
    max_applicators: int | None = None,
    heat_sink_check: bool = True,
) -> TreatmentPlan:
    """Plan one thermal modality (``rfa``, ``mwa``, ``cryo``) on one lesion; see module doc.

    ``heat_sink_check`` (RFA, MWA): simulate the heat sink of vessels ≥ 3 mm within 10 mm and
    take it off the predicted zone (module doc); False keeps the plain zone (faster; for RFA the in vivo
    sizing spheroids, not the electro-thermal model's zone).
    """
    t_start = time.perf_counter()
    geo = geometry_for(case, geometry)  # the pipeline's CaseGeometry of this case (its maps are the case's maps)
    if engine not in ("chart", "bioheat"):
        raise InvalidInputError(f"engine must be 'chart' or 'bioheat'; got {engine!r}.")
    if not 0.0 <= target_margin_mm <= 30.0:
        raise InvalidInputError(f"target_margin_mm must be 0–30 mm; got {target_margin_mm}.")
    meas = _lesion_measurements(measurements, lesion_id)
    lesion_full = case.lesion_mask(lesion_id).array
    h = case.labels.spacing_kji_mm
    dev, sizes, unit_sizes = _candidates(modality, device)
    max_units = MAX_UNITS[modality] if max_applicators is None else int(max_applicators)
    traj = find_trajectory(case, lesion_id, geometry=geo)

    biggest = max(sizes, key=lambda z: z.volume_ml)
    fitted = _fit(case, lesion_full, biggest, sizes, unit_sizes, max_units, target_margin_mm, traj)
    lo, sl, ref, lesion, target = fitted.lo, fitted.sl, fitted.ref, fitted.lesion, fitted.target
    fit, single, measured = fitted.fit, fitted.single, fitted.measured
    units = len(fit.ellipsoids)

    zone = fit.zone
    margin = fit.margin
    caveats = [az.chart_caveat(modality)]
    temperature = None
    engine_info: dict[str, Any] = {}
    if engine == "bioheat":
        zone, temperature, engine_info = bioheat_zone(modality, case, ref, lo, fit, dev)
        engine_info.pop("power_trace", None)  # arrays stay out of plan.json
        margin = measured(zone.array) if zone.array.any() else fit.margin
        caveats.append("bioheat engine: parameter uncertainty (perfusion, tissue properties) dominates; "
                       "published in vivo RFA models reach Dice 0.42–0.73 (van Erp et al., Cancers 2023;15:5684)")
    sinks = heat_sink_vessels(case, lesion_id, measurements=meas)
    # the lumen of a vessel ≥ 3 mm is blood that flows: never part of an ablation zone
    lumen = _large_vessel_lumen(geo, sl)
    if np.any(zone.array & lumen):
        zone = zone.with_array(zone.array & ~lumen)
        margin = measured(zone.array) if zone.array.any() else margin
    phys = _physics_zone(modality, case, fitted, dev, zone, margin, lumen, sinks) if heat_sink_check else None
    heat_sink, heat_sink_lost, rfa_model = (phys.heat_sink, phys.lost, phys.rfa_model) if phys else (None, None, None)
    if phys is not None:
        zone, margin = phys.zone, phys.margin
    target_eval = target_mask(lesion, target_margin_mm, h)
    perivascular = perivascular_report(case, sl, zone.array, lesion, target_eval, sinks)
    board_keys = _board_metrics(modality, case, zone.array, lesion, target_eval, lumen, lo,
                                None if fit.zone_beyond is None else (fit.zone_beyond, fitted.beyond_vox))
    covered = bool(margin.min_margin_mm >= target_margin_mm - 1e-6)

    simulated = margin if (modality == "rfa" and (heat_sink is not None or rfa_model is not None)) else None
    reasons = _reasons(modality, target, h, single, biggest, fit, units, target_margin_mm, traj, heat_sink, sinks,
                       simulated)
    if simulated is None and heat_sink is not None and fit.covers and not covered:
        reasons.append(f"the simulated zone (Pennes, with the vessels) does not reach the {target_margin_mm:g} mm "
                       f"margin: coverage {margin.coverage_percent:.1f} %, minimal margin {margin.min_margin_mm:.1f} mm")
    fov = fov_check(case, lesion_full, target_margin_mm, f"the lesion + {target_margin_mm:g} mm target", zone.array, lo)
    if fov["fov_limited"]:
        reasons.append(str(fov["fov_limited_note"]))
        caveats.append(str(fov["fov_limited_note"]))
    collateral = collateral_structures(case, zone, lo)
    caveats += _vessel_caveats(modality, sinks, collateral, heat_sink)

    metrics: dict[str, Any] = {
        "min_margin_mm": round(float(margin.min_margin_mm), 2),
        "coverage_percent": round(float(margin.coverage_percent), 2),
        "applicator_count": units if modality != "cryo" else int(sum(int(s.settings["probe_count"]) for s in fit.sizes)),
        "unit_count": units,
        "covered": covered,
        "single_applicator_covers": bool(single.covers),
        "target_margin_mm": float(target_margin_mm),
        "zone_volume_ml": round(float(zone.array.sum()) * case.labels.voxel_volume_ml, 2),
        "heat_sink_vessels": sinks,
        "collateral_structures": collateral,
        # [L] None (unknown) when the image does not show the abdominal wall along the path
        "trajectory_safe": bool(traj.safe) if traj.verified is not False else None,
        "trajectory_verified": traj.verified,
        "trajectory_depth_mm": round(float(traj.depth_mm), 1),
        "reason": "; ".join(reasons) if reasons else f"one {_unit_name(modality)} covers lesion + target margin",
    }
    metrics.update({"perivascular": perivascular, **board_keys, **fov})
    metrics.update({k: v for k, v in (("bioheat", engine_info), ("heat_sink", heat_sink), ("rfa_model", rfa_model))
                    if v})
    plan = TreatmentPlan(
        modality=modality,
        lesion_id=lesion_id,
        metrics=metrics,
        applicators=_applicator_dicts(modality, dev, fit, traj),
        zone=zone,
        temperature_c=temperature,
        target=ref.with_array(target_mask(lesion, target_margin_mm, h)),
        heat_sink_lost=heat_sink_lost,
        margin_histogram={k: round(v, 2) for k, v in margin_histogram_percent(margin.surface_margins_mm).items()},
        caveats=caveats,
        parameters={"target_margin_mm": float(target_margin_mm), "device": dev, "engine": engine,
                    "heat_sink_check": bool(heat_sink_check),
                    "max_applicators": max_units, "grid_spacing_mm": [float(x) for x in h]},
        engine=f"latplan.planning.thermal[{engine}]",
        engine_version=ENGINE_VERSION,
        verification=VERIFICATION_CHART if engine == "chart" else VERIFICATION_BIOHEAT,
    )
    plan.runtime_s = time.perf_counter() - t_start
    return plan


def _vessel_caveats(modality: str, sinks: list[dict[str, Any]], collateral: list[dict[str, Any]],
                    heat_sink: dict[str, Any] | None) -> list[str]:
    """Caveats on heat sinks, the RFA model's energy and the structures inside the zone."""
    out = []
    if sinks and modality == "rfa":
        out.append("vessels ≥ 3 mm next to the lesion act as heat sinks: RFA zones are cut back beside them "
                   "(heat sink beside 73 % of veins > 3 mm, none < 3 mm: Lu et al., AJR 2002;178:47, in vivo pig liver); "
                   "consider MWA or the bioheat engine")
    elif sinks:
        out.append("vessels ≥ 3 mm next to the lesion may act as heat sinks (less for MWA than RFA)")
    if heat_sink is not None and not heat_sink.get("chart_volume_reached", True):
        out.append("the thermal model's zone (in vivo, perfused liver) is smaller than the device chart's "
                   "(ex vivo): the zone shown is the model's")
    if collateral:
        out.append("structures at risk inside the predicted zone: " + ", ".join(c["name"] for c in collateral))
    return out


def _reasons(modality: str, target: np.ndarray, h: np.ndarray, single: PlacementResult, biggest: az.ZoneSize,
             fit: PlacementResult, units: int, target_margin_mm: float, traj: Trajectory,
             heat_sink: dict[str, Any] | None, sinks: list[dict[str, Any]],
             simulated: MarginResult | None = None) -> list[str]:
    """Why the plan covers or not (single unit, several units, trajectory, heat sink). ``simulated``: the
    margin of the simulated zone where the physics decides the zone (RFA): the fitted shapes only sized
    the electrodes, so the verdict is the simulation's."""
    reasons: list[str] = []
    target_extent = _extent_mm(target, h)
    single_size = max(single.sizes, key=lambda z: z.volume_ml) if single.sizes else biggest
    if not single.covers:
        reasons.append(
            f"one {_unit_name(modality)} cannot cover lesion + {target_margin_mm:g} mm margin: the largest single zone "
            f"({single_size.device} {_settings_text(single_size)}: {single_size.length_mm:.0f}×"
            f"{single_size.width_mm:.0f}×{single_size.depth_mm:.0f} mm, {single_size.volume_ml:.1f} ml) is smaller than "
            f"the target ({target_extent:.0f} mm across); best single-unit coverage "
            f"{single.margin.coverage_percent:.1f} %, minimal margin {single.margin.min_margin_mm:.1f} mm"
        )
    if simulated is not None:
        ok = simulated.min_margin_mm >= target_margin_mm - 1e-6
        reasons.append(
            (f"{units} {_unit_name(modality)}s spaced {fit.spacing_mm:g} mm (sized on the in vivo zone); " if units > 1
             else "") + f"the simulated zone (in vivo electro-thermal model) {'reaches' if ok else 'does not reach'} "
            f"the {target_margin_mm:g} mm margin: coverage {simulated.coverage_percent:.1f} %, minimal margin "
            f"{simulated.min_margin_mm:.1f} mm")
    elif units > 1 and fit.covers:
        reasons.append(f"{units} {_unit_name(modality)}s spaced {fit.spacing_mm:g} mm cover the target")
    if not fit.covers and simulated is None:
        reasons.append(
            f"even {units} {_unit_name(modality)}{'s' if units > 1 else ''} (the most this planner combines) do not "
            f"reach the {target_margin_mm:g} mm margin: coverage {fit.margin.coverage_percent:.1f} %, minimal margin "
            f"{fit.margin.min_margin_mm:.1f} mm"
        )
    if not traj.safe:
        reasons.append(traj.note or "no safe straight path")
    if heat_sink is not None and heat_sink["cut_back_mm"] > 0:
        v0 = sinks[0]
        reasons.append(
            f"heat sink: the {str(v0['name']).replace('_', ' ')} (Ø {v0['calibre_mm']:g} mm, {v0['distance_mm']:g} mm "
            f"from the lesion) cuts the zone back by up to {heat_sink['cut_back_mm']:.1f} mm "
            f"({heat_sink['zone_lost_ml']:.2f} ml); minimal margin {heat_sink['min_margin_without_heat_sink_mm']:.1f} → "
            f"{heat_sink['min_margin_with_heat_sink_mm']:.1f} mm (Pennes simulation with and without the vessels"
            + ("; both the in vivo zone of the model calibrated to the device's ex vivo chart)"
               if "in vivo" in str(heat_sink.get("engine")) else ")"))
    return reasons


def _settings_text(size: az.ZoneSize) -> str:
    s = size.settings
    if "power_w" in s:
        return f"{s['power_w']:g} W {s['time_s']:g} s"
    if "in_vivo_volume_ml" in s:
        return f"{s['protocol']} electrode, {float(s['time_s']) / 60.0:g} min, in vivo"
    if "protocol" in s and "probe_count" not in s:
        return f"{s['protocol']} protocol"
    if "probe_count" in s:
        return f"{s['probe_count']} probe(s)"
    return str(s)


def _extent_mm(mask: np.ndarray, h: np.ndarray) -> float:
    pts = np.argwhere(mask) * h
    return float((pts.max(axis=0) - pts.min(axis=0)).max() + float(h.max()))


def _lesion_measurements(measurements: Mapping[str, Any] | None, lesion_id: str) -> dict[str, Any] | None:
    """Accept the per-lesion dict, or the whole measure_case() output, or None."""
    if not measurements:
        return None
    if "lesions" in measurements and isinstance(measurements["lesions"], list):
        for entry in measurements["lesions"]:
            if isinstance(entry, Mapping) and entry.get("id") == lesion_id:
                return dict(entry)
        return None
    return dict(measurements)


def plan_rfa(case: Case, lesion_id: str, measurements: Mapping[str, Any] | None = None, *,
             geometry: CaseGeometry | None = None,
             target_margin_mm: float = 5.0, engine: str = "chart", device: str | None = None,
             max_applicators: int | None = None, heat_sink_check: bool = True) -> TreatmentPlan:
    """Radiofrequency ablation plan (the calibrated Cool-tip 17 G, 3 cm, 12 min): up to 3 electrodes sized on the
    model's in vivo zone; the plan's zone is the electro-thermal model's."""
    return plan_thermal("rfa", case, lesion_id, measurements, geometry=geometry,
                        target_margin_mm=target_margin_mm, engine=engine,
                        device=device, max_applicators=max_applicators, heat_sink_check=heat_sink_check)


def plan_mwa(case: Case, lesion_id: str, measurements: Mapping[str, Any] | None = None, *,
             geometry: CaseGeometry | None = None,
             target_margin_mm: float = 5.0, engine: str = "chart", device: str | None = None,
             max_applicators: int | None = None, heat_sink_check: bool = True) -> TreatmentPlan:
    """Microwave ablation plan (default antenna: Covidien Emprint-class chart)."""
    return plan_thermal("mwa", case, lesion_id, measurements, geometry=geometry,
                        target_margin_mm=target_margin_mm, engine=engine,
                        device=device, max_applicators=max_applicators, heat_sink_check=heat_sink_check)


def plan_cryo(case: Case, lesion_id: str, measurements: Mapping[str, Any] | None = None, *,
              geometry: CaseGeometry | None = None,
              target_margin_mm: float = 5.0, engine: str = "chart", device: str | None = None,
              max_applicators: int | None = None) -> TreatmentPlan:
    """Cryoablation plan: 1–4 probes 2 cm apart per cluster, up to 2 clusters."""
    return plan_thermal("cryo", case, lesion_id, measurements, geometry=geometry,
                        target_margin_mm=target_margin_mm, engine=engine,
                        device=device, max_applicators=max_applicators)



# --------------------------------------------------------------------------------------------
# bioheat engine on the case crop
# --------------------------------------------------------------------------------------------
#: vessel calibre bins (mm) for the heat-sink tissues
_CALIBRE_BINS_MM = (1.0, 2.0, 3.0, 4.0, 6.0, 8.0, 12.0, 20.0)
#: reach of a vessel's heat sink taken into the plan (mm from the vessel wall): the Pennes heat-sink
#: test cuts a zone back by ≤ 4 mm beside a 5 mm vessel (docs/ablation-physics.md)
HEAT_SINK_REACH_MM = 5.0
#: within this distance of a vessel ≥ 3 mm the plan's zone is the calibrated physics zone, the
#: chart zone beyond (twice the heat-sink reach: the seam lies where the vessels no longer act)
PHYSICS_ZONE_REACH_MM = 10.0
#: log10 Ω below which a voxel counts as unheated (the calibration ranks heated voxels only)
LOG10_DAMAGE_FLOOR = -20.0
#: heat_sink_effect's zone edge: "chart" = Ω ≥ Ω*, the damage level whose zone in the vessel-free
#: run has the chart zone's volume (the physics near the vessels, the chart zone beyond);
#: "device" = the level at which the model, perfusion off, reproduces the device's ex vivo chart
#: (RFA: rfa_generator.yaml `calibration`), its in vivo (perfused) zone everywhere; "omega1" = Ω ≥ 1.
ZONE_LEVEL = {"rfa": "device", "mwa": "chart"}
#: RFA protocol duration (s) — Cool-tip 12 min (the generator: physics/data/ablation/rfa_generator.yaml)
RFA_DURATION_S = 720.0
#: grid of the RFA runs (mm, heat and potential): the zone is grid-converged there (2 → 1 mm −6 %,
#: docs/ablation-physics.md) and a 1 mm potential solve every 2 s costs minutes per run
RFA_GRID_MM = 2.0
#: RFA simulation box: the fitted (in vivo) zone + this margin (mm); the potential's box surface is an open
#: boundary. Measured 2026-12-04 against 16 mm: zone −0.5 % (real CT, 3 electrodes) and −0.5 % (perivascular
#: demo), margin and cut-back unchanged, runtime −40 %
RFA_CROP_MM = 12.0


def _vessel_calibre_mm(geometry: CaseGeometry, sl: tuple[slice, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Vessel voxels of the crop and their local calibre (mm): the case's one calibre map
    (:attr:`latplan.anatomy.geometry.CaseGeometry.vessel_calibre_mm`, computed once per case)."""
    return geometry.vessels[sl], geometry.vessel_calibre_mm[sl]


def _bioheat_labels(case: Case, sl: tuple[slice, ...], stride: int, *, up: int = 1,
                    vessels_as_sinks: bool = True) -> tuple[np.ndarray, list[Any], dict[str, Any]]:
    """Tissue labels of the crop for the Pennes engine: every ``stride``-th voxel, or each voxel
    repeated ``up`` times per axis (a finer simulation grid than the case's)."""

    from latplan.case import StructureRole
    from latplan.physics import bioheat as bh

    tissues = bh.default_tissues()
    table = [tissues["soft_tissue"], tissues["liver"], tissues["tumour"]]
    lab_case = case.labels.array[sl]
    out = np.zeros(lab_case.shape, np.uint8)
    roles = {n: structure_role(case, n) for n in case.structure_names()}
    for n, r in roles.items():
        vals = case.label_table.values_for(n)
        if r in (StructureRole.LIVER, StructureRole.LIVER_SEGMENT, StructureRole.BILE_DUCT):
            out[np.isin(lab_case, vals)] = 1
        elif r == StructureRole.LESION:
            out[np.isin(lab_case, vals)] = 2
    vessel, calibre = _vessel_calibre_mm(case_geometry(case), sl)
    grid_mm = float(np.min(case.labels.spacing_kji_mm)) * stride / up  # the simulation grid (wall heat transfer)
    info: dict[str, Any] = {"vessel_calibres_mm": []}
    if not vessels_as_sinks:
        out[vessel] = 1  # vessels replaced by liver: the comparison run without heat sink
    elif vessel.any():
        bins = np.asarray(_CALIBRE_BINS_MM)
        which = np.clip(np.searchsorted(bins, calibre[vessel], side="left"), 0, len(bins) - 1)
        vals = out[vessel]
        for b in np.unique(which):
            table.append(bh.vessel_tissue(float(bins[b]), grid_mm=grid_mm))
            vals[which == b] = len(table) - 1
            info["vessel_calibres_mm"].append(float(bins[b]))
        out[vessel] = vals
    if stride > 1:
        out = out[::stride, ::stride, ::stride]
    if up > 1:
        out = np.repeat(np.repeat(np.repeat(out, up, 0), up, 1), up, 2)
    return np.ascontiguousarray(out), table, info


def _to_kji(ref: Any, lo_shift: np.ndarray, p_mm: np.ndarray, h_sim: np.ndarray, stride: int,
            up: int = 1) -> np.ndarray:
    """LPS point → simulation-grid mm (index × h_sim); case voxel x holds sub-voxels x·up … x·up+up−1."""
    idx = ref.mm_to_index(p_mm)  # (k, j, i) on the crop grid
    return (idx / stride * up + 0.5 * (up - 1)) * h_sim


def _large_vessel_lumen(geometry: CaseGeometry, sl: tuple[slice, ...]) -> np.ndarray:
    """Voxels of the crop inside a vessel ≥ 3 mm (flowing blood): the case's large-vessel map
    (:attr:`latplan.anatomy.geometry.CaseGeometry.large_vessels`)."""
    return np.asarray(geometry.large_vessels[sl], bool)


def _board_metrics(modality: str, case: Case, zone: np.ndarray, lesion: np.ndarray, target: np.ndarray,
                   lumen: np.ndarray, lo: tuple[int, int, int],
                   beyond: tuple[np.ndarray, list[tuple[int, int]]] | None = None) -> dict[str, Any]:
    """The cross-helper keys: target coverage, organs in the zone, and the uncertainty bands
    (zone edge ± the modality's zone-size uncertainty, data file; the nominal values stay). ``beyond``:
    (the zone grown past the image's edge, its voxels per axis) — the margin band is then measured with
    the zone continued there (:func:`~latplan.planning.applicators.margin_beyond`), the volumes in the image."""
    h = case.labels.spacing_kji_mm
    organs, unsegmented = organ_volumes_in_zone(case, zone, lo)
    hh = tuple(float(x) for x in h)
    frac = az.zone_uncertainty_fraction(modality)
    vol_range, margin_range = zone_uncertainty_band(zone, lesion, hh, frac, lumen)
    if beyond is not None:
        z, les, ex = continued(zone, beyond[0], beyond[1], lesion, lumen)
        margin_range = zone_uncertainty_band(z, les, hh, frac, ex)[1]
    return {
        "target_coverage_percent": round(100.0 * float(np.mean(zone[target])), 2) if target.any() else 0.0,
        "organ_volumes_in_zone_ml": organs,
        "unsegmented_organs": unsegmented,
        "zone_volume_range_ml": vol_range,
        "min_margin_range_mm": margin_range,
        "zone_uncertainty_fraction_of_diameter": az.zone_uncertainty_fraction(modality),
    }


def perivascular_report(case: Case, sl: tuple[slice, ...], zone: np.ndarray, lesion: np.ndarray,
                        target: np.ndarray, sinks: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """Per vessel ≥ 3 mm whose 5 mm shell reaches the target: the target tissue left unablated
    within ``HEAT_SINK_REACH_MM`` of its wall and the tumour left viable there (ml). The calibre
    is the anatomy's measurement (``sinks``) when it has one, else the largest on the crop."""
    from scipy import ndimage

    h = case.labels.spacing_kji_mm
    vessel, calibre = _vessel_calibre_mm(case_geometry(case), sl)
    large = _large_vessel_lumen(case_geometry(case), sl)
    if not large.any():
        return []
    lab = case.labels.array[sl]
    ml = case.labels.voxel_volume_ml
    # the shells matter only inside the target: distances are taken in the target's box grown by the reach
    # (+ 1 voxel), which holds every vessel voxel within reach of it — exact, and small next to the crop
    box = grown_box(target, HEAT_SINK_REACH_MM, h)
    tgt, les, zn, ves = target[box], lesion[box], zone[box], vessel[box]
    out = []
    for name in case.structure_names():
        if structure_role(case, name) not in VESSEL_ROLES:
            continue
        mine = large & np.isin(lab, case.label_table.values_for(name))
        if not mine.any():
            continue
        near = mine[box]
        if not near.any():
            continue
        shell = (ndimage.distance_transform_edt(~near, sampling=h) <= HEAT_SINK_REACH_MM) & ~ves
        if not np.any(shell & tgt):
            continue
        measured = next((v["calibre_mm"] for v in sinks or [] if v.get("name") == name), None)
        out.append({
            "vessel": name,
            "calibre_mm": round(float(measured if measured is not None else calibre[mine].max()), 2),
            "target_within_reach_ml": round(float(np.sum(shell & tgt)) * ml, 2),
            "unablated_target_ml": round(float(np.sum(shell & tgt & ~zn)) * ml, 2),
            "viable_tumour_ml": round(float(np.sum(shell & les & ~zn)) * ml, 2),
            "lumen_in_zone_ml": round(float(np.sum(mine & zone)) * ml, 2),
        })
    return out


def heat_sink_effect(modality: str, case: Case, ref: Any, lo: tuple[int, int, int], fit: PlacementResult,
                     device: str, zone: np.ndarray) -> tuple[dict[str, Any], np.ndarray, np.ndarray, np.ndarray]:
    """The zone near the vessels from the thermal model on the patient's anatomy.

    Two Pennes runs of the fitted applicators — vessels as heat sinks, and vessels replaced by
    liver. The model is calibrated on the vessel-free run: the damage level Ω* whose zone in that
    run has the chart zone's volume (the chart zone is the device's zone in vessel-free liver).
    The predicted zone is Ω ≥ Ω* of the run *with* the vessels within ``PHYSICS_ZONE_REACH_MM`` of
    a vessel ≥ 3 mm — it wraps around them by itself (no chart-minus-islands) — and the chart zone
    farther away. Returns (summary, zone, lost, free): ``free`` = the same zone from the vessel-free run;
    ``lost`` = what the vessels remove
    within ``HEAT_SINK_REACH_MM`` of a vessel ≥ 3 mm (drawn in the report); ``cut_back_mm`` = the
    largest distance of a lost voxel to the zone."""
    from scipy import ndimage

    t0 = time.perf_counter()
    _, _, info = bioheat_zone(modality, case, ref, lo, fit, device, return_damage=True)
    # RFA: the vessel-free run replays the generator's power history of the run with vessels, so
    # the two differ by the vessels' cooling only (not by a shifted roll-off timing)
    _, _, info_wo = bioheat_zone(modality, case, ref, lo, fit, device, vessels_as_sinks=False,
                                 power_trace=info.pop("power_trace", None), return_damage=True)
    l_ws, l_wo = info.pop("log10_damage"), info_wo.pop("log10_damage")
    h = case.labels.spacing_kji_mm
    sl = tuple(slice(a, a + n) for a, n in zip(lo, ref.shape, strict=True))
    vessel, _ = _vessel_calibre_mm(case_geometry(case), sl)
    large = _large_vessel_lumen(case_geometry(case), sl)
    n_chart = int(zone.sum() + np.sum(zone & large))  # chart zone incl. the lumen (vessel-free liver)
    ranked = np.sort(l_wo.ravel())[::-1]
    heated = int(np.sum(ranked > LOG10_DAMAGE_FLOOR))
    level = _zone_level(modality, ranked, n_chart, heated)
    ws = (l_ws >= level) & ~large
    wo = (l_wo >= level) & ~large
    near_large = (ndimage.distance_transform_edt(~large, sampling=h) <= HEAT_SINK_REACH_MM) if large.any() \
        else np.zeros(vessel.shape, bool)
    lost = wo & ~ws & ~vessel & near_large
    # the physics zone where the vessels act (within PHYSICS_ZONE_REACH_MM of a vessel ≥ 3 mm),
    # the chart zone farther away (where the chart is the better-validated shape)
    near_phys = (ndimage.distance_transform_edt(~large, sampling=h) <= PHYSICS_ZONE_REACH_MM) if large.any() \
        else np.zeros(vessel.shape, bool)
    # chart-calibrated level: the physics zone near the vessels, the chart zone beyond; a model
    # calibrated per device (ex vivo chart, perfusion off) and run in vivo: its zone everywhere
    predicted = (zone & ~near_phys) | (ws & near_phys) if ZONE_LEVEL[modality] == "chart" else ws
    free = (zone & ~near_phys) | (wo & near_phys) if ZONE_LEVEL[modality] == "chart" else wo
    cut_back = float(ndimage.distance_transform_edt(~ws, sampling=h)[lost].max()) if lost.any() and ws.any() else 0.0
    ml = case.labels.voxel_volume_ml
    summary = {
        "cut_back_mm": round(cut_back, 1),
        "zone_lost_ml": round(float(lost.sum()) * ml, 2),
        "simulated_zone_ml_with_vessels": round(float(ws.sum()) * ml, 2),
        "simulated_zone_ml_without_vessels": round(float(wo.sum()) * ml, 2),
        "calibrated_log10_damage": round(level, 2),
        "chart_volume_reached": bool(heated >= n_chart) if ZONE_LEVEL[modality] == "chart"
        else bool(wo.sum() >= n_chart),
        "engine": f"Pennes bioheat, {info.get('grid_spacing_mm', [0])[0]:g} mm grid, vessels as heat sinks by "
                  "calibre, " + ("damage level calibrated to the chart zone's volume in vessel-free liver"
                                 if ZONE_LEVEL[modality] == "chart" else
                                 "in vivo (perfused) zone of the model calibrated per device to its ex vivo chart"),
        "wall_s": round(time.perf_counter() - t0, 2),
    }
    if "energy_kj" in info:
        summary["energy_kj"] = info["energy_kj"]
    return summary, predicted, lost, free


def _zone_level(modality: str, ranked: np.ndarray, n_chart: int, heated: int) -> float:
    """log10 Ω of the zone edge (see ``ZONE_LEVEL``); ``ranked``: log10 Ω of the vessel-free run,
    descending; ``n_chart``: the chart zone's voxels; ``heated``: voxels above the floor."""
    how = ZONE_LEVEL[modality]
    if how == "chart":
        return float(ranked[min(max(n_chart, 1), max(heated, 1)) - 1])
    if how == "device" and modality == "rfa":
        from latplan.physics.bioheat import rfa

        return float(rfa.rfa_constants()["calibration"]["zone_log10_damage"])
    return 0.0   # "omega1": Ω ≥ 1


def _t3(v: np.ndarray) -> tuple[float, float, float]:
    return float(v[0]), float(v[1]), float(v[2])


def _to_case_grid(a: np.ndarray, up: int, stride: int, shape: tuple[int, ...]) -> np.ndarray:
    """A simulation-grid field on the case crop grid: mean over ``up``³ sub-voxels, or each voxel
    repeated ``stride`` times per axis (edge-padded to ``shape``)."""
    if up > 1:
        n0, n1, n2 = (x // up for x in a.shape)
        a = a.reshape(n0, up, n1, up, n2, up).mean(axis=(1, 3, 5))
    if stride > 1:
        a = np.repeat(np.repeat(np.repeat(a, stride, 0), stride, 1), stride, 2)[: shape[0], : shape[1], : shape[2]]
        pad = [(0, max(0, x - y)) for x, y in zip(shape, a.shape, strict=True)]
        a = np.pad(a, pad, mode="edge")
    return a


def _cryo_run(ref: Any, fit: PlacementResult, device: str, lab: np.ndarray, tissues: Any, hs: tuple[float, float, float],
              h_sim: np.ndarray, stride: int, up: int, d: np.ndarray, d_kji: np.ndarray) -> Any:
    """Cryo physics of the fitted clusters: sub-voxel probes of the probe type ``device`` at
    their fitted surface temperature, freeze 10 – thaw 8 – freeze 10 min (cryo_isotherms.yaml)."""
    from latplan.physics import bioheat as bh
    from latplan.physics.bioheat.cryo_calibration import cryo_probe_model

    model = cryo_probe_model(device)
    probes = []
    for tip, size in zip(fit.tips_mm, fit.sizes, strict=True):
        n = int(size.settings["probe_count"])
        u, v = az.perpendicular_axes(d)
        for off in az.cryo_probe_offsets_mm(n, float(size.settings["probe_spacing_mm"])):
            t = tip + off[0] * u + off[1] * v
            probes.append(bh.CryoProbe(_t3(_to_kji(ref, np.zeros(3), t, h_sim, stride, up)), _t3(d_kji),
                                       model.active_length_mm, model.diameter_mm))
    phases = (bh.CryoPhase("freeze", 600.0, model.probe_c), bh.CryoPhase("thaw", 480.0, model.probe_c),
              bh.CryoPhase("freeze", 600.0, model.probe_c))
    res = bh.simulate_cryo(lab, tissues, hs, probes=probes, phases=phases)
    res.info["probe_c"] = model.probe_c
    return res


def _mwa_run(ref: Any, fit: PlacementResult, device: str, lab: np.ndarray, tissues: Any,
             hs: tuple[float, float, float], h_sim: np.ndarray, stride: int, up: int, d: np.ndarray,
             d_kji: np.ndarray) -> Any:
    """MWA physics of the fitted antennas on the crop's tissues (perfused liver, vessels as heat
    sinks by calibre), latent heat of vaporisation and dehydration: the device's source shape
    (:func:`latplan.physics.bioheat.mwa_model`) at the INTERIM constant absorbed fraction of the
    data file (``mwa_planner_efficiency``). The ex vivo calibration (η, β, a, cooled shaft) is not
    used here yet: in vivo its Emprint absorbed power falls to ≈ 3 % of the generator's by 5 min
    (a = 1.69) and its 25 °C shaft leaves a cold sleeve along each antenna, which the perivascular
    planner tests reject (docs/ablation-physics.md, "MWA in the planner")."""
    from latplan.physics import bioheat as bh

    model = bh.mwa_model(device)
    eta = float(bh.thermal_constants()["mwa_planner_efficiency"][device])
    q = np.zeros(lab.shape, np.float32)
    for tip in fit.tips_mm:
        feed = _t3(_to_kji(ref, np.zeros(3), tip + model.feed_offset_from_tip_mm * d, h_sim, stride, up))
        q += bh.mwa_source(lab.shape, hs, feed, _t3(d_kji), penetration_mm=model.penetration_mm,
                           elongation=model.elongation, core_mm=model.core_mm)
    s = fit.sizes[0].settings
    units = len(fit.tips_mm)
    res = bh.simulate_heating(lab, tissues, hs, float(s["time_s"]), source_w_m3_per_w=q / units,
                              power_w=eta * float(s["power_w"]) * units, vaporisation_c=model.vaporisation_c,
                              dried_sar_fraction=model.dried_sar_fraction)
    res.info["mwa"] = {"efficiency": eta, "calibration": "interim: perfused fit on one chart row (data file)"}
    return res


def _rfa_run(ref: Any, fit: PlacementResult, lab: np.ndarray, tissues: Any, hs: tuple[float, float, float],
             h_sim: np.ndarray, stride: int, up: int, d_kji: np.ndarray,
             power_trace: tuple[float, np.ndarray, np.ndarray] | None) -> Any:
    """RFA electro-thermal physics of the fitted electrodes (:func:`latplan.physics.bioheat.rfa.simulate_rfa`):
    potential solve with σ(T) every 2 s on the thermal grid (≈ 2 mm, ``RFA_GRID_MM``), the data
    file's Cool-tip generator with impedance roll-off, 12 min; several electrodes are fed in turn by
    the one 200 W generator (switching controller, ``rfa._Drive``). Vessels are blood (σ 0.67 S/m) and heat sinks by calibre; liver has
    the RFA model's in vivo perfusion (:func:`~latplan.physics.bioheat.rfa.in_vivo_tissues`).
    ``power_trace`` ``(dt_s, W per step, active electrode per step)`` replays an earlier run's power
    and switching."""
    from latplan.physics.bioheat import rfa

    g = rfa.default_generator()
    needles = [rfa.electrode_needle(_t3(_to_kji(ref, np.zeros(3), tip, h_sim, stride, up)), _t3(d_kji), g)
               for tip in fit.tips_mm]
    res = rfa.simulate_rfa(lab, rfa.in_vivo_tissues(tissues), hs, RFA_DURATION_S, needles, generator=g,
                           power_trace=None if power_trace is None else power_trace[:2],
                           active_trace=None if power_trace is None else power_trace[2])
    # the zone edge of the device calibration (ex vivo chart, perfusion off), not Ω ≥ 1
    res.zone = res.damage >= 10.0 ** float(rfa.rfa_constants()["calibration"]["zone_log10_damage"])
    return res


def bioheat_zone(modality: str, case: Case, ref: Any, lo: tuple[int, int, int], fit: PlacementResult,
                 device: str, *, vessels_as_sinks: bool = True,
                 power_trace: tuple[float, np.ndarray, np.ndarray] | None = None,
                 return_damage: bool = False) -> tuple[Any, Any, dict[str, Any]]:
    """Simulate the fitted applicators with the Pennes engine on the crop; zone on ``ref``'s grid.

    ``vessels_as_sinks=False`` replaces the vessels by liver (the heat-sink comparison run);
    ``power_trace`` (RFA) replays an earlier run's delivered power and switching (``info["power_trace"]``);
    ``return_damage`` adds ``info["log10_damage"]`` (log10 Ω on ``ref``'s grid, heating only)."""
    from latplan.physics import bioheat as bh

    h = case.labels.spacing_kji_mm
    # heating runs on a ≈ 1 mm grid (the heat-sink cut-back is a millimetre effect; the fused kernel
    # makes a 10-min run on an 80 mm crop ≈ 0.5 s); cryo (freeze–thaw–freeze, 25 min, frozen-tissue
    # stability limit) and RFA (a potential solve every 2 s; grid-converged at 2 mm) on ≈ 2 mm
    grid_mm = 2.0 if modality == "cryo" else (RFA_GRID_MM if modality == "rfa" else 1.0)
    hmin = float(h.min())
    stride = max(1, round(grid_mm / hmin))
    up = max(1, round(hmin / grid_mm)) if hmin > 1.25 * grid_mm else 1
    # simulate on the chart zone's box + 20 mm (the heated region), pasted back into ``ref``
    full_ref = ref
    if fit.zone.array.any():
        slo, shi = crop_around(fit.zone.array, RFA_CROP_MM if modality == "rfa" else 20.0, h)
        ref = ref.crop(slo, shi)
    else:
        slo = (0, 0, 0)
    lo_sim = tuple(int(a + b) for a, b in zip(lo, slo, strict=True))
    sl = tuple(slice(a, a + n) for a, n in zip(lo_sim, ref.shape, strict=True))
    lab, tissues, info = _bioheat_labels(case, sl, stride, up=up, vessels_as_sinks=vessels_as_sinks)
    h_sim = h * stride / up
    hs = (float(h_sim[0]), float(h_sim[1]), float(h_sim[2]))
    inv = np.linalg.inv(ref.affine)[:3, :3]
    d = fit.direction
    d_kji = (inv @ d)[::-1] * h
    d_kji /= np.linalg.norm(d_kji)
    t0 = time.perf_counter()
    if modality == "mwa":
        res = _mwa_run(ref, fit, device, lab, tissues, hs, h_sim, stride, up, d, d_kji)
        field_c = res.peak_temperature_c
        info.update(res.info["mwa"])
    elif modality == "rfa":
        res = _rfa_run(ref, fit, lab, tissues, hs, h_sim, stride, up, d_kji, power_trace)
        field_c = res.peak_temperature_c
        info.update({"rolloffs": res.info["rolloffs"], "energy_kj": round(res.info["energy_j"] / 1000.0, 1),
                     "baseline_impedance_ohm": round(res.info["baseline_impedance_ohm"], 1),
                     "model": "electro-thermal (potential solve with σ(T), impedance-controlled generator)",
                     "power_trace": (res.dt_s, res.power_w, res.info["active_electrode"])})
    else:
        res = _cryo_run(ref, fit, device, lab, tissues, hs, h_sim, stride, up, d, d_kji)
        assert res.min_temperature_c is not None
        field_c = res.min_temperature_c
        info.update({"probe": device, "probe_c": res.info["probe_c"], "lethal_c": res.info["lethal_c"]})
    zone = _to_case_grid(res.zone.astype(np.float32), up, stride, ref.shape) >= 0.5
    field_c = _to_case_grid(field_c, up, stride, ref.shape)
    if return_damage and res.damage is not None:
        log_d = np.log10(np.maximum(res.damage.astype(np.float64), 10.0 ** LOG10_DAMAGE_FLOOR))
        full_d = np.full(full_ref.shape, LOG10_DAMAGE_FLOOR)
        full_d[tuple(slice(a, a + n) for a, n in zip(slo, ref.shape, strict=True))] = \
            _to_case_grid(log_d, up, stride, ref.shape)
        info["log10_damage"] = full_d
    info.update({"grid_spacing_mm": [float(x) for x in h_sim], "steps": res.steps, "dt_s": round(res.dt_s, 3),
                 "wall_s": round(time.perf_counter() - t0, 2), "engine_version": bh.ENGINE_VERSION})
    zone_full = np.zeros(full_ref.shape, bool)
    field_full = np.full(full_ref.shape, 37.0, np.float32)
    dst = tuple(slice(a, a + n) for a, n in zip(slo, ref.shape, strict=True))
    zone_full[dst] = zone
    field_full[dst] = field_c
    return full_ref.with_array(zone_full), full_ref.with_array(field_full), info
