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

from ._tableau import Interpolant, StepMethod

#: Backends whose engines run the Rosenbrock step (the others refuse these methods).
ROSENBROCK_BACKENDS = ("numba", "cuda", "numpy", "cupy")


@dataclass(frozen=True, eq=False)
class RosenbrockTableau(StepMethod):
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


def _rodas5p():
    """Steinebach's Rodas5P (2023), order 5(4), stiffly accurate, with its order-4 dense output.

    Coefficients as tabulated in OrdinaryDiffEq.jl (``Rodas5PTableau``), whose step is this
    module's form with ``G = 0``: stages 1-6 from ``a`` and ``C``, then ``y + sum a[5] kappa
    + kappa_6 (+ kappa_7)`` as the arguments of stages 7 and 8 (``c = 1``) and ``y_new`` the
    argument of stage 8 plus ``kappa_8``, which is also the error estimate. The dense output
    ``(1 - x) y_old + x (y_new + (1 - x)(k_1 + x (k_2 + x k_3)))``, ``k_r = sum_j H[r, j]
    kappa_j``, is written here in the power form.
    """
    g = 0.21193756319429014
    a = np.zeros((8, 8))
    a[1, :1] = [3.0]
    a[2, :2] = [2.849394379747939, 0.45842242204463923]
    a[3, :3] = [-6.954028509809101, 2.489845061869568, -10.358996098473584]
    a[4, :4] = [2.8029986275628964, 0.5072464736228206, -0.3988312541770524,
                -0.04721187230404641]
    a[5, :5] = [-7.502846399306121, 2.561846144803919, -11.627539656261098,
                -0.18268767659942256, 0.030198172008377946]
    a[6, :6] = list(a[5, :5]) + [1.0]
    a[7, :7] = list(a[5, :5]) + [1.0, 1.0]
    b = np.array(list(a[5, :5]) + [1.0, 1.0, 1.0])
    C = np.zeros((8, 8))
    C[1, :1] = [-14.155112264123755]
    C[2, :2] = [-17.97296035885952, -2.859693295451294]
    C[3, :3] = [147.12150275711716, -1.41221402718213, 71.68940251302358]
    C[4, :4] = [165.43517024871676, -0.4592823456491126, 42.90938336958603,
                -5.961986721573306]
    C[5, :5] = [24.854864614690072, -3.0009227002832186, 47.4931110020768,
                5.5814197821558125, -0.6610691825249471]
    C[6, :6] = [30.91273214028599, -3.1208243349937974, 77.79954646070892,
                34.28646028294783, -19.097331116725623, -28.087943162872662]
    C[7, :7] = [37.80277123390563, -3.2571969029072276, 112.26918849496327,
                66.9347231244047, -40.06618937091002, -54.66780262877968, -9.48861652309627]
    c = [0.0, 0.6358126895828704, 0.4095798393397535, 0.9769306725060716, 0.4288403609558664,
         1.0, 1.0, 1.0]
    d = [0.21193756319429014, -0.42387512638858027, -0.3384627126235924, 1.8046452872882734,
         2.325825639765069, 0.0, 0.0, 0.0]
    H = np.array([
        [25.948786856663858, -2.5579724845846235, 10.433815404888879, -2.3679251022685204,
         0.524948541321073, 1.1241088310450404, 0.4272876194431874, -0.17202221070155493],
        [-9.91568850695171, -0.9689944594115154, 3.0438037242978453, -24.495224566215796,
         20.176138334709044, 15.98066361424651, -6.789040303419874, -6.710236069923372],
        [11.419903575922262, 2.8879645146136994, 72.92137995996029, 80.12511834622643,
         -52.072871366152654, -59.78993625266729, -0.15582684282751913, 4.883087185713722]])
    # y_old + x D + (x - x^2)(k1 + x k2 + x^2 k3) with D = sum b kappa, per power of x:
    # x: b + H1;  x^2: H2 - H1;  x^3: H3 - H2;  x^4: -H3   (rows on K = kappa / h).
    p = np.zeros((9, 4))
    p[:8, 0] = b + H[0]
    p[:8, 1] = H[1] - H[0]
    p[:8, 2] = H[2] - H[1]
    p[:8, 3] = -H[2]
    e = np.zeros(9)
    e[7] = 1.0
    return RosenbrockTableau(name="Rodas5P", gamma=g, c=c, d=d, a=a, C=C, G=np.zeros((8, 8)),
                             b=b, order=5, error_order=4, e=e, interpolant=Interpolant(p))


RODAS5P = _rodas5p()
