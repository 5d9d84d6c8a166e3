"""Cases for the ``cuda`` backend under numba's CUDA simulator, and the worker that runs them.

``NUMBA_ENABLE_CUDASIM`` is read when ``numba.cuda`` is first imported, so the
simulator runs in its own process::

    NUMBA_ENABLE_CUDASIM=1 python tests/_cudasim_worker.py OUT.npz [CASE ...]

runs each case on ``backend="cuda"`` and saves the raw results to ``OUT.npz``
(keys ``"<case>/<field>"``; a case that raised stores its traceback under
``"<case>/error"``). ``tests/test_cuda_sim.py`` starts the worker, runs the same
cases on the ``numba`` backend meanwhile, and compares.

Importing this module has no side effects beyond defining :data:`CASES`.
"""
from __future__ import annotations

import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

from problems import blowup, forced_oscillator, harmonic, lorenz, vanderpol  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(HERE), "benchmarks"))
from stiff import rober, rober_jac  # noqa: E402  (Robertson's kinetics, benchmarks/stiff.py)

FIELDS = ("t", "y", "t_final", "y_final", "status", "nfev", "naccept", "nreject",
          "t_events", "y_events", "n_events")


def linear_shared(t, y, A):
    """y' = A y with one 2x2 matrix shared by every trajectory (``gpuivp.shared``)."""
    return (A[0, 0] * y[0] + A[0, 1] * y[1], A[1, 0] * y[0] + A[1, 1] * y[1])


def decay_vec(t, y, w):
    """Per-trajectory vector arg (a (2, k) array: ``w`` is trajectory i's column)."""
    return (-w[0] * y[0], -w[1] * y[1])


def sqrt_decay(t, y, c):
    """NaN at t0 where c < 0 (status -3 for that trajectory only)."""
    return (-np.sqrt(c) * y[0], y[0] - y[1])


def cross(t, y, w):
    """Every zero of y[0] (non-terminal)."""
    return y[0]


def stop_late(t, y, w):
    """Terminal at t = 5 + w."""
    return t - 5.0 - w


stop_late.terminal = True


RING_N = 12  # the per-trajectory engine's looped form (gpuivp.engines.per_trajectory.LOOP_MIN_N)


def ring_inplace(t, y, dydt, F):
    """Lorenz-96 on a ring of RING_N, written in place (``inplace=True``)."""
    for i in range(RING_N):
        dydt[i] = (y[(i + 1) % RING_N] - y[(i - 2) % RING_N]) * y[(i - 1) % RING_N] - y[i] + F


def ring_high(t, y, F):
    return y[0] - 8.5


def raises_sometimes(t, y, omega):
    """Harmonic; raises at t0 where omega < 0 and after t = 0.5 where omega > 2.5."""
    if omega < 0.0 or (omega > 2.5 and t > 0.5):
        raise ValueError("omega out of range")
    return (y[1], -omega * omega * y[0])


#: Cases where ``fun`` raises: on ``cuda`` those trajectories get status -5 (FAIL_RAISED);
#: on ``numba`` the exception propagates, so they are not compared with it.
RAISES = ("raises_f64", "raises_f64_refill")


def half_converted(t, y, k1, k2, k3):
    """Robertson's product reaches half the mass."""
    return y[2] - 0.5


def linear_1(t, y, lam):
    return (lam * y[0],)


def linear_1_jac(t, y, lam):
    return ((lam,),)


def _lorenz_args(k, dtype=float):
    return (dtype(10.0), np.linspace(0.5, 20.0, k), dtype(8.0 / 3.0))


TEVAL_FAIL_ARGS = (10.0, np.r_[np.linspace(0.5, 20.0, 8), 1e300], 8.0 / 3.0)


def _cases():
    x3 = np.c_[[1.0, 0.0, 0.0]]
    osc = np.array([[1.0, 0.5, -0.3, 0.0], [0.0, 0.2, 0.4, -1.0]])
    A = np.array([[-0.5, 2.0], [-2.0, -0.1]])
    c = {}
    # name -> dict(fun, t_span, y0, kw: solve_ivp's keywords; slice: GPU_SLICE for the
    # cuda run; sol_at: compare sol() at that many times). Cases share numba
    # specialisations where they can: the numba side's compile time is most of the cost.
    c["rk45_f64"] = dict(fun=lorenz, t_span=(0.0, 1.0), y0=x3,
                         kw=dict(method="RK45", args=_lorenz_args(4), rtol=1e-6, atol=1e-8))
    c["rk45_f32"] = dict(fun=lorenz, t_span=(0.0, 1.0), y0=x3,
                         kw=dict(method="RK45", args=_lorenz_args(4), rtol=1e-4, atol=1e-6,
                                 dtype=np.float32))
    c["dop853_teval_f64"] = dict(fun=vanderpol, t_span=(0.0, 2.0), y0=np.c_[[2.0, 0.0]],
                                 kw=dict(method="DOP853", args=(np.linspace(0.2, 3.0, 3),),
                                         t_eval=np.linspace(0.0, 2.0, 7), rtol=1e-8,
                                         atol=1e-10))
    c["tsit5_f64"] = dict(fun=forced_oscillator, t_span=(0.0, 3.0), y0=np.c_[[0.0, 1.0]],
                          kw=dict(method="Tsit5", args=(np.linspace(0.5, 2.0, 3), 0.7),
                                  rtol=1e-7, atol=1e-9, t_eval=np.linspace(0.0, 3.0, 5)))
    c["tsit5_f32"] = dict(fun=harmonic, t_span=(0.0, 3.0), y0=osc,
                          kw=dict(method="Tsit5", args=(np.array([0.5, 1.0, 1.5, 2.0]),),
                                  rtol=1e-4, atol=1e-6, dtype=np.float32,
                                  t_eval=np.linspace(0.0, 3.0, 4)))
    c["rk4_f64"] = dict(fun=harmonic, t_span=(0.0, 2.0), y0=osc,
                        kw=dict(method="RK4", dt=0.1, args=(np.array([0.5, 1.0, 1.5, 2.0]),),
                                t_eval=np.linspace(0.0, 2.0, 6)))
    c["rk4_f32"] = dict(fun=harmonic, t_span=(0.0, 2.0), y0=osc,
                        kw=dict(method="RK4", dt=0.1, args=(np.array([0.5, 1.0, 1.5, 2.0]),),
                                dtype=np.float32))
    c["rk45_backward_f64"] = dict(fun=harmonic, t_span=(2.0, 0.0), y0=osc[:, :3],
                                  kw=dict(method="RK45", args=(np.array([0.5, 1.0, 2.0]),),
                                          rtol=1e-6, atol=1e-9,
                                          t_eval=np.linspace(2.0, 0.0, 5)))
    c["shared_arg_f64"] = dict(fun=linear_shared, t_span=(0.0, 2.0), y0=osc,
                               kw=dict(method="RK45", args=("SHARED", A), rtol=1e-7,
                                       atol=1e-9))
    c["traj_vector_arg_f64"] = dict(fun=decay_vec, t_span=(0.0, 1.0), y0=osc[:, :3] + 1.0,
                                    kw=dict(method="RK23",
                                            args=(np.array([[0.5, 1.0, 2.0], [3.0, 0.1, 1.0]]),),
                                            rtol=1e-6, atol=1e-9))
    c["nan_at_t0_f64"] = dict(fun=sqrt_decay, t_span=(0.0, 1.0), y0=np.c_[[1.0, 0.5]],
                              kw=dict(method="RK45", args=(np.array([1.0, -1.0, 2.0]),),
                                      rtol=1e-6, atol=1e-9, t_eval=np.linspace(0.0, 1.0, 3)))
    c["blowup_f64"] = dict(fun=blowup, t_span=(0.0, 1.5), y0=np.c_[[1.0]],
                           kw=dict(method="RK45", args=(np.array([0.5, 1.0, 2.0]),),
                                   rtol=1e-6, atol=1e-9))
    # Fixed steps, final state only: no finiteness test per step; a slice (of 7 steps) that
    # ends non-finite runs again from its start to find the failing step.
    c["rk4_blowup_sliced_f64"] = dict(fun=blowup, t_span=(0.0, 1.5), y0=np.c_[[1.0]], slice=7,
                                      kw=dict(method="RK4", dt=0.01,
                                              args=(np.array([0.5, 1.0, 2.0]),)))
    c["max_steps_f64"] = dict(fun=lorenz, t_span=(0.0, 1.0), y0=x3,
                              kw=dict(method="RK45", args=_lorenz_args(3), rtol=1e-6,
                                      atol=1e-8, max_steps=5))
    # Hook: tiny time slices (many launches), resumed state must give identical results.
    c["sliced_f64"] = dict(fun=lorenz, t_span=(0.0, 1.0), y0=x3, slice=7,
                           kw=dict(method="RK45", args=_lorenz_args(4), rtol=1e-6, atol=1e-8))
    c["progress_f64"] = dict(fun=lorenz, t_span=(0.0, 0.5), y0=x3,
                             kw=dict(method="RK45", args=_lorenz_args(3), rtol=1e-6, atol=1e-8,
                                     progress=True))
    c["events_f64"] = dict(fun=harmonic, t_span=(0.0, 10.0), y0=np.c_[[1.0, 0.0]],
                           kw=dict(method="RK45", args=(np.array([1.0, 2.0, 3.0]),),
                                   events=[cross, stop_late], rtol=1e-8, atol=1e-10))
    # Dense output: more accepted steps than the initial buffer, so the host grows it.
    c["dense_rk45_f64"] = dict(fun=lorenz, t_span=(0.0, 1.0), y0=x3, sol_at=11,
                               kw=dict(method="RK45", args=_lorenz_args(3), rtol=1e-8,
                                       atol=1e-10, dense_output=True))
    c["dense_sliced_f64"] = dict(fun=lorenz, t_span=(0.0, 1.0), y0=x3, sol_at=11, slice=5,
                                 kw=dict(method="RK45", args=_lorenz_args(4), rtol=1e-7,
                                         atol=1e-9, dense_output=True))
    # rho = 1e300 overflows at once: a failing trajectory among good ones.
    c["teval_fail_f64"] = dict(fun=lorenz, t_span=(0.0, 1.0), y0=x3,
                               kw=dict(method="RK45", args=TEVAL_FAIL_ARGS, rtol=1e-6,
                                       atol=1e-8, t_eval=np.linspace(0.0, 1.0, 5)))
    # A system large enough for the looped engine: in-place fun, events, t_eval.
    ring0 = np.full((RING_N, 1), 8.0)
    ring0[5] += 0.01
    c["looped_inplace_f64"] = dict(fun=ring_inplace, t_span=(0.0, 1.0), y0=ring0,
                                   kw=dict(method="RK45", args=(np.array([6.0, 9.0]),),
                                           inplace=True, events=ring_high, rtol=1e-6,
                                           atol=1e-8, t_eval=np.linspace(0.0, 1.0, 3)))
    # fun raising in the first call (omega < 0) and mid-run (omega > 2.5), over many slices.
    c["raises_f64"] = dict(fun=raises_sometimes, t_span=(0.0, 1.0), y0=np.c_[[1.0, 0.0]],
                           slice=7, kw=dict(method="RK45", args=(np.array([1.0, -1.0, 3.0, 2.0]),),
                                            rtol=1e-8, atol=1e-10))
    # Per-trajectory problem data: own spans (both directions), tolerances, a shared t_eval
    # with points outside some spans (NaN); own dt and (n_t, k) t_eval for fixed steps.
    w4 = np.array([0.5, 1.0, 1.5, 2.0])
    c["per_traj_f64"] = dict(fun=harmonic, t_span=(np.array([0.0, 1.0, 2.0, 0.5]),
                                                   np.array([2.0, -1.0, 2.0, 3.0])), y0=osc,
                             kw=dict(method="RK45", args=(w4,), t_eval=np.linspace(-1, 3, 9),
                                     rtol=np.array([[1e-6, 1e-5, 1e-7, 1e-6]]),
                                     atol=np.full((2, 4), 1e-9), max_step=np.r_[0.3, 1, 1, 1]))
    c["per_traj_rk4_f64"] = dict(fun=harmonic, t_span=(0.0, np.array([2.0, -1.0, 1.0, 0.3])),
                                 y0=osc, kw=dict(method="RK4", dt=np.array([0.1, 0.05, 0.2, 0.1]),
                                                 args=(w4,), t_eval=np.linspace(
                                                     0.0, np.array([2.0, -1.0, 1.0, 0.3]), 3)))
    # Stiff (Rosenbrock methods): Robertson with jac over one-attempt launches (a launch
    # that ends on a rejection keeps its Jacobian for the retry); finite differences in
    # float32 with t_eval, an event and dense output; a singular matrix in trajectory 0 only
    # (lam = 1 / (dt gamma) makes I / (dt gamma) - J zero).
    rober_args = (np.array([0.04, 0.02, 0.08]), 3e7, np.array([1e4, 5e3, 2e4]))
    c["rodas5p_jac_sliced_f64"] = dict(fun=rober, t_span=(0.0, 1e5), y0=x3, slice=1,
                                       kw=dict(method="Rodas5P", args=rober_args, jac=rober_jac,
                                               rtol=1e-6, atol=1e-10))
    c["rosenbrock23_events_dense_f32"] = dict(
        fun=rober, t_span=(0.0, 1e3), y0=x3, sol_at=7,
        kw=dict(method="Rosenbrock23", args=rober_args, rtol=1e-4, atol=1e-7,
                dtype=np.float32, t_eval=np.linspace(0.0, 1e3, 5), events=half_converted,
                dense_output=True))
    gamma = 1.0 / (2.0 + np.sqrt(2.0))  # Rosenbrock23's
    c["rosenbrock23_singular_f64"] = dict(
        fun=linear_1, t_span=(0.0, 1.0), y0=np.ones((1, 1)),
        kw=dict(method="Rosenbrock23", dt=0.125, jac=linear_1_jac,
                args=(np.array([1.0 / (0.125 * gamma), -1.0]),)))
    # Chunked twins (key ``chunk``: trajectories per chunk on the cuda backend, through a
    # memory budget): solved in 3+ chunks pipelined over two streams, they must equal their
    # one-piece case bit for bit (``tests/test_cuda_sim.py``).
    for base, chunk in (("teval_fail_f64", 3), ("events_f64", 1), ("dense_sliced_f64", 1)):
        c[base + "_chunked"] = dict(c[base], chunk=chunk, whole=base)
    # Refill twins (key ``refill``: threads launched, fewer than trajectories): a thread
    # whose trajectory ends takes the next; results equal one thread per trajectory, bit
    # for bit (resumed slices, a raising fun, t_eval with a failing trajectory).
    for base in ("sliced_f64", "raises_f64", "teval_fail_f64"):
        c[base + "_refill"] = dict(c[base], refill=2, whole=base)
    return c


CASES = _cases()


def call_args(case):
    """solve_ivp's positional and keyword arguments for ``case`` (``"SHARED"`` marks the next
    arg as ``gpuivp.shared``)."""
    import gpuivp

    kw = dict(case["kw"])
    args = kw.get("args")
    if args is not None and len(args) and isinstance(args[0], str) and args[0] == "SHARED":
        kw["args"] = (gpuivp.shared(args[1]),)
    return (case["fun"], case["t_span"], case["y0"]), kw


def raw_fields(res, sol_at=None):
    out = {}
    for f in FIELDS:
        v = res.get(f)
        if v is not None:
            out[f] = np.asarray(v)  # a list per event function stacks into one array
    if sol_at:
        out["sol"] = res.sol(np.linspace(res.t[0], res.t[-1], sol_at))
    return out


def captured_problem(pos, kw, backend):
    """The Problem ``solve_ivp(*pos, **kw)`` hands to ``backend`` (nothing is solved)."""
    from unittest import mock

    import gpuivp._ivp as ivp

    class Captured(Exception):
        pass

    seen = {}

    def spy(problem, name):
        seen["problem"] = problem
        raise Captured

    with mock.patch.object(ivp, "_run", spy), np.errstate(all="ignore"):
        try:
            ivp.solve_ivp(*pos, backend=backend, **kw)
        except Captured:
            pass
    return seen["problem"]


def chunk_budget(pos, kw, chunk, backend="cuda"):
    """``(memory_budget, n_chunks)``: a budget that gives ``chunk`` trajectories per chunk on
    ``backend`` (its ``RESIDENT`` chunks in flight at once), and the chunks it makes."""
    import dataclasses

    from gpuivp import _chunking as C

    p = captured_problem(pos, kw, backend)
    budget = C.RESIDENT.get(backend, 1) * chunk * C.bytes_per_trajectory(p, backend)
    size = C.chunk_size(dataclasses.replace(p, memory_budget=budget), backend)
    return budget, len(C.split(p.k, size))


def run_case(name, backend):
    """Run case ``name`` on ``backend``; returns the fields of the result.

    A case with ``chunk`` runs chunked on ``cuda`` (and in one piece elsewhere); the number
    of chunks is returned under ``"chunks"``."""
    from gpuivp import solve_ivp

    case = CASES[name]
    pos, kw = call_args(case)
    n_chunks = 1
    if backend == "cuda" and "chunk" in case:
        kw["memory_budget"], n_chunks = chunk_budget(pos, kw, case["chunk"])
    restore = None
    if backend == "cuda":
        from gpuivp.backends import cuda as cb
        restore = cb.GPU_SLICE, cb.REFILL, cb.REFILL_THREADS
        cb.GPU_SLICE = case.get("slice", cb.GPU_SLICE)
        if "refill" in case:
            cb.REFILL, cb.REFILL_THREADS = True, case["refill"]
    try:
        with np.errstate(all="ignore"):
            res = solve_ivp(*pos, backend=backend, **kw)
    finally:
        if restore is not None:
            cb.GPU_SLICE, cb.REFILL, cb.REFILL_THREADS = restore
    out = raw_fields(res, case.get("sol_at"))
    out["backend"] = np.asarray(res.backend)
    if backend == "cuda" and "refill" in case:
        restore = cb.REFILL_THREADS
        cb.REFILL_THREADS = case["refill"]
        grid, block = cb._launch_config(res.status.shape[-1], refill=True)
        cb.REFILL_THREADS = restore
        out["threads"] = np.asarray(grid * block)
    if "chunk" in case:
        out["chunks"] = np.asarray(n_chunks)
    return out


def check_overlap():
    """A chunked cuda run pipelines its chunks: two streams, every copy asynchronous on one
    of them through pinned host memory, every launch on one of them, staging buffers
    reused from chunk to chunk; without ``OVERLAP`` the same results, no streams.
    Returns a message ('' if ok)."""
    from unittest import mock

    from numba import cuda
    from numba.cuda.simulator.cudadrv.devicearray import FakeCUDAArray
    from numba.cuda.simulator.kernel import FakeCUDAKernel

    from gpuivp import solve_ivp
    from gpuivp.backends import cuda as cb

    case = CASES["teval_fail_f64"]
    pos, kw = call_args(case)
    log = dict(streams=[], pinned=[], events=0, launches=[], d2h=[], h2d=[], plain=0)
    real = dict(stream=cuda.stream, pinned_array=cuda.pinned_array, event=cuda.event,
                to_device=cuda.to_device, getitem=FakeCUDAKernel.__getitem__,
                to_host=FakeCUDAArray.copy_to_host, to_dev=FakeCUDAArray.copy_to_device)

    def stream():
        s = real["stream"]()
        log["streams"].append(s)
        return s

    def pinned_array(*a, **k):
        arr = real["pinned_array"](*a, **k)
        log["pinned"].append(arr)
        return arr

    class Event(real["event"]):
        def record(self, stream=0):
            log["events"] += 1
            return super().record(stream)

    def to_device(ary, stream=0, copy=True, to=None):
        log["plain"] += not stream
        return real["to_device"](ary, stream=stream, copy=copy, to=to)

    def getitem(self, config):
        log["launches"].append(config[2] if len(config) > 2 else 0)
        return real["getitem"](self, config)

    def copy_to_host(self, ary=None, stream=0):
        log["d2h"].append((stream, ary))
        return real["to_host"](self, ary, stream=stream)

    def copy_to_device(self, ary, stream=0):
        log["h2d"].append((stream, ary))
        return real["to_dev"](self, ary, stream=stream)

    def pinned(a):
        return a is not None and any(np.shares_memory(a, p) for p in log["pinned"])

    def run(chunk):
        for key in log:
            log[key] = 0 if key in ("events", "plain") else []
        k2 = dict(kw)
        k2["memory_budget"], n_chunks = chunk_budget(pos, kw, chunk)
        with mock.patch.multiple(cuda, stream=stream, pinned_array=pinned_array, event=Event,
                                 to_device=to_device), \
                mock.patch.multiple(FakeCUDAKernel, __getitem__=getitem), \
                mock.patch.multiple(FakeCUDAArray, copy_to_host=copy_to_host,
                                    copy_to_device=copy_to_device), np.errstate(all="ignore"):
            res = solve_ivp(*pos, backend="cuda", **k2)
        return res, n_chunks, {key: (list(v) if isinstance(v, list) else v)
                               for key, v in log.items()}

    problems = []
    res, n_chunks, got = run(3)
    streams = got["streams"]
    if n_chunks < 3:
        problems.append(f"{n_chunks} chunks, expected 3")
    if len(streams) != 2:
        problems.append(f"{len(streams)} streams created, expected 2")
    if got["events"] != n_chunks:
        problems.append(f"{got['events']} events recorded for {n_chunks} chunks")
    if got["plain"] or not got["launches"] or \
            any(not any(s is t for t in streams) for s in got["launches"]):
        problems.append("a launch or an upload on the default stream")
    if len({id(s) for s in got["launches"]}) != 2:
        problems.append("the launches did not use both streams")
    for kind in ("d2h", "h2d"):
        bad = [(s, a) for s, a in got[kind] if not any(s is t for t in streams)
               or not pinned(a)]
        if bad or not got[kind]:
            problems.append(f"{len(bad)} of {len(got[kind])} {kind} copies not asynchronous "
                            f"from/into pinned memory")
    # Staging buffers are reused: as many pinned allocations for 9 chunks as for 3.
    res9, n9, got9 = run(1)
    if n9 != 9 or len(got9["pinned"]) != len(got["pinned"]):
        problems.append(f"{len(got9['pinned'])} pinned buffers for {n9} chunks, "
                        f"{len(got['pinned'])} for {n_chunks}")
    orig = cb.OVERLAP
    cb.OVERLAP = False
    try:
        seq, _, got_seq = run(3)
    finally:
        cb.OVERLAP = orig
    if got_seq["streams"]:
        problems.append("OVERLAP = False still made streams")
    for other in (res9, seq):
        for f in ("y", "y_final", "t_final", "status", "nfev", "naccept", "nreject"):
            if not np.array_equal(res[f], other[f], equal_nan=f in ("y", "y_final", "t_final")):
                problems.append(f"{f} differs between chunkings or with OVERLAP = False")
    return "; ".join(problems)


def check_chunked_progress():
    """With ``progress=True`` one bar advances across the pipelined chunks. '' if ok."""
    import contextlib
    import io

    from gpuivp import solve_ivp

    case = CASES["teval_fail_f64"]
    pos, kw = call_args(case)
    kw["progress"] = True
    kw["memory_budget"], n_chunks = chunk_budget(pos, kw, 3)
    err = io.StringIO()
    with contextlib.redirect_stderr(err), np.errstate(all="ignore"):
        res = solve_ivp(*pos, backend="cuda", **kw)
    text, k = err.getvalue(), res.status.size
    if f"({n_chunks} chunks)" not in text or f"{k}/{k}" not in text:
        return f"no bar over {n_chunks} chunks reaching {k}/{k} in {text[-300:]!r}"
    return ""


def check_interrupt(chunked=False):
    """Ctrl-C between launches propagates as KeyboardInterrupt, also from the pipeline of a
    chunked run (chunks of one trajectory). Returns a message ('' if ok)."""
    import contextlib

    from gpuivp import solve_ivp
    from gpuivp.backends import cuda as cb

    seen = []

    class Bar:
        def update_to(self, state):
            seen.append(int(np.sum(state.st_status >= 10)))
            raise KeyboardInterrupt

    @contextlib.contextmanager
    def bar(problem):
        yield Bar()

    orig_bar, orig_slice = cb.progress_bar, cb.GPU_SLICE
    cb.progress_bar, cb.GPU_SLICE = bar, 3
    try:
        solve_ivp(lorenz, (0.0, 1.0), np.c_[[1.0, 0.0, 0.0]], args=_lorenz_args(2),
                  backend="cuda", memory_budget=1 if chunked else None)
    except KeyboardInterrupt:
        expected = [1] if chunked else [2]
        return "" if seen == expected else f"interrupted after launches {seen}, expected " \
            f"{expected}"
    finally:
        cb.progress_bar, cb.GPU_SLICE = orig_bar, orig_slice
    return "KeyboardInterrupt did not propagate"


def main(argv):
    import time
    import traceback

    out_path, names = argv[0], argv[1:] or list(CASES)
    from numba.cuda.core import config

    import gpuivp
    from gpuivp.backends import cuda as cb

    store = {"_meta/simulator": np.asarray(bool(config.ENABLE_CUDASIM)),
             "_meta/unavailable_reason": np.asarray(str(cb.unavailable_reason())),
             "_meta/available": np.asarray(",".join(gpuivp.available_backends()))}
    for name in names:
        t = time.perf_counter()
        try:
            for f, v in run_case(name, "cuda").items():
                store[f"{name}/{f}"] = v
        except BaseException:  # noqa: BLE001 - report every case, whatever happened
            store[f"{name}/error"] = np.asarray(traceback.format_exc())
        store[f"{name}/seconds"] = np.asarray(time.perf_counter() - t)
    checks = dict(interrupt=check_interrupt,
                  interrupt_chunked=lambda: check_interrupt(chunked=True),
                  overlap=check_overlap, chunked_progress=check_chunked_progress)
    for key, check in checks.items():
        try:
            store[f"_meta/{key}"] = np.asarray(check())
        except BaseException:  # noqa: BLE001
            store[f"_meta/{key}"] = np.asarray(traceback.format_exc())
    np.savez(out_path, **store)


if __name__ == "__main__":
    # Before anything imports numba.cuda: run the real kernels on the simulator.
    os.environ.setdefault("NUMBA_ENABLE_CUDASIM", "1")
    sys.path.insert(0, os.path.dirname(HERE))  # the checkout's gpuivp
    main(sys.argv[1:])
