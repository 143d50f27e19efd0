"""Fields over MPI ranks: ``mpiexec -n N python -m celestecli.parallel.mpi [OPTIONS] FIELD...``

Takes the options of ``celeste infer`` (but -j: the ranks are the workers; ``--threads`` sets each
rank's OpenMP threads).  Rank 0 reads the fields and hands them out one at a time, to whichever
rank asks next, so slow fields do not hold the others up; it also works on fields itself in a
second thread (which never calls MPI, so MPI needs only the "funneled" thread level).  Every rank
runs the same field job as ``celeste infer`` (lock, skip check, atomic write), so the skip and
lock rules hold across MPI jobs, pool runs and cron runs on the same output directory.  A field
that fails comes back as a failed outcome and the job goes on; rank 0 writes the status file and
the summary, and every rank exits with the run's status (that of ``celeste infer``: 0, 3 when
some fields failed, 1 when all did or a lone field's own status).  Any
unexpected error on a rank aborts the whole job (``MPI_Abort``) rather than leaving the others
waiting.  mpi4py is imported only here: ``pip install 'celestecli[mpi]'``.
"""

import logging
import os
import queue
import shlex
import sys
import threading
import time
import traceback
from collections import deque
from pathlib import Path

import click

from celestecli import STARTUP_CPUS
from celestecli.cli import AppContext
from celestecli.commands.infer import InferRequest, infer_options
from celestecli.errors import EXIT_RUNTIME, CelesteError, PartialFailure
from celestecli.logsetup import FORMAT, configure_logging
from celestecli.parallel.jobs import FAILED, Outcome, run_field_job
from celestecli.parallel.outdir import removed_if_left_empty
from celestecli.parallel.report import RunReport
from celestecli.parallel.status import StatusWriter
from celestecli.threads import available_cores, effective_threads

log = logging.getLogger("celestecli.parallel.mpi")  # not __main__ under python -m

TAG_READY, TAG_TASK, TAG_RESULT, TAG_STOP = 1, 2, 3, 4
ROOT = 0
POLL_SECONDS = 0.01  # rank 0 polls instead of blocking: Open MPI's blocking receive spins a core


def _import_mpi():
    try:
        import mpi4py
    except ImportError as exc:
        raise CelesteError("the MPI entry point needs mpi4py: pip install 'celestecli[mpi]'") \
            from exc
    mpi4py.rc.thread_level = "funneled"
    from mpi4py import MPI

    return MPI


def _local_worker(config, tasks: queue.Queue, results: queue.Queue) -> None:
    """Rank 0's own worker thread: fields from ``tasks`` until None, outcomes to ``results``."""
    while (fid := tasks.get()) is not None:
        try:
            outcome = run_field_job(config, fid)
        except BaseException as exc:  # a thread cannot take the job down; report and go on
            outcome = Outcome(str(fid), FAILED, error=f"{type(exc).__name__}: {exc}",
                              exit_code=EXIT_RUNTIME)
        outcome.worker = "rank 0"
        results.put(outcome)


def dispatch(comm, MPI, config, fields, report: RunReport) -> None:  # noqa: N803 - the module
    """Rank 0: hand fields out on request until all are done, then stop every rank."""
    from tqdm import tqdm

    pending = deque(fields)
    tasks: queue.Queue = queue.Queue()
    results: queue.Queue = queue.Queue()
    local = threading.Thread(target=_local_worker, args=(config, tasks, results),
                             name="rank0-worker", daemon=True)
    local.start()
    local_busy = False
    remote_active = comm.Get_size() - 1
    status = MPI.Status()
    with tqdm(total=len(fields), unit="field", desc="fields", disable=None,
              file=sys.stderr) as bar:
        while pending or local_busy or remote_active:
            progressed = False
            if not local_busy and pending:
                tasks.put(pending.popleft())
                local_busy = True
            try:
                report.add(results.get_nowait())
                bar.update()
                local_busy = False
                progressed = True
            except queue.Empty:
                pass
            if comm.Iprobe(source=MPI.ANY_SOURCE, tag=MPI.ANY_TAG, status=status):
                source, tag = status.Get_source(), status.Get_tag()
                message = comm.recv(source=source, tag=tag)
                if tag == TAG_RESULT:
                    report.add(message)
                    bar.update()
                if pending:
                    comm.send(pending.popleft(), dest=source, tag=TAG_TASK)
                else:
                    comm.send(None, dest=source, tag=TAG_STOP)
                    remote_active -= 1
                progressed = True
            if not progressed:
                time.sleep(POLL_SECONDS)
    tasks.put(None)
    local.join()


def serve(comm, MPI, config) -> None:  # noqa: N803 - the module
    """Ranks > 0: ask rank 0 for a field, process it, send the outcome, until told to stop."""
    rank = comm.Get_rank()
    status = MPI.Status()
    comm.send(None, dest=ROOT, tag=TAG_READY)
    while True:
        fid = comm.recv(source=ROOT, tag=MPI.ANY_TAG, status=status)
        if status.Get_tag() == TAG_STOP:
            return
        outcome = run_field_job(config, fid)
        outcome.worker = f"rank {rank}"
        comm.send(outcome, dest=ROOT, tag=TAG_RESULT)


def _rank_logging(verbose: int, quiet: int, rank: int, size: int) -> None:
    configure_logging(verbose, quiet)
    formatter = logging.Formatter(FORMAT.replace("%(levelname)", f"[{rank}/{size}] %(levelname)"),
                                  datefmt="%H:%M:%S")
    for handler in logging.getLogger().handlers:
        handler.setFormatter(formatter)


def _prepare(comm, MPI, app, options):  # noqa: N803 - the module
    """Rank 0 reads the options and fields (stdin included) and opens the status file; every
    rank gets the request and the job configuration, or the error that stops them all.

    Returns (request, config, status writer: rank 0 only), or (None, (message, exit code)).
    """
    request, error, status = None, None, None
    if comm.Get_rank() == ROOT:
        if "-" in options["field_tokens"] and "OMPI_COMM_WORLD_SIZE" in os.environ:
            log.warning("reading fields from stdin: Open MPI 5's mpiexec may never pass on its "
                        "end (openpmix/openpmix#4024), so prefer --fields FILE")
        command = shlex.join([Path(sys.executable).name, "-m", "celestecli.parallel.mpi",
                              *sys.argv[1:]])
        try:
            request = InferRequest.from_options(app.data_dir, command, **options)
            status = StatusWriter(request.status_file)
        except (CelesteError, click.ClickException) as exc:
            error = (str(exc), getattr(exc, "exit_code", EXIT_RUNTIME))
    request, error = comm.bcast((request, error), root=ROOT)
    if error is not None:
        return None, error, None
    threads = _threads_per_rank(comm, MPI, request.config.settings.threads)
    return request, request.with_workers(comm.Get_size(), threads), status


def _threads_per_rank(comm, MPI, requested: int | None) -> int:  # noqa: N803 - the module
    """Each rank's threads: its share of the cores it may run on (``srun -c``, a binding, or
    the whole node), shared with the other ranks of the node that may run on them too (when
    the launcher bound no ranks apart); never more than that share (with a warning)."""
    node = comm.Split_type(MPI.COMM_TYPE_SHARED)
    mine = STARTUP_CPUS or frozenset()
    sharing = max(1, sum(1 for cpus in node.allgather(mine) if cpus & mine))
    share = max(1, available_cores() // sharing)
    threads = effective_threads(requested, sharing)
    if threads > share:
        if node.Get_rank() == 0:
            log.warning("%d ranks share %d cores on %s: %d thread%s per rank, not %d (bind "
                        "the ranks to their own cores, e.g. srun -c, to give each more)",
                        sharing, available_cores(), MPI.Get_processor_name(), share,
                        "" if share == 1 else "s", threads)
        threads = share
    node.Free()
    return threads


def run(app, verbose: int, quiet: int, options: dict) -> int:
    """The whole MPI run on this rank; returns the exit status, the same on every rank."""
    MPI = _import_mpi()  # noqa: N806 - the module's own name
    comm = MPI.COMM_WORLD
    rank, size = comm.Get_rank(), comm.Get_size()
    _rank_logging(verbose, quiet, rank, size)
    request, config, status = _prepare(comm, MPI, app, options)
    if request is None:
        message, code = config
        if rank == ROOT:
            click.echo(f"celeste: error: {message}", err=True)
        return code
    code = 0
    if rank == ROOT:
        from tqdm.contrib.logging import logging_redirect_tqdm

        report = RunReport(status, len(request.fields))
        log.info("fields: %d, ranks: %d, threads per rank: %d", len(request.fields), size,
                 config.settings.threads)
        try:
            with logging_redirect_tqdm(), removed_if_left_empty(config.output_dir()):
                dispatch(comm, MPI, config, request.fields, report)
        except CelesteError as exc:  # e.g. the status file became unwritable
            click.echo(f"celeste: error: {exc}", err=True)
            _abort(exc.exit_code)  # the other ranks are waiting for fields
        try:
            report.finish()
        except CelesteError as exc:
            kind = "partial failure" if isinstance(exc, PartialFailure) else "error"
            click.echo(f"celeste: {kind}: {exc}", err=True)
            code = exc.exit_code
    else:
        serve(comm, MPI, config)
    return comm.bcast(code, root=ROOT)


@click.command("celeste-mpi", context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", count=True, help="More log output (repeatable).")
@click.option("-q", "--quiet", count=True, help="Less log output (repeatable).")
@infer_options
@click.pass_obj
def mpi_command(app, verbose, quiet, **options):
    """Infer the catalogs of many fields over the ranks of an MPI job.

    Run under mpiexec or srun; the options are those of `celeste infer`.  The SDSS files are
    read from --data-dir, else $CELESTE_DATA_DIR, else ./sdss.
    """
    try:
        code = run(app, verbose, quiet, options)
    except CelesteError as exc:  # mpi4py missing: before any message passing, on every rank
        click.echo(f"celeste: error: {exc}", err=True)
        code = exc.exit_code
    except BaseException:
        traceback.print_exc()
        sys.stderr.flush()
        _abort(EXIT_RUNTIME)
    sys.exit(code)


def _abort(code: int) -> None:
    """End the whole MPI job: one rank's failure must not leave the others waiting on it."""
    sys.stderr.flush()
    try:
        from mpi4py import MPI

        MPI.COMM_WORLD.Abort(code)
    finally:
        os._exit(code)


def main() -> None:
    data_dir = Path(os.environ.get("CELESTE_DATA_DIR", "sdss"))
    mpi_command.main(obj=AppContext(verbose=0, quiet=0, data_dir=data_dir),
                     prog_name="python -m celestecli.parallel.mpi")


if __name__ == "__main__":
    main()
