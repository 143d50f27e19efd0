"""Linear-response posterior covariances of log r flux and colours (infer/uncertainty.py)."""

import numpy as np
import pytest
from sim_fields import source, write_sources
from test_infer import FID, field_problem, optimize, problem_with_a_skyless_source, run_cli

from celestecli._kernels.elbo import SourceEvaluator
from celestecli._kernels.transform import py_free_derivatives, py_to_bound, py_to_free
from celestecli.catalog.io import read_catalog
from celestecli.infer.settings import ELBO_TRUST_REGION
from celestecli.infer.uncertainty import (
    LOG_R,
    PINNED_SHARE,
    block_covariance,
    conditional_position_variance,
    mean_field_covariance,
    posterior_covariance,
)
from celestecli.model import params as layout

TIGHT = dict(ELBO_TRUST_REGION, x_tol=0.0, f_tol=0.0, g_tol=1e-6, max_iter=300)
GALAXY_BLOCK = [0, 1, layout.THETA, layout.RHO, layout.PHI, layout.SIGMA, layout.GAMMA[1],
                layout.ZETA[1], *layout.BETA[1], *layout.LAMBDA[1]]
STAR_BLOCK = [0, 1, layout.GAMMA[0], layout.ZETA[0], *layout.BETA[0], *layout.LAMBDA[0]]


def fitted_source(tmp_path, star, log_flux_r, seed=3):
    write_sources(tmp_path, FID, [source(47.3, 48.6, star, log_flux_r, sigma_px=2.0)],
                  seed=seed, width=64, height=64)
    problem = field_problem(tmp_path)
    status, _, _ = optimize(problem, [0], TIGHT)
    assert status[0] == 0
    value, gradient, hessian = SourceEvaluator(problem.cy, 0).evaluate(problem.params[0], 2)
    centre = np.array([problem.entries.ra[0], problem.entries.dec[0]])
    return problem, gradient, hessian, centre


def box_share_of(bound, centre, index):
    """Where entry ``index`` of ``bound`` lies in its box, 0 (lower) to 1 (upper)."""
    if index < 2:
        half = layout.POS_HALF_WIDTH_DEG
        lo, hi = centre[index] - half, centre[index] + half
    else:
        lo, hi = layout.BOX_LOWER[index - 2], layout.BOX_UPPER[index - 2]
    return (bound[index] - lo) / (hi - lo)


def box_share(problem, index):
    """Where entry ``index`` of source 0 lies in its box, 0 (lower) to 1 (upper)."""
    centre = (problem.entries.ra[0], problem.entries.dec[0])
    return box_share_of(problem.params[0], centre, index)


def assert_same_covariance(actual, expected, rtol):
    """Equal to ``rtol`` relative to the SDs (the position's variances are ~1e-10 deg^2, the
    flux's ~1e-3): entries compared as correlations, after the diagonals themselves."""
    sd = np.sqrt(np.diag(expected))
    np.testing.assert_allclose(np.diag(actual), np.diag(expected), rtol=rtol)
    np.testing.assert_allclose(actual / np.outer(sd, sd), expected / np.outer(sd, sd), atol=rtol)


def unit(i):
    """The i-th unit vector of the free coordinates."""
    e = np.zeros(layout.N_FREE)
    e[i] = 1.0
    return e


@pytest.mark.parametrize("star, log_flux_r", [(False, 2.0), (True, 5.0)], ids=["galaxy", "star"])
def test_it_is_minus_the_inverse_hessian_over_the_entries_inside_their_box(tmp_path, star,
                                                                           log_flux_r):
    # At the optimum (gradient zero) the free-coordinate chain rule must cancel for entries
    # inside their box, and an entry pinned on a bound (a bright star's log r variance on its
    # 1e-4 floor, a galaxy's fracDeV on 0.01) must drop out: the covariance is (-H)^-1 of the
    # bound Hessian over the other entries, at the means' rows.
    problem, gradient, hessian, centre = fitted_source(tmp_path, star, log_flux_r)
    type_index = 0 if star else 1
    assert (problem.params[0, layout.CHI[0]] >= 0.5) == star
    block = STAR_BLOCK if star else GALAXY_BLOCK
    shares = np.array([box_share(problem, i) for i in block])
    pinned = (shares < 1e-6) | (shares > 1.0 - 1e-6)
    assert not np.any(pinned[:2])  # the position is free
    inside = [i for i, on_bound in zip(block, pinned, strict=True) if not on_bound]
    means = [inside.index(i) for i in (0, 1, layout.GAMMA[type_index], *layout.BETA[type_index])]
    expected = np.linalg.inv(-hessian[np.ix_(inside, inside)])[np.ix_(means, means)]
    cov = block_covariance(problem.params[0], gradient, hessian, centre, type_index)
    assert_same_covariance(cov, expected, rtol=1e-5)
    zeta = problem.params[0, layout.ZETA[type_index]]
    if star:  # measured below the box's floor, where q's variance is stuck
        assert pinned[block.index(layout.ZETA[0])]
        assert cov[LOG_R, LOG_R] < 0.5 * zeta
    else:  # the flux trades off against the shape: wider than q's own variance
        assert cov[LOG_R, LOG_R] > 2.0 * zeta
    # the position's variance given everything else (the flagged sources' fallback) is below
    # its marginal one, as for any concave quadratic
    assert np.all(conditional_position_variance(hessian) < np.diag(cov)[:2])


def test_no_covariance_where_the_elbo_is_not_concave_or_a_mean_is_pinned(tmp_path):
    problem, gradient, hessian, centre = fitted_source(tmp_path, True, 3.0)
    bound = problem.params[0].copy()
    assert block_covariance(bound, gradient, hessian, centre, 0) is not None
    assert block_covariance(bound, gradient, -hessian, centre, 0) is None
    bound[layout.GAMMA[0]] = layout.BOX_LOWER[layout.GAMMA[0] - 2]  # r flux on its floor
    assert block_covariance(bound, gradient, hessian, centre, 0) is None
    # so is a position within PINNED_SHARE of its box's edge (RA's lower, Dec's upper): the box
    # leaves it no spread, though with this gradient its SD would read as if it were free
    for index, share in ((0, 1e-8), (1, 1.0 - 1e-8)):
        bound = problem.params[0].copy()
        half = layout.POS_HALF_WIDTH_DEG
        bound[index] = centre[index] - half + share * 2.0 * half
        assert block_covariance(bound, gradient, hessian, centre, 0) is None, index


def test_no_covariance_for_a_mean_held_against_its_bound(tmp_path):
    # Where the ELBO's optimum along a mean lies beyond its box, the optimizer leaves it short
    # of the bound (the logistic's slope vanishes there), not within PINNED_SHARE of it, and
    # the free-coordinate inverse would read that slope as a tiny SD: a fifth of the free one
    # for this star 1e-4 of the box from its edge (a few 0.001 arcsec for faint sources of the
    # synthetic benchmark, whose true offsets are then up to hundreds of those SDs).
    problem, gradient, hessian, centre = fitted_source(tmp_path, True, 3.0)
    sd = np.sqrt(np.diag(block_covariance(problem.params[0], gradient, hessian, centre, 0)))
    evaluator = SourceEvaluator(problem.cy, 0, 1)
    width = 2.0 * layout.POS_HALF_WIDTH_DEG
    for index in (0, 1):  # RA, Dec
        bound = problem.params[0].copy()
        bound[index] -= 0.3 * sd[index]  # its optimum 0.3 SD up
        _, g, h = evaluator.evaluate(bound, 2)
        for share, held in ((1.0 - 1e-4, True), (1.0 - 1e-3, True), (0.9, False)):
            box = centre.copy()  # the box's centre, putting ``bound`` at ``share`` of it
            box[index] = bound[index] - share * width + 0.5 * width
            cov = block_covariance(bound, g, h, box, 0)
            assert (cov is None) == held, (index, share)
        assert np.sqrt(cov[index, index]) == pytest.approx(sd[index], rel=0.05)


def test_no_covariance_off_the_optimum_by_more_than_its_spread(tmp_path):
    # a source whose Newton step would move a mean by more than its SD is not described by the
    # curvature there (crowded sources after the sweep, their neighbours having moved last)
    problem, gradient, hessian, centre = fitted_source(tmp_path, False, 2.0)
    evaluator = SourceEvaluator(problem.cy, 0)
    sd = np.sqrt(block_covariance(problem.params[0], gradient, hessian, centre, 1)[LOG_R, LOG_R])
    for shift, described in ((0.3, True), (3.0, False)):
        bound = problem.params[0].copy()
        bound[layout.GAMMA[1]] += shift * sd
        _, g, h = evaluator.evaluate(bound, 2)
        assert (block_covariance(bound, g, h, centre, 1) is not None) == described, shift
    # posterior_covariance then keeps q's variances and gives the position its variance given
    # everything else, 1/(-H_ii) of the bound Hessian there (to rounding: its own thread count)
    problem.params[0] = bound
    cov, linear_response = posterior_covariance(problem, np.array([0]), 1)
    assert not linear_response[0]
    position = -1.0 / np.diag(h)[:2]
    assert np.all(position > 0.0)
    np.testing.assert_allclose(cov[0], mean_field_covariance(bound[None], position[None])[0],
                               rtol=1e-10, atol=0.0)


def test_the_step_is_weighed_in_bound_coordinates_at_one_sd(tmp_path):
    # Moved off its optimum by k of its SDs in RA, log r or a colour, the source's Newton step is
    # about k SDs back: it keeps the linear response at 0.75 SD either way and loses it at 1.25.
    # The step is taken in free coordinates, so it must be scaled back to bound ones by db/df
    # (2.2 for this log r mean, 5 for the colour: unscaled, 1.25 SDs would read as 0.6 or 0.25)
    # and weighed against the SD, not the variance (0.002 for log r).
    problem, gradient, hessian, centre = fitted_source(tmp_path, False, 2.0)
    evaluator = SourceEvaluator(problem.cy, 0)
    sd = np.sqrt(np.diag(block_covariance(problem.params[0], gradient, hessian, centre, 1)))
    moments = ((0, 0), (layout.GAMMA[1], LOG_R), (layout.BETA[1][1], LOG_R + 2))  # ra, ln r, g-r
    for index, moment in moments:
        for shift, described in ((-0.75, True), (0.75, True), (-1.25, False), (1.25, False)):
            bound = problem.params[0].copy()
            bound[index] += shift * sd[moment]
            _, g, h = evaluator.evaluate(bound, 2)
            assert (block_covariance(bound, g, h, centre, 1) is not None) == described, (
                index, shift)


def test_it_matches_the_spread_of_fits_over_noise_draws(tmp_path):
    # Refit one galaxy in 20 noise draws: the fitted log r fluxes and positions scatter as the
    # linear-response SDs say (within the 16% a 20-draw SD carries, and a little bias), where
    # q's own log r SD is less than half of it (mean field misses the flux's trade-off with the
    # shape).  The position hardly trades off with anything of an isolated source: its variance
    # given the rest (the flagged sources' fallback) is within 10% of the marginal one.
    fitted, response, mean_field = [], [], []
    for seed in range(20):
        write_sources(tmp_path / str(seed), FID, [source(47.3, 48.6, False, 3.0, sigma_px=2.0)],
                      seed=seed, width=64, height=64)
        problem = field_problem(tmp_path / str(seed))
        optimize(problem, [0])
        assert problem.params[0, layout.CHI[1]] > 0.5
        fitted.append(problem.params[0, [0, 1, layout.GAMMA[1]]])
        covariance, linear_response = posterior_covariance(problem, np.array([0]), 1)
        assert linear_response[0]
        response.append(np.diag(covariance[0])[:3])
        _, _, hessian = SourceEvaluator(problem.cy, 0).evaluate(problem.params[0], 2)
        mean_field.append(np.diag(mean_field_covariance(
            problem.params[[0]], conditional_position_variance(hessian)[None])[0])[:3])
    spread = np.std(fitted, axis=0, ddof=1)  # ra, dec, log r
    response_sd = np.sqrt(np.median(response, axis=0))
    mean_field_sd = np.sqrt(np.median(mean_field, axis=0))
    np.testing.assert_allclose(response_sd, spread, rtol=0.35)
    assert mean_field_sd[2] < 0.5 * spread[2]
    np.testing.assert_allclose(mean_field_sd[:2], response_sd[:2], rtol=0.1)


def test_infer_writes_linear_response_uncertainties_and_says_so(tmp_path):
    # a bright star measures its r flux to better than q's floor of 0.01 in ln r
    write_sources(tmp_path, FID, [source(30.0, 40.0, True, 5.0), source(60.0, 55.0, False, 3.0)],
                  width=96, height=96, seed=2)
    out = tmp_path / "c.fits"
    run = run_cli("infer", str(FID), "--data-dir", str(tmp_path), "-o", str(out))
    assert run.returncode == 0, run.stderr
    catalog = read_catalog(out)
    assert catalog.meta["provenance"].extra["UNCERT"] == "linear-response"
    catalog.sort("x")
    assert list(catalog["is_star"] > 0.5) == [True, False]
    assert catalog["log_flux_r_stderr"][0] < 0.5 * np.sqrt(layout.BOX_LOWER[layout.ZETA[0] - 2])
    assert catalog["log_flux_r_stderr"][1] > 0.0
    # the position's SDs come from the same inverse: the bright star's are the smaller
    for column in ("ra_err_arcsec", "dec_err_arcsec"):
        assert 0.0 < catalog[column][0] < catalog[column][1] < 0.1, column
    assert list(catalog["flags"]) == [0, 0]


def test_the_position_variance_given_the_rest_is_none_where_not_concave():
    hessian = np.diag(np.full(layout.N_PARAMS, -1.0))
    hessian[0, 0], hessian[1, 1] = -4e10, 2.5e10  # concave in RA, convex in Dec
    hessian[0, 1] = hessian[1, 0] = 1e10  # the other entries do not enter
    np.testing.assert_array_equal(conditional_position_variance(hessian), [2.5e-11, np.nan])


def test_off_a_stationary_point_it_follows_the_optimizers_free_coordinates():
    # Joint passes leave a source short of its own stationary point (its neighbours move after
    # it), so the gradient term of the box transform's chain rule counts: the covariance must be
    # the optimizer's own free-coordinate Hessian (MODEL.md 4.9, the transform kernel) over the
    # block's free entries, scaled back by db/df at the means.  An entry pinned on its bound
    # drops out even where its gradient is zero; a non-finite Hessian gives no covariance.
    rng = np.random.default_rng(4)
    centre = np.array([10.0, 0.5])
    bound = layout.generic_init(*centre)
    bound[:2] = centre + [3e-5, -5e-5]
    bound[list(layout.CHI)] = 0.1, 0.9
    bound[layout.THETA] = layout.BOX_LOWER[layout.THETA - 2] + 1e-9  # pinned on its floor
    bound[layout.RHO], bound[layout.SIGMA], bound[layout.GAMMA[1]] = 0.6, 2.5, 2.0
    bound[list(layout.BETA[1])] = 1.0, 0.4, 0.2, 0.1
    bound[list(layout.LAMBDA[1])] = 0.05, 0.02, 1e-4 + 1e-3, 0.3  # ri near its floor, free
    a = rng.normal(size=(layout.N_PARAMS, layout.N_PARAMS))
    hessian = -(a @ a.T + layout.N_PARAMS * np.eye(layout.N_PARAMS))
    # each box entry's gradient pushes it towards its nearer bound (as the ri variance's to its
    # floor), where the transform's curvature keeps the ELBO concave in free coordinates
    shares = np.array([box_share_of(bound, centre, i) for i in range(26)])
    gradient = np.zeros(layout.N_PARAMS)
    gradient[:26] = -np.abs(rng.normal(0.0, 3.0, 26)) * np.sign(1.0 - 2.0 * shares)
    gradient[layout.THETA] = 0.0
    # the position's (per degree) pushes it by a few 1e-6 deg on this Hessian's scale: pushed
    # past its box's edge (1e-4 deg), it would be held there, with no covariance
    gradient[:2] *= 1e-4
    assert shares[layout.THETA] < PINNED_SHARE

    free = py_to_free(bound, centre)
    _, h_free = py_free_derivatives(free, centre, gradient, hessian)
    inside = [i for i in GALAXY_BLOCK if i != layout.THETA]  # box entries: free index = bound's
    means = [0, 1, layout.GAMMA[1], *layout.BETA[1]]
    # db/df at the means, by central differences of the transform (a logistic: the truncation
    # error is under step^2 / 6; a smaller step would lose the position's digits to RA's 10 deg)
    step = 1e-3
    slope = np.array([(py_to_bound(free + step * unit(i), centre)[i]
                       - py_to_bound(free - step * unit(i), centre)[i]) / (2 * step)
                      for i in means])
    rows = [inside.index(i) for i in means]
    expected = (np.linalg.inv(-h_free[np.ix_(inside, inside)])[np.ix_(rows, rows)]
                * np.outer(slope, slope))
    cov = block_covariance(bound, gradient, hessian, centre, 1)
    assert_same_covariance(cov, expected, rtol=1e-6)
    # the gradient term matters here: with a zero gradient the covariance would differ
    stationary = block_covariance(bound, np.zeros_like(gradient), hessian, centre, 1)
    assert not np.allclose(stationary, cov, rtol=1e-3)

    hessian[layout.RHO, layout.RHO] = np.nan
    assert block_covariance(bound, gradient, hessian, centre, 1) is None


def test_a_source_the_elbo_fails_on_keeps_its_mean_field_uncertainties(tmp_path):
    # no valid sky under the second source: its ELBO is not finite (optimizer status 2), and
    # the covariance pass must neither raise nor give it a linear-response covariance
    problem = problem_with_a_skyless_source(tmp_path)
    status, _, _ = optimize(problem, [0, 1])
    assert list(status) == [0, 2]
    cov, linear_response = posterior_covariance(problem, np.array([0, 1]), 2)
    assert list(linear_response) == [True, False]
    no_position = np.full((1, 2), np.nan)  # nor a Hessian to take its variance from
    np.testing.assert_array_equal(cov[1], mean_field_covariance(problem.params[[1]],
                                                                no_position)[0])
    mean_field = mean_field_covariance(problem.params[[0]], no_position)[0]
    assert not np.allclose(cov[0, LOG_R:, LOG_R:], mean_field[LOG_R:, LOG_R:])
    assert np.all(np.isfinite(cov[0]))
