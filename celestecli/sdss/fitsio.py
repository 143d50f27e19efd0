"""Open SDSS FITS files (plain, bzip2 or gzip) fully in memory, with errors that name the file.

Compression is recognised by the file's magic bytes, not its suffix.  A compressed file is
decompressed completely before parsing, so a truncated or corrupt download fails here (CRC or
end-of-stream error) instead of half-way through reading a table.  A FITS stream shorter than
its headers announce, or cut inside a header, is also an error (astropy only warns about it).
"""

import bz2
import gzip
import io
import warnings
import zlib
from pathlib import Path

import numpy as np
from astropy.io import fits

from celestecli.errors import InputFileError
from celestecli.sdss.warnings_lock import FITS_WARNINGS_LOCK

_BZ2_MAGIC = b"BZh"
_GZIP_MAGIC = b"\x1f\x8b"


def _decompressed_bytes(path: Path) -> bytes:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise InputFileError(path, f"cannot read: {exc.strerror or exc}") from exc
    try:
        if raw.startswith(_BZ2_MAGIC):
            return bz2.decompress(raw)
        if raw.startswith(_GZIP_MAGIC):
            return gzip.decompress(raw)
    except (OSError, EOFError, ValueError, zlib.error) as exc:
        kind = "bzip2" if raw.startswith(_BZ2_MAGIC) else "gzip"
        raise InputFileError(path, f"corrupt or truncated {kind} data ({exc})") from exc
    return raw


class FitsFile:
    """A FITS file read into memory; accessors validate and name the file in every error.

    HDU indices are 0-based, as astropy numbers them.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        raw = _decompressed_bytes(self.path)
        with FITS_WARNINGS_LOCK, warnings.catch_warnings():
            # astropy only warns when the data are shorter than the headers say, or when a
            # header is cut short (it then drops that HDU and the rest: a "table-less" file).
            warnings.filterwarnings("error", message=".*truncated.*")
            warnings.filterwarnings("error", message="Error validating header")
            try:
                self.hdus = fits.open(io.BytesIO(raw), memmap=False, lazy_load_hdus=False)
            except (OSError, ValueError, TypeError, IndexError, Warning) as exc:
                raise InputFileError(self.path, f"not a readable FITS file ({exc})") from exc

    def __len__(self) -> int:
        return len(self.hdus)

    def error(self, problem: str) -> InputFileError:
        """An InputFileError for this file (to ``raise`` at the call site)."""
        return InputFileError(self.path, problem)

    def require_hdus(self, n: int, what: str) -> None:
        """Require at least ``n`` HDUs; ``what`` lists what they are for the message."""
        if len(self.hdus) < n:
            raise self.error(f"has {len(self.hdus)} HDUs, expected at least {n} ({what})")

    def header(self, index: int) -> fits.Header:
        self.require_hdus(index + 1, f"HDU {index}")
        return self.hdus[index].header

    def _data(self, index: int, what: str):
        self.require_hdus(index + 1, f"HDU {index}: {what}")
        try:
            return self.hdus[index].data
        except (OSError, ValueError, TypeError) as exc:
            raise self.error(f"HDU {index} ({what}) cannot be read ({exc})") from exc

    def image(self, index: int, what: str, ndim: int) -> np.ndarray:
        """Image data of HDU ``index`` as a numeric array with ``ndim`` dimensions."""
        data = self._data(index, what)
        if not isinstance(self.hdus[index], fits.PrimaryHDU | fits.ImageHDU) or data is None:
            raise self.error(f"HDU {index} ({what}) is not an image with data")
        if data.ndim != ndim or data.size == 0 or data.dtype.kind not in "fiu":
            raise self.error(
                f"HDU {index} ({what}) has shape {data.shape} and type {data.dtype}, "
                f"expected a non-empty {ndim}-D numeric image"
            )
        return data

    def table(self, index: int, what: str, columns: tuple[str, ...] = ()) -> fits.FITS_rec:
        """Table data of HDU ``index``; every name in ``columns`` must exist (case-insensitive)."""
        data = self._data(index, what)
        if not isinstance(self.hdus[index], fits.BinTableHDU | fits.TableHDU) or data is None:
            raise self.error(f"HDU {index} ({what}) is not a table")
        present = {name.upper() for name in data.columns.names}
        missing = [c for c in columns if c.upper() not in present]
        if missing:
            raise self.error(f"HDU {index} ({what}) lacks column(s) {', '.join(missing)}")
        return data

    def column(self, table: fits.FITS_rec, name: str, index: int, dtype=np.float64,
               row_shape: tuple[int, ...] | None = None) -> np.ndarray:
        """Column ``name`` of a table from HDU ``index`` as a native-endian array.

        ``row_shape`` (if given) is the required shape of one row's cell.
        """
        try:
            values = np.asarray(table[name], dtype=dtype)
        except (ValueError, TypeError) as exc:
            raise self.error(f"HDU {index} column {name} is not {np.dtype(dtype)} ({exc})") from exc
        if row_shape is not None and values.shape[1:] != row_shape:
            raise self.error(
                f"HDU {index} column {name} has cells of shape {values.shape[1:]}, "
                f"expected {row_shape}"
            )
        return values


def native(array: np.ndarray, dtype) -> np.ndarray:
    """C-contiguous, native-endian copy/view of ``array`` as ``dtype`` (FITS data is big-endian)."""
    return np.ascontiguousarray(array, dtype=np.dtype(dtype).newbyteorder("="))
