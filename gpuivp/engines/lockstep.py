"""The lockstep engine: all trajectories step together on ``(n, k)`` arrays.

Each column has its own ``t``, step size, status and counters; every iteration
is one step attempt for each running column, accepted or rejected by masks
(torchode's scheme) with scipy's rules, so each column takes the steps scipy
would take for that trajectory. The user's vectorized ``fun`` is called on the
running columns only. Written once against an array namespace ``xp`` (NumPy
here; CuPy for the ``cupy`` backend).
"""
from __future__ import annotations

import math

import numpy as np

from .buffers import DenseBuffers, event_buffers
from ..methods import CONTROLLER
from .._status import (FAIL_CHATTER, FAIL_DENSE, FAIL_MAXSTEPS, FAIL_NONFINITE, FAIL_SINGULAR,
                       FAIL_STEP, INIT, REJECTED, RUNNING, TERMINATED)


def sum_rows(x):
    """Sum of an (n, m) array over its n rows, one row after the other.

    Not ``xp.sum(x, axis=0)``: NumPy sums a single column (m = 1) pairwise once n >= 8,
    which rounds differently, so a trajectory's steps would depend on how many others
    are still running. Row by row is also the numba engine's order.
    """
    if len(x) == 1:
        return x[0]
    acc = x[0] + x[1]
    for row in x[2:]:
        acc += row  # in place: the same sums, without a new array per row
    return acc


def _may_share(xp, a, b):
    """Whether arrays ``a`` and ``b`` may overlap in memory (True where ``xp`` cannot say)."""
    may = getattr(xp, "may_share_memory", None)
    return True if may is None else bool(may(a, b))


class Lockstep:
    """One ensemble run of ``problem`` with ``tableau`` on namespace ``xp``."""

    def __init__(self, problem, tableau, xp=np):
        p = self.p = problem
        self.tab, self.xp = tableau, xp
        self.dtype = p.dtype
        n, k = p.n, p.k
        self.fixed = p.dt is not None
        self.direction = p.direction
        self.t_eval = None if p.t_eval is None else xp.asarray(p.t_eval, dtype=self.dtype)
        self.t_eval_dir = None if p.t_eval is None else self.c(self.direction) * self.t_eval
        self.n_eval = 0 if p.t_eval is None else len(p.t_eval)
        self.out_eval = xp.full((self.n_eval, n, k), np.nan, dtype=self.dtype) \
            if self.n_eval else None
        self.atol = xp.asarray(p.atol, dtype=self.dtype)[:, None]
        # Per-trajectory problem data (``problem.per``): control values as (k,) columns.
        self.per = bool(p.per)
        if self.per:
            from .runner import control_columns
            ctrl, ip, t_eval = control_columns(p, 0)
            def col(v, dt=self.dtype):
                return xp.asarray(np.broadcast_to(v, (k,)), dtype=dt)
            self.cols = dict(t0=col(ctrl["t0"]), t1=col(ctrl["t1"]), d=col(ctrl["direction"]),
                             rtol=col(ctrl["rtol"]), max_step=col(ctrl["max_step"]),
                             dt=col(ctrl["dt"]), first_step=col(ctrl["first_step"]),
                             n_fixed=col(ip["n_fixed"], np.int64),
                             n_eval=col(ip["n_eval"], np.int64),
                             row0=col(ip["eval_row0"], np.int64),
                             row_step=col(ip["eval_step"], np.int64))
            if "atol" in p.per:
                self.atol = xp.asarray(p.per["atol"], dtype=self.dtype)
            if t_eval is not None:
                self.t_eval = xp.asarray(t_eval, dtype=self.dtype)   # (n_t, 1 or k)
                self.te_col = t_eval.shape[1] > 1
        self.args = tuple(xp.asarray(a) if kind != "scalar" else a
                          for a, kind in zip(p.args, p.arg_kinds))
        self.y = xp.asarray(p.y0, dtype=self.dtype).copy()
        self.f = xp.zeros((n, k), dtype=self.dtype)
        self.t = self.cols["t0"].copy() if self.per else xp.full(k, p.t0, dtype=self.dtype)
        self.h_abs = xp.zeros(k, dtype=self.dtype)
        self.err = xp.zeros(k, dtype=self.dtype)
        self.status = xp.full(k, INIT, dtype=np.int64)
        self.nfev = xp.zeros(k, dtype=np.int64)
        self.nacc = xp.zeros(k, dtype=np.int64)
        self.nrej = xp.zeros(k, dtype=np.int64)
        self.ie = xp.zeros(k, dtype=np.int64)
        self._args_cache = (None, None)
        self._scratch = None
        # A linearly implicit (Rosenbrock) method: its stages and linear solves, composed in.
        self.linear = None
        if getattr(tableau, "linear_solve", False):
            from .rosenbrock import RosenbrockPart
            self.linear = RosenbrockPart(self)
        if p.dense_output:
            self.dense = DenseBuffers(xp, n, k, p.dense_rows(tableau), self.dtype,
                                      self.cols["t0"] if self.per else p.t0)
        n_ev = len(p.events)
        if n_ev:
            self.ev_g = xp.zeros((n_ev, k), dtype=self.dtype)
            self.__dict__.update(event_buffers(xp, p, self.dtype))
        # Events with affect: the time of each column's latest restart (NaN: none yet).
        self.t_rs = xp.full(k, np.nan, dtype=self.dtype) if p.affects else None
        if p.at_times:
            from .._at import at_buffer
            self.ev_at = at_buffer(xp, p, self.dtype)

    # -- helpers -----------------------------------------------------------------
    def c(self, value):
        return self.dtype.type(value)

    def at(self, name, idx, shared):
        """Control value ``name`` for columns ``idx``: a (len(idx),) array per trajectory,
        else the shared value ``shared`` (cast to the working dtype)."""
        return self.cols[name][idx] if self.per else self.c(shared)

    def te_at(self, rows, cols):
        """``t_eval`` at ``rows`` for columns ``cols`` (per-trajectory data)."""
        return self.t_eval[rows, cols if self.te_col else 0]

    def args_for(self, idx):
        """The user args restricted to columns ``idx`` (cached while ``idx`` is unchanged)."""
        prev_idx, prev_args = self._args_cache
        if prev_idx is idx:
            return prev_args
        args = tuple(a[..., idx] if kind.startswith("traj") else a
                     for a, kind in zip(self.args, self.p.arg_kinds))
        self._args_cache = (idx, args)
        return args

    def fun(self, t, y, idx):
        """``fun`` on columns ``idx``: returns an (n, m) array."""
        xp = self.xp
        r = self.p.fun(t, y, *self.args_for(idx))
        if len(r) != self.p.n:
            raise ValueError(f"`fun` returned {len(r)} values: expected n={self.p.n}.")
        if (type(r) is xp.ndarray and r.dtype == self.dtype and r.shape == y.shape
                and not _may_share(xp, r, y)):
            return r  # used as returned, as scipy does (no copy row by row)
        out = xp.empty(y.shape, dtype=self.dtype)
        for j, v in enumerate(r):
            out[j] = v
        return out

    def event(self, e, t, y, idx):
        """Event function ``e`` on columns ``idx``: an (m,) array."""
        if self.p.at_times and self.p.at_times[e] is not None:
            # gpuivp.at: t minus the next of its times (the count of those passed)
            return (t - self.ev_at[e, self.ev_cnt[e, idx], idx]).astype(self.dtype)
        g = self.p.events[e](t, y, *self.args_for(idx))
        return self.xp.broadcast_to(self.xp.asarray(g, dtype=self.dtype), t.shape)

    def scratch(self, shape, dtype):
        """A scratch array of ``shape`` (a view of one reused buffer; contents undefined).

        For a term that is added at once: the engine's arrays are large ((n, k) at the
        start), and a new temporary per operation costs more than the operation."""
        size = math.prod(shape)
        buf = self._scratch
        if buf is None or buf.size < size or buf.dtype != dtype:
            buf = self._scratch = self.xp.empty(size, dtype=dtype)
        return buf[:size].reshape(shape)

    def lincomb(self, coefs, K):
        """``sum_s coefs[s] K[s]`` over the nonzero coefficients, as a new array.

        Each term ``coefs[s] * K[s]`` is rounded, then added in order of ``s``; terms after
        the first go through :meth:`scratch` (one new array per call, whatever the terms).
        """
        xp = self.xp
        acc = tmp = None
        for cf, k in zip(coefs, K):
            if cf != 0:
                if acc is None:
                    acc = self.c(cf) * k  # a new array: returned, and added to in place
                elif k.shape == acc.shape and k.dtype == acc.dtype:
                    if tmp is None:
                        tmp = self.scratch(acc.shape, acc.dtype)
                    xp.multiply(self.c(cf), k, out=tmp)
                    acc += tmp
                else:
                    acc += self.c(cf) * k
        return acc if acc is not None else xp.zeros_like(K[0])

    def stages(self, t, y, f, h, idx):
        """scipy's ``rk_step``: returns (y_new, K) with K[-1] = f(t + h, y_new)."""
        tab = self.tab
        K = [f]
        for s in range(1, tab.n_stages):
            # y + lincomb * h, in place on lincomb's new array (+ and * commute exactly)
            ys = self.lincomb(tab.a[s, :s], K)
            ys *= h
            ys += y
            K.append(self.fun(t + self.c(tab.c[s]) * h, ys, idx))
        y_new = self.lincomb(tab.b, K)   # y + h * lincomb
        y_new *= h
        y_new += y
        K.append(self.fun(t + h, y_new, idx))
        return y_new, K

    def error_norm(self, y, y_new, K, h, idx=None):
        """scipy's error norm per column. Written in place on new arrays (``a += b`` for
        ``b + a``: + and * commute exactly), with scipy's operations in scipy's order."""
        xp, tab = self.xp, self.tab
        if self.per:
            atol = self.atol[:, idx] if self.atol.shape[1] > 1 else self.atol
            rtol = self.cols["rtol"][idx]
        else:
            atol, rtol = self.atol, self.c(self.p.rtol)
        # scale = atol + maximum(|y|, |y_new|) * rtol
        scale = xp.abs(y)
        if y_new.shape == scale.shape and y_new.dtype == scale.dtype:
            xp.maximum(scale, xp.abs(y_new, out=self.scratch(scale.shape, scale.dtype)),
                       out=scale)
        else:
            scale = xp.maximum(scale, xp.abs(y_new))
        scale *= rtol
        scale += atol
        n = self.p.n
        if tab.combined_error:
            e5 = self.lincomb(tab.e, K)
            e5 /= scale
            e3 = self.lincomb(tab.e_low, K)
            e3 /= scale
            e5 *= e5
            e3 *= e3
            # scipy squares the norms (np.linalg.norm(err5)**2), not the sums of squares:
            # sqrt then square rounds differently, and DOP853's steps follow every ulp.
            r5 = xp.sqrt(sum_rows(e5))
            r3 = xp.sqrt(sum_rows(e3))
            s5 = r5 * r5
            s3 = r3 * r3
            both0 = (s5 == 0) & (s3 == 0)
            err = xp.abs(h) * s5 / xp.sqrt((s5 + self.c(0.01) * s3) * self.c(n))
            return xp.where(both0, self.c(0), err)
        e = self.lincomb(tab.e, K)   # lincomb * h / scale
        e *= h
        e /= scale
        e *= e
        return xp.sqrt(sum_rows(e)) / self.c(n ** 0.5)

    def coef_rows(self, t, y, y_new, K, h):
        """The step interpolant's coefficient rows (:meth:`Interpolant.rows`)."""
        return self.tab.interpolant.rows(y, y_new, K, h, self.lincomb)

    def interpolate(self, te, t, y, y_new, K, h):
        """The step's dense output at ``te`` (one time per column)."""
        rows = self.coef_rows(t, y, y_new, K, h)
        return self.tab.interpolant.evaluate(rows, (te - t) / h, h, y, self.xp)

    def extra_stages(self, t, y, K, h, idx):
        """The interpolant's extra stages (``tab.a_extra``, ``tab.c_extra``)."""
        tab = self.tab
        K = list(K)
        s0 = tab.n_stages + 1
        for r, (arow, cx) in enumerate(zip(tab.a_extra, tab.c_extra)):
            dy = self.lincomb(arow[:s0 + r], K) * h
            K.append(self.fun(t + self.c(cx) * h, y + dy, idx))
        return K

    # -- the run -----------------------------------------------------------------------
    def initialise(self):
        xp, p = self.xp, self.p
        idx = xp.arange(p.k)
        self.f = self.fun(self.t, self.y, idx).copy()  # the engine writes into self.f
        self.nfev[:] = 1
        finite = xp.all(xp.isfinite(self.f), axis=0)
        self.status = xp.where(finite, RUNNING, FAIL_NONFINITE).astype(np.int64)
        if self.per:
            return self.initialise_per(idx, finite)
        if self.n_eval and p.t_eval[0] == p.t0:  # failed at t0: its state there is y0
            self.out_eval[0][:, ~finite] = self.y[:, ~finite]
        for e in range(len(p.events)):
            self.ev_g[e] = self.event(e, self.t, self.y, idx)
        if p.t0 == p.t1:
            self.status = xp.where(finite, 0, FAIL_NONFINITE).astype(np.int64)
            if self.n_eval:
                self.out_eval[:, :, finite] = self.y[None][:, :, finite]
                self.ie[:] = self.n_eval
            return
        if self.fixed:
            return
        if p.first_step is not None:
            self.h_abs[:] = self.c(p.first_step)
            return
        # scipy's select_initial_step, per column (one more evaluation each).
        def fun1(t, y):
            self.nfev += finite.astype(np.int64)   # failed columns stop at their first call
            return self.fun(t, y, idx)

        h = CONTROLLER.initial_step(self.y, self.f, fun1, p.t0, p.t1, self.direction,
                                    self.atol, p.rtol, p.max_step, self.tab.error_order, p.n,
                                    xp)
        self.h_abs = xp.where(finite, h, self.c(0)).astype(self.dtype)

    def initialise_per(self, idx, finite):
        """``initialise`` with per-trajectory problem data."""
        xp, p, cl = self.xp, self.p, self.cols
        cnt, row0 = cl["n_eval"], cl["row0"]
        if self.n_eval:  # failed at t0: its state there is y0
            at0 = ~finite & (cnt > 0)
            at0 &= self.te_at(xp.where(at0, row0, 0), idx) == cl["t0"]
            self.out_eval[row0[at0], :, idx[at0]] = self.y[:, at0].T
        for e in range(len(p.events)):
            self.ev_g[e] = self.event(e, self.t, self.y, idx)
        empty = finite & (cl["t0"] == cl["t1"])
        if bool(xp.any(empty)):
            self.status[empty] = 0
            if self.n_eval:
                for m in range(self.n_eval):
                    sel = empty & (m < cnt)
                    self.out_eval[(row0 + m * cl["row_step"])[sel], :, idx[sel]] = \
                        self.y[:, sel].T
                self.ie[empty] = cnt[empty]
        if self.fixed:
            return
        if p.first_step is not None:
            self.h_abs[:] = cl["first_step"]
            return
        running = self.status == RUNNING

        def fun1(t, y):
            self.nfev += running.astype(np.int64)   # failed or finished columns: no call
            return self.fun(t, y, idx)

        h = CONTROLLER.initial_step(self.y, self.f, fun1, cl["t0"], cl["t1"], cl["d"],
                                    self.atol, cl["rtol"], cl["max_step"],
                                    self.tab.error_order, p.n, xp)
        self.h_abs = xp.where(running, h, self.c(0)).astype(self.dtype)

    def step(self):
        """One attempt for every running column."""
        xp, p, tab = self.xp, self.p, self.tab
        idx = xp.flatnonzero(self.status >= RUNNING)
        if idx.size == 0:
            return False
        if p.dense_output and bool(xp.any(self.nacc[idx] >= self.dense.capacity)):
            full = self.nacc[idx] >= p.dense_max_steps
            self.status[idx[full]] = FAIL_DENSE
            self.dense.grow(min(2 * self.dense.capacity, p.dense_max_steps), p.dense_max_steps)
            return True
        c = self.c
        d = self.at("d", idx, self.direction)
        t = self.t[idx]
        st = self.status[idx]
        natt = self.nacc[idx] + self.nrej[idx]
        if self.fixed:
            nacc = self.nacc[idx]
            over = nacc >= p.max_steps
            if bool(xp.any(over)):
                self.status[idx[over]] = FAIL_MAXSTEPS
                idx, t, nacc = idx[~over], t[~over], nacc[~over]
                d = d[~over] if self.per else d
                if idx.size == 0:
                    return True
            t_new = xp.where(nacc + 1 >= self.at("n_fixed", idx, p.n_fixed),
                             self.at("t1", idx, p.t1),
                             self.at("t0", idx, p.t0) + (nacc + 1).astype(self.dtype)
                             * self.at("dt", idx, p.dt) * d)
            h = t_new - t
        else:
            h_abs = self.h_abs[idx]
            min_step = CONTROLLER.min_step(t, d if self.per else self.direction, xp)
            new = st == RUNNING
            max_step = self.at("max_step", idx, p.max_step)
            h_abs = xp.where(new & (h_abs > max_step), max_step,
                             xp.where(new & (h_abs < min_step), min_step, h_abs))
            small = h_abs < min_step
            over = ~small & (natt >= p.max_steps)
            stop = small | over
            if bool(xp.any(stop)):
                finite_err = xp.isfinite(self.err[idx])
                self.status[idx] = xp.where(
                    small, xp.where(finite_err, FAIL_STEP, FAIL_NONFINITE),
                    xp.where(over, FAIL_MAXSTEPS, st))
                self.h_abs[idx] = h_abs
                keep = ~stop
                idx, t, st, h_abs = idx[keep], t[keep], st[keep], h_abs[keep]
                d = d[keep] if self.per else d
                if idx.size == 0:
                    return True
            t_new = t + h_abs * d
            t1 = self.at("t1", idx, p.t1)
            t_new = xp.where(d * (t_new - t1) > 0, t1, t_new)
            h = t_new - t
            h_abs = xp.abs(h)
        y = self.y[:, idx]
        y_new, K = (self.linear or self).stages(t, y, self.f[:, idx], h, idx)
        self.nfev[idx] += tab.fev_per_step
        if self.fixed:
            accept = xp.all(xp.isfinite(y_new), axis=0)
            self.status[idx[~accept]] = FAIL_NONFINITE
        else:
            with np.errstate(all="ignore"):
                err = self.error_norm(y, y_new, K, h, idx)
            accept, factor = CONTROLLER.factor(err, CONTROLLER.exponent(tab), st == REJECTED, xp)
            self.err[idx] = err
            self.h_abs[idx] = h_abs * factor
            self.status[idx] = xp.where(accept, RUNNING, REJECTED)
            self.nrej[idx] += ~accept
        if self.linear is not None and bool(xp.any(self.linear.singular)):
            # A singular I / (h gamma) - J: that trajectory fails with its own status.
            sing = self.linear.singular
            self.status[idx[sing]] = FAIL_SINGULAR
            if not self.fixed:  # not a rejection: the attempt was not made
                self.nrej[idx[sing & ~accept]] -= 1
            accept = accept & ~sing
        if not bool(xp.any(accept)):
            return True
        a = accept
        if bool(xp.all(a)):
            ia, ta, ha, tn, ya, yna, Ka = idx, t, h, t_new, y, y_new, K
        else:
            ia, ta, ha, tn = idx[a], t[a], h[a], t_new[a]
            ya, yna = y[:, a], y_new[:, a]
            # Every stage is needed only for interpolation (t_eval, events, dense output).
            need_all = self.n_eval or p.events or p.interpolant_stored
            Ka = [k_[:, a] for k_ in K] if need_all else [None] * tab.n_stages + [K[-1][:, a]]
        step = _Step(ia, ta, ya, yna, Ka, ha, tn)
        active = self.detect_events(step)
        if tab.n_extra:
            need = active | (self.t_eval_pending(step, tn)[1] > 0) | p.interpolant_stored
            self.add_extra_stages(step, need)
        t_end, terminating = self.handle_events(step, active)
        if p.dense_output:
            # Recording steps only (p.record_steps): t and y, no interpolant rows.
            rows = self.coef_rows(ta, ya, yna, step.K, ha) if p.interpolant_stored else ()
            self.dense.store(self.nacc[ia], ia, t_end, ha, ya, rows)
        if self.n_eval:
            self.save_t_eval(step, t_end)
        self.nacc[ia] += 1
        self.f[:, ia] = Ka[tab.n_stages]
        restart = step.restart >= 0 if p.affects else None
        moved = terminating
        if restart is not None:
            moved = terminating | restart
        if moved is not None and bool(xp.any(moved)):
            y_stop = self.interpolate(t_end, ta, ya, yna, step.K, ha)
            yna = xp.where(moved[None], y_stop, yna)
        self.y[:, ia] = yna
        self.t[ia] = t_end
        if self.fixed:
            done = self.nacc[ia] >= self.at("n_fixed", ia, p.n_fixed)
        else:
            done = self.at("d", ia, self.direction) * (t_end - self.at("t1", ia, p.t1)) >= 0
        self.status[ia[done]] = 0
        if terminating is not None:
            self.status[ia[terminating]] = TERMINATED
        if restart is not None:
            go = restart & ~done
            if bool(xp.any(go)):
                self.restart(ia[go], t_end[go], yna[:, go], step.restart[go])
        return True

    def t_eval_pending(self, st, t_end):
        """Per accepted column: its next t_eval index and how many points lie up to ``t_end``."""
        xp = self.xp
        ie = self.ie[st.idx]
        if not self.n_eval:
            return ie, xp.zeros_like(ie)
        if self.per:  # each column's own points: rows row0 + m * row_step, m < n_eval
            cl, cols = self.cols, st.idx
            d, cnt = cl["d"][cols], cl["n_eval"][cols]
            count = xp.zeros_like(ie)
            pending = ie < cnt
            while bool(xp.any(pending)):
                rows = cl["row0"][cols] + (ie + count) * cl["row_step"][cols]
                te = self.te_at(xp.where(pending, rows, 0), cols)
                ok = pending & (d * (te - t_end) <= 0)
                count += ok
                pending = ok & (ie + count < cnt)
            return ie, count
        # t_eval is sorted in the direction of integration: direction * t_eval increases.
        stop = xp.searchsorted(self.t_eval_dir, self.c(self.direction) * t_end, side="right")
        return ie, xp.maximum(stop - ie, 0)

    def add_extra_stages(self, st, need):
        """The interpolant's extra stages, once per step, for the columns that ``need`` them."""
        xp = self.xp
        Kx = [xp.zeros_like(st.y) for _ in range(self.tab.n_extra)]
        if bool(xp.any(need)):
            sub = self.extra_stages(st.t[need], st.y[:, need], [k_[:, need] for k_ in st.K],
                                    st.h[need], st.idx[need])
            for r in range(self.tab.n_extra):
                Kx[r][:, need] = sub[self.tab.n_stages + 1 + r]
            self.nfev[st.idx[need]] += self.tab.n_extra
        st.K = list(st.K) + Kx

    def detect_events(self, st):
        """scipy's find_active_events per column; returns the mask of columns with any."""
        xp = self.xp
        st.active = []
        any_active = xp.zeros(st.idx.shape, dtype=bool)
        for e, (_, direction) in enumerate(self.p.event_spec):
            g, gn = self.ev_g[e, st.idx], self.event(e, st.t_new, st.y_new, st.idx)
            up, down = (g <= 0) & (gn >= 0), (g >= 0) & (gn <= 0)
            act = up if direction > 0 else down if direction < 0 else up | down
            self.ev_g[e, st.idx] = gn
            st.active.append(act)
            any_active |= act
        return any_active

    def handle_events(self, st, any_active):
        """Roots, terminal decision, restarts and storage of the events of this step.

        Returns ``(t_end, terminating)``: each column's end time (its step end, or the
        terminal event's or the restart's time) and the mask of terminating columns (None
        without events). Sets ``st.restart`` (the event whose affect restarts each column
        at ``t_end``, or -1) where events have ``affect``.
        """
        xp, c = self.xp, self.c
        d = self.at("d", st.idx, self.direction)
        if not self.p.events:
            return st.t_new, None
        t_end = st.t_new.copy()
        terminating = xp.zeros(st.idx.shape, dtype=bool)
        affects = self.p.affects
        if affects:
            st.restart = xp.full(st.idx.shape, -1, dtype=np.int64)
        if not bool(xp.any(any_active)):
            return t_end, terminating
        roots = []
        for e, act in enumerate(st.active):
            root = st.t_new.copy()
            if bool(xp.any(act)):
                root[act] = self.brent(e, st, act)
            if affects:
                # A root exactly at the latest restart does not trigger again.
                act &= ~(root == self.t_rs[st.idx])
                st.active[e] = act
            roots.append(root)
        terminal_occ = []
        for e, (count, _) in enumerate(self.p.event_spec):
            ends = st.active[e] & (self.ev_cnt[e, st.idx] + 1 >= count) if count else None
            terminal_occ.append(ends)
            if count:
                earlier = ends & (~terminating | (d * (roots[e] - t_end) < 0))
                t_end = xp.where(earlier, roots[e], t_end)
                terminating |= ends
        stop = terminating
        if affects:
            # The earliest root of an event with affect (not a terminal occurrence) restarts
            # the column there, unless a terminal occurrence comes at the same time or before.
            rs_t = st.t_new.copy()
            for e, affect in enumerate(affects):
                if affect is None:
                    continue
                occ = st.active[e]
                if terminal_occ[e] is not None:
                    occ = occ & ~terminal_occ[e]
                earlier = occ & ((st.restart < 0) | (d * (roots[e] - rs_t) < 0))
                rs_t = xp.where(earlier, roots[e], rs_t)
                st.restart = xp.where(earlier, e, st.restart)
            win = (st.restart >= 0) & (~terminating | (d * (rs_t - t_end) < 0))
            st.restart = xp.where(win, st.restart, -1)
            t_end = xp.where(win, rs_t, t_end)
            terminating = terminating & ~win
            stop = terminating | win
        for e, act in enumerate(st.active):
            keep = act & (~stop | (d * (roots[e] - t_end) <= 0))
            if not bool(xp.any(keep)):
                continue
            cols = st.idx[keep]
            self.ev_cnt[e, cols] += 1
            slot = self.ev_cnt[e, cols] - 1
            stored = slot < self.p.max_events
            sub = xp.flatnonzero(keep)[stored]
            y_root = self.interpolate(roots[e][sub], st.t[sub], st.y[:, sub], st.y_new[:, sub],
                                      [k_[:, sub] for k_ in st.K], st.h[sub])
            self.ev_t[e, slot[stored], cols[stored]] = roots[e][sub]
            self.ev_y[e, slot[stored], :, cols[stored]] = y_root.T
        return t_end, terminating

    def affect(self, e, t, y, idx):
        """The affect of event ``e`` on columns ``idx``: the new state, an (n, m) array."""
        r = self.p.affects[e](t, y, *self.args_for(idx))
        if len(r) != self.p.n:
            raise ValueError(f"The `affect` of `events[{e}]` returned {len(r)} values: "
                             f"expected n={self.p.n}.")
        out = self.xp.empty(y.shape, dtype=self.dtype)
        for j, v in enumerate(r):
            out[j] = v
        return out

    def restart(self, cols, t, y_root, which):
        """Columns ``cols`` restart at ``t`` from their affected state, as a new solve_ivp:
        f and the event functions evaluated afresh, the initial step selected again."""
        xp, p, c = self.xp, self.p, self.c
        y = y_root.copy()
        for e in range(len(p.events)):
            sel = which == e
            if p.affects[e] is not None and bool(xp.any(sel)):
                y[:, sel] = self.affect(e, t[sel], y_root[:, sel], cols[sel])
        # Chatter: a restart within rounding of the previous one.
        prev = self.t_rs[cols]
        d = self.at("d", cols, self.direction)
        chatter = xp.abs(t - prev) <= CONTROLLER.min_step(prev, d if self.per else self.direction,
                                                         xp)
        self.t_rs[cols] = t
        self.y[:, cols] = y
        f = self.fun(t, y, cols)
        self.nfev[cols] += 1
        self.f[:, cols] = f
        finite = xp.all(xp.isfinite(f), axis=0)
        for e in range(len(p.events)):
            self.ev_g[e, cols] = self.event(e, t, y, cols)
        if p.first_step is not None:
            h = xp.full(t.shape, self.at("first_step", cols, p.first_step), dtype=self.dtype)
        else:
            fin = finite.astype(np.int64)

            def fun1(tt, yy):
                self.nfev[cols] += fin
                return self.fun(tt, yy, cols)

            with np.errstate(all="ignore"):
                # (towards each column's own t1, with its own tolerances: Problem.per)
                atol = self.atol[:, cols] if self.atol.shape[1] > 1 else self.atol
                if self.per:
                    h = CONTROLLER.initial_step(y, f, fun1, t, self.cols["t1"][cols], d, atol,
                                                self.cols["rtol"][cols],
                                                self.cols["max_step"][cols],
                                                self.tab.error_order, p.n, xp)
                else:
                    h = CONTROLLER.initial_step(y, f, fun1, t, p.t1, self.direction, atol,
                                                p.rtol, p.max_step, self.tab.error_order, p.n,
                                                xp)
        self.h_abs[cols] = xp.where(finite, h, c(0)).astype(self.dtype)
        self.status[cols] = xp.where(chatter, FAIL_CHATTER,
                                     xp.where(finite, RUNNING, FAIL_NONFINITE))

    def brent(self, e, st, act):
        """scipy's brentq (xtol = rtol = 4 eps) on the interpolant, for the columns ``act``."""
        xp, c = self.xp, self.c
        sub = xp.flatnonzero(act)
        t, y, y_new, h = st.t[sub], st.y[:, sub], st.y_new[:, sub], st.h[sub]
        K = [k_[:, sub] for k_ in st.K]
        idx = st.idx[sub]

        def g(x):
            return self.event(e, x, self.interpolate(x, t, y, y_new, K, h), idx)

        xtol = c(4 * np.finfo(self.dtype).eps)
        xpre, xcur = t.copy(), st.t_new[sub].copy()
        fpre, fcur = g(xpre), g(xcur)
        root = xp.where(fpre == 0, xpre, xcur)
        done = (fpre == 0) | (fcur == 0)
        same = ~done & ((fpre < 0) == (fcur < 0))
        root = xp.where(same, xp.where(xp.abs(fcur) < xp.abs(fpre), xcur, xpre), root)
        done |= same
        zero = xp.zeros_like(xcur)
        xblk, fblk, spre, scur = zero, zero, zero, zero
        for _ in range(100):
            if bool(xp.all(done)):
                break
            bracket = (fpre != 0) & (fcur != 0) & ((fpre < 0) != (fcur < 0))
            xblk, fblk = xp.where(bracket, xpre, xblk), xp.where(bracket, fpre, fblk)
            spre = scur = xp.where(bracket, xcur - xpre, spre)
            swap = xp.abs(fblk) < xp.abs(fcur)
            xpre, xcur, xblk = (xp.where(swap, xcur, xpre), xp.where(swap, xblk, xcur),
                                xp.where(swap, xcur, xblk))
            fpre, fcur, fblk = (xp.where(swap, fcur, fpre), xp.where(swap, fblk, fcur),
                                xp.where(swap, fcur, fblk))
            delta = (xtol + xtol * xp.abs(xcur)) / c(2)
            sbis = (xblk - xcur) / c(2)
            conv = ~done & ((fcur == 0) | (xp.abs(sbis) < delta))
            root = xp.where(conv, xcur, root)
            done |= conv
            stry = xp.where(
                xpre == xblk, -fcur * (xcur - xpre) / (fcur - fpre),
                -fcur * (fblk * ((fblk - fcur) / (xblk - xcur)) - fpre * ((fpre - fcur) / (xpre - xcur)))
                / (((fblk - fcur) / (xblk - xcur)) * ((fpre - fcur) / (xpre - xcur)) * (fblk - fpre)))
            good = ((xp.abs(spre) > delta) & (xp.abs(fcur) < xp.abs(fpre))
                    & (c(2) * xp.abs(stry) < xp.minimum(xp.abs(spre), c(3) * xp.abs(sbis) - delta)))
            spre, scur = xp.where(good, scur, sbis), xp.where(good, stry, sbis)
            xpre, fpre = xcur, fcur
            xcur = xcur + xp.where(xp.abs(scur) > delta, scur, xp.where(sbis > 0, delta, -delta))
            fcur = xp.where(done, fcur, g(xcur))
            root = xp.where(done, root, xcur)
        return root

    def save_t_eval(self, st, t_end):
        """Interpolate every t_eval point up to each accepted column's ``t_end``, in one pass
        over all (column, point) pairs."""
        xp = self.xp
        ie, count = self.t_eval_pending(st, t_end)
        total = int(count.sum())
        if total == 0:
            return
        # Column of each (column, point) pair: ``repeat(arange, count)`` without array
        # repeats, which CuPy's ``repeat`` does not take.
        ends = xp.cumsum(count)
        cols = xp.searchsorted(ends, xp.arange(total), side="right")
        first = ends - count
        pts = ie[cols] + xp.arange(total) - first[cols]
        if self.per:
            gcols = st.idx[cols]
            pts = self.cols["row0"][gcols] + pts * self.cols["row_step"][gcols]
            te = self.te_at(pts, gcols)
        else:
            te = self.t_eval[pts]
        ys = self.interpolate(te, st.t[cols], st.y[:, cols], st.y_new[:, cols],
                              [k_[:, cols] for k_ in st.K], st.h[cols])
        self.out_eval[pts, :, st.idx[cols]] = ys.T
        self.ie[st.idx] = ie + count

    def run(self, bar=None, check_every=1):
        self.initialise()
        while self.step():
            if bar is not None:
                bar.update_to(self)
        return self.raw()

    def raw(self):
        raw = dict(t_final=self.t, y_final=self.y, status=self.status, nfev=self.nfev,
                   naccept=self.nacc, nreject=self.nrej, y_eval=self.out_eval)
        if self.linear is not None:
            raw.update(njev=self.linear.njev, nlu=self.linear.nlu)
        if self.p.events:
            raw.update(ev_t=self.ev_t, ev_y=self.ev_y, ev_cnt=self.ev_cnt)
        if self.p.dense_output:
            raw.update(self.dense.raw())
        return raw


class _Step:
    """The accepted part of one lockstep iteration: columns, their step and stages."""

    def __init__(self, idx, t, y, y_new, K, h, t_new):
        self.idx, self.t, self.y, self.y_new, self.K, self.h, self.t_new = (
            idx, t, y, y_new, K, h, t_new)
        self.active = []
