"""Worker processes of the pipeline (``latplan.pipeline.workers.init_worker``).

Reference: numba's own rule (numba.core.config: "Cannot set NUMBA_NUM_THREADS to a different value once
the threads have been launched") — a spawned worker that changes ``NUMBA_NUM_THREADS`` after numba was
imported cannot compile any new function. `latplan plan --workers 2` failed this way on its first
uncached kernel; here a worker compiles a function no cache holds and must run it with one thread.
"""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor

from latplan.pipeline.workers import CHILD_THREAD_ENV, init_worker, single_threaded_children


def _compile_fresh_kernel(n: int) -> tuple[int, int]:
    import numba
    import numpy as np

    @numba.njit(parallel=True)
    def total(a: np.ndarray) -> int:
        s = 0
        for i in numba.prange(a.shape[0]):
            s += a[i]
        return s

    return int(total(np.arange(n))), int(numba.get_num_threads())


def test_spawned_worker_compiles_new_kernels_with_one_thread() -> None:
    with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn"), initializer=init_worker) as pool:
        results = list(pool.map(_compile_fresh_kernel, [10, 100]))
    assert results == [(45, 1), (4950, 1)]  # Σ 0..n−1 = n(n−1)/2, one numba thread per worker


def _thread_env(_: int) -> dict[str, str | None]:
    import os

    return {var: os.environ.get(var) for var in CHILD_THREAD_ENV}


def test_children_start_with_one_blas_thread_and_the_parent_env_is_restored(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """OpenBLAS sizes its thread pool from the environment when numpy is imported — in a spawned child
    before any initializer runs — so the child must start with it (no initializer here). Reference: the
    environment the child sees at its start; the parent's own value before the block."""
    import os

    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "7")
    monkeypatch.delenv("MKL_NUM_THREADS", raising=False)
    with single_threaded_children(), ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        seen = pool.submit(_thread_env, 0).result()
    assert seen == CHILD_THREAD_ENV
    assert os.environ["OPENBLAS_NUM_THREADS"] == "7" and "MKL_NUM_THREADS" not in os.environ
