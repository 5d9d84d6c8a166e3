"""``solve_ivp`` for scipy's own ``test_ivp.py``, run by ``test_scipy_suite.py``.

The copied test module imports ``solve_ivp`` from here instead of ``scipy.integrate``.
``GPUIVP_SUITE_BACKEND`` picks the configuration:

- ``auto``: ``gpuivp.solve_ivp`` unchanged (``backend="auto"``);
- ``numba``: scipy's explicit Runge-Kutta methods (``RK23``, ``RK45``, ``DOP853``, by name or
  class; ``GPUIVP_SUITE_METHODS`` narrows the list) forced onto ``backend="numba"``; the
  other methods on ``auto``;
- ``numpy``: the same methods forced onto ``backend="numpy"`` with ``vectorized=True`` where
  ``fun`` accepts ``y`` of shape ``(n, 1)`` (scipy's vectorized convention), else on ``auto``.
"""
import os

import numpy as np
from scipy.integrate import DOP853, RK23, RK45

import gpuivp

CONFIG = os.environ.get("GPUIVP_SUITE_BACKEND", "auto")
#: The methods forced onto the backend (the others run on ``auto``).
FORCED = os.environ.get("GPUIVP_SUITE_METHODS", "RK23,RK45,DOP853").split(",")


def _vectorizable(fun, t_span, y0, args):
    """Whether ``fun`` takes ``y`` of shape (n, 1) and ``t`` of shape (1,) (scipy's vectorized
    convention, with gpuivp's per-column ``t``) and returns ``n`` entries of one value each."""
    y = np.asarray(y0)
    if y.ndim != 1 or y.size == 0:
        return False
    try:
        out = fun(np.full(1, float(t_span[0])), y[:, None], *(args or ()))
    except Exception:
        return False
    if isinstance(out, (list, tuple)):
        return len(out) == y.size and all(np.size(v) == 1 for v in out)
    return np.shape(out) == (y.size, 1)


def solve_ivp(fun, t_span, y0, method="RK45", *args, **kwargs):
    name = method if isinstance(method, str) else \
        method.__name__ if method in (RK23, RK45, DOP853) else None
    explicit = name in FORCED
    if CONFIG == "auto" or not explicit:
        return gpuivp.solve_ivp(fun, t_span, y0, method, *args, **kwargs)
    if CONFIG == "numba":
        return gpuivp.solve_ivp(fun, t_span, y0, method, *args, backend="numba", **kwargs)
    if CONFIG == "numpy":
        if args:
            raise TypeError("scipy_suite_swap: pass options by keyword")
        if kwargs.get("vectorized") or _vectorizable(fun, t_span, y0, kwargs.get("args")):
            kwargs["vectorized"] = True
            return gpuivp.solve_ivp(fun, t_span, y0, method, backend="numpy", **kwargs)
        return gpuivp.solve_ivp(fun, t_span, y0, method, **kwargs)
    raise ValueError(f"GPUIVP_SUITE_BACKEND={CONFIG!r}")
