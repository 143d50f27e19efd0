# OpenMP shim: every kernel cimports OpenMP functions from here, so the kernels compile
# with or without OpenMP (the build defines CELESTE_OPENMP to 0 or 1).
cdef extern from *:
    """
    #if CELESTE_OPENMP && defined(_OPENMP)
    #include <omp.h>
    #define CELESTE_OPENMP_ENABLED 1
    #else
    #define CELESTE_OPENMP_ENABLED 0
    static inline int omp_get_max_threads(void) { return 1; }
    static inline int omp_get_thread_num(void) { return 0; }
    static inline int omp_get_num_procs(void) { return 1; }
    #endif
    """
    bint CELESTE_OPENMP_ENABLED
    int omp_get_max_threads() noexcept nogil
    int omp_get_thread_num() noexcept nogil
    int omp_get_num_procs() noexcept nogil
