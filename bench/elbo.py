"""Cost of one ELBO evaluation (value + gradient + Hessian) per pixel-visit.

A realistic galaxy with two neighbours on a simulated full-size SDSS field (built-in setup):
the evaluation of that source's 44-parameter ELBO over its patch pixels in all five bands,
timed with 1 thread and with 2 threads.  Ends with the line
``elbo_us_per_pixel_visit=<float> speedup_2_threads=<float>``.
"""

import tempfile
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

from bench.common import best_time, simulated_field
from celestecli._kernels.elbo import SourceEvaluator
from celestecli.fields import FieldID
from celestecli.infer.problem import build_problem
from celestecli.sdss.image import load_field
from celestecli.sdss.layout import find_local
from celestecli.sdss.photoobj import read_photoobj

FIELD = FieldID(9999, 1, 1)


def pick_galaxy(problem) -> int:
    """A galaxy with exactly two neighbours and a patch of typical size."""
    entries = problem.entries
    candidates = [s for s in range(problem.n_sources)
                  if not entries.is_star[s] and len(problem.neighbours[s]) == 2]
    if not candidates:
        raise RuntimeError("no galaxy with two neighbours in the simulated field")
    costs = problem.pixel_cost[candidates]
    return candidates[int(np.argsort(costs)[len(costs) * 3 // 4])]


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp, threadpool_limits(1, user_api="blas"):
        data_dir = Path(tmp)
        simulated_field(data_dir, 500, seed=3, fid=FIELD)
        images = load_field(data_dir, FIELD)
        entries = read_photoobj(find_local(data_dir, FIELD, "photoObj"))
        problem = build_problem(images, entries)
        s = pick_galaxy(problem)
        evaluator = SourceEvaluator(problem.cy, s, n_threads=2)
        params = problem.params[s].copy()
        pixels = evaluator.n_pixels
        one = best_time(lambda: evaluator.evaluate(params, 2, 1), repeat=7, number=50)
        two = best_time(lambda: evaluator.evaluate(params, 2, 2), repeat=7, number=50)
        value = best_time(lambda: evaluator.evaluate(params, 0, 1), repeat=7, number=50)
    us = one / pixels * 1e6
    print(f"source {s}: galaxy, r flux {entries.gal_flux[s, 2]:.1f} nMgy, "
          f"neighbours {problem.neighbours[s]}, {pixels} pixel-visits per evaluation")
    print(f"value+gradient+Hessian, 1 thread:  {one * 1e3:.3f} ms = {us:.3f} us per pixel-visit")
    print(f"value+gradient+Hessian, 2 threads: {two * 1e3:.3f} ms (speedup {one / two:.2f}x)")
    print(f"value only, 1 thread:              {value / pixels * 1e6:.3f} us per pixel-visit")
    print(f"Celeste.jl reference: about 20 us per pixel-visit; this is {20.0 / us:.0f}x less")
    print(f"elbo_us_per_pixel_visit={us:.4f} speedup_2_threads={one / two:.3f}")


if __name__ == "__main__":
    main()
