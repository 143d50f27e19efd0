"""Newton trust-region maximisation of one source's ELBO, and the joint sweep over a field.

The trust-region method follows Optim.jl's NewtonTrustRegion as Celeste used it (MODEL.md
5.2), with two deliberate differences:

* the upstream step-rejection bug is fixed: when the agreement ratio is below rho_lower the
  radius becomes a quarter of the *step length* (Optim intended this; its 0.7-0.10 releases
  only divided the old radius by 4).  ``shrink_to_step=False`` restores the old rule;
* the hard case uses -(sum q_i / (lambda_i + lambda) v_i) (Optim has a sign slip there), and the
  secular-equation iteration runs to convergence (at most 50 Cholesky steps, not 5).

Each trial point is evaluated with value, gradient and Hessian at once, so a rejected step
costs one ELBO evaluation and an accepted one needs no second evaluation.

Everything below ``optimize_source`` runs without the GIL.  The joint sweep runs the
components of each conflict-free batch in an OpenMP ``prange`` with a dynamic schedule; a
thread writes only the parameter rows of the sources of its component.
"""

from cython.parallel cimport prange
from libc.math cimport fabs, sqrt, isfinite, fmax, fmin
from libc.stdlib cimport malloc, free
from libc.string cimport memcpy, memset
from scipy.linalg.cython_lapack cimport dsyev, dpotrf, dpotrs

import numpy as np

from celestecli._kernels.problem cimport Problem, SourceWork, CyProblem, NP, NF
from celestecli._kernels.elbo cimport (source_work_init, source_work_free, elbo_eval,
                                       MODE_HESS)
from celestecli._kernels.transform cimport enforce_bounds, to_free, to_bound, free_derivatives

cdef enum:
    MAX_N = 64                 # largest problem the dense trust-region solver accepts

ctypedef struct TRSettings:
    double initial_radius
    double max_radius
    double eta
    double rho_lower
    double rho_upper
    int max_iter
    double x_tol
    double f_tol
    double g_tol
    bint shrink_to_step

# Outcome codes (per source).
cdef enum:
    OPT_CONVERGED = 0
    OPT_MAX_ITER = 1
    OPT_FAILED = 2             # non-finite evaluation or allocation failure

ctypedef int (*objective_fn)(void* ctx, const double* x, double* f, double* g,
                             double* h) noexcept nogil


cdef double dot(const double* a, const double* b, int n) noexcept nogil:
    cdef double s = 0.0
    cdef int i
    for i in range(n):
        s += a[i] * b[i]
    return s


cdef double quadratic_model(const double* g, const double* h, const double* s, int n) noexcept nogil:
    """m(s) = g^T s + s^T H s / 2."""
    cdef double m = dot(g, s, n), t
    cdef int i, j
    for i in range(n):
        t = 0.0
        for j in range(n):
            t += h[n * i + j] * s[j]
        m += 0.5 * s[i] * t
    return m


cdef int solve_subproblem(const double* g, const double* h, double radius, int n,
                          double* s, bint* interior, double* work) noexcept nogil:
    """Nearly exact trust-region subproblem min g^T s + s^T H s / 2, |s| <= radius (N&W 4.3).

    ``work`` needs 3 n^2 + 6 n doubles.  Returns 0, or a LAPACK failure code.
    """
    cdef double* Q = work                  # eigenvectors (column-major = row-major of H^T = H)
    cdef double* lam = work + n * n
    cdef double* q = lam + n
    cdef double* R = q + n
    cdef double* w = R + n * n
    cdef double* lwork_buf = w + n
    cdef int info = 0, lwork = n * n + 2 * n, one = 1, i, j, it, mult
    cdef double lam_lb, lam_c, lam_prev, p2, tau, sn, wn, delta_lam
    cdef char jobz = b'V', uplo = b'U'
    # The common case first: H positive definite and the Newton step inside the region
    # (one Cholesky factorisation, no eigendecomposition).
    memcpy(R, h, n * n * sizeof(double))
    dpotrf(&uplo, &n, R, &n, &info)
    if info == 0:
        for i in range(n):
            s[i] = -g[i]
        dpotrs(&uplo, &n, &one, R, &n, s, &n, &info)
        if info == 0 and dot(s, s, n) <= radius * radius:
            interior[0] = True
            return 0
    memcpy(Q, h, n * n * sizeof(double))
    dsyev(&jobz, &uplo, &n, Q, &n, lam, lwork_buf, &lwork, &info)
    if info != 0:
        return 100 + info
    for i in range(n):                     # q = Q^T g; column i of Q is eigenvector i
        q[i] = dot(Q + n * i, g, n)
    interior[0] = False
    if lam[0] >= 1e-8:
        p2 = 0.0
        for i in range(n):
            p2 += q[i] * q[i] / (lam[i] * lam[i])
        if p2 <= radius * radius:
            memset(s, 0, n * sizeof(double))
            for i in range(n):
                for j in range(n):
                    s[j] -= q[i] / lam[i] * Q[n * i + j]
            interior[0] = True
            return 0
    lam_lb = -lam[0] + fmax(1e-8, 1e-8 * (lam[n - 1] - lam[0]))
    lam_c = lam_lb
    if lam[0] < 0:
        mult = 0
        while mult < n and fabs(lam[mult] - lam[0]) <= 1e-10:
            mult += 1
        i = 0
        while i < mult and fabs(q[i]) <= 1e-10:
            i += 1
        if i == mult:                      # candidate for the hard case
            p2 = 0.0
            for i in range(mult, n):
                p2 += q[i] * q[i] / ((lam[i] + lam_c) * (lam[i] + lam_c))
            if p2 <= radius * radius:
                tau = sqrt(radius * radius - p2)
                for j in range(n):
                    s[j] = tau * Q[j]
                for i in range(mult, n):
                    for j in range(n):
                        s[j] -= q[i] / (lam[i] + lam_c) * Q[n * i + j]
                return 0
            lam_c = lam_lb + 0.01 * (lam[n - 1] - lam[0])
    for it in range(50):
        memcpy(R, h, n * n * sizeof(double))
        for i in range(n):
            R[n * i + i] += lam_c
        dpotrf(&uplo, &n, R, &n, &info)
        if info != 0:
            return 200 + info
        for i in range(n):
            s[i] = -g[i]
        dpotrs(&uplo, &n, &one, R, &n, s, &n, &info)
        if info != 0:
            return 300 + info
        # w = R^-T s: with the upper factor U (H + lam I = U^T U), solve U^T w = s
        for i in range(n):
            wn = s[i]
            for j in range(i):
                wn -= R[n * i + j] * w[j]      # column-major U[j, i] is R[n * i + j]
            w[i] = wn / R[n * i + i]
        sn = sqrt(dot(s, s, n))
        wn = dot(w, w, n)
        lam_prev = lam_c
        delta_lam = sn * sn * (sn - radius) / (radius * wn)
        lam_c = lam_c + delta_lam
        if lam_c < lam_lb:
            lam_c = 0.5 * (lam_prev + lam_lb)
        if fabs(lam_c - lam_prev) < 1e-10 * fmax(1.0, fabs(lam_prev)):
            break
    return 0


cdef int trust_region_minimize(objective_fn fun, void* ctx, double* x, int n,
                               const TRSettings* st, double* f_out, double* f_start,
                               int* n_iter, int* n_eval) noexcept nogil:
    """Minimise fun from x (overwritten by the result); f_start gets fun at the start.
    Returns an OPT_* code."""
    if n > MAX_N:
        return OPT_FAILED
    cdef double* buf = <double*>malloc((2 * n * n + 4 * n + 3 * n * n + 6 * n) * sizeof(double))
    if buf == NULL:
        return OPT_FAILED
    cdef double* g = buf
    cdef double* h = g + n
    cdef double* x_new = h + n * n
    cdef double* g_new = x_new + n
    cdef double* h_new = g_new + n
    cdef double* step = h_new + n * n
    cdef double* work = step + n
    cdef double f, f_new, m, rho, radius = st.initial_radius, snorm, dx, gmax
    cdef bint interior
    cdef int it, i, code = OPT_MAX_ITER
    n_iter[0] = 0
    n_eval[0] = 1
    if fun(ctx, x, &f, g, h) != 0:
        free(buf)
        return OPT_FAILED
    f_start[0] = f
    gmax = 0.0
    for i in range(n):
        gmax = fmax(gmax, fabs(g[i]))
    if gmax < st.g_tol:
        f_out[0] = f
        free(buf)
        return OPT_CONVERGED
    for it in range(st.max_iter):
        n_iter[0] = it + 1
        if solve_subproblem(g, h, radius, n, step, &interior, work) != 0:
            code = OPT_FAILED
            break
        m = quadratic_model(g, h, step, n)
        for i in range(n):
            x_new[i] = x[i] + step[i]
        n_eval[0] += 1
        if fun(ctx, x_new, &f_new, g_new, h_new) != 0:
            f_new = f + 1.0                      # treat a failed trial point as a bad step
            rho = -1.0
        elif fabs(m) <= 2.220446049250313e-16:
            rho = 1.0
        elif m > 0:
            rho = st.rho_lower - 1.0
        else:
            rho = (f - f_new) / (-m)
        snorm = sqrt(dot(step, step, n))
        if rho < st.rho_lower:
            radius = 0.25 * snorm if st.shrink_to_step else 0.25 * radius
        elif rho > st.rho_upper and not interior:
            radius = fmin(2.0 * radius, st.max_radius)
        if rho <= st.eta:
            if radius < 1e-14:
                code = OPT_CONVERGED              # no further progress is possible
                break
            continue
        dx = 0.0
        for i in range(n):
            dx = fmax(dx, fabs(step[i]))
        memcpy(x, x_new, n * sizeof(double))
        memcpy(g, g_new, n * sizeof(double))
        memcpy(h, h_new, n * n * sizeof(double))
        gmax = 0.0
        for i in range(n):
            gmax = fmax(gmax, fabs(g[i]))
        if (dx < st.x_tol or gmax < st.g_tol
                or fabs(f_new - f) < fmax(st.f_tol * (fabs(f_new) + st.f_tol),
                                          2.220446049250313e-16 * (fabs(f_new) + fabs(f)))):
            f = f_new
            code = OPT_CONVERGED
            break
        f = f_new
    f_out[0] = f
    free(buf)
    return code


# ---------------------------------------------------------------------------------------------
# The per-source problem: minimise -ELBO over free coordinates

ctypedef struct SourceObjective:
    const Problem* pd
    long s
    SourceWork* work
    const double* pos_center
    double* bound
    double* g_bound
    double* h_bound
    double* jt


cdef int source_objective(void* ctx, const double* x, double* f, double* g,
                          double* h) noexcept nogil:
    cdef SourceObjective* o = <SourceObjective*>ctx
    cdef double value
    cdef int i
    to_bound(x, o.pos_center, o.bound)
    if elbo_eval(o.pd, o.s, o.bound, o.work, MODE_HESS, &value, o.g_bound, o.h_bound, 1) != 0:
        return 1
    free_derivatives(x, o.pos_center, o.g_bound, o.h_bound, g, h, o.jt)
    f[0] = -value
    for i in range(NF):
        g[i] = -g[i]
    for i in range(NF * NF):
        h[i] = -h[i]
    return 0


cdef int optimize_source(const Problem* pd, long s, const TRSettings* st, double* elbo,
                         double* gain, int* n_iter, int* n_eval) noexcept nogil:
    """Maximise source s's ELBO with its neighbours fixed; writes its row of pd.params, the
    ELBO reached and by how much it rose (the field's ELBO rises by as much)."""
    cdef SourceWork work
    cdef SourceObjective o
    cdef double x[NF]
    cdef double bound[NP]
    cdef double g_bound[NP]
    cdef double f, f_start = 0.0
    cdef int code
    cdef double* scratch
    cdef double* row = pd.params + NP * s
    n_iter[0] = 0                                 # also when the source fails before iterating
    n_eval[0] = 0
    gain[0] = 0.0
    if source_work_init(pd, s, &work, 1) != 0:
        return OPT_FAILED
    scratch = <double*>malloc((NP * NP + NP * NF) * sizeof(double))
    if scratch == NULL:
        source_work_free(&work)
        return OPT_FAILED
    o.pd = pd
    o.s = s
    o.work = &work
    o.pos_center = pd.pos_center + 2 * s
    o.bound = bound
    o.g_bound = g_bound
    o.h_bound = scratch
    o.jt = scratch + NP * NP
    memcpy(bound, row, NP * sizeof(double))
    enforce_bounds(o.pos_center, bound)
    to_free(bound, o.pos_center, x)
    code = trust_region_minimize(source_objective, &o, x, NF, st, &f, &f_start, n_iter, n_eval)
    if code != OPT_FAILED:
        to_bound(x, o.pos_center, row)
        elbo[0] = -f
        gain[0] = f_start - f
    free(scratch)
    source_work_free(&work)
    return code


cdef TRSettings settings_from(dict d):
    cdef TRSettings st
    st.initial_radius = d["initial_radius"]
    st.max_radius = d["max_radius"]
    st.eta = d["eta"]
    st.rho_lower = d["rho_lower"]
    st.rho_upper = d["rho_upper"]
    st.max_iter = d["max_iter"]
    st.x_tol = d["x_tol"]
    st.f_tol = d["f_tol"]
    st.g_tol = d["g_tol"]
    st.shrink_to_step = d["shrink_to_step"]
    return st


# ---------------------------------------------------------------------------------------------
# Python entry points

def optimize_sources(CyProblem problem, const long[::1] batch_ptr, const long[::1] comp_ptr,
                     const long[::1] comp_src, dict settings, int passes, int n_threads,
                     long[::1] status, long[::1] iterations, long[::1] evaluations,
                     double[::1] elbo, double[::1] gain):
    """Block coordinate ascent over a field (MODEL.md 5.7).

    Batches are separated by barriers; batch b holds components comp_ptr-ranges
    batch_ptr[b]..batch_ptr[b+1]-1, and component c the sources
    comp_src[comp_ptr[c]:comp_ptr[c+1]], processed in that order by one thread.  The per-source
    outputs (status, iterations and evaluations summed over passes, last ELBO) are written in
    place, and gain gets each source's rise of the ELBO added (the field's ELBO rises by their
    sum).  Deterministic for given batches: no two components of a batch share neighbours.
    """
    cdef TRSettings st = settings_from(settings)
    cdef long n_src = problem.pd.n_sources
    if not (status.shape[0] == iterations.shape[0] == evaluations.shape[0] == elbo.shape[0]
            == gain.shape[0] == n_src):
        raise ValueError("per-source output arrays must have one entry per source")
    if batch_ptr.shape[0] < 1 or comp_ptr.shape[0] < 1:
        raise ValueError("empty batch or component pointer array")
    with nogil:
        sweep(&problem.pd, &batch_ptr[0], batch_ptr.shape[0] - 1, &comp_ptr[0], &comp_src[0]
              if comp_src.shape[0] else NULL, &st, passes, max(1, n_threads),
              &status[0], &iterations[0], &evaluations[0], &elbo[0], &gain[0])


cdef void sweep(const Problem* pd, const long* batch_ptr, long n_batches, const long* comp_ptr,
                const long* comp_src, const TRSettings* st, int passes, int n_threads,
                long* status, long* iterations, long* evaluations, double* elbo,
                double* gain) noexcept nogil:
    cdef long b, c, start, stop
    cdef int pas
    for pas in range(passes):
        for b in range(n_batches):
            start = batch_ptr[b]
            stop = batch_ptr[b + 1]
            for c in prange(start, stop, schedule="dynamic", num_threads=n_threads):
                optimize_component(pd, comp_src, comp_ptr[c], comp_ptr[c + 1], st,
                                   status, iterations, evaluations, elbo, gain)


cdef void optimize_component(const Problem* pd, const long* comp_src, long first, long last,
                             const TRSettings* st, long* status, long* iterations,
                             long* evaluations, double* elbo, double* gain) noexcept nogil:
    """Optimise the sources of one component in order (one thread)."""
    cdef long k, s
    cdef int code, it = 0, ev = 0
    cdef double value = 0.0, rise = 0.0
    for k in range(first, last):
        s = comp_src[k]
        code = optimize_source(pd, s, st, &value, &rise, &it, &ev)
        status[s] = code
        iterations[s] += it
        evaluations[s] += ev
        gain[s] += rise
        if code != OPT_FAILED:
            elbo[s] = value


cdef struct PyObjective:
    void* fun


cdef int python_objective(void* ctx, const double* x, double* f, double* g,
                          double* h) noexcept nogil:
    cdef int status
    with gil:
        status = (<object>(<PyObjective*>ctx).fun)._call(<size_t>x, <size_t>f, <size_t>g,
                                                           <size_t>h)
    return status


cdef class _PyFun:
    """A Python objective behind the C callback.  An exception other than the two that mark
    an invalid point cannot cross the nogil solver: it is kept in ``error`` and the callback
    reports failure, so the solver stops, and ``trust_region`` raises it."""
    cdef object fun
    cdef int n
    cdef public object error

    def __init__(self, fun, n):
        self.fun = fun
        self.n = n
        self.error = None

    def _call(self, size_t xp, size_t fp, size_t gp, size_t hp):
        cdef double* x = <double*>xp
        cdef double* g = <double*>gp
        cdef double* h = <double*>hp
        cdef int i
        if self.error is not None:
            return 1
        xa = np.array([x[i] for i in range(self.n)])
        try:
            f, grad, hess = self.fun(xa)
        except (FloatingPointError, ValueError):
            return 1                              # an invalid point: a rejected step
        except BaseException as exc:
            self.error = exc
            return 1
        try:
            f = float(f)
            grad = np.ascontiguousarray(grad, dtype=np.float64).reshape(self.n)
            hess = np.ascontiguousarray(hess, dtype=np.float64).reshape(self.n * self.n)
        except BaseException as exc:              # a malformed return value is a bug
            self.error = exc
            return 1
        if not (isfinite(f) and np.all(np.isfinite(grad)) and np.all(np.isfinite(hess))):
            return 1                              # NaN or inf: a rejected step, never accepted
        (<double*>fp)[0] = f
        for i in range(self.n):
            g[i] = grad[i]
        for i in range(self.n * self.n):
            h[i] = hess[i]
        return 0


def trust_region(fun, x0, dict settings):
    """Minimise ``fun(x) -> (f, grad, hess)`` from x0 with the nogil trust-region solver.

    Exposed for tests (comparison with scipy's trust-exact).
    Returns (x, f, code, n_iter, n_eval); code 0 converged, 1 iteration limit, 2 failed.
    """
    cdef TRSettings st = settings_from(settings)
    x = np.array(x0, dtype=np.float64)
    cdef double[::1] xv = x
    cdef int n = x.shape[0], n_iter = 0, n_eval = 0, code
    cdef double f = 0.0, f_start = 0.0
    pyfun = _PyFun(fun, n)
    cdef PyObjective ctx
    ctx.fun = <void*>pyfun
    code = trust_region_minimize(python_objective, &ctx, &xv[0], n, &st, &f, &f_start, &n_iter,
                                 &n_eval)
    if pyfun.error is not None:
        raise pyfun.error
    return x, f, code, n_iter, n_eval
