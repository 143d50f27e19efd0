"""How many worker processes and threads per worker a run gets (workers x threads <= cores)."""

import logging
import os

from celestecli._kernels.openmp_info import openmp_enabled
from celestecli.threads import available_cores, effective_threads

log = logging.getLogger(__name__)


def plan_workers(jobs: int, threads: int | None, n_fields: int,
                 cores: int | None = None) -> tuple[int, int]:
    """(workers, threads per worker) for ``-j jobs --threads threads`` over ``n_fields``.

    No more workers than fields or cores; threads default to OMP_NUM_THREADS, else the cores
    divided among the workers.  A request for more than the cores is clamped with a warning.
    """
    cores = available_cores() if cores is None else cores
    workers = max(1, min(jobs, n_fields))
    if workers > cores:
        log.warning("-j %d: only %d cores available; using %d workers", workers, cores, cores)
        workers = cores
    if threads is None and not os.environ.get("OMP_NUM_THREADS") and openmp_enabled():
        per_worker = max(1, cores // workers)
    else:
        per_worker = effective_threads(threads, workers)
    if workers * per_worker > cores:
        clamped = max(1, cores // workers)
        log.warning("%d workers x %d threads exceeds the %d available cores; using %d "
                    "thread%s per worker", workers, per_worker, cores, clamped,
                    "" if clamped == 1 else "s")
        per_worker = clamped
    if workers > 1 and per_worker > 1 and (os.environ.get("OMP_PLACES")
                                           or os.environ.get("OMP_PROC_BIND")):
        log.warning("OMP_PLACES/OMP_PROC_BIND bind the threads of every worker to the same "
                    "places; unset them when running several workers")
    return workers, per_worker
