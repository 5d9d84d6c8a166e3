"""The ``cupy`` backend on a real GPU: agrees with the numpy engine and with scipy, and
arrays follow the caller.

Marked ``gpu`` and skipped where CuPy sees no GPU. The kernels are compiled with
``--fmad=false``, so the fused engine does the numpy engine's arithmetic; CUDA's ``pow``
may differ from the CPU's by an ulp, which can move a step now and then.
"""
import os
import sys

import numpy as np
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
from problems import ENSEMBLES, lorenz  # noqa: E402

from gpuivp import solve_ivp  # noqa: E402

sys.path.insert(0, HERE)
from gpu_checks import assert_events_and_dense_output_agree, sqrt_decay  # noqa: E402
from gpuivp.backends import cupy as cupy_backend  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(HERE)), "benchmarks"))
from stiff import rober  # noqa: E402  (Robertson's kinetics: one home, benchmarks/stiff.py)

WHY = cupy_backend.unavailable_reason()
pytestmark = [pytest.mark.gpu, pytest.mark.skipif(WHY is not None, reason=f"no GPU: {WHY}")]
RTOL, ATOL = 1e-10, 1e-12


def _scale(a):
    a = np.asarray(a)
    return float(np.max(np.abs(a[np.isfinite(a)]), initial=1.0))


@pytest.mark.parametrize("name", list(ENSEMBLES))
@pytest.mark.parametrize("method", ["RK23", "RK45", "DOP853", "Tsit5"])
def test_cupy_float64_agrees_with_numpy(name, method):
    fun, y0, args, t_span = ENSEMBLES[name]
    kw = dict(method=method, args=args, rtol=RTOL, atol=ATOL, t_eval=np.linspace(*t_span, 9),
              vectorized=True)
    gpu = solve_ivp(fun, t_span, y0, backend="cupy", **kw)
    cpu = solve_ivp(fun, t_span, y0, backend="numpy", **kw)
    assert gpu.backend == "cupy" and isinstance(gpu.y, np.ndarray)
    np.testing.assert_array_equal(gpu.status, 0)
    assert np.all(np.abs(gpu.nfev - cpu.nfev) <= 0.01 * cpu.nfev + 14), (gpu.nfev, cpu.nfev)
    s = _scale(cpu.y)
    np.testing.assert_allclose(gpu.y, cpu.y, rtol=1e-8, atol=1e-8 * s)


@pytest.mark.parametrize("method,dt", [("RK45", None), ("Tsit5", None), ("RK4", 0.01)])
def test_cupy_float32(method, dt):
    fun, y0, args, t_span = ENSEMBLES["lorenz"]
    kw = dict(method=method, args=args, rtol=1e-4, atol=1e-6, dt=dt, vectorized=True)
    gpu = solve_ivp(fun, t_span, y0, backend="cupy", dtype=np.float32, **kw)
    cpu = solve_ivp(fun, t_span, y0, backend="numba", **dict(kw, rtol=1e-10, atol=1e-12))
    assert gpu.y_final.dtype == np.float32
    np.testing.assert_array_equal(gpu.status, 0)
    np.testing.assert_allclose(gpu.y_final, cpu.y_final, rtol=2e-3,
                               atol=2e-3 * _scale(cpu.y_final))


def test_cupy_in_cupy_out_and_a_large_sweep():
    import cupy

    rho = cupy.linspace(0.0, 21.0, 1 << 14)
    y0 = cupy.asarray(np.c_[[1.0, 0.0, 0.0]])
    res = solve_ivp(lorenz, (0.0, 1.0), y0, args=(10.0, rho, 8.0 / 3.0), method="Tsit5",
                    rtol=1e-8, atol=1e-8, backend="cupy", vectorized=True)
    assert isinstance(res.y_final, cupy.ndarray) and isinstance(res.status, cupy.ndarray)
    ref = solve_ivp(lorenz, (0.0, 1.0), np.c_[[1.0, 0.0, 0.0]],
                    args=(10.0, cupy.asnumpy(rho), 8.0 / 3.0), method="Tsit5", rtol=1e-8,
                    atol=1e-8, backend="numba")
    np.testing.assert_allclose(cupy.asnumpy(res.y_final), ref.y_final, rtol=1e-8, atol=1e-8)


def test_cupy_failures_stay_per_trajectory():
    res = solve_ivp(sqrt_decay, (0.0, 1.0), np.c_[[1.0]], args=(np.array([1.0, -1.0, 4.0]),),
                    backend="cupy", vectorized=True, rtol=1e-8, atol=1e-10)
    np.testing.assert_array_equal(res.status, [0, -3, 0])
    np.testing.assert_allclose(res.y_final[0, [0, 2]], np.exp([-1.0, -2.0]), rtol=1e-6)


def test_cupy_events_and_dense_output():
    assert_events_and_dense_output_agree("cupy", "numpy", vectorized=True)


@pytest.mark.parametrize("method", ["Rosenbrock23", "Rodas5P"])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_cupy_rosenbrock_agrees_with_numpy(method, dtype):
    """Robertson over a grid of rate constants to t = 1e5 (finite-difference Jacobians),
    with t_eval: the batched LU on the GPU takes numpy's steps (CUDA's pow in the
    controller may differ by an ulp and move a step now and then)."""
    k = 256
    k1 = np.linspace(0.02, 0.08, k)
    k3 = 1e4 * np.linspace(0.5, 2, k)
    rtol, atol = (1e-6, 1e-10) if dtype == "float64" else (1e-4, 1e-7)
    kw = dict(method=method, args=(k1, 3e7, k3), rtol=rtol, atol=atol, dtype=dtype,
              t_eval=np.logspace(-5, 5, 11), vectorized=True)
    y0 = np.c_[[1.0, 0.0, 0.0]]
    gpu = solve_ivp(rober, (0.0, 1e5), y0, backend="cupy", **kw)
    cpu = solve_ivp(rober, (0.0, 1e5), y0, backend="numpy", **kw)
    assert gpu.backend == "cupy"
    np.testing.assert_array_equal(gpu.status, 0)
    for name in ("nfev", "nlu"):
        a, b = getattr(gpu, name), getattr(cpu, name)
        assert np.all(np.abs(a - b) <= 0.01 * b + 8), (name, a, b)
    tol = 1e-8 if dtype == "float64" else 1e-3
    np.testing.assert_allclose(gpu.y, cpu.y, rtol=tol, atol=tol * 1e-4)
