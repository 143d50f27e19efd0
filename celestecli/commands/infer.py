"""``celeste infer``: per-field variational inference -> one catalog per field.

The options (``infer_options``) and their reading (``InferRequest.from_options``) are shared
with the MPI entry point, ``python -m celestecli.parallel.mpi``.
"""

import logging
import shlex
import sys
from dataclasses import dataclass, replace
from pathlib import Path

import click

from celestecli.catalog.io import FORMATS, STREAM_FORMATS, format_from_path
from celestecli.commands.options import field_arguments, resolve_fields
from celestecli.errors import CelesteError, UsageError
from celestecli.fields import FieldID
from celestecli.infer.settings import AUTO_PASSES, INIT_MODES, SKY_MODES, InferSettings, Region
from celestecli.parallel.interrupts import EXIT_SIGINT, EXIT_SIGTERM, Terminated, sigterm_raises
from celestecli.parallel.jobs import STDOUT, JobConfig
from celestecli.parallel.outdir import removed_if_left_empty
from celestecli.parallel.report import RunReport
from celestecli.parallel.status import StatusWriter

log = logging.getLogger(__name__)


class Passes(click.ParamType):
    """A number of passes (1 or more), or 'auto'."""

    name = "N|auto"

    def convert(self, value, param, ctx):
        if isinstance(value, int) or value == AUTO_PASSES:
            return value
        try:
            passes = int(value)
        except ValueError:
            self.fail(f"{value!r} is neither a number of passes nor {AUTO_PASSES!r}", param, ctx)
        if passes < 1:
            self.fail(f"{passes} passes: give 1 or more, or {AUTO_PASSES!r}", param, ctx)
        return passes


_OPTIONS = [
    field_arguments,
    click.option("--out-dir", type=click.Path(file_okay=False, path_type=Path),
                 default=Path("celeste-out"), show_default=True,
                 help="Directory for the catalogs, one celeste-RRRRRR-C-FFFF.<format> per field."),
    click.option("-o", "--output", type=str, default=None,
                 help="Output file for a single field ('-' streams ECSV/CSV to stdout)."),
    click.option("--format", "fmt", type=click.Choice(FORMATS), default=None,
                 help="Catalog format [default: fits, or from -o's extension; ecsv on stdout]."),
    click.option("--threads", type=click.IntRange(min=1), default=None,
                 help="OpenMP threads per worker [default: OMP_NUM_THREADS, else the available "
                      "cores divided among the workers]."),
    click.option("--region", type=str, default=None,
                 help="Infer only sources in this pixel box of the r frame: X0:X1,Y0:Y1 "
                      "(0-based, end exclusive), e.g. 310:410,630:730."),
    click.option("--passes", type=Passes(), default=3, show_default=True, metavar="N|auto",
                 help="Joint coordinate-ascent passes over the sources; 'auto' sweeps until no "
                      "source's ELBO rises by more than half a nat in a pass (crowded fields)."),
    click.option("--seed", type=int, default=42, show_default=True,
                 help="Seed of the source schedule."),
    click.option("--init", "init", type=click.Choice(INIT_MODES), default="auto",
                 show_default=True,
                 help="Initial catalog: photoObj, detection, or photo when it has sources."),
    click.option("--sky", type=click.Choice(SKY_MODES), default="sdss", show_default=True,
                 help="Background: the frames' SDSS sky (as Celeste), or 'local': plus a smooth "
                      "background of the light it leaves (crowded fields, e.g. a cluster core)."),
    click.option("--force", is_flag=True,
                 help="Redo fields whose catalog exists with the same inputs, settings and "
                      "version (they are skipped otherwise)."),
    click.option("--status-file", type=str, default=None, metavar="FILE",
                 help="Append one JSON line per field (status done/skipped/busy/failed, seconds, "
                      "sources, output, error) to FILE; '-' writes them to stdout."),
]


def infer_options(func):
    """Add the options of ``celeste infer`` (all but -j) to a click command."""
    for option in reversed(_OPTIONS):
        func = option(func)
    return func


@dataclass
class InferRequest:
    """What the options ask for: the fields, the job configuration and the status file."""

    fields: list[FieldID]
    config: JobConfig
    status_file: str | None

    @classmethod
    def from_options(cls, data_dir: Path, command_line: str, *, field_tokens, fields_file,
                     out_dir, output, fmt, threads, region, passes, seed, init, sky, force,
                     status_file) -> "InferRequest":
        """Check the options against each other and read the fields (stdin for '-')."""
        fields = resolve_fields(field_tokens, fields_file)
        if output is not None and len(fields) != 1:
            raise UsageError("-o/--output takes a single field; use --out-dir for several")
        if output == STDOUT:
            fmt = fmt or "ecsv"
            if fmt not in STREAM_FORMATS:
                raise UsageError(f"cannot stream {fmt} to stdout: use --format ecsv or csv")
            if status_file == STDOUT:
                raise UsageError("-o - and --status-file - would both write to stdout")
        elif output is not None:
            if Path(output).is_dir():
                raise UsageError(f"-o {output} is a directory: give a file name, or use "
                                 "--out-dir for a directory")
            fmt = fmt or format_from_path(output)
            if fmt is None:
                raise UsageError(f"cannot tell the catalog format of {output} from its "
                                 "extension (.fits, .fits.gz, .ecsv, .csv): give --format")
        settings = InferSettings(passes=passes, seed=seed, threads=threads, init=init,
                                 region=Region.parse(region) if region else None, sky=sky)
        config = JobConfig(data_dir=data_dir, out_dir=out_dir, settings=settings,
                           fmt=fmt or "fits", output=output, force=force,
                           command_line=command_line)
        return cls(fields, config, status_file)

    def with_workers(self, workers: int, threads: int) -> JobConfig:
        """The job configuration for ``workers`` processes of ``threads`` threads each."""
        settings = replace(self.config.settings, threads=threads)
        return replace(self.config, settings=settings, n_procs=workers)


def run_demo(out_dir: Path, settings: InferSettings) -> None:
    """Simulate the built-in field into OUT_DIR/sdss, infer it and print its score."""
    from celestecli.demo import DEMO_FIELD, DemoSettings, score_lines, simulate_demo_field
    from celestecli.parallel.jobs import DONE, run_field_job

    demo = DemoSettings()
    data_dir = out_dir / "sdss"
    click.echo(f"simulating {DEMO_FIELD}: {demo.width} x {demo.height} pixels, 5 bands, "
               f"{demo.n_sources} sources drawn from the prior, into {data_dir}", err=True)
    truth = simulate_demo_field(data_dir, demo)
    config = JobConfig(data_dir=data_dir, out_dir=out_dir, settings=settings, force=True,
                       command_line=shlex.join(["celeste", *sys.argv[1:]]))
    outcome = run_field_job(config, DEMO_FIELD)
    if outcome.status != DONE:
        raise CelesteError(f"demo field {DEMO_FIELD}: {outcome.error}")
    click.echo(outcome.describe(), err=True)
    click.echo(f"catalog: {outcome.output}")
    for line in score_lines(Path(outcome.output), truth):
        click.echo(line)


@click.command("infer")
@infer_options
@click.option("-j", "--jobs", type=click.IntRange(min=1), default=1, show_default=True,
              help="Worker processes, each inferring one field at a time.")
@click.option("--demo", is_flag=True,
              help="Simulate the built-in SDSS-like field into OUT_DIR/sdss, infer it and "
                   "print a score against its truth (offline; no FIELD needed).")
@click.pass_obj
def infer_command(app, jobs, demo, **options):
    """Infer a catalog for each FIELD from its five SDSS images.

    Fields whose catalog exists with the same inputs, settings and celeste code (version,
    modules, compiled kernels) are skipped (--force redoes them); a field that another run is
    processing is left to it.  Catalogs are written atomically, so an interrupted run leaves
    none half-written and the next run does the rest.  Exit 0 when no field failed, 3 when
    some failed and 1 when all did (a single field's own error status: 1, or 2 for bad input
    such as a --region off the frame).
    """
    from celestecli.parallel.pool import run_pool
    from celestecli.parallel.serial import run_serial
    from celestecli.parallel.sizing import plan_workers

    if demo:
        if options["field_tokens"] or options["fields_file"]:
            raise UsageError("--demo simulates its own field: give no FIELD")
        if options["output"] is not None or options["fmt"] is not None:
            raise UsageError("--demo writes a FITS catalog into --out-dir: give no -o/--format")
        ignored = [name for name, given in (("--region", options["region"] is not None),
                                            ("--init", options["init"] != "auto"),
                                            ("--sky", options["sky"] != "sdss"),
                                            ("--status-file", options["status_file"] is not None))
                   if given]
        if ignored:  # the demo infers its whole field from the photoObj and scores it
            raise UsageError(f"--demo does not take {', '.join(ignored)}")
        run_demo(options["out_dir"], InferSettings(passes=options["passes"], seed=options["seed"],
                                                   threads=options["threads"]))
        return
    request = InferRequest.from_options(app.data_dir, shlex.join(["celeste", *sys.argv[1:]]),
                                        **options)
    workers, threads = plan_workers(jobs, request.config.settings.threads, len(request.fields))
    config = request.with_workers(workers, threads)
    report = RunReport(StatusWriter(request.status_file), len(request.fields))
    try:
        with sigterm_raises(), removed_if_left_empty(config.output_dir()):
            if workers == 1:
                run_serial(config, request.fields, report.add)
            else:
                run_pool(config, request.fields, workers, report.add)
    except (KeyboardInterrupt, Terminated) as exc:
        sigint = isinstance(exc, KeyboardInterrupt)
        log.error("%s; %s", "interrupted" if sigint else "terminated", report.summary())
        raise SystemExit(EXIT_SIGINT if sigint else EXIT_SIGTERM) from None
    report.finish()
