"""Compile every numba kernel family of ``latplan.physics`` once, into numba's on-disk cache.

Every kernel is ``cache=True`` (``inline="always"`` helpers are compiled into their callers), so a
kernel is compiled once per install and loaded from the cache afterwards (≈ 0.1 s instead of tens of
seconds). The cache is written only when a compile *finishes*: processes started together with a cold
cache (the pipeline's worker pool, ``latplan demo``) would each compile the same kernels concurrently.
:func:`warm_kernels` runs a tiny problem per family through the public API (same argument types as
the planners), so a parent that calls it before starting a pool leaves its children only cache loads
(``python -m latplan.physics.warmup`` does it from a shell). Measured (round 2 session 3, load 3–6 on 2
cores, cold cache, 2 workers): warming before the pool did NOT pay — one plan 65.6 s with vs 60.7 s
without, two demo cases 93.6 vs 89.4 s — because workers rarely need the same kernel at the same time
(the first to finish writes the cache, the other loads it), so the pipeline does not call it by default.

Where the cache goes (numba's own rules): ``NUMBA_CACHE_DIR`` when set; else ``__pycache__`` next to
the module when that is writable (a checkout, an editable or a user-writable install); else numba's
user-wide cache directory (``~/.cache/numba`` on Linux) — so a read-only site-packages still caches.
Set ``NUMBA_CACHE_DIR`` for a shared or read-only home (containers).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from numba.core.caching import NullCache
from numba.core.registry import CPUDispatcher

from latplan.physics import bioheat as bh
from latplan.physics import electroporation as ep
from latplan.physics import tg43
from latplan.physics.bioheat import cryo_kernels, kernels, rfa

__all__ = ["FAMILIES", "cache_is_cold", "warm_kernels"]


def _tg43() -> None:
    src = tg43.default_source().with_catheter_clamp(0.1)
    pts = np.array([[0.0, 5.0, 0.0], [3.0, 0.0, 10.0]])
    pos = np.array([[0.0, 0.0, 0.0], [0.0, 0.0, 2.5]])
    axis = np.array([0.0, 0.0, 1.0])
    for method in ("direct", "lookup"):
        tg43.dose_matrix_gy_per_s(pts, pos, axis, 40000.0, src, method=method)
        tg43.dose_gy(pts, pos, axis, np.array([1.0, 2.0]), 40000.0, src, method=method)


def _electroporation() -> None:
    liver = ep.default_electro_tissues()["liver"]
    n, h = 13, 2.0
    for dtype in (np.uint8, np.int64):
        needles = ep.parallel_pair((12.0, 12.0, 12.0), (1.0, 0.0, 0.0), 8.0, active_length_mm=6.0)
        ep.solve_field(np.zeros((n, n, n), dtype), [liver], (h, h, h), needles, voltages_v=1000.0,
                       conductivity_model="linear", max_iterations=2)


def _heating() -> None:
    liver = bh.default_tissues()["liver"]
    n, h = 11, 2.0
    lab = np.zeros((n, n, n), np.uint8)
    q = np.zeros((n, n, n), np.float32)
    q[n // 2, n // 2, n // 2] = 1.0 / (h * 1e-3) ** 3
    bh.simulate_heating(lab, [liver], (h, h, h), 20.0, source_w_m3_per_w=q, power_w=1.0)
    big = round(kernels.SERIAL_BELOW_VOXELS ** (1 / 3)) + 1  # a box above the serial limit: the threaded kernel
    qb = np.zeros((big, big, big), np.float32)
    qb[big // 2, big // 2, big // 2] = 1.0 / (h * 1e-3) ** 3
    bh.simulate_heating(np.zeros((big, big, big), np.uint8), [liver], (h, h, h), 5.0, source_w_m3_per_w=qb,
                        power_w=1.0)
    n = 25  # the Cool-tip's 3 cm active tip must lie inside the box
    c = (n // 2) * h
    rfa.simulate_rfa(np.zeros((n, n, n), np.uint8), [liver], (h, h, h), 20.0,
                     rfa.electrode_needle((c + 15.0, c, c), (1.0, 0.0, 0.0)))


def _cryo() -> None:
    liver = bh.default_tissues()["liver"]
    n, h = 11, 2.0
    lab = np.zeros((n, n, n), np.uint8)
    c = (n // 2) * h
    probe = ep.needle_mask(lab.shape, (h, h, h), ep.Needle((c + 4.0, c, c), (1.0, 0.0, 0.0), 8.0, 1.0))
    bh.simulate_cryo(lab, [liver], (h, h, h), probe, (bh.CryoPhase("freeze", 30.0), bh.CryoPhase("thaw", 30.0)))


#: the kernel families, longest cold compile first (seconds at load 7 on 2 cores: tg43 25, heating 13,
#: cryo 13, electroporation 8), so a pool that compiles one family per worker finishes them together
FAMILIES: dict[str, Callable[[], None]] = {
    "tg43": _tg43, "heating": _heating, "cryo": _cryo, "electroporation": _electroporation,
}


def warm_kernels(families: tuple[str, ...] | None = None) -> dict[str, float]:
    """Compile (cold cache) or load (warm cache) the kernels of each family; returns seconds per family."""
    took: dict[str, float] = {}
    for name in families or tuple(FAMILIES):
        t0 = time.perf_counter()
        FAMILIES[name]()
        took[name] = time.perf_counter() - t0
    return took


def _cached_kernels() -> list[Any]:
    return [obj for module in (tg43, ep, kernels, cryo_kernels, rfa) for obj in vars(module).values()
            if isinstance(obj, CPUDispatcher) and not isinstance(getattr(obj, "_cache", NullCache()), NullCache)
            and obj.targetoptions.get("inline") != "always"]  # inlined helpers are cached in their callers


def cache_is_cold() -> bool:
    """True when some ``cache=True`` kernel has nothing in numba's on-disk cache for its current
    source (a new install or checkout path, an edited module): then :func:`warm_kernels` is worth its
    compile. Reads numba's cache index (≈ ms); any doubt (another numba's internals) counts as cold."""
    try:
        return any(not k._cache._cache_file._load_index() for k in _cached_kernels())
    except (AttributeError, OSError):
        return True


def main(argv: list[str]) -> int:
    """``python -m latplan.physics.warmup [FAMILY ...]``: fill numba's cache once (CI, after install); the
    families named (default: all), so two processes can compile disjoint families on two cores."""
    unknown = [name for name in argv if name not in FAMILIES]
    if unknown:
        print(f"error: unknown kernel family {', '.join(unknown)}; choose from {', '.join(FAMILIES)}.",
              file=sys.stderr)
        return 2
    print({name: round(s, 1) for name, s in warm_kernels(tuple(argv) or None).items()})
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
