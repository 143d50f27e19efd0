"""Shared helpers of the benchmarks: simulated fields, timing, the real data's location."""

import subprocess
import sys
import time
from pathlib import Path

from celestecli.fields import FieldID

# the real SDSS data beside the repository (../shared/data), as in tests/shared_data.py
DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def celeste(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    """Run ``python -m celestecli ARGS`` as a user would."""
    return subprocess.run([sys.executable, "-m", "celestecli", *args], check=check,
                          capture_output=True, text=True)


def simulated_field(data_dir: Path, n_sources: int, seed: int, fid: FieldID,
                    width: int | None = None, height: int | None = None) -> FieldID:
    """Simulate one field with the built-in SDSS-like setup (full SDSS frame by default)."""
    args = ["simulate", "--n-sources", str(n_sources), "--seed", str(seed),
            "--field", str(fid), "-o", str(data_dir), "--force"]
    if width:
        args += ["--width", str(width), "--height", str(height)]
    celeste(*args)
    return fid


def best_time(fn, repeat: int = 5, number: int = 1) -> float:
    """Minimum over ``repeat`` runs of the mean time of ``number`` calls (seconds)."""
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        for _ in range(number):
            fn()
        best = min(best, (time.perf_counter() - start) / number)
    return best
