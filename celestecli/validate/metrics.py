"""Celeste's accuracy metrics, exactly as VALIDATION.md section 1 defines them.

Per matched row and catalog, an error per metric (``row_errors``); per metric, the rows that
pass the truth-based filters in every catalog (``good_rows``); per metric, the mean error of each
catalog, the mean paired difference to the first catalog and its spread
``diff_sd = std(|diff|) / sqrt(N)`` (sample standard deviation), with percentile bootstrap
intervals (``score``). Also the uncertainty calibration (``uncertainty``) and the star/galaxy
AUC (``star_galaxy_auc``).
"""

from dataclasses import dataclass, field

import numpy as np
from astropy.table import Table
from scipy.stats import norm, rankdata

from celestecli.angles import ARCSEC_PER_DEG, ra_offset_deg
from celestecli.catalog import COLORS
from celestecli.validate.matching import separation_px
from celestecli.validate.photometry import nmgy_to_asinh_mag

# In the order of Celeste's score table.
METRICS = (
    "missed_stars", "missed_galaxies", "position", "flux_r_mag", "flux_r_nmgy",
    "gal_angle_deg", "gal_frac_dev", "gal_axis_ratio", "gal_radius_px",
    *(f"color_{c}" for c in COLORS),
)
UNITS = {
    "missed_stars": "fraction", "missed_galaxies": "fraction", "position": "px",
    "flux_r_mag": "mag", "flux_r_nmgy": "nMgy", "gal_angle_deg": "deg", "gal_frac_dev": "",
    "gal_axis_ratio": "", "gal_radius_px": "px", **{f"color_{c}": "mag" for c in COLORS},
}
SHAPE_METRICS = ("gal_frac_dev", "gal_axis_ratio", "gal_radius_px", "gal_angle_deg")
MAX_TRUTH_RADIUS_PX = 20.0
FRAC_DEV_PURE = (0.05, 0.95)  # shape metrics only for truth fracDeV outside this open range
MAX_AXIS_RATIO_FOR_ANGLE = 0.6
SD_LEVELS = (0.5, 1.0, 2.0, 3.0)
_MAG_PER_LN = 2.5 / np.log(10)


def _col(table: Table, name: str) -> np.ndarray:
    if name not in table.colnames:
        return np.full(len(table), np.nan)
    return np.asarray(table[name], dtype=np.float64)


def row_errors(truth: Table, pred: Table) -> dict[str, np.ndarray]:
    """Per-row errors of ``pred`` against ``truth`` (row-aligned); NaN where undefined."""
    t_star = _col(truth, "is_star")
    p_star = _col(pred, "is_star")
    known = ~np.isnan(t_star) & ~np.isnan(p_star)
    true_galaxy = t_star < 0.5
    pred_galaxy = p_star < 0.5
    err = {
        "missed_stars": np.where(known & ~true_galaxy, pred_galaxy.astype(float), np.nan),
        "missed_galaxies": np.where(known & true_galaxy, (~pred_galaxy).astype(float), np.nan),
        "position": separation_px(_col(truth, "ra"), _col(truth, "dec"),
                                  _col(pred, "ra"), _col(pred, "dec")),
    }
    t_flux, p_flux = _col(truth, "flux_r_nmgy"), _col(pred, "flux_r_nmgy")
    err["flux_r_mag"] = np.abs(nmgy_to_asinh_mag(t_flux, "r") - nmgy_to_asinh_mag(p_flux, "r"))
    err["flux_r_nmgy"] = np.abs(t_flux - p_flux)
    d = np.abs(_col(truth, "gal_angle_deg") - _col(pred, "gal_angle_deg")) % 180.0
    err["gal_angle_deg"] = np.minimum(d, 180.0 - d)
    for name in ("gal_frac_dev", "gal_axis_ratio", "gal_radius_px"):
        err[name] = np.abs(_col(truth, name) - _col(pred, name))
    for c in COLORS:
        name = f"color_{c}"
        err[name] = np.abs(_col(truth, name) - _col(pred, name)) * _MAG_PER_LN
    return err


def good_rows(truth: Table, errors: dict[str, np.ndarray], metric: str) -> np.ndarray:
    """Rows where ``metric`` is scored for this catalog (VALIDATION.md 1 row filters)."""
    ok = ~np.isnan(errors[metric])
    ok &= ~(_col(truth, "gal_radius_px") > MAX_TRUTH_RADIUS_PX)
    if metric in SHAPE_METRICS:
        frac_dev = _col(truth, "gal_frac_dev")
        ok &= ~((frac_dev > FRAC_DEV_PURE[0]) & (frac_dev < FRAC_DEV_PURE[1]))
    if metric == "gal_angle_deg":
        ok &= ~(_col(truth, "gal_axis_ratio") > MAX_AXIS_RATIO_FOR_ANGLE)
    return ok


@dataclass
class ScoreRow:
    """One metric's score over the rows that pass for every catalog.

    ``means[k]`` and ``ci[k]`` belong to catalog k; ``diffs[k - 1]`` and ``diff_sds[k - 1]``
    compare catalog 0 with catalog k (``mean(err_0 - err_k)``).
    """

    metric: str
    n: int
    means: list[float]
    ci: list[tuple[float, float]]
    diffs: list[float] = field(default_factory=list)
    diff_sds: list[float] = field(default_factory=list)


def _bootstrap_means(errors: np.ndarray, n_boot: int, rng) -> np.ndarray:
    """(n_boot, k) means of rows resampled with replacement, the same rows for every column."""
    n = errors.shape[0]
    out = np.empty((n_boot, errors.shape[1]))
    chunk = max(1, min(n_boot, 4_000_000 // max(n, 1)))
    for start in range(0, n_boot, chunk):
        stop = min(n_boot, start + chunk)
        idx = rng.integers(0, n, size=(stop - start, n))
        out[start:stop] = errors[idx].mean(axis=1)
    return out


def score(truth: Table, errors: list[dict[str, np.ndarray]], n_boot: int = 1000,
          seed: int = 0, level: float = 0.95) -> tuple[list[ScoreRow], list[str]]:
    """Score every metric over the rows good for all catalogs.

    Returns the score rows and the metrics skipped because at most one row was left (as
    Celeste's benchmark does). The bootstrap of metric i uses ``default_rng([seed, i])``, so a
    metric's interval does not depend on which other metrics were scored.
    """
    rows, skipped = [], []
    tail = (1.0 - level) / 2.0
    for i, metric in enumerate(METRICS):
        ok = np.ones(len(truth), dtype=bool)
        for err in errors:
            ok &= good_rows(truth, err, metric)
        n = int(ok.sum())
        if n <= 1:
            skipped.append(metric)
            continue
        mat = np.column_stack([err[metric][ok] for err in errors])
        means = [float(v) for v in mat.mean(axis=0)]
        if n_boot > 0:
            boot = _bootstrap_means(mat, n_boot, np.random.default_rng([seed, i]))
            lo, hi = np.quantile(boot, [tail, 1.0 - tail], axis=0)
            ci = [(float(a), float(b)) for a, b in zip(lo, hi, strict=True)]
        else:
            ci = [(float("nan"), float("nan"))] * len(errors)
        row = ScoreRow(metric, n, means, ci)
        for k in range(1, len(errors)):
            diff = mat[:, 0] - mat[:, k]
            row.diffs.append(float(diff.mean()))
            row.diff_sds.append(float(np.std(np.abs(diff), ddof=1) / np.sqrt(n)))
        rows.append(row)
    return rows, skipped


# --- uncertainty calibration --------------------------------------------------------------

UNCERTAINTY_FIELDS = (  # the quantity, its catalog column, its posterior SD's column
    ("ra", "ra", "ra_err_arcsec"),
    ("dec", "dec", "dec_err_arcsec"),
    ("log_flux_r_nmgy", "flux_r_nmgy", "log_flux_r_stderr"),
    *((f"color_{c}", f"color_{c}", f"color_{c}_stderr") for c in COLORS),
)


@dataclass
class UncertaintyRow:
    """Share of rows whose |prediction - truth| / posterior SD is within each of SD_LEVELS."""

    field: str
    n: int
    within: list[float]  # one per SD_LEVELS


def _error(truth: Table, pred: Table, name: str, col: str) -> np.ndarray:
    """prediction - truth of an uncertainty field, in its SD column's unit (arcsec on the sky
    for the position, across RA 0/360)."""
    t, p = _col(truth, col), _col(pred, col)
    if name == "ra":
        along = np.cos(np.radians(_col(truth, "dec")))
        return ra_offset_deg(p, t) * along * ARCSEC_PER_DEG
    if name == "dec":
        return (p - t) * ARCSEC_PER_DEG
    if name == "log_flux_r_nmgy":
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.log(p) - np.log(t)
    return p - t


def z_scores(truth: Table, pred: Table) -> dict[str, np.ndarray]:
    """|prediction - truth| / posterior SD of each field whose SD column ``pred`` has (the
    position, ln(flux_r), the colours); NaN where undefined.

    Only rows with a positive truth flux take part (others are NaN everywhere).
    """
    positive = _col(truth, "flux_r_nmgy") > 0
    out = {}
    for name, col, sd_col in UNCERTAINTY_FIELDS:
        if sd_col not in pred.colnames:
            continue
        with np.errstate(divide="ignore", invalid="ignore"):
            z = np.abs(_error(truth, pred, name, col) / _col(pred, sd_col))
        out[name] = np.where(positive, z, np.nan)
    return out


def uncertainty(truth: Table, pred: Table) -> list[UncertaintyRow]:
    """The calibration table (VALIDATION.md 1): calibrated gives 0.383, 0.683, 0.954, 0.997."""
    rows = []
    for name, z in z_scores(truth, pred).items():
        z = z[~np.isnan(z)]
        within = [float(np.mean(z <= k)) if z.size else float("nan") for k in SD_LEVELS]
        rows.append(UncertaintyRow(name, int(z.size), within))
    return rows


def gaussian_within(k) -> np.ndarray:
    """P(|Z| <= k) for a standard normal Z: the calibrated share."""
    return 2.0 * norm.cdf(np.asarray(k, dtype=np.float64)) - 1.0


def star_galaxy_auc(truth_is_star, pred_is_star) -> float:
    """Area under the ROC curve of ``pred_is_star`` for truth stars (ties count one half).

    NaN when a class is absent or no prediction is finite.
    """
    t = np.asarray(truth_is_star, dtype=np.float64)
    p = np.asarray(pred_is_star, dtype=np.float64)
    ok = ~np.isnan(t) & ~np.isnan(p)
    star = t[ok] >= 0.5
    n1, n0 = int(star.sum()), int((~star).sum())
    if n1 == 0 or n0 == 0:
        return float("nan")
    ranks = rankdata(p[ok])
    return float((ranks[star].sum() - n1 * (n1 + 1) / 2.0) / (n1 * n0))
