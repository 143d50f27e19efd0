"""Right-ascension arithmetic that survives RA = 0 (Stripe 82 crosses it)."""

import numpy as np

ARCSEC_PER_DEG = 3600.0


def ra_offset_deg(ra, ra0) -> np.ndarray:
    """ra - ra0 in degrees, wrapped into [-180, 180)."""
    offset = np.asarray(ra, dtype=np.float64) - np.asarray(ra0, dtype=np.float64)
    return (offset + 180.0) % 360.0 - 180.0
