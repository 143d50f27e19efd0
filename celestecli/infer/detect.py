"""Initial catalog from source detection on the images with SEP (MODEL.md 7.6).

Per image: the calibrated, sky-subtracted pixels in nanomaggies; SEP's global background RMS
(256x256 boxes, 3x3 filter) sets a relative threshold of 1.3 for ``sep.extract`` (minimum area
5, 3x3 kernel, 32 deblending levels, contrast 0.005, cleaning on).  Detections are carried to
the sky with each image's WCS and merged across images within 1 arcsec; a merged object takes,
in each band, the flux of its largest detection there (most pixels) and its shape from its
largest detection overall.

Departures from Celeste.jl, on purpose:

* Crowded fields: in an image where most significant peaks share their SEP segment with others
  (``peaks.is_crowded``; a globular cluster such as M2), the peaks of a zero-sum PSF filter
  replace the SEP objects they fall in.  On M2's Hubble region SEP alone finds 8 sources among
  520 stars brighter than r = 21; with the peaks, half of those stars are found within 1 px.
* Angle: the model's pixel-frame angle is SEP's theta itself (MODEL.md 7.6 note); Celeste adds
  the position angle of +x, which turns it into a sky angle.
* Bands without a detection: Celeste gives them flux 0; here they take the flux of the nearest
  band that has one (``fill_undetected_bands``), since a zero r flux pins the log r flux on its
  lower bound for good.
* Type: Celeste starts every detection as a galaxy.  Here a detection is a star when it is about
  as concentrated as the PSF (``concentration`` at least ``STAR_CONCENTRATION``), and every
  crowded-field peak is a star.  Point sources then start with the small patches they need;
  on 3900/6/269 (u) the 35 Photo stars found score 0.82 or more, the three brightest Photo
  galaxies 0.5-0.63; faint sources, whose noisy peaks look concentrated, lean towards "star".
"""

import logging
from dataclasses import dataclass, replace

import numpy as np
import sep
from scipy.spatial import cKDTree

from celestecli.errors import InputFileError, UsageError
from celestecli.infer import peaks
from celestecli.sdss.photoobj import CatalogEntries
from celestecli.validate.matching import unit_vectors

N_BANDS = 5
R_BAND = 2
THRESHOLD = 1.3  # times the global background RMS
MIN_AREA = 5
FILTER_KERNEL = np.array([[1, 2, 1], [2, 4, 2], [1, 2, 1]], dtype=np.float32)
DEBLEND_NTHRESH = 32
DEBLEND_CONT = 0.005
BACKGROUND_BOX = 256
BACKGROUND_FILTER = 3
MERGE_RADIUS_ARCSEC = 1.0
REGION_MARGIN_PX = 32  # context kept around a region so that edge sources deblend as in full
FRAC_DEV_INIT = 0.5
STAR_CONCENTRATION = 0.7
APERTURE_SIGMAS = 2.5
HALF_LIGHT_PER_SIGMA = np.sqrt(2.0 * np.log(2.0))
# SEP's defaults (300,000 pixels above threshold, 1,024 sub-objects per deblended blob) overflow
# on a globular cluster's core; these are per-call limits, not allocations of that size.
MIN_PIXSTACK = 300_000
SUB_OBJECT_LIMIT = 8192

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ImageDetections:
    """Detections in one image, positions in its 0-based pixel frame and on the sky."""

    band: int
    x: np.ndarray
    y: np.ndarray
    ra: np.ndarray
    dec: np.ndarray
    flux: np.ndarray  # nanomaggies: SEP's isophotal flux, or a peak's point-source flux
    npix: np.ndarray
    a: np.ndarray  # semi-major / minor axis RMS, pixels
    b: np.ndarray
    theta: np.ndarray  # radians, major axis from +x towards +y
    concentration: np.ndarray  # peak pixel's share of the flux over the PSF's; ~1 point-like
    crowded: bool  # whether crowded-field peaks replaced SEP objects

    def __len__(self) -> int:
        return self.x.size


def calibrated_nmgy(image) -> tuple[np.ndarray, np.ndarray]:
    """Sky-subtracted pixels in nanomaggies (0 where masked) and the mask (True = masked)."""
    nmgy = image.electrons / image.iota[None, :] - image.sky_nmgy
    mask = ~np.isfinite(nmgy)
    return np.ascontiguousarray(np.where(mask, 0.0, nmgy), dtype=np.float32), mask


def pixel_variance(image, box) -> np.ndarray:
    """Per-pixel noise variance in nanomaggies^2: Poisson electrons plus dark current."""
    x0, x1, y0, y1 = box
    electrons = np.nan_to_num(image.electrons[y0:y1 + 1, x0:x1 + 1], nan=0.0)
    iota = image.iota[x0:x1 + 1][None, :]
    return (np.maximum(electrons, 0.0) + image.dark_variance * image.gain**2) / iota**2


def global_rms(data: np.ndarray, mask: np.ndarray) -> float:
    """SEP's global background RMS of an image (the detection threshold's unit)."""
    bkg = sep.Background(data, mask=mask, bw=BACKGROUND_BOX, bh=BACKGROUND_BOX,
                         fw=BACKGROUND_FILTER, fh=BACKGROUND_FILTER)
    return float(bkg.globalrms)


def concentration(data, mask, segmap, objects, stamp) -> np.ndarray:
    """Peak pixel over aperture flux, relative to the same ratio of the unit-flux PSF ``stamp``.

    About 1 for a point source (0.8 when it sits on a pixel corner), lower for an extended one;
    noise in the peak pushes faint sources up.  The aperture (radius ``APERTURE_SIGMAS`` PSF
    widths) leaves out pixels of other objects, so neighbours do not make a star look extended.
    """
    if len(objects) == 0:
        return np.zeros(0)
    radius = APERTURE_SIGMAS * peaks.psf_sigma(stamp)
    cy, cx = np.array(stamp.shape) // 2
    yy, xx = np.indices(stamp.shape)
    psf_aperture = stamp[(xx - cx) ** 2 + (yy - cy) ** 2 <= radius**2].sum()
    flux, _, _ = sep.sum_circle(data, objects["x"], objects["y"], radius, mask=mask,
                                segmap=segmap, seg_id=np.arange(1, len(objects) + 1,
                                                                dtype=np.int32))
    ratio = objects["peak"] / np.where(flux > 0, flux, np.nan)
    return np.nan_to_num(ratio * psf_aperture / stamp.max(), nan=np.inf)


def _sep_extract(image, data, mask, rms):
    sep.set_extract_pixstack(max(MIN_PIXSTACK, data.size))
    sep.set_sub_object_limit(SUB_OBJECT_LIMIT)
    try:
        return sep.extract(data, THRESHOLD, err=rms, mask=mask, minarea=MIN_AREA,
                           filter_kernel=FILTER_KERNEL, deblend_nthresh=DEBLEND_NTHRESH,
                           deblend_cont=DEBLEND_CONT, clean=True, segmentation_map=True)
    except Exception as exc:  # sep raises a bare Exception for its C library's errors
        raise InputFileError(image.path, f"source detection failed: {exc}") from exc


def extract(image, box: tuple[int, int, int, int] | None = None,
            crowded: bool | None = None) -> ImageDetections:
    """Detections in ``image``, or in its pixel ``box`` (x0, x1, y0, y1, inclusive).

    The threshold uses the whole image's RMS, so a box finds what the whole image would there
    (up to deblending of blobs the box cuts).  ``crowded``: None decides from the image
    (``peaks.is_crowded``), True replaces SEP objects by the peaks in them, False is SEP alone.
    """
    data, mask = calibrated_nmgy(image)
    rms = global_rms(data, mask)
    if not rms > 0:
        raise InputFileError(image.path, "no background noise left to set a detection threshold")
    ny, nx = data.shape
    if box is None:
        box = (0, nx - 1, 0, ny - 1)
    x0, x1, y0, y1 = box
    data = np.ascontiguousarray(data[y0:y1 + 1, x0:x1 + 1])
    mask = np.ascontiguousarray(mask[y0:y1 + 1, x0:x1 + 1])
    stamp = image.psf.stamp((x0 + x1) / 2.0, (y0 + y1) / 2.0)
    stamp = stamp / stamp.sum()

    objects, segmap = _sep_extract(image, data, mask, rms)
    x, y = objects["x"], objects["y"]
    columns = {
        "flux": objects["flux"].astype(np.float64), "npix": objects["npix"].astype(np.int64),
        "a": objects["a"].astype(np.float64), "b": objects["b"].astype(np.float64),
        "theta": objects["theta"].astype(np.float64),
        "concentration": concentration(data, mask, segmap, objects, stamp),
    }
    split = False
    if crowded is not False:
        found = peaks.find_peaks(data, mask, pixel_variance(image, box), stamp)
        split = crowded or peaks.is_crowded(found, segmap, len(objects))
        if split:
            replaced, npix = peaks.split_segments(found, segmap, len(objects))
            width = peaks.psf_sigma(stamp)
            n = len(found)
            added = {"flux": found.flux, "npix": npix, "a": np.full(n, width),
                     "b": np.full(n, width), "theta": np.zeros(n), "concentration": np.ones(n)}
            columns = {k: np.concatenate([v[~replaced], added[k]]) for k, v in columns.items()}
            x = np.concatenate([x[~replaced], found.x])
            y = np.concatenate([y[~replaced], found.y])
    x = x + x0
    y = y + y0
    ra, dec = image.wcs.all_pix2world(x, y, 0)
    return ImageDetections(band=image.band, x=x, y=y, ra=np.asarray(ra), dec=np.asarray(dec),
                           crowded=bool(split), **columns)


def reference_image(images):
    """The image whose pixel frame a region refers to: the first r-band one, else the first."""
    for image in images:
        if image.band == R_BAND:
            return image
    return images[0]


def in_region(image, ra, dec, region) -> np.ndarray:
    """Sky positions falling in the pixel box ``region`` (x0, x1, y0, y1) of ``image``."""
    x0, x1, y0, y1 = region
    x, y = image.wcs.all_world2pix(np.asarray(ra), np.asarray(dec), 0)
    return (x >= x0 - 0.5) & (x <= x1 + 0.5) & (y >= y0 - 0.5) & (y <= y1 + 0.5)


def region_box(image, reference, region, margin: int = REGION_MARGIN_PX):
    """Pixel box of ``image`` covering ``region`` of ``reference`` plus a margin, or None if
    the two do not overlap."""
    x0, x1, y0, y1 = region
    cx = np.array([x0 - 0.5, x1 + 0.5, x0 - 0.5, x1 + 0.5])
    cy = np.array([y0 - 0.5, y0 - 0.5, y1 + 0.5, y1 + 0.5])
    ra, dec = reference.wcs.all_pix2world(cx, cy, 0)
    x, y = image.wcs.all_world2pix(ra, dec, 0)
    ny, nx = image.electrons.shape
    bx0 = max(int(np.floor(x.min())) - margin, 0)
    bx1 = min(int(np.ceil(x.max())) + margin, nx - 1)
    by0 = max(int(np.floor(y.min())) - margin, 0)
    by1 = min(int(np.ceil(y.max())) + margin, ny - 1)
    if bx1 < bx0 or by1 < by0:
        return None
    return bx0, bx1, by0, by1


def check_region(region, reference) -> tuple[int, int, int, int]:
    """``region`` as ints, checked to be an ordered box overlapping ``reference``."""
    x0, x1, y0, y1 = (int(v) for v in region)
    ny, nx = reference.electrons.shape
    if x1 < x0 or y1 < y0:
        raise UsageError(f"region {x0}:{x1 + 1},{y0}:{y1 + 1} is empty")
    if x1 < 0 or y1 < 0 or x0 >= nx or y0 >= ny:
        raise UsageError(f"region {x0}:{x1 + 1},{y0}:{y1 + 1} lies outside the {nx}x{ny} "
                         f"frame {reference.path}")
    return x0, x1, y0, y1


def merge(detections: list[ImageDetections]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Join detections of several images into objects (MODEL.md 7.6).

    The first image's detections start the list; each further image's detections join the
    nearest object listed before that image if it lies within 1 arcsec, else start a new one
    at their position.

    Returns
    -------
    ra, dec : (n_objects,) positions of the objects
    owner : one array per image, the object each detection joined
    """
    limit = 2.0 * np.sin(np.radians(MERGE_RADIUS_ARCSEC / 3600.0) / 2.0)  # chord length
    ra = np.empty(0)
    dec = np.empty(0)
    owner = []
    for det in detections:
        own = np.full(len(det), -1, dtype=np.int64)
        if ra.size and len(det):
            dist, idx = cKDTree(unit_vectors(ra, dec)).query(unit_vectors(det.ra, det.dec))
            near = dist <= limit
            own[near] = idx[near]
        new = np.flatnonzero(own < 0)
        own[new] = ra.size + np.arange(new.size)
        ra = np.concatenate([ra, det.ra[new]])
        dec = np.concatenate([dec, det.dec[new]])
        owner.append(own)
    return ra, dec, owner


def _largest(owner: np.ndarray, key: np.ndarray, npix: np.ndarray) -> np.ndarray:
    """Row of the detection with most pixels for each distinct (owner, key) pair."""
    order = np.lexsort((-npix, key, owner))
    o, k = owner[order], key[order]
    first = np.ones(order.size, dtype=bool)
    first[1:] = (o[1:] != o[:-1]) | (k[1:] != k[:-1])
    return order[first]


def fill_undetected_bands(flux: np.ndarray) -> np.ndarray:
    """Each band without a detection (flux <= 0) takes the flux of the nearest band in
    wavelength that has one (the redder on a tie): a flat spectrum there, not zero.

    A zero r flux starts log r-flux at log(0.1), below its box (-1), so it is clamped onto the
    bound, where the bounded transform's gradient vanishes: such a source kept r = e^-1 nMgy
    whatever its image (24 of 126 sources of 2583/2/136 in 100:250,100:250), its colours
    holding the real fluxes of the other bands.
    """
    flux = flux.copy()
    detected = flux > 0
    bands = np.arange(flux.shape[1])
    for b in bands:
        missing = ~detected[:, b]
        if not missing.any():
            continue
        # distance to each band that has a detection; ties go to the redder band
        dist = np.where(detected[missing], np.abs(bands - b) - 0.1 * (bands > b), np.inf)
        nearest = np.argmin(dist, axis=1)
        has = np.isfinite(dist[np.arange(nearest.size), nearest])
        rows = np.flatnonzero(missing)[has]
        flux[rows, b] = flux[rows, nearest[has]]
    return flux


def entries_from_detections(detections: list[ImageDetections]) -> CatalogEntries:
    """Merged catalog entries (fluxes, shape and type) from per-image detections."""
    if not detections:
        return CatalogEntries.empty()
    ra, dec, owner = merge(detections)
    n = ra.size
    cat = {name: np.concatenate([getattr(d, name) for d in detections])
           for name in ("flux", "npix", "a", "b", "theta", "concentration")}
    own = np.concatenate(owner)
    band = np.concatenate([np.full(len(d), d.band) for d in detections])

    flux = np.zeros((n, N_BANDS))
    best = _largest(own, band, cat["npix"])
    flux[own[best], band[best]] = cat["flux"][best]
    flux = fill_undetected_bands(flux)
    shape = _largest(own, np.zeros_like(own), cat["npix"])  # one row per object, in order
    a, b = cat["a"][shape], cat["b"][shape]
    return CatalogEntries(
        objid=np.arange(n, dtype=np.int64),
        ra=ra, dec=dec,
        is_star=cat["concentration"][shape] >= STAR_CONCENTRATION,
        star_flux=flux.copy(), gal_flux=flux,
        frac_dev=np.full(n, FRAC_DEV_INIT),
        axis_ratio=np.where(a > 0, b / np.where(a > 0, a, 1.0), 1.0),
        angle_rad=cat["theta"][shape],
        radius_px=np.sqrt(a * b) * HALF_LIGHT_PER_SIGMA,
    )


def detect_sources(images, region: tuple[int, int, int, int] | None = None,
                   crowded: bool | None = None) -> CatalogEntries:
    """Initial catalog from detection on ``images`` (objects like ``sdss.image.Image``).

    Parameters
    ----------
    images : the images, in the order the merge visits them (detections of the first start
        the object list)
    region : (x0, x1, y0, y1), optional
        Inclusive 0-based pixel box of the r-band frame (the first r image; the first image if
        there is none).  Detection runs on each image's part of it plus a margin, and only
        objects whose position falls in the box are returned.
    crowded : None (default) replaces SEP objects by the significant peaks in them in the
        images that look crowded (``peaks.is_crowded``); True in every image; False never (SEP
        alone, as Celeste.jl).
    """
    if not images:
        return CatalogEntries.empty()
    boxes = [None] * len(images)
    if region is not None:
        reference = reference_image(images)
        region = check_region(region, reference)
        boxes = [region_box(im, reference, region) for im in images]
    detections = []
    for im, box in zip(images, boxes, strict=True):
        if region is not None and box is None:
            continue  # the region is not on this image
        detections.append(extract(im, box, crowded))
        if detections[-1].crowded:
            log.info("%s: crowded; SEP objects replaced by the peaks in them", im.path.name)
    entries = entries_from_detections(detections)
    if region is not None:
        keep = in_region(reference, entries.ra, entries.dec, region)
        entries = entries.subset(keep)
        entries = replace(entries, objid=np.arange(len(entries)))
    return entries


def sep_only_catalog(images, region: tuple[int, int, int, int] | None = None
                     ) -> CatalogEntries:
    """SEP alone, with Celeste's settings, on the r-band image (the reference image of
    ``detect_sources``): the baseline a crowded-field catalog is compared with."""
    return detect_sources([reference_image(images)], region, crowded=False)
