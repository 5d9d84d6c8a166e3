"""In-process cache of compiled engines, keyed on what the user's ``fun`` really is.

numba cannot disk-cache ``exec``-generated code, and its cache would not see
edits to a user's function anyway. The key is the function's code object, its
closure values and the globals it reads (recursively for functions it calls),
so a lambda re-created on every call still hits the cache while an edited
function, or one whose global constant changed, compiles anew.
"""
from __future__ import annotations

import types

import numpy as np

_CACHE: dict = {}


def py_function(fun):
    """The plain Python function behind ``fun`` (unwraps numba dispatchers)."""
    return getattr(fun, "py_func", fun)


def _freeze(obj, depth):
    if obj is None or isinstance(obj, (bool, int, float, complex, str, bytes)):
        return (type(obj).__name__, obj)
    if isinstance(obj, np.generic):
        return ("npscalar", obj.dtype.str, obj.item())
    if isinstance(obj, types.ModuleType):
        return ("module", obj.__name__)
    if isinstance(obj, np.ndarray):
        if obj.size <= 4096:
            return ("array", obj.dtype.str, obj.shape, obj.tobytes())
        return ("bigarray", id(obj), obj.dtype.str, obj.shape)
    if isinstance(obj, tuple):
        return ("tuple",) + tuple(_freeze(o, depth) for o in obj)
    py = py_function(obj)
    if isinstance(py, types.FunctionType):
        return fun_key(py, depth + 1) if depth < 4 else ("fn", id(py))
    return ("obj", type(obj).__qualname__, id(obj))


def fun_key(fun, depth=0):
    """A hashable key that changes whenever ``fun``'s behaviour can change."""
    py = py_function(fun)
    code = getattr(py, "__code__", None)
    if code is None:
        return ("callable", id(fun))
    closure = tuple(_freeze(c.cell_contents, depth) for c in (py.__closure__ or ()))
    g = py.__globals__
    names = set(code.co_names)
    for const in code.co_consts:  # names read by nested functions and comprehensions
        if isinstance(const, types.CodeType):
            names.update(const.co_names)
    glob = tuple((name, _freeze(g[name], depth)) for name in sorted(names) if name in g)
    return (code, closure, glob, py.__defaults__ and _freeze(py.__defaults__, depth))


def cached(key, build):
    """``build()`` once per key."""
    try:
        return _CACHE[key]
    except KeyError:
        value = _CACHE[key] = build()
        return value
