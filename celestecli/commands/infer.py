"""``celeste infer``: per-field variational inference -> one catalog per field."""

import logging
from pathlib import Path

import click
from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from celestecli.catalog.io import FORMATS, write_catalog
from celestecli.catalog.provenance import InputFile, Provenance
from celestecli.commands.options import field_arguments, resolve_fields
from celestecli.errors import CelesteError, PartialFailure, UsageError
from celestecli.infer.field import InferSettings, Region, infer_field
from celestecli.infer.init_catalog import INIT_MODES

log = logging.getLogger(__name__)


def run_demo(out_dir: Path, settings: InferSettings) -> None:
    from celestecli.demo import DEMO_FIELD, DemoSettings, score_lines, simulate_demo_field

    demo = DemoSettings()
    data_dir = out_dir / "sdss"
    click.echo(f"simulating {DEMO_FIELD}: {demo.width} x {demo.height} pixels, 5 bands, "
               f"{demo.n_sources} sources drawn from the prior, into {data_dir}", err=True)
    truth = simulate_demo_field(data_dir, demo)
    with logging_redirect_tqdm(), tqdm(desc=str(DEMO_FIELD), unit="source", disable=None,
                                       leave=False) as bar:
        result = infer_field(data_dir, DEMO_FIELD, settings, progress=bar.update)
    target = output_path(out_dir, DEMO_FIELD, "fits")
    write_catalog(result.table, target, provenance=provenance_for(result, settings, data_dir))
    click.echo(result.summary(), err=True)
    click.echo(f"catalog: {target}")
    for line in score_lines(target, truth):
        click.echo(line)


def output_path(out_dir: Path, fid, fmt: str) -> Path:
    return out_dir / f"celeste-{fid.stem}.{fmt}"


def provenance_for(result, settings: InferSettings, data_dir: Path) -> Provenance:
    from celestecli._kernels.openmp_info import openmp_enabled

    extra = {"PASSES": settings.passes, "INIT": settings.init}
    if settings.region is not None:
        extra["REGION"] = str(settings.region)
    return Provenance(fields=[str(result.fid)], rerun=301, n_threads=result.threads, n_procs=1,
                      openmp=openmp_enabled(), seed=settings.seed,
                      inputs=[InputFile.of(p) for p in result.inputs], extra=extra)


@click.command("infer")
@field_arguments
@click.option("--out-dir", type=click.Path(file_okay=False, path_type=Path),
              default=Path("celeste-out"), show_default=True,
              help="Directory for the catalogs, one celeste-RRRRRR-C-FFFF.<format> per field.")
@click.option("-o", "--output", type=str, default=None,
              help="Output file for a single field ('-' streams ECSV/CSV to stdout).")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default=None,
              help="Catalog format [default: fits, or from -o's extension; ecsv on stdout].")
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="OpenMP threads [default: available cores].")
@click.option("--region", type=str, default=None,
              help="Infer only sources in this pixel box of the r frame: X0:X1,Y0:Y1 "
                   "(0-based, end exclusive), e.g. 310:410,630:730.")
@click.option("--passes", type=click.IntRange(min=1), default=3, show_default=True,
              help="Joint coordinate-ascent passes over the sources.")
@click.option("--seed", type=int, default=42, show_default=True,
              help="Seed of the source schedule.")
@click.option("--init", "init", type=click.Choice(INIT_MODES), default="auto", show_default=True,
              help="Initial catalog: photoObj, detection, or photo when it has sources.")
@click.option("--demo", is_flag=True,
              help="Simulate the built-in SDSS-like field into OUT_DIR/sdss, infer it and "
                   "print a score against its truth (offline; no FIELD needed).")
@click.pass_obj
def infer_command(app, field_tokens, fields_file, out_dir, output, fmt, threads, region, passes,
                  seed, init, demo):
    """Infer a catalog for each FIELD from its five SDSS images."""
    if demo:
        if field_tokens or fields_file:
            raise UsageError("--demo simulates its own field: give no FIELD")
        run_demo(out_dir, InferSettings(passes=passes, seed=seed, threads=threads))
        return
    fields = resolve_fields(field_tokens, fields_file)
    if output is not None and len(fields) != 1:
        raise UsageError("-o/--output takes a single field; use --out-dir for several")
    settings = InferSettings(passes=passes, seed=seed, threads=threads, init=init,
                             region=Region.parse(region) if region else None)
    failures = {}
    for fid in fields:
        try:
            with logging_redirect_tqdm(), tqdm(desc=str(fid), unit="source", disable=None,
                                               leave=False) as bar:
                result = infer_field(app.data_dir, fid, settings, progress=bar.update)
            target = output if output is not None else output_path(out_dir, fid, fmt or "fits")
            if output is None:
                out_dir.mkdir(parents=True, exist_ok=True)
            write_catalog(result.table, target, fmt=fmt,
                          provenance=provenance_for(result, settings, app.data_dir))
            click.echo(result.summary(), err=True)
        except UsageError:
            raise
        except CelesteError as exc:
            if len(fields) == 1:
                raise
            log.error("%s: %s", fid, exc)
            failures[str(fid)] = str(exc)
    if failures:
        raise PartialFailure(failures, len(fields)) if len(failures) < len(fields) else \
            CelesteError(f"all {len(fields)} fields failed")
