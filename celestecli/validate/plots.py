"""PNG figures of validation results (needs matplotlib: ``pip install celestecli[plot]``).

* ``errors_vs_mag.png``: per-row errors against the truth r magnitude, with binned medians;
* ``calibration.png``: share of rows within k posterior SDs against k, next to the Gaussian;
* ``misses.png``: sky positions of truth rows without a match and of misclassified sources;
* ``detection-NAME.png``: recall, precision and F1 against r magnitude (star-list truth);
* ``detection-NAME-positions.png``: found and missed truth stars and false detections.

matplotlib is imported only here and only when plots are asked for; figures are drawn on
``matplotlib.figure.Figure`` objects (no pyplot state, no display needed).
"""

from pathlib import Path

import numpy as np

from celestecli.catalog.atomic import atomic_write
from celestecli.errors import UsageError
from celestecli.validate.metrics import gaussian_within, good_rows
from celestecli.validate.photometry import nmgy_to_mag

ERROR_PANELS = ("position", "flux_r_mag", "color_ug", "color_gr", "color_ri", "color_iz")


def require_matplotlib():
    """matplotlib's Figure class; a usage error saying what to install when it is missing."""
    try:
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise UsageError("--plots needs matplotlib: pip install 'celestecli[plot]' "
                         "(or pip install matplotlib)") from exc
    return Figure


def _save(fig, path: Path) -> Path:
    with atomic_write(path, "wb") as fh:
        fig.savefig(fh, format="png", dpi=110, metadata={"Software": None})
    return path


def _binned_median(x, y, edges):
    centres, medians = [], []
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        sel = (x >= lo) & (x < hi) & np.isfinite(y)
        if sel.sum() >= 3:
            centres.append((lo + hi) / 2)
            medians.append(np.median(y[sel]))
    return np.array(centres), np.array(medians)


def _safe_name(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name)


def validation_plots(v, outdir) -> list[Path]:
    """Write the validation figures into ``outdir`` (created if needed); returns their paths."""
    Figure = require_matplotlib()
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    written = []
    mag = nmgy_to_mag(v.matched_truth["flux_r_nmgy"])
    finite = mag[np.isfinite(mag)]
    edges = np.arange(np.floor(finite.min()), np.ceil(finite.max()) + 1, 1.0) if finite.size \
        else np.array([0.0, 1.0])

    fig = Figure(figsize=(12, 7), layout="constrained")
    axes = fig.subplots(2, 3).ravel()
    for ax, metric in zip(axes, ERROR_PANELS, strict=True):
        for k, (name, err) in enumerate(zip(v.names, v.errors, strict=True)):
            ok = np.ones(len(mag), dtype=bool)
            for e in v.errors:
                ok &= good_rows(v.matched_truth, e, metric)
            color = f"C{k}"
            ax.scatter(mag[ok], err[metric][ok], s=6, alpha=0.35, color=color, label=name)
            cx, cy = _binned_median(mag[ok], err[metric][ok], edges)
            ax.plot(cx, cy, color=color, lw=2)
        ax.set_xlabel("truth r (mag)")
        ax.set_ylabel(metric)
        ax.set_yscale("symlog", linthresh=0.05)
    axes[0].legend(fontsize=8)
    fig.suptitle(f"per-object errors against {Path(v.truth.path).name} "
                 "(points; lines: medians per magnitude)")
    written.append(_save(fig, outdir / "errors_vs_mag.png"))

    if v.z:
        fig = Figure(figsize=(5 * len(v.z), 4.2), layout="constrained")
        axes = np.atleast_1d(fig.subplots(1, len(v.z)))
        k = np.linspace(0, 4, 161)
        for ax, (name, zs) in zip(axes, v.z.items(), strict=True):
            ax.plot(k, gaussian_within(k), color="black", lw=2, ls="--", label="calibrated")
            for field, z in zs.items():
                z = z[~np.isnan(z)]
                if z.size:
                    ax.plot(k, [np.mean(z <= kk) for kk in k], label=field)
            ax.set_xlabel("k (posterior SDs)")
            ax.set_ylabel("share with |error| <= k SD")
            ax.set_title(name)
            ax.set_ylim(0, 1)
            ax.legend(fontsize=8, loc="lower right")
        written.append(_save(fig, outdir / "calibration.png"))

    fig = Figure(figsize=(7, 7), layout="constrained")
    ax = fig.subplots()
    t = v.truth.table
    ax.scatter(t["ra"], t["dec"], s=4, color="0.75", label=f"truth ({len(t)})")
    if not v.matched:
        unmatched = np.ones(len(t), dtype=bool)
        unmatched[v.match.truth_rows] = False
        ax.scatter(np.asarray(t["ra"])[unmatched], np.asarray(t["dec"])[unmatched], s=14,
                   marker="x", color="C3", label=f"no match in every catalog ({unmatched.sum()})")
    mt = v.matched_truth
    for metric, marker, color in (("missed_stars", "*", "C0"), ("missed_galaxies", "o", "C1")):
        miss = v.errors[0][metric] == 1
        ax.scatter(np.asarray(mt["ra"])[miss], np.asarray(mt["dec"])[miss], s=30, marker=marker,
                   facecolors="none", edgecolors=color,
                   label=f"{metric} by {v.names[0]} ({int(miss.sum())})")
    ax.invert_xaxis()
    ax.set_xlabel("RA (deg)")
    ax.set_ylabel("Dec (deg)")
    fig.legend(loc="outside lower center", ncols=2, fontsize=8)
    written.append(_save(fig, outdir / "misses.png"))
    return written


def detection_plots(d, name: str, outdir) -> list[Path]:
    """Write the detection figures of one catalog into ``outdir``; returns their paths."""
    Figure = require_matplotlib()
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    stem = _safe_name(name)
    fig = Figure(figsize=(7, 4.5), layout="constrained")
    ax = fig.subplots()
    bins = [b for b in d.bins if b.n_true or b.n_pred]
    x = np.arange(len(bins))
    for values, label in (([b.recall for b in bins], "recall"),
                          ([b.precision for b in bins], "precision"),
                          ([b.f1 for b in bins], "F1")):
        ax.plot(x, values, marker="o", label=label)
    labels = []
    for b in bins:
        lo = "" if np.isinf(b.lo) else f"{b.lo:g}"
        hi = "" if np.isinf(b.hi) else f"{b.hi:g}"
        labels.append(f"{lo}-{hi}")
    ax.set_xticks(x, labels)
    ax.set_xlabel("r magnitude bin")
    ax.set_ylim(0, 1.02)
    ax.set_title(f"{name}: detection of {len(d.truth)} truth stars")
    ax.legend()
    written = [_save(fig, outdir / f"detection-{stem}.png")]

    fig = Figure(figsize=(7, 7), layout="constrained")
    ax = fig.subplots()
    t = d.truth
    ax.scatter(t.x[d.true_found], t.y[d.true_found], s=8, color="C2",
               label=f"found ({int(d.true_found.sum())})")
    ax.scatter(t.x[~d.true_found], t.y[~d.true_found], s=8, color="C3",
               label=f"missed ({int((~d.true_found).sum())})")
    ax.scatter(d.pred_x[~d.pred_real], d.pred_y[~d.pred_real], s=30, marker="x", color="C0",
               label=f"false detections ({int((~d.pred_real).sum())})")
    ax.set_xlabel("x (r-frame column)")
    ax.set_ylabel("y (r-frame row)")
    ax.set_aspect("equal")
    fig.legend(loc="outside lower center", ncols=3, fontsize=8)
    written.append(_save(fig, outdir / f"detection-{stem}-positions.png"))
    return written
