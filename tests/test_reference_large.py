"""The large-systems benchmark's C reference (``benchmarks/reference/large_rk45.c`` on
``rk45.h``) is scipy's RK45: for a few trajectories of Lorenz-96 (n = 40) and Kuramoto
(N = 50) it takes scipy's steps (same status and ``nfev``, trajectory by trajectory)
and its final states and ``t_eval`` values agree with scipy's to
``large_problem.TOLERANCE`` relative: the two round differently (scipy's stage sums and
error norm are BLAS calls with FMA, NumPy sums Kuramoto's coupling pairwise, the C adds
left to right), and over these short spans that stays near 1e-8 at most (Lorenz-96
backwards, which is unstable, amplifies it most). Skipped without a C compiler.
"""
import os
import shutil
import sys

import numpy as np
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "benchmarks"))
from reference import build  # noqa: E402
from reference.large_problem import (  # noqa: E402
    MODELS, TOLERANCE, max_rel_diff, solve_c, solve_scipy)

#: (model, t_span): Lorenz-96 over short spans (its chaos amplifies rounding over the
#: benchmark's t in [0, 10]), forwards and backwards; Kuramoto over the benchmark's span.
CASES = [("lorenz96", (0.0, 2.0)), ("lorenz96", (1.0, 0.0)), ("kuramoto", None)]


@pytest.fixture(scope="module")
def solvers():
    if shutil.which(build.CC) is None:
        pytest.skip(f"no C compiler ({build.CC})")
    return build.load_large()


@pytest.mark.parametrize("name, t_span", CASES, ids=["lorenz96", "lorenz96-backward",
                                                      "kuramoto"])
def test_large_reference_takes_scipys_steps(solvers, name, t_span):
    model = MODELS[name]
    t_span = model.t_span if t_span is None else t_span
    param = model.param(5)
    t_eval = np.linspace(*t_span, 11)
    for te in (None, t_eval):
        y_s, status_s, nfev_s, eval_s = solve_scipy(model, param, te, t_span=t_span)
        y_c, status_c, nfev_c, eval_c = solve_c(solvers, model, param, te, t_span=t_span)
        np.testing.assert_array_equal(status_c, status_s)
        assert np.all(status_c == 0)
        np.testing.assert_array_equal(nfev_c, nfev_s)
        assert max_rel_diff(y_c, y_s) < TOLERANCE
        if te is not None:
            assert eval_c.shape == (model.n, param.size, te.size)
            assert max_rel_diff(eval_c, eval_s) < TOLERANCE
            # the first point is y0 exactly (x = 0 in the interpolant)
            np.testing.assert_array_equal(eval_c[:, :, 0], np.repeat(model.y0[:, None],
                                                                     param.size, 1))


def test_large_reference_empty_interval_and_failure(solvers):
    model = MODELS["lorenz96"]
    # t0 == t1: y0 at every t_eval point, nfev 1 (scipy's count)
    y, status, nfev, y_eval = solve_c(solvers, model, model.param(2), [3.0, 3.0],
                                      t_span=(3.0, 3.0))
    np.testing.assert_array_equal(nfev, [1, 1])
    np.testing.assert_array_equal(y_eval[:, :, 1], y)
    # F = inf: f is not finite at once, every step is rejected down to the minimum
    # step (status -1); the t_eval points never reached stay NaN
    y, status, nfev, y_eval = solve_c(solvers, model, np.array([8.0, np.inf]),
                                      np.linspace(0, 1, 5), t_span=(0.0, 1.0))
    np.testing.assert_array_equal(status, [0, -1])
    assert np.isnan(y_eval[:, 1, 1:]).all() and np.isfinite(y_eval[:, 0]).all()


@pytest.mark.parametrize("name", list(MODELS))
def test_large_problem_inplace_functions_equal_array_functions(name):
    # the benchmark's in-place loops compute the array functions' derivatives, for one
    # state (n,) and for a vectorized call (n, m) with per-column parameters
    model = MODELS[name]
    rng = np.random.default_rng(0)
    y = model.y0[:, None] + rng.standard_normal((model.n, 3))
    param = model.param(3)
    expected = model.fun(0.0, y, param, *model.shared)
    out = np.empty_like(y)
    model.fun_inplace(0.0, y, out, param, *model.shared)
    np.testing.assert_allclose(out, expected, rtol=1e-12, atol=1e-12)  # sums' order
    one = np.empty(model.n)
    model.fun_inplace(0.0, y[:, 1], one, param[1], *model.shared)
    np.testing.assert_allclose(one, model.fun(0.0, y[:, 1], param[1], *model.shared),
                               rtol=1e-12, atol=1e-12)
