"""How many OpenMP threads a kernel gets: one number per process, passed to every kernel."""

import os

from celestecli import STARTUP_CPUS
from celestecli._kernels.openmp_info import max_threads, openmp_enabled


def available_cores() -> int:
    """CPU cores this process may run on (respects affinity masks and cgroups' cpusets).

    The mask is the one the process started with (see ``celestecli.STARTUP_CPUS``), not the
    current one, which an OpenMP runtime honouring OMP_PLACES may have narrowed.
    """
    if STARTUP_CPUS is not None:
        return len(STARTUP_CPUS)
    return os.cpu_count() or 1


def effective_threads(requested: int | None = None, workers: int = 1) -> int:
    """Threads for kernels: ``--threads`` if given, else OMP_NUM_THREADS, else cores / workers.

    Always 1 in a serial (no-OpenMP) build.
    """
    if not openmp_enabled():
        return 1
    if requested is not None:
        if requested < 1:
            raise ValueError(f"thread count must be >= 1, got {requested}")
        return requested
    if os.environ.get("OMP_NUM_THREADS"):
        return max(1, max_threads())
    return max(1, available_cores() // max(1, workers))
