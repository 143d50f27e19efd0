"""The problem builder: neighbours, WCS linearisation, patch sizes, catalog initialisation."""

import numpy as np
import pytest
from astropy.wcs import WCS

from celestecli.infer.problem import (
    _neighbour_lists,
    _overlapping_pairs,
    _visited_pixels,
    catalog_init,
    optimal_kappa,
    patch_radius,
    wcs_jacobian,
)
from celestecli.model import params as layout
from celestecli.sdss.photoobj import CatalogEntries


def test_neighbours_match_brute_force_box_intersection():
    rng = np.random.default_rng(0)
    x, y, r = rng.uniform(0, 400, 300), rng.uniform(0, 300, 300), rng.integers(2, 25, 300)
    boxes = np.column_stack([x - r, x + r, y - r, y + r]).round().astype(np.int64)
    boxes[:5, 1] = boxes[:5, 0] - 1  # empty boxes overlap nothing
    nonempty = (boxes[:, 1] >= boxes[:, 0]) & (boxes[:, 3] >= boxes[:, 2])
    ox = (boxes[:, None, 0] <= boxes[None, :, 1]) & (boxes[None, :, 0] <= boxes[:, None, 1])
    oy = (boxes[:, None, 2] <= boxes[None, :, 3]) & (boxes[None, :, 2] <= boxes[:, None, 3])
    brute = ox & oy & nonempty[:, None] & nonempty[None, :]
    np.fill_diagonal(brute, False)
    assert _neighbour_lists(_overlapping_pairs(boxes), 300) == [
        list(np.flatnonzero(row)) for row in brute]


def test_visited_pixels_counts_unmasked_pixels_and_survives_off_image_boxes():
    image = np.ones((20, 30), dtype=np.float32)
    image[5, 5] = np.nan
    boxes = np.array([[0, 9, 0, 9], [28, 29, 18, 19], [31, 30, 21, 19], [-5, -6, 0, 3]])
    np.testing.assert_array_equal(_visited_pixels(image, boxes), [99, 4, 0, 0])


def test_wcs_jacobian_matches_the_tan_projection():
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crval = [150.0, 39.0]
    w.wcs.crpix = [1024.5, 744.5]
    w.wcs.cd = np.array([[-2.5e-5, 1.07e-4], [1.07e-4, 2.5e-5]])
    p0 = np.array([[100.0, 200.0], [1800.0, 1300.0]])
    u0 = np.column_stack(w.all_pix2world(p0[:, 0], p0[:, 1], 0))
    jac = wcs_jacobian(w, p0, u0)
    for k in range(2):
        du = np.array([3e-5, -2e-5])  # about a third of a pixel
        exact = np.array(w.all_world2pix(*(u0[k] + du), 0)) - p0[k]
        # the map's own curvature over a third of a pixel is ~2e-7 px
        np.testing.assert_allclose(jac[k] @ du, exact, rtol=0, atol=1e-6)


def test_patch_radius_matches_choose_patch_radius_of_model_md_5_5():
    """R is where a 1-D Gaussian of the object's width falls to the target density:
    1.64 widths for faint sources, the sky / (20 flux) level for bright ones (MODEL.md 5.5)."""
    from scipy.stats import norm

    # PSF rows (weight, mean x, mean y, cov xx, cov xy, cov yy): second moments about the
    # origin diag(0.6 * 1 + 0.4 * (1 + 3), 0.6 * 2 + 0.4 * 2) = diag(2.2, 2.0) over A = 1;
    # scaled by 1.5 (A = 1.5) the width scales by A: 1.2 * sqrt(2.2) * 1.5
    psf = np.array([[0.6, 0.0, 0.0, 1.0, 0.0, 2.0], [0.4, 1.0, 0.0, 3.0, 0.0, 2.0]])
    psf_width = 1.2 * np.sqrt(2.2)
    rows = np.array([psf, psf, psf, psf * [1.5, 1, 1, 1, 1, 1]])
    is_star = np.array([True, True, False, True])
    radius_px = np.array([0.0, 0.0, 2.0, 0.0])
    sky = 0.2
    flux = np.array([1e-3, 500.0, 1e-3, 1e-3])
    r = patch_radius(rows, is_star, radius_px, flux, sky)
    width = np.array([psf_width, psf_width, psf_width + 1.2 * 2.0 / 0.67, psf_width * 1.5])
    np.testing.assert_allclose(r[[0, 2, 3]], 1.64 * width[[0, 2, 3]], rtol=1e-12)
    # the bright star: the density at R is the sky / (20 flux) target, below 1.64 widths' density
    assert sky / (20 * flux[1]) < norm.pdf(1.64) / psf_width
    assert norm.pdf(r[1], scale=psf_width) == pytest.approx(sky / (20 * flux[1]), rel=1e-10)


def test_patch_radius_grows_with_flux_and_size_and_is_capped():
    psf = np.array([[[0.6, 0, 0, 1.2, 0, 1.2], [0.4, 0, 0, 4.0, 0, 4.0]]] * 4)
    r = patch_radius(psf, np.array([True, True, False, False]), np.array([0, 0, 3.0, 30.0]),
                     np.array([1.0, 100.0, 1.0, 1e4]), sky=0.2)
    assert r[0] < r[1] and r[0] < r[2] and r[3] == 25.0


def entries(n=2):
    return CatalogEntries(
        objid=np.arange(n), ra=np.full(n, 10.0), dec=np.full(n, 1.0),
        is_star=np.array([True, False])[:n],
        star_flux=np.array([[1.0, 2.0, 4.0, 5.0, 6.0]] * n),
        gal_flux=np.array([[0.0, 2.0, 3.0, 0.0, 6.0]] * n),
        frac_dev=np.array([0.0, 1.2])[:n], axis_ratio=np.array([1.0, 0.5])[:n],
        angle_rad=np.array([0.0, 0.3])[:n], radius_px=np.array([0.0, 2.5])[:n])


def test_catalog_init_follows_model_md_5_4():
    p = catalog_init(entries())
    assert p[0, layout.CHI[0]] == 0.8 and p[1, layout.CHI[0]] == 0.2
    assert p[0, layout.SIGMA] == 0.2 and p[1, layout.SIGMA] == 2.5
    assert p[0, layout.RHO] == 0.8 and p[1, layout.THETA] == 0.985
    assert p[0, layout.GAMMA[0]] == pytest.approx(np.log(4.0))
    # galaxy colours: u flux 0 -> +3, i flux 0 -> ri = -3 and iz = +3
    np.testing.assert_allclose(p[1, list(layout.BETA[1])], [3.0, np.log(1.5), -3.0, 3.0])
    np.testing.assert_allclose(p[:, list(layout.KAPPA[0])].sum(axis=1), 1.0)


def test_optimal_kappa_minimises_the_colour_kl():
    from celestecli.model import priors

    rng = np.random.default_rng(1)
    beta, lam = rng.normal(0.5, 0.8, (1, 4)), rng.uniform(1e-3, 0.2, (1, 4))
    prec, mean = priors.COLOR_PRECISIONS[1], priors.COLOR_MEANS[1]
    diff = beta[0] - mean
    quad = np.einsum("di,dij,dj->d", diff, prec, diff)
    kl_c = 0.5 * (np.einsum("djj,j->d", prec, lam[0]) - 4 + quad + priors.COLOR_LOGDETS[1]
                  - np.log(lam[0]).sum())

    def objective(kappa):
        return np.sum(kappa * (np.log(kappa) - np.log(priors.COLOR_WEIGHTS[1]) + kl_c))

    best = optimal_kappa(beta, lam, 1)[0]
    for _ in range(50):
        other = rng.dirichlet(np.ones(8))
        assert objective(best) <= objective(other) + 1e-9
