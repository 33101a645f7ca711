"""Worker processes of the pipeline: one numba / BLAS thread each when several run at once.

A 2-thread bioheat kernel was measured 2.3× slower than 1 thread on a busy machine (issue [H]):
parallelism comes from processes (lesions × modalities, demo cases), not from threads inside one.
OpenBLAS's threads spin-wait for descheduled peers on a loaded machine (a norm of 35 k floats: 24.6 ms
with its default threads, 0.005 ms with one — measured by helper A, round 2 session 3).

Thread counts of OpenBLAS/OpenMP/MKL are read from the environment when numpy is imported, i.e. in
a spawned child before any initializer runs: :func:`single_threaded_children` sets them in the
parent's environment while a pool starts its children (restored afterwards); :func:`init_worker`
sets numba's run-time thread count in each child.

Numba compiles a kernel once per install into its on-disk cache, but writes the cache only when the
compile finishes: with a cold cache (the first run after ``pip install``, a new checkout path) every
worker would compile the same kernels at the same time. :func:`warm_kernel_cache` compiles each kernel
family once, one family per worker, before any job starts (:mod:`latplan.physics.warmup`; the pools
here do not call it: measured, it did not pay with 2 workers — see that module).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from concurrent.futures import Executor
from contextlib import contextmanager

from latplan.modalities.worker import one_thread
from latplan.physics.warmup import FAMILIES, cache_is_cold, warm_kernels

__all__ = ["CHILD_THREAD_ENV", "init_worker", "single_threaded_children", "warm_kernel_cache"]

#: the environment of a worker process: one thread for every BLAS/OpenMP library it loads. Not
#: NUMBA_NUM_THREADS: numba re-reads its environment when it compiles, and a changed value in a process
#: whose numba threads run (this parent, or another thread of it compiling meanwhile) makes it refuse
#: to compile; the workers use numba.set_num_threads(1) instead (:func:`init_worker`)
CHILD_THREAD_ENV = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}

_LOCK = threading.Lock()
_ACTIVE = [0]
_SAVED: dict[str, str | None] = {}


@contextmanager
def single_threaded_children() -> Iterator[None]:
    """While active, processes started from this one get :data:`CHILD_THREAD_ENV` (spawned children
    copy ``os.environ`` when they start; ProcessPoolExecutor starts them on demand, so keep this
    active for the pool's whole ``with`` block). Nested and concurrent uses share one saved state;
    the last one to leave restores the environment. The current process's own thread pools are not
    changed (they were sized at import)."""
    with _LOCK:
        if _ACTIVE[0] == 0:
            _SAVED.clear()
            for var, value in CHILD_THREAD_ENV.items():
                _SAVED[var] = os.environ.get(var)
                os.environ[var] = value
        _ACTIVE[0] += 1
    try:
        yield
    finally:
        with _LOCK:
            _ACTIVE[0] -= 1
            if _ACTIVE[0] == 0:
                for var, old in _SAVED.items():
                    if old is None:
                        os.environ.pop(var, None)
                    else:
                        os.environ[var] = old


def init_worker() -> None:
    """ProcessPoolExecutor initializer: one numba / BLAS thread in this process
    (:func:`latplan.modalities.worker.one_thread`)."""
    one_thread()


def _warm_family(name: str) -> float:
    return warm_kernels((name,))[name]


def warm_kernel_cache(pool: Executor, families: tuple[str, ...] | None = None, *,
                      only_if_cold: bool = True) -> dict[str, float]:
    """Compile (cold cache) or load each numba kernel family once, one family per worker of ``pool``,
    and wait for all: afterwards the on-disk cache holds every kernel, so the jobs load, never compile.
    Call it right after the pool starts, before submitting jobs. Returns seconds per family (tens of
    seconds each cold); {} without running anything when ``only_if_cold`` and every kernel is already
    in this process's view of the cache (:func:`~latplan.physics.warmup.cache_is_cold`, ≈ ms)."""
    if only_if_cold and not cache_is_cold():
        return {}
    names = list(families or FAMILIES)  # longest compile first (physics.warmup orders them so)
    return dict(zip(names, pool.map(_warm_family, names), strict=True))
