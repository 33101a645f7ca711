"""Worker processes of the pipeline (``latplan.pipeline.workers.init_worker``).

Reference: numba's own rule (numba.core.config: "Cannot set NUMBA_NUM_THREADS to a different value once
the threads have been launched") — a spawned worker that changes ``NUMBA_NUM_THREADS`` after numba was
imported cannot compile any new function. `latplan plan --workers 2` failed this way on its first
uncached kernel; here a worker compiles a function no cache holds and must run it with one thread.
"""

from __future__ import annotations

import ast
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pytest

from latplan.physics.warmup import cache_is_cold
from latplan.pipeline.workers import (
    CHILD_THREAD_ENV,
    init_worker,
    single_threaded_children,
    warm_kernel_cache,
)


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


@pytest.mark.slow  # end-to-end: a spawned process compiles numba kernels (≈ 5 s)
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


# --- numba's on-disk cache: each kernel compiled once per install ------------------------------------
_SRC = Path(__file__).resolve().parents[2] / "src" / "latplan"


def _njit_calls(tree: ast.AST) -> list[ast.expr]:
    """Every ``njit``/``jit`` use: a bare decorator (``@nb.njit``) or a call (``nb.njit(...)``)."""
    def named(node: ast.expr) -> bool:
        return (isinstance(node, ast.Name) and node.id in {"njit", "jit"}) or \
            (isinstance(node, ast.Attribute) and node.attr in {"njit", "jit"})
    found: list[ast.expr] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and named(node.func):
            found.append(node)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            found.extend(d for d in node.decorator_list if named(d))  # bare, no arguments
    return found


def _keyword(call: ast.expr, name: str) -> object:
    if not isinstance(call, ast.Call):
        return None
    for kw in call.keywords:
        if kw.arg == name and isinstance(kw.value, ast.Constant):
            return kw.value.value
    return None


def test_every_numba_kernel_is_cached() -> None:
    """Reference: numba's caching rule (a kernel without ``cache=True`` is compiled again in every new
    process, tens of seconds each). Every ``njit`` in src is ``cache=True``, except ``inline="always"``
    helpers, which numba compiles into (and caches with) their callers. Found by an ``ast`` walk, as the
    architecture test does."""
    uncached, seen = [], 0
    for path in sorted(_SRC.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for call in _njit_calls(tree):
            seen += 1
            if _keyword(call, "inline") == "always":
                continue
            if _keyword(call, "cache") is not True:
                uncached.append(f"{path.relative_to(_SRC)}:{call.lineno}")
    assert seen >= 20, f"only {seen} numba kernels found: has the walk stopped seeing them?"
    assert not uncached, f"numba kernels without cache=True (compiled again in every process): {uncached}"


def _cache_misses_after_warm_up(families: tuple[str, ...]) -> tuple[int, int, bool]:
    """In a fresh worker: the families' kernels run; (compiles, cache loads) over physics' dispatchers."""
    from numba.core.registry import CPUDispatcher

    from latplan.physics import electroporation, tg43
    from latplan.physics.bioheat import cryo_kernels, kernels, rfa
    from latplan.physics.warmup import cache_is_cold, warm_kernels

    cold = cache_is_cold()
    warm_kernels(families)
    misses = hits = 0
    for module in (tg43, electroporation, kernels, cryo_kernels, rfa):
        for obj in vars(module).values():
            if isinstance(obj, CPUDispatcher) and obj._cache.__class__.__name__ != "NullCache":
                misses += sum(obj.stats.cache_misses.values())
                hits += sum(obj.stats.cache_hits.values())
    return misses, hits, cold


@pytest.mark.slow
def test_warm_kernel_cache_leaves_later_workers_nothing_to_compile(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Reference: numba's own cache statistics (``Dispatcher.stats``: a miss is a compile). With an
    empty cache directory, :func:`warm_kernel_cache` compiles the families once (one per worker); a
    fresh worker running the same kernels afterwards compiles nothing and loads them from the cache.
    Two families (the two cheapest to compile) keep the test short; `warm_kernels()` covers four (opt-in)."""
    families = ("cryo", "electroporation")
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path))  # spawned children start from this env: cold
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(2, mp_context=ctx, initializer=init_worker) as pool:
        assert pool.submit(cache_is_cold).result(), "an empty NUMBA_CACHE_DIR should read as cold"
        took = warm_kernel_cache(pool, families, only_if_cold=False)  # this process's cache dir is not tmp
    assert set(took) == set(families) and all(t > 0 for t in took.values())
    assert list(tmp_path.rglob("*.nbi")), "the warm-up wrote no numba cache index"
    with ProcessPoolExecutor(1, mp_context=ctx, initializer=init_worker) as pool:
        misses, hits, cold = pool.submit(_cache_misses_after_warm_up, families).result()
    assert cold is (set(families) != {"tg43", "heating", "cryo", "electroporation"})  # two families: still cold
    assert misses == 0, f"{misses} kernels compiled again after the warm-up"
    assert hits > 0
