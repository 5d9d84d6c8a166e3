"""Failures (docs/reference.md, "Statuses"): a failing trajectory gets its status code, never stops the
others, never changes their results (bit for bit), and never holds the call up.

Every right-hand side here serves every CPU backend: tuple return, NumPy functions, works on
scalars (``numba``, ``scipy``) and on ``(n, m)`` columns (``numpy`` with ``vectorized=True``).
"""
import warnings

import numpy as np
import pytest

from gpuivp import solve_ivp
from problems import SCIPY_BLAS_RTOL, blowup

BACKENDS = ["numba", "numpy", "cupy", "scipy"]
FIELDS = ("y", "y_final", "t_final", "status", "nfev", "naccept", "nreject")


def run(backend, fun, t_span, y0, **kw):
    if backend in ("numpy", "cupy"):
        kw.setdefault("vectorized", True)
    return solve_ivp(fun, t_span, y0, backend=backend, **kw)


def nan_at_t0(t, y, s):
    """NaN from the very first evaluation where s < 0."""
    return (-y[0] * np.sqrt(s),)


def nan_later(t, y, s):
    """Fine until t passes s, NaN after."""
    return (-y[0] + 0.1 * np.sqrt(s - t),)


def oscillator(t, y, omega):
    """A fast oscillator needs many steps: the max_steps case."""
    return (y[1], -omega * omega * y[0])


# name -> (fun, y0 (n, 1), healthy parameters (k = 5), bad value put at BAD, status, kwargs)
BAD = 2
CASES = {
    "step-too-small": (blowup, [1.0], [0.1, 0.2, 1.0, 0.3, 0.05], 1.0, -1, {}),
    "nan-at-t0": (nan_at_t0, [1.0], [1.0, 2.0, -1.0, 0.5, 3.0], -1.0, -3, {}),
    "nan-later": (nan_later, [1.0], [5.0, 6.0, 1.0, 7.0, 8.0], 1.0, -3, {}),
    "max-steps": (oscillator, [1.0, 0.0], [1.0, 2.0, 200.0, 1.5, 0.5], 200.0, -2,
                  dict(max_steps=80)),
}
T_SPAN = (0.0, 2.0)
T_EVAL = np.linspace(0.0, 2.0, 9)


def _without(res, i):
    """``res`` with trajectory ``i`` removed, for the fields compared bit for bit."""
    out = {}
    for name in FIELDS:
        value = np.asarray(res[name])
        axis = 1 if value.ndim >= 2 else 0
        out[name] = np.delete(value, i, axis=axis)
    return out


@pytest.mark.timeout(60)
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("method", ["RK45", "DOP853"])
def test_failure_is_isolated(backend, case, method):
    """The failing trajectory gets its code; the others are bit-identical to a run without it."""
    fun, y0, params, bad, status, kw = CASES[case]
    params = np.array(params)
    assert params[BAD] == bad
    y0 = np.c_[y0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)   # scipy's numpy arithmetic on NaN
        res = run(backend, fun, T_SPAN, y0, method=method, args=(params,), t_eval=T_EVAL,
                  **kw)
        ref = run(backend, fun, T_SPAN, y0, method=method, args=(np.delete(params, BAD),),
                  t_eval=T_EVAL, **kw)
    assert res.status[BAD] == status, res.message
    assert not res.success
    np.testing.assert_array_equal(ref["status"], 0)
    for name, value in _without(res, BAD).items():
        np.testing.assert_array_equal(value, ref[name], err_msg=name)
    # Where it stopped: before t1, its t_eval outputs after that time are NaN.
    t_stop = res.t_final[BAD]
    assert T_SPAN[0] <= t_stop < T_SPAN[1]
    after = T_EVAL > t_stop
    assert np.all(np.isnan(res.y[:, BAD, after]))
    if t_stop > T_SPAN[0]:
        assert np.all(np.isfinite(res.y[:, BAD, ~after]))
    assert np.all(np.isfinite(res.y_final[:, BAD]))
    if status == -3 and case == "nan-at-t0":
        assert t_stop == T_SPAN[0] and res.nfev[BAD] == 1 and res.naccept[BAD] == 0
        np.testing.assert_array_equal(res.y_final[:, BAD], y0[:, 0])
        if T_EVAL[0] == T_SPAN[0]:  # its state at t0 is y0, on every backend
            np.testing.assert_array_equal(res.y[:, BAD, 0], y0[:, 0])
    if status == -2:
        assert res.naccept[BAD] + res.nreject[BAD] == kw["max_steps"]
    assert str(status) in res.message


@pytest.mark.timeout(60)
@pytest.mark.parametrize("case", list(CASES))
def test_failure_codes_agree_across_backends(case, cupy_on_host):
    """numba, numpy, cupy and scipy stop the failing trajectory at the same place, same counts."""
    fun, y0, params, bad, status, kw = CASES[case]
    results = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        for backend in BACKENDS:
            results[backend] = run(backend, fun, T_SPAN, np.c_[y0], args=(np.array(params),),
                                   **kw)
    ref = results["scipy"]
    for backend in ("numba", "numpy", "cupy"):
        res = results[backend]
        np.testing.assert_array_equal(res.status, ref.status)
        if case == "nan-later":
            # Creeping up on the NaN at t = s, rounding differences of 1e-16 change which
            # attempts land past it: only the stopping time agrees.
            np.testing.assert_allclose(res.t_final, ref.t_final, rtol=0, atol=SCIPY_BLAS_RTOL)
            continue
        np.testing.assert_array_equal(res.nfev, ref.nfev)
        np.testing.assert_array_equal(res.naccept, ref.naccept)
        np.testing.assert_array_equal(res.nreject, ref.nreject)
        # same steps: same stopping time (the state near a blow-up is ill-conditioned)
        np.testing.assert_allclose(res.t_final, ref.t_final, rtol=SCIPY_BLAS_RTOL)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("backend", BACKENDS)
def test_failure_backward_in_time(backend):
    """y' = -c y^2 integrated backwards from t = 0 blows up at t = -1/c."""
    c = np.array([0.2, 1.0, 0.3])
    res = run(backend, blowup, (0.0, -2.0), np.c_[[1.0]], args=(-c,))
    np.testing.assert_array_equal(res.status, [0, -1, 0])
    assert -1.0 < res.t_final[1] < -0.99
    ref = run(backend, blowup, (0.0, -2.0), np.c_[[1.0]], args=(-c[[0, 2]],))
    np.testing.assert_array_equal(res.y_final[:, [0, 2]], ref.y_final)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("backend", ["numba", "numpy"])
@pytest.mark.parametrize("case", ["nan-later", "step-too-small"])
def test_fixed_step_failure_is_non_finite_and_isolated(backend, case):
    """RK4 at a fixed step: a NaN or an overflow stops that trajectory with -3."""
    fun, y0, params, bad, status, kw = CASES[case]
    params = np.array(params)
    res = run(backend, fun, T_SPAN, np.c_[y0], method="RK4", dt=0.01, args=(params,),
              t_eval=T_EVAL)
    ref = run(backend, fun, T_SPAN, np.c_[y0], method="RK4", dt=0.01,
              args=(np.delete(params, BAD),), t_eval=T_EVAL)
    assert res.status[BAD] == -3
    for name, value in _without(res, BAD).items():
        np.testing.assert_array_equal(value, ref[name], err_msg=name)
    assert res.t_final[BAD] < T_SPAN[1]


@pytest.mark.timeout(60)
@pytest.mark.parametrize("backend", ["numba", "numpy", "cupy"])
def test_fixed_step_max_steps(backend):
    res = run(backend, oscillator, T_SPAN, np.c_[[1.0, 0.0]], method="RK4", dt=0.01,
              args=(np.array([1.0, 2.0]),), max_steps=50)
    np.testing.assert_array_equal(res.status, -2)
    np.testing.assert_array_equal(res.naccept, 50)
    np.testing.assert_allclose(res.t_final, 0.5, rtol=1e-12)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("backend", ["auto", "scipy", "numba", "numpy"])
def test_single_ivp_nan_at_t0_does_not_hang(backend):
    """scipy itself loops forever on a NaN derivative at t0; gpuivp stops with -3."""
    kw = dict(vectorized=True) if backend == "numpy" else {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        res = solve_ivp(nan_at_t0, (0.0, 1.0), [1.0], args=(-1.0,), backend=backend, **kw)
    assert res.status == -3
    assert not res.success
    assert res.t[0] == 0.0 and res.y.shape[0] == 1


@pytest.mark.timeout(60)
def test_single_ivp_nan_at_t0_scipy_with_t_eval_and_events():
    def event(t, y, s):
        return y[0] - 0.5

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        res = solve_ivp(nan_at_t0, (0.0, 1.0), [1.0], args=(-1.0,), t_eval=[0.0, 0.5],
                        events=event)
    assert res.status == -3
    # Only the t_eval point at t0 is reached; the state there is y0.
    np.testing.assert_array_equal(res.t, [0.0])
    np.testing.assert_array_equal(res.y, [[1.0]])
    assert len(res.t_events) == 1 and res.t_events[0].size == 0


@pytest.mark.timeout(60)
def test_single_ivp_failure_keeps_scipys_status():
    """A single IVP on scipy is scipy: a blow-up is its status -1."""
    res = solve_ivp(blowup, (0.0, 2.0), [1.0], args=(1.0,))
    assert res.status == -1
    assert res.message.startswith("Required step size")


@pytest.mark.timeout(60)
@pytest.mark.parametrize("backend", BACKENDS)
def test_all_trajectories_failing(backend):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        res = run(backend, nan_at_t0, T_SPAN, np.ones((1, 3)), args=(-np.ones(3),))
    np.testing.assert_array_equal(res.status, -3)
    np.testing.assert_array_equal(res.nfev, 1)
    assert np.all(np.isnan(res.y[:, :, 1]))
    assert "3 x -3" in res.message


# -- floating-point trouble inside fun -------------------------------------------------------

def divide_by_zero(t, y, c):
    """1 / 0 once floor(c t) reaches 1 (for c = 1: at t = 1); c = 0 never."""
    return (-y[0] + 1.0 / (np.floor(c * t) - 1.0) + 1.0,)


def divide_by_zero_at_t0(t, y, c):
    return (-y[0] / c,)


def log_of_negative(t, y, c):
    return (-y[0] + np.log(c - t),)


def exp_overflow(t, y, c):
    return (-y[0] + np.exp(c * 1000.0 * t),)


def exp_overflow_at_t0(t, y, c):
    return (-y[0] + np.exp(c * 1000.0),)


def sqrt_of_negative_state(t, y, c):
    """sqrt(y) goes NaN when y crosses zero: y' = -c makes y negative at t = 1/c."""
    return (-c + 0.0 * np.sqrt(y[0]),)


TROUBLE = {
    "1/0-later": (divide_by_zero, [0.0, 0.0, 1.0, 0.0], -3),
    "1/0-at-t0": (divide_by_zero_at_t0, [1.0, 2.0, 0.0, 3.0], -3),
    "log-negative": (log_of_negative, [5.0, 4.0, 1.0, 3.0], -3),
    "exp-overflow": (exp_overflow, [0.0, 0.0, 1.0, 0.0], None),
    "exp-overflow-at-t0": (exp_overflow_at_t0, [0.0, 0.0, 1.0, 0.0], -3),
    "sqrt-negative-state": (sqrt_of_negative_state, [0.1, 0.2, 2.0, 0.3], -3),
}


@pytest.mark.timeout(60)
@pytest.mark.parametrize("backend", ["numba", "numpy"])
@pytest.mark.parametrize("case", list(TROUBLE))
def test_floating_point_trouble_is_nan_for_that_trajectory(backend, case):
    """No exception for the call, even with NumPy set to raise and warnings as errors."""
    fun, params, status = TROUBLE[case]
    params = np.array(params)
    with np.errstate(all="raise"), warnings.catch_warnings():
        warnings.simplefilter("error")
        res = run(backend, fun, T_SPAN, np.c_[[1.0]], args=(params,), t_eval=T_EVAL)
        ref = run(backend, fun, T_SPAN, np.c_[[1.0]], args=(np.delete(params, BAD),),
                  t_eval=T_EVAL)
    if status is None:
        assert res.status[BAD] < 0
    else:
        assert res.status[BAD] == status
    np.testing.assert_array_equal(ref.status, 0)
    for name, value in _without(res, BAD).items():
        np.testing.assert_array_equal(value, ref[name], err_msg=name)


def python_zero_division(t, y, c):
    """In plain Python at t0 = 0 this is a ZeroDivisionError; compiled it is inf."""
    return (-y[0] + c / t,)


@pytest.mark.timeout(60)
def test_python_zero_division_in_the_probe_is_not_an_error_numba():
    res = solve_ivp(python_zero_division, (0.0, 1.0), np.c_[[1.0]], args=(np.ones(2),),
                    backend="numba")
    np.testing.assert_array_equal(res.status, -3)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("backend", BACKENDS)
def test_max_steps_never_hangs_on_a_very_long_problem(backend):
    """A problem that would take ~10^7 steps stops after max_steps attempts, promptly."""
    import time
    start = time.perf_counter()
    res = run(backend, oscillator, (0.0, 1e6), np.c_[[1.0, 0.0]], args=(np.array([10.0, 20.0]),),
              rtol=1e-8, max_steps=2000)
    np.testing.assert_array_equal(res.status, -2)
    np.testing.assert_array_equal(res.naccept + res.nreject, 2000)
    assert time.perf_counter() - start < 30


@pytest.mark.timeout(60)
@pytest.mark.parametrize("progress", [False, True])
def test_an_engine_that_stops_advancing_is_an_error_not_a_hang(progress, monkeypatch):
    """The host loop around the compiled engine bounds its calls (a bug guard): an engine
    that leaves every trajectory running raises instead of being called forever."""
    from gpuivp.backends import numba as numba_backend

    monkeypatch.setattr(numba_backend, "compiled_engine",
                        lambda problem, tableau: lambda a, b, *arrays: None)
    with pytest.raises(RuntimeError, match="still running after .* please report"):
        solve_ivp(oscillator, (0.0, 1.0), np.c_[[1.0, 0.0]], args=(np.array([1.0, 2.0]),),
                  backend="numba", max_steps=5000, progress=progress)


def blowup_one_component(t, y, c):
    """Each component blows up as ``1 / (1 - c_j t)`` on its own (``c_j = 0``: constant)."""
    return (c[0] * y[0] * y[0], c[1] * y[1] * y[1], c[2] * y[2] * y[2])


@pytest.mark.timeout(60)
def test_fixed_step_non_finite_check_sees_every_component_and_only_non_finite_values():
    """A trajectory fails with -3 when any one of its components overflows, and runs to the
    end with huge finite components (``±1e308``): the same statuses, counts and results on
    the compiled engine (one fused finiteness test per step) as on the array engine."""
    c = np.array([[0.0, 1.0, 0.0, 0.0, 0.0],
                  [0.0, 0.0, 1.0, 0.0, 0.0],
                  [0.0, 0.0, 0.0, 1.0, 0.0]])
    y0 = np.ones((3, 5))
    y0[:, 4] = [1e308, -1e308, 1e308]
    got = {b: run(b, blowup_one_component, T_SPAN, y0, method="RK4", dt=0.01, args=(c,))
           for b in ("numba", "numpy")}
    for res in got.values():
        np.testing.assert_array_equal(res.status, [0, -3, -3, -3, 0])
        np.testing.assert_array_equal(res.y_final[:, 4], y0[:, 4])
    for name in ("status", "nfev", "naccept", "t_final", "y_final"):
        np.testing.assert_array_equal(got["numba"][name], got["numpy"][name], err_msg=name)
    np.testing.assert_array_equal(got["numba"].nfev[[0, 4]], 1 + 4 * 200)
