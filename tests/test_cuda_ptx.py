"""The real ``cuda`` kernels compiled to PTX (and by ``ptxas``) without a GPU.

``numba.cuda.compile_ptx`` needs no device once ``get_current_device`` is patched
for the compile (see :func:`gpuivp.backends.cuda.kernel_ptx`); ``ptxas -v``, when on
PATH, reports registers, stack frame (local memory) and spills: a performance
signal CI can check. The simulator must not be active in this process: if it
is (``NUMBA_ENABLE_CUDASIM=1`` for the whole session), these tests skip.
"""
import importlib.util
import math
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from problems import lorenz  # noqa: E402

pytestmark = pytest.mark.skipif(importlib.util.find_spec("numba_cuda") is None,
                                reason="numba-cuda is not installed")

METHODS = {"RK45": None, "Tsit5": None, "RK4": 0.01}
DTYPES = ("float32", "float64")
CCS = ((8, 0), (9, 0))
PTXAS = shutil.which("ptxas")


def make_problem(fun, method, dtype, n=3, args=(10.0, np.linspace(0.5, 20.0, 4), 8.0 / 3.0),
                 dt="default"):
    """A small validated ensemble Problem (what the front end hands a backend)."""
    import warnings

    from gpuivp import _problem as P
    dtype = np.dtype(dtype)
    dt = METHODS.get(method) if dt == "default" else dt
    k = 4
    values, kinds, k = P.ensemble_args(args, k, dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rtol, atol = P.check_tol(1e-6, 1e-9, n, dtype)
    return P.Problem(fun=fun, t0=0.0, t1=1.0, y0=np.ones((n, k), dtype), args=values,
                     arg_kinds=kinds, t_eval=None, rtol=rtol, atol=atol, first_step=None,
                     max_step=np.inf, dt=dt, max_steps=1000, dtype=dtype, vectorized=False,
                     method=method)


@pytest.fixture(scope="module")
def cb():
    from gpuivp.backends import cuda as cb
    if cb.simulated():
        pytest.skip("numba.cuda is the CUDA simulator in this process (NUMBA_ENABLE_CUDASIM)")
    try:
        from numba.cuda.cudadrv import nvvm
        nvvm.NVVM()
    except Exception as exc:  # no libNVVM: nothing can compile to PTX here
        pytest.skip(f"libNVVM is not usable: {exc}")
    return cb


_PTX = {}


@pytest.fixture(scope="module")
def ptx_of(cb):
    """``ptx_of(method, dtype, cc)``: the Lorenz kernel's PTX, compiled once per key."""
    from gpuivp.methods import METHODS as TABLEAUS

    kernels = {}

    def get(method, dtype, cc):
        key = (method, dtype, cc)
        if key not in _PTX:
            problem = make_problem(lorenz, method, dtype)
            if (method, dtype) not in kernels:
                kernels[method, dtype] = cb.kernel_function(problem, TABLEAUS[method])
            _PTX[key] = cb.kernel_ptx(problem, TABLEAUS[method], cc=cc,
                                      kernel=kernels[method, dtype])
        return _PTX[key]

    return get


@pytest.fixture(scope="module")
def ptxas():
    if PTXAS is None:
        pytest.skip("ptxas is not on PATH")
    return PTXAS


CASES = [(m, d) for m in METHODS for d in DTYPES]


@pytest.mark.parametrize("method,dtype", CASES)
def test_kernel_compiles_to_ptx(ptx_of, method, dtype):
    for cc in CCS:
        ptx = ptx_of(method, dtype, cc)
        assert f".target sm_{cc[0]}{cc[1]}" in ptx
        assert len(re.findall(r"^\.visible \.entry ", ptx, re.M)) == 1


@pytest.mark.parametrize("method", list(METHODS))
def test_float32_kernel_has_no_float64(cb, ptx_of, method):
    for cc in CCS:
        ptx = ptx_of(method, "float32", cc)
        f64 = cb.f64_instructions(ptx)
        assert not f64, f"float64 instructions in the float32 {method} kernel: {f64}"
        assert ".f64" not in ptx and "%fd" not in ptx


def test_float64_detector_sees_a_float_literal(cb):
    """Positive control: a float64 literal in a float32 ``fun`` shows up as .f64 arithmetic."""
    from gpuivp.methods import METHODS as TABLEAUS

    def spring(t, y, w):
        return (y[1], -w * y[0] - 0.1 * y[1])

    problem = make_problem(spring, "RK4", "float32", n=2, args=(np.ones(4),))
    ptx = cb.kernel_ptx(problem, TABLEAUS["RK4"], cc=(9, 0))
    assert cb.f64_instructions(ptx)


def test_fun_that_does_not_compile_is_a_compile_error(cb):
    """numba's reason comes through, as a BackendUnavailable (``auto`` falls back)."""
    from gpuivp.backends import BackendUnavailable
    from gpuivp.methods import METHODS as TABLEAUS

    def bad(t, y, a):
        d = {}
        d[1] = y[0]
        return (d[1] * a,)

    problem = make_problem(bad, "RK4", "float64", n=1, args=(np.ones(4),))
    with pytest.raises(cb.CompileError, match="could not be compiled for cuda") as info:
        cb.kernel_ptx(problem, TABLEAUS["RK4"], cc=(9, 0))
    assert isinstance(info.value, BackendUnavailable)


def test_numba_cuda_error_classes_are_compile_errors(cb):
    """numba-cuda raises its own classes (``numba.cuda.core.errors``, not numba's), and a
    bare ``KeyError`` for a NumPy function it has no implementation of: all are
    CompileErrors (``auto`` falls back), with the explicit-backend message."""
    from gpuivp.methods import METHODS as TABLEAUS

    def unsupported(t, y, a):
        try:
            v = y[0] * a
        except Exception as e:  # noqa: F841
            v = 0.0
        return (v,)

    problem = make_problem(unsupported, "RK4", "float64", n=1, args=(np.ones(4),))
    with pytest.raises(cb.CompileError, match="`fun` could not be compiled for cuda: .*Hint"):
        cb.kernel_ptx(problem, TABLEAUS["RK4"], cc=(9, 0))


#: 1 MiB of float64: sixteen times what ``.const`` memory holds (64 KB).
TABLE_1MB = np.linspace(0.0, 1.0, 131_072)


def reads_table(t, y, a):
    i = int(abs(y[0]) * 1000.0) % 131_072
    return (-a * y[0] + TABLE_1MB[i],)


def _const_bytes(ptx):
    return sum(int(m) for m in re.findall(r"^\s*\.const\s.*\[(\d+)\]", ptx, re.M))


def test_large_global_table_goes_through_global_memory(cb):
    """A 1 MiB global array read by ``fun`` is a kernel argument (global memory), not
    baked into ``.const`` (where ptxas fails: "File uses too much global constant data")."""
    from gpuivp.methods import METHODS as TABLEAUS

    problem = make_problem(reads_table, "RK4", "float64", n=1, args=(np.ones(4),))
    ptx = cb.kernel_ptx(problem, TABLEAUS["RK4"], cc=(9, 0))
    assert _const_bytes(ptx) < 65536, _const_bytes(ptx)
    if PTXAS:
        res = cb.ptxas_resources(ptx, arch="sm_90", ptxas=PTXAS)
        assert res["registers"] is not None, res["log"]


def hh_rate(v):
    return 0.01 * (v + 55.0) / (1.0 - math.exp(-(v + 55.0) / 10.0))


def hh_gate(alpha, x):
    return alpha * (1.0 - x) - 0.125 * x


def hh_like(t, y, current):
    """Rate functions as plain module functions: compiled as device functions."""
    return (current - 36.0 * y[1] ** 4 * (y[0] + 77.0), hh_gate(hh_rate(y[0]), y[1]))


def test_plain_python_helpers_compile_as_device_functions(cb):
    from gpuivp.methods import METHODS as TABLEAUS

    problem = make_problem(hh_like, "RK4", "float64", n=2, args=(np.ones(4),))
    ptx = cb.kernel_ptx(problem, TABLEAUS["RK4"], cc=(9, 0))
    assert len(re.findall(r"^\.visible \.entry ", ptx, re.M)) == 1


def _spacing(t, y, a):
    return (np.spacing(y[0]) * a,)  # a ufunc numba-cuda types but has no loop for


def _generator(t, y, a):
    return (sum(v for v in (y[0], a)),)  # numba-cuda's own UnsupportedError


@pytest.mark.parametrize("fun,reason", [(_spacing, r"KeyError: <ufunc 'spacing'> has no "
                                         r"numba-cuda implementation"),
                                        (_generator, r"UnsupportedError: The use of yield")])
def test_numba_cuda_errors_are_compile_errors(cb, fun, reason):
    """numba-cuda's own error classes and a bare KeyError from ufunc lowering are
    CompileErrors too, with numba's reason in one line."""
    from gpuivp.methods import METHODS as TABLEAUS

    problem = make_problem(fun, "RK4", "float32", n=1, args=(np.ones(4),))
    with pytest.raises(cb.CompileError, match=reason) as info:
        cb.kernel_ptx(problem, TABLEAUS["RK4"], cc=(9, 0))
    assert "\n" not in str(info.value)
    assert info.value.__cause__ is not None


def test_link_errors_are_compile_errors(cb):
    """What ptxas or the linker report while the kernel is bound (on a GPU, before the
    first launch) is a CompileError as well."""
    from numba.cuda.cudadrv.driver import LinkerError

    msg = "ptxas error   : File uses too much global constant data (0x27100 bytes, 0x10000 max)"
    with pytest.raises(cb.CompileError, match=r"LinkerError: ptxas error .*too much global"):
        with cb._compile_errors():
            raise LinkerError(msg + "\nptxas fatal   : Ptx assembly aborted")


def _raises(t, y, c):
    if c < 0:
        raise ValueError("c must be >= 0")
    return (-c * y[0],)


def test_fun_that_raises_compiles_with_the_raised_flag(cb):
    """A ``raise`` in ``fun`` compiles (numba.cuda drops the exception); the kernel sets the
    per-trajectory ``raised`` flag around the engine call (two byte stores) and turns a set
    flag into status -5 (the behaviour itself is tested under the simulator)."""
    from gpuivp.methods import METHODS as TABLEAUS

    problem = make_problem(_raises, "RK4", "float32", n=1, args=(np.ones(4),))
    ptx = cb.kernel_ptx(problem, TABLEAUS["RK4"], cc=(9, 0))
    assert len(re.findall(r"st\.global\.u8\b", ptx)) == 2
    assert re.search(r"ld\.global\.(?:u8|s8)\b", ptx)
    assert re.search(r"[ ,]-5;", ptx)


def lorenz_event(t, y, sigma, rho, beta):
    return y[2] - rho


lorenz_event.terminal = True


def test_events_and_dense_output_kernel(cb, dtype="float32"):
    """The event (Brent root finding) and dense-output code of the engine compiles too, in
    float32 without float64 arithmetic (one dtype: the same code, and compiles are slow)."""
    import dataclasses

    from gpuivp import _problem as P
    from gpuivp.methods import METHODS as TABLEAUS

    events, spec, max_events = P.check_events([lorenz_event], None)
    problem = dataclasses.replace(make_problem(lorenz, "RK45", dtype), events=events,
                                  event_spec=spec, max_events=max_events, dense_output=True,
                                  dense_max_steps=1000)
    ptx = cb.kernel_ptx(problem, TABLEAUS["RK45"], cc=(9, 0))
    assert len(re.findall(r"^\.visible \.entry ", ptx, re.M)) == 1
    if dtype == "float32":
        assert not cb.f64_instructions(ptx), cb.f64_instructions(ptx)
    if PTXAS:
        res = cb.ptxas_resources(ptx, arch="sm_90", ptxas=PTXAS)
        assert res["registers"] is not None


def _ptxas_version(ptxas):
    out = subprocess.run([ptxas, "--version"], capture_output=True, text=True).stdout
    m = re.search(r"release (\d+)\.(\d+)", out)
    return (int(m.group(1)), int(m.group(2))) if m else None


@pytest.mark.parametrize("method,dtype", CASES)
def test_ptxas_small_state_in_registers(cb, ptx_of, ptxas, method, dtype):
    """The 3-state Lorenz kernel keeps its state in registers: 0-byte stack frame, no spills."""
    for cc in CCS:
        ptx = ptx_of(method, dtype, cc)
        try:
            res = cb.ptxas_resources(ptx, arch=f"sm_{cc[0]}{cc[1]}", ptxas=ptxas)
        except RuntimeError as exc:
            if "Unsupported .version" in str(exc):
                pytest.skip(f"ptxas {_ptxas_version(ptxas)} is older than the PTX: {exc}")
            raise
        assert res["registers"] is not None, res["log"]
        assert res["stack"] == 0 and res["max_stack"] == 0, res["log"]
        assert res["spill_stores"] == 0 and res["spill_loads"] == 0, res["log"]
        assert res["registers"] <= 255


N_LARGE = 50


def lorenz96_inplace(t, y, dydt, F):
    """Lorenz-96 written in place (a device function cannot allocate its result)."""
    dydt[0] = (y[1] - y[N_LARGE - 2]) * y[N_LARGE - 1] - y[0] + F
    dydt[1] = (y[2] - y[N_LARGE - 1]) * y[0] - y[1] + F
    for i in range(2, N_LARGE - 1):
        dydt[i] = (y[i + 1] - y[i - 2]) * y[i - 1] - y[i] + F
    dydt[N_LARGE - 1] = (y[0] - y[N_LARGE - 3]) * y[N_LARGE - 2] - y[N_LARGE - 1] + F


@pytest.mark.parametrize("dtype", DTYPES)
def test_looped_engine_compiles_for_a_large_system(cb, dtype):
    """n = 50 (the looped engine, in-place fun, t_eval): one kernel, the state arrays in
    local memory (12 vectors of n: the stack frame), no register spills, and in float32
    no float64 arithmetic."""
    import dataclasses

    from gpuivp.engines.per_trajectory import loops_for
    from gpuivp.methods import METHODS as TABLEAUS

    assert loops_for(N_LARGE)
    problem = dataclasses.replace(
        make_problem(lorenz96_inplace, "RK45", dtype, n=N_LARGE, args=(np.linspace(2, 10, 4),)),
        inplace=True, t_eval=np.linspace(0.0, 1.0, 3))
    ptx = cb.kernel_ptx(problem, TABLEAUS["RK45"], cc=(9, 0))
    assert len(re.findall(r"^\.visible \.entry ", ptx, re.M)) == 1
    if dtype == "float32":
        assert not cb.f64_instructions(ptx), cb.f64_instructions(ptx)
    if PTXAS:
        res = cb.ptxas_resources(ptx, arch="sm_90", ptxas=PTXAS)
        assert res["registers"] is not None and res["registers"] < 128, res["log"]
        assert res["spill_stores"] == 0 and res["spill_loads"] == 0, res["log"]
        assert res["stack"] == 12 * N_LARGE * np.dtype(dtype).itemsize, res["log"]


# -- occupancy against the hand-written CUDA C kernels (benchmarks/reference/lorenz_gpu.cu) --

@pytest.fixture(scope="module")
def reference(ptxas):
    """The CUDA C reference's resources on sm_90 (``benchmarks/ptxas_report.py``), compiled
    once; SASS counts when a disassembler is found."""
    sys.path.insert(0, os.path.join(os.path.dirname(HERE), "benchmarks"))
    import ptxas_report
    from reference import build, sass

    if shutil.which(build.NVCC) is None:
        pytest.skip("nvcc is not on PATH (the reference is CUDA C)")
    counts = bool(sass.find_tool("cuobjdump") or sass.find_tool("nvdisasm"))
    return ptxas_report, ptxas_report.reference_resources("sm_90", sass_counts=counts), counts


@pytest.mark.parametrize("method,dtype", CASES)
def test_registers_within_10_percent_of_the_cuda_c_reference(ptx_of, reference, method, dtype):
    """Occupancy: the Lorenz kernel of each benchmark case needs at most 10 % more
    registers than the hand-written CUDA C kernel (sm_90, block 128: the registers decide
    how many warps an SM holds), with no stack frame and no spills, and its step loop at
    most 5 % more SASS instructions per step."""
    report, ref, counts = reference
    mine = report.kernel_resources(ptx_of(method, dtype, (9, 0)), "sm_90", sass_counts=counts)
    theirs = ref[method, dtype]
    assert mine["registers"] <= 1.1 * theirs["registers"], (mine, theirs)
    assert mine["stack"] == 0 and mine["spill_stores"] == 0, mine
    if counts:
        assert mine["sass"] <= 1.05 * theirs["sass"], (mine, theirs)


def test_refill_kernel_compiles_and_takes_trajectories_atomically(cb, ptxas):
    """The ``REFILL`` kernel (a thread takes the next trajectory from a global counter)
    compiles to PTX with one atomic add, its state in registers."""
    from gpuivp.methods import METHODS as TABLEAUS

    ptx = cb.kernel_ptx(make_problem(lorenz, "RK45", "float32"), TABLEAUS["RK45"], refill=True)
    assert len(re.findall(r"\batom\.global\.add\.u64\b", ptx)) == 1
    res = cb.ptxas_resources(ptx, arch="sm_90", ptxas=ptxas)
    assert res["max_stack"] == 0 and res["spill_stores"] == 0, res["log"]
