"""The joint sweep (MODEL.md 5.7): block coordinate ascent over a field's sources in
conflict-free parallel batches, for a fixed number of passes or until the sources settle.

Each source's optimisation reports how much it raised the ELBO; the field's ELBO rises by the
sum.  A source whose ELBO still rises by more than SETTLED_RISE nats in a pass has moved by
about a posterior SD or more since its last turn (a rise of d nats along one direction is a
move of sqrt(2 d) SDs, given the rest), so its estimate is not yet the optimum's; a settled
source's last step was smaller, though a slow sweep may still be several such steps short of
the joint optimum.  In crowded fields the
sources trade light with their neighbours and settle slowly: there 3 passes leave many
unsettled, which ``--passes auto`` sweeps on until none is.
"""

import logging
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from celestecli._kernels.optimize import optimize_sources
from celestecli.infer.schedule import make_schedule
from celestecli.infer.settings import AUTO_PASSES

log = logging.getLogger(__name__)

# nats a source's ELBO may still rise by in a pass for it to count as settled (half a nat is a
# move of one posterior SD along one direction)
SETTLED_RISE = 0.5
# the most passes AUTO_PASSES makes (the 100 x 100 px Hubble box of M2, 347 sources in a
# globular cluster, settles in 62; simulated fields of isolated sources in 1 to 3)
MAX_AUTO_PASSES = 100


@dataclass
class SweepResult:
    """Per-source outcomes of the sweep (indexed like the problem's sources) and its course."""

    status: np.ndarray       # OPT_* code of each source's last optimisation
    iterations: np.ndarray   # trust-region iterations, summed over passes
    elbo: np.ndarray         # ELBO of each source's block after its last optimisation
    passes: int              # passes made
    unsettled: int           # sources whose ELBO rose by more than SETTLED_RISE in the last pass


def sweep(problem, targets: np.ndarray, passes: int | str, seed: int, trust_region: dict,
          threads: int, progress: Callable[[int], None] | None = None) -> SweepResult:
    """Optimise ``targets`` (the others stay fixed) for ``passes`` passes, or with AUTO_PASSES
    until no source's ELBO rises by more than SETTLED_RISE in a pass (MAX_AUTO_PASSES at
    most).  ``progress(n)`` is told of optimised sources."""
    # A source without neighbours does not see the others' updates: after the first pass it is
    # at its optimum, so later passes revisit only sources that have neighbours.
    coupled = np.array([s for s in targets if problem.neighbours[s]], dtype=np.int64)
    most = MAX_AUTO_PASSES if passes == AUTO_PASSES else passes
    first = make_schedule(targets, problem.neighbours, problem.pixel_cost, seed)
    later = (make_schedule(coupled, problem.neighbours, problem.pixel_cost, seed)
             if most > 1 else None)
    n = problem.n_sources
    status, iterations, evaluations = (np.zeros(n, dtype=np.int64) for _ in range(3))
    elbo = np.full(n, np.nan)
    rise = np.zeros(n)
    for pass_index in range(most):
        schedule = first if pass_index == 0 else later
        rise[:] = 0.0
        for b in range(schedule.n_batches):
            optimize_sources(problem.cy, schedule.batch_ptr[b:b + 2].copy(), schedule.comp_ptr,
                             schedule.comp_src, trust_region, 1, threads, status, iterations,
                             evaluations, elbo, rise)
            if progress is not None:
                progress(len(schedule.batch_sources(b)))
        unsettled = int(np.sum(rise[coupled] > SETTLED_RISE))
        log.debug("pass %d: the ELBO rose by %.1f nats; %d of %d sources with neighbours by "
                  "more than %g", pass_index + 1, float(rise.sum()), unsettled, coupled.size,
                  SETTLED_RISE)
        if passes == AUTO_PASSES and unsettled == 0:
            break
    return SweepResult(status=status, iterations=iterations, elbo=elbo,
                       passes=pass_index + 1, unsettled=unsettled)
