"""Readers that turn truth and comparison catalogs into the columns the scorer uses.

Every reader returns a ``Scorable``: a Table with float64 columns ``ra``, ``dec``, ``is_star``,
``flux_r_nmgy``, ``color_{ug,gr,ri,iz}``, ``gal_frac_dev``, ``gal_axis_ratio``,
``gal_radius_px``, ``gal_angle_deg`` (NaN = missing), the uncertainty columns where the source
has them, and ``objid`` where it has one. The conversions follow VALIDATION.md section 1:

* ``coadd``: an SDSS (Stripe 82 coadd) photoObj table from CasJobs, used as truth;
* ``photo``: a single-epoch SDSS photoObj file, Photo's catalog as a baseline;
* ``catalog``: one of our catalogs (FITS/ECSV/CSV) or any table in that format, e.g. the
  matched tables of ``../shared/data/celeste_results``.

The Hubble star list of M2 has its own reader in ``hubble.py``.
"""

import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.table import Table
from astropy.units import UnitsWarning

from celestecli.catalog import COLORS, SCORED_COLUMNS, STDERR_COLUMNS, validate_columns
from celestecli.catalog.io import normalise_columns, read_table, sniff_format
from celestecli.errors import InputFileError
from celestecli.sdss import BANDS, PIXEL_SCALE_ARCSEC
from celestecli.validate.photometry import (
    asinh_mag_to_nmgy,
    canonical_angle,
    log_ratio_color,
    nmgy_to_asinh_mag,
)

KINDS = ("catalog", "coadd", "photo", "hubble")
SHAPE_COLUMNS = ("gal_frac_dev", "gal_axis_ratio", "gal_radius_px", "gal_angle_deg")

# Coadd objects Celeste.jl excludes by hand: a blend, an unmodelled bright neighbour and two
# possible quasars (VALIDATION.md 1).
BAD_COADD_OBJIDS = (
    8647474692482203853, 8647474692482203816, 8647474692482204612, 8647474692482204147,
)
COADD_COLUMNS = (
    "objid", "ra", "dec", "probpsf", "fracdev_r", "devab_r", "expab_r", "devphi_r",
    "expphi_r", "devrad_r", "exprad_r",
    *(f"{kind}mag_{b}" for kind in ("psf", "dev", "exp") for b in "ugriz"),
)
PHOTO_COLUMNS = (
    "objid", "ra", "dec", "objc_type", "objc_flags", "objc_flags2", "nchild", "fracdev",
    "psfflux", "devflux", "expflux", "ab_dev", "ab_exp", "theta_dev", "theta_exp",
    "phi_dev_deg", "phi_exp_deg",
)
# Photo rows dropped (VALIDATION.md 1). Bit 0 of objc_flags stands where Celeste.jl meant
# BRIGHT (bit 1): its typo, kept for parity with the published numbers.
PHOTO_BAD_FLAGS1 = 2**0 + 2**18 + 2**24
PHOTO_BAD_FLAGS2 = 2**14 + 2**18 + 2**11  # NOPEAK, DEBLEND_DEGENERATE, SATUR_CENTER
PHOTO_SATURATION_MAG = 16.0  # psf r asinh magnitude
_BAND_INDEX = {b: i for i, b in enumerate(BANDS)}


@dataclass
class Scorable:
    """A catalog ready for scoring: the standard columns plus what was cut on reading."""

    name: str
    path: str
    kind: str
    table: Table
    n_read: int
    cuts: dict[str, int] = field(default_factory=dict)  # reason -> rows dropped

    def __len__(self) -> int:
        return len(self.table)

    @property
    def has_stderr(self) -> bool:
        return any(c in self.table.colnames for c in STDERR_COLUMNS)


def _f64(values) -> np.ndarray:
    return np.asarray(values, dtype=np.float64)


COADD_SIGNATURE = {"probpsf", "psfmag_r"}  # the columns that make a table a coadd truth


def detect_kind(path) -> str:
    """``hubble`` (npz), ``coadd`` (a coadd photoObj table, FITS or CasJobs CSV, by its
    columns), ``photo`` (an SDSS photoObj file), else ``catalog``."""
    p = Path(path)
    if not p.exists():
        raise InputFileError(path, "no such file")
    if p.suffix.lower() == ".npz":
        return "hubble"
    fmt = sniff_format(p)
    if fmt == "csv":
        return "coadd" if COADD_SIGNATURE <= _csv_column_names(p) else "catalog"
    if fmt != "fits":
        return "catalog"
    names = _fits_column_names(p)
    if names is None:  # an empty photoObj has an image HDU where the table would be
        return "photo" if "photoObj" in p.name else "catalog"
    if COADD_SIGNATURE <= names:
        return "coadd"
    if {"objc_type", "psfflux"} <= names:
        return "photo"
    return "catalog"


def _fits_column_names(path: Path) -> set[str] | None:
    """Lowercase column names of the first table HDU; None when there is none."""
    try:
        with fits.open(path, memmap=False) as hdul:
            for hdu in hdul:
                if isinstance(hdu, fits.BinTableHDU | fits.TableHDU):
                    return {n.lower() for n in hdu.columns.names}
    except (OSError, ValueError) as exc:
        raise InputFileError(path, f"not a readable FITS file: {exc}") from exc
    return None


def _csv_column_names(path: Path) -> set[str]:
    """Lowercase names in the header line of a CSV file (after any '#' comment lines)."""
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if line.strip() and not line.startswith("#"):
                    return {n.strip().strip('"').lower() for n in line.split(",")}
    except OSError as exc:
        raise InputFileError(path, exc.strerror or str(exc)) from exc
    return set()


def _columns_table(path) -> Table:
    raw = read_table(path)
    return normalise_columns(raw.table, path)


def read_coadd(path, name: str | None = None) -> Scorable:
    """Truth from an SDSS coadd photoObj table (VALIDATION.md 1, Celeste's cuts applied)."""
    t = _columns_table(path)
    validate_columns(t, COADD_COLUMNS, path)
    n_read = len(t)
    probpsf = _f64(t["probpsf"])
    known = ~np.isnan(probpsf)  # a blank type leaves the type, fluxes and shape unknown
    is_star = probpsf != 0
    use_dev = _f64(t["fracdev_r"]) > 0.5

    def dev_or_exp(dev, exp):
        return np.where(use_dev, _f64(t[dev]), _f64(t[exp]))

    flux = {}
    for b in "ugriz":
        mag = np.where(is_star, _f64(t[f"psfmag_{b}"]),
                       dev_or_exp(f"devmag_{b}", f"expmag_{b}"))
        flux[b] = np.where(known, asinh_mag_to_nmgy(mag, b), np.nan)
    out = Table()
    out["objid"] = np.asarray(t["objid"], dtype=np.int64)
    out["ra"] = _f64(t["ra"])
    out["dec"] = _f64(t["dec"])
    out["is_star"] = np.where(known, is_star, np.nan)
    out["flux_r_nmgy"] = np.where(flux["r"] > 0, flux["r"], np.nan)
    for c in COLORS:
        out[f"color_{c}"] = log_ratio_color(flux[c[0]], flux[c[1]])
    galaxy = known & ~is_star
    out["gal_frac_dev"] = np.where(galaxy, _f64(t["fracdev_r"]), np.nan)
    out["gal_axis_ratio"] = np.where(galaxy, dev_or_exp("devab_r", "expab_r"), np.nan)
    out["gal_radius_px"] = np.where(
        galaxy, dev_or_exp("devrad_r", "exprad_r") / PIXEL_SCALE_ARCSEC, np.nan)
    out["gal_angle_deg"] = np.where(
        galaxy, canonical_angle(dev_or_exp("devphi_r", "expphi_r")), np.nan)

    cuts = {}
    keep = np.ones(n_read, dtype=bool)
    if "is_saturated" in t.colnames:
        flag = _f64(t["is_saturated"])
        saturated = (flag != 0) & ~np.isnan(flag)  # a blank flag is not a reason to drop
        cuts["saturated"] = int(saturated.sum())
        keep &= ~saturated
    bad = np.isin(out["objid"], BAD_COADD_OBJIDS) & keep
    cuts["hand-listed bad objid"] = int(bad.sum())
    keep &= ~bad
    return Scorable(name or Path(path).stem, str(path), "coadd", out[keep], n_read, cuts)


def _photo_empty(path, name) -> Scorable:
    out = Table({c: np.zeros(0) for c in SCORED_COLUMNS})
    out["objid"] = np.zeros(0, dtype=np.int64)
    return Scorable(name or Path(path).stem, str(path), "photo", out, 0, {})


def read_photo(path, name: str | None = None) -> Scorable:
    """Photo's single-epoch photoObj as a comparison catalog (VALIDATION.md 1, r-band shape)."""
    try:
        with fits.open(path, memmap=False) as hdul:
            has_table = len(hdul) > 1 and isinstance(hdul[1], fits.BinTableHDU)
    except (OSError, ValueError) as exc:
        raise InputFileError(path, f"not a readable FITS file: {exc}") from exc
    if not has_table:  # Photo gave up on this field: no objects
        return _photo_empty(path, name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnitsWarning)
        t = _columns_table(path)
    validate_columns(t, PHOTO_COLUMNS, path)
    n_read = len(t)
    if n_read == 0:
        return _photo_empty(path, name)

    def band(col, b):
        return _f64(np.asarray(t[col])[:, _BAND_INDEX[b]])

    objc_type = np.asarray(t["objc_type"])
    is_star = objc_type == 6
    is_gal = objc_type == 3
    fracdev = band("fracdev", "r")
    flags1 = np.asarray(t["objc_flags"]).astype(np.int64)
    flags2 = np.asarray(t["objc_flags2"]).astype(np.int64)
    cuts = {}
    keep = is_star | is_gal
    cuts["not star or galaxy"] = int((~keep).sum())
    for reason, bad in (
        ("nchild > 0", np.asarray(t["nchild"]) > 0),
        ("fracdev outside [0, 1]", (fracdev < 0) | (fracdev > 1)),
        ("objc_flags", (flags1 & PHOTO_BAD_FLAGS1) != 0),
        ("objc_flags2", (flags2 & PHOTO_BAD_FLAGS2) != 0),
    ):
        cuts[reason] = int((bad & keep).sum())
        keep &= ~bad
    psf_r = band("psfflux", "r")
    saturated = nmgy_to_asinh_mag(psf_r, "r") < PHOTO_SATURATION_MAG
    cuts[f"psf r brighter than {PHOTO_SATURATION_MAG:g} mag"] = int((saturated & keep).sum())
    keep &= ~saturated

    use_dev = fracdev > 0.5

    def dev_or_exp(dev, exp):
        return np.where(use_dev, band(dev, "r"), band(exp, "r"))

    flux = {b: np.where(is_star, band("psfflux", b),
                        np.where(use_dev, band("devflux", b), band("expflux", b)))
            for b in "ugriz"}
    out = Table()
    out["objid"] = np.asarray([int(str(o).strip()) for o in t["objid"]], dtype=np.int64)
    for col in ("run", "camcol", "field"):
        if col in t.colnames:
            out[col] = np.asarray(t[col])
    out["ra"] = _f64(t["ra"])
    out["dec"] = _f64(t["dec"])
    out["is_star"] = is_star.astype(np.float64)
    out["flux_r_nmgy"] = flux["r"]
    for c in COLORS:
        out[f"color_{c}"] = log_ratio_color(flux[c[0]], flux[c[1]])
    out["gal_frac_dev"] = fracdev
    out["gal_axis_ratio"] = dev_or_exp("ab_dev", "ab_exp")
    out["gal_radius_px"] = dev_or_exp("theta_dev", "theta_exp") / PIXEL_SCALE_ARCSEC
    out["gal_angle_deg"] = canonical_angle(dev_or_exp("phi_dev_deg", "phi_exp_deg"))
    return Scorable(name or Path(path).stem, str(path), "photo", out[keep], n_read, cuts)


DETECTION_COLUMNS = ("ra", "dec", "flux_r_nmgy")


def read_scorable_catalog(path, name: str | None = None,
                          required=SCORED_COLUMNS) -> Scorable:
    """One of our catalogs, or any FITS/ECSV/CSV table with the ``required`` columns.

    Absent optional columns are absent from the result (the metrics treat them as NaN).
    """
    t = _columns_table(path)
    validate_columns(t, required, path)
    out = Table()
    if "objid" in t.colnames:
        out["objid"] = t["objid"]
    for col in ("run", "camcol", "field", "x", "y"):
        if col in t.colnames:
            out[col] = t[col]
    for col in SCORED_COLUMNS + STDERR_COLUMNS:
        if col not in t.colnames:
            continue
        try:
            out[col] = _f64(t[col])
        except (TypeError, ValueError) as exc:
            raise InputFileError(path, f"column {col} is not numeric ({t[col].dtype})") from exc
    return Scorable(name or Path(path).stem, str(path), "catalog", out, len(t), {})


READERS = {"coadd": read_coadd, "photo": read_photo}


def read_scorable(path, kind: str | None = None, name: str | None = None,
                  required=SCORED_COLUMNS) -> Scorable:
    """Read a truth or comparison table of any kind but ``hubble`` (detected when not given).

    ``required`` applies to our own catalogs; SDSS tables always need their full column set.
    """
    kind = kind or detect_kind(path)
    if kind == "catalog":
        return read_scorable_catalog(path, name, required)
    if kind not in READERS:
        raise ValueError(f"no table reader for kind {kind!r}")
    if not Path(path).exists():
        raise InputFileError(path, "no such file")
    return READERS[kind](path, name)
