"""The front end: validate once, normalise into a Problem, pick a backend, build the result."""
from __future__ import annotations

import reprlib
import warnings

import numpy as np

from . import _problem as P
from . import _stiffness
from ._chunking import check_memory_budget, solve_in_chunks
from ._result import EnsembleResult, ensemble_result, squeeze_single
from ._at import check_at
from .engines.buffers import DenseBuffers, event_buffers
from .backends import BACKENDS, BackendUnavailable, backend_module, unavailable_reason, usable
from .backends._base import BackendFallbackWarning, FunCompileError
from .methods import METHODS

ENSEMBLE_HINT = ("To solve an ensemble, pass `y0` of shape (n, k) (or (n, 1) broadcast "
                 "against per-trajectory args whose last axis has length k).")


_FP_TROUBLE = (ZeroDivisionError, OverflowError, FloatingPointError)
_SKIPPED = object()


def _call_quietly(f, *args):
    """``f(*args)`` with floating-point warnings silenced; ``_SKIPPED`` on floating-point
    trouble (the compiled run turns it into NaN/inf for that trajectory instead)."""
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return f(*args)
        except _FP_TROUBLE:
            return _SKIPPED


def returning(fun):
    """``fun(t, y, *args)`` returning the derivative, from an in-place
    ``fun(t, y, dydt, *args)`` (``inplace=True``): what the backends that do not call it in
    place (``numpy``, ``cupy``, ``scipy``) run. ``dydt`` is a new array like ``y``
    (NumPy's ``empty_like`` dispatches to CuPy for a CuPy ``y``)."""
    def fun_returning(t, y, *args):
        dydt = np.empty_like(y)
        fun(t, y, dydt, *args)
        return dydt

    fun_returning.__wrapped__ = fun
    return fun_returning


def _shape(v):
    """``np.shape(v)``, or a description when ``v`` is ragged (no shape)."""
    try:
        return repr(np.shape(v))
    except (ValueError, TypeError):
        return "a ragged sequence"


def _probe(fun, t0, y, args, n, vectorized, where, inplace=False):
    """Call ``fun`` once in Python to check it returns ``n`` values (or, ``inplace``, that it
    fills ``dydt`` and returns nothing).

    Floating-point trouble is ignored here (the compiled run turns it into NaN/inf
    for that trajectory); any other exception propagates, naming the trajectory.
    """
    # Vectorized, each column has its own t: t is an (m,) array, as the engines pass it.
    t = np.full(y.shape[1], t0, dtype=y.dtype) if vectorized else t0
    dydt = np.full_like(y, np.nan)
    try:
        out = _call_quietly(fun, t, y, dydt, *args) if inplace else \
            _call_quietly(fun, t, y, *args)
    except Exception as exc:
        P.note_raised(exc, f"at t0 for {where}")
        if inplace and isinstance(exc, TypeError):
            P.note_raised(exc, "with inplace=True, as fun(t, y, dydt, *args)")
        raise
    if out is _SKIPPED:
        return
    if inplace:
        if out is not None and out is not dydt:
            raise ValueError(f"`fun` returned a {type(out).__name__} for {where} with "
                             f"inplace=True: it must fill `dydt` (fun(t, y, dydt, *args)) "
                             f"and return None.")
        return
    if out is None:
        raise ValueError(f"`fun` returned None for {where}: expected a sequence of n={n} "
                         f"values. If it fills its third argument, pass inplace=True.")
    try:
        count = len(out)
    except TypeError:
        count = None
    if count != n:
        got = f"{count} values" if count is not None else f"a {type(out).__name__}"
        raise ValueError(f"`fun` returned {got} for {where}: expected a sequence of "
                         f"n={n} values (one derivative per component of `y0`).")
    for m, v in enumerate(out):
        if vectorized:
            try:  # each entry goes into its row of an (n, m) buffer
                np.empty(y.shape[1])[...] = v
                continue
            except (ValueError, TypeError):
                expected = f"a scalar or an array of shape ({y.shape[1]},)"
        elif _scalar(v):
            continue
        else:
            expected = "a scalar"
        raise ValueError(f"`fun` returned {_shape(v)} as entry {m} for {where}: each "
                         f"entry must be {expected}. {ENSEMBLE_HINT}")


def _scalar(v):
    """Whether ``v`` is one real number (a 0-d array or NumPy scalar included)."""
    try:
        return np.ndim(v) == 0 and np.asarray(v).dtype.kind in "biuf"
    except (ValueError, TypeError):
        return False


def _probe_event(event, m, t0, y0, problem, vectorized):
    """An event function must return one number per trajectory (an (m,) array vectorized):
    ``None`` (a missing ``return``) or a non-number is a TypeError, a wrong shape a
    ValueError, both naming ``events[m]``."""
    if vectorized:
        out = _call_quietly(event, np.full(1, t0, dtype=y0.dtype), y0[:, :1],
                            *problem.subset(slice(0, 1)).args)
    else:
        out = _call_quietly(event, t0, y0[:, 0].copy(), *problem.traj_args(0))
    if out is _SKIPPED:
        return
    try:
        numeric = out is not None and np.asarray(out).dtype.kind in "biuf"
    except (ValueError, TypeError):
        numeric = False
    if not numeric:
        raise TypeError(f"`events[{m}]` returned {reprlib.repr(out)} for trajectory 0: it must "
                        f"return a real number (an (m,) array when vectorized); a missing "
                        f"`return` gives None.")
    if (np.size(out) != 1) if vectorized else (np.ndim(out) != 0):
        raise ValueError(f"`events[{m}]` returned shape {np.shape(out)} for trajectory 0: "
                         f"expected a scalar (an (m,) array when vectorized).")


def _check_single_shape(fun, t0, y0, args, vectorized):
    """A single IVP's ``fun`` must return shape (n,): else say how to ask for an ensemble.

    Vectorized, it is called as scipy calls it, with ``y`` of shape (n, 1), and must return
    ``n`` values (scipy's shape (n, 1), or anything that ravels to them).
    """
    n = y0.shape[0]
    if vectorized:
        out = _call_quietly(fun, t0, y0[:, None], *args)
        if out is _SKIPPED:
            return
        try:
            size = np.asarray(out).size
        except (ValueError, TypeError):
            size = None
        if size == n:
            return
        raise ValueError(f"`fun` returned {size} values for a single IVP with `y0` of shape "
                         f"{y0.shape} and vectorized=True (called with `y` of shape ({n}, 1)): "
                         f"expected shape ({n}, 1). {ENSEMBLE_HINT}")
    out = _call_quietly(fun, t0, y0, *args)
    if out is _SKIPPED:
        return
    shapes = [np.shape(v) for v in out] if isinstance(out, (tuple, list)) else None
    if shapes is not None and any(s != () for s in shapes):
        got = f"entries of shapes {shapes}"
    elif np.shape(out) != y0.shape:
        got = f"shape {np.shape(out)}"
    else:
        return
    raise ValueError(f"`fun` returned {got} for a single IVP with `y0` of shape {y0.shape}: "
                     f"expected shape {y0.shape}. {ENSEMBLE_HINT}")


def choose_backend(problem, single):
    """The ``auto`` rule: scipy for a scipy-only method; else the engine backends in order
    of preference, then scipy where it runs the call as asked (not with ``dt``, not for a
    method of gpuivp's own). An ``rtol`` with different components runs on scipy
    only. A single IVP reaches here only when scipy cannot run it."""
    if not (isinstance(problem.method, str) and problem.method in METHODS) \
            or not isinstance(problem.rtol, float):
        return ["scipy"]
    order = []
    if usable("cuda") and not backend_module("cuda").simulated():
        order.append("cuda")  # never auto-pick numba's CUDA simulator: it is for tests
    if usable("cupy") and problem.vectorized:
        order.append("cupy")
    order.append("numba")
    if problem.vectorized:
        order.append("numpy")
    if P.scipy_refusal(problem.method, problem.dt) is None:
        order.append("scipy")
    runs = P.method_backends(problem.method)
    if runs is not None:
        order = [b for b in order if b in runs]
        if not [b for b in order if usable(b)]:
            raise ValueError(f"Method {problem.method!r} runs on the backends {list(runs)} "
                             f"only, and none of them can run this call"
                             f"{'' if problem.vectorized else ' (the array backends need vectorized=True)'}"
                             f": pass vectorized=True with a `fun` that accepts y of shape "
                             f"(n, m), or choose another method.")
    return [b for b in order if usable(b)]


def solve_ivp(fun, t_span, y0, method="RK45", t_eval=None, dense_output=False, events=None,
              vectorized=False, args=None, *, backend="auto", rtol=1e-3, atol=1e-6,
              first_step=None, max_step=np.inf, dt=None, max_steps=100_000, max_events=None,
              dense_max_steps=None,
              dtype=None, progress=False, memory_budget=None, inplace=False, **options):
    """Solve an initial value problem, or an ensemble of them, like ``scipy.integrate.solve_ivp``.

    Parameters
    ----------
    fun : callable
        ``fun(t, y, *args)`` returning the derivative as a sequence of ``n`` values (a
        tuple, a list or an array), or with ``inplace=True`` ``fun(t, y, dydt, *args)``
        filling ``dydt`` and returning nothing. Compiled backends (``"numba"``, ``"cuda"``)
        call it per trajectory with a scalar ``t``, a 1-D ``y`` and that trajectory's args;
        use NumPy functions (``np.sin``), not ``math``, so one function serves every backend. Plain
        Python functions it calls are compiled along with it; arrays and floats it reads
        from its globals or closure are read afresh on every call (changing them in place
        needs no recompile).
    t_span : 2-tuple of float or array_like
        ``(t0, t1)``: ``t0`` finite, ``t1`` finite or infinite (then a terminal event or
        ``max_steps`` ends the integration); ``t1 < t0`` integrates backwards. In an
        ensemble each may be an array of length ``k``: every trajectory integrates from its
        own ``t0`` to its own ``t1``, in its own direction (on every backend).
    y0 : array_like, shape (n,) or (n, k)
        One IVP, or an ensemble of ``k`` (column ``i`` is trajectory ``i``). Real or complex
        (complex64, complex128): the ensemble engines run ``n`` complex components as ``2n``
        real ones, so their step counts can differ slightly from scipy's; ``cuda`` refuses.
    method : str or OdeSolver subclass
        ``"Euler"``, ``"Midpoint"``, ``"Heun"``, ``"RK4"`` (fixed step, need ``dt``),
        ``"RK23"``, ``"RK45"``, ``"DOP853"`` (scipy's, step for step; scipy's classes of
        those names are the same methods), ``"Tsit5"``, ``"Vern7"``; the stiff Rosenbrock
        methods ``"Rosenbrock23"`` and ``"Rodas5P"`` (the backends of
        ``gpuivp.methods.rosenbrock.ROSENBROCK_BACKENDS``: ``numba``, ``cuda``, and
        ``numpy``/``cupy`` with ``vectorized=True``; ``scipy`` refuses them); ``"Radau"``, ``"BDF"``,
        ``"LSODA"`` or another ``OdeSolver`` subclass run on the ``scipy`` backend.
    t_eval : array_like, optional
        Times at which to store the solution, sorted in the direction of integration. In an
        ensemble ``(n_t, k)`` gives each trajectory its own (column ``i``, inside its span);
        ``(n_t,)`` shared by trajectories with their own spans must be strictly monotone:
        each fills the points inside its span, in its direction (NaN elsewhere).
    dense_output : bool
        Build ``sol``: ``sol(t)`` gives ``(n, k)`` (``(n, k, len(t))`` for an array ``t``),
        NaN outside each trajectory's span; scipy's shapes for a single IVP.
    events : callable or list of callables
        As in scipy, per trajectory: ``event(t, y, *args)`` with optional attributes
        ``terminal`` (bool or count) and ``direction``; vectorized like ``fun``. An
        ``affect(t, y, *args)`` attribute (the new state, like ``fun``'s return) restarts the
        trajectory at each root as a new ``solve_ivp`` from the affected state (a root
        exactly at the latest restart does not trigger again; a terminal occurrence ends
        without its affect; restarts piling up at one time fail with status ``-6``).
        :func:`gpuivp.at` makes an event at given times. Adaptive methods only.
    vectorized : bool
        ``fun`` also accepts ``y`` of shape ``(n, m)``, ``t`` of shape ``(m,)`` and args sliced
        to ``m`` columns (each column its own ``t``). Needed by ``"numpy"`` and ``"cupy"``.
    args : tuple, optional
        Extra arguments of ``fun``. In an ensemble each is a scalar (shared), an array whose
        last axis has length ``k`` (per trajectory: ``fun`` gets ``arg[..., i]``) or
        ``gpuivp.shared(array)``.
    backend : str
        ``"auto"``, ``"numba"``, ``"numpy"``, ``"cuda"``, ``"cupy"`` or ``"scipy"``. ``auto``
        moves on to the next backend when ``fun`` does not compile for one, with a
        :class:`gpuivp.BackendFallbackWarning` (once per call) that says why.
    rtol, atol : float or array_like
        Tolerances as in scipy: a scalar or shape ``(n,)``; per trajectory ``(n, k)`` or
        ``(1, k)`` (``rtol``: the same for every component of a trajectory). An ``rtol``
        whose components differ runs on the ``scipy`` backend only (``auto`` picks it).
        ``rtol`` below ``100 * eps`` of the working dtype is raised to it, with scipy's
        warning.
    first_step, max_step : float or array_like
        As in scipy; per trajectory, shape ``(k,)``.
    dt : float or array_like, optional
        Fixed step size: ``N = ceil(|t1 - t0| / dt - 1e-12)`` steps, the last ending at ``t1``.
        An adaptive method given ``dt`` runs at that fixed step on every engine backend; the
        ``"scipy"`` backend cannot and refuses it. Per trajectory, shape ``(k,)``.
    max_steps : int
        Step attempts (accepted and rejected) allowed per trajectory before status ``-2``.
    max_events : int, optional
        Per trajectory and event function, the number of events stored (default 32);
        ``n_events`` has the true counts and a warning says when some were not stored.
    dense_max_steps : int, optional
        With ``dense_output``, the steps stored per trajectory (default 100,000); a
        trajectory that needs more stops there with status ``-4``.
    dtype : {None, float32, float64}
        Working precision; ``None`` uses ``y0``'s float dtype, else float64.
    progress : bool
        Show a tqdm progress bar counting finished trajectories (advanced chunk by chunk
        when the ensemble is solved in chunks).
    inplace : bool
        ``fun(t, y, dydt, *args)`` fills ``dydt`` (shape ``(n,)``, or ``(n, m)`` vectorized)
        in place and returns None: on ``"numba"`` and ``"cuda"`` no array is allocated per
        call (the way to write large systems there; ``cuda`` cannot allocate in ``fun``).
        The other backends call it with a new ``dydt`` each time.
    memory_budget : int, optional
        Bytes the ensemble may take in flight. When the estimated working set and outputs of
        all ``k`` trajectories exceed it, the ensemble is solved in chunks along ``k`` and
        the pieces assembled: the result is the same, bit for bit, for any chunk size. The
        default is a quarter of the available host memory (on the ``cuda`` and ``cupy``
        backends also at most half the free GPU memory). The estimate per trajectory is
        about ``(n_t + 1) * n * itemsize`` of outputs plus ``(3 n) * itemsize`` (``numba``,
        ``cuda``) or ``2 * (n_stages + 5) * n * itemsize`` (``numpy``, ``cupy``) of working
        set, with ``n_t = len(t_eval)`` (2 without ``t_eval``). On ``cuda`` the chunks
        overlap transfer and compute on two streams, so two chunks are resident at once
        (on the device and in pinned host buffers): each chunk gets half the budget.
        The assembled result lives beside the budget and must fit in the memory available
        to the process (free memory, cgroup limit, ``RLIMIT_AS``): else
        :class:`gpuivp.MemoryBudgetError` before any work. Dense output, kept for every
        chunk, is checked as it grows (the same error, naming ``dense_max_steps``).
    **options
        Passed to scipy by the ``scipy`` backend (``jac``, ...); other backends warn that
        they ignore them. With ``"Rosenbrock23"`` or ``"Rodas5P"``, ``jac`` is the engine's:
        ``jac(t, y, *args)`` returns the ``n x n`` Jacobian as ``n`` rows of ``n`` values or
        an ``(n, n, m)`` array (``vectorized=True``), or ``jac`` is a constant ``(n, n)``
        array; without it, forward differences (``n`` evaluations per Jacobian). On
        ``numba`` and ``cuda`` ``jac`` is compiled like ``fun`` and called per trajectory
        (scalar ``t``, 1-D ``y``; rows as tuples, or a 2-D array on ``numba``). ``df/dt``
        always costs one more evaluation per Jacobian (a forward difference in ``t``).

    Returns
    -------
    EnsembleResult
        See :class:`gpuivp.EnsembleResult`. A single IVP (1-D ``y0``) gets scipy's result:
        without ``t_eval``, ``t`` and ``y`` hold every accepted step on every backend.

    Raises
    ------
    ValueError, TypeError
        Bad input, before any integration, naming the argument: among others an event
        function returning ``None`` (``TypeError`` naming ``events[m]``), an event
        ``direction`` that is not a finite number, ragged ``args`` or a ragged value returned
        by ``fun``, a method the chosen backend does not run (gpuivp's own methods on
        ``"scipy"``, scipy-only ones elsewhere), and ``dt`` with an adaptive method on
        ``"scipy"`` (which cannot take fixed steps; ``"auto"`` then picks an engine backend).
    gpuivp.MemoryBudgetError
        A ``MemoryError``: the result, or dense output as it grows, cannot fit in the memory
        available (see ``memory_budget``).
    KeyboardInterrupt
        Ctrl-C stops all the call's work within a time slice on every backend.
    gpuivp.backends.BackendUnavailable
        (a ``RuntimeError``) when an explicitly requested ``"numba"`` or ``"cuda"`` cannot
        compile ``fun``: "`fun` could not be compiled for numba: <reason>. Hint: ...".
    RuntimeError
        The requested backend is not usable here (the message says why).

    Warns
    -----
    UserWarning
        ``rtol`` too small (scipy's warning). Once per call: options a backend ignores, events not stored (``max_events``). The
        ``scipy`` backend says scipy's own warnings once per call and drops floating-point
        ``RuntimeWarning``s from inside scipy.
    gpuivp.BackendFallbackWarning
        ``backend="auto"`` left a backend (``fun`` did not compile there): which, why, and
        what to change.
    gpuivp.StiffnessWarning
        An explicit method succeeded, but trajectories that took 10,000 or more steps look
        stiff (their steps at the method's stability limit); names a stiff method. Failed
        trajectories that look stiff are named in ``message`` instead.

    Examples
    --------
    >>> import numpy as np
    >>> from gpuivp import solve_ivp
    >>> def lorenz(t, y, sigma, rho, beta):
    ...     return (sigma * (y[1] - y[0]), y[0] * (rho - y[2]) - y[1], y[0] * y[1] - beta * y[2])
    >>> rho = np.linspace(0, 28, 1000)
    >>> res = solve_ivp(lorenz, (0, 10), np.c_[[1.0, 0.0, 0.0]], args=(10.0, rho, 8 / 3),
    ...                 rtol=1e-6, atol=1e-8)
    >>> res.y_final.shape
    (3, 1000)
    """
    # -- validation, before any integration ------------------------------------------------
    method = P.check_method(method)
    if backend != "auto" and backend not in BACKENDS:
        raise ValueError(f"`backend` must be 'auto' or one of {list(BACKENDS)}, got {backend!r}.")
    if not callable(fun):
        raise TypeError(f"`fun` must be callable, got {type(fun).__name__}.")
    t0, t1 = P.check_t_span(t_span)
    args = P.check_args(args)
    returns_cupy = P.is_cupy(y0) or any(P.is_cupy(a) for a in args if not
                                        isinstance(a, P.shared))
    y0_in = P.check_y0(y0)
    dtype = P.check_dtype(dtype, y0_in)
    single = y0_in.ndim == 1
    n = y0_in.shape[0]
    # A complex single IVP on scipy is scipy's complex128 integration, whatever y0's precision
    scipy_complex = single and backend in ("auto", "scipy") and np.iscomplexobj(y0_in)
    rtol, atol = P.check_tol(rtol, atol, n, np.float64 if scipy_complex else dtype)
    t_eval_in = t_eval
    t_eval = P.check_t_eval(t_eval, t0, t1)
    dt, first_step, max_step, max_steps = P.check_steps(method, dt, first_step, max_step,
                                                       max_steps, t0, t1)
    event_funs, event_spec, max_events = P.check_events(events, max_events)
    affects = P.check_affects(event_funs)
    if affects and dt is not None:
        raise ValueError("Events with `affect` restart the integration with a freshly chosen "
                         "step: they need an adaptive method without `dt` (got dt="
                         f"{dt!r}).")
    if affects and np.iscomplexobj(y0_in):
        raise ValueError("Events with `affect` take a real state: pass a real `y0` (complex "
                         "systems as 2n real components).")
    memory_budget = check_memory_budget(memory_budget)
    if not isinstance(method, str) or method not in METHODS:
        if backend not in ("auto", "scipy"):
            raise ValueError(f"Method {getattr(method, '__name__', method)!r} runs only on the "
                             f"'scipy' backend (got backend={backend!r}); gpuivp's engines "
                             f"(backends 'numba', 'numpy', 'cuda', 'cupy') run "
                             f"{list(METHODS)}.")
    scipy_refusal = P.scipy_refusal(method, dt)
    if backend == "scipy" and scipy_refusal is not None:
        raise ValueError(scipy_refusal)
    dense_max_steps = P.check_dense(dense_output, dense_max_steps)
    options = dict(options)
    jac = P.check_jac(method, options, backend)
    if not isinstance(inplace, (bool, np.bool_)):
        raise TypeError(f"`inplace` must be True or False, got {inplace!r}.")
    inplace = bool(inplace)

    if np.iscomplexobj(y0_in):
        y0_in = y0_in.astype(np.result_type(dtype, np.complex64))
    else:
        y0_in = y0_in.astype(dtype, copy=False)
    if np.ndim(rtol) == 1 and backend not in ("auto", "scipy"):
        raise ValueError(f"`rtol` with different components runs on the 'scipy' backend only "
                         f"(got backend={backend!r}): pass a scalar `rtol`, or "
                         f"backend='scipy'.")
    per_given = P.per_trajectory_lengths(dict(t0=t0, t1=t1, rtol=rtol, atol=atol, dt=dt,
                                              first_step=first_step, max_step=max_step,
                                              t_eval=t_eval))
    if single and per_given:
        raise ValueError(f"{', '.join(f'`{name}`' for name in per_given)} given per trajectory "
                         f"with a 1-D `y0` (one IVP): pass y0 of shape (n, k) for an ensemble.")
    if single and not affects and (backend == "scipy" or
                                   backend == "auto" and scipy_refusal is None):
        if inplace:
            fun = returning(fun)
        _check_single_shape(fun, t0, y0_in, args, vectorized)
        return _solve_single_scipy(fun, t0, t1, y0_in, method, t_eval_in, dense_output, events,
                                   vectorized, args, rtol, atol, first_step, max_step, options)

    complex_n = 0
    if np.iscomplexobj(y0_in):
        # n complex components run as 2n real ones (see _complex.py)
        from . import _complex
        complex_n, cdtype = n, y0_in.dtype
        y0_in = np.concatenate([y0_in.real, y0_in.imag]).astype(dtype)
        n = 2 * n
        atol = np.concatenate([atol, atol])
        rtol = rtol if isinstance(rtol, float) else np.concatenate([rtol, rtol])
        if inplace:  # the real wrapper returns its derivative
            fun, inplace = returning(fun), False
        fun = _complex.python_fun(fun, complex_n, dtype)
        event_funs = tuple(_complex.python_event(e, complex_n, dtype) for e in event_funs)
    # -- normalise into an ensemble problem ----------------------------------------------
    # A single IVP without t_eval returns every step, as scipy: the engines record the
    # steps in their dense-output buffers and the result is read from there. Without
    # dense_output they record only each step's t and y ("record steps only": no
    # interpolant rows, no extra interpolant stages, so nfev is scipy's).
    record_steps = single and t_eval is None
    if record_steps and not dense_output:
        dense_max_steps = max(dense_max_steps, max_steps)
    if single:
        values = tuple(P.shared(a) if np.ndim(a) > 0 or P.is_cupy(a) else a for a in args)
        y0_2d = y0_in[:, None]
    else:
        values = args
        y0_2d = y0_in
    arg_values, arg_kinds, k = P.ensemble_args(values, y0_2d.shape[1], dtype, n)
    if k == 1 and per_given and not any(kd.startswith("traj") for kd in arg_kinds):
        k = max(per_given.values())  # y0 (n, 1) broadcast to the per-trajectory data
    shared_values, per = P.split_per_trajectory(
        dict(t0=t0, t1=t1, rtol=rtol, atol=atol, dt=dt, first_step=first_step,
             max_step=max_step, t_eval=t_eval), k, n)
    t0, t1, rtol, atol, dt, first_step, max_step, t_eval = (shared_values[f]
                                                            for f in P.PER_FIELDS)
    y0_2d = np.ascontiguousarray(np.broadcast_to(y0_2d, (n, k)), dtype=dtype)
    problem = P.Problem(fun=fun, t0=t0, t1=t1, y0=y0_2d, args=arg_values, arg_kinds=arg_kinds,
                        t_eval=t_eval, rtol=rtol, atol=atol, first_step=first_step,
                        max_step=max_step, dt=dt, max_steps=max_steps, dtype=dtype,
                        vectorized=bool(vectorized), method=method, options=options,
                        progress=bool(progress), memory_budget=memory_budget,
                        events=event_funs, event_spec=event_spec, max_events=max_events,
                        affects=affects, at_times=check_at(event_funs, k, t0, t1, dtype),
                        dense_output=bool(dense_output) or record_steps,
                        dense_max_steps=dense_max_steps,
                        record_steps=record_steps and not dense_output,
                        first=P.FIRST_TRAJECTORY.get(), inplace=inplace, complex_n=complex_n,
                        per=per, jac=jac)
    if backend != "auto":
        reason = unavailable_reason(backend)
        if reason is not None:
            raise RuntimeError(f"Backend {backend!r} is not usable here: {reason}.")
        if backend in ("numpy", "cupy") and not vectorized:
            raise ValueError(f"Backend {backend!r} calls `fun` on all trajectories at once: "
                             f"pass vectorized=True (and make `fun` accept y of shape (n, m)).")
    if k > 0 and n > 0:
        i0 = problem.first
        if vectorized:
            # Two columns when there are two: a 1-D array returned for n = 1 then has the
            # wrong length here rather than in the middle of the run.
            m = min(k, 2)
            _probe(fun, t0, y0_2d[:, :m], tuple(a[..., :m] if kd.startswith("traj") else a
                                                for a, kd in zip(arg_values, arg_kinds)),
                   n, True, f"trajectory {i0} (vectorized call on one column)" if m == 1 else
                   f"trajectories {i0} and {i0 + 1} (vectorized call on two columns)", inplace)
        else:
            _probe(fun, t0, y0_2d[:, 0].copy(), problem.traj_args(0), n, False,
                   f"trajectory {i0}", inplace)
        for m, ev in enumerate(event_funs):
            _probe_event(ev, m, t0, y0_2d, problem, vectorized)

    candidates = choose_backend(problem, single) if backend == "auto" else [backend]
    if options and candidates[0] != "scipy":
        warnings.warn(f"The following arguments have no effect for backend "
                      f"{candidates[0]!r}: {list(options)}.", stacklevel=2)

    res, left = None, []
    for name in candidates:
        try:
            res = _run(problem, name)
            break
        except FunCompileError as exc:
            if backend != "auto":
                raise  # "`fun` could not be compiled for numba: <reason>. Hint: ..."
            left.append((name, exc))
        except BackendUnavailable as exc:
            if backend != "auto":
                raise RuntimeError(f"Backend {name!r} is not usable here: {exc}") from exc
            left.append((name, exc))
    if left:
        _warn_fallback(left, res.backend if res is not None else candidates[-1])
    _warn_dropped_events(res, problem.max_events)
    # explicit methods: do the failed (or very long) trajectories look stiff? (_stiffness.py)
    stiff_note = _stiffness.notice(problem, res, METHODS.get(problem.method)
                                   if isinstance(problem.method, str) else None)
    if returns_cupy:
        res = _to_cupy(res)
    if single:
        res = squeeze_single(res, y0_2d[:, 0], t_eval is not None, bool(dense_output),
                             problem.direction)
    if complex_n:
        res = _complex.to_complex(res, complex_n, cdtype)
    if stiff_note:
        res.message = f"{res.message} {stiff_note}"
    return res


def _warn_fallback(left, used):
    """One :class:`BackendFallbackWarning` per call: the backends ``auto`` left, why, and
    what to change (``left``: ``(name, exception)`` in the order they were tried)."""
    parts = []
    for name, exc in left:
        if isinstance(exc, FunCompileError):
            parts.append(f"`fun` could not be compiled for {name}: {exc.reason}")
        else:
            parts.append(f"backend {name!r} failed: {exc}")
    hints = [exc.hint for _, exc in left if isinstance(exc, FunCompileError)]
    hint = f" To run on {left[0][0]!r}: {hints[0]}." if hints else ""
    warnings.warn(f"backend='auto' ran on {used!r}, which is slower, because " +
                  "; ".join(parts) + "." + hint + " Pass backend=... explicitly to choose, "
                  "or silence with warnings.filterwarnings('ignore', "
                  "category=gpuivp.BackendFallbackWarning).",
                  BackendFallbackWarning, stacklevel=3)


def _warn_dropped_events(res, max_events):
    """Nothing is lost silently: say when trajectories had more events than were stored."""
    if res.n_events is None:
        return
    dropped = sum(int(np.sum(np.maximum(np.asarray(c) - max_events, 0))) for c in res.n_events)
    if dropped:
        warnings.warn(f"{dropped} events were not stored: more than max_events={max_events} "
                      f"per trajectory (n_events has the true counts). Pass a larger "
                      f"`max_events` to keep them.", stacklevel=3)


def _run(problem, name):
    """Backend ``name`` on ``problem``: in chunks along ``k`` when it exceeds the memory budget.

    A backend module with ``solve_chunks(parts, tableau)`` (yielding ``(part, raw)`` in
    order) runs the chunks itself (``cuda``: overlapped on two streams); the others run
    ``solve`` chunk after chunk. Either way the raw dicts become results here, in
    :func:`_result`.
    """
    module = backend_module(name)
    if problem.complex_n:
        problem = _complex_problem(problem, name)
    tableau = METHODS.get(problem.method) if isinstance(problem.method, str) else None
    if problem.inplace and name not in ("numba", "cuda"):
        # The array backends and scipy call a returning fun (a new dydt per call).
        import dataclasses
        problem = dataclasses.replace(problem, fun=returning(problem.fun), inplace=False)
    if problem.k == 0 or problem.n == 0:
        return ensemble_result(problem, _empty_raw(problem), name)
    solve_parts = None
    if hasattr(module, "solve_chunks"):
        def solve_parts(parts):
            return (_result(part, raw, name) for part, raw in module.solve_chunks(parts, tableau))
    return solve_in_chunks(problem, name,
                           lambda part: _result(part, module.solve(part, tableau), name),
                           solve_parts)


def _complex_problem(problem, name):
    """``problem`` (a complex system run as a real one) with ``fun`` and the event functions
    wrapped for backend ``name``: compiled for ``numba``; ``cuda`` refuses."""
    import dataclasses

    from . import _complex
    if name == "cuda":
        raise BackendUnavailable("complex `y0` does not run on 'cuda' (numba.cuda device "
                                 "code would need complex wrappers); use 'numba', 'numpy' "
                                 "or 'cupy'")
    if name != "numba":
        return problem
    n, n_args, dtype = problem.complex_n, len(problem.args), problem.dtype
    fun = _complex.numba_fun(problem.fun.__wrapped__, n, n_args, dtype)
    events = tuple(_complex.numba_fun(ev.__wrapped__, n, n_args, dtype, scalar_out=True)
                   for ev in problem.events)
    return dataclasses.replace(problem, fun=fun, events=events)


def _result(part, raw, name):
    """The :class:`EnsembleResult` of ``part`` from backend ``name``'s raw dict."""
    if part.t_eval is not None and raw.get("y_eval") is None:
        # An empty t_eval: backends store no outputs, the result still has shape (n, k, 0).
        raw["y_eval"] = np.empty((0, part.n, part.k), dtype=part.dtype)
    return ensemble_result(part, raw, name)


def _empty_raw(p):
    n_eval = 0 if p.t_eval is None else len(p.t_eval)
    z = np.zeros(p.k, np.int64)
    # n = 0: nothing to integrate, every trajectory reaches t1 (scipy does the same).
    raw = dict(t_final=np.array(p.column("t1"), dtype=float), y_final=np.zeros((p.n, p.k)),
               status=z, nfev=z, naccept=z, nreject=z,
               y_eval=None if p.t_eval is None else np.zeros((n_eval, p.n, p.k)))
    if p.events:
        raw.update(event_buffers(np, p, p.dtype))
    if p.dense_output:
        raw.update(DenseBuffers(np, p.n, p.k, 1, p.dtype, p.per.get("t0", p.t0),
                                capacity=1).raw())
    return raw


def _solve_single_scipy(fun, t0, t1, y0, method, t_eval, dense_output, events, vectorized,
                        args, rtol, atol, first_step, max_step, options):
    from .backends.scipy import solve_single

    atol = float(atol[0]) if atol.size and np.ptp(atol) == 0 else atol
    res, info = solve_single(fun, (t0, t1), y0, method, t_eval, dense_output, events,
                             vectorized, args or None, rtol, atol, first_step, max_step, options)
    out = EnsembleResult(res)
    out.update(t_final=float(info["t_final"]), y_final=np.asarray(info["y_final"]),
               naccept=info["naccept"], nreject=info["nreject"], backend="scipy")
    return out


def _to_cupy(res):
    """Every array output as a CuPy array (the caller passed CuPy): also ``t_events``,
    ``y_events`` and ``n_events`` (lists of arrays) and what ``sol(t)`` returns."""
    import cupy

    def conv(value):
        if isinstance(value, np.ndarray) and value.dtype != object:
            return cupy.asarray(value)
        if isinstance(value, list) and any(isinstance(v, np.ndarray) for v in value):
            return [conv(v) for v in value]
        return value

    out = EnsembleResult(res)
    for key, value in res.items():
        out[key] = conv(value)
    if res.get("sol") is not None:
        out["sol"] = CupySolution(res["sol"])
    return out


class CupySolution:
    """``sol`` of a result for CuPy inputs: ``sol(t)`` takes NumPy or CuPy ``t`` and returns
    a CuPy array; every other attribute is the host solution's."""

    def __init__(self, host):
        self.host = host

    def __call__(self, t):
        import cupy

        return cupy.asarray(self.host(P.to_numpy(t) if P.is_cupy(t) else t))

    def __getattr__(self, name):
        if name == "host":  # not yet set (unpickling): no recursion
            raise AttributeError(name)
        return getattr(self.host, name)
