"""``scipy`` backend: the reference, ``scipy.integrate.solve_ivp`` trajectory by trajectory."""
from __future__ import annotations

import numpy as np
import scipy.integrate
from scipy.integrate._ivp.rk import RungeKutta

from .._status import FAIL_STEP
from ._base import progress_bar

NAME = "scipy"


def unavailable_reason():
    return None


def counting_method(method):
    """scipy's solver class with step counters (accepted steps, error estimates = attempts)."""
    base = scipy.integrate._ivp.ivp.METHODS[method] if isinstance(method, str) else method

    class Counting(base):
        def __init__(self, *a, **kw):
            self.n_accepted = 0
            self.n_attempts = 0
            super().__init__(*a, **kw)

        def _step_impl(self):
            success, message = super()._step_impl()
            self.n_accepted += bool(success)
            return success, message

        if issubclass(base, RungeKutta):
            def _estimate_error_norm(self, K, h, scale):
                self.n_attempts += 1
                return super()._estimate_error_norm(K, h, scale)

    Counting.__name__ = base.__name__
    return Counting


def solve_single(fun, t_span, y0, method, t_eval, dense_output, events, vectorized, args,
                 rtol, atol, first_step, max_step, options):
    """One scipy call; returns (OdeResult, info) where info has naccept, nreject and
    t_final, y_final (where the solver stopped)."""
    solver_box = {}
    cls = counting_method(method)

    class Capture(cls):
        def __init__(self, *a, **kw):
            super().__init__(*a, **kw)
            solver_box["solver"] = self

    kw = dict(options)
    if first_step is not None:
        kw["first_step"] = first_step
    res = scipy.integrate.solve_ivp(fun, t_span, y0, method=Capture, t_eval=t_eval,
                                    dense_output=dense_output, events=events,
                                    vectorized=vectorized, args=args, rtol=rtol, atol=atol,
                                    max_step=max_step, **kw)
    s = solver_box["solver"]
    nrej = s.n_attempts - s.n_accepted if issubclass(cls, RungeKutta) else 0
    return res, dict(naccept=s.n_accepted, nreject=nrej, t_final=s.t, y_final=s.y)


def solve(problem, tableau):
    """Loop over the trajectories; each is an ordinary scipy solve."""
    p = problem
    n, k = p.n, p.k
    n_eval = 0 if p.t_eval is None else len(p.t_eval)
    out = dict(t_final=np.full(k, np.nan), y_final=np.full((n, k), np.nan),
               status=np.zeros(k, np.int64), nfev=np.zeros(k, np.int64),
               naccept=np.zeros(k, np.int64), nreject=np.zeros(k, np.int64),
               njev=np.zeros(k, np.int64), nlu=np.zeros(k, np.int64),
               y_eval=np.full((n_eval, n, k), np.nan) if n_eval else None)
    atol = p.atol if np.ptp(p.atol) > 0 else float(p.atol[0])
    with progress_bar(p) as bar:
        for i in range(k):
            y0 = p.y0[:, i].astype(np.float64)
            res, info = solve_single(p.fun, (p.t0, p.t1), y0, p.method, p.t_eval, False,
                                           None, False, p.traj_args(i), p.rtol, atol,
                                           p.first_step, p.max_step, p.options)
            out["status"][i] = res.status if res.status >= 0 else FAIL_STEP
            for name in ("nfev", "njev", "nlu"):
                out[name][i] = getattr(res, name)
            out["naccept"][i], out["nreject"][i] = info["naccept"], info["nreject"]
            out["t_final"][i], out["y_final"][:, i] = info["t_final"], info["y_final"]
            if n_eval:
                out["y_eval"][:res.y.shape[1], :, i] = res.y.T
            bar.update_to(_Progress(out, i, p))
    return out


class _Progress:
    """What the progress bar reads: trajectories before ``i`` done, the rest not started."""

    def __init__(self, out, i, p):
        self.t = np.where(np.arange(p.k) <= i, p.t1, p.t0)
        self.status = np.where(np.arange(p.k) <= i, 0, 10)
