"""GPU benchmark (issue 3): gpuivp's ``cuda`` and ``cupy`` backends beside a hand-written
CUDA C kernel, Diffrax under ``jax.jit(jax.vmap(...))`` and batched torchdiffeq.

Problem: Lorenz, sigma = 10, beta = 8/3, rho = linspace(0, 21, N), y0 = (1, 0, 0),
t in [0, 1], final state only, N = 2^10 ... 2^23. Cases:

* ``RK4-f32``: fixed-step classical RK4, dt = 1e-3 (1000 steps), float32;
* ``Tsit5-f32``, ``RK45-f32``: adaptive, float32, rtol = atol = 1e-6;
* ``Tsit5-f64``, ``RK45-f64``: adaptive, float64, rtol = atol = 1e-8.

gpuivp floors rtol at ``100 eps`` of the working dtype, as scipy does in float64: in
float32 the requested 1e-6 becomes 1.19e-5. Every implementation here gets that
effective rtol (printed in the header), so all of them solve the same problem.

Implementations (``--only`` selects; each is skipped, with the reason, when missing):

``cuda``
    ``gpuivp.solve_ivp(..., backend="cuda")``. *kernel*: the engine's kernel launches
    alone, on the problem already on the device: the backend's own compiled kernel
    (``gpuivp.backends.cuda.compiled_kernel``) launched on device copies of its
    ``EngineState`` arrays, in the backend's time slices, each launch timed with CUDA
    events (the status read-back between launches is not counted). *e2e*: the
    ``solve_ivp`` call from NumPy inputs to NumPy outputs, warm (compiled), best of
    ``--repeats``.
``cupy``
    ``gpuivp.solve_ivp(..., backend="cupy", vectorized=True)`` (lockstep on CuPy arrays).
    *kernel*: the same call with CuPy inputs (``y0`` and ``rho`` on the device, outputs
    left there); *e2e*: from NumPy. Skipped unless ``gpuivp.available_backends()`` lists
    ``cupy``.
``reference``
    ``reference/lorenz_gpu.cu``: one thread per trajectory, the same algorithm and
    constants (nvcc ``-O3``, no fast-math, default ``-fmad=true`` as NVVM does for the
    ``cuda`` backend), loaded as a cubin with ``cupy.RawModule`` (built with nvcc when it
    is found, else compiled by CuPy's NVRTC from the same source); *kernel*: one launch,
    CUDA events; *e2e*: NumPy rho to NumPy results (copies included).
``diffrax``
    ``jax.jit(jax.vmap(solve_one))`` with ``diffrax.Tsit5`` / ``diffrax.Dopri5`` and
    ``PIDController(rtol, atol)`` (its defaults: I-controller, safety 0.9, factors 0.2
    and 10, RMS norm: scipy's controller up to details), and classical RK4 built from
    diffrax's ``ButcherTableau`` + ``AbstractERK`` with ``ConstantStepSize`` (diffrax
    ships no classical RK4). *kernel*: the jitted call on device inputs, until
    ``block_until_ready``; *e2e*: from a NumPy rho to NumPy outputs. nfev is
    estimated from ``sol.stats["num_steps"]``: ``6 x steps + 2`` for the FSAL 5(4)
    pairs (initial f and step selection), ``4 x steps`` for RK4.
``torchdiffeq``
    ``torchdiffeq.odeint(f, y0 (N, 3), [0, 1], method="rk4", options=dict(step_size=1e-3))``
    with rho as an (N, 1) tensor (RK4 case only; torchdiffeq's ``rk4`` is the 3/8-rule
    variant, its steps are shared by the whole batch). nfev counts the calls of ``f``.

For every time the table gives nfev beside it (mean per trajectory), the fraction of
trajectories with status 0, and the agreement of the final states with the ``cuda``
backend's (max over trajectories of ``|y - y_cuda|_inf / (1 + |y_cuda|_inf)``; for the
same algorithm also the fraction of trajectories with the same nfev).

FP32 instruction-issue bound (RK4-f32): the SASS of the ``cuda`` backend's RK4 float32
kernel as numba-cuda links it on the device (``get_cubin`` of the compiled kernel; without a
GPU, its PTX through ptxas for ``sm_XX``, which the report says), disassembled with
``cuobjdump -sass`` or ``nvdisasm`` (method in ``reference/sass.py``), gives the
instructions of the step loop per step (per iteration over the steps per iteration when
the compiler unrolled it); ``bound = instructions x 1000 steps x N / (SMs x 128 x
clock)``, with SMs and clock from ``cupy.cuda.runtime.getDeviceProperties(0)``.

Goals checked (exit status 1 if one is not met, or if results disagree), each at the
largest N >= 2^20 that ran (smaller runs report them as "not evaluated"):

* ``cuda`` kernel time within 1.2x of the reference kernel's, per case;
* RK4-f32 at N = 2^23: ``cuda`` kernel time at least 70 % of the issue bound's speed
  (time <= bound / 0.7);
* ``cuda`` kernel time at least 20x below Diffrax's, per case Diffrax ran.

Usage::

    python benchmarks/gpu.py                        # all cases, N = 2^10, 2^12, ..., 2^22, 2^23
    python benchmarks/gpu.py --quick                # N up to 2^14
    python benchmarks/gpu.py --sizes 20,23 --cases RK4-f32 --only cuda,reference
    python benchmarks/gpu.py --json out.json --markdown   # JSON rewritten after every row
    python benchmarks/gpu.py --from-json a.json b.json --markdown   # tables from saved runs
    python benchmarks/gpu.py --cpu-smoke            # no GPU: the plumbing, at tiny N

``--cpu-smoke`` runs what a CPU can: the reference's host build (the same source),
gpuivp's ``numba`` backend in place of ``cuda`` and ``numpy`` in place of ``cupy``,
Diffrax and torchdiffeq on the CPU if installed, the SASS count if numba-cuda, ptxas
and cuobjdump/nvdisasm are there (with H100 SXM's nominal 132 SMs at 1.98 GHz), the
tables, the JSON and the goal logic; its times mean nothing.

Memory: at 2^23 in float64 Diffrax or torch may run out of device memory; that is
caught and reported, and the run goes on. JAX is told not to preallocate.
"""
from __future__ import annotations

import os

os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

import argparse  # noqa: E402
import datetime  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import platform  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import traceback  # noqa: E402
import warnings  # noqa: E402
from dataclasses import asdict, dataclass, field  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import ClassVar  # noqa: E402

import numpy as np  # noqa: E402

BENCHMARKS = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCHMARKS))
# An installed gpuivp wins; otherwise the checkout this script belongs to.
sys.path.append(str(BENCHMARKS.parent))
from reference import build, sass  # noqa: E402
from reference.problem import BETA, SIGMA, Y0, lorenz  # noqa: E402

T_SPAN = (0.0, 1.0)
RHO_MAX = 21.0
DT = 1e-3
TOL = {"float32": 1e-6, "float64": 1e-8}
CASES = {"RK4-f32": ("RK4", "float32"), "Tsit5-f32": ("Tsit5", "float32"),
         "Tsit5-f64": ("Tsit5", "float64"), "RK45-f32": ("RK45", "float32"),
         "RK45-f64": ("RK45", "float64")}
DEFAULT_SIZES = [2 ** p for p in (10, 12, 14, 16, 18, 20, 22, 23)]
QUICK_SIZES = [2 ** p for p in (10, 12, 14)]
SMOKE_SIZES = [2 ** 6, 2 ** 8]
IMPLS = ("cuda", "cupy", "reference", "diffrax", "torchdiffeq")
#: Implementations that run gpuivp's algorithm: same nfev expected, tight agreement.
SAME_ALGORITHM = ("cupy", "reference", "numpy")
#: Agreement with the baseline's final states that counts as agreeing:
#: (same algorithm, other implementation) per dtype.
AGREE = {"float32": (1e-3, 1e-2), "float64": (1e-9, 1e-5)}
NFEV_EQUAL_MIN = 0.9
GOAL_MIN_N = 2 ** 20
GOAL_REFERENCE_RATIO = 1.2
GOAL_BOUND_FRACTION = 0.7
GOAL_DIFFRAX_SPEEDUP = 20.0
BOUND_N = 2 ** 23
NOMINAL_DEVICE = dict(name="NVIDIA H100 SXM (nominal, no GPU here)", sms=132, clock_khz=1980000)


def n_steps_rk4():
    return build.n_fixed_steps(*T_SPAN, DT)


@dataclass
class Record:
    """One implementation on one case and size."""
    impl: str
    case: str
    n: int
    kernel_ms: float | None = None
    e2e_ms: float | None = None
    nfev_mean: float | None = None
    nfev_max: int | None = None
    nfev_how: str = "counted"
    ok: float | None = None          # fraction of trajectories with status 0
    agree: float | None = None       # max |y - y_base| / (1 + |y_base|)
    nfev_equal: float | None = None  # fraction with the baseline's nfev (same algorithm)
    launches: int | None = None
    note: str = ""
    extra: dict = field(default_factory=dict)


# -- problem ----------------------------------------------------------------------------

def case_problem(case, n):
    """``(method, dtype, rho (float64), solver kwargs)`` of a case at size n."""
    method, dtype = CASES[case]
    rho = np.linspace(0.0, RHO_MAX, n)
    if method == "RK4":
        kw = dict(dt=DT)
    else:
        kw = dict(rtol=TOL[dtype], atol=TOL[dtype])
    return method, np.dtype(dtype), rho, kw


def effective_rtol(dtype):
    return float(build.effective_rtol(TOL[np.dtype(dtype).name], dtype))


def timed(fn, repeats):
    """``(best seconds, last result)`` over ``repeats`` calls of ``fn`` (which syncs)."""
    best, out = math.inf, None
    for _ in range(max(1, repeats)):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def quiet():
    """Silence gpuivp's rtol-floor warning (and friends) around a timed call."""
    w = warnings.catch_warnings()
    w.__enter__()
    warnings.simplefilter("ignore")
    return w


def _stats(rec, y, nfev, status):
    nfev = np.asarray(nfev)
    rec.nfev_mean = float(np.mean(nfev))
    rec.nfev_max = int(np.max(nfev))
    rec.ok = float(np.mean(np.asarray(status) == 0))
    return np.asarray(y, dtype=np.float64), nfev.astype(np.int64)


# -- gpuivp: cuda (or numba), cupy (or numpy) ------------------------------------------------

def capture_problem(method, dtype, rho, kw):
    """The validated gpuivp ``Problem`` of this call, without running it."""
    from gpuivp import _ivp, solve_ivp

    class Captured(Exception):
        pass

    seen = []

    def fake_run(problem, name):
        seen.append(problem)
        raise Captured

    saved = _ivp._run
    _ivp._run = fake_run
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            solve_ivp(lorenz, T_SPAN, np.c_[list(Y0)].astype(dtype), method=method,
                      args=(SIGMA, rho, BETA), backend="numba", dtype=dtype, **kw)
    except Captured:
        pass
    finally:
        _ivp._run = saved
    if not seen:
        raise RuntimeError("could not capture gpuivp's Problem (gpuivp._ivp._run changed?)")
    return seen[0]


def cuda_kernel_time(problem, repeats):
    """Kernel time of the ``cuda`` backend's engine on ``problem``, data on the device.

    Returns ``(best ms, launches, y_final, nfev, status)``.
    """
    from numba import cuda

    from gpuivp._status import INIT
    from gpuivp.backends import cuda as cb
    from gpuivp.engines.per_trajectory import CNT_NFEV
    from gpuivp.engines.runner import EngineState, slice_budget
    from gpuivp.methods import METHODS

    tableau = METHODS[problem.method]
    kernel, fields = cb.compiled_kernel(problem, tableau)
    budget = slice_budget(problem, default=cb.GPU_SLICE)
    k = problem.k
    block = getattr(cb, "BLOCK", 128)
    grid = (k + block - 1) // block
    best, launches = math.inf, 0
    for _ in range(max(1, repeats)):
        state = EngineState(problem, budget, tableau)
        dev = {name: cuda.to_device(a) if isinstance(a, np.ndarray) else a
               for name, a in zip(fields, cb.kernel_args(state, fields))}
        raised = cuda.to_device(np.zeros(k, dtype=np.int8))  # the kernel's ``raised`` flags
        cuda.synchronize()
        total, launches = 0.0, 0
        while True:
            e0, e1 = cuda.event(), cuda.event()
            e0.record()
            kernel[grid, block](k, raised, *(dev[f] for f in fields))
            e1.record()
            e1.synchronize()
            total += e0.elapsed_time(e1)
            launches += 1
            status = dev["st_status"].copy_to_host()
            if not np.any(status >= INIT) or launches > 10_000:
                break
        best = min(best, total)
    y = dev["st_y"].copy_to_host()
    nfev = dev["st_cnt"].copy_to_host()[CNT_NFEV]
    return best, launches, y, nfev, status


def run_gpuivp(backend, case, n, ctx):
    """gpuivp's ``cuda`` backend (``numba`` in CPU smoke mode)."""
    from gpuivp import solve_ivp

    method, dtype, rho, kw = case_problem(case, n)
    rec = Record(backend, case, n)
    y0 = np.c_[list(Y0)].astype(dtype)

    def call():
        w = quiet()
        try:
            res = solve_ivp(lorenz, T_SPAN, y0, method=method, args=(SIGMA, rho, BETA),
                            backend=backend, dtype=dtype, **kw)
        finally:
            w.__exit__(None, None, None)
        return res

    call()  # compile
    e2e, res = timed(call, ctx.repeats)
    rec.e2e_ms = e2e * 1e3
    y, nfev = _stats(rec, res.y_final, res.nfev, res.status)
    if backend == "cuda":
        problem = capture_problem(method, dtype, rho, kw)
        ms, launches, yk, nk, sk = cuda_kernel_time(problem, ctx.repeats)
        rec.kernel_ms, rec.launches = ms, launches
        same = np.array_equal(nk, res.nfev) and np.allclose(yk, res.y_final, rtol=0, atol=0,
                                                            equal_nan=True)
        if not same:
            rec.note = "kernel-timed run differs from the solve_ivp call!"
            ctx.failures.append(f"{case} N={n}: cuda kernel-timed run differs from solve_ivp")
    return rec, y, nfev


def run_lockstep(backend, case, n, ctx):
    """gpuivp's ``cupy`` backend (``numpy`` in CPU smoke mode), vectorized ``fun``."""
    from gpuivp import solve_ivp

    method, dtype, rho, kw = case_problem(case, n)
    rec = Record(backend, case, n)
    y0 = np.c_[list(Y0)].astype(dtype)

    def call(y0_, rho_):
        w = quiet()
        try:
            return solve_ivp(lorenz, T_SPAN, y0_, method=method, args=(SIGMA, rho_, BETA),
                             backend=backend, dtype=dtype, vectorized=True, **kw)
        finally:
            w.__exit__(None, None, None)

    call(y0, rho)
    e2e, res = timed(lambda: call(y0, rho), ctx.repeats)
    rec.e2e_ms = e2e * 1e3
    if backend == "cupy":
        import cupy
        y0_d, rho_d = cupy.asarray(y0), cupy.asarray(rho)

        def on_device():
            r = call(y0_d, rho_d)
            cupy.cuda.Device().synchronize()
            return r

        on_device()
        t, _ = timed(on_device, ctx.repeats)
        rec.kernel_ms = t * 1e3
        rec.extra["kernel"] = "solve_ivp with CuPy inputs and outputs"
    y, nfev = _stats(rec, _host(res.y_final), _host(res.nfev), _host(res.status))
    return rec, y, nfev


def _host(a):
    return a.get() if hasattr(a, "get") else np.asarray(a)


# -- the CUDA C reference -------------------------------------------------------------------

class DeviceReference:
    """``lorenz_gpu.cu`` on the device through CuPy: cubin from nvcc, else NVRTC."""

    BLOCK = 128

    def __init__(self, cc):
        import cupy
        self.cupy = cupy
        arch = f"sm_{cc}"
        self.cubin, why = None, ""
        if sass.find_tool("nvcc"):
            try:
                self.cubin, _ = build.nvcc_compile(arch, "cubin")
            except Exception as exc:  # noqa: BLE001 - fall back to NVRTC
                why = f"nvcc failed ({str(exc).splitlines()[0][:120]}); "
        self.kernels = None
        if self.cubin is not None:
            try:  # a cubin from a newer toolkit than the driver knows fails to load
                self.module = cupy.RawModule(path=str(self.cubin))
                self.kernels = {key: self.module.get_function(name)
                                for key, name in build.GPU_KERNELS.items()}
                self.how = f"nvcc -cubin -arch={arch} -O3 (-fmad=true, no fast-math)"
            except Exception as exc:  # noqa: BLE001 - fall back to NVRTC
                why = f"cubin did not load ({str(exc).splitlines()[0][:120]}); "
                self.cubin = None
        if self.kernels is None:
            self.module = cupy.RawModule(code=build.GPU_SOURCE.read_text(),
                                         options=("-std=c++17",))
            self.kernels = {key: self.module.get_function(name)
                            for key, name in build.GPU_KERNELS.items()}
            self.how = why + "CuPy NVRTC -std=c++17 (fmad on, no fast-math)"

    def launch(self, method, dtype, k, y0, rho, y, nfev, status, **kw):
        args = build.kernel_args(method, k, y0, rho, y, nfev, status, t0=T_SPAN[0],
                                 t1=T_SPAN[1], dtype=dtype, sigma=SIGMA, beta=BETA, **kw)
        grid = (k + self.BLOCK - 1) // self.BLOCK
        self.kernels[method, np.dtype(dtype).name]((grid,), (self.BLOCK,), tuple(args))


def run_reference(case, n, ctx):
    method, dtype, rho, kw = case_problem(case, n)
    rec = Record("reference", case, n)
    if ctx.smoke:
        lib = build.load_gpu_host()
        e2e, out = timed(lambda: lib.solve(method, rho, *T_SPAN, dtype=dtype, sigma=SIGMA,
                                           beta=BETA, **kw), ctx.repeats)
        rec.e2e_ms = e2e * 1e3
        rec.extra["how"] = "host C++ build (g++ -O2 -ffp-contract=off), one core"
        y, nfev = _stats(rec, out[0], out[2], out[1])
        return rec, y, nfev
    cupy = ctx.cupy
    ref = ctx.reference()
    rec.extra["how"] = ref.how
    y0_h = np.ascontiguousarray(np.broadcast_to(np.array(Y0, dtype).reshape(3, 1), (3, n)))
    y0, rho_d = cupy.asarray(y0_h), cupy.asarray(rho.astype(dtype))
    y = cupy.empty((3, n), dtype)
    nfev = cupy.empty(n, np.int64)
    status = cupy.empty(n, np.intc)
    ref.launch(method, dtype, n, y0, rho_d, y, nfev, status, **kw)  # load, warm
    cupy.cuda.Device().synchronize()
    best = math.inf
    for _ in range(max(1, ctx.repeats)):
        e0, e1 = cupy.cuda.Event(), cupy.cuda.Event()
        e0.record()
        ref.launch(method, dtype, n, y0, rho_d, y, nfev, status, **kw)
        e1.record()
        e1.synchronize()
        best = min(best, cupy.cuda.get_elapsed_time(e0, e1))
    rec.kernel_ms = best

    def e2e():
        y0_ = cupy.asarray(y0_h)
        rho_ = cupy.asarray(rho.astype(dtype))
        y_ = cupy.empty((3, n), dtype)
        nf_ = cupy.empty(n, np.int64)
        st_ = cupy.empty(n, np.intc)
        ref.launch(method, dtype, n, y0_, rho_, y_, nf_, st_, **kw)
        return y_.get(), st_.get(), nf_.get()

    t, out = timed(e2e, ctx.repeats)
    rec.e2e_ms = t * 1e3
    yh, nfh = _stats(rec, out[0], out[2], out[1])
    return rec, yh, nfh


# -- Diffrax ------------------------------------------------------------------------------------

def _diffrax_rk4(diffrax):
    """Classical RK4 as a diffrax ERK (diffrax ships none): a tableau and an order.

    (``ClassVar`` is imported at module level: with postponed annotations, dataclasses
    recognise the string ``"ClassVar"`` only through the module's globals.)
    """
    rk4_tableau = diffrax.ButcherTableau(
        c=np.array([0.5, 0.5, 1.0]),
        b_sol=np.array([1 / 6, 1 / 3, 1 / 3, 1 / 6]),
        b_error=np.zeros(4),
        a_lower=(np.array([0.5]), np.array([0.0, 0.5]), np.array([0.0, 0.0, 1.0])))

    class RK4(diffrax.AbstractERK):
        """Classical 4th-order Runge-Kutta (fixed steps only: no error estimate)."""
        tableau: ClassVar = rk4_tableau
        interpolation_cls: ClassVar = diffrax.ThirdOrderHermitePolynomialInterpolation.from_k

        def order(self, terms):
            return 4

    return RK4


def run_diffrax(case, n, ctx):
    import diffrax
    import jax
    import jax.numpy as jnp

    method, dtype, rho, kw = case_problem(case, n)
    rec = Record("diffrax", case, n)
    jax.config.update("jax_enable_x64", True)  # float32 cases pass float32 everywhere
    jdt = jnp.float32 if dtype == np.float32 else jnp.float64
    sigma, beta = jdt(SIGMA), jdt(BETA)

    def vf(t, y, r):
        return jnp.stack([sigma * (y[1] - y[0]), y[0] * (r - y[2]) - y[1],
                          y[0] * y[1] - beta * y[2]])

    term = diffrax.ODETerm(vf)
    if method == "RK4":
        solver = ctx.diffrax_rk4()
        opts = dict(dt0=jdt(DT), stepsize_controller=diffrax.ConstantStepSize())
        per_step, offset, how = 4, 0, "4 x steps"
    else:
        solver = diffrax.Tsit5() if method == "Tsit5" else diffrax.Dopri5()
        rtol = effective_rtol(dtype)
        opts = dict(dt0=None, stepsize_controller=diffrax.PIDController(
            rtol=rtol, atol=TOL[dtype.name]))
        per_step, offset, how = 6, 2, "6 x steps + 2 (est.)"
    y0 = jnp.asarray(np.array(Y0, dtype))

    def solve_one(r):
        sol = diffrax.diffeqsolve(term, solver, t0=jdt(T_SPAN[0]), t1=jdt(T_SPAN[1]), y0=y0,
                                  args=r, saveat=diffrax.SaveAt(t1=True),
                                  max_steps=build.MAX_STEPS, throw=False, **opts)
        ok = sol.result == diffrax.RESULTS.successful
        return sol.ys[-1], sol.stats["num_steps"], ok

    f = jax.jit(jax.vmap(solve_one))
    rho_d = jax.device_put(jnp.asarray(rho.astype(dtype)))
    jax.block_until_ready(f(rho_d))  # compile
    t, _ = timed(lambda: jax.block_until_ready(f(rho_d)), ctx.repeats)
    rec.kernel_ms = t * 1e3

    def e2e():
        ys, steps, ok = f(jnp.asarray(rho.astype(dtype)))
        return np.asarray(ys), np.asarray(steps), np.asarray(ok)

    t, (ys, steps, ok) = timed(e2e, ctx.repeats)
    rec.e2e_ms = t * 1e3
    rec.nfev_how = how
    nfev = per_step * steps.astype(np.int64) + offset
    rec.extra["device"] = str(jax.devices()[0])
    y, nfev = _stats(rec, ys.T, nfev, np.where(ok, 0, -1))
    return rec, y, nfev


# -- torchdiffeq ----------------------------------------------------------------------------------

def run_torchdiffeq(case, n, ctx):
    import torch
    import torchdiffeq

    method, dtype, rho, kw = case_problem(case, n)
    rec = Record("torchdiffeq", case, n)
    if method != "RK4":
        rec.note = "RK4 case only"
        return rec, None, None
    dev = torch.device("cpu" if ctx.smoke else "cuda")
    tdt = torch.float32 if dtype == np.float32 else torch.float64
    calls = [0]

    class Lorenz(torch.nn.Module):
        def __init__(self, r):
            super().__init__()
            self.r = r

        def forward(self, t, y):
            calls[0] += 1
            x, yy, z = y[:, 0:1], y[:, 1:2], y[:, 2:3]
            return torch.cat([SIGMA * (yy - x), x * (self.r - z) - yy, x * yy - BETA * z], 1)

    t_span = torch.tensor(T_SPAN, dtype=tdt, device=dev)

    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize()

    def solve(r):
        y0 = torch.tensor([Y0], dtype=tdt, device=dev).expand(r.shape[0], 3).contiguous()
        calls[0] = 0
        with torch.no_grad():
            out = torchdiffeq.odeint(Lorenz(r), y0, t_span, method="rk4",
                                     options=dict(step_size=DT))
        return out[-1]

    r_dev = torch.as_tensor(rho.astype(dtype), device=dev).reshape(-1, 1)
    solve(r_dev)
    sync()

    def kernel():
        out = solve(r_dev)
        sync()
        return out

    t, _ = timed(kernel, ctx.repeats)
    rec.kernel_ms = t * 1e3

    def e2e():
        r = torch.from_numpy(rho.astype(dtype)).to(dev).reshape(-1, 1)
        return solve(r).cpu().numpy()

    t, y = timed(e2e, ctx.repeats)
    rec.e2e_ms = t * 1e3
    rec.extra["method"] = "torchdiffeq rk4 (3/8 rule), steps shared by the batch"
    yh, nf = _stats(rec, y.T, np.full(n, calls[0]), np.zeros(n, int))
    return rec, yh, nf


# -- device, versions, issue bound ------------------------------------------------------------

def device_info(smoke):
    if smoke:
        return dict(NOMINAL_DEVICE, cc="90", driver=None, runtime=None)
    import cupy
    props = cupy.cuda.runtime.getDeviceProperties(0)
    name = props["name"]
    name = name.decode() if isinstance(name, bytes) else name
    cc = f"{props['major']}{props['minor']}"
    clock = props.get("clockRate")
    if not clock:  # CUDA 13's cudaDeviceProp has no clockRate: ask the attribute
        try:
            clock = cupy.cuda.runtime.deviceGetAttribute(13, 0)  # cudaDevAttrClockRate, kHz
        except Exception:  # noqa: BLE001
            from numba import cuda
            clock = cuda.get_current_device().CLOCK_RATE
    return dict(name=name, sms=int(props["multiProcessorCount"]),
                clock_khz=int(clock), cc=cc,
                memory_gib=round(props["totalGlobalMem"] / 2 ** 30, 1),
                driver=cupy.cuda.runtime.driverGetVersion(),
                runtime=cupy.cuda.runtime.runtimeGetVersion())


#: Distributions whose versions the report records, read with importlib.metadata: nothing is
#: imported (importing jax or torch just to print a version costs seconds and GPU memory).
DISTRIBUTIONS = ("gpuivp", "numpy", "scipy", "numba", "numba-cuda", "cuda-bindings",
                 "cuda-core", "nvidia-nvjitlink", "nvidia-cuda-nvrtc", "cupy-cuda13x",
                 "cupy-cuda12x", "jax", "jaxlib", "diffrax", "equinox", "torch", "torchdiffeq")


def versions():
    from importlib import metadata

    out = {"python": platform.python_version()}
    for dist in DISTRIBUTIONS:
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = None
    out["nvcc"] = build.nvcc_version() if sass.find_tool("nvcc") else None
    return out


def linked_cubin(problem, tableau):
    """The cubin numba-cuda links for the ``cuda`` backend's kernel on the current device
    (the kernel that runs: libdevice, nvJitLink/LTO, the driver's ptxas), in a temporary
    file; its path. Needs a GPU."""
    import tempfile

    from gpuivp.backends import cuda as cb
    from gpuivp.engines.runner import EngineState

    kernel, fields = cb.compiled_kernel(problem, tableau)
    compiled = kernel.compile(cb.kernel_signature(EngineState(problem, 1, tableau),
                                                  fields=fields))
    path = Path(tempfile.mkdtemp(prefix="gpuivp_linked_")) / "kernel.cubin"
    path.write_bytes(bytes(compiled._codelibrary.get_cubin()))
    return path


def step_loops(arch):
    """SASS instruction counts of the RK4 float32 step loop for ``arch`` (``sm_90``):
    ``{"cuda": ..., "reference": ...}`` (:func:`reference.sass.loop_count` dicts), or
    ``cuda_error`` / ``reference_error`` saying why one could not be counted."""
    out = {}
    try:
        from gpuivp.backends import cuda as cb
        from gpuivp.methods import METHODS
        method, dtype, rho, kw = case_problem("RK4-f32", 64)
        problem = capture_problem(method, dtype, rho, kw)
        if cb.unavailable_reason() is None and not cb.simulated():
            # What runs: the kernel as numba-cuda links it for this device.
            out["cuda"] = sass.loop_count(linked_cubin(problem, METHODS["RK4"]))
            out["cuda"]["via"] = "numba-cuda linked cubin -> " + out["cuda"]["tool"]
        else:
            ptx = cb.kernel_ptx(problem, METHODS["RK4"], cc=(int(arch[3:-1]), int(arch[-1])))
            out["cuda"] = sass.loop_count(sass.ptx_to_cubin(ptx, arch))
            out["cuda"]["via"] = ("no GPU: numba.cuda PTX -> ptxas (not the linked kernel) -> "
                                  + out["cuda"]["tool"])
    except Exception as exc:  # noqa: BLE001 - report, do not stop the benchmark
        out["cuda_error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
    try:
        if not sass.find_tool("nvcc"):
            raise RuntimeError("nvcc not found")
        path, _ = build.nvcc_compile(arch, "cubin")
        out["reference"] = sass.loop_count(path, build.GPU_KERNELS["RK4", "float32"])
    except Exception as exc:  # noqa: BLE001
        out["reference_error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
    return out


def describe_loop(loop):
    """``59.5 SASS instructions per step (52 FP32; loop unrolled 2x)`` of a
    :func:`reference.sass.loop_count` dict."""
    unrolled = f"; loop unrolled {loop['unroll']}x" if loop.get("unroll", 1) > 1 else ""
    return (f"{loop['instructions']:g} SASS instructions per step ({loop['fp32']:g} FP32"
            f"{unrolled})")


def issue_bound(dev, sizes):
    """Instructions per step of the RK4 float32 kernels and the bound at every size."""
    arch = f"sm_{dev['cc']}"
    out = {"method": ("SASS of the step loop (reference/sass.py): innermost loop with the "
                      "most FP32 instructions, NOPs excluded"),
           "device": dev["name"], "sms": dev["sms"], "clock_khz": dev["clock_khz"],
           "arch": arch, **step_loops(arch)}
    if "cuda" in out:
        steps = n_steps_rk4()
        out["steps"] = steps
        out["bound_ms"] = {str(n): 1e3 * sass.issue_bound_s(
            out["cuda"]["instructions"], steps, n, dev["sms"], dev["clock_khz"] * 1e3)
            for n in sorted(set(sizes) | {BOUND_N})}
    return out


# -- the run ----------------------------------------------------------------------------------------

class Context:
    def __init__(self, args):
        self.smoke = args.cpu_smoke
        self.repeats = args.repeats
        self.sizes = args.sizes
        self.time_limit = args.time_limit
        self.failures = []
        self.cupy = None
        self._reference = None
        self._rk4 = None
        if not self.smoke:
            import cupy
            self.cupy = cupy

    def reference(self):
        if self._reference is None:
            cc = device_info(False)["cc"]
            self._reference = DeviceReference(cc)
        return self._reference

    def diffrax_rk4(self):
        if self._rk4 is None:
            import diffrax
            self._rk4 = _diffrax_rk4(diffrax)()
        return self._rk4


def free_memory(ctx):
    import gc
    gc.collect()
    if ctx.cupy is not None:
        ctx.cupy.get_default_memory_pool().free_all_blocks()
    if "torch" in sys.modules:
        try:
            sys.modules["torch"].cuda.empty_cache()
        except Exception:  # noqa: BLE001
            pass


def availability(impls, smoke):
    """``{impl: None or why not}`` for the selected implementations."""
    import importlib.util
    why = {}
    try:
        import gpuivp
        usable = gpuivp.available_backends()
    except Exception as exc:  # noqa: BLE001
        usable, why["gpuivp"] = [], f"gpuivp does not import: {exc}"
    for impl in impls:
        if impl == "cuda":
            name = "numba" if smoke else "cuda"
            why[impl] = None if name in usable else f"gpuivp backend {name!r} not usable here"
        elif impl == "cupy":
            name = "numpy" if smoke else "cupy"
            why[impl] = None if name in usable else (
                f"gpuivp backend {name!r} not in available_backends() {usable}")
        elif impl == "reference":
            why[impl] = None
            if not smoke and importlib.util.find_spec("cupy") is None:
                why[impl] = "CuPy is not installed"
        else:
            mods = {"diffrax": ("jax", "diffrax"), "torchdiffeq": ("torch", "torchdiffeq")}[impl]
            missing = [m for m in mods if importlib.util.find_spec(m) is None]
            why[impl] = f"not installed: {', '.join(missing)}" if missing else None
            if why[impl] is None and not smoke and impl == "torchdiffeq":
                import torch
                if not torch.cuda.is_available():
                    why[impl] = "torch.cuda.is_available() is False"
    return why


RUNNERS = {
    "cuda": lambda case, n, ctx: run_gpuivp("numba" if ctx.smoke else "cuda", case, n, ctx),
    "cupy": lambda case, n, ctx: run_lockstep("numpy" if ctx.smoke else "cupy", case, n, ctx),
    "reference": run_reference,
    "diffrax": run_diffrax,
    "torchdiffeq": run_torchdiffeq,
}


def agreement(rec, y, nfev, base, dtype):
    """Fill ``rec.agree`` / ``rec.nfev_equal`` against the baseline; True if they agree."""
    if y is None or base is None:
        return True
    yb, nb = base
    diff = np.max(np.abs(y - yb), axis=0) / (1.0 + np.max(np.abs(yb), axis=0))
    rec.agree = float(np.max(diff)) if diff.size else 0.0
    same_algo = rec.impl in SAME_ALGORITHM
    if same_algo:
        rec.nfev_equal = float(np.mean(nfev == nb))
    limit = AGREE[dtype][0 if same_algo else 1]
    ok = np.isfinite(rec.agree) and rec.agree <= limit
    if same_algo and rec.nfev_equal < NFEV_EQUAL_MIN:
        ok = False
    return ok


def run(args, checkpoint=None):
    """Every (case, implementation, size) of ``args``; ``checkpoint(records)``, if given,
    after each one (so that a run stopped by a time limit keeps what it measured)."""
    ctx = Context(args)
    impls = args.only
    why = availability(impls, ctx.smoke)
    for impl, reason in why.items():
        if reason:
            print(f"skipping {impl}: {reason}", flush=True)
    records = []
    for case in args.cases:
        method, dtype = CASES[case]
        base = {}
        order = ["cuda"] + [i for i in impls if i != "cuda"] if "cuda" in impls else impls
        for impl in order:
            if why.get(impl) or (impl == "torchdiffeq" and method != "RK4"):
                continue
            stop = None
            for n in ctx.sizes:
                if stop:
                    records.append(Record(impl, case, n, note=stop))
                    continue
                t = time.perf_counter()
                try:
                    rec, y, nfev = RUNNERS[impl](case, n, ctx)
                except Exception as exc:  # noqa: BLE001 - OOM and friends: report, go on
                    msg = f"{type(exc).__name__}: {str(exc).splitlines()[0][:160] if str(exc) else ''}"
                    if args.verbose:
                        traceback.print_exc()
                    rec, y, nfev = Record(impl, case, n, note=f"failed: {msg}"), None, None
                    if impl == "cuda":
                        ctx.failures.append(f"{case} N={n}: cuda failed: {msg}")
                spent = time.perf_counter() - t
                if rec.impl != impl:  # numba / numpy standing in for cuda / cupy
                    rec.extra["backend"] = rec.impl
                    rec.impl = impl
                if impl == "cuda" and y is not None:
                    base[n] = (y, nfev)
                elif not agreement(rec, y, nfev, base.get(n), dtype):
                    ctx.failures.append(f"{case} N={n}: {impl} disagrees with cuda "
                                        f"(agree={rec.agree}, nfev_equal={rec.nfev_equal})")
                if rec.ok is not None and rec.ok < 1.0 and impl in ("cuda", "reference"):
                    ctx.failures.append(f"{case} N={n}: {impl}: {1 - rec.ok:.1%} of "
                                        f"trajectories did not reach t1")
                records.append(rec)
                print(line(rec), flush=True)
                if checkpoint:
                    checkpoint(records)
                free_memory(ctx)
                if spent > ctx.time_limit:
                    stop = f"skipped: N={n} took {spent:.0f} s (> --time-limit)"
    return records, ctx


def line(r):
    def ms(v):
        return "—" if v is None else f"{v:10.3f} ms"
    agree = "" if r.agree is None else f" agree {r.agree:.1e}"
    same = "" if r.nfev_equal is None else f" same-nfev {r.nfev_equal:.0%}"
    ok = "" if r.ok is None else f" ok {r.ok:.0%}"
    nfev = "" if r.nfev_mean is None else f" nfev {r.nfev_mean:.1f}"
    return (f"{r.case:10s} {r.impl:12s} N=2^{int(math.log2(r.n)):<2d} kernel {ms(r.kernel_ms)}"
            f"  e2e {ms(r.e2e_ms)}{nfev}{ok}{agree}{same} {r.note}")


# -- goals and tables ----------------------------------------------------------------------------

def merge_records(runs):
    """The records of several runs, one per (implementation, case, N): the first that was
    timed (a run that measured ``cuda`` only as the baseline of another comparison repeats
    it), else the first."""
    out = {}
    for records in runs:
        for r in records:
            key = (r["impl"], r["case"], r["n"])
            if key not in out or (out[key].get("kernel_ms") is None
                                  and out[key].get("e2e_ms") is None):
                out[key] = r
    return list(out.values())


def goals(records, bound, smoke):
    """``[(goal, status, detail)]``; status is "met", "NOT MET" or "not evaluated"."""
    by = {(r.impl, r.case, r.n): r for r in records}
    out = []

    def largest(case, *impls):
        ns = [n for (i, c, n), r in by.items() if c == case and i == impls[0]
              and r.kernel_ms is not None and n >= GOAL_MIN_N
              and all(by.get((j, case, n)) and by[j, case, n].kernel_ms is not None
                      for j in impls)]
        return max(ns) if ns else None

    cases = sorted({r.case for r in records}, key=list(CASES).index)
    for case in cases:
        n = largest(case, "cuda", "reference")
        goal = f"{case}: cuda within {GOAL_REFERENCE_RATIO}x of the CUDA C reference"
        if n is None or smoke:
            out.append((goal, "not evaluated", f"needs both at N >= 2^{int(math.log2(GOAL_MIN_N))}"))
        else:
            ratio = by["cuda", case, n].kernel_ms / by["reference", case, n].kernel_ms
            out.append((goal, "met" if ratio <= GOAL_REFERENCE_RATIO else "NOT MET",
                        f"N=2^{int(math.log2(n))}: {ratio:.2f}x"))
    for case in cases:
        n = largest(case, "cuda", "diffrax")
        goal = f"{case}: cuda at least {GOAL_DIFFRAX_SPEEDUP:.0f}x faster than Diffrax vmap"
        if n is None or smoke:
            out.append((goal, "not evaluated", "needs both at N >= 2^20"))
        else:
            sp = by["diffrax", case, n].kernel_ms / by["cuda", case, n].kernel_ms
            out.append((goal, "met" if sp >= GOAL_DIFFRAX_SPEEDUP else "NOT MET",
                        f"N=2^{int(math.log2(n))}: {sp:.1f}x"))
    goal = (f"RK4-f32 at N=2^23: cuda at >= {GOAL_BOUND_FRACTION:.0%} of the FP32 "
            f"instruction-issue bound")
    r = by.get(("cuda", "RK4-f32", BOUND_N))
    if smoke or r is None or r.kernel_ms is None or not bound or "bound_ms" not in bound:
        out.append((goal, "not evaluated", "needs the cuda kernel time at 2^23 and the SASS count"))
    else:
        b = bound["bound_ms"][str(BOUND_N)]
        frac = b / r.kernel_ms
        out.append((goal, "met" if frac >= GOAL_BOUND_FRACTION else "NOT MET",
                    f"bound {b:.2f} ms, kernel {r.kernel_ms:.2f} ms: {frac:.0%}"))
    return out


def markdown(report):
    recs = [Record(**r) for r in report["records"]]
    lines = []
    dev = report["device"]
    lines.append(f"Device: {dev['name']} ({dev.get('sms')} SMs, "
                 f"{dev.get('clock_khz', 0) / 1e6:.2f} GHz, cc {dev.get('cc')}), driver "
                 f"{dev.get('driver')}, runtime {dev.get('runtime')}; {report['date']}.")
    vers = ", ".join(f"{k} {v}" for k, v in report["versions"].items() if v)
    lines.append(f"Versions: {vers}.")
    lines.append(f"Effective rtol: float32 {report['rtol']['float32']:.3g}, "
                 f"float64 {report['rtol']['float64']:.3g} (requested 1e-6 and 1e-8).")
    lines.append("")
    impls = [i for i in ("cuda", "reference", "cupy", "diffrax", "torchdiffeq")
             if any(r.impl == i for r in recs)]
    names = {"cuda": "gpuivp cuda", "reference": "CUDA C", "cupy": "gpuivp cupy",
             "diffrax": "Diffrax vmap", "torchdiffeq": "torchdiffeq"}
    if report.get("smoke"):
        names.update(cuda="gpuivp numba (smoke)", cupy="gpuivp numpy (smoke)",
                     reference="C++ host build (smoke)")
    for case in [c for c in CASES if any(r.case == c for r in recs)]:
        lines.append(f"**{case}** — kernel / end-to-end time, nfev per trajectory "
                     f"(agreement with gpuivp cuda)")
        lines.append("")
        lines.append("| N | " + " | ".join(names[i] for i in impls) + " |")
        lines.append("|---:|" + "---|" * len(impls))
        for n in sorted({r.n for r in recs if r.case == case}):
            cells = []
            for i in impls:
                r = next((x for x in recs if x.case == case and x.n == n and x.impl == i), None)
                if r is None:
                    cells.append("—")
                elif r.e2e_ms is None and r.kernel_ms is None:
                    cells.append(r.note or "—")
                else:
                    k = "—" if r.kernel_ms is None else f"{r.kernel_ms:.3g}"
                    e = "—" if r.e2e_ms is None else f"{r.e2e_ms:.3g}"
                    c = f"{k} / {e} ms, {r.nfev_mean:.0f}"
                    if r.nfev_how != "counted":
                        c += "*"
                    if r.agree is not None:
                        c += f" ({r.agree:.0e})"
                    cells.append(c)
            lines.append(f"| 2^{int(math.log2(n))} | " + " | ".join(cells) + " |")
        lines.append("")
    if any(r.nfev_how != "counted" for r in recs):
        lines.append("\\* Diffrax nfev estimated from num_steps (6 x steps + 2; RK4: 4 x steps).")
        lines.append("")
    b = report.get("bound") or {}
    if "cuda" in b:
        c = b["cuda"]
        ref = b.get("reference")
        lines.append(f"FP32 issue bound ({b['arch']}): gpuivp cuda RK4 f32 step loop "
                     f"{describe_loop(c)}"
                     + (f", CUDA C {describe_loop(ref)}" if ref else "")
                     + f"; bound at 2^23 = {b['bound_ms'][str(BOUND_N)]:.2f} ms "
                       f"({b['sms']} SMs x 128 x {b['clock_khz'] / 1e6:.2f} GHz).")
        lines.append("")
    lines.append("| goal | status | detail |")
    lines.append("|---|---|---|")
    for g, s, d in report["goals"]:
        lines.append(f"| {g} | {s} | {d} |")
    return "\n".join(lines)


def parse_sizes(text):
    if text == "all":
        return [2 ** p for p in range(10, 24)]
    out = []
    for tok in text.split(","):
        v = int(tok)
        out.append(2 ** v if v < 64 else v)
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="N = 2^10, 2^12, 2^14")
    p.add_argument("--sizes", help="comma-separated exponents (20 = 2^20) or sizes, or 'all'")
    p.add_argument("--cases", default=",".join(CASES),
                   help=f"comma-separated, from {','.join(CASES)}")
    p.add_argument("--only", default=",".join(IMPLS),
                   help=f"comma-separated implementations, from {','.join(IMPLS)}")
    p.add_argument("--repeats", type=int, default=3, help="best of this many timed calls")
    p.add_argument("--time-limit", type=float, default=120.0,
                   help="skip larger N for an implementation once one size took longer (s)")
    p.add_argument("--json", help="write the figures here")
    p.add_argument("--markdown", action="store_true", help="print RESULTS.md tables")
    p.add_argument("--from-json", nargs="+", help="no run: merge saved JSON runs and report")
    p.add_argument("--cpu-smoke", action="store_true",
                   help="no GPU: host reference, numba/numpy backends, CPU Diffrax/torch")
    p.add_argument("--no-bound", action="store_true", help="skip the SASS issue bound")
    p.add_argument("-v", "--verbose", action="store_true", help="tracebacks of failures")
    args = p.parse_args(argv)

    if args.from_json:
        reports = [json.loads(Path(f).read_text()) for f in args.from_json]
        for f, rep in zip(args.from_json, reports):
            if rep.get("partial"):
                print(f"note: {f} is a partial run (stopped before its end)", file=sys.stderr)
        report = dict(reports[0])
        report["records"] = merge_records(rep["records"] for rep in reports)
        for rep in reports[1:]:
            if rep.get("bound") and not report.get("bound"):
                report["bound"] = rep["bound"]
        report["goals"] = goals([Record(**r) for r in report["records"]], report.get("bound"),
                                report.get("smoke", False))
        print(markdown(report))
        return 0 if not any(s == "NOT MET" for _, s, _ in report["goals"]) else 1

    args.cases = [c for c in args.cases.split(",") if c]
    args.only = [i for i in args.only.split(",") if i]
    for c in args.cases:
        if c not in CASES:
            p.error(f"unknown case {c!r}; choose from {list(CASES)}")
    for i in args.only:
        if i not in IMPLS:
            p.error(f"unknown implementation {i!r}; choose from {list(IMPLS)}")
    if args.sizes:
        args.sizes = parse_sizes(args.sizes)
    elif args.cpu_smoke:
        args.sizes = SMOKE_SIZES
    elif args.quick:
        args.sizes = QUICK_SIZES
    else:
        args.sizes = DEFAULT_SIZES
    if not args.cpu_smoke:
        try:
            import cupy
            cupy.cuda.runtime.getDeviceCount()
        except Exception as exc:  # noqa: BLE001
            print(f"no usable GPU through CuPy ({type(exc).__name__}: {exc}); "
                  f"use --cpu-smoke on a machine without one", file=sys.stderr)
            return 1

    dev = device_info(args.cpu_smoke)
    report = dict(date=datetime.datetime.now().isoformat(timespec="seconds"),
                  smoke=bool(args.cpu_smoke), device=dev, versions=versions(),
                  host=platform.node(),
                  rtol={d: effective_rtol(d) for d in ("float32", "float64")},
                  sizes=args.sizes, cases=args.cases, impls=args.only)
    print(f"{dev['name']}: {dev['sms']} SMs, {dev['clock_khz'] / 1e6:.2f} GHz, "
          f"cc {dev['cc']}; {report['date']}", flush=True)
    print("versions: " + ", ".join(f"{k} {v}" for k, v in report["versions"].items() if v),
          flush=True)
    print(f"effective rtol: float32 {report['rtol']['float32']:.4g}, "
          f"float64 {report['rtol']['float64']:.4g}", flush=True)

    bound = None
    if not args.no_bound and "RK4-f32" in args.cases:
        bound = issue_bound(dev, args.sizes)
        if "cuda" in bound:
            print(f"RK4-f32 step loop: cuda {describe_loop(bound['cuda'])} via "
                  f"{bound['cuda']['via']}; "
                  f"bound at 2^23 {bound['bound_ms'][str(BOUND_N)]:.2f} ms", flush=True)
        else:
            print(f"issue bound not computed: {bound.get('cuda_error')}", flush=True)
        if "reference" in bound:
            print(f"RK4-f32 step loop: CUDA C {describe_loop(bound['reference'])}", flush=True)
    report["bound"] = bound

    def save(records, partial=True):
        if args.json:
            out = dict(report, records=[asdict(r) for r in records], partial=partial)
            Path(args.json).write_text(json.dumps(out, indent=1, default=str))

    records, ctx = run(args, save)
    report["records"] = [asdict(r) for r in records]
    report["goals"] = goals(records, bound, args.cpu_smoke)
    report["failures"] = ctx.failures
    print()
    for g, s, d in report["goals"]:
        print(f"goal: {g}: {s} ({d})")
    for f in ctx.failures:
        print(f"FAILURE: {f}")
    if args.json:
        save(records, partial=False)
        print(f"wrote {args.json}")
    if args.markdown:
        print()
        print(markdown(report))
    bad = ctx.failures or any(s == "NOT MET" for _, s, _ in report["goals"])
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
