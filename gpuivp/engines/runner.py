"""Host side of the per-trajectory engine, shared by the ``numba`` and ``cuda`` backends.

Allocates the resumable state (trajectory index last), fills the control
arrays, runs the compiled engine in time slices and assembles the raw result.
"""
from __future__ import annotations

import numpy as np

from .._status import INIT
from .buffers import DenseBuffers, event_buffers
from .per_trajectory import CTRL_FIELDS, IPARAM_FIELDS, N_CNT


class EngineState:
    """Per-trajectory state and outputs of one ensemble run, as host arrays."""

    def __init__(self, problem, budget, tableau=None):
        p = problem
        n, k, dt = p.n, p.k, p.dtype
        n_eval = 0 if p.t_eval is None else len(p.t_eval)
        ctrl, iparams, t_eval = control_columns(p, budget)
        self.ctrl = np.ascontiguousarray([ctrl[f] for f in CTRL_FIELDS], dtype=dt)
        self.iparams = np.ascontiguousarray([iparams[f] for f in IPARAM_FIELDS], dtype=np.int64)
        self.y0 = np.ascontiguousarray(p.y0, dtype=dt)
        atol = p.per.get("atol", p.atol[:, None])
        self.atol = np.ascontiguousarray(atol, dtype=dt)
        self.t_eval = (np.zeros((1, 1), dtype=dt) if p.t_eval is None
                       else np.ascontiguousarray(t_eval, dtype=dt))
        self.out_eval = np.full((max(n_eval, 1) if n_eval else 1, n, k if n_eval else 1),
                                np.nan, dtype=dt)
        self.st_t = np.zeros(k, dtype=dt)
        self.st_h = np.zeros(k, dtype=dt)
        self.st_err = np.zeros(k, dtype=dt)
        self.st_y = np.zeros((n, k), dtype=dt)
        self.st_f = np.zeros((n, k), dtype=dt)
        self.st_status = np.full(k, INIT, dtype=np.int32)
        self.st_cnt = np.zeros((N_CNT, k), dtype=np.int64)
        # A Rosenbrock method's Jacobian and df/dt, kept over a time slice that ends on a
        # rejection (rows: J row-major, then df/dt).
        self.st_jac = (np.zeros((n * n + n, k), dtype=dt)
                       if getattr(tableau, "linear_solve", False) else None)
        self.args = p.args
        self.n_eval = n_eval
        self.dense = None
        self.dense_max = p.dense_max_steps
        if p.dense_output:
            self.dense = DenseBuffers(np, n, k, p.dense_rows(tableau), dt, p.t0)
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
        if self.st_jac is not None:
            arrays += (self.st_jac,)
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
        from .per_trajectory import CNT_NACC, CNT_NFEV, CNT_NJEV, CNT_NLU, CNT_NREJ
        raw = dict(t_final=self.st_t, y_final=self.st_y, status=self.st_status.astype(np.int64),
                   nfev=self.st_cnt[CNT_NFEV].copy(), naccept=self.st_cnt[CNT_NACC].copy(),
                   nreject=self.st_cnt[CNT_NREJ].copy(), njev=self.st_cnt[CNT_NJEV].copy(),
                   nlu=self.st_cnt[CNT_NLU].copy(),
                   y_eval=self.out_eval if self.n_eval else None)
        if self.events is not None:
            raw.update(self.events)
        if self.dense is not None:
            raw.update(self.dense.raw())
        return raw


#: Per-trajectory fields of ``ctrl`` / ``iparams``: any given makes both (fields, k).
PER_CONTROL = ("t0", "t1", "rtol", "first_step", "max_step", "dt")


def control_columns(p, budget):
    """The columns of ``ctrl`` and ``iparams`` (dicts of arrays of length 1, or k when
    some control value is per trajectory) and ``t_eval`` as (n_t, 1) or (n_t, k)."""
    per_ctrl = any(f in p.per for f in PER_CONTROL)
    kc = p.k if per_ctrl else 1
    col = (lambda f: p.column(f)) if per_ctrl else (lambda f: np.array(
        [np.nan if getattr(p, f) is None else getattr(p, f)], dtype=float))
    t0, t1 = col("t0"), col("t1")
    dt = np.nan_to_num(col("dt"), nan=0.0)
    direction = np.where(t1 >= t0, 1.0, -1.0)
    ctrl = dict(t0=t0, t1=t1, rtol=col("rtol"), first_step=np.nan_to_num(col("first_step"),
                                                                         nan=0.0),
                max_step=col("max_step"), dt=dt, direction=direction)
    if p.dt is None:
        n_fixed = np.zeros(kc)
    else:
        with np.errstate(invalid="ignore", divide="ignore"):
            n_fixed = np.maximum(1, np.ceil(np.abs(t1 - t0) / dt - 1e-12))
    n_eval = 0 if p.t_eval is None else len(p.t_eval)
    te = p.per.get("t_eval", p.t_eval)
    row0, step, count = np.zeros(kc), np.ones(kc), np.full(kc, n_eval)
    if te is not None and te.ndim == 1 and "t0" in p.per:
        # Shared t_eval, own spans: each trajectory's points, in its own direction.
        up = n_eval < 2 or te[-1] >= te[0]
        key = te if up else -te
        lo_t, hi_t = np.minimum(t0, t1), np.maximum(t0, t1)
        if up:
            lo = np.searchsorted(key, lo_t, side="left")
            hi = np.searchsorted(key, hi_t, side="right")
        else:
            lo = np.searchsorted(key, -hi_t, side="left")
            hi = np.searchsorted(key, -lo_t, side="right")
        count = hi - lo
        same = (direction > 0) == up
        row0 = np.where(count == 0, 0, np.where(same, lo, hi - 1))
        step = np.where(same, 1, -1)
    iparams = dict(max_steps=np.full(kc, p.max_steps), budget=np.full(kc, budget),
                   n_fixed=n_fixed, n_eval=count, dense_max=np.full(kc, p.dense_max_steps),
                   eval_row0=row0, eval_step=step)
    t_eval = None if te is None else (te[:, None] if te.ndim == 1 else te)
    return ctrl, iparams, t_eval


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
