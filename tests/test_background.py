"""``--sky local``: the smooth background SEP finds above the SDSS sky is added to it."""

from dataclasses import replace
from pathlib import Path

import numpy as np

from celestecli.fields import FieldID
from celestecli.infer.background import local_background, with_local_background
from celestecli.sdss.image import Image

SHAPE = (512, 512)
SKY_NMGY = 0.8
IOTA = 850.0  # electrons per nMgy


def image_with(extra_nmgy: np.ndarray, seed: int = 0, n_stars: int = 200) -> Image:
    """An r image: flat SDSS sky, the given unmodelled light, point sources, Poisson noise;
    a masked stripe."""
    rng = np.random.default_rng(seed)
    ny, nx = SHAPE
    yy, xx = np.mgrid[:ny, :nx]
    light = SKY_NMGY + extra_nmgy
    for x, y, f in zip(rng.uniform(0, nx, n_stars), rng.uniform(0, ny, n_stars),
                       rng.lognormal(1.0, 1.0, n_stars), strict=True):
        light = light + f * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * 1.4**2)) / (
            2 * np.pi * 1.4**2)
    electrons = rng.poisson(light * IOTA).astype(np.float32)
    electrons[:, 200:204] = np.nan  # a masked bleed trail
    return Image(fid=FieldID(9000, 1, 1), band=2, electrons=electrons,
                 sky_nmgy=np.full(SHAPE, SKY_NMGY, np.float32), iota=np.full(nx, IOTA),
                 calib=np.full(nx, 1.0 / IOTA), gain=1.0, dark_variance=0.0, wcs=None, psf=None,
                 path=Path("frame-r.fits"))


def cluster_light() -> np.ndarray:
    """A cluster core's unresolved light: as bright as the sky at its centre, 120 px wide."""
    yy, xx = np.mgrid[:SHAPE[0], :SHAPE[1]]
    return SKY_NMGY * np.exp(-((xx - 256) ** 2 + (yy - 256) ** 2) / (2 * 120.0**2))


def test_the_unmodelled_light_is_found_and_added_to_the_sky():
    extra = cluster_light()
    image = image_with(extra)
    (local,) = with_local_background([image])
    inside = extra > 0.3 * SKY_NMGY
    # the light above the sky is recovered to a few per cent of the sky where it matters
    error = local.sky_nmgy - (SKY_NMGY + extra)
    assert np.median(np.abs(error[inside])) < 0.05 * SKY_NMGY
    assert abs(float(np.median(error))) < 0.02 * SKY_NMGY
    # the frame's own sky is left as it was; the pixels are untouched
    assert np.all(image.sky_nmgy == SKY_NMGY) and local.electrons is image.electrons


def test_a_right_sky_stays_right():
    back = local_background(image_with(np.zeros(SHAPE), seed=1))
    # sources on a correct sky barely move it: well under a per cent of the sky
    assert abs(float(np.median(back))) < 0.01 * SKY_NMGY
    assert np.all(np.isfinite(back))


def test_the_sky_stays_positive_where_the_frame_oversubtracted():
    # a frame of 0 electrons everywhere: the light left above the sky is -sky
    image = replace(image_with(np.zeros(SHAPE), seed=2), electrons=np.zeros(SHAPE, np.float32))
    (local,) = with_local_background([image])
    assert np.all(local.sky_nmgy > 0)


def test_masked_pixels_take_no_part():
    extra = cluster_light()
    image = image_with(extra, seed=3)
    electrons = image.electrons.copy()
    mask = np.zeros(SHAPE, bool)
    mask[:, 150:250] = True  # a bleed trail wider than a mesh box, over the core
    electrons[mask] = np.nan
    (local,) = with_local_background([replace(image, electrons=electrons)])
    core = (extra > 0.5 * SKY_NMGY) & mask
    error = local.sky_nmgy[core] - (SKY_NMGY + extra[core])
    # interpolated across the gap from the boxes beside it: 0.26 sky off at the peaked core
    # (0.09 without the gap); taking the masked pixels as 0 electrons puts it 1.8 sky off
    assert np.median(np.abs(error)) < 0.4 * SKY_NMGY


def test_an_oversubtracting_frame_gets_its_sky_lowered():
    image = image_with(np.full(SHAPE, -0.2 * SKY_NMGY), seed=4)  # the sky claims 25% too much
    (local,) = with_local_background([image])
    assert abs(float(np.median(local.sky_nmgy)) - 0.8 * SKY_NMGY) < 0.02 * SKY_NMGY


def test_a_small_image_is_warned_about(caplog):
    small = image_with(np.zeros(SHAPE), seed=5)
    small = replace(small, electrons=small.electrons[:96, :96], sky_nmgy=small.sky_nmgy[:96, :96],
                    iota=small.iota[:96])
    with caplog.at_level("WARNING"):
        with_local_background([small])
    assert "under 192" in caplog.text
