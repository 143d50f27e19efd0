"""The instrument side of a simulated field: WCS, PSF, sky, calibration and gains per band.

Either a built-in SDSS-like setup (``builtin_setup``) or a copy of a real field's
(``like_setup``).  Every number is held exactly as the simulated files will store it (float32
where SDSS files use float32), so that what the readers compute from the files (sky, electrons
per nanomaggy, WCS, PSF) is what the simulation used.
"""

import bz2
import gzip
import math
import re
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.wcs import WCS, FITSFixedWarning

from celestecli.errors import InputFileError, UsageError
from celestecli.fields import FieldID
from celestecli.model.psf_fit import PsfMixture, shape_cov
from celestecli.sdss import BANDS, PIXEL_SCALE_ARCSEC
from celestecli.sdss.frame import read_frame
from celestecli.sdss.layout import base_name, find_local, local_dir
from celestecli.sdss.photofield import read_photofield
from celestecli.sdss.psfield import EigenPsf, read_psfield
from celestecli.sdss.warnings_lock import FITS_WARNINGS_LOCK

SDSS_WIDTH, SDSS_HEIGHT = 2048, 1489
PIXEL_SCALE_DEG = PIXEL_SCALE_ARCSEC / 3600.0
PSF_STAMP_SIZE = 51
FITS_BLOCK = 2880
SKY_GRID_STEP = 8  # pixels per coarse sky cell, as in SDSS frames
DEFAULT_CENTRE = (0.5, 0.5)  # RA, Dec (deg): Stripe 82, near Celeste's benchmark field 4263/5/119

# Built-in per-band numbers, u..z.  Gains and dark variances: photoField 2583/2/136;
# calibration (nMgy per count): its NMGYPERCOUNT; sky: dark-sky surface brightness
# (22.1, 21.7, 20.7, 20.1, 18.8 mag/arcsec^2) per 0.396" pixel.
BUILTIN_GAIN = (1.825, 3.855, 4.6, 5.195, 5.155)
BUILTIN_DARK_VARIANCE = (12.6025, 1.44, 1.0, 6.25, 1.0)
BUILTIN_NMGY_PER_COUNT = (0.0119, 0.0045, 0.0055, 0.0066, 0.0386)
BUILTIN_SKY_NMGY = (0.227, 0.328, 0.823, 1.43, 4.74)
# Two-Gaussian PSFs (core sigma, wing sigma in px; core weight; core axis ratio and angle),
# in the range of mixture fits to real psField stamps (MODEL.md 6.2): FWHM about 1.2-1.5".
BUILTIN_PSF = (
    (1.60, 3.3, 0.55, 0.93, 0.4),
    (1.45, 3.0, 0.55, 0.95, 0.3),
    (1.32, 2.8, 0.56, 0.95, -0.2),
    (1.27, 2.7, 0.57, 0.96, 0.6),
    (1.33, 2.8, 0.56, 0.94, 1.0),
)
# Each band's frame is offset a little on the sky, as real frames of one field are (pixels).
BUILTIN_BAND_OFFSET = ((3.2, -1.7), (1.1, 0.6), (0.0, 0.0), (-0.8, 1.3), (-2.4, 2.1))

_WCS_KEY = re.compile(r"^((CTYPE|CUNIT|CRPIX|CRVAL|CDELT|CROTA)[12]|(CD|PC)[12]_[12]|"
                      r"RADESYS|RADECSYS|EQUINOX|LONPOLE|LATPOLE)$")


def f32(values):
    """``values`` rounded to float32 and held as float64 (what a float32 FITS column gives)."""
    return np.asarray(values, dtype=np.float32).astype(np.float64)


def wcs_from_header(header: fits.Header) -> WCS:
    """The WCS the frame reader builds from this header (pixel origin 0 in calls)."""
    with FITS_WARNINGS_LOCK, warnings.catch_warnings():
        warnings.simplefilter("ignore", FITSFixedWarning)
        return WCS(header)


def interpolate_sky(allsky: np.ndarray, xinterp: np.ndarray, yinterp: np.ndarray,
                    calib: np.ndarray) -> np.ndarray:
    """Sky (nMgy, float64, (ny, nx)) as the frame reader computes it (MODEL.md 7.2).

    Bilinear interpolation of ``allsky`` at (xinterp[x], yinterp[y]), coordinates clamped to
    the grid, times calib[x]; the same arithmetic as the ``calibrate`` kernel.
    """
    gy, gx = allsky.shape
    a = allsky.astype(np.float64)

    def corners(coords, n):
        c = np.clip(coords, 0.0, n - 1)
        lo = np.floor(c).astype(np.int64)
        hi = np.where(lo + 1 < n, lo + 1, lo)
        return lo, hi, c - lo

    x0, x1, tx = corners(xinterp, gx)
    y0, y1, ty = corners(yinterp, gy)
    tx, ty = tx[None, :], ty[:, None]
    rows0 = (1.0 - tx) * a[y0][:, x0] + tx * a[y0][:, x1]
    rows1 = (1.0 - tx) * a[y1][:, x0] + tx * a[y1][:, x1]
    return ((1.0 - ty) * rows0 + ty * rows1) * calib[None, :]


@dataclass(frozen=True)
class BandSetup:
    """One band's frame geometry and calibration, as the simulated files will hold them."""

    band: int  # 0..4 for u..z
    shape: tuple[int, int]  # (ny, nx)
    wcs_header: fits.Header  # the WCS cards of the frame's HDU 0
    calib: np.ndarray  # (nx,) nMgy per data number (float32 values)
    allsky: np.ndarray  # (gy, gx) float32 coarse sky, data numbers
    xinterp: np.ndarray  # (>= nx,) grid x coordinate per column (float32 values)
    yinterp: np.ndarray  # (>= ny,) grid y coordinate per row (float32 values)
    gain: float  # electrons per data number (a float32 value)
    dark_variance: float  # DN^2 per pixel (a float32 value); not used by the noise model
    psf: EigenPsf  # float32 values

    @property
    def wcs(self) -> WCS:
        return wcs_from_header(self.wcs_header)

    @property
    def iota(self) -> np.ndarray:
        """Electrons per nanomaggy per column, as the reader computes it."""
        return self.gain / self.calib

    def sky_nmgy(self) -> np.ndarray:
        ny, nx = self.shape
        return interpolate_sky(self.allsky, self.xinterp[:nx], self.yinterp[:ny], self.calib)


@dataclass(frozen=True)
class FieldSetup:
    """The five bands of a field to simulate and where their numbers came from."""

    bands: tuple[BandSetup, ...]  # u, g, r, i, z
    description: str  # "built-in SDSS-like setup" or "like RUN/CAMCOL/FIELD"
    inputs: tuple[Path, ...] = field(default_factory=tuple)  # real files copied (--like)

    @property
    def shape(self) -> tuple[int, int]:
        return self.bands[0].shape

    @property
    def reference(self) -> BandSetup:
        """The r band: positions are drawn and reported in its pixel frame."""
        return self.bands[BANDS.index("r")]

    def on_frame(self, ra, dec) -> np.ndarray:
        """Which of the sky positions fall on the r frame's pixels."""
        ny, nx = self.shape
        x, y = self.reference.wcs.all_world2pix(ra, dec, 0)
        return (x > -0.5) & (x < nx - 0.5) & (y > -0.5) & (y < ny - 0.5)


def _canonical(header: fits.Header) -> fits.Header:
    """The header as it reads back from a file (values formatted and parsed once)."""
    return fits.Header.fromstring(header.tostring())


def _builtin_wcs_header(width: int, height: int, ra: float, dec: float, offset, rotation_deg):
    """TAN WCS, 0.396"/px; +x points to position angle ``rotation_deg`` (SDSS: about +Dec)
    and +y 90 deg east of it, the parity of SDSS frames."""
    a = math.radians(rotation_deg)
    s = PIXEL_SCALE_DEG
    h = fits.Header()
    h["CTYPE1"], h["CTYPE2"] = "RA---TAN", "DEC--TAN"
    h["CUNIT1"], h["CUNIT2"] = "deg", "deg"
    # 1-based reference pixel at the frame centre, shifted by the band's offset
    h["CRPIX1"] = (width + 1) / 2.0 + offset[0]
    h["CRPIX2"] = (height + 1) / 2.0 + offset[1]
    h["CRVAL1"], h["CRVAL2"] = float(ra), float(dec)
    h["CD1_1"] = s * math.sin(a)
    h["CD1_2"] = s * math.cos(a)
    h["CD2_1"] = s * math.cos(a)
    h["CD2_2"] = -s * math.sin(a)
    h["RADESYS"] = "ICRS"
    h["EQUINOX"] = 2000.0
    return _canonical(h)


def builtin_psf(band: int) -> PsfMixture:
    """The built-in two-Gaussian PSF of a band."""
    core, wing, w_core, rho, phi = BUILTIN_PSF[band]
    return PsfMixture(weights=np.array([w_core, 1.0 - w_core]), means=np.zeros((2, 2)),
                      covs=np.array([shape_cov(rho, phi, core), shape_cov(1.0, 0.0, wing)]))


def psf_as_eigen(stamp: np.ndarray) -> EigenPsf:
    """An eigen-PSF whose reconstruction is ``stamp`` everywhere: one eigen-image, constant
    polynomial (what the psField writer stores, in float32)."""
    return EigenPsf(eigen_images=f32(stamp)[None], coeffs=np.ones((1, 1, 1)))


def builtin_setup(width: int = SDSS_WIDTH, height: int = SDSS_HEIGHT,
                  ra: float = DEFAULT_CENTRE[0], dec: float = DEFAULT_CENTRE[1],
                  rotation_deg: float = 0.0) -> FieldSetup:
    """The built-in SDSS-like setup, a ``width`` x ``height`` frame centred on (ra, dec)."""
    if width < 1 or height < 1:
        raise UsageError(f"frame size must be positive, got {width}x{height}")
    if not (-90.0 < dec < 90.0):
        raise UsageError(f"frame centre Dec {dec} is not in (-90, 90)")
    gx = math.ceil(width / SKY_GRID_STEP)
    gy = math.ceil(height / SKY_GRID_STEP)
    xs = np.arange(width)
    # 8-pixel sky cells centred on pixels 3.5, 11.5, ... (as SDSS's XINTERP)
    xinterp = f32((xs - 3.5) / SKY_GRID_STEP)
    yinterp = f32((np.arange(height) - 3.5) / SKY_GRID_STEP)
    u = np.linspace(0.0, 1.0, gx)[None, :]
    v = np.linspace(0.0, 1.0, gy)[:, None]
    column = 2.0 * xs / max(width - 1, 1) - 1.0
    bands = []
    for b in range(len(BANDS)):
        nmgy = BUILTIN_NMGY_PER_COUNT[b]
        # a gentle, curved column trend of the calibration (about 1 %), as in real frames
        calib = f32(nmgy * (1.0 + 0.008 * (column**2 - 1.0 / 3.0)))
        # a gentle sky gradient (a few per cent across the frame)
        level = BUILTIN_SKY_NMGY[b] / nmgy
        allsky = (level * (1.0 + 0.03 * (u - 0.5) - 0.02 * (v - 0.5))).astype(np.float32)
        stamp = builtin_psf(b).stamp(PSF_STAMP_SIZE)
        bands.append(BandSetup(
            band=b, shape=(height, width),
            wcs_header=_builtin_wcs_header(width, height, ra, dec, BUILTIN_BAND_OFFSET[b],
                                           rotation_deg),
            calib=calib, allsky=allsky, xinterp=xinterp, yinterp=yinterp,
            gain=float(f32(BUILTIN_GAIN[b])), dark_variance=float(f32(BUILTIN_DARK_VARIANCE[b])),
            psf=psf_as_eigen(stamp),
        ))
    return FieldSetup(tuple(bands), "built-in SDSS-like setup")


def _require(data_dir: Path, fid: FieldID, kind: str, band: str | None = None) -> Path:
    path = find_local(data_dir, fid, kind, band)
    if path is None:
        expected = local_dir(data_dir, fid, kind) / base_name(fid, kind, band)
        raise InputFileError(expected, f"missing: --like {fid} needs the field's five frames "
                                       "and its psField in the data dir")
    return path


def _primary_header(path: Path) -> fits.Header:
    """HDU 0's header, decompressing only the blocks it occupies (plain, bzip2 or gzip)."""
    with open(path, "rb") as raw:
        magic = raw.read(3)
    opener = bz2.open if magic == b"BZh" else gzip.open if magic[:2] == b"\x1f\x8b" else open
    text = b""
    with opener(path, "rb") as fh:
        while True:
            block = fh.read(FITS_BLOCK)
            if len(block) < FITS_BLOCK:
                raise ValueError("file ends inside the primary header")
            text += block
            cards = [block[i:i + 80] for i in range(0, FITS_BLOCK, 80)]
            if any(card.startswith(b"END ") or card == b"END".ljust(80) for card in cards):
                return fits.Header.fromstring(text.decode("ascii"))


def _wcs_cards(path: Path) -> fits.Header:
    """The WCS cards of a frame's HDU 0, as written there (read_frame has checked the file)."""
    try:
        header = _primary_header(path)
    except (OSError, ValueError, EOFError, UnicodeDecodeError) as exc:
        raise InputFileError(path, f"cannot read the HDU 0 header ({exc})") from exc
    out = fits.Header([card for card in header.cards if _WCS_KEY.match(card.keyword)])
    if "RADECSYS" in out:  # the deprecated spelling SDSS uses
        out["RADESYS"] = out.pop("RADECSYS")
    return _canonical(out)


def like_setup(data_dir: str | Path, fid: FieldID, width: int | None = None,
               height: int | None = None) -> FieldSetup:
    """A copy of a real field's WCS, PSF, sky, calibration and gains (from the local layout).

    ``width``/``height`` cut the frames to their leading columns/rows (a cut-out starting at
    pixel (0, 0), as the readers understand it); by default the real size.

    Raises
    ------
    InputFileError
        Naming a missing or malformed file of the real field.
    UsageError
        If the requested size exceeds the real frame.
    """
    data_dir = Path(data_dir)
    psfield_path = _require(data_dir, fid, "psField")
    psfield = read_psfield(psfield_path)
    inputs = [psfield_path]
    photofield_path = find_local(data_dir, fid, "photoField")
    if photofield_path is not None:
        calibration = read_photofield(photofield_path, fid.field)
        inputs.append(photofield_path)
    else:
        calibration = psfield.calibration
    paths = [_require(data_dir, fid, "frame", name) for name in BANDS]
    inputs += paths
    # decompressing the frames takes most of the time and releases the GIL
    with ThreadPoolExecutor(max_workers=len(paths)) as pool:
        frames = list(pool.map(read_frame, paths))
    bands = []
    for b, (path, frame) in enumerate(zip(paths, frames, strict=True)):
        ny, nx = frame.shape
        w = nx if width is None else width
        h = ny if height is None else height
        if not (0 < w <= nx and 0 < h <= ny):
            raise UsageError(f"--width/--height {w}x{h} do not fit in the {nx}x{ny} frame of "
                             f"{fid} (a cut-out starts at pixel 0, 0)")
        bands.append(BandSetup(
            band=b, shape=(h, w), wcs_header=_wcs_cards(path),
            calib=f32(frame.calib[:w]), allsky=frame.allsky.astype(np.float32),
            xinterp=f32(frame.xinterp[:w]), yinterp=f32(frame.yinterp[:h]),
            gain=float(f32(calibration.gain[b])),
            dark_variance=float(f32(calibration.dark_variance[b])),
            psf=EigenPsf(f32(psfield.bands[b].eigen_images), f32(psfield.bands[b].coeffs)),
        ))
    return FieldSetup(tuple(bands), f"like {fid}", tuple(inputs))
