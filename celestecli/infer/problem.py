"""Build a field's inference problem: patches, neighbours and initial parameters (MODEL.md 5.3-5.6).

For every (source, image) pair a *patch*: a pixel box around the source (radius from
``patch_radius``, at most 25 px), the WCS linearised at the box centre, and the Gaussian-mixture
PSF of the source's position (nearest node of the image's ``PsfGrid``).  Two sources are
neighbours when their boxes overlap in some image.  The result is packed into a CyProblem.
"""

from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree

from celestecli.angles import ra_offset_deg
from celestecli.infer.arrays import ImageArrays, PatchArrays, build_cy_problem
from celestecli.model import params as layout
from celestecli.model import priors
from celestecli.model.psf_fit import PsfGrid
from celestecli.sdss.photoobj import CatalogEntries

MAX_PATCH_RADIUS = 25.0
WIDTH_SCALE = 1.2
R_BAND = 2
# The initial log r flux starts at least 0.5% of its box's width above the box's lower bound,
# as theta and rho start at 0.015 in [0.01, 0.99].  MODEL.md 5.4 floors the flux at 0.1 nMgy,
# but ln 0.1 lies below the box, [-1, 10]: such a start is clamped onto the bound, where the
# bounded transform's gradient vanishes, and the r flux never moves whatever the image says (a
# photoObj or detected source with r flux below e^-1 nMgy).
_LOG_FLUX_LO = layout.BOX_LOWER[layout.GAMMA[0] - 2]
_LOG_FLUX_HI = layout.BOX_UPPER[layout.GAMMA[0] - 2]
MIN_START_FLUX_R = np.exp(_LOG_FLUX_LO + 0.005 * (_LOG_FLUX_HI - _LOG_FLUX_LO))  # 0.389 nMgy


@dataclass
class FieldProblem:
    """A field's sources, their patches in every image, and the kernel-side CyProblem."""

    entries: CatalogEntries  # the initial catalog, one entry per source
    params: np.ndarray  # (S, 44) bound parameters, shared with ``cy`` (updated in place)
    patches: PatchArrays
    neighbours: list[list[int]]
    pixel_cost: np.ndarray  # (S,) visited pixels over all images: the cost of one evaluation
    cy: object  # CyProblem

    @property
    def n_sources(self) -> int:
        return self.params.shape[0]


def optimal_kappa(beta: np.ndarray, lam: np.ndarray, type_index: int) -> np.ndarray:
    """Colour-component responsibilities that minimise the KL for given colour moments.

    kappa_d is proportional to w_d exp(-KL(q(c) || N(Omega_d, Lambda_d))) (floored at the
    simplex's lower bound).  Celeste starts from uniform kappa instead; then the colour KL of a
    type is inflated at the start, which can push a source into the other type before its
    colours are fitted (a bright star ending up a galaxy).
    """
    prec = priors.COLOR_PRECISIONS[type_index]  # (8, 4, 4)
    diff = beta[:, None, :] - priors.COLOR_MEANS[type_index][None]  # (S, 8, 4)
    kl = 0.5 * (np.einsum("djj,sj->sd", prec, lam) - 4.0
                + np.einsum("sdi,dij,sdj->sd", diff, prec, diff)
                + priors.COLOR_LOGDETS[type_index][None] - np.log(lam).sum(axis=1)[:, None])
    logits = np.log(priors.COLOR_WEIGHTS[type_index])[None] - kl
    kappa = np.exp(logits - logits.max(axis=1, keepdims=True))
    kappa /= kappa.sum(axis=1, keepdims=True)
    kappa = np.maximum(kappa, 2 * layout.KAPPA_LOWER)
    return kappa / kappa.sum(axis=1, keepdims=True)


def catalog_init(entries: CatalogEntries) -> np.ndarray:
    """Initial bound parameters from catalog entries (MODEL.md 5.4, "catalog" initialisation)."""
    n = len(entries)
    p = np.empty((n, layout.N_PARAMS))
    p[:, 0] = entries.ra
    p[:, 1] = entries.dec
    star = entries.is_star
    p[:, layout.THETA] = np.clip(entries.frac_dev, 0.015, 0.985)
    p[:, layout.RHO] = np.where(star, 0.8, np.clip(entries.axis_ratio, 0.015, 0.985))
    p[:, layout.PHI] = entries.angle_rad
    p[:, layout.SIGMA] = np.where(star, 0.2, np.maximum(entries.radius_px, 0.2))
    for i, flux in enumerate((entries.star_flux, entries.gal_flux)):
        p[:, layout.GAMMA[i]] = np.log(np.maximum(MIN_START_FLUX_R, flux[:, R_BAND]))
        p[:, layout.ZETA[i]] = 1e-3
        for j in range(layout.N_COLORS):
            lo, hi = flux[:, j], flux[:, j + 1]
            with np.errstate(divide="ignore", invalid="ignore"):
                ratio = np.clip(np.log(hi / lo), -9.0, 9.0)
            p[:, layout.BETA[i][j]] = np.where(
                (lo > 0) & (hi > 0), ratio, np.where(hi > 0, 3.0, np.where(lo > 0, -3.0, 0.0)))
            p[:, layout.LAMBDA[i][j]] = 1e-2
        p[:, list(layout.KAPPA[i])] = optimal_kappa(p[:, list(layout.BETA[i])],
                                                    p[:, list(layout.LAMBDA[i])], i)
    p[:, layout.CHI[0]] = np.where(star, 0.8, 0.2)
    p[:, layout.CHI[1]] = 1.0 - p[:, layout.CHI[0]]
    return p


def patch_radius(psf_rows: np.ndarray, is_star: np.ndarray, radius_px: np.ndarray,
                 flux: np.ndarray, sky) -> np.ndarray:
    """Celeste's choose_patch_radius (MODEL.md 5.5) for sources in one image.

    psf_rows (S, K, 6) mixtures; flux (S,) band flux of each source's catalog type (nMgy);
    sky (S,) or scalar: the sky under each source (nMgy per pixel; Celeste takes the image
    centre's for all, which with ``--sky local`` would size a cluster core's patches for a sky
    several times too faint).
    """
    w = psf_rows[..., 0]
    total = w.sum(axis=1)
    mean = psf_rows[..., 1:3]
    second = np.zeros((len(psf_rows), 2, 2))
    second[:, 0, 0] = (w * (mean[..., 0] ** 2 + psf_rows[..., 3])).sum(axis=1)
    cross = (w * (mean[..., 0] * mean[..., 1] + psf_rows[..., 4])).sum(axis=1)
    second[:, 0, 1] = second[:, 1, 0] = cross
    second[:, 1, 1] = (w * (mean[..., 1] ** 2 + psf_rows[..., 5])).sum(axis=1)
    largest = np.linalg.eigvalsh(second / total[:, None, None])[:, -1]
    psf_width = WIDTH_SCALE * np.sqrt(largest) * total
    obj_width = psf_width + np.where(is_star, 0.0, WIDTH_SCALE * radius_px / 0.67)
    flux = np.maximum(flux, 1e-6)
    target = np.minimum(np.exp(-0.5 * 1.64**2) / (np.sqrt(2 * np.pi) * obj_width),
                        sky / (20.0 * flux))
    # a zero sky gives the largest patch (masked pixels keep their sky, and frames and
    # --sky local keep it above MIN_SKY: only hand-made images have one)
    with np.errstate(divide="ignore"):
        log_target = np.log(target)
    radius2 = -2.0 * obj_width**2 * (log_target + 0.5 * np.log(2 * np.pi) + np.log(obj_width))
    return np.minimum(np.sqrt(np.maximum(radius2, 0.0)), MAX_PATCH_RADIUS)


def wcs_jacobian(wcs, p0: np.ndarray, u0: np.ndarray) -> np.ndarray:
    """d pixel / d world at p0 by finite differences of about half a pixel (MODEL.md 2.6).

    p0 (S, 2) pixel positions, u0 (S, 2) their world positions; returns (S, 2, 2).
    """
    half = np.column_stack(wcs.all_pix2world(p0[:, 0] + 0.5, p0[:, 1] + 0.5, 0))
    step = np.column_stack([ra_offset_deg(half[:, 0], u0[:, 0]), half[:, 1] - u0[:, 1]])
    delta = np.max(np.abs(step), axis=1)
    jac = np.empty((len(p0), 2, 2))
    for k in range(2):
        shifted = u0.copy()
        shifted[:, k] += delta
        px = np.column_stack(wcs.all_world2pix(shifted[:, 0], shifted[:, 1], 0))
        jac[:, :, k] = (px - p0) / delta[:, None]
    return jac


def _overlapping_pairs(boxes: np.ndarray) -> np.ndarray:
    """(P, 2) index pairs i < j of boxes (S, 4) that overlap; empty boxes overlap nothing.

    Candidates come from a k-d tree on the box centres, so crowded fields with tens of
    thousands of sources need memory in proportion to the pairs, not to S^2.
    """
    nonempty = np.flatnonzero((boxes[:, 1] >= boxes[:, 0]) & (boxes[:, 3] >= boxes[:, 2]))
    if len(nonempty) < 2:
        return np.zeros((0, 2), dtype=np.int64)
    b = boxes[nonempty].astype(np.float64)
    centre = np.column_stack([(b[:, 0] + b[:, 1]) / 2, (b[:, 2] + b[:, 3]) / 2])
    half = np.max(np.column_stack([b[:, 1] - b[:, 0], b[:, 3] - b[:, 2]]), axis=1) / 2
    reach = 2 * half.max() * np.sqrt(2) + 1.0
    pairs = cKDTree(centre).query_pairs(reach, output_type="ndarray")
    i, j = pairs[:, 0], pairs[:, 1]
    overlap = ((b[i, 0] <= b[j, 1]) & (b[j, 0] <= b[i, 1])
               & (b[i, 2] <= b[j, 3]) & (b[j, 2] <= b[i, 3]))
    return np.sort(nonempty[pairs[overlap]], axis=1)


def _neighbour_lists(pairs: np.ndarray, n_src: int) -> list[list[int]]:
    """Sorted neighbour lists from (possibly repeated) index pairs."""
    pairs = np.unique(pairs, axis=0) if len(pairs) else pairs
    both = np.concatenate([pairs, pairs[:, ::-1]]) if len(pairs) else pairs.reshape(0, 2)
    order = np.lexsort((both[:, 1], both[:, 0]))
    both = both[order]
    split = np.searchsorted(both[:, 0], np.arange(n_src + 1))
    return [both[split[s]:split[s + 1], 1].tolist() for s in range(n_src)]


def _visited_pixels(electrons: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Unmasked pixels in each box, from a summed-area table of the finite-pixel mask."""
    finite = np.isfinite(electrons)
    table = np.zeros((finite.shape[0] + 1, finite.shape[1] + 1), dtype=np.int64)
    table[1:, 1:] = finite.cumsum(0).cumsum(1)
    ny, nx = finite.shape
    x0, x1 = np.clip(boxes[:, 0], 0, nx), np.clip(boxes[:, 1], -1, nx - 1)
    y0, y1 = np.clip(boxes[:, 2], 0, ny), np.clip(boxes[:, 3], -1, ny - 1)
    count = table[y1 + 1, x1 + 1] - table[y0, x1 + 1] - table[y1 + 1, x0] + table[y0, x0]
    return np.where((x1 >= x0) & (y1 >= y0), count, 0)


def build_problem(images: list, entries: CatalogEntries, params: np.ndarray | None = None,
                  psf_grids: list[PsfGrid] | None = None) -> FieldProblem:
    """The problem of all ``entries`` over ``images`` (objects with electrons, sky_nmgy, iota,
    band, wcs, psf).  ``params`` defaults to the catalog initialisation."""
    n_src, n_img = len(entries), len(images)
    if params is None:
        params = catalog_init(entries)
    params = np.ascontiguousarray(params, dtype=np.float64)
    if psf_grids is None:
        psf_grids = [PsfGrid(im.psf, im.electrons.shape) for im in images]
    box = np.zeros((n_src, n_img, 4), dtype=np.int64)
    p0 = np.zeros((n_src, n_img, 2))
    u0 = np.zeros((n_src, n_img, 2))
    jac = np.zeros((n_src, n_img, 2, 2))
    psf = None
    cost = np.zeros(n_src, dtype=np.int64)
    pairs = []
    world = np.column_stack([entries.ra, entries.dec])
    for n, im in enumerate(images):
        ny, nx = im.electrons.shape
        px = np.column_stack(im.wcs.all_world2pix(entries.ra, entries.dec, 0))
        rows = np.array([psf_grids[n].mixture_at(x, y).rows() for x, y in px])
        if psf is None:
            psf = np.zeros((n_src, n_img) + rows.shape[1:])
        psf[:, n] = rows
        flux = np.where(entries.is_star, entries.star_flux[:, im.band],
                        entries.gal_flux[:, im.band])
        ix = np.clip(np.rint(px[:, 0]), 0, nx - 1).astype(np.int64)
        iy = np.clip(np.rint(px[:, 1]), 0, ny - 1).astype(np.int64)
        radius = patch_radius(rows, entries.is_star, entries.radius_px, flux,
                              im.sky_nmgy[iy, ix])
        lo = np.rint(px - radius[:, None]).astype(np.int64)
        hi = np.rint(px + radius[:, None]).astype(np.int64)
        b = np.column_stack([np.maximum(lo[:, 0], 0), np.minimum(hi[:, 0], nx - 1),
                             np.maximum(lo[:, 1], 0), np.minimum(hi[:, 1], ny - 1)])
        box[:, n] = b
        centre = np.column_stack([(b[:, 0] + b[:, 1]) / 2.0, (b[:, 2] + b[:, 3]) / 2.0])
        empty = (b[:, 1] < b[:, 0]) | (b[:, 3] < b[:, 2])
        centre[empty] = px[empty]
        p0[:, n] = centre
        u0[:, n] = np.column_stack(im.wcs.all_pix2world(centre[:, 0], centre[:, 1], 0))
        jac[:, n] = wcs_jacobian(im.wcs, centre, u0[:, n])
        pairs.append(_overlapping_pairs(b))
        cost += _visited_pixels(im.electrons, b)
    neighbours = _neighbour_lists(np.concatenate(pairs) if pairs else np.zeros((0, 2), np.int64),
                                  n_src)
    if psf is None:
        psf = np.zeros((n_src, n_img, 2, 6))
    patches = PatchArrays(box=box, p0=p0, u0=u0, jac=jac, psf=psf)
    arrays = [ImageArrays(electrons=im.electrons, sky_nmgy=im.sky_nmgy, iota=im.iota, band=im.band)
              for im in images]
    cy = build_cy_problem(arrays, params, world, patches, neighbours)
    return FieldProblem(entries=entries, params=params, patches=patches, neighbours=neighbours,
                        pixel_cost=cost, cy=cy)
