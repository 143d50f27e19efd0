"""SDSS specifics: file layout (local and on the SAS), downloads, and readers."""

BANDS = "ugriz"
PIXEL_SCALE_ARCSEC = 0.396  # the imaging camera's pixels on the sky
