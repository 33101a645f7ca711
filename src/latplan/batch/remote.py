"""Run one planning job on a Dask cluster and relay its progress (issue [O] part 4, for the web app).

``run_on_dask(scheduler, planner, case_dir, out_dir, progress)`` runs ``planner(case_dir, out_dir,
progress)`` — the web app's planner signature, ``progress(fraction, message)`` — on a worker of the
cluster at ``scheduler`` and blocks until it has finished, calling the local ``progress`` with every
update the remote planner sends (through a Dask ``Queue`` named after the task). The job's lease
stays with its caller: when the local ``progress`` raises (e.g. the lease was lost), the remote task
is cancelled and the exception propagates; the caller publishes ``out_dir`` only after a normal
return, so a job whose lease was taken writes nothing. ``out_dir`` must be on a file system the
workers share, at the same path. ``planner`` must be a picklable module-level function.
"""

from __future__ import annotations

import queue
import uuid
from collections.abc import Callable
from pathlib import Path

from distributed import Client, Queue, TimeoutError, get_client

__all__ = ["FractionProgress", "WebPlanner", "run_on_dask"]

#: the web app's progress callback: (fraction 0–1, message)
FractionProgress = Callable[[float, str], None]
#: the web app's planner: writes plan.json (and more) into out_dir
WebPlanner = Callable[[Path, Path, FractionProgress], None]

POLL_S = 0.5


def _remote(planner: WebPlanner, case_dir: Path, out_dir: Path, queue_name: str) -> None:
    updates = Queue(queue_name, client=get_client())

    def relay(fraction: float, message: str) -> None:
        updates.put((float(fraction), str(message)))

    planner(case_dir, out_dir, relay)


def _drain(updates: Queue, progress: FractionProgress) -> None:
    while True:
        try:
            fraction, message = updates.get(timeout=0.01)
        except (TimeoutError, queue.Empty):
            return
        progress(fraction, message)


def run_on_dask(scheduler: str, planner: WebPlanner, case_dir: Path, out_dir: Path,
                progress: FractionProgress) -> None:
    """Run ``planner`` on the Dask cluster at ``scheduler``; see the module docstring."""
    name = f"latplan-job-{uuid.uuid4().hex}"
    with Client(scheduler, timeout="20s") as client:
        updates = Queue(name, client=client)
        future = client.submit(_remote, planner, Path(case_dir), Path(out_dir), name, key=name, pure=False)
        try:
            while not future.done():
                _drain(updates, progress)
                try:
                    future.result(timeout=POLL_S)
                except TimeoutError:
                    continue
            _drain(updates, progress)
            future.result()
        except BaseException:
            future.cancel()
            raise
