"""Render the expected light of true sources into one band's frame (MODEL.md 2.4-2.5, 3.3).

Written from the model's formulas, independently of the ELBO kernel (which serves as a check):
a source of band flux l_b adds l_b f(m) nanomaggies to pixel m, with f evaluated at the pixel
centre (no integration over the pixel area),

* star:   f(m) = sum_k a_k N(m; mu + xi_k, tau_k)
* galaxy: f(m) = sum_{i, j, k} theta_i a_k eta_ij N(m; mu + xi_k, tau_k + nu_ij Sigma)

where mu is the source's exact pixel position through the frame's WCS and (a, xi, tau) the
Gaussian-mixture PSF the inference gives the source: the fit of the band's psField PSF at the
nearest node of its ``PsfGrid``.  Each source is rendered inside a box wide enough that the
light left outside is far below the sky noise (at least ``MIN_RADIUS`` pixels).
"""

from dataclasses import dataclass

import numpy as np

from celestecli.model.profiles import GALAXY_VAR_MULT, GALAXY_WEIGHTS
from celestecli.model.psf_fit import PsfGrid, PsfMixture, shape_cov
from celestecli.simulate.field_setup import BandSetup
from celestecli.simulate.truth import Truth

MIN_RADIUS = 25.0  # pixels
# Light is rendered out to where every component is below this share of the sky noise.
NOISE_FRACTION = 1e-3


@dataclass(frozen=True)
class Components:
    """A unit-flux profile as a Gaussian mixture in pixel offsets from the source position."""

    weights: np.ndarray  # (C,)
    means: np.ndarray  # (C, 2) (x, y)
    covs: np.ndarray  # (C, 2, 2)


def profile_components(is_star: bool, frac_dev: float, axis_ratio: float, angle_rad: float,
                       sigma_px: float, psf: PsfMixture) -> Components:
    """The PSF-convolved light profile of a star or galaxy (MODEL.md 2.5)."""
    if is_star:
        return Components(psf.weights.copy(), psf.means.copy(), psf.covs.copy())
    sigma = shape_cov(axis_ratio, angle_rad, sigma_px)
    weights, means, covs = [], [], []
    for share, eta, nu in zip((frac_dev, 1.0 - frac_dev), GALAXY_WEIGHTS, GALAXY_VAR_MULT,
                              strict=True):
        for eta_j, nu_j in zip(eta, nu, strict=True):
            for a_k, xi_k, tau_k in zip(psf.weights, psf.means, psf.covs, strict=True):
                weights.append(share * eta_j * a_k)
                means.append(xi_k)
                covs.append(tau_k + nu_j * sigma)
    return Components(np.array(weights), np.array(means), np.array(covs))


def evaluate(comp: Components, dx: np.ndarray, dy: np.ndarray) -> np.ndarray:
    """The mixture at pixel offsets (dx, dy) (broadcast against each other)."""
    out = np.zeros(np.broadcast(dx, dy).shape)
    for w, m, c in zip(comp.weights, comp.means, comp.covs, strict=True):
        det = c[0, 0] * c[1, 1] - c[0, 1] ** 2
        p00, p01, p11 = c[1, 1] / det, -c[0, 1] / det, c[0, 0] / det
        x, y = dx - m[0], dy - m[1]
        out += (w / (2.0 * np.pi * np.sqrt(det))) * np.exp(
            -0.5 * (p00 * x * x + 2.0 * p01 * x * y + p11 * y * y))
    return out


def render_radius(comp: Components, flux_electrons: float, threshold_electrons: float) -> float:
    """Distance beyond which every component adds less than ``threshold_electrons`` a pixel."""
    a, b, d = comp.covs[:, 0, 0], comp.covs[:, 0, 1], comp.covs[:, 1, 1]
    peak = flux_electrons * comp.weights / (2.0 * np.pi * np.sqrt(a * d - b * b))
    largest = 0.5 * (a + d) + np.sqrt(0.25 * (a - d) ** 2 + b * b)  # largest eigenvalue
    bright = peak > threshold_electrons
    if not bright.any():
        return MIN_RADIUS
    reach = np.hypot(comp.means[bright, 0], comp.means[bright, 1]) + np.sqrt(
        2.0 * largest[bright] * np.log(peak[bright] / threshold_electrons))
    return max(MIN_RADIUS, float(reach.max()))


@dataclass
class SourceRender:
    """One source's light in one band: ``light[y, x]`` (nMgy) over the inclusive box."""

    box: tuple[int, int, int, int]  # x0, x1, y0, y1 (inclusive); empty when x1 < x0 or y1 < y0
    light: np.ndarray  # (y1 - y0 + 1, x1 - x0 + 1)
    position: tuple[float, float]  # exact pixel position (x, y)
    flux: float  # band flux, nMgy
    psf: PsfMixture | None  # None when the source does not project onto the frame


@dataclass
class BandRender:
    """The noiseless image of one band: sky plus the light of every source."""

    band: int
    sky: np.ndarray  # (ny, nx) nMgy, as the reader will compute it
    sources_light: np.ndarray  # (ny, nx) nMgy, the sum of every source's light
    iota: np.ndarray  # (nx,) electrons per nMgy
    sources: list[SourceRender]

    @property
    def expected_nmgy(self) -> np.ndarray:
        """E[G]: sky plus sources (nMgy)."""
        return self.sky + self.sources_light

    @property
    def expected_electrons(self) -> np.ndarray:
        """F = iota G, the Poisson rate of every pixel."""
        return self.expected_nmgy * self.iota[None, :]


class _UniformPsfGrid:
    """A PsfGrid for a PSF that is the same everywhere: one fit serves every node.

    Its fit is the one PsfGrid makes at each node (the same stamp gives the same fit), without
    repeating it twelve times.
    """

    def __init__(self, psf, shape):
        self._mixture = PsfGrid(psf, shape).mixture_at(0.0, 0.0)

    def mixture_at(self, x: float, y: float) -> PsfMixture:
        return self._mixture


def psf_grid_for(setup: BandSetup):
    """The PSF mixtures the inference will give sources in this band."""
    if setup.psf.coeffs.shape[1:] == (1, 1):  # constant polynomial: a uniform PSF
        return _UniformPsfGrid(setup.psf, setup.shape)
    return PsfGrid(setup.psf, setup.shape)


def render_band(setup: BandSetup, truth: Truth, psf_grid: PsfGrid | None = None) -> BandRender:
    """Sky and expected source light of ``truth`` in one band's frame."""
    ny, nx = setup.shape
    if psf_grid is None:
        psf_grid = psf_grid_for(setup)
    sky = setup.sky_nmgy()
    iota = setup.iota
    sky_electrons = float(sky[ny // 2, nx // 2] * iota[nx // 2])
    threshold = NOISE_FRACTION * np.sqrt(sky_electrons)
    flux = truth.band_fluxes()[:, setup.band]
    xs, ys = setup.wcs.all_world2pix(truth.ra, truth.dec, 0)
    image = np.zeros((ny, nx))
    renders = []
    for s in range(len(truth)):
        x, y = float(xs[s]), float(ys[s])
        if not (np.isfinite(x) and np.isfinite(y)):  # not projectable onto this frame
            renders.append(SourceRender((0, -1, 0, -1), np.zeros((0, 0)), (x, y),
                                        float(flux[s]), None))
            continue
        psf = psf_grid.mixture_at(x, y)
        comp = profile_components(bool(truth.is_star[s]), truth.frac_dev[s],
                                  truth.axis_ratio[s], truth.angle_rad[s], truth.sigma_px[s], psf)
        radius = render_radius(comp, flux[s] * float(iota.max()), threshold)
        x0, x1 = max(int(np.floor(x - radius)), 0), min(int(np.ceil(x + radius)), nx - 1)
        y0, y1 = max(int(np.floor(y - radius)), 0), min(int(np.ceil(y + radius)), ny - 1)
        if x1 < x0 or y1 < y0:
            light = np.zeros((0, 0))
        else:
            dx = np.arange(x0, x1 + 1)[None, :] - x
            dy = np.arange(y0, y1 + 1)[:, None] - y
            light = flux[s] * evaluate(comp, dx, dy)
            image[y0:y1 + 1, x0:x1 + 1] += light
        renders.append(SourceRender((x0, x1, y0, y1), light, (x, y), float(flux[s]), psf))
    return BandRender(setup.band, sky, image, iota, renders)
