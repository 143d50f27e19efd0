"""``celeste validate``: score catalogs against ground truth (VALIDATION.md)."""

import logging
from pathlib import Path

import click

from celestecli.commands.options import data_dir_option
from celestecli.errors import UsageError
from celestecli.validate.matching import DEFAULT_TOLERANCE_ARCSEC
from celestecli.validate.readers import DETECTION_COLUMNS, KINDS, detect_kind, read_scorable

log = logging.getLogger(__name__)

_PREFIXES = tuple(f"{k}:" for k in KINDS)


def parse_source(token: str) -> tuple[str | None, Path]:
    """``[KIND:]PATH`` -> (kind or None, path); KIND is catalog, coadd, photo or hubble."""
    for prefix in _PREFIXES:
        if token.startswith(prefix):
            return prefix[:-1], Path(token[len(prefix):])
    return None, Path(token)


def _kind_of(kind: str | None, path: Path) -> str:
    return kind or detect_kind(path)


@click.command("validate")
@click.argument("catalog", metavar="[KIND:]CATALOG")
@click.option("--truth", "truth_token", required=True, metavar="[KIND:]TRUTH",
              help="Ground truth: an SDSS coadd photoObj table, one of our catalogs, or a star "
                   "list (.npz, e.g. true_hubble_m2.npz).")
@click.option("--compare", "compare_tokens", multiple=True, metavar="[KIND:]OTHER",
              help="Another catalog to score on the same rows (repeatable); "
                   "e.g. photo:photoObj-....fits for SDSS Photo.")
@click.option("--matched", is_flag=True,
              help="Tables are already matched row by row (same length): skip sky matching.")
@click.option("--tolerance", type=click.FloatRange(min=0, min_open=True),
              default=DEFAULT_TOLERANCE_ARCSEC, show_default=True,
              help="Match radius in arcsec.")
@click.option("--bootstrap", "n_boot", type=click.IntRange(min=0), default=1000,
              show_default=True, help="Bootstrap resamples for the 95% intervals (0: none).")
@click.option("--seed", type=int, default=0, show_default=True, help="Bootstrap seed.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of tables.")
@click.option("--plots", "plots_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Write PNG figures into DIR (needs matplotlib).")
@click.option("--frame", "frame_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Star-list truth: the r frame its pixels refer to "
                   "(default: 2583/2/136 in --data-dir).")
@click.option("--radius", type=click.FloatRange(min=0, min_open=True), default=1.0,
              show_default=True, help="Star-list truth: pairing radius in pixels.")
@click.option("--max-mag", type=float,
              help="Star-list truth: count only sources brighter than this r magnitude.")
@data_dir_option
@click.pass_obj
def validate_command(app, catalog, truth_token, compare_tokens, matched, tolerance, n_boot,
                     seed, as_json, plots_dir, frame_path, radius, max_mag):
    """Score CATALOG (and each --compare OTHER) against --truth with Celeste's metrics.

    Each truth row is matched to its nearest source on the sky; rows are kept where every
    catalog has one within --tolerance. Reported per metric: N, mean error per catalog with a
    bootstrap 95% interval, and the paired difference to CATALOG with diff_sd =
    std(|diff|)/sqrt(N); then the uncertainty calibration and the star/galaxy AUC. With a star
    list as truth: detection recall, precision and F1 per r-magnitude bin.

    KIND (optional, detected from the file otherwise): catalog (ours: FITS/ECSV/CSV), coadd
    (SDSS coadd photoObj table), photo (SDSS single-epoch photoObj), hubble (star list .npz).
    """
    if plots_dir is not None:  # fail before any work or output, not after the report
        from celestecli.validate.plots import require_matplotlib

        require_matplotlib()
    truth_kind, truth_path = parse_source(truth_token)
    sources = [parse_source(catalog), *(parse_source(t) for t in compare_tokens)]
    truth_kind = _kind_of(truth_kind, truth_path)
    if truth_kind == "hubble":
        if matched:
            raise UsageError("--matched does not apply to a star-list truth")
        _detection(app, truth_path, sources, frame_path, radius, max_mag, as_json, plots_dir)
        return
    for option, value in (("--frame", frame_path), ("--max-mag", max_mag)):
        if value is not None:
            raise UsageError(f"{option} applies only to a star-list (.npz) truth")
    for kind, path in sources:
        if _kind_of(kind, path) == "hubble":
            raise UsageError(f"{path} is a star list: give it as --truth")

    from celestecli.validate.report import dumps, validation_json, validation_text
    from celestecli.validate.scoring import validate

    truth = read_scorable(truth_path, truth_kind)
    catalogs = [read_scorable(path, kind) for kind, path in sources]
    result = validate(truth, catalogs, matched=matched, tolerance_arcsec=tolerance,
                      n_boot=n_boot, seed=seed)
    click.echo(dumps(validation_json(result)) if as_json else validation_text(result))
    if plots_dir is not None:
        from celestecli.validate.plots import validation_plots

        for path in validation_plots(result, plots_dir):
            log.info("wrote %s", path)


def _detection(app, truth_path, sources, frame_path, radius, max_mag, as_json, plots_dir):
    from celestecli.validate.hubble import locate_frame, read_hubble_truth, score_detection
    from celestecli.validate.report import detection_json, detection_text, dumps
    from celestecli.validate.scoring import NoMatchError

    if frame_path is None:
        frame_path = locate_frame(app.data_dir if app else None, truth_path)
        if frame_path is None:
            raise UsageError("cannot find the r frame of 2583/2/136 for the star-list truth: "
                             "give --frame PATH or --data-dir")
    truth = read_hubble_truth(truth_path, frame_path)
    results = []
    for kind, path in sources:
        cat = read_scorable(path, kind, required=DETECTION_COLUMNS)
        results.append((cat, score_detection(truth, cat.table, radius_px=radius,
                                             max_mag=max_mag)))
    outside = [(c, d) for c, d in results if d.pred_x.size == 0]
    if outside:  # a catalog of another region or field would score recall 0 with exit 0
        raise NoMatchError(_outside_message(truth, outside))
    if as_json:
        click.echo(dumps({"detection": [detection_json(d, c.name, c.path)
                                        for c, d in results]}))
    else:
        click.echo("\n\n".join(detection_text(d, c.name, c.path) for c, d in results))
    if plots_dir is not None:
        from celestecli.validate.plots import detection_plots

        for cat, d in results:
            for path in detection_plots(d, cat.name, plots_dir):
                log.info("wrote %s", path)


def _outside_message(truth, outside) -> str:
    """Error text for catalogs with no source in the star list's region."""
    (x0, x1), (y0, y1) = truth.x_range, truth.y_range
    lines = [f"no source inside the star list's region x {x0:g}..{x1:g}, y {y0:g}..{y1:g} of "
             f"{truth.frame_path}, nothing to score (infer the whole field or "
             f"--region {x0:g}:{x1 + 1:g},{y0:g}:{y1 + 1:g})"]
    for cat, det in outside:
        lines.append(f"  {cat.path}: {det.n_catalog} rows, none inside")
    return "\n".join(lines)
