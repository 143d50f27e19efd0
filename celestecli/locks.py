"""Per-file locks, so that two overlapping runs never work on the same output at once.

A run works on a field only while it holds an exclusive ``fcntl.flock`` on a lock file beside the
field's output (``.NAME.lock``).  ``celeste infer`` takes the lock without waiting: a field locked
by another process is reported busy and left to that process.  ``celeste fetch`` locks each file
it downloads the same way (the lock file in the data directory's root, so that a field directory
is only created once data arrive) but waits for a busy one, then finds it present.  The kernel
drops the lock when its holder exits, however it exits (SIGKILL included), so a killed run never
blocks the next one.  The holder removes the file when it is done; the inode check in
``acquire`` makes that safe.
"""

import fcntl
import os
import socket
import threading
from pathlib import Path


def lock_path(output) -> Path:
    """The lock file of an output file: ``.NAME.lock`` in the same directory."""
    output = Path(output)
    return output.with_name(f".{output.name}.lock")


class FileLock:
    """An exclusive lock on one output file: ``acquire`` never waits, ``acquire_when_free``
    does; ``with`` acquires without waiting, so test ``held``."""

    def __init__(self, output):
        self.path = lock_path(output)
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> bool:
        """Take the lock if it is free; False when another process holds it."""
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                return False
            except BaseException:
                os.close(fd)
                raise
            # The previous holder may have removed the file between our open and our flock:
            # then we hold a lock on an orphaned inode that a third process cannot see.  Retry.
            try:
                current = os.stat(self.path)
            except FileNotFoundError:
                current = None
            mine = os.fstat(fd)
            if current is not None and (current.st_dev, current.st_ino) == (mine.st_dev,
                                                                            mine.st_ino):
                self._fd = fd
                os.ftruncate(fd, 0)
                os.write(fd, f"{socket.gethostname()} {os.getpid()}\n".encode())
                return True
            os.close(fd)

    def acquire_when_free(self, stop: threading.Event, poll_s: float = 0.1) -> bool:
        """Take the lock, waiting while another process holds it; False if ``stop`` is set
        first."""
        while not self.acquire():
            if stop.wait(poll_s):
                return False
        return True

    def release(self) -> None:
        """Remove the lock file and drop the lock (in that order; see ``acquire``)."""
        if self._fd is None:
            return
        try:
            self.path.unlink(missing_ok=True)
        finally:
            os.close(self._fd)
            self._fd = None

    def holder(self) -> str:
        """Who holds the lock, as ``HOST PID`` (best effort, for messages)."""
        try:
            return self.path.read_text().strip() or "unknown"
        except OSError:
            return "unknown"

    def __enter__(self) -> "FileLock":
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()
