"""Where the real SDSS test data lives (../shared/data beside the repository), with skips."""

from pathlib import Path

import pytest

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
SDSS = DATA / "sdss"


def shared(relpath: str) -> Path:
    """Path of a file under ../shared/data; skip the test with the reason if it is absent."""
    path = DATA / relpath
    if not path.exists():
        pytest.skip(f"../shared/data not found: {path}")
    return path
