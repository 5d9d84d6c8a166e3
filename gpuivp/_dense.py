"""Dense output of an ensemble: every trajectory's piecewise interpolant."""
from __future__ import annotations

import numpy as np


class EnsembleSolution:
    """Continuous solution of each trajectory, as returned in ``EnsembleResult.sol``.

    Built from the method's interpolant (its tableau's :class:`~gpuivp.methods.Interpolant`)
    of every accepted step: scipy's for RK23/RK45/DOP853 (DOP853's 7th-order one costs 3
    evaluations per step as in scipy), Vern7's of order 7 (5 evaluations per step).

    ``sol(t)`` gives an array of shape ``(n, k)`` for a scalar ``t`` and ``(n, k, len(t))``
    for an array; NaN where ``t`` lies outside a trajectory's ``[t0, t_final]``.
    """

    def __init__(self, interpolant, t_bounds, h, coef, count, direction, y0=None):
        self.interpolant = interpolant   # the method's Interpolant (its form and rows)
        self.y0 = y0               # (n, k): a trajectory without steps is y0 at t0
        self.t_bounds = t_bounds   # (cap + 1, k)
        self.h = h                 # (cap, k)
        self.coef = coef           # (cap, 1 + rows, n, k)
        self.count = count         # (k,) steps stored
        self.direction = direction

    @property
    def n(self):
        return self.coef.shape[2]

    def _at(self, t, extrapolate=False):
        cap, _, n, k = self.coef.shape
        d = self.direction
        steps = np.arange(cap)[:, None]
        stored = steps < self.count[None, :]
        ends = self.t_bounds[1:]
        with np.errstate(invalid="ignore"):
            seg = np.sum(stored & (d * (ends - t) < 0), axis=0)
        seg = np.minimum(seg, np.maximum(self.count - 1, 0))
        cols = np.arange(k)
        t_start = self.t_bounds[0]
        t_stop = self.t_bounds[self.count, cols]
        inside = (self.count > 0) & (d * (t - t_start) >= 0) & (d * (t - t_stop) <= 0)
        c = self.coef[seg, :, :, cols]          # (k, 1 + rows, n)
        h = self.h[seg, cols]
        t_old = self.t_bounds[seg, cols]
        with np.errstate(all="ignore"):
            x = ((t - t_old) / h)[:, None]
            y = self.interpolant.evaluate(list(np.moveaxis(c[:, 1:], 1, 0)), x, h[:, None],
                                          c[:, 0])
        if not extrapolate:
            y[~inside] = np.nan
        if self.y0 is not None:  # no step stored (failed at t0, or t0 == t1): y0 at t0
            at_t0 = (self.count == 0) & (t == t_start)
            y[at_t0] = np.asarray(self.y0).T[at_t0]
        return y.T                               # (n, k)

    def __call__(self, t, extrapolate=False):
        t = np.asarray(t, dtype=self.coef.dtype)
        if t.ndim == 0:
            return self._at(t, extrapolate)
        if t.size == 0:
            return np.empty((self.n, self.count.size, 0), self.coef.dtype)
        return np.stack([self._at(ti, extrapolate) for ti in t], axis=-1)


class ListSolution:
    """The ``scipy`` backend's dense output: one scipy ``OdeSolution`` per trajectory."""

    def __init__(self, sols, t0, t_final, n, dtype=np.float64, y0=None):
        self.sols, self.t0, self.t_final, self.n = sols, t0, np.asarray(t_final), n
        self.dtype = np.dtype(dtype)  # the call's working dtype (scipy computes in float64)
        self.y0 = y0                  # (n, k): a trajectory without a solution is y0 at t0

    def __call__(self, t):
        t = np.asarray(t, dtype=float)
        out = np.full((self.n, len(self.sols)) + t.shape, np.nan, dtype=self.dtype)
        lo, hi = np.minimum(self.t0, self.t_final), np.maximum(self.t0, self.t_final)
        t0 = np.broadcast_to(self.t0, lo.shape)  # per trajectory, or shared
        for i, sol in enumerate(self.sols):
            if sol is None:
                if self.y0 is not None:  # failed at t0: its state there is y0
                    if t.ndim == 0:
                        if t == t0[i]:
                            out[:, i] = self.y0[:, i]
                    else:
                        out[:, i, t == t0[i]] = self.y0[:, i, None]
                continue
            inside = (t >= lo[i]) & (t <= hi[i])
            if t.ndim == 0:
                if inside:
                    out[:, i] = sol(t)
            elif np.any(inside):
                out[:, i, inside] = sol(t[inside])
        return out


class SingleSolution:
    """One trajectory's dense output with scipy's ``OdeSolution`` shapes and behaviour:
    ``sol(t)`` is ``(n,)`` for a scalar ``t`` and ``(n, len(t))`` for an array; outside
    ``[t0, t_final]`` it extrapolates the first or last step's interpolant, and with no step
    taken (``t0 == t1``, or ``n = 0``) it is ``y0`` everywhere."""

    def __init__(self, ensemble, y0):
        self.ensemble = ensemble
        self.y0 = np.array(y0)

    def __call__(self, t):
        if int(self.ensemble.count[0]) == 0:
            t = np.asarray(t)
            return np.repeat(self.y0.reshape((-1,) + (1,) * t.ndim), t.size, axis=-1) \
                if t.ndim else self.y0.copy()
        return self.ensemble(t, extrapolate=True)[:, 0]
