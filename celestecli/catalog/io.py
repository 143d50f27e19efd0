"""Reading and writing catalogs as FITS, ECSV or CSV (ENGINEERING.md 3.4).

FITS layout: HDU 0 an empty primary whose header holds the provenance, HDU 1 ``CATALOG`` (the
table, lowercase column names, ``TUNIT='nanomaggy'`` on flux columns set by hand because
astropy drops non-standard units), HDU 2 ``INPUTS``; ``CHECKSUM``/``DATASUM`` on every HDU.
ECSV keeps dtypes, units, descriptions and the provenance in its YAML header. CSV is for quick
looks: columns only. Files are written atomically; ``-`` streams ECSV or CSV to stdout.
"""

import gzip
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.table import MaskedColumn, Table
from astropy.units import UnitsWarning
from astropy.utils.exceptions import AstropyUserWarning

from celestecli.catalog.atomic import atomic_write
from celestecli.catalog.provenance import Provenance
from celestecli.catalog.schema import IVAR, NMGY, SCHEMA_BY_NAME, apply_schema
from celestecli.errors import InputFileError, UsageError

FORMATS = ("fits", "ecsv", "csv")
STREAM_FORMATS = ("ecsv", "csv")
_FITS_SUFFIXES = (".fits", ".fit", ".fts")
_COMPRESSION = (".gz", ".bz2")

# FITS TUNIT strings for units the FITS standard lacks (legacypipe's spelling).
_FITS_UNIT = {NMGY: "nanomaggy", IVAR: "nanomaggy-2"}


def format_from_path(path) -> str | None:
    """``fits``, ``ecsv`` or ``csv`` from a file name's extension (after .gz/.bz2), else None."""
    name = str(path).lower()
    for comp in _COMPRESSION:
        if name.endswith(comp):
            name = name[: -len(comp)]
            break
    if name.endswith(_FITS_SUFFIXES):
        return "fits"
    if name.endswith(".ecsv"):
        return "ecsv"
    if name.endswith(".csv"):
        return "csv"
    return None


def sniff_format(path) -> str:
    """Format of an existing file from its extension, else from its first bytes."""
    fmt = format_from_path(path)
    if fmt is not None:
        return fmt
    with open(path, "rb") as fh:
        head = fh.read(80)
    if head.startswith(b"SIMPLE  =") or head.startswith((b"\x1f\x8b", b"BZh")):
        return "fits"
    if head.startswith(b"# %ECSV"):
        return "ecsv"
    return "csv"


# --- writing -------------------------------------------------------------------------------


def _fits_unit(unit) -> str | None:
    if unit is None:
        return None
    if unit in _FITS_UNIT:
        return _FITS_UNIT[unit]
    try:
        return unit.to_string("fits")
    except ValueError:
        return unit.to_string()


def _bare(table: Table, meta: dict) -> Table:
    """A shallow copy of ``table`` with the given metadata and schema units filled in.

    Assigning a plain array to a column (``t["flux_r"] = values``) drops its unit and
    description; the schema supplies them again here. The caller's table is not modified.
    """
    out = Table(table, copy=False)
    out.meta = meta
    for name in out.colnames:
        spec = SCHEMA_BY_NAME.get(name)
        if spec is not None:
            if out[name].unit is None and spec.unit is not None:
                out[name].unit = spec.unit
            if not out[name].description:
                out[name].description = spec.description
    return out


def catalog_hdu(table: Table) -> fits.BinTableHDU:
    """The ``CATALOG`` binary-table HDU of a table, units and descriptions set by hand."""
    plain = _bare(table, {})
    units = {}
    descriptions = {}
    for name in plain.colnames:
        col = plain[name]
        units[name] = _fits_unit(col.unit)
        descriptions[name] = col.description
        col.unit = None
        col.description = None
    hdu = fits.table_to_hdu(plain, character_as_bytes=True)
    for i, name in enumerate(plain.colnames, start=1):
        if units[name]:
            hdu.header[f"TUNIT{i}"] = units[name]
        if descriptions[name]:
            hdu.header[f"TCOMM{i}"] = descriptions[name]
    hdu.name = "CATALOG"
    return hdu


def _write_fits(table: Table, fh, provenance: Provenance, compress: bool) -> None:
    hdul = fits.HDUList([provenance.primary_hdu(), catalog_hdu(table), provenance.inputs_hdu()])
    # Checksum comments carry no clock time (astropy's default), so rewriting the same content
    # changes only the primary header: DATE and the CHECKSUM over it.
    for hdu in hdul:
        hdu.add_checksum(when="checksum of this HDU")
    if compress:
        # mtime=0 and no file name: the same content gives the same bytes
        with gzip.GzipFile(filename="", mode="wb", fileobj=fh, mtime=0) as gz:
            hdul.writeto(gz)
    else:
        hdul.writeto(fh)


def _write_text(table: Table, fh, fmt: str, provenance: Provenance) -> None:
    if fmt == "ecsv":
        _bare(table, provenance.to_meta()).write(fh, format="ascii.ecsv")
    else:
        _bare(table, {}).write(fh, format="ascii.csv")


def write_catalog(table: Table, path, fmt: str | None = None,
                  provenance: Provenance | None = None) -> None:
    """Write ``table`` to ``path`` atomically as FITS, ECSV or CSV, with its provenance.

    Parameters
    ----------
    table : Table with the schema columns (or any subset / superset).
    path : destination; ``-`` streams ECSV (default) or CSV to stdout.
    fmt : ``fits``, ``ecsv`` or ``csv``; default from the extension of ``path``.
    provenance : recorded in the FITS header and INPUTS HDU or the ECSV header; a bare
        ``Provenance()`` (version, date, command line, dependencies) when None.
    """
    provenance = provenance if provenance is not None else Provenance()
    if str(path) == "-":
        fmt = fmt or "ecsv"
        if fmt not in STREAM_FORMATS:
            raise UsageError(f"cannot stream {fmt} to stdout: use --format ecsv or csv")
        _write_text(table, sys.stdout, fmt, provenance)
        sys.stdout.flush()
        return
    fmt = fmt or format_from_path(path)
    if fmt is None:
        raise UsageError(f"cannot tell the catalog format of {path} from its extension "
                         f"(.fits, .fits.gz, .ecsv, .csv): give the format explicitly")
    if fmt not in FORMATS:
        raise UsageError(f"unknown catalog format {fmt!r}: choose one of {', '.join(FORMATS)}")
    if fmt == "fits":
        with atomic_write(path, "wb") as fh:
            _write_fits(table, fh, provenance, compress=str(path).lower().endswith(".gz"))
    else:
        with atomic_write(path, "w") as fh:
            _write_text(table, fh, fmt, provenance)


# --- reading -------------------------------------------------------------------------------


@dataclass
class RawTable:
    """A table as read, before any interpretation, with what the file says about itself."""

    table: Table
    fmt: str
    header: fits.Header | None = None  # FITS primary header
    inputs: Table | None = None  # FITS INPUTS HDU


def _check_exists(path) -> Path:
    p = Path(path)
    if not p.exists():
        raise InputFileError(path, "no such file")
    if p.is_dir():
        raise InputFileError(path, "is a directory, not a catalog file")
    return p


def _first_table_hdu(hdul) -> int | None:
    for i, hdu in enumerate(hdul):
        if hdu.name == "CATALOG" and isinstance(hdu, fits.BinTableHDU | fits.TableHDU):
            return i
    for i, hdu in enumerate(hdul):
        if isinstance(hdu, fits.BinTableHDU | fits.TableHDU):
            return i
    return None


def _read_fits(path) -> RawTable:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", AstropyUserWarning)
        warnings.simplefilter("ignore", UnitsWarning)
        try:
            with fits.open(path, checksum=True, memmap=False) as hdul:
                hdul.verify("exception")
                index = _first_table_hdu(hdul)
                if index is None:
                    raise InputFileError(path, "FITS file has no table HDU")
                table = Table.read(hdul, hdu=index, mask_invalid=False,
                                   character_as_bytes=False)
                header = hdul[0].header.copy()
                inputs = None
                if "INPUTS" in hdul and index != hdul.index_of("INPUTS"):
                    inputs = Table.read(hdul, hdu="INPUTS", character_as_bytes=False)
        except InputFileError:
            raise
        except (OSError, ValueError, TypeError, KeyError, IndexError,
                fits.VerifyError, EOFError) as exc:
            raise InputFileError(path, f"not a readable FITS table: {exc}") from exc
    for w in caught:
        text = str(w.message)
        if "verification failed" in text.lower():
            raise InputFileError(path, f"corrupt FITS file: {text}")
    return RawTable(table, "fits", header, inputs)


def _read_text(path, fmt: str) -> RawTable:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UnitsWarning)
            # '#' lines of a CSV are comments (SkyServer and CasJobs start with '#Table1')
            extra = {"comment": "#"} if fmt == "csv" else {}
            table = Table.read(path, format=f"ascii.{fmt}", **extra)
    except Exception as exc:  # astropy's ascii readers raise a zoo of exception types
        raise InputFileError(path, f"not a readable {fmt.upper()} table: {exc}") from exc
    return RawTable(table, fmt)


def read_table(path, fmt: str | None = None) -> RawTable:
    """Read the table of a FITS, ECSV or CSV file as is; errors name the file and the problem.

    FITS checksums are verified when present.
    """
    _check_exists(path)
    fmt = fmt or sniff_format(path)
    if fmt == "fits":
        return _read_fits(path)
    if fmt in ("ecsv", "csv"):
        return _read_text(path, fmt)
    raise UsageError(f"unknown catalog format {fmt!r}: choose one of {', '.join(FORMATS)}")


_TRUE = {"true", "t"}
_FALSE = {"false", "f"}
_EXACT_IN_FLOAT64 = 2**53


def _text_booleans(col):
    """True/False for a text column of 'true'/'false' (any case; blanks masked), else None."""
    values = np.char.lower(np.char.strip(np.asarray(col, dtype=str)))
    blank = np.ma.getmaskarray(col) | (values == "")
    if not np.any(~blank) or not np.all(np.isin(values[~blank], list(_TRUE | _FALSE))):
        return None
    return MaskedColumn(np.isin(values, list(_TRUE)), mask=blank)


def _blanks_as_nan(col):
    """A masked integer or boolean column with blanks as float64 with NaN in the blanks (a
    blank is unknown, not 0), when every value converts exactly; else the column itself."""
    if not (isinstance(col, MaskedColumn) and col.dtype.kind in "biu" and np.any(col.mask)):
        return col
    values = np.asarray(col.data[~col.mask], dtype=np.float64)
    if np.any(np.abs(values) >= _EXACT_IN_FLOAT64):  # identifiers: keep them exact, masked
        return col
    return MaskedColumn(col, dtype=np.float64).filled(np.nan)


def normalise_columns(table: Table, path) -> Table:
    """Lowercase names, 'true'/'false' text as bool, blanks as NaN; in place.

    Blank cells of float columns become NaN, and so do those of integer and boolean columns
    (which then become float64), so that nothing reads a blank as 0 or False.
    """
    lowered = [name.lower() for name in table.colnames]
    if len(set(lowered)) != len(lowered):
        raise InputFileError(path, "column names differ only in case")
    table.rename_columns(list(table.colnames), lowered)
    for name in table.colnames:
        col = table[name]
        if col.dtype.kind in "US":
            booleans = _text_booleans(col)
            col = col if booleans is None else booleans
        if col.dtype.kind == "f" and isinstance(col, MaskedColumn):
            col = col.filled(np.nan)
        col = _blanks_as_nan(col)
        if isinstance(col, MaskedColumn) and not np.any(col.mask):
            col = col.filled()
        table[name] = col
    return table


def _schema_integer_dtypes(table: Table) -> Table:
    """Integer schema columns read as another integer type (CSV knows only int64) get their
    schema dtype back, in place, when every value fits it exactly."""
    for name in table.colnames:
        spec = SCHEMA_BY_NAME.get(name)
        col = table[name]
        if (spec is None or isinstance(col, MaskedColumn) or col.dtype.kind not in "iu"
                or np.dtype(spec.dtype).kind not in "iu" or col.dtype == np.dtype(spec.dtype)):
            continue
        values = np.asarray(col)
        cast = values.astype(spec.dtype)
        if np.array_equal(cast, values):
            table[name] = cast
    return table


def read_catalog(path, fmt: str | None = None) -> Table:
    """Read one of our catalogs (FITS, ECSV or CSV; format from extension or content).

    Returns a Table with lowercase column names, schema units and descriptions, NaN for
    missing floats; ``meta['provenance']`` is the file's Provenance (None for CSV) and
    ``meta['path']`` the path read.
    """
    raw = read_table(path, fmt)
    table = _schema_integer_dtypes(normalise_columns(raw.table, path))
    provenance = None
    if raw.fmt == "fits":
        provenance = Provenance.from_fits(raw.header, raw.inputs)
    elif raw.fmt == "ecsv" and "provenance" in table.meta:
        provenance = Provenance.from_meta(table.meta)
    table.meta = {"path": str(path), "format": raw.fmt, "provenance": provenance}
    return apply_schema(table)


