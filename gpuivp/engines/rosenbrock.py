"""The Rosenbrock parts of the lockstep engine: Jacobians, a batched LU and the stages.

Composed into :class:`~gpuivp.engines.lockstep.Lockstep` when the tableau has
``linear_solve`` (a :class:`~gpuivp.methods.RosenbrockTableau`). Written against an
array namespace ``xp``: every operation is batched over the running columns; the only
Python loops run over the ``n`` components (LU elimination, finite differences).
"""
from __future__ import annotations

import numpy as np

from .._status import REJECTED


def lu_factor(A, xp=np):
    """LU with partial pivoting of a stack of matrices ``A`` (``(n, n, m)``: matrix ``c`` is
    ``A[:, :, c]``; overwritten), every operation on contiguous ``(m,)`` rows.

    Returns ``(LU, perm, singular)``: ``perm[:, c]`` the row order of matrix ``c`` after its
    swaps (``P A = L U``; the largest pivot of each column, as LAPACK's ``getrf``) and
    ``singular`` the matrices with an exactly zero pivot (their factor is finished with unit
    pivots and never used).
    """
    n, m = A.shape[0], A.shape[2]
    ar = xp.arange(m)
    perm = xp.broadcast_to(xp.arange(n)[:, None], (n, m)).copy()
    singular = xp.zeros(m, dtype=bool)
    one = A.dtype.type(1)
    for k in range(n):
        if k + 1 < n:
            p = k + xp.argmax(xp.abs(A[k:, k]), axis=0)
            row_k, pk = A[k].copy(), perm[k].copy()
            A[k] = A[p, :, ar].T
            A[p, :, ar] = row_k.T
            perm[k] = perm[p, ar]
            perm[p, ar] = pk
        pivot = A[k, k]
        zero = pivot == 0
        singular |= zero
        A[k, k] = xp.where(zero, one, pivot)
        if k + 1 < n:
            A[k + 1:, k] /= A[k, k]
            A[k + 1:, k + 1:] -= A[k + 1:, k][:, None] * A[k, k + 1:][None]
    return A, perm, singular


def flat_perm(perm, xp=np):
    """``perm`` of :func:`lu_factor` as flat indices into an ``(n, m)`` array (row-major):
    :func:`lu_solve` gathers its right-hand side with one ``take`` (ten times faster than
    ``take_along_axis`` on ``(3, 10^4)``); compute it once per factorisation."""
    return perm * perm.shape[1] + xp.arange(perm.shape[1])


def lu_solve(LU, perm, b, xp=np, flat=None):
    """Solve ``A x = b`` for each column of ``b`` (``(n, m)``) from :func:`lu_factor`
    (``flat``: :func:`flat_perm` of ``perm``, where already computed).

    Each component is summed in the order ``j = 0, 1, ...`` (forward) and ``n - 1, ...``
    (backward), as a per-trajectory loop would.
    """
    n = LU.shape[0]
    x = xp.take(b, flat_perm(perm, xp) if flat is None else flat)
    for k in range(n - 1):
        x[k + 1:] -= LU[k + 1:, k] * x[k]
    for k in range(n - 1, -1, -1):
        x[k] /= LU[k, k]
        if k:
            x[:k] -= LU[:k, k] * x[k]
    return x


class RosenbrockPart:
    """Jacobians (kept across a rejection, as ``ode23s``), the matrix, its LU, the stages."""

    def __init__(self, eng):
        xp, p = eng.xp, eng.p
        self.eng = eng
        n, k = p.n, p.k
        self.J = xp.zeros((n, n, k), dtype=eng.dtype)
        self.T = xp.zeros((n, k), dtype=eng.dtype)
        self.njev = xp.zeros(k, dtype=np.int64)
        self.nlu = xp.zeros(k, dtype=np.int64)
        self.singular = None

    def jac(self, t, y, f, h, idx):
        """``(J, T)``: ``df/dy`` (``(n, n, m)``) and ``df/dt`` (``(n, m)``) at ``(t, y)``.

        ``J`` from the user's ``jac`` or by forward differences with scipy's ``num_jac``
        increments (first call: ``factor = sqrt(eps)``, ``threshold = atol``); ``T`` by one
        forward difference in ``t`` (``ode23s``'s increment). Counts the evaluations.
        """
        eng = self.eng
        xp, p, c = eng.xp, eng.p, eng.c
        n, m = p.n, y.shape[1]
        eps = np.finfo(eng.dtype).eps
        if p.jac is not None:
            J = self.user_jac(t, y, idx)
        else:
            f_sign = xp.where(f >= 0, c(1), c(-1))
            y_scale = f_sign * xp.maximum(eng.atol, xp.abs(y))
            dy = (y + c(eps ** 0.5) * y_scale) - y
            J = xp.empty((n, n, m), dtype=eng.dtype)
            for j in range(n):
                yp = y.copy()
                yp[j] = y[j] + dy[j]
                J[:, j] = (eng.fun(t, yp, idx) - f) / (yp[j] - y[j])
            eng.nfev[idx] += n
        tdel = (t + xp.minimum(c(eps ** 0.5) * xp.maximum(xp.abs(t), xp.abs(t + h)),
                               xp.abs(h))) - t
        T = (eng.fun(t + tdel, y, idx) - f) / tdel
        eng.nfev[idx] += 1
        self.njev[idx] += 1
        return J, T

    def user_jac(self, t, y, idx):
        """The user's ``jac(t, y, *args)`` (vectorized): ``(n, n, m)`` array or rows."""
        eng = self.eng
        xp, p = eng.xp, eng.p
        n, m = p.n, y.shape[1]
        r = p.jac(t, y, *eng.args_for(idx))
        out = xp.empty((n, n, m), dtype=eng.dtype)
        if isinstance(r, (tuple, list)):
            if len(r) != n or any(len(row) != n for row in r):
                raise ValueError(f"`jac` returned rows of shape {[len(row) for row in r]}: "
                                 f"expected {n} rows of {n} values.")
            for i, row in enumerate(r):
                for j, v in enumerate(row):
                    out[i, j] = xp.broadcast_to(xp.asarray(v, dtype=eng.dtype), (m,))
            return out
        arr = xp.asarray(r, dtype=eng.dtype)
        if arr.shape == (n, n):
            arr = arr[:, :, None]
        if arr.ndim != 3 or arr.shape[:2] != (n, n) or arr.shape[2] not in (1, m):
            raise ValueError(f"`jac` returned shape {arr.shape}: expected ({n}, {n}, {m}) "
                             f"(vectorized=True) or ({n}, {n}).")
        out[...] = xp.broadcast_to(arr, (n, n, m))
        return out

    def stages(self, t, y, f, h, idx):
        """One Rosenbrock attempt on columns ``idx``: ``(y_new, K)`` with
        ``K = [kappa_0 / h, ..., f(t + h, y_new)]``; sets :attr:`singular` (per column)."""
        eng = self.eng
        xp, tab, c = eng.xp, eng.tab, eng.c
        new = eng.status[idx] != REJECTED
        if bool(xp.any(new)):
            cols = xp.flatnonzero(new)
            J, T = self.jac(t[cols], y[:, cols], f[:, cols], h[cols], idx[cols])
            self.J[:, :, idx[cols]] = J
            self.T[:, idx[cols]] = T
        n = eng.p.n
        A = -self.J[:, :, idx]
        diag = c(1) / (h * c(tab.gamma))
        A[xp.arange(n), xp.arange(n)] += diag
        LU, piv, self.singular = lu_factor(A, xp)
        flat = flat_perm(piv, xp)
        self.nlu[idx] += 1
        T = self.T[:, idx]
        F, kap = [f], []
        for i in range(tab.n_stages):
            if i:
                u = y + eng.lincomb(tab.a[i, :i], kap)
                F.append(eng.fun(t + c(tab.c[i]) * h, u, idx))
            rhs = F[i]
            if tab.G[i, :i].any():
                rhs = rhs + eng.lincomb(tab.G[i, :i], F[:i])
            if tab.C[i, :i].any():
                rhs = rhs + eng.lincomb(tab.C[i, :i], kap) / h
            if tab.d[i]:
                rhs = rhs + (c(tab.d[i]) * h) * T
            kap.append(lu_solve(LU, piv, rhs, xp, flat))
        y_new = y + eng.lincomb(tab.b, kap)
        f_new = F[-1] if tab.fsal else eng.fun(t + h, y_new, idx)
        return y_new, [k_ / h for k_ in kap] + [f_new]
