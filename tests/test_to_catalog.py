"""Catalog columns from variational parameters (ARCHITECTURE.md 5, VALIDATION.md 1)."""

import numpy as np
import pytest
from astropy.wcs import WCS
from scipy.stats import chi2

from celestecli.fields import FieldID
from celestecli.infer.to_catalog import catalog_table, flux_mean, flux_variance
from celestecli.infer.uncertainty import mean_field_covariance
from celestecli.model import params as layout
from celestecli.model import profiles


def mean_field(params):
    """q's own covariances, with no position variance known (NaN)."""
    return mean_field_covariance(params, np.full((len(params), 2), np.nan))


def sdss_like_wcs(cd, crval=(10.0, 0.5)):
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crval = list(crval)
    w.wcs.crpix = [1024.5, 744.5]
    w.wcs.cd = np.array(cd)
    return w


def test_brightness_moments_match_monte_carlo():
    rng = np.random.default_rng(0)
    p = layout.generic_init(10.0, 0.5)
    p[layout.GAMMA[1]], p[layout.ZETA[1]] = 2.0, 0.05
    p[list(layout.BETA[1])] = [0.5, -0.3, 0.2, 0.4]
    p[list(layout.LAMBDA[1])] = [0.02, 0.03, 0.01, 0.04]
    log_r = rng.normal(2.0, np.sqrt(0.05), 400_000)
    colors = rng.normal(p[list(layout.BETA[1])], np.sqrt(p[list(layout.LAMBDA[1])]), (400_000, 4))
    # colours are ln(g/u), ln(r/g), ln(i/r), ln(z/i): every band from r, including the bands
    # below r, whose colours enter with a minus sign
    log_band = [log_r - colors[:, 0] - colors[:, 1], log_r - colors[:, 1], log_r,
                log_r + colors[:, 2], log_r + colors[:, 2] + colors[:, 3]]
    p[list(layout.CHI)] = 0.3, 0.7  # the galaxy is reported, and its variances taken
    for band, log_flux in enumerate(log_band):
        mean = flux_mean(p[None, :], band, 1)
        var = flux_variance(mean, mean_field(p[None, :]), band)
        flux = np.exp(log_flux)
        assert mean[0] == pytest.approx(flux.mean(), rel=3 * flux.std() / flux.mean() / 600), band
        assert var[0] == pytest.approx(flux.var(), rel=0.05), band


def test_flux_variance_follows_a_correlated_covariance():
    # ln r and the colours correlated (as linear response gives them): Var[flux_b] is that of
    # a log-normal whose ln-variance is the quadratic form of the band's weights; the position,
    # first in the covariance and correlated with the rest, does not enter
    rng = np.random.default_rng(1)
    mu = np.array([10.0, 0.5, 2.0, 0.5, -0.3, 0.2, 0.4])
    a = rng.normal(0.0, 0.08, (7, 7))
    cov = a @ a.T + np.diag([0.01, 0.01, 0.01, 0.02, 0.03, 0.01, 0.04])
    draws = rng.multivariate_normal(mu, cov, 400_000)
    log_r, colors = draws[:, 2], draws[:, 3:]
    log_band = [log_r - colors[:, 0] - colors[:, 1], log_r - colors[:, 1], log_r,
                log_r + colors[:, 2], log_r + colors[:, 2] + colors[:, 3]]
    for band, log_flux in enumerate(log_band):
        flux = np.exp(log_flux)
        var = flux_variance(np.array([flux.mean()]), cov[None], band)
        assert var[0] == pytest.approx(flux.var(), rel=0.05), band


def test_catalog_rows_take_the_more_probable_type():
    wcs = sdss_like_wcs([[0.0, 1.1e-4], [1.1e-4, 0.0]])
    p = np.array([layout.generic_init(10.0, 0.5), layout.generic_init(10.001, 0.5)])
    p[0, list(layout.CHI)] = 0.9, 0.1
    p[1, list(layout.CHI)] = 0.2, 0.8
    p[:, layout.GAMMA[0]] = np.log(100.0)
    p[:, layout.GAMMA[1]] = np.log(50.0)
    p[:, layout.ZETA[0]] = p[:, layout.ZETA[1]] = 1e-4
    p[1, layout.THETA], p[1, layout.RHO], p[1, layout.PHI], p[1, layout.SIGMA] = 0.3, 0.5, 0.3, 2.0
    t = catalog_table(p, FieldID(1, 2, 3), np.array([11, 12]), wcs, np.array([0, 1]),
                      np.array([5, 50]), np.array([-1.0, -2.0]), np.array([False, True]),
                      np.array([False, False]), mean_field(p),
                      np.array([True, False]))
    np.testing.assert_allclose(t["flux_r_nmgy"], [100.0, 50.0])
    assert t["mag_r"][0] == pytest.approx(22.5 - 5.0, abs=1e-3)
    # r flux of a log-normal with ln-variance zeta = 1e-4: Var = E^2 (e^zeta - 1), and the
    # magnitude error is 2.5 / ln 10 times the relative flux error
    mean_r = np.array([100.0, 50.0]) * np.exp(0.5e-4)
    var_r = mean_r**2 * np.expm1(1e-4)
    np.testing.assert_allclose(t["flux_r"], mean_r, rtol=1e-12)
    np.testing.assert_allclose(t["flux_r_ivar"], 1.0 / var_r, rtol=1e-9)
    np.testing.assert_allclose(t["mag_r_err"], 2.5 / np.log(10) * np.sqrt(np.expm1(1e-4)),
                               rtol=1e-9)
    # galaxy shape: half the light of the mixture of (de Vaucouleurs 0.3, exponential 0.7)
    # Gaussians of variances nu sigma^2 lies within the major-axis radius; +x is north and +y
    # east in this WCS, so phi = 0.3 rad from +x towards +y is 17.19 degrees east of north
    radius = t["gal_radius_px"][1]
    sq = (radius / 2.0) ** 2
    enclosed = sum(share * np.sum(profiles.GALAXY_WEIGHTS[kind]
                                  * chi2.cdf(sq / profiles.GALAXY_VAR_MULT[kind], df=2))
                   for kind, share in ((profiles.DEV, 0.3), (profiles.EXP, 0.7)))
    assert enclosed == pytest.approx(0.5, abs=1e-9)
    assert t["gal_angle_deg"][1] == pytest.approx(np.rad2deg(0.3), abs=1e-4)  # TAN: ~1e-5
    assert t["gal_frac_dev"][1] == 0.3 and t["gal_axis_ratio"][1] == 0.5
    assert list(t["converged"]) == [True, False]
    assert t["flags"][0] == 0
    assert t["flags"][1] == 1 | 2 | 16  # bad sky, iteration limit, mean-field uncertainties
    assert t["log_flux_r_stderr"][0] == pytest.approx(0.01)
    assert t["prob_galaxy"][1] == pytest.approx(0.8)


def test_catalog_columns_have_the_schema_dtype_and_unit_also_in_a_written_file(tmp_path):
    # the optimizer hands over int64 iteration counts; the schema says int32
    from celestecli.catalog.io import read_catalog, write_catalog
    from celestecli.catalog.schema import SCHEMA

    wcs = sdss_like_wcs([[0.0, 1.1e-4], [1.1e-4, 0.0]])
    p = np.array([layout.generic_init(10.0, 0.5), layout.generic_init(10.001, 0.5)])
    t = catalog_table(p, FieldID(1, 2, 3), np.array([11, 12], dtype=np.int64), wcs,
                      np.array([0, 1], dtype=np.int64), np.array([5, 50], dtype=np.int64),
                      np.array([-1.0, -2.0]), np.array([False, True]), np.array([False, False]),
                      mean_field(p), np.array([True, True]))
    assert list(t["n_iter"]) == [5, 50]
    for spec in SCHEMA:
        assert t[spec.name].dtype == np.dtype(spec.dtype), spec.name
        assert t[spec.name].unit == spec.unit, spec.name
    write_catalog(t, tmp_path / "c.fits")
    back = read_catalog(tmp_path / "c.fits")
    for spec in SCHEMA:
        assert back[spec.name].dtype.newbyteorder("=") == np.dtype(spec.dtype), spec.name


def test_uncertainty_columns_come_from_the_covariance_given():
    wcs = sdss_like_wcs([[0.0, 1.1e-4], [1.1e-4, 0.0]], crval=(10.0, 60.0))
    p = np.array([layout.generic_init(10.0, 60.0)])
    p[0, list(layout.CHI)] = 0.9, 0.1
    # (ra, dec) in degrees: SDs of 2e-5 and 1e-5 deg; then ln r, u-g, g-r, r-i, i-z
    cov = np.diag([4e-10, 1e-10, 0.04, 0.09, 0.01, 0.0025, 0.16])
    cov[2, 3] = cov[3, 2] = 0.03  # ln r and u-g correlated
    t = catalog_table(p, FieldID(1, 2, 3), np.array([11]), wcs, np.array([0]), np.array([5]),
                      np.array([-1.0]), np.array([False]), np.array([False]), cov[None],
                      np.array([True]))
    # on the sky, at Dec 60: an RA SD of 2e-5 deg spans 0.036 arcsec
    np.testing.assert_allclose(t["ra_err_arcsec"], [2e-5 * 3600 * 0.5], rtol=1e-12)
    np.testing.assert_allclose(t["dec_err_arcsec"], [1e-5 * 3600], rtol=1e-12)
    np.testing.assert_allclose(t["log_flux_r_stderr"], [0.2])
    np.testing.assert_allclose([t[f"color_{c}_stderr"][0] for c in ("ug", "gr", "ri", "iz")],
                               [0.3, 0.1, 0.05, 0.4])
    # ln u = ln r - (u-g) - (g-r): variance 0.04 + 0.09 + 0.01 - 2 * 0.03 = 0.08
    mean_u = t["flux_u"][0]
    assert t["flux_u_ivar"][0] == pytest.approx(1.0 / (mean_u**2 * np.expm1(0.08)), rel=1e-12)
    # the point estimates are q's own, whatever the covariance
    assert mean_u == pytest.approx(flux_mean(p, 0, 0)[0], rel=1e-15)
