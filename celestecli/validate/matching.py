"""Matching truth rows to catalog sources on the sky, and one-to-one matching for detection.

Scoring matches the way Celeste's benchmark does (VALIDATION.md 1): every truth row takes its
nearest catalog source on the sphere (a KD-tree on unit vectors), and is kept only if that
source lies within the tolerance (strictly) in every compared catalog. The match is not
one-to-one: two truth rows may share a source.

Detection scoring (star lists such as the Hubble truth) instead needs a one-to-one assignment:
``one_to_one`` pairs truth and predictions within a radius minimising the total distance.
"""

from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

from celestecli.sdss import PIXEL_SCALE_ARCSEC

DEFAULT_TOLERANCE_ARCSEC = PIXEL_SCALE_ARCSEC  # one SDSS pixel

_PI_L = np.arctan(np.longdouble(1)) * 4
_DEG_L = _PI_L / 180


def _sind(deg) -> np.ndarray:
    # Degree-argument sine rounded from extended precision, as Julia's sind (which Celeste.jl's
    # separation uses) is nearly correctly rounded; converting to radians in float64 first
    # leaves ~5e-10 relative noise on paired differences of mean sub-pixel separations.
    return np.sin(np.asarray(deg, dtype=np.longdouble) * _DEG_L).astype(np.float64)


def _cosd(deg) -> np.ndarray:
    return np.cos(np.asarray(deg, dtype=np.longdouble) * _DEG_L).astype(np.float64)


def angular_separation_deg(ra1, dec1, ra2, dec2) -> np.ndarray:
    """Great-circle separation in degrees (Vincenty's formula, stable at all separations)."""
    ra1, dec1, ra2, dec2 = (np.asarray(v, dtype=np.float64) for v in (ra1, dec1, ra2, dec2))
    dlon = ra2 - ra1
    sin_dl, cos_dl = _sind(dlon), _cosd(dlon)
    s1, c1 = _sind(dec1), _cosd(dec1)
    s2, c2 = _sind(dec2), _cosd(dec2)
    num = np.hypot(c2 * sin_dl, c1 * s2 - s1 * c2 * cos_dl)
    den = s1 * s2 + c1 * c2 * cos_dl
    return np.arctan2(num, den) * (180.0 / np.pi)


def separation_px(ra1, dec1, ra2, dec2) -> np.ndarray:
    """Great-circle separation in SDSS pixels (0.396 arcsec)."""
    return (3600.0 / PIXEL_SCALE_ARCSEC) * angular_separation_deg(ra1, dec1, ra2, dec2)


def unit_vectors(ra, dec) -> np.ndarray:
    """(N, 3) unit vectors of RA/Dec in degrees."""
    ra = np.radians(np.asarray(ra, dtype=np.float64))
    dec = np.radians(np.asarray(dec, dtype=np.float64))
    cd = np.cos(dec)
    return np.column_stack([cd * np.cos(ra), cd * np.sin(ra), np.sin(dec)])


def chord_for_angle(arcsec: float) -> float:
    """Chord length on the unit sphere of an angle given in arcseconds."""
    return 2.0 * np.sin(np.radians(arcsec / 3600.0) / 2.0)


def nearest_on_sky(ra, dec, cat_ra, cat_dec) -> tuple[np.ndarray, np.ndarray]:
    """Index of the nearest catalog source to each position, and its separation in arcsec.

    Sources with non-finite positions are ignored; where no source qualifies (empty catalog,
    non-finite query) the index is -1 and the separation inf.
    """
    ra = np.asarray(ra, dtype=np.float64)
    dec = np.asarray(dec, dtype=np.float64)
    n = ra.size
    idx = np.full(n, -1, dtype=np.int64)
    sep = np.full(n, np.inf)
    cat_ok = np.flatnonzero(np.isfinite(cat_ra) & np.isfinite(cat_dec))
    query_ok = np.flatnonzero(np.isfinite(ra) & np.isfinite(dec))
    if cat_ok.size == 0 or query_ok.size == 0:
        return idx, sep
    tree = cKDTree(unit_vectors(np.asarray(cat_ra)[cat_ok], np.asarray(cat_dec)[cat_ok]))
    chord, j = tree.query(unit_vectors(ra[query_ok], dec[query_ok]))
    idx[query_ok] = cat_ok[j]
    sep[query_ok] = np.degrees(2.0 * np.arcsin(np.minimum(chord / 2.0, 1.0))) * 3600.0
    return idx, sep


@dataclass
class SkyMatch:
    """Truth rows kept by the match and, per catalog, the index of each one's source."""

    truth_rows: np.ndarray  # indices into the truth table
    catalog_rows: list[np.ndarray]  # per catalog, indices aligned with truth_rows
    n_truth: int
    n_within: list[int]  # per catalog: truth rows whose nearest source is within tolerance
    tolerance_arcsec: float

    def __len__(self) -> int:
        return self.truth_rows.size


def match_to_truth(truth_ra, truth_dec, catalogs: list[tuple[np.ndarray, np.ndarray]],
                   tolerance_arcsec: float = DEFAULT_TOLERANCE_ARCSEC) -> SkyMatch:
    """Keep truth rows whose nearest source is within tolerance in every catalog."""
    n = np.asarray(truth_ra).size
    keep = np.ones(n, dtype=bool)
    idxs, n_within = [], []
    for cat_ra, cat_dec in catalogs:
        idx, sep = nearest_on_sky(truth_ra, truth_dec, cat_ra, cat_dec)
        within = sep < tolerance_arcsec
        n_within.append(int(within.sum()))
        keep &= within
        idxs.append(idx)
    rows = np.flatnonzero(keep)
    return SkyMatch(rows, [idx[rows] for idx in idxs], n, n_within, tolerance_arcsec)


def prematched(n_truth: int, catalog_lengths: list[int]) -> SkyMatch:
    """The identity match of tables already matched row by row (all of the same length)."""
    rows = np.arange(n_truth)
    return SkyMatch(rows, [rows.copy() for _ in catalog_lengths], n_truth,
                    [n_truth] * len(catalog_lengths), float("nan"))


def one_to_one(true_xy, pred_xy, radius: float) -> tuple[np.ndarray, np.ndarray]:
    """Pairs (truth index, prediction index) within ``radius`` minimising total distance.

    Each truth and each prediction is used at most once. Candidate pairs split into connected
    groups, each solved exactly with the Hungarian algorithm, so the cost stays local.
    """
    true_xy = np.asarray(true_xy, dtype=np.float64).reshape(-1, 2)
    pred_xy = np.asarray(pred_xy, dtype=np.float64).reshape(-1, 2)
    empty = (np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64))
    if len(true_xy) == 0 or len(pred_xy) == 0:
        return empty
    pairs = cKDTree(true_xy).query_ball_tree(cKDTree(pred_xy), r=radius)
    ti = np.array([i for i, js in enumerate(pairs) for _ in js], dtype=np.int64)
    pj = np.array([j for js in pairs for j in js], dtype=np.int64)
    if ti.size == 0:
        return empty
    nt, npred = len(true_xy), len(pred_xy)
    graph = coo_matrix((np.ones(ti.size), (ti, nt + pj)), shape=(nt + npred, nt + npred))
    _, label = connected_components(graph, directed=False)
    out_t, out_p = [], []
    order = np.argsort(label[ti], kind="stable")
    ti, pj = ti[order], pj[order]
    bounds = np.flatnonzero(np.diff(label[ti])) + 1
    for gt, gp in zip(np.split(ti, bounds), np.split(pj, bounds), strict=True):
        rows, cols = np.unique(gt), np.unique(gp)
        cost = np.full((rows.size, cols.size), 1e12)
        r = np.searchsorted(rows, gt)
        c = np.searchsorted(cols, gp)
        cost[r, c] = np.hypot(*(true_xy[gt] - pred_xy[gp]).T)
        a, b = linear_sum_assignment(cost)
        ok = cost[a, b] <= radius
        out_t.append(rows[a[ok]])
        out_p.append(cols[b[ok]])
    t = np.concatenate(out_t)
    p = np.concatenate(out_p)
    order = np.argsort(t)
    return t[order], p[order]
