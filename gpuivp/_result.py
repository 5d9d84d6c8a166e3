"""``EnsembleResult``: scipy's ``OdeResult`` fields, per trajectory."""
from __future__ import annotations

import numpy as np
from scipy.optimize import OptimizeResult

from ._status import MESSAGES, summary


class EnsembleResult(OptimizeResult):
    """Result of :func:`gpuivp.solve_ivp`, with attribute access like scipy's ``OdeResult``.

    For an ensemble of ``k`` trajectories of ``n`` components (docs/reference.md has the
    whole contract):

    Attributes
    ----------
    t : ndarray, shape (n_t,)
        ``t_eval``, or ``[t0, t1]`` when ``t_eval`` is None.
    y : ndarray, shape (n, k, n_t)
        The states at ``t``; NaN where a trajectory had stopped before that time.
    t_final : ndarray, shape (k,)
        Where each trajectory stopped: ``t1``, a terminal event's time, or the last
        accepted step of a failed trajectory.
    y_final : ndarray, shape (n, k)
        The state at ``t_final``.
    status : ndarray of int, shape (k,)
        ``0`` reached ``t1``; ``1`` a terminal event stopped it; ``-1`` the step fell below
        scipy's minimum; ``-2`` ``max_steps`` step attempts were made; ``-3`` not finite
        (``fun(t0, y0)``, or the error estimate down to the minimum step); ``-4``
        ``dense_output`` stored ``dense_max_steps`` steps; ``-6`` events with ``affect``
        piled up at one time (chatter).
    nfev, naccept, nreject, njev, nlu : ndarray of int, shape (k,)
        Counters per trajectory (``njev``, ``nlu`` are 0 for explicit methods).
    t_events : list of ndarray, shape (k, max_events), or None
        Per event function, the times of its events on each trajectory, NaN-padded;
        None without ``events``.
    y_events : list of ndarray, shape (k, max_events, n), or None
        Per event function, the states at those times, NaN-padded; None without ``events``.
    n_events : list of ndarray of int, shape (k,), or None
        Per event function, the true number of events of each trajectory (more than
        ``max_events`` were found where it exceeds ``max_events``); None without ``events``.
    sol : callable or None
        With ``dense_output``: ``sol(t)`` is ``(n, k)`` for a scalar ``t`` and
        ``(n, k, len(t))`` for an array, NaN outside each trajectory's ``[t0, t_final]``;
        else None.
    success : bool
        All statuses are ``>= 0``.
    message : str
        A summary counting each status; for an explicit method, a sentence naming the
        failed trajectories that look stiff and a stiff method to use (``_stiffness.py``).
    backend : str
        The backend that ran.

    Notes
    -----
    A single IVP (1-D ``y0``) has scipy's fields and shapes instead: ``t`` is every step
    (or the ``t_eval`` points reached), ``y`` is ``(n, n_t)``, ``t_final`` and the counters
    are scalars, ``status`` an int, ``t_events`` and ``y_events`` as scipy's, no ``n_events``,
    and ``sol`` behaves as scipy's ``OdeSolution``. A complex ``y0`` gives complex states.
    Results pickle.
    """

    def __reduce__(self):
        return (EnsembleResult, (dict(self),))


def ensemble_result(problem, raw, backend):
    """Assemble the ensemble result from a backend's raw arrays."""
    p = problem
    status = np.asarray(raw["status"], dtype=np.int64)
    dt = p.dtype
    if p.t_eval is not None:
        t = p.per.get("t_eval", p.t_eval).astype(dt)  # (n_t,), or (n_t, k) per trajectory
        y = np.moveaxis(np.asarray(raw["y_eval"], dtype=dt), 0, -1)
    else:
        t = (np.array([p.per["t0"], p.per["t1"]], dtype=dt) if "t0" in p.per  # (2, k)
             else np.array([p.t0, p.t1], dtype=dt))
        y = np.empty((p.n, p.k, 2), dtype=dt)
        y[:, :, 0] = p.y0
        y[:, :, 1] = np.where(status == 0, np.asarray(raw["y_final"], dtype=dt), np.nan)
    zeros = np.zeros(p.k, dtype=np.int64)
    t_events = y_events = n_events = None
    if p.events:
        n_events = [np.asarray(c, dtype=np.int64) for c in raw["ev_cnt"]]
        t_events = [np.ascontiguousarray(np.asarray(tt, dtype=dt).T) for tt in raw["ev_t"]]
        y_events = [np.ascontiguousarray(np.transpose(np.asarray(yy, dtype=dt), (2, 0, 1)))
                    for yy in raw["ev_y"]]
    sol = None
    if p.dense_output and "sols" in raw:
        from ._dense import ListSolution
        sol = ListSolution(raw["sols"], p.per.get("t0", p.t0), raw["t_final"], p.n, dtype=dt,
                           y0=p.y0)
    elif p.dense_output:
        from ._dense import EnsembleSolution
        from .methods import METHODS
        sol = EnsembleSolution(METHODS[p.method].interpolant, raw["dn_t"], raw["dn_h"],
                               raw["dn_c"],
                               np.asarray(raw["naccept"], dtype=np.int64),
                               np.where(p.column("t1") >= p.column("t0"), 1.0, -1.0)
                               if "t0" in p.per else p.direction,
                               y0=p.y0)
    return EnsembleResult(
        t=t, y=y, t_final=np.asarray(raw["t_final"], dtype=dt),
        y_final=np.asarray(raw["y_final"], dtype=dt), status=status,
        nfev=np.asarray(raw["nfev"], dtype=np.int64),
        naccept=np.asarray(raw["naccept"], dtype=np.int64),
        nreject=np.asarray(raw["nreject"], dtype=np.int64),
        njev=np.asarray(raw.get("njev", zeros), dtype=np.int64),
        nlu=np.asarray(raw.get("nlu", zeros), dtype=np.int64),
        t_events=t_events, y_events=y_events, n_events=n_events, sol=sol,
        success=bool(np.all(status >= 0)), message=summary(status), backend=backend)


def squeeze_single(res, y0, t_eval_given, dense_output, direction):
    """An ensemble of one as scipy's shapes: ``y`` (n, n_t), scalars for the rest.

    Without ``t_eval``, as scipy, ``t`` is every accepted step's end (``t0`` first), read
    from the steps the engine recorded in ``res.sol``; ``sol`` is kept only with
    ``dense_output``. With ``t_eval``, as scipy, only the ``t_eval`` points reached (up to a
    terminal event or a failure), and empty lists when none was.
    """
    status = int(res.status[0])
    t_final = res.t_final[0].item()
    if not t_eval_given:
        t, y = _steps(res.sol, y0, status, res.t_final[0], res.y_final[:, 0])
    else:
        reached = direction * (res.t - t_final) <= 0
        t, y = res.t[reached], res.y[:, 0, reached]
        if t.size == 0:
            t, y = [], []   # scipy's t and y when no t_eval point was reached
    t_events = y_events = None
    if res.t_events is not None:
        counts = [min(int(c[0]), te.shape[1]) for c, te in zip(res.n_events, res.t_events)]
        t_events = [te[0, :c].copy() for te, c in zip(res.t_events, counts)]
        # scipy's y_events: (count, n), but (0,) for an event that never fired
        y_events = [ye[0, :c].copy() if c else np.empty(0, ye.dtype)
                    for ye, c in zip(res.y_events, counts)]
    sol = None
    if dense_output:
        from ._dense import SingleSolution
        sol = SingleSolution(res.sol, y0)
    return EnsembleResult(
        t=t, y=y, t_final=t_final, y_final=res.y_final[:, 0], status=status,
        nfev=int(res.nfev[0]), naccept=int(res.naccept[0]), nreject=int(res.nreject[0]),
        njev=int(res.njev[0]), nlu=int(res.nlu[0]), t_events=t_events,
        y_events=y_events, sol=sol, success=status >= 0,
        message=MESSAGES.get(status, "unknown status"), backend=res.backend)


def _steps(sol, y0, status, t_final, y_final):
    """scipy's ``t`` and ``y`` without ``t_eval``: ``t0`` and the end of every accepted step,
    from the step boundaries and step-start states stored in the dense-output buffers."""
    count = int(sol.count[0])
    if count == 0:
        if status == 0:    # nothing to integrate (t0 == t1, or n = 0): scipy's [t0, t1]
            return (np.array([sol.t_bounds[0, 0], t_final]),
                    np.stack([y0, y_final], axis=1))
        return sol.t_bounds[:1, 0].copy(), y_final[:, None].copy()
    t = sol.t_bounds[:count + 1, 0].copy()
    y = np.concatenate([sol.coef[:count, 0, :, 0].T, y_final[:, None]], axis=1)
    return t, y
