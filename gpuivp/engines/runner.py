"""Host side of the per-trajectory engine, shared by the ``numba`` and ``cuda`` backends.

Allocates the resumable state (trajectory index last), fills the control
arrays, runs the compiled engine in time slices and assembles the raw result.
"""
from __future__ import annotations

import numpy as np

from .._status import INIT
from .buffers import DenseBuffers, event_buffers
from .per_trajectory import CTRL_FIELDS, IPARAM_FIELDS


class EngineState:
    """Per-trajectory state and outputs of one ensemble run, as host arrays."""

    def __init__(self, problem, budget, tableau=None):
        p = problem
        n, k, dt = p.n, p.k, p.dtype
        n_eval = 0 if p.t_eval is None else len(p.t_eval)
        ctrl = dict(t0=p.t0, t1=p.t1, rtol=p.rtol, first_step=p.first_step or 0.0,
                    max_step=p.max_step, dt=p.dt or 0.0, direction=p.direction)
        iparams = dict(max_steps=p.max_steps, budget=budget, n_fixed=p.n_fixed, n_eval=n_eval,
                       dense_max=p.dense_max_steps)
        self.ctrl = np.array([ctrl[f] for f in CTRL_FIELDS], dtype=dt)
        self.iparams = np.array([iparams[f] for f in IPARAM_FIELDS], dtype=np.int64)
        self.y0 = np.ascontiguousarray(p.y0, dtype=dt)
        self.atol = np.ascontiguousarray(p.atol, dtype=dt)
        self.t_eval = (np.zeros(1, dtype=dt) if p.t_eval is None
                       else np.ascontiguousarray(p.t_eval, dtype=dt))
        self.out_eval = np.full((max(n_eval, 1) if n_eval else 1, n, k if n_eval else 1),
                                np.nan, dtype=dt)
        self.st_t = np.zeros(k, dtype=dt)
        self.st_h = np.zeros(k, dtype=dt)
        self.st_err = np.zeros(k, dtype=dt)
        self.st_y = np.zeros((n, k), dtype=dt)
        self.st_f = np.zeros((n, k), dtype=dt)
        self.st_status = np.full(k, INIT, dtype=np.int32)
        self.st_cnt = np.zeros((4, k), dtype=np.int64)
        self.args = p.args
        self.n_eval = n_eval
        self.dense = None
        self.dense_max = p.dense_max_steps
        if p.dense_output:
            self.dense = DenseBuffers(np, n, k, tableau.n_interp_rows, dt, p.t0)
        self.events = None
        if p.events:
            self.ev_g = np.zeros((len(p.events), k), dtype=dt)
            self.events = event_buffers(np, p, dt)
        self.ev_rs = np.full(k, np.nan, dtype=dt) if getattr(p, "affects", ()) else None
        self.ev_at = None
        if getattr(p, "at_times", ()):
            from .._at import at_buffer
            self.ev_at = at_buffer(np, p, dt)

    def arrays(self):
        """Arguments of ``solve_one`` after ``i``, in the order of ``EngineSource.param_names``."""
        arrays = (self.y0, self.ctrl, self.iparams, self.atol, self.t_eval, self.out_eval,
                  self.st_t, self.st_h, self.st_err, self.st_y, self.st_f, self.st_status,
                  self.st_cnt)
        if self.events is not None:
            ev = self.events
            arrays += (self.ev_g, ev["ev_cnt"], ev["ev_t"], ev["ev_y"])
        if self.ev_rs is not None:
            arrays += (self.ev_rs,)
        if self.ev_at is not None:
            arrays += (self.ev_at,)
        if self.dense is not None:
            arrays += (self.dense.dn_t, self.dense.dn_h, self.dense.dn_c)
        return arrays + tuple(self.args)

    def running(self):
        """Whether any trajectory still runs; grows the dense buffers of paused ones."""
        from .per_trajectory import CNT_NACC
        running = self.st_status >= INIT
        if not np.any(running):
            return False
        if self.dense is not None and np.any(self.st_cnt[CNT_NACC][running] >= self.dense.capacity):
            self.dense.grow(min(2 * self.dense.capacity, self.dense_max), self.dense_max)
        return True

    def raw(self):
        """The backend-neutral raw result."""
        from .per_trajectory import CNT_NACC, CNT_NFEV, CNT_NREJ
        raw = dict(t_final=self.st_t, y_final=self.st_y, status=self.st_status.astype(np.int64),
                   nfev=self.st_cnt[CNT_NFEV].copy(), naccept=self.st_cnt[CNT_NACC].copy(),
                   nreject=self.st_cnt[CNT_NREJ].copy(),
                   y_eval=self.out_eval if self.n_eval else None)
        if self.events is not None:
            raw.update(self.events)
        if self.dense is not None:
            raw.update(self.dense.raw())
        return raw


def check_slices(calls, problem, budget, engine):
    """Raise once ``calls`` engine calls of ``budget`` step attempts each are more than any
    run needs: ``max_steps`` attempts per trajectory, plus one paused call per doubling of
    the dense-output buffers. A bug in the engine is then an error, never a hang."""
    limit = 2 + -(-int(problem.max_steps) // max(1, int(budget))) + (
        64 if problem.dense_output else 0)
    if calls >= limit:
        raise RuntimeError(f"gpuivp {engine} engine: trajectories still running after {calls} "
                           f"calls of {budget} step attempts (max_steps={problem.max_steps}); "
                           f"this is a bug, please report it.")


def slice_budget(problem, default=1 << 62):
    """Step attempts per engine call: everything at once, unless progress is shown."""
    return 2000 if problem.progress else default
