"""Rosenbrock (linearly implicit) methods as data: :class:`RosenbrockTableau`.

A Rosenbrock step solves, for each stage ``i`` (``kappa_i`` in the units of ``y``),

    (I / (h gamma) - J) kappa_i = F_i + sum_{j<i} G[i, j] F_j + sum_{j<i} C[i, j] / h kappa_j
                                  + d[i] h f_t,
    F_i = f(t + c[i] h, y + sum_{j<i} a[i, j] kappa_j),          F_0 = f(t, y),

with ``J = df/dy`` and ``f_t = df/dt`` at ``(t, y)``; then ``y_new = y + sum_i b[i] kappa_i``.
This is Hairer–Wanner's form with one addition, ``G`` (earlier function values on the
right-hand side), which Shampine–Reichelt's ``ode23s`` needs. One matrix
``I / (h gamma) - J`` and one LU per step attempt serve every stage.

The engines hand the step's stages to the error estimate and the interpolant as
``K = [kappa_0 / h, ..., kappa_{s-1} / h, f(t + h, y_new)]`` (derivative units, as the
explicit methods' ``K``), so :class:`~gpuivp.methods.Interpolant` and the error norm are
shared with the explicit methods.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._tableau import Interpolant

#: Backends whose engines run the Rosenbrock step (the others refuse these methods).
ROSENBROCK_BACKENDS = ("numpy",)


@dataclass(frozen=True, eq=False)
class RosenbrockTableau:
    """A Rosenbrock (W-) method as data; the engines read fields, never the name.

    Checked on construction: the shapes, ``a``, ``C``, ``G`` strictly lower triangular and
    the interpolant running from ``y_old`` (``x = 0``) to ``y_new`` (``x = 1``).
    """

    #: The public method name (registry key; never read by an engine's logic).
    name: str
    #: The diagonal ``gamma`` of the linear systems: the matrix is ``I / (h gamma) - J``.
    gamma: float
    #: Nodes (``(s,)``): stage ``i`` evaluates ``f`` at ``t + c[i] h``.
    c: np.ndarray
    #: Time-derivative weights (``(s,)``): ``d[i] h f_t`` on stage ``i``'s right-hand side.
    d: np.ndarray
    #: Stage arguments on earlier ``kappa`` (``(s, s)``, strictly lower triangular).
    a: np.ndarray
    #: Coupling on earlier ``kappa`` (``(s, s)``, strictly lower, divided by ``h``).
    C: np.ndarray
    #: Weights of earlier function values ``F_j`` (``(s, s)``, strictly lower).
    G: np.ndarray
    #: Weights of the propagated solution on ``kappa`` (``(s,)``).
    b: np.ndarray
    #: Order of the propagated solution.
    order: int
    #: Order of the error estimator: the controller's exponent is ``-1 / (error_order + 1)``.
    error_order: int
    #: Error weights on ``K`` (``(s + 1,)``, the last on ``f(t + h, y_new)``):
    #: the estimate is ``h sum_s e[s] K[s]``.
    e: np.ndarray
    #: The step's dense output on ``K`` (``p``: ``(s + 1, rows)``).
    interpolant: Interpolant
    #: Backends whose engines run this method.
    backends: tuple = ROSENBROCK_BACKENDS

    #: Engines read this to compose the linear-solve part into their step.
    linear_solve = True
    #: No combined (DOP853-style) error norm.
    e_low = None

    def __post_init__(self):
        s = len(np.asarray(self.c))
        for name in ("c", "d", "b"):
            v = np.asarray(getattr(self, name), dtype=float)
            if v.shape != (s,):
                raise ValueError(f"{self.name}: `{name}` must have {s} entries")
            object.__setattr__(self, name, v)
        for name in ("a", "C", "G"):
            m = np.asarray(getattr(self, name), dtype=float)
            if m.shape != (s, s) or np.any(np.triu(m) != 0):
                raise ValueError(f"{self.name}: `{name}` must be strictly lower triangular "
                                 f"({s}, {s})")
            object.__setattr__(self, name, m)
        # No row-sum check on `a`: it weighs kappa (units of y), not h f.
        e = np.asarray(self.e, dtype=float)
        if e.shape != (s + 1,):  # weights on kappa need not sum to 0 (kappa_2 is a difference)
            raise ValueError(f"{self.name}: `e` must have {s + 1} entries")
        object.__setattr__(self, "e", e)
        if not isinstance(self.interpolant, Interpolant) or self.interpolant.p.shape[0] != s + 1:
            raise ValueError(f"{self.name}: the interpolant needs {s + 1} rows of `p`")
        rng = np.random.default_rng(0)
        K = list(rng.standard_normal((s + 1, 3)))
        h, y_old = 0.3, rng.standard_normal(3)
        y_new = y_old + h * sum(bi * k for bi, k in zip(self.b, K))
        rows = self.interpolant.rows(y_old, y_new, K, h,
                                     lambda cf, K: sum(x * k for x, k in zip(cf, K)))
        for x, want in ((0.0, y_old), (1.0, y_new)):
            if not np.allclose(self.interpolant.evaluate(rows, x, h, y_old), want,
                               rtol=1e-12, atol=1e-12):
                raise ValueError(f"{self.name}: the interpolant misses y at x = {x:g}")

    @property
    def n_stages(self) -> int:
        return len(self.c)

    @property
    def fsal(self) -> bool:
        """The last stage is evaluated at ``(t + h, y_new)``: its ``F`` is the next ``f``."""
        return bool(self.c[-1] == 1 and np.array_equal(self.a[-1], self.b))

    @property
    def fev_per_step(self) -> int:
        """Function evaluations of one step attempt, Jacobian and ``f_t`` not included."""
        return self.n_stages - 1 + (0 if self.fsal else 1)

    n_extra = 0
    c_extra = np.zeros(0)
    a_extra = np.zeros((0, 0))
    adaptive = True
    combined_error = False

    @property
    def n_k(self) -> int:
        return self.n_stages + 1

    @property
    def error_exponent(self) -> float:
        return -1.0 / (self.error_order + 1)

    @property
    def n_interp_rows(self) -> int:
        return self.interpolant.n_rows


def _rosenbrock23():
    """Shampine & Reichelt (1997), "The MATLAB ODE suite", ``ode23s``, in the form above.

    ``ode23s`` (``W = I - h d J``, ``d = 1 / (2 + sqrt 2)``, ``e32 = 6 + sqrt 2``)::

        k1 = W \\ (F0 + h d T);  F1 = f(t + h/2, y + h/2 k1);  k2 = W \\ (F1 - k1) + k1
        y_new = y + h k2;  F2 = f(t + h, y_new)
        k3 = W \\ (F2 - e32 (k2 - F1) - 2 (k1 - F0) + h d T);  err = h/6 (k1 - 2 k2 + k3)
        y(x) = y + h (x (1 - x) k1 + x (x - 2 d) k2) / (1 - 2 d)

    With ``kappa_1 = h d k1``, ``kappa_2 = h d (k2 - k1)``, ``kappa_3 = h d k3`` these are
    the rows below (``gamma = d``).
    """
    g = 1.0 / (2.0 + np.sqrt(2.0))
    e32 = 6.0 + np.sqrt(2.0)
    a = np.zeros((3, 3))
    a[1, 0] = 0.5 / g
    a[2, 0] = a[2, 1] = 1.0 / g
    C = np.zeros((3, 3))
    C[1, 0] = -1.0 / g
    C[2, 0] = -(e32 + 2.0) / g
    C[2, 1] = -e32 / g
    G = np.zeros((3, 3))
    G[2, 0] = 2.0
    G[2, 1] = e32
    b = np.array([1.0 / g, 1.0 / g, 0.0])
    # err = (-kappa_1 - 2 kappa_2 + kappa_3) / (6 g) = h sum e K with K = kappa / h
    e = np.array([-1.0, -2.0, 1.0, 0.0]) / (6.0 * g)
    # y(x) = y + h (R0 x + R1 x^2), R0 = K1 / g - 2 K2 / (1 - 2 g), R1 = K2 / (g (1 - 2 g))
    p = np.zeros((4, 2))
    p[0, 0] = 1.0 / g
    p[1, 0] = -2.0 / (1.0 - 2.0 * g)
    p[1, 1] = 1.0 / (g * (1.0 - 2.0 * g))
    return RosenbrockTableau(name="Rosenbrock23", gamma=g, c=[0.0, 0.5, 1.0],
                             d=[g, 0.0, g], a=a, C=C, G=G, b=b, order=2, error_order=2,
                             e=e, interpolant=Interpolant(p))


ROSENBROCK23 = _rosenbrock23()
