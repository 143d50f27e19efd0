"""Conflict-free batches for the joint sweep (Cyclades, MODEL.md 5.7).

Targets are randomly permuted (seeded) and cut into consecutive batches; inside a batch the
connected components of the neighbour graph can be optimised concurrently, because no two
sources of different components are neighbours.  The batch size is chosen by the greedy
load-balancing score of Celeste, for a *nominal* thread count, so the partition - and hence
every per-source result - does not depend on how many threads actually run it.
"""

from dataclasses import dataclass

import numpy as np

NOMINAL_THREADS = 16


@dataclass
class Schedule:
    """Batches of components of sources, as the flat arrays the sweep kernel reads."""

    batch_ptr: np.ndarray  # (n_batches + 1,) into components
    comp_ptr: np.ndarray  # (n_components + 1,) into comp_src
    comp_src: np.ndarray  # source indices, component by component

    @property
    def n_batches(self) -> int:
        return len(self.batch_ptr) - 1

    def batch_sources(self, b: int) -> np.ndarray:
        start = self.comp_ptr[self.batch_ptr[b]]
        stop = self.comp_ptr[self.batch_ptr[b + 1]]
        return self.comp_src[start:stop]


def _components(batch: np.ndarray, neighbours: list[list[int]]) -> list[list[int]]:
    """Connected components (in batch order) of the neighbour graph restricted to ``batch``."""
    parent = {int(s): int(s) for s in batch}

    def find(s):
        while parent[s] != s:
            parent[s] = parent[parent[s]]
            s = parent[s]
        return s

    for s in batch:
        for t in neighbours[s]:
            if t in parent:
                rs, rt = find(int(s)), find(int(t))
                if rs != rt:
                    parent[max(rs, rt)] = min(rs, rt)
    groups: dict[int, list[int]] = {}
    for s in batch:
        groups.setdefault(find(int(s)), []).append(int(s))
    return list(groups.values())


def _idle_score(batches: list[list[list[int]]], cost: np.ndarray, threads: int) -> float:
    """Summed idle time when each batch's components go greedily to the least-loaded thread."""
    score = 0.0
    for comps in batches:
        loads = np.zeros(threads)
        for comp in sorted(comps, key=lambda c: -cost[c].sum()):
            loads[np.argmin(loads)] += cost[comp].sum()
        score += float((loads.max() - loads).sum())
    return score


def _cut(order: np.ndarray, size: int, neighbours) -> list[list[list[int]]]:
    return [_components(order[i:i + size], neighbours) for i in range(0, len(order), size)]


def make_schedule(targets: np.ndarray, neighbours: list[list[int]], cost: np.ndarray,
                  seed: int, batch_size: int | None = None,
                  threads: int = NOMINAL_THREADS) -> Schedule:
    """Seeded Cyclades partition of ``targets``; automatic batch size unless given."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(np.asarray(targets, dtype=np.int64))
    n = len(order)
    cost = np.asarray(cost, dtype=np.float64)
    if n == 0:
        return Schedule(np.zeros(1, np.int64), np.zeros(1, np.int64), np.zeros(0, np.int64))
    if batch_size is None:
        step = max(1, n // 100)
        best_size, best_score = 1, np.inf
        for size in range(1, n + 2, step):
            score = _idle_score(_cut(order, size, neighbours), cost, threads)
            if score <= best_score:
                best_size, best_score = size, score
        batch_size = best_size
    batches = _cut(order, max(1, batch_size), neighbours)
    comps = [c for batch in batches for c in batch]
    batch_ptr = np.concatenate([[0], np.cumsum([len(b) for b in batches])]).astype(np.int64)
    comp_ptr = np.concatenate([[0], np.cumsum([len(c) for c in comps])]).astype(np.int64)
    comp_src = np.array([s for c in comps for s in c], dtype=np.int64)
    return Schedule(batch_ptr, comp_ptr, comp_src)
