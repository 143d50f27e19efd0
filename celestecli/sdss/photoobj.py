"""SDSS photoObj catalog -> initial catalog entries, with Celeste's selection (MODEL.md 7.4;
BRIGHT rows dropped as it meant to, see ``BAD_OBJC_FLAGS``).

Shape parameters come from the r band.  Fluxes are in nanomaggies, radii in pixels, angles in
radians.  A photoObj with no table (Photo found no objects, e.g. 2583/2/136) or with zero rows
gives an empty catalog.
"""

from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
from astropy.io import fits

from celestecli.sdss import PIXEL_SCALE_ARCSEC
from celestecli.sdss.fitsio import FitsFile

R_BAND = 2
MIN_RADIUS_ARCSEC = 1.0 / 30.0
MIN_FLUX_NMGY = 1e-6
TYPE_GALAXY, TYPE_STAR = 3, 6
# OBJC_FLAGS bits 1 (BRIGHT), 18 (SATUR), 24 (TOO_LARGE).  Celeste's code writes the first as
# `1^2`, which is 1 (CANONICAL_CENTER), where BRIGHT was meant (MODEL.md 7.4; section 10: fix).
# A BRIGHT row repeats an object measured again in the faint pass: with bit 0, 3900/6/269 keeps
# objID 1237662226208063636 (BRIGHT, MODE 4) 0.025 arcsec from its primary twin ...639, two
# sources fitting one star.  (celeste validate's Photo baseline keeps bit 0, for parity with
# the published scores: validate/readers.py.)
BAD_OBJC_FLAGS = 2**1 + 2**18 + 2**24
BAD_OBJC_FLAGS2 = 2**14 + 2**18 + 2**11

SCALAR_COLUMNS = ("OBJID", "RA", "DEC", "MODE", "THING_ID", "OBJC_FLAGS", "OBJC_FLAGS2",
                  "NCHILD", "OBJC_TYPE")
BAND_COLUMNS = ("FRACDEV", "PSFFLUX", "DEVFLUX", "EXPFLUX", "PHI_DEV_DEG", "PHI_EXP_DEG",
                "PHI_OFFSET", "THETA_DEV", "THETA_EXP", "AB_EXP", "AB_DEV")


@dataclass(frozen=True)
class CatalogEntries:
    """Initial catalog as a struct of arrays (n entries)."""

    objid: np.ndarray  # int64 (n,)
    ra: np.ndarray  # float64 (n,), degrees
    dec: np.ndarray  # float64 (n,), degrees
    is_star: np.ndarray  # bool (n,)
    star_flux: np.ndarray  # float64 (n, 5), nanomaggies, u..z
    gal_flux: np.ndarray  # float64 (n, 5), nanomaggies, u..z
    frac_dev: np.ndarray  # float64 (n,), weight of the de Vaucouleurs profile
    axis_ratio: np.ndarray  # float64 (n,), minor / major
    angle_rad: np.ndarray  # float64 (n,)
    radius_px: np.ndarray  # float64 (n,), half-light radius of the dominant profile

    def __len__(self) -> int:
        return self.objid.size

    def subset(self, index) -> "CatalogEntries":
        """The entries selected by an index array or boolean mask."""
        return type(self)(**{f.name: getattr(self, f.name)[index] for f in fields(self)})

    @classmethod
    def empty(cls) -> "CatalogEntries":
        shapes = {"star_flux": (0, 5), "gal_flux": (0, 5)}
        dtypes = {"objid": np.int64, "is_star": bool}
        return cls(**{f.name: np.zeros(shapes.get(f.name, (0,)), dtypes.get(f.name, np.float64))
                      for f in fields(cls)})


def _has_rows(f: FitsFile) -> bool:
    if len(f) < 2:
        return False
    hdu = f.hdus[1]
    return isinstance(hdu, fits.BinTableHDU) and hdu.data is not None and len(hdu.data) > 0


def selection(objc_type, frac_dev_r, nchild, objc_flags, objc_flags2) -> np.ndarray:
    """Celeste's row filter (BRIGHT as it meant, not its bit 0): clean, childless stars and
    galaxies with 0 <= FRACDEV_r <= 1."""
    return (np.isin(objc_type, (TYPE_STAR, TYPE_GALAXY))
            & (frac_dev_r >= 0) & (frac_dev_r <= 1)
            & (nchild == 0)
            & ((objc_flags & BAD_OBJC_FLAGS) == 0)
            & ((objc_flags2 & BAD_OBJC_FLAGS2) == 0))


def read_photoobj(path: str | Path, celeste_angle: bool = False,
                  primary_only: bool = False) -> CatalogEntries:
    """Catalog entries of the objects in a photoObj file that pass ``selection``.

    Parameters
    ----------
    path : path of the photoObj file
    celeste_angle : bool
        False (default): the galaxy angle in the frame's pixel coordinates, ``PHI_r +
        PHI_OFFSET_r``, which is what the model's angle means (MODEL.md 7.4 caution).  True:
        Celeste's ``PHI_r - PHI_OFFSET_r``, off by 2 PHI_OFFSET away from the equator; Celeste
        starts its targets at generic shapes, where the error did not matter, but celeste
        starts them at the catalog's.
    primary_only : bool
        Also require ``MODE == 1`` and ``THING_ID != -1`` (the IPDPS-era selection: primary
        detections, no duplicates between overlapping fields).

    Raises
    ------
    InputFileError
        Naming the file, if it is unreadable or a table lacks a needed column.
    """
    f = FitsFile(path)
    if not _has_rows(f):
        return CatalogEntries.empty()
    table = f.table(1, "objects", SCALAR_COLUMNS + BAND_COLUMNS)
    col = {name: f.column(table, name, 1, np.int64)
           for name in ("MODE", "THING_ID", "OBJC_FLAGS", "OBJC_FLAGS2", "NCHILD", "OBJC_TYPE")}
    band = {name: f.column(table, name, 1, row_shape=(5,)) for name in BAND_COLUMNS}
    try:
        objid = np.char.strip(np.asarray(table["OBJID"]).astype(str)).astype(np.int64)
    except ValueError as exc:
        raise f.error(f"HDU 1 column OBJID is not integral ({exc})") from exc

    frac_dev_all = band["FRACDEV"][:, R_BAND]
    keep = selection(col["OBJC_TYPE"], frac_dev_all, col["NCHILD"],
                     col["OBJC_FLAGS"], col["OBJC_FLAGS2"])
    if primary_only:
        keep &= (col["MODE"] == 1) & (col["THING_ID"] != -1)

    b = {name: v[keep] for name, v in band.items()}
    frac_dev = b["FRACDEV"][:, R_BAND]
    dev = frac_dev > 0.5
    gal_flux = (frac_dev[:, None] * np.maximum(b["DEVFLUX"], MIN_FLUX_NMGY)
                + (1 - frac_dev[:, None]) * np.maximum(b["EXPFLUX"], MIN_FLUX_NMGY))
    r = R_BAND
    axis_ratio = np.where(dev, b["AB_DEV"][:, r], b["AB_EXP"][:, r])
    theta = np.where(dev, b["THETA_DEV"][:, r], b["THETA_EXP"][:, r])
    phi_deg = np.where(dev, b["PHI_DEV_DEG"][:, r], b["PHI_EXP_DEG"][:, r])
    offset = b["PHI_OFFSET"][:, r]
    angle_deg = phi_deg - offset if celeste_angle else phi_deg + offset
    return CatalogEntries(
        objid=objid[keep],
        ra=f.column(table, "RA", 1)[keep],
        dec=f.column(table, "DEC", 1)[keep],
        is_star=col["OBJC_TYPE"][keep] == TYPE_STAR,
        star_flux=np.maximum(b["PSFFLUX"], MIN_FLUX_NMGY),
        gal_flux=gal_flux,
        frac_dev=frac_dev,
        axis_ratio=axis_ratio,
        angle_rad=np.deg2rad(angle_deg),
        radius_px=np.maximum(theta, MIN_RADIUS_ARCSEC) / PIXEL_SCALE_ARCSEC,
    )
