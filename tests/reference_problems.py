"""Random but realistic small ELBO problems for the reference ELBO and the kernel tests."""

from dataclasses import dataclass

import numpy as np
from reference_elbo import (
    BAND_COLOR,
    RefImage,
    RefPatch,
    RefPSF,
    galaxy_profile,
    in_box,
    star_profile,
)

from celestecli.model import params as layout
from celestecli.model import priors

ARCSEC_PER_PIXEL = 0.396
PIXELS_PER_DEG = 3600.0 / ARCSEC_PER_PIXEL  # ~9091
KINDS = ("star", "galaxy", "mixed")
IMAGE_SHAPE = (48, 56)  # (H, W): data[y, x]


@dataclass
class RefProblem:
    """A local problem: an active source, its neighbours and the images they appear in.

    S = number of sources, N = number of images, (H, W) = IMAGE_SHAPE.

    params : (S, 44) bound parameters of the sources, row `active` the one being optimised; all
        inside their bounds, the active position inside pos_center +- POS_HALF_WIDTH_DEG.
    truth : (S, 44) the parameters the images were drawn from (true type with probability
        1 - CHI_LOWER, zeta and lambda at their lower bounds, uniform kappa).
    is_star : (S,) bool, the true type of each source.
    pos_center : (2,) centre (RA, Dec) of the active source's position box (its true position).
    active : index of the active source (0).
    images : N RefImage; the visited pixels are the active source's box minus masked pixels.
    patches : patches[s][n], the RefPatch of source s in image n (boxes of the neighbours overlap
        the active one; with S >= 3 and N >= 2 the last neighbour's box in the last image is empty).
    count_maps : N arrays (H, W), data[y, x] electrons over the whole image, NaN where masked.
    sky_maps : N arrays (H, W), sky in nMgy per pixel.
    iota_columns : N arrays (W,), electrons per nMgy of each pixel column x.
    """

    params: np.ndarray
    truth: np.ndarray
    is_star: np.ndarray
    pos_center: np.ndarray
    active: int
    images: list
    patches: list
    count_maps: list
    sky_maps: list
    iota_columns: list


def _rotation(angle):
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, -s], [s, c]])


def _random_psf(rng) -> RefPSF:
    weights = np.array([rng.uniform(0.75, 0.9), rng.uniform(0.08, 0.2)])
    means = np.stack([rng.normal(0.0, 0.1, 2), rng.normal(0.0, 0.3, 2)])
    covs = []
    for lo, hi in ((1.0, 1.6), (2.2, 3.5)):
        rot = _rotation(rng.uniform(0.0, np.pi))
        covs.append(rot @ np.diag(rng.uniform(lo, hi, 2) ** 2) @ rot.T)
    return RefPSF(weights=weights, means=means, covs=np.stack(covs))


def _lower_bound(index: int) -> float:
    """Lower box bound of bound entry index >= 2 (entries 0, 1 are the position)."""
    return float(layout.BOX_LOWER[index - 2])


def _truth_row(rng, ra, dec, star: bool) -> np.ndarray:
    """Noiseless parameters of one source of the given type (also sets the galaxy shape)."""
    p = np.empty(layout.N_PARAMS)
    p[layout.POS] = ra, dec
    p[layout.THETA] = rng.uniform(0.1, 0.9)
    p[layout.RHO] = rng.uniform(0.3, 0.95)
    p[layout.PHI] = rng.uniform(-np.pi, np.pi)
    p[layout.SIGMA] = rng.uniform(0.5, 2.0) if star else rng.uniform(0.5, 4.0)
    log_flux = rng.uniform(np.log(5.0), np.log(500.0))
    colors = priors.COLOR_MEANS[0 if star else 1, rng.integers(8)] + rng.normal(0.0, 0.1, 4)
    for i in range(2):
        p[layout.GAMMA[i]] = log_flux
        p[list(layout.BETA[i])] = colors
        p[layout.ZETA[i]] = _lower_bound(layout.ZETA[i])
        p[list(layout.LAMBDA[i])] = [_lower_bound(k) for k in layout.LAMBDA[i]]
        p[list(layout.KAPPA[i])] = 1.0 / layout.N_COLOR_COMPONENTS
    chi_star = 1.0 - layout.CHI_LOWER if star else layout.CHI_LOWER
    p[list(layout.CHI)] = chi_star, 1.0 - chi_star
    return p


def _variational_row(rng, truth: np.ndarray, kind: str) -> np.ndarray:
    """Parameters near the truth, strictly inside the bounds."""
    p = truth.copy()
    dec = truth[1]
    offset = rng.uniform(-0.15, 0.15, 2) / PIXELS_PER_DEG  # up to 0.15 px on the sky
    p[layout.POS] += offset[0] / np.cos(np.radians(dec)), offset[1]
    for i in range(2):
        p[layout.GAMMA[i]] += rng.normal(0.0, 0.2)
        p[layout.ZETA[i]] = rng.uniform(1e-3, 0.05)
        p[list(layout.BETA[i])] += rng.normal(0.0, 0.1, 4)
        p[list(layout.LAMBDA[i])] = rng.uniform(1e-3, 0.05, 4)
        kappa = rng.dirichlet(np.ones(layout.N_COLOR_COMPONENTS))
        spare = 1.0 - layout.N_COLOR_COMPONENTS * layout.KAPPA_LOWER
        p[list(layout.KAPPA[i])] = layout.KAPPA_LOWER + spare * kappa
    chi_star = {"star": (0.6, 0.95), "galaxy": (0.05, 0.4), "mixed": (0.2, 0.8)}[kind]
    p[layout.CHI[0]] = rng.uniform(*chi_star)
    p[layout.CHI[1]] = 1.0 - p[layout.CHI[0]]
    return p


def _box_around(center, radius, shape):
    h, w = shape
    cx, cy = (int(v) for v in np.round(center))
    return (max(cx - radius, 0), min(cx + radius, w - 1),
            max(cy - radius, 0), min(cy + radius, h - 1))


def random_problem(rng, n_sources=3, n_images=3, kind="mixed", noise=True) -> RefProblem:
    """A random problem around active source 0 with n_sources - 1 overlapping neighbours.

    kind: "star" (all sources stars), "galaxy" (all galaxies) or "mixed" (alternating, starting
    with a galaxy); it also sets the range of P(star) in `params`.  Images: different bands where
    possible, each with its own 2-component PSF and WCS Jacobian J = PIXELS_PER_DEG * R(psi) *
    diag(parity, 1) * diag(cos Dec, 1) (~9091 px/deg, random rotation psi and parity), perturbed
    by 1e-4 per patch, sky 0.1-0.3 nMgy/px with a gradient, iota 150-1000 varying along x.
    Sources: r-band fluxes 5-500 nMgy, galaxy radii 0.5-4 px, colours near a prior component.
    Counts are Poisson draws of the true rate (noise=True) or the rate itself (noise=False).
    Returns a RefProblem (see its docstring for the shapes).
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, not {kind!r}")
    if n_sources < 1 or n_images < 1:
        raise ValueError("need at least one source and one image")
    h, w = IMAGE_SHAPE
    ra0, dec0 = rng.uniform(1.0, 359.0), rng.uniform(-70.0, 70.0)
    cos_dec = np.cos(np.radians(dec0))

    # True positions: neighbours 2-7 px (on the sky) from the active source.
    positions = [np.array([ra0, dec0])]
    for _ in range(n_sources - 1):
        dist = rng.uniform(2.0, 7.0) / PIXELS_PER_DEG
        angle = rng.uniform(0.0, 2.0 * np.pi)
        positions.append(np.array([ra0 + dist * np.cos(angle) / cos_dec,
                                   dec0 + dist * np.sin(angle)]))
    if kind == "mixed":
        is_star = np.array([s % 2 == 1 for s in range(n_sources)])
    else:
        is_star = np.full(n_sources, kind == "star")
    truth = np.stack([_truth_row(rng, *pos, star) for pos, star in zip(positions, is_star,
                                                                       strict=True)])
    params = np.stack([_variational_row(rng, t, kind) for t in truth])
    radii = [int(rng.integers(4, 7))] + [int(rng.integers(3, 7)) for _ in range(n_sources - 1)]

    bands = rng.choice(5, n_images, replace=n_images > 5)
    yy, xx = np.mgrid[0:h, 0:w]
    images, count_maps, sky_maps, iota_columns = [], [], [], []
    patches = [[] for _ in range(n_sources)]
    for n in range(n_images):
        parity = np.diag([rng.choice([-1.0, 1.0]), 1.0])
        jac = PIXELS_PER_DEG * _rotation(rng.uniform(0, 2 * np.pi)) @ parity @ np.diag([cos_dec, 1])
        p_ref = np.array([w / 2, h / 2]) + rng.uniform(-0.5, 0.5, 2)  # pixel of (ra0, dec0)
        psf = _random_psf(rng)
        for s in range(n_sources):
            center = jac @ (positions[s] - positions[0]) + p_ref
            if s == n_sources - 1 and s >= 2 and n == n_images - 1 and n >= 1:
                box = (0, -1, 0, -1)
                p0 = np.round(center)
            else:
                box = _box_around(center, radii[s], IMAGE_SHAPE)
                p0 = np.array([(box[0] + box[1]) / 2, (box[2] + box[3]) / 2])
            u0 = positions[0] + np.linalg.solve(jac, p0 - p_ref)
            patch_jac = jac @ (np.eye(2) + rng.normal(0.0, 1e-4, (2, 2)))
            patches[s].append(RefPatch(J=patch_jac, p0=p0, u0=u0, box=box, psf=psf))

        sky_level = rng.uniform(0.1, 0.3)
        sky_map = sky_level * (1 + 0.05 * (xx - w / 2) / w + 0.03 * (yy - h / 2) / h)
        iota_col = rng.uniform(150.0, 1000.0) * (1 + 0.02 * np.sin(2 * np.pi * np.arange(w) / w
                                                                    + rng.uniform(0, 6.3)))
        rate = sky_map.copy()
        for s in range(n_sources):
            patch = patches[s][n]
            flux = np.exp(truth[s, layout.GAMMA[0]]
                          + BAND_COLOR[bands[n]] @ truth[s, list(layout.BETA[0])])
            profile = star_profile if is_star[s] else galaxy_profile
            inside = in_box(patch.box, xx, yy)
            rate[inside] += flux * profile(truth[s], patch, xx[inside].astype(float),
                                           yy[inside].astype(float))
        expected = iota_col[None, :] * rate
        counts = rng.poisson(expected).astype(float) if noise else expected
        counts[rng.random((h, w)) < 0.04] = np.nan  # masked pixels

        visited = in_box(patches[0][n].box, xx, yy) & ~np.isnan(counts)
        x, y = xx[visited], yy[visited]
        images.append(RefImage(band=int(bands[n]), x=x, y=y, counts=counts[y, x],
                               iota=iota_col[x], sky=sky_map[y, x]))
        count_maps.append(counts)
        sky_maps.append(sky_map)
        iota_columns.append(iota_col)

    return RefProblem(params=params, truth=truth, is_star=is_star,
                      pos_center=positions[0].copy(), active=0, images=images, patches=patches,
                      count_maps=count_maps, sky_maps=sky_maps, iota_columns=iota_columns)
