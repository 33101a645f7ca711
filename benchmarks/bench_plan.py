"""Benchmark: plan_case of a 5-lesion phantom case with all simulations (goal < 2 min on 2 cores).

Run: .venv/bin/python benchmarks/bench_plan.py [--rules-only]
Prints the time per stage and per modality (summed over lesions), from plan.json's timings_s.
"""

from __future__ import annotations

import sys
import time

from rich.console import Console
from rich.table import Table


def main() -> int:
    simulate = "--rules-only" not in sys.argv
    try:
        from latplan.phantom.demo import build_demo_case, demo_cases
    except ImportError as exc:
        print(f"phantom not available: {exc}")
        return 1
    names = demo_cases()
    name = next((n for n in names if "five" in n or "5-lesion" in n), None) or \
        next((n for n in names if "four" in n), None)
    if name is None:
        print(f"no multi-lesion demo case available yet (demo_cases() = {names}).")
        return 1
    from latplan.board import plan_case

    t0 = time.perf_counter()
    case = build_demo_case(name)
    t_build = time.perf_counter() - t0
    prop = plan_case(case, simulate=simulate, progress=lambda m: print("  ", m, flush=True))
    timings = prop.plan_json["timings_s"]
    table = Table(title=f"plan_case on {name} ({len(case.lesion_ids)} lesions, simulate={simulate})")
    table.add_column("stage / modality")
    table.add_column("seconds", justify="right")
    table.add_row("build phantom", f"{t_build:.2f}")
    for k, v in sorted(timings.items(), key=lambda kv: -kv[1]):
        table.add_row(k, f"{v:.2f}")
    Console().print(table)
    total = timings.get("total", 0.0)
    print(f"goal < 120 s: {'met' if total < 120 else 'NOT met'} ({total:.1f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
