"""The tableau registry and what each method promises: consistency, order, accuracy."""
import numpy as np
import pytest

from gpuivp import solve_ivp
from gpuivp.methods import METHODS, Interpolant, Tableau
from problems import decay, harmonic

FIXED = ["Euler", "Midpoint", "Heun", "RK4"]
ENGINES = ["numba", "numpy", "cupy"]


@pytest.mark.parametrize("name", sorted(METHODS))
def test_tableau_is_consistent(name):
    tab = METHODS[name]
    np.testing.assert_allclose(tab.a.sum(axis=1), tab.c, atol=1e-14)
    assert tab.b.sum() == pytest.approx(1.0, abs=1e-14)
    assert np.all(np.triu(tab.a) == 0)
    if tab.adaptive:
        assert np.sum(tab.e) == pytest.approx(0.0, abs=1e-14)
    if tab.interpolant.form == "power":
        # The interpolant ends at the step's end: sum_q P[:, q] == b (0 for f_new and extras).
        np.testing.assert_allclose(tab.interpolant.p.sum(axis=1),
                                   np.pad(tab.b, (0, tab.n_k - tab.n_stages)), atol=1e-12)


def test_inconsistent_tableau_is_rejected():
    with pytest.raises(ValueError, match="row sums"):
        Tableau(name="bad", c=[0, 0.5], a=[[0, 0], [0.4, 0]], b=[0.5, 0.5], order=2,
                error_order=None, e=None, interpolant=Interpolant(np.zeros((3, 1))))
    with pytest.raises(ValueError, match="sum to 1"):
        Tableau(name="bad", c=[0, 0.5], a=[[0, 0], [0.5, 0]], b=[0.5, 0.6], order=2,
                error_order=None, e=None, interpolant=Interpolant(np.zeros((3, 1))))


@pytest.mark.parametrize("backend", ENGINES)
@pytest.mark.parametrize("method", FIXED)
def test_fixed_step_methods_show_their_order(method, backend):
    omega = np.array([1.0, 1.5])
    y0 = np.c_[[1.0, 0.0]]
    t1 = 2.0
    exact = np.stack([np.cos(omega * t1), -omega * np.sin(omega * t1)])
    errors = []
    for dt in (0.02, 0.01):
        res = solve_ivp(harmonic, (0, t1), y0, method=method, dt=dt, args=(omega,),
                        backend=backend, vectorized=True)
        assert np.all(res.status == 0)
        assert np.all(res.naccept == round(t1 / dt))
        errors.append(np.max(np.abs(res.y_final - exact)))
    observed = np.log2(errors[0] / errors[1])
    assert observed == pytest.approx(METHODS[method].order, abs=0.25)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("method", FIXED)
def test_fixed_step_engines_agree_bit_for_bit(method, dtype):
    """The compiled engine's fixed steps, arranged for the GPU (``y + (c h) K`` for a
    one-term stage), round exactly as the array engine's ``y + (a K) h``: the classical
    tableaus' one-term coefficients are 1/2 and 1, so the two are the same numbers."""
    omega = np.array([1.0, 1.5, 40.0], dtype=dtype)
    kw = dict(method=method, dt=0.013, args=(omega,), t_eval=np.linspace(0.0, 2.0, 5))
    y0 = np.c_[[1.0, 0.0]].astype(dtype)
    got = solve_ivp(harmonic, (0, 2.0), y0, backend="numba", **kw)
    want = solve_ivp(harmonic, (0, 2.0), y0, backend="numpy", vectorized=True, **kw)
    for name in ("y", "y_final", "t_final", "nfev", "naccept", "status"):
        np.testing.assert_array_equal(got[name], want[name], err_msg=name)


@pytest.mark.parametrize("backend", ENGINES)
def test_fixed_steps_end_exactly_on_t1(backend):
    # 1/0.3 is not an integer: 4 steps, the last one shortened onto t1.
    res = solve_ivp(decay, (0, 1), np.array([[1.0, 2.0]]), method="RK4", dt=0.3,
                    args=(1.0,), backend=backend, vectorized=True,
                    t_eval=[0.0, 0.3, 0.6, 0.9, 1.0])
    assert np.all(res.naccept == 4) and np.all(res.t_final == 1.0)
    np.testing.assert_allclose(res.y_final, np.exp(-1.0) * np.array([[1.0, 2.0]]), rtol=1e-4)
    # t_eval at step ends: the Hermite interpolant reproduces the step's end states.
    np.testing.assert_allclose(res.y[:, :, -1], res.y_final, rtol=1e-14)


@pytest.mark.parametrize("backend", ENGINES)
@pytest.mark.parametrize("rtol", [1e-4, 1e-7])
def test_tsit5_meets_its_tolerance(rtol, backend):
    lam = np.linspace(0.5, 3.0, 5)
    t_eval = np.linspace(0, 4, 9)
    res = solve_ivp(decay, (0, 4), np.c_[[1.0]], method="Tsit5", rtol=rtol, atol=rtol * 1e-3,
                    args=(lam,), t_eval=t_eval, backend=backend, vectorized=True)
    exact = np.exp(-np.outer(lam, t_eval))[None]
    assert np.all(res.status == 0)
    assert np.max(np.abs(res.y - exact)) < 20 * rtol


@pytest.mark.parametrize("backend", ENGINES)
@pytest.mark.parametrize("method", ["RK45", "Tsit5", "RK4"])
def test_float32_runs_in_float32(method, backend):
    omega = np.array([1.0, 2.0], dtype=np.float32)
    y0 = np.c_[[1.0, 0.0]].astype(np.float32)
    res = solve_ivp(harmonic, (0, 3), y0, method=method, args=(omega,), rtol=1e-4,
                    atol=1e-6, dt=0.01 if method == "RK4" else None, backend=backend,
                    vectorized=True, t_eval=[0.0, 1.5, 3.0])
    for field in ("y", "y_final", "t_final", "t"):
        assert res[field].dtype == np.float32, field
    exact = np.cos(omega.astype(float) * 3.0)
    np.testing.assert_allclose(res.y_final[0], exact, atol=2e-3)


def test_float32_rtol_floor_uses_float32_epsilon():
    with pytest.warns(UserWarning, match="rtol"):
        solve_ivp(decay, (0, 1), np.c_[[1.0]].astype(np.float32), args=(1.0,), rtol=1e-6,
                  backend="numpy", vectorized=True)
