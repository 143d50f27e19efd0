"""Source detection for the initial catalog (MODEL.md 7.6) and the --init choice.

Synthetic images (Gaussian sources of known position, flux and shape under a TAN WCS) check
positions, fluxes, shapes, the angle convention, merging across images, regions and the
crowded-field splitting; the real fields check detection against SDSS Photo (3900/6/269) and
against the Hubble star list of M2 (2583/2/136).
"""

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from astropy.table import Table
from astropy.wcs import WCS
from scipy.spatial import cKDTree
from shared_data import SDSS, shared

from celestecli.errors import InputFileError, UsageError
from celestecli.fields import FieldID
from celestecli.infer import detect, peaks
from celestecli.infer.init_catalog import choose_init
from celestecli.sdss.image import load_field
from celestecli.sdss.photoobj import CatalogEntries, read_photoobj
from celestecli.validate.hubble import read_hubble_truth, score_detection
from celestecli.validate.matching import separation_px

PIXEL_DEG = 0.396 / 3600.0
IOTA = 1000.0  # electrons per nanomaggy
SKY = 0.1  # nanomaggies per pixel: sky noise 10 electrons = 0.01 nMgy
PSF_SIGMA = 1.2
M2 = FieldID(2583, 2, 136)
F3900 = FieldID(3900, 6, 269)
HUBBLE_REGION = (310, 409, 630, 729)


class GaussianPsf:
    """The ``EigenPsf.stamp`` interface for a round Gaussian PSF."""

    def __init__(self, sigma):
        self.sigma = sigma

    def stamp(self, x, y):
        yy, xx = np.indices((51, 51)) - 25
        g = np.exp(-(xx**2 + yy**2) / (2 * self.sigma**2))
        return g / g.sum()


def tan_wcs(shape, ra0=150.0, dec0=2.0):
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wcs.wcs.crval = [ra0, dec0]
    wcs.wcs.crpix = [shape[1] / 2.0, shape[0] / 2.0]
    wcs.wcs.cd = [[-PIXEL_DEG, 0.0], [0.0, PIXEL_DEG]]
    return wcs


def gaussian(shape, x, y, flux, sigma_major, sigma_minor=None, angle=0.0):
    """A Gaussian of ``flux`` centred at (x, y), major axis ``angle`` from +x towards +y."""
    sigma_minor = sigma_major if sigma_minor is None else sigma_minor
    yy, xx = np.indices(shape, dtype=np.float64)
    dx, dy = xx - x, yy - y
    c, s = np.cos(angle), np.sin(angle)
    u, v = c * dx + s * dy, -s * dx + c * dy
    g = np.exp(-0.5 * ((u / sigma_major) ** 2 + (v / sigma_minor) ** 2))
    return flux * g / (2 * np.pi * sigma_major * sigma_minor)


def make_image(model_nmgy, band=2, wcs=None, seed=0, name="synthetic"):
    """An Image-like object with ``model_nmgy`` plus sky, and Gaussian noise in electrons."""
    shape = model_nmgy.shape
    rng = np.random.default_rng(seed)
    expected = (model_nmgy + SKY) * IOTA
    electrons = (expected + rng.normal(size=shape) * np.sqrt(expected)).astype(np.float32)
    return SimpleNamespace(
        band=band, electrons=electrons, sky_nmgy=np.full(shape, SKY, np.float32),
        iota=np.full(shape[1], IOTA), gain=1.0, dark_variance=0.0,
        wcs=wcs if wcs is not None else tan_wcs(shape), psf=GaussianPsf(PSF_SIGMA),
        path=Path(f"{name}-{band}.fits"))


def nearest(entries, wcs, x, y):
    """Index of the entry nearest each pixel position, and its pixel position."""
    px, py = wcs.all_world2pix(entries.ra, entries.dec, 0)
    _, idx = cKDTree(np.column_stack([px, py])).query(np.column_stack([x, y]))
    return idx, px[idx], py[idx]


# --- synthetic images --------------------------------------------------------------------

STARS = np.array([  # x, y, flux (nMgy)
    [40.3, 50.7, 100.0], [120.8, 45.2, 60.0], [75.5, 130.1, 200.0], [150.1, 150.9, 80.0]])


def test_planted_stars_position_flux_and_type():
    shape = (200, 200)
    model = sum(gaussian(shape, x, y, f, PSF_SIGMA) for x, y, f in STARS)
    image = make_image(model)
    entries = detect.detect_sources([image])
    assert len(entries) == len(STARS)
    idx, px, py = nearest(entries, image.wcs, STARS[:, 0], STARS[:, 1])
    np.testing.assert_allclose(px, STARS[:, 0], atol=0.1)
    np.testing.assert_allclose(py, STARS[:, 1], atol=0.1)
    np.testing.assert_allclose(entries.gal_flux[idx, 2], STARS[:, 2], rtol=0.03)
    np.testing.assert_array_equal(entries.star_flux, entries.gal_flux)
    # only the r band was given: the other bands start from its flux (a flat spectrum)
    np.testing.assert_array_equal(entries.gal_flux, np.repeat(entries.gal_flux[:, [2]], 5, 1))
    assert entries.is_star.all()
    np.testing.assert_array_equal(entries.objid, np.arange(len(STARS)))
    np.testing.assert_allclose(entries.frac_dev, 0.5)
    np.testing.assert_allclose(entries.axis_ratio, 1.0, atol=0.1)


def test_galaxy_shape_and_angle_in_the_pixel_frame():
    """The model angle is SEP's theta: from +x towards +y in the image's own pixels."""
    shape = (120, 120)
    angle = np.radians(30.0)
    model = gaussian(shape, 60.2, 59.6, 300.0, 4.0, 2.0, angle)
    entries = detect.detect_sources([make_image(model)])
    assert len(entries) == 1
    d = (entries.angle_rad[0] - angle + np.pi / 2) % np.pi - np.pi / 2
    assert abs(d) < np.radians(2.0)
    assert entries.axis_ratio[0] == pytest.approx(0.5, abs=0.05)
    # SEP's a, b are the (isophote-truncated) RMS widths 4 and 2: radius sqrt(ab) sqrt(2 ln 2)
    assert entries.radius_px[0] == pytest.approx(np.sqrt(8.0 * 2.0 * np.log(2.0)), rel=0.1)
    assert not entries.is_star[0]


def test_merge_joins_within_one_arcsec_and_keeps_others_apart():
    shape = (160, 160)
    wcs_r = tan_wcs(shape)
    # The g image's frame is shifted by 10.3 px; its sources sit 0.5" (joined) and 2" (apart)
    # from the r sources on the sky.
    wcs_g = tan_wcs(shape, ra0=150.0 + 10.3 * PIXEL_DEG / np.cos(np.radians(2.0)))
    r_xy = np.array([[50.0, 50.0], [110.0, 100.0]])
    sky = np.column_stack(wcs_r.all_pix2world(r_xy[:, 0], r_xy[:, 1], 0))
    offset_deg = np.array([0.5, 2.0]) / 3600.0
    g_sky = sky + np.column_stack([np.zeros(2), offset_deg])
    g_xy = np.column_stack(wcs_g.all_world2pix(g_sky[:, 0], g_sky[:, 1], 0))
    r_model = sum(gaussian(shape, x, y, 100.0, PSF_SIGMA) for x, y in r_xy)
    g_model = sum(gaussian(shape, x, y, 40.0, PSF_SIGMA) for x, y in g_xy)
    images = [make_image(r_model, band=2, wcs=wcs_r, seed=1),
              make_image(g_model, band=1, wcs=wcs_g, seed=2)]
    entries = detect.detect_sources(images)
    assert len(entries) == 3
    # a band without a detection copies the nearest one's flux, so only the joined object
    # has different g and r fluxes
    both = entries.gal_flux[:, 1] != entries.gal_flux[:, 2]
    assert both.sum() == 1
    joined = np.flatnonzero(both)[0]
    # the merged object sits where the first image saw it
    assert separation_px(entries.ra[joined], entries.dec[joined], *sky[0]) < 0.1
    assert entries.gal_flux[joined, 2] == pytest.approx(100.0, rel=0.03)
    assert entries.gal_flux[joined, 1] == pytest.approx(40.0, rel=0.05)
    alone = ~both
    assert sorted(np.round(entries.gal_flux[alone, 1] / 10)) == [4, 10]  # a g and an r source


def test_merge_takes_each_band_from_its_largest_detection():
    def dets(band, ra, dec, flux, npix, a):
        n = len(ra)
        return detect.ImageDetections(
            band=band, x=np.zeros(n), y=np.zeros(n), ra=np.array(ra), dec=np.array(dec),
            flux=np.array(flux, float), npix=np.array(npix), a=np.array(a, float),
            b=np.full(n, 1.0), theta=np.full(n, 0.3), concentration=np.full(n, 0.2),
            crowded=False)

    arcsec = 1.0 / 3600.0
    first = dets(2, [10.0], [0.0], [5.0], [20], [2.0])
    # two r detections in a second r image near the object: the one with more pixels wins
    second = dets(2, [10.0 + 0.3 * arcsec, 10.0 - 0.4 * arcsec], [0.0, 0.0], [7.0, 3.0],
                  [30, 10], [3.0, 1.5])
    third = dets(3, [10.0 + 0.5 * arcsec], [0.2 * arcsec], [9.0], [25], [2.5])
    entries = detect.entries_from_detections([first, second, third])
    assert len(entries) == 1
    np.testing.assert_allclose(entries.gal_flux[0], [7.0, 7.0, 7.0, 9.0, 9.0])
    # shape from the largest detection of all (30 pixels, a = 3, b = 1)
    assert entries.axis_ratio[0] == pytest.approx(1.0 / 3.0)
    assert entries.radius_px[0] == pytest.approx(np.sqrt(3.0) * np.sqrt(2 * np.log(2)))
    assert entries.angle_rad[0] == pytest.approx(0.3)
    assert not entries.is_star[0]


def test_undetected_bands_take_the_flux_of_the_nearest_detected_band():
    flux = np.array([[0.0, 4.0, 0.0, 8.0, 0.0],     # r between g and i: the redder, i
                     [0.0, 0.0, 0.0, 0.0, 3.0],     # z only: every band
                     [1.0, 2.0, 3.0, 4.0, 5.0],     # all detected: unchanged
                     [2.0, 0.0, 0.0, 0.0, -1.0]])   # a negative flux counts as undetected
    np.testing.assert_array_equal(detect.fill_undetected_bands(flux),
                                  [[4.0, 4.0, 8.0, 8.0, 8.0], [3.0] * 5, [1.0, 2.0, 3.0, 4.0, 5.0],
                                   [2.0] * 5])
    assert flux[0, 0] == 0.0  # the input is left alone


def test_region_keeps_the_sources_inside_with_the_full_image_positions():
    shape = (200, 200)
    model = sum(gaussian(shape, x, y, f, PSF_SIGMA) for x, y, f in STARS)
    image = make_image(model)
    full = detect.detect_sources([image])
    region = (30, 130, 30, 80)  # holds the first two stars only
    part = detect.detect_sources([image], region)
    assert len(part) == 2
    np.testing.assert_array_equal(part.objid, [0, 1])
    idx, px, py = nearest(part, image.wcs, STARS[:2, 0], STARS[:2, 1])
    assert sorted(idx) == [0, 1]
    assert np.all(np.hypot(px - STARS[:2, 0], py - STARS[:2, 1]) < 0.1)
    same, _, _ = nearest(full, image.wcs, px, py)
    np.testing.assert_allclose(part.gal_flux[idx], full.gal_flux[same], rtol=1e-6)
    with pytest.raises(UsageError, match="empty"):
        detect.detect_sources([image], (50, 40, 0, 10))
    with pytest.raises(UsageError, match="outside"):
        detect.detect_sources([image], (300, 310, 0, 10))


def crowded_cluster(seed=3):
    """A 140x140 image: 250 stars on a bright smooth pedestal, as in a cluster core."""
    shape = (140, 140)
    rng = np.random.default_rng(seed)
    xy = []
    while len(xy) < 250:
        p = rng.uniform(12, 128, 2)
        if all(np.hypot(*(p - q)) > 3.5 for q in xy):
            xy.append(p)
    xy = np.array(xy)
    flux = 10 ** rng.uniform(1.0, 2.0, len(xy))
    model = gaussian(shape, 70, 70, 40000.0, 30.0)
    for (x, y), f in zip(xy, flux, strict=True):
        model += gaussian(shape, x, y, f, PSF_SIGMA)
    return make_image(model, seed=seed), xy


def recall(entries, wcs, xy):
    px, py = wcs.all_world2pix(entries.ra, entries.dec, 0)
    dist, _ = cKDTree(np.column_stack([px, py])).query(xy)
    return float(np.mean(dist < 1.0))


def test_crowded_image_is_split_at_its_peaks():
    image, xy = crowded_cluster()
    assert detect.extract(image).crowded
    entries = detect.detect_sources([image])
    sep_alone = detect.detect_sources([image], crowded=False)
    assert recall(entries, image.wcs, xy) > 0.9
    assert recall(sep_alone, image.wcs, xy) < 0.5
    assert len(entries) < 1.1 * len(xy)
    assert entries.is_star.mean() > 0.9


def test_sparse_image_is_not_crowded():
    shape = (200, 200)
    model = sum(gaussian(shape, x, y, f, PSF_SIGMA) for x, y, f in STARS)
    model += gaussian(shape, 100, 100, 500.0, 6.0, 3.0, 0.5)  # a big galaxy
    assert not detect.extract(make_image(model)).crowded


def test_pixel_variance_is_the_variance_of_poisson_electrons_plus_dark_noise():
    # sky of 400 electrons a pixel, dark variance 6.25 DN^2 at gain 4.7 e/DN (138 e^2), and
    # two column groups of different electrons per nMgy: the variance of calibrated pixels
    rng = np.random.default_rng(11)
    shape, gain, dark = (300, 200), 4.7, 6.25
    iota = np.where(np.arange(shape[1]) < 100, 150.0, 300.0)
    sky_e = 400.0
    electrons = rng.poisson(sky_e, shape) + rng.normal(0.0, np.sqrt(dark) * gain, shape)
    image = SimpleNamespace(electrons=electrons.astype(np.float32), iota=iota, gain=gain,
                            dark_variance=dark, sky_nmgy=np.broadcast_to(sky_e / iota, shape))
    data, _ = detect.calibrated_nmgy(image)
    var = detect.pixel_variance(image, (0, shape[1] - 1, 0, shape[0] - 1))
    for cols in (slice(0, 100), slice(100, 200)):
        n = data[:, cols].size  # the sample variance is good to sqrt(2 / n) = 1.2 %
        assert var[:, cols].mean() == pytest.approx(data[:, cols].var(), rel=4 * np.sqrt(2 / n))


def test_peak_finder_positions_and_fluxes():
    shape = (100, 100)
    image = make_image(gaussian(shape, 40.3, 50.7, 100.0, PSF_SIGMA), seed=5)
    data, mask = detect.calibrated_nmgy(image)
    found = peaks.find_peaks(data, mask, detect.pixel_variance(image, (0, 99, 0, 99)),
                             image.psf.stamp(0, 0))
    assert len(found) == 1
    assert found.x[0] == pytest.approx(40.3, abs=0.1)
    assert found.y[0] == pytest.approx(50.7, abs=0.1)
    assert found.flux[0] == pytest.approx(100.0, rel=0.05)


# --- real data ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def m2_images():
    shared("sdss/2583/2/136/frame-r-002583-2-0136.fits.bz2")
    return load_field(SDSS, M2)


@pytest.fixture(scope="module")
def u3900():
    shared("sdss/3900/6/269/frame-u-003900-6-0269.fits.bz2")
    return load_field(SDSS, F3900, bands="u")


def hubble_scores(entries, images):
    truth = read_hubble_truth(shared("truth/true_hubble_m2.npz"), images[2].path)
    table = Table({"ra": entries.ra, "dec": entries.dec, "flux_r_nmgy": entries.gal_flux[:, 2]})
    return score_detection(truth, table, radius_px=1.0, max_mag=21.0).overall


def test_m2_hubble_region_recall_and_precision(m2_images):
    """Measured: merged detection recall 0.515, precision 0.980 (r < 21, 1 px, 520 stars);
    SEP alone on the r band recall 0.002, precision 0.375 (8 sources)."""
    entries = detect.detect_sources(m2_images, HUBBLE_REGION)
    scores = hubble_scores(entries, m2_images)
    assert scores.n_true == 520
    assert scores.recall > 0.45
    assert scores.precision > 0.9
    assert entries.is_star.mean() > 0.9
    alone = hubble_scores(detect.sep_only_catalog(m2_images, HUBBLE_REGION), m2_images)
    assert alone.recall < 0.1
    np.testing.assert_array_equal(len(detect.sep_only_catalog(m2_images, HUBBLE_REGION)),
                                  alone.n_pred)


def test_m2_detections_have_a_flux_in_every_band(m2_images):
    """A detection missing from the r image used to keep r flux 0: its log r flux started
    below its box, pinned on the bound, and inference left it at e^-1 nMgy (24 of the 126
    sources of this box) with its colours holding the other bands' fluxes."""
    entries = detect.detect_sources(m2_images, (100, 249, 100, 249))
    assert len(entries) > 100
    assert np.all(entries.gal_flux > 0)
    np.testing.assert_array_equal(entries.star_flux, entries.gal_flux)


@pytest.mark.slow
def test_m2_full_field_finds_many_sources(m2_images):
    entries = detect.detect_sources(m2_images)
    assert len(entries) > 10000
    assert entries.is_star.mean() > 0.8
    assert (entries.gal_flux[:, 2] > 0).mean() > 0.5


def test_3900_u_detections_match_sdss_photo(u3900):
    """A sparse field: SEP alone, with positions on Photo's (measured: 50 of 84 detections
    within 0.5 arcsec of the 699 selected photoObj objects, median offset 0.02 px)."""
    (image,) = u3900
    assert not detect.extract(image).crowded
    entries = detect.detect_sources(u3900)
    photo = read_photoobj(SDSS / "3900/6/269/photoObj-003900-6-0269.fits")
    ra, dec = photo.ra, photo.dec
    sep_px = separation_px(entries.ra[:, None], entries.dec[:, None], ra[None, :], dec[None, :])
    nearest_photo = sep_px.argmin(axis=1)
    close = sep_px.min(axis=1) < 0.5 / 0.396
    assert close.sum() >= 45
    x, y = image.wcs.all_world2pix(entries.ra[close], entries.dec[close], 0)
    xp, yp = image.wcs.all_world2pix(ra[nearest_photo[close]], dec[nearest_photo[close]], 0)
    assert abs(np.median(x - xp)) < 0.1 and abs(np.median(y - yp)) < 0.1
    bright_stars = close & photo.is_star[nearest_photo] & (photo.star_flux[nearest_photo, 0] > 10)
    assert entries.is_star[bright_stars].all()


# --- choose_init -------------------------------------------------------------------------

def test_choose_init_modes(m2_images, u3900):
    m2_photo_path = shared("sdss/2583/2/136/photoObj-002583-2-0136.fits")
    m2_photo = read_photoobj(m2_photo_path)
    assert len(m2_photo) == 0
    entries, used = choose_init(m2_photo, m2_images, "auto", photoobj_path=m2_photo_path,
                                region=HUBBLE_REGION)
    assert used == "detect" and len(entries) > 300
    with pytest.raises(InputFileError, match="has no sources; use --init detect") as err:
        choose_init(m2_photo, m2_images, "photo", photoobj_path=m2_photo_path)
    assert err.value.path == str(m2_photo_path)

    path = SDSS / "3900/6/269/photoObj-003900-6-0269.fits"
    photo = read_photoobj(path)
    entries, used = choose_init(photo, u3900, "auto", photoobj_path=path)
    assert used == "photo"
    np.testing.assert_array_equal(entries.objid, photo.objid)
    entries, used = choose_init(photo, u3900, "detect", photoobj_path=path)
    assert used == "detect" and 50 < len(entries) < 200
    with pytest.raises(UsageError, match="unknown --init"):
        choose_init(photo, u3900, "guess")


def test_choose_init_photo_in_a_region(u3900):
    path = SDSS / "3900/6/269/photoObj-003900-6-0269.fits"
    photo = read_photoobj(path)
    region = (0, 999, 0, 699)
    entries, used = choose_init(photo, u3900, "photo", photoobj_path=path, region=region)
    x, y = u3900[0].wcs.all_world2pix(photo.ra, photo.dec, 0)
    inside = (x >= -0.5) & (x <= 999.5) & (y >= -0.5) & (y <= 699.5)
    assert used == "photo" and 0 < len(entries) == inside.sum() < len(photo)
    np.testing.assert_array_equal(entries.objid, photo.objid[inside])
    assert isinstance(entries, CatalogEntries)
