"""Posterior covariance of each source's position, log r flux and colours, by linear response.

Mean-field VI reports q's own variances (zeta, lambda), which ignore how the flux trades off
against the position, the galaxy shape and the colours: on simulated fields only ~0.4 of true
log r fluxes fall within one such SD of the estimate, against 0.68 for a calibrated posterior.
Linear-response VB (Giordano, Broderick & Jordan 2015) corrects them from the ELBO's Hessian at
the optimum: tilting the log posterior by t * log r moves the optimum by d eta*/dt =
-H^-1 dm/deta^T, and that derivative is the posterior covariance.  With m the variational means
themselves this is the inverse of minus the Hessian, read at the means' rows.  The same rows
give the position's covariance, which q (a point mass there, MODEL.md 3.1) has none of.

Per source the Hessian is taken over the more probable type's block (position, the galaxy
shape for a galaxy, log r mean and variance, colour means and variances) in free coordinates,
with the neighbours, the type probability and the colour-component responsibilities held at
their optimum.  Where that Hessian is not negative definite, the position, the r flux or a colour
lies on or against its box's bound, or the source is not at its optimum to within that spread
(crowded sources, whose neighbours moved after them in the sweep), the mean-field variances
stand, flagged, with the position's variances given everything else (what a Gaussian factor of
q would hold).
"""

import logging
from concurrent.futures import ThreadPoolExecutor
from itertools import repeat

import numpy as np

from celestecli._kernels.elbo import SourceEvaluator
from celestecli.catalog.schema import FLAG_MEAN_FIELD_SD
from celestecli.model import params as layout

log = logging.getLogger(__name__)

# Bound indices of each type's block, and where its position, log r mean and colour means sit
# in it: the reported moments, in that order.
_BLOCKS = (
    (0, 1, layout.GAMMA[0], layout.ZETA[0], *layout.BETA[0], *layout.LAMBDA[0]),
    (0, 1, layout.THETA, layout.RHO, layout.PHI, layout.SIGMA, layout.GAMMA[1],
     layout.ZETA[1], *layout.BETA[1], *layout.LAMBDA[1]),
)
_MEANS = tuple(np.array([block.index(i) for i in (0, 1, layout.GAMMA[t], *layout.BETA[t])])
               for t, block in enumerate(_BLOCKS))
METHOD = "linear-response"  # provenance card UNCERT of the catalogs
N_MOMENTS = 2 + 1 + layout.N_COLORS  # ra, dec (degrees), log r, then the colours
LOG_R = 2  # the log r flux's row among the moments
# An entry within this share of its box's width from a bound is pinned on it.
PINNED_SHARE = 1e-6


def more_probable_type(params: np.ndarray) -> np.ndarray:
    """0 (star) or 1 (galaxy) per parameter row: the type the catalog reports."""
    return np.where(params[:, layout.CHI[0]] >= 0.5, 0, 1)


def mean_field_covariance(params: np.ndarray, position_variance: np.ndarray) -> np.ndarray:
    """(S, 7, 7) diagonal covariances of (ra, dec, log r, colours): the given (S, 2) variances
    of the position, then q's own of log r and the colours for the reported type."""
    types = more_probable_type(params)
    variances = np.where(types[:, None] == 0,
                         params[:, [layout.ZETA[0], *layout.LAMBDA[0]]],
                         params[:, [layout.ZETA[1], *layout.LAMBDA[1]]])
    variances = np.column_stack([position_variance, variances])
    return variances[:, :, None] * np.eye(N_MOMENTS)[None]


def conditional_position_variance(hessian: np.ndarray) -> np.ndarray:
    """Variances (2,) of (ra, dec) given every other entry, from the ELBO's bound-space Hessian:
    what mean-field VI with a Gaussian factor on each would report.  NaN where not concave."""
    curvature = -np.diagonal(hessian)[:2]
    with np.errstate(divide="ignore"):
        return np.where(curvature > 0.0, 1.0 / curvature, np.nan)


def _box(block: np.ndarray, pos_center: np.ndarray):
    """Lower bounds and widths of the boxes of the entries ``block`` (bound indices < 26)."""
    lower = np.concatenate([pos_center - layout.POS_HALF_WIDTH_DEG, layout.BOX_LOWER])
    width = np.concatenate([np.full(2, 2 * layout.POS_HALF_WIDTH_DEG),
                            layout.BOX_UPPER - layout.BOX_LOWER])
    return lower[block], width[block]


def block_covariance(bound: np.ndarray, gradient: np.ndarray, hessian: np.ndarray,
                     pos_center: np.ndarray, type_index: int) -> np.ndarray | None:
    """Linear-response covariance (7, 7) of one source's (ra, dec, log r, colours) given its
    ELBO's bound-space gradient (44,) and Hessian (44, 44) at ``bound``.

    None where the response does not describe the source: the ELBO is not concave there, a
    mean (the position too) is pinned on its box's bound (the box leaves it no spread) or held
    against it (along that mean alone the ELBO's optimum lies beyond the bound: there the
    optimizer stops short of the bound, and the logistic's vanishing slope, not the posterior,
    would set the spread, SDs of a few 0.001 arcsec or a 0.2% flux), the result is not finite,
    or the source is off its optimum by more than that spread (a Newton step would move a mean
    by more than its SD; crowded sources after the sweep, whose neighbours moved last).

    Entries pinned on a bound (within PINNED_SHARE of the box's width) stay where they are, as
    a perturbation of the posterior would leave them.  The others are box-constrained,
    b = lo + (hi - lo) s(f) with s the logistic, so db/df = (b - lo)(hi - b)/(hi - lo) and
    d2b/df2 = db/df (1 - 2 (b - lo)/(hi - lo)).
    """
    block = np.array(_BLOCKS[type_index])
    lo, width = _box(block, pos_center)
    share = (bound[block] - lo) / width
    inside = np.flatnonzero((share > PINNED_SHARE) & (share < 1.0 - PINNED_SHARE))
    if not np.isin(_MEANS[type_index], inside).all():
        return None
    means = np.searchsorted(inside, _MEANS[type_index])
    block, share, width = block[inside], share[inside], width[inside]
    # where a Newton step along each mean alone would take it, as a share of its box
    mean_index = block[means]
    mean_curvature = -np.diagonal(hessian)[mean_index]
    with np.errstate(divide="ignore", invalid="ignore"):
        reach = share[means] + gradient[mean_index] / mean_curvature / width[means]
    if not np.all((mean_curvature > 0.0) & (reach > 0.0) & (reach < 1.0)):
        return None
    slope = width * share * (1.0 - share)
    curvature = slope * (1.0 - 2.0 * share)
    g_free = gradient[block] * slope
    h_free = slope[:, None] * hessian[np.ix_(block, block)] * slope[None, :]
    h_free[np.diag_indices_from(h_free)] += gradient[block] * curvature
    try:
        chol = np.linalg.cholesky(-h_free)
    except np.linalg.LinAlgError:
        return None
    # rows of (-H_free)^-1 at the means, and the Newton step, scaled back to bound coordinates
    unit = np.zeros((len(block), len(means) + 1))
    unit[means, np.arange(len(means))] = 1.0
    unit[:, -1] = g_free
    half = np.linalg.solve(chol, unit)
    cov = half[:, :-1].T @ half[:, :-1] * np.outer(slope[means], slope[means])
    newton_step = half[:, :-1].T @ half[:, -1] * slope[means]
    if not (np.all(np.isfinite(cov)) and np.all(np.abs(newton_step) <= np.sqrt(np.diag(cov)))):
        return None
    return cov


def _source_covariance(problem, s: int, bound: np.ndarray, pos_center: np.ndarray,
                       type_index: int) -> tuple[np.ndarray | None, np.ndarray]:
    """block_covariance of source ``s`` at ``bound`` (None for a source the ELBO fails on) and
    its conditional_position_variance (NaN for that source)."""
    try:  # one thread per source: the sums, so the catalog, do not depend on the thread count
        _, gradient, hessian = SourceEvaluator(problem.cy, s, 1).evaluate(bound, 2)
    except (RuntimeError, FloatingPointError):  # a failed source keeps its flag and q's SDs
        return None, np.full(2, np.nan)
    return (block_covariance(bound, gradient, hessian, pos_center, type_index),
            conditional_position_variance(hessian))


def posterior_covariance(problem, sources: np.ndarray,
                         n_threads: int) -> tuple[np.ndarray, np.ndarray]:
    """Covariances (len(sources), 7, 7) of (ra, dec, log r, colours) of ``sources`` of a
    FieldProblem at its current (optimised) parameters, and which of them are linear responses
    (the others are mean field, see block_covariance)."""
    params = problem.params[sources]
    centres = np.column_stack([problem.entries.ra, problem.entries.dec])[sources]
    types = more_probable_type(params)
    with ThreadPoolExecutor(max(1, n_threads)) as pool:  # the ELBO kernel runs without the GIL
        results = list(pool.map(_source_covariance, repeat(problem), sources.tolist(), params,
                                centres, types.tolist()))
    responses = [response for response, _ in results]
    positions = np.array([variance for _, variance in results]).reshape(len(sources), 2)
    cov = mean_field_covariance(params, positions)
    linear_response = np.array([response is not None for response in responses], dtype=bool)
    for k in np.flatnonzero(linear_response):
        cov[k] = responses[k]
    if not linear_response.all():
        log.info("%d of %d sources keep mean-field uncertainties (flagged %d): not at a "
                 "concave optimum inside their boxes", int((~linear_response).sum()),
                 len(sources), FLAG_MEAN_FIELD_SD)
    return cov, linear_response
