"""``numba`` backend: the per-trajectory engine compiled with ``njit``, trajectories in parallel.

Trajectories run on a pool of Python threads, each calling the compiled engine
(``nogil=True``) on a range of trajectories. Compared with ``prange`` this
compiles about a second faster (no parfors pass), works from any number of
caller threads (numba's workqueue layer aborts under concurrent use, e.g. Dask
threads), and is deterministic: each trajectory's arithmetic is independent of
how the ensemble is split.

Nothing hangs and nothing runs on after the call: the engine runs in time slices of at
most ``SLICE_ATTEMPTS`` step attempts per trajectory (resumable, the results do not depend
on it); on ``KeyboardInterrupt`` (or any other exception) the chunks not started are
cancelled and the running ones stop at their next trajectory or slice boundary before the
exception propagates. The pool is created anew in a forked child (it inherits the pool
object but not its threads).

Two engines: the per-trajectory engine (:mod:`gpuivp.engines.per_trajectory`) and, where it
supports the problem, the lane engine (:mod:`gpuivp.engines.lanes`: W trajectories in SIMD
lanes, the same results bit for bit). :data:`ENGINE` (``GPUIVP_NUMBA_ENGINE``) chooses:
``"auto"``, ``"lanes"`` or ``"scalar"``. The lane engine runs each chunk to completion (no time
slices: it serves no progress bar; with dense output a trajectory whose buffer is full
pauses until the buffers have grown, as in the per-trajectory engine); on Ctrl-C it stops
at its next step attempt.
"""
from __future__ import annotations

import ast
import concurrent.futures
import functools
import inspect
import itertools
import math
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from ..engines import disk_cache
from ..engines.compile_cache import cached, py_function
from ..engines.per_trajectory import BASE_PARAMS, EngineSource
from ..engines import runner
from ..engines.runner import EngineState, check_slices
from .._status import INIT
from ..engines import fun_compile
from ._base import FunCompileError, progress_bar

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


class CompileError(FunCompileError):
    """numba could not compile the user's function (the message carries numba's reason)."""

    backend = "numba"


_POOL = None
#: Step attempts per trajectory in one engine call (a time slice): the bound on how long a
#: running chunk goes on after Ctrl-C, and on how long Ctrl-C waits in the calling thread.
SLICE_ATTEMPTS = 20_000


def slice_budget(problem):
    """Step attempts per trajectory in one engine call: at most ``SLICE_ATTEMPTS``."""
    return runner.slice_budget(problem, SLICE_ATTEMPTS)


def _forget_pool():
    """In a forked child: the inherited pool has no threads; a new one is made on demand."""
    global _POOL
    _POOL = None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool)


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


def _driver(src):
    """``run_range(i_begin, i_end, ...)``: trajectories ``i_begin <= i < i_end``, written as
    the generated ``solve_one``'s body (``src``, an :class:`EngineSource`) inside the loop,
    its ``return`` a ``continue``: the same statements, so the same arithmetic. One function
    for numba to compile: a driver calling ``solve_one`` made numba optimise and emit
    machine code for ``solve_one`` twice, alone and again inlined into the driver (0.8 s of
    CPU of a 3 s engine compile at n = 50)."""
    text = src.src
    lines = text.splitlines()
    fn = next(node for node in ast.parse(text).body
              if isinstance(node, ast.FunctionDef) and node.name == "solve_one")
    params = [arg.arg for arg in fn.args.args]
    names = {node.id for node in ast.walk(fn) if isinstance(node, ast.Name)}
    if params != ["i", *src.param_names] or {"i_begin", "i_end"} & names:
        raise RuntimeError(f"gpuivp: generated solve_one has parameters {params} or uses "
                           f"i_begin or i_end: cannot write its driver")

    def check(node, in_loop):  # every `return` ends the trajectory, never leaves a loop
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.Return) and (in_loop or child.value is not None
                                                  or lines[child.lineno - 1].strip() != "return"):
                raise RuntimeError("gpuivp: generated solve_one returns a value or from "
                                   f"inside a loop (line {child.lineno}): cannot write its "
                                   "driver")
            if isinstance(child, ast.Constant) and child.lineno != child.end_lineno:
                raise RuntimeError("gpuivp: generated solve_one has a multi-line literal")
            check(child, in_loop or isinstance(child, (ast.For, ast.While)))

    check(fn, False)
    body = lines[fn.body[0].lineno - 1:fn.end_lineno]
    for node in ast.walk(fn):
        if isinstance(node, ast.Return):
            k = node.lineno - fn.body[0].lineno
            body[k] = body[k].replace("return", "continue")
    return (f"def run_range(i_begin, i_end, {', '.join(src.param_names)}):\n"
            f"    for i in range(i_begin, i_end):\n"
            + "".join(f"    {ln}\n" if ln.strip() else "\n" for ln in body))


def _stop(futures, iparams):
    """Stop the work of this call: cancel the chunks not started, make the running ones
    stop (a slice budget of 0: every trajectory they reach next returns at once, resumable)
    and wait for them, so that nothing runs on after the call."""
    from ..engines.per_trajectory import IPARAM_FIELDS

    for f in futures:
        if f is not None:
            f.cancel()
    iparams[IPARAM_FIELDS.index("budget")] = 0
    concurrent.futures.wait([f for f in futures if f is not None])


def _run_parallel(run_range, k, arrays, on_error, min_chunk=1):
    """Run every trajectory, split into chunks over the thread pool when worth it.

    An exception from the chunk of trajectories ``a <= i < b`` goes through
    ``on_error(exc, a, b)`` before it propagates. Chunks hold at least ``min_chunk``
    trajectories where there are enough (the lane engine: several per lane). On any exception, ``KeyboardInterrupt``
    included, the other chunks are stopped (:func:`_stop`) before it propagates.
    """
    run_range(0, 0, *arrays)  # compile here (a TypingError), not racing in the workers
    threads = n_threads()
    parts = 1 if threads == 1 or k < 64 else min(8 * threads, max(1, k // min_chunk))
    bounds = np.linspace(0, k, parts + 1).astype(np.int64)
    chunks = [(a, b) for a, b in zip(bounds[:-1], bounds[1:]) if b > a]
    futures = ([None] if len(chunks) == 1 else
               [_pool().submit(run_range, a, b, *arrays) for a, b in chunks])
    for (a, b), f in zip(chunks, futures):
        try:
            run_range(a, b, *arrays) if f is None else f.result()
        except BaseException as exc:
            _stop(futures, arrays[BASE_PARAMS.index("iparams")])
            if isinstance(exc, Exception):
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


def prepare(problem):
    """``problem`` as the compiled engine takes it (:func:`gpuivp.engines.fun_compile.prepare`:
    helpers of ``fun`` compiled with ``njit``, global/closure arrays as hidden arguments,
    C-contiguous writeable inputs so that layouts do not multiply specialisations)."""
    import numba

    return fun_compile.prepare(problem, numba.njit(**JIT_OPTIONS))


def fun_signature(problem, event=False):
    """numba types of ``fun(t, y, *args)`` (in place: ``fun(t, y, dydt, *args)``) or of an
    event function (``event=True``: ``(t, y, *args)``) as the engine calls it (scalar ``t``
    and 1-D arrays of the working dtype, each trajectory's args): for compiling it alone."""
    import numba

    scalar = numba.from_dtype(problem.dtype)
    vector = numba.types.Array(scalar, 1, "C")
    types = [scalar, vector]
    if getattr(problem, "inplace", False) and not event:
        types.append(vector)
    for a, kind in zip(problem.args, problem.arg_kinds):
        if kind.startswith("traj"):  # trajectory 0's: a scalar, or a column ('A' layout)
            a = a[(slice(None),) * (a.ndim - 1) + (0,)]
        types.append(numba.typeof(a))
    return tuple(types)


def _folded(f, sig):
    """``sig`` as numba's explicit ``compile`` takes it for ``f``: the types a ``*args``
    parameter receives folded into one tuple (as numba does for a call)."""
    import numba

    code = getattr(py_function(f), "__code__", None)
    if code is None or not code.co_flags & inspect.CO_VARARGS:
        return sig
    n = code.co_argcount
    return sig[:n] + (numba.types.StarArgTuple.from_types(sig[n:]),)


def _check_compiles(functions, problem):
    """Compile ``fun`` and the event functions alone first: a ``fun`` numba cannot compile
    fails here in a moment, not after (or in the middle of) the whole engine's compile.
    The engine then reuses these compiled versions."""
    trouble = fun_compile.signature_trouble(functions)
    if trouble:
        raise CompileError(trouble, "remove **kwargs from its signature")
    for j, f in enumerate(functions):  # fun, then the event functions
        try:
            f.compile(_folded(f, fun_signature(problem, event=j > 0)))
        except Exception as exc:  # any failure to compile, whatever numba's class for it
            raise CompileError.from_exception(exc) from exc


def check_jac(jac, problem):
    """Compile a Rosenbrock method's ``jac`` alone (the types ``fun`` gets) and check what it
    returns: ``n`` rows of ``n`` values (tuples) or a 2-D array. A ``jac`` numba cannot
    compile is a :class:`CompileError` naming ``jac``; one of the wrong shape a ValueError
    naming it, as on the ``numpy`` backend."""
    import numba

    sig = _folded(jac, fun_signature(problem, event=True))
    try:
        jac.compile(sig)
    except Exception as exc:  # any failure to compile, whatever numba's class for it
        err = CompileError.from_exception(exc)
        raise CompileError(f"in `jac`: {err.reason}", err.hint) from exc
    ret = jac.overloads[jac.signatures[-1]].signature.return_type
    n = problem.n
    if isinstance(ret, numba.types.Array):
        if ret.ndim == 2:
            return
        shape = f"a {ret.ndim}-D array"
    elif isinstance(ret, numba.types.BaseTuple):
        rows = [len(r) if isinstance(r, numba.types.BaseTuple) else None for r in ret]
        if len(rows) == n and all(r == n for r in rows):
            return
        shape = f"rows of shape {rows}"
    else:
        shape = str(ret)
    raise ValueError(f"`jac` returned {shape}: expected {n} rows of {n} values (a tuple of "
                     f"tuples) or an ({n}, {n}) array per trajectory.")


def compiled_engine(problem, tableau):
    """The njit-compiled ``run_range`` for this problem's specialisation (cached in-process,
    and on disk where ``engines.disk_cache`` can hold it).

    ``problem`` is a :func:`prepare`-d problem. Raises :class:`CompileError` (at once, and
    again from the cache on later calls) when ``fun`` or an event function does not compile.
    """
    import numba

    def build():
        def jit(f):
            return numba.njit(**JIT_OPTIONS)(py_function(f))

        # The disk cache first (compiled engines that survive the process), else in-process.
        user = disk_cache.load_user(problem, JIT_OPTIONS)
        if user is not None:
            fun, events = user.fun, user.events
        else:
            fun, events = jit(problem.fun), [jit(e) for e in problem.events]
        # (problems with affects never come from the disk cache: load_user refuses them)
        affects = [None if a is None else jit(a) for a in getattr(problem, "affects", ())]
        if user is None or user.written:  # a user module loaded again compiled before
            try:
                _check_compiles([fun, *events, *(a for a in affects if a is not None)],
                                problem)
            except CompileError as exc:
                if user is not None:
                    user.discard()
                return exc  # cached: the next call does not try again
        src = EngineSource.for_problem(problem, tableau, "cpu")
        if user is not None:
            engine = disk_cache.load_engine(user, problem, src, _driver(src),
                                            JIT_OPTIONS, HOST_FUNCTIONS)
            if engine is not None:
                return engine
        dtype = problem.dtype
        n = problem.n

        @numba.njit(**JIT_OPTIONS)
        def alloc_state():
            return np.empty(n, dtype)

        @numba.njit(**JIT_OPTIONS)
        def alloc_matrix():  # a Rosenbrock method's n x n matrices, row-major
            return np.empty(n * n, dtype)

        @numba.njit(**JIT_OPTIONS)
        def alloc_index():  # its row permutation
            return np.empty(n, np.int64)

        jac = None if getattr(problem, "jac", None) is None else jit(problem.jac)
        if jac is not None:
            try:
                check_jac(jac, problem)
            except CompileError as exc:
                return exc  # cached, as for fun
        solve_one = src.build(jit_helper=jit, fun=fun, alloc_state=alloc_state,
                              events=events, affects=affects, jac=jac,
                              alloc_matrix=alloc_matrix, alloc_index=alloc_index,
                              **HOST_FUNCTIONS)
        ns = solve_one.__globals__  # the generated source's namespace, helpers compiled
        exec(compile(_driver(src), f"<gpuivp driver {src.tab.name} n={src.n}>", "exec"), ns)
        return jit(ns["run_range"])

    engine = cached(EngineSource.cache_key(problem, tableau, NAME), build)
    if isinstance(engine, CompileError):
        raise engine.copy()
    return engine


def compile_engine(run, arrays):
    """Compile ``run`` for ``arrays``' types now (numba's compiler lock makes concurrent
    callers wait for one compile); any failure is a :class:`CompileError`."""
    import numba

    if not hasattr(run, "compile"):  # not a numba dispatcher (a test's stand-in)
        return
    sig = (numba.int64, numba.int64) + tuple(numba.typeof(a) for a in arrays)
    try:
        run.compile(sig)
    except Exception as exc:
        raise CompileError.from_exception(exc) from exc


#: Which engine runs a problem: ``"auto"`` (the lane engine where it supports the problem
#: and wins: see :func:`engine_for`), ``"lanes"`` (always the lane engine; a ``ValueError``
#: for a problem it does not support) or ``"scalar"`` (always the per-trajectory engine).
#: The environment variable ``GPUIVP_NUMBA_ENGINE`` sets it at import.
ENGINE = os.environ.get("GPUIVP_NUMBA_ENGINE", "auto")
ENGINES = ("auto", "lanes", "scalar")
#: Opt-in for the lane engine: the controller's ``err ** (-1/(q+1))`` computed by a
#: vectorised branch-free routine (within 5 ulp of libm's ``pow`` where the controller's
#: factor is not clamped) instead of libm's scalar ``pow``: faster, but results are then no
#: longer bit-identical to the per-trajectory engine's. ``GPUIVP_LANES_FAST_POW=1`` sets it.
FAST_POW = os.environ.get("GPUIVP_LANES_FAST_POW", "0") == "1"


def _lane_engine(problem, tableau):
    """The compiled lane engine (:mod:`gpuivp.engines.lanes`), cached in-process; a
    :class:`CompileError` when ``fun`` cannot run in lanes (``y`` as a tuple)."""
    from ..engines import lanes

    fast = bool(FAST_POW)

    def build():
        try:
            run = lanes.load_from_disk(problem, tableau, JIT_OPTIONS, fast_pow=fast)
            if run is None:
                run, _ = lanes.build(problem, tableau, JIT_OPTIONS, fast_pow=fast)
            state = EngineState(problem, 1, tableau)
            compile_engine(run, state.arrays())
        except Exception as exc:  # any failure to compile, whatever numba's class for it
            return CompileError.from_exception(exc)
        return run

    key = ("lanes", lanes.WIDTH, fast) + EngineSource.cache_key(problem, tableau, NAME)
    engine = cached(key, build)
    if isinstance(engine, CompileError):
        raise engine.copy()
    return engine


def engine_for(problem, tableau):
    """``"lanes"`` or ``"scalar"``: the engine that runs ``problem`` (a prepared problem).

    ``ENGINE == "auto"`` picks the lane engine for what it supports
    (:func:`gpuivp.engines.lanes.unsupported`) up to ``lanes.MAX_AUTO_N`` components and from
    ``lanes.MIN_AUTO_K`` trajectories in the call (a measured trade of run time against its
    longer first compile) and up to ``lanes.MAX_AUTO_T_EVAL`` ``t_eval`` points, without dense
    output (the lanes store each step's interpolant by a call per lane and step, as for
    ``t_eval`` points, so ``"auto"`` keeps the per-trajectory engine for it).
    """
    from ..engines import lanes

    mode = ENGINE
    if mode not in ENGINES:
        raise ValueError(f"gpuivp.backends.numba.ENGINE (or GPUIVP_NUMBA_ENGINE) must be one "
                         f"of {ENGINES}, got {mode!r}")
    if mode == "scalar":
        return "scalar"
    why = lanes.unsupported(problem, tableau)
    if mode == "lanes":
        if why is not None:
            raise ValueError(f"the numba lane engine (ENGINE='lanes') does not support this "
                             f"problem: {why}; set gpuivp.backends.numba.ENGINE (or "
                             f"GPUIVP_NUMBA_ENGINE) to 'auto' or 'scalar'")
        return "lanes"
    many_points = problem.t_eval is not None and len(problem.t_eval) > lanes.MAX_AUTO_T_EVAL
    if (why is None and problem.n <= lanes.MAX_AUTO_N and problem.k >= lanes.MIN_AUTO_K
            and not many_points and not problem.dense_output):
        return "lanes"
    return "scalar"


def solve(problem, tableau):
    """Run the ensemble; returns the raw result dict."""
    problem = prepare(problem)
    run = None
    if engine_for(problem, tableau) == "lanes":
        try:
            run = _lane_engine(problem, tableau)
        except CompileError:
            if ENGINE == "lanes":
                raise
            # auto: fun does not take y as a tuple (e.g. array arithmetic on y)
    min_chunk = 1
    if run is None:
        run = compiled_engine(problem, tableau)
    else:
        from ..engines.lanes import WIDTH
        min_chunk = 4 * WIDTH
    budget = slice_budget(problem)
    state = EngineState(problem, budget, tableau)
    compile_engine(run, state.arrays())
    with progress_bar(problem) as bar:
        for calls in itertools.count(1):
            _run_parallel(run, problem.k, state.arrays(),
                          functools.partial(_name_failing_trajectory, run, problem, tableau),
                          min_chunk)
            bar.update_to(state)
            if not state.running():
                break
            check_slices(calls, problem, budget, "numba")
    return state.raw()
