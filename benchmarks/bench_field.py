"""Benchmark of the electroporation field solver (issue 4): the hexagonal 7-needle array,
12 pairs × 3 conductivity iterations on a 60 mm cube at 1 mm (goal ≤ 20 s on 2 cores).

Run: ``.venv/bin/python benchmarks/bench_field.py``. Prints a table.
"""

from __future__ import annotations

import time

import numpy as np

from latplan.physics import electroporation as ep


def main() -> None:
    t = ep.default_electro_tissues()
    tissues = [t["liver"], t["tumour"]]
    rows = []
    for n, h in ((61, 1.0), (31, 2.0)):
        lab = np.zeros((n, n, n), np.int64)
        c = (n // 2) * h
        kk, jj, ii = np.meshgrid(*(np.arange(n) * h - c,) * 3, indexing="ij")
        lab[kk**2 + jj**2 + ii**2 <= 10.0**2] = 1
        needles = ep.hexagonal_array((c, c, c), (1.0, 0.0, 0.0), 15.0, active_length_mm=20.0)
        t0 = time.perf_counter()
        res = ep.solve_field(lab, tissues, (h, h, h), needles, voltage_to_distance_v_per_cm=730.0, iterations=3)
        wall = time.perf_counter() - t0
        rows.append((f"hexagonal 7 needles, 12 pairs × 3 it, 60 mm cube @ {h:g} mm", wall, res.info["solves"],
                     res.info["cg_iterations"], n**3))
    print(f"{'case':60s} {'wall s':>8s} {'solves':>7s} {'CG its':>8s} {'voxels':>9s}")
    for label, wall, solves, its, vox in rows:
        print(f"{label:60s} {wall:8.2f} {solves:7d} {its:8d} {vox:9d}")
    print("goal: ≤ 20 s for the 1 mm row on 2 cores")


if __name__ == "__main__":
    main()
