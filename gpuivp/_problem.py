"""Validate once, normalise into a :class:`Problem` every backend reads."""
from __future__ import annotations

import contextvars
import inspect
import math
import numbers
import reprlib
import warnings
from dataclasses import dataclass, field

import numpy as np
from scipy.integrate import OdeSolver

from .methods import METHODS, SCIPY_ONLY

EPS64 = np.finfo(np.float64).eps

ARGS_RULE = ("each element of `args` must be a scalar (shared by all trajectories), an array "
             "whose last axis has length k (one entry per trajectory), or gpuivp.shared(array) "
             "(one array shared by all trajectories)")


class shared:
    """Mark an array argument as shared by every trajectory of an ensemble.

    Parameters
    ----------
    array : array_like
        Passed to ``fun`` as it is, whatever its shape.

    Examples
    --------
    >>> import numpy as np, gpuivp
    >>> A = gpuivp.shared(np.eye(2))   # one matrix for all trajectories
    """

    def __init__(self, array):
        self.array = array

    def __repr__(self):
        return f"gpuivp.shared({self.array!r})"

    def __reduce__(self):
        return (shared, (self.array,))


def is_cupy(x) -> bool:
    return type(x).__module__.split(".")[0] == "cupy"


def to_numpy(x):
    """A NumPy array from a NumPy or CuPy array (or anything array-like)."""
    if is_cupy(x):
        return x.get()
    return np.asarray(x)


def _array(value, name, dtype):
    """``value`` as a NumPy array, or a ValueError that names the argument."""
    try:
        return np.asarray(to_numpy(value), dtype=dtype)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"`{name}` must be array_like of numbers, got "
                         f"{reprlib.repr(value)} ({exc}).") from None


def _number(value, name):
    """``float(value)``, or a TypeError that names the argument."""
    try:
        return float(value)
    except (TypeError, ValueError):
        raise TypeError(f"`{name}` must be a number, got {reprlib.repr(value)}.") from None


def method_names():
    return list(METHODS) + list(SCIPY_ONLY)


def check_method(method):
    """The method's name, or the OdeSolver subclass itself; else a ValueError.

    scipy's own ``RK23``, ``RK45`` and ``DOP853`` classes are the methods of those names
    (gpuivp runs them step for step on every backend); other classes run on ``scipy``.
    """
    if inspect.isclass(method) and issubclass(method, OdeSolver):
        from scipy.integrate import DOP853, RK23, RK45
        return method.__name__ if method in (RK23, RK45, DOP853) else method
    if isinstance(method, str) and (method in METHODS or method in SCIPY_ONLY):
        return method
    raise ValueError(f"`method` must be one of {method_names()} or an OdeSolver subclass, "
                     f"got {method!r}.")


def check_t_span(t_span):
    """``(t0, t1)``: each a float, or a 1-D float64 array (one value per trajectory).

    ``t0`` finite, ``t1`` finite or infinite (as scipy: an integration that a terminal event
    ends, or that ``max_steps`` stops)."""
    rule = ("`t_span` must be two numbers (t0, t1), each a scalar or an array of length k "
            "(one value per trajectory), t0 finite and t1 finite or infinite")
    try:
        t0, t1 = t_span
    except (TypeError, ValueError):
        raise ValueError(f"{rule}, got {reprlib.repr(t_span)}.") from None
    out = []
    for v in (t0, t1):
        try:
            a = np.asarray(to_numpy(v))
            if np.iscomplexobj(a) or a.dtype == object:
                raise TypeError
            a = a.astype(float)
        except (TypeError, ValueError):
            raise ValueError(f"{rule}, got {reprlib.repr(t_span)}.") from None
        if a.ndim > 1:
            raise ValueError(f"{rule}, got arrays of shapes {np.shape(t0)} and {np.shape(t1)}.")
        out.append(float(a) if a.ndim == 0 else np.ascontiguousarray(a))
    t0, t1 = out
    if not np.all(np.isfinite(t0)) or np.any(np.isnan(t1)):
        raise ValueError(f"{rule}, got {reprlib.repr(t_span)}.")
    if np.ndim(t0) and np.ndim(t1) and len(t0) != len(t1):
        raise ValueError(f"`t_span`: t0 has length {len(t0)} and t1 length {len(t1)}; per "
                         f"trajectory both must have length k.")
    return t0, t1


def per_trajectory(value, name, k, shapes=((),)):
    """``value`` as a float or a ``(k,)`` float64 array: a ValueError naming ``name`` for
    another shape (``None`` stays ``None``)."""
    if value is None:
        return None
    a = _array(value, name, float)
    if a.ndim == 0:
        return float(a)
    if a.shape != (k,):
        raise ValueError(f"`{name}` must be a scalar or an array of shape (k,) = ({k},) "
                         f"(one value per trajectory), got shape {a.shape}.")
    return np.ascontiguousarray(a)


#: scipy's message for a non-finite ``y0`` (its tests match it).
Y0_NOT_FINITE = "All components of the initial state `y0` must be finite."


def check_y0(y0):
    """y0 as a NumPy array of ndim 1 or 2: float32, float64, complex64 or complex128
    (another real dtype becomes float64, another complex one complex128)."""
    y0 = _array(y0, "y0", None)
    if y0.dtype == object:
        raise TypeError("`y0` must be a numeric array, got an object array.")
    if not (np.issubdtype(y0.dtype, np.number) or y0.dtype == bool):
        raise TypeError(f"`y0` must be a numeric array, got dtype {y0.dtype}.")
    if y0.ndim not in (1, 2):
        raise ValueError(f"`y0` must be 1-D (one IVP) or 2-D (n, k) (an ensemble of k), "
                         f"got shape {y0.shape}.")
    if np.iscomplexobj(y0):
        if y0.dtype not in (np.complex64, np.complex128):
            y0 = y0.astype(np.complex128)
    elif y0.dtype not in (np.float32, np.float64):
        y0 = y0.astype(np.float64)
    if not np.all(np.isfinite(y0)):
        raise ValueError(Y0_NOT_FINITE)
    return y0


def check_dtype(dtype, y0):
    """The real working dtype: ``dtype``, else ``y0``'s (a complex ``y0``: its real part's)."""
    if dtype is None:
        real = np.empty(0, y0.dtype).real.dtype
        return real if real in (np.float32, np.float64) else np.dtype(np.float64)
    try:
        dt = np.dtype(dtype)
    except TypeError:
        raise TypeError(f"`dtype` must be float32 or float64, got {dtype!r}.") from None
    if dt not in (np.float32, np.float64):
        raise ValueError(f"`dtype` must be float32 or float64, got {dt}.")
    return dt


def check_args(args):
    """scipy's check: ``args`` must unpack."""
    if args is None:
        return ()
    try:
        return tuple(args)
    except TypeError as exc:
        raise TypeError(f"Supplied 'args' cannot be unpacked. Please supply `args` as a tuple "
                        f"(e.g. `args=({args},)`)") from exc


def ensemble_args(args, k_y0, dtype, n_y0=None):
    """Classify ensemble args; returns (values, kinds, k).

    kinds: ``"scalar"``, ``"shared"`` or ``"traj<ndim>"``.
    """
    lengths = {}
    for m, a in enumerate(args):
        if isinstance(a, shared):
            continue
        try:
            ndim = np.ndim(a)
        except (ValueError, TypeError) as exc:  # a ragged nested sequence
            raise ValueError(f"args[{m}] is not a rectangular array ({exc}); "
                             f"{ARGS_RULE}.") from None
        if ndim > 0 or is_cupy(a):
            arr = to_numpy(a)
            if arr.ndim == 0:
                continue
            lengths[m] = arr.shape[-1]
    ks = set(lengths.values())
    if k_y0 != 1:
        ks.add(k_y0)
    if len(ks) > 1:
        detail = ", ".join(f"args[{m}] has last axis {L}" for m, L in lengths.items())
        raise ValueError(f"Per-trajectory lengths disagree: `y0` of shape (n, k) = "
                         f"{(n_y0, k_y0)} has k={k_y0} trajectories (columns are trajectories), "
                         f"{detail}; {ARGS_RULE}.")
    k = ks.pop() if ks else k_y0
    values, kinds = [], []
    for m, a in enumerate(args):
        if isinstance(a, shared):
            arr = to_numpy(a.array)
            if np.issubdtype(arr.dtype, np.floating):
                arr = arr.astype(dtype)
            values.append(np.ascontiguousarray(arr))
            kinds.append("shared")
        elif m in lengths:
            arr = to_numpy(a)
            if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number)
                                           or arr.dtype == bool):
                raise ValueError(f"args[{m}] is not a numeric array; {ARGS_RULE}.")
            if np.iscomplexobj(arr):
                raise ValueError(f"args[{m}] is complex: not supported.")
            if np.issubdtype(arr.dtype, np.floating):
                arr = arr.astype(dtype)
            values.append(np.ascontiguousarray(arr))
            kinds.append(f"traj{arr.ndim}")
        elif isinstance(a, (numbers.Number, np.generic)) or (isinstance(a, np.ndarray)
                                                            and a.ndim == 0):
            v = np.asarray(a).item()
            if isinstance(v, complex):
                raise ValueError(f"args[{m}] is complex: not supported.")
            values.append(np.int64(v) if isinstance(v, (bool, int)) else dtype.type(v))
            kinds.append("scalar")
        else:
            raise ValueError(f"args[{m}] of type {type(a).__name__} is not valid; {ARGS_RULE}.")
    return tuple(values), tuple(kinds), k


def check_tol(rtol, atol, n, dtype):
    """scipy's validate_tol, with the rtol floor at the working dtype's epsilon.

    Returns ``rtol`` as a float, as an ``(n,)`` array when its components differ
    (per-component ``rtol``, which only the ``scipy`` backend runs) or as a ``(1, k)`` array
    (per trajectory); and ``atol`` as ``(n,)`` or ``(n, k)`` (per trajectory).
    """
    eps = np.finfo(dtype).eps
    rtol = _array(rtol, "rtol", float)
    if rtol.ndim == 2 and rtol.shape[0] in (1, n):
        if rtol.shape[0] > 1 and np.any(np.ptp(rtol, axis=0) != 0):
            raise ValueError(f"`rtol` of shape {rtol.shape} differs between components of a "
                             f"trajectory: per trajectory give shape (1, k) (one rtol per "
                             f"trajectory), or shape ({n},) for per-component values.")
        rtol = rtol[:1]
    elif rtol.ndim > 0 and rtol.shape != (n,):
        raise ValueError(f"`rtol` has wrong shape: expected a scalar, shape ({n},) or, per "
                         f"trajectory, ({n}, k) / (1, k), got {rtol.shape}.")
    if np.any(rtol < 0) or not np.all(np.isfinite(rtol)):
        raise ValueError("`rtol` must be finite and non-negative.")
    if np.any(rtol < 100 * eps):
        warnings.warn("At least one element of `rtol` is too small. "
                      f"Setting `rtol = np.maximum(rtol, {100 * eps})`.", stacklevel=4)
        rtol = np.maximum(rtol, 100 * eps)
    if rtol.ndim == 2:
        rtol = np.ascontiguousarray(rtol, dtype=np.float64)
    elif rtol.ndim == 0 or rtol.size == 0 or np.ptp(rtol) == 0:
        rtol = float(rtol.flat[0]) if rtol.size else 1e-3
    else:
        rtol = rtol.astype(np.float64)
    atol = _array(atol, "atol", float)
    if atol.ndim == 2 and atol.shape[0] in (1, n):
        atol = np.broadcast_to(atol, (n, atol.shape[1]))
    elif atol.ndim > 0 and atol.shape != (n,):
        raise ValueError(f"`atol` has wrong shape: expected a scalar, shape ({n},) or, per "
                         f"trajectory, ({n}, k) / (1, k), got {atol.shape}.")
    if np.any(atol < 0) or not np.all(np.isfinite(atol)):
        raise ValueError("`atol` must be finite and non-negative.")
    if atol.ndim == 2:
        return rtol, np.ascontiguousarray(atol, dtype=dtype)
    return rtol, np.broadcast_to(atol, (n,)).astype(dtype)


def check_t_eval(t_eval, t0, t1):
    """``t_eval`` as ``(n_t,)`` or, per trajectory, ``(n_t, k)``.

    Shared with per-trajectory spans, it must be strictly monotone; each trajectory reads
    the points inside its span in its own direction (the others stay NaN)."""
    if t_eval is None:
        return None
    t_eval = _array(t_eval, "t_eval", float)
    if t_eval.ndim not in (1, 2):
        raise ValueError(f"`t_eval` must be 1-dimensional (n_t,) or, per trajectory, "
                         f"(n_t, k), got shape {t_eval.shape}.")
    if not np.all(np.isfinite(t_eval)):
        raise ValueError("`t_eval` must be finite.")
    if t_eval.ndim == 2:
        for name, t in (("t0", t0), ("t1", t1)):
            if np.ndim(t) and len(t) != t_eval.shape[1]:
                raise ValueError(f"`t_eval` of shape {t_eval.shape} has {t_eval.shape[1]} "
                                 f"columns, but `t_span`'s {name} has length {len(t)}.")
    t0b, t1b = (np.asarray(t0, dtype=float), np.asarray(t1, dtype=float))
    if t_eval.ndim == 1 and (t0b.ndim or t1b.ndim):
        d = np.diff(t_eval)
        if not (np.all(d > 0) or np.all(d < 0)):
            raise ValueError("Values in `t_eval` are not properly sorted: shared by "
                             "trajectories with their own `t_span`, they must be strictly "
                             "monotone.")
        return np.ascontiguousarray(t_eval)
    lo, hi = np.minimum(t0b, t1b), np.maximum(t0b, t1b)
    if np.any(t_eval < lo) or np.any(t_eval > hi):
        raise ValueError("Values in `t_eval` are not within `t_span`" +
                         (" (column i: trajectory i's span)." if t_eval.ndim == 2 else "."))
    d = np.diff(t_eval, axis=0) * np.where(t1b >= t0b, 1.0, -1.0)
    if np.any(d <= 0):
        raise ValueError("Values in `t_eval` are not properly sorted: they must be strictly "
                         "increasing (decreasing for backward integration)" +
                         (", column i in trajectory i's direction." if t_eval.ndim == 2
                          else "."))
    return np.ascontiguousarray(t_eval)  # a reversed view is no use to a raw kernel


#: Steps of dense output stored per trajectory unless ``dense_max_steps`` says otherwise.
DEFAULT_DENSE_MAX_STEPS = 100_000
#: Events stored per trajectory and event function unless ``max_events`` says otherwise.
DEFAULT_MAX_EVENTS = 32


def check_events(events, max_events):
    """scipy's prepare_events: (functions, ((terminal count, direction), ...), max_events)."""
    if max_events is not None and (isinstance(max_events, bool) or
                                   not isinstance(max_events, numbers.Integral) or max_events < 1):
        raise ValueError(f"`max_events` must be a positive integer, got {max_events!r}.")
    if events is None:
        return (), (), 0
    if callable(events):
        events = (events,)
    try:
        events = tuple(events)
    except TypeError:
        raise TypeError(f"`events` must be a callable or a sequence of callables, got "
                        f"{reprlib.repr(events)}.") from None
    spec = []
    for m, ev in enumerate(events):
        if not callable(ev):
            raise TypeError(f"`events[{m}]` must be callable, got {type(ev).__name__}.")
        terminal = getattr(ev, "terminal", None)
        if terminal is None or terminal is False or terminal == 0:
            count = 0
        elif isinstance(terminal, (bool, numbers.Integral)) and terminal > 0:
            count = int(terminal)
        else:
            raise ValueError(f"The `terminal` attribute of `events[{m}]` must be a boolean or "
                             f"positive integer, got {terminal!r}.")
        spec.append((count, _direction(getattr(ev, "direction", 0.0), m)))
    if max_events is None:
        max_events = DEFAULT_MAX_EVENTS
    elif isinstance(max_events, bool) or not isinstance(max_events, numbers.Integral) \
            or max_events < 1:
        raise ValueError(f"`max_events` must be a positive integer, got {max_events!r}.")
    return events, tuple(spec), int(max_events)


def check_affects(events):
    """Per event function its ``affect`` attribute (the new state at a root) or None.

    An ``affect`` makes the event a restart point: the integration continues from
    ``(t_root, affect(t_root, y_root, *args))`` as if a new ``solve_ivp`` started there."""
    affects = []
    for m, ev in enumerate(events):
        affect = getattr(ev, "affect", None)
        if affect is not None and not callable(affect):
            raise TypeError(f"The `affect` attribute of `events[{m}]` must be callable "
                            f"(t, y, *args) -> new state, got {type(affect).__name__}.")
        affects.append(affect)
    return tuple(affects) if any(a is not None for a in affects) else ()


def _direction(direction, m):
    """An event's ``direction`` as -1.0, 0.0 or 1.0 (its sign); else a ValueError naming it."""
    if isinstance(direction, (numbers.Real, np.number)) and np.ndim(direction) == 0 \
            and math.isfinite(float(direction)):
        return float(np.sign(float(direction)))
    raise ValueError(f"The `direction` attribute of `events[{m}]` must be a finite number "
                     f"(its sign: 1 rising, -1 falling, 0 both), got {direction!r}.")


def check_dense(dense_output, dense_max_steps):
    if dense_max_steps is None:
        return DEFAULT_DENSE_MAX_STEPS
    if isinstance(dense_max_steps, bool) or not isinstance(dense_max_steps, numbers.Integral) \
            or dense_max_steps < 1:
        raise ValueError(f"`dense_max_steps` must be a positive integer, got "
                         f"{dense_max_steps!r}.")
    return int(dense_max_steps)


#: gpuivp's methods that scipy also runs (step for step the same).
SCIPY_RK = ("RK23", "RK45", "DOP853")
ENGINE_BACKENDS = "'numba', 'numpy', 'cuda' and 'cupy'"


def scipy_refusal(method, dt):
    """Why the ``scipy`` backend cannot run ``method`` (with ``dt``) as asked, or None.

    gpuivp's own methods (``Euler``, ..., ``Tsit5``) are not scipy's; and an adaptive
    method given ``dt`` runs at that fixed step on every engine backend, which scipy
    cannot do (it would ignore ``dt``).
    """
    if not isinstance(method, str) or method in SCIPY_ONLY:
        return None
    if method not in SCIPY_RK:
        runs = method_backends(method)
        where = (f"the {ENGINE_BACKENDS} backends" if runs is None
                 else f"the backends {list(runs)} only")
        return (f"Method {method!r} is gpuivp's own: it runs on {where}, not on 'scipy' "
                f"(scipy's methods: {list(SCIPY_RK + SCIPY_ONLY)}).")
    if dt is not None:
        return (f"`dt` given with the adaptive method {method!r} means fixed steps of dt, "
                f"which the 'scipy' backend cannot take: use one of the {ENGINE_BACKENDS} "
                f"backends (or backend='auto'), or drop `dt` for adaptive steps.")
    return None


def check_steps(method, dt, first_step, max_step, max_steps, t0, t1):
    """``dt``, ``first_step``, ``max_step`` (each a float, ``None`` or a ``(k,)`` array) and
    ``max_steps``, checked against the span(s) ``t0``, ``t1``."""
    fixed = isinstance(method, str) and method in METHODS and not METHODS[method].adaptive
    span = np.abs(np.asarray(t1, dtype=float) - np.asarray(t0, dtype=float))
    if dt is not None:
        if np.ndim(dt) == 0:
            try:
                dt = float(dt)
            except (TypeError, ValueError):
                raise TypeError(f"`dt` must be a number, got {dt!r}.") from None
        dt = per_trajectory(dt, "dt", np.size(dt))
        if not np.all(np.isfinite(dt) & (np.asarray(dt) > 0)):
            raise ValueError(f"`dt` must be a finite positive number, got {reprlib.repr(dt)}.")
        if first_step is not None:
            raise ValueError("`dt` and `first_step` contradict each other: give only one.")
        if not (isinstance(method, str) and method in METHODS):
            raise ValueError(f"`dt` (fixed steps) is not supported by method {method!r}.")
        if not np.all(np.isfinite(span)):
            raise ValueError(f"`dt` (fixed steps) needs a finite `t_span`, got "
                             f"{reprlib.repr((t0, t1))}.")
    elif fixed:
        raise ValueError(f"Fixed-step method {method!r} needs a step size: pass `dt`.")
    if np.ndim(max_step) == 0:
        max_step = _number(max_step, "max_step")
    else:
        max_step = per_trajectory(max_step, "max_step", np.size(max_step))
    if not np.all(np.asarray(max_step) > 0):
        raise ValueError("`max_step` must be positive.")
    if first_step is not None:
        if np.ndim(first_step) == 0:
            first_step = _number(first_step, "first_step")
        else:
            first_step = per_trajectory(first_step, "first_step", np.size(first_step))
        if not np.all(np.asarray(first_step) > 0):
            raise ValueError("`first_step` must be positive.")
        if np.shape(first_step) and span.shape and span.shape != np.shape(first_step):
            raise ValueError(f"`first_step` has shape {np.shape(first_step)}, `t_span` "
                             f"length {span.shape[0]}: per trajectory both have length k.")
        if np.any(np.asarray(first_step) > span):
            raise ValueError("`first_step` exceeds bounds.")
    if isinstance(max_steps, bool) or not isinstance(max_steps, numbers.Integral) \
            or max_steps < 1:
        raise ValueError(f"`max_steps` must be a positive integer, got {max_steps!r}.")
    return dt, first_step, max_step, int(max_steps)


#: Problem data that may be given per trajectory (trajectory axis last).
PER_FIELDS = ("t0", "t1", "rtol", "atol", "dt", "first_step", "max_step", "t_eval")


def per_trajectory_lengths(values):
    """``{name: k}`` for the per-trajectory entries of ``values`` (a dict over PER_FIELDS)."""
    out = {}
    for name, v in values.items():
        if v is None:
            continue
        if name in ("rtol", "atol", "t_eval"):
            if np.ndim(v) == 2:
                out[name] = np.shape(v)[1]
        elif np.ndim(v) == 1:
            out[name] = len(v)
    return out


def split_per_trajectory(values, k, n):
    """Shared scalar values and the per-trajectory arrays (``per``) of ``values``.

    Every per-trajectory entry must have length ``k``. The shared value of a per-trajectory
    entry is trajectory 0's (what a caller that only looks at one trajectory, such as the
    probe of ``fun`` at ``t0``, needs)."""
    for name, L in per_trajectory_lengths(values).items():
        if L != k:
            shape = {"rtol": "(1, k) or (n, k)", "atol": "(1, k) or (n, k)",
                     "t_eval": "(n_t, k)"}.get(name, "(k,)")
            raise ValueError(f"`{name}` has {L} per-trajectory entries, but the ensemble has "
                             f"k={k} trajectories (from `y0` / `args`): per trajectory it "
                             f"must have shape {shape}.")
    lengths = per_trajectory_lengths(values)
    per, shared_values = {}, dict(values)
    if "t0" in lengths or "t1" in lengths:
        for name in ("t0", "t1"):
            per[name] = np.ascontiguousarray(np.broadcast_to(values[name], (k,)), dtype=float)
            shared_values[name] = float(per[name][0]) if k else float(np.ravel(values[name])[0])
    for name in ("dt", "first_step", "max_step"):
        if name in lengths:
            per[name] = np.asarray(values[name], dtype=float)
            shared_values[name] = float(per[name][0]) if k else None
    if "rtol" in lengths:
        per["rtol"] = np.asarray(values["rtol"], dtype=float)[0]
        shared_values["rtol"] = float(per["rtol"][0]) if k else 1e-3
    if "atol" in lengths:
        per["atol"] = values["atol"]
        shared_values["atol"] = np.ascontiguousarray(values["atol"][:, 0]) if k else \
            np.zeros(n, values["atol"].dtype)
    te = values.get("t_eval")
    if te is not None and (te.ndim == 2 or "t0" in per):
        per["t_eval"] = te  # (n_t, k), or (n_t,) shared by trajectories with their own spans
    if "t_eval" in lengths and k:
        shared_values["t_eval"] = np.ascontiguousarray(te[:, 0])
    return shared_values, per


def method_backends(method):
    """The engine backends that run ``method``, or None where every engine backend does."""
    tab = METHODS.get(method) if isinstance(method, str) else None
    return getattr(tab, "backends", None)


def check_jac(method, options, backend):
    """Pop ``jac`` from ``options`` for a Rosenbrock method on an engine backend.

    Returns a callable ``jac(t, y, *args)`` or None; a constant array becomes a callable.
    Refuses a backend whose engine does not run the method (ValueError naming those that do).
    """
    runs = method_backends(method)
    if runs is None:
        return None
    if backend not in ("auto",) + tuple(runs):
        raise ValueError(f"Method {method!r} runs on the backends {list(runs)} only "
                         f"(got backend={backend!r}): pass backend={runs[0]!r} or 'auto'.")
    jac = options.pop("jac", None)
    if jac is None or callable(jac):
        return jac
    arr = np.asarray(jac, dtype=float)
    if arr.ndim != 2 or arr.shape[0] != arr.shape[1]:
        raise ValueError(f"`jac` must be callable or an (n, n) array, got shape {arr.shape}.")
    return lambda t, y, *args: arr


def note_raised(exc, where):
    """Say in ``exc`` where ``fun`` raised it: a PEP 678 note, so the exception itself (of
    whatever type and constructor) propagates unchanged."""
    if hasattr(exc, "add_note"):
        exc.add_note(f"(raised by `fun` {where})")


#: Index in the caller's whole ensemble of the first trajectory of the ``solve_ivp`` calls
#: made in this context: a Dask task sets it for its slice, so messages number trajectories
#: as the user does.
FIRST_TRAJECTORY = contextvars.ContextVar("gpuivp_first_trajectory", default=0)


@dataclass
class Problem:
    """A validated ensemble problem: what a backend needs and nothing else."""

    fun: object
    t0: float
    t1: float
    y0: np.ndarray            # (n, k), dtype
    args: tuple               # normalised values
    arg_kinds: tuple          # "scalar" | "shared" | "traj<d>"
    t_eval: np.ndarray | None
    rtol: float
    atol: np.ndarray          # (n,)
    first_step: float | None
    max_step: float
    dt: float | None
    max_steps: int
    dtype: np.dtype
    vectorized: bool
    method: object            # name or OdeSolver subclass
    options: dict = field(default_factory=dict)
    progress: bool = False
    events: tuple = ()        # event functions
    event_spec: tuple = ()    # per event: (terminal count, 0 if not terminal; direction)
    max_events: int = 0       # events stored per trajectory and event function
    affects: tuple = ()       # () or per event: its affect function (a restart) or None
    at_times: tuple = ()      # () or per event: None, or its gpuivp.at times (m, k), sorted
    dense_output: bool = False
    dense_max_steps: int = 0  # per trajectory; past it the trajectory fails (-4)
    # With dense_output: "record steps only", the dense buffers hold each accepted step's t
    # and y but no interpolant rows, and no extra interpolant stages are spent on them (a
    # single IVP without t_eval, whose caller did not ask for dense output: its every step).
    record_steps: bool = False
    memory_budget: int | None = None  # bytes one chunk may use; None: the default (_chunking)
    first: int = 0            # index of trajectory 0 in the caller's ensemble (a chunk's start)
    inplace: bool = False     # fun(t, y, dydt, *args) fills dydt and returns nothing
    complex_n: int = 0        # > 0: a complex system of complex_n components run as 2 * complex_n
    #: Per-trajectory problem data (names of PER_FIELDS; trajectory axis last: t0, t1, rtol,
    #: dt, first_step, max_step (k,); atol (n, k); t_eval (n_t, k), or (n_t,) shared by
    #: trajectories with their own spans). The scalar fields then hold trajectory 0's values.
    per: dict = field(default_factory=dict)
    jac: object = None        # Rosenbrock methods: jac(t, y, *args), or None (finite differences)

    @property
    def n(self):
        return self.y0.shape[0]

    @property
    def interpolant_stored(self):
        """Whether the engines store each step's interpolant (dense output proper), not
        only its t and y (``record_steps``)."""
        return self.dense_output and not self.record_steps

    def dense_rows(self, tableau):
        """Interpolant rows per step in the dense buffers (0 when recording steps only)."""
        return tableau.n_interp_rows if self.interpolant_stored else 0

    @property
    def k(self):
        return self.y0.shape[1]

    @property
    def direction(self):
        return 1.0 if self.t1 >= self.t0 else -1.0

    def column(self, name):
        """``name`` per trajectory: a ``(k,)`` array (``atol``: ``(n, k)``), the shared value
        broadcast when it is not given per trajectory."""
        if name in self.per:
            return self.per[name]
        if name == "atol":
            return np.broadcast_to(self.atol[:, None], (self.n, self.k))
        value = getattr(self, name)
        return np.full(self.k, np.nan if value is None else value, dtype=float)

    def traj_value(self, name, i):
        """``name`` for trajectory ``i`` (``None`` where not given)."""
        if name not in self.per:
            return getattr(self, name)
        v = self.per[name]
        if name == "atol":
            return v[:, i]
        if name == "t_eval":
            if v.ndim == 2:
                return v[:, i]
            t0, t1 = self.per["t0"][i], self.per["t1"][i]
            inside = (v >= min(t0, t1)) & (v <= max(t0, t1))
            return v[inside] if (v[-1] >= v[0]) == (t1 >= t0) else v[inside][::-1]
        return float(v[i])

    def traj_t_eval_rows(self, i):
        """Rows of the result's ``t_eval`` axis that trajectory ``i`` fills, in its order."""
        v = self.per.get("t_eval") if "t_eval" in self.per else self.t_eval
        if v is None:
            return None
        rows = np.arange(len(v))
        if v.ndim == 2 or "t0" not in self.per:
            return rows
        t0, t1 = self.per["t0"][i], self.per["t1"][i]
        rows = rows[(v >= min(t0, t1)) & (v <= max(t0, t1))]
        return rows if (v[-1] >= v[0]) == (t1 >= t0) else rows[::-1]

    @property
    def n_fixed(self):
        """Number of fixed steps: ceil(|t1 - t0| / dt - 1e-12)."""
        if self.dt is None:
            return 0
        return max(1, math.ceil(abs(self.t1 - self.t0) / self.dt - 1e-12))

    def traj_args(self, i):
        """The arguments ``fun`` gets for trajectory ``i`` (as compiled backends pass them)."""
        return tuple(a[..., i] if kind.startswith("traj") else a
                     for a, kind in zip(self.args, self.arg_kinds))

    def name_trajectory(self, exc, i):
        """Note on ``exc``, raised by ``fun``, that trajectory ``i`` (of this problem) raised
        it, numbered as in the caller's ensemble."""
        note_raised(exc, f"for trajectory {self.first + i}")

    def subset(self, idx):
        """The same problem restricted to trajectories ``idx`` (a slice or index array)."""
        import dataclasses
        args = tuple(a[..., idx] if kind.startswith("traj") else a
                     for a, kind in zip(self.args, self.arg_kinds))
        per = {name: (v if name == "t_eval" and v.ndim == 1 else v[..., idx])
               for name, v in self.per.items()}
        at_times = tuple(None if a is None else np.ascontiguousarray(a[:, idx])
                         for a in self.at_times)
        part = dataclasses.replace(self, y0=self.y0[:, idx], args=args, per=per,
                                   at_times=at_times)
        if part.k and per:  # the shared fields: the part's trajectory 0
            for name in ("t0", "t1", "rtol", "dt", "first_step", "max_step"):
                if name in per:
                    setattr(part, name, float(per[name][0]))
            if "atol" in per:
                part.atol = np.ascontiguousarray(per["atol"][:, 0])
            if "t_eval" in per and per["t_eval"].ndim == 2:
                part.t_eval = np.ascontiguousarray(per["t_eval"][:, 0])
        return part
