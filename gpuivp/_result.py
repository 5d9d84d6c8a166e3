"""``EnsembleResult``: scipy's ``OdeResult`` fields, per trajectory."""
from __future__ import annotations

import numpy as np
from scipy.optimize import OptimizeResult

from ._status import MESSAGES, summary


class EnsembleResult(OptimizeResult):
    """Result of :func:`gpuivp.solve_ivp`, with attribute access like scipy's ``OdeResult``.

    For an ensemble of ``k`` trajectories of size ``n``:

    Attributes
    ----------
    t : ndarray, shape (n_t,)
        ``t_eval``, or ``[t0, t1]`` when ``t_eval`` is None.
    y : ndarray, shape (n, k, n_t)
        The states at ``t``; NaN where a trajectory had stopped before that time.
    t_final, y_final : ndarray, shapes (k,) and (n, k)
        Where each trajectory stopped.
    status : ndarray of int, shape (k,)
        ``0`` reached the end, ``1`` terminal event, ``-1`` step size below the minimum,
        ``-2`` ``max_steps`` attempts made, ``-3`` not finite.
    nfev, naccept, nreject, njev, nlu : ndarray of int, shape (k,)
        Counters per trajectory (``njev``, ``nlu`` are 0 for explicit methods).
    success : bool
        All statuses are ``>= 0``.
    message : str
        A summary counting each status.
    backend : str
        The backend that ran.

    A single IVP (1-D ``y0``) has scipy's shapes instead: ``y`` is ``(n, n_t)``,
    ``t_final`` and counters are scalars, ``status`` an int.
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
        t = p.t_eval.astype(dt)
        y = np.moveaxis(np.asarray(raw["y_eval"], dtype=dt), 0, -1)
    else:
        t = np.array([p.t0, p.t1], dtype=dt)
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
        sol = ListSolution(raw["sols"], p.t0, raw["t_final"], p.n, dtype=dt, y0=p.y0)
    elif p.dense_output:
        from ._dense import EnsembleSolution
        from .methods import METHODS
        sol = EnsembleSolution(METHODS[p.method].interpolant, raw["dn_t"], raw["dn_h"],
                               raw["dn_c"],
                               np.asarray(raw["naccept"], dtype=np.int64), p.direction,
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


def _single_sol(sol):
    from ._dense import SingleSolution
    return SingleSolution(sol)


def squeeze_single(res, t_eval_given, direction):
    """An ensemble of one as scipy's shapes: ``y`` (n, n_t), scalars for the rest.

    Without ``t_eval`` it gives ``t = [t0, t_final]`` and the states there; with it, as
    scipy, only the ``t_eval`` points reached (up to a terminal event or a failure).
    """
    status = int(res.status[0])
    y = res.y[:, 0, :]
    t = res.t
    if not t_eval_given:
        t = np.array([t[0], res.t_final[0]], dtype=t.dtype)
        y = np.stack([y[:, 0], res.y_final[:, 0]], axis=1)
    else:
        reached = direction * (t - res.t_final[0]) <= 0
        t, y = t[reached], y[:, reached]
    t_events = y_events = None
    if res.t_events is not None:
        counts = [min(int(c[0]), te.shape[1]) for c, te in zip(res.n_events, res.t_events)]
        t_events = [te[0, :c].copy() for te, c in zip(res.t_events, counts)]
        # scipy's y_events: (count, n), but (0,) for an event that never fired
        y_events = [ye[0, :c].copy() if c else np.empty(0, ye.dtype)
                    for ye, c in zip(res.y_events, counts)]
    out = EnsembleResult(
        t=t, y=y, t_final=res.t_final[0].item(), y_final=res.y_final[:, 0], status=status,
        nfev=int(res.nfev[0]), naccept=int(res.naccept[0]), nreject=int(res.nreject[0]),
        njev=int(res.njev[0]), nlu=int(res.nlu[0]), t_events=t_events,
        y_events=y_events, sol=None if res.sol is None else _single_sol(res.sol), success=status >= 0,
        message=MESSAGES.get(status, "unknown status"), backend=res.backend)
    return out
