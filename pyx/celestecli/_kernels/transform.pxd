cdef void enforce_bounds(const double* pos_center, double* bound) noexcept nogil
cdef void to_free(const double* bound, const double* pos_center, double* free) noexcept nogil
cdef void to_bound(const double* free, const double* pos_center, double* bound) noexcept nogil
cdef void free_derivatives(const double* free, const double* pos_center, const double* g_bound,
                           const double* h_bound, double* g_free, double* h_free,
                           double* jt) noexcept nogil
