"""Integrity checks of SDSS files: full decompression and FITS structure.

The SAS publishes no checksums (ENGINEERING.md 5.2), so a file counts as intact when

* its bzip2 or gzip stream decodes to the end (both formats carry CRCs, so this catches
  truncation and corruption), and
* the decoded bytes are well-formed FITS: a whole number of 2880-byte blocks, every HDU
  readable by astropy, and the last HDU ending exactly at the end of the file.
"""

import bz2
import gzip
import hashlib
import io
import warnings
import zlib
from pathlib import Path

from celestecli.errors import InputFileError
from celestecli.sdss.warnings_lock import FITS_WARNINGS_LOCK

FITS_BLOCK = 2880

# The HDUs the readers need of each kind of file (real files: frame 4, psField 10, fpM 12).
MIN_HDUS = {"frame": 3, "psField": 7, "fpM": 12, "photoObj": 2, "photoField": 2}


def decompress(data: bytes, name: str) -> bytes:
    """Decode ``data`` according to the suffix of ``name`` (``.bz2``, ``.gz`` or none).

    Raises
    ------
    ValueError
        The stream is corrupt or ends early.
    """
    try:
        if name.endswith(".bz2"):
            return bz2.decompress(data)
        if name.endswith(".gz"):
            return gzip.decompress(data)
    except (OSError, EOFError, ValueError, zlib.error) as exc:
        kind = "bzip2" if name.endswith(".bz2") else "gzip"
        raise ValueError(f"corrupt or truncated {kind} stream ({exc})") from exc
    return data


def check_fits(data: bytes) -> int:
    """Check that ``data`` is a complete FITS file; return its number of HDUs.

    Raises
    ------
    ValueError
        Naming what is wrong with the structure.
    """
    if not data:
        raise ValueError("empty file")
    if len(data) % FITS_BLOCK:
        raise ValueError(f"FITS size {len(data)} bytes is not a multiple of {FITS_BLOCK}")
    from astropy.io import fits  # imported here: astropy would slow every CLI start by 0.5 s

    with FITS_WARNINGS_LOCK, warnings.catch_warnings():  # fetch verifies in parallel
        warnings.simplefilter("ignore")  # the checks below decide, not astropy's warnings
        try:
            with fits.open(io.BytesIO(data), lazy_load_hdus=False, memmap=False) as hdul:
                n_hdus = len(hdul)
                last = hdul.fileinfo(n_hdus - 1)
                end = last["datLoc"] + last["datSpan"]
                if end == len(data):
                    for hdu in hdul:
                        _ = hdu.data
        except Exception as exc:  # astropy raises many types on malformed input
            raise ValueError(f"not a readable FITS file ({exc})") from exc
    if end > len(data):
        raise ValueError(f"truncated FITS: its HDUs need {end} bytes but the file has {len(data)}")
    if end < len(data):
        raise ValueError(f"{len(data) - end} bytes of unexpected data after the last FITS HDU")
    return n_hdus


def verify_file(path: Path, name: str | None = None) -> str:
    """Verify one SDSS file and return the SHA-256 hex digest of its bytes as stored.

    Parameters
    ----------
    path
        The file to check.
    name
        Name whose suffix says how the file is compressed (default: ``path``'s name); lets a
        ``.part`` file be checked as the file it will become.

    Raises
    ------
    InputFileError
        Naming ``path`` and the problem.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise InputFileError(path, f"cannot read: {exc.strerror}") from exc
    name = name or path.name
    try:
        n_hdus = check_fits(decompress(raw, name))
    except ValueError as exc:
        raise InputFileError(path, str(exc)) from exc
    kind = name.split("-", 1)[0]
    if n_hdus < MIN_HDUS.get(kind, 1):  # e.g. a download cut at an HDU boundary
        raise InputFileError(path, f"has {n_hdus} HDUs; a {kind} file has at least "
                                   f"{MIN_HDUS[kind]}")
    return hashlib.sha256(raw).hexdigest()
