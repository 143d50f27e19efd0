"""Slow reference ELBO in plain numpy (autograd), the test oracle for the ELBO kernel.

Written from MODEL.md (2.1-2.5, 3.3, 3.4, 4.9) independently of the Cython kernel: the model is
coded directly from its definitions and every derivative comes from autograd, so a disagreement with
the kernel's hand-derived gradient and Hessian points at one of them.  Star profile: variant A (the
PSF Gaussian mixture), so stars and galaxies both use the patch's ``psf``.

Coordinates: a pixel m = (x, y) has its centre at integers (0-based); a source at world position
u = (RA, Dec) in degrees sits at pixel mu = J (u - u0) + p0 in a patch.  Parameters are the 44
"bound" entries of ``celestecli.model.params`` (0-based).  Speed is irrelevant here (a few hundred
pixels and a few sources).
"""

from dataclasses import dataclass

import autograd.numpy as np
import numpy as onp
from autograd import grad, hessian
from autograd.scipy.special import gammaln

from celestecli.model import params as layout
from celestecli.model import priors, profiles


@dataclass
class RefPSF:
    """K-component Gaussian mixture in pixel units (weights need not sum to 1)."""

    weights: onp.ndarray  # (K,)
    means: onp.ndarray  # (K, 2) offsets (x, y) in pixels
    covs: onp.ndarray  # (K, 2, 2)


@dataclass
class RefPatch:
    """One (source, image) pair."""

    J: onp.ndarray  # (2, 2) d pixel / d world; rows pixel (x, y), columns world (RA, Dec) degrees
    p0: onp.ndarray  # (2,) pixel (x, y) of the linearisation point
    u0: onp.ndarray  # (2,) world (RA, Dec) at p0
    box: tuple  # (x0, x1, y0, y1) inclusive pixel ranges; empty if x1 < x0 or y1 < y0
    psf: RefPSF  # PSF mixture of this source in this image (stars and galaxies)


@dataclass
class RefImage:
    """The visited pixels of one image."""

    band: int  # 0..4 = u, g, r, i, z
    x: onp.ndarray  # (P,) int pixel x
    y: onp.ndarray  # (P,) int pixel y
    counts: onp.ndarray  # (P,) observed electrons
    iota: onp.ndarray  # (P,) electrons per nanomaggy
    sky: onp.ndarray  # (P,) sky, nanomaggies


# ln l_b = ln r + sum_j BAND_COLOR[b, j] c_j, from MODEL.md 2.1:
# l_u = r e^(-c2-c1), l_g = r e^(-c2), l_r = r, l_i = r e^(c3), l_z = r e^(c3+c4).
BAND_COLOR = onp.array([[-1.0, -1.0, 0.0, 0.0],
                        [0.0, -1.0, 0.0, 0.0],
                        [0.0, 0.0, 0.0, 0.0],
                        [0.0, 0.0, 1.0, 0.0],
                        [0.0, 0.0, 1.0, 1.0]])

_GAMMA = list(layout.GAMMA)
_ZETA = list(layout.ZETA)
_BETA = [list(b) for b in layout.BETA]
_LAMBDA = [list(v) for v in layout.LAMBDA]
_CHI = list(layout.CHI)
_KAPPA = [list(k) for k in layout.KAPPA]
_N_BOX = 26  # bound entries 0..25 are box-constrained scalars


# --- light profiles -----------------------------------------------------------------------------

def in_box(box, x, y) -> onp.ndarray:
    """Boolean mask of the pixels (x, y) inside the inclusive box (x0, x1, y0, y1)."""
    x0, x1, y0, y1 = box
    return (x >= x0) & (x <= x1) & (y >= y0) & (y <= y1)


def source_pixel_position(p, patch: RefPatch):
    """mu = J (u - u0) + p0, the source's pixel position (x, y) in this patch."""
    return np.dot(patch.J, p[0:2] - patch.u0) + patch.p0


def _gaussian_mixture(x, y, weights, mx, my, c11, c12, c22):
    """sum_c weights[c] N((x, y); (mx, my)[c], [[c11, c12], [c12, c22]][c]) at each pixel."""
    dx = x[None, :] - mx[:, None]
    dy = y[None, :] - my[:, None]
    det = c11 * c22 - c12**2
    quad = (c22[:, None] * dx**2 - 2.0 * c12[:, None] * dx * dy + c11[:, None] * dy**2)
    dens = np.exp(-0.5 * quad / det[:, None]) / (2.0 * onp.pi * np.sqrt(det))[:, None]
    return np.dot(weights, dens)


def star_profile(p, patch: RefPatch, x, y):
    """f_star(m) = sum_k a_k N(m; mu + xi_k, tau_k) at pixels (x, y)."""
    mu = source_pixel_position(p, patch)
    psf = patch.psf
    return _gaussian_mixture(x, y, psf.weights, mu[0] + psf.means[:, 0], mu[1] + psf.means[:, 1],
                             psf.covs[:, 0, 0], psf.covs[:, 0, 1], psf.covs[:, 1, 1])


def galaxy_shape_cov(rho, phi, sigma):
    """Sigma = sigma^2 R(phi) diag(1, rho^2) R(phi)^T, major axis along (cos phi, sin phi)."""
    c, s = np.cos(phi), np.sin(phi)
    rot = np.array([[c, -s], [s, c]])
    return sigma**2 * np.dot(rot * np.array([1.0, rho**2]), rot.T)


def galaxy_profile(p, patch: RefPatch, x, y):
    """f_gal(m) = sum_i theta_i sum_j sum_k a_k eta_ij N(m; mu + xi_k, tau_k + nu_ij Sigma)."""
    mu = source_pixel_position(p, patch)
    psf = patch.psf
    shape = galaxy_shape_cov(p[layout.RHO], p[layout.PHI], p[layout.SIGMA])
    prototype, eta, nu = profiles.galaxy_components()
    is_dev = (prototype == profiles.DEV).astype(float)
    theta = p[layout.THETA]
    proto_weight = is_dev * theta + (1.0 - is_dev) * (1.0 - theta)  # (14,)
    # components indexed (k, j), flattened with j fastest
    weights = np.reshape(psf.weights[:, None] * (proto_weight * eta)[None, :], (-1,))
    n_j = len(eta)
    mx = onp.repeat(psf.means[:, 0], n_j) + mu[0]
    my = onp.repeat(psf.means[:, 1], n_j) + mu[1]

    def conv(a, b):
        return np.reshape(psf.covs[:, a, b][:, None] + nu[None, :] * shape[a, b], (-1,))

    return _gaussian_mixture(x, y, weights, mx, my, conv(0, 0), conv(0, 1), conv(1, 1))


# --- brightness and pixel moments ---------------------------------------------------------------

def brightness_moments(p, band: int):
    """(E[l_b | a=i], E[l_b^2 | a=i]) for i = star, galaxy, each of shape (2,).

    Under q, ln l_b | a=i is Normal(m, v) with m = gamma_i + sum_j I_bj beta_ji and
    v = zeta_i + sum_j I_bj^2 lambda_ji, so E[l] = exp(m + v/2) and E[l^2] = exp(2m + 2v).
    """
    coef = BAND_COLOR[band]
    first, second = [], []
    for i in range(2):
        m = p[_GAMMA[i]] + np.dot(coef, p[_BETA[i]])
        v = p[_ZETA[i]] + np.dot(coef**2, p[_LAMBDA[i]])
        first.append(np.exp(m + 0.5 * v))
        second.append(np.exp(2.0 * m + 2.0 * v))
    return np.stack(first), np.stack(second)


def source_moments(p, image: RefImage, patch: RefPatch):
    """(E_s, V_s) of one source at the image's visited pixels; zero outside the patch box."""
    inside = in_box(patch.box, image.x, image.y)
    if not inside.any():
        zero = onp.zeros(len(image.x))
        return zero, zero
    x, y = image.x.astype(float), image.y.astype(float)
    f = [star_profile(p, patch, x, y), galaxy_profile(p, patch, x, y)]
    e, e2 = brightness_moments(p, image.band)
    chi = p[_CHI]
    mean = chi[0] * e[0] * f[0] + chi[1] * e[1] * f[1]
    second = chi[0] * e2[0] * f[0] ** 2 + chi[1] * e2[1] * f[1] ** 2
    mask = inside.astype(float)
    return mean * mask, (second - mean**2) * mask


def pixel_moments(rows, image: RefImage, image_patches):
    """(E_G, V_G) at the image's visited pixels: the sky plus every source whose box holds them.

    rows: sequence of S parameter vectors; image_patches: the S patches of this image.
    """
    total_mean, total_var = image.sky, 0.0
    for p, patch in zip(rows, image_patches, strict=True):
        mean, var = source_moments(p, image, patch)
        total_mean = total_mean + mean
        total_var = total_var + var
    return total_mean, total_var


def expected_loglik(rows, images, patches):
    """sum over images and visited pixels of x (log iota + log E_G - V_G / (2 E_G^2)) - iota E_G
    - log Gamma(x + 1); patches[s][n] is the patch of source s in image n."""
    total = 0.0
    for n, image in enumerate(images):
        mean, var = pixel_moments(rows, image, [patches_s[n] for patches_s in patches])
        x = image.counts
        e_log = np.log(mean) - var / (2.0 * mean**2)
        total = total + np.sum(x * (np.log(image.iota) + e_log) - image.iota * mean
                               - gammaln(x + 1.0))
    return total


# --- KL of one source ---------------------------------------------------------------------------

def kl_type(chi):
    """KL(q(a) || Categorical(TYPE_PRIOR))."""
    return np.sum(chi * (np.log(chi) - np.log(priors.TYPE_PRIOR)))


def kl_logflux(gamma, zeta, i: int):
    """KL(Normal(gamma, zeta) || Normal(M_i, V_i)) of ln r given type i (zeta, V variances)."""
    m, v = priors.LOGFLUX_MEAN[i], priors.LOGFLUX_VAR[i]
    return 0.5 * (onp.log(v) - np.log(zeta) + (zeta + (gamma - m) ** 2) / v - 1.0)


def kl_color_component(beta, lam, i: int, d: int):
    """KL(Normal(beta, diag lam) || Normal(Omega_di, Lambda_di)) of the 4 colours."""
    cov = priors.COLOR_COVS[i, d]
    prec = onp.linalg.inv(cov)
    logdet = onp.linalg.slogdet(cov)[1]
    diff = priors.COLOR_MEANS[i, d] - beta
    return 0.5 * (np.dot(onp.diag(prec), lam) - 4.0 + np.dot(diff, np.dot(prec, diff))
                  + logdet - np.sum(np.log(lam)))


def kl_color_mixture(beta, lam, kappa, i: int):
    """Mean-field bound KL(q(k) q(c) || p(k) p(c | k)) of type i (auxiliary component k)."""
    weights = priors.COLOR_WEIGHTS[i]
    total = np.sum(kappa * (np.log(kappa) - np.log(weights)))
    for d in range(len(weights)):
        total = total + kappa[d] * kl_color_component(beta, lam, i, d)
    return total


def beta_log_density(x, a: float, b: float):
    log_beta = gammaln(a) + gammaln(b) - gammaln(a + b)
    return (a - 1.0) * np.log(x) + (b - 1.0) * np.log(1.0 - x) - log_beta


def shape_log_prior(theta, rho, sigma):
    """log p of a galaxy's shape: LogNormal radius, Beta axis ratio and de Vaucouleurs share."""
    var = priors.RADIUS_SD**2
    log_sigma = np.log(sigma)
    log_normal = -log_sigma - 0.5 * (onp.log(2.0 * onp.pi * var)
                                     + (log_sigma - priors.RADIUS_MEAN) ** 2 / var)
    return (log_normal + beta_log_density(rho, *priors.AXIS_RATIO_BETA)
            + beta_log_density(theta, *priors.FRAC_DEV_BETA))


def kl_source(p):
    """KL_s of MODEL.md 3.4: type, log-flux and colour-mixture KLs; the galaxy branch also
    pays -log p(shape)."""
    chi = p[_CHI]
    total = kl_type(chi)
    for i in range(2):
        per_type = (kl_logflux(p[_GAMMA[i]], p[_ZETA[i]], i)
                    + kl_color_mixture(p[_BETA[i]], p[_LAMBDA[i]], p[_KAPPA[i]], i))
        if i == 1:
            per_type = per_type - shape_log_prior(p[layout.THETA], p[layout.RHO],
                                                  p[layout.SIGMA])
        total = total + chi[i] * per_type
    return total


# --- ELBO and its derivatives -------------------------------------------------------------------

def _elbo_of_active(p_active, params, images, patches, active):
    rows = [p_active if s == active else onp.asarray(params[s], dtype=float)
            for s in range(len(params))]
    return expected_loglik(rows, images, patches) - kl_source(p_active)


def elbo(params, images, patches, active=0) -> float:
    """ELBO restricted to the given pixels: expected log-likelihood minus KL of source `active`.

    params: (S, 44) bound parameters; images: N RefImage; patches[s][n]: RefPatch.
    """
    params = onp.asarray(params, dtype=float)
    return float(_elbo_of_active(params[active], params, images, patches, active))


def _value_grad_hess(fun, at):
    value = float(fun(at))
    g = grad(fun)(at)
    h = hessian(fun)(at)
    return value, onp.asarray(g), 0.5 * (h + h.T)


def elbo_grad_hess(params, images, patches, active=0):
    """(value, gradient (44,), Hessian (44, 44)) w.r.t. params[active].

    All 44 entries are treated as independent (no simplex constraint); the Hessian is symmetrised.
    """
    params = onp.asarray(params, dtype=float)

    def fun(p):
        return _elbo_of_active(p, params, images, patches, active)

    return _value_grad_hess(fun, params[active])


def _box_bounds(pos_center):
    half = layout.POS_HALF_WIDTH_DEG
    lower = onp.concatenate([onp.asarray(pos_center, dtype=float) - half, layout.BOX_LOWER])
    upper = onp.concatenate([onp.asarray(pos_center, dtype=float) + half, layout.BOX_UPPER])
    return lower, upper


# (slice of the free vector, bound indices, lower bound) of the three simplexes
_SIMPLEXES = ((slice(26, 27), _CHI, layout.CHI_LOWER),
              (slice(27, 34), _KAPPA[0], layout.KAPPA_LOWER),
              (slice(34, 41), _KAPPA[1], layout.KAPPA_LOWER))


def _simplex_from_free(f, lower):
    """b = lower + (1 - n lower) softmax(f, 0), stabilised by subtracting max(f, 0)."""
    g = np.concatenate([f, onp.zeros(1)])
    g = g - np.max(g)
    z = np.exp(g) / np.sum(np.exp(g))
    return lower + (1.0 - len(z) * lower) * z


def free_to_bound(free, pos_center):
    """The 44 bound parameters from the 41 free ones (MODEL.md 4.9); autograd-differentiable.

    pos_center: (2,) centre of the position box (half-width params.POS_HALF_WIDTH_DEG).
    """
    lower, upper = _box_bounds(pos_center)
    box = lower + (upper - lower) / (1.0 + np.exp(-free[:_N_BOX]))
    parts = [box] + [_simplex_from_free(free[sl], lb) for sl, _, lb in _SIMPLEXES]
    return np.concatenate(parts)


def bound_to_free(bound, pos_center):
    """Inverse of free_to_bound: logit for the boxes, log-ratios to the last entry for simplexes."""
    bound = onp.asarray(bound, dtype=float)
    lower, upper = _box_bounds(pos_center)
    t = (bound[:_N_BOX] - lower) / (upper - lower)
    parts = [onp.log(t) - onp.log1p(-t)]
    for _, idx, lb in _SIMPLEXES:
        b = bound[idx] - lb
        parts.append(onp.log(b[:-1]) - onp.log(b[-1]))
    return onp.concatenate(parts)


def elbo_free_grad_hess(free, params, images, patches, pos_center, active=0):
    """(value, gradient (41,), Hessian (41, 41)) of the ELBO in free coordinates of `active`.

    params[active] is replaced by free_to_bound(free, pos_center); the other rows are fixed.
    """
    params = onp.asarray(params, dtype=float)

    def fun(f):
        return _elbo_of_active(free_to_bound(f, pos_center), params, images, patches, active)

    return _value_grad_hess(fun, onp.asarray(free, dtype=float))
