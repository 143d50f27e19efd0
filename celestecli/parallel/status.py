"""The field-status file: one JSON line per field and run, for pipelines and cron jobs.

Each line holds ``field``, ``status`` (done, skipped, busy, failed), ``seconds``, ``sources``,
``converged``, ``output``, ``error``, ``worker``, ``time`` (UTC), ``host`` and ``pid`` of the run.
Lines are appended under an exclusive ``flock``, so several runs may share one file; ``-``
writes the lines to stdout instead.
"""

import fcntl
import json
import os
import socket
import sys
from datetime import UTC, datetime

from celestecli.catalog.atomic import OutputError, make_parent_dirs


class StatusWriter:
    """Appends outcome records to a JSON-lines file, to stdout (``-``), or nowhere (None).

    The file is created (or opened) at once, with any missing directories above it (as the
    output directory is), so that a path that cannot be written fails the run before any
    work is done.
    """

    def __init__(self, target: str | os.PathLike | None):
        self.target = None if target is None else str(target)
        self._host = socket.gethostname()
        self._pid = os.getpid()
        if self.target not in (None, "-"):
            make_parent_dirs(self.target)
            os.close(self._open())

    def _open(self) -> int:
        try:
            return os.open(self.target, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
        except OSError as exc:
            raise OutputError(self.target, exc.strerror or str(exc)) from exc

    def line(self, record: dict) -> str:
        stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        full = {**record, "time": stamp, "host": self._host, "pid": self._pid}
        return json.dumps(full) + "\n"

    def write(self, record: dict) -> None:
        if self.target is None:
            return
        text = self.line(record)
        if self.target == "-":
            sys.stdout.write(text)
            sys.stdout.flush()
            return
        fd = self._open()
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            data = text.encode()
            while data:
                data = data[os.write(fd, data):]
        finally:
            os.close(fd)  # closing drops the lock
