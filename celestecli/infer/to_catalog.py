"""Turn optimised variational parameters into catalog rows (ARCHITECTURE.md 5, VALIDATION.md 1).

Per source the quantities of the more probable type t: posterior-mean band fluxes and their
variances (log-normal moments, MODEL.md 3.3), the median r flux exp(gamma_t), colours beta_t
and their standard deviations, the galaxy shape in SDSS's conventions (major-axis half-light
radius; position angle east of north), and the optimizer's status.
"""

import numpy as np
from astropy.table import Table

from celestecli.catalog.schema import (
    COLORS,
    FLAG_BAD_SKY,
    FLAG_EDGE,
    FLAG_ITER_LIMIT,
    FLAG_NONFINITE,
    catalog_from_columns,
)
from celestecli.model import params as layout
from celestecli.model.shape import half_light_scale, position_angle_deg
from celestecli.sdss import BANDS

MAG_ERR_FACTOR = 2.5 / np.log(10.0)

# optimizer outcome codes (pyx/celestecli/_kernels/optimize.pyx)
OPT_CONVERGED, OPT_MAX_ITER, OPT_FAILED = 0, 1, 2


def brightness_moments(params: np.ndarray, band: int, type_index: int):
    """E[flux_b | type] and Var[flux_b | type] for parameter rows (S, 44)."""
    coef = layout.band_coefficients()[band]
    beta = params[:, list(layout.BETA[type_index])]
    lam = params[:, list(layout.LAMBDA[type_index])]
    mean_log = params[:, layout.GAMMA[type_index]] + beta @ coef
    var_log = params[:, layout.ZETA[type_index]] + lam @ (coef**2)
    mean = np.exp(mean_log + 0.5 * var_log)
    return mean, mean**2 * np.expm1(var_log)


def catalog_table(params: np.ndarray, fid, objid: np.ndarray, r_wcs, status: np.ndarray,
                  n_iter: np.ndarray, elbo: np.ndarray, bad_sky: np.ndarray,
                  at_edge: np.ndarray) -> Table:
    """The catalog of ARCHITECTURE.md 5 for optimised ``params`` (S, 44) of field ``fid``."""
    n = params.shape[0]
    columns = {}
    p_star = params[:, layout.CHI[0]]
    star = p_star >= 0.5
    columns["objid"] = objid
    columns["run"], columns["camcol"], columns["field"] = fid.run, fid.camcol, fid.field
    columns["ra"], columns["dec"] = params[:, 0] % 360.0, params[:, 1]
    x, y = r_wcs.all_world2pix(params[:, 0], params[:, 1], 0)
    columns["x"], columns["y"] = x, y
    columns["is_star"] = p_star
    columns["prob_galaxy"] = params[:, layout.CHI[1]]

    def by_type(values_star, values_gal):
        return np.where(star, values_star, values_gal)

    for b, name in enumerate(BANDS):
        mean_s, var_s = brightness_moments(params, b, 0)
        mean_g, var_g = brightness_moments(params, b, 1)
        flux, var = by_type(mean_s, mean_g), by_type(var_s, var_g)
        columns[f"flux_{name}"] = flux
        columns[f"flux_{name}_ivar"] = 1.0 / var
        positive = flux > 0
        with np.errstate(divide="ignore", invalid="ignore"):
            columns[f"mag_{name}"] = np.where(positive, 22.5 - 2.5 * np.log10(flux), np.nan)
            columns[f"mag_{name}_err"] = np.where(positive, MAG_ERR_FACTOR * np.sqrt(var) / flux,
                                                  np.nan)
    gamma = by_type(params[:, layout.GAMMA[0]], params[:, layout.GAMMA[1]])
    zeta = by_type(params[:, layout.ZETA[0]], params[:, layout.ZETA[1]])
    columns["flux_r_nmgy"] = np.exp(gamma)
    columns["log_flux_r_stderr"] = np.sqrt(zeta)
    beta, lam = layout.BETA, layout.LAMBDA
    for j, color in enumerate(COLORS):
        columns[f"color_{color}"] = by_type(params[:, beta[0][j]], params[:, beta[1][j]])
        columns[f"color_{color}_stderr"] = np.sqrt(by_type(params[:, lam[0][j]],
                                                           params[:, lam[1][j]]))
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
    columns["flags"] = flags
    return catalog_from_columns(n, columns)
