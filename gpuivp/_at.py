"""``gpuivp.at``: events at given times (doses, resets) that change the state."""
from __future__ import annotations

import numpy as np


def at(times, affect):
    """An event at the given ``times`` that changes the state there (a dose, a reset).

    Parameters
    ----------
    times : array_like, shape (m,) or (m, k)
        The times, shared by every trajectory or one column per trajectory, each inside
        ``t_span`` (either order: they are sorted in the direction of integration).
    affect : callable
        ``affect(t, y, *args)`` returns the new state (a tuple of ``n`` values, like ``fun``).

    Returns
    -------
    An event function for ``events=``: at each time the integration continues as if a new
    ``solve_ivp`` started at ``(t, affect(t, y))``, as for an event function with ``affect``;
    its ``t_events``/``n_events`` record the times reached. A time exactly at ``t0`` applies
    its affect at the start.
    """
    if not callable(affect):
        raise TypeError(f"gpuivp.at: `affect` must be callable (t, y, *args) -> new state, "
                        f"got {type(affect).__name__}.")
    arr = np.asarray(times, dtype=np.float64)
    if arr.ndim not in (1, 2) or arr.shape[0] == 0:
        raise ValueError(f"gpuivp.at: `times` must be a non-empty (m,) or (m, k) array, got "
                         f"shape {arr.shape}.")
    if not np.all(np.isfinite(arr)):
        raise ValueError("gpuivp.at: `times` must be finite.")

    def at_event(t, y, *args):
        # Never called for its value by the engines: the roots are ``times`` themselves.
        return 0.0 * t + 1.0

    at_event.affect = affect
    at_event.at_times = arr
    at_event.direction = 0.0
    return at_event


def check_at(events, k, t0, t1, dtype):
    """Per event its times as a sorted (m, k) array (None for ordinary events), or () when
    no event is a ``gpuivp.at``; a ValueError names a time outside ``t_span``."""
    out = []
    lo, hi = min(t0, t1), max(t0, t1)
    for m, ev in enumerate(events):
        times = getattr(ev, "at_times", None)
        if times is None:
            out.append(None)
            continue
        if times.ndim == 2 and times.shape[1] != k:
            raise ValueError(f"gpuivp.at times of `events[{m}]` have {times.shape[1]} columns: "
                             f"expected one per trajectory (k={k}), or a 1-D array.")
        if np.any(times < lo) or np.any(times > hi):
            raise ValueError(f"gpuivp.at times of `events[{m}]` must lie inside t_span "
                             f"{(t0, t1)}.")
        full = np.broadcast_to(times.reshape(times.shape[0], -1), (times.shape[0], k))
        full = np.sort(full, axis=0)
        if np.any(np.diff(full, axis=0) == 0):
            raise ValueError(f"gpuivp.at times of `events[{m}]` repeat a time: give each time "
                             f"once (one affect that does both).")
        if t1 < t0:
            full = full[::-1]
        out.append(np.ascontiguousarray(full, dtype=dtype))
    return tuple(out) if any(a is not None for a in out) else ()


def at_buffer(xp, problem, dtype):
    """The times of every ``gpuivp.at`` event as one (n_ev, m + 1, k) array: event ``e``'s
    ``j``-th time at ``[e, j]``, then beyond its last time an infinity in the direction of
    integration (never reached)."""
    n_ev, k = len(problem.events), problem.k
    m = max(a.shape[0] for a in problem.at_times if a is not None)
    buf = np.full((n_ev, m + 1, k), problem.direction * np.inf, dtype=dtype)
    for e, a in enumerate(problem.at_times):
        if a is not None:
            buf[e, :a.shape[0]] = a
    return xp.asarray(buf)
