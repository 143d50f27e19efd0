"""ELBO of one source with its neighbours fixed: value, exact gradient and exact Hessian.

MODEL.md sections 2-4.  Stars and galaxies both use the patch's Gaussian-mixture PSF
(variant A, fully analytic).  The kernel follows the reformulation recommended in MODEL.md
4.7: per pixel it computes the source's star and galaxy profiles with derivatives in "raw"
coordinates (pixel position mu, theta, and the shape matrix Sigma = (S11, S12, S22)), and
accumulates small weighted sums per image.  Because the brightness factors are constant over
an image, the 44 x 44 Hessian is assembled once per image from those sums:

    L(E, V) per pixel, E = E_bg + E_s, V = V_bg + E2_s - E_s^2
    grad L = cE grad E_s + cE2 grad E2_s
    hess L = cE hess E_s + cE2 hess E2_s + a gE gE^T + cc (gE gE2^T + gE2 gE^T)

and grad E_s = A z, grad E2_s = B w, with z = (f1, d_mu f1, f2, d_raw f2) and
w = (f1^2, 2 f1 d_mu f1, f2^2, 2 f2 d_raw f2) per pixel; A, B (44 x 10) depend on the
image only.  The neighbours' contribution to E and V at each visited pixel is computed once
per source (they are fixed while it is optimised).

Threading: the pixel loop runs in an OpenMP team of ``n_threads`` with per-thread, per-image
accumulators summed in thread order afterwards.  Called from a thread of an outer parallel
loop (the joint sweep), the inner team has one thread.
"""

from cython.parallel cimport parallel, prange
from libc.math cimport exp, log, sqrt, lgamma, sin, cos, isfinite, M_PI
from libc.stdlib cimport malloc, calloc, free
from libc.string cimport memset

from celestecli._kernels._openmp cimport omp_get_thread_num
from celestecli._kernels.problem cimport Problem, SourceWork, NP, N_GAL_PROTO, MAX_PSF, PSF_STRIDE
import numpy as np

# Layout of the per-image component scratch (for the active source).
cdef enum:
    STAR_STRIDE = 6          # mean x, mean y, P11, P12, P22, normaliser
    GAL_STRIDE = 9           # mean x, mean y, P11, P12, P22, normaliser, theta weight, sign, nu
    COMP_STRIDE = MAX_PSF * STAR_STRIDE + MAX_PSF * N_GAL_PROTO * GAL_STRIDE + 8
    CONST_OFF = MAX_PSF * STAR_STRIDE + MAX_PSF * N_GAL_PROTO * GAL_STRIDE

# Per-pixel profile record ("raw" derivatives).
cdef enum:
    R_F1 = 0                 # star profile
    R_G1 = 1                 # d f1 / d mu (2)
    R_H1 = 3                 # d2 f1 / d mu2: xx, xy, yy
    R_F2 = 6                 # galaxy profile
    R_G2 = 7                 # d f2 / d (mu_x, mu_y, theta, S11, S12, S22)
    R_H2 = 13                # 6 x 6, row-major, upper triangle only
    R_SIZE = 49
    R_STRIDE = 64            # per-thread record spacing: 512 bytes, so threads share no cache line

# Accumulators per (thread, image).
cdef enum:
    A_VAL = 0
    A_SZ = 1                 # sum cE z (10)
    A_SW = 11                # sum cE2 w (10)
    A_SZZ = 21               # sum a z z^T (10 x 10)
    A_SZW = 121              # sum cc z w^T (10 x 10)
    A_HR1 = 221              # star raw Hessian sum (2 x 2)
    A_HR2 = 225              # galaxy raw Hessian sum (6 x 6)
    A_SSIG = 261             # sum of weights times d f2 / d Sigma (3), for the curvature of Sigma(rho, phi, sigma)
    ACC_SIZE = 264
    ACC_PAD = 16             # doubles between two threads' accumulators (no shared cache line)

# Exponent cut-off: a Gaussian term with x^T P x > Q_CUT contributes < exp(-30) (1e-13) of its
# peak; far below the 1e-10 relative agreement with the reference the tests demand.
cdef double Q_CUT = 60.0

# Parameter indices (see celestecli/model/params.py).
cdef enum:
    P_THETA = 2
    P_RHO = 3
    P_PHI = 4
    P_SIGMA = 5
    P_GAMMA = 6
    P_ZETA = 8
    P_BETA = 10
    P_LAMBDA = 18
    P_CHI = 26
    P_KAPPA = 28


cdef inline double band_coef(int b, int j) noexcept nogil:
    """I_b(j): ln flux_b = ln r + sum_j I_b(j) c_j (MODEL.md 2.1)."""
    if b > j and j >= 2:
        return 1.0
    if b <= j and j < 2:
        return -1.0
    return 0.0


cdef inline void brightness_slots(int i, int* slots) noexcept nogil:
    """The 10 brightness parameters of type i: gamma, zeta, beta[0..3], lambda[0..3]."""
    cdef int j
    slots[0] = P_GAMMA + i
    slots[1] = P_ZETA + i
    for j in range(4):
        slots[2 + j] = P_BETA + 4 * i + j
        slots[6 + j] = P_LAMBDA + 4 * i + j


cdef inline void brightness_alpha(int b, double* alpha, double* alpha2) noexcept nogil:
    """Coefficients of the brightness exponents: e = exp(alpha . v), e2 = exp(alpha2 . v)."""
    cdef int j
    cdef double c
    alpha[0] = 1.0
    alpha[1] = 0.5
    alpha2[0] = 2.0
    alpha2[1] = 2.0
    for j in range(4):
        c = band_coef(b, j)
        alpha[2 + j] = c
        alpha[6 + j] = 0.5 * c * c
        alpha2[2 + j] = 2.0 * c
        alpha2[6 + j] = 2.0 * c * c


cdef inline void brightness(const double* th, int b, int i, double* e, double* e2) noexcept nogil:
    """E[flux_b | type i] and E[flux_b^2 | type i] (MODEL.md 3.3)."""
    cdef double alpha[10]
    cdef double alpha2[10]
    cdef int slots[10]
    cdef double s1 = 0.0, s2 = 0.0
    cdef int k
    brightness_alpha(b, alpha, alpha2)
    brightness_slots(i, slots)
    for k in range(10):
        s1 += alpha[k] * th[slots[k]]
        s2 += alpha2[k] * th[slots[k]]
    e[0] = exp(s1)
    e2[0] = exp(s2)


cdef inline void shape_sigma(double rho, double phi, double sigma, double* S) noexcept nogil:
    """Sigma(rho, phi, sigma) as (S11, S12, S22) (MODEL.md 2.5)."""
    cdef double c = cos(phi), s = sin(phi), s2 = sigma * sigma, r2m1 = rho * rho - 1.0
    S[0] = s2 * (1.0 + r2m1 * s * s)
    S[1] = -s2 * r2m1 * c * s
    S[2] = s2 * (1.0 + r2m1 * c * c)


cdef inline void shape_jacobian(double rho, double phi, double sigma,
                                double* JS, double* TS) noexcept nogil:
    """JS[t, a] = dSigma_t/de_a and TS[t, a, b] = d2 Sigma_t/de_a de_b, e = (rho, phi, sigma)."""
    cdef double c = cos(phi), s = sin(phi), s2 = sigma * sigma, r2m1 = rho * rho - 1.0
    cdef double S[3]
    cdef double drho[3]
    cdef double dphi[3]
    cdef double v_rr[3]
    cdef double v_rp[3]
    cdef double v_pp[3]
    cdef int t
    shape_sigma(rho, phi, sigma, S)
    drho[0] = 2.0 * rho * s2 * s * s
    drho[1] = -2.0 * rho * s2 * c * s
    drho[2] = 2.0 * rho * s2 * c * c
    dphi[0] = s2 * r2m1 * 2.0 * c * s
    dphi[1] = s2 * r2m1 * (s * s - c * c)
    dphi[2] = -s2 * r2m1 * 2.0 * c * s
    v_rr[0] = 2.0 * s2 * s * s
    v_rr[1] = -2.0 * s2 * c * s
    v_rr[2] = 2.0 * s2 * c * c
    v_rp[0] = 2.0 * rho * s2 * 2.0 * c * s
    v_rp[1] = 2.0 * rho * s2 * (s * s - c * c)
    v_rp[2] = -2.0 * rho * s2 * 2.0 * c * s
    v_pp[0] = s2 * r2m1 * 2.0 * (c * c - s * s)
    v_pp[1] = s2 * r2m1 * 4.0 * c * s
    v_pp[2] = -s2 * r2m1 * 2.0 * (c * c - s * s)
    for t in range(3):
        JS[3 * t + 0] = drho[t]
        JS[3 * t + 1] = dphi[t]
        JS[3 * t + 2] = 2.0 * S[t] / sigma
        TS[9 * t + 0] = v_rr[t]
        TS[9 * t + 1] = v_rp[t]
        TS[9 * t + 3] = v_rp[t]
        TS[9 * t + 2] = 2.0 * drho[t] / sigma
        TS[9 * t + 6] = 2.0 * drho[t] / sigma
        TS[9 * t + 4] = v_pp[t]
        TS[9 * t + 5] = 2.0 * dphi[t] / sigma
        TS[9 * t + 7] = 2.0 * dphi[t] / sigma
        TS[9 * t + 8] = 2.0 * S[t] / (sigma * sigma)


cdef inline void gaussian_setup(double mx, double my, double c11, double c12, double c22,
                                double weight, double* out) noexcept nogil:
    """Store mean, precision and normaliser weight / (2 pi sqrt(det)) of one Gaussian term."""
    cdef double det = c11 * c22 - c12 * c12
    out[0] = mx
    out[1] = my
    out[2] = c22 / det
    out[3] = -c12 / det
    out[4] = c11 / det
    out[5] = weight / (2.0 * M_PI * sqrt(det))


cdef inline double ra_offset(double ra, double ra0) noexcept nogil:
    """ra - ra0 in degrees, wrapped into [-180, 180): a source and its patch centre may lie on
    either side of RA = 0 (Stripe 82 crosses it)."""
    cdef double d = ra - ra0
    if d >= 180.0:
        d -= 360.0
    elif d < -180.0:
        d += 360.0
    return d


cdef inline void patch_position(const Problem* pd, long s, int n, const double* th,
                                double* mu) noexcept nogil:
    """Pixel position of source s in image n: mu = J (u - u0) + p0 (MODEL.md 2.6)."""
    cdef long pn = s * pd.n_images + n
    cdef const double* J = pd.jac + 4 * pn
    cdef double du0 = ra_offset(th[0], pd.u0[2 * pn]), du1 = th[1] - pd.u0[2 * pn + 1]
    mu[0] = J[0] * du0 + J[1] * du1 + pd.p0[2 * pn]
    mu[1] = J[2] * du0 + J[3] * du1 + pd.p0[2 * pn + 1]


cdef void setup_components(const Problem* pd, long s, int n, const double* th,
                           double* comp) noexcept nogil:
    """Fill the star and galaxy Gaussian components of source s in image n, and its
    per-image brightness factors c_i = chi_i e_i, d_i = chi_i e2_i (at comp + CONST_OFF)."""
    cdef long pn = s * pd.n_images + n
    cdef const double* psf = pd.psf + pn * pd.n_psf * PSF_STRIDE
    cdef double mu[2]
    cdef double S[3]
    cdef double e, e2, nu, wk
    cdef int k, c, i
    cdef double* g
    patch_position(pd, s, n, th, mu)
    shape_sigma(th[P_RHO], th[P_PHI], th[P_SIGMA], S)
    for k in range(pd.n_psf):
        wk = psf[k * PSF_STRIDE]
        gaussian_setup(mu[0] + psf[k * PSF_STRIDE + 1], mu[1] + psf[k * PSF_STRIDE + 2],
                       psf[k * PSF_STRIDE + 3], psf[k * PSF_STRIDE + 4], psf[k * PSF_STRIDE + 5],
                       wk, comp + k * STAR_STRIDE)
        for c in range(N_GAL_PROTO):
            g = comp + MAX_PSF * STAR_STRIDE + (k * N_GAL_PROTO + c) * GAL_STRIDE
            nu = pd.gal_var[c]
            gaussian_setup(mu[0] + psf[k * PSF_STRIDE + 1], mu[1] + psf[k * PSF_STRIDE + 2],
                           psf[k * PSF_STRIDE + 3] + nu * S[0], psf[k * PSF_STRIDE + 4] + nu * S[1],
                           psf[k * PSF_STRIDE + 5] + nu * S[2], wk * pd.gal_weight[c], g)
            if pd.gal_proto[c] == 0:
                g[6] = th[P_THETA]
                g[7] = 1.0
            else:
                g[6] = 1.0 - th[P_THETA]
                g[7] = -1.0
            g[8] = nu
    for i in range(2):
        brightness(th, pd.band[n], i, &e, &e2)
        comp[CONST_OFF + 4 * i] = th[P_CHI + i] * e
        comp[CONST_OFF + 4 * i + 1] = th[P_CHI + i] * e2
        comp[CONST_OFF + 4 * i + 2] = e
        comp[CONST_OFF + 4 * i + 3] = e2


cdef inline void pixel_profiles(const double* comp, int n_psf, double px, double py,
                                int mode, double* r) noexcept nogil:
    """Star and galaxy profiles at pixel (px, py) with raw derivatives up to order ``mode``."""
    cdef int k, c
    cdef const double* g
    cdef double dx, dy, y1, y2, q, v, tg, sg, tgn, sgn_nu, d0, d1, d2, P11, P12, P22
    cdef double D00, D01, D02, D11, D12, D22, nu
    cdef double* h = r + R_H2
    memset(r, 0, R_SIZE * sizeof(double))
    for k in range(n_psf):
        g = comp + k * STAR_STRIDE
        dx = px - g[0]
        dy = py - g[1]
        y1 = g[2] * dx + g[3] * dy
        y2 = g[3] * dx + g[4] * dy
        q = dx * y1 + dy * y2
        if q > Q_CUT:
            continue
        v = g[5] * exp(-0.5 * q)
        r[R_F1] += v
        if mode >= 1:
            r[R_G1] += v * y1
            r[R_G1 + 1] += v * y2
        if mode >= 2:
            r[R_H1] += v * (y1 * y1 - g[2])
            r[R_H1 + 1] += v * (y1 * y2 - g[3])
            r[R_H1 + 2] += v * (y2 * y2 - g[4])
    for c in range(n_psf * N_GAL_PROTO):
        g = comp + MAX_PSF * STAR_STRIDE + c * GAL_STRIDE
        dx = px - g[0]
        dy = py - g[1]
        P11 = g[2]
        P12 = g[3]
        P22 = g[4]
        y1 = P11 * dx + P12 * dy
        y2 = P12 * dx + P22 * dy
        q = dx * y1 + dy * y2
        if q > Q_CUT:
            continue
        v = g[5] * exp(-0.5 * q)
        tg = g[6] * v
        r[R_F2] += tg
        if mode == 0:
            continue
        sg = g[7] * v
        nu = g[8]
        tgn = tg * nu
        d0 = 0.5 * (y1 * y1 - P11)
        d1 = y1 * y2 - P12
        d2 = 0.5 * (y2 * y2 - P22)
        r[R_G2] += tg * y1
        r[R_G2 + 1] += tg * y2
        r[R_G2 + 2] += sg
        r[R_G2 + 3] += tgn * d0
        r[R_G2 + 4] += tgn * d1
        r[R_G2 + 5] += tgn * d2
        if mode < 2:
            continue
        sgn_nu = sg * nu
        # mu-mu, mu-theta
        h[0] += tg * (y1 * y1 - P11)
        h[1] += tg * (y1 * y2 - P12)
        h[7] += tg * (y2 * y2 - P22)
        h[2] += sg * y1
        h[8] += sg * y2
        # mu-Sigma: nu * tg * (d2 log phi / d mu_j d Sigma_t + y_j d_t)
        h[3] += tgn * (y1 * d0 - y1 * P11)
        h[4] += tgn * (y1 * d1 - (y1 * P12 + y2 * P11))
        h[5] += tgn * (y1 * d2 - y2 * P12)
        h[9] += tgn * (y2 * d0 - y1 * P12)
        h[10] += tgn * (y2 * d1 - (y1 * P22 + y2 * P12))
        h[11] += tgn * (y2 * d2 - y2 * P22)
        # theta-Sigma
        h[15] += sgn_nu * d0
        h[16] += sgn_nu * d1
        h[17] += sgn_nu * d2
        # Sigma-Sigma: nu^2 tg (D + d d^T)
        D00 = 0.5 * P11 * P11 - y1 * y1 * P11
        D01 = P11 * P12 - y1 * (y2 * P11 + y1 * P12)
        D02 = 0.5 * P12 * P12 - y1 * y2 * P12
        D11 = P11 * P22 + P12 * P12 - y1 * (y2 * P12 + y1 * P22) - y2 * (y2 * P11 + y1 * P12)
        D12 = P22 * P12 - y1 * y2 * P22 - y2 * y2 * P12
        D22 = 0.5 * P22 * P22 - y2 * y2 * P22
        tgn = tgn * nu
        h[21] += tgn * (D00 + d0 * d0)
        h[22] += tgn * (D01 + d0 * d1)
        h[23] += tgn * (D02 + d0 * d2)
        h[28] += tgn * (D11 + d1 * d1)
        h[29] += tgn * (D12 + d1 * d2)
        h[35] += tgn * (D22 + d2 * d2)


cdef inline double pixel_accumulate(const double* r, const double* bc, double x, double iota,
                                    double e_bg, double v_bg, int mode, double* acc) noexcept nogil:
    """Add one pixel's contribution to the accumulators; returns E_G (<= 0 signals an error)."""
    cdef double f1 = r[R_F1], f2 = r[R_F2]
    cdef double c1 = bc[0], d1 = bc[1], c2 = bc[4], d2 = bc[5]
    cdef double Es = c1 * f1 + c2 * f2
    cdef double E2s = d1 * f1 * f1 + d2 * f2 * f2
    cdef double E = e_bg + Es
    cdef double V = v_bg + E2s - Es * Es
    cdef double invE, LE, LV, LEE, LEV, cE, cE2, a, cc, wH1, wG1, wH2, wG2
    cdef double z[10]
    cdef double w[10]
    cdef int i, j
    if E <= 0.0:
        return E
    invE = 1.0 / E
    acc[A_VAL] += x * (log(E) - 0.5 * V * invE * invE) - iota * E
    if mode == 0:
        return E
    LE = x * (invE + V * invE * invE * invE) - iota
    LV = -0.5 * x * invE * invE
    cE = LE - 2.0 * LV * Es
    cE2 = LV
    z[0] = f1
    z[1] = r[R_G1]
    z[2] = r[R_G1 + 1]
    z[3] = f2
    for i in range(6):
        z[4 + i] = r[R_G2 + i]
    w[0] = f1 * f1
    w[1] = 2.0 * f1 * z[1]
    w[2] = 2.0 * f1 * z[2]
    w[3] = f2 * f2
    for i in range(6):
        w[4 + i] = 2.0 * f2 * z[4 + i]
    for i in range(10):
        acc[A_SZ + i] += cE * z[i]
        acc[A_SW + i] += cE2 * w[i]
    if mode < 2:
        return E
    LEE = -x * (invE * invE + 3.0 * V * invE * invE * invE * invE)
    LEV = x * invE * invE * invE
    a = LEE - 2.0 * LV - 4.0 * Es * LEV
    cc = LEV
    for i in range(10):
        for j in range(i, 10):
            acc[A_SZZ + 10 * i + j] += a * z[i] * z[j]
        for j in range(10):
            acc[A_SZW + 10 * i + j] += cc * z[i] * w[j]
    wH1 = cE * c1 + 2.0 * cE2 * d1 * f1
    wG1 = 2.0 * cE2 * d1
    acc[A_HR1] += wH1 * r[R_H1] + wG1 * z[1] * z[1]
    acc[A_HR1 + 1] += wH1 * r[R_H1 + 1] + wG1 * z[1] * z[2]
    acc[A_HR1 + 3] += wH1 * r[R_H1 + 2] + wG1 * z[2] * z[2]
    wH2 = cE * c2 + 2.0 * cE2 * d2 * f2
    wG2 = 2.0 * cE2 * d2
    for i in range(6):
        for j in range(i, 6):
            acc[A_HR2 + 6 * i + j] += wH2 * r[R_H2 + 6 * i + j] + wG2 * z[4 + i] * z[4 + j]
    for i in range(3):
        acc[A_SSIG + i] += wH2 * z[7 + i]
    return E


cdef inline void add_cross_terms(double* hess, const double* M, int fcol, const double* T2,
                                 const double* sums, int ng) noexcept nogil:
    """hess += sym(M[:, fcol] (x) v) with v = T2 sums: a brightness-factor gradient times the
    accumulated profile gradient, mapped to the parameters (u, theta, rho, phi, sigma)."""
    cdef double v[6]
    cdef double tmp
    cdef int k, p, q
    for p in range(ng):
        v[p] = 0.0
        for q in range(ng):
            v[p] += T2[6 * p + q] * sums[q]
    for k in range(NP):
        if M[10 * k + fcol] == 0.0:
            continue
        for p in range(ng):
            tmp = M[10 * k + fcol] * v[p]
            hess[NP * k + p] += tmp
            hess[NP * p + k] += tmp


cdef inline void add_congruence(double* hess, const double* T2, const double* M,
                                int n) noexcept nogil:
    """hess[:n, :n] += T M T^T for the leading n x n block T of T2 (raw -> parameters) and an
    n x n raw-coordinate Hessian sum M."""
    cdef int p, q, i, j
    cdef double tmp
    for p in range(n):
        for q in range(n):
            tmp = 0.0
            for i in range(n):
                for j in range(n):
                    tmp += T2[6 * p + i] * M[n * i + j] * T2[6 * q + j]
            hess[NP * p + q] += tmp


cdef void assemble_image(const Problem* pd, long s, int n, const double* th, const double* comp,
                         double* acc, int mode, double* grad, double* hess) noexcept nogil:
    """Map one image's accumulated sums to the 44-parameter gradient and Hessian."""
    cdef double A[NP * 10]
    cdef double B[NP * 10]
    cdef double T2[36]           # param (u1, u2, theta, rho, phi, sigma) = T2 . raw
    cdef double JS[9]
    cdef double TS[27]
    cdef double alpha[10]
    cdef double alpha2[10]
    cdef int slots[10]
    cdef double AS[NP * 10]
    cdef double tmp, e, e2, chi, sf, sf2
    cdef int i, j, k, p, q, fcol, gcol, ng
    cdef long pn = s * pd.n_images + n
    cdef const double* J = pd.jac + 4 * pn
    cdef const double* bc = comp + CONST_OFF
    cdef int b = pd.band[n]
    # symmetrise the upper-triangle accumulators
    for i in range(10):
        for j in range(i):
            acc[A_SZZ + 10 * i + j] = acc[A_SZZ + 10 * j + i]
    for i in range(6):
        for j in range(i):
            acc[A_HR2 + 6 * i + j] = acc[A_HR2 + 6 * j + i]
    acc[A_HR1 + 2] = acc[A_HR1 + 1]
    memset(T2, 0, 36 * sizeof(double))
    shape_jacobian(th[P_RHO], th[P_PHI], th[P_SIGMA], JS, TS)
    for i in range(2):
        for j in range(2):
            T2[6 * i + j] = J[2 * j + i]          # d mu_j / d u_i
    T2[6 * 2 + 2] = 1.0
    for i in range(3):
        for j in range(3):
            T2[6 * (3 + i) + 3 + j] = JS[3 * j + i]   # d Sigma_j / d e_i
    brightness_alpha(b, alpha, alpha2)
    memset(A, 0, NP * 10 * sizeof(double))
    memset(B, 0, NP * 10 * sizeof(double))
    for i in range(2):
        brightness_slots(i, slots)
        e = bc[4 * i + 2]
        e2 = bc[4 * i + 3]
        chi = th[P_CHI + i]
        fcol = 0 if i == 0 else 3
        gcol = fcol + 1
        ng = 2 if i == 0 else 6
        A[10 * (P_CHI + i) + fcol] = e
        B[10 * (P_CHI + i) + fcol] = e2
        for k in range(10):
            A[10 * slots[k] + fcol] = chi * e * alpha[k]
            B[10 * slots[k] + fcol] = chi * e2 * alpha2[k]
        for p in range(ng):
            for q in range(ng):
                A[10 * p + gcol + q] = bc[4 * i] * T2[6 * p + q]
                B[10 * p + gcol + q] = bc[4 * i + 1] * T2[6 * p + q]
        if mode < 2:
            continue
        # second derivatives of the brightness factors c_i, d_i, and their cross terms with
        # the profile gradients: hess(c_i) Sz_f + sym(grad c_i (x) T Sz_g) (+ same for d_i, Sw)
        sf = acc[A_SZ + fcol]
        sf2 = acc[A_SW + fcol]
        for k in range(10):
            tmp = e * alpha[k] * sf + e2 * alpha2[k] * sf2
            hess[NP * (P_CHI + i) + slots[k]] += tmp
            hess[NP * slots[k] + P_CHI + i] += tmp
            for j in range(10):
                hess[NP * slots[k] + slots[j]] += chi * (e * alpha[k] * alpha[j] * sf
                                                         + e2 * alpha2[k] * alpha2[j] * sf2)
        # the f columns of A and B hold grad c_i and grad d_i
        add_cross_terms(hess, A, fcol, T2, acc + A_SZ + gcol, ng)
        add_cross_terms(hess, B, fcol, T2, acc + A_SW + gcol, ng)
    # gradient: A Sz + B Sw
    for p in range(NP):
        tmp = 0.0
        for k in range(10):
            tmp += A[10 * p + k] * acc[A_SZ + k] + B[10 * p + k] * acc[A_SW + k]
        grad[p] += tmp
    if mode < 2:
        return
    # outer-product terms: A Szz A^T + A Szw B^T + B Szw^T A^T, over the rows of A and B that
    # can be non-zero (shape, brightness and type parameters; never the kappa rows)
    for p in range(P_KAPPA):
        for k in range(10):
            tmp = 0.0
            for j in range(10):
                tmp += A[10 * p + j] * acc[A_SZZ + 10 * j + k]
            AS[10 * p + k] = tmp
    for p in range(P_KAPPA):
        for q in range(p, P_KAPPA):
            tmp = 0.0
            for k in range(10):
                tmp += AS[10 * p + k] * A[10 * q + k]
            hess[NP * p + q] += tmp
            if q != p:
                hess[NP * q + p] += tmp
    for p in range(P_KAPPA):
        for k in range(10):
            tmp = 0.0
            for j in range(10):
                tmp += A[10 * p + j] * acc[A_SZW + 10 * j + k]
            AS[10 * p + k] = tmp
    for p in range(P_KAPPA):
        for q in range(P_KAPPA):
            tmp = 0.0
            for k in range(10):
                tmp += AS[10 * p + k] * B[10 * q + k]
            hess[NP * p + q] += tmp
            hess[NP * q + p] += tmp
    # profile Hessians: u-u block of the star, full shape block of the galaxy, and the
    # curvature of Sigma(rho, phi, sigma)
    add_congruence(hess, T2, acc + A_HR1, 2)
    add_congruence(hess, T2, acc + A_HR2, 6)
    for p in range(3):
        for q in range(3):
            tmp = 0.0
            for i in range(3):
                tmp += acc[A_SSIG + i] * TS[9 * i + 3 * p + q]
            hess[NP * (P_RHO + p) + P_RHO + q] += tmp


cdef double shape_neg_log_prior(const Problem* pd, const double* th, double* dT,
                                double* d2T) noexcept nogil:
    """-log p(sigma, rho, theta) of a galaxy's shape (priors.shape_prior_constants); adds its
    gradient to dT and writes its (diagonal) second derivatives in sigma, rho, theta to d2T."""
    cdef const double* c = pd.shape_prior
    cdef double sig = th[P_SIGMA], rho = th[P_RHO], tht = th[P_THETA]
    cdef double s2 = c[1] * c[1]
    cdef double z = log(sig) - c[0]
    dT[P_SIGMA] += (1.0 + z / s2) / sig
    dT[P_RHO] += (1.0 - c[2]) / rho + (c[3] - 1.0) / (1.0 - rho)
    dT[P_THETA] += (1.0 - c[4]) / tht + (c[5] - 1.0) / (1.0 - tht)
    d2T[0] = ((1.0 - z) / s2 - 1.0) / (sig * sig)
    d2T[1] = (c[2] - 1.0) / (rho * rho) + (c[3] - 1.0) / ((1.0 - rho) * (1.0 - rho))
    d2T[2] = (c[4] - 1.0) / (tht * tht) + (c[5] - 1.0) / ((1.0 - tht) * (1.0 - tht))
    return (log(sig) + 0.5 * z * z / s2
            + (1.0 - c[2]) * log(rho) + (1.0 - c[3]) * log(1.0 - rho)
            + (1.0 - c[4]) * log(tht) + (1.0 - c[5]) * log(1.0 - tht) + c[6])


cdef double kl_eval(const Problem* pd, const double* th, int mode,
                    double* grad, double* hess) noexcept nogil:
    """KL of one source's q from its prior (MODEL.md 3.4, 4.8).

    The galaxy branch includes -log p(shape) (shape_neg_log_prior), weighted by P(galaxy) like
    the rest of that branch; Celeste instead adds a Gaussian log-density of the raw radius,
    unweighted, which leaves point-like "galaxies" free.

    Returns KL_s; when mode >= 1 subtracts its gradient from ``grad`` and (mode 2) its
    Hessian from ``hess``, i.e. adds the derivatives of -KL_s to the ELBO's.
    """
    cdef double total = 0.0, T, chi, gam, zeta, M, V, lam, kap, klc, rd
    cdef double dT[NP]
    cdef double shape_d2T[3]
    cdef double diff[4]
    cdef double pdiff[4]
    cdef int i, d, j, l, islot, bslot, lslot, kslot
    cdef const double* P
    for i in range(2):
        chi = th[P_CHI + i]
        gam = th[P_GAMMA + i]
        zeta = th[P_ZETA + i]
        M = pd.logflux_mean[i]
        V = pd.logflux_var[i]
        memset(dT, 0, NP * sizeof(double))
        T = 0.5 * (log(V) - log(zeta) + (zeta + (gam - M) * (gam - M)) / V - 1.0)
        dT[P_GAMMA + i] = (gam - M) / V
        dT[P_ZETA + i] = 0.5 * (1.0 / V - 1.0 / zeta)
        if i == 1:
            T += shape_neg_log_prior(pd, th, dT, shape_d2T)
        for d in range(8):
            kap = th[P_KAPPA + 8 * i + d]
            P = pd.color_prec + 16 * (8 * i + d)
            klc = -4.0 + pd.color_logdet[8 * i + d]
            for j in range(4):
                lam = th[P_LAMBDA + 4 * i + j]
                klc += P[5 * j] * lam - log(lam)
                diff[j] = th[P_BETA + 4 * i + j] - pd.color_mean[4 * (8 * i + d) + j]
            for j in range(4):
                pdiff[j] = 0.0
                for l in range(4):
                    pdiff[j] += P[4 * j + l] * diff[l]
                klc += diff[j] * pdiff[j]
            klc *= 0.5
            T += kap * (log(kap) - log(pd.color_weight[8 * i + d]) + klc)
            kslot = P_KAPPA + 8 * i + d
            dT[kslot] = log(kap) - log(pd.color_weight[8 * i + d]) + 1.0 + klc
            for j in range(4):
                dT[P_BETA + 4 * i + j] += kap * pdiff[j]
                lam = th[P_LAMBDA + 4 * i + j]
                dT[P_LAMBDA + 4 * i + j] += kap * 0.5 * (P[5 * j] - 1.0 / lam)
        total += chi * (log(chi) - log(pd.type_prior[i])) + chi * T
        if mode == 0:
            continue
        islot = P_CHI + i
        grad[islot] -= log(chi) - log(pd.type_prior[i]) + 1.0 + T
        for l in range(NP):
            if l != islot and dT[l] != 0.0:
                grad[l] -= chi * dT[l]
        if mode < 2:
            continue
        hess[NP * islot + islot] -= 1.0 / chi
        for l in range(NP):
            if l != islot and dT[l] != 0.0:
                hess[NP * islot + l] -= dT[l]
                hess[NP * l + islot] -= dT[l]
        if i == 1:
            hess[NP * P_SIGMA + P_SIGMA] -= chi * shape_d2T[0]
            hess[NP * P_RHO + P_RHO] -= chi * shape_d2T[1]
            hess[NP * P_THETA + P_THETA] -= chi * shape_d2T[2]
        hess[NP * (P_GAMMA + i) + P_GAMMA + i] -= chi / V
        hess[NP * (P_ZETA + i) + P_ZETA + i] -= chi * 0.5 / (zeta * zeta)
        for d in range(8):
            kap = th[P_KAPPA + 8 * i + d]
            kslot = P_KAPPA + 8 * i + d
            P = pd.color_prec + 16 * (8 * i + d)
            hess[NP * kslot + kslot] -= chi / kap
            for j in range(4):
                diff[j] = th[P_BETA + 4 * i + j] - pd.color_mean[4 * (8 * i + d) + j]
            for j in range(4):
                bslot = P_BETA + 4 * i + j
                lslot = P_LAMBDA + 4 * i + j
                lam = th[lslot]
                rd = 0.0
                for l in range(4):
                    rd += P[4 * j + l] * diff[l]
                    hess[NP * bslot + P_BETA + 4 * i + l] -= chi * kap * P[4 * j + l]
                hess[NP * kslot + bslot] -= chi * rd
                hess[NP * bslot + kslot] -= chi * rd
                rd = 0.5 * (P[5 * j] - 1.0 / lam)
                hess[NP * kslot + lslot] -= chi * rd
                hess[NP * lslot + kslot] -= chi * rd
                hess[NP * lslot + lslot] -= chi * kap * 0.5 / (lam * lam)
    return total


cdef inline bint box_contains(const long* box, long x, long y) noexcept nogil:
    return box[0] <= x <= box[1] and box[2] <= y <= box[3]


cdef int source_work_init(const Problem* pd, long s, SourceWork* w, int n_threads) noexcept nogil:
    """Collect source s's visited pixels and its neighbours' fixed contribution at each."""
    cdef long count = 0, x, y, p, pix_index
    cdef int n, t
    cdef long k, nb, pn
    cdef const long* bx
    cdef double comp_nb[COMP_STRIDE]
    cdef double r[R_SIZE]
    cdef double val, Es, E2s
    memset(w, 0, sizeof(SourceWork))
    for n in range(pd.n_images):
        bx = pd.box + 4 * (s * pd.n_images + n)
        for y in range(bx[2], bx[3] + 1):
            for x in range(bx[0], bx[1] + 1):
                val = pd.pixels[pd.pix_offset[n] + y * pd.nx[n] + x]
                if val == val:
                    count += 1
    w.capacity = count if count > 0 else 1
    w.pix_image = <int*>malloc(w.capacity * sizeof(int))
    w.pix_x = <int*>malloc(w.capacity * sizeof(int))
    w.pix_y = <int*>malloc(w.capacity * sizeof(int))
    w.counts = <double*>malloc(w.capacity * sizeof(double))
    w.iota = <double*>malloc(w.capacity * sizeof(double))
    w.e_bg = <double*>malloc(w.capacity * sizeof(double))
    w.v_bg = <double*>malloc(w.capacity * sizeof(double))
    w.image_start = <long*>malloc((pd.n_images + 1) * sizeof(long))
    w.comp = <double*>malloc(pd.n_images * COMP_STRIDE * sizeof(double))
    if n_threads < 1:
        n_threads = 1
    w.acc_threads = n_threads
    w.acc = <double*>malloc(n_threads * (pd.n_images * ACC_SIZE + ACC_PAD) * sizeof(double))
    w.rbuf = <double*>malloc(n_threads * R_STRIDE * sizeof(double))
    if (w.pix_image == NULL or w.pix_x == NULL or w.pix_y == NULL or w.counts == NULL
            or w.iota == NULL or w.e_bg == NULL or w.v_bg == NULL or w.image_start == NULL
            or w.comp == NULL or w.acc == NULL or w.rbuf == NULL):
        source_work_free(w)
        return 1
    count = 0
    w.const_term = 0.0
    for n in range(pd.n_images):
        w.image_start[n] = count
        bx = pd.box + 4 * (s * pd.n_images + n)
        for y in range(bx[2], bx[3] + 1):
            for x in range(bx[0], bx[1] + 1):
                pix_index = pd.pix_offset[n] + y * pd.nx[n] + x
                val = pd.pixels[pix_index]
                if val != val:
                    continue
                w.pix_image[count] = n
                w.pix_x[count] = <int>x
                w.pix_y[count] = <int>y
                w.counts[count] = val
                w.iota[count] = pd.iota[pd.iota_offset[n] + x]
                w.e_bg[count] = pd.sky[pix_index]
                w.v_bg[count] = 0.0
                w.const_term += val * log(w.iota[count]) - lgamma(val + 1.0)
                if not w.e_bg[count] > 0.0:
                    source_work_free(w)
                    return 4
                count += 1
    w.image_start[pd.n_images] = count
    w.n_pix = count
    # neighbours' expected rate and variance at the visited pixels
    for k in range(pd.nbr_ptr[s], pd.nbr_ptr[s + 1]):
        nb = pd.nbr_idx[k]
        for n in range(pd.n_images):
            pn = nb * pd.n_images + n
            bx = pd.box + 4 * pn
            if bx[1] < bx[0] or bx[3] < bx[2]:
                continue
            setup_components(pd, nb, n, pd.params + NP * nb, comp_nb)
            for p in range(w.image_start[n], w.image_start[n + 1]):
                if not box_contains(bx, w.pix_x[p], w.pix_y[p]):
                    continue
                pixel_profiles(comp_nb, pd.n_psf, w.pix_x[p], w.pix_y[p], 0, r)
                Es = comp_nb[CONST_OFF] * r[R_F1] + comp_nb[CONST_OFF + 4] * r[R_F2]
                E2s = (comp_nb[CONST_OFF + 1] * r[R_F1] * r[R_F1]
                       + comp_nb[CONST_OFF + 5] * r[R_F2] * r[R_F2])
                w.e_bg[p] += Es
                w.v_bg[p] += E2s - Es * Es
    return 0


cdef void source_work_free(SourceWork* w) noexcept nogil:
    free(w.pix_image)
    free(w.pix_x)
    free(w.pix_y)
    free(w.counts)
    free(w.iota)
    free(w.e_bg)
    free(w.v_bg)
    free(w.image_start)
    free(w.comp)
    free(w.acc)
    free(w.rbuf)
    memset(w, 0, sizeof(SourceWork))


cdef int elbo_eval(const Problem* pd, long s, const double* th, SourceWork* w, int mode,
                   double* value, double* grad, double* hess, int n_threads) noexcept nogil:
    """ELBO of source s at bound parameters ``th`` (its neighbours as in ``w``).

    mode 0: value; 1: value and gradient; 2: value, gradient and Hessian (44 x 44, row-major).
    Returns an ElboStatus.
    """
    cdef int n, t, tid, n_bad = 0, n_img = pd.n_images
    cdef long p, i
    cdef double* acc_t
    cdef double* acc0
    cdef double* r
    cdef double total
    if n_threads > w.acc_threads:
        n_threads = w.acc_threads
    if n_threads < 1:
        n_threads = 1
    for n in range(n_img):
        setup_components(pd, s, n, th, w.comp + n * COMP_STRIDE)
    memset(w.acc, 0, n_threads * (n_img * ACC_SIZE + ACC_PAD) * sizeof(double))
    with parallel(num_threads=n_threads):
        tid = omp_get_thread_num()
        acc_t = w.acc + tid * (n_img * ACC_SIZE + ACC_PAD)
        r = w.rbuf + tid * R_STRIDE
        for p in prange(w.n_pix, schedule="static"):
            n = w.pix_image[p]
            pixel_profiles(w.comp + n * COMP_STRIDE, pd.n_psf, w.pix_x[p], w.pix_y[p], mode, r)
            if pixel_accumulate(r, w.comp + n * COMP_STRIDE + CONST_OFF, w.counts[p], w.iota[p],
                                w.e_bg[p], w.v_bg[p], mode, acc_t + n * ACC_SIZE) <= 0.0:
                n_bad += 1
    if n_bad != 0:
        return 2
    # reduce the per-thread accumulators in a fixed order
    for t in range(1, n_threads):
        for i in range(n_img * ACC_SIZE):
            w.acc[i] += w.acc[t * (n_img * ACC_SIZE + ACC_PAD) + i]
    if mode >= 1:
        memset(grad, 0, NP * sizeof(double))
    if mode >= 2:
        memset(hess, 0, NP * NP * sizeof(double))
    total = w.const_term
    for n in range(n_img):
        acc0 = w.acc + n * ACC_SIZE
        total += acc0[A_VAL]
        if mode >= 1 and w.image_start[n + 1] > w.image_start[n]:
            assemble_image(pd, s, n, th, w.comp + n * COMP_STRIDE, acc0, mode, grad, hess)
    total -= kl_eval(pd, th, mode, grad, hess)
    value[0] = total
    if not isfinite(total):
        return 3
    if mode >= 1:
        for i in range(NP):
            if not isfinite(grad[i]):
                return 3
    if mode >= 2:
        for i in range(NP * NP):
            if not isfinite(hess[i]):
                return 3
    return 0


# ---------------------------------------------------------------------------------------------
# Python wrappers (tests and benchmarks)

from celestecli._kernels.problem cimport CyProblem

_STATUS_MESSAGES = {
    1: "out of memory",
    2: "non-positive expected pixel rate",
    3: "non-finite ELBO, gradient or Hessian",
    4: "non-positive sky under the source",
}


cdef class SourceEvaluator:
    """Repeated ELBO evaluations of one source, its neighbours fixed at their current values."""
    cdef CyProblem problem
    cdef SourceWork work
    cdef long s
    cdef int n_threads

    def __cinit__(self, CyProblem problem, long s, int n_threads=1):
        if not 0 <= s < problem.pd.n_sources:
            raise IndexError(f"source {s} out of range")
        self.problem = problem
        self.s = s
        self.n_threads = max(1, n_threads)
        cdef int status
        with nogil:
            status = source_work_init(&problem.pd, s, &self.work, self.n_threads)
        if status != 0:
            raise RuntimeError(f"source {s}: {_STATUS_MESSAGES.get(status, status)}")

    def __dealloc__(self):
        source_work_free(&self.work)

    @property
    def n_pixels(self):
        """Visited pixels (over all images) of this source."""
        return self.work.n_pix

    def evaluate(self, params, int mode=2, n_threads=None):
        """(value, gradient (44,) or None, Hessian (44, 44) or None) at bound ``params``."""
        cdef double[::1] th = np.ascontiguousarray(params, dtype=np.float64)
        if th.shape[0] != NP:
            raise ValueError(f"expected {NP} parameters, got {th.shape[0]}")
        cdef int nt = self.n_threads if n_threads is None else min(max(1, n_threads), self.n_threads)
        grad = np.zeros(NP)
        hess = np.zeros((NP, NP))
        cdef double[::1] g = grad
        cdef double[:, ::1] h = hess
        cdef double value = 0.0
        cdef int status
        with nogil:
            status = elbo_eval(&self.problem.pd, self.s, &th[0], &self.work, mode,
                               &value, &g[0], &h[0, 0], nt)
        if status != 0:
            raise FloatingPointError(f"source {self.s}: {_STATUS_MESSAGES.get(status, status)}")
        return value, (grad if mode >= 1 else None), (hess if mode >= 2 else None)


cdef object sky_image(CyProblem problem, int n):
    """A float64 (ny, nx) copy of image n's sky (nanomaggies)."""
    cdef Problem* pd = &problem.pd
    cdef long start = pd.pix_offset[n]
    return np.array(problem.arrays["sky"][start:start + pd.nx[n] * pd.ny[n]],
                    dtype=np.float64).reshape(pd.ny[n], pd.nx[n])


def expected_image(CyProblem problem, int n, sources=None):
    """E[G] (nanomaggies) over image n: sky plus every source's expected light inside its box.

    ``sources`` restricts the sum to some source indices (default: all).  Used by tests (among
    them the check that ``celeste simulate`` renders this light); the pixel loop runs without
    the GIL.
    """
    cdef Problem* pd = &problem.pd
    if not 0 <= n < pd.n_images:
        raise IndexError(f"image {n} out of range")
    out = sky_image(problem, n)
    cdef double[:, ::1] img = out
    cdef long[::1] idx = np.arange(pd.n_sources) if sources is None else np.asarray(sources, dtype=np.int64)
    cdef double comp[COMP_STRIDE]
    cdef double r[R_SIZE]
    cdef long k, s, x, y
    cdef const long* bx
    with nogil:
        for k in range(idx.shape[0]):
            s = idx[k]
            bx = pd.box + 4 * (s * pd.n_images + n)
            if bx[1] < bx[0] or bx[3] < bx[2]:
                continue
            setup_components(pd, s, n, pd.params + NP * s, comp)
            for y in range(bx[2], bx[3] + 1):
                for x in range(bx[0], bx[1] + 1):
                    pixel_profiles(comp, pd.n_psf, x, y, 0, r)
                    img[y, x] += comp[CONST_OFF] * r[R_F1] + comp[CONST_OFF + 4] * r[R_F2]
    return out


def total_elbo(CyProblem problem, sources):
    """ELBO of several sources jointly: the likelihood over the union of their patch boxes
    (every source of the problem contributing where its box covers a pixel) minus each listed
    source's KL.  Used to compare joint and single-source inference (MODEL.md 5.7 test)."""
    cdef Problem* pd = &problem.pd
    cdef long[::1] idx = np.asarray(sources, dtype=np.int64)
    cdef double comp[COMP_STRIDE]
    cdef double r[R_SIZE]
    cdef double total = 0.0, Es, E, V, x, io
    cdef long k, s, px, py, pix
    cdef int n, nx, ny
    cdef const long* bx
    cdef double[:, ::1] e_img
    cdef double[:, ::1] v_img
    cdef unsigned char[:, ::1] visit
    cdef double grad_dummy[NP]
    for n in range(pd.n_images):
        nx = pd.nx[n]
        ny = pd.ny[n]
        e_img = sky_image(problem, n)
        v_img = np.zeros((ny, nx))
        visit = np.zeros((ny, nx), dtype=np.uint8)
        with nogil:
            for k in range(idx.shape[0]):
                bx = pd.box + 4 * (idx[k] * pd.n_images + n)
                for py in range(bx[2], bx[3] + 1):
                    for px in range(bx[0], bx[1] + 1):
                        visit[py, px] = 1
            for s in range(pd.n_sources):
                bx = pd.box + 4 * (s * pd.n_images + n)
                if bx[1] < bx[0] or bx[3] < bx[2]:
                    continue
                setup_components(pd, s, n, pd.params + NP * s, comp)
                for py in range(bx[2], bx[3] + 1):
                    for px in range(bx[0], bx[1] + 1):
                        if not visit[py, px]:
                            continue
                        pixel_profiles(comp, pd.n_psf, px, py, 0, r)
                        Es = comp[CONST_OFF] * r[R_F1] + comp[CONST_OFF + 4] * r[R_F2]
                        e_img[py, px] += Es
                        v_img[py, px] += (comp[CONST_OFF + 1] * r[R_F1] * r[R_F1]
                                          + comp[CONST_OFF + 5] * r[R_F2] * r[R_F2] - Es * Es)
            for py in range(ny):
                for px in range(nx):
                    if not visit[py, px]:
                        continue
                    pix = pd.pix_offset[n] + py * nx + px
                    x = pd.pixels[pix]
                    if x != x:
                        continue
                    io = pd.iota[pd.iota_offset[n] + px]
                    E = e_img[py, px]
                    V = v_img[py, px]
                    total += (x * (log(io) + log(E) - 0.5 * V / (E * E)) - io * E
                              - lgamma(x + 1.0))
    for k in range(idx.shape[0]):
        total -= kl_eval(pd, pd.params + NP * idx[k], 0, grad_dummy, NULL)
    return total
