"""Galaxy shape in catalog terms: half-light radius and sky position angle (VALIDATION.md 1).

The model's shape is (theta, rho, phi, sigma): de Vaucouleurs share, axis ratio, the angle of
the major axis in the image's pixel frame (from +x towards +y) and the major-axis scale sigma
(MODEL.md 2.5).  Catalogs report the half-light radius along the major axis (SDSS's
deVRad/expRad convention) and the position angle of the major axis on the sky, east of north.
"""

import numpy as np
from scipy.optimize import brentq

from celestecli.angles import ra_offset_deg
from celestecli.model.profiles import DEV, EXP, GALAXY_VAR_MULT, GALAXY_WEIGHTS


def _enclosed(radius: float, frac_dev: float) -> float:
    """Share of the light of the unit-scale (sigma = 1, rho = 1) profile within ``radius``."""
    total = 0.0
    for proto, share in ((DEV, frac_dev), (EXP, 1.0 - frac_dev)):
        w, nu = GALAXY_WEIGHTS[proto], GALAXY_VAR_MULT[proto]
        total += share * float(np.sum(w * -np.expm1(-radius**2 / (2.0 * nu))))
    return total


def half_light_scale(frac_dev) -> np.ndarray:
    """Major-axis half-light radius of the profile with sigma = 1, per ``frac_dev``.

    The profile is a mixture of Gaussians sharing the covariance shape, so the ellipse of
    semi-major axis R holds the same share of light as the circle of radius R of the round
    profile; the radius is linear in sigma.  About 0.849 (pure dev) and 1.062 (pure exp).
    """
    frac = np.atleast_1d(np.asarray(frac_dev, dtype=np.float64))
    if np.any(~np.isfinite(frac) | (frac < 0) | (frac > 1)):
        raise ValueError("frac_dev must lie in [0, 1]")
    out = np.array([brentq(lambda r, f=f: _enclosed(r, f) - 0.5, 1e-3, 1e3, xtol=1e-14)
                    for f in frac.ravel()])
    return out.reshape(np.shape(frac_dev))


def sky_jacobian(wcs, x, y) -> np.ndarray:
    """(S, 2, 2) map from a pixel step (dx, dy) to (east, north) offsets in degrees at (x, y).

    Central differences of half a pixel; east = dRA cos(Dec).  Pixel origin 0.
    """
    x = np.atleast_1d(np.asarray(x, dtype=np.float64))
    y = np.atleast_1d(np.asarray(y, dtype=np.float64))
    h = 0.5
    jac = np.empty((x.size, 2, 2))
    for k, (ddx, ddy) in enumerate(((h, 0.0), (0.0, h))):
        ra1, dec1 = wcs.all_pix2world(x + ddx, y + ddy, 0)
        ra0, dec0 = wcs.all_pix2world(x - ddx, y - ddy, 0)
        dra = ra_offset_deg(ra1, ra0)
        dec = 0.5 * (np.asarray(dec1) + np.asarray(dec0))
        jac[:, 0, k] = dra * np.cos(np.deg2rad(dec)) / (2 * h)
        jac[:, 1, k] = (np.asarray(dec1) - np.asarray(dec0)) / (2 * h)
    return jac


def position_angle_deg(wcs, x, y, phi) -> np.ndarray:
    """Sky position angle (degrees east of north, in [0, 180)) of the pixel-frame angle ``phi``
    (radians) at pixel position (x, y).

    For SDSS frames this is phi + PA(+x) (MODEL.md 0), computed here from the local WCS so that
    it also holds for any rotation or parity.
    """
    jac = sky_jacobian(wcs, x, y)
    phi = np.broadcast_to(np.asarray(phi, dtype=np.float64), (jac.shape[0],))
    step = np.stack([np.cos(phi), np.sin(phi)], axis=1)
    east, north = np.einsum("sij,sj->is", jac, step)
    return np.mod(np.rad2deg(np.arctan2(east, north)), 180.0)


def pixel_angle_rad(wcs, x, y, pa_deg) -> np.ndarray:
    """Inverse of ``position_angle_deg``: the pixel-frame angle in [0, pi) of a sky PA."""
    jac = sky_jacobian(wcs, x, y)
    pa = np.deg2rad(np.broadcast_to(np.asarray(pa_deg, dtype=np.float64), (jac.shape[0],)))
    sky = np.stack([np.sin(pa), np.cos(pa)], axis=1)
    dx, dy = np.linalg.solve(jac, sky[:, :, None])[:, :, 0].T
    return np.mod(np.arctan2(dy, dx), np.pi)
