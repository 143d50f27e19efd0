"""The model constants shipped as data (MODEL.md 2.2, 2.5, Appendix A)."""

import numpy as np
import pytest

from celestecli.model import priors, profiles


def test_scalar_priors_match_model_md():
    np.testing.assert_array_equal(priors.TYPE_PRIOR, [0.95, 0.05])
    np.testing.assert_array_equal(priors.LOGFLUX_MEAN, [1.5035546, 1.07431])
    np.testing.assert_allclose(priors.LOGFLUX_VAR, [3.62485920, 1.24936551], rtol=1e-8)
    assert priors.RADIUS_MEAN == 0.5015693
    assert priors.RADIUS_SD**2 == pytest.approx(0.73788220, rel=1e-8)


def test_color_prior_shapes_and_weights():
    assert priors.COLOR_WEIGHTS.shape == (2, 8)
    assert priors.COLOR_MEANS.shape == (2, 8, 4)
    assert priors.COLOR_COVS.shape == priors.COLOR_PRECISIONS.shape == (2, 8, 4, 4)
    assert priors.COLOR_LOGDETS.shape == (2, 8)
    assert np.all(priors.COLOR_WEIGHTS > 0)
    np.testing.assert_allclose(priors.COLOR_WEIGHTS.sum(axis=1), 1.0, atol=1e-9)


def test_color_prior_spot_values():
    # star d=1, galaxy d=8 (1-based in MODEL.md); covariance (1,2) and (4,4) entries
    assert priors.COLOR_WEIGHTS[0, 0] == 0.1365488547
    np.testing.assert_array_equal(
        priors.COLOR_MEANS[0, 0], [1.442604813, 0.5973218283, 0.2338317771, 0.1227478559])
    assert priors.COLOR_COVS[0, 0, 0, 1] == priors.COLOR_COVS[0, 0, 1, 0] == 0.0840226799
    assert priors.COLOR_WEIGHTS[1, 7] == 0.03453698844
    assert priors.COLOR_MEANS[1, 7, 3] == -0.003837348945
    assert priors.COLOR_COVS[1, 7, 3, 3] == 12.1692819
    assert priors.COLOR_COVS[1, 4, 2, 3] == priors.COLOR_COVS[1, 4, 3, 2] == -0.55681408


def test_color_covariances_symmetric_positive_definite():
    covs = priors.COLOR_COVS
    np.testing.assert_array_equal(covs, np.swapaxes(covs, -1, -2))
    eig = np.linalg.eigvalsh(covs)
    assert eig.min() > 0
    # MODEL.md 2.2: smallest eigenvalue 0.00112, star d=1
    assert np.unravel_index(eig.min(axis=-1).argmin(), (2, 8)) == (0, 0)
    assert eig.min() == pytest.approx(0.00112, abs=5e-6)


def test_precisions_and_logdets_are_consistent():
    eye = np.broadcast_to(np.eye(4), priors.COLOR_COVS.shape)
    np.testing.assert_allclose(priors.COLOR_PRECISIONS @ priors.COLOR_COVS, eye, atol=1e-9)
    np.testing.assert_allclose(
        priors.COLOR_LOGDETS, np.log(np.linalg.eigvalsh(priors.COLOR_COVS)).sum(axis=-1),
        rtol=1e-12, atol=1e-12)


def test_constants_are_read_only():
    with pytest.raises(ValueError):
        priors.COLOR_MEANS[0, 0, 0] = 0.0
    with pytest.raises(ValueError):
        profiles.GALAXY_WEIGHTS[0][0] = 0.0


# "Resulting values" printed in MODEL.md 2.5.
DEV_WEIGHTS = [0.0020183769, 0.0113678862, 0.0324716253, 0.0719288205, 0.134272271,
               0.2113626486, 0.2709998146, 0.265578557]
DEV_VAR = [1.9253887609e-04, 8.6236739511e-04, 3.6030703819e-03, 1.4579225313e-02,
           5.8929568970e-02, 2.4713408180e-01, 1.1471854579e+00, 7.2298280419e+00]
EXP_WEIGHTS = [1.9948597672e-04, 2.6161267931e-03, 1.8972665517e-02, 1.0018654377e-01,
               3.6853448401e-01, 5.0949069394e-01]
EXP_VAR = [1.3916587369e-03, 1.0251246103e-02, 4.5368730570e-02, 1.6222654846e-01,
           5.3423386062e-01, 1.7402787570e+00]


def test_galaxy_prototypes_match_resulting_values():
    np.testing.assert_allclose(profiles.GALAXY_WEIGHTS[profiles.DEV], DEV_WEIGHTS, rtol=1e-8)
    np.testing.assert_allclose(profiles.GALAXY_VAR_MULT[profiles.DEV], DEV_VAR, rtol=1e-9)
    np.testing.assert_allclose(profiles.GALAXY_WEIGHTS[profiles.EXP], EXP_WEIGHTS, rtol=1e-8)
    np.testing.assert_allclose(profiles.GALAXY_VAR_MULT[profiles.EXP], EXP_VAR, rtol=1e-9)
    for w in profiles.GALAXY_WEIGHTS:
        assert w.sum() == pytest.approx(1.0, abs=1e-14)


def test_galaxy_components_flat_layout():
    prototype, weight, var_mult = profiles.galaxy_components()
    assert prototype.shape == weight.shape == var_mult.shape == (14,)
    assert profiles.N_GALAXY_COMPONENTS == 14
    np.testing.assert_array_equal(prototype, [0] * 8 + [1] * 6)
    np.testing.assert_allclose(weight, np.concatenate([DEV_WEIGHTS, EXP_WEIGHTS]), rtol=1e-8)
    np.testing.assert_allclose(var_mult, np.concatenate([DEV_VAR, EXP_VAR]), rtol=1e-9)
    for i in (profiles.DEV, profiles.EXP):
        assert weight[prototype == i].sum() == pytest.approx(1.0, abs=1e-14)


def test_circular_half_light_radius_of_prototypes():
    # MODEL.md 2.5 "own check": for Sigma = I the half-light radius is ~0.849 (dev), ~1.062 (exp).
    for i, expected in ((profiles.DEV, 0.849), (profiles.EXP, 1.062)):
        w, nu = profiles.GALAXY_WEIGHTS[i], profiles.GALAXY_VAR_MULT[i]
        radii = np.linspace(0.01, 5.0, 50001)
        enclosed = (w * (1 - np.exp(-radii[:, None] ** 2 / (2 * nu)))).sum(axis=1)
        assert radii[np.searchsorted(enclosed, 0.5)] == pytest.approx(expected, abs=2e-3)
