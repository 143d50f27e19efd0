"""Catalog columns from variational parameters (ARCHITECTURE.md 5, VALIDATION.md 1)."""

import numpy as np
import pytest
from astropy.wcs import WCS

from celestecli.fields import FieldID
from celestecli.infer.to_catalog import (
    brightness_moments,
    catalog_table,
)
from celestecli.model import params as layout


def sdss_like_wcs(cd):
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crval = [10.0, 0.5]
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
    log_z = log_r + colors[:, 2] + colors[:, 3]  # z = r e^{c_ri + c_iz}
    mean, var = brightness_moments(p[None, :], 4, 1)
    flux = np.exp(log_z)
    assert mean[0] == pytest.approx(flux.mean(), rel=3 * flux.std() / flux.mean() / 600)
    assert var[0] == pytest.approx(flux.var(), rel=0.05)


def test_catalog_rows_take_the_more_probable_type():
    wcs = sdss_like_wcs([[0.0, 1.1e-4], [1.1e-4, 0.0]])
    p = np.array([layout.generic_init(10.0, 0.5), layout.generic_init(10.001, 0.5)])
    p[0, list(layout.CHI)] = 0.9, 0.1
    p[1, list(layout.CHI)] = 0.2, 0.8
    p[:, layout.GAMMA[0]] = np.log(100.0)
    p[:, layout.GAMMA[1]] = np.log(50.0)
    p[:, layout.ZETA[0]] = p[:, layout.ZETA[1]] = 1e-4
    t = catalog_table(p, FieldID(1, 2, 3), np.array([11, 12]), wcs, np.array([0, 1]),
                      np.array([5, 50]), np.array([-1.0, -2.0]), np.array([False, True]),
                      np.array([False, False]))
    np.testing.assert_allclose(t["flux_r_nmgy"], [100.0, 50.0])
    assert t["mag_r"][0] == pytest.approx(22.5 - 5.0, abs=1e-3)
    assert list(t["converged"]) == [True, False]
    assert t["flags"][1] == 1 | 2  # bad sky and iteration limit
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
                      np.array([-1.0, -2.0]), np.array([False, True]), np.array([False, False]))
    assert list(t["n_iter"]) == [5, 50]
    for spec in SCHEMA:
        assert t[spec.name].dtype == np.dtype(spec.dtype), spec.name
        assert t[spec.name].unit == spec.unit, spec.name
    write_catalog(t, tmp_path / "c.fits")
    back = read_catalog(tmp_path / "c.fits")
    for spec in SCHEMA:
        assert back[spec.name].dtype.newbyteorder("=") == np.dtype(spec.dtype), spec.name
