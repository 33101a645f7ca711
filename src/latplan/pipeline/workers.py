"""Worker processes of the pipeline: one numba thread each when several run at once.

A 2-thread bioheat kernel was measured 2.3× slower than 1 thread on a busy machine (issue [H]):
parallelism comes from processes (lesions × modalities, demo cases), not from threads inside one.
"""

from __future__ import annotations

import os

import numba

__all__ = ["init_worker"]


def init_worker() -> None:
    """ProcessPoolExecutor initializer: one numba / BLAS thread in this process."""
    for var in ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = "1"
    numba.set_num_threads(1)
