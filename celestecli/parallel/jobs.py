"""One field job: lock, skip check, inference, atomic write, outcome record.

``run_field_job`` is what every driver runs for a field (serially, in a pool worker, on an MPI
rank).  It never raises for a failing field: the failure becomes an ``Outcome`` with status
``failed``, so one bad field cannot stop or hang the others.  Only interrupts propagate.
"""

import glob
import logging
import os
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

from celestecli.catalog.atomic import OutputError, make_parent_dirs
from celestecli.catalog.io import write_catalog
from celestecli.catalog.provenance import InputFile, Provenance
from celestecli.errors import EXIT_RUNTIME, CelesteError
from celestecli.fields import FieldID
from celestecli.infer.inputs import input_files, release_of
from celestecli.infer.settings import InferSettings
from celestecli.locks import FileLock
from celestecli.parallel.fingerprint import KEYWORD, fingerprint, stored_fingerprint

log = logging.getLogger(__name__)

DONE, SKIPPED, BUSY, FAILED = "done", "skipped", "busy", "failed"
STDOUT = "-"


def output_path(out_dir: Path, fid: FieldID, fmt: str) -> Path:
    """Where a field's catalog goes in an output directory: ``celeste-RRRRRR-C-FFFF.<fmt>``."""
    return Path(out_dir) / f"celeste-{fid.stem}.{fmt}"


@dataclass(frozen=True)
class JobConfig:
    """Everything a field job needs besides the field; picklable, the same on every worker.

    ``output`` is a single field's file (``-o``; ``-`` for stdout), else catalogs go to
    ``out_dir``.  ``fmt`` is the catalog format (fits, ecsv, csv).
    """

    data_dir: Path
    out_dir: Path
    settings: InferSettings
    fmt: str = "fits"
    output: str | None = None
    force: bool = False
    n_procs: int = 1
    command_line: str | None = None

    def target(self, fid: FieldID) -> str | Path:
        return self.output if self.output is not None else output_path(self.out_dir, fid,
                                                                        self.fmt)

    def output_dir(self) -> Path | None:
        """The directory the catalogs go to; None when they go to stdout."""
        if self.output == STDOUT:
            return None
        return Path(self.output).parent if self.output is not None else Path(self.out_dir)


@dataclass
class Outcome:
    """What happened to one field; ``record()`` is its status-file line."""

    field: str
    status: str
    output: str | None = None
    seconds: float = 0.0
    sources: int | None = None
    converged: int | None = None
    error: str | None = None
    exit_code: int = 0
    worker: str = field(default_factory=lambda: f"pid {os.getpid()}")

    def record(self) -> dict:
        out = asdict(self)
        out["seconds"] = round(self.seconds, 3)
        del out["exit_code"]
        return out

    def describe(self) -> str:
        """One human-readable line."""
        if self.status == DONE:
            return (f"{self.field}: {self.sources} sources, {self.converged} converged, "
                    f"{self.seconds:.1f} s -> {self.output}")
        if self.status == SKIPPED:
            return f"{self.field}: up to date, skipped ({self.output})"
        if self.status == BUSY:
            return f"{self.field}: busy, skipped: {self.error}"
        return f"{self.field}: FAILED: {self.error}"


def catalog_provenance(result, config: JobConfig, inputs: list[InputFile],
                       fprint: str) -> Provenance:
    """The provenance written with a field's catalog, fingerprint included."""
    from celestecli._kernels.openmp_info import openmp_enabled
    from celestecli.infer.uncertainty import METHOD

    settings = config.settings
    width, height = result.frame_size
    extra = {"PASSES": settings.passes, "NPASSES": result.passes, "INIT": settings.init,
             "SKY": settings.sky, "UNCERT": METHOD, KEYWORD: fprint, "IMAGEW": int(width),
             "IMAGEH": int(height)}
    if settings.region is not None:
        extra["REGION"] = str(settings.region)
    return Provenance(command_line=config.command_line, fields=[str(result.fid)],
                      release=release_of(inputs), rerun=301, n_threads=result.threads,
                      n_procs=config.n_procs, openmp=openmp_enabled(), seed=settings.seed,
                      inputs=inputs, extra=extra)


def remove_stale_parts(target: Path) -> None:
    """Delete temporary files an interrupted writer of ``target`` left (lock holders only)."""
    pattern = str(target.parent / f".{glob.escape(target.name)}.*.part")
    for stale in glob.glob(pattern):
        log.info("removing %s, left by an interrupted run", stale)
        Path(stale).unlink(missing_ok=True)


def _infer_and_write(config: JobConfig, fid: FieldID, target, progress, started) -> Outcome:
    from celestecli.infer.field import field_inputs, infer_field  # numerical stack: when needed

    inputs = input_files(config.data_dir, field_inputs(config.data_dir, fid))
    fprint = fingerprint(inputs, config.settings)
    stored = stored_fingerprint(target) if target != STDOUT else None
    if stored == fprint and not config.force:
        return Outcome(str(fid), SKIPPED, output=str(target),
                       seconds=time.perf_counter() - started)
    if stored is not None and stored != fprint:  # e.g. a whole-field catalog, now a --region
        log.info("%s: %s was made from other inputs, settings or celeste code; replacing it",
                 fid, target)
    result = infer_field(config.data_dir, fid, config.settings, progress=progress)
    write_catalog(result.table, target, fmt=config.fmt,
                  provenance=catalog_provenance(result, config, inputs, fprint))
    return Outcome(str(fid), DONE, output=str(target), seconds=time.perf_counter() - started,
                   sources=result.n_sources, converged=result.n_converged)


@contextmanager
def _output_lock(target: Path):
    """The catalog's lock (test ``held``), its directory created first; failures to create
    either name the catalog."""
    lock = FileLock(target)
    for attempt in range(3):
        make_parent_dirs(target)
        try:
            lock.acquire()
            break
        except OSError as exc:
            if isinstance(exc, FileNotFoundError) and attempt < 2:
                continue  # a run that left the directory empty removed it: make it again
            raise OutputError(target, exc.strerror or str(exc)) from exc
    try:
        yield lock
    finally:
        lock.release()


def run_field_job(config: JobConfig, fid: FieldID, progress=None) -> Outcome:
    """Process one field; every failure becomes a ``failed`` Outcome (interrupts propagate).

    Under the field's lock: remove stale temporary files, skip the field when its catalog
    exists with the current fingerprint (unless ``force``), else infer it and write the
    catalog atomically.  A field whose lock another process holds is ``busy``.
    """
    started = time.perf_counter()
    target = config.target(fid)
    try:
        if target == STDOUT:
            return _infer_and_write(config, fid, target, progress, started)
        target = Path(target)
        with _output_lock(target) as lock:
            if not lock.held:
                return Outcome(str(fid), BUSY, output=str(target),
                               error=f"another run holds {lock.path} ({lock.holder()})")
            remove_stale_parts(target)
            return _infer_and_write(config, fid, target, progress, started)
    except CelesteError as exc:
        error, code = str(exc), exc.exit_code
    except BrokenPipeError:  # the reader of stdout has gone (``-o - | head``): stop the run
        raise
    except Exception as exc:  # a bug, or a failure nobody anticipated: keep the other fields
        log.exception("%s: unexpected error", fid)
        error, code = f"{type(exc).__name__}: {exc}", EXIT_RUNTIME
    return Outcome(str(fid), FAILED, output=None if target == STDOUT else str(target),
                   seconds=time.perf_counter() - started, error=error, exit_code=code)
