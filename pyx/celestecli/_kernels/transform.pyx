"""Constrained <-> free parameterisation of one source, with the Hessian chain rule (MODEL.md 4.9).

Free vector (41): the 26 box-constrained entries (bound indices 0..25, logistic transform),
then the simplexes chi (1 free), kappa_star (7 free), kappa_gal (7 free): softmax with the
last entry pinned at 0, rescaled above a lower bound.  Positions are boxed around the
source's position centre (+- POS_HALF_WIDTH_DEG).
"""

from libc.math cimport exp, log, fabs, nextafter, INFINITY
from libc.string cimport memset

import numpy as np

from celestecli._kernels.problem cimport NP, NF

cdef double POS_HALF_WIDTH = 1e-4
cdef double CHI_LOWER = 0.005
cdef double KAPPA_LOWER = 0.01 / 8.0
# box bounds of bound entries 2..25 (params.py BOX_LOWER / BOX_UPPER)
cdef double[24] BOX_LO = [0.01, 0.01, -10.0, 0.1, -1.0, -1.0, 1e-4, 1e-4,
                          -10.0, -10.0, -10.0, -10.0, -10.0, -10.0, -10.0, -10.0,
                          1e-4, 1e-4, 1e-4, 1e-4, 1e-4, 1e-4, 1e-4, 1e-4]
cdef double[24] BOX_HI = [0.99, 0.99, 10.0, 70.0, 10.0, 10.0, 0.1, 0.1,
                          10.0, 10.0, 10.0, 10.0, 10.0, 10.0, 10.0, 10.0,
                          1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0]

# simplexes: (first bound index, size, first free index, lower bound)
cdef int[3] SIMPLEX_BOUND = [26, 28, 36]
cdef int[3] SIMPLEX_SIZE = [2, 8, 8]
cdef int[3] SIMPLEX_FREE = [26, 27, 34]


cdef inline void box_limits(int p, const double* pos_center, double* lo, double* hi) noexcept nogil:
    if p < 2:
        lo[0] = pos_center[p] - POS_HALF_WIDTH
        hi[0] = pos_center[p] + POS_HALF_WIDTH
    else:
        lo[0] = BOX_LO[p - 2]
        hi[0] = BOX_HI[p - 2]


cdef inline double simplex_lower(int k) noexcept nogil:
    return CHI_LOWER if k == 0 else KAPPA_LOWER


cdef inline double sigmoid(double f) noexcept nogil:
    if f >= 0:
        return 1.0 / (1.0 + exp(-f))
    cdef double e = exp(f)
    return e / (1.0 + e)


cdef void enforce_bounds(const double* pos_center, double* bound) noexcept nogil:
    """Move every entry strictly inside its box; renormalise simplexes above their floors."""
    cdef int p, k, i, n, b0
    cdef double lo, hi, lb, total
    for p in range(26):
        box_limits(p, pos_center, &lo, &hi)
        if not bound[p] > lo:
            bound[p] = nextafter(lo, INFINITY)
        if not bound[p] < hi:
            bound[p] = nextafter(hi, -INFINITY)
    for k in range(3):
        b0 = SIMPLEX_BOUND[k]
        n = SIMPLEX_SIZE[k]
        lb = simplex_lower(k)
        total = 0.0
        for i in range(n):
            if not bound[b0 + i] > lb:
                bound[b0 + i] = nextafter(lb, INFINITY)
            total += bound[b0 + i]
        if fabs(total - 1.0) > 1e-12:
            for i in range(n):
                bound[b0 + i] = lb + (1.0 - n * lb) * (bound[b0 + i] - lb) / (total - n * lb)
                # an entry just above lb can round onto it, where the free coordinate is -inf
                if not bound[b0 + i] > lb:
                    bound[b0 + i] = nextafter(lb, INFINITY)


cdef void to_free(const double* bound, const double* pos_center, double* free) noexcept nogil:
    """Free coordinates of (already enforced) bound parameters."""
    cdef int p, k, i, n, b0, f0
    cdef double lo, hi, t, lb, last
    for p in range(26):
        box_limits(p, pos_center, &lo, &hi)
        t = (bound[p] - lo) / (hi - lo)
        free[p] = log(t) - log(1.0 - t)
    for k in range(3):
        b0 = SIMPLEX_BOUND[k]
        f0 = SIMPLEX_FREE[k]
        n = SIMPLEX_SIZE[k]
        lb = simplex_lower(k)
        last = log(bound[b0 + n - 1] - lb)
        for i in range(n - 1):
            free[f0 + i] = log(bound[b0 + i] - lb) - last


cdef inline void simplex_z(const double* f, int n, double* z) noexcept nogil:
    """softmax(f_0, .., f_{n-2}, 0), stabilised by subtracting max(f, 0)."""
    cdef double m = 0.0, total = 0.0
    cdef int i
    for i in range(n - 1):
        if f[i] > m:
            m = f[i]
    for i in range(n - 1):
        z[i] = exp(f[i] - m)
        total += z[i]
    z[n - 1] = exp(-m)
    total += z[n - 1]
    for i in range(n):
        z[i] /= total


cdef void to_bound(const double* free, const double* pos_center, double* bound) noexcept nogil:
    """Bound parameters of free coordinates."""
    cdef int p, k, i, n
    cdef double lo, hi, lb
    cdef double z[8]
    for p in range(26):
        box_limits(p, pos_center, &lo, &hi)
        bound[p] = lo + (hi - lo) * sigmoid(free[p])
    for k in range(3):
        n = SIMPLEX_SIZE[k]
        lb = simplex_lower(k)
        simplex_z(free + SIMPLEX_FREE[k], n, z)
        for i in range(n):
            bound[SIMPLEX_BOUND[k] + i] = lb + (1.0 - n * lb) * z[i]


cdef void free_derivatives(const double* free, const double* pos_center, const double* g_bound,
                           const double* h_bound, double* g_free, double* h_free,
                           double* jt) noexcept nogil:
    """Gradient and Hessian in free coordinates from those in bound coordinates.

    g_free = Jt^T g;  H_free = Jt^T H Jt + sum_p g_p d2 b_p / df df^T, symmetrised exactly.
    ``jt`` is scratch for the 44 x 41 Jacobian; ``h_bound``/``h_free`` may be NULL (gradient only).
    """
    cdef int p, q, k, i, j, l, n, b0, f0
    cdef double lo, hi, sg, scale, lb, tmp, gsum
    cdef double z[8]
    cdef double d2[NP]      # diagonal second derivatives of the box entries
    memset(jt, 0, NP * NF * sizeof(double))
    for p in range(26):
        box_limits(p, pos_center, &lo, &hi)
        sg = sigmoid(free[p])
        jt[NF * p + p] = (hi - lo) * sg * (1.0 - sg)
        d2[p] = (hi - lo) * sg * (1.0 - sg) * (1.0 - 2.0 * sg)
    for k in range(3):
        b0 = SIMPLEX_BOUND[k]
        f0 = SIMPLEX_FREE[k]
        n = SIMPLEX_SIZE[k]
        scale = 1.0 - n * simplex_lower(k)
        simplex_z(free + f0, n, z)
        for i in range(n):
            for j in range(n - 1):
                jt[NF * (b0 + i) + f0 + j] = scale * z[i] * ((1.0 if i == j else 0.0) - z[j])
    for q in range(NF):
        tmp = 0.0
        for p in range(NP):
            tmp += jt[NF * p + q] * g_bound[p]
        g_free[q] = tmp
    if h_bound == NULL:
        return
    # Jt^T H Jt over the non-zero rows of each column of Jt: a box column has one (its own
    # entry), a simplex column those of its simplex
    cdef int first[NF]
    cdef int count[NF]
    for q in range(26):
        first[q] = q
        count[q] = 1
    for k in range(3):
        for j in range(SIMPLEX_SIZE[k] - 1):
            first[SIMPLEX_FREE[k] + j] = SIMPLEX_BOUND[k]
            count[SIMPLEX_FREE[k] + j] = SIMPLEX_SIZE[k]
    cdef double hj[NP * NF]
    for p in range(NP):
        for q in range(NF):
            tmp = 0.0
            for l in range(first[q], first[q] + count[q]):
                tmp += h_bound[NP * p + l] * jt[NF * l + q]
            hj[NF * p + q] = tmp
    for i in range(NF):
        for j in range(i, NF):
            tmp = 0.0
            for p in range(first[i], first[i] + count[i]):
                tmp += jt[NF * p + i] * hj[NF * p + j]
            h_free[NF * i + j] = tmp
            h_free[NF * j + i] = tmp
    for p in range(26):
        h_free[NF * p + p] += g_bound[p] * d2[p]
    for k in range(3):
        b0 = SIMPLEX_BOUND[k]
        f0 = SIMPLEX_FREE[k]
        n = SIMPLEX_SIZE[k]
        scale = 1.0 - n * simplex_lower(k)
        simplex_z(free + f0, n, z)
        for j in range(n - 1):
            for l in range(n - 1):
                gsum = 0.0
                for i in range(n):
                    gsum += g_bound[b0 + i] * z[i] * (
                        ((1.0 if i == j else 0.0) - z[j]) * ((1.0 if i == l else 0.0) - z[l])
                        - z[j] * ((1.0 if j == l else 0.0) - z[l]))
                h_free[NF * (f0 + j) + f0 + l] += scale * gsum
    for i in range(NF):
        for j in range(i + 1, NF):
            tmp = 0.5 * (h_free[NF * i + j] + h_free[NF * j + i])
            h_free[NF * i + j] = tmp
            h_free[NF * j + i] = tmp


# Python wrappers (tests)

def py_enforce(bound, pos_center):
    cdef double[::1] b = np.array(bound, dtype=np.float64)
    cdef double[::1] c = np.ascontiguousarray(pos_center, dtype=np.float64)
    enforce_bounds(&c[0], &b[0])
    return np.asarray(b)


def py_to_free(bound, pos_center):
    cdef double[::1] b = np.ascontiguousarray(bound, dtype=np.float64)
    cdef double[::1] c = np.ascontiguousarray(pos_center, dtype=np.float64)
    out = np.empty(NF)
    cdef double[::1] f = out
    to_free(&b[0], &c[0], &f[0])
    return out


def py_to_bound(free, pos_center):
    cdef double[::1] f = np.ascontiguousarray(free, dtype=np.float64)
    cdef double[::1] c = np.ascontiguousarray(pos_center, dtype=np.float64)
    out = np.empty(NP)
    cdef double[::1] b = out
    to_bound(&f[0], &c[0], &b[0])
    return out


def py_free_derivatives(free, pos_center, g_bound, h_bound):
    """(g_free (41,), H_free (41, 41)) from bound-space gradient and Hessian."""
    cdef double[::1] f = np.ascontiguousarray(free, dtype=np.float64)
    cdef double[::1] c = np.ascontiguousarray(pos_center, dtype=np.float64)
    cdef double[::1] g = np.ascontiguousarray(g_bound, dtype=np.float64)
    cdef double[:, ::1] h = np.ascontiguousarray(h_bound, dtype=np.float64)
    gf = np.empty(NF)
    hf = np.empty((NF, NF))
    jt = np.empty(NP * NF)
    cdef double[::1] gfv = gf
    cdef double[:, ::1] hfv = hf
    cdef double[::1] jtv = jt
    free_derivatives(&f[0], &c[0], &g[0], &h[0, 0], &gfv[0], &hfv[0, 0], &jtv[0])
    return gf, hf
