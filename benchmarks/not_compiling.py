"""Right-hand sides numba cannot compile, one per reason, with the text numba's error names.

Shared by ``benchmarks/compile.py`` (how fast ``auto`` gives up on each) and
``tests/test_compile.py`` (the fallback's warning and the explicit backend's error name
the reason). Each is ``fun(t, y, a)`` for one equation, ``y' = -a y``.
"""
import numpy as np
import scipy.special


def f_try(t, y, a):
    try:
        v = -a * y[0]
    except Exception as e:  # noqa: F841
        v = 0.0
    return (v,)


def f_errstate(t, y, a):
    with np.errstate(all="ignore"):
        v = -a * y[0]
    return (v,)


def f_generator(t, y, a):
    return (sum(-a * y[j] for j in range(1)),)


def f_kwargs(t, y, a, **kw):
    return (-a * y[0],)


def f_erf(t, y, a):
    return (-a * scipy.special.erf(y[0]),)


class Params:
    a = 0.7


PARAMS = Params()


def f_attribute(t, y, a):
    return (-PARAMS.a * y[0],)


RATES = {"a": 0.7}


def f_global_dict(t, y, a):
    return (-RATES["a"] * y[0],)


#: case -> (fun, a text the compile error names)
NOT_COMPILING = {"try/except": (f_try, "UnsupportedBytecodeError"),
                 "np.errstate": (f_errstate, "CompilerError"),
                 "generator expression": (f_generator, "UnsupportedError"),
                 "**kwargs": (f_kwargs, "takes **kwargs"),
                 "scipy.special.erf": (f_erf, "erf"),
                 "object attribute": (f_attribute, "PARAMS"),
                 "global dict": (f_global_dict, "RATES")}
