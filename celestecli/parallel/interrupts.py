"""SIGTERM as an exception, so that a terminated run cleans up like an interrupted one."""

import signal
import threading
from contextlib import contextmanager

EXIT_SIGINT = 128 + signal.SIGINT
EXIT_SIGTERM = 128 + signal.SIGTERM


class Terminated(SystemExit):  # noqa: N818 - named after the signal, like KeyboardInterrupt
    """SIGTERM arrived.

    A SystemExit (exit status 143), because code that catches everything tends to let
    SystemExit and KeyboardInterrupt through (multiprocessing-logging's handler, for one, would
    otherwise swallow the signal), and because an uncaught one just ends the process quietly.
    """

    def __init__(self):
        super().__init__(EXIT_SIGTERM)


def _raise_terminated(_signum, _frame):
    raise Terminated()


@contextmanager
def sigterm_raises():
    """Within the block, SIGTERM raises Terminated in the main thread."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
