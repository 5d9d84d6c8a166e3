"""``numba`` backend: the per-trajectory engine compiled with ``njit``, trajectories in parallel.

Trajectories run on a pool of Python threads, each calling the compiled engine
(``nogil=True``) on a range of trajectories. Compared with ``prange`` this
compiles about a second faster (no parfors pass), works from any number of
caller threads (numba's workqueue layer aborts under concurrent use, e.g. Dask
threads), and is deterministic: each trajectory's arithmetic is independent of
how the ensemble is split.
"""
from __future__ import annotations

import functools
import itertools
import math
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from ..engines import disk_cache
from ..engines.compile_cache import cached, py_function
from ..engines.per_trajectory import EngineSource
from ..engines.runner import EngineState, check_slices, slice_budget
from .._status import INIT
from ._base import BackendUnavailable, progress_bar

NAME = "numba"
JIT_OPTIONS = dict(error_model="numpy", fastmath=False, nogil=True)
#: The engine namespace's math functions (``EngineSource.namespace``), both compile paths.
HOST_FUNCTIONS = dict(nextafter=np.nextafter, isfinite=math.isfinite, sqrt=math.sqrt)


def unavailable_reason():
    try:
        import numba  # noqa: F401
    except ImportError as exc:
        return f"numba is not installed ({exc})"
    return None


class CompileError(BackendUnavailable):
    """numba could not compile the user's function (the message carries numba's reason)."""


_POOL = None


def n_threads():
    """Worker threads: ``NUMBA_NUM_THREADS`` if set, else the CPUs this process may use."""
    env = os.environ.get("NUMBA_NUM_THREADS")
    if env:
        return max(1, int(env))
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return os.cpu_count() or 1


def _pool():
    global _POOL
    if _POOL is None:
        _POOL = ThreadPoolExecutor(n_threads(), thread_name_prefix="gpuivp")
    return _POOL


def _driver(param_names):
    """``run_range(a, b, ...)``: trajectories ``a <= i < b``."""
    params = ", ".join(param_names)
    return (f"def run_range(a, b, {params}):\n"
            f"    for i in range(a, b):\n"
            f"        solve_one(i, {params})\n")


def _run_parallel(run_range, k, arrays, on_error):
    """Run every trajectory, split into chunks over the thread pool when worth it.

    An exception from the chunk of trajectories ``a <= i < b`` goes through
    ``on_error(exc, a, b)`` before it propagates; chunks not yet started are cancelled.
    """
    run_range(0, 0, *arrays)  # compile here (a TypingError), not racing in the workers
    threads = n_threads()
    parts = 1 if threads == 1 or k < 64 else 8 * threads
    bounds = np.linspace(0, k, parts + 1).astype(np.int64)
    chunks = [(a, b) for a, b in zip(bounds[:-1], bounds[1:]) if b > a]
    futures = ([None] if len(chunks) == 1 else
               [_pool().submit(run_range, a, b, *arrays) for a, b in chunks])
    for (a, b), f in zip(chunks, futures):
        try:
            run_range(a, b, *arrays) if f is None else f.result()
        except Exception as exc:
            for other in futures:
                if other is not None:
                    other.cancel()
            on_error(exc, a, b)
            raise


def _name_failing_trajectory(run_range, problem, tableau, exc, a, b):
    """Rerun trajectories ``a <= i < b`` one at a time from ``t0`` until one raises, and note
    on ``exc`` which (the error path only: a compiled run cannot say where it raised)."""
    part = problem.subset(np.arange(a, b))  # contiguous copies: the compiled layout
    state = EngineState(part, slice_budget(part), tableau)
    for i in range(b - a):
        try:
            while state.st_status[i] >= INIT:
                state.running()  # grows the dense buffers when they are full
                run_range(i, i + 1, *state.arrays())
        except Exception:
            problem.name_trajectory(exc, a + i)
            return


def compiled_engine(problem, tableau):
    """The njit-compiled ``run_range`` for this problem's specialisation (cached in-process,
    and on disk where ``engines.disk_cache`` can hold it)."""
    import numba

    def build():
        def jit(f):
            return numba.njit(**JIT_OPTIONS)(py_function(f))

        src = EngineSource.for_problem(problem, tableau, "cpu")
        # The disk cache first (compiled engines that survive the process), else in-process.
        engine = disk_cache.load_engine(problem, src, _driver(src.param_names), JIT_OPTIONS,
                                        HOST_FUNCTIONS)
        if engine is not None:
            return engine
        dtype = problem.dtype
        n = problem.n

        @numba.njit(**JIT_OPTIONS)
        def alloc_state():
            return np.empty(n, dtype)

        solve_one = jit(src.build(fun=jit(problem.fun), alloc_state=alloc_state,
                                  events=[jit(e) for e in problem.events], **HOST_FUNCTIONS))
        ns = {"solve_one": solve_one}
        exec(_driver(src.param_names), ns)
        return jit(ns["run_range"])

    return cached(EngineSource.cache_key(problem, tableau, NAME), build)


def solve(problem, tableau):
    """Run the ensemble; returns the raw result dict."""
    import numba

    run = compiled_engine(problem, tableau)
    budget = slice_budget(problem)
    state = EngineState(problem, budget, tableau)
    with progress_bar(problem) as bar:
        for calls in itertools.count(1):
            try:
                _run_parallel(run, problem.k, state.arrays(),
                              functools.partial(_name_failing_trajectory, run, problem, tableau))
            except numba.core.errors.TypingError as exc:
                raise CompileError(f"numba could not compile `fun`: {exc}") from exc
            bar.update_to(state)
            if not state.running():
                break
            check_slices(calls, problem, budget, "numba")
    return state.raw()
