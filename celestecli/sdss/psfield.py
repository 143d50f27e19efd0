"""SDSS psField eigen-PSF: a 51x51 PSF stamp at any pixel position (MODEL.md 6.1).

HDUs 1..5 (u, g, r, i, z) are tables with one row per eigen-image k: ``RROWS`` (the flattened
RNROW x RNCOL eigen-image), ``RNROW``, ``RNCOL``, ``NROW_B``, ``NCOL_B`` and the 5x5 polynomial
coefficients ``C``.  At 0-based pixel position (x, y) (x = column = FITS axis 1):

    a_k   = sum_{i < nrow_b, j < ncol_b} C_k[i, j] (0.001 (y + 0.5))^i (0.001 (x + 0.5))^j
    stamp = sum_k a_k RROWS_k

where ``C_k[i, j]`` is IDL's index order (i = row power, j = column power).  The numpy array of
the 5x5 cell has the opposite order (``numpy_C[j, i]``), and only the leading nrow_b x ncol_b
block is meaningful (the rest may hold garbage).  The +0.5 moves 0-based pixel centres to Photo's
coordinates.  This reproduces pydl's ``sdss_psf_recon(psfield, xpos=x, ypos=y)``.

HDU 6 also repeats the field's gain and dark variance (the same numbers as photoField).
"""

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from celestecli.sdss import BANDS
from celestecli.sdss.fitsio import FitsFile
from celestecli.sdss.photofield import FieldCalibration, check_calibration

POLY_SCALE = 0.001  # psField polynomial argument per pixel
COEFF_CELL = (5, 5)


@dataclass(frozen=True)
class EigenPsf:
    """The eigen-PSF of one band: ``stamp(x, y)`` is the PSF image at that pixel position."""

    eigen_images: np.ndarray  # float64 (k, rnrow, rncol)
    coeffs: np.ndarray  # float64 (k, nrow_b, ncol_b): coeffs[k, i, j] multiplies y^i x^j

    def weights(self, x: float, y: float) -> np.ndarray:
        """Eigen-image weights a_k at 0-based pixel position (x, y)."""
        nrow_b, ncol_b = self.coeffs.shape[1:]
        row_powers = (POLY_SCALE * (y + 0.5)) ** np.arange(nrow_b)
        col_powers = (POLY_SCALE * (x + 0.5)) ** np.arange(ncol_b)
        return np.einsum("kij,i,j->k", self.coeffs, row_powers, col_powers)

    def stamp(self, x: float, y: float) -> np.ndarray:
        """PSF image (rnrow, rncol), centred on its middle pixel, at pixel position (x, y).

        Not normalized (sums to about 1) and may have small negative wings.
        """
        return np.tensordot(self.weights(x, y), self.eigen_images, axes=1)


@dataclass(frozen=True)
class PsField:
    """The PSF models of the five bands and the field's gain/dark variance (HDU 6)."""

    path: Path
    bands: tuple[EigenPsf, ...]  # u, g, r, i, z
    calibration: FieldCalibration

    def band(self, band: str | int) -> EigenPsf:
        return self.bands[BANDS.index(band) if isinstance(band, str) else band]


def _read_band(f: FitsFile, hdu: int) -> EigenPsf:
    where = f"HDU {hdu} ({BANDS[hdu - 1]}-band PSF)"
    table = f.table(hdu, f"{BANDS[hdu - 1]}-band PSF",
                    ("RROWS", "RNROW", "RNCOL", "NROW_B", "NCOL_B", "C"))
    if len(table) == 0:
        raise f.error(f"{where} has no eigen-images")
    sizes = {name: f.column(table, name, hdu, np.int64)
             for name in ("RNROW", "RNCOL", "NROW_B", "NCOL_B")}
    # Celeste (and IDL) take the sizes from the first row; require the rows to agree.
    rnrow, rncol, nrow_b, ncol_b = (int(v[0]) for v in sizes.values())
    if any(np.any(v != v[0]) for v in sizes.values()):
        raise f.error(f"{where}: RNROW/RNCOL/NROW_B/NCOL_B differ between eigen-images")
    max_rows, max_cols = COEFF_CELL
    if rnrow < 1 or rncol < 1 or not (1 <= nrow_b <= max_rows and 1 <= ncol_b <= max_cols):
        raise f.error(f"{where}: bad sizes RNROW={rnrow} RNCOL={rncol} "
                      f"NROW_B={nrow_b} NCOL_B={ncol_b}")
    try:
        rrows = [np.asarray(r, dtype=np.float64) for r in table["RROWS"]]
    except (ValueError, TypeError) as exc:
        raise f.error(f"{where}: RROWS cannot be read ({exc})") from exc
    if any(r.shape != (rnrow * rncol,) for r in rrows):
        raise f.error(f"{where}: RROWS cells are not {rnrow}x{rncol} = {rnrow * rncol} values")
    eigen_images = np.stack(rrows).reshape(len(rrows), rnrow, rncol)
    c = f.column(table, "C", hdu, row_shape=COEFF_CELL)
    # numpy's c[k, j, i] is IDL's C[i, j]; keep only the leading block.
    coeffs = np.ascontiguousarray(c.transpose(0, 2, 1)[:, :nrow_b, :ncol_b])
    if not (np.all(np.isfinite(eigen_images)) and np.all(np.isfinite(coeffs))):
        raise f.error(f"{where}: non-finite eigen-images or coefficients")
    return EigenPsf(eigen_images, coeffs)


def read_psfield(path: str | Path) -> PsField:
    """Read the five eigen-PSFs and the HDU 6 gain/dark variance of a psField file.

    Raises
    ------
    InputFileError
        Naming the file, for a missing HDU or column, inconsistent sizes or non-finite values.
    """
    f = FitsFile(path)
    f.require_hdus(7, "five band PSFs and the field summary")
    bands = tuple(_read_band(f, hdu) for hdu in range(1, 6))
    summary = f.table(6, "field summary", ("GAIN", "DARK_VARIANCE"))
    if len(summary) != 1:
        raise f.error(f"field summary (HDU 6) has {len(summary)} rows, expected 1")
    gain = f.column(summary, "GAIN", 6, row_shape=(5,))[0]
    dark_variance = f.column(summary, "DARK_VARIANCE", 6, row_shape=(5,))[0]
    calibration = check_calibration(f, gain, dark_variance, "HDU 6")
    return PsField(Path(path), bands, calibration)
