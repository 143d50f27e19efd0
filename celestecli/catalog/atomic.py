"""Write a file so that readers see either the old content or the complete new one, never a part.

The bytes go to a hidden temporary file in the destination directory, are fsynced, and the file
is renamed over the destination (``os.replace``, atomic on POSIX); the directory is then fsynced
so the rename survives a crash. On any error the temporary file is removed.
"""

import os
import secrets
from contextlib import contextmanager
from pathlib import Path

from celestecli.errors import CelesteError


class OutputError(CelesteError, OSError):
    """An output file could not be written (exit 1); names the file."""

    def __init__(self, path, problem):
        self.path = str(path)
        self.problem = problem
        super().__init__(f"cannot write {self.path}: {problem}")


def make_parent_dirs(path) -> None:
    """Create the missing directories above the output ``path``; a failure is an OutputError
    naming ``path``."""
    try:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    except FileExistsError as exc:  # mkdir found a file where a directory should be
        raise OutputError(path, f"{exc.filename} is not a directory") from exc
    except OSError as exc:
        raise OutputError(path, exc.strerror or str(exc)) from exc


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # some platforms cannot open directories; the rename is still atomic
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextmanager
def atomic_write(path, mode: str = "wb"):
    """Context manager yielding a file object whose content replaces ``path`` on success."""
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    tmp = folder / f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.part"
    try:
        # 0o666 so the final file gets the usual permissions after the umask
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    except OSError as exc:
        raise OutputError(path, exc.strerror or str(exc)) from exc
    try:
        with os.fdopen(fd, mode) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        if isinstance(exc, OSError) and not isinstance(exc, CelesteError):
            raise OutputError(path, exc.strerror or str(exc)) from exc
        raise
    _fsync_dir(folder)
