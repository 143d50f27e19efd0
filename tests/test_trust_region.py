"""The nogil trust-region Newton solver against scipy's trust-exact on small problems."""

import numpy as np
import pytest
import scipy.optimize
import scipy.optimize._trustregion_exact as trust_exact

from celestecli._kernels.optimize import trust_region
from celestecli.infer.settings import ELBO_TRUST_REGION


def rosenbrock(x):
    return (scipy.optimize.rosen(x), scipy.optimize.rosen_der(x), scipy.optimize.rosen_hess(x))


def quartic(x):
    """A non-convex quartic with an indefinite Hessian near the start."""
    a = np.array([[3.0, 1.0, 0.0], [1.0, -2.0, 0.5], [0.0, 0.5, 1.0]])
    f = 0.25 * np.sum(x**4) + 0.5 * x @ a @ x + x[0]
    g = x**3 + a @ x + np.array([1.0, 0.0, 0.0])
    h = np.diag(3 * x**2) + a
    return f, g, h


class RecordingObjective:
    """Remember every distinct point the optimizer evaluates."""

    def __init__(self, fun):
        self.fun = fun
        self.points = []

    def __call__(self, x):
        x = np.array(x, dtype=float)
        if not self.points or not np.array_equal(self.points[-1], x):
            self.points.append(x)
        return self.fun(x)


class ExactSubproblem(trust_exact.IterativeSubproblem):
    """scipy's subproblem solver with tight tolerances (its defaults stop 10-20 % off)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **dict(kwargs, k_easy=1e-12, k_hard=1e-12))


@pytest.mark.parametrize("fun,x0", [
    (rosenbrock, np.array([-1.2, 1.0])),
    (rosenbrock, np.array([-1.0, 1.5, 0.5, -0.5])),
    (quartic, np.array([0.3, 0.2, -0.4])),
])
def test_iterates_agree_with_scipy_trust_exact(fun, x0, monkeypatch):
    monkeypatch.setattr(trust_exact, "IterativeSubproblem", ExactSubproblem)
    theirs = RecordingObjective(lambda x: fun(x)[0])
    scipy.optimize.minimize(theirs, x0, method="trust-exact", jac=lambda x: fun(x)[1],
                            hess=lambda x: fun(x)[2],
                            options=dict(initial_trust_radius=1.0, eta=0.15, gtol=1e-10))
    ours = RecordingObjective(fun)
    settings = dict(ELBO_TRUST_REGION, eta=0.15, x_tol=0.0, f_tol=0.0, g_tol=1e-10,
                    max_iter=200, shrink_to_step=False)   # scipy's rules
    x, f, code, n_iter, n_eval = trust_region(ours, x0, settings)
    assert code == 0
    n = min(len(theirs.points), len(ours.points))
    assert n >= 8
    for mine, scipys in zip(ours.points[:n], theirs.points[:n], strict=True):
        np.testing.assert_allclose(mine, scipys, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(x, scipy.optimize.minimize(
        lambda x: fun(x)[0], x0, method="trust-exact", jac=lambda x: fun(x)[1],
        hess=lambda x: fun(x)[2], options=dict(gtol=1e-10)).x, atol=1e-6)


def hyperbola(x):
    """sqrt(1 + x^2): convex but nearly flat far out, so Newton steps overshoot."""
    r = np.sqrt(1.0 + x @ x)
    return r, x / r, (np.eye(len(x)) - np.outer(x, x) / r**2) / r


@pytest.mark.parametrize("shrink_to_step,expected_second_step", [(True, 0.25 * 30.0),
                                                                   (False, 0.25 * 100.0)])
def test_rejected_interior_step_shrinks_radius(shrink_to_step, expected_second_step):
    """From x = 3 the Newton step is -30 (interior for radius 100) and is rejected; the fixed
    rule shrinks the radius to a quarter of that step, Optim 0.7-0.10 to a quarter of 100."""
    recorder = RecordingObjective(hyperbola)
    settings = dict(ELBO_TRUST_REGION, initial_radius=100.0, max_radius=1e3, x_tol=0.0,
                    f_tol=0.0, g_tol=1e-10, shrink_to_step=shrink_to_step)
    x, f, code, *_ = trust_region(recorder, np.array([3.0]), settings)
    first, second = (np.linalg.norm(p - recorder.points[0]) for p in recorder.points[1:3])
    np.testing.assert_allclose(first, 30.0, rtol=1e-12)
    assert hyperbola(recorder.points[1])[0] > hyperbola(recorder.points[0])[0]
    np.testing.assert_allclose(second, min(expected_second_step, 30.0), rtol=1e-9)
    assert code == 0 and abs(x[0]) < 1e-6


def test_function_never_increases_and_failure_is_reported():
    values = []

    def fun(x):
        f, g, h = quartic(x)
        values.append(f)
        return f, g, h

    x, f, code, n_iter, n_eval = trust_region(fun, np.array([2.0, -1.0, 1.0]), ELBO_TRUST_REGION)
    assert code == 0 and f <= values[0]
    assert n_eval == len(values)

    def broken(x):
        raise FloatingPointError("non-finite")

    *_, code, n_iter, n_eval = trust_region(broken, np.zeros(3), ELBO_TRUST_REGION)
    assert code == 2


def test_non_finite_trial_values_are_rejected_steps():
    def fun(x):  # a bowl with its minimum at (-1, -1), undefined (NaN) beyond x0 < -0.5
        value = np.nan if x[0] < -0.5 else 0.5 * x @ x + x.sum()
        return value, x + 1.0, np.eye(2)

    x, f, code, _, _ = trust_region(fun, np.zeros(2), dict(ELBO_TRUST_REGION))
    assert np.isfinite(f) and x[0] >= -0.5
    assert f == pytest.approx(0.5 * x @ x + x.sum(), rel=1e-12)


def test_an_unexpected_error_in_the_objective_is_raised():
    def fun(x):
        if np.abs(x).max() > 0.1:
            raise RuntimeError("objective broke")
        return 0.5 * x @ x + x.sum(), x + 1.0, np.eye(2)

    with pytest.raises(RuntimeError, match="objective broke"):
        trust_region(fun, np.zeros(2), dict(ELBO_TRUST_REGION))
