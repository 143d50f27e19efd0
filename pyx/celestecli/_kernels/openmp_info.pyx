"""Report how the kernels were built: OpenMP on or off, and the threads it offers."""

from celestecli._kernels._openmp cimport CELESTE_OPENMP_ENABLED, omp_get_max_threads


def openmp_enabled():
    """True when the kernels were compiled with OpenMP."""
    return bool(CELESTE_OPENMP_ENABLED)


def max_threads():
    """omp_get_max_threads() (1 for a serial build)."""
    return omp_get_max_threads()
