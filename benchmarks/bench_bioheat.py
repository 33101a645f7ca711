"""Benchmark of the bioheat engine (issue 4): voxel updates per second of the heating step
and wall time of a 10-min MWA on a 100 mm cube at 1 mm.

Run: ``.venv/bin/python benchmarks/bench_bioheat.py`` (set NUMBA_NUM_THREADS=2 to pin the
2-core goal). Prints a table; the first run includes numba compilation (reported apart).
"""

from __future__ import annotations

import os
import time

import numba
import numpy as np

from latplan.physics import bioheat as bh


def _best_mwa(n: int, backend: str, model: bh.MwaModel, liver: bh.Tissue) -> tuple[bh.BioheatResult, np.ndarray]:
    """Best of three 10-min MWA runs (Emprint 75 W) on an n³ cube at 1 mm; also returns the source."""
    c = (n // 2) * 1.0
    q = bh.mwa_source((n, n, n), (1.0, 1.0, 1.0), (c, c, c), (1.0, 0.0, 0.0), penetration_mm=model.penetration_mm,
                      elongation=model.elongation, core_mm=model.core_mm)
    runs = [bh.simulate_heating(np.zeros((n, n, n), np.uint8), [liver], (1.0, 1.0, 1.0), 600.0, source_w_m3_per_w=q,
                                power_w=model.efficiency * 75.0, vaporisation_c=model.vaporisation_c, backend=backend)
            for _ in range(3)]
    return min(runs, key=lambda r: r.wall_s), q


def _rfa_rows() -> list[tuple[str, float, float, str]]:
    """RFA rows (helper rfa): a 12-min Cool-tip run (potential solve with σ(T) every 2 s, impedance
    roll-off) on a 75 mm box, perfused liver, at 2, 1.5 and 1 mm — seconds per run, and the zone
    and energy of each grid (the 2 → 1 mm grid study: goal < 10 % zone change)."""
    from latplan.physics.bioheat import rfa

    out = []
    zones = {}
    liver = bh.default_tissues()["liver"]
    for h in (2.0, 1.5, 1.0):
        n = round(75.0 / h) | 1
        c = (n // 2) * h
        r = rfa.simulate_rfa(np.zeros((n, n, n), np.uint8), [liver], (h, h, h), 720.0,
                             rfa.electrode_needle((c + 15.0, c, c), (1.0, 0.0, 0.0)))
        zones[h] = r.zone_volume_ml
        out.append((f"12-min RFA (Cool-tip), 75 mm box @ {h:g} mm" + (" (row of record)" if h == 1.5 else ""),
                    r.wall_s, r.voxel_updates_per_s / 1e6,
                    f"zone {r.zone_volume_ml:.1f} ml, {r.info['energy_j'] / 1e3:.1f} kJ, {r.info['rolloffs']} roll-offs, "
                    f"{r.info['solves']} solves"))
    out.append(("  RFA grid study 2 → 1 mm (goal < 10 %)", float("nan"), float("nan"),
                f"zone change {100.0 * (zones[1.0] - zones[2.0]) / zones[2.0]:+.1f} %"))
    return out


def main() -> None:
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
                                power_w=model.efficiency * 75.0, initial_temperature_c=t_init)
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
    print(f"bioheat benchmark — numba threads: {numba.get_num_threads()}, cpu count {os.cpu_count()}")
    print(f"{'case':52s} {'wall s':>8s} {'M vox-upd/s':>12s}  notes")
    for label, wall, rate, note in rows:
        print(f"{label:52s} {wall:8.2f} {rate:12.0f}  {note}")


if __name__ == "__main__":
    main()
