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
    # NUMBA_NUM_THREADS is left alone: numba read it at import (before this initializer runs in a spawned
    # process), and changing it afterwards makes numba refuse to compile ("Cannot set NUMBA_NUM_THREADS to a
    # different value once the threads have been launched"); set_num_threads is numba's run-time switch.
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = "1"
    numba.set_num_threads(1)
