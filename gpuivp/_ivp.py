"""The front end: validate once, normalise into a Problem, pick a backend, build the result."""
from __future__ import annotations

import warnings

import numpy as np

from . import _problem as P
from ._result import EnsembleResult, ensemble_result, squeeze_single
from .backends import BACKENDS, BackendUnavailable, backend_module, usable
from .methods import METHODS

ENSEMBLE_HINT = ("To solve an ensemble, pass `y0` of shape (n, k) (or (n, 1) broadcast "
                 "against per-trajectory args whose last axis has length k).")


def _probe(fun, t0, y, args, n, vectorized, where):
    """Call ``fun`` once in Python to check it returns ``n`` values.

    Floating-point trouble is ignored here (the compiled run turns it into NaN/inf
    for that trajectory); any other exception propagates, naming the trajectory.
    """
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            out = fun(t0, y, *args)
        except (ZeroDivisionError, OverflowError, FloatingPointError):
            return
        except Exception as exc:
            raise type(exc)(f"{exc} (raised by `fun` at t0 for {where})").with_traceback(
                exc.__traceback__) from None
    try:
        count = len(out)
    except TypeError:
        count = None
    if count != n:
        shape = np.shape(out) if count is not None else type(out).__name__
        raise ValueError(f"`fun` returned {shape!r} for {where}: expected a sequence of "
                         f"n={n} values (one derivative per component of `y0`).")
    if not vectorized:
        for m, v in enumerate(out):
            if np.ndim(v) != 0:
                raise ValueError(f"`fun` returned an array of shape {np.shape(v)} as entry {m} "
                                 f"for {where}: each entry must be a scalar. {ENSEMBLE_HINT}")


def _check_single_shape(fun, t0, y0, args):
    """A single IVP's ``fun`` must return shape (n,): else say how to ask for an ensemble."""
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            out = fun(t0, y0, *args)
        except (ZeroDivisionError, OverflowError, FloatingPointError):
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
    """API.md's ``auto`` rule."""
    if single or not (isinstance(problem.method, str) and problem.method in METHODS):
        return ["scipy"]
    order = []
    if usable("cuda"):
        order.append("cuda")
    if usable("cupy") and problem.vectorized:
        order.append("cupy")
    order.append("numba")
    if problem.vectorized:
        order.append("numpy")
    order.append("scipy")
    return [b for b in order if usable(b)]


def solve_ivp(fun, t_span, y0, method="RK45", t_eval=None, dense_output=False, events=None,
              vectorized=False, args=None, *, backend="auto", rtol=1e-3, atol=1e-6,
              first_step=None, max_step=np.inf, dt=None, max_steps=100_000, max_events=None,
              dtype=None, progress=False, **options):
    """Solve an initial value problem, or an ensemble of them, like ``scipy.integrate.solve_ivp``.

    Parameters
    ----------
    fun : callable
        ``fun(t, y, *args)`` returning the derivative as a sequence of ``n`` values.
        Compiled backends (``"numba"``, ``"cuda"``) call it per trajectory with a scalar
        ``t``, a 1-D ``y`` and that trajectory's args and need a tuple back; use NumPy
        functions (``np.sin``), not ``math``, so one function serves every backend.
    t_span : 2-tuple of float
        ``(t0, t1)``; ``t1 < t0`` integrates backwards.
    y0 : array_like, shape (n,) or (n, k)
        One IVP, or an ensemble of ``k`` (column ``i`` is trajectory ``i``).
    method : str or OdeSolver subclass
        ``"Euler"``, ``"Midpoint"``, ``"Heun"``, ``"RK4"`` (fixed step, need ``dt``),
        ``"RK23"``, ``"RK45"``, ``"DOP853"`` (scipy's, step for step), ``"Tsit5"``;
        ``"Radau"``, ``"BDF"``, ``"LSODA"`` or a subclass run on the ``scipy`` backend.
    t_eval : array_like, optional
        Times at which to store the solution, sorted in the direction of integration.
    dense_output, events
        As in scipy; on the ``scipy`` backend for a single IVP.
    vectorized : bool
        ``fun`` also accepts ``y`` of shape ``(n, m)``, ``t`` of shape ``(m,)`` and args sliced
        to ``m`` columns (each column its own ``t``). Needed by ``"numpy"`` and ``"cupy"``.
    args : tuple, optional
        Extra arguments of ``fun``. In an ensemble each is a scalar (shared), an array whose
        last axis has length ``k`` (per trajectory: ``fun`` gets ``arg[..., i]``) or
        ``gpuivp.shared(array)``.
    backend : str
        ``"auto"``, ``"numba"``, ``"numpy"``, ``"cuda"``, ``"cupy"`` or ``"scipy"``.
    rtol, atol : float or array_like
        Tolerances as in scipy (``atol`` scalar or shape ``(n,)``).
    first_step, max_step : float
        As in scipy.
    dt : float, optional
        Fixed step size: ``N = ceil(|t1 - t0| / dt - 1e-12)`` steps, the last ending at ``t1``.
    max_steps : int
        Step attempts (accepted and rejected) allowed per trajectory before status ``-2``.
    max_events : int, optional
        Per trajectory and event function, the number of events stored.
    dtype : {None, float32, float64}
        Working precision; ``None`` uses ``y0``'s float dtype, else float64.
    progress : bool
        Show a tqdm progress bar.
    **options
        Passed to scipy by the ``scipy`` backend (``jac``, ...); other backends warn that
        they ignore them.

    Returns
    -------
    EnsembleResult
        See :class:`gpuivp.EnsembleResult`.

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
    returns_cupy = P.is_cupy(y0) or any(P.is_cupy(a) for a in (args or ()) if not
                                        isinstance(a, P.shared))
    y0_in = P.check_y0(y0)
    args = P.check_args(args)
    dtype = P.check_dtype(dtype, y0_in)
    single = y0_in.ndim == 1
    n = y0_in.shape[0]
    rtol, atol = P.check_tol(rtol, atol, n, dtype)
    t_eval_in = t_eval
    t_eval = P.check_t_eval(t_eval, t0, t1)
    dt, first_step, max_step, max_steps = P.check_steps(method, dt, first_step, max_step,
                                                       max_steps, t0, t1)
    if max_events is not None and (isinstance(max_events, bool) or int(max_events) != max_events
                                   or max_events < 1):
        raise ValueError(f"`max_events` must be a positive integer, got {max_events!r}.")
    if not isinstance(method, str) or method not in METHODS:
        if backend not in ("auto", "scipy"):
            raise ValueError(f"Method {getattr(method, '__name__', method)!r} runs only on the "
                             f"'scipy' backend (got backend={backend!r}).")
    if events is not None or dense_output:
        if not (single and backend in ("auto", "scipy")):
            raise NotImplementedError("`events` and `dense_output` are supported on the 'scipy' "
                                      "backend for a single IVP only in this version.")

    if single and backend in ("auto", "scipy"):
        _check_single_shape(fun, t0, y0_in.astype(dtype), args)
        return _solve_single_scipy(fun, t0, t1, y0_in, method, t_eval_in, dense_output, events,
                                   vectorized, args, rtol, atol, first_step, max_step, options)

    # -- normalise into an ensemble problem ----------------------------------------------
    if single:
        values = tuple(P.shared(a) if np.ndim(a) > 0 or P.is_cupy(a) else a for a in args)
        y0_2d = y0_in[:, None]
    else:
        values = args
        y0_2d = y0_in
    arg_values, arg_kinds, k = P.ensemble_args(values, y0_2d.shape[1], dtype)
    y0_2d = np.ascontiguousarray(np.broadcast_to(y0_2d, (n, k)), dtype=dtype)
    problem = P.Problem(fun=fun, t0=t0, t1=t1, y0=y0_2d, args=arg_values, arg_kinds=arg_kinds,
                        t_eval=t_eval, rtol=rtol, atol=atol, first_step=first_step,
                        max_step=max_step, dt=dt, max_steps=max_steps, dtype=dtype,
                        vectorized=bool(vectorized), method=method, options=options,
                        progress=bool(progress))
    if k > 0 and n > 0:
        if vectorized:
            _probe(fun, t0, y0_2d[:, :1], tuple(a[..., :1] if kd.startswith("traj") else a
                                                for a, kd in zip(arg_values, arg_kinds)),
                   n, True, "trajectory 0 (vectorized call on one column)")
        else:
            _probe(fun, t0, y0_2d[:, 0].copy(), problem.traj_args(0), n, False, "trajectory 0")

    candidates = choose_backend(problem, single) if backend == "auto" else [backend]
    if backend != "auto":
        reason = backend_module(backend).unavailable_reason()
        if reason is not None:
            raise RuntimeError(f"Backend {backend!r} is not usable here: {reason}.")
        if backend in ("numpy", "cupy") and not vectorized:
            raise ValueError(f"Backend {backend!r} calls `fun` on all trajectories at once: "
                             f"pass vectorized=True (and make `fun` accept y of shape (n, m)).")
    if options and candidates[0] != "scipy":
        warnings.warn(f"The following arguments have no effect for backend "
                      f"{candidates[0]!r}: {list(options)}.", stacklevel=2)

    res = None
    for name in candidates:
        try:
            res = _run(problem, name)
            break
        except BackendUnavailable as exc:
            if backend != "auto":
                raise RuntimeError(f"Backend {name!r} is not usable here: {exc}") from exc
    if returns_cupy:
        res = _to_cupy(res)
    return squeeze_single(res, t_eval is not None) if single else res


def _run(problem, name):
    module = backend_module(name)
    tableau = METHODS.get(problem.method) if isinstance(problem.method, str) else None
    if problem.k == 0 or problem.n == 0:
        raw = _empty_raw(problem)
    else:
        raw = module.solve(problem, tableau)
    return ensemble_result(problem, raw, name)


def _empty_raw(p):
    n_eval = 0 if p.t_eval is None else len(p.t_eval)
    z = np.zeros(p.k, np.int64)
    # n = 0: nothing to integrate, every trajectory reaches t1 (scipy does the same).
    return dict(t_final=np.full(p.k, p.t1), y_final=np.zeros((p.n, p.k)), status=z, nfev=z,
                naccept=z, nreject=z, y_eval=np.zeros((n_eval, p.n, p.k)) if n_eval else None)


def _solve_single_scipy(fun, t0, t1, y0, method, t_eval, dense_output, events, vectorized,
                        args, rtol, atol, first_step, max_step, options):
    from .backends.scipy import solve_single

    atol = atol if np.ptp(atol) > 0 else float(atol[0]) if atol.size else 0.0
    res, info = solve_single(fun, (t0, t1), y0, method, t_eval, dense_output, events,
                             vectorized, args or None, rtol, atol, first_step, max_step, options)
    out = EnsembleResult(res)
    out.update(t_final=float(info["t_final"]), y_final=np.asarray(info["y_final"]),
               naccept=info["naccept"], nreject=info["nreject"], backend="scipy")
    if res.status == 1 and res.t_events is not None:
        # A terminal event: scipy's last stored state is at the event.
        te = [t for t in res.t_events if len(t)]
        if te and t_eval is None:
            out.update(t_final=float(res.t[-1]), y_final=res.y[:, -1].copy())
    return out


def _to_cupy(res):
    import cupy

    out = EnsembleResult(res)
    for key, value in res.items():
        if isinstance(value, np.ndarray) and value.dtype != object:
            out[key] = cupy.asarray(value)
    return out
