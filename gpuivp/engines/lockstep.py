"""The lockstep engine: all trajectories step together on ``(n, k)`` arrays.

Each column has its own ``t``, step size, status and counters; every iteration
is one step attempt for each running column, accepted or rejected by masks
(torchode's scheme) with scipy's rules, so each column takes the steps scipy
would take for that trajectory. The user's vectorized ``fun`` is called on the
running columns only. Written once against an array namespace ``xp`` (NumPy
here; CuPy for the ``cupy`` backend).
"""
from __future__ import annotations

import numpy as np

from .._status import FAIL_MAXSTEPS, FAIL_NONFINITE, FAIL_STEP, INIT, REJECTED, RUNNING


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
        self.n_eval = 0 if p.t_eval is None else len(p.t_eval)
        self.out_eval = xp.full((self.n_eval, n, k), np.nan, dtype=self.dtype) \
            if self.n_eval else None
        self.atol = xp.asarray(p.atol, dtype=self.dtype)[:, None]
        self.args = tuple(xp.asarray(a) if kind != "scalar" else a
                          for a, kind in zip(p.args, p.arg_kinds))
        self.y = xp.asarray(p.y0, dtype=self.dtype).copy()
        self.f = xp.zeros((n, k), dtype=self.dtype)
        self.t = xp.full(k, p.t0, dtype=self.dtype)
        self.h_abs = xp.zeros(k, dtype=self.dtype)
        self.err = xp.zeros(k, dtype=self.dtype)
        self.status = xp.full(k, INIT, dtype=np.int64)
        self.nfev = xp.zeros(k, dtype=np.int64)
        self.nacc = xp.zeros(k, dtype=np.int64)
        self.nrej = xp.zeros(k, dtype=np.int64)
        self.ie = xp.zeros(k, dtype=np.int64)
        self._args_cache = (None, None)

    # -- helpers -----------------------------------------------------------------
    def c(self, value):
        return self.dtype.type(value)

    def fun(self, t, y, idx):
        """``fun`` on columns ``idx``: returns an (n, m) array."""
        xp = self.xp
        prev_idx, prev_args = self._args_cache
        if prev_idx is idx:
            args = prev_args
        else:
            args = tuple(a[..., idx] if kind.startswith("traj") else a
                         for a, kind in zip(self.args, self.p.arg_kinds))
            self._args_cache = (idx, args)
        r = self.p.fun(t, y, *args)
        if len(r) != self.p.n:
            raise ValueError(f"`fun` returned {len(r)} values: expected n={self.p.n}.")
        out = xp.empty(y.shape, dtype=self.dtype)
        for j, v in enumerate(r):
            out[j] = v
        return out

    def lincomb(self, coefs, K, start=None):
        """``sum_s coefs[s] K[s]`` over nonzero coefficients (or ``start`` if all zero)."""
        acc = start
        for cf, k in zip(coefs, K):
            if cf != 0:
                term = self.c(cf) * k
                acc = term if acc is None else acc + term
        return acc if acc is not None else self.xp.zeros_like(K[0])

    def stages(self, t, y, f, h, idx):
        """scipy's ``rk_step``: returns (y_new, K) with K[-1] = f(t + h, y_new)."""
        tab = self.tab
        K = [f]
        for s in range(1, tab.n_stages):
            dy = self.lincomb(tab.a[s, :s], K) * h
            K.append(self.fun(t + self.c(tab.c[s]) * h, y + dy, idx))
        y_new = y + h * self.lincomb(tab.b, K)
        K.append(self.fun(t + h, y_new, idx))
        return y_new, K

    def error_norm(self, y, y_new, K, h):
        xp, tab = self.xp, self.tab
        scale = self.atol + xp.maximum(xp.abs(y), xp.abs(y_new)) * self.c(self.p.rtol)
        n = self.p.n
        if tab.kind == "dop853":
            e5 = self.lincomb(tab.extra["e5"], K) / scale
            e3 = self.lincomb(tab.extra["e3"], K) / scale
            s5 = xp.sum(e5 * e5, axis=0)
            s3 = xp.sum(e3 * e3, axis=0)
            both0 = (s5 == 0) & (s3 == 0)
            err = xp.abs(h) * s5 / xp.sqrt((s5 + self.c(0.01) * s3) * self.c(n))
            return xp.where(both0, self.c(0), err)
        e = self.lincomb(tab.e, K) * h / scale
        return xp.sqrt(xp.sum(e * e, axis=0)) / self.c(n ** 0.5)

    def interpolate(self, te, t, y, y_new, K, h):
        """The step's dense output at ``te`` (one time per column)."""
        x = (te - t) / h
        tab = self.tab
        if tab.kind == "dop853":
            d = tab.extra["d"]
            F0 = y_new - y
            F = [F0, h * K[0] - F0, self.c(2) * F0 - h * (K[tab.n_stages] + K[0])]
            F += [h * self.lincomb(d[r], K) for r in range(d.shape[0])]
            acc = self.xp.zeros_like(y)
            for i, fr in enumerate(reversed(F)):
                acc = (acc + fr) * (x if i % 2 == 0 else self.c(1) - x)
            return acc + y
        p = tab.p
        xp_ = x
        acc = None
        for q in range(p.shape[1]):
            term = self.lincomb(p[:, q], K) * xp_
            acc = term if acc is None else acc + term
            xp_ = xp_ * x
        return h * acc + y

    def extra_stages(self, t, y, K, h, idx):
        """DOP853's three extra stages for its interpolant."""
        tab = self.tab
        K = list(K)
        s0 = tab.n_stages + 1
        for r, (arow, cx) in enumerate(zip(tab.extra["a_extra"], tab.extra["c_extra"])):
            dy = self.lincomb(arow[:s0 + r], K) * h
            K.append(self.fun(t + self.c(cx) * h, y + dy, idx))
        return K

    # -- the run -----------------------------------------------------------------------
    def initialise(self):
        xp, p = self.xp, self.p
        idx = xp.arange(p.k)
        t0 = self.c(p.t0)
        self.f = self.fun(self.t, self.y, idx)
        self.nfev[:] = 1
        finite = xp.all(xp.isfinite(self.f), axis=0)
        self.status = xp.where(finite, RUNNING, FAIL_NONFINITE).astype(np.int64)
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
        # scipy's select_initial_step, per column.
        d = self.c(self.direction)
        y, f = self.y, self.f
        scale = self.atol + xp.abs(y) * self.c(p.rtol)
        rn = self.c(p.n ** 0.5)
        with np.errstate(all="ignore"):
            d0 = xp.sqrt(xp.sum((y / scale) ** 2, axis=0)) / rn
            d1 = xp.sqrt(xp.sum((f / scale) ** 2, axis=0)) / rn
            h0 = xp.where((d0 < 1e-5) | (d1 < 1e-5), self.c(1e-6), self.c(0.01) * d0 / d1)
            interval = self.c(abs(p.t1 - p.t0))
            h0 = xp.where(interval < h0, interval, h0)
            f1 = self.fun(t0 + h0 * d, y + h0 * d * f, idx)
            self.nfev += 1
            d2 = xp.sqrt(xp.sum(((f1 - f) / scale) ** 2, axis=0)) / rn / h0
            small = (d1 <= 1e-15) & (d2 <= 1e-15)
            dm = xp.where(d2 > d1, d2, d1)
            h1 = xp.where(small, xp.where(h0 * self.c(1e-3) < 1e-6, self.c(1e-6),
                                          h0 * self.c(1e-3)),
                          (self.c(0.01) / dm) ** self.c(1.0 / (self.tab.error_order + 1)))
            h = self.c(100) * h0
            for bound in (h1, interval, self.c(p.max_step)):
                h = xp.where(bound < h, bound, h)
        self.h_abs = xp.where(finite, h, self.c(0)).astype(self.dtype)

    def step(self):
        """One attempt for every running column."""
        xp, p, tab = self.xp, self.p, self.tab
        idx = xp.flatnonzero(self.status >= RUNNING)
        if idx.size == 0:
            return False
        c = self.c
        d = c(self.direction)
        t = self.t[idx]
        st = self.status[idx]
        natt = self.nacc[idx] + self.nrej[idx]
        if self.fixed:
            nacc = self.nacc[idx]
            over = nacc >= p.max_steps
            if bool(xp.any(over)):
                self.status[idx[over]] = FAIL_MAXSTEPS
                idx, t, nacc = idx[~over], t[~over], nacc[~over]
                if idx.size == 0:
                    return True
            t_new = xp.where(nacc + 1 >= p.n_fixed, c(p.t1),
                             c(p.t0) + (nacc + 1).astype(self.dtype) * c(p.dt) * d)
            h = t_new - t
        else:
            h_abs = self.h_abs[idx]
            min_step = c(10) * xp.abs(xp.nextafter(t, d * c(np.inf)) - t)
            new = st == RUNNING
            h_abs = xp.where(new & (h_abs > c(p.max_step)), c(p.max_step),
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
                if idx.size == 0:
                    return True
            t_new = t + h_abs * d
            t_new = xp.where(d * (t_new - c(p.t1)) > 0, c(p.t1), t_new)
            h = t_new - t
            h_abs = xp.abs(h)
        y = self.y[:, idx]
        y_new, K = self.stages(t, y, self.f[:, idx], h, idx)
        self.nfev[idx] += tab.n_stages
        if self.fixed:
            accept = xp.all(xp.isfinite(y_new), axis=0)
            self.status[idx[~accept]] = FAIL_NONFINITE
        else:
            with np.errstate(all="ignore"):
                err = self.error_norm(y, y_new, K, h)
                expo = c(tab.error_exponent)
                grow = xp.where(err == 0, c(10), xp.minimum(c(10), c(0.9) * err ** expo))
                grow = xp.where(st == REJECTED, xp.minimum(c(1), grow), grow)
                shrink = c(0.9) * err ** expo
                shrink = xp.where(shrink > c(0.2), shrink, c(0.2))  # NaN -> 0.2, as scipy
            accept = err < 1
            self.err[idx] = err
            self.h_abs[idx] = h_abs * xp.where(accept, grow, shrink)
            self.status[idx] = xp.where(accept, RUNNING, REJECTED)
            self.nrej[idx] += ~accept
        if not bool(xp.any(accept)):
            return True
        a = accept
        ia, ta, ha, tn = idx[a], t[a], h[a], t_new[a]
        ya, yna = y[:, a], y_new[:, a]
        Ka = [k_[:, a] for k_ in K]
        if self.n_eval:
            self.save_t_eval(ia, ta, ya, yna, Ka, ha, tn)
        self.nacc[ia] += 1
        self.y[:, ia] = yna
        self.f[:, ia] = Ka[tab.n_stages]
        self.t[ia] = tn
        if self.fixed:
            done = self.nacc[ia] >= p.n_fixed
        else:
            done = d * (tn - c(p.t1)) >= 0
        self.status[ia[done]] = 0
        return True

    def save_t_eval(self, idx, t, y, y_new, K, h, t_new):
        """Interpolate every t_eval point inside each accepted step."""
        xp = self.xp
        d = self.c(self.direction)
        have_extra = self.tab.kind != "dop853"
        while True:
            ie = self.ie[idx]
            pending = ie < self.n_eval
            te = self.t_eval[xp.minimum(ie, self.n_eval - 1)]
            pending &= d * (te - t_new) <= 0
            if not bool(xp.any(pending)):
                return
            if not have_extra:
                # Extra stages for every column with a point in this step (all are pending now).
                sel = pending
                Kx = self.extra_stages(t[sel], y[:, sel], [k_[:, sel] for k_ in K], h[sel],
                                       idx[sel])
                self.nfev[idx[sel]] += self.tab.n_extra
                idx, t, y, y_new, h, t_new = (idx[sel], t[sel], y[:, sel], y_new[:, sel],
                                              h[sel], t_new[sel])
                K = Kx
                have_extra = True
                continue
            s = pending
            ys = self.interpolate(te[s], t[s], y[:, s], y_new[:, s], [k_[:, s] for k_ in K], h[s])
            self.out_eval[ie[s], :, idx[s]] = ys.T
            self.ie[idx[s]] += 1

    def run(self, bar=None, check_every=1):
        self.initialise()
        while self.step():
            if bar is not None:
                bar.update_to(self)
        return self.raw()

    def raw(self):
        return dict(t_final=self.t, y_final=self.y, status=self.status, nfev=self.nfev,
                    naccept=self.nacc, nreject=self.nrej, y_eval=self.out_eval)
