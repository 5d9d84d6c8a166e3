"""Per-trajectory problem data: each trajectory its own span, tolerances, steps and t_eval.

A trajectory's results equal those of a scipy call with its own arguments: the same steps
(``nfev`` exact) and values to 1e-12 (the same operations in the same order; only libm's
``sin`` / ``cos`` may round differently between numba and NumPy). Chunked and Dask runs
equal one piece bit for bit.
"""
import os
import sys

import numpy as np
import pytest
import scipy.integrate as si

import gpuivp

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import host_kernels  # noqa: E402

#: ``cupy`` runs on the host (tests/host_kernels.py); ``cuda``: tests/_cudasim_worker.py.
BACKENDS = ["numba", "scipy", "numpy", "cupy"]


@pytest.fixture
def host_cupy(monkeypatch):
    """``backend="cupy"`` on the host, for the tests that ask for it."""
    return lambda: host_kernels.activate(monkeypatch)


def solve_ivp(fun, t_span, y0, backend="numba", **kw):
    if backend in ("numpy", "cupy"):
        kw["vectorized"] = True
    return gpuivp.solve_ivp(fun, t_span, y0, backend=backend, **kw)
#: Values agree to this (see the module docstring).
VALUE_RTOL = 1e-12


def forced(t, y, a):
    return (y[1], -a * y[0] + 0.1 * np.sin(t))


K = 6
A = np.linspace(1.0, 2.0, K)
Y0 = np.array([[1.0], [0.0]])
# Forward, backward, an empty span and a short one, in one ensemble.
T0 = np.array([0.0, 1.0, 2.0, 0.0, 5.0, 3.0])
T1 = np.array([5.0, -2.0, 4.0, 0.5, 1.0, 3.0])


def scipy_ref(i, t0=T0, t1=T1, **kw):
    return si.solve_ivp(forced, (t0[i], t1[i]), Y0[:, 0], args=(A[i],), **kw)


def assert_matches(res, i, ref, cols=None):
    assert res.nfev[i] == ref.nfev, (i, res.nfev[i], ref.nfev)
    assert res.status[i] == ref.status
    np.testing.assert_allclose(res.y_final[:, i], ref.y[:, -1], rtol=VALUE_RTOL, atol=1e-14)
    np.testing.assert_allclose(res.t_final[i], ref.t[-1], rtol=VALUE_RTOL, atol=0)


@pytest.mark.parametrize("backend", BACKENDS)
def test_own_spans_and_tolerances_match_scipy_per_trajectory(backend, host_cupy):
    if backend == "cupy":
        host_cupy()
    rtol = np.geomspace(1e-7, 1e-4, K)[None]      # (1, k)
    atol = np.tile(np.geomspace(1e-10, 1e-7, K), (2, 1))  # (n, k)
    res = solve_ivp(forced, (T0, T1), Y0, args=(A,), rtol=rtol, atol=atol, backend=backend)
    assert res.t.shape == (2, K)
    np.testing.assert_array_equal(res.t, [T0, T1])
    for i in range(K):
        assert_matches(res, i, scipy_ref(i, rtol=rtol[0, i], atol=atol[0, i]))


@pytest.mark.parametrize("backend", BACKENDS)
def test_own_first_and_max_step_match_scipy_per_trajectory(backend, host_cupy):
    if backend == "cupy":
        host_cupy()
    first = np.array([1e-3, 1e-2, 1e-4, 1e-2, 1e-3, 1e-3])
    max_step = np.array([0.5, np.inf, 0.1, 0.2, 1.0, 0.3])
    t1 = np.r_[T1[:-1], 3.5]  # (first_step on an empty span exceeds its bounds, as in scipy)
    res = solve_ivp(forced, (T0, t1), Y0, args=(A,), first_step=first, max_step=max_step,
                    backend=backend)
    for i in range(K):
        assert_matches(res, i, scipy_ref(i, t1=t1, first_step=first[i], max_step=max_step[i]))


@pytest.mark.parametrize("backend", BACKENDS)
def test_shared_t_eval_is_nan_outside_each_span(backend, host_cupy):
    if backend == "cupy":
        host_cupy()
    t_eval = np.linspace(-2.0, 5.0, 15)
    res = solve_ivp(forced, (T0, T1), Y0, args=(A,), t_eval=t_eval, backend=backend)
    np.testing.assert_array_equal(res.t, t_eval)
    for i in range(K):
        lo, hi = sorted((T0[i], T1[i]))
        inside = (t_eval >= lo) & (t_eval <= hi)
        forward = T1[i] >= T0[i]
        ref = scipy_ref(i, t_eval=t_eval[inside] if forward else t_eval[inside][::-1])
        got = res.y[:, i, inside] if forward else res.y[:, i, inside][:, ::-1]
        want = np.asarray(ref.y, dtype=float).reshape(2, -1)  # ref.y: [] if none
        if T0[i] == T1[i]:  # an empty span: y0 at t0 (scipy stores nothing there)
            want = np.repeat(Y0, np.count_nonzero(inside), axis=1)
        np.testing.assert_allclose(got, want, rtol=VALUE_RTOL, atol=1e-14)
        assert np.all(np.isnan(res.y[:, i, ~inside])), i
        assert res.nfev[i] == ref.nfev


@pytest.mark.parametrize("backend", BACKENDS)
def test_t_eval_per_trajectory_columns(backend, host_cupy):
    if backend == "cupy":
        host_cupy()
    t1 = np.array([5.0, -2.0, 4.0, 0.5, 1.0, 3.0])
    t0 = np.zeros(K)
    t_eval = np.linspace(t0, t1, 4)          # (n_t, k): column i inside span i
    res = solve_ivp(forced, (0.0, t1), Y0, args=(A,), t_eval=t_eval, backend=backend)
    assert res.t.shape == (4, K) and res.y.shape == (2, K, 4)
    np.testing.assert_array_equal(res.t, t_eval)
    for i in range(K):
        ref = scipy_ref(i, t0=t0, t1=t1, t_eval=t_eval[:, i])
        np.testing.assert_allclose(res.y[:, i], ref.y, rtol=VALUE_RTOL, atol=1e-14)
        assert res.nfev[i] == ref.nfev


@pytest.mark.parametrize("backend", ["numba", "numpy"])
def test_own_dt_equals_separate_runs(backend):
    """Fixed steps (which scipy has not): each trajectory equals a run of its own."""
    dt = np.array([0.1, 0.05, 0.2, 0.1, 0.3, 0.1])
    t1 = np.r_[T1[:-1], 3.5]
    t_eval = np.linspace(T0, t1, 3)
    res = solve_ivp(forced, (T0, t1), Y0, args=(A,), method="RK4", dt=dt, t_eval=t_eval,
                    backend=backend)
    for i in range(K):
        one = solve_ivp(forced, (T0[i], t1[i]), Y0, args=(A[i:i + 1],), method="RK4",
                        dt=dt[i], t_eval=t_eval[:, i], backend=backend)
        for f in ("nfev", "status", "t_final", "y_final"):
            np.testing.assert_array_equal(res[f][..., i], one[f][..., 0], err_msg=f)
        np.testing.assert_array_equal(res.y[:, i], one.y[:, 0])


@pytest.mark.parametrize("backend", BACKENDS)
def test_chunked_and_dask_runs_equal_one_piece(backend, host_cupy):
    if backend == "cupy":
        host_cupy()
    pytest.importorskip("dask")
    import gpuivp.dask
    kw = dict(args=(A,), rtol=np.geomspace(1e-7, 1e-4, K)[None], atol=1e-9,
              t_eval=np.linspace(-2.0, 5.0, 8), max_step=np.linspace(0.2, 1.0, K))
    whole = solve_ivp(forced, (T0, T1), Y0, backend=backend, **kw)
    chunked = solve_ivp(forced, (T0, T1), Y0, backend=backend, memory_budget=1, **kw)
    dasked = gpuivp.dask.solve_ivp(forced, (T0, T1), Y0, backend=backend, chunks=4,
                                   vectorized=backend in ("numpy", "cupy"), **kw)
    for other in (chunked, dasked):
        for f in ("t", "y", "t_final", "y_final", "status", "nfev", "naccept", "nreject"):
            np.testing.assert_array_equal(other[f], whole[f], err_msg=f)


@pytest.mark.parametrize("backend", ["numba", "numpy"])
def test_shared_values_are_the_broadcast_case(backend):
    """Per-trajectory arrays of one repeated value give the shared run, bit for bit."""
    kw = dict(args=(A,), t_eval=np.linspace(0.0, 2.0, 5), backend=backend)
    shared = solve_ivp(forced, (0.0, 2.0), Y0, rtol=1e-6, atol=1e-9, max_step=0.4, **kw)
    per = solve_ivp(forced, (np.zeros(K), np.full(K, 2.0)), Y0, rtol=np.full((1, K), 1e-6),
                    atol=np.full((2, K), 1e-9), max_step=np.full(K, 0.4), **kw)
    for f in ("y", "t_final", "y_final", "nfev"):
        np.testing.assert_array_equal(per[f], shared[f], err_msg=f)


@pytest.mark.parametrize("kw, name", [
    (dict(t_span=(np.zeros(3), np.ones(4))), "t_span"),
    (dict(t_span=(0.0, np.ones(4))), "t1"),
    (dict(rtol=np.full((1, 4), 1e-6)), "rtol"),
    (dict(rtol=np.full((3, K), 1e-6)), "rtol"),
    (dict(atol=np.full((2, 4), 1e-6)), "atol"),
    (dict(max_step=np.ones(4)), "max_step"),
    (dict(first_step=np.full(K, 1e-3), t_span=(0.0, np.full(K, 1e-4))), "first_step"),
    (dict(dt=np.ones(4), method="RK4"), "dt"),
    (dict(t_eval=np.zeros((3, 4))), "t_eval"),
    (dict(t_eval=np.linspace(0, 2, 3)[:, None] * np.ones(K), t_span=(0.0, np.ones(K))),
     "t_eval"),
    (dict(t_eval=np.array([0.0, 2.0, 1.0]), t_span=(0.0, np.ones(K))), "t_eval"),
])
def test_wrong_shapes_name_the_argument(kw, name):
    kw = dict(dict(t_span=(0.0, 1.0), args=(A,), backend="numba"), **kw)
    t_span = kw.pop("t_span")
    with pytest.raises(ValueError, match=f"`{name}`"):
        solve_ivp(forced, t_span, Y0, **kw)


def test_per_trajectory_data_needs_an_ensemble_y0():
    with pytest.raises(ValueError, match="`t1`.*1-D `y0`"):
        solve_ivp(forced, (0.0, np.ones(2)), Y0[:, 0], args=(1.0,))


@pytest.mark.parametrize("backend", ["numba", "scipy", "numpy"])
def test_dense_output_follows_each_span(backend):
    res = solve_ivp(forced, (T0, T1), Y0, args=(A,), dense_output=True, rtol=1e-8,
                    atol=1e-10, backend=backend)
    t = np.linspace(-2.0, 5.0, 29)
    ys = res.sol(t)
    for i in range(K):
        lo, hi = sorted((T0[i], T1[i]))
        inside = (t >= lo) & (t <= hi)
        assert np.all(np.isnan(ys[:, i, ~inside])), i
        if T0[i] != T1[i]:
            ref = scipy_ref(i, rtol=1e-8, atol=1e-10, dense_output=True)
            np.testing.assert_allclose(ys[:, i, inside], ref.sol(t[inside]), rtol=1e-10,
                                       atol=1e-12)
