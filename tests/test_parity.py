"""scipy parity: RK23, RK45 and DOP853 in float64 on the CPU engines take scipy's steps,
trajectory by trajectory (equal nfev; values equal to rounding: SCIPY_BLAS_RTOL of the trajectory's scale)."""
import numpy as np
import pytest
import scipy.integrate

from gpuivp import solve_ivp
from problems import ENSEMBLES, SCIPY_BLAS_RTOL

SCIPY_METHODS = ["RK23", "RK45", "DOP853"]
ENGINES = ["numba", "numpy", "cupy"]


def scipy_reference(fun, t_span, y0, args, i, **kw):
    y0_i = np.broadcast_to(y0, (y0.shape[0], max(y0.shape[1], _k(args, y0))))[:, i]
    args_i = tuple(a[..., i] if np.ndim(a) else a for a in args)
    return scipy.integrate.solve_ivp(fun, t_span, y0_i, args=args_i, **kw)


def _k(args, y0):
    return max([y0.shape[1]] + [np.shape(a)[-1] for a in args if np.ndim(a)])


def assert_same_steps(res, fun, t_span, y0, args, **kw):
    for i in range(_k(args, y0)):
        ref = scipy_reference(fun, t_span, y0, args, i, **kw)
        assert res.nfev[i] == ref.nfev, f"trajectory {i}: nfev {res.nfev[i]} != scipy {ref.nfev}"
        scale = np.max(np.abs(ref.y))
        got = res.y[:, i, :] if "t_eval" in kw else res.y_final[:, i][:, None]
        want = ref.y if "t_eval" in kw else ref.y[:, -1:]
        np.testing.assert_allclose(got, want, rtol=SCIPY_BLAS_RTOL, atol=SCIPY_BLAS_RTOL * scale,
                                   err_msg=f"trajectory {i}")


@pytest.mark.parametrize("backend", ENGINES)
@pytest.mark.parametrize("method", SCIPY_METHODS)
@pytest.mark.parametrize("name", sorted(ENSEMBLES))
def test_takes_scipys_steps(name, method, backend):
    fun, y0, args, t_span = ENSEMBLES[name]
    kw = dict(method=method, rtol=1e-7, atol=1e-9)
    res = solve_ivp(fun, t_span, y0, args=args, backend=backend, vectorized=True, **kw)
    assert res.backend == backend and np.all(res.status == 0)
    assert_same_steps(res, fun, t_span, y0, args, **kw)


@pytest.mark.parametrize("backend", ENGINES)
@pytest.mark.parametrize("method", SCIPY_METHODS)
def test_takes_scipys_steps_with_t_eval_backward_and_vector_atol(method, backend):
    fun, y0, args, _ = ENSEMBLES["vanderpol"]
    t_span = (6.0, -1.0)
    kw = dict(method=method, rtol=1e-6, atol=np.array([1e-8, 1e-5]),
              t_eval=np.linspace(6.0, -1.0, 15))
    res = solve_ivp(fun, t_span, y0, args=args, backend=backend, vectorized=True, **kw)
    assert res.y.shape == (2, 5, 15)
    assert_same_steps(res, fun, t_span, y0, args, **kw)


@pytest.mark.parametrize("backend", ENGINES)
def test_dop853_counts_interpolant_evaluations_like_scipy(backend):
    """3 extra evaluations on exactly the steps that contain a t_eval point."""
    fun, y0, args, t_span = ENSEMBLES["forced"]
    for t_eval in (np.array([t_span[1]]), np.linspace(*t_span, 4), np.linspace(*t_span, 200)):
        kw = dict(method="DOP853", rtol=1e-8, atol=1e-10, t_eval=t_eval)
        res = solve_ivp(fun, t_span, y0, args=args, backend=backend, vectorized=True, **kw)
        assert_same_steps(res, fun, t_span, y0, args, **kw)


@pytest.mark.parametrize("backend", ENGINES)
def test_first_step_and_max_step_as_scipy(backend):
    fun, y0, args, t_span = ENSEMBLES["lorenz"]
    kw = dict(method="RK45", rtol=1e-6, atol=1e-8, first_step=1e-3, max_step=0.05)
    res = solve_ivp(fun, t_span, y0, args=args, backend=backend, vectorized=True, **kw)
    assert_same_steps(res, fun, t_span, y0, args, **kw)


def test_scipy_backend_is_scipy():
    fun, y0, args, t_span = ENSEMBLES["brusselator"]
    kw = dict(method="RK45", rtol=1e-6, atol=1e-8)
    res = solve_ivp(fun, t_span, y0, args=args, backend="scipy", **kw)
    for i in range(3):
        ref = scipy_reference(fun, t_span, y0, args, i, **kw)
        assert res.nfev[i] == ref.nfev
        np.testing.assert_array_equal(res.y_final[:, i], ref.y[:, -1])
