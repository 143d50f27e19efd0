"""Per-field calibration numbers from photoField (one file per run/camcol, MODEL.md 7.2).

HDU 1 has one row per field; ``GAIN`` and ``DARK_VARIANCE`` are 5-vectors over u, g, r, i, z.
"""

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from celestecli.sdss.fitsio import FitsFile


@dataclass(frozen=True)
class FieldCalibration:
    """Gain (electrons per data number) and dark variance (DN^2 per pixel) per band u..z."""

    gain: np.ndarray  # float64 (5,)
    dark_variance: np.ndarray  # float64 (5,)
    source: Path  # the file they came from


def check_calibration(f: FitsFile, gain: np.ndarray, dark_variance: np.ndarray,
                      where: str) -> FieldCalibration:
    """Validate the two 5-vectors read from ``f`` (``where`` locates them for the message)."""
    if gain.shape != (5,) or dark_variance.shape != (5,):
        raise f.error(f"{where}: GAIN/DARK_VARIANCE are not 5-vectors")
    if not (np.all(np.isfinite(gain)) and np.all(gain > 0)):
        raise f.error(f"{where}: GAIN {gain.tolist()} is not finite and positive")
    if not (np.all(np.isfinite(dark_variance)) and np.all(dark_variance >= 0)):
        raise f.error(f"{where}: DARK_VARIANCE {dark_variance.tolist()} is not finite and >= 0")
    return FieldCalibration(gain, dark_variance, f.path)


def read_photofield(path: str | Path, field: int) -> FieldCalibration:
    """Gain and dark variance of ``field`` from a photoField file.

    Raises
    ------
    InputFileError
        Naming the file, if it is unreadable, malformed or has no (or several) rows for ``field``.
    """
    f = FitsFile(path)
    table = f.table(1, "field table", ("FIELD", "GAIN", "DARK_VARIANCE"))
    fields = f.column(table, "FIELD", 1, np.int64)
    rows = np.flatnonzero(fields == field)
    if rows.size != 1:
        what = "no row" if rows.size == 0 else f"{rows.size} rows"
        raise f.error(f"has {what} for field {field} (fields {fields.min()}-{fields.max()})"
                      if fields.size else f"has no rows (wanted field {field})")
    row = rows[0]
    gain = f.column(table, "GAIN", 1, row_shape=(5,))[row]
    dark_variance = f.column(table, "DARK_VARIANCE", 1, row_shape=(5,))[row]
    return check_calibration(f, gain, dark_variance, f"HDU 1 row of field {field}")
