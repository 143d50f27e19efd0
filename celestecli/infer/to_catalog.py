"""Turn optimised variational parameters into catalog rows (ARCHITECTURE.md 5, VALIDATION.md 1).

Per source the quantities of the more probable type t: posterior-mean band fluxes (log-normal
moments of q, MODEL.md 3.3), the median r flux exp(gamma_t), colours beta_t, the galaxy shape in
SDSS's conventions (major-axis half-light radius; position angle east of north), and the
optimizer's status.  Uncertainties (the position's, the band fluxes' variances, the log r
flux's and colours' SDs) come from the given covariance of (ra, dec, log r, colours): a linear
response (``uncertainty``), or where it is none q's own, with the position's variances given
the rest (flag 16, MEAN_FIELD_SD).
"""

import numpy as np
from astropy.table import Table

from celestecli.angles import ARCSEC_PER_DEG
from celestecli.catalog.schema import (
    COLORS,
    FLAG_BAD_SKY,
    FLAG_EDGE,
    FLAG_ITER_LIMIT,
    FLAG_MEAN_FIELD_SD,
    FLAG_NONFINITE,
    catalog_from_columns,
)
from celestecli.infer.uncertainty import LOG_R, more_probable_type
from celestecli.model import params as layout
from celestecli.model.shape import half_light_scale, position_angle_deg
from celestecli.sdss import BANDS

MAG_ERR_FACTOR = 2.5 / np.log(10.0)

# optimizer outcome codes (pyx/celestecli/_kernels/optimize.pyx)
OPT_CONVERGED, OPT_MAX_ITER, OPT_FAILED = 0, 1, 2


def flux_mean(params: np.ndarray, band: int, type_index: int) -> np.ndarray:
    """E_q[flux_b | type] for parameter rows (S, 44): ln flux_b is normal under q."""
    coef = layout.band_coefficients()[band]
    beta = params[:, list(layout.BETA[type_index])]
    lam = params[:, list(layout.LAMBDA[type_index])]
    mean_log = params[:, layout.GAMMA[type_index]] + beta @ coef
    var_log = params[:, layout.ZETA[type_index]] + lam @ (coef**2)
    return np.exp(mean_log + 0.5 * var_log)


def flux_variance(mean: np.ndarray, covariance: np.ndarray, band: int) -> np.ndarray:
    """Var[flux_b] of a log-normal flux of this mean, ln flux_b = ln r + I_b . c having the
    variance that ``covariance`` (S, 7, 7) of (ra, dec, ln r, colours) gives it."""
    weights = np.concatenate([[1.0], layout.band_coefficients()[band]])
    moments = covariance[:, LOG_R:, LOG_R:]
    var_log = np.einsum("i,sij,j->s", weights, moments, weights)
    return mean**2 * np.expm1(var_log)


def catalog_table(params: np.ndarray, fid, objid: np.ndarray, r_wcs, status: np.ndarray,
                  n_iter: np.ndarray, elbo: np.ndarray, bad_sky: np.ndarray,
                  at_edge: np.ndarray, covariance: np.ndarray,
                  linear_response: np.ndarray) -> Table:
    """The catalog of ARCHITECTURE.md 5 for optimised ``params`` (S, 44) of field ``fid``;
    ``covariance`` (S, 7, 7) is that of each source's (ra, dec, ln r, colours) for its reported
    type (degrees for the position), a linear response where ``linear_response`` (S,) says so,
    else q's own with the position's variances given the rest (flagged)."""
    n = params.shape[0]
    columns = {}
    p_star = params[:, layout.CHI[0]]
    star = more_probable_type(params) == 0
    columns["objid"] = objid
    columns["run"], columns["camcol"], columns["field"] = fid.run, fid.camcol, fid.field
    columns["ra"], columns["dec"] = params[:, 0] % 360.0, params[:, 1]
    sd = np.sqrt(np.diagonal(covariance, axis1=1, axis2=2))  # ra, dec, ln r, then the colours
    columns["ra_err_arcsec"] = sd[:, 0] * np.cos(np.radians(params[:, 1])) * ARCSEC_PER_DEG
    columns["dec_err_arcsec"] = sd[:, 1] * ARCSEC_PER_DEG
    x, y = r_wcs.all_world2pix(params[:, 0], params[:, 1], 0)
    columns["x"], columns["y"] = x, y
    columns["is_star"] = p_star
    columns["prob_galaxy"] = params[:, layout.CHI[1]]

    def by_type(values_star, values_gal):
        return np.where(star, values_star, values_gal)

    for b, name in enumerate(BANDS):
        flux = by_type(flux_mean(params, b, 0), flux_mean(params, b, 1))
        var = flux_variance(flux, covariance, b)
        columns[f"flux_{name}"] = flux
        columns[f"flux_{name}_ivar"] = 1.0 / var
        positive = flux > 0
        with np.errstate(divide="ignore", invalid="ignore"):
            columns[f"mag_{name}"] = np.where(positive, 22.5 - 2.5 * np.log10(flux), np.nan)
            columns[f"mag_{name}_err"] = np.where(positive, MAG_ERR_FACTOR * np.sqrt(var) / flux,
                                                  np.nan)
    gamma = by_type(params[:, layout.GAMMA[0]], params[:, layout.GAMMA[1]])
    columns["flux_r_nmgy"] = np.exp(gamma)
    columns["log_flux_r_stderr"] = sd[:, LOG_R]
    beta = layout.BETA
    for j, color in enumerate(COLORS):
        columns[f"color_{color}"] = by_type(params[:, beta[0][j]], params[:, beta[1][j]])
        columns[f"color_{color}_stderr"] = sd[:, LOG_R + 1 + j]
    theta = params[:, layout.THETA]
    columns["gal_frac_dev"] = theta
    columns["gal_axis_ratio"] = params[:, layout.RHO]
    columns["gal_radius_px"] = params[:, layout.SIGMA] * half_light_scale(theta)
    columns["gal_angle_deg"] = position_angle_deg(r_wcs, x, y, params[:, layout.PHI])
    columns["elbo"] = elbo
    columns["n_iter"] = n_iter
    columns["converged"] = status == OPT_CONVERGED
    flags = np.zeros(n, dtype=np.int32)
    flags |= np.where(bad_sky, FLAG_BAD_SKY, 0).astype(np.int32)
    flags |= np.where(status == OPT_MAX_ITER, FLAG_ITER_LIMIT, 0).astype(np.int32)
    flags |= np.where(status == OPT_FAILED, FLAG_NONFINITE, 0).astype(np.int32)
    flags |= np.where(at_edge, FLAG_EDGE, 0).astype(np.int32)
    flags |= np.where(linear_response, 0, FLAG_MEAN_FIELD_SD).astype(np.int32)
    columns["flags"] = flags
    return catalog_from_columns(n, columns)
