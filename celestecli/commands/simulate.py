"""``celeste simulate``: render a catalog (a prior draw, or given) into SDSS-format files."""

import logging
import shlex
from pathlib import Path

import click

from celestecli.commands.options import data_dir_option
from celestecli.errors import UsageError
from celestecli.fields import FieldID

log = logging.getLogger(__name__)

DEFAULT_FIELD = "9999/1/1"
DEFAULT_N_SOURCES = 500  # Celeste's synthetic benchmark draws 500 sources (VALIDATION.md 2)


def _parse_field(_ctx, _param, value):
    return None if value is None else FieldID.parse(value)


def _check_footprint(truth, setup, catalog) -> None:
    """Refuse a catalog none of whose sources falls on the frame; warn about those off it."""
    inside = setup.on_frame(truth.ra, truth.dec)
    if len(truth) and not inside.any():
        raise UsageError(f"none of the {len(truth)} sources of {catalog} falls on the simulated "
                         f"frame ({setup.description}): give --center RA DEC or --like FIELD")
    if not inside.all():
        log.warning("%d of the %d sources of %s lie off the frame: rendered (their light "
                    "may reach it), but not listed in the photoObj and truth files",
                    int((~inside).sum()), len(truth), catalog)


def _canonical_command(n_sources, seed, catalog, like, width, height, center, fid) -> str:
    """The command line without the output folder, so it does not change the files' bytes."""
    words = ["celeste", "simulate"]
    words += ["--catalog", Path(catalog).name] if catalog else ["--n-sources", str(n_sources)]
    words += ["--seed", str(seed)]
    if like:
        words += ["--like", str(like)]
    if width is not None:
        words += ["--width", str(width)]
    if height is not None:
        words += ["--height", str(height)]
    if center is not None:
        words += ["--center", repr(center[0]), repr(center[1])]
    words += ["--field", str(fid)]
    return shlex.join(words)


@click.command("simulate")
@click.option("-n", "--n-sources", type=click.IntRange(min=0),
              help=f"Draw this many sources from Celeste's prior [default: {DEFAULT_N_SOURCES}].")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True,
              help="Random seed of the prior draw and of the noise.")
@click.option("--catalog", type=click.Path(dir_okay=False, path_type=Path),
              help="Render this catalog (ours, or a truth file) instead of a prior draw.")
@click.option("--like", "like", callback=_parse_field, metavar="RUN/CAMCOL/FIELD",
              help="Copy WCS, PSF, sky, calibration and gains from this real field in "
                   "--data-dir (default: a built-in SDSS-like setup).")
@click.option("--width", type=click.IntRange(min=16),
              help="Frame width in pixels [default: 2048, or the --like frame's].")
@click.option("--height", type=click.IntRange(min=16),
              help="Frame height in pixels [default: 1489, or the --like frame's].")
@click.option("--center", type=(float, float), metavar="RA DEC",
              help="Sky position (deg) of the built-in frame's centre [default: RA 0.5, "
                   "Dec 0.5, on Stripe 82 beside Celeste's benchmark field 4263/5/119].")
@click.option("--field", "fid", callback=_parse_field, default=DEFAULT_FIELD,
              show_default=True, metavar="RUN/CAMCOL/FIELD",
              help="Field id of the simulated files.")
@click.option("-o", "--out-dir", "out_dir", required=True,
              type=click.Path(path_type=Path), metavar="DIR",
              help="Data dir to write into (local layout: DIR/RUN/CAMCOL/FIELD/...).")
@data_dir_option
@click.option("--force", is_flag=True, help="Replace the files of an existing simulated field.")
@click.option("--threads", type=click.IntRange(min=1),
              help="Threads for rendering and compressing the five bands "
                   "[default: the available cores, at most 5].")
@click.pass_obj
def simulate_command(app, n_sources, seed, catalog, like, width, height, center, fid, out_dir,
                     force, threads):
    """Simulate one SDSS field and write it under DIR as SDSS-format files.

    The sources are drawn from Celeste's prior (--n-sources, --seed) or read from --catalog;
    each is rendered with the model (the PSF mixture the inference uses, each source's exact
    WCS position) and every pixel gets Poisson noise in electrons.  Written: five frames,
    psField, five fpM (no masks), photoObj (the truth as SDSS Photo reports it), the
    run/camcol photoField, and truth-RRRRRR-C-FFFF.fits (our catalog columns plus the raw
    truth).  `celeste` reads the result like a downloaded field.  The same options and seed
    give byte-identical files; nothing is left behind on failure.
    """
    from celestecli.catalog import InputFile, Provenance, read_catalog
    from celestecli.simulate.field_setup import (
        DEFAULT_CENTRE,
        SDSS_HEIGHT,
        SDSS_WIDTH,
        builtin_setup,
        like_setup,
    )
    from celestecli.simulate.simulation import draw_truth, simulate_field
    from celestecli.simulate.truth import Truth
    from celestecli.simulate.writer import preflight, write_field
    from celestecli.threads import available_cores

    if catalog is not None and n_sources is not None:
        raise UsageError("give either --n-sources (a prior draw) or --catalog, not both")
    preflight(out_dir, fid, force)
    inputs = []
    table = None
    if catalog is not None:
        table = read_catalog(catalog)
        inputs.append(InputFile.of(catalog))
    if like is not None:
        if center is not None:
            raise UsageError("--center applies to the built-in setup, not to --like")
        setup = like_setup(app.data_dir, like, width, height)
    else:
        ra, dec = center if center is not None else DEFAULT_CENTRE
        if not -90.0 < dec < 90.0:
            raise UsageError(f"--center: Dec {dec:g} is not strictly between -90 and 90")
        ra %= 360.0  # the sky's own range, also in the frames' CRVAL1
        setup = builtin_setup(width or SDSS_WIDTH, height or SDSS_HEIGHT, ra, dec)
    inputs += [InputFile.of(p) for p in setup.inputs]

    if table is not None:
        truth = Truth.from_table(table, setup.reference.wcs, catalog)
        _check_footprint(truth, setup, catalog)
    else:
        n_sources = DEFAULT_N_SOURCES if n_sources is None else n_sources
        truth = draw_truth(setup, n_sources, seed)
    threads = threads or min(5, available_cores())
    sim = simulate_field(fid, setup, truth, seed, n_threads=threads)
    provenance = Provenance(
        command_line=_canonical_command(n_sources, seed, catalog, like, width, height,
                                        center, fid),
        fields=[str(fid)], seed=seed, inputs=inputs, date="",
        history=[f"Simulated by celeste simulate ({setup.description}).",
                 "DATE is left empty so that the same seed gives the same bytes."],
    )
    paths = write_field(sim, out_dir, provenance, force=force, n_threads=threads)
    ny, nx = setup.shape
    n_star = int(truth.is_star.sum())
    log.info("simulate: %s (%s, %dx%d px): %d sources (%d stars, %d galaxies), seed %d; "
             "%d files written under %s", fid, setup.description, nx, ny, len(truth), n_star,
             len(truth) - n_star, seed, len(paths), out_dir)
