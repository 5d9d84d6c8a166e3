"""``scipy`` backend: the reference, ``scipy.integrate.solve_ivp`` trajectory by trajectory."""
from __future__ import annotations

import contextlib
import warnings

import numpy as np
import scipy.integrate
from scipy.integrate._ivp.rk import RungeKutta

from .._status import FAIL_CHATTER, FAIL_MAXSTEPS, FAIL_NONFINITE, FAIL_STEP, MESSAGES
from ..engines.buffers import event_buffers
from ._base import progress_bar

NAME = "scipy"


def unavailable_reason():
    return None


class _MaxSteps(Exception):
    """Raised inside a step attempt when ``max_steps`` attempts were already made."""


def counting_method(method, max_steps=None):
    """scipy's solver class with step counters (accepted steps, error estimates = attempts).

    With ``max_steps`` it fails (``hit_max_steps`` set) instead of making attempt number
    ``max_steps + 1``, as the engines do; it also keeps the last error estimate, so a
    failure can be told apart as non-finite (status ``-3``).
    """
    base = scipy.integrate._ivp.ivp.METHODS[method] if isinstance(method, str) else method
    rk = issubclass(base, RungeKutta)

    class Counting(base):
        def __init__(self, *a, **kw):
            self.n_accepted = 0
            self.n_attempts = 0
            self.hit_max_steps = False
            self.last_error = 0.0
            super().__init__(*a, **kw)

        def _step_impl(self):
            if not rk and max_steps is not None:
                if self.n_attempts >= max_steps:
                    self.hit_max_steps = True
                    return False, MESSAGES[FAIL_MAXSTEPS]
                self.n_attempts += 1
            try:
                success, message = super()._step_impl()
            except _MaxSteps:
                # The attempt was stopped after its stages: they do not count (as in the engines).
                self.nfev -= self.n_stages
                self.hit_max_steps = True
                return False, MESSAGES[FAIL_MAXSTEPS]
            self.n_accepted += bool(success)
            return success, message

        if rk:
            def _estimate_error_norm(self, K, h, scale):
                if max_steps is not None and self.n_attempts >= max_steps:
                    raise _MaxSteps
                self.n_attempts += 1
                self.last_error = super()._estimate_error_norm(K, h, scale)
                return self.last_error

    Counting.__name__ = base.__name__
    return Counting


def _finite_at_t0(fun, t0, y0, vectorized, args):
    """Whether ``fun(t0, y0)`` is finite: scipy would loop forever on a NaN there."""
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        f = fun(t0, y0[:, None] if vectorized else y0, *(args or ()))
        try:
            return all(bool(np.all(np.isfinite(v))) for v in f)
        except TypeError:
            return True   # not numbers: let scipy report it


def _not_finite_result(t0, y0, t_eval, events):
    """What scipy would return had it stopped at once with status -3."""
    from scipy.integrate._ivp.ivp import OdeResult

    n_ev = 0 if events is None else 1 if callable(events) else len(events)
    # Its state at t0 is y0: a t_eval point at t0 has it (as on every backend).
    t = np.array([t0]) if t_eval is None else np.asarray(t_eval, dtype=float)[:1]
    t = t[t == t0]
    y = np.repeat(y0[:, None], len(t), axis=1)
    res = OdeResult(t=t, y=y, sol=None,
                    t_events=[np.empty(0) for _ in range(n_ev)] if n_ev else None,
                    y_events=[np.empty((0, len(y0))) for _ in range(n_ev)] if n_ev else None,
                    nfev=1, njev=0, nlu=0, status=FAIL_NONFINITE,
                    message=MESSAGES[FAIL_NONFINITE], success=False)
    return res, dict(naccept=0, nreject=0, t_final=t0, y_final=y0.copy(), status=FAIL_NONFINITE)


def solve_single(fun, t_span, y0, method, t_eval, dense_output, events, vectorized, args,
                 rtol, atol, first_step, max_step, options, max_steps=None):
    """One scipy call; returns (OdeResult, info) where info has naccept, nreject,
    t_final, y_final (where the solver stopped) and status (gpuivp's codes: scipy's
    ``-1`` told apart into ``-1``, ``-2`` and ``-3``)."""
    if not _finite_at_t0(fun, t_span[0], y0, vectorized, args):
        return _not_finite_result(t_span[0], y0, t_eval, events)
    solver_box = {}
    cls = counting_method(method, max_steps)

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
    status = res.status
    if status < 0:
        status = (FAIL_MAXSTEPS if s.hit_max_steps else
                  FAIL_NONFINITE if not np.isfinite(s.last_error) else FAIL_STEP)
    t_final, y_final = s.t, s.y
    if res.status == 1:
        # Stopped by a terminal event: scipy's final state is its interpolant at the root,
        # the latest stored event in the direction of integration.
        d = np.sign(t_span[1] - t_span[0]) or 1.0
        last = [(d * te[-1], te[-1], ye[-1]) for te, ye in zip(res.t_events, res.y_events)
                if len(te)]
        _, t_final, y_final = max(last, key=lambda item: item[0])
    return res, dict(naccept=s.n_accepted, nreject=nrej, t_final=t_final, y_final=y_final,
                     status=status)


def _segment_event(ev, terminal, t_rs):
    """``ev`` for one segment of a restart loop: scipy's ``terminal`` count for it, and NaN
    instead of an exact zero at the restart time ``t_rs`` (a NaN is no crossing: a root at
    the restart point does not trigger again)."""
    def g(t, y, *args):
        value = ev(t, y, *args)
        if t == t_rs and value == 0:
            return np.nan
        return value

    g.direction = getattr(ev, "direction", 0.0)
    g.terminal = terminal
    return g


def _time_event(time):
    def g(t, y, *args):
        return t - time
    return g


def solve_restarting(p, i, y0, atol):
    """Trajectory ``i`` as scipy's solve_ivp restarted at every root of an event with
    ``affect`` from ``(t_root, affect(t_root, y_root))``; a terminal occurrence ends it.

    Returns ``(res, info)`` as :func:`solve_single`, over all the segments: counters summed,
    events, ``t_eval`` values and dense output (one ``OdeSolution``) joined."""
    from scipy.integrate import OdeSolution
    from scipy.integrate._ivp.ivp import OdeResult

    args, n_ev = p.traj_args(i), len(p.events)
    # Trajectory i's own problem data (Problem.per), each segment towards its own t1.
    t0, t1 = p.traj_value("t0", i), p.traj_value("t1", i)
    d = p.direction if t1 == t0 else (1.0 if t1 > t0 else -1.0)
    rtol, first_step, max_step = (p.traj_value(name, i)
                                  for name in ("rtol", "first_step", "max_step"))
    t_eval_i = p.traj_value("t_eval", i) if p.t_eval is not None else None
    t, y, t_rs = t0, y0, None
    nfev = naccept = nreject = 0
    t_ev, y_ev, counts = [[] for _ in range(n_ev)], [[] for _ in range(n_ev)], [0] * n_ev
    ys, ts, interps = [], [], []
    while True:
        seg = []
        for e, ev in enumerate(p.events):
            count = p.event_spec[e][0]
            terminal = count - counts[e] if count else 0
            if p.affects[e] is not None:
                terminal = 1
            times = p.at_times[e] if p.at_times else None
            if times is not None:  # gpuivp.at: an event at its next time
                nxt = times[counts[e], i] if counts[e] < len(times) else d * np.inf
                ev = _time_event(nxt)
            seg.append(_segment_event(ev, terminal, t_rs))
        t_eval = t_eval_i
        if t_eval is not None and t_rs is not None:
            t_eval = t_eval[d * (t_eval - t) > 0]
        left = p.max_steps - naccept - nreject
        res, info = solve_single(p.fun, (t, t1), y, p.method, t_eval, p.dense_output, seg,
                                 False, args, rtol, atol, first_step, max_step,
                                 p.options, left)
        nfev += res.nfev
        naccept += info["naccept"]
        nreject += info["nreject"]
        if t_eval is not None:
            ys.append(np.reshape(np.asarray(res.y, dtype=float), (len(y0), -1)))
        if p.dense_output and res.sol is not None:
            ts.append(res.sol.ts if not ts else res.sol.ts[1:])
            interps += list(res.sol.interpolants)
        for e in range(n_ev):
            counts[e] += len(res.t_events[e])
            t_ev[e] += list(res.t_events[e])
            y_ev[e] += list(np.reshape(res.y_events[e], (-1, len(y0))))
        status, t, y = info["status"], info["t_final"], info["y_final"]
        if status != 1:
            break
        # Stopped at a root: a terminal occurrence there ends the trajectory, else the
        # earliest event with affect restarts it.
        at_t = [e for e in range(n_ev) if len(res.t_events[e]) and res.t_events[e][-1] == t]
        if any(p.event_spec[e][0] and counts[e] >= p.event_spec[e][0] for e in at_t):
            break
        e = next(e for e in at_t if p.affects[e] is not None)
        if t_rs is not None and abs(t - t_rs) <= 10 * abs(np.nextafter(t_rs, d * np.inf) - t_rs):
            status = FAIL_CHATTER
            break
        t_rs = t
        y = np.asarray(p.affects[e](t, y, *args), dtype=float).reshape(len(y0))
        if d * (t - t1) >= 0:
            status = 0
            break
    info = dict(naccept=naccept, nreject=nreject, t_final=t, y_final=y, status=status)
    sol = None
    if p.dense_output and interps:
        sol = OdeSolution(np.concatenate(ts), interps)
    out = OdeResult(t=None, y=np.concatenate(ys, axis=1) if ys else None, sol=sol,
                    t_events=[np.array(v) for v in t_ev],
                    y_events=[np.reshape(v, (-1, len(y0))) for v in y_ev],
                    nfev=nfev, njev=0, nlu=0, status=status)
    return out, info


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
    per = p.per
    n_ev = len(p.events)
    if n_ev:
        out.update(event_buffers(np, p, np.float64))
    with progress_bar(p) as bar, _warnings_once():
        for i in range(k):
            y0 = p.y0[:, i].astype(np.float64)
            # Trajectory i's own problem data (the shared values where not per trajectory).
            t0, t1 = p.traj_value("t0", i), p.traj_value("t1", i)
            t_eval = p.traj_value("t_eval", i) if n_eval else None
            atol_i = p.traj_value("atol", i) if "atol" in per else atol
            try:
                if p.affects:
                    res, info = solve_restarting(p, i, y0, atol_i)
                else:
                    res, info = solve_single(p.fun, (t0, t1), y0, p.method, t_eval,
                                             p.dense_output,
                                             list(p.events) or None, False, p.traj_args(i),
                                             p.traj_value("rtol", i), atol_i,
                                             p.traj_value("first_step", i),
                                             p.traj_value("max_step", i), p.options,
                                             p.max_steps)
            except Exception as exc:
                p.name_trajectory(exc, i)
                raise
            out["status"][i] = info["status"]
            for name in ("nfev", "njev", "nlu"):
                out[name][i] = getattr(res, name)
            out["naccept"][i], out["nreject"][i] = info["naccept"], info["nreject"]
            out["t_final"][i], out["y_final"][:, i] = info["t_final"], info["y_final"]
            if p.dense_output:
                out.setdefault("sols", []).append(res.sol)
            for e in range(n_ev):
                te = res.t_events[e]
                ye = np.reshape(res.y_events[e], (len(te), n))  # scipy: (0,) when none
                m = min(len(te), p.max_events)
                out["ev_cnt"][e, i] = len(te)
                out["ev_t"][e, :m, i] = te[:m]
                out["ev_y"][e, :m, :, i] = ye[:m]
            if n_eval:
                ys = np.asarray(res.y, dtype=float).reshape(n, -1)   # [] when none stored
                rows = p.traj_t_eval_rows(i)
                if t0 == t1 and info["status"] == 0:
                    # scipy stores nothing on an empty span; every t_eval point is t0.
                    ys = np.repeat(y0[:, None], len(rows), axis=1)
                out["y_eval"][rows[:ys.shape[1]], :, i] = ys.T
            bar.update_to(_Progress(out, i, p))
    return out


@contextlib.contextmanager
def _warnings_once():
    """Warnings of the whole loop, each said once per call (scipy repeats its own, e.g.
    about unknown options, for every trajectory); the floating-point ``RuntimeWarning``s
    from inside scipy are dropped, as the other backends turn such trouble into a status."""
    with warnings.catch_warnings(record=True) as caught, np.errstate(all="ignore"):
        warnings.simplefilter("always")
        try:
            yield
        finally:
            said = set()
            seen = [w for w in caught if not issubclass(w.category, RuntimeWarning)]
    for w in seen:
        key = (w.category, str(w.message))
        if key not in said:
            said.add(key)
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)


class _Progress:
    """What the progress bar reads: trajectories before ``i`` done, the rest not started."""

    def __init__(self, out, i, p):
        self.t = np.where(np.arange(p.k) <= i, p.column("t1"), p.column("t0"))
        self.status = np.where(np.arange(p.k) <= i, 0, 10)
