"""Prior constants of the generative model (MODEL.md 2.2, Appendix A).

Index 0 of the leading axis is the star type, index 1 the galaxy type; colour index j = 0..3 is
(ug, gr, ri, iz) = (ln g/u, ln r/g, ln i/r, ln z/i).  Arrays are read-only.

TYPE_PRIOR (2,)             prior P(star), P(galaxy)
LOGFLUX_MEAN, LOGFLUX_VAR   (2,) mean and VARIANCE of ln r (r-band flux, nMgy) given the type
COLOR_WEIGHTS (2, 8)        colour-mixture weights
COLOR_MEANS (2, 8, 4)       colour-mixture means
COLOR_COVS (2, 8, 4, 4)     colour-mixture covariances
COLOR_PRECISIONS (2, 8, 4, 4), COLOR_LOGDETS (2, 8)   their inverses and log-determinants
RADIUS_MEAN, RADIUS_SD      galaxy radius: ln sigma (pixels) ~ Normal(RADIUS_MEAN, RADIUS_SD^2)
AXIS_RATIO_BETA             galaxy axis ratio rho ~ Beta(2, 2)
FRAC_DEV_BETA               galaxy de Vaucouleurs share theta ~ Beta(1/2, 1/2)

The shape priors are those Celeste's accuracy benchmark draws synthetic galaxies from (MODEL.md
9.3).  Our ELBO uses them, weighted by P(galaxy); Celeste's VI uses only a Gaussian density of
the raw radius, unweighted (MODEL.md 3.4), which lets a point-like galaxy (sigma and rho at
their lower bounds) mimic a star at no cost.
"""

import numpy as np
from scipy.special import betaln

from celestecli.model.tables import read_table

TYPE_PRIOR = np.array([0.95, 0.05])
LOGFLUX_MEAN = np.array([1.5035546, 1.07431])
LOGFLUX_VAR = np.array([1.9039063, 1.1177502]) ** 2
RADIUS_MEAN = 0.5015693
RADIUS_SD = 0.8590007
AXIS_RATIO_BETA = (2.0, 2.0)
FRAC_DEV_BETA = (0.5, 0.5)

COLOR_TABLES = ("color_prior_star.csv", "color_prior_galaxy.csv")
_MEAN_COLUMNS = ("mean_ug", "mean_gr", "mean_ri", "mean_iz")
# Upper-triangle entries (row, col), 0-based, in the column order of the tables.
_COV_ENTRIES = ((0, 0), (0, 1), (0, 2), (0, 3), (1, 1), (1, 2), (1, 3), (2, 2), (2, 3), (3, 3))


def _load_color_prior(name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    table = read_table(name)
    weights = table["weight"]
    means = np.stack([table[c] for c in _MEAN_COLUMNS], axis=1)
    covs = np.zeros((len(weights), 4, 4))
    for a, b in _COV_ENTRIES:
        covs[:, a, b] = covs[:, b, a] = table[f"cov_{a + 1}{b + 1}"]
    return weights, means, covs


def _readonly(a: np.ndarray) -> np.ndarray:
    a.flags.writeable = False
    return a


TYPE_PRIOR, LOGFLUX_MEAN, LOGFLUX_VAR = map(_readonly, (TYPE_PRIOR, LOGFLUX_MEAN, LOGFLUX_VAR))
COLOR_WEIGHTS, COLOR_MEANS, COLOR_COVS = (
    _readonly(np.stack(parts)) for parts in zip(*map(_load_color_prior, COLOR_TABLES), strict=True)
)
COLOR_PRECISIONS = _readonly(np.linalg.inv(COLOR_COVS))
COLOR_LOGDETS = _readonly(np.linalg.slogdet(COLOR_COVS)[1])


def shape_prior_constants() -> np.ndarray:
    """The kernel's shape-prior vector: (RADIUS_MEAN, RADIUS_SD, rho's Beta a, b, theta's
    Beta a, b, log normaliser), the normaliser being ln sqrt(2 pi RADIUS_SD^2) plus the two
    log Beta functions."""
    log_norm = (0.5 * np.log(2.0 * np.pi * RADIUS_SD**2) + betaln(*AXIS_RATIO_BETA)
                + betaln(*FRAC_DEV_BETA))
    return np.array([RADIUS_MEAN, RADIUS_SD, *AXIS_RATIO_BETA, *FRAC_DEV_BETA, log_norm])
