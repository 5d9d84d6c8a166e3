"""The tableau value object every backend reads: an explicit Runge-Kutta method as data.

Everything that differs between methods is a field here, checked on construction (as
Diffrax's ``ButcherTableau.__post_init__``): the stages, the extra stages of an
interpolant, the error estimate (one vector, or two combined as Hairer's DOP853 does),
the interpolant matrix and its form, the orders. The engines read these fields and
never branch on a method's name.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: The interpolant forms :class:`Interpolant` knows (see its ``form``).
FORMS = ("power", "alternating")


def _sums_to(m, want):
    """Whether the rows of ``m`` sum to ``want``, to rounding: 1e-14 relative to the
    row's absolute sum (Verner's rows reach |a| sums of 400 in double)."""
    m = np.atleast_2d(m)
    tol = 1e-14 * np.maximum(1.0, np.abs(m).sum(axis=1))
    return bool(np.all(np.abs(m.sum(axis=1) - want) <= tol))


@dataclass(frozen=True, eq=False)
class Interpolant:
    """A step's dense output as data: coefficient rows from the stages, and their form.

    With ``K`` the step's stage derivatives (``n_stages + 1 + n_extra`` rows: the stages,
    ``f(t + h, y_new)``, then the extra stages) and ``x = (t - t_old) / h``, each
    coefficient row is ``R_q = dy[q] (y_new - y_old) + h^m sum_s p[s, q] K_s`` and

    * ``form="power"`` (scipy's ``RkDenseOutput``, ``m = 0``):
      ``y(x) = y_old + h sum_q R_q x^(q+1)``;
    * ``form="alternating"`` (scipy's ``Dop853DenseOutput``, ``m = 1``):
      ``y(x) = y_old + x (R_0 + (1 - x) (R_1 + x (R_2 + (1 - x) (R_3 + ...))))``.

    Parameters
    ----------
    p : ndarray, shape (n_stages + 1 + n_extra, rows)
        Weight of each stage in each coefficient row.
    form : {"power", "alternating"}
        How the rows are evaluated, above.
    dy : ndarray, shape (rows,), optional
        Weight of ``y_new - y_old`` in each row (``"alternating"`` only; zeros if omitted).
    """

    #: Weight of stage ``s`` in coefficient row ``q``: ``(n_stages + 1 + n_extra, rows)``.
    p: np.ndarray
    #: ``"power"`` (rows times ``x^(q+1)``, scaled by ``h``) or ``"alternating"``
    #: (rows nested with factors ``x``, ``1 - x``, ``x``, ...; rows already carry ``h``).
    form: str = "power"
    #: Weight of ``y_new - y_old`` in each row, ``(rows,)``; all zero for ``"power"``.
    dy: np.ndarray | None = None

    def __post_init__(self):
        p = np.asarray(self.p, dtype=float)
        if p.ndim != 2:
            raise ValueError("interpolant `p` must be a 2-D (stages, rows) matrix")
        if self.form not in FORMS:
            raise ValueError(f"interpolant `form` must be one of {FORMS}, got {self.form!r}")
        dy = np.zeros(p.shape[1]) if self.dy is None else np.asarray(self.dy, dtype=float)
        if dy.shape != (p.shape[1],):
            raise ValueError("interpolant `dy` must have one entry per row of `p`")
        if self.form == "power" and np.any(dy != 0):
            raise ValueError("the power form has no `dy` term")
        object.__setattr__(self, "p", p)
        object.__setattr__(self, "dy", dy)

    @property
    def n_rows(self) -> int:
        """Coefficient rows per component and step (what dense output stores)."""
        return self.p.shape[1]

    @property
    def alternating(self) -> bool:
        """Whether the rows are evaluated in the alternating form (else the power form)."""
        return self.form == "alternating"

    def rows(self, y_old, y_new, K, h, lincomb):
        """The coefficient rows ``R_q`` of one step, on arrays of any namespace.

        ``lincomb(coefs, K)`` is the engine's ``sum_s coefs[s] K[s]`` (over the nonzero
        coefficients, in order of ``s``). A row without stage terms is ``dy (y_new - y_old)``,
        one without ``dy`` is ``h * lincomb`` (power form: ``lincomb``), so that DOP853's rows
        round exactly as scipy's ``F``.
        """
        if not self.alternating:
            return [lincomb(self.p[:, q], K) for q in range(self.n_rows)]
        delta = y_new - y_old
        out = []
        for q in range(self.n_rows):
            col, w = self.p[:, q], self.dy[q]
            if not np.any(col):
                out.append(delta if w == 1 else delta.dtype.type(w) * delta)
            elif w == 0:
                out.append(h * lincomb(col, K))
            else:
                out.append(h * lincomb(col, K) + delta.dtype.type(w) * delta)
        return out

    def evaluate(self, rows, x, h, y_old, xp=np):
        """The interpolant at ``x = (t - t_old) / h`` from its coefficient rows.

        The one definition used while stepping and by :class:`gpuivp.EnsembleSolution`.
        """
        if self.alternating:
            acc = xp.zeros_like(y_old)
            for i, row in enumerate(reversed(rows)):
                acc = (acc + row) * (x if i % 2 == 0 else 1 - x)
            return acc + y_old
        acc, xq = None, x
        for row in rows:
            term = row * xq
            acc = term if acc is None else acc + term
            xq = xq * x
        return h * acc + y_old


class StepMethod:
    """What every method type (:class:`Tableau`, ``RosenbrockTableau``) derives the same way
    from its fields ``error_order`` and ``interpolant``."""

    @property
    def error_exponent(self) -> float:
        """The controller's exponent ``-1 / (q + 1)``, ``q`` the error estimator's order."""
        return -1.0 / (self.error_order + 1)

    @property
    def n_interp_rows(self) -> int:
        """Coefficient rows of one step's interpolant per component."""
        return self.interpolant.n_rows


@dataclass(frozen=True, eq=False)
class Tableau(StepMethod):
    """An explicit Runge-Kutta method as data.

    Notation follows scipy's ``RungeKutta``: a step holds ``K`` with ``n_stages + 1``
    rows, the last being ``f(t + h, y_new)``, which is the next step's first stage
    (every engine evaluates it, FSAL method or not), then the ``n_extra`` extra stages
    an interpolant may need, computed only for steps that interpolate.

    Checked on construction: ``a`` strictly lower triangular with row sums ``c`` (also
    for the extra stages), ``sum(b) = 1``, error weights summing to 0, and the
    interpolant running from ``y_old`` at ``x = 0`` to ``y_new`` at ``x = 1``.
    """

    #: The public method name (registry key; never read by an engine's logic).
    name: str
    #: Nodes of the stages, ``(n_stages,)``; ``c[0] = 0``.
    c: np.ndarray
    #: Stage coefficients, strictly lower triangular ``(n_stages, n_stages)`` (a narrower
    #: matrix, as scipy stores some, is padded with zero columns).
    a: np.ndarray
    #: Weights of the propagated solution, ``(n_stages,)``.
    b: np.ndarray
    #: Order of the propagated solution.
    order: int
    #: Order of the embedded error estimator (scipy's ``error_estimator_order``); ``None``
    #: for a fixed-step method. The controller's exponent is ``-1 / (error_order + 1)``.
    error_order: int | None
    #: Error weights on ``K`` (``n_stages + 1``,): the estimate is ``h sum_s e[s] K[s]``
    #: (scipy's ``E``; DOP853's ``E5``); ``None`` for a fixed-step method.
    e: np.ndarray | None
    #: The step's dense output (``p``: ``(n_stages + 1 + n_extra, rows)``).
    interpolant: Interpolant
    #: A second, lower-order error estimate on ``K`` (``n_stages + 1``,), or ``None``.
    #: When set, the error norm is Hairer's combination of both (DOP853's ``E3``):
    #: ``|h| s_e / sqrt((s_e + 0.01 s_low) n)`` with ``s = sum((est / scale)^2)``.
    e_low: np.ndarray | None = None
    #: Nodes of the interpolant's extra stages, ``(n_extra,)``.
    c_extra: np.ndarray | None = None
    #: Coefficients of the extra stages on ``K``, ``(n_extra, n_stages + 1 + n_extra)``,
    #: extra stage ``r`` reading only ``K[:n_stages + 1 + r]``.
    a_extra: np.ndarray | None = None
    #: First same as last: the method's final stage is ``f(t + h, y_new)``, so its error
    #: estimate reads ``K[n_stages]``. Checked against ``e``; it changes no cost here.
    fsal: bool = False
    #: Where the propagated solution's stability region meets the negative real axis: the
    #: largest ``x`` with ``|R(-s)| <= 1`` on ``[0, x]``, ``R`` the stability polynomial (an
    #: adaptive step on a stiff problem sits near ``h rho(J) = x``). Data, 3 digits; the
    #: tests compute it from ``a`` and ``b``. Read by the stiffness diagnostic.
    stability_boundary: float | None = None

    def __post_init__(self):
        c, a, b = (np.asarray(x, dtype=float) for x in (self.c, self.a, self.b))
        s = len(c)
        if a.ndim == 2 and a.shape[0] == s and a.shape[1] < s:  # scipy omits zero columns
            a = np.pad(a, ((0, 0), (0, s - a.shape[1])))
        object.__setattr__(self, "c", c)
        object.__setattr__(self, "a", a)
        object.__setattr__(self, "b", b)
        if a.shape != (s, s) or b.shape != (s,):
            raise ValueError(f"{self.name}: inconsistent tableau shapes")
        if np.any(np.triu(a) != 0):
            raise ValueError(f"{self.name}: `a` must be strictly lower triangular")
        if not _sums_to(a, c):
            raise ValueError(f"{self.name}: row sums of `a` differ from `c`")
        if not _sums_to(b, 1.0):
            raise ValueError(f"{self.name}: weights `b` do not sum to 1")
        self._check_extra(s)
        for label in ("e", "e_low"):
            self._check_error(label, s)
        if self.e_low is not None and self.e is None:
            raise ValueError(f"{self.name}: `e_low` combines with `e`: give both")
        if (self.error_order is None) != (self.e is None):
            raise ValueError(f"{self.name}: `error_order` and `e` go together")
        uses_f_new = self.e is not None and self.e[s] != 0
        if bool(self.fsal) != bool(uses_f_new):
            raise ValueError(f"{self.name}: `fsal` is {self.fsal} but the error estimate "
                             f"{'reads' if uses_f_new else 'does not read'} f(t + h, y_new)")
        if not isinstance(self.interpolant, Interpolant):
            raise TypeError(f"{self.name}: `interpolant` must be an Interpolant")
        if self.interpolant.p.shape[0] != self.n_k:
            raise ValueError(f"{self.name}: the interpolant's `p` must have "
                             f"n_stages + 1 + n_extra = {self.n_k} rows")
        self._check_interpolant()

    def _check_extra(self, s):
        cx = np.zeros(0) if self.c_extra is None else np.asarray(self.c_extra, dtype=float)
        ax = (np.zeros((0, s + 1)) if self.a_extra is None
              else np.asarray(self.a_extra, dtype=float))
        m = len(cx)
        if ax.ndim != 2 or ax.shape[0] != m or ax.shape[1] > s + 1 + m:
            raise ValueError(f"{self.name}: `a_extra` must be (n_extra, n_stages + 1 + n_extra)")
        ax = np.pad(ax, ((0, 0), (0, s + 1 + m - ax.shape[1])))
        for r in range(m):
            if np.any(ax[r, s + 1 + r:] != 0):
                raise ValueError(f"{self.name}: extra stage {r} may read only earlier stages")
        if not _sums_to(ax, cx):
            raise ValueError(f"{self.name}: row sums of `a_extra` differ from `c_extra`")
        object.__setattr__(self, "c_extra", cx)
        object.__setattr__(self, "a_extra", ax)

    def _check_error(self, label, s):
        v = getattr(self, label)
        if v is None:
            return
        v = np.asarray(v, dtype=float)
        if v.shape != (s + 1,):
            raise ValueError(f"{self.name}: `{label}` must have n_stages + 1 = {s + 1} entries")
        if not _sums_to(v, 0.0):
            raise ValueError(f"{self.name}: error weights `{label}` do not sum to 0")
        object.__setattr__(self, label, v)

    def _check_interpolant(self):
        """y_old at x = 0 and y_new at x = 1, on random stages (a linear identity in K)."""
        rng = np.random.default_rng(0)
        K = list(rng.standard_normal((self.n_k, 3)))
        h, y_old = 0.3, rng.standard_normal(3)
        y_new = y_old + h * sum(bi * k for bi, k in zip(self.b, K))

        def lincomb(coefs, K):
            return sum(cf * k for cf, k in zip(coefs, K))

        rows = self.interpolant.rows(y_old, y_new, K, h, lincomb)
        for x, want in ((0.0, y_old), (1.0, y_new)):
            got = self.interpolant.evaluate(rows, x, h, y_old)
            if not np.allclose(got, want, rtol=1e-12, atol=1e-12):
                raise ValueError(f"{self.name}: the interpolant does not reach "
                                 f"{'y_old' if x == 0 else 'y_new'} at x = {x:g}")

    @property
    def n_stages(self) -> int:
        """Stages of one step; with ``f(t + h, y_new)`` the function evaluations per step."""
        return len(self.c)

    @property
    def fev_per_step(self) -> int:
        """Function evaluations of one step attempt (the stages and ``f(t + h, y_new)``)."""
        return self.n_stages

    @property
    def n_extra(self) -> int:
        """Function evaluations spent to build the interpolant of one step."""
        return len(self.c_extra)

    @property
    def n_k(self) -> int:
        """Rows of ``K``: the stages, ``f(t + h, y_new)`` and the extra stages."""
        return self.n_stages + 1 + self.n_extra

    @property
    def adaptive(self) -> bool:
        return self.error_order is not None

    @property
    def combined_error(self) -> bool:
        """Whether the error norm combines ``e`` with ``e_low`` (Hairer's DOP853 norm)."""
        return self.e_low is not None



def hermite_p(b):
    """Dense-output matrix of the cubic Hermite interpolant through y, f at both ends.

    With ``K = [k_0, ..., k_{s-1}, f_new]`` and ``(y_new - y_old) / h = sum b_i k_i``,
    the Hermite cubic is ``y_old + h (k_0 x + (3 D - 2 k_0 - f_new) x^2 + (k_0 + f_new - 2 D) x^3)``.
    """
    b = np.asarray(b, dtype=float)
    s = len(b)
    p = np.zeros((s + 1, 3))
    p[0, 0] = 1.0
    p[:s, 1] = 3 * b
    p[0, 1] -= 2
    p[s, 1] = -1
    p[:s, 2] = -2 * b
    p[0, 2] += 1
    p[s, 2] = 1
    return p
