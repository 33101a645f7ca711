"""Zone-size uncertainty bands derived from parameter uncertainty (issue 14 part 6).

Why: a plan's zone is one nominal prediction; the board needs to know whether a target is
reached only at the optimistic end of what the parameters allow. The band of each modality is
the change of the zone's equivalent diameter D = (6V/π)^⅓ when one uncertain parameter at a
time is set to its published bound, combined over the parameters by root-sum-square
(independent parameters, first order):

    lower = −√Σ min(0, D_p/D₀ − 1)²,   upper = √Σ max(0, D_p/D₀ − 1)²

Parameters and bounds (``zone_uncertainty.yaml`` holds them with their sources):

* **perfusion** of liver: ω × [½, 2] around the tissue file's value (thermal modalities); the
  lower bound is cirrhotic liver (CT perfusion 67 ± 23 vs 108 ± 34 ml/min/100 ml in controls,
  Van Beers et al., AJR 2001;176:667-673), the upper bound lies beyond control mean + 2 SD
  (a wide, declared assumption);
* **lethal threshold**: cryo −40 … −20 °C around −30 °C; heating: Arrhenius Ω ≥ 4.6 (99 % cell
  death) … peak temperature ≥ 50 °C around the model's nominal zone (MWA Ω ≥ 1, RFA the
  calibrated damage level of ``rfa_generator.yaml``); IRE: the lethal field refitted to the
  calibration arm's width and depth ± 1 SD (Ben-David 2012);
* **device spread**: the measured zone's SD/mean for fixed settings where a source gives it
  (cryo: Hinshaw 2010 necrosis 24 ± 2 mm); MWA/RFA charts give no spread (not included, said).

Each thermal parameter bound is run through latplan's own physics on a small grid (single
applicator with the planner's settings, homogeneous liver; cryo: 1–3 probes of 2.4 mm, worst
case over the clusters). ``python -m latplan.physics.zone_uncertainty [--only mwa rfa]``
re-derives the entries and rewrites them in the ``derived`` section of the data file (with engine
version, grid and date); tests/physics/test_zone_uncertainty.py re-derives every entry (cryo,
MWA, RFA, IRE) within a stated tolerance, so a model change that moves a band fails there until
the data file is re-derived.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import yaml

from latplan.errors import InvalidInputError
from latplan.physics import bioheat as bh
from latplan.physics import electroporation as ep
from latplan.physics.ablation_zones import DATA_DIR, cryo_probe_offsets_mm, uncertainty_data
from latplan.physics.bioheat import rfa

UNCERTAINTY_FILE = DATA_DIR / "zone_uncertainty.yaml"


@dataclass(frozen=True)
class ComponentBand:
    """One parameter's effect: fractional change of the equivalent diameter at its two bounds."""

    name: str
    lower: float
    upper: float
    note: str


def combine(components: Sequence[ComponentBand]) -> tuple[float, float]:
    """(lower, upper) fraction: root-sum-square over the components of each one's largest
    decrease and of its largest increase (a component whose two bounds both shrink the zone
    adds nothing to the upper side)."""
    neg = math.sqrt(sum(min(0.0, c.lower, c.upper) ** 2 for c in components))
    pos = math.sqrt(sum(max(0.0, c.lower, c.upper) ** 2 for c in components))
    return -neg, pos


def _eq_diameter_mm(mask: np.ndarray, h_mm: float) -> float:
    return float((6.0 * float(mask.sum()) * h_mm**3 / math.pi) ** (1.0 / 3.0))


def _liver(perfusion_scale: float) -> bh.Tissue:
    liver = bh.default_tissues()["liver"]
    return dataclasses.replace(liver, perfusion_per_s=liver.perfusion_per_s * perfusion_scale)


# --------------------------------------------------------------------------------------------
# cryo
# --------------------------------------------------------------------------------------------
def _cryo_tmin(probe_count: int, perfusion_scale: float, grid_mm: float) -> np.ndarray:
    """Minimum temperature of ``probe_count`` calibrated 2.4 mm probes (2 cm apart), 10-8-10 min
    in homogeneous liver with perfusion × ``perfusion_scale``."""
    from latplan.physics.bioheat.cryo_calibration import cryo_probe_model

    model = cryo_probe_model("cryo_2.4mm")
    half_w = 35.0 if probe_count > 1 else 22.0
    n = [round((model.active_length_mm + 30.0) / grid_mm) | 1] + [round(2 * half_w / grid_mm) | 1] * 2
    c = [(x // 2) * grid_mm for x in n]
    probes = [bh.CryoProbe((c[0] + 0.5 * model.active_length_mm, c[1] + o[0], c[2] + o[1]), (1.0, 0.0, 0.0),
                           model.active_length_mm, model.diameter_mm) for o in cryo_probe_offsets_mm(probe_count)]
    tp = model.probe_c
    res = bh.simulate_cryo(np.zeros(n, np.uint8), [_liver(perfusion_scale)], (grid_mm,) * 3, probes=probes,
                           phases=(bh.CryoPhase("freeze", 600.0, tp), bh.CryoPhase("thaw", 480.0, tp),
                                   bh.CryoPhase("freeze", 600.0, tp)))
    assert res.min_temperature_c is not None
    return res.min_temperature_c


def derive_cryo(*, grid_mm: float = 2.0, counts: Sequence[int] = (1, 2, 3)) -> list[ComponentBand]:
    """Cryo components: perfusion bounds and the −40/−20 °C isotherms around −30 °C (worst case
    over ``counts`` clusters), and the device spread of the data file."""
    cfg = uncertainty_data()["parameters"]
    lo_s, hi_s = (float(x) for x in cfg["perfusion_scale"])
    band_c = [float(x) for x in cfg["cryo_lethal_isotherm_c"]]
    nominal_c = float(bh.thermal_constants()["cryo"]["lethal_isotherm_c"])
    perf, thr = [0.0, 0.0], [0.0, 0.0]
    for n in counts:
        t0 = _cryo_tmin(n, 1.0, grid_mm)
        d0 = _eq_diameter_mm(t0 <= nominal_c, grid_mm)
        for i, s in enumerate((hi_s, lo_s)):     # more perfusion → smaller zone (lower side first)
            d = _eq_diameter_mm(_cryo_tmin(n, s, grid_mm) <= nominal_c, grid_mm) / d0 - 1.0
            perf[i] = min(perf[i], d) if i == 0 else max(perf[i], d)
        for i, lv in enumerate((min(band_c), max(band_c))):
            d = _eq_diameter_mm(t0 <= lv, grid_mm) / d0 - 1.0
            thr[i] = min(thr[i], d) if i == 0 else max(thr[i], d)
    dev = float(cfg["cryo_device_spread_fraction"])
    return [ComponentBand("perfusion", perf[0], perf[1], f"liver perfusion x {lo_s:g} ... {hi_s:g}"),
            ComponentBand("threshold", thr[0], thr[1], f"lethal isotherm {min(band_c):g} ... {max(band_c):g} degC"),
            ComponentBand("device", -dev, dev, "Hinshaw 2010 necrosis diameter SD/mean")]


# --------------------------------------------------------------------------------------------
# heating (MWA, RFA)
# --------------------------------------------------------------------------------------------
#: homogeneous-liver box of the heating runs (mm, k × j × i): the MWA zone (≈ 45 ml, 5 cm long)
#: and the RFA zone fit with ≥ 10 mm to spare; RFA's open boundary makes its zone box-independent
#: (< 2 % from 75 to 120 mm, tests/physics/test_bioheat_rfa.py)
HEATING_BOX_MM = {"mwa": (90.0, 70.0, 70.0), "rfa": (75.0, 75.0, 75.0)}


def _box(modality: str, grid_mm: float) -> tuple[list[int], tuple[float, float, float]]:
    n = [round(b / grid_mm) | 1 for b in HEATING_BOX_MM[modality]]
    c = ((n[0] // 2) * grid_mm, (n[1] // 2) * grid_mm, (n[2] // 2) * grid_mm)
    return n, c


def _heating_run(modality: str, perfusion_scale: float, grid_mm: float) -> bh.BioheatResult:
    """One applicator along k through the box centre in homogeneous liver (perfusion × ``perfusion_scale``),
    with the planner's physics and settings (planning/thermal.py ``_mwa_run`` / ``_rfa_run``):

    * MWA: the Emprint source shape at the data file's planner efficiency, 100 W, 10 min;
    * RFA: the electro-thermal model (:func:`latplan.physics.bioheat.rfa.simulate_rfa`: potential
      solve with σ(T), the data file's Cool-tip generator with roll-off) in its in vivo liver
      (:func:`latplan.physics.bioheat.rfa.in_vivo_tissues`, perfusion × the bound), ``rfa_run.duration_s``.

    The result's ``zone`` is the model's nominal zone criterion (:func:`nominal_zone`)."""
    n, c = _box(modality, grid_mm)
    lab = np.zeros(n, np.uint8)
    tis = [_liver(perfusion_scale)]
    hs = (grid_mm,) * 3
    if modality == "mwa":
        model = bh.mwa_model("covidien_emprint")
        eta = float(bh.thermal_constants()["mwa_planner_efficiency"]["covidien_emprint"])
        feed = (c[0] + 10.0, c[1], c[2])
        q = bh.mwa_source(tuple(n), hs, feed, (1.0, 0.0, 0.0), penetration_mm=model.penetration_mm,
                          elongation=model.elongation, core_mm=model.core_mm)
        return bh.simulate_heating(lab, tis, hs, 600.0, source_w_m3_per_w=q, power_w=eta * 100.0,
                                   vaporisation_c=model.vaporisation_c, dried_sar_fraction=model.dried_sar_fraction)
    if modality != "rfa":
        raise InvalidInputError(f"heating uncertainty is derived for 'mwa' and 'rfa', not {modality!r}.")
    duration_s = float(uncertainty_data()["parameters"]["rfa_run"]["duration_s"])
    g = rfa.default_generator()
    needle = rfa.electrode_needle((c[0] + 0.5 * g.active_length_mm, c[1], c[2]), (1.0, 0.0, 0.0), g)
    # the RFA model's in vivo liver (rfa_generator.yaml perfusion), scaled to the bound
    tis = [dataclasses.replace(t, perfusion_per_s=t.perfusion_per_s * perfusion_scale)
           for t in rfa.in_vivo_tissues([bh.default_tissues()["liver"]])]
    res = rfa.simulate_rfa(lab, tis, hs, duration_s, needle, generator=g)
    res.zone = nominal_zone("rfa", res)
    return res


def nominal_zone(modality: str, res: bh.BioheatResult) -> np.ndarray:
    """The model's nominal zone: MWA Ω ≥ 1 (the engine's zone); RFA the per-device calibrated damage
    level (``rfa_generator.yaml`` ``calibration.zone_log10_damage``, the planner's zone edge)."""
    if modality == "rfa":
        assert res.damage is not None
        return np.asarray(res.damage >= 10.0 ** float(rfa.rfa_constants()["calibration"]["zone_log10_damage"]))
    return np.asarray(res.zone)


def derive_heating(modality: str, *, grid_mm: float = 2.0) -> list[ComponentBand]:
    """Heating components of ``modality`` ('mwa' or 'rfa') from its physics at the parameter bounds:

    * perfusion: liver ω × ``perfusion_scale`` bounds (three runs);
    * threshold: the zone criteria in use, Ω ≥ ``heating_damage_omega_conservative`` (99 % cell
      death) and peak ≥ ``heating_isotherm_optimistic_c``, around the model's nominal criterion
      (:func:`nominal_zone`; for RFA's calibrated level, which lies above Ω = 4.6, both alternatives
      are larger: the threshold then adds to the upper side only);
    * device: none (the MWA/RFA charts give no zone spread for fixed settings; said in the note)."""
    cfg = uncertainty_data()["parameters"]
    lo_s, hi_s = (float(x) for x in cfg["perfusion_scale"])
    omega_hi = float(cfg["heating_damage_omega_conservative"])
    iso_c = float(cfg["heating_isotherm_optimistic_c"])
    r0 = _heating_run(modality, 1.0, grid_mm)
    d0 = _eq_diameter_mm(r0.zone, grid_mm)
    perf = [_eq_diameter_mm(_heating_run(modality, s, grid_mm).zone, grid_mm) / d0 - 1.0 for s in (hi_s, lo_s)]
    assert r0.damage is not None
    thr = [_eq_diameter_mm(r0.damage >= omega_hi, grid_mm) / d0 - 1.0,
           _eq_diameter_mm(r0.peak_temperature_c >= iso_c, grid_mm) / d0 - 1.0]
    dev = ComponentBand("device", 0.0, 0.0, "no zone spread for fixed settings in the device charts: not included")
    return [ComponentBand("perfusion", min(perf), max(perf), f"liver perfusion x {lo_s:g} ... {hi_s:g}"),
            ComponentBand("threshold", min(thr), max(thr), f"Omega >= {omega_hi:g} ... peak >= {iso_c:g} degC"),
            dev]


# --------------------------------------------------------------------------------------------
# IRE
# --------------------------------------------------------------------------------------------
def derive_ire_threshold_fraction(*, n: int = 61) -> tuple[float, float, float]:
    """(fitted nominal V/cm, lower, upper fractional change) of the IRE lethal field: refitted to
    the calibration arm's width and depth at mean + SD (lower field) and mean − SD (higher field)."""
    cons = ep.electroporation_constants()["protocols"]["ire"]
    cal = cons["calibration"]
    sd = uncertainty_data()["parameters"]["ire_calibration_sd_mm"]
    liver = ep.protocol_tissues("ire", [ep.default_electro_tissues()["liver"]])[0]
    c = (n // 2) * 1.0
    needles = ep.parallel_pair((c, c, c), (1.0, 0.0, 0.0), float(cal["spacing_mm"]),
                               active_length_mm=float(cal["exposure_mm"]), radius_mm=0.6)
    res = ep.solve_field(np.zeros((n, n, n), np.int64), [liver], (1.0, 1.0, 1.0), needles, [(0, 1)],
                         float(cal["voltage_v"]))
    w, d = float(cal["width_mm"]), float(cal["depth_mm"])
    sw, sdd = float(sd["width"]), float(sd["depth"])
    th = {k: ep.fit_lethal_threshold_v_per_cm([(res, {2: w + k * sw, 1: d + k * sdd})]) for k in (-1, 0, 1)}
    return th[0], th[1] / th[0] - 1.0, th[-1] / th[0] - 1.0


# --------------------------------------------------------------------------------------------
# data file
# --------------------------------------------------------------------------------------------
MODALITIES = ("cryo", "mwa", "rfa", "ire_threshold")


def derive_entry(key: str, *, grid_mm: float = 2.0) -> dict[str, object]:
    """One ``derived`` entry of the data file (``key`` in :data:`MODALITIES`), with its provenance."""
    date = _dt.date.today().isoformat()
    if key == "ire_threshold":
        nominal, lo, hi = derive_ire_threshold_fraction()
        return {"lower": round(lo, 3), "upper": round(hi, 3), "nominal_v_per_cm": nominal,
                "engine_version": "field solver", "grid_mm": 1.0, "date": date,
                "components": {"threshold": {"lower": round(lo, 3), "upper": round(hi, 3),
                                             "note": "lethal field refitted at width/depth +/- 1 SD"}}}
    if key == "cryo":
        comps = derive_cryo(grid_mm=grid_mm)
    elif key in ("mwa", "rfa"):
        comps = derive_heating(key, grid_mm=grid_mm)
    else:
        raise InvalidInputError(f"no uncertainty derivation for {key!r} (known: {', '.join(MODALITIES)}).")
    lo, hi = combine(comps)
    return {"lower": round(lo, 3), "upper": round(hi, 3), "engine_version": bh.ENGINE_VERSION,
            "grid_mm": grid_mm, "date": date,
            "components": {c.name: {"lower": round(c.lower, 3), "upper": round(c.upper, 3), "note": c.note}
                           for c in comps}}


def derive_all(grid_mm: float = 2.0, only: Sequence[str] = MODALITIES) -> dict[str, dict[str, object]]:
    """The ``derived`` entries of ``only`` (default: every modality)."""
    return {key: derive_entry(key, grid_mm=grid_mm) for key in only}


def write_derived(derived: dict[str, dict[str, object]]) -> None:
    """Replace the given entries of the ``derived:`` section (the file's last section) of the data
    file; entries not given stay as they are, in the order of :data:`MODALITIES`."""
    text = UNCERTAINTY_FILE.read_text(encoding="utf-8")
    head, _, tail = text.partition("\nderived:")
    old = (yaml.safe_load("derived:" + tail) or {}).get("derived") or {} if tail else {}
    merged = {**old, **derived}
    ordered = {k: merged[k] for k in (*MODALITIES, *merged) if k in merged}
    body = yaml.safe_dump({"derived": ordered}, sort_keys=False, default_flow_style=False, width=110)
    UNCERTAINTY_FILE.write_text(head.rstrip("\n") + "\n" + body, encoding="utf-8")


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m latplan.physics.zone_uncertainty [--only mwa rfa] [--grid-mm 2] [--dry-run]``:
    re-derive the entries (default all) and rewrite them in the data file (after an MWA, RFA,
    cryo or field-model change: re-run for that modality and commit the data file)."""
    import argparse

    ap = argparse.ArgumentParser(prog="python -m latplan.physics.zone_uncertainty", description=main.__doc__)
    ap.add_argument("--only", nargs="+", choices=MODALITIES, default=list(MODALITIES))
    ap.add_argument("--grid-mm", type=float, default=2.0)
    ap.add_argument("--dry-run", action="store_true", help="print, do not write the data file")
    args = ap.parse_args(argv)
    result = derive_all(args.grid_mm, args.only)
    print(yaml.safe_dump(result, sort_keys=False))
    if not args.dry_run:
        write_derived(result)


if __name__ == "__main__":  # pragma: no cover - data-file derivation, run by hand
    main()
