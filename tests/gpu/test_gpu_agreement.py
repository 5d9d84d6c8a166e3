"""The ``cuda`` backend on a real GPU: agrees with ``numba`` and with scipy.

Marked ``gpu`` and skipped where ``numba.cuda.is_available()`` is False. Under
numba's CUDA simulator it is skipped too (set ``GPUIVP_GPU_TESTS_ON_SIM=1`` to run
it there, with small ensembles, to check the test itself).

On the GPU, NVVM contracts ``a*b + c`` into fused multiply-adds, so float64
results differ from the CPU's in the last bits (step sequences normally stay the
same); the tolerances below allow for that, not for a different algorithm.
"""
import os
import sys

import numpy as np
import pytest
from scipy.integrate import solve_ivp as scipy_solve_ivp

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
from problems import ENSEMBLES, lorenz  # noqa: E402

from gpuivp import solve_ivp  # noqa: E402

sys.path.insert(0, HERE)
from gpu_checks import assert_events_and_dense_output_agree, sqrt_decay  # noqa: E402


def _gpu_state():
    try:
        from gpuivp.backends import cuda as cb
    except ImportError as exc:  # pragma: no cover
        return False, False, f"gpuivp.backends.cuda does not import: {exc}"
    try:
        sim = cb.simulated()
        reason = cb.unavailable_reason()
    except Exception as exc:  # pragma: no cover
        return False, False, f"numba.cuda failed: {exc}"
    if sim and os.environ.get("GPUIVP_GPU_TESTS_ON_SIM") != "1":
        return False, True, "numba.cuda is the CUDA simulator (set GPUIVP_GPU_TESTS_ON_SIM=1)"
    if reason is not None:
        return False, sim, reason
    return True, sim, ""


USABLE, SIM, WHY = _gpu_state()

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not USABLE, reason=f"no usable GPU: {WHY}")]

RTOL, ATOL = 1e-10, 1e-12
BIG_K = 64 if SIM else 4096


def _scale(a):
    a = np.asarray(a)
    return float(np.max(np.abs(a[np.isfinite(a)]), initial=1.0))


@pytest.mark.parametrize("name", list(ENSEMBLES))
@pytest.mark.parametrize("method", ["RK45", "DOP853", "Tsit5"])
def test_cuda_float64_agrees_with_numba_and_scipy(name, method):
    fun, y0, args, t_span = ENSEMBLES[name]
    t_eval = np.linspace(*t_span, 9)
    kw = dict(method=method, args=args, rtol=RTOL, atol=ATOL, t_eval=t_eval)
    gpu = solve_ivp(fun, t_span, y0, backend="cuda", **kw)
    cpu = solve_ivp(fun, t_span, y0, backend="numba", **kw)
    assert gpu.backend == "cuda" and gpu.y.dtype == np.float64
    np.testing.assert_array_equal(gpu.status, 0)
    np.testing.assert_array_equal(gpu.status, cpu.status)
    # Same algorithm: the same steps up to rounding (FMA contraction on the GPU).
    assert np.all(np.abs(gpu.nfev - cpu.nfev) <= 0.02 * cpu.nfev + 14), (gpu.nfev, cpu.nfev)
    s = _scale(cpu.y)
    np.testing.assert_allclose(gpu.y, cpu.y, rtol=1e-8, atol=1e-8 * s)
    np.testing.assert_allclose(gpu.y_final, cpu.y_final, rtol=1e-8, atol=1e-8 * s)
    np.testing.assert_allclose(gpu.t_final, t_span[1], rtol=0, atol=1e-12 * abs(t_span[1]))
    # And close to scipy, trajectory by trajectory.
    if method == "Tsit5":
        return  # not a scipy method: checked against numba above
    k = gpu.y_final.shape[1]
    for i in range(k):
        yi = np.asarray(y0)[:, min(i, np.shape(y0)[1] - 1)]
        ai = tuple(a[..., i] if np.ndim(a) else a for a in args)
        ref = scipy_solve_ivp(fun, t_span, yi, method=method, args=ai, rtol=RTOL, atol=ATOL,
                              t_eval=t_eval)
        np.testing.assert_allclose(gpu.y[:, i, :], ref.y, rtol=1e-7, atol=1e-7 * s,
                                   err_msg=f"{name} trajectory {i}")


@pytest.mark.parametrize("method,dt", [("RK45", None), ("Tsit5", None), ("RK4", 0.01)])
def test_cuda_float32(method, dt):
    fun, y0, args, t_span = ENSEMBLES["lorenz"]
    kw = dict(method=method, args=args, rtol=1e-4, atol=1e-6, dt=dt, dtype=np.float32)
    gpu = solve_ivp(fun, t_span, y0, backend="cuda", **kw)
    cpu64 = solve_ivp(fun, t_span, y0, backend="numba",
                      **dict(kw, dtype=np.float64, rtol=1e-10, atol=1e-12))
    assert gpu.y_final.dtype == np.float32
    np.testing.assert_array_equal(gpu.status, 0)
    np.testing.assert_allclose(gpu.y_final, cpu64.y_final, rtol=2e-3,
                               atol=2e-3 * _scale(cpu64.y_final))


def test_cuda_many_blocks_and_slices():
    """Several blocks, and many short launches give the one-launch result bit for bit."""
    from gpuivp.backends import cuda as cb

    rho = np.linspace(0.5, 24.0, BIG_K)
    kw = dict(args=(10.0, rho, 8.0 / 3.0), rtol=1e-8, atol=1e-10,
              t_eval=np.linspace(0.0, 2.0, 5))
    y0 = np.c_[[1.0, 0.0, 0.0]]
    whole = solve_ivp(lorenz, (0.0, 2.0), y0, backend="cuda", **kw)
    cpu = solve_ivp(lorenz, (0.0, 2.0), y0, backend="numba", **kw)
    np.testing.assert_array_equal(whole.status, 0)
    np.testing.assert_allclose(whole.y, cpu.y, rtol=1e-6, atol=1e-6 * _scale(cpu.y))
    old = cb.GPU_SLICE
    cb.GPU_SLICE = 17
    try:
        sliced = solve_ivp(lorenz, (0.0, 2.0), y0, backend="cuda", **kw)
    finally:
        cb.GPU_SLICE = old
    for f in ("status", "nfev", "naccept", "nreject", "t_final", "y_final", "y"):
        np.testing.assert_array_equal(sliced[f], whole[f], err_msg=f)


def test_cuda_failures_stay_per_trajectory():
    res = solve_ivp(sqrt_decay, (0.0, 1.0), np.c_[[1.0]], args=(np.array([1.0, -1.0, 4.0]),),
                    backend="cuda", rtol=1e-8, atol=1e-10)
    np.testing.assert_array_equal(res.status, [0, -3, 0])
    np.testing.assert_allclose(res.y_final[0, [0, 2]], np.exp([-1.0, -2.0]), rtol=1e-6)
    res = solve_ivp(lorenz, (0.0, 5.0), np.c_[[1.0, 0.0, 0.0]], args=(10.0, 28.0, 8 / 3),
                    backend="cuda", max_steps=7)
    np.testing.assert_array_equal(res.status, [-2])
    assert res.naccept[0] + res.nreject[0] == 7


def test_auto_picks_cuda_for_an_ensemble():
    fun, y0, args, t_span = ENSEMBLES["vanderpol"]
    assert solve_ivp(fun, t_span, y0, args=args).backend == "cuda"


def test_cuda_events_and_dense_output():
    """Events (root finding on the interpolant) and dense output, against numba."""
    assert_events_and_dense_output_agree("cuda", "numba")
