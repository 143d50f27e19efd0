"""Star-only truth: the Hubble (ACS) star list of a 100x100 region of M2 (field 2583/2/136).

``true_hubble_m2.npz`` holds ``true_locs`` (N, 2) in [0, 1] over the region, column 0 the row
(y) and column 1 the column (x), each scaled by ``size - 1`` = 99 (checked against the image
stored with it: bright stars fall on its local maxima only in this order); ``true_fluxes`` in
electrons (r band) and ``nelec_per_nmgy``. The region starts at row 630, column 310 (0-based)
of the r frame, whose WCS (astropy, origin 0) turns truth pixels into RA/Dec and catalog RA/Dec
into pixels.

Detection is scored in pixels of that frame: truth stars and catalog sources inside the region
are paired one to one within a radius (default 1 px); recall is the matched share of truth stars
(binned by truth r magnitude), precision the matched share of catalog sources (binned by their
own r magnitude), F1 their harmonic mean. With a magnitude limit, truth and catalog are each
restricted to brighter sources *after* pairing, so a detection of a star just past the limit is
not counted as false.
"""

import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.table import Table
from astropy.wcs import WCS, FITSFixedWarning

from celestecli.errors import InputFileError
from celestecli.fields import FieldID
from celestecli.validate.matching import one_to_one
from celestecli.validate.photometry import nmgy_to_mag

M2_FIELD = FieldID(2583, 2, 136)
M2_REGION_ROW0 = 630
M2_REGION_COL0 = 310
M2_REGION_SIZE = 100
DEFAULT_MAG_EDGES = (16.0, 17.0, 18.0, 19.0, 20.0, 21.0, 22.0, 23.0)
NPZ_KEYS = ("true_locs", "true_fluxes", "nelec_per_nmgy")


@dataclass
class StarTruth:
    """Truth stars with pixel and sky positions, r magnitudes, and the region they cover."""

    path: str
    frame_path: str
    x: np.ndarray
    y: np.ndarray
    ra: np.ndarray
    dec: np.ndarray
    mag_r: np.ndarray
    wcs: WCS
    x_range: tuple[float, float]  # inclusive pixel-centre bounds of the region
    y_range: tuple[float, float]

    def __len__(self) -> int:
        return self.x.size

    def inside(self, x, y) -> np.ndarray:
        """Positions within the region (pixel centres +- 0.5)."""
        x, y = np.asarray(x), np.asarray(y)
        return ((x >= self.x_range[0] - 0.5) & (x <= self.x_range[1] + 0.5)
                & (y >= self.y_range[0] - 0.5) & (y <= self.y_range[1] + 0.5))


def m2_frame_wcs(path) -> WCS:
    """The celestial WCS of the r frame of M2's field; any other file is an error naming it."""
    try:
        with fits.open(path, memmap=False) as hdul:
            header = hdul[0].header
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FITSFixedWarning)
                wcs = WCS(header).celestial
    except (OSError, ValueError) as exc:
        raise InputFileError(path, f"not a readable SDSS frame: {exc}") from exc
    found = (header.get("RUN"), header.get("CAMCOL"), header.get("FRAME"),
             str(header.get("FILTER", "")).strip())
    wanted = (M2_FIELD.run, M2_FIELD.camcol, M2_FIELD.field, "r")
    if found != wanted:
        raise InputFileError(path, "not the r frame of field {} that the Hubble star list "
                                   "covers (header RUN/CAMCOL/FRAME/FILTER: {})".format(
                                       M2_FIELD, "/".join(map(str, found))))
    if not wcs.has_celestial:
        raise InputFileError(path, "frame header has no celestial WCS")
    return wcs


def read_hubble_truth(path, frame_path, row0: int = M2_REGION_ROW0,
                      col0: int = M2_REGION_COL0, size: int = M2_REGION_SIZE) -> StarTruth:
    """Truth stars of the npz with positions in the frame's pixels and on the sky."""
    try:
        with np.load(path, allow_pickle=False) as z:
            missing = [k for k in NPZ_KEYS if k not in z.files]
            if missing:
                raise InputFileError(path, f"missing array(s): {', '.join(missing)}")
            locs = np.asarray(z["true_locs"], dtype=np.float64)
            fluxes = np.asarray(z["true_fluxes"], dtype=np.float64)
            nelec_per_nmgy = float(z["nelec_per_nmgy"])
    except InputFileError:
        raise
    except (OSError, ValueError) as exc:
        raise InputFileError(path, f"not a readable npz file: {exc}") from exc
    if locs.ndim != 2 or locs.shape[1] != 2:
        raise InputFileError(path, f"true_locs has shape {locs.shape}, expected (N, 2)")
    flux_e = fluxes if fluxes.ndim == 1 else fluxes[:, 0]
    if flux_e.shape[0] != locs.shape[0]:
        raise InputFileError(path, "true_locs and true_fluxes differ in length")
    scale = size - 1
    y = row0 + locs[:, 0] * scale
    x = col0 + locs[:, 1] * scale
    wcs = m2_frame_wcs(frame_path)
    ra, dec = wcs.wcs_pix2world(x, y, 0)
    return StarTruth(str(path), str(frame_path), x, y, np.asarray(ra), np.asarray(dec),
                     nmgy_to_mag(flux_e / nelec_per_nmgy), wcs,
                     (float(col0), float(col0 + scale)), (float(row0), float(row0 + scale)))


def locate_frame(data_dir, truth_path) -> Path | None:
    """The r frame of M2's field: in ``data_dir``'s layout, or in the usual sdss/ next to truth/."""
    from celestecli.sdss.layout import find_local

    candidates = [Path(data_dir)] if data_dir is not None else []
    candidates.append(Path(truth_path).resolve().parent.parent / "sdss")
    for folder in candidates:
        found = find_local(folder, M2_FIELD, "frame", "r")
        if found is not None:
            return found
    return None


@dataclass
class DetectionBin:
    """Recall, precision and F1 in one magnitude bin (or overall)."""

    lo: float
    hi: float
    n_true: int
    n_true_found: int
    n_pred: int
    n_pred_real: int

    @property
    def recall(self) -> float:
        return self.n_true_found / self.n_true if self.n_true else float("nan")

    @property
    def precision(self) -> float:
        return self.n_pred_real / self.n_pred if self.n_pred else float("nan")

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        if np.isnan(p) or np.isnan(r):
            return float("nan")
        return 2 * p * r / (p + r) if p + r > 0 else 0.0


@dataclass
class Detection:
    """Detection scores against a star list, with what the plots need."""

    truth: StarTruth
    radius_px: float
    max_mag: float | None
    overall: DetectionBin
    bins: list[DetectionBin]
    pred_x: np.ndarray
    pred_y: np.ndarray
    pred_mag: np.ndarray
    true_found: np.ndarray  # per truth star
    pred_real: np.ndarray  # per catalog source inside the region
    n_catalog: int  # catalog rows read (before the region cut)
    notes: list[str] = field(default_factory=list)


def _bin_counts(lo, hi, t_mag, t_found, p_mag, p_real) -> DetectionBin:
    t_in = (t_mag >= lo) & (t_mag < hi)
    p_in = (p_mag >= lo) & (p_mag < hi)
    return DetectionBin(lo, hi, int(t_in.sum()), int((t_in & t_found).sum()),
                        int(p_in.sum()), int((p_in & p_real).sum()))


def score_detection(truth: StarTruth, catalog: Table, radius_px: float = 1.0,
                    max_mag: float | None = None,
                    mag_edges=DEFAULT_MAG_EDGES) -> Detection:
    """Recall / precision / F1 of ``catalog`` (needs ra, dec, flux_r_nmgy) against ``truth``."""
    ra = np.asarray(catalog["ra"], dtype=np.float64)
    dec = np.asarray(catalog["dec"], dtype=np.float64)
    px, py = truth.wcs.wcs_world2pix(ra, dec, 0)
    inside = truth.inside(px, py) & np.isfinite(px) & np.isfinite(py)
    px, py = px[inside], py[inside]
    pmag = nmgy_to_mag(np.asarray(catalog["flux_r_nmgy"], dtype=np.float64)[inside])
    ti, pj = one_to_one(np.column_stack([truth.x, truth.y]), np.column_stack([px, py]),
                        radius_px)
    t_found = np.zeros(len(truth), dtype=bool)
    t_found[ti] = True
    p_real = np.zeros(px.size, dtype=bool)
    p_real[pj] = True
    # no limit: every source counts; NaN magnitudes (flux <= 0) count in the overall row only
    limit = np.inf if max_mag is None else max_mag
    t_sel = ~(truth.mag_r >= limit)
    p_sel = ~(pmag >= limit)
    overall = DetectionBin(-np.inf, limit, int(t_sel.sum()), int((t_sel & t_found).sum()),
                           int(p_sel.sum()), int((p_sel & p_real).sum()))
    edges = [-np.inf, *[e for e in mag_edges if e < limit], limit]
    bins = [_bin_counts(lo, hi, truth.mag_r, t_found, pmag, p_real)
            for lo, hi in zip(edges[:-1], edges[1:], strict=True)]
    return Detection(truth, radius_px, max_mag, overall, bins, px, py, pmag, t_found, p_real,
                     len(catalog))
