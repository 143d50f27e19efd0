"""Fields per hour: worker processes (-j 2 --threads 1) vs OpenMP threads (-j 1 --threads 2).

Simulates four fields (512 x 512 pixels, 60 sources each, built-in SDSS-like setup) and times
``celeste infer --force`` over all four in each configuration: the wall clock of the whole
command, start-up included, best of two runs, alternating the configurations.  Ends with the line
``fields_per_hour_j2t1=<float> fields_per_hour_j1t2=<float>``.
"""

import tempfile
import time
from pathlib import Path

from bench.common import celeste, simulated_field
from celestecli.fields import FieldID
from celestecli.threads import available_cores

FIELDS = [FieldID(9999, 2, i) for i in range(1, 5)]
CONFIGS = {"j2t1": ("-j", "2", "--threads", "1"), "j1t2": ("-j", "1", "--threads", "2")}
REPEAT = 2


def timed_run(data_dir: Path, out_dir: Path, options: tuple[str, ...]) -> float:
    start = time.perf_counter()
    celeste("-q", "infer", "--data-dir", str(data_dir), "--out-dir", str(out_dir), "--force",
            *options, *map(str, FIELDS))
    seconds = time.perf_counter() - start
    assert len(list(out_dir.glob("celeste-*.fits"))) == len(FIELDS)
    return seconds


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp) / "sdss"
        for seed, fid in enumerate(FIELDS, start=11):
            simulated_field(data_dir, 60, seed, fid, width=512, height=512)
        best = {name: float("inf") for name in CONFIGS}
        for _ in range(REPEAT):
            for name, options in CONFIGS.items():
                seconds = timed_run(data_dir, Path(tmp) / name, options)
                best[name] = min(best[name], seconds)
    rate = {name: len(FIELDS) / seconds * 3600 for name, seconds in best.items()}
    print(f"{len(FIELDS)} simulated fields (512 x 512 px, 60 sources), {available_cores()} cores, "
          f"best of {REPEAT} runs, start-up included")
    for name, options in CONFIGS.items():
        print(f"celeste infer {' '.join(options)}: {best[name]:.1f} s = "
              f"{rate[name]:.0f} fields/hour")
    print(f"fields_per_hour_j2t1={rate['j2t1']:.1f} fields_per_hour_j1t2={rate['j1t2']:.1f}")


if __name__ == "__main__":
    main()
