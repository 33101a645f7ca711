"""Follow-up benchmarks: registration, margin check, follow-up analysis, cohort survival.

Run: .venv/bin/python benchmarks/bench_followup.py [--quick]
Prints one table (wall-clock seconds on this machine; numbers depend on the CPU load).
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def _t(fn):
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def main() -> None:
    quick = "--quick" in sys.argv
    from latplan.followup.analysis import analyse_followup
    from latplan.followup.cohort import run_outcomes
    from latplan.followup.demo import build_fig2_followup
    from latplan.followup.imaging_phantom import write_imaging_followup
    from latplan.followup.margin_check import compare_zones, margin_check
    from latplan.followup.registration import register
    from latplan.followup.synthetic import SyntheticCohortSpec, generate_cohort
    from latplan.followup.timepoints import load_baseline, load_timepoints
    from latplan.imaging.volume import Volume

    rows: list[tuple[str, str, float, str]] = []
    tmp = Path(tempfile.mkdtemp(prefix="bench_followup_"))
    case = write_imaging_followup(tmp / "phantom", "locally_recurring", seed=1)
    base = load_baseline(case)
    tp = load_timepoints(case)[0]
    for mode in ("rigid", "affine"):
        for metric in ("mean_squares", "mattes_mi"):
            s, r = _t(lambda mode=mode, metric=metric: register(base.image, tp.image, mode=mode, metric=metric))
            rows.append((f"register {mode}/{metric}", f"phantom {base.image.shape} @3 mm", s, f"iters {r.iterations}"))
    n = 128
    aff = np.diag([1.0, 1.0, 1.0, 1.0])
    vol = Volume(np.zeros((n, n, n), bool), aff)
    xyz = vol.grid_mm()
    t = np.linalg.norm(xyz - 64, axis=-1) <= 15
    z = np.linalg.norm(xyz - 66, axis=-1) <= 22
    s, mc = _t(lambda: margin_check("lesion_1", vol.with_array(t), vol.with_array(z)))
    rows.append(("margin check", f"{n}³ @1 mm, R=15/22 mm", s, f"min margin {mc.margin.min_margin_mm:.1f} mm"))
    s, cz = _t(lambda: compare_zones(vol.with_array(z), vol.with_array(np.roll(z, 3, axis=0))))
    rows.append(("predicted vs observed", f"{n}³ @1 mm, 3 mm shift", s, f"Dice {cz.dice:.3f}, HD95 {cz.hd95_mm:.1f} mm"))
    s, _ = _t(lambda: analyse_followup(case, mode="affine", save_transforms=False))
    rows.append(("analyse_followup (3 timepoints)", "phantom @3 mm, affine/MI", s, ""))
    if not quick:
        s, fig2 = _t(lambda: build_fig2_followup(tmp / "fig2", voxel_mm=3.0))
        rows.append(("build_fig2_followup", "demo @3 mm", s, ""))
        s, a = _t(lambda: analyse_followup(fig2, mode="affine", save_transforms=False))
        rows.append(("analyse_followup fig2", f"{load_baseline(fig2).image.shape} @3 mm, affine/MI", s,
                     f"TRE max {a.timepoints[0].registration.max_tre_mm:.2f} mm"))
    for npat in (100, 1000):
        generate_cohort(tmp / f"coh{npat}", SyntheticCohortSpec(n_patients=npat, seed=1))
        s, summ = _t(lambda npat=npat: run_outcomes(tmp / f"coh{npat}", tmp / f"out{npat}"))
        rows.append(("run_outcomes (KM+Cox+PNG+CSV)", f"{npat} patients / {summ['lesions']} lesions", s, ""))
    w = max(len(r[0]) for r in rows)
    w2 = max(len(r[1]) for r in rows)
    print(f"{'step':<{w}}  {'size':<{w2}}  {'seconds':>8}  note")
    for name, size, sec, note in rows:
        print(f"{name:<{w}}  {size:<{w2}}  {sec:8.2f}  {note}")


if __name__ == "__main__":
    main()
