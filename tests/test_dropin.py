"""The single-IVP drop-in: what scipy's own suite asks of ``solve_ivp``, on every CPU backend.

Each test names one behaviour that used to differ from scipy (issue 16); the suite itself runs
in test_scipy_suite.py.
"""
import numpy as np
import pytest
import scipy.integrate
from scipy.integrate import RK45

from gpuivp import solve_ivp
from gpuivp._ivp import _complex_problem
from gpuivp.backends import BackendUnavailable
from problems import SCIPY_BLAS_RTOL

BACKENDS = ["auto", "numba", "numpy"]


def kw_for(backend):
    return {} if backend == "auto" else dict(backend=backend, vectorized=True)


def cannon(t, y):
    return (y[1], -9.80665)


def hit_ground(t, y):
    return y[0]


hit_ground.terminal = True
hit_ground.direction = -1


def rational_vectorized(t, y):   # scipy's test function: returns shape (2, m)
    return np.vstack((y[1] / t, y[1] * (y[0] + 2 * y[1] - 1) / (t * (y[0] - 1))))


def decay(t, y):
    return -y


@pytest.mark.parametrize("backend", BACKENDS)
def test_infinite_t1_ends_at_the_terminal_event_as_scipy(backend):
    ref = scipy.integrate.solve_ivp(cannon, [0, np.inf], [0.0, 10.0], events=hit_ground)
    res = solve_ivp(cannon, [0, np.inf], [0.0, 10.0], events=hit_ground, **kw_for(backend))
    assert res.status == 1 and res.nfev == ref.nfev and len(res.t) == len(ref.t)
    np.testing.assert_allclose(res.t_events[0], ref.t_events[0], rtol=SCIPY_BLAS_RTOL)
    assert np.isinf(solve_ivp(cannon, [0, np.inf], np.zeros((2, 1)), max_steps=5,
                              **kw_for(backend)).t[-1])


@pytest.mark.parametrize("backend", ["auto", "numpy"])
def test_vectorized_single_ivp_may_return_scipys_n_by_1(backend):
    ref = scipy.integrate.solve_ivp(rational_vectorized, [5, 9], [1 / 3, 2 / 9],
                                    vectorized=True)
    res = solve_ivp(rational_vectorized, [5, 9], [1 / 3, 2 / 9], **kw_for(backend) or
                    dict(vectorized=True))
    assert res.nfev == ref.nfev
    np.testing.assert_allclose(res.y, ref.y, rtol=SCIPY_BLAS_RTOL)


@pytest.mark.parametrize("backend", ["auto", "numpy"])
def test_empty_state_succeeds_like_scipy(backend):
    res = solve_ivp(lambda t, y: np.zeros(0), [0, np.inf], np.zeros(0), dense_output=True,
                    **kw_for(backend))
    assert res.status == 0 and res.success and res.y.shape == (0, 2)
    assert res.sol(10).shape == (0,) and res.sol([1, 2, 3]).shape == (0, 3)


def test_per_component_rtol_runs_on_scipy():
    ref = scipy.integrate.solve_ivp(decay, (0, 1), [1.0, 2.0], rtol=[1e-1, 1e-6])
    res = solve_ivp(decay, (0, 1), [1.0, 2.0], rtol=[1e-1, 1e-6])
    assert res.nfev == ref.nfev
    ens = solve_ivp(decay, (0, 1), np.ones((2, 3)), rtol=[1e-1, 1e-6], vectorized=True)
    assert ens.backend == "scipy" and np.all(ens.nfev == ref.nfev)
    with pytest.raises(ValueError, match="`rtol`.*'scipy' backend"):
        solve_ivp(decay, (0, 1), np.ones((2, 3)), rtol=[1e-1, 1e-6], backend="numpy",
                  vectorized=True)
    same = solve_ivp(decay, (0, 1), np.ones((2, 3)), rtol=[1e-4, 1e-4], backend="numpy",
                     vectorized=True)   # equal components: the scalar rtol
    np.testing.assert_array_equal(same.nfev, solve_ivp(
        decay, (0, 1), np.ones((2, 3)), rtol=1e-4, backend="numpy", vectorized=True).nfev)


@pytest.mark.parametrize("backend", ["auto", "numpy"])
def test_empty_time_span_dense_output_is_y0(backend):
    res = solve_ivp(decay, [4, 4], [2.0, 3.0], dense_output=True, **kw_for(backend))
    assert res.t.tolist() == [4.0, 4.0] and res.nfev == 1
    np.testing.assert_array_equal(res.sol(4), [2.0, 3.0])
    np.testing.assert_array_equal(res.sol([4, 5, 6]), [[2, 2, 2], [3, 3, 3]])


@pytest.mark.parametrize("backend", ["auto", "numpy"])
def test_no_t_eval_point_reached_gives_empty_lists(backend):
    early = lambda t, y: t - 0.5   # noqa: E731
    early.terminal = True
    res = solve_ivp(decay, [0, 2], [1.0], t_eval=[1.0, 1.5], events=early, **kw_for(backend))
    assert res.status == 1 and res.t == [] and res.y == []


@pytest.mark.parametrize("dtype", [np.complex128, np.complex64])
@pytest.mark.parametrize("backend", BACKENDS)
def test_complex_states_agree_with_scipy(backend, dtype):
    y0 = np.array([0.5 + 1j, -1j], dtype=dtype)
    ref = scipy.integrate.solve_ivp(decay, [0, 1], y0, rtol=1e-8, atol=1e-10,
                                    dense_output=True)
    res = solve_ivp(decay, [0, 1], y0, rtol=1e-8, atol=1e-10, dense_output=True,
                    **kw_for(backend))
    want = np.complex128 if backend == "auto" else dtype   # scipy computes in complex128
    assert res.y.dtype == want and res.y_final.dtype == want
    tol = 1e-7 if dtype == np.complex128 else 1e-5   # the tolerances; float32 rounding
    np.testing.assert_allclose(res.y_final, ref.y[:, -1], rtol=tol, atol=tol)
    np.testing.assert_allclose(res.sol(0.5), ref.sol(0.5), rtol=tol, atol=tol)
    if backend == "auto":
        assert res.nfev == ref.nfev


def test_complex_ensemble_has_complex_outputs():
    y0 = np.array([[1.0 + 0j, 2.0 + 1j, 1j]])
    res = solve_ivp(decay, (0, 1), y0, backend="numpy", vectorized=True, t_eval=[0, 1])
    assert res.y.shape == (1, 3, 2) and res.y.dtype == np.complex128
    np.testing.assert_allclose(res.y_final, y0 * np.exp(-1), rtol=1e-3)


def test_complex_states_refused_on_cuda():
    res = solve_ivp(decay, (0, 1), np.ones((1, 2), complex), backend="numpy", vectorized=True)
    assert res.success

    class P:   # what _run hands over
        complex_n = 1
    with pytest.raises(BackendUnavailable, match="complex"):
        _complex_problem(P(), "cuda")


@pytest.mark.parametrize("fill", [np.nan, np.inf])
@pytest.mark.parametrize("backend", BACKENDS)
def test_non_finite_y0_has_scipys_message(backend, fill):
    with pytest.raises(ValueError, match="All components of the initial state `y0` must be "
                                         "finite."):
        solve_ivp(decay, [0, 1], np.full(3, fill), **kw_for(backend))


def test_scipys_rk_classes_are_the_methods_of_those_names():
    a = solve_ivp(decay, [0, 1], np.ones((1, 2)), method=RK45, backend="numpy",
                  vectorized=True)
    b = solve_ivp(decay, [0, 1], np.ones((1, 2)), method="RK45", backend="numpy",
                  vectorized=True)
    np.testing.assert_array_equal(a.y_final, b.y_final)


def real_part_half(t, y):
    return y[0].real - 0.5


real_part_half.terminal = True


@pytest.mark.parametrize("backend", ["numba", "numpy"])
def test_complex_states_with_an_event(backend):
    y0 = np.array([[1.0 + 1j, 2.0 - 1j]])
    res = solve_ivp(decay, (0, 5), y0, events=real_part_half, rtol=1e-8, atol=1e-10,
                    backend=backend, vectorized=True)
    np.testing.assert_array_equal(res.status, [1, 1])
    np.testing.assert_allclose(res.t_final, np.log([2.0, 4.0]), rtol=1e-6)
    assert res.y_events[0].dtype == np.complex128 and res.y_events[0].shape == (2, 32, 1)
    np.testing.assert_allclose(res.y_events[0][:, 0, 0], [0.5 + 0.5j, 0.5 - 0.25j], rtol=1e-6)


def oscillator(t, y):   # a few dozen DOP853 steps on [0, 10]
    return (y[1], -y[0])


@pytest.mark.parametrize("backend", ["numba", "numpy"])
def test_every_step_without_t_eval_spends_no_interpolant_stages(backend):
    """A single IVP without t_eval records its steps without the interpolant: DOP853's and
    Vern7's extra stages are paid only with dense output, as scipy's DOP853 does."""
    kw = dict(rtol=1e-8, atol=1e-10, **kw_for(backend))
    ref = scipy.integrate.solve_ivp(oscillator, (0, 10), [1.0, 0.0], method="DOP853",
                                    rtol=1e-8, atol=1e-10)
    res = solve_ivp(oscillator, (0, 10), [1.0, 0.0], method="DOP853", **kw)
    assert res.nfev == ref.nfev and len(res.t) == len(ref.t) and res.sol is None
    # The step ends agree with scipy's to ~1e-6 relative (step-size control rounding), so
    # the states are compared where the steps ended, to the requested tolerances.
    ref_sol = scipy.integrate.solve_ivp(oscillator, (0, 10), [1.0, 0.0], method="DOP853",
                                        rtol=1e-8, atol=1e-10, dense_output=True).sol
    np.testing.assert_allclose(res.y, ref_sol(res.t), rtol=1e-7, atol=1e-9)
    # dense output: the same steps, and the extra stages (3 per step) for the interpolant
    dense = solve_ivp(oscillator, (0, 10), [1.0, 0.0], method="DOP853", dense_output=True, **kw)
    np.testing.assert_array_equal(dense.t, res.t)
    np.testing.assert_array_equal(dense.y, res.y)
    assert dense.nfev == res.nfev + 3 * dense.naccept
    np.testing.assert_allclose(dense.sol(res.t), res.y, rtol=1e-12, atol=1e-14)
    # Vern7 (no scipy twin): 10 evaluations per attempted step, as a plain run
    vern = solve_ivp(oscillator, (0, 10), [1.0, 0.0], method="Vern7", **kw)
    assert vern.nfev == 2 + 10 * (vern.naccept + vern.nreject)
    assert len(vern.t) == vern.naccept + 1
