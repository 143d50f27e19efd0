"""Readable text tables and machine-readable JSON of validation and detection results."""

import json
import math

from celestecli.validate.hubble import Detection, DetectionBin
from celestecli.validate.metrics import SD_LEVELS, UNITS, gaussian_within
from celestecli.validate.scoring import Validation


def _num(value, fmt: str = ".4g") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return format(value, fmt)


def format_table(header: list[str], rows: list[list[str]], right: set[int] | None = None) -> str:
    """Columns padded to their widest cell; columns in ``right`` right-aligned."""
    right = right or set()
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]

    def line(cells):
        out = [str(c).rjust(w) if i in right else str(c).ljust(w)
               for i, (c, w) in enumerate(zip(cells, widths, strict=True))]
        return "  ".join(out).rstrip()

    return "\n".join([line(header), line(["-" * w for w in widths]), *map(line, rows)])


def _json_float(value):
    if value is None:
        return None
    value = float(value)
    return None if math.isnan(value) or math.isinf(value) else value


# --- validation ---------------------------------------------------------------------------


def _describe_cuts(cuts: dict[str, int]) -> str:
    dropped = {k: v for k, v in cuts.items() if v}
    if not dropped:
        return ""
    return "; dropped " + ", ".join(f"{v} {k}" for k, v in dropped.items())


def validation_text(v: Validation) -> str:
    """The score table, calibration table and AUCs as aligned text."""
    out = [f"truth: {v.truth.path} ({v.truth.kind}): {len(v.truth)} rows kept of "
           f"{v.truth.n_read}{_describe_cuts(v.truth.cuts)}"]
    for cat in v.catalogs:
        out.append(f"catalog {cat.name}: {cat.path} ({cat.kind}): {len(cat)} rows kept of "
                   f"{cat.n_read}{_describe_cuts(cat.cuts)}")
    if v.matched:
        out.append(f"matching: rows given pre-matched; {len(v.match)} rows scored")
    else:
        out.append(f"matching: {len(v.match)} of {v.match.n_truth} truth rows have their nearest "
                   f"source within {v.match.tolerance_arcsec:g} arcsec in every catalog "
                   f"(per catalog: {', '.join(map(str, v.match.n_within))})")
    out.append("")
    names = v.names
    header = ["metric", "unit", "N"]
    for name in names:
        header.append(f"{name} mean [95% CI]" if v.n_boot else f"{name} mean")
    for name in names[1:]:
        header.append(f"{names[0]} - {name} (sd)")
    rows = []
    for s in v.scores:
        row = [s.metric, UNITS[s.metric], str(s.n)]
        for mean, (lo, hi) in zip(s.means, s.ci, strict=True):
            row.append(f"{_num(mean)} [{_num(lo)}, {_num(hi)}]" if v.n_boot else _num(mean))
        for d, sd in zip(s.diffs, s.diff_sds, strict=True):
            row.append(f"{_num(d, '+.3g')} ({_num(sd, '.2g')})")
        rows.append(row)
    out.append(format_table(header, rows, right={2}))
    if v.skipped:
        out.append(f"not scored (at most one row left): {', '.join(v.skipped)}")
    if v.uncertainty:
        out.append("")
        out.append("uncertainty calibration: share of rows with |prediction - truth| / "
                   "posterior SD within k")
        header = ["catalog", "quantity", "N", *(f"k={k:g}" for k in SD_LEVELS)]
        rows = [["(calibrated Gaussian)", "", "",
                 *(f"{x:.3f}" for x in gaussian_within(SD_LEVELS))]]
        for name, table in v.uncertainty.items():
            for u in table:
                rows.append([name, u.field, str(u.n), *(_num(x, ".3f") for x in u.within)])
        out.append(format_table(header, rows, right=set(range(2, 3 + len(SD_LEVELS)))))
    out.append("")
    out.append("star/galaxy AUC: " + ", ".join(f"{n} {_num(a, '.4f')}" for n, a in v.auc.items()))
    return "\n".join(out)


def validation_json(v: Validation) -> dict:
    """A JSON-ready dict (NaN and inf become null)."""

    def source(cat):
        return {"name": cat.name, "path": cat.path, "kind": cat.kind, "rows_read": cat.n_read,
                "rows_kept": len(cat), "dropped": cat.cuts}

    scores = []
    for s in v.scores:
        entry = {"metric": s.metric, "unit": UNITS[s.metric], "n": s.n, "catalogs": {}}
        for name, mean, (lo, hi) in zip(v.names, s.means, s.ci, strict=True):
            entry["catalogs"][name] = {"mean": _json_float(mean), "ci_low": _json_float(lo),
                                       "ci_high": _json_float(hi)}
        entry["diffs"] = {
            name: {"diff": _json_float(d), "diff_sd": _json_float(sd)}
            for name, d, sd in zip(v.names[1:], s.diffs, s.diff_sds, strict=True)
        }
        scores.append(entry)
    return {
        "truth": source(v.truth),
        "catalogs": [source(c) for c in v.catalogs],
        "matching": {
            "prematched": v.matched,
            "tolerance_arcsec": None if v.matched else v.match.tolerance_arcsec,
            "truth_rows": v.match.n_truth,
            "matched_rows": len(v.match),
            "matched_per_catalog": dict(zip(v.names, v.match.n_within, strict=True)),
        },
        "bootstrap": {"resamples": v.n_boot, "seed": v.seed, "level": 0.95},
        "scores": scores,
        "skipped_metrics": v.skipped,
        "uncertainty": {
            name: [{"field": u.field, "n": u.n,
                    **{f"within_{k:g}_sd": _json_float(x)
                       for k, x in zip(SD_LEVELS, u.within, strict=True)}}
                   for u in table]
            for name, table in v.uncertainty.items()
        },
        "star_galaxy_auc": {n: _json_float(a) for n, a in v.auc.items()},
    }


# --- detection ----------------------------------------------------------------------------


def _bin_label(b: DetectionBin) -> str:
    if math.isinf(b.lo) and math.isinf(b.hi):
        return "all"
    if math.isinf(b.lo):
        return f"< {b.hi:g}"
    if math.isinf(b.hi):
        return f">= {b.lo:g}"
    return f"{b.lo:g} - {b.hi:g}"


def detection_text(d: Detection, name: str, path: str) -> str:
    """Recall, precision and F1 per r-magnitude bin and overall, as aligned text."""
    t = d.truth
    out = [
        f"truth: {t.path}: {len(t)} stars in the region x {t.x_range[0]:g}..{t.x_range[1]:g}, "
        f"y {t.y_range[0]:g}..{t.y_range[1]:g} of {t.frame_path}",
        f"catalog {name}: {path}: {d.n_catalog} rows, {d.pred_x.size} inside the region",
        f"pairing: one to one within {d.radius_px:g} px"
        + (f"; only r < {d.max_mag:g} counted" if d.max_mag is not None else ""),
        "",
    ]
    header = ["r mag", "truth", "found", "recall", "catalog", "real", "precision", "F1"]
    rows = []
    for b in [*d.bins, d.overall]:
        label = "all" if b is d.overall else _bin_label(b)
        if b is d.overall and d.max_mag is not None:
            label = f"all < {d.max_mag:g}"
        rows.append([label, str(b.n_true), str(b.n_true_found), _num(b.recall, ".3f"),
                     str(b.n_pred), str(b.n_pred_real), _num(b.precision, ".3f"),
                     _num(b.f1, ".3f")])
    out.append(format_table(header, rows, right=set(range(1, 8))))
    return "\n".join(out)


def detection_json(d: Detection, name: str, path: str) -> dict:
    def entry(b: DetectionBin) -> dict:
        return {"mag_low": _json_float(b.lo), "mag_high": _json_float(b.hi),
                "n_true": b.n_true, "n_true_found": b.n_true_found,
                "recall": _json_float(b.recall), "n_pred": b.n_pred,
                "n_pred_real": b.n_pred_real, "precision": _json_float(b.precision),
                "f1": _json_float(b.f1)}

    t = d.truth
    return {
        "truth": {"path": t.path, "frame": t.frame_path, "stars": len(t),
                  "x_range": list(t.x_range), "y_range": list(t.y_range)},
        "catalog": {"name": name, "path": path, "rows": d.n_catalog,
                    "inside_region": int(d.pred_x.size)},
        "radius_px": d.radius_px,
        "max_mag": d.max_mag,
        "overall": entry(d.overall),
        "bins": [entry(b) for b in d.bins],
    }


def dumps(obj: dict) -> str:
    """JSON text; refuses NaN so the output is valid JSON everywhere."""
    return json.dumps(obj, indent=2, allow_nan=False)
