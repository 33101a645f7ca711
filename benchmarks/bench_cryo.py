"""Benchmark of the cryo engine (issue 14 part 4): a 10-8-10 min double freeze–thaw with one
sub-voxel probe (1.7 mm, fitted temperature) in perfused liver at 1 mm, goal ≤ 10 s on 2 cores
(the bare-voxel explicit kernel took 167 s).

Run: ``.venv/bin/python benchmarks/bench_cryo.py`` (NUMBA_NUM_THREADS=2 for the 2-core goal).
Prints a table (case, wall s, CPU s, limit, held) and the machine load (``uptime``); the first
run includes numba compilation (reported apart). CPU s is the process time: on a loaded
machine it is the better estimate of the idle wall time of the serial path.
"""

from __future__ import annotations

import os
import subprocess
import time

import numba
import numpy as np

from latplan.physics import bioheat as bh
from latplan.physics.bioheat.cryo_calibration import cryo_probe_model

LIMIT_S = 10.0


def _run(h: float, box_mm: tuple[float, float, float], *, parallel: bool | None = None,
         probes: int = 1) -> tuple[bh.BioheatResult, float, float]:
    liver = bh.default_tissues()["liver"]
    model = cryo_probe_model("cryo_1.7mm")
    n = [round(b / h) | 1 for b in box_mm]
    c = [(x // 2) * h for x in n]
    offs = [(0.0, 0.0)] if probes == 1 else [(-7.5, 0.0), (7.5, 0.0)]
    pr = [bh.CryoProbe((c[0] + 15.0, c[1] + o[0] + 0.3, c[2] + o[1]), (1.0, 0.0, 0.0), model.active_length_mm,
                       model.diameter_mm) for o in offs]
    phases = (bh.CryoPhase("freeze", 600.0, model.probe_c), bh.CryoPhase("thaw", 480.0, model.probe_c),
              bh.CryoPhase("freeze", 600.0, model.probe_c))
    c0, w0 = time.process_time(), time.perf_counter()
    res = bh.simulate_cryo(np.zeros(n, np.uint8), [liver], (h, h, h), probes=pr, phases=phases, parallel=parallel)
    return res, time.perf_counter() - w0, time.process_time() - c0


def main() -> None:
    rows = []
    t0 = time.perf_counter()
    _run(2.0, (20.0, 20.0, 40.0))
    rows.append(("compile + warm-up (2 mm, small box)", time.perf_counter() - t0, float("nan"), float("nan"), ""))
    box = (80.0, 50.0, 50.0)   # 30 mm freezing segment + 25 mm; 25 mm around the axis (cropped box)
    for label, h, par, limit in (("10-8-10, 1 probe @ 1 mm, serial (goal)", 1.0, False, LIMIT_S),
                                 ("10-8-10, 1 probe @ 1 mm, 2 threads", 1.0, True, LIMIT_S),
                                 ("10-8-10, 1 probe @ 2 mm, serial", 2.0, False, float("nan"))):
        res, wall, cpu = _run(h, box, parallel=par)
        v40 = float((res.min_temperature_c <= -40.0).sum()) * h**3 / 1000.0 if res.min_temperature_c is not None else 0
        note = (f"{res.steps} super-steps, {res.info['stages']} stages, −40 °C {v40:.2f} ml, "
                f"lethal {res.zone_volume_ml:.2f} ml")
        rows.append((label, wall, cpu, limit, note))
    res, wall, cpu = _run(1.0, (80.0, 60.0, 50.0), probes=2)
    rows.append(("10-8-10, 2 probes 15 mm apart @ 1 mm, serial", wall, cpu, float("nan"),
                 f"lethal {res.zone_volume_ml:.2f} ml"))
    load = subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()
    print(f"cryo benchmark — numba threads: {numba.get_num_threads()}, cpu count {os.cpu_count()}; uptime: {load}")
    print(f"{'case':48s} {'wall s':>8s} {'CPU s':>8s} {'limit s':>8s} {'held':>5s}  notes")
    for label, wall, cpu, limit, note in rows:
        held = "" if limit != limit else ("yes" if wall <= limit else "no")
        print(f"{label:48s} {wall:8.2f} {cpu:8.2f} {limit:8.1f} {held:>5s}  {note}")


if __name__ == "__main__":
    main()
