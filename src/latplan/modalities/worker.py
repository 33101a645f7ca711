"""A simulation worker process of the pipeline's pool: the case's geometry set once, then jobs.

Kept out of :mod:`latplan.pipeline` on purpose: a spawned worker imports the module of its
initializer and job functions, and importing anything under ``latplan.pipeline`` runs that
package's ``__init__`` (the demos, reports, exports, follow-up: 2.2 s of imports measured on the
shared 2-core machine, round 2 session 4). From here a worker imports what a simulation needs
(the planners, the anatomy: 0.6 s) — the pool's start-up before the first job.
"""

from __future__ import annotations

import os
from collections.abc import Hashable, Mapping
from typing import Any

import numba

from latplan.anatomy.geometry import CaseGeometry
from latplan.case import Case
from latplan.errors import LatplanError
from latplan.modalities.registry import MODALITIES
from latplan.modalities.simulate import SimulationJob, SimulationResult, simulate_job

__all__ = ["init_simulation_worker", "one_thread", "shared_in_worker", "shared_work", "simulate_in_worker"]

#: the geometry (with its case) of this worker process, set once by its initializer
_GEOMETRY: list[CaseGeometry] = []


def one_thread() -> None:
    """One numba / BLAS thread in this process (see :mod:`latplan.pipeline.workers`)."""
    # NUMBA_NUM_THREADS is left alone: numba read it at import (before an initializer runs in a
    # spawned process), and changing it afterwards makes numba refuse to compile ("Cannot set
    # NUMBA_NUM_THREADS to a different value once the threads have been launched"); set_num_threads
    # is numba's run-time switch.
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = "1"
    numba.set_num_threads(1)


def init_simulation_worker(geometry: CaseGeometry) -> None:
    """ProcessPoolExecutor initializer: one thread, and the case's ``geometry`` (it travels with its
    case and the maps the parent computed: CaseGeometry pickles them)."""
    one_thread()
    _GEOMETRY[:] = [geometry]


def shared_work(modality: str, case: Case, lesion_id: str, geometry: CaseGeometry) -> dict[Hashable, Any]:
    """What the planners of ``modality`` share per lesion (e.g. the trajectory), computed once onto
    ``geometry`` (:meth:`CaseGeometry.memo`); {} when its spec has none."""
    spec = MODALITIES.get(modality)
    if spec is None or spec.shared is None:
        return {}
    return dict(spec.shared(case, lesion_id, geometry))


def shared_in_worker(modality: str, lesion_id: str) -> dict[Hashable, Any]:
    """The shared per-lesion work of ``modality``'s planner (its spec's ``shared``), in a worker. An
    error gives nothing to share: each planner then meets it itself and its result says why (as in
    one process), instead of the whole run failing here."""
    geometry = _GEOMETRY[0]
    try:
        return shared_work(modality, geometry.case, lesion_id, geometry)
    except (LatplanError, TypeError, ValueError):
        return {}


def simulate_in_worker(job: SimulationJob, shared: Mapping[Hashable, Any]) -> SimulationResult:
    """Run ``job`` on this worker's case, with its lesion's shared work (computed once, in any worker)."""
    geometry = _GEOMETRY[0]
    geometry.remember(shared)
    return simulate_job(job, geometry.case, geometry)
