"""One band of one SDSS field as the inference consumes it, and loading a field's five bands.

An ``Image`` holds pixels in electrons (NaN where masked or not finite), the sky in nanomaggies,
the per-column calibration ``iota = gain / calib`` (electrons per nanomaggy), the WCS (pixel
origin 0) and the band's eigen-PSF (MODEL.md 2.3, 7.2).
"""

import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from astropy.wcs import WCS

from celestecli.errors import InputFileError, UsageError
from celestecli.fields import FieldID
from celestecli.sdss import BANDS
from celestecli.sdss.fpm import read_fpm_mask
from celestecli.sdss.frame import calibrate, read_frame
from celestecli.sdss.layout import base_name, find_local, local_dir
from celestecli.sdss.photofield import FieldCalibration, read_photofield
from celestecli.sdss.psfield import EigenPsf, read_psfield
from celestecli.threads import effective_threads

log = logging.getLogger(__name__)

SKY_CHECK_RADIUS = 50  # pixels, MODEL.md 7.8
SKY_CHECK_MARGIN = 5.0  # electrons


@dataclass(frozen=True)
class Image:
    """One band of one field.  Arrays are ``data[y, x]``; pixel coordinates are 0-based (x, y)."""

    fid: FieldID
    band: int  # 0..4 for u, g, r, i, z
    electrons: np.ndarray  # float32 (ny, nx), NaN where masked or not finite
    sky_nmgy: np.ndarray  # float32 (ny, nx), background in nanomaggies
    iota: np.ndarray  # float64 (nx,), electrons per nanomaggy = gain / calib[x]
    calib: np.ndarray  # float64 (nx,), nanomaggies per data number
    gain: float  # electrons per data number
    dark_variance: float  # data numbers^2 per pixel
    wcs: WCS  # pixel origin 0
    psf: EigenPsf  # psf.stamp(x, y) -> PSF image at that pixel position
    path: Path  # the frame file

    @property
    def shape(self) -> tuple[int, int]:
        return self.electrons.shape

    @property
    def band_name(self) -> str:
        return BANDS[self.band]


def _input_paths(data_dir: Path, fid: FieldID, bands: str) -> dict:
    """The field's psField, frames and fpMs, keyed by (kind, band), found before any is read.

    Raises for the first missing one, listing the others that are missing too (a field with
    only a u frame should not take four runs to learn it lacks g, r, i and z).
    """
    kinds = [("psField", None)] + [(kind, b) for b in bands for kind in ("frame", "fpM")]
    found = {key: find_local(data_dir, fid, *key) for key in kinds}
    missing = [local_dir(data_dir, fid, kind) / base_name(fid, kind, band)
               for (kind, band), path in found.items() if path is None]
    if not missing:
        return found
    others = f"; also missing: {', '.join(p.name for p in missing[1:])}" if missing[1:] else ""
    raise InputFileError(missing[0], "missing (also looked for .bz2 and .gz copies"
                                     f"{others}; celeste fetch {fid} downloads a field's files)")


def _field_calibration(data_dir: Path, fid: FieldID, psfield_calibration: FieldCalibration
                       ) -> FieldCalibration:
    """photoField's row for the field; psField's copy of the same numbers if there is no file."""
    path = find_local(data_dir, fid, "photoField")
    if path is None:
        log.info("%s: no photoField file, using the gain and dark variance of the psField", fid)
        return psfield_calibration
    return read_photofield(path, fid.field)


def load_field(data_dir: str | Path, fid: FieldID, bands: str = BANDS,
               n_threads: int | None = None) -> list[Image]:
    """Read, mask and calibrate the images of ``fid`` in ``bands`` from the local layout.

    Raises
    ------
    InputFileError
        Naming the file that is missing, unreadable or malformed, or whose image has no usable
        pixel after masking.
    """
    unknown = set(bands) - set(BANDS)
    if unknown:
        raise UsageError(f"unknown band(s) {''.join(sorted(unknown))}: choose from {BANDS}")
    data_dir = Path(data_dir)
    threads = effective_threads(n_threads)
    found = _input_paths(data_dir, fid, bands)  # before reading any: a psField takes seconds
    psfield = read_psfield(found["psField", None])
    calibration = _field_calibration(data_dir, fid, psfield.calibration)
    paths = [(b, found["frame", b], found["fpM", b]) for b in bands]

    def read(item):
        _, frame_path, fpm_path = item
        frame = read_frame(frame_path)
        return frame, read_fpm_mask(fpm_path, frame.shape)

    # Decompressing a bz2 frame takes most of the time and releases the GIL: one thread per band.
    with ThreadPoolExecutor(max_workers=max(1, min(threads, len(paths)))) as pool:
        loaded = list(pool.map(read, paths))
    images = []
    for (band_name, frame_path, _), (frame, mask) in zip(paths, loaded, strict=True):
        b = BANDS.index(band_name)
        gain = float(calibration.gain[b])
        electrons, sky_nmgy = calibrate(frame, gain, mask, threads)
        if not np.isfinite(electrons).any():
            raise InputFileError(frame_path, "no finite pixel left after masking")
        images.append(Image(
            fid=fid, band=b, electrons=electrons, sky_nmgy=sky_nmgy, iota=gain / frame.calib,
            calib=frame.calib, gain=gain, dark_variance=float(calibration.dark_variance[b]),
            wcs=frame.wcs, psf=psfield.bands[b], path=frame_path,
        ))
    return images


def is_sky_bad(image: Image, x: float, y: float) -> bool:
    """True if the sky looks underestimated around pixel position (x, y) (MODEL.md 7.8).

    Claimed sky (electrons) at the pixel vs the median of the unmasked pixels in the box of
    radius 50 px around it: bad if claimed + 5 < observed.  Meant for the i-band image.
    A box with no unmasked pixel is not flagged.
    """
    ny, nx = image.shape
    ix = min(max(int(round(x)), 0), nx - 1)
    iy = min(max(int(round(y)), 0), ny - 1)
    claimed = float(image.sky_nmgy[iy, ix]) * float(image.iota[ix])
    r = SKY_CHECK_RADIUS
    box = image.electrons[max(iy - r, 0):iy + r + 1, max(ix - r, 0):ix + r + 1]
    finite = box[np.isfinite(box)]
    if finite.size == 0:
        return False
    return claimed + SKY_CHECK_MARGIN < float(np.median(finite))
