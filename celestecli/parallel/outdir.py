"""Output directories a run creates are removed again when the run leaves them empty."""

from contextlib import contextmanager
from pathlib import Path


@contextmanager
def removed_if_left_empty(directory: Path | None):
    """Run the block; then remove ``directory`` and the ancestors of it that did not exist
    before the block, innermost first, as long as they are empty.

    A run whose every field failed thus leaves no trace of its output directory.  A
    directory that another run has meanwhile put a file (or its lock) in is not empty and
    stays, and so do the ones above it.
    """
    missing = [] if directory is None else [d for d in (directory, *directory.parents)
                                            if not d.exists()]
    try:
        yield
    finally:
        for folder in missing:
            try:
                folder.rmdir()
            except OSError:  # not empty, or already gone
                break
