"""Ensembles larger than memory: solve in chunks along the trajectory axis, assemble the pieces.

Trajectories are independent in every engine, so an ensemble of ``k`` trajectories may be
solved as any number of slices ``[a, b)`` of it and the pieces put side by side: the result
is bit for bit the one of a single run, whatever the chunk size.

The front end (:func:`gpuivp.solve_ivp`, option ``memory_budget``) and :mod:`gpuivp.dask`
both go through this module: :func:`split` cuts ``range(k)`` into slices and
:class:`Assembler` puts the per-slice :class:`~gpuivp.EnsembleResult` objects together,
field by field, into one preallocated result.

How big a chunk is
------------------
One chunk of ``m`` trajectories is budgeted at ``m * bytes_per_trajectory(problem, backend)``
(see :func:`bytes_per_trajectory` for the estimate per engine). The chunk size is the largest
``m`` that fits in the memory budget, at least 1. The budget bounds the memory of the chunk
in flight (engine state, stages, the chunk's own outputs); the assembled result, which the
caller asked for, lives in host memory beside it.

Backends that pipeline their chunks hold :data:`RESIDENT` of them at once, and a chunk is
sized to that fraction of the budget. The ``cuda`` backend overlaps transfer and compute
(:func:`gpuivp.backends.cuda.solve_chunks`): while chunk ``i`` computes on one CUDA stream,
chunk ``i + 1``'s inputs are copied to the device and chunk ``i - 1``'s outputs back on the
other, through pinned host buffers, so two chunks live in device memory (and two in pinned
staging memory) at once: its chunks are half the budget. An ensemble that fits the budget
whole is one piece, solved without the pipeline.

The default budget (:func:`default_memory_budget`) is a quarter of the host memory available
now (``MemAvailable`` in ``/proc/meminfo``, capped by a cgroup memory limit, else
``os.sysconf``); on the GPU backends (``cuda``, ``cupy``) it is also at most half of the
free device memory. ``memory_budget=`` (bytes) overrides it. Ensembles estimated under
``ALWAYS_FITS`` (32 MiB) skip the measurement and run in one piece unless a budget is given.
"""
from __future__ import annotations

import dataclasses
import math
import numbers
import os

import numpy as np

from ._problem import to_numpy
from ._result import EnsembleResult
from ._status import summary

#: Fraction of the available host memory one chunk may use by default.
HOST_FRACTION = 0.25
#: Fraction of the free device memory one chunk may use by default on a GPU backend.
DEVICE_FRACTION = 0.5
#: Without ``memory_budget``, an ensemble estimated under this many bytes is never chunked.
ALWAYS_FITS = 32 << 20
#: Backends whose working set lives in device memory.
GPU_BACKENDS = ("cuda", "cupy")
#: Engine behind each backend, for the working-set estimate.
ENGINES = {"numba": "per_trajectory", "cuda": "per_trajectory", "numpy": "lockstep",
           "cupy": "lockstep", "scipy": "scipy"}
#: Chunks resident at once on backends that pipeline them (others: 1).
RESIDENT = {"cuda": 2}
#: Safety factor on the lockstep engine's arrays (copies of the running columns and the
#: temporaries of the user's vectorized ``fun``).
LOCKSTEP_FACTOR = 2

#: Axis along which each per-trajectory result field runs over the trajectories (docs/reference.md, "The result").
#: ``t_events``, ``y_events`` and ``n_events`` hold one such array per event function.
TRAJ_AXIS = dict(y=1, t_final=0, y_final=1, status=0, nfev=0, naccept=0, nreject=0, njev=0,
                 nlu=0, t_events=0, y_events=0, n_events=0)
#: Result fields recomputed from the assembled ones (``sol``: see :class:`ChunkedSol`).
DERIVED = ("success", "message", "backend", "sol")
#: Result fields every chunk shares.
SHARED = ("t",)


# -- memory ------------------------------------------------------------------------------------

class MemoryBudgetError(MemoryError):
    """A call's result (or its dense output) cannot fit in the memory available to it.

    Raised before any integration for the result, and when dense-output storage would
    grow past the available memory; the message names the sizes and what to change.
    """


def _gib(nbytes):
    return f"{nbytes / 2**30:.3g} GiB" if nbytes >= 2**30 else f"{nbytes / 2**20:.3g} MiB"


def _rlimit_as_room():
    """Bytes of address space left under ``RLIMIT_AS`` (``ulimit -v``), or None if unlimited."""
    try:
        import resource
        soft = resource.getrlimit(resource.RLIMIT_AS)[0]
    except (ImportError, AttributeError, OSError, ValueError):
        return None
    if soft == resource.RLIM_INFINITY or soft < 0:
        return None
    used = None
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmSize:"):
                    used = int(line.split()[1]) * 1024
                    break
    except (OSError, ValueError, IndexError):
        pass
    return max(0, soft - (used or 0))

def _read_int(path):
    try:
        with open(path) as fh:
            text = fh.read().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def _cgroup_room():
    """Bytes left under this process's cgroup memory limit (v2, then v1), or None."""
    for limit_file, usage_file in (("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
                                   ("/sys/fs/cgroup/memory/memory.limit_in_bytes",
                                    "/sys/fs/cgroup/memory/memory.usage_in_bytes")):
        limit = _read_int(limit_file)
        if limit is not None and limit < 1 << 60:  # v1 writes a huge number for "no limit"
            return max(0, limit - (_read_int(usage_file) or 0))
    return None


def available_host_memory():
    """Host memory available to this process now, in bytes, or None if unknown.

    ``MemAvailable`` from ``/proc/meminfo`` (Linux), else ``os.sysconf``'s available
    pages; capped by the room left under a cgroup memory limit (containers) and under
    ``RLIMIT_AS`` (``ulimit -v``: the limit less the address space in use).
    """
    avail = None
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    avail = int(line.split()[1]) * 1024
                    break
    except (OSError, ValueError, IndexError):
        pass
    if avail is None:
        try:
            avail = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (AttributeError, ValueError, OSError):
            avail = None
    for room in (_cgroup_room(), _rlimit_as_room()):
        if room is not None:
            avail = room if avail is None else min(avail, room)
    return avail


def free_device_memory(backend):
    """Free memory of the current GPU in bytes for a GPU backend, else None.

    Asks CuPy (``cupy``) or numba.cuda (``cuda``), falling back on the other; None when
    neither answers.
    """
    if backend not in GPU_BACKENDS:
        return None

    def from_cupy():
        import cupy
        return int(cupy.cuda.runtime.memGetInfo()[0])

    def from_numba():
        from numba import cuda
        return int(cuda.current_context().get_memory_info()[0])

    for query in ((from_cupy, from_numba) if backend == "cupy" else (from_numba, from_cupy)):
        try:
            return query()
        except Exception:  # not installed, no device, driver error: try the next one
            continue
    return None


def default_memory_budget(backend):
    """The default memory budget of one chunk on ``backend``, in bytes (None: unbounded).

    ``HOST_FRACTION`` (1/4) of :func:`available_host_memory`; on the GPU backends also at
    most ``DEVICE_FRACTION`` (1/2) of :func:`free_device_memory`. None (no chunking) when
    neither can be measured.
    """
    limits = []
    host = available_host_memory()
    if host is not None:
        limits.append(int(host * HOST_FRACTION))
    device = free_device_memory(backend)
    if device is not None:
        limits.append(int(device * DEVICE_FRACTION))
    return min(limits) if limits else None


def check_memory_budget(memory_budget):
    """``memory_budget`` as a positive int of bytes, or None; else a ValueError/TypeError."""
    if memory_budget is None:
        return None
    if isinstance(memory_budget, bool) or not isinstance(memory_budget, numbers.Real):
        raise TypeError(f"`memory_budget` must be a number of bytes or None, got "
                        f"{memory_budget!r}.")
    if not (math.isfinite(memory_budget) and memory_budget > 0):
        raise ValueError(f"`memory_budget` must be a positive number of bytes, got "
                         f"{memory_budget!r}.")
    return int(memory_budget)


def bytes_per_trajectory(problem, backend):
    """Estimated memory one trajectory of ``problem`` takes while ``backend`` solves it.

    With ``s`` the itemsize of the working dtype (8 for ``scipy``, which works in float64),
    ``n`` the state size, ``n_t`` the number of output times (``len(t_eval)``, or 2 for
    ``[t0, t1]``) and ``A`` the bytes of one trajectory's slice of the per-trajectory args:

    - outputs, every backend: ``(n_t + 1) * n * s + s + 48`` (``y``, ``y_final``,
      ``t_final``, six int64 counters and status), and per event function
      ``2 * max_events * (n + 1) * s + s + 8`` (stored times and states, the engine's and
      the result's copy, the count and the last event-function value);
    - per-trajectory engine (``numba``, ``cuda``): ``(3 n + 3) * s + 52 + A`` more (``y0``,
      state and derivative, ``t``, ``h``, error, status, six counters); the stages live in
      per-thread locals, not per trajectory; a Rosenbrock method adds ``(n^2 + n) * s``
      (the Jacobian and ``df/dt`` kept across time slices; its matrices are per-thread);
    - lockstep engine (``numpy``, ``cupy``): ``2 * ((S + 5) * n * s + 12 * 8 + A)`` more,
      ``S`` the number of stages plus the interpolant's extra stages (``K`` and ``y``, ``f``,
      ``y_new``, scale, error), twelve per-column vectors, and a factor 2 for the copies of
      the running columns and the temporaries of the user's ``fun``;
      A Rosenbrock method (``Rosenbrock23``, ``Rodas5P``) adds
      ``2 * ((3 n^2 + (S + 1) n) * s + 8 n + 16)``: the Jacobian kept across rejections,
      the matrix and its LU, the stage values, ``df/dt``, the permutation, ``njev``, ``nlu``;
    - ``scipy``: ``A`` more; it solves one trajectory at a time.

    Shared args and fixed costs (compiled code, ``t_eval``) do not grow with ``k`` and are
    not counted; neither is ``dense_output``'s storage, which grows with the steps taken
    and is kept for every chunk.
    """
    from .methods import METHODS

    engine = ENGINES.get(backend, "lockstep")
    s = 8 if engine == "scipy" else problem.dtype.itemsize
    n = problem.n
    n_t = 2 if problem.t_eval is None else len(problem.t_eval)
    k = max(problem.k, 1)
    args = sum(np.asarray(a).nbytes // k for a, kind in zip(problem.args, problem.arg_kinds)
               if kind.startswith("traj"))
    outputs = (n_t + 1) * n * s + s + 48 \
        + len(problem.events) * (2 * problem.max_events * (n + 1) * s + s + 8)
    if engine == "per_trajectory":
        work = (3 * n + 3) * s + 52 + args
        tab = METHODS.get(problem.method) if isinstance(problem.method, str) else None
        if getattr(tab, "linear_solve", False):
            work += (n * n + n) * s  # st_jac
    elif engine == "lockstep":
        tab = METHODS.get(problem.method) if isinstance(problem.method, str) else None
        stages = (tab.n_stages + tab.n_extra) if tab is not None else 13
        work = LOCKSTEP_FACTOR * ((stages + 5) * n * s + 12 * 8 + args)
        if getattr(tab, "linear_solve", False):
            # Rosenbrock: the kept Jacobian, the matrix and its LU, the stage values F,
            # df/dt, the permutation; two int64 counters (njev, nlu).
            work += LOCKSTEP_FACTOR * ((3 * n * n + (stages + 1) * n) * s + n * 8 + 16)
    else:
        work = args
    return outputs + work


def result_bytes(problem, backend):
    """Bytes of the assembled result of ``problem`` (it lives beside the chunk in flight):
    ``y`` and ``y_final`` (``(n_t + 1) * n`` values per trajectory), ``t_final``, the counters
    and status (seven int64), and the stored events. Dense output, which grows with the steps
    taken, is checked as it grows (:func:`check_dense_growth`)."""
    s = problem.dtype.itemsize
    n, k = problem.n, problem.k
    n_t = 2 if problem.t_eval is None else len(problem.t_eval)
    events = len(problem.events) * (problem.max_events * (n + 1) * s + 8)
    return k * ((n_t + 1) * n * s + s + 56 + events)


def check_result_fits(problem, backend, budget):
    """Raise :class:`MemoryBudgetError` before any work when the result of ``problem`` and
    the chunk in flight (at most ``budget`` bytes) cannot fit in the available host memory."""
    need = result_bytes(problem, backend)
    flight = max(problem.k, 1) * bytes_per_trajectory(problem, backend)
    flight = flight if budget is None else min(budget, flight)
    if need + flight <= ALWAYS_FITS:
        return
    room = available_host_memory()
    if room is None or need + flight <= room:
        return
    n_t = "2 ([t0, t1])" if problem.t_eval is None else f"{len(problem.t_eval)} (t_eval)"
    raise MemoryBudgetError(
        f"The result of this call needs {_gib(need)} ({problem.k} trajectories x {problem.n} "
        f"components x {n_t} output times, {problem.dtype}), beside a memory budget of "
        f"{_gib(flight)} for the chunk in flight, but only {_gib(room)} is available to this "
        f"process (free memory, cgroup and RLIMIT_AS limits). Use fewer `t_eval` points, "
        f"fewer trajectories per call, or gpuivp.dask.solve_ivp (compute=False keeps the "
        f"result in pieces on the workers); a smaller `memory_budget` leaves more room for "
        f"the result.")


def check_dense_growth(nbytes_old, nbytes_new, k, capacity, dense_max_steps):
    """Raise :class:`MemoryBudgetError` when growing dense-output storage from
    ``nbytes_old`` to ``nbytes_new`` bytes (both held while copying) would not fit in the
    available host memory; the message says what to change."""
    room = available_host_memory()
    if room is None or nbytes_new <= room:
        return
    raise dense_error(nbytes_new, k, capacity, dense_max_steps, room)


def dense_error(nbytes, k, capacity, dense_max_steps, room=None):
    """The :class:`MemoryBudgetError` for dense-output storage that does not fit."""
    avail = "" if room is None else f" ({_gib(room)} available)"
    return MemoryBudgetError(
        f"Dense output cannot grow to {_gib(nbytes)}{avail}: {k} trajectories x {capacity} "
        f"stored steps each. Pass a smaller `dense_max_steps` (now {dense_max_steps}; a "
        f"trajectory needing more stops with status -4), use `t_eval` instead of "
        f"dense_output, loosen the tolerances, or solve fewer trajectories per call.")


def chunk_size(problem, backend):
    """Trajectories per chunk so that the chunks in flight fit in the budget (at least 1,
    at most k).

    The budget is ``problem.memory_budget`` (bytes), else :func:`default_memory_budget`;
    without a budget given, an ensemble estimated under ``ALWAYS_FITS`` bytes is one chunk
    (memory is not measured for small calls). An ensemble that fits the budget is one
    chunk; else the budget is shared by the ``RESIDENT[backend]`` chunks (default 1) that
    the backend holds at once.
    """
    k = max(problem.k, 1)
    per_trajectory = bytes_per_trajectory(problem, backend)
    budget = problem.memory_budget
    if budget is None:
        if k * per_trajectory <= ALWAYS_FITS:
            return k
        budget = default_memory_budget(backend)
        if budget is None:
            return k
    if k * per_trajectory <= budget:
        return k
    return int(min(k, max(1, budget // (RESIDENT.get(backend, 1) * per_trajectory))))


def split(k, chunks):
    """``range(k)`` cut into consecutive slices.

    Parameters
    ----------
    k : int
        Number of trajectories.
    chunks : int or sequence of int
        Trajectories per slice (the last one takes the rest), or every slice's length
        (summing to ``k``).

    Returns
    -------
    list of slice
        At least one slice (``slice(0, 0)`` when ``k == 0``).
    """
    if isinstance(chunks, numbers.Integral) and not isinstance(chunks, bool):
        if chunks < 1:
            raise ValueError(f"`chunks` must be a positive number of trajectories, got {chunks}.")
        bounds = list(range(0, k, int(chunks))) + [k]
    else:
        sizes = [int(c) for c in chunks]
        if any(c < 0 for c in sizes) or sum(sizes) != k:
            raise ValueError(f"`chunks` {tuple(sizes)} must be non-negative lengths summing to "
                             f"the number of trajectories k={k}.")
        bounds = [0] + list(np.cumsum(sizes, dtype=np.int64))
    out = [slice(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:]) if b > a]
    return out or [slice(0, 0)]


# -- assembly ----------------------------------------------------------------------------------

def _at(axis, sl):
    return (slice(None),) * axis + (sl,)


def _allocate(value, axis, k):
    """An empty array like ``value`` (dtype and memory order) with ``k`` along ``axis``."""
    value = to_numpy(value)
    shape = list(value.shape)
    shape[axis] = k
    return np.empty_like(value, shape=tuple(shape))


class ChunkedSol:
    """``sol`` of an assembled ensemble: each chunk's ``sol``, side by side on axis 1.

    Parameters
    ----------
    k : int
        Trajectories in the ensemble.
    pieces : list of (slice, callable)
        Each chunk's slice of ``range(k)`` and its ``sol``.
    """

    def __init__(self, k, pieces):
        self.k = k
        self.pieces = list(pieces)

    def __call__(self, t):
        out = None
        for sl, sol in self.pieces:
            value = to_numpy(sol(t))
            if out is None:
                out = _allocate(value, 1, self.k)
            out[_at(1, sl)] = value
        return out


def join_backends(names):
    """The backends that ran the pieces of an ensemble: ``"numba"``, or ``"cuda+numba"``."""
    return "+".join(str(name) for name in dict.fromkeys(names))


class Assembler:
    """One :class:`~gpuivp.EnsembleResult` of ``k`` trajectories from results of its slices.

    Add each slice's ensemble result with :meth:`add` (in any order); :meth:`result` gives
    the whole. Per-trajectory fields (:data:`TRAJ_AXIS`) are copied into arrays allocated
    on the first :meth:`add`, so the pieces can be dropped as they arrive; ``t`` is taken
    from the first piece (assembled along its axis 1 when it is per trajectory, 2-D);
    ``success``, ``message`` and ``backend`` are recomputed and ``sol`` becomes a
    :class:`ChunkedSol`. Any other field keeps the first piece's value.

    Parameters
    ----------
    k : int
        Trajectories in the whole ensemble.
    """

    def __init__(self, k):
        self.k = k
        self.out = None
        self.covered = np.zeros(k, dtype=bool)
        self.sols = []
        self.backends = []

    def add(self, sl, res):
        """Put ``res``, the result for trajectories ``sl`` (a slice of ``range(k)``), in place."""
        if self.out is None:
            self.out = EnsembleResult(res)
            if np.ndim(res["t"]) == 2:  # per-trajectory spans or t_eval: (n_t, m)
                self.out["t"] = _allocate(res["t"], 1, self.k)
            for key, axis in TRAJ_AXIS.items():
                value = res.get(key)
                if isinstance(value, (list, tuple)):
                    self.out[key] = type(value)(_allocate(v, axis, self.k) for v in value)
                elif value is not None:
                    self.out[key] = _allocate(value, axis, self.k)
        if np.ndim(res["t"]) == 2:
            self.out["t"][:, sl] = to_numpy(res["t"])
        for key, axis in TRAJ_AXIS.items():
            value, dest = res.get(key), self.out.get(key)
            if value is None:
                continue
            for d, v in (zip(dest, value) if isinstance(value, (list, tuple))
                         else [(dest, value)]):
                d[_at(axis, sl)] = to_numpy(v)
        if res.get("sol") is not None:
            self.sols.append((sl, res["sol"]))
        self.backends.append(res.get("backend"))
        self.covered[sl] = True

    def result(self):
        """The assembled :class:`~gpuivp.EnsembleResult` (every trajectory must be in)."""
        if self.out is None or not self.covered.all():
            missing = np.flatnonzero(~self.covered)
            raise RuntimeError(f"Assembling an ensemble of {self.k}: trajectories "
                               f"{missing[:10].tolist()}... were never solved.")
        out = self.out
        status = out["status"]
        out.update(success=bool(np.all(status >= 0)), message=summary(status),
                   backend=join_backends(self.backends),
                   sol=ChunkedSol(self.k, self.sols) if self.sols else None)
        return out


# -- progress ----------------------------------------------------------------------------------

def chunk_bar(enabled, k, n_chunks, desc):
    """A tqdm bar in trajectories, advanced a chunk at a time (a no-op when not ``enabled``)."""
    from tqdm.auto import tqdm

    return tqdm(total=k, unit="traj", desc=f"{desc} ({n_chunks} chunks)", disable=not enabled)


# -- the chunked run ---------------------------------------------------------------------------

def solve_in_chunks(problem, backend, solve, solve_parts=None):
    """``solve(problem)``, or, when one run would exceed the memory budget, in chunks.

    Parameters
    ----------
    problem : Problem
        The whole ensemble; ``problem.memory_budget`` (bytes) overrides the default budget.
    backend : str
        The backend that runs, for the working-set estimate and the default budget.
    solve : callable
        ``solve(problem) -> EnsembleResult`` for one chunk (and for a problem in one piece).
    solve_parts : callable, optional
        ``solve_parts(parts)``: the results of an iterable of chunks, in their order, for a
        backend that runs several chunks at once (the ``cuda`` backend's pipeline). The
        chunks are made as it pulls them; without it, ``solve`` runs one after the other.

    Returns
    -------
    EnsembleResult
        For all ``problem.k`` trajectories, the same whatever the chunk size. With
        ``problem.progress`` a bar advances chunk by chunk (the chunks themselves run
        without their own bar).
    """
    k = problem.k
    size = chunk_size(problem, backend)
    check_result_fits(problem, backend, None if size == k else
                      size * bytes_per_trajectory(problem, backend) * RESIDENT.get(backend, 1))
    slices = split(k, size)
    if len(slices) == 1:
        return solve(problem)
    # An index array (not a slice) gives C-contiguous copies of y0 and the args, the
    # layout the compiled engines were specialised for. Made lazily: a chunk's copies
    # exist only while it is in flight.
    parts = (dataclasses.replace(problem.subset(np.arange(sl.start, sl.stop)), progress=False,
                                 first=problem.first + sl.start)
             for sl in slices)
    results = map(solve, parts) if solve_parts is None else solve_parts(parts)
    asm = Assembler(k)
    try:
        from .backends._base import advance
        with chunk_bar(problem.progress, k, len(slices), f"gpuivp {problem.method}") as bar:
            for sl, res in zip(slices, results, strict=True):
                asm.add(sl, res)
                advance(bar, bar.n + sl.stop - sl.start)
    finally:
        close = getattr(results, "close", None)
        if close is not None:
            close()  # a pipeline stopped early (an error, Ctrl-C) cleans up now
    return asm.result()
