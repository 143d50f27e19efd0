"""Gaussian-mixture PSF fits to psField stamps (MODEL.md 6.2)."""

import numpy as np
import pytest
from shared_data import shared

from celestecli.model.psf_fit import (
    PsfGrid,
    PsfMixture,
    _mixture,
    _mixture_jacobian,
    fit_psf_mixture,
    shape_cov,
)
from celestecli.sdss.psfield import read_psfield


@pytest.fixture(scope="module")
def m2_psfield():
    return read_psfield(shared("sdss/2583/2/136/psField-002583-2-0136.fit"))


def test_fit_recovers_a_mixture_from_its_own_stamp():
    truth = PsfMixture(weights=np.array([0.7, 0.3]), means=np.array([[0.1, -0.2], [0.3, 0.4]]),
                       covs=np.array([shape_cov(0.8, 0.4, 1.2), shape_cov(0.9, -0.7, 2.6)]))
    fitted, rss = fit_psf_mixture(truth.stamp())
    assert rss < 1e-12
    np.testing.assert_allclose(fitted.weights, truth.weights, atol=1e-5)
    np.testing.assert_allclose(fitted.means, truth.means, atol=1e-5)
    np.testing.assert_allclose(fitted.covs, truth.covs, atol=1e-4)


def test_fit_jacobian_matches_finite_differences():
    """The least-squares fit's analytic Jacobian (mean, rho, phi, sigma, weight per component)
    against fourth-order central differences of the rendered mixture."""
    theta = np.array([0.1, -0.2, 0.8, 0.4, 1.2, 0.7, 0.3, 0.4, 0.6, -0.7, 2.6, 0.3])
    dy, dx = np.mgrid[-6:7, -6:7].astype(np.float64)

    def render(t):
        return _mixture(t).render(dx, dy).ravel()

    jac = _mixture_jacobian(theta, dx, dy)
    for q in range(theta.size):
        step = 1e-3
        e = np.zeros_like(theta)
        e[q] = step
        fd = (render(theta - 2 * e) - 8 * render(theta - e) + 8 * render(theta + e)
              - render(theta + 2 * e)) / (12 * step)
        np.testing.assert_allclose(jac[:, q], fd, rtol=0, atol=1e-9 * np.abs(fd).max(),
                                   err_msg=f"column {q}")


@pytest.mark.parametrize("band", range(5))
def test_real_stamps_fit_well_and_reproducibly(m2_psfield, band):
    stamp = m2_psfield.bands[band].stamp(1024.0, 744.0)
    mixture, rss = fit_psf_mixture(stamp)
    assert rss < 1e-3
    again, rss_again = fit_psf_mixture(stamp)
    np.testing.assert_array_equal(mixture.rows(), again.rows())
    # a realistic SDSS PSF: core of about 1 pixel sigma; two Gaussians miss a few per cent of
    # the flux in the PSF's extended wings
    core = np.sqrt(np.linalg.eigvalsh(mixture.covs[0]))
    assert 0.5 < core.min() <= core.max() < 2.0
    assert 0.94 < mixture.weights.sum() / np.clip(stamp, 0, None).sum() <= 1.0
    assert np.max(np.abs(mixture.stamp() - np.clip(stamp, 0, None))) < 0.1 * stamp.max()


def test_grid_gives_each_position_its_nearest_node(m2_psfield):
    grid = PsfGrid(m2_psfield.bands[2], (1489, 2048))
    assert grid.node(0, 0) == (0, 0)
    assert grid.node(2047, 1488) == (2, 3)
    near_corner = grid.mixture_at(10.0, 10.0)
    assert near_corner is grid.mixture_at(500.0, 400.0)  # same node, cached
    far_corner = grid.mixture_at(2000.0, 1400.0)
    assert not np.allclose(near_corner.covs, far_corner.covs)
    x, y = grid.node_position(2, 3)
    expected, _ = fit_psf_mixture(m2_psfield.bands[2].stamp(x, y))
    np.testing.assert_array_equal(far_corner.rows(), expected.rows())
