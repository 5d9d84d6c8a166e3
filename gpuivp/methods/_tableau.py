"""The tableau value object every backend reads."""
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True, eq=False)
class Tableau:
    """An explicit Runge-Kutta method as data.

    Notation follows scipy's ``RungeKutta``: ``K`` holds ``n_stages + 1`` rows,
    the last being ``f(t + h, y_new)``, which is the next step's first stage.

    Parameters
    ----------
    name : str
        The public method name.
    c, a, b : ndarray
        Nodes ``(s,)``, strictly lower triangular matrix ``(s, s)``, weights ``(s,)``.
    order : int
        Order of the propagated solution.
    error_order : int or None
        Order of the embedded error estimator; ``None`` for fixed-step methods.
    e : ndarray or None
        Error weights ``(s + 1,)`` applied to ``K`` (scipy's ``E``).
    p : ndarray
        Dense-output matrix ``(s + 1, d)``: ``y(t_old + x h) = y_old + h K^T P [x, x^2, ...]``.
    kind : {"standard", "dop853"}
        DOP853 has its own error estimate (``e3``, ``e5``) and interpolant
        (``a_extra``, ``c_extra``, ``d``), exactly as in scipy.
    """

    name: str
    c: np.ndarray
    a: np.ndarray
    b: np.ndarray
    order: int
    error_order: int | None
    e: np.ndarray | None
    p: np.ndarray | None
    kind: str = "standard"
    extra: dict = field(default_factory=dict)

    def __post_init__(self):
        c, a, b = (np.asarray(x, dtype=float) for x in (self.c, self.a, self.b))
        s = len(c)
        if a.shape[0] == s and a.shape[1] < s:  # scipy omits the zero last column
            a = np.pad(a, ((0, 0), (0, s - a.shape[1])))
        object.__setattr__(self, "c", c)
        object.__setattr__(self, "a", a)
        object.__setattr__(self, "b", b)
        if a.shape != (s, s) or b.shape != (s,):
            raise ValueError(f"{self.name}: inconsistent tableau shapes")
        if np.any(np.triu(a) != 0):
            raise ValueError(f"{self.name}: `a` must be strictly lower triangular")
        if not np.allclose(a.sum(axis=1), c, atol=1e-14, rtol=0):
            raise ValueError(f"{self.name}: row sums of `a` differ from `c`")
        if not np.isclose(b.sum(), 1.0, atol=1e-14, rtol=0):
            raise ValueError(f"{self.name}: weights `b` do not sum to 1")
        if self.e is not None and not np.isclose(np.sum(self.e), 0.0, atol=1e-14):
            raise ValueError(f"{self.name}: error weights do not sum to 0")
        if self.p is not None and np.asarray(self.p).shape[0] != s + 1:
            raise ValueError(f"{self.name}: `p` must have n_stages + 1 rows")

    @property
    def n_stages(self) -> int:
        return len(self.c)

    @property
    def adaptive(self) -> bool:
        return self.error_order is not None

    @property
    def error_exponent(self) -> float:
        return -1.0 / (self.error_order + 1)

    @property
    def n_interp_rows(self) -> int:
        """Coefficient rows of one step's interpolant per component (scipy's Q, or DOP853's F)."""
        return 3 + self.extra["d"].shape[0] if self.kind == "dop853" else self.p.shape[1]

    @property
    def n_extra(self) -> int:
        """Function evaluations spent to build the interpolant of one step."""
        return len(self.extra.get("c_extra", ()))


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
