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


# -- every step's t, against scipy under a BLAS that sums in order -----------------------------
# scipy forms the stages and error estimates with np.dot, whose OpenBLAS kernel is chosen for
# the CPU (AVX-512 and AVX2 kernels use FMA and several accumulators); the engines sum term
# after term. Where an error estimate cancels to a small fraction of its terms (DOP853's fifth-
# order estimate on short steps: 1e-10 of terms of size 1), those last bits move the next step
# by up to ~1e-7 relative, in scipy itself: its own step times change that much between
# OpenBLAS kernels on one machine. With OpenBLAS's Prescott kernel (SSE3: one accumulator, no
# FMA, forced by OPENBLAS_CORETYPE in a subprocess) scipy sums in the engines' order, and
# every step must then agree. Two-component problems: np.linalg.norm's two-accumulator sum
# equals the plain sum for n <= 2.
STEP_CASES = [("harmonic", 1e-8), ("vanderpol", 1e-4), ("vanderpol", 1e-8)]
STEP_PROBLEMS = {"harmonic": ("harmonic", [1.0, 0.0], (0.0, 10.0), (1.0,)),
                 "vanderpol": ("vanderpol", [2.0, 0.0], (0.0, 6.0), (1.0,))}


def _openblas_kernel_selectable():
    import platform
    try:
        blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
    except Exception:                       # noqa: BLE001 - an older NumPy: no dict config
        return False
    return (platform.machine() in ("x86_64", "AMD64") and blas.get("name") == "scipy-openblas"
            and "DYNAMIC_ARCH" in blas.get("openblas configuration", ""))


_SEQUENTIAL_SCIPY = r"""
import json, sys
import numpy as np, scipy.integrate
sys.path.insert(0, sys.argv[1])
import problems
out = {}
for method, name, rtol, fun, y0, t_span, args in json.loads(sys.argv[2]):
    r = scipy.integrate.solve_ivp(getattr(problems, fun), t_span, np.array(y0), args=tuple(args),
                                  method=method, rtol=rtol, atol=rtol * 1e-2)
    out[f"{method} {name} {rtol}"] = [r.t.tolist(), int(r.nfev)]
json.dump(out, sys.stdout)
"""


@pytest.fixture(scope="module")
def sequential_scipy_steps():
    import json
    import os
    import subprocess
    import sys

    if not _openblas_kernel_selectable():
        pytest.skip("needs NumPy's scipy-openblas with DYNAMIC_ARCH on x86-64 to pick the "
                    "sequential OpenBLAS kernel")
    cases = [(m, name, rtol, *STEP_PROBLEMS[name]) for m in SCIPY_METHODS
             for name, rtol in STEP_CASES]
    env = dict(os.environ, OPENBLAS_CORETYPE="Prescott")
    run = subprocess.run([sys.executable, "-c", _SEQUENTIAL_SCIPY, os.path.dirname(__file__),
                          json.dumps(cases)], env=env, capture_output=True, text=True,
                         timeout=300, check=True)
    return json.loads(run.stdout)


# Not cupy: its pow is the device's (CUDA's is not libm's, to the last bit).
@pytest.mark.parametrize("backend", ["numba", "numpy"])
@pytest.mark.parametrize("method", SCIPY_METHODS)
def test_every_step_is_scipys_under_a_sequential_blas(method, backend, sequential_scipy_steps):
    import problems

    for name, rtol in STEP_CASES:
        fun, y0, t_span, args = STEP_PROBLEMS[name]
        want, nfev = sequential_scipy_steps[f"{method} {name} {rtol}"]
        res = solve_ivp(getattr(problems, fun), t_span, np.array(y0), args=args, method=method,
                        rtol=rtol, atol=rtol * 1e-2, backend=backend, vectorized=True)
        assert res.nfev == nfev, f"{name}, rtol {rtol}: nfev {res.nfev} != scipy's {nfev}"
        assert len(res.t) == len(want), f"{name}, rtol {rtol}: {len(res.t)} steps != {len(want)}"
        np.testing.assert_allclose(res.t, want, rtol=1e-12, atol=0,
                                   err_msg=f"{name}, rtol {rtol}: step times")
