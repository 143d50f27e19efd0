"""Score catalogs against a truth catalog: match, per-row errors, score table, calibration, AUC."""

from dataclasses import dataclass, field

import numpy as np
from astropy.table import Table

from celestecli.errors import CelesteError, UsageError
from celestecli.validate.matching import (
    DEFAULT_TOLERANCE_ARCSEC,
    SkyMatch,
    match_to_truth,
    prematched,
)
from celestecli.validate.metrics import (
    ScoreRow,
    UncertaintyRow,
    row_errors,
    score,
    star_galaxy_auc,
    uncertainty,
    z_scores,
)
from celestecli.validate.readers import Scorable


class NoMatchError(CelesteError):
    """No truth row has a source within the tolerance in every catalog (exit 1)."""


@dataclass
class Validation:
    """Everything ``celeste validate`` reports about catalogs scored against one truth."""

    truth: Scorable
    catalogs: list[Scorable]
    match: SkyMatch
    matched: bool  # rows were paired by position (False) or given pre-matched (True)
    matched_truth: Table
    errors: list[dict[str, np.ndarray]]  # per catalog, per metric, on the matched rows
    scores: list[ScoreRow]
    skipped: list[str]
    n_boot: int
    seed: int
    uncertainty: dict[str, list[UncertaintyRow]] = field(default_factory=dict)
    z: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    auc: dict[str, float] = field(default_factory=dict)

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.catalogs]


def unique_names(catalogs: list[Scorable]) -> None:
    """Make catalog names unique in place (file stems may clash): suffix #2, #3, ..."""
    seen: dict[str, int] = {}
    for cat in catalogs:
        count = seen.get(cat.name, 0) + 1
        seen[cat.name] = count
        if count > 1:
            cat.name = f"{cat.name}#{count}"


def _no_match_message(truth: Scorable, catalogs: list[Scorable], match: SkyMatch) -> str:
    def extent(t: Table) -> str:
        if len(t) == 0:
            return "no rows"
        ra, dec = np.asarray(t["ra"]), np.asarray(t["dec"])
        return (f"RA {np.nanmin(ra):.4f}..{np.nanmax(ra):.4f}, "
                f"Dec {np.nanmin(dec):.4f}..{np.nanmax(dec):.4f}")

    lines = [f"no truth row has a source within {match.tolerance_arcsec:g} arcsec in every "
             f"catalog, nothing to score", f"  truth {truth.path}: {len(truth)} rows, "
             f"{extent(truth.table)}"]
    for cat, n in zip(catalogs, match.n_within, strict=True):
        lines.append(f"  {cat.path}: {len(cat)} rows, {extent(cat.table)}; "
                     f"{n} truth rows matched")
    return "\n".join(lines)


def validate(truth: Scorable, catalogs: list[Scorable], matched: bool = False,
             tolerance_arcsec: float = DEFAULT_TOLERANCE_ARCSEC, n_boot: int = 1000,
             seed: int = 0) -> Validation:
    """Score ``catalogs`` (the first is the reference of paired differences) against ``truth``.

    With ``matched`` the tables are taken as already matched row by row (same length);
    otherwise each truth row is matched to its nearest source in every catalog.
    """
    if not catalogs:
        raise UsageError("no catalog to score")
    unique_names(catalogs)
    if matched:
        lengths = [len(c) for c in catalogs]
        if any(n != len(truth) for n in lengths):
            detail = ", ".join(f"{c.path}: {len(c)}" for c in catalogs)
            raise UsageError(f"--matched needs tables of equal length; truth {truth.path}: "
                             f"{len(truth)}, {detail}")
        match = prematched(len(truth), lengths)
    else:
        match = match_to_truth(truth.table["ra"], truth.table["dec"],
                               [(c.table["ra"], c.table["dec"]) for c in catalogs],
                               tolerance_arcsec)
    if len(match) == 0:
        raise NoMatchError(_no_match_message(truth, catalogs, match))
    matched_truth = truth.table[match.truth_rows]
    preds = [c.table[rows] for c, rows in zip(catalogs, match.catalog_rows, strict=True)]
    errors = [row_errors(matched_truth, p) for p in preds]
    scores, skipped = score(matched_truth, errors, n_boot=n_boot, seed=seed)
    result = Validation(truth, catalogs, match, matched, matched_truth, errors, scores, skipped,
                        n_boot, seed)
    for cat, pred in zip(catalogs, preds, strict=True):
        result.auc[cat.name] = star_galaxy_auc(matched_truth["is_star"], pred["is_star"])
        if not cat.has_stderr:
            continue
        # calibration over this catalog's own matches, as Celeste's benchmark does
        if matched:
            own_truth, own_pred = matched_truth, pred
        else:
            own = match_to_truth(truth.table["ra"], truth.table["dec"],
                                 [(cat.table["ra"], cat.table["dec"])], tolerance_arcsec)
            own_truth = truth.table[own.truth_rows]
            own_pred = cat.table[own.catalog_rows[0]]
        result.uncertainty[cat.name] = uncertainty(own_truth, own_pred)
        result.z[cat.name] = z_scores(own_truth, own_pred)
    return result
