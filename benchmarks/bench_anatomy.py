"""Benchmark: all measurements of a 5-lesion case on a 1 mm grid of the whole phantom (issue [A]).

Goal: measure_case under 2 s on 2 cores. Run: .venv/bin/python benchmarks/bench_anatomy.py
Prints a table: grid, phantom build time, measurement wall/CPU time (best of N runs), per-lesion sizes.
"""

from __future__ import annotations

import argparse
import os
import time

from rich.console import Console
from rich.table import Table

from latplan.anatomy import measure_case
from latplan.phantom import build_phantom

SPEC = {
    "seed": 11,
    "patient": {"id": "BENCH-5", "primary": "colorectal", "primary_status": "resected", "extrahepatic_sites": []},
    "lesions": [
        {"id": "lesion_1", "segment": 6, "diameter_mm": 28},
        {"id": "lesion_2", "segment": 3, "diameter_mm": 30, "abut": "stomach", "gap_mm": 1},
        {"id": "lesion_3", "segment": 8, "diameter_mm": 25, "abut": "portal_vein", "gap_mm": 2},
        {"id": "lesion_4", "segment": "4a", "diameter_mm": 20, "placement": "peripheral"},
        {"id": "lesion_5", "segment": 5, "diameter_mm": 35, "shape": "lobulated"},
    ],
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--voxel-mm", type=float, default=1.0)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    spec = dict(SPEC, voxel_mm=[args.voxel_mm] * 3)
    t0 = time.perf_counter()
    case = build_phantom(spec)
    build_s = time.perf_counter() - t0
    walls, cpus = [], []
    m = None
    for _ in range(args.repeats):
        c0, w0 = time.process_time(), time.perf_counter()
        m = measure_case(case)
        cpus.append(time.process_time() - c0)
        walls.append(time.perf_counter() - w0)
    assert m is not None
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    t = Table(title="latplan.anatomy.measure_case benchmark (goal < 2 s on 2 cores)")
    t.add_column("quantity")
    t.add_column("value", justify="right")
    t.add_row("grid (k, j, i)", str(case.labels.shape))
    t.add_row("voxels", f"{case.labels.array.size / 1e6:.1f} M at {args.voxel_mm:g} mm")
    t.add_row("lesions", str(len(m["lesions"])))
    t.add_row("phantom build (wall)", f"{build_s:.2f} s")
    t.add_row(f"measure_case wall, best of {args.repeats}", f"{min(walls):.2f} s")
    t.add_row(f"measure_case CPU, best of {args.repeats}", f"{min(cpus):.2f} s")
    t.add_row("CPUs / load average (1 min)", f"{os.cpu_count()} / {load:.1f}")
    t.add_row("goal met (wall < 2 s)", "yes" if min(walls) < 2.0 else "no")
    Console().print(t)
    lt = Table(title="lesions")
    for col in ("id", "segments", "volume ml", "Feret mm", "axial mm", "capsule mm", "nearest vessel"):
        lt.add_column(col)
    for les in m["lesions"]:
        nv = les["nearest_vessels"][0] if les["nearest_vessels"] else {}
        lt.add_row(les["id"], ",".join(les["segments"] or []), f"{les['volume_ml']:.2f}", f"{les['max_diameter_mm']:.1f}",
                   f"{les['axial_diameter_mm']:.1f}", f"{les['capsule_distance_mm']:.1f}",
                   f"{nv.get('name', '-')} {nv.get('distance_mm', '')} mm, Ø {nv.get('calibre_mm', '')} mm")
    Console().print(lt)


if __name__ == "__main__":
    main()
