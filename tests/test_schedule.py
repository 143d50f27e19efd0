"""Conflict-free Cyclades batches (MODEL.md 5.7)."""

import numpy as np
import pytest

from celestecli.infer.schedule import _idle_score, make_schedule


def random_graph(rng, n, p):
    adj = np.triu(rng.random((n, n)) < p, 1)
    adj = adj | adj.T
    return [list(np.flatnonzero(row)) for row in adj]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_components_of_a_batch_are_never_neighbours_and_every_target_runs_once(seed):
    rng = np.random.default_rng(seed)
    neighbours = random_graph(rng, 200, 0.02)
    targets = np.sort(rng.choice(200, size=150, replace=False))
    schedule = make_schedule(targets, neighbours, rng.integers(50, 500, 200), seed=seed)
    assert sorted(schedule.comp_src.tolist()) == targets.tolist()
    for b in range(schedule.n_batches):
        comps = [set(schedule.comp_src[schedule.comp_ptr[c]:schedule.comp_ptr[c + 1]].tolist())
                 for c in range(schedule.batch_ptr[b], schedule.batch_ptr[b + 1])]
        owner = {s: i for i, comp in enumerate(comps) for s in comp}
        for s, i in owner.items():
            for t in neighbours[s]:
                assert owner.get(t, i) == i, "neighbours in different components of a batch"


def test_schedule_depends_on_the_seed_only():
    rng = np.random.default_rng(5)
    neighbours = random_graph(rng, 80, 0.05)
    cost = rng.integers(10, 100, 80)
    a = make_schedule(np.arange(80), neighbours, cost, seed=7)
    b = make_schedule(np.arange(80), neighbours, cost, seed=7)
    c = make_schedule(np.arange(80), neighbours, cost, seed=8)
    assert all(np.array_equal(x, y) for x, y in zip(
        (a.batch_ptr, a.comp_ptr, a.comp_src), (b.batch_ptr, b.comp_ptr, b.comp_src), strict=True))
    assert not np.array_equal(a.comp_src, c.comp_src)


def test_isolated_sources_run_in_parallel_and_empty_targets_are_fine():
    schedule = make_schedule(np.arange(40), [[] for _ in range(40)], np.ones(40), seed=1)
    # nothing conflicts: the best batch holds many single-source components
    assert max(np.diff(schedule.batch_ptr)) >= 16
    empty = make_schedule(np.zeros(0, np.int64), [], np.zeros(0), seed=1)
    assert empty.n_batches == 0 and empty.comp_src.size == 0


def test_idle_score_gives_each_component_to_the_least_loaded_thread():
    cost = np.array([5.0, 3.0, 2.0, 4.0, 4.0, 1.0])
    # largest first: 5 -> thread 0, 3 -> thread 1, 2 -> thread 1 (3 < 5): loads 5, 5, idle 0
    assert _idle_score([[[0], [1], [2]]], cost, threads=2) == 0.0
    # one component of cost 8 on one of three threads: 16 idle; then 5 | 3 | 1: 2 + 4 idle
    assert _idle_score([[[3, 4]], [[5], [1], [0]]], cost, threads=3) == 16.0 + 6.0
