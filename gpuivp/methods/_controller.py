"""The step-size controller: scipy's constants and rules in one place.

scipy's ``RungeKutta._step_impl`` and ``select_initial_step``, written once against an
array namespace ``xp`` for the lockstep engines (one value per column); the CUDA C++
kernels get the same constants as macros (:meth:`StepController.macros`). The
per-trajectory engine reads the constants from :data:`CONTROLLER` too.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def libm_pow(x, p):
    """``x ** p`` elementwise, rounded as C's ``pow`` (scipy's scalar ``err ** exponent``).

    NumPy's array ``**`` uses SVML's vectorised ``pow`` on AVX-512 CPUs, which differs from
    libm's in the last bit for about 6 % of arguments; ``np.float_power`` calls libm. One ulp
    in a step-size factor is enough to move DOP853's later steps visibly. Arrays of other
    types (CuPy's on a GPU) and other dtypes keep ``**``.
    """
    if isinstance(x, np.ndarray) and x.dtype == np.float64:
        return np.float_power(x, p)
    return x ** p


@dataclass(frozen=True)
class StepController:
    """scipy's integral controller: ``h_new = h * clip(safety * err^exponent)``."""

    #: Safety factor on the optimal step (scipy's ``SAFETY``).
    safety: float = 0.9
    #: Smallest factor a step may shrink by on rejection (scipy's ``MIN_FACTOR``).
    min_factor: float = 0.2
    #: Largest factor a step may grow by (scipy's ``MAX_FACTOR``); 1 after a rejection.
    max_factor: float = 10.0
    #: The minimum step is this many spacings of ``t`` (scipy: ``10 * np.spacing(t)``).
    min_step_spacings: float = 10.0

    @staticmethod
    def exponent(tableau) -> float:
        """``-1 / (q + 1)`` with ``q`` the error estimator's order."""
        return tableau.error_exponent

    def min_step(self, t, direction, xp=np):
        """``min_step_spacings`` spacings of ``t`` towards the direction of integration."""
        c = t.dtype.type
        towards = direction * c(np.inf) if np.ndim(direction) else c(direction) * c(np.inf)
        return c(self.min_step_spacings) * xp.abs(xp.nextafter(t, towards) - t)

    def factor(self, err, expo, rejected, xp=np):
        """``(accept, factor)`` of each column: ``err < 1``, and the next step's ``h`` ratio.

        ``rejected`` marks columns whose previous attempt was rejected (no growth then).
        A NaN ``err`` rejects with ``min_factor``, as scipy.
        """
        c = err.dtype.type
        with np.errstate(all="ignore"):
            scaled = c(self.safety) * libm_pow(err, c(expo))
            grow = xp.where(err == 0, c(self.max_factor), xp.minimum(c(self.max_factor), scaled))
            grow = xp.where(rejected, xp.minimum(c(1), grow), grow)
            shrink = xp.where(scaled > c(self.min_factor), scaled, c(self.min_factor))
        accept = err < 1
        return accept, xp.where(accept, grow, shrink)

    def initial_step(self, y, f, fun, t0, t1, direction, atol, rtol, max_step, error_order,
                     n, xp=np):
        """scipy's ``select_initial_step`` per column; ``fun(t, y)`` evaluates one more stage.

        Returns ``h_abs`` per column; ``atol`` broadcasts against ``y`` (``(n, 1)``).
        """
        from ..engines.lockstep import sum_rows

        c = y.dtype.type
        # Scalars, or (k,) arrays of the working dtype (per-trajectory problem data).
        cast = lambda v: v if np.ndim(v) else c(v)  # noqa: E731
        d = cast(direction)
        scale = atol + xp.abs(y) * cast(rtol)
        rn = c(n ** 0.5)
        with np.errstate(all="ignore"):
            d0 = xp.sqrt(sum_rows((y / scale) ** 2)) / rn
            d1 = xp.sqrt(sum_rows((f / scale) ** 2)) / rn
            h0 = xp.where((d0 < 1e-5) | (d1 < 1e-5), c(1e-6), c(0.01) * d0 / d1)
            interval = cast(abs(t1 - t0))
            h0 = xp.where(interval < h0, interval, h0)
            f1 = fun(cast(t0) + h0 * d, y + h0 * d * f)
            d2 = xp.sqrt(sum_rows(((f1 - f) / scale) ** 2)) / rn / h0
            small = (d1 <= 1e-15) & (d2 <= 1e-15)
            dm = xp.where(d2 > d1, d2, d1)
            h1 = xp.where(small, xp.where(h0 * c(1e-3) < 1e-6, c(1e-6), h0 * c(1e-3)),
                          libm_pow(c(0.01) / dm, c(1.0 / (error_order + 1))))
            h = c(100) * h0
            for bound in (h1, interval, cast(max_step)):
                h = xp.where(bound < h, bound, h)
        return h

    def macros(self):
        """The constants as C preprocessor macros (exact decimal round trips)."""
        return "".join(f"#define GPUIVP_{name.upper()} {float(getattr(self, name))!r}\n"
                       for name in ("safety", "min_factor", "max_factor", "min_step_spacings"))


#: The controller every engine uses.
CONTROLLER = StepController()
