"""Stiff methods (Rosenbrock23, Rodas5P): Test Set problems against stored Radau references,
convergence order, Jacobians, failures, and the backends that refuse them."""
import os
import re
import sys

import numpy as np
import pytest

import gpuivp
from gpuivp._status import FAIL_SINGULAR, MESSAGES
from gpuivp.backends import unavailable_reason
from gpuivp.methods.rosenbrock import ROSENBROCK_BACKENDS

#: Every engine backend meant to run the Rosenbrock methods (issue 18). A test parametrised
#: over these runs on those in ROSENBROCK_BACKENDS and usable here (``cupy`` without a GPU:
#: its engine on the host, see conftest.py) and skips the others with the reason.
STIFF_BACKENDS = ("numpy", "cupy", "numba", "cuda")


def _backend_param(backend):
    why = None
    if backend not in ROSENBROCK_BACKENDS:
        why = f"the {backend} backend has no Rosenbrock engine yet (ROSENBROCK_BACKENDS)"
    elif backend != "cupy" and unavailable_reason(backend) is not None:
        why = f"{backend} is unavailable here: {unavailable_reason(backend)}"
    return pytest.param(backend, marks=pytest.mark.skipif(why is not None, reason=str(why)))


BACKENDS = [_backend_param(b) for b in STIFF_BACKENDS]
#: The backends compared with ``numpy`` (step for step).
OTHER_BACKENDS = [_backend_param(b) for b in STIFF_BACKENDS if b != "numpy"]

# -- problems (the reference script imports these) -------------------------------------
ROBER_T = 1e5
ROBER_K1 = np.array([0.04, 0.02, 0.08])
ROBER_K3 = np.array([1e4, 5e3, 2e4])
# Robertson's kinetics (ROBER of the Test Set for IVP Solvers) and its Jacobian: one home,
# shared with the benchmark.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "benchmarks"))
from stiff import hires, hires_jac, rober, rober_jac  # noqa: E402

VDPOL_T = 2.0
VDPOL_EPS = np.array([1e-6, 1e-5])   # mu = 1e3 (and ~316) in Hairer's scaled form


def rober_y0():
    return np.array([1.0, 0.0, 0.0])


def vdpol(t, y, eps):
    """Van der Pol, scaled (VDPOL of the Test Set): mu = 1 / sqrt(eps)."""
    return (y[1], ((1 - y[0] * y[0]) * y[1] - y[0]) / eps)


def vdpol_jac(t, y, eps):
    z = 0 * y[0]
    return ((z, z + 1), ((-2 * y[0] * y[1] - 1) / eps, (1 - y[0] * y[0]) / eps))


def vdpol_y0():
    return np.array([2.0, -0.66])


HIRES_T = 321.8122
HIRES_K = np.array([280.0, 140.0])   # the Test Set's rate 280, and half of it
# hires(t, y, k) and hires_jac live in benchmarks/stiff.py, as Robertson's do.


def hires_y0():
    return np.array([1.0, 0, 0, 0, 0, 0, 0, 0.0057])


OREGO_T = 360.0
OREGO_W = np.array([0.161, 0.2])   # the Test Set's 0.161, and a faster third reaction


def orego(t, y, w):
    """OREGO of the Test Set (the Oregonator), with its rate 0.161 as ``w``."""
    y1, y2, y3 = y
    return (77.27 * (y2 + y1 * (1 - 8.375e-6 * y1 - y2)), (y3 - (1 + y1) * y2) / 77.27,
            w * (y1 - y3))


def orego_y0():
    return np.array([1.0, 2.0, 3.0])


REFS = os.path.join(os.path.dirname(__file__), "data", "stiff_refs.npz")


def ensemble(y0, k):
    return np.tile(y0[:, None], (1, k))


def scaled_error(y, ref, rtol, atol):
    return np.max(np.abs(y - ref) / (atol + rtol * np.abs(ref)))


# Each method at a tolerance it is meant for.
RTOL = {"Rosenbrock23": 1e-6, "Rodas5P": 1e-8}
FEV_PER_ATTEMPT = {"Rosenbrock23": 2, "Rodas5P": 8}


# -- accuracy against the references -------------------------------------------------------
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("method", list(RTOL))
@pytest.mark.parametrize("use_jac", [True, False], ids=["jac", "finite-differences"])
def test_rober_to_1e5_matches_radau_reference_within_tolerance(use_jac, method, backend):
    ref = np.load(REFS)["rober"]
    rtol, atol = RTOL[method], 1e-10
    k = len(ROBER_K1)
    r = gpuivp.solve_ivp(rober, (0, ROBER_T), ensemble(rober_y0(), k), method=method,
                         vectorized=True, args=(ROBER_K1, 3e7, ROBER_K3), backend=backend,
                         rtol=rtol, atol=atol, jac=rober_jac if use_jac else None)
    assert np.all(r.status == 0)
    # A global error of a few tens of local tolerances: an order-2 method over 1e5 time units.
    assert scaled_error(r.y_final, ref, rtol, atol) < 50
    assert np.all(r.njev > 0) and np.all(r.nlu >= r.njev)
    assert np.all(r.nlu == r.naccept + r.nreject)
    # Start: f and the initial step's probe; each attempt: its stages; each Jacobian:
    # 1 for df/dt (+ n by differences).
    per_jac = 1 if use_jac else 4
    assert np.array_equal(r.nfev, 2 + FEV_PER_ATTEMPT[method] * r.nlu + per_jac * r.njev)


#: ROBER at t = 1e11 for k = (0.04, 3e7, 1e4), y0 = (1, 0, 0): the reference solution published
#: with the Test Set for IVP Solvers (Mazzia & Magherini, problem ROBER).
ROBER_1E11 = np.array([0.2083340149701255e-07, 0.8333360770334713e-13, 0.9999999791665050])


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("method", list(RTOL))
def test_rober_to_1e11_matches_the_test_sets_reference(method, backend):
    """Far beyond 1e5: y1 and y2 fall to 2e-8 and 8e-14 (atol 1e-14 resolves them), every
    component within a small multiple of rtol, relative."""
    rtol = RTOL[method]
    r = gpuivp.solve_ivp(rober, (0, 1e11), ensemble(rober_y0(), 2), method=method,
                         vectorized=True, args=(np.full(2, 0.04), 3e7, np.full(2, 1e4)),
                         backend=backend, rtol=rtol, atol=1e-14, jac=rober_jac)
    assert np.all(r.status == 0)
    rel = np.abs(r.y_final - ROBER_1E11[:, None]) / ROBER_1E11[:, None]
    assert np.all(rel < 100 * rtol), rel


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("method", list(RTOL))
def test_vdpol_mu_1e3_matches_radau_reference_within_tolerance(method, backend):
    ref = np.load(REFS)["vdpol"]
    rtol = atol = RTOL[method]
    k = len(VDPOL_EPS)
    r = gpuivp.solve_ivp(vdpol, (0, VDPOL_T), ensemble(vdpol_y0(), k), method=method,
                         vectorized=True, args=(VDPOL_EPS,), backend=backend, rtol=rtol,
                         atol=atol, jac=vdpol_jac)
    assert np.all(r.status == 0)
    assert scaled_error(r.y_final, ref, rtol, atol) < 50


def test_rober_stays_cheap_where_explicit_methods_need_max_steps():
    r = gpuivp.solve_ivp(rober, (0, ROBER_T), ensemble(rober_y0(), 1), method="Rosenbrock23",
                         vectorized=True, args=(0.04, 3e7, 1e4), backend="numpy", rtol=1e-4,
                         atol=1e-8)
    assert r.status[0] == 0 and r.naccept[0] < 500


# -- order, Jacobians, interpolant ----------------------------------------------------------
def prothero_robinson(t, y, lam):
    """y' = lam (y - cos t) - sin t: exact solution cos t, stiff for lam << 0, and
    non-autonomous (it checks the df/dt term)."""
    return (lam * (y[0] - np.cos(t)) - np.sin(t),)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [np.float64])
def test_rosenbrock23_converges_with_order_2_at_fixed_steps(dtype, backend):
    lam = np.array([-50.0, -2000.0])
    errs = []
    for dt in (0.1, 0.05, 0.025):
        r = gpuivp.solve_ivp(prothero_robinson, (0, 2), np.ones((1, 2)), method="Rosenbrock23",
                             vectorized=True, args=(lam,), backend=backend, dt=dt, dtype=dtype)
        assert np.all(r.status == 0) and np.all(r.naccept == round(2 / dt))
        errs.append(np.abs(r.y_final[0] - np.cos(2.0)))
    orders = np.log2(np.array(errs[:-1]) / np.array(errs[1:]))
    assert np.all(np.abs(orders - 2) < 0.1), orders


def test_analytic_jacobian_and_finite_differences_give_the_same_steps():
    """Same problem, jac= vs forward differences: the same accepted steps and values to
    the finite-difference error (sqrt(eps) relative on J, damped by the solve)."""
    kw = dict(method="Rosenbrock23", vectorized=True, args=(VDPOL_EPS,), backend="numpy",
              rtol=1e-5, atol=1e-5)
    a = gpuivp.solve_ivp(vdpol, (0, 0.5), ensemble(vdpol_y0(), 2), jac=vdpol_jac, **kw)
    b = gpuivp.solve_ivp(vdpol, (0, 0.5), ensemble(vdpol_y0(), 2), **kw)
    assert np.array_equal(a.naccept, b.naccept) and np.array_equal(a.njev, b.njev)
    np.testing.assert_allclose(a.y_final, b.y_final, rtol=1e-6)


def test_jacobian_as_an_array_stack_equals_jacobian_as_rows():
    def jac_array(t, y, eps):
        return np.array([[np.zeros_like(y[0]), np.ones_like(y[0])],
                         [(-2 * y[0] * y[1] - 1) / eps, (1 - y[0] * y[0]) / eps]])
    kw = dict(method="Rosenbrock23", vectorized=True, args=(VDPOL_EPS,), backend="numpy",
              rtol=1e-5, atol=1e-5)
    a = gpuivp.solve_ivp(vdpol, (0, 0.3), ensemble(vdpol_y0(), 2), jac=vdpol_jac, **kw)
    b = gpuivp.solve_ivp(vdpol, (0, 0.3), ensemble(vdpol_y0(), 2), jac=jac_array, **kw)
    assert np.array_equal(a.y_final, b.y_final) and np.array_equal(a.nfev, b.nfev)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_t_eval_events_and_sol_follow_the_rosenbrock_interpolant(dtype, backend):
    lam = np.array([-50.0, -2000.0])
    rtol = 1e-4 if dtype == np.float32 else 1e-7
    t_eval = np.linspace(0, 2, 9)

    def crossing(t, y, lam):
        return y[0] - 0.5

    kw = dict(method="Rosenbrock23", vectorized=True, args=(lam,), rtol=rtol, atol=rtol * 1e-2,
              t_eval=t_eval, dense_output=True, events=crossing, dtype=dtype)
    r = gpuivp.solve_ivp(prothero_robinson, (0, 2), np.ones((1, 2)), backend=backend, **kw)
    assert r.y.dtype == dtype and np.all(r.status == 0)
    if backend != "numpy" and dtype == np.float64:
        # The numpy backend's steps, events and outputs, to rounding (see
        # test_numba_takes_the_numpy_backends_steps_on_the_test_set). Not in float32: there
        # NumPy's SIMD cos and sin (in fun) differ from libm's by an ulp often enough to
        # move a borderline step.
        ref = gpuivp.solve_ivp(prothero_robinson, (0, 2), np.ones((1, 2)), backend="numpy",
                               **kw)
        assert_same_steps(r, ref)
        close = 1e-12
        np.testing.assert_allclose(r.y, ref.y, rtol=close, atol=close)
        np.testing.assert_allclose(r.t_events[0], ref.t_events[0], rtol=close)
        np.testing.assert_allclose(r.sol(1.234), ref.sol(1.234), rtol=close, atol=close)
    tol = 20 * rtol
    np.testing.assert_allclose(r.y[0], np.cos(t_eval)[None].repeat(2, 0), atol=tol)
    np.testing.assert_allclose(r.sol(1.234)[0], np.cos(1.234), atol=tol)
    for i in range(2):   # cos t = 0.5 at t = pi / 3
        assert r.n_events[0][i] == 1
        np.testing.assert_allclose(r.t_events[0][i][0], np.pi / 3, atol=tol)


# -- failures ---------------------------------------------------------------------------------
@pytest.mark.parametrize("backend", BACKENDS)
def test_a_singular_matrix_fails_only_its_own_trajectory(backend):
    """y' = lam y with lam = 1 / (h gamma) makes I / (h gamma) - J exactly zero."""
    gamma = gpuivp.methods.METHODS["Rosenbrock23"].gamma
    dt = 0.125
    lam = np.array([1.0 / (dt * gamma), -1.0])

    def lin(t, y, lam):
        return (lam * y[0],)

    r = gpuivp.solve_ivp(lin, (0, 1), np.ones((1, 2)), method="Rosenbrock23", vectorized=True,
                         args=(lam,), backend=backend, dt=dt, jac=lambda t, y, lam: ((lam,),))
    assert r.status[0] == FAIL_SINGULAR and "singular" in MESSAGES[FAIL_SINGULAR]
    assert "singular" in r.message
    assert r.status[1] == 0 and r.t_final[0] == 0.0 and r.nlu[0] == 1
    np.testing.assert_allclose(r.y_final[0, 1], np.exp(-1.0), rtol=1e-2)


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_a_jacobian_of_the_wrong_shape_is_a_value_error_naming_jac(backend):
    with pytest.raises(ValueError, match="`jac`"):
        gpuivp.solve_ivp(vdpol, (0, 0.1), ensemble(vdpol_y0(), 2), method="Rosenbrock23",
                         vectorized=True, args=(VDPOL_EPS,), backend=backend,
                         jac=lambda t, y, eps: ((1.0, 2.0),))


@pytest.mark.parametrize("backend", [b for b in STIFF_BACKENDS + ("scipy",)
                                     if b not in ROSENBROCK_BACKENDS])
def test_backends_without_a_rosenbrock_engine_refuse_it_naming_those_that_run_it(backend):
    with pytest.raises(ValueError, match=re.escape(f"runs on the backends "
                                                   f"{list(ROSENBROCK_BACKENDS)}")):
        gpuivp.solve_ivp(vdpol, (0, 0.1), ensemble(vdpol_y0(), 2), method="Rosenbrock23",
                         vectorized=True, args=(VDPOL_EPS,), backend=backend)


def test_auto_runs_rosenbrock_methods_on_numba_never_on_the_lane_engine():
    """``auto`` prefers ``numba`` (after a real GPU) for the Rosenbrock methods as for the
    explicit ones, with or without ``vectorized``; numba's lane engine does not run them."""
    from gpuivp.backends import numba as nb
    from gpuivp.engines import lanes

    r = gpuivp.solve_ivp(rober, (0, ROBER_T), ensemble(rober_y0(), 3), method="Rodas5P",
                         args=(ROBER_K1, 3e7, ROBER_K3), rtol=1e-6, atol=1e-10, jac=rober_jac)
    assert r.backend == "numba" and np.all(r.status == 0)
    problem = captured_problem((rober, (0, ROBER_T), ensemble(rober_y0(), 64)),
                               dict(method="Rodas5P", args=(0.04, 3e7, 1e4)))
    for name in RTOL:
        tab = gpuivp.methods.METHODS[name]
        assert lanes.unsupported(problem, tab) is not None
        assert nb.engine_for(problem, tab) == "scalar"


def captured_problem(pos, kw):
    from _cudasim_worker import captured_problem as capture
    return capture(pos, kw, "numba")


def test_an_explicit_method_out_of_max_steps_suggests_a_stiff_method():
    r = gpuivp.solve_ivp(rober, (0, 100.0), ensemble(rober_y0(), 1), method="RK45",
                         vectorized=True, args=(0.04, 3e7, 1e4), backend="numpy", max_steps=300)
    assert r.status[0] == -2 and "Rosenbrock23" in r.message


def test_rosenbrock_result_does_not_depend_on_the_split():
    """All trajectories at once and one by one: bit-identical (the batched LU and solves
    work column by column)."""
    kw = dict(method="Rosenbrock23", vectorized=True, backend="numpy", rtol=1e-6, atol=1e-10,
              t_eval=np.linspace(0, 40, 5))
    k = len(ROBER_K1)
    full = gpuivp.solve_ivp(rober, (0, 40.0), ensemble(rober_y0(), k),
                            args=(ROBER_K1, 3e7, ROBER_K3), **kw)
    for i in range(k):
        one = gpuivp.solve_ivp(rober, (0, 40.0), ensemble(rober_y0(), 1),
                               args=(ROBER_K1[i:i + 1], 3e7, ROBER_K3[i:i + 1]), **kw)
        np.testing.assert_array_equal(one.y[:, 0], full.y[:, i])
        assert one.nfev[0] == full.nfev[i] and one.nlu[0] == full.nlu[i]


@pytest.mark.parametrize("backend", BACKENDS)
def test_rodas5p_converges_with_order_5_at_fixed_steps(backend):
    """A mildly stiff linear system with a time-dependent coefficient; reference from
    DOP853 at rtol 1e-13. The observed order approaches 5 from below at these steps."""
    def f(t, y, lam):
        return (lam * (y[0] - np.cos(t)) - np.sin(t), -y[2] * t, y[1])

    y0 = np.ones((3, 2))
    y0[1] = 0
    lam = np.array([-0.5, -1.0])
    kw = dict(vectorized=True, args=(lam,))
    ref = gpuivp.solve_ivp(f, (0, 2), y0, method="DOP853", rtol=1e-13, atol=1e-13,
                           backend="numpy", **kw).y_final
    errs = []
    for dt in (0.1, 0.05, 0.025):
        r = gpuivp.solve_ivp(f, (0, 2), y0, method="Rodas5P", dt=dt, backend=backend, **kw)
        errs.append(np.abs(r.y_final - ref).max(axis=0))
    orders = np.log2(np.array(errs[:-1]) / np.array(errs[1:]))
    assert np.all(orders > 4.2) and np.all(orders[-1] > 4.6), orders


def test_rodas5p_dense_output_is_accurate_between_steps():
    lam = np.array([-50.0, -2000.0])
    r = gpuivp.solve_ivp(prothero_robinson, (0, 2), np.ones((1, 2)), method="Rodas5P",
                         vectorized=True, args=(lam,), backend="numpy", rtol=1e-8, atol=1e-10,
                         dense_output=True)
    ts = np.linspace(0, 2, 101)
    assert np.all(r.naccept < 100)   # steps much longer than the spacing of ts
    np.testing.assert_allclose(r.sol(ts)[0], np.cos(ts)[None].repeat(2, 0), atol=1e-7)


def test_batched_lu_with_pivoting_solves_like_lapack_and_flags_singular_matrices():
    from gpuivp.engines.rosenbrock import lu_factor, lu_solve
    rng = np.random.default_rng(1)
    n, m = 5, 7
    A = rng.standard_normal((n, n, m))
    A[0, 0, :] = 0.0                  # needs a row swap
    A[:, :, 3] = 0.0                  # singular
    A[0, :, 5] = 2 * A[1, :, 5]       # singular after elimination (rank n - 1)
    b = rng.standard_normal((n, m))
    LU, perm, singular = lu_factor(A.copy())
    x = lu_solve(LU, perm, b)
    # Column 5 is singular in exact arithmetic; rounding may leave a tiny pivot there.
    assert singular[3] and not singular[[0, 1, 2, 4, 6]].any()
    for c in (0, 1, 2, 4, 6):
        np.testing.assert_allclose(x[:, c], np.linalg.solve(A[:, :, c], b[:, c]), rtol=1e-10)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("method", list(RTOL))
def test_rober_in_float32_with_finite_differences_matches_the_reference(method, backend):
    ref = np.load(REFS)["rober"]
    rtol, atol = 1e-4, 1e-7
    k = len(ROBER_K1)
    f32 = np.float32
    r = gpuivp.solve_ivp(rober, (0, ROBER_T), ensemble(rober_y0(), k), method=method,
                         vectorized=True, args=(ROBER_K1.astype(f32), f32(3e7),
                                                ROBER_K3.astype(f32)),
                         backend=backend, rtol=rtol, atol=atol, dtype=f32)
    assert r.y_final.dtype == f32 and np.all(r.status == 0)
    assert scaled_error(r.y_final, ref, rtol, atol) < 50


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("method", list(RTOL))
@pytest.mark.parametrize("use_jac", [False, True], ids=["finite-differences", "jac"])
def test_hires_matches_radau_reference_within_tolerance(use_jac, method, backend):
    ref = np.load(REFS)["hires"]
    rtol = RTOL[method]
    atol = rtol * 1e-2
    r = gpuivp.solve_ivp(hires, (0, HIRES_T), ensemble(hires_y0(), len(HIRES_K)),
                         method=method, vectorized=True, args=(HIRES_K,), backend=backend,
                         rtol=rtol, atol=atol, jac=hires_jac if use_jac else None)
    assert np.all(r.status == 0)
    assert scaled_error(r.y_final, ref, rtol, atol) < 50


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_chunked_rosenbrock_run_equals_the_whole_run(backend, monkeypatch):
    """A memory budget that forces chunks: the same values and counters (njev, nlu too)."""
    import gpuivp._chunking as chunking

    sizes = []
    real = chunking.chunk_size
    monkeypatch.setattr(chunking, "chunk_size",
                        lambda *a, **kw: sizes.append(real(*a, **kw)) or sizes[-1])
    kw = dict(method="Rodas5P", vectorized=True, backend=backend, rtol=1e-6, atol=1e-10)
    k = 6
    k1 = np.linspace(0.02, 0.08, k)
    k3 = 1e4 * np.linspace(0.5, 2, k)
    whole = gpuivp.solve_ivp(rober, (0, 40.0), ensemble(rober_y0(), k), args=(k1, 3e7, k3), **kw)
    from gpuivp._chunking import bytes_per_trajectory
    per = bytes_per_trajectory(gpuivp._problem.Problem(
        fun=rober, t0=0.0, t1=40.0, y0=ensemble(rober_y0(), k), args=(k1, 3e7, k3),
        arg_kinds=("traj1", "scalar", "traj1"), t_eval=None, rtol=1e-6, atol=np.full(3, 1e-10),
        first_step=None, max_step=np.inf, dt=None, max_steps=100, dtype=np.dtype(float),
        vectorized=True, method="Rodas5P"), backend)
    chunked = gpuivp.solve_ivp(rober, (0, 40.0), ensemble(rober_y0(), k), args=(k1, 3e7, k3),
                               memory_budget=2 * per, **kw)
    assert sizes[-1] < k, sizes   # the budgeted run was chunked
    np.testing.assert_array_equal(chunked.y_final, whole.y_final)
    for name in ("nfev", "njev", "nlu", "naccept"):
        np.testing.assert_array_equal(getattr(chunked, name), getattr(whole, name))


# Rosenbrock23 is left out: over OREGO's oscillations its order-2 global error at rtol 1e-6
# reaches about 500 times the tolerance (phase error accumulating over the cycles).
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("method", ["Rodas5P"])
def test_orego_matches_radau_reference_within_tolerance(method, backend):
    ref = np.load(REFS)["orego"]
    rtol = atol = RTOL[method]
    r = gpuivp.solve_ivp(orego, (0, OREGO_T), ensemble(orego_y0(), len(OREGO_W)),
                         method=method, vectorized=True, args=(OREGO_W,), backend=backend,
                         rtol=rtol, atol=atol)
    assert np.all(r.status == 0)
    assert scaled_error(r.y_final, ref, rtol, atol) < 50


# -- backends against numpy ------------------------------------------------------------------
def _half_conversion(t, y, k1, k2, k3):
    return y[0] - 0.5


@pytest.mark.parametrize("backend", OTHER_BACKENDS)
@pytest.mark.parametrize("method", list(RTOL))
@pytest.mark.parametrize("use_jac", [True, False], ids=["jac", "finite-differences"])
def test_backends_take_the_numpy_backends_rosenbrock_steps(use_jac, method, backend):
    """Robertson with t_eval, an event and dense output, float64: the same step counts (and
    njev, nlu) as ``numpy``, values to 1e-12 (the same arithmetic in the same order; on the
    host build of ``cupy`` it is NumPy's, bit for bit)."""
    k = len(ROBER_K1)
    kw = dict(method=method, vectorized=True, args=(ROBER_K1, 3e7, ROBER_K3),
              rtol=RTOL[method], atol=1e-10, jac=rober_jac if use_jac else None,
              t_eval=np.linspace(0, 40, 9), events=_half_conversion, dense_output=True)
    want = gpuivp.solve_ivp(rober, (0, 40.0), ensemble(rober_y0(), k), backend="numpy", **kw)
    got = gpuivp.solve_ivp(rober, (0, 40.0), ensemble(rober_y0(), k), backend=backend, **kw)
    assert got.backend == backend and np.all(got.status == 0)
    for name in ("status", "nfev", "njev", "nlu", "naccept", "nreject", "n_events"):
        np.testing.assert_array_equal(getattr(got, name), getattr(want, name), err_msg=name)
    for name in ("y", "y_final", "t_final"):
        np.testing.assert_allclose(getattr(got, name), getattr(want, name), rtol=1e-12,
                                   atol=1e-22, err_msg=name)
    for i in range(k):
        np.testing.assert_allclose(got.t_events[0][i], want.t_events[0][i], rtol=1e-12)
    ts = np.linspace(0, 40, 17)
    np.testing.assert_allclose(got.sol(ts), want.sol(ts), rtol=1e-12, atol=1e-22)


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_singular_trajectory_leaves_the_others_bit_identical(backend):
    """Two trajectories, one failing with a singular matrix at its first step, the other as
    when it runs alone: its values and counters bit for bit."""
    gamma = gpuivp.methods.METHODS["Rodas5P"].gamma
    dt = 0.125

    def lin(t, y, lam):
        return (lam * y[0] + np.sin(t),)

    def jac(t, y, lam):
        return ((lam,),)

    kw = dict(method="Rodas5P", vectorized=True, backend=backend, dt=dt, jac=jac,
              t_eval=np.linspace(0, 1, 5))
    both = gpuivp.solve_ivp(lin, (0, 1), np.ones((1, 2)), args=(np.array([1 / (dt * gamma),
                                                                          -3.0]),), **kw)
    alone = gpuivp.solve_ivp(lin, (0, 1), np.ones((1, 1)), args=(np.array([-3.0]),), **kw)
    assert both.status[0] == FAIL_SINGULAR and both.status[1] == 0
    np.testing.assert_array_equal(both.y[:, 1], alone.y[:, 0])
    for name in ("nfev", "njev", "nlu", "naccept"):
        assert getattr(both, name)[1] == getattr(alone, name)[0], name


@pytest.mark.parametrize("name", ["rober", "hires"])
def test_the_benchmarks_analytic_jacobians_match_central_differences(name):
    """The Jacobians the benchmark and the tests pass as ``jac`` (benchmarks/stiff.py)."""
    fun, jac, y, args = {
        "rober": (rober, rober_jac, np.array([0.9, 3e-5, 0.1]), (0.04, 3e7, 1e4)),
        "hires": (hires, hires_jac, np.array([0.7, 0.1, 0.05, 0.2, 0.3, 0.4, 0.2, 0.005]),
                  (280.0,)),
    }[name]
    J = np.array(jac(0.0, y, *args), dtype=float)
    n = len(y)
    for j in range(n):
        d = 1e-6 * max(abs(y[j]), 1e-6)
        up, down = y.copy(), y.copy()
        up[j] += d
        down[j] -= d
        col = (np.array(fun(0.0, up, *args)) - np.array(fun(0.0, down, *args))) / (2 * d)
        np.testing.assert_allclose(J[:, j], col, rtol=1e-6, atol=1e-6 * np.abs(J).max())


def test_the_stiff_benchmark_runs_its_rows_side_by_side_on_a_tiny_ensemble(capsys):
    """benchmarks/stiff.py on 4 trajectories to t = 40 (Diffrax left out): a row per method
    on each usable Rosenbrock backend and per scipy loop, every error against the Radau
    reference within a few tolerances."""
    import dataclasses

    import stiff

    prob = dataclasses.replace(stiff.PROBLEMS["robertson"], t1=40.0)
    results = stiff.table(prob, 4, 2, include_diffrax=False)
    labels = [r[0] for r in results]
    for backend in ROSENBROCK_BACKENDS:
        if unavailable_reason(backend) is None and backend != "cuda":
            assert f"gpuivp `{backend}` Rodas5P" in labels
    assert [lab for lab in labels if lab.startswith("scipy")] == [
        "scipy loop Radau", "scipy loop BDF", "scipy loop LSODA"]
    for label, m, dt, err, run in results:
        assert dt > 0 and run.y.shape == (3, 2)
        assert err < 1e-3, (label, err)   # relative error, atol floor; rtol 1e-6
    assert "| gpuivp `numpy` Rodas5P | 4 |" in capsys.readouterr().out


# -- the per-trajectory engine (numba; cuda: tests/test_cuda_sim.py) ------------------------
def assert_same_steps(a, b):
    for name in ("status", "nfev", "njev", "nlu", "naccept", "nreject"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)


# (problem, method, analytic jac?): a few compiles, every problem and both methods.
NUMBA_CASES = [("rober", "Rodas5P", True), ("rober", "Rosenbrock23", True),
               ("vdpol", "Rodas5P", True), ("hires", "Rosenbrock23", False),
               ("orego", "Rodas5P", False)]


def set_call(problem, method, use_jac, rtol=None):
    """``(fun, t_span, y0, kw, rtol, atol)`` of a Test Set problem as the tests above run it."""
    rtol = RTOL[method] if rtol is None else rtol
    if problem == "rober":
        return (rober, (0, ROBER_T), ensemble(rober_y0(), 3),
                dict(args=(ROBER_K1, 3e7, ROBER_K3), jac=rober_jac if use_jac else None),
                rtol, 1e-10)
    if problem == "vdpol":
        return (vdpol, (0, VDPOL_T), ensemble(vdpol_y0(), 2),
                dict(args=(VDPOL_EPS,), jac=vdpol_jac if use_jac else None), rtol, rtol)
    if problem == "hires":
        return hires, (0, HIRES_T), ensemble(hires_y0(), 2), dict(args=(HIRES_K,)), rtol, rtol * 1e-2
    return orego, (0, OREGO_T), ensemble(orego_y0(), 2), dict(args=(OREGO_W,)), rtol, rtol


@pytest.mark.parametrize("problem,method,use_jac", NUMBA_CASES,
                         ids=[f"{p}-{m}-{'jac' if j else 'fd'}" for p, m, j in NUMBA_CASES])
def test_numba_takes_the_numpy_backends_steps_on_the_test_set(problem, method, use_jac):
    """The same step counts (nfev, njev, nlu, naccept, nreject) as the numpy backend and the
    same values bit for bit: the per-trajectory engine does the numpy engine's operations in
    its order (Jacobian by differences, matrix, LU with pivoting, solves, stages, error),
    and both controllers take libm's ``pow`` (numpy through ``np.float_power``)."""
    fun, span, y0, kw, rtol, atol = set_call(problem, method, use_jac)
    kw.update(method=method, vectorized=True, rtol=rtol, atol=atol)
    a = gpuivp.solve_ivp(fun, span, y0, backend="numba", **kw)
    b = gpuivp.solve_ivp(fun, span, y0, backend="numpy", **kw)
    assert a.backend == "numba" and np.all(a.status == 0)
    assert_same_steps(a, b)
    np.testing.assert_array_equal(a.y_final, b.y_final)
    ref = np.load(REFS)[problem]
    assert scaled_error(a.y_final, ref, rtol, atol) < 50


BIT_CASES = NUMBA_CASES + [("rober", "Rosenbrock23", False),
                          ("rober", "Rodas5P", False)]


@pytest.mark.parametrize("problem,method,use_jac", BIT_CASES,
                         ids=[f"{p}-{m}-{'jac' if j else 'fd'}" for p, m, j in BIT_CASES])
def test_generated_engine_run_as_python_is_the_numpy_engine_bit_for_bit(problem, method,
                                                                       use_jac):
    """The per-trajectory engine's source run as Python (no compile; the controller's
    ``err ** EXPO`` is libm's ``pow``, as the numpy backend's ``np.float_power``): every operation (Jacobian by differences, the matrix, the
    LU with pivoting, the solves, the stages, error and step size) in the numpy backend's
    order, so float64 results and counters equal it bit for bit over whole Test Set runs."""
    import math

    from gpuivp.engines.per_trajectory import EngineSource
    from gpuivp.engines.runner import EngineState

    fun, span, y0, kw, rtol, atol = set_call(problem, method, use_jac)
    kw.update(method=method, vectorized=True, rtol=rtol, atol=atol)
    y0 = y0[:, :1]
    kw["args"] = tuple(a[:1] if np.ndim(a) else a for a in kw["args"])
    ref = gpuivp.solve_ivp(fun, span, y0, backend="numpy", **kw)
    p = captured_problem((fun, span, y0), kw)
    tab = gpuivp.methods.METHODS[method]
    src = EngineSource.for_problem(p, tab, "cpu")
    n = p.n
    solve_one = src.build(jit_helper=lambda f: f, fun=fun, jac=p.jac,
                          alloc_state=lambda: np.empty(n), alloc_matrix=lambda: np.empty(n * n),
                          alloc_index=lambda: np.empty(n, np.int64), nextafter=np.nextafter,
                          isfinite=math.isfinite, sqrt=math.sqrt)
    state = EngineState(p, 1 << 62, tab)
    solve_one(0, *state.arrays())
    raw = state.raw()
    for name in ("status", "nfev", "njev", "nlu", "naccept", "nreject"):
        assert raw[name][0] == getattr(ref, name)[0], name
    np.testing.assert_array_equal(raw["t_final"], ref.t_final)
    np.testing.assert_array_equal(raw["y_final"], ref.y_final)


def test_numba_jacobian_as_a_2d_array_equals_jacobian_as_rows():
    """Per trajectory, ``jac`` may return an (n, n) array instead of tuple rows."""
    def jac_2d(t, y, eps):
        return np.array([[0.0, 1.0], [(-2 * y[0] * y[1] - 1) / eps, (1 - y[0] * y[0]) / eps]])
    kw = dict(method="Rosenbrock23", args=(VDPOL_EPS,), backend="numba", rtol=1e-5, atol=1e-5)
    a = gpuivp.solve_ivp(vdpol, (0, 0.3), ensemble(vdpol_y0(), 2), jac=vdpol_jac, **kw)
    b = gpuivp.solve_ivp(vdpol, (0, 0.3), ensemble(vdpol_y0(), 2), jac=jac_2d, **kw)
    assert np.array_equal(a.y_final, b.y_final) and np.array_equal(a.nfev, b.nfev)


def test_numba_analytic_jacobian_and_finite_differences_give_the_same_steps():
    fun, span, y0, kw, rtol, atol = set_call("rober", "Rosenbrock23", True)
    kw.update(method="Rosenbrock23", rtol=rtol, atol=atol, backend="numba")
    a = gpuivp.solve_ivp(fun, span, y0, **kw)
    b = gpuivp.solve_ivp(fun, span, y0, **dict(kw, jac=None))
    assert np.array_equal(a.naccept, b.naccept) and np.array_equal(a.njev, b.njev)
    # Each Jacobian: n more evaluations by differences.
    np.testing.assert_array_equal(b.nfev - a.nfev, 3 * a.njev)
    np.testing.assert_allclose(a.y_final, b.y_final, rtol=1e-6, atol=1e-16)


def test_numba_rosenbrock_time_slices_resume_bit_for_bit(monkeypatch):
    """One step attempt per engine call: a slice that ends on a rejection keeps its
    Jacobian (``st_jac``) for the retry, so the result is the one-call result, bit for bit."""
    from gpuivp.backends import numba as nb

    fun, span, y0, kw, rtol, atol = set_call("rober", "Rodas5P", True)
    kw.update(method="Rodas5P", vectorized=True, rtol=rtol, atol=atol, backend="numba")
    whole = gpuivp.solve_ivp(fun, span, y0, **kw)
    assert np.all(whole.nreject > 0)
    monkeypatch.setattr(nb, "SLICE_ATTEMPTS", 1)
    sliced = gpuivp.solve_ivp(fun, span, y0, **kw)
    assert_same_steps(sliced, whole)
    np.testing.assert_array_equal(sliced.y_final, whole.y_final)


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_rodas5p_float32_with_finite_differences_matches_the_reference(backend):
    ref = np.load(REFS)["rober"]
    rtol, atol = 1e-4, 1e-7
    f32 = np.float32
    r = gpuivp.solve_ivp(rober, (0, ROBER_T), ensemble(rober_y0(), 3), method="Rodas5P",
                         vectorized=True, args=(ROBER_K1.astype(f32), f32(3e7),
                                                ROBER_K3.astype(f32)),
                         backend=backend, rtol=rtol, atol=atol, dtype=f32)
    assert r.y_final.dtype == f32 and np.all(r.status == 0)
    assert scaled_error(r.y_final, ref, rtol, atol) < 50


def rober4(t, y, dydt, k1, k2, k3):
    """Four Robertson systems side by side (n = 12: the looped per-trajectory engine), in
    place."""
    a, b, c = y[0:4], y[4:8], y[8:12]
    dydt[0:4] = -k1 * a + k3 * b * c
    dydt[4:8] = k1 * a - k2 * b * b - k3 * b * c
    dydt[8:12] = k2 * b * b


def test_numba_looped_engine_takes_the_numpy_backends_steps():
    """n = 12 (state arrays, loops; ``fun`` in place), finite differences, t_eval."""
    from gpuivp.engines.per_trajectory import loops_for
    assert loops_for(12)
    y0 = np.zeros((12, 3))
    y0[0:4] = 1.0
    kw = dict(method="Rodas5P", vectorized=True, args=(ROBER_K1, 3e7, ROBER_K3), rtol=1e-6,
              atol=1e-10, t_eval=np.linspace(0, 1e3, 5), inplace=True)
    a = gpuivp.solve_ivp(rober4, (0, 1e3), y0, backend="numba", **kw)
    b = gpuivp.solve_ivp(rober4, (0, 1e3), y0, backend="numpy", **kw)
    assert np.all(a.status == 0)
    assert_same_steps(a, b)
    np.testing.assert_allclose(a.y, b.y, rtol=1e-8, atol=1e-8 * np.abs(b.y).max())


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_rodas5p_cuda_kernel_compiles_to_ptx_for_sm80_and_sm90(dtype):
    """The real kernel (Robertson, Rodas5P; float32 with finite differences, float64 with
    ``jac``) through NVVM to PTX; the float32 kernel has no float64 arithmetic."""
    import dataclasses
    import importlib.util
    import re

    if importlib.util.find_spec("numba_cuda") is None:
        pytest.skip("numba-cuda is not installed")
    from gpuivp.backends import cuda as cb
    if cb.simulated():
        pytest.skip("numba.cuda is the CUDA simulator in this process")
    try:
        from numba.cuda.cudadrv import nvvm
        nvvm.NVVM()
    except Exception as exc:
        pytest.skip(f"libNVVM is not usable: {exc}")
    from test_cuda_ptx import make_problem
    tab = gpuivp.methods.METHODS["Rodas5P"]
    dt = np.dtype(dtype).type
    p = make_problem(rober, "Rodas5P", dtype, n=3, args=(dt(0.04), dt(3e7), dt(1e4)), dt=None)
    if dtype == "float64":
        p = dataclasses.replace(p, jac=rober_jac)
    kernel = cb.kernel_function(p, tab)
    for cc in ((8, 0), (9, 0)):
        ptx = cb.kernel_ptx(p, tab, cc=cc, kernel=kernel)
        assert f".target sm_{cc[0]}{cc[1]}" in ptx
        assert len(re.findall(r"^\.visible \.entry ", ptx, re.M)) == 1
        if dtype == "float32":
            assert not cb.f64_instructions(ptx) and "%fd" not in ptx
