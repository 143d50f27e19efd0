"""``celeste merge``: one catalog from many per-field catalogs, overlaps resolved."""

import logging
from pathlib import Path

import click

from celestecli.catalog import FORMATS, write_catalog
from celestecli.errors import UsageError
from celestecli.validate.matching import DEFAULT_TOLERANCE_ARCSEC

log = logging.getLogger(__name__)


@click.command("merge")
@click.argument("catalogs", metavar="CATALOG...", nargs=-1, required=True,
                type=click.Path(dir_okay=False, path_type=Path))
@click.option("-o", "--output", "output", required=True, metavar="OUT",
              help="Output file (.fits, .fits.gz, .ecsv, .csv); '-' streams ECSV to stdout.")
@click.option("--format", "fmt", type=click.Choice(FORMATS),
              help="Output format (default: from OUT's extension; ECSV for '-').")
@click.option("--tolerance", type=click.FloatRange(min=0, min_open=True),
              default=DEFAULT_TOLERANCE_ARCSEC, show_default=True,
              help="Rows of different fields closer than this (arcsec) are one source.")
def merge_command(catalogs, output, fmt, tolerance):
    """Merge per-field CATALOGs into OUT, each source once.

    Rows of different fields (run, camcol, field columns) within --tolerance of each other are
    one source; the row kept is the one farthest from the edge of its own field's image (from
    its x, y position in that field's r frame), ties to the smaller (run, camcol, field, objid,
    ra, dec). Rows of one field in one input are never merged with each other. Each field may
    come from one input only, or from `infer --region` runs over boxes that do not overlap, in
    FITS or ECSV (CSV keeps no provenance, so no region); those count as fields of their own,
    with the nearer of the frame's and the region's edge. The output is sorted by (run, camcol,
    field, objid, ra, dec), so it does not depend on the order of the inputs, and records every
    input (path, SHA-256, and the inputs' own inputs) in its provenance. It is written
    atomically: a failure leaves no partial file.
    """
    from celestecli.merge import merge_catalogs

    inputs = {Path(c).resolve() for c in catalogs}
    if output != "-" and Path(output).resolve() in inputs:
        raise UsageError(f"-o {output} is one of the catalogs to merge: write the merged "
                         "catalog to another file")
    result = merge_catalogs(catalogs, tolerance_arcsec=tolerance)
    write_catalog(result.table, output, fmt=fmt, provenance=result.provenance)
    log.info("merged %d catalog%s: %d rows in, %d duplicates removed, %d rows written to %s",
             len(inputs), "" if len(inputs) == 1 else "s", result.n_in, result.n_duplicates,
             len(result.table), output)
