"""Fields in a pool of worker processes on one machine (``celeste infer -j WORKERS``).

The rules of ENGINEERING.md 3.2-3.3, in order:

* the fork start method, set explicitly (multiprocessing-logging only works with fork);
* ``logging_redirect_tqdm()`` outside ``install_mp_handler()``, and the workers forked inside
  both, so worker records reach the tqdm-aware handler once;
* the workers are forked before any kernel has run here: the parent never calls a kernel, as
  GNU OpenMP is not fork-safe;
* each worker limits BLAS to one thread, ignores SIGINT (the parent handles it), exits on
  SIGTERM after removing its lock and temporary files, and dies with the parent even when the
  parent is SIGKILLed (Linux ``PR_SET_PDEATHSIG``).

The pool is a ``concurrent.futures.ProcessPoolExecutor`` rather than ``multiprocessing.Pool``:
when a worker process dies (segfault, OOM killer) it reports the loss instead of waiting forever
for the dead worker's result.  Such a loss breaks the whole executor, so ``run_pool`` finds the
field responsible by running the suspects again one at a time, and carries on with a new pool.
"""

import ctypes
import logging
import multiprocessing
import os
import signal
import sys
import time
from collections import deque
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool

from multiprocessing_logging import MultiProcessingHandler, install_mp_handler, uninstall_mp_handler
from threadpoolctl import threadpool_limits
from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from celestecli import STARTUP_CPUS
from celestecli.errors import EXIT_RUNTIME
from celestecli.parallel.interrupts import EXIT_SIGTERM, Terminated
from celestecli.parallel.jobs import FAILED, JobConfig, Outcome, run_field_job

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
STOP_SECONDS = 5.0  # how long terminated workers get to clean up before SIGKILL


def _die_with_parent(parent_pid: int) -> None:
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL))
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(EXIT_RUNTIME)


_in_job = False


def _worker_sigterm(_signum, _frame):
    if _in_job:
        raise Terminated()  # unwinds the job: its lock and temporary file are removed
    os._exit(EXIT_SIGTERM)


def _init_worker(parent_pid: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _worker_sigterm)
    _die_with_parent(parent_pid)
    if STARTUP_CPUS:  # undo the pinning OMP_PLACES/OMP_PROC_BIND gave the parent's thread
        os.sched_setaffinity(0, STARTUP_CPUS)
    threadpool_limits(1, user_api="blas")


def _pool_job(config: JobConfig, fid) -> Outcome:
    global _in_job
    _in_job = True
    try:
        return run_field_job(config, fid)
    except Terminated:
        os._exit(EXIT_SIGTERM)
    finally:
        _in_job = False


def _use_fork() -> None:
    if multiprocessing.get_start_method(allow_none=True) != "fork":
        multiprocessing.set_start_method("fork", force=True)


def _stop_workers() -> None:
    """Terminate this process's worker processes (after an interrupt)."""
    children = multiprocessing.active_children()
    for child in children:
        child.terminate()
    deadline = time.monotonic() + STOP_SECONDS
    for child in children:
        child.join(timeout=max(0.0, deadline - time.monotonic()))
        if child.is_alive():  # stuck in a long kernel call
            child.kill()


def _drain_mp_logging() -> None:
    """Pass on the worker records still queued, then restore the wrapped handlers."""
    for handler in logging.getLogger().handlers:
        if isinstance(handler, MultiProcessingHandler):
            handler.close()
    uninstall_mp_handler()


def _lost(fid, exc: BaseException) -> Outcome:
    """A job that raised in the pool machinery itself (not in the field's inference)."""
    return Outcome(str(fid), FAILED, error=f"{type(exc).__name__}: {exc}",
                   exit_code=EXIT_RUNTIME, worker="pool")


def _died(fid) -> Outcome:
    return Outcome(str(fid), FAILED, exit_code=EXIT_RUNTIME, worker="pool",
                   error="its worker process died (killed, e.g. by the out-of-memory killer, "
                         "or crashed) even with no other field beside it")


def _run_until_a_worker_dies(config: JobConfig, fields: deque, workers: int, report,
                             job) -> list:
    """Run the jobs of ``fields`` (taken from the left) on a new pool of ``workers``, at most
    ``workers`` of them at a time, passing each Outcome to ``report``.

    Returns the fields that were in flight when a worker died, which breaks the pool (their
    own results are lost), or [] once every field is done.  Keeping no more fields in flight
    than workers is what pins a death on the fields that could have caused it.
    """
    executor = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork"),
                                   initializer=_init_worker, initargs=(os.getpid(),))
    try:
        in_flight = {}
        while fields or in_flight:
            while fields and len(in_flight) < workers:
                try:
                    future = executor.submit(job, config, fields[0])
                except BrokenProcessPool:  # a worker died since the last wait
                    executor.shutdown(wait=True)
                    return list(in_flight.values())
                in_flight[future] = fields.popleft()
            done, _ = wait(in_flight, return_when=FIRST_COMPLETED)
            broken = False
            for future in done:
                exc = future.exception()
                if isinstance(exc, BrokenProcessPool):
                    broken = True
                    continue
                fid = in_flight.pop(future)
                report(future.result() if exc is None else _lost(fid, exc))
            if broken:
                executor.shutdown(wait=True)
                return list(in_flight.values())
        executor.shutdown(wait=True)
        return []
    except BaseException:
        _stop_workers()
        executor.shutdown(wait=False, cancel_futures=True)
        raise


def run_pool(config: JobConfig, fields, workers: int, on_outcome, job=_pool_job) -> None:
    """Run the fields' jobs (``job(config, fid)`` -> Outcome) on ``workers`` processes;
    ``on_outcome`` gets each Outcome as it finishes.

    When a worker process dies, the fields it could have been running are each run again
    alone: the one that kills its worker even then is reported failed, the others finish,
    and the rest of the fields go on in a new pool.
    """
    _use_fork()
    with logging_redirect_tqdm():
        install_mp_handler()
        try:
            with tqdm(total=len(fields), unit="field", desc="fields", disable=None,
                      file=sys.stderr) as bar:
                def report(outcome: Outcome) -> None:
                    on_outcome(outcome)
                    bar.update()

                waiting = deque(fields)
                while waiting:
                    suspects = _run_until_a_worker_dies(config, waiting, workers, report, job)
                    if suspects:
                        log.warning("a worker process died while running %s: running %s "
                                    "again, alone", ", ".join(map(str, suspects)),
                                    "it" if len(suspects) == 1 else "each")
                    for fid in suspects:
                        if _run_until_a_worker_dies(config, deque([fid]), 1, report, job):
                            report(_died(fid))
        finally:
            _drain_mp_logging()
