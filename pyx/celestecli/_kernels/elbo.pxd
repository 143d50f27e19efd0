from celestecli._kernels.problem cimport Problem, SourceWork

cdef enum:
    MODE_VALUE = 0
    MODE_GRAD = 1
    MODE_HESS = 2

cdef enum ElboStatus:
    ELBO_OK = 0
    ELBO_NO_MEMORY = 1
    ELBO_NONPOSITIVE_RATE = 2
    ELBO_NONFINITE = 3
    ELBO_NONPOSITIVE_SKY = 4

cdef int source_work_init(const Problem* pd, long s, SourceWork* w, int n_threads) noexcept nogil
cdef void source_work_free(SourceWork* w) noexcept nogil
cdef int elbo_eval(const Problem* pd, long s, const double* th, SourceWork* w, int mode,
                   double* value, double* grad, double* hess, int n_threads) noexcept nogil
cdef double kl_eval(const Problem* pd, const double* th, int mode,
                    double* grad, double* hess) noexcept nogil
