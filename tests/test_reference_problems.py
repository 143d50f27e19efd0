"""The random problem builder shared by the reference-ELBO and kernel tests."""

import numpy as np
import pytest
from reference_elbo import elbo, in_box
from reference_problems import IMAGE_SHAPE, PIXELS_PER_DEG, random_problem

from celestecli.model import params as layout


def boxes_overlap(a, b):
    return max(a[0], b[0]) <= min(a[1], b[1]) and max(a[2], b[2]) <= min(a[3], b[3])


@pytest.mark.parametrize("kind", ["star", "galaxy", "mixed"])
@pytest.mark.parametrize("n_sources, n_images", [(1, 1), (2, 3), (4, 2)])
def test_random_problem_is_consistent(kind, n_sources, n_images):
    rng = np.random.default_rng([("star", "galaxy", "mixed").index(kind), n_sources, n_images])
    prob = random_problem(rng, n_sources, n_images, kind)
    h, w = IMAGE_SHAPE
    assert prob.params.shape == prob.truth.shape == (n_sources, layout.N_PARAMS)
    assert len(prob.images) == n_images and len(prob.patches) == n_sources
    assert all(len(row) == n_images for row in prob.patches)
    if kind != "mixed":
        assert np.all(prob.is_star == (kind == "star"))
    else:
        assert list(prob.is_star) == [s % 2 == 1 for s in range(n_sources)]

    # parameters strictly inside their bounds, the active position inside its box
    for p in prob.params:
        assert np.all((p[2:26] > layout.BOX_LOWER) & (p[2:26] < layout.BOX_UPPER))
        for idx, lb in ((layout.CHI, layout.CHI_LOWER), (layout.KAPPA[0], layout.KAPPA_LOWER),
                        (layout.KAPPA[1], layout.KAPPA_LOWER)):
            assert np.all(p[list(idx)] > lb)
            assert p[list(idx)].sum() == pytest.approx(1.0, abs=1e-12)
    assert np.all(np.abs(prob.params[0, :2] - prob.pos_center) < layout.POS_HALF_WIDTH_DEG)
    np.testing.assert_array_equal(prob.truth[0, :2], prob.pos_center)
    fluxes = np.exp(prob.truth[:, layout.GAMMA[0]])
    assert np.all((fluxes >= 5) & (fluxes <= 500))

    cos_dec = np.cos(np.radians(prob.pos_center[1]))
    for n, image in enumerate(prob.images):
        active_box = prob.patches[0][n].box
        npix = len(image.x)
        assert image.y.shape == image.counts.shape == image.iota.shape == image.sky.shape == (npix,)
        assert npix > 50 and np.all(in_box(active_box, image.x, image.y))
        np.testing.assert_array_equal(image.counts, prob.count_maps[n][image.y, image.x])
        np.testing.assert_array_equal(image.iota, prob.iota_columns[n][image.x])
        np.testing.assert_array_equal(image.sky, prob.sky_maps[n][image.y, image.x])
        assert prob.count_maps[n].shape == prob.sky_maps[n].shape == (h, w)
        assert np.all((prob.sky_maps[n] > 0.09) & (prob.sky_maps[n] < 0.32))
        assert np.all((prob.iota_columns[n] > 140) & (prob.iota_columns[n] < 1030))
        # every non-masked pixel of the active box is visited
        inside = np.zeros((h, w), bool)
        inside[active_box[2]:active_box[3] + 1, active_box[0]:active_box[1] + 1] = True
        assert npix == np.sum(inside & ~np.isnan(prob.count_maps[n]))
        for s in range(n_sources):
            patch = prob.patches[s][n]
            assert abs(abs(np.linalg.det(patch.J)) / (PIXELS_PER_DEG**2 * cos_dec) - 1) < 1e-3
            if patch.box[1] >= patch.box[0]:
                assert boxes_overlap(patch.box, active_box)
                # the linearisation point maps back to the source's true pixel position
                mu = patch.J @ (prob.truth[s, :2] - patch.u0) + patch.p0
                assert in_box(patch.box, *np.round(mu))
    empty = [(s, n) for s in range(n_sources) for n in range(n_images)
             if prob.patches[s][n].box[1] < prob.patches[s][n].box[0]]
    assert empty == ([(n_sources - 1, n_images - 1)] if n_sources >= 3 and n_images >= 2 else [])
    assert np.isfinite(elbo(prob.params, prob.images, prob.patches))


def test_images_use_different_bands_and_wcs():
    prob = random_problem(np.random.default_rng(5), 2, 4, "mixed")
    assert len({image.band for image in prob.images}) == 4
    jacobians = [prob.patches[0][n].J for n in range(4)]
    assert all(not np.allclose(jacobians[0], j, rtol=1e-2) for j in jacobians[1:])


def test_noiseless_counts_are_the_expected_rate():
    prob = random_problem(np.random.default_rng(6), 1, 1, "star", noise=False)
    counts = prob.count_maps[0]
    assert np.any(counts[~np.isnan(counts)] % 1 != 0)  # not Poisson draws
    # far from the source (outside its box), the counts are sky * iota
    x = np.flatnonzero(~np.isnan(counts[0]))[0]
    np.testing.assert_allclose(counts[0, x], prob.sky_maps[0][0, x] * prob.iota_columns[0][x])


def test_bad_kind_is_rejected():
    with pytest.raises(ValueError, match="kind"):
        random_problem(np.random.default_rng(0), 2, 2, "quasar")
