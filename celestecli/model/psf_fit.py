"""Gaussian-mixture PSF: fit K components to a PSF stamp (MODEL.md 6.2), per position on a grid.

Stars and galaxies both use the mixture (variant A), which keeps every profile analytic.  The
SDSS PSF varies across a frame, so instead of one fit at the image centre we fit the stamp at
the nodes of a coarse grid (``PsfGrid``, 3 x 4 cells by default) and give each source the fit of
its nearest node: twelve small least-squares fits per image, a few tens of milliseconds each.
"""

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from scipy.optimize import least_squares

N_COMPONENTS = 2
STAMP_CENTRE = 25  # 0-based centre of the 51 x 51 psField stamp

# Box constraints per component (MODEL.md 6.2): mean x, mean y, rho, phi, sigma, weight.
_LOWER = np.array([-5.0, -5.0, 0.1, -4 * np.pi, 0.05, 0.05])
_UPPER = np.array([5.0, 5.0, 1.0, 4 * np.pi, 10.0, 2.0])


@dataclass(frozen=True)
class PsfMixture:
    """sum_k weights[k] N(m; means[k], covs[k]), in pixels relative to the source position."""

    weights: np.ndarray  # (K,)
    means: np.ndarray  # (K, 2) offsets (x, y)
    covs: np.ndarray  # (K, 2, 2)

    def rows(self) -> np.ndarray:
        """(K, 6) rows of weight, mean x, mean y, cov xx, cov xy, cov yy (the kernel layout)."""
        return np.column_stack([self.weights, self.means, self.covs[:, 0, 0], self.covs[:, 0, 1],
                                self.covs[:, 1, 1]])

    def render(self, dx: np.ndarray, dy: np.ndarray) -> np.ndarray:
        """The mixture at pixel offsets (dx, dy) from the source position."""
        out = np.zeros(np.broadcast(dx, dy).shape)
        for w, m, c in zip(self.weights, self.means, self.covs, strict=True):
            prec = np.linalg.inv(c)
            x, y = dx - m[0], dy - m[1]
            q = prec[0, 0] * x * x + 2 * prec[0, 1] * x * y + prec[1, 1] * y * y
            out += w * np.exp(-0.5 * q) / (2 * np.pi * np.sqrt(np.linalg.det(c)))
        return out

    def stamp(self, size: int = 2 * STAMP_CENTRE + 1) -> np.ndarray:
        """The mixture rasterised at pixel centres of a size x size stamp, ``stamp[y, x]``."""
        offsets = np.arange(size) - size // 2
        return self.render(offsets[None, :], offsets[:, None])


def shape_cov(rho: float, phi: float, sigma: float) -> np.ndarray:
    """sigma^2 R(phi) diag(1, rho^2) R(phi)^T (MODEL.md 2.5)."""
    c, s = np.cos(phi), np.sin(phi)
    rot = np.array([[c, -s], [s, c]])
    return sigma**2 * rot @ np.diag([1.0, rho**2]) @ rot.T


def _shape_cov_jacobian(rho: float, phi: float, sigma: float) -> np.ndarray:
    """d (S11, S12, S22) / d (rho, phi, sigma), 3 x 3 (MODEL.md 4.3)."""
    c, s = np.cos(phi), np.sin(phi)
    cov = shape_cov(rho, phi, sigma)
    return np.column_stack([
        2 * rho * sigma**2 * np.array([s * s, -c * s, c * c]),
        sigma**2 * (rho**2 - 1) * np.array([2 * c * s, s * s - c * c, -2 * c * s]),
        2 * np.array([cov[0, 0], cov[0, 1], cov[1, 1]]) / sigma,
    ])


def _mixture_jacobian(theta: np.ndarray, dx: np.ndarray, dy: np.ndarray) -> np.ndarray:
    """d mixture(pixel) / d theta, (n_pixels, 6 K)."""
    cols = []
    for mx, my, rho, phi, sigma, w in theta.reshape(-1, 6):
        cov = shape_cov(rho, phi, sigma)
        prec = np.linalg.inv(cov)
        x, y = (dx - mx).ravel(), (dy - my).ravel()
        y1 = prec[0, 0] * x + prec[0, 1] * y
        y2 = prec[0, 1] * x + prec[1, 1] * y
        density = np.exp(-0.5 * (x * y1 + y * y2)) / (2 * np.pi * np.sqrt(np.linalg.det(cov)))
        g = w * density
        d_sigma = np.column_stack([0.5 * (y1 * y1 - prec[0, 0]), y1 * y2 - prec[0, 1],
                                   0.5 * (y2 * y2 - prec[1, 1])]) * g[:, None]
        d_shape = d_sigma @ _shape_cov_jacobian(rho, phi, sigma)
        cols += [g * y1, g * y2, d_shape[:, 0], d_shape[:, 1], d_shape[:, 2], density]
    return np.column_stack(cols)


def _mixture(theta: np.ndarray) -> PsfMixture:
    comps = theta.reshape(-1, 6)
    return PsfMixture(weights=comps[:, 5].copy(), means=comps[:, :2].copy(),
                      covs=np.array([shape_cov(*c[2:5]) for c in comps]))


def fit_psf_mixture(stamp: np.ndarray,
                    n_components: int = N_COMPONENTS) -> tuple[PsfMixture, float]:
    """Least-squares K-component fit to a PSF stamp (negatives clamped to 0 first).

    Returns the mixture and the residual sum of squares.
    """
    target = np.clip(np.asarray(stamp, dtype=np.float64), 0.0, None)
    ny, nx = target.shape
    dy, dx = np.mgrid[0:ny, 0:nx] - np.array([ny // 2, nx // 2])[:, None, None]
    start = np.concatenate([[0.0, 0.0, 0.95, 0.0, np.sqrt(2.0 * (k + 1)), 1.0 / n_components]
                            for k in range(n_components)])

    def residuals(theta):
        return (_mixture(theta).render(dx, dy) - target).ravel()

    fit = least_squares(residuals, start, jac=lambda theta: _mixture_jacobian(theta, dx, dy),
                        bounds=(np.tile(_LOWER, n_components),
                                                  np.tile(_UPPER, n_components)),
                        x_scale="jac", xtol=1e-10, ftol=1e-10, gtol=1e-10, max_nfev=500)
    mixture = _mixture(fit.x)
    order = np.argsort([np.trace(c) for c in mixture.covs])  # core first, then wings
    mixture = PsfMixture(mixture.weights[order], mixture.means[order], mixture.covs[order])
    return mixture, float(2.0 * fit.cost)


class PsfGrid:
    """Mixture fits of one image's PSF at the nodes of a coarse grid, computed on demand."""

    def __init__(self, psf, shape: tuple[int, int], cells: tuple[int, int] = (3, 4)):
        self._psf = psf  # has .stamp(x, y)
        self._ny, self._nx = shape
        self._rows, self._cols = cells
        self._fit = lru_cache(maxsize=None)(self._fit_node)

    def node(self, x: float, y: float) -> tuple[int, int]:
        col = min(max(int(x * self._cols / self._nx), 0), self._cols - 1)
        row = min(max(int(y * self._rows / self._ny), 0), self._rows - 1)
        return row, col

    def node_position(self, row: int, col: int) -> tuple[float, float]:
        return ((col + 0.5) * self._nx / self._cols - 0.5,
                (row + 0.5) * self._ny / self._rows - 0.5)

    def _fit_node(self, row: int, col: int) -> PsfMixture:
        return fit_psf_mixture(self._psf.stamp(*self.node_position(row, col)))[0]

    def mixture_at(self, x: float, y: float) -> PsfMixture:
        """The fit of the grid node nearest to pixel position (x, y)."""
        return self._fit(*self.node(x, y))
