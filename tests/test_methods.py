"""The tableau registry and what each method promises: consistency, order, accuracy."""
import numpy as np
import pytest

from gpuivp import solve_ivp
from gpuivp.methods import METHODS, Interpolant, Tableau
from problems import decay, harmonic, vanderpol

FIXED = ["Euler", "Midpoint", "Heun", "RK4"]
ENGINES = ["numba", "numpy", "cupy"]
#: The explicit Runge-Kutta methods. The Rosenbrock methods (``RosenbrockTableau``, checked on
#: construction) have their accuracy and orders measured in tests/test_stiff.py.
EXPLICIT = sorted(m for m in METHODS if not getattr(METHODS[m], "linear_solve", False))


@pytest.mark.parametrize("name", EXPLICIT)
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


def test_method_data_is_checked_on_construction():
    """Extra stages, error estimates, FSAL and the interpolant are checked as the stages are."""
    import dataclasses

    rk45 = METHODS["RK45"]
    with pytest.raises(ValueError, match="fsal"):
        dataclasses.replace(rk45, fsal=False)
    with pytest.raises(ValueError, match="do not sum to 0"):
        dataclasses.replace(rk45, e=rk45.e + 1e-3)
    with pytest.raises(ValueError, match="does not reach y_new"):
        dataclasses.replace(rk45, interpolant=Interpolant(2 * rk45.interpolant.p))
    dop = METHODS["DOP853"]
    with pytest.raises(ValueError, match="a_extra"):
        dataclasses.replace(dop, c_extra=dop.c_extra + 0.01)
    with pytest.raises(ValueError, match="earlier stages"):
        bad = dop.a_extra.copy()
        bad[0, -1] = 1.0
        dataclasses.replace(dop, a_extra=bad)
    with pytest.raises(ValueError, match="form"):
        Interpolant(np.zeros((3, 2)), form="spline")


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


# -- every tableau shows its order (fixed steps, known solution) ---------------------------
def _manufactured_exact(t, w):
    return np.stack([np.cos(w * t), np.sin(w * t)])


def manufactured(t, y, w):
    """Nonlinear, coupled and non-autonomous, with the exact solution (cos wt, sin wt):
    ``g(y) - g(u(t)) + u'(t)``, so every kind of elementary differential enters the error."""
    u0, u1 = np.cos(w * t), np.sin(w * t)
    return [np.exp(y[1]) * y[0] - np.exp(u1) * u0 - w * u1,
            -y[0] ** 3 + u0 ** 3 + w * u0]


#: Per method: the problem, t1 and the step counts of the sweep, in the range where the
#: leading error term dominates and the error (1e-1 .. 1e-12) stays far above rounding.
#: Tuned methods have tiny principal error coefficients: their order shows only at small
#: steps, so those runs are longer (the error grows with t1, the ratio of its terms does
#: not): Vern7 to t1 = 6; RK45 and Tsit5, whose error on the nonlinear problem falls like
#: dt^5.5 and dt^7 down to rounding, on a long run of the harmonic oscillator.
ORDER_CASES = {"Euler": ("manufactured", 2.0, (800, 1600, 3200)),
               "Midpoint": ("manufactured", 2.0, (50, 100, 200)),
               "Heun": ("manufactured", 2.0, (50, 100, 200)),
               "RK4": ("manufactured", 2.0, (40, 80, 160)),
               "RK23": ("manufactured", 2.0, (100, 200, 400)),
               "RK45": ("oscillator", 20.0, (200, 280, 400, 560)),
               "DOP853": ("manufactured", 2.0, (12, 16, 22, 30)),
               "Tsit5": ("oscillator", 50.0, (1000, 1400, 2000)),
               "Vern7": ("manufactured", 6.0, (90, 110, 130, 150))}


def _oscillator_exact(t, w):
    return np.stack([np.cos(w * t), -w * np.sin(w * t)])


@pytest.mark.parametrize("name", EXPLICIT)
def test_every_method_shows_its_order(name):
    """The fitted slope of log(error) against log(dt) is the tableau's order (within 0.3),
    as Diffrax's test_ode_order: numpy backend, fixed steps, an ensemble of three."""
    assert set(ORDER_CASES) == set(EXPLICIT), "give every registered method a sweep"
    kind, t1, sweep = ORDER_CASES[name]
    w = np.array([1.0, 1.3, 1.7])
    fun, exact = ((manufactured, _manufactured_exact) if kind == "manufactured"
                  else (harmonic, _oscillator_exact))
    dts, errors = [], []
    for steps in sweep:
        res = solve_ivp(fun, (0, t1), exact(0.0, w), method=name, dt=t1 / steps, args=(w,),
                        backend="numpy", vectorized=True)
        assert np.all(res.naccept == steps)
        dts.append(t1 / steps)
        errors.append(np.max(np.abs(res.y_final - exact(t1, w))))
    slope = np.polyfit(np.log(dts), np.log(errors), 1)[0]
    assert slope == pytest.approx(METHODS[name].order, abs=0.3), (slope, errors)


# -- Vern7 against a tight reference (scipy's test_integration style) ----------------------
def _scaled_error(y, y_ref, rtol, atol):
    """scipy's compute_error: the RMS over components of the error in tolerance units."""
    return np.sqrt(np.mean(((y - y_ref) / (atol + rtol * np.abs(y_ref))) ** 2, axis=0))


@pytest.mark.parametrize("backend", ["numpy", "cupy"])
@pytest.mark.parametrize("rtol", [1e-4, 1e-7, 1e-10])
def test_vern7_meets_its_tolerance_against_a_tight_reference(rtol, backend):
    """Vern7's steps, t_eval values (its order-7 interpolant) and dense output agree with
    scipy's DOP853 at rtol 1e-13 within the tolerance, as scipy tests its own methods (its
    bound is 5 on milder problems; on this Van der Pol ensemble DOP853 itself reaches 5.2
    at rtol 1e-7 and 75 at 1e-4, Vern7 at most 5.1)."""
    import scipy.integrate

    mu = np.array([0.5, 1.0, 2.0])
    atol = rtol * 1e-2
    t_eval = np.linspace(0.0, 6.0, 31)
    tq = np.linspace(0.05, 5.95, 23)
    res = solve_ivp(vanderpol, (0, 6), np.c_[[2.0, 0.0]], method="Vern7", args=(mu,),
                    rtol=rtol, atol=atol, t_eval=t_eval, dense_output=backend == "numpy",
                    backend=backend, vectorized=True)
    assert np.all(res.status == 0)
    for i, m in enumerate(mu):
        ref = scipy.integrate.solve_ivp(vanderpol, (0, 6), [2.0, 0.0], args=(m,),
                                        method="DOP853", rtol=1e-13, atol=1e-15,
                                        dense_output=True)
        assert np.all(_scaled_error(res.y[:, i, :], ref.sol(t_eval), rtol, atol) < 10)
        if res.sol is not None:
            assert np.all(_scaled_error(res.sol(tq)[:, i, :], ref.sol(tq), rtol, atol) < 10)


@pytest.mark.parametrize("backend", ENGINES)
def test_vern7_counts_ten_evaluations_per_attempt_and_five_to_interpolate(backend):
    """scipy's counting: 1 + 1 (initial step) + 10 per attempt; the interpolant's five extra
    stages are paid only by the steps that interpolate (here: t_eval inside every step)."""
    mu = np.array([0.5, 2.0])
    kw = dict(method="Vern7", args=(mu,), rtol=1e-6, atol=1e-8, backend=backend,
              vectorized=backend != "numba")
    res = solve_ivp(vanderpol, (0, 6), np.c_[[2.0, 0.0]], **kw)
    np.testing.assert_array_equal(res.nfev, 2 + 10 * (res.naccept + res.nreject))
    dense = solve_ivp(vanderpol, (0, 6), np.c_[[2.0, 0.0]], t_eval=np.linspace(0, 6, 2001),
                      **kw)
    np.testing.assert_array_equal(dense.naccept, res.naccept)
    np.testing.assert_array_equal(dense.nfev, res.nfev + 5 * res.naccept)


def test_vern7_dense_output_has_order_seven():
    """Between the steps, the dense output's error falls as dt^7 (fixed steps, the sweep of
    the order test; a cubic Hermite interpolant would show 4)."""
    kind, t1, sweep = ORDER_CASES["Vern7"]
    w = np.array([1.0, 1.3, 1.7])
    tq = np.linspace(0.013, t1 - 0.013, 37)
    exact = np.stack([_manufactured_exact(t, w) for t in tq], axis=-1)
    dts, errors = [], []
    for steps in sweep:
        res = solve_ivp(manufactured, (0, t1), _manufactured_exact(0.0, w), method="Vern7",
                        dt=t1 / steps, args=(w,), backend="numpy", vectorized=True,
                        dense_output=True)
        dts.append(t1 / steps)
        errors.append(np.max(np.abs(res.sol(tq) - exact)))
    slope = np.polyfit(np.log(dts), np.log(errors), 1)[0]
    assert slope == pytest.approx(7, abs=0.3), (slope, errors)
