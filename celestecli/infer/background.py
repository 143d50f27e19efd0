"""``--sky local``: the SDSS sky plus a smooth background of whatever light it leaves behind.

Celeste's model takes the frame's sky as the whole background.  Where unresolved light lies
above it (the core of a globular cluster, the halo of a bright galaxy), every source near it
is fitted with that light added: extended galaxies soak it up, stars look like galaxies, and fluxes
come out several times too bright (the M2 box of 2583/2/136: r fluxes 1.3 to 7 times the Hubble
stars').  Here SEP estimates the background of each image minus its sky (nanomaggies) on
SEP's default mesh (64 px boxes, 3 x 3 median filter: smooth over scales much larger than a
source's patch, so sources stay sources), and adds it to the sky.
"""

import logging
from dataclasses import replace

import numpy as np
import sep

from celestecli.infer.detect import calibrated_nmgy
from celestecli.sdss.frame import MIN_SKY
from celestecli.sdss.image import Image

log = logging.getLogger(__name__)

MESH_PX = 64
MESH_FILTER = 3
# The sky stays positive (log E[background] must exist): at least this share of its median.
MIN_SKY_SHARE = 1e-3
# Smaller images hold too few mesh boxes for a background apart from the sources' own light.
MIN_SIZE_PX = 3 * MESH_PX


def local_background(image: Image) -> np.ndarray:
    """SEP's smooth background (nanomaggies per pixel, ``data[y, x]``) of the image minus its
    sky; masked pixels take no part."""
    data, mask = calibrated_nmgy(image)
    bkg = sep.Background(data, mask=mask, bw=MESH_PX, bh=MESH_PX, fw=MESH_FILTER,
                         fh=MESH_FILTER)
    return bkg.back(dtype=np.float64)


def with_local_background(images: list[Image]) -> list[Image]:
    """The images with each sky raised (or lowered) by its local background."""
    out = []
    for image in images:
        if min(image.shape) < MIN_SIZE_PX:
            log.warning("%s %s: the image is %d x %d pixels, under %d: its local background "
                        "comes from too few %d-pixel boxes and takes in the sources' own light",
                        image.fid, image.band_name, image.shape[1], image.shape[0], MIN_SIZE_PX,
                        MESH_PX)
        back = local_background(image)
        floor = max(MIN_SKY_SHARE * float(np.median(image.sky_nmgy)), MIN_SKY)
        sky = np.maximum(image.sky_nmgy + back, floor).astype(np.float32)
        log.info("%s %s: local background added to the sky: median %+.4f nMgy/px (sky %.4f), "
                 "largest %+.3f", image.fid, image.band_name, float(np.median(back)),
                 float(np.median(image.sky_nmgy)), float(back.max()))
        out.append(replace(image, sky_nmgy=sky))
    return out
