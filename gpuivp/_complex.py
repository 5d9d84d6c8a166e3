"""Complex states on the ensemble engines: a system of ``n`` complex components runs as one
of ``2n`` real components (real parts first, then imaginary parts).

The engines work in real arithmetic. ``fun`` and the event functions still see complex ``y``:
the wrappers below rebuild it from the two halves and split what ``fun`` returns. The error
norm is then taken over the ``2n`` real and imaginary parts where scipy takes it over the
``n`` complex moduli, so step counts can differ slightly from scipy's (the values agree to
the tolerances).
"""
from __future__ import annotations

import numpy as np

from .engines.compile_cache import cached, fun_key, py_function


def python_fun(fun, n, dtype):
    """``fun`` on the real ``2n`` state, for the backends that call it from Python."""
    cdtype = np.result_type(dtype, np.complex64)

    def real_fun(t, y, *args):
        f = fun(t, (y[:n] + 1j * y[n:]).astype(cdtype, copy=False), *args)
        return tuple(np.real(v) for v in f) + tuple(np.imag(v) for v in f)

    real_fun.__wrapped__ = fun
    return real_fun


def python_event(event, n, dtype):
    """An event function on the real ``2n`` state (keeps ``terminal`` and ``direction``)."""
    cdtype = np.result_type(dtype, np.complex64)

    def real_event(t, y, *args):
        return np.real(event(t, (y[:n] + 1j * y[n:]).astype(cdtype, copy=False), *args))

    real_event.__wrapped__ = event
    for name in ("terminal", "direction"):
        if hasattr(event, name):
            setattr(real_event, name, getattr(event, name))
    return real_event


def numba_fun(fun, n, n_args, dtype, scalar_out=False):
    """The same wrapper as generated source that numba compiles, calling ``fun`` compiled
    with ``numba.njit``; one per (``fun``, n, args, dtype) so the engine cache hits."""
    import numba

    def build():
        cplx = "np.complex64" if np.dtype(dtype) == np.float32 else "np.complex128"
        args = "".join(f", a{m}" for m in range(n_args))
        z = ", ".join(f"{cplx}(complex(y[{j}], y[{n + j}]))" for j in range(n))
        if scalar_out:
            body = f"    return inner(t, np.array([{z}]){args}).real"
        else:
            parts = [f"f[{j}].real" for j in range(n)] + [f"f[{j}].imag" for j in range(n)]
            body = (f"    f = inner(t, np.array([{z}]){args})\n"
                    f"    return ({', '.join(parts)},)")
        ns = {"np": np, "inner": numba.njit(py_function(fun))}
        exec(f"def real_fun(t, y{args}):\n{body}\n", ns)
        return ns["real_fun"]

    key = ("complex-wrapper", fun_key(fun), n, n_args, np.dtype(dtype).str, scalar_out)
    return cached(key, build)


class ComplexSolution:
    """``sol`` of a complex system: the real engine's ``sol`` with its halves recombined."""

    def __init__(self, sol, n):
        self.sol, self.n = sol, n

    def __call__(self, t):
        y = self.sol(t)
        return y[:self.n] + 1j * y[self.n:]


def to_complex(res, n, cdtype):
    """The result of the real ``2n`` system as that of the complex one, in place."""
    def join(a, axis=0):
        a = np.moveaxis(np.asarray(a), axis, 0)
        return np.moveaxis((a[:n] + 1j * a[n:]).astype(cdtype), 0, axis)

    if isinstance(res.y, np.ndarray) and res.y.size:
        res["y"] = join(res.y)
    elif isinstance(res.y, np.ndarray):
        res["y"] = np.empty((n,) + res.y.shape[1:], cdtype)
    res["y_final"] = join(res.y_final)
    if res.get("y_events") is not None:
        res["y_events"] = [join(ye, -1) if np.ndim(ye) > 1 else np.empty(0, cdtype)
                           for ye in res.y_events]
    if res.get("sol") is not None:
        res["sol"] = ComplexSolution(res.sol, n)
    return res
