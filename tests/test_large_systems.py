"""Large systems in the per-trajectory engine, and ``fun`` written in place.

From ``LOOP_MIN_N`` components on, the generated engine loops over state arrays instead of
scalarising every component. The loops make the same operations in the same order, so the
looped engine takes the scalarised engine's steps bit for bit (checked here by forcing
either form on the same problem); a 40-equation system takes scipy's steps.
"""
import numpy as np
import pytest
import scipy.integrate

from gpuivp import solve_ivp
from gpuivp.engines import per_trajectory as pt
from problems import blowup, lorenz

ARGS = (10.0, np.linspace(0.5, 20.0, 4), 8.0 / 3.0)
Y0 = np.c_[[1.0, 0.0, 0.0]]


def lorenz_inplace(t, y, dydt, sigma, rho, beta):
    dydt[0] = sigma * (y[1] - y[0])
    dydt[1] = y[0] * (rho - y[2]) - y[1]
    dydt[2] = y[0] * y[1] - beta * y[2]


def lorenz_list(t, y, sigma, rho, beta):
    return [sigma * (y[1] - y[0]), y[0] * (rho - y[2]) - y[1], y[0] * y[1] - beta * y[2]]


def lorenz_array(t, y, sigma, rho, beta):
    out = np.empty_like(y)
    out[0] = sigma * (y[1] - y[0])
    out[1] = y[0] * (rho - y[2]) - y[1]
    out[2] = y[0] * y[1] - beta * y[2]
    return out


def crossing(t, y, sigma, rho, beta):
    return y[0] - 1.0


N96 = 40


def lorenz96(t, y, F):
    """Lorenz-96, cyclic: ``(y[i+1] - y[i-2]) y[i-1] - y[i] + F`` (returns an array)."""
    out = np.empty_like(y)
    for i in range(N96):
        out[i] = (y[(i + 1) % N96] - y[(i - 2) % N96]) * y[(i - 1) % N96] - y[i] + F
    return out


def lorenz96_inplace(t, y, dydt, F):
    for i in range(N96):
        dydt[i] = (y[(i + 1) % N96] - y[(i - 2) % N96]) * y[(i - 1) % N96] - y[i] + F


def _fields(res):
    out = {f: getattr(res, f) for f in ("y", "y_final", "t_final", "nfev", "naccept",
                                        "nreject", "status")}
    if res.t_events is not None:
        out["t_events"], out["y_events"] = res.t_events, res.y_events
    if res.sol is not None:
        out["sol"] = res.sol(np.linspace(0.0, 2.0, 9))
    return out


CASES = {
    # adaptive, events (Brent on the interpolant), t_eval and dense output
    "RK45": dict(method="RK45", rtol=1e-6, atol=1e-8, t_eval=np.linspace(0.0, 2.0, 7),
                 events=crossing, dense_output=True),
    # DOP853's own error norm and its interpolant with three extra stages
    "DOP853": dict(method="DOP853", rtol=1e-8, atol=1e-10, t_eval=np.linspace(0.0, 2.0, 5)),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_looped_engine_takes_the_scalarised_engines_steps_bit_for_bit(case, monkeypatch):
    kw = CASES[case]
    scalar = solve_ivp(lorenz, (0.0, 2.0), Y0, args=ARGS, backend="numba", **kw)
    monkeypatch.setattr(pt, "LOOP_MIN_N", 1)
    assert pt.loops_for(3)
    looped = solve_ivp(lorenz, (0.0, 2.0), Y0, args=ARGS, backend="numba", **kw)
    a, b = _fields(scalar), _fields(looped)
    assert a.keys() == b.keys()
    for f in a:
        np.testing.assert_array_equal(np.asarray(a[f]), np.asarray(b[f]), err_msg=f)


def test_looped_fixed_step_final_state_reruns_a_failing_slice(monkeypatch):
    """RK4 to the final state only: the finiteness test per slice, as scalarised."""
    kw = dict(method="RK4", dt=0.01, args=(np.array([0.5, 1.0, 2.0]),))
    scalar = solve_ivp(blowup, (0.0, 1.5), np.c_[[1.0]], backend="numba", **kw)
    monkeypatch.setattr(pt, "LOOP_MIN_N", 1)
    looped = solve_ivp(blowup, (0.0, 1.5), np.c_[[1.0]], backend="numba", **kw)
    assert list(scalar.status) == [0, -3, -3]
    for f in ("y_final", "t_final", "nfev", "naccept", "status"):
        np.testing.assert_array_equal(getattr(looped, f), getattr(scalar, f), err_msg=f)


def test_generator_emits_loops_from_loop_min_n():
    from gpuivp.methods import METHODS
    tab = METHODS["RK45"]
    small = pt.EngineSource(tab, pt.LOOP_MIN_N - 1, ("scalar",), "float64", False, "cpu")
    large = pt.EngineSource(tab, pt.LOOP_MIN_N, ("scalar",), "float64", False, "cpu")
    big = pt.EngineSource(tab, 10 * pt.LOOP_MIN_N, ("scalar",), "float64", False, "cpu")
    assert not small.looped and large.looped
    assert "for j in range(nst):" in large.src and "range(nst)" not in small.src
    # The looped source does not grow with n; the interpolant is one function.
    assert big.src == large.src
    assert large.helpers == ["interp"] and large.src.count("def interp(") == 1


@pytest.mark.parametrize("inplace", [False, True])
def test_large_system_takes_scipys_steps(inplace):
    """Lorenz-96 (n = 40, looped engine), one forcing per trajectory: scipy's nfev exactly,
    values to 1e-9 relative (chaos amplifies last-bit differences of scipy's BLAS sums)."""
    F = np.array([2.0, 8.0])
    y0 = np.full(N96, 8.0)
    y0[19] += 0.01
    t_eval = np.linspace(0.0, 2.0, 5)
    fun = lorenz96_inplace if inplace else lorenz96
    res = solve_ivp(fun, (0.0, 2.0), np.c_[y0], args=(F,), backend="numba", rtol=1e-6,
                    atol=1e-8, t_eval=t_eval, inplace=inplace)
    assert pt.loops_for(N96)
    for i, Fi in enumerate(F):
        ref = scipy.integrate.solve_ivp(lorenz96, (0.0, 2.0), y0, args=(Fi,), rtol=1e-6,
                                        atol=1e-8, t_eval=t_eval)
        assert res.nfev[i] == ref.nfev
        np.testing.assert_allclose(res.y[:, i], ref.y, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("backend", ["numba", "numpy", "scipy"])
def test_inplace_fun_gives_the_returning_funs_results(backend):
    """tuple, list, array and in-place forms of one right-hand side: the same steps and
    values on every backend (numpy and scipy call it with a new dydt per call)."""
    kw = dict(method="RK45", rtol=1e-6, atol=1e-8, t_eval=np.linspace(0.0, 2.0, 5),
              backend=backend, vectorized=True, args=ARGS)
    ref = solve_ivp(lorenz, (0.0, 2.0), Y0, **kw)
    forms = [(lorenz_inplace, True), (lorenz_array, False)]
    if backend == "numba":
        forms.append((lorenz_list, False))
    for fun, inplace in forms:
        got = solve_ivp(fun, (0.0, 2.0), Y0, inplace=inplace, **kw)
        np.testing.assert_array_equal(got.nfev, ref.nfev, err_msg=fun.__name__)
        np.testing.assert_array_equal(got.y, ref.y, err_msg=fun.__name__)


def test_inplace_single_ivp_is_scipys():
    y0 = np.array([1.0, 0.0, 0.0])
    got = solve_ivp(lorenz_inplace, (0.0, 2.0), y0, args=(10.0, 28.0, 8.0 / 3.0),
                    inplace=True, rtol=1e-6, atol=1e-8)
    ref = scipy.integrate.solve_ivp(lorenz, (0.0, 2.0), y0, args=(10.0, 28.0, 8.0 / 3.0),
                                    rtol=1e-6, atol=1e-8)
    assert got.nfev == ref.nfev
    np.testing.assert_array_equal(got.y, ref.y)


def test_inplace_fun_that_returns_a_value_is_an_error():
    def returns(t, y, dydt, sigma, rho, beta):
        lorenz_inplace(t, y, dydt, sigma, rho, beta)
        return (1.0, 2.0, 3.0)

    with pytest.raises(ValueError, match="inplace=True.*return None"):
        solve_ivp(returns, (0.0, 1.0), Y0, args=ARGS, backend="numba", inplace=True)


def test_returning_nothing_without_inplace_says_to_pass_it():
    def fills(t, y, sigma, rho, beta):
        return None

    with pytest.raises(ValueError, match="pass inplace=True"):
        solve_ivp(fills, (0.0, 1.0), Y0, args=ARGS, backend="numba")


def test_inplace_must_be_a_bool():
    with pytest.raises(TypeError, match="`inplace`"):
        solve_ivp(lorenz, (0.0, 1.0), Y0, args=ARGS, inplace="yes")


# -- the numpy backend on large ensembles ---------------------------------------------------
def lorenz96_vec(t, y, F):
    """Lorenz-96 on (n, m) columns, the NumPy expression (returns a new array)."""
    return (np.roll(y, -1, axis=0) - np.roll(y, 2, axis=0)) * np.roll(y, 1, axis=0) - y + F


@pytest.mark.parametrize("method", ["RK45", "DOP853"])
def test_numpy_column_blocks_give_one_runs_results_bit_for_bit(method, monkeypatch):
    from gpuivp.backends import numpy as numpy_backend

    y0 = np.full((N96, 1), 8.0)
    y0[19] += 0.01
    F = np.linspace(2.0, 10.0, 10)
    kw = dict(method=method, rtol=1e-6, atol=1e-8, t_eval=np.linspace(0.0, 1.0, 5),
              events=lambda t, y, F: y[0] - 8.0, backend="numpy", vectorized=True,
              args=(F,))
    whole = solve_ivp(lorenz96_vec, (0.0, 1.0), y0, **kw)
    monkeypatch.setattr(numpy_backend, "BLOCK_VALUES", 1)
    monkeypatch.setattr(numpy_backend, "MIN_BLOCK_COLUMNS", 3)  # blocks of 3, 3, 3 and 1
    assert numpy_backend.block_columns(type("P", (), {"n": N96})()) == 3
    blocks = solve_ivp(lorenz96_vec, (0.0, 1.0), y0, **kw)
    for name, value in _fields(whole).items():
        if name == "sol":
            continue
        if isinstance(value, list):
            for a, b in zip(value, _fields(blocks)[name]):
                for u, v in zip(a, b):
                    np.testing.assert_array_equal(u, v, err_msg=name)
        else:
            np.testing.assert_array_equal(value, _fields(blocks)[name], err_msg=name)
    assert all(len(t) for t in whole.t_events[0])  # (events were found: the check has teeth)


def test_numpy_fun_returning_its_input_array_integrates_correctly():
    # y' = y returned as the very array `fun` was given: the engine must not keep it as f.
    def grow(t, y, a):
        return y

    res = solve_ivp(grow, (0.0, 1.0), np.ones((2, 3)), args=(np.ones(3),), backend="numpy",
                    vectorized=True, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(res.y_final, np.e, rtol=1e-8)  # (tolerance: rtol 1e-10 run)
