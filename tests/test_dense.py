"""Dense output (``sol``) per trajectory on every CPU backend."""
import pickle

import numpy as np
import pytest
import scipy.integrate

from gpuivp import solve_ivp
from problems import decay, vanderpol

BACKENDS = ["numba", "numpy", "cupy", "scipy"]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("method", ["RK23", "RK45", "DOP853"])
def test_sol_is_scipys_sol_trajectory_by_trajectory(method, backend):
    mu = np.array([0.5, 2.0])
    tq = np.linspace(0, 6, 25)
    kw = dict(method=method, rtol=1e-8, atol=1e-10, dense_output=True)
    res = solve_ivp(vanderpol, (0, 6), np.c_[[2.0, 0.0]], args=(mu,), backend=backend,
                    vectorized=True, **kw)
    assert res.sol(2.5).shape == (2, 2) and res.sol(tq).shape == (2, 2, 25)
    for i in range(2):
        ref = scipy.integrate.solve_ivp(vanderpol, (0, 6), [2.0, 0.0], args=(mu[i],), **kw)
        assert res.nfev[i] == ref.nfev  # DOP853 pays 3 evaluations per step, as scipy
        np.testing.assert_allclose(res.sol(tq)[:, i, :], ref.sol(tq), rtol=1e-10, atol=1e-11)


@pytest.mark.parametrize("backend", ["numba", "numpy", "cupy"])
@pytest.mark.parametrize("method", ["Tsit5", "RK4"])
def test_sol_of_other_methods_is_accurate(method, backend):
    lam = np.array([0.5, 1.0, 2.0])
    tq = np.linspace(0, 2, 9)
    res = solve_ivp(decay, (0, 2), np.c_[[1.0]], method=method, args=(lam,), rtol=1e-8,
                    atol=1e-10, dt=0.01 if method == "RK4" else None, dense_output=True,
                    backend=backend, vectorized=True)
    np.testing.assert_allclose(res.sol(tq)[0], np.exp(-np.outer(lam, tq)), atol=1e-6)


@pytest.mark.parametrize("backend", BACKENDS)
def test_sol_is_nan_outside_each_trajectorys_span(backend):
    def ground(t, y, g):
        return y[0]
    ground.terminal = True

    def fall(t, y, g):
        return (y[1], -g + 0.0 * y[0])

    res = solve_ivp(fall, (0, 2), np.array([[1.0, 5.0], [0.0, 0.0]]), args=(9.81,),
                    events=ground, dense_output=True, backend=backend, vectorized=True)
    values = res.sol(np.array([-0.1, 0.3, 0.8, 2.5]))
    assert np.all(np.isnan(values[:, :, [0, 3]]))
    assert np.isnan(values[0, 0, 2]) and not np.isnan(values[0, 1, 2])  # first has landed
    np.testing.assert_allclose(values[0, :, 1], np.array([1.0, 5.0]) - 9.81 * 0.3 ** 2 / 2, rtol=1e-6)


@pytest.mark.parametrize("backend", ["numba", "numpy", "cupy"])
def test_dense_budget_ends_only_that_trajectory(backend):
    mu = np.array([0.1, 8.0])  # the stiffer one needs far more steps
    res = solve_ivp(vanderpol, (0, 20), np.c_[[2.0, 0.0]], args=(mu,), dense_output=True,
                    dense_max_steps=100, backend=backend, vectorized=True)
    assert res.status.tolist() == [0, -4] and not res.success
    assert res.naccept[1] == 100 and "dense_max_steps" in res.message
    assert np.isnan(res.sol(19.0)[0, 1]) and not np.isnan(res.sol(19.0)[0, 0])


@pytest.mark.parametrize("backend", ["numba", "numpy", "cupy"])
def test_single_ivp_sol_has_scipys_shapes_and_results_pickle(backend):
    res = solve_ivp(decay, (0, 1), [1.0], args=(1.0,), dense_output=True, backend=backend,
                    vectorized=True)
    assert res.sol(0.5).shape == (1,) and res.sol([0.2, 0.4]).shape == (1, 2)
    back = pickle.loads(pickle.dumps(res))
    np.testing.assert_array_equal(back.sol([0.2, 0.4]), res.sol([0.2, 0.4]))
