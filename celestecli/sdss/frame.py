"""Read an SDSS frame file and convert it to electrons (MODEL.md 7.2).

HDUs (0-based): 0 = calibrated, sky-subtracted image in nanomaggies with its TAN WCS; 1 =
calibration vector ``calib[x]`` (nanomaggies per data number); 2 = sky table (``ALLSKY`` coarse
grid in data numbers, ``XINTERP``/``YINTERP`` grid coordinates of every column/row).

Any image size is accepted.  A cut-out smaller than the frame (e.g. 1000/1/100, 100x100) keeps
the frame's full-length ``XINTERP``/``YINTERP`` and its CRPIX, so it is taken to start at frame
pixel (0, 0); its leading ``nx``/``ny`` grid coordinates are used.
"""

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from astropy.wcs import WCS, FITSFixedWarning

from celestecli._kernels.calibrate import frame_to_electrons
from celestecli.sdss.fitsio import FitsFile, native
from celestecli.sdss.warnings_lock import FITS_WARNINGS_LOCK

# The code requires sky > 1e-12 where it is used: log E[background] must exist.
MIN_SKY = 1e-12


@dataclass(frozen=True)
class Frame:
    """The contents of one frame file, validated; arrays are native-endian and C-contiguous."""

    path: Path
    image: np.ndarray  # float32 (ny, nx), nanomaggies, NaN where not finite
    calib: np.ndarray  # float64 (nx,), nanomaggies per data number, > 0
    allsky: np.ndarray  # float32 (gy, gx), coarse sky in data numbers
    xinterp: np.ndarray  # float64 (nx,), grid x coordinate per column (0-based)
    yinterp: np.ndarray  # float64 (ny,), grid y coordinate per row (0-based)
    wcs: WCS  # pixel origin 0 (use world_to_pixel / all_world2pix(..., 0))

    @property
    def shape(self) -> tuple[int, int]:
        return self.image.shape


def _used_grid_block(coords: np.ndarray, n: int) -> slice:
    """Grid indices the bilinear interpolation touches for these coordinates (after clamping)."""
    c = np.clip(coords, 0, n - 1)
    lo = int(np.floor(c.min()))
    hi = min(int(np.floor(c.max())) + 1, n - 1)
    return slice(lo, hi + 1)


def _read_wcs(f: FitsFile) -> WCS:
    header = f.header(0)
    try:
        with FITS_WARNINGS_LOCK, warnings.catch_warnings():
            # SDSS headers use the deprecated RADECSYS and DATE-OBS forms astropy fixes itself.
            warnings.simplefilter("ignore", FITSFixedWarning)
            wcs = WCS(header)
    except Exception as exc:  # astropy raises assorted types for malformed WCS keywords
        raise f.error(f"HDU 0 has no usable WCS ({exc})") from exc
    if wcs.naxis != 2 or not wcs.has_celestial:
        raise f.error("HDU 0 WCS is not a 2-D celestial (RA/Dec) WCS")
    return wcs


def read_frame(path: str | Path) -> Frame:
    """Read and validate a frame file (plain, .bz2 or .gz).

    Raises
    ------
    InputFileError
        Naming the file, for any missing HDU or column, wrong shape or non-physical value.
    """
    f = FitsFile(path)
    f.require_hdus(3, "image, calibration vector, sky table")
    image = native(f.image(0, "image", ndim=2), np.float32)
    ny, nx = image.shape
    image[~np.isfinite(image)] = np.nan

    calib = native(f.image(1, "calibration vector", ndim=1), np.float64)
    if calib.shape != (nx,):
        raise f.error(f"calibration vector (HDU 1) has {calib.size} values, image has {nx} columns")
    if not (np.all(np.isfinite(calib)) and np.all(calib > 0)):
        raise f.error("calibration vector (HDU 1) has non-finite or non-positive values")

    sky = f.table(2, "sky table", ("ALLSKY", "XINTERP", "YINTERP"))
    if len(sky) != 1:
        raise f.error(f"sky table (HDU 2) has {len(sky)} rows, expected 1")
    allsky = native(f.column(sky, "ALLSKY", 2, np.float32)[0], np.float32)
    xinterp = f.column(sky, "XINTERP", 2)[0]
    yinterp = f.column(sky, "YINTERP", 2)[0]
    if allsky.ndim != 2 or allsky.size == 0:
        raise f.error(f"sky grid ALLSKY (HDU 2) has shape {allsky.shape}, expected 2-D")
    if xinterp.ndim != 1 or xinterp.size < nx or yinterp.ndim != 1 or yinterp.size < ny:
        raise f.error(
            f"sky table (HDU 2) XINTERP/YINTERP have {xinterp.size}/{yinterp.size} values, "
            f"fewer than the image's {nx} columns / {ny} rows"
        )
    xinterp = native(xinterp[:nx], np.float64)
    yinterp = native(yinterp[:ny], np.float64)
    if not (np.all(np.isfinite(xinterp)) and np.all(np.isfinite(yinterp))):
        raise f.error("sky table (HDU 2) XINTERP/YINTERP have non-finite values")
    used = allsky[_used_grid_block(yinterp, allsky.shape[0]),
                  _used_grid_block(xinterp, allsky.shape[1])]
    if not np.all(used > MIN_SKY):  # also rejects NaN
        raise f.error(f"sky grid ALLSKY (HDU 2) has values <= {MIN_SKY:g} or NaN where used")

    return Frame(Path(path), image, calib, allsky, xinterp, yinterp, _read_wcs(f))


def calibrate(frame: Frame, gain: float, mask: np.ndarray | None = None,
              n_threads: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Electrons and sky (nanomaggies) of every pixel; masked or non-finite pixels are NaN.

    ``electrons = gain / calib[x] * (image + sky)`` with the sky interpolated bilinearly from the
    coarse grid (MODEL.md 7.2), computed by the ``calibrate`` kernel.

    Parameters
    ----------
    frame : Frame
    gain : float
        Electrons per data number of this band (photoField ``GAIN``).
    mask : bool array (ny, nx), optional
        True where a pixel is excluded.
    n_threads : int
        OpenMP threads for the kernel.

    Returns
    -------
    electrons, sky_nmgy : float32 arrays (ny, nx)
    """
    if not (np.isfinite(gain) and gain > 0):
        raise ValueError(f"gain must be finite and positive, got {gain}")
    image = frame.image
    if mask is not None:
        if mask.shape != image.shape:
            raise ValueError(f"mask shape {mask.shape} differs from image shape {image.shape}")
        image = image.copy()
        image[mask] = np.nan
    electrons = np.empty(image.shape, np.float32)
    sky_nmgy = np.empty(image.shape, np.float32)
    frame_to_electrons(image, frame.calib, frame.allsky, frame.xinterp, frame.yinterp,
                       float(gain), electrons, sky_nmgy, int(n_threads))
    return electrons, sky_nmgy
