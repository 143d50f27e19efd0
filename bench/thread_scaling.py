"""OpenMP thread scaling of ``celeste infer`` on one simulated SDSS-size field.

The field of ``bench.infer_speed`` (2048 x 1489 pixels, 5 bands, 500 sources), inferred by one
process with 1, 2, 4, ... threads up to the cores this process may use.  Prints wall time,
speedup over 1 thread and parallel efficiency for each, and the same run's sources per second.
Start-up, reading and PSF fitting are serial, so they bound the speedup (Amdahl); the
optimisation itself runs on all threads.
"""

import tempfile
from pathlib import Path

from bench.common import simulated_field
from bench.infer_speed import FIELD, N_SOURCES, timed_infer
from celestecli.threads import available_cores


def thread_counts(cores: int) -> list[int]:
    counts, t = [], 1
    while t < cores:
        counts.append(t)
        t *= 2
    return counts + [cores]


def main() -> None:
    cores = available_cores()
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp)
        simulated_field(data_dir, N_SOURCES, seed=11, fid=FIELD)
        base = None
        for threads in thread_counts(cores):
            wall, _ = timed_infer(data_dir, data_dir / f"out-{threads}.fits", threads)
            base = base or wall
            print(f"{threads:3d} thread(s): {wall:6.1f} s wall, speedup {base / wall:5.2f}x, "
                  f"efficiency {base / wall / threads:4.2f}, {N_SOURCES / wall:6.1f} sources/s",
                  flush=True)


if __name__ == "__main__":
    main()
