"""Write a simulated field as SDSS-format files in the local data-dir layout.

Per field (``DIR/RUN/CAMCOL/FIELD/``): five ``frame-*.fits.bz2`` (image in nMgy with the WCS,
calibration vector, sky grid, a minimal astrometry table), ``psField-*.fit`` (eigen-PSFs in
MODEL.md 6.1's format and the HDU 6 gain/dark variance), five ``fpM-*.fit`` (the mask-plane
table with empty planes), ``photoObj-*.fits`` (the truth as SDSS Photo reports objects) and
``truth-*.fits`` (our catalog schema plus the raw truth).  Per run/camcol:
``photoField-*.fits`` with one row per simulated field.

Every file is written into a staging folder beside its destination and renamed into place only
when all were written, so a failure leaves nothing behind.  Headers carry no clock time, so the
same inputs and seed give byte-identical files.
"""

import bz2
import io
import os
import secrets
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from astropy.io import fits

from celestecli.catalog import OutputError, Provenance, write_catalog
from celestecli.errors import InputFileError
from celestecli.fields import FieldID
from celestecli.model.shape import half_light_scale, position_angle_deg, sky_jacobian
from celestecli.sdss import BANDS, PIXEL_SCALE_ARCSEC
from celestecli.sdss.fitsio import FitsFile
from celestecli.sdss.fpm import PLANE_TABLE_HDU
from celestecli.sdss.layout import COMPRESSED_SUFFIXES, base_name, local_dir
from celestecli.sdss.photoobj import TYPE_GALAXY, TYPE_STAR
from celestecli.simulate.field_setup import BandSetup
from celestecli.simulate.simulation import SimulatedField

CREATOR = "celeste simulate"
RERUN = "301"
EXPTIME = 53.907456  # seconds, SDSS drift scan
# fpM mask planes (HDU 11 of real fpM files); planes 0..9 are tables in HDUs 1..10.
MASK_PLANES = ("S_MASK_INTERP", "S_MASK_SATUR", "S_MASK_NOTCHECKED", "S_MASK_OBJECT",
               "S_MASK_BRIGHTOBJECT", "S_MASK_BINOBJECT", "S_MASK_CATOBJECT",
               "S_MASK_SUBTRACTED", "S_MASK_GHOST", "S_MASK_CR")
MASK_COLUMNS = ("refcntr", "nspan", "row0", "col0", "rmin", "rmax", "cmin", "cmax", "npix")


def truth_name(fid: FieldID) -> str:
    return f"truth-{fid.stem}.fits"


def output_paths(out_dir: Path, fid: FieldID) -> dict[str, Path]:
    """Destination of every file of a simulated field, by a short label."""
    field_dir = local_dir(out_dir, fid, "frame")
    paths = {f"frame-{b}": field_dir / (base_name(fid, "frame", b) + ".bz2") for b in BANDS}
    paths["psField"] = field_dir / base_name(fid, "psField")
    paths.update({f"fpM-{b}": field_dir / base_name(fid, "fpM", b) for b in BANDS})
    paths["photoObj"] = field_dir / base_name(fid, "photoObj")
    paths["truth"] = field_dir / truth_name(fid)
    paths["photoField"] = local_dir(out_dir, fid, "photoField") / base_name(fid, "photoField")
    return paths


def _variants(path: Path) -> list[Path]:
    """``path`` and the other compressed/plain copies the readers would also find."""
    name = path.name
    for suffix in (".bz2", ".gz"):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
    return [path.parent / (name + s) for s in COMPRESSED_SUFFIXES]


# --- HDUs ------------------------------------------------------------------------------------


def _primary(fid: FieldID, **extra) -> fits.PrimaryHDU:
    hdu = fits.PrimaryHDU()
    hdu.header["CREATOR"] = (CREATOR, "simulated data, not an SDSS observation")
    hdu.header["RUN"] = (fid.run, "run number")
    hdu.header["CAMCOL"] = (fid.camcol, "camera column")
    hdu.header["FIELD"] = (fid.field, "field number")
    for key, value in extra.items():
        hdu.header[key] = value
    return hdu


def _write_synced(path: Path, data: bytes) -> None:
    with open(path, "xb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def _hdul_bytes(hdul: fits.HDUList) -> bytes:
    buf = io.BytesIO()
    hdul.writeto(buf)
    return buf.getvalue()


def frame_bytes(sim: SimulatedField, band: int) -> bytes:
    """An uncompressed frame file: HDU 0 image (nMgy) + WCS, 1 calib, 2 sky, 3 astrometry."""
    setup: BandSetup = sim.setup.bands[band]
    fid = sim.fid
    image = fits.PrimaryHDU(data=sim.frame_image(band))
    h = image.header
    h["CREATOR"] = (CREATOR, "simulated data, not an SDSS observation")
    h["SIMSEED"] = (sim.seed, "random seed of the simulation")
    h["SIMSETUP"] = sim.setup.description
    h["RUN"], h["CAMCOL"], h["FRAME"] = fid.run, fid.camcol, fid.field
    h["FILTER"] = (BANDS[band], "filter used")
    h["EXPTIME"] = (EXPTIME, "exposure time (s)")
    h["BUNIT"] = ("nanomaggy", "1 nanomaggy = 3.631e-6 Jy")
    h["NMGY"] = (float(np.mean(setup.calib)), "mean calibration [nMgy per count]")
    h["RERUN"] = RERUN
    h["QUANTUM"] = (sim.quantum(band), "pixel values are multiples of this (nMgy)")
    h.extend(setup.wcs_header.cards)
    calib = fits.ImageHDU(data=setup.calib.astype(np.float32))
    gy, gx = setup.allsky.shape
    sky = fits.BinTableHDU.from_columns([
        fits.Column("ALLSKY", format=f"{gy * gx}E", dim=f"({gx},{gy})",
                    array=setup.allsky[None].astype(np.float32)),
        fits.Column("XINTERP", format=f"{setup.xinterp.size}E",
                    array=setup.xinterp[None].astype(np.float32)),
        fits.Column("YINTERP", format=f"{setup.yinterp.size}E",
                    array=setup.yinterp[None].astype(np.float32)),
    ])
    astrometry = fits.BinTableHDU.from_columns([
        fits.Column("RUN", format="J", array=[fid.run]),
        fits.Column("RERUN", format="3A", array=[RERUN]),
        fits.Column("CAMCOL", format="J", array=[fid.camcol]),
        fits.Column("FILTER", format="1A", array=[BANDS[band]]),
        fits.Column("FIELD", format="J", array=[fid.field]),
    ])
    return _hdul_bytes(fits.HDUList([image, calib, sky, astrometry]))


def psfield_hdul(sim: SimulatedField) -> fits.HDUList:
    """psField: HDUs 1-5 the eigen-PSF of u..z (MODEL.md 6.1), HDU 6 gain and dark variance."""
    hdus = [_primary(sim.fid, FILTERS="u g r i z")]
    for setup in sim.setup.bands:
        images, coeffs = setup.psf.eigen_images, setup.psf.coeffs
        k, rnrow, rncol = images.shape
        nrow_b, ncol_b = coeffs.shape[1:]
        # numpy's view of the 5x5 cell is the transpose of IDL's C[row power, column power]
        cells = np.zeros((k, 5, 5), dtype=np.float32)
        cells[:, :ncol_b, :nrow_b] = coeffs.transpose(0, 2, 1)
        hdus.append(fits.BinTableHDU.from_columns([
            fits.Column("nrow_b", format="J", array=np.full(k, nrow_b)),
            fits.Column("ncol_b", format="J", array=np.full(k, ncol_b)),
            fits.Column("c", format="25E", dim="(5,5)", array=cells),
            fits.Column("RNROW", format="J", array=np.full(k, rnrow)),
            fits.Column("RNCOL", format="J", array=np.full(k, rncol)),
            fits.Column("RROWS", format=f"{rnrow * rncol}E",
                        array=images.reshape(k, -1).astype(np.float32)),
        ]))
    bands = sim.setup.bands
    hdus.append(fits.BinTableHDU.from_columns([
        fits.Column("field", format="J", array=[sim.fid.field]),
        fits.Column("gain", format="5E", array=[[b.gain for b in bands]]),
        fits.Column("dark_variance", format="5E", array=[[b.dark_variance for b in bands]]),
    ]))
    return fits.HDUList(hdus)


def fpm_hdul(sim: SimulatedField, band: int) -> fits.HDUList:
    """fpM with every mask plane empty (nothing masked) and the plane-name table in HDU 11."""
    ny, nx = sim.setup.bands[band].shape
    hdus = [_primary(sim.fid, FILTER=BANDS[band], MASKROWS=ny, MASKCOLS=nx,
                     NPLANE=len(MASK_PLANES))]
    for _ in MASK_PLANES:
        hdus.append(fits.BinTableHDU.from_columns(
            [fits.Column(name, format="J", array=np.zeros(0, np.int32)) for name in MASK_COLUMNS]))
    names = list(MASK_PLANES) + ["S_NMASK_TYPES"]
    table = fits.BinTableHDU.from_columns([
        fits.Column("defName", format="31A", array=["S_MASKTYPE"] * len(names)),
        fits.Column("attributeName", format="31A", array=names),
        fits.Column("Value", format="J", array=np.arange(len(names))),
    ])
    table.header["TYPENAME"] = "S_MASKTYPE"
    hdus.append(table)
    assert len(hdus) == PLANE_TABLE_HDU + 1
    return fits.HDUList(hdus)


PHOTOFIELD_COLUMNS = (("RUN", "J"), ("RERUN", "3A"), ("CAMCOL", "J"), ("FIELD", "J"),
                      ("GAIN", "5E"), ("DARK_VARIANCE", "5E"), ("NMGYPERCOUNT", "5E"))


def _other_photofield_rows(existing: Path, fid: FieldID, replace: bool) -> dict[int, dict]:
    """Rows of an existing simulated photoField for fields other than ``fid``.

    Raises InputFileError if the file was not written by ``celeste simulate`` (a real
    photoField is never rewritten), OutputError if it has a row for ``fid`` and not ``replace``.
    """
    f = FitsFile(existing)
    if f.header(0).get("CREATOR") != CREATOR:
        raise InputFileError(existing, f"exists and was not written by {CREATOR}: choose "
                                       "another run/camcol with --field")
    table = f.table(1, "field table", tuple(name for name, _ in PHOTOFIELD_COLUMNS))
    rows = {}
    for row in table:
        fld = int(row["FIELD"])
        if fld != fid.field:
            rows[fld] = {name: row[name] for name, _ in PHOTOFIELD_COLUMNS}
        elif not replace:
            raise OutputError(existing, f"already has a row for field {fld} "
                                        "(use --force to replace it)")
    return rows


def photofield_hdul(sim: SimulatedField, existing: Path | None, replace: bool) -> fits.HDUList:
    """photoField of the run/camcol: the rows of an existing simulated photoField for other
    fields, plus this field's row, sorted by field."""
    bands = sim.setup.bands
    rows = {} if existing is None else _other_photofield_rows(existing, sim.fid, replace)
    rows[sim.fid.field] = {
        "RUN": sim.fid.run, "RERUN": RERUN, "CAMCOL": sim.fid.camcol, "FIELD": sim.fid.field,
        "GAIN": [b.gain for b in bands], "DARK_VARIANCE": [b.dark_variance for b in bands],
        "NMGYPERCOUNT": [float(np.mean(b.calib)) for b in bands],
    }
    ordered = [rows[k] for k in sorted(rows)]
    cols = [fits.Column(name, format=fmt, array=[r[name] for r in ordered])
            for name, fmt in PHOTOFIELD_COLUMNS]
    return fits.HDUList([_primary(sim.fid), fits.BinTableHDU.from_columns(cols)])


def x_axis_angle_deg(wcs, x, y) -> np.ndarray:
    """Signed sky position angle (deg, east of north) of the +x pixel axis at (x, y)."""
    jac = sky_jacobian(wcs, x, y)
    return np.rad2deg(np.arctan2(jac[:, 0, 0], jac[:, 1, 0]))


def photoobj_hdul(sim: SimulatedField) -> fits.HDUList:
    """The truth as SDSS Photo reports objects, so that ``read_photoobj`` gives it back.

    Stars are type 6, galaxies 3; every band's fluxes are the true ones (a galaxy's PSF flux
    is its total flux too); shape columns hold the truth in every band: FRACDEV, AB_* = axis
    ratio, THETA_* = half-light radius (arcsec) of the pure dev/exp profile with the true
    Sigma, PHI_*_DEG = sky position angle and PHI_OFFSET = -PA(+x), so that
    PHI + PHI_OFFSET is the model's pixel-frame angle.  ROWC/COLC are Photo's pixel
    coordinates (0-based centre + 0.5).  Flags 0, NCHILD 0, MODE 1 (primary).
    """
    t = sim.listed_truth
    n = len(t)
    gal = ~t.is_star
    flux = t.band_fluxes()
    ref = sim.setup.reference
    x_r, y_r = ref.wcs.all_world2pix(t.ra, t.dec, 0)
    pa = position_angle_deg(ref.wcs, x_r, y_r, t.angle_rad) if n else np.zeros(0)

    def per_band(values):
        return np.repeat(np.asarray(values, dtype=np.float64)[:, None], 5, axis=1)

    rowc, colc, offset = np.zeros((n, 5)), np.zeros((n, 5)), np.zeros((n, 5))
    for b, setup in enumerate(sim.setup.bands):
        x, y = setup.wcs.all_world2pix(t.ra, t.dec, 0)
        colc[:, b], rowc[:, b] = x + 0.5, y + 0.5
        if n:
            offset[:, b] = -x_axis_angle_deg(setup.wcs, x, y)
    arcsec = t.sigma_px * PIXEL_SCALE_ARCSEC
    theta_dev = np.where(gal, arcsec * half_light_scale(1.0), 0.0)
    theta_exp = np.where(gal, arcsec * half_light_scale(0.0), 0.0)
    scalar = [
        ("OBJID", "K", t.objid), ("RUN", "J", np.full(n, sim.fid.run)),
        ("RERUN", "3A", [RERUN] * n), ("CAMCOL", "J", np.full(n, sim.fid.camcol)),
        ("FIELD", "J", np.full(n, sim.fid.field)), ("RA", "D", t.ra), ("DEC", "D", t.dec),
        ("MODE", "I", np.ones(n)), ("THING_ID", "J", np.arange(n)),
        ("OBJC_TYPE", "J", np.where(t.is_star, TYPE_STAR, TYPE_GALAXY)),
        ("OBJC_FLAGS", "J", np.zeros(n)), ("OBJC_FLAGS2", "J", np.zeros(n)),
        ("NCHILD", "I", np.zeros(n)),
    ]
    vector = [
        ("ROWC", rowc), ("COLC", colc), ("PSFFLUX", flux), ("CMODELFLUX", flux),
        ("DEVFLUX", flux), ("EXPFLUX", flux),
        ("FRACDEV", per_band(np.where(gal, t.frac_dev, 0.0))),
        ("AB_DEV", per_band(np.where(gal, t.axis_ratio, 1.0))),
        ("AB_EXP", per_band(np.where(gal, t.axis_ratio, 1.0))),
        ("THETA_DEV", per_band(theta_dev)), ("THETA_EXP", per_band(theta_exp)),
        ("PHI_DEV_DEG", per_band(np.where(gal, pa, 0.0))),
        ("PHI_EXP_DEG", per_band(np.where(gal, pa, 0.0))),
        ("PHI_OFFSET", offset),
    ]
    cols = [fits.Column(name, format=fmt, array=np.asarray(values)) for name, fmt, values in scalar]
    cols += [fits.Column(name, format="5E", array=values.astype(np.float32))
             for name, values in vector]
    return fits.HDUList([_primary(sim.fid), fits.BinTableHDU.from_columns(cols)])


# --- staging and commit ---------------------------------------------------------------------


class _Staging:
    """A hidden folder per destination folder; files move into place only on ``commit``."""

    def __init__(self, destinations: list[Path]):
        self._created: list[Path] = []
        self._stage: dict[Path, Path] = {}
        try:
            for folder in sorted({p.parent for p in destinations}):
                self._mkdirs(folder)
                stage = folder / f".celeste-simulate-{os.getpid()}-{secrets.token_hex(4)}"
                self._mkdir(stage)
                self._stage[folder] = stage
        except BaseException:
            self.abort()
            raise

    def _mkdir(self, folder: Path) -> None:
        try:
            folder.mkdir()
        except OSError as exc:
            raise OutputError(folder, exc.strerror or str(exc)) from exc
        self._created.append(folder)

    def _mkdirs(self, folder: Path) -> None:
        missing = []
        p = folder
        while not p.exists():
            missing.append(p)
            if p.parent == p:
                break
            p = p.parent
        if p.exists() and not p.is_dir():
            raise OutputError(p, "exists and is not a directory")
        for d in reversed(missing):
            self._mkdir(d)

    def path(self, final: Path) -> Path:
        return self._stage[final.parent] / final.name

    def commit(self, finals: list[Path], stale: list[Path]) -> None:
        for final in finals:
            os.replace(self.path(final), final)
        for path in stale:
            path.unlink(missing_ok=True)
        for stage in self._stage.values():
            stage.rmdir()

    def abort(self) -> None:
        for stage in self._stage.values():
            shutil.rmtree(stage, ignore_errors=True)
        for folder in reversed(self._created):  # the stages too, and folders made for them
            try:
                folder.rmdir()
            except OSError:
                pass


def check_destinations(paths: dict[str, Path], force: bool) -> list[Path]:
    """Existing copies of the outputs that would be replaced (photoField rows are merged).

    Raises OutputError for the first one when not ``force``, and when a destination folder
    cannot be made because a file stands in its way.
    """
    for folder in {p.parent for p in paths.values()}:
        while not folder.exists() and folder.parent != folder:
            folder = folder.parent
        if not folder.is_dir():
            raise OutputError(folder, "exists and is not a directory")
    existing = []
    for label, path in paths.items():
        if label == "photoField":
            continue
        for p in _variants(path):
            if p.exists():
                if not force:
                    raise OutputError(p, "exists (use --force to replace the field's files)")
                if label != "truth":  # the truth catalog is ours by its name
                    _check_simulated(p)
                existing.append(p)
    return existing


def _check_simulated(path: Path) -> None:
    """Raise OutputError unless ``path`` is a file ``celeste simulate`` wrote: --force never
    replaces real SDSS files (or anything it cannot tell apart from them)."""
    try:
        creator = fits.getheader(path, 0).get("CREATOR")
    except Exception:  # astropy raises many kinds of error for files that are not FITS
        creator = None
    if creator != CREATOR:
        raise OutputError(path, f"exists and was not written by {CREATOR}, so even --force "
                                "does not replace it: choose another --field or output folder")


def _existing_photofield(path: Path) -> Path | None:
    return next((p for p in _variants(path) if p.exists()), None)


def preflight(out_dir: str | Path, fid: FieldID, force: bool = False) -> None:
    """The checks ``write_field`` makes before writing, to fail before any work is done."""
    paths = output_paths(Path(out_dir), fid)
    check_destinations(paths, force)
    old_photofield = _existing_photofield(paths["photoField"])
    if old_photofield is not None:
        _other_photofield_rows(old_photofield, fid, force)


def write_field(sim: SimulatedField, out_dir: str | Path, provenance: Provenance,
                force: bool = False, n_threads: int = 1) -> list[Path]:
    """Write every file of ``sim`` under ``out_dir`` (local layout); returns their paths."""
    out_dir = Path(out_dir)
    paths = output_paths(out_dir, sim.fid)
    existing = check_destinations(paths, force)
    photofield = paths["photoField"]
    old_photofield = _existing_photofield(photofield)
    stale = [p for p in existing if p not in paths.values()]
    if old_photofield is not None and old_photofield != photofield:
        stale.append(old_photofield)
    # build the photoField first: it reads (and may reject) an existing one
    photofield_list = photofield_hdul(sim, old_photofield, replace=force)

    contents = {f"fpM-{name}": _hdul_bytes(fpm_hdul(sim, b)) for b, name in enumerate(BANDS)}
    contents["psField"] = _hdul_bytes(psfield_hdul(sim))
    contents["photoObj"] = _hdul_bytes(photoobj_hdul(sim))
    contents["photoField"] = _hdul_bytes(photofield_list)
    frames = [frame_bytes(sim, b) for b in range(len(BANDS))]
    with ThreadPoolExecutor(max_workers=max(1, min(n_threads, len(BANDS)))) as pool:
        compressed = pool.map(lambda data: bz2.compress(data, 9), frames)
        contents.update({f"frame-{b}": data for b, data in zip(BANDS, compressed, strict=True)})
    ref = sim.setup.reference
    table = sim.listed_truth.to_table(ref.wcs, sim.fid.run, sim.fid.camcol, sim.fid.field)

    staging = _Staging(list(paths.values()))
    try:
        for label, data in contents.items():
            _write_synced(staging.path(paths[label]), data)
        write_catalog(table, staging.path(paths["truth"]), fmt="fits", provenance=provenance)
        staging.commit(list(paths.values()), stale)
    except OSError as exc:
        staging.abort()
        if isinstance(exc, OutputError | InputFileError):
            raise
        raise OutputError(getattr(exc, "filename", None) or out_dir,
                          exc.strerror or str(exc)) from exc
    except BaseException:
        staging.abort()
        raise
    return list(paths.values())
