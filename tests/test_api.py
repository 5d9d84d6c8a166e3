"""The public contract (docs/reference.md): shapes, args forms, the single-IVP drop-in, backends."""
import pickle

import numpy as np
import pytest
import scipy.integrate

import gpuivp
from gpuivp import EnsembleResult, shared, solve_ivp
from problems import SCIPY_BLAS_RTOL, decay, harmonic, lorenz

CPU = ["numba", "numpy", "scipy"]


def linear(t, y, A):
    return (A[0, 0] * y[0] + A[0, 1] * y[1], A[1, 0] * y[0] + A[1, 1] * y[1])


@pytest.mark.parametrize("backend", CPU)
def test_ensemble_shapes(backend):
    k, n = 4, 3
    t_eval = np.linspace(0, 1, 5)
    res = solve_ivp(lorenz, (0, 1), np.c_[[1.0, 0.0, 0.0]], t_eval=t_eval, backend=backend,
                    args=(10.0, np.linspace(1, 20, k), 8 / 3), vectorized=True)
    assert isinstance(res, EnsembleResult) and res.backend == backend
    assert res.t.shape == (5,) and res.y.shape == (n, k, 5)
    assert res.t_final.shape == (k,) and res.y_final.shape == (n, k)
    for field in ("status", "nfev", "naccept", "nreject", "njev", "nlu"):
        assert res[field].shape == (k,) and res[field].dtype.kind == "i", field
    assert res.success and "reached the end" in res.message
    np.testing.assert_allclose(res.y[:, :, -1], res.y_final, rtol=1e-5)


@pytest.mark.parametrize("backend", CPU)
def test_without_t_eval_y_holds_start_and_end(backend):
    res = solve_ivp(decay, (0, 2), np.array([[1.0, 2.0]]), args=(1.0,), backend=backend,
                    vectorized=True)
    np.testing.assert_array_equal(res.t, [0.0, 2.0])
    np.testing.assert_array_equal(res.y[:, :, 0], [[1.0, 2.0]])
    np.testing.assert_array_equal(res.y[:, :, 1], res.y_final)


@pytest.mark.parametrize("backend", CPU + ["cupy"])
def test_strided_views_as_inputs_give_the_results_of_copies(backend):
    """Reversed and strided views of t_eval, y0, args and atol (backward in time)."""
    t_eval = np.linspace(0, 1, 9)[::-1]
    y0 = np.asfortranarray(np.linspace(0.5, 2, 8).reshape(2, 4))[:, ::-1]
    omega = np.linspace(1, 3, 8)[::2]
    atol = np.array([1e-8, 0, 1e-6])[::2]
    kw = dict(method="RK45", backend=backend, vectorized=True, rtol=1e-6)
    res = solve_ivp(harmonic, (1, 0), y0, t_eval=t_eval, args=(omega,), atol=atol, **kw)
    ref = solve_ivp(harmonic, (1, 0), y0.copy(), t_eval=t_eval.copy(), args=(omega.copy(),),
                    atol=atol.copy(), **kw)
    assert np.all(res.status == 0)
    np.testing.assert_array_equal(res.y, ref.y)
    np.testing.assert_array_equal(res.t, t_eval)


@pytest.mark.parametrize("backend", ["numba", "numpy"])
def test_args_forms(backend):
    """Shared scalar, per-trajectory matrix (n, n, k) and gpuivp.shared array agree."""
    k = 3
    A = np.array([[-0.5, 1.0], [-1.0, -0.2]])
    per_traj = np.repeat(A[:, :, None], k, axis=2)
    y0 = np.array([[1.0, 0.5, 0.0], [0.0, 1.0, 2.0]])
    a = solve_ivp(linear, (0, 2), y0, args=(shared(A),), backend=backend, vectorized=True)
    b = solve_ivp(linear, (0, 2), y0, args=(per_traj,), backend=backend, vectorized=True)
    np.testing.assert_array_equal(a.y_final, b.y_final)
    from scipy.linalg import expm
    np.testing.assert_allclose(a.y_final, expm(2 * A) @ y0, rtol=1e-2, atol=1e-3)


def test_args_whose_lengths_disagree_are_rejected():
    with pytest.raises(ValueError, match="last axis"):
        solve_ivp(lorenz, (0, 1), np.c_[[1.0, 0, 0]], args=(np.ones(3), np.ones(4), 1.0))
    with pytest.raises(ValueError, match="k=2"):
        solve_ivp(decay, (0, 1), np.ones((1, 2)), args=(np.ones(3),))


def test_single_ivp_is_scipy():
    ref = scipy.integrate.solve_ivp(lorenz, (0, 2), [1.0, 0, 0], args=(10.0, 15.0, 8 / 3))
    res = solve_ivp(lorenz, (0, 2), [1.0, 0, 0], args=(10.0, 15.0, 8 / 3))
    assert res.backend == "scipy"
    np.testing.assert_array_equal(res.t, ref.t)
    np.testing.assert_array_equal(res.y, ref.y)
    assert res.nfev == ref.nfev and res.status == ref.status and res.success
    assert res.naccept == len(ref.t) - 1 and res.t_final == ref.t[-1]


@pytest.mark.parametrize("backend", ["numba", "numpy"])
def test_single_ivp_on_other_backends_has_scipys_shapes(backend):
    ref = scipy.integrate.solve_ivp(lorenz, (0, 2), [1.0, 0, 0], args=(10.0, 15.0, 8 / 3),
                                    t_eval=[0, 1, 2])
    res = solve_ivp(lorenz, (0, 2), [1.0, 0, 0], args=(10.0, 15.0, 8 / 3), t_eval=[0, 1, 2],
                    backend=backend, vectorized=True)
    assert res.y.shape == (3, 3) and isinstance(res.status, int) and isinstance(res.nfev, int)
    assert res.nfev == ref.nfev
    np.testing.assert_allclose(res.y, ref.y, rtol=SCIPY_BLAS_RTOL)
    ref = scipy.integrate.solve_ivp(lorenz, (0, 2), [1.0, 0, 0], args=(10.0, 15.0, 8 / 3))
    res = solve_ivp(lorenz, (0, 2), [1.0, 0, 0], args=(10.0, 15.0, 8 / 3), backend=backend,
                    vectorized=True)
    # without t_eval, every step as scipy
    assert res.y.shape == ref.y.shape and res.nfev == ref.nfev and res.sol is None
    np.testing.assert_allclose(res.t, ref.t, rtol=SCIPY_BLAS_RTOL)
    np.testing.assert_allclose(res.y, ref.y, rtol=SCIPY_BLAS_RTOL)


def test_single_ivp_with_a_sweep_arg_says_how_to_ask_for_an_ensemble():
    with pytest.raises(ValueError, match=r"\(n, k\)"):
        solve_ivp(lorenz, (0, 1), [1.0, 0, 0], args=(10.0, np.linspace(0, 28, 5), 8 / 3))


def test_scipy_only_methods_run_on_scipy():
    res = solve_ivp(decay, (0, 1), np.array([[1.0, 2.0]]), method="Radau", args=(1.0,))
    assert res.backend == "scipy" and res.njev.shape == (2,)
    np.testing.assert_allclose(res.y_final, np.exp(-1) * np.array([[1.0, 2.0]]), rtol=1e-3)
    with pytest.raises(ValueError, match="scipy"):
        solve_ivp(decay, (0, 1), np.array([[1.0]]), method="BDF", args=(1.0,), backend="numba")


def test_auto_picks_numba_and_falls_back_with_a_warning():
    res = solve_ivp(lorenz, (0, 1), np.c_[[1.0, 0, 0]], args=(10.0, np.ones(3), 8 / 3))
    assert res.backend == "numba"
    table = {"a": 1.0}

    def uncompilable(t, y, lam):  # a dict lookup on a global: numba cannot compile it
        return (-lam * y[0] * table["a"],)

    with pytest.warns(gpuivp.BackendFallbackWarning, match="compiled for numba.*'table'"):
        res = solve_ivp(uncompilable, (0, 1), np.ones((1, 3)), args=(1.0,), vectorized=True)
    assert res.backend == "numpy"
    with pytest.warns(gpuivp.BackendFallbackWarning, match="ran on 'scipy'"):
        res = solve_ivp(uncompilable, (0, 1), np.ones((1, 3)), args=(1.0,))
    assert res.backend == "scipy"
    with pytest.raises(RuntimeError, match="`fun` could not be compiled for numba"):
        solve_ivp(uncompilable, (0, 1), np.ones((1, 3)), args=(1.0,), backend="numba")


def test_njit_functions_are_accepted():
    numba = pytest.importorskip("numba")
    fast = numba.njit(decay)
    res = solve_ivp(fast, (0, 1), np.ones((1, 2)), args=(1.0,), backend="numba")
    np.testing.assert_allclose(res.y_final, np.exp(-1) * np.ones((1, 2)), rtol=1e-3)


def test_results_pickle():
    res = solve_ivp(decay, (0, 1), np.ones((1, 3)), args=(np.array([1.0, 2.0, 3.0]),),
                    backend="numpy", vectorized=True)
    back = pickle.loads(pickle.dumps(res))
    assert isinstance(back, EnsembleResult) and back.backend == "numpy"
    np.testing.assert_array_equal(back.y_final, res.y_final)


def test_available_backends_lists_cpu_backends():
    names = gpuivp.available_backends()
    assert {"numba", "numpy", "scipy"} <= set(names)
    with pytest.raises(ValueError, match="backend"):
        solve_ivp(decay, (0, 1), np.ones((1, 2)), args=(1.0,), backend="fortran")


def test_options_are_passed_to_scipy_and_ignored_elsewhere_with_a_warning():
    with pytest.warns(UserWarning, match="no effect"):
        solve_ivp(decay, (0, 1), np.ones((1, 2)), args=(1.0,), backend="numpy",
                  vectorized=True, jac=None)
