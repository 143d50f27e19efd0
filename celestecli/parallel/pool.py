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
for the dead worker's result.
"""

import ctypes
import logging
import multiprocessing
import os
import signal
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
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
    if isinstance(exc, BrokenProcessPool):
        why = f"a worker process died, which stopped the pool ({exc})"
    else:
        why = f"{type(exc).__name__}: {exc}"
    return Outcome(str(fid), FAILED, error=why, exit_code=EXIT_RUNTIME, worker="pool")


def run_pool(config: JobConfig, fields, workers: int, on_outcome) -> None:
    """Run the fields' jobs on ``workers`` processes; ``on_outcome`` gets each as it finishes."""
    _use_fork()
    with logging_redirect_tqdm():
        install_mp_handler()
        executor = None
        try:
            executor = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork"),
                                           initializer=_init_worker, initargs=(os.getpid(),))
            futures = {executor.submit(_pool_job, config, fid): fid for fid in fields}
            with tqdm(total=len(fields), unit="field", desc="fields", disable=None,
                      file=sys.stderr) as bar:
                for future in as_completed(futures):
                    exc = future.exception()
                    on_outcome(future.result() if exc is None else _lost(futures[future], exc))
                    bar.update()
            executor.shutdown(wait=True)
        except BaseException:
            _stop_workers()
            if executor is not None:
                executor.shutdown(wait=False, cancel_futures=True)
            raise
        finally:
            _drain_mp_logging()
