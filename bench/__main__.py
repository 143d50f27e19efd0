"""Run every benchmark in turn: ``python -m bench``."""

import importlib

BENCHMARKS = ["bench.elbo", "bench.infer_speed", "bench.m2_region", "bench.synthetic"]

for name in BENCHMARKS:
    print(f"== {name}", flush=True)
    importlib.import_module(name).main()
