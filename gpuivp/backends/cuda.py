"""``cuda`` backend: the per-trajectory engine compiled with ``numba.cuda``, one thread per trajectory.

The generated ``solve_one`` (:mod:`gpuivp.engines.per_trajectory`) becomes a
``cuda.jit(device=True)`` function, and a generated kernel runs it for thread
``i = cuda.grid(1)``. The host copies the :class:`~gpuivp.engines.runner.EngineState`
arrays to the device once, then launches the kernel in time slices (a bounded
number of step attempts per launch; the integration is resumable, so slicing
does not change results) until no trajectory is still running. Between launches
it reads the status array back, updates the progress bar and lets Ctrl-C
through, so a launch never runs long enough for a display watchdog to kill it.

Under numba's CUDA simulator (``NUMBA_ENABLE_CUDASIM=1`` before ``numba.cuda``
is first imported) the same code runs in Python threads: that is how CI checks
this backend without a GPU (``tests/test_cuda_sim.py``).
"""
from __future__ import annotations

import math

import numpy as np

from .._status import INIT
from ..engines.compile_cache import cached, fun_key, py_function
from ..engines.per_trajectory import EngineSource
from ..engines.runner import EngineState, slice_budget
from ._base import BackendUnavailable, progress_bar

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

#: Names of the :meth:`EngineState.arrays` entries, in order (the user args follow).
STATE_FIELDS = ("y0", "ctrl", "iparams", "atol", "t_eval", "out_eval", "st_t", "st_h",
                "st_err", "st_y", "st_f", "st_status", "st_cnt")
#: The state arrays the kernel writes: copied back to the host at the end.
OUTPUT_FIELDS = ("out_eval", "st_t", "st_h", "st_err", "st_y", "st_f", "st_status", "st_cnt")


class CompileError(BackendUnavailable):
    """numba.cuda could not compile the user's function (the message carries numba's reason)."""


def _cuda():
    from numba import cuda
    return cuda


def simulated():
    """True when ``numba.cuda`` runs numba's CUDA simulator (``NUMBA_ENABLE_CUDASIM=1``,
    read when ``numba.cuda`` is first imported)."""
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
    return None


def _kernel_source(n_args):
    """``kernel(k, ...)``: thread ``i`` runs trajectory ``i``."""
    params = ", ".join(list(STATE_FIELDS) + [f"arg{m}" for m in range(n_args)])
    return (f"def kernel(k, {params}):\n"
            f"    i = cuda.grid(1)\n"
            f"    if i < k:\n"
            f"        solve_one(i, {params})\n")


_ALLOC_SOURCE = ("def alloc_state():\n"
                 "    return cuda.local.array(N_STATE, STATE_DTYPE)\n")


def kernel_function(problem, tableau):
    """The kernel as a plain Python function whose globals hold the device functions.

    ``numba.cuda.jit`` of it is the launchable kernel; ``numba.cuda.compile_ptx``
    of it gives the PTX (see ``tests/test_cuda_ptx.py``).
    """
    import numba

    cuda = _cuda()
    sim = simulated()
    dtype = np.dtype(problem.dtype)
    n = problem.n
    fixed = problem.dt is not None
    # The user's function is left to NVVM's inliner (it inlines small functions
    # anyway, and forcing it would copy a large ``fun`` into every stage);
    # ``solve_one`` has a single call site, so forcing it costs nothing.
    fun = cuda.jit(device=True)(py_function(problem.fun))
    solve_opts = dict(device=True) if sim else dict(device=True, forceinline=True)

    ns = {"__name__": "gpuivp_cuda_kernel", "cuda": cuda, "N_STATE": n,
          "STATE_DTYPE": numba.from_dtype(dtype)}
    exec(compile(_ALLOC_SOURCE, "<gpuivp cuda alloc_state>", "exec"), ns)
    # ``cuda.local.array`` must sit in the function that uses the array: inline
    # the allocator into ``solve_one`` at the Numba IR level.
    alloc_state = cuda.jit(device=True, inline="always")(ns["alloc_state"])

    src = EngineSource(tableau, n, problem.arg_kinds, dtype, fixed, "cuda")
    if sim:
        # The simulator runs the engine as Python on NumPy scalars: NumPy's
        # functions keep float32 in float32, as compiled code does.
        solve_py = src.build(fun=fun, alloc_state=alloc_state, nextafter=np.nextafter,
                             isfinite=math.isfinite, sqrt=np.sqrt)
    else:
        solve_py = src.build(fun=fun, alloc_state=alloc_state, nextafter=math.nextafter,
                             isfinite=math.isfinite, sqrt=math.sqrt)
    ns["solve_one"] = cuda.jit(**solve_opts)(solve_py)
    exec(compile(_kernel_source(len(problem.arg_kinds)),
                 f"<gpuivp cuda kernel {tableau.name} n={n}>", "exec"), ns)
    return ns["kernel"]


def kernel_signature(state):
    """numba argument types of the kernel for the host arrays of ``state`` (for compile_ptx)."""
    import numba

    return (numba.int64,) + tuple(numba.typeof(a) for a in state.arrays())


def compiled_kernel(problem, tableau):
    """The ``cuda.jit`` kernel for this problem's specialisation (cached in-process)."""
    fixed = problem.dt is not None
    key = (NAME, simulated(), fun_key(problem.fun), tableau.name, problem.n, problem.arg_kinds,
           np.dtype(problem.dtype).str, fixed)

    def build():
        return _cuda().jit(kernel_function(problem, tableau))

    return cached(key, build)


def _launch_config(k):
    block = BLOCK
    if simulated():
        # Every simulated thread is a Python thread: launch no more than needed.
        block = max(1, min(BLOCK, k))
    return (k + block - 1) // block, block


def solve(problem, tableau):
    """Run the ensemble on the GPU; returns the raw result dict (NumPy host arrays)."""
    from numba.core.errors import NumbaError

    cuda = _cuda()
    kernel = compiled_kernel(problem, tableau)
    budget = slice_budget(problem, default=GPU_SLICE)
    state = EngineState(problem, budget)
    host = state.arrays()
    fields = STATE_FIELDS + tuple(f"arg{m}" for m in range(len(host) - len(STATE_FIELDS)))
    dev = {name: cuda.to_device(a) if isinstance(a, np.ndarray) else a
           for name, a in zip(fields, host)}
    dev_args = tuple(dev[name] for name in fields)
    k = problem.k
    grid, block = _launch_config(k)
    # Every launch makes ``budget`` step attempts per running trajectory and the
    # engine stops each one after ``max_steps`` attempts: bound the launches so
    # that a bug can never turn into a hang.
    max_launches = 2 + -(-int(problem.max_steps) // max(1, int(budget)))

    with progress_bar(problem) as bar:
        launches = 0
        try:
            while True:
                try:
                    kernel[grid, block](k, *dev_args)
                except NumbaError as exc:
                    raise CompileError(f"numba.cuda could not compile `fun`: {exc}") from exc
                launches += 1
                dev["st_status"].copy_to_host(state.st_status)  # waits for the launch
                if problem.progress:
                    dev["st_t"].copy_to_host(state.st_t)
                bar.update_to(state)
                if not np.any(state.st_status >= INIT):
                    break
                if launches >= max_launches:
                    raise RuntimeError(
                        f"gpuivp cuda engine: trajectories still running after {launches} "
                        f"launches of {budget} step attempts (max_steps={problem.max_steps}); "
                        f"this is a bug, please report it.")
        except KeyboardInterrupt:
            # Ctrl-C lands between launches (the host waits in the status copy):
            # let the device finish what it runs, then stop.
            try:
                cuda.synchronize()
            finally:
                raise

    for name in OUTPUT_FIELDS:
        dev[name].copy_to_host(getattr(state, name))
    return state.raw()
