"""The ``cupy`` backend without a GPU: its CUDA kernels compile for sm_80 and sm_90, and the
same kernels built as host C++ (``host_kernels.py``) drive the fused lockstep engine to the
numpy engine's steps.

The parity, method, failure, event and dense-output suites run ``backend="cupy"`` too (see
``conftest.py``); the tests here check what is particular to the fused engine.
"""
import importlib.util
import re
import shutil

import numpy as np
import pytest

import host_kernels
from gpuivp import solve_ivp
from gpuivp.backends import cupy as cupy_backend
from gpuivp.backends.cuda import ptxas_resources
from gpuivp.engines.fused import FusedLockstep, kernel_signatures, kernel_source
from gpuivp.engines.lockstep import Lockstep
from gpuivp.methods import METHODS
from problems import ENSEMBLES, captured_problem, lorenz

KERNELS = ("gpuivp_prepare", "gpuivp_stage", "gpuivp_control", "gpuivp_commit")
COMPILERS = {"nvcc": shutil.which("nvcc") is not None,
             "nvrtc": importlib.util.find_spec("cuda.bindings") is not None}
ARCHS = ("sm_80", "sm_90")


def test_a_cuda_compiler_is_available_to_check_the_kernels():
    assert any(COMPILERS.values()), "neither nvcc nor NVRTC (cuda.bindings) is installed"


def test_kernel_source_has_the_status_codes_and_every_kernel():
    source = kernel_source()
    assert "#define GPUIVP_RUNNING 11" in source and "#define GPUIVP_FAIL_NONFINITE -3" in source
    assert set(kernel_signatures(source)) == set(KERNELS)


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("compiler", sorted(COMPILERS))
def test_kernels_compile_for_every_method(compiler, dtype, arch):
    if not COMPILERS[compiler]:
        pytest.skip(f"{compiler} is not installed")
    nks = sorted({t.n_stages + 1 + t.n_extra for t in METHODS.values()})
    for nk in (nks if compiler == "nvcc" else nks[-1:]):
        ptx = cupy_backend.kernel_ptx(dtype, nk, arch, compiler=compiler)
        assert ptx.count(".entry") == len(KERNELS)
        if dtype == "float32":
            # In float32 every operation stays float32: no float64 in the PTX at all.
            assert ".f64" not in ptx
            # CuPy's -ftz=true (compiled with here as CuPy does): float32 flushes subnormals.
            assert re.search(r"\.ftz\.f32\b", ptx)
        else:
            # -ftz does not touch float64 (the reciprocal seed of IEEE division is always
            # rcp.approx.ftz.f64, with or without it).
            assert ".ftz.f64" not in ptx.replace("rcp.approx.ftz.f64", "")


@pytest.mark.skipif(shutil.which("ptxas") is None, reason="ptxas is not installed")
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_kernels_keep_a_zero_byte_stack_frame_and_do_not_spill(dtype):
    ptx = cupy_backend.kernel_ptx(dtype, 16, "sm_90")  # DOP853: the most stage rows
    res = ptxas_resources(ptx, "sm_90")
    assert res["max_stack"] == 0, res["log"]
    assert len(res["entries"]) == len(KERNELS)
    for name, entry in res["entries"].items():
        assert entry["stack"] == 0 and entry["spill_stores"] == 0, (name, entry)
        assert entry["registers"] <= 128, (name, entry)


# -- the fused engine on the host ---------------------------------------------------------------

@pytest.fixture
def host(monkeypatch):
    host_kernels.activate(monkeypatch)
    return host_kernels.HostLauncher


def _problem(method="RK45", dtype="float64", t_eval=None, **kw):
    """The validated Problem the front end hands the backend, for a Lorenz sweep."""
    fun, y0, args, t_span = ENSEMBLES["lorenz"]
    return captured_problem(lambda: solve_ivp(fun, t_span, y0, args=args, method=method,
                                              t_eval=t_eval, dtype=dtype, backend="numpy",
                                              vectorized=True, **kw))


class CountingNumpy(host_kernels.NumpyAsCupy):
    """Counts the host's looks at the device (``any`` or ``count_nonzero`` of the status)."""

    def __init__(self):
        self.checks = 0

    def any(self, *a, **kw):
        self.checks += 1
        return np.any(*a, **kw)

    def count_nonzero(self, *a, **kw):
        self.checks += 1
        return np.count_nonzero(*a, **kw)


def test_host_looks_at_the_device_only_every_few_steps(host):
    p = _problem()
    xp = CountingNumpy()
    launches = []
    launcher = host(p.dtype, host_kernels._LIB[0])

    def launch(name, *args):
        launches.append(name)
        launcher(name, *args)

    engine = FusedLockstep(p, METHODS["RK45"], xp, launch)
    raw = engine.run()
    steps = launches.count("gpuivp_prepare")
    assert np.all(raw["status"] == 0)
    assert steps >= int(np.max(raw["naccept"] + raw["nreject"]))
    assert xp.checks <= steps // FusedLockstep.CHECK_EVERY + 2
    # One step: the step size, six stage inputs, the controller and the commit.
    assert len(launches) == steps * (3 + METHODS["RK45"].n_stages)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_fused_engine_compacts_to_the_running_columns(host, monkeypatch, dtype):
    """Once most columns have finished, ``fun`` and the kernels run on the others only;
    the results are those of the full-width run, bit for bit."""
    fun, y0, _, t_span = ENSEMBLES["lorenz"]
    # rho spread wide: the trajectories need very different step counts; rho = 1e300
    # fails at t0 (status -3) and one per-trajectory arg follows the columns.
    rho = np.r_[np.linspace(0.5, 28.0, 9), 1e300, 0.7, 99.0]
    with np.errstate(over="ignore"):  # 1e300 is inf in float32: failing at t0 all the same
        p = captured_problem(lambda: solve_ivp(fun, (0.0, 4.0), y0, args=(10.0, rho, 8 / 3),
                                               t_eval=np.linspace(0.0, 4.0, 9), dtype=dtype,
                                               backend="numpy", vectorized=True,
                                               rtol=1e-7 if dtype == "float64" else 1e-4,
                                               atol=1e-9 if dtype == "float64" else 1e-6))
    tab = METHODS["RK45"]
    with np.errstate(all="ignore"):
        whole = FusedLockstep(p, tab, np, host(p.dtype, host_kernels._LIB[0])).run()
        monkeypatch.setattr(FusedLockstep, "COMPACT_MIN", 2)
        widths = []
        launcher = host(p.dtype, host_kernels._LIB[0])

        def launch(name, nk, size, *args):
            if name == "gpuivp_prepare":
                widths.append(size)
            launcher(name, nk, size, *args)

        calls = []
        real_fun = p.fun

        def spy(t, y, *args):
            calls.append(y.shape[1])
            return real_fun(t, y, *args)

        import dataclasses
        compacted = FusedLockstep(dataclasses.replace(p, fun=spy), tab, np, launch).run()
    assert widths[0] == len(rho) and min(widths) < len(rho) // 2, sorted(set(widths))
    assert min(calls) == min(widths)
    for key in ("status", "nfev", "naccept", "nreject", "t_final", "y_final", "y_eval"):
        np.testing.assert_array_equal(compacted[key], whole[key], err_msg=key)
    assert whole["status"][9] == -3 and np.all(np.delete(whole["status"], 9) == 0)


@pytest.mark.parametrize("method", ["RK23", "RK45", "DOP853", "Tsit5", "Vern7", "RK4"])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_fused_engine_takes_the_numpy_engines_steps(host, method, dtype):
    dt = 0.01 if method == "RK4" else None
    t_eval = np.linspace(0.0, 5.0, 11)
    kw = dict(rtol=1e-7, atol=1e-9) if dtype == "float64" else dict(rtol=1e-4, atol=1e-6)
    p = _problem(method, dtype, t_eval, dt=dt, **kw)
    tab = METHODS[method]
    want = Lockstep(p, tab, np).run()
    with np.errstate(all="ignore"):
        got = FusedLockstep(p, tab, np, host(p.dtype, host_kernels._LIB[0])).run()
    for key in ("status", "naccept", "nreject", "nfev"):
        if dtype == "float64" or method == "RK4":
            np.testing.assert_array_equal(got[key], want[key], err_msg=key)
        else:  # float32: an ulp in the controller's power may move a step (and its
            # interpolant stages, with t_eval)
            assert np.max(np.abs(got[key] - want[key])) <= 2 * (tab.n_stages + tab.n_extra), key
    tol = 1e-12 if dtype == "float64" else 5e-3
    for key in ("y_final", "t_final", "y_eval"):
        np.testing.assert_allclose(got[key], want[key], rtol=tol, atol=tol, err_msg=key)


def test_events_and_dense_output_run_the_array_engine():
    p = _problem()
    assert type(cupy_backend.engine(p, METHODS["RK45"], np, None)) is FusedLockstep
    for change in (dict(dense_output=True), dict(events=[lambda t, y: y[0]],
                                                 event_spec=[(0, 0)])):
        import dataclasses
        q = dataclasses.replace(p, **change)
        assert type(cupy_backend.engine(q, METHODS["RK45"], np, None)) is Lockstep


@pytest.mark.parametrize("backend", ["cupy"])
def test_cupy_backend_runs_a_lorenz_sweep_like_numba(backend):
    rho = np.linspace(0.0, 21.0, 40)
    kw = dict(args=(10.0, rho, 8.0 / 3.0), method="Tsit5", rtol=1e-8, atol=1e-8)
    got = solve_ivp(lorenz, (0.0, 1.0), np.c_[[1.0, 0.0, 0.0]], backend=backend,
                    vectorized=True, **kw)
    want = solve_ivp(lorenz, (0.0, 1.0), np.c_[[1.0, 0.0, 0.0]], backend="numba", **kw)
    assert got.backend == "cupy" and got.success
    np.testing.assert_array_equal(got.nfev, want.nfev)
    np.testing.assert_allclose(got.y_final, want.y_final, rtol=1e-12, atol=1e-12)


def _fake_cupy():
    """A stand-in ``cupy`` module: its arrays wrap NumPy's and say they are CuPy's."""
    import types

    mod = types.ModuleType("cupy")

    class ndarray:
        def __init__(self, a):
            self.a = np.asarray(a)

        def get(self):
            return self.a

    ndarray.__module__ = "cupy"
    mod.ndarray = ndarray
    mod.asarray = lambda a: a if isinstance(a, ndarray) else ndarray(a)
    mod.asnumpy = lambda a: a.a if isinstance(a, ndarray) else np.asarray(a)
    return mod


def test_every_output_follows_cupy_inputs(monkeypatch):
    """With CuPy inputs every array output is CuPy: also the per-event lists and sol(t)."""
    import sys

    from gpuivp import _ivp

    def cross(t, y, w):
        return y[0]

    res = solve_ivp(lambda t, y, w: (y[1], -w * w * y[0]), (0.0, 3.0), np.c_[[1.0, 0.0]],
                    args=(np.array([1.0, 2.0]),), events=[cross], dense_output=True,
                    backend="numpy", vectorized=True)
    cp = _fake_cupy()
    monkeypatch.setitem(sys.modules, "cupy", cp)
    out = _ivp._to_cupy(res)
    for key in ("t", "y", "t_final", "y_final", "status", "nfev"):
        assert isinstance(out[key], cp.ndarray), key
    for key in ("t_events", "y_events", "n_events"):
        assert all(isinstance(v, cp.ndarray) for v in out[key]), key
        for got, want in zip(out[key], res[key]):
            np.testing.assert_array_equal(got.a, want)
    for t in (1.5, np.linspace(0.0, 3.0, 4), cp.asarray(np.linspace(0.0, 3.0, 4))):
        got = out.sol(t)
        assert isinstance(got, cp.ndarray)
        np.testing.assert_array_equal(got.a, res.sol(cp.asnumpy(t)))


def test_progress_counts_every_column_after_compaction(host, monkeypatch):
    """The progress bar sees all k trajectories, the finished ones out of the narrow arrays."""
    monkeypatch.setattr(FusedLockstep, "COMPACT_MIN", 2)
    p = _problem()
    seen = []

    class Bar:
        def update_to(self, state):
            seen.append((np.asarray(state.status).shape[-1], int(np.sum(state.status < 10))))

    compactions = []
    real = FusedLockstep.compact
    monkeypatch.setattr(FusedLockstep, "compact",
                        lambda self, running: (compactions.append(1), real(self, running)))
    engine = FusedLockstep(p, METHODS["RK45"], np, host(p.dtype, host_kernels._LIB[0]))
    engine.run(Bar())
    assert compactions and all(width == p.k for width, _ in seen)
    assert seen[-1][1] == p.k and engine.width == p.k


@pytest.mark.parametrize("method", ["Rosenbrock23", "Rodas5P"])
def test_rosenbrock_methods_run_the_array_engine_with_its_linear_solve_part(method):
    """The fused kernels have no linear-solve part: a Rosenbrock method takes the generic
    lockstep engine on CuPy arrays (batched LU per step), with or without events."""
    from gpuivp.engines.rosenbrock import RosenbrockPart

    p = _problem()
    engine = cupy_backend.engine(p, METHODS[method], np, None)
    assert type(engine) is Lockstep and isinstance(engine.linear, RosenbrockPart)
