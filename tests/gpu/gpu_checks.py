"""Checks and functions shared by the real-GPU tests of both GPU backends.

Every ``fun`` and event function the GPU tests run lives at module level (here or in
``tests/problems.py``), so that ``tests/test_cuda_funs.py`` compiles each one to PTX
without a GPU."""
import numpy as np

from gpuivp import solve_ivp
from problems import harmonic


def sqrt_decay(t, y, c):
    """y' = -sqrt(c) y: NaN (status -3) for c < 0."""
    return (-np.sqrt(c) * y[0],)


def cross(t, y, w):
    return y[0]


def stop(t, y, w):
    return t - 5.0 - w


stop.terminal = True


def assert_events_and_dense_output_agree(backend, reference, **kw):
    """Events (root finding on the interpolant, a terminal one) and dense output of
    ``backend`` against the CPU backend ``reference``."""
    kw = dict(kw, args=(np.array([1.0, 2.0, 3.0]),), rtol=1e-9, atol=1e-11, events=[cross, stop],
              dense_output=True)
    gpu = solve_ivp(harmonic, (0.0, 10.0), np.c_[[1.0, 0.0]], backend=backend, **kw)
    cpu = solve_ivp(harmonic, (0.0, 10.0), np.c_[[1.0, 0.0]], backend=reference, **kw)
    np.testing.assert_array_equal(gpu.status, [1, 1, 1])
    np.testing.assert_allclose(gpu.t_final, [6.0, 7.0, 8.0], rtol=1e-12)
    for g, c in zip(gpu.n_events, cpu.n_events):
        np.testing.assert_array_equal(g, c)
    for g, c in zip(gpu.t_events, cpu.t_events):
        np.testing.assert_allclose(g, c, rtol=1e-9, atol=1e-9, equal_nan=True)
    ts = np.linspace(0.0, 6.0, 13)
    np.testing.assert_allclose(gpu.sol(ts), cpu.sol(ts), rtol=1e-7, atol=1e-8, equal_nan=True)
