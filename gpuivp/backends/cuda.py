"""``cuda`` backend: the per-trajectory engine compiled with numba.cuda, a thread per trajectory.

The generated ``solve_one`` (:mod:`gpuivp.engines.per_trajectory`) becomes a
``cuda.jit(device=True)`` function, and a generated kernel runs it for thread
``i = cuda.grid(1)`` (with :data:`REFILL`, fewer threads that each take the next trajectory
when theirs ends). Control values every trajectory shares are scalar kernel parameters
(:func:`kernel_args`), kept in the constant bank, not registers. The host copies the inputs of the
:class:`~gpuivp.engines.runner.EngineState` to the device once and fills its state there
(:data:`DEVICE_FILL`), then launches the kernel in time slices (a bounded
number of step attempts per launch; the integration is resumable, so slicing
does not change results) until no trajectory is still running. Only the outputs come
back (not :data:`DEVICE_ONLY_FIELDS`).

NumPy ufuncs numba-cuda cannot lower are registered first (:mod:`._cuda_math`); any
failure to compile or link is a :class:`CompileError` (``auto`` moves on). A ``raise`` in
``fun`` cannot be reported by device code: that trajectory ends with status -5
(``FAIL_RAISED``; see :func:`_kernel_source`). Between launches
it reads the status array back, updates the progress bar and lets Ctrl-C
through, so a launch never runs long enough for a display watchdog to kill it.

An ensemble solved in chunks (over the memory budget, :mod:`gpuivp._chunking`) goes
through :func:`solve_chunks`: the chunks are pipelined over two CUDA streams with pinned
host staging buffers, so that chunk ``i`` computes while chunk ``i + 1``'s inputs go up
and chunk ``i - 1``'s outputs come down (:func:`pipeline` has the schedule). Each chunk
runs exactly as a one-piece run does, so results do not depend on the chunk size.

Under numba's CUDA simulator (``NUMBA_ENABLE_CUDASIM=1`` before ``numba.cuda``
is first imported) the same code runs in Python threads: that is how CI checks
this backend without a GPU (``tests/test_cuda_sim.py``).
"""
from __future__ import annotations

import contextlib
import math
import os
import re

import numpy as np

from ..engines.compile_cache import cached, py_function
from ..engines.per_trajectory import EngineSource
from ..engines.runner import EngineState, check_slices, slice_budget
from ..engines import fun_compile
from ._base import BackendUnavailable, FunCompileError, progress_bar

NAME = "cuda"
#: Threads per block. The engine is register-heavy (every state component and
#: stage is a scalar), so a moderate block keeps occupancy up without capping
#: registers per thread; 128 is a multiple of the warp size that suits every
#: architecture from sm_60 on.
BLOCK = 128
#: Step attempts per trajectory and launch when no progress bar asks for fewer:
#: a launch then stays well under a display watchdog's few seconds, and Ctrl-C
#: and progress are handled between launches.
GPU_SLICE = 20_000

#: Engine parameters the kernel only reads: not copied back after the run (nor are the
#: user's args).
INPUT_FIELDS = ("y0", "ctrl", "iparams", "atol", "t_eval")
#: State the result does not use (step size, error norm, last derivative, event function
#: values): it stays on the device. Every other array parameter comes back to the host.
DEVICE_ONLY_FIELDS = ("st_h", "st_err", "st_f", "ev_g", "ev_rs", "st_jac")
#: Arrays whose initial contents are one value (what :class:`EngineState` fills them with
#: on the host): allocated and filled on the device, never uploaded. The rest (inputs,
#: dense-output buffers, the user's args) go up from the host.
DEVICE_FILL = {"st_t": 0, "st_h": 0, "st_err": 0, "st_y": 0, "st_f": 0, "st_cnt": 0,
               "st_status": None, "ev_g": 0, "ev_cnt": 0, "out_eval": np.nan, "ev_t": np.nan,
               "ev_y": np.nan, "ev_rs": np.nan, "st_jac": 0}  # None: INIT, the status of a trajectory not yet started
#: Chunked runs (:func:`solve_chunks`) overlap transfer and compute over two streams; False
#: runs the chunks one after the other, as :func:`solve` (for comparisons: benchmarks/scale.py).
OVERLAP = True
#: Refill: launch only as many threads as the device holds at once (:data:`REFILL_THREADS`),
#: and let a thread whose trajectory finishes take the next trajectory not yet taken (a
#: global atomic counter), instead of one thread per trajectory, where a warp runs until its
#: slowest trajectory ends while its other lanes idle. Results are the same bit for bit
#: (each trajectory is the same ``solve_one`` call, whichever thread runs it). **Off by
#: default: not yet measured on a GPU** (``benchmarks/gpu_smoke.py`` times both ways).
#: ``GPUIVP_CUDA_REFILL=1`` sets it at import.
REFILL = os.environ.get("GPUIVP_CUDA_REFILL", "0") == "1"
#: Threads launched with :data:`REFILL`; None: the device's resident threads (SMs x
#: threads per SM). Under the simulator 8 (tests set it).
REFILL_THREADS = None


class CompileError(FunCompileError):
    """numba.cuda could not compile the user's function (the message carries numba's reason)."""

    backend = "cuda"


def _cuda():
    from numba import cuda
    return cuda


def simulated():
    """Whether ``numba.cuda`` is numba's CUDA simulator.

    ``NUMBA_ENABLE_CUDASIM=1`` selects it, read when ``numba.cuda`` is first imported.
    """
    try:
        _cuda()
        from numba.cuda.core import config
    except ImportError:
        return False
    return bool(config.ENABLE_CUDASIM)


def unavailable_reason():
    try:
        cuda = _cuda()
    except ImportError as exc:
        return (f"numba-cuda is not installed ({exc}); install it with "
                f"`pip install numba-cuda[cu12]` (or gpuivp[cuda])")
    except Exception as exc:  # a broken CUDA installation can fail at import
        return f"numba.cuda failed to import ({type(exc).__name__}: {exc})"
    if simulated():
        return None
    try:
        ok = cuda.is_available()
    except Exception as exc:  # pragma: no cover - driver trouble
        return f"no CUDA GPU/driver usable (numba.cuda.is_available() raised {exc!r})"
    if not ok:
        return "no CUDA GPU/driver usable (numba.cuda.is_available() is False)"
    try:
        from numba.cuda.cudadrv import nvvm
        nvvm.NVVM()
    except Exception as exc:
        return (f"a CUDA GPU is present but libNVVM, which numba.cuda compiles with, is not "
                f"usable ({exc}); install numba-cuda[cu12]")
    return None


def _kernel_source(param_names, sim=False, flagged=True, refill=False):
    """``kernel(k, raised, ...)``: thread ``i`` runs trajectory ``i``.

    With ``refill`` (:data:`REFILL`), ``kernel(k, raised, next_i, ...)``: thread ``i`` starts
    with trajectory ``i`` and, each time its trajectory has finished (or was finished
    already: ``solve_one`` returns at once), takes the next one from the counter ``next_i``
    (which the host sets to the number of threads before each launch), until none is left;
    a trajectory still running after its call has spent the launch's budget, and its thread
    stops there (the next launch sweeps every trajectory again from the start).

    numba.cuda device code cannot report an exception (without ``debug=True``): a
    ``raise`` in ``fun`` returns from ``solve_one`` and from the kernel at once, skipping
    the state stores. With ``flagged``, ``raised[i]`` is set before the call and cleared
    after it, so it stays set exactly when the call raised; the next launch then gives
    that trajectory the status ``FAIL_RAISED`` instead of running it again (from its last
    stored state, where it would raise again). Code after the call costs registers (RK4
    float32 Lorenz: 64 instead of 56), so only functions that can raise get it
    (:func:`may_raise`); otherwise ``raised`` is unused. Under the simulator, where the
    exception would reach the host, ``except`` emulates the device's early return, so CI
    runs this path.
    """
    params = ", ".join(param_names)
    call = f"solve_one(i, {params})"
    if sim and flagged:
        call = f"try:\n            {call}\n        except Exception:\n            return"
    # The body for trajectory i; ``done`` ends it (one trajectory per thread: return).
    done = "continue" if refill else "return"
    if not flagged:
        body = f"        {call}\n"
    else:
        body = (f"        if raised[i] != 0:\n"
                f"            if st_status[i] == INIT:\n"  # raised in its first call: t0, y0
                f"                st_t[i] = ctrl[CTRL_T0, i if ctrl.shape[1] > 1 else 0]\n"
                f"                for j in range(N_STATE):\n"
                f"                    st_y[j, i] = y0[j, i]\n"
                f"            st_status[i] = FAIL_RAISED\n"
                f"            {done}\n"
                f"        raised[i] = 1\n"
                f"        {call}\n"
                f"        raised[i] = 0\n")
    if not refill:
        return (f"def kernel(k, raised, {params}):\n"
                f"    i = cuda.grid(1)\n"
                f"    if i < k:\n" + body)
    # (``continue`` in the body must take the next trajectory too: the loop's update comes
    # first, for the trajectory before.)
    return (f"def kernel(k, raised, next_i, {params}):\n"
            f"    i = cuda.grid(1)\n"
            f"    first = True\n"
            f"    while True:\n"
            f"        if not first:\n"
            f"            if st_status[i] >= INIT:\n"  # still running: its budget is spent
            f"                return\n"
            f"            i = cuda.atomic.add(next_i, 0, 1)\n"
            f"        first = False\n"
            f"        if i >= k:\n"
            f"            return\n" + body)


def may_raise(funcs, depth=3):
    """Whether any of ``funcs`` (or a Python or numba function they call by a global
    name, ``depth`` levels down) has a ``raise`` or ``assert`` in its bytecode.

    numba.cuda compiles with NumPy's error model (no ZeroDivisionError), so device code
    raises only where the source does (numba's own checks aside: e.g. ``range`` with a
    zero step).
    """
    import dis

    seen = set()

    def visit(f, d):
        f = getattr(f, "py_func", f)  # a numba dispatcher: its Python function
        f = getattr(f, "func", f)  # a functools.partial: the function it wraps
        code = getattr(f, "__code__", None)
        if code is None or id(code) in seen:
            return False
        seen.add(id(code))
        codes = [code] + [c for c in code.co_consts if hasattr(c, "co_code")]
        for c in codes:
            if any(ins.opname in ("RAISE_VARARGS", "RERAISE") for ins in dis.get_instructions(c)):
                return True
        if d == 0:
            return False
        g = getattr(f, "__globals__", {})
        return any(visit(g[name], d - 1) for c in codes for name in c.co_names
                   if callable(g.get(name)) and not isinstance(g.get(name), type))

    return any(visit(f, depth) for f in funcs)


_ALLOC_SOURCE = ("def alloc_state():\n"
                 "    return cuda.local.array(N_STATE, STATE_DTYPE)\n"
                 "def alloc_matrix():\n"  # a Rosenbrock method's n x n matrices
                 "    return cuda.local.array(N_MATRIX, STATE_DTYPE)\n"
                 "def alloc_index():\n"  # and its row permutation
                 "    return cuda.local.array(N_STATE, numba.int32)\n")


def prepare(problem):
    """``problem`` as the kernel takes it (:func:`gpuivp.engines.fun_compile.prepare`): plain
    Python helpers of ``fun`` become ``cuda.jit(device=True)`` functions, and the arrays
    ``fun`` reads from its globals or closure hidden arguments in global memory (numba
    would bake them into ``.const`` memory, 64 KB at most). The kernel and the
    :class:`~gpuivp.engines.runner.EngineState` are built from the prepared problem."""
    return fun_compile.prepare(problem, _cuda().jit(device=True))


def kernel_function(problem, tableau, refill=False):
    """The kernel as a plain Python function whose globals hold the device functions.

    ``numba.cuda.jit`` of it is the launchable kernel; ``numba.cuda.compile_ptx``
    of it gives the PTX (see ``tests/test_cuda_ptx.py``). ``problem`` is :func:`prepare`-d
    here if it was not.
    """
    import numba

    cuda = _cuda()
    problem = prepare(problem)
    trouble = fun_compile.signature_trouble([problem.fun, *problem.events])
    if trouble:
        raise CompileError(trouble, "remove **kwargs from its signature")
    sim = simulated()
    if not sim:
        from ._cuda_math import register
        register()  # NumPy ufuncs numba-cuda types but cannot lower (np.sqrt, np.exp, ...)
    dtype = np.dtype(problem.dtype)
    n = problem.n
    # The user's functions are left to NVVM's inliner (it inlines small functions
    # anyway, and forcing it would copy a large ``fun`` into every stage);
    # ``solve_one`` has a single call site, so forcing it costs nothing.
    fun = cuda.jit(device=True)(py_function(problem.fun))
    events = [cuda.jit(device=True)(py_function(e)) for e in problem.events]
    affects = [None if a is None else cuda.jit(device=True)(py_function(a))
               for a in problem.affects]
    solve_opts = dict(device=True) if sim else dict(device=True, forceinline=True)

    from .._status import FAIL_RAISED, INIT
    from ..engines.per_trajectory import CTRL_FIELDS

    ns = {"__name__": "gpuivp_cuda_kernel", "cuda": cuda, "N_STATE": n, "N_MATRIX": n * n,
          "numba": numba,
          "STATE_DTYPE": numba.from_dtype(dtype), "FAIL_RAISED": np.int32(FAIL_RAISED),
          "INIT": np.int32(INIT), "CTRL_T0": CTRL_FIELDS.index("t0")}
    exec(compile(_ALLOC_SOURCE, "<gpuivp cuda alloc_state>", "exec"), ns)
    # ``cuda.local.array`` must sit in the function that uses the array: inline
    # the allocator into ``solve_one`` at the Numba IR level.
    alloc_state = cuda.jit(device=True, inline="always")(ns["alloc_state"])
    alloc_matrix = cuda.jit(device=True, inline="always")(ns["alloc_matrix"])
    alloc_index = cuda.jit(device=True, inline="always")(ns["alloc_index"])
    jac = (None if getattr(problem, "jac", None) is None
           else cuda.jit(device=True)(py_function(problem.jac)))

    src = EngineSource.for_problem(problem, tableau, "cuda")
    if sim:
        # The simulator runs the engine as Python on NumPy scalars: NumPy's
        # functions keep float32 in float32, as compiled code does.
        math_fns = dict(nextafter=np.nextafter, isfinite=math.isfinite, sqrt=np.sqrt)
    else:
        math_fns = dict(nextafter=math.nextafter, isfinite=math.isfinite, sqrt=math.sqrt)
    solve_py = src.build(jit_helper=cuda.jit(device=True), fun=fun, alloc_state=alloc_state,
                         events=events, affects=affects, jac=jac, alloc_matrix=alloc_matrix,
                         alloc_index=alloc_index, **math_fns)
    ns["solve_one"] = cuda.jit(**solve_opts)(solve_py)
    flagged = may_raise([problem.fun, *problem.events,
                         *(a for a in problem.affects if a is not None)])
    exec(compile(_kernel_source(src.param_names, sim, flagged, refill),
                 f"<gpuivp cuda kernel {tableau.name} n={n}>", "exec"), ns)
    kernel = ns["kernel"]
    kernel.param_names = tuple(src.param_names)
    kernel.refill = bool(refill)
    return kernel


def kernel_args(state, fields):
    """The kernel's host arguments after ``k`` and ``raised``, for its parameters ``fields``:
    ``state.arrays()``, then the shared control values the kernel takes as scalars
    (``c_<field>``, ``c_atol<j>``: :class:`~gpuivp.engines.per_trajectory.EngineSource`'s
    ``scalar_ctrl`` / ``scalar_atol``), typed as their arrays."""
    from ..engines.per_trajectory import CTRL_FIELDS, IPARAM_FIELDS

    arrays = tuple(state.arrays())
    values = []
    for name in fields[len(arrays):]:
        field = name[2:]
        if field in CTRL_FIELDS:
            a, row = state.ctrl, CTRL_FIELDS.index(field)
        elif field in IPARAM_FIELDS:
            a, row = state.iparams, IPARAM_FIELDS.index(field)
        elif field.startswith("atol"):
            a, row = state.atol, int(field[4:])
        else:  # pragma: no cover - engine and runner disagree
            raise RuntimeError(f"the cuda kernel takes an unknown parameter {name!r}")
        if a.shape[1] != 1:  # pragma: no cover - compiled for shared values, given per-trajectory
            raise RuntimeError(f"the cuda kernel takes {name} as one value for every "
                               f"trajectory, but the state has {a.shape[1]} columns")
        values.append(a.dtype.type(a[row, 0]))
    if len(arrays) + len(values) != len(fields):  # pragma: no cover
        raise RuntimeError(f"EngineState.arrays() has {len(arrays)} entries, the kernel "
                           f"takes {len(fields)}: {fields}")
    return arrays + tuple(values)


def kernel_signature(state, arrays=None, fields=None, refill=False):
    """numba argument types of the kernel for ``state``'s host values
    (:func:`kernel_args` for the kernel's parameters ``fields``), or for the matching
    device ``arrays`` (for ``compile`` and ``compile_ptx``): ``k``, the ``raised`` flags
    (int8, one per trajectory), with ``refill`` the counter ``next_i`` (int64, one), then
    the engine's parameters."""
    import numba

    if arrays is None:
        arrays = state.arrays() if fields is None else kernel_args(state, fields)
    head = (numba.int64, numba.int8[::1]) + ((numba.int64[::1],) if refill else ())
    return head + tuple(numba.typeof(a) for a in arrays)


def _one_line(exc):
    """numba's reason for ``exc`` in one line: its message's first informative line, with
    the exception's class (numba's messages start with "Failed in cuda mode pipeline")."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc))
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    lines = [ln for ln in lines if not ln.startswith(("Failed in ", "During: ", "File "))] or lines
    reason = lines[0] if lines else repr(exc)
    if isinstance(exc, KeyError) and "ufunc" in reason:
        reason = f"{reason} has no numba-cuda implementation for these argument types"
    return f"{type(exc).__name__}: {reason[:300]}"


@contextlib.contextmanager
def _compile_errors():
    """Any failure while compiling (typing, lowering, NVVM, linking), whatever its class, as a
    :class:`CompileError` (a :class:`BackendUnavailable`: ``auto`` tries the next backend).

    numba-cuda raises its own classes (``numba.cuda.core.errors.NumbaError`` is not numba's
    ``NumbaError``; ``UnsupportedBytecodeError`` derives from ``Exception``), a bare
    ``KeyError`` for a ufunc it cannot lower, ``NvvmError`` and the bindings' ``nvvmError``
    from NVVM, ``LinkerError`` or a driver error from ptxas and the linker. Only compile and
    link run inside this context, so every ``Exception`` there is one; the message is numba's
    reason in one line, the full error its ``__cause__``.
    """
    try:
        yield
    except CompileError:
        raise
    except Exception as exc:
        raise CompileError(_one_line(exc)) from exc


def compiled_kernel(problem, tableau, refill=False):
    """``(kernel, param_names)``: the ``cuda.jit`` kernel for this problem's specialisation
    (cached in-process) and the names of its engine parameters (after ``k``, ``raised`` and,
    with ``refill``, ``next_i``). ``problem`` must be :func:`prepare`-d (its arguments are
    the kernel's)."""
    problem = prepare(problem)
    key = EngineSource.cache_key(problem, tableau, NAME) + (simulated(), bool(refill))

    def build():
        py_kernel = kernel_function(problem, tableau, refill)
        return _cuda().jit(py_kernel), py_kernel.param_names

    return cached(key, build)


def _launch_config(k, refill=False):
    """``(grid, block)`` for ``k`` trajectories: a thread each, or with ``refill`` at most
    :func:`refill_threads`."""
    threads = min(k, refill_threads()) if refill else k
    block = BLOCK
    if simulated():
        # Every simulated thread is a Python thread: launch no more than needed.
        block = max(1, min(BLOCK, threads))
    return max(1, (threads + block - 1) // block), block


def refill_threads():
    """Threads launched with :data:`REFILL`: :data:`REFILL_THREADS`, or the threads the
    device holds at once (SMs x maximum threads per SM; 8 under the simulator)."""
    if REFILL_THREADS is not None:
        return int(REFILL_THREADS)
    if simulated():
        return 8
    dev = _cuda().get_current_device()
    return int(dev.MULTIPROCESSOR_COUNT * dev.MAX_THREADS_PER_MULTIPROCESSOR)


def solve(problem, tableau):
    """Run the ensemble on the GPU; returns the raw result dict (NumPy host arrays).

    One piece, on the default stream, with synchronous copies from and into the host
    arrays themselves (no pinned staging: pinning costs more than it saves for one copy).
    """
    run = _Run(problem, tableau, _Direct(_cuda()))
    run.upload()
    for _ in run.slices():
        pass
    run.download()
    return run.collect()


def solve_chunks(parts, tableau):
    """Solve consecutive chunks of one ensemble; yields ``(part, raw)`` in their order.

    ``parts`` is an iterable of :class:`~gpuivp._problem.Problem` (the chunker's slices of
    the ensemble, pulled one ahead). With :data:`OVERLAP` the chunks are pipelined over two
    CUDA streams (:func:`pipeline`): while chunk ``i`` computes on one stream, chunk
    ``i + 1``'s inputs go up and chunk ``i - 1``'s outputs come down on the other, through
    pinned host buffers. Every chunk runs exactly as :func:`solve` runs it (time slices,
    status read back between launches, dense-output growth, the launch guard), so the
    results are bit for bit those of one piece. Without :data:`OVERLAP`, one :func:`solve`
    after the other.
    """
    if not OVERLAP:
        for part in parts:
            yield part, solve(part, tableau)
        return
    cuda = _cuda()
    slots = [_Slot(cuda) for _ in range(2)]
    try:
        yield from pipeline(parts, lambda part, slot: _Run(part, tableau, slot), slots)
    except BaseException:
        # Ctrl-C, an error, or the consumer gave up (GeneratorExit): let the device finish
        # what was enqueued before the staging buffers go away.
        with contextlib.suppress(Exception):
            cuda.synchronize()
        raise


def pipeline(parts, start, slots):
    """The overlapped schedule of a chunked run; yields ``(part, raw)`` per chunk, in order.

    Chunk ``i`` runs on ``slots[i % 2]`` (a stream with its staging buffers). With
    ``run = start(part, slot)`` providing ``upload()`` (enqueue host-to-device copies),
    ``slices()`` (a generator: the time-sliced launches, pausing once right after the
    first launch is enqueued), ``download()`` (enqueue device-to-host copies and record
    an event) and ``collect()`` (wait for that event; the raw result), chunk ``i`` goes::

        launch i (first slice)              # the device is busy with chunk i from here
        collect i - 1                       # its outputs came down beside chunk i's compute
        build part i + 1, upload it         # its inputs go up beside chunk i's compute
        hand out chunk i - 1's result       # the caller assembles it, the device still busy
        finish chunk i's slices             # status reads wait on chunk i's stream only
        download i                          # asynchronous: overlaps chunk i + 1's compute

    A slot is reused by chunk ``i + 1`` only after chunk ``i - 1``, its previous user, has
    been collected, and every operation of one chunk is on its own stream, in order, so
    the overlap never changes what a chunk computes. Pure Python over ``start``'s
    objects: ``tests/test_chunking.py`` checks the order with a recording fake.
    """
    parts = iter(parts)
    part = next(parts, None)
    if part is None:
        return
    cur, prev, i = start(part, slots[0]), None, 0
    cur.upload()
    while cur is not None:
        steps = cur.slices()
        next(steps)
        done = (prev.problem, prev.collect()) if prev is not None else None
        part, nxt = next(parts, None), None
        if part is not None:
            nxt = start(part, slots[(i + 1) % 2])
            nxt.upload()
        if done is not None:
            yield done
        for _ in steps:
            pass
        cur.download()
        prev, cur, i = cur, nxt, i + 1
    yield prev.problem, prev.collect()


class _Run:
    """One ensemble, or one chunk of it, on the device, through a memory strategy ``mem``
    (:class:`_Direct` or :class:`_Slot`): ``upload``, ``slices``, ``download``, ``collect``."""

    def __init__(self, problem, tableau, mem):
        self.problem, self.mem = problem, mem
        prepared = prepare(problem)  # fun's global arrays as hidden (global memory) arguments
        self.refill = bool(REFILL)
        self.kernel, self.fields = compiled_kernel(prepared, tableau, self.refill)
        self.budget = slice_budget(problem, default=GPU_SLICE)
        self.state = EngineState(prepared, self.budget, tableau)
        self.host = dict(zip(self.fields, kernel_args(self.state, self.fields)))
        self.dev = {}

    def upload(self):
        """Enqueue the copies of the inputs to the device; allocate and fill the state
        (:data:`DEVICE_FILL`) and the ``raised`` flags there."""
        from .._status import INIT

        self.dev = {}
        for name, a in self.host.items():
            if not isinstance(a, np.ndarray):
                self.dev[name] = a
            elif name in DEVICE_FILL:
                value = INIT if DEVICE_FILL[name] is None else DEVICE_FILL[name]
                self.dev[name] = self.mem.alloc(name, a.shape, a.dtype)
                fill(self.dev[name], value, self.mem.stream)
            else:
                self.dev[name] = self.mem.to_device(name, a)
        self.raised = self.mem.alloc("raised", (self.problem.k,), np.dtype(np.int8))
        fill(self.raised, 0, self.mem.stream)
        self.next_i = (self.mem.alloc("next_i", (1,), np.dtype(np.int64)) if self.refill
                       else None)

    def slices(self):
        """Launch the kernel in time slices until no trajectory is still running.

        A generator: it pauses once, right after the first launch is enqueued (the device
        is then busy with this run; :func:`pipeline` moves other chunks' data meanwhile).
        Between launches it reads the status back (waiting on this run's stream only),
        updates the progress bar, grows dense-output buffers and lets Ctrl-C through.
        """
        cuda, problem, state, dev, mem = _cuda(), self.problem, self.state, self.dev, self.mem
        kernel, fields, budget = self.kernel, self.fields, self.budget
        k = problem.k
        grid, block = _launch_config(k, self.refill)
        # With refill: the counter ``next_i`` starts at the number of threads each launch.
        head = (k, self.raised) + ((self.next_i,) if self.refill else ())
        dense = getattr(state, "dense", None) is not None

        if not simulated():
            # Compile and link before the first launch, so that a ``fun`` numba.cuda cannot
            # compile is a CompileError (``auto`` falls back) and launch errors are not.
            # bind() links (ptxas, nvJitLink) and loads the module: its failures too.
            with _compile_errors():
                kernel.compile(kernel_signature(state, tuple(dev[f] for f in fields),
                                                refill=self.refill)).bind()

        with progress_bar(problem) as bar:
            launches = 0
            try:
                while True:
                    if self.refill:
                        fill(self.next_i, grid * block, mem.stream)
                    kernel[grid, block, mem.stream](*head, *(dev[f] for f in fields))
                    launches += 1
                    if launches == 1:
                        yield
                    mem.read("st_status", dev["st_status"], state.st_status)  # waits
                    if problem.progress:
                        mem.read("st_t", dev["st_t"], state.st_t)
                    if dense:
                        mem.read("st_cnt", dev["st_cnt"], state.st_cnt)
                    bar.update_to(state)
                    if not _running(state, fields, self.host, dev, mem):
                        break
                    check_slices(launches, problem, budget, "cuda")
            except KeyboardInterrupt:
                # Ctrl-C lands between launches (the host waits in the status copy):
                # let the device finish what it runs, then stop.
                try:
                    cuda.synchronize()
                finally:
                    raise

    def download(self):
        """Enqueue the copies of the outputs back to the host; record the end."""
        for name in self.fields:
            if (name not in INPUT_FIELDS and name not in DEVICE_ONLY_FIELDS
                    and not name.startswith(("arg", "c_"))):
                self.mem.to_host(name, self.dev[name], self.host[name])
        self.mem.record()

    def collect(self):
        """Wait for :meth:`download`; the raw result dict (the run's own host arrays)."""
        self.mem.wait()
        self.dev = {}
        return self.state.raw()


class _Direct:
    """One piece: the default stream, synchronous copies from and into the host arrays."""

    stream = 0

    def __init__(self, cuda):
        self.cuda = cuda

    def to_device(self, name, a):
        return self.cuda.to_device(a)

    def alloc(self, name, shape, dtype):
        return self.cuda.device_array(shape, dtype=dtype)

    def read(self, name, dev, a):
        dev.copy_to_host(a)

    def to_host(self, name, dev, a):
        dev.copy_to_host(a)

    def record(self):
        pass

    def wait(self):
        pass


class _Slot:
    """One stream of the pipeline, with pinned host staging buffers and device buffers.

    Buffers are kept per parameter name and reused by every chunk that runs on this slot
    (C-contiguous views of a flat buffer's leading part, reallocated only when a chunk
    needs more: the first chunk, dense-output growth), so a chunked run pins and allocates
    memory twice, not per chunk. Every copy is asynchronous on :attr:`stream`; outputs land
    in the pinned buffers and reach the run's own host arrays in :meth:`wait`, so no result
    ever aliases a staging buffer.
    """

    def __init__(self, cuda):
        self.cuda = cuda
        self.stream = cuda.stream()
        self.event = cuda.event()
        self.pinned, self.device = {}, {}
        self.pending = []

    def buffers(self, name, shape, dtype):
        """``(pinned, device)`` views of shape ``shape`` for parameter ``name``."""
        size = math.prod(shape)
        pin = self.pinned.get(name)
        if pin is None or pin.dtype != dtype or pin.size < size:
            self.pinned[name] = self.cuda.pinned_array(size, dtype=dtype)
            self.device[name] = self.cuda.device_array(size, dtype=dtype, stream=self.stream)
        return (self.pinned[name][:size].reshape(shape),
                self.device[name][:size].reshape(shape))

    def alloc(self, name, shape, dtype):
        if math.prod(shape) == 0:
            return self.cuda.device_array(shape, dtype=dtype, stream=self.stream)
        return self.buffers(name, shape, dtype)[1]

    def to_device(self, name, a):
        if a.size == 0:
            return self.cuda.to_device(a, stream=self.stream)
        pin, dev = self.buffers(name, a.shape, a.dtype)
        np.copyto(pin, a)
        dev.copy_to_device(pin, stream=self.stream)
        return dev

    def _pin(self, name, a):
        return self.pinned[name][:a.size].reshape(a.shape)

    def read(self, name, dev, a):
        """Copy ``dev`` into ``a`` now: waits for this stream only, not the other one."""
        pin = self._pin(name, a)
        dev.copy_to_host(pin, stream=self.stream)
        self.stream.synchronize()
        np.copyto(a, pin)

    def to_host(self, name, dev, a):
        if a.size == 0:
            return
        pin = self._pin(name, a)
        dev.copy_to_host(pin, stream=self.stream)
        self.pending.append((pin, a))

    def record(self):
        self.event.record(self.stream)

    def wait(self):
        self.event.synchronize()
        for pin, a in self.pending:
            np.copyto(a, pin)
        self.pending.clear()


_FILL = {}
_FILL_SOURCE = ("def fill_kernel(a, v):\n"
                "    i = cuda.grid(1)\n"
                "    if i < a.size:\n"
                "        a[i] = v\n")


def fill(dev, value, stream=0):
    """Set every element of the C-contiguous device array ``dev`` to ``value`` on the
    device (a one-line kernel, compiled once per dtype): state starts on the device
    instead of being built on the host and uploaded."""
    if dev.size == 0:
        return
    cuda = _cuda()
    if "kernel" not in _FILL:
        ns = {"cuda": cuda}  # a global, which the simulator swaps for its own module
        exec(compile(_FILL_SOURCE, "<gpuivp cuda fill>", "exec"), ns)
        _FILL["kernel"] = cuda.jit(ns["fill_kernel"])
    flat = dev.reshape(dev.size)
    block = 256 if not simulated() else max(1, min(64, dev.size))
    _FILL["kernel"][(dev.size + block - 1) // block, block, stream](flat, dev.dtype.type(value))


def _running(state, fields, host, dev, mem):
    """``state.running()`` with the device in the loop.

    ``EngineState.running`` may grow output buffers (dense output) by replacing a
    host array with a longer one whose leading part holds the old contents. The
    host copy is stale (the data is on the device), so for each array replaced
    the old device contents are copied into its leading part and the grown
    array is sent to the device in place of the old one (on ``mem``'s stream).
    """
    still = state.running()
    for name, a in zip(fields, state.arrays()):
        old = host[name]
        if a is old or not isinstance(a, np.ndarray):
            continue
        if a.shape[1:] != old.shape[1:] or a.shape[0] < old.shape[0]:  # pragma: no cover
            raise RuntimeError(f"EngineState replaced {name} {old.shape} by {a.shape}: "
                               f"the cuda backend only knows growth along the first axis")
        mem.read(name, dev[name], a[:old.shape[0]])
        host[name] = a
        dev[name] = mem.to_device(name, a)
    return still


# -- diagnostics without a GPU: PTX and ptxas resource usage ------------------------------

class _FakeDevice:
    def __init__(self, cc):
        self.compute_capability = tuple(cc)


def kernel_ptx(problem, tableau, cc=(9, 0), kernel=None, refill=False):
    """PTX of this problem's kernel for compute capability ``cc``; needs no GPU.

    ``numba.cuda.compile_ptx`` compiles a self-contained kernel without a
    device, but typing a call to a ``cuda.jit(device=True)`` function asks the
    driver for the current device's compute capability. For the duration of the
    compile, ``numba.cuda.dispatcher.get_current_device`` (where the device
    dispatcher looks it up, numba-cuda 0.30) answers with ``cc`` instead.

    Parameters
    ----------
    problem, tableau
        As for :func:`solve`.
    cc : tuple of int
        Target compute capability, e.g. ``(8, 0)`` or ``(9, 0)``.
    kernel : function, optional
        A result of :func:`kernel_function` to reuse (its device functions stay
        typed between compiles for several ``cc``).
    refill : bool
        The :data:`REFILL` kernel (ignored when ``kernel`` is given: its own).
    """
    from unittest import mock

    import numba.cuda.dispatcher as dispatcher

    cuda = _cuda()
    if simulated():
        raise BackendUnavailable("PTX cannot be compiled under the CUDA simulator")
    problem = prepare(problem)
    if kernel is None:
        kernel = kernel_function(problem, tableau, refill)
    sig = kernel_signature(EngineState(problem, 1, tableau), fields=kernel.param_names,
                           refill=kernel.refill)
    with mock.patch.object(dispatcher, "get_current_device", lambda: _FakeDevice(cc)), \
            _compile_errors():
        ptx, _ = cuda.compile_ptx(kernel, sig, cc=tuple(cc))
    return ptx


def ptxas_resources(ptx, arch="sm_90", ptxas="ptxas"):
    """Run ``ptxas -v`` on ``ptx``; returns the entry kernel's resources.

    Returns
    -------
    dict
        ``registers``, ``stack`` (bytes of stack frame: local memory),
        ``spill_stores``, ``spill_loads`` for the ``.entry`` function, plus
        ``max_stack`` over every function in the module and ``log`` (ptxas's
        output). Raises ``RuntimeError`` if ptxas fails.
    """
    import os
    import re
    import subprocess
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "kernel.ptx")
        with open(path, "w") as fh:
            fh.write(ptx)
        proc = subprocess.run([ptxas, f"-arch={arch}", "-v", path, "-o", os.devnull],
                              capture_output=True, text=True)
    log = proc.stdout + proc.stderr
    if proc.returncode != 0:
        raise RuntimeError(f"ptxas -arch={arch} failed ({proc.returncode}):\n{log}")
    # ptxas prints, per function: "Compiling entry function 'NAME'" (entries only),
    # "Function properties for NAME" followed by "N bytes stack frame, N bytes spill
    # stores, N bytes spill loads", then "Used N registers" (entries only, here).
    entry = re.search(r"Compiling entry function '([^']+)'", log)
    entry_name = entry.group(1) if entry else None
    props = {}
    for m in re.finditer(r"Function properties for (\S+)\s*\n\s*(\d+) bytes stack frame, "
                         r"(\d+) bytes spill stores, (\d+) bytes spill loads", log):
        props[m.group(1)] = tuple(int(v) for v in m.group(2, 3, 4))
    regs = re.search(r"Used (\d+) registers", log[entry.end():] if entry else log)
    stack, st, ld = props.get(entry_name, (None, None, None))
    entries = {}
    for m in re.finditer(r"Compiling entry function '([^']+)'.*?Used (\d+) registers", log, re.S):
        e_stack, e_st, e_ld = props.get(m.group(1), (None, None, None))
        entries[m.group(1)] = dict(registers=int(m.group(2)), stack=e_stack, spill_stores=e_st,
                                   spill_loads=e_ld)
    return dict(registers=int(regs.group(1)) if regs else None, stack=stack, spill_stores=st,
                spill_loads=ld, max_stack=max((p[0] for p in props.values()), default=0),
                entries=entries, log=log)


#: PTX instructions that compute in float64 (loads, stores and moves aside).
F64_ARITH = re.compile(r"^\s*(?:@!?%p\d+\s+)?((?:add|sub|mul|fma|div|rcp|sqrt|rsqrt|abs|neg|min|"
                       r"max|cvt|setp|selp|copysign|ex2|lg2|sin|cos|testp)[\w.]*\.f64\b[\w.]*)",
                       re.M)


def f64_instructions(ptx):
    """The float64 arithmetic instructions of ``ptx`` (name -> count)."""
    counts = {}
    for m in F64_ARITH.finditer(ptx):
        counts[m.group(1)] = counts.get(m.group(1), 0) + 1
    return counts
