"""The catalog schema (ARCHITECTURE.md section 5): one row per source, one column per quantity.

Column names agree with VALIDATION.md so that ``celeste validate`` reads our own catalogs without
any mapping. Floats use NaN for "missing" (e.g. magnitudes where the flux is not positive, galaxy
shape of a catalog that only has a star model); there are no masked columns.
"""

from dataclasses import dataclass

import astropy.units as u
import numpy as np
from astropy.table import Column, Table

from celestecli.errors import InputFileError
from celestecli.sdss import BANDS

COLORS = ("ug", "gr", "ri", "iz")

# Bits of the ``flags`` column.
FLAG_BAD_SKY = 1  # the i-band sky estimate disagrees with the image (MODEL.md 7.8)
FLAG_ITER_LIMIT = 2  # the optimizer stopped at its iteration limit
FLAG_NONFINITE = 4  # a non-finite ELBO, gradient or parameter was met
FLAG_EDGE = 8  # the source lies within a patch radius of the image edge
FLAG_MEAN_FIELD_SD = 16  # uncertainties are q's own, not linear response (infer/uncertainty.py)
FLAG_BITS = {
    "BAD_SKY": FLAG_BAD_SKY,
    "ITER_LIMIT": FLAG_ITER_LIMIT,
    "NONFINITE": FLAG_NONFINITE,
    "EDGE": FLAG_EDGE,
    "MEAN_FIELD_SD": FLAG_MEAN_FIELD_SD,
}


@dataclass(frozen=True)
class ColumnSpec:
    """Name, numpy dtype, astropy unit (or None) and one-line description of a catalog column."""

    name: str
    dtype: str
    unit: u.UnitBase | None
    description: str

    @property
    def fill(self):
        """The value of an unset cell: NaN for floats, 0 for integers, False for booleans."""
        kind = np.dtype(self.dtype).kind
        return np.nan if kind == "f" else (False if kind == "b" else 0)


NMGY = u.nanomaggy
IVAR = u.nanomaggy**-2


def _specs() -> list[ColumnSpec]:
    s = [
        ColumnSpec("objid", "int64", None,
                   "SDSS objID (photoObj start) or detection index; unique within a field"),
        ColumnSpec("run", "int16", None, "SDSS run of the field the source was fitted in"),
        ColumnSpec("camcol", "uint8", None, "SDSS camera column (1-6) of that field"),
        ColumnSpec("field", "int16", None, "SDSS field number of that field"),
        ColumnSpec("ra", "float64", u.deg, "right ascension (ICRS)"),
        ColumnSpec("dec", "float64", u.deg, "declination (ICRS)"),
        ColumnSpec("ra_err_arcsec", "float64", u.arcsec,
                   "posterior standard deviation of ra, times cos(dec)"),
        ColumnSpec("dec_err_arcsec", "float64", u.arcsec, "posterior standard deviation of dec"),
        ColumnSpec("x", "float64", u.pix, "column in that field's r frame (0-based, centre=int)"),
        ColumnSpec("y", "float64", u.pix, "row in that field's r frame (0-based, centre=int)"),
        ColumnSpec("is_star", "float64", None, "posterior probability that the source is a star"),
        ColumnSpec("prob_galaxy", "float64", None, "posterior probability of a galaxy (1-is_star)"),
    ]
    for b in BANDS:
        s.append(ColumnSpec(f"flux_{b}", "float64", NMGY,
                            f"{b} flux, posterior mean given the more probable type"))
        s.append(ColumnSpec(f"flux_{b}_ivar", "float64", IVAR,
                            f"inverse posterior variance of flux_{b}"))
    for b in BANDS:
        s.append(ColumnSpec(f"mag_{b}", "float64", u.mag,
                            f"22.5 - 2.5 log10(flux_{b}); NaN where flux <= 0"))
        s.append(ColumnSpec(f"mag_{b}_err", "float64", u.mag,
                            f"1.0857 / (flux_{b} sqrt(ivar)); NaN where flux <= 0"))
    s += [
        ColumnSpec("flux_r_nmgy", "float64", NMGY,
                   "r flux, median of the log-normal posterior of the more probable type"),
        ColumnSpec("log_flux_r_stderr", "float64", None,
                   "posterior standard deviation of ln(flux_r)"),
    ]
    for c in COLORS:
        s.append(ColumnSpec(f"color_{c}", "float64", None,
                            f"ln(f_{c[1]} / f_{c[0]}), posterior mean of the more probable type"))
    for c in COLORS:
        s.append(ColumnSpec(f"color_{c}_stderr", "float64", None,
                            f"posterior standard deviation of color_{c}"))
    s += [
        ColumnSpec("gal_frac_dev", "float64", None, "de Vaucouleurs share of the galaxy light"),
        ColumnSpec("gal_axis_ratio", "float64", None, "minor/major axis ratio of the galaxy"),
        ColumnSpec("gal_radius_px", "float64", u.pix,
                   "half-light radius along the major axis (SDSS convention)"),
        ColumnSpec("gal_angle_deg", "float64", u.deg,
                   "position angle of the major axis, east of north, in [0, 180)"),
        ColumnSpec("elbo", "float64", None, "evidence lower bound at the optimum"),
        ColumnSpec("n_iter", "int32", None, "optimizer iterations"),
        ColumnSpec("converged", "bool", None, "the optimizer met its convergence criterion"),
        ColumnSpec("flags", "int32", None,
                   "bitmask: 1 bad sky, 2 iteration limit, 4 non-finite, 8 edge, "
                   "16 mean-field uncertainties"),
    ]
    return s


SCHEMA: tuple[ColumnSpec, ...] = tuple(_specs())
SCHEMA_BY_NAME: dict[str, ColumnSpec] = {spec.name: spec for spec in SCHEMA}
COLUMN_NAMES: tuple[str, ...] = tuple(spec.name for spec in SCHEMA)

# The columns ``celeste validate`` scores (VALIDATION.md section 1) and the uncertainty columns.
SCORED_COLUMNS = (
    "ra", "dec", "is_star", "flux_r_nmgy", *(f"color_{c}" for c in COLORS),
    "gal_frac_dev", "gal_axis_ratio", "gal_radius_px", "gal_angle_deg",
)
STDERR_COLUMNS = ("ra_err_arcsec", "dec_err_arcsec", "log_flux_r_stderr",
                  *(f"color_{c}_stderr" for c in COLORS))


def empty_catalog(n: int = 0) -> Table:
    """A catalog of ``n`` rows with every schema column, filled with NaN / 0 / False."""
    return catalog_from_columns(n, {})


def catalog_from_columns(n: int, values: dict) -> Table:
    """A catalog of ``n`` rows whose schema columns take ``values[name]`` (an array of ``n`` or a
    scalar for every row, cast to the schema dtype) or else the schema's fill value.

    The inference code computes the columns and hands the table to ``write_catalog``.
    """
    if n < 0:
        raise ValueError(f"row count must be >= 0, got {n}")
    unknown = set(values) - set(SCHEMA_BY_NAME)
    if unknown:
        raise ValueError(f"not schema columns: {', '.join(sorted(unknown))}")
    cols = []
    for spec in SCHEMA:
        value = np.asarray(values.get(spec.name, spec.fill))
        if value.ndim == 0:  # one value for every row, held to the arrays' rule by its
            # smallest type (a Python int fits an unsigned column; 1.5 is no row count)
            if not np.can_cast(np.min_scalar_type(value), spec.dtype, "same_kind"):
                raise TypeError(f"column {spec.name}: cannot cast {value.item()!r} to "
                                f"{np.dtype(spec.dtype)}")
            data = np.full(n, value.item(), dtype=spec.dtype)
        else:
            data = value.astype(spec.dtype, casting="same_kind")
        cols.append(Column(data, name=spec.name, unit=spec.unit, description=spec.description))
    return Table(cols)


def apply_schema(table: Table) -> Table:
    """Give schema columns of ``table`` their schema unit and description, in place; returns it.

    Columns outside the schema are left alone. Used after reading, where FITS units such as
    ``nanomaggy`` come back unrecognised.
    """
    for name in table.colnames:
        spec = SCHEMA_BY_NAME.get(name)
        if spec is not None:
            table[name].unit = spec.unit
            table[name].description = spec.description
    return table


def validate_columns(table: Table, required, path) -> None:
    """Raise InputFileError naming every column of ``required`` that ``table`` lacks."""
    missing = [name for name in required if name not in table.colnames]
    if missing:
        plural = "s" if len(missing) > 1 else ""
        raise InputFileError(path, f"missing required column{plural}: {', '.join(missing)}")
