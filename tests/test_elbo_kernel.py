"""The compiled ELBO kernel vs the independent numpy/autograd reference and finite differences."""

import numpy as np
import pytest
from kernel_problems import cy_problem_from_reference, reference_images_from_maps
from reference_elbo import elbo_free_grad_hess, elbo_grad_hess
from reference_problems import random_problem

from celestecli._kernels.elbo import SourceEvaluator
from celestecli._kernels.openmp_info import openmp_enabled
from celestecli._kernels.transform import py_enforce, py_free_derivatives, py_to_bound, py_to_free
from celestecli.model import params as layout
from celestecli.model.params import generic_init

CASES = [  # (kind, number of sources, number of images, seed)
    ("star", 1, 2, 1),
    ("galaxy", 2, 2, 2),
    ("mixed", 4, 3, 3),
    ("galaxy", 3, 3, 4),
    ("star", 4, 2, 5),
]


def _rel(a, b):
    a, b = np.asarray(a), np.asarray(b)
    return np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300)


@pytest.fixture(scope="module", params=CASES, ids=lambda c: f"{c[0]}-{c[1]}src-{c[2]}img")
def case(request):
    kind, n_src, n_img, seed = request.param
    prob = random_problem(np.random.default_rng(seed), n_sources=n_src, n_images=n_img, kind=kind)
    cy = cy_problem_from_reference(prob)
    return prob, cy, SourceEvaluator(cy, prob.active, n_threads=2)


def test_value_gradient_hessian_match_reference(case):
    prob, cy, ev = case
    images = reference_images_from_maps(prob)
    ref_v, ref_g, ref_h = elbo_grad_hess(prob.params, images, prob.patches, prob.active)
    v, g, h = ev.evaluate(prob.params[prob.active], mode=2, n_threads=1)
    assert ev.n_pixels == sum(len(im.x) for im in images)
    assert abs(v - ref_v) <= 1e-10 * abs(ref_v)
    # each block relative to its own scale: positions (degrees) have huge derivatives
    for block in (slice(0, 2), slice(2, 26), slice(26, 44)):
        assert _rel(g[block], ref_g[block]) <= 1e-10
        for other in (slice(0, 2), slice(2, 26), slice(26, 44)):
            assert _rel(h[block, other], ref_h[block, other]) <= 1e-10


def test_value_only_and_gradient_modes_agree_with_full(case):
    prob, _, ev = case
    th = prob.params[prob.active]
    v2, g2, _ = ev.evaluate(th, mode=2)
    v1, g1, h1 = ev.evaluate(th, mode=1)
    v0, g0, _ = ev.evaluate(th, mode=0)
    assert v0 == v1 == v2
    np.testing.assert_array_equal(g1, g2)
    assert g0 is None and h1 is None


def _central_difference(fun, x, index, step):
    """Five-point central difference (fourth order) of fun along coordinate ``index``."""
    points = []
    for k in (-2, -1, 1, 2):
        shifted = x.copy()
        shifted[index] += k * step
        points.append(shifted)
    h = (points[2][index] - points[1][index]) / 2  # the step actually taken (rounding of x + h)
    fm2, fm1, fp1, fp2 = (fun(p) for p in points)
    return (fm2 - 8 * fm1 + 8 * fp1 - fp2) / (12 * h)


def test_gradient_and_hessian_match_finite_differences(case):
    prob, _, ev = case
    th = prob.params[prob.active].copy()
    _, g, h = ev.evaluate(th, mode=2)
    assert np.max(np.abs(h - h.T)) <= 1e-12 * np.max(np.abs(h))
    for p in range(44):
        # fourth-order differences allow steps large enough to keep rounding noise low:
        # 1e-6 degrees (0.01 pixel) for positions, 1e-3 of the value elsewhere
        step = 1e-6 if p < 2 else 1e-3 * max(abs(th[p]), 0.05)
        fd = _central_difference(lambda t: ev.evaluate(t, mode=0)[0], th, p, step)
        scale = max(abs(g[p]), 1e-6 * np.max(np.abs(g[2:])))
        assert abs(fd - g[p]) <= 1e-6 * scale, (p, fd, g[p])
        fd_row = _central_difference(lambda t: ev.evaluate(t, mode=1)[1], th, p, step)
        # entry (p, q) on its natural scale sqrt(|H_pp H_qq|), invariant to parameter units
        scale = np.maximum(np.abs(h[p]), np.sqrt(np.abs(h[p, p] * np.diag(h))))
        assert np.all(np.abs(fd_row - h[p]) <= 1e-6 * scale), p


@pytest.mark.skipif(not openmp_enabled(), reason="serial build: one thread only")
def test_one_and_two_threads_agree(case):
    prob, _, ev = case
    th = prob.params[prob.active]
    v1, g1, h1 = ev.evaluate(th, mode=2, n_threads=1)
    v2, g2, h2 = ev.evaluate(th, mode=2, n_threads=2)
    assert abs(v1 - v2) <= 1e-12 * abs(v1)
    assert _rel(g2, g1) <= 1e-12
    assert _rel(h2, h1) <= 1e-12


def test_free_coordinates_match_reference_and_finite_differences(case):
    prob, _, ev = case
    center = prob.pos_center
    free = py_to_free(prob.params[prob.active], center)
    _, g, h = ev.evaluate(py_to_bound(free, center), mode=2)
    g_free, h_free = py_free_derivatives(free, center, g, h)
    images = reference_images_from_maps(prob)
    _, ref_g, ref_h = elbo_free_grad_hess(free, prob.params, images, prob.patches, center,
                                          prob.active)
    assert _rel(g_free, ref_g) <= 1e-9
    assert _rel(h_free, ref_h) <= 1e-9
    assert np.array_equal(h_free, h_free.T)
    for q in range(41):
        value = lambda f: ev.evaluate(py_to_bound(f, center), mode=0)[0]  # noqa: E731
        fd = _central_difference(value, free, q, 1e-3)
        assert abs(fd - g_free[q]) <= 1e-6 * max(abs(g_free[q]), 1e-3 * np.max(np.abs(g_free)))


def test_enforce_keeps_simplex_entries_strictly_above_their_floor():
    # chi = (3, 0): the entry lifted to its floor and rescaled must not round back onto it
    params = generic_init(10.0, 0.5)
    params[list(layout.CHI)] = 3.0, 0.0
    center = params[:2].copy()
    enforced = py_enforce(params, center)
    assert enforced[layout.CHI[1]] > layout.CHI_LOWER
    assert enforced[list(layout.CHI)].sum() == pytest.approx(1.0, abs=1e-12)
    free = py_to_free(enforced, center)
    assert np.all(np.isfinite(free))
    np.testing.assert_allclose(py_to_bound(free, center), enforced, rtol=1e-9, atol=1e-15)
