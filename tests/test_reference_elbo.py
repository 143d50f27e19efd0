"""Checks of the reference ELBO (tests/reference_elbo.py) on its own, so it can serve as an oracle.

Monte Carlo comparisons use 4 standard errors; derivatives are checked against central finite
differences along random directions.
"""

import math

import numpy as np
import pytest
from autograd import grad, jacobian
from reference_elbo import (
    BAND_COLOR,
    RefImage,
    RefPatch,
    RefPSF,
    _elbo_of_active,
    bound_to_free,
    brightness_moments,
    elbo,
    elbo_free_grad_hess,
    elbo_grad_hess,
    expected_loglik,
    free_to_bound,
    galaxy_profile,
    galaxy_shape_cov,
    kl_color_mixture,
    kl_logflux,
    kl_source,
    pixel_moments,
    shape_log_prior,
    star_profile,
)
from reference_problems import PIXELS_PER_DEG, random_problem
from scipy import stats

from celestecli.model import params as layout
from celestecli.model import priors, profiles

N_SIGMA = 4.0


def assert_mc_close(samples, expected):
    """The mean of the samples equals `expected` within N_SIGMA standard errors."""
    se = samples.std(ddof=1) / np.sqrt(len(samples))
    assert abs(samples.mean() - expected) < N_SIGMA * se, (samples.mean(), expected, se)


def a_source(rng, chi_star=0.6):
    """A source with moderate variational spreads (for Monte Carlo checks)."""
    p = layout.generic_init(150.0, 20.0)
    p[layout.THETA], p[layout.RHO], p[layout.PHI], p[layout.SIGMA] = 0.3, 0.6, 0.7, 2.5
    for i in range(2):
        p[layout.GAMMA[i]] = rng.uniform(1.0, 4.0)
        p[layout.ZETA[i]] = rng.uniform(0.02, 0.1)
        p[list(layout.BETA[i])] = rng.normal(0.5, 0.5, 4)
        p[list(layout.LAMBDA[i])] = rng.uniform(0.05, 0.4, 4)
        p[list(layout.KAPPA[i])] = rng.dirichlet(np.ones(8))
    p[list(layout.CHI)] = chi_star, 1.0 - chi_star
    return p


# --- (a) KL terms against Monte Carlo -------------------------------------------------------------

@pytest.mark.parametrize("i", [0, 1])
def test_kl_logflux_matches_monte_carlo(i):
    rng = np.random.default_rng(10 + i)
    gamma, zeta = 2.7, 0.3
    lnr = rng.normal(gamma, np.sqrt(zeta), 200_000)
    log_ratio = (stats.norm.logpdf(lnr, gamma, np.sqrt(zeta))
                 - stats.norm.logpdf(lnr, priors.LOGFLUX_MEAN[i], np.sqrt(priors.LOGFLUX_VAR[i])))
    assert_mc_close(log_ratio, kl_logflux(gamma, zeta, i))
    at_prior = kl_logflux(priors.LOGFLUX_MEAN[i], priors.LOGFLUX_VAR[i], i)
    assert at_prior == pytest.approx(0, abs=1e-14)


def _color_log_ratio(rng, beta, lam, kappa, i, n):
    """Samples of log q(k) q(c) - log p(k) p(c | k) under q, and the c samples."""
    k = rng.choice(8, size=n, p=kappa / kappa.sum())
    c = rng.normal(beta, np.sqrt(lam), (n, 4))
    log_prior_c = np.empty(n)
    for d in range(8):
        sel = k == d
        log_prior_c[sel] = stats.multivariate_normal.logpdf(
            c[sel], priors.COLOR_MEANS[i, d], priors.COLOR_COVS[i, d])
    log_q_c = stats.norm.logpdf(c, beta, np.sqrt(lam)).sum(axis=1)
    return (np.log(kappa[k]) + log_q_c - np.log(priors.COLOR_WEIGHTS[i, k]) - log_prior_c), c


@pytest.mark.parametrize("i", [0, 1])
def test_kl_color_mixture_matches_monte_carlo_and_bounds_true_kl(i):
    rng = np.random.default_rng(20 + i)
    beta = np.array([1.0, 0.8, 0.5, 0.3])
    lam = np.array([0.3, 0.1, 0.05, 0.2])
    kappa = rng.dirichlet(np.ones(8))
    log_ratio, c = _color_log_ratio(rng, beta, lam, kappa, i, 200_000)
    bound = kl_color_mixture(beta, lam, kappa, i)
    assert_mc_close(log_ratio, bound)
    # The auxiliary-variable bound is an upper bound of KL(q(c) || sum_d w_d N(Omega_d, Lambda_d)).
    log_mix = np.logaddexp.reduce(
        [np.log(priors.COLOR_WEIGHTS[i, d])
         + stats.multivariate_normal.logpdf(c, priors.COLOR_MEANS[i, d], priors.COLOR_COVS[i, d])
         for d in range(8)], axis=0)
    true_kl = stats.norm.logpdf(c, beta, np.sqrt(lam)).sum(axis=1) - log_mix
    assert true_kl.mean() + N_SIGMA * true_kl.std() / np.sqrt(len(c)) < bound


def test_kl_source_matches_monte_carlo_of_the_joint():
    rng = np.random.default_rng(30)
    p = a_source(rng, chi_star=0.4)
    n = 200_000
    chi = p[list(layout.CHI)]
    a = (rng.random(n) >= chi[0]).astype(int)  # 0 star, 1 galaxy
    log_ratio = np.log(chi[a]) - np.log(priors.TYPE_PRIOR[a])
    for i in range(2):
        sel = a == i
        m = sel.sum()
        gamma, zeta = p[layout.GAMMA[i]], p[layout.ZETA[i]]
        lnr = rng.normal(gamma, np.sqrt(zeta), m)
        log_ratio[sel] += (stats.norm.logpdf(lnr, gamma, np.sqrt(zeta)) - stats.norm.logpdf(
            lnr, priors.LOGFLUX_MEAN[i], np.sqrt(priors.LOGFLUX_VAR[i])))
        log_ratio[sel] += _color_log_ratio(rng, p[list(layout.BETA[i])], p[list(layout.LAMBDA[i])],
                                           p[list(layout.KAPPA[i])], i, m)[0]
    # the galaxy's shape is a point estimate: its branch pays -log p(shape)
    log_prior_shape = (
        stats.lognorm.logpdf(p[layout.SIGMA], priors.RADIUS_SD, scale=np.exp(priors.RADIUS_MEAN))
        + stats.beta.logpdf(p[layout.RHO], *priors.AXIS_RATIO_BETA)
        + stats.beta.logpdf(p[layout.THETA], *priors.FRAC_DEV_BETA))
    assert shape_log_prior(p[layout.THETA], p[layout.RHO], p[layout.SIGMA]) == pytest.approx(
        log_prior_shape, rel=1e-12)
    log_ratio[a == 1] -= log_prior_shape
    assert_mc_close(log_ratio, kl_source(p))


# --- (b) light profiles ---------------------------------------------------------------------------

def a_patch(rng, weights=(0.85, 0.12)):
    rot = np.array([[np.cos(0.4), -np.sin(0.4)], [np.sin(0.4), np.cos(0.4)]])
    psf = RefPSF(weights=np.array(weights), means=np.array([[0.1, -0.05], [-0.3, 0.2]]),
                 covs=np.stack([rot @ np.diag([1.4, 2.1]) @ rot.T, np.diag([6.0, 7.5])]))
    jac = PIXELS_PER_DEG * np.array([[0.3, 0.95], [-0.95, 0.3]]) @ np.diag([np.cos(0.35), 1.0])
    return RefPatch(J=jac, p0=np.array([100.0, 90.0]), u0=np.array([150.0, 20.0]),
                    box=(0, 200, 0, 180), psf=psf)


def grid(center, half):
    cx, cy = np.round(center).astype(int)
    yy, xx = np.mgrid[cy - half:cy + half + 1, cx - half:cx + half + 1]
    return xx.ravel().astype(float), yy.ravel().astype(float)


def test_galaxy_shape_cov_matches_model_md_formula_and_axes():
    rho, phi, sigma = 0.4, 0.7, 2.5
    cov = galaxy_shape_cov(rho, phi, sigma)
    c, s = np.cos(phi), np.sin(phi)
    expected = sigma**2 * np.array([[1 + (rho**2 - 1) * s**2, -(rho**2 - 1) * c * s],
                                    [-(rho**2 - 1) * c * s, 1 + (rho**2 - 1) * c**2]])
    np.testing.assert_allclose(cov, expected, rtol=1e-14)
    # major axis (variance sigma^2) along (cos phi, sin phi), i.e. from +x towards +y
    np.testing.assert_allclose(cov @ [c, s], sigma**2 * np.array([c, s]), rtol=1e-13)
    np.testing.assert_allclose(cov @ [-s, c], (sigma * rho) ** 2 * np.array([-s, c]), rtol=1e-13)


def test_star_profile_integrates_to_psf_weight_and_centres_on_mu():
    rng = np.random.default_rng(40)
    patch = a_patch(rng)
    p = layout.generic_init(150.0 + 2e-5, 20.0 - 1e-5)
    mu = patch.J @ (p[:2] - patch.u0) + patch.p0
    x, y = grid(mu, 60)
    f = star_profile(p, patch, x, y)
    weights = patch.psf.weights
    assert f.sum() == pytest.approx(weights.sum(), rel=1e-3)
    centroid = np.array([(f * x).sum(), (f * y).sum()]) / f.sum()
    np.testing.assert_allclose(centroid, mu + weights @ patch.psf.means / weights.sum(), atol=1e-6)


@pytest.mark.parametrize("theta", [0.01, 0.35, 0.99])
def test_galaxy_profile_integrates_to_psf_weight_with_expected_second_moment(theta):
    rng = np.random.default_rng(41)
    patch = a_patch(rng)
    p = layout.generic_init(150.0 + 2e-5, 20.0 - 1e-5)
    p[layout.THETA], p[layout.RHO], p[layout.PHI], p[layout.SIGMA] = theta, 0.4, 0.7, 2.5
    mu = patch.J @ (p[:2] - patch.u0) + patch.p0
    x, y = grid(mu, 90)
    f = galaxy_profile(p, patch, x, y)
    psf = patch.psf
    total = psf.weights.sum()
    assert f.sum() == pytest.approx(total, rel=1e-3)
    # second moment about mu: sum_k a_k (tau_k + xi_k xi_k^T) + A sum_i theta_i sum_j eta nu Sigma
    d = np.stack([x - mu[0], y - mu[1]])
    moment = (f * d) @ d.T
    mult = sum(t * (w @ nu) for t, w, nu in zip(
        (theta, 1 - theta), profiles.GALAXY_WEIGHTS, profiles.GALAXY_VAR_MULT, strict=True))
    expected = (np.einsum("k,kab->ab", psf.weights, psf.covs)
                + np.einsum("k,ka,kb->ab", psf.weights, psf.means, psf.means)
                + total * mult * galaxy_shape_cov(0.4, 0.7, 2.5))
    np.testing.assert_allclose(moment, expected, rtol=1e-3)


def test_profiles_at_a_pixel_match_scipy_densities():
    rng = np.random.default_rng(42)
    patch = a_patch(rng)
    p = layout.generic_init(150.0 + 2e-5, 20.0 - 1e-5)
    p[layout.THETA], p[layout.RHO], p[layout.PHI], p[layout.SIGMA] = 0.3, 0.5, -1.2, 1.7
    mu = patch.J @ (p[:2] - patch.u0) + patch.p0
    m = np.round(mu) + [1, -2]
    psf = patch.psf
    star = sum(psf.weights[k] * stats.multivariate_normal.pdf(m, mu + psf.means[k], psf.covs[k])
               for k in range(2))
    shape = galaxy_shape_cov(0.5, -1.2, 1.7)
    gal = sum(t * psf.weights[k] * eta * stats.multivariate_normal.pdf(
        m, mu + psf.means[k], psf.covs[k] + nu * shape)
        for t, ws, nus in zip((0.3, 0.7), profiles.GALAXY_WEIGHTS, profiles.GALAXY_VAR_MULT,
                              strict=True)
        for eta, nu in zip(ws, nus, strict=True) for k in range(2))
    assert star_profile(p, patch, m[:1], m[1:])[0] == pytest.approx(star, rel=1e-12)
    assert galaxy_profile(p, patch, m[:1], m[1:])[0] == pytest.approx(gal, rel=1e-12)


# --- (c) pixel moments against Monte Carlo over q -------------------------------------------------

def band_flux(lnr, c, band):
    """l_b from MODEL.md 2.1 written out band by band: l_r = r, l_i = r e^c3, ..."""
    r = np.exp(lnr)
    return [r * np.exp(-c[..., 1] - c[..., 0]), r * np.exp(-c[..., 1]), r,
            r * np.exp(c[..., 2]), r * np.exp(c[..., 2] + c[..., 3])][band]


def test_band_table_matches_the_project_layout():
    np.testing.assert_array_equal(BAND_COLOR, layout.band_coefficients())


@pytest.mark.parametrize("band", [0, 1, 2, 3, 4])
def test_brightness_moments_match_monte_carlo(band):
    rng = np.random.default_rng(50 + band)
    p = a_source(rng)
    e, e2 = brightness_moments(p, band)
    for i in range(2):
        lnr = rng.normal(p[layout.GAMMA[i]], np.sqrt(p[layout.ZETA[i]]), 400_000)
        c = rng.normal(p[list(layout.BETA[i])], np.sqrt(p[list(layout.LAMBDA[i])]), (400_000, 4))
        flux = band_flux(lnr, c, band)
        assert_mc_close(flux, e[i])
        assert_mc_close(flux**2, e2[i])


@pytest.mark.parametrize("band", [0, 3])
def test_pixel_moments_match_monte_carlo_over_q(band):
    rng = np.random.default_rng(60 + band)
    patch = a_patch(rng)
    sources = [a_source(rng, chi_star=0.7), a_source(rng, chi_star=0.3)]
    sources[1][:2] = sources[0][:2] + [3 / PIXELS_PER_DEG, 1 / PIXELS_PER_DEG]
    mu = patch.J @ (sources[0][:2] - patch.u0) + patch.p0
    cx, cy = np.round(mu).astype(int)
    xs = np.array([cx, cx + 1, cx - 2, cx + 30])
    ys = np.array([cy, cy + 2, cy - 1, cy])
    image = RefImage(band=band, x=xs, y=ys, counts=np.zeros(4), iota=np.full(4, 300.0),
                     sky=np.array([0.2, 0.21, 0.19, 0.2]))
    # the second source's box excludes the last pixel
    patch2 = RefPatch(J=patch.J, p0=patch.p0, u0=patch.u0, box=(cx - 10, cx + 10, cy - 10, cy + 10),
                      psf=patch.psf)
    mean, var = pixel_moments(sources, image, [patch, patch2])

    n = 400_000
    rate = np.tile(image.sky, (n, 1))
    for p, pt, in_box in ((sources[0], patch, [1, 1, 1, 1]), (sources[1], patch2, [1, 1, 1, 0])):
        f = np.stack([star_profile(p, pt, xs.astype(float), ys.astype(float)),
                      galaxy_profile(p, pt, xs.astype(float), ys.astype(float))]) * in_box
        a = (rng.random(n) >= p[layout.CHI[0]]).astype(int)
        lnr = rng.normal(p[np.array(layout.GAMMA)[a]], np.sqrt(p[np.array(layout.ZETA)[a]]))
        beta = np.where(a[:, None] == 0, p[list(layout.BETA[0])], p[list(layout.BETA[1])])
        lam = np.where(a[:, None] == 0, p[list(layout.LAMBDA[0])], p[list(layout.LAMBDA[1])])
        c = rng.normal(beta, np.sqrt(lam))
        rate += band_flux(lnr, c, band)[:, None] * f[a]
    for m in range(4):
        assert_mc_close(rate[:, m], mean[m])
        dev2 = (rate[:, m] - rate[:, m].mean()) ** 2
        assert_mc_close(dev2 * n / (n - 1), var[m])
    # the far pixel gets only source 0 (and the sky)
    only_first = pixel_moments(sources[:1], image, [patch])
    assert mean[3] == only_first[0][3] and var[3] == only_first[1][3]


def test_expected_loglik_of_one_pixel_by_hand():
    rng = np.random.default_rng(70)
    patch = a_patch(rng)
    p = a_source(rng)
    mu = patch.J @ (p[:2] - patch.u0) + patch.p0
    x, y = np.round(mu[:1]).astype(int), np.round(mu[1:]).astype(int)
    image = RefImage(band=2, x=x, y=y, counts=np.array([517.0]), iota=np.array([400.0]),
                     sky=np.array([0.15]))
    fs = star_profile(p, patch, x.astype(float), y.astype(float))[0]
    fg = galaxy_profile(p, patch, x.astype(float), y.astype(float))[0]
    chi = p[list(layout.CHI)]
    e = [np.exp(p[layout.GAMMA[i]] + p[layout.ZETA[i]] / 2) for i in range(2)]  # r band
    e2 = [np.exp(2 * p[layout.GAMMA[i]] + 2 * p[layout.ZETA[i]]) for i in range(2)]
    mean = chi[0] * e[0] * fs + chi[1] * e[1] * fg
    var = chi[0] * e2[0] * fs**2 + chi[1] * e2[1] * fg**2 - mean**2
    eg = 0.15 + mean
    expected = 517 * (np.log(400) + np.log(eg) - var / (2 * eg**2)) - 400 * eg - math.lgamma(518)
    assert expected_loglik([p], [image], [[patch]]) == pytest.approx(expected, rel=1e-12)
    assert elbo(p[None], [image], [[patch]]) == pytest.approx(expected - kl_source(p), rel=1e-12)


# --- (d) constrained <-> free ---------------------------------------------------------------------

def test_free_bound_round_trips_and_bounds():
    rng = np.random.default_rng(80)
    center = np.array([210.3, -45.2])
    for kind in ("star", "galaxy", "mixed"):
        bound = random_problem(rng, 1, 1, kind).params[0]
        bound[:2] = center + rng.uniform(-0.9e-4, 0.9e-4, 2)
        free = bound_to_free(bound, center)
        assert free.shape == (layout.N_FREE,)
        np.testing.assert_allclose(free_to_bound(free, center), bound, rtol=1e-12, atol=1e-13)
    for scale in (0.5, 5.0, 60.0):
        free = rng.normal(0.0, scale, layout.N_FREE)
        bound = free_to_bound(free, center)
        assert bound.shape == (layout.N_PARAMS,)
        lower = np.concatenate([center - layout.POS_HALF_WIDTH_DEG, layout.BOX_LOWER])
        upper = np.concatenate([center + layout.POS_HALF_WIDTH_DEG, layout.BOX_UPPER])
        assert np.all((bound[:26] >= lower) & (bound[:26] <= upper))
        for idx, lb in ((layout.CHI, layout.CHI_LOWER), (layout.KAPPA[0], layout.KAPPA_LOWER),
                        (layout.KAPPA[1], layout.KAPPA_LOWER)):
            assert bound[list(idx)].sum() == pytest.approx(1.0, abs=1e-14)
            assert np.all(bound[list(idx)] >= lb)
        if scale < 10:  # away from saturation the inverse recovers the free vector
            np.testing.assert_allclose(bound_to_free(bound, center), free, atol=1e-6)
    # free 0 is the box centre and the uniform simplex
    mid = free_to_bound(np.zeros(layout.N_FREE), center)
    np.testing.assert_allclose(mid[:26], np.concatenate(
        [center, (layout.BOX_LOWER + layout.BOX_UPPER) / 2]), rtol=1e-15)
    np.testing.assert_allclose(mid[list(layout.KAPPA[1])], 1 / 8, rtol=1e-14)


# --- derivatives against finite differences -------------------------------------------------------

def param_scales():
    """Natural step scale of each bound entry: a tenth of a pixel for positions, 1 otherwise."""
    scale = np.ones(layout.N_PARAMS)
    scale[:2] = 0.1 / PIXELS_PER_DEG
    scale[list(layout.ZETA) + list(layout.LAMBDA[0] + layout.LAMBDA[1])] = 0.01
    scale[list(layout.CHI + layout.KAPPA[0] + layout.KAPPA[1])] = 0.01
    return scale


@pytest.mark.parametrize("kind", ["star", "galaxy", "mixed"])
def test_bound_gradient_and_hessian_match_finite_differences(kind):
    rng = np.random.default_rng({"star": 90, "galaxy": 91, "mixed": 92}[kind])
    prob = random_problem(rng, 3, 2, kind)
    value, g, h = elbo_grad_hess(prob.params, prob.images, prob.patches)
    assert value == elbo(prob.params, prob.images, prob.patches)
    assert g.shape == (44,) and h.shape == (44, 44) and np.all(np.isfinite(h))
    np.testing.assert_array_equal(h, h.T)

    def fun(p):
        return _elbo_of_active(p, prob.params, prob.images, prob.patches, 0)

    gradient = grad(fun)
    p0 = prob.params[0]
    for _ in range(3):
        plus = p0 + rng.normal(size=44) * param_scales() * 1e-4
        minus = 2 * p0 - plus
        d = (plus - minus) / 2  # the step actually taken (RA ~ 1e2 deg rounds the nominal one)
        fd = (fun(plus) - fun(minus)) / 2
        assert fd == pytest.approx(g @ d, rel=1e-6)
        fd_grad = (gradient(plus) - gradient(minus)) / 2
        np.testing.assert_allclose(fd_grad * param_scales(), (h @ d) * param_scales(),
                                   rtol=1e-5, atol=1e-6 * np.abs(h @ d * param_scales()).max())


def test_free_gradient_and_hessian_match_finite_differences():
    rng = np.random.default_rng(93)
    prob = random_problem(rng, 2, 2, "mixed")
    free = bound_to_free(prob.params[0], prob.pos_center)
    value, g, h = elbo_free_grad_hess(free, prob.params, prob.images, prob.patches, prob.pos_center)
    assert value == pytest.approx(elbo(prob.params, prob.images, prob.patches), rel=1e-13)
    assert g.shape == (41,) and h.shape == (41, 41)

    def fun(f):
        return _elbo_of_active(free_to_bound(f, prob.pos_center), prob.params, prob.images,
                               prob.patches, 0)

    gradient = grad(fun)
    for _ in range(3):
        d = rng.normal(size=41) * 1e-4
        assert (fun(free + d) - fun(free - d)) / 2 == pytest.approx(g @ d, rel=1e-6)
        np.testing.assert_allclose((gradient(free + d) - gradient(free - d)) / 2, h @ d,
                                   rtol=1e-5, atol=1e-6 * np.abs(h @ d).max())
    # chain rule of MODEL.md 4.9 for the gradient: g_free = Jt^T g_bound
    _, g_bound, _ = elbo_grad_hess(prob.params, prob.images, prob.patches)
    jt = jacobian(free_to_bound)(free, prob.pos_center)
    assert jt.shape == (44, 41)
    np.testing.assert_allclose(g, jt.T @ g_bound, rtol=1e-6, atol=1e-6 * np.abs(g).max())


# --- (e) sanity: a star at the truth on noiseless data --------------------------------------------

def test_star_at_truth_beats_perturbed_position_and_flux():
    rng = np.random.default_rng(100)
    prob = random_problem(rng, 1, 2, "star", noise=False)
    truth = prob.truth
    base = expected_loglik(truth, prob.images, prob.patches)
    dec = truth[0, 1]
    for ddeg in ([0.5 / PIXELS_PER_DEG / np.cos(np.radians(dec)), 0], [0, -0.5 / PIXELS_PER_DEG]):
        moved = truth.copy()
        moved[0, :2] += ddeg
        assert expected_loglik(moved, prob.images, prob.patches) < base - 1.0
    for factor in (0.8, 1.25):
        brighter = truth.copy()
        brighter[0, list(layout.GAMMA)] += np.log(factor)
        assert expected_loglik(brighter, prob.images, prob.patches) < base - 1.0
    # and the galaxy hypothesis of the same source fits worse
    as_galaxy = truth.copy()
    as_galaxy[0, list(layout.CHI)] = layout.CHI_LOWER, 1 - layout.CHI_LOWER
    assert expected_loglik(as_galaxy, prob.images, prob.patches) < base
