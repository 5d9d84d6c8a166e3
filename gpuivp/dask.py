"""Ensembles beyond one machine: :func:`solve_ivp` split into Dask tasks along the trajectories.

Each task solves a slice of the ensemble with :func:`gpuivp.solve_ivp` on the worker that
runs it (``backend="auto"``: the worker's own best backend, a GPU where it has one), and
the pieces are gathered into one :class:`~gpuivp.EnsembleResult` of NumPy arrays, or kept
as Dask arrays with ``compute=False``. Trajectories are independent, so the result equals,
bit for bit, the one of a single ``gpuivp.solve_ivp`` call on the same backend. Inside a
task, ``gpuivp.solve_ivp`` still chunks to the worker's memory (``memory_budget=``).

Needs the ``dask`` extra: ``pip install gpuivp[dask]`` (``dask[array]`` and
``distributed``).

Workers: processes, one thread each
-----------------------------------
Each gpuivp call already uses every core of its machine (the ``numba`` backend runs its
own thread pool), so use worker *processes* with one thread each::

    from distributed import Client, LocalCluster
    client = Client(LocalCluster(processes=True, threads_per_worker=1))

Several threads of one process gain nothing, and numba's default ``workqueue`` threading
layer aborts the whole process when parallel numba code is entered from several threads at
once. As a guard, tasks of one worker process run one at a time (a process-wide lock), and
:func:`solve_ivp` warns when the client's workers have more than one thread. Setting
``NUMBA_THREADING_LAYER=omp`` (or ``tbb``) makes numba itself thread-safe.

Examples
--------
>>> import numpy as np
>>> from distributed import Client, LocalCluster
>>> import gpuivp.dask
>>> def lorenz(t, y, sigma, rho, beta):
...     return (sigma * (y[1] - y[0]), y[0] * (rho - y[2]) - y[1], y[0] * y[1] - beta * y[2])
>>> with LocalCluster(n_workers=2, processes=True, threads_per_worker=1) as cluster, \\
...         Client(cluster) as client:                                   # doctest: +SKIP
...     res = gpuivp.dask.solve_ivp(lorenz, (0, 10), np.c_[[1.0, 0.0, 0.0]],
...                                 args=(10.0, np.linspace(0, 28, 10**5), 8 / 3),
...                                 client=client, progress=True)
"""
from __future__ import annotations

import math
import os
import threading
import uuid
import warnings

import numpy as np

try:
    import dask
    import dask.array as da
    from dask.callbacks import Callback
except ImportError as exc:  # pragma: no cover
    raise ImportError("gpuivp.dask needs Dask: pip install 'gpuivp[dask]'") from exc

from . import _problem as P
from ._chunking import TRAJ_AXIS, Assembler, chunk_bar, join_backends, split
from ._ivp import solve_ivp as _solve_ivp
from ._result import EnsembleResult
from ._status import summary
from .backends._base import advance

#: Default number of tasks per worker thread (enough to balance uneven trajectories).
TASKS_PER_THREAD = 4
#: Per-trajectory result fields returned as Dask arrays with ``compute=False``.
ARRAY_FIELDS = ("y", "t_final", "y_final", "status", "nfev", "naccept", "nreject", "njev",
                "nlu")

_TASK_LOCK = threading.Lock()


def _slice_at_events(positional, first, m):
    """``positional`` with every per-trajectory ``gpuivp.at`` event (times ``(m, k)``) cut to
    the slice's ``m`` trajectories from ``first``."""
    from ._at import at
    method, t_eval, dense_output, events, vectorized = positional
    if events is None or callable(events):
        events = events if events is None else [events]
        single = True
    else:
        single = False
    if events is None or not any(getattr(ev, "at_times", None) is not None
                                 and ev.at_times.ndim == 2 for ev in events):
        return positional
    cut = [at(ev.at_times[:, first:first + m], ev.affect)
           if getattr(ev, "at_times", None) is not None and ev.at_times.ndim == 2 else ev
           for ev in events]
    return (method, t_eval, dense_output, cut[0] if single else cut, vectorized)


def _solve_slice(common, first, y0, traj_args, per=None):
    """One task: ``gpuivp.solve_ivp`` on a slice of the ensemble (runs on a worker).

    ``common`` holds what every task shares (sent once per worker): ``fun``, ``t_span``,
    the positional options, the keyword options, the shared args (None where an arg is
    per trajectory) and the args' kinds; ``first`` is the index of the slice's first
    trajectory (messages number trajectories in the whole ensemble); ``traj_args`` are
    this slice of the per-trajectory args, in order; ``per`` this slice of the problem data
    given per trajectory (``t0``, ``t1``, ``t_eval``, ``rtol``, ...; see :func:`_per_inputs`).
    """
    fun, t_span, positional, kwargs, fixed_args, kinds = common
    positional = _slice_at_events(positional, first, y0.shape[1])
    if per:
        t_span = (per.get("t0", t_span[0]), per.get("t1", t_span[1]))
        if "t_eval" in per:
            positional = (positional[0], per["t_eval"]) + tuple(positional[2:])
        kwargs = dict(kwargs, **{name: v for name, v in per.items()
                                 if name not in ("t0", "t1", "t_eval")})
    it = iter(traj_args)
    args = tuple(next(it) if kind == "traj" else a for a, kind in zip(fixed_args, kinds))
    with _TASK_LOCK:  # one gpuivp call at a time per process (numba's workqueue layer)
        token = P.FIRST_TRAJECTORY.set(first)
        try:
            return _solve_ivp(fun, t_span, y0, *positional, args=args, **kwargs)
        finally:
            P.FIRST_TRAJECTORY.reset(token)


def _default_client(client):
    """``client``, else the current ``distributed`` client if there is one, else None."""
    if client is not None:
        return client
    try:
        from distributed import default_client
        return default_client()
    except (ImportError, ValueError):
        return None


def _warn_if_threaded(client):
    """Warn when ``client``'s workers run several threads (see the module's notes)."""
    threads = client.nthreads() if client is not None else {}
    if any(v > 1 for v in threads.values()):
        warnings.warn("Dask workers with several threads: gpuivp tasks run one at a time per "
                      "worker process (numba's workqueue threading layer aborts under "
                      "concurrent calls). Use worker processes with one thread each: "
                      "LocalCluster(processes=True, threads_per_worker=1).", stacklevel=3)


class _LocalProgress(Callback):
    """Advances ``bar`` by a task's trajectories as Dask's local scheduler finishes it."""

    def __init__(self, bar, sizes):
        super().__init__()
        self.bar, self.sizes = bar, sizes

    def _posttask(self, key, result, dsk, state, worker_id):
        advance(self.bar, self.bar.n + self.sizes.get(key, 0))


def _classify(y0, args, dtype):
    """Check ``y0`` and ``args`` like the front end.

    Returns ``(y0, k, kinds, args, arrays, dtype)``: ``kinds`` is ``"traj"`` (sliced along
    the last axis for each task) or ``"fixed"`` (passed whole) per arg, ``arrays`` maps the
    position of each per-trajectory arg to it as a NumPy array.
    """
    y0 = P.check_y0(y0)
    if np.iscomplexobj(y0):
        raise ValueError("gpuivp.dask.solve_ivp: a complex `y0` is not supported; solve it "
                         "with gpuivp.solve_ivp, or split it into real and imaginary parts.")
    if y0.ndim != 2:
        raise ValueError(f"gpuivp.dask.solve_ivp solves ensembles: `y0` must have shape (n, k), "
                         f"got {y0.shape}. Use gpuivp.solve_ivp for a single IVP.")
    args = P.check_args(args)
    dtype = P.check_dtype(dtype, y0)
    _, norm_kinds, k = P.ensemble_args(args, y0.shape[1], dtype)
    kinds = tuple("traj" if kd.startswith("traj") else "fixed" for kd in norm_kinds)
    arrays = {m: P.to_numpy(a) for m, (a, kd) in enumerate(zip(args, kinds)) if kd == "traj"}
    return y0, k, kinds, args, arrays, dtype


def _per_inputs(t_span, t_eval, kwargs):
    """The problem data given per trajectory, trajectory axis last (to slice per task):
    ``t0``/``t1`` of length k, ``t_eval`` (n_t, k), ``rtol``/``atol`` 2-D, ``dt``,
    ``first_step``, ``max_step`` of length k."""
    out = {}
    try:
        t0, t1 = t_span
    except (TypeError, ValueError):
        return out  # gpuivp.solve_ivp says what is wrong, in every task
    for name, v, ndim in (("t0", t0, 1), ("t1", t1, 1), ("t_eval", t_eval, 2),
                          ("rtol", kwargs.get("rtol"), 2), ("atol", kwargs.get("atol"), 2),
                          ("dt", kwargs.get("dt"), 1), ("first_step", kwargs.get("first_step"), 1),
                          ("max_step", kwargs.get("max_step"), 1)):
        if v is not None and np.ndim(v) == ndim:
            out[name] = P.to_numpy(v)
    return out


def _tasks(fun, t_span, y0, positional, kwargs, args, kinds, arrays, slices):
    """One ``dask.delayed`` task per slice, sharing one graph key for the common inputs."""
    token = uuid.uuid4().hex
    per = _per_inputs(t_span, positional[1], kwargs)
    fixed_args = tuple(None if kd == "traj" else a for a, kd in zip(args, kinds))
    common = dask.delayed((fun, t_span, positional, kwargs, fixed_args, kinds),
                          name=f"gpuivp-common-{token}", traverse=False)
    broadcast = y0.shape[1] == 1
    solve = dask.delayed(_solve_slice)
    return [solve(common, sl.start, y0 if broadcast else y0[:, sl],
                  [arrays[m][..., sl] for m in sorted(arrays)],
                  {name: v[..., sl] for name, v in per.items()},
                  dask_key_name=f"gpuivp-solve-{token}-{i}")
            for i, sl in enumerate(slices)]


def _lazy_result(tasks, slices, n, n_t, dtype, t, n_ev, max_events):
    """An EnsembleResult whose per-trajectory fields are Dask arrays over the tasks.

    Shapes per task of ``m`` trajectories follow docs/reference.md (``n_ev`` event functions storing
    ``max_events`` events each); ``TRAJ_AXIS`` says along which axis the tasks are joined.
    """
    def lazy(name, shape, dt, j=None):
        pieces = [da.from_delayed(task[name] if j is None else task[name][j],
                                  shape=shape(sl.stop - sl.start), dtype=dt)
                  for task, sl in zip(tasks, slices)]
        return da.concatenate(pieces, axis=TRAJ_AXIS[name])

    i64 = np.dtype(np.int64)
    out = EnsembleResult(t=t)
    out.update(y=lazy("y", lambda m: (n, m, n_t), dtype),
               y_final=lazy("y_final", lambda m: (n, m), dtype),
               t_final=lazy("t_final", lambda m: (m,), dtype),
               **{name: lazy(name, lambda m: (m,), i64) for name in ARRAY_FIELDS[3:]})
    events = dict(t_events=None, y_events=None, n_events=None)
    if n_ev:
        events = dict(
            t_events=[lazy("t_events", lambda m: (m, max_events), dtype, j) for j in range(n_ev)],
            y_events=[lazy("y_events", lambda m: (m, max_events, n), dtype, j)
                      for j in range(n_ev)],
            n_events=[lazy("n_events", lambda m: (m,), i64, j) for j in range(n_ev)])
    status = out["status"]
    out.update(sol=None, success=da.all(status >= 0), message=dask.delayed(summary)(status),
               backend=dask.delayed(join_backends)([task["backend"] for task in tasks]),
               **events)
    return out


def solve_ivp(fun, t_span, y0, method="RK45", t_eval=None, dense_output=False, events=None,
              vectorized=False, args=None, *, client=None, chunks=None, compute=True,
              progress=False, **kwargs):
    """:func:`gpuivp.solve_ivp` on an ensemble, split along the trajectories into Dask tasks.

    Parameters
    ----------
    fun, t_span, y0, method, t_eval, dense_output, events, vectorized, args
        As in :func:`gpuivp.solve_ivp`; ``y0`` must be 2-D ``(n, k)`` (an ensemble). Args
        whose last axis has length ``k`` are sliced along it for each task; scalars and
        ``gpuivp.shared`` arrays go whole to every worker (once per worker, not per task).
    client : distributed.Client, optional
        Where the tasks run. Default: the current ``distributed`` client if there is one,
        else Dask's default scheduler in this process. Workers should be processes with one
        thread each (see :mod:`gpuivp.dask`).
    chunks : int or sequence of int, optional
        Trajectories per task (an int), or every task's length (summing to ``k``). Default:
        ``k`` split evenly into ``TASKS_PER_THREAD`` (4) tasks per worker thread.
    compute : bool
        True: run now and return NumPy arrays. False: return at once, with the
        per-trajectory fields (``y``, ``t_final``, ``y_final``, ``status``, ``nfev``,
        ``naccept``, ``nreject``, ``njev``, ``nlu``, and the event fields: lists of them)
        as Dask arrays chunked like the tasks, ``success`` a 0-d Dask array and ``message``,
        ``backend`` ``dask.delayed`` values. Compute several fields in one
        ``dask.compute(res.y, res.status)`` call so that the tasks run once. ``sol`` is
        None then.
    progress : bool
        A tqdm bar over the tasks as they complete (the tasks show none themselves).
    **kwargs
        Passed to :func:`gpuivp.solve_ivp` in every task (``backend="auto"`` by default:
        each worker's own best; ``rtol``, ``atol``, ``dt``, ``dtype``, ``memory_budget``...).

    Returns
    -------
    EnsembleResult
        As :func:`gpuivp.solve_ivp` for the whole ensemble, with NumPy arrays (or Dask
        arrays, ``compute=False``). ``backend`` names the backends that ran, joined by
        ``+`` if the workers differed.

    Raises
    ------
    ValueError, TypeError
        Bad ``y0``, ``args`` or ``chunks`` here; any other invalid input from the tasks,
        with :func:`gpuivp.solve_ivp`'s message.

    Examples
    --------
    >>> import numpy as np, gpuivp.dask
    >>> def decay(t, y, lam):
    ...     return (-lam * y[0],)
    >>> res = gpuivp.dask.solve_ivp(decay, (0, 1), np.ones((1, 8)),
    ...                             args=(np.linspace(0, 1, 8),), chunks=4)  # doctest: +SKIP
    >>> res.y_final.shape                                                      # doctest: +SKIP
    (1, 8)
    """
    y0, k, kinds, args, arrays, dtype = _classify(y0, args, kwargs.get("dtype"))
    if k == 1 and not arrays:  # y0 (n, 1) broadcast to problem data given per trajectory
        k = max([np.shape(v)[-1] for v in _per_inputs(t_span, t_eval, kwargs).values()]
                or [1])
    client = _default_client(client)
    if chunks is None:
        threads = sum(client.nthreads().values()) if client is not None else os.cpu_count()
        chunks = max(1, math.ceil(k / (TASKS_PER_THREAD * max(1, threads or 1))))
    slices = split(k, chunks)
    kwargs["progress"] = False
    positional = (method, t_eval, dense_output, events, vectorized)
    tasks = _tasks(fun, t_span, y0, positional, kwargs, args, kinds, arrays, slices)

    if not compute:
        t0, t1 = P.check_t_span(t_span)
        t_ev = P.check_t_eval(t_eval, t0, t1)
        t = (np.array([np.broadcast_to(t0, np.shape(t1)), np.broadcast_to(t1, np.shape(t0))])
             if t_ev is None else t_ev).astype(dtype)
        event_funs, _, max_events = P.check_events(events, kwargs.get("max_events"))
        return _lazy_result(tasks, slices, y0.shape[0], len(t), dtype, t, len(event_funs),
                            max_events)

    asm = Assembler(k)
    with chunk_bar(progress, k, len(slices), "gpuivp.dask") as bar:
        if client is not None:
            from distributed import as_completed

            _warn_if_threaded(client)
            futures = client.compute(tasks)
            index = {f.key: i for i, f in enumerate(futures)}
            for future, res in as_completed(futures, with_results=True):
                sl = slices[index[future.key]]
                asm.add(sl, res)
                advance(bar, bar.n + sl.stop - sl.start)
                future.release()
        else:
            with _LocalProgress(bar, {t.key: sl.stop - sl.start for t, sl in zip(tasks, slices)}):
                results = dask.compute(*tasks)
            for sl, res in zip(slices, results):
                asm.add(sl, res)
    return asm.result()


__all__ = ["solve_ivp"]
