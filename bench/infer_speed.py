"""End-to-end inference speed: core-seconds per source on a simulated SDSS-size field.

Simulates the built-in SDSS-like field (2048 x 1489 pixels, 5 bands, 500 sources drawn from
the prior), then times ``celeste infer`` on it as a separate process, as a user runs it
(start-up, reading and decompressing the frames, PSF fits, detection-free photoObj
initialisation, three passes, writing the catalog), with 1 and 2 threads.  Core-seconds =
wall time x threads / sources.  Peak RSS is the infer process's maximum resident set.
Ends with ``core_seconds_per_source=<float> peak_rss_mb=<float>`` (the 1-thread run).
"""

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import simulated_field
from celestecli.fields import FieldID

FIELD = FieldID(9999, 1, 2)
N_SOURCES = 500


def timed_infer(data_dir: Path, out: Path, threads: int) -> tuple[float, float]:
    """(wall seconds, peak RSS in MB) of one ``celeste infer`` process."""
    cmd = [sys.executable, "-m", "celestecli", "-q", "infer", str(FIELD), "--data-dir",
           str(data_dir), "-o", str(out), "--threads", str(threads)]
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    if status != 0:
        raise RuntimeError(f"celeste infer failed: {proc.stderr.read().decode()}")
    return wall, usage.ru_maxrss / 1024.0


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp)
        simulated_field(data_dir, N_SOURCES, seed=11, fid=FIELD)
        results = {}
        for threads in (1, 2):
            wall, rss = timed_infer(data_dir, data_dir / f"out-{threads}.fits", threads)
            results[threads] = (wall, rss)
            print(f"{threads} thread(s): {wall:.1f} s wall for {N_SOURCES} sources, "
                  f"{wall * threads / N_SOURCES:.4f} core-s/source, "
                  f"{N_SOURCES / wall:.1f} sources/s, peak RSS {rss:.0f} MB")
    wall1, rss1 = results[1]
    wall2, _ = results[2]
    print(f"speedup with 2 threads: {wall1 / wall2:.2f}x")
    print("Celeste.jl reference: about 0.7-0.85 core-s/source on a Haswell-class core")
    print(f"core_seconds_per_source={wall1 / N_SOURCES:.4f} peak_rss_mb={rss1:.1f}")


if __name__ == "__main__":
    main()
