"""SDSS magnitudes and fluxes: asinh ("luptitude") and Pogson conversions, colours.

Fluxes are nanomaggies. SDSS asinh magnitudes use per-band softening b (VALIDATION.md 1):
m = -(2.5 / ln 10) (asinh(f / (2b 1e9)) + ln b) and f = 1e9 2b sinh(-(ln 10 / 2.5) m - ln b).
"""

import numpy as np

ASINH_SOFTENING = {"u": 1.4e-10, "g": 0.9e-10, "r": 1.2e-10, "i": 1.8e-10, "z": 7.4e-10}
_LN10_OVER_2_5 = np.log(10) / 2.5


def asinh_mag_to_nmgy(mag, band: str) -> np.ndarray:
    """Flux (nMgy) of an SDSS asinh magnitude in ``band``; computed in float64."""
    b = ASINH_SOFTENING[band]
    m = np.asarray(mag, dtype=np.float64)
    return 1e9 * 2 * b * np.sinh(-_LN10_OVER_2_5 * m - np.log(b))


def nmgy_to_asinh_mag(flux, band: str) -> np.ndarray:
    """SDSS asinh magnitude of a flux (nMgy) in ``band``; defined for any real flux."""
    b = ASINH_SOFTENING[band]
    f = np.asarray(flux, dtype=np.float64)
    return -(2.5 / np.log(10)) * (np.arcsinh(f * 1e-9 / (2 * b)) + np.log(b))


def nmgy_to_mag(flux) -> np.ndarray:
    """Pogson magnitude 22.5 - 2.5 log10(f); NaN where the flux is not positive."""
    f = np.asarray(flux, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(f > 0, 22.5 - 2.5 * np.log10(np.where(f > 0, f, 1.0)), np.nan)


def log_ratio_color(flux_blue, flux_red) -> np.ndarray:
    """ln(f_red / f_blue), Celeste's colour; NaN where either flux is not positive."""
    a = np.asarray(flux_blue, dtype=np.float64)
    b = np.asarray(flux_red, dtype=np.float64)
    ok = (a > 0) & (b > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(ok, np.log(np.where(ok, b, 1.0) / np.where(ok, a, 1.0)), np.nan)


def canonical_angle(deg) -> np.ndarray:
    """An angle in degrees reduced to [0, 180)."""
    d = np.asarray(deg, dtype=np.float64)
    return d - np.floor(d / 180.0) * 180.0
