"""The true catalog of a simulated field, and its conversions.

A ``Truth`` holds, per source, the latent variables of the generative model (MODEL.md 2.1):
type, position, r-band log flux, colours and the galaxy shape (theta, rho, phi, sigma, with phi
in the r frame's pixel coordinates).  It converts to

* the model's 44 parameters of a point-mass posterior at the truth (``params``),
* catalog entries as the problem builder takes them (``entries``),
* a table with our catalog schema plus the raw truth columns (``to_table``), and back from such
  a table or from any of our catalogs (``from_table``).
"""

from dataclasses import dataclass, fields

import numpy as np
from astropy.table import Table

from celestecli.catalog import COLORS, empty_catalog, validate_columns
from celestecli.errors import InputFileError
from celestecli.model import params as layout
from celestecli.model import priors
from celestecli.model.shape import half_light_scale, pixel_angle_rad, position_angle_deg
from celestecli.sdss.photoobj import CatalogEntries

# Raw truth columns written next to the schema columns; with them a truth file renders exactly.
RAW_COLUMNS = ("true_is_star", "true_log_flux_r", "true_frac_dev", "true_axis_ratio",
               "true_angle_rad", "true_sigma_px", "true_color_component")
# What a catalog needs to be rendered (galaxy rows also need the four shape columns).
REQUIRED_COLUMNS = ("ra", "dec", "is_star", "flux_r_nmgy", *(f"color_{c}" for c in COLORS))
SHAPE_COLUMNS = ("gal_frac_dev", "gal_axis_ratio", "gal_radius_px", "gal_angle_deg")


@dataclass(frozen=True)
class Truth:
    """Struct of arrays, one entry per source."""

    objid: np.ndarray  # int64
    ra: np.ndarray  # degrees
    dec: np.ndarray  # degrees
    is_star: np.ndarray  # bool
    log_flux_r: np.ndarray  # ln of the r-band flux in nMgy
    colors: np.ndarray  # (S, 4) ln flux ratios ug, gr, ri, iz
    frac_dev: np.ndarray  # theta
    axis_ratio: np.ndarray  # rho
    angle_rad: np.ndarray  # phi, in the r frame's pixel coordinates
    sigma_px: np.ndarray  # sigma, the model's major-axis scale
    color_component: np.ndarray  # int64, mixture component drawn (-1 when unknown)

    def __len__(self) -> int:
        return self.objid.size

    def band_fluxes(self) -> np.ndarray:
        """(S, 5) fluxes u..z in nMgy: ln f_b = ln r + sum_j I_b(j) c_j (MODEL.md 2.1)."""
        return np.exp(self.log_flux_r[:, None] + self.colors @ layout.band_coefficients().T)

    def params(self, variance: float = layout.BOX_LOWER[6]) -> np.ndarray:
        """(S, 44) bound parameters of the posterior concentrated on the truth.

        Both types get the true brightness; ``variance`` is zeta and lambda (the optimizer's
        lower bound by default; 0 gives exactly the truth's light).  chi is (1, 0) or (0, 1) and
        kappa the prior responsibilities of the colour components given the true colours.
        Values may lie outside the optimizer's boxes (a prior draw can be fainter than
        e^-1 nMgy); clip them before using them as a starting point.
        """
        n = len(self)
        p = np.empty((n, layout.N_PARAMS))
        p[:, 0], p[:, 1] = self.ra, self.dec
        p[:, layout.THETA] = self.frac_dev
        p[:, layout.RHO] = self.axis_ratio
        p[:, layout.PHI] = self.angle_rad
        p[:, layout.SIGMA] = self.sigma_px
        for i in range(layout.N_TYPES):
            p[:, layout.GAMMA[i]] = self.log_flux_r
            p[:, layout.ZETA[i]] = variance
            p[:, list(layout.BETA[i])] = self.colors
            p[:, list(layout.LAMBDA[i])] = variance
            p[:, list(layout.KAPPA[i])] = color_responsibilities(self.colors, i)
        p[:, layout.CHI[0]] = self.is_star.astype(np.float64)
        p[:, layout.CHI[1]] = 1.0 - p[:, layout.CHI[0]]
        return p

    def entries(self) -> CatalogEntries:
        """Catalog entries for the problem builder: true fluxes for both types, the true
        shape, and the major-axis half-light radius (the photoObj convention)."""
        flux = self.band_fluxes()
        return CatalogEntries(
            objid=self.objid.copy(), ra=self.ra.copy(), dec=self.dec.copy(),
            is_star=self.is_star.copy(), star_flux=flux, gal_flux=flux.copy(),
            frac_dev=self.frac_dev.copy(), axis_ratio=self.axis_ratio.copy(),
            angle_rad=self.angle_rad.copy(),
            radius_px=self.sigma_px * half_light_scale(self.frac_dev),
        )

    def to_table(self, wcs, run: int, camcol: int, field: int) -> Table:
        """Our catalog schema (truth values; no uncertainties) plus the raw truth columns.

        ``wcs`` is the r frame's, for x, y and the sky position angle of galaxies.
        """
        n = len(self)
        t = empty_catalog(n)
        t["objid"] = self.objid
        t["run"], t["camcol"], t["field"] = run, camcol, field
        t["ra"], t["dec"] = self.ra, self.dec
        x, y = wcs.all_world2pix(self.ra, self.dec, 0)
        t["x"], t["y"] = x, y
        t["is_star"] = self.is_star.astype(np.float64)
        t["prob_galaxy"] = 1.0 - t["is_star"]
        flux = self.band_fluxes()
        for b, name in enumerate("ugriz"):
            t[f"flux_{name}"] = flux[:, b]
            t[f"mag_{name}"] = 22.5 - 2.5 * np.log10(flux[:, b])
        t["flux_r_nmgy"] = flux[:, 2]
        for j, c in enumerate(COLORS):
            t[f"color_{c}"] = self.colors[:, j]
        gal = ~self.is_star
        nan = np.full(n, np.nan)
        t["gal_frac_dev"] = np.where(gal, self.frac_dev, nan)
        t["gal_axis_ratio"] = np.where(gal, self.axis_ratio, nan)
        t["gal_radius_px"] = np.where(gal, self.sigma_px * half_light_scale(self.frac_dev), nan)
        pa = position_angle_deg(wcs, x, y, self.angle_rad) if n else nan
        t["gal_angle_deg"] = np.where(gal, pa, nan)
        t["true_is_star"] = self.is_star
        t["true_log_flux_r"] = self.log_flux_r
        t["true_frac_dev"] = self.frac_dev
        t["true_axis_ratio"] = self.axis_ratio
        t["true_angle_rad"] = self.angle_rad
        t["true_sigma_px"] = self.sigma_px
        t["true_color_component"] = self.color_component
        return t

    @classmethod
    def from_table(cls, table: Table, wcs, path) -> "Truth":
        """A truth from one of our catalogs (or a truth file), to render it.

        Raw truth columns, when all present, are used as they are.  Otherwise the type is
        ``is_star >= 0.5``, the brightness ``flux_r_nmgy`` and ``color_*``, and a galaxy's
        shape comes from the four ``gal_*`` columns: sigma from the major-axis half-light
        radius, phi from the sky position angle through ``wcs`` (the r frame's).  Stars get a
        round, small placeholder shape, which their light does not use.

        Raises
        ------
        InputFileError
            Naming ``path``, for missing columns or missing/invalid values.
        """
        validate_columns(table, REQUIRED_COLUMNS, path)
        n = len(table)

        def column(name):
            return np.asarray(table[name], dtype=np.float64)

        ra, dec = column("ra"), column("dec")
        colors = np.column_stack([column(f"color_{c}") for c in COLORS]) if n else np.zeros((0, 4))
        objid = (np.asarray(table["objid"], dtype=np.int64) if "objid" in table.colnames
                 else np.arange(1, n + 1, dtype=np.int64))
        if all(c in table.colnames for c in RAW_COLUMNS):
            truth = cls(objid=objid, ra=ra, dec=dec,
                        is_star=np.asarray(table["true_is_star"], dtype=bool),
                        log_flux_r=column("true_log_flux_r"), colors=colors,
                        frac_dev=column("true_frac_dev"), axis_ratio=column("true_axis_ratio"),
                        angle_rad=column("true_angle_rad"), sigma_px=column("true_sigma_px"),
                        color_component=np.asarray(table["true_color_component"], np.int64))
            truth.check(path)
            return truth
        is_star = column("is_star") >= 0.5
        flux_r = column("flux_r_nmgy")
        with np.errstate(divide="ignore", invalid="ignore"):
            log_flux_r = np.log(flux_r)
        frac_dev, axis_ratio = np.full(n, 0.5), np.ones(n)
        angle, sigma = np.zeros(n), np.ones(n)
        gal = ~is_star
        if gal.any():
            validate_columns(table, SHAPE_COLUMNS, path)
            shape = {c: column(c) for c in SHAPE_COLUMNS}
            ok = np.all([np.isfinite(v) for v in shape.values()], axis=0)
            ok &= (shape["gal_frac_dev"] >= 0) & (shape["gal_frac_dev"] <= 1)
            if np.any(gal & ~ok):
                raise InputFileError(path, _bad_rows(
                    objid, gal & ~ok,
                    "galaxy shape (gal_*) missing or gal_frac_dev outside [0, 1]"))
            frac_dev[gal] = shape["gal_frac_dev"][gal]
            axis_ratio[gal] = shape["gal_axis_ratio"][gal]
            sigma[gal] = shape["gal_radius_px"][gal] / half_light_scale(frac_dev[gal])
            x, y = wcs.all_world2pix(ra[gal], dec[gal], 0)
            # 0 for a source so far away that the frame's projection does not reach it
            angle[gal] = np.nan_to_num(pixel_angle_rad(wcs, x, y, shape["gal_angle_deg"][gal]))
        truth = cls(objid=objid, ra=ra, dec=dec, is_star=is_star, log_flux_r=log_flux_r,
                    colors=colors, frac_dev=frac_dev, axis_ratio=axis_ratio, angle_rad=angle,
                    sigma_px=sigma, color_component=np.full(n, -1, dtype=np.int64))
        truth.check(path)
        return truth

    def check(self, path) -> None:
        """Raise InputFileError naming the rows whose values cannot be rendered."""
        bad = ~(np.isfinite(self.ra) & np.isfinite(self.dec) & (np.abs(self.dec) <= 90)
                & np.isfinite(self.log_flux_r) & np.all(np.isfinite(self.colors), axis=1))
        if bad.any():
            raise InputFileError(path, _bad_rows(
                self.objid, bad, "position, flux_r_nmgy (> 0) or colours missing or invalid"))
        gal = ~self.is_star
        bad = gal & ~((self.axis_ratio > 0) & (self.axis_ratio <= 1) & (self.sigma_px > 0)
                      & np.isfinite(self.angle_rad) & (self.frac_dev >= 0) & (self.frac_dev <= 1))
        if bad.any():
            raise InputFileError(path, _bad_rows(
                self.objid, bad, "galaxy shape out of range (0 < axis ratio <= 1, radius > 0, "
                                 "0 <= frac_dev <= 1)"))

    def subset(self, keep: np.ndarray) -> "Truth":
        return Truth(**{f.name: getattr(self, f.name)[keep] for f in fields(self)})


def _bad_rows(objid: np.ndarray, bad: np.ndarray, what: str) -> str:
    rows = np.flatnonzero(bad)
    shown = ", ".join(f"{r} (objid {objid[r]})" for r in rows[:5])
    more = f" and {rows.size - 5} more" if rows.size > 5 else ""
    return f"{what} in row(s) {shown}{more}"


def color_responsibilities(colors: np.ndarray, type_index: int) -> np.ndarray:
    """(S, 8) prior probability of each colour-mixture component given the colours."""
    w = priors.COLOR_WEIGHTS[type_index]
    d = colors[:, None, :] - priors.COLOR_MEANS[type_index][None]
    maha = np.einsum("sdi,dij,sdj->sd", d, priors.COLOR_PRECISIONS[type_index], d)
    log_r = np.log(w)[None] - 0.5 * (maha + priors.COLOR_LOGDETS[type_index][None])
    log_r -= log_r.max(axis=1, keepdims=True)
    r = np.exp(log_r)
    r /= r.sum(axis=1, keepdims=True)
    # keep every entry inside the optimizer's simplex bound
    r = np.maximum(r, layout.KAPPA_LOWER)
    return r / r.sum(axis=1, keepdims=True)
