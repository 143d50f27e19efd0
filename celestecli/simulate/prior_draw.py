"""Draw a catalog from Celeste's prior, as its synthetic accuracy benchmark does (VALIDATION.md 2).

* type: star with probability 0.28 (``AccuracyBenchmark.PRIOR_PROBABILITY_OF_STAR``, the
  "empirical" share; the VI prior itself favours stars far more, MODEL.md 2.2);
* ln r | type ~ Normal(LOGFLUX_MEAN, LOGFLUX_VAR) (a variance);
* colours | type: the type's 8-component Gaussian mixture;
* shape (MODEL.md 9.3; the priors our ELBO also uses): frac_dev ~ Beta(0.5, 0.5), axis
  ratio ~ Beta(2, 2), angle ~ U(0, pi), sigma (px) ~ LogNormal(RADIUS_MEAN, RADIUS_SD).
  Stars get a shape too; their light does not use it;
* position uniform over the r frame, ``margin`` pixels from its edges.
"""

import numpy as np

from celestecli.model import priors
from celestecli.simulate.truth import Truth

PRIOR_PROBABILITY_OF_STAR = 0.28
POSITION_MARGIN_PX = 5.0


def draw_from_prior(n: int, rng: np.random.Generator, wcs, shape: tuple[int, int],
                    margin: float = POSITION_MARGIN_PX) -> Truth:
    """``n`` sources drawn from the prior over a frame of ``shape`` (ny, nx) with WCS ``wcs``."""
    if n < 0:
        raise ValueError(f"number of sources must be >= 0, got {n}")
    ny, nx = shape
    if nx <= 2 * margin or ny <= 2 * margin:
        raise ValueError(f"frame {nx}x{ny} is too small for a {margin} px margin")
    is_star = rng.random(n) < PRIOR_PROBABILITY_OF_STAR
    kind = np.where(is_star, 0, 1)
    log_flux_r = rng.normal(priors.LOGFLUX_MEAN[kind], np.sqrt(priors.LOGFLUX_VAR[kind]))
    component = np.empty(n, dtype=np.int64)
    colors = np.empty((n, 4))
    for i in range(2):
        rows = np.flatnonzero(kind == i)
        component[rows] = rng.choice(priors.COLOR_WEIGHTS.shape[1], size=rows.size,
                                     p=priors.COLOR_WEIGHTS[i])
        for d in range(priors.COLOR_WEIGHTS.shape[1]):
            sel = rows[component[rows] == d]
            colors[sel] = rng.multivariate_normal(priors.COLOR_MEANS[i, d],
                                                  priors.COLOR_COVS[i, d], size=sel.size)
    frac_dev = rng.beta(*priors.FRAC_DEV_BETA, n)
    axis_ratio = rng.beta(*priors.AXIS_RATIO_BETA, n)
    angle = rng.uniform(0.0, np.pi, n)
    sigma = rng.lognormal(priors.RADIUS_MEAN, priors.RADIUS_SD, n)
    x = rng.uniform(margin, nx - 1 - margin, n)
    y = rng.uniform(margin, ny - 1 - margin, n)
    ra, dec = wcs.all_pix2world(x, y, 0)
    return Truth(objid=np.arange(1, n + 1, dtype=np.int64), ra=np.asarray(ra, np.float64),
                 dec=np.asarray(dec, np.float64), is_star=is_star, log_flux_r=log_flux_r,
                 colors=colors, frac_dev=frac_dev, axis_ratio=axis_ratio, angle_rad=angle,
                 sigma_px=sigma, color_component=component)
