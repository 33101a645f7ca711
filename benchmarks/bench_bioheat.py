"""Benchmark of the bioheat engine (issue 4): voxel updates per second of the heating step
and wall time of a 10-min MWA on a 100 mm cube at 1 mm; MWA calibration rows (issue 14 [J] 3):
the full leave-one-out chart check on a freshly simulated table, every chart row re-simulated in
3-D, energy balance and peak temperature with latent heat, in vivo / ex vivo zone ratio.

Run: ``.venv/bin/python benchmarks/bench_bioheat.py`` (set NUMBA_NUM_THREADS=2 to pin the
2-core goal). Prints a table; the first run includes numba compilation (reported apart).
``--mwa`` runs only the MWA calibration rows; ``--rebuild-mwa`` also rewrites the cached table
(``physics/data/ablation/mwa_calibration_table.json``) from the engine.
"""

from __future__ import annotations

import os
import sys
import time

import numba
import numpy as np

from latplan.physics import bioheat as bh


def _best_mwa(n: int, backend: str, model: bh.MwaModel, liver: bh.Tissue) -> tuple[bh.BioheatResult, np.ndarray]:
    """Best of three 10-min MWA runs (Emprint 75 W) on an n³ cube at 1 mm; also returns the source."""
    c = (n // 2) * 1.0
    q = bh.mwa_source((n, n, n), (1.0, 1.0, 1.0), (c, c, c), (1.0, 0.0, 0.0), penetration_mm=model.penetration_mm,
                      elongation=model.elongation, core_mm=model.core_mm)
    if backend != "cpu":  # the GPU kernel has latent heat but not the dehydration source update
        runs = [bh.simulate_heating(np.zeros((n, n, n), np.uint8), [liver], (1.0, 1.0, 1.0), 600.0,
                                    source_w_m3_per_w=q, power_w=model.absorbed_power_w(75.0, 300.0),
                                    vaporisation_c=model.vaporisation_c, backend=backend) for _ in range(3)]
    else:
        runs = [bh.run_mwa(model, np.zeros((n, n, n), np.uint8), [liver], (1.0, 1.0, 1.0), q, 75.0, 600.0)
                for _ in range(3)]
    return min(runs, key=lambda r: r.wall_s), q


def mwa_rows(rebuild: bool) -> list[tuple[str, float, float, str]]:
    """MWA calibration (issue 14 [J] 3): table build, leave-one-out, 3-D re-simulation of every row,
    energy balance / peak, in vivo vs ex vivo."""
    from latplan.physics.bioheat import calibration as cal

    rows: list[tuple[str, float, float, str]] = []
    t0 = time.perf_counter()
    tables = [cal.build_mwa_table(d, a_grid=cal.mwa_table(d).a_grid) for d in bh.MWA_DEVICES]
    drift = max(float(np.max(np.abs(t.volume_ml / cal.mwa_table(t.device).volume_ml - 1.0))) for t in tables)
    rows.append(("MWA table rebuilt from the engine (3 devices)", time.perf_counter() - t0, float("nan"),
                 f"max deviation from the cached table {100 * drift:.2f} % (limit 1 %: "
                 f"{'held' if drift <= 0.01 else 'NOT held'})"))
    if rebuild:
        cal.TABLE_FILE.write_text(cal.table_to_json(tables) + "\n")
    cal.mwa_table.cache_clear()
    cal.mwa_model.cache_clear()
    t0 = time.perf_counter()
    loo = [c for d in bh.MWA_DEVICES for c in bh.leave_one_out(d)]
    former = set(bh.MWA_CALIBRATION_ROWS.items())
    unseen = [c for c in loo if (c.device, (c.power_w, c.time_s)) not in former]
    ok = sum(abs(c.diff_percent) <= 20 for c in unseen)
    rows.append(("MWA leave-one-out, rows within ±20 % (goal ≥ 28/33)", time.perf_counter() - t0, float("nan"),
                 f"{ok}/{len(unseen)} ({sum(abs(c.diff_percent) <= 20 for c in loo)}/{len(loo)} incl. the "
                 f"former calibration rows); worst {max(loo, key=lambda c: abs(c.diff_percent)).diff_percent:+.0f} %"))
    for c in loo:
        print(f"  LOO {c.device:17s} {c.power_w:5.0f} W {c.time_s:5.0f} s chart {c.chart_ml:6.2f} ml "
              f"model {c.model_ml:6.2f} ml {c.diff_percent:+6.1f} %")
    t0 = time.perf_counter()
    direct = [c for d in bh.MWA_DEVICES for c in bh.chart_consistency(d, bh.mwa_model(d))]
    rows.append(("MWA 3-D re-simulation of every row (in-sample fit)", time.perf_counter() - t0, float("nan"),
                 f"{sum(abs(c.diff_percent) <= 20 for c in direct)}/{len(direct)} within ±20 %"))
    for d in bh.MWA_DEVICES:
        m = bh.mwa_model(d)
        print(f"  model {d}: eta {m.efficiency:.3f}, beta {m.power_exponent:.3f}, a {m.time_decline:.3f}, "
              f"elongation {m.elongation:.2f}")
    m = bh.mwa_model("covidien_emprint")
    for p_w, t_s, length in ((45.0, 300.0, 27.0), (100.0, 600.0, 41.0)):
        ex = bh.simulate_mwa_zone(m, p_w, t_s, box_mm=length)["volume_ml"]
        iv = bh.simulate_mwa_zone(m, p_w, t_s, box_mm=length, perfused=True)["volume_ml"]
        rows.append((f"MWA Emprint {p_w:g} W / {t_s:g} s in vivo / ex vivo", float("nan"), float("nan"),
                     f"{iv:.1f} / {ex:.1f} ml = {iv / ex:.2f} (no verified published ratio)"))
    return rows


def _rfa_rows() -> list[tuple[str, float, float, str]]:
    """RFA rows (helper rfa): a 12-min Cool-tip run (potential solve with σ(T) every 2 s, impedance
    roll-off, latent heat) on a 75 mm box, perfused liver, at 2 mm (the planner's grid) and 1 mm —
    seconds per run, zone, energy and the 2 → 1 mm grid change (goal < 10 %); and one RFA plan with the
    heat-sink check (two runs on the crop) on the perivascular demo case."""
    from latplan.anatomy import measure_case
    from latplan.phantom.demo import build_demo_case
    from latplan.physics.bioheat import rfa
    from latplan.planning.thermal import plan_rfa

    out = []
    zones = {}
    liver = bh.default_tissues()["liver"]
    for h in (2.0, 1.0):
        n = round(75.0 / h) | 1
        c = (n // 2) * h
        r = rfa.simulate_rfa(np.zeros((n, n, n), np.uint8), [liver], (h, h, h), 720.0,
                             rfa.electrode_needle((c + 15.0, c, c), (1.0, 0.0, 0.0)))
        zones[h] = r.zone_volume_ml
        out.append((f"12-min RFA (Cool-tip), 75 mm box @ {h:g} mm" + (" (planner grid)" if h == 2.0 else ""),
                    r.wall_s, r.voxel_updates_per_s / 1e6,
                    f"zone {r.zone_volume_ml:.1f} ml, {r.info['energy_j'] / 1e3:.1f} kJ, {r.info['rolloffs']} roll-offs, "
                    f"{r.info['solves']} solves"))
    out.append(("  RFA grid study 2 → 1 mm (goal < 10 %)", float("nan"), float("nan"),
                f"zone change {100.0 * (zones[1.0] - zones[2.0]) / zones[2.0]:+.1f} %"))
    case = build_demo_case("perivascular-rfa")
    meas = measure_case(case)
    t0 = time.perf_counter()
    p = plan_rfa(case, "lesion_1", meas)
    hs = p.metrics["heat_sink"]
    out.append(("RFA plan with heat-sink check (perivascular demo, 2 runs)", time.perf_counter() - t0, float("nan"),
                f"zone {p.metrics['zone_volume_ml']:.1f} ml, cut-back {hs['cut_back_mm']:.1f} mm, "
                f"{hs.get('energy_kj', float('nan')):.1f} kJ"))
    return out


def main() -> None:
    if "--mwa" in sys.argv or "--rebuild-mwa" in sys.argv:
        _print(mwa_rows("--rebuild-mwa" in sys.argv))
        return
    liver = bh.default_tissues()["liver"]
    model = bh.mwa_model("covidien_emprint")
    rows = []
    # warm-up / compile on a small grid
    t0 = time.perf_counter()
    n = 21
    q = bh.mwa_source((n, n, n), (1.0, 1.0, 1.0), (10.0, 10.0, 10.0), (1.0, 0.0, 0.0))
    bh.simulate_heating(np.zeros((n, n, n), np.uint8), [liver], (1.0, 1.0, 1.0), 5.0, source_w_m3_per_w=q, power_w=10.0)
    rows.append(("compile + warm-up (21³)", time.perf_counter() - t0, float("nan"), ""))
    for n, label in ((100, "10-min MWA, 100 mm cube @ 1 mm (goal ≤ 1 s)"), (80, "10-min MWA, 80 mm cube @ 1 mm")):
        best, q = _best_mwa(n, "cpu", model, liver)
        rows.append((label, best.wall_s, best.voxel_updates_per_s / 1e6,
                     f"{best.steps} steps × dt {best.dt_s:.3f} s, zone {best.zone_volume_ml:.1f} ml"))
        # full-domain rate (no active-box shortcut): non-uniform start temperature
        t_init = np.full((n, n, n), 37.0, np.float32)
        t_init[0, 0, 0] = 37.001
        r = bh.simulate_heating(np.zeros((n, n, n), np.uint8), [liver], (1.0, 1.0, 1.0), 120.0, source_w_m3_per_w=q,
                                power_w=model.absorbed_power_w(75.0, 300.0), initial_temperature_c=t_init)
        rows.append((f"  full-domain step rate ({n}³, 2-min)", r.wall_s, r.voxel_updates_per_s / 1e6, ""))
    from latplan.physics.bioheat.gpu import gpu_available

    if gpu_available():  # optional CUDA path (CuPy); same scheme, no active-box shortcut
        for n in (100, 200):
            best, _ = _best_mwa(n, "gpu", model, liver)
            rows.append((f"GPU: 10-min MWA, {n} mm cube @ 1 mm", best.wall_s, best.voxel_updates_per_s / 1e6,
                         f"{best.steps} steps, zone {best.zone_volume_ml:.1f} ml"))
    else:
        rows.append(("GPU path: no CuPy/CUDA GPU here (optional)", float("nan"), float("nan"), ""))
    rows.extend(_rfa_rows())
    rows += mwa_rows(False)
    _print(rows)


def _print(rows: list[tuple[str, float, float, str]]) -> None:
    print(f"bioheat benchmark — numba threads: {numba.get_num_threads()}, cpu count {os.cpu_count()}, "
          f"load {os.getloadavg()[0]:.1f}")
    print(f"{'case':52s} {'wall s':>8s} {'M vox-upd/s':>12s}  notes")
    for label, wall, rate, note in rows:
        print(f"{label:52s} {wall:8.2f} {rate:12.0f}  {note}")


if __name__ == "__main__":
    main()
