"""celeste: Bayesian variational inference of astronomical catalogs from SDSS images."""

import os
from importlib.metadata import PackageNotFoundError, version

# The CPUs this process may run on, read before any OpenMP runtime is loaded: with OMP_PLACES or
# OMP_PROC_BIND set, GNU OpenMP pins the initial thread to the first place as it loads, and
# sched_getaffinity reports only that place afterwards (celestecli.threads uses this).
try:
    STARTUP_CPUS: frozenset[int] | None = frozenset(os.sched_getaffinity(0))
except AttributeError:  # not Linux
    STARTUP_CPUS = None

try:
    __version__ = version("celestecli")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.1.0+unknown"

__all__ = ["__version__"]
