"""In-process cache of compiled engines, keyed on what the user's ``fun`` really is.

numba cannot disk-cache ``exec``-generated code, and its cache would not see
edits to a user's function anyway. The key is the function's code object, its
closure values and the globals it reads (recursively for functions it calls),
so a lambda re-created on every call still hits the cache while an edited
function, or one whose global constant changed, compiles anew. Arrays compiled
into the code as constants are keyed by a hash of their contents, whatever their
size (the compiled backends pass the arrays ``fun`` reads as hidden arguments
where they can, :mod:`gpuivp.engines.fun_compile`, and then key only their type).

The cache is bounded: it keeps the :data:`MAX_ENTRIES` most recently used engines
(``GPUIVP_CACHE_SIZE`` in the environment, default 64), so a loop over fresh
closures does not grow it without bound. Concurrent first calls for one key wait
for a single build (a lock per key). numba itself keeps the machine code of every
function it compiled (about 6 MiB per small engine), evicted or not: what bounds
memory is not compiling anew, which is why floats and arrays read by ``fun`` are
hidden arguments rather than part of the key.
"""
from __future__ import annotations

import collections
import hashlib
import os
import threading
import types

import numpy as np


def _max_entries():
    try:
        return max(1, int(os.environ.get("GPUIVP_CACHE_SIZE", 64)))
    except ValueError:
        raise ValueError(f"GPUIVP_CACHE_SIZE must be a positive integer, got "
                         f"{os.environ['GPUIVP_CACHE_SIZE']!r}.") from None


#: Compiled engines kept in-process (least recently used go first); ``GPUIVP_CACHE_SIZE``.
MAX_ENTRIES = _max_entries()

_CACHE: collections.OrderedDict = collections.OrderedDict()
_LOCK = threading.Lock()   # guards _CACHE and _KEY_LOCKS
_KEY_LOCKS: dict = {}      # key -> [lock, number of threads using it]


def py_function(fun):
    """The plain Python function behind ``fun`` (unwraps numba dispatchers)."""
    return getattr(fun, "py_func", fun)


def array_digest(a):
    """A hash of ``a``'s contents (any size: in-place changes give a new key)."""
    a = np.ascontiguousarray(a)
    return hashlib.blake2b(a.view(np.uint8).reshape(-1) if a.size else b"",
                           digest_size=16).hexdigest()


def _freeze(obj, depth):
    if obj is None or isinstance(obj, (bool, int, float, complex, str, bytes)):
        return (type(obj).__name__, obj)
    if isinstance(obj, np.generic):
        return ("npscalar", obj.dtype.str, obj.item())
    if isinstance(obj, types.ModuleType):
        return ("module", obj.__name__)
    if isinstance(obj, np.ndarray):
        if obj.dtype.hasobject:
            return ("objarray", id(obj))
        return ("array", obj.dtype.str, obj.shape, array_digest(obj))
    if isinstance(obj, tuple):
        return ("tuple",) + tuple(_freeze(o, depth) for o in obj)
    py = py_function(obj)
    if isinstance(py, types.FunctionType):
        return fun_key(py, depth + 1) if depth < 4 else ("fn", id(py))
    return ("obj", type(obj).__qualname__, id(obj))


def fun_key(fun, depth=0):
    """A hashable key that changes whenever ``fun``'s behaviour can change."""
    py = py_function(fun)
    prepared = getattr(py, "__gpuivp_key__", None)
    if prepared is not None:  # rebuilt by fun_compile.prepare: its key says what it is
        return prepared
    code = getattr(py, "__code__", None)
    if code is None:
        return ("callable", id(fun))
    closure = []
    for c in py.__closure__ or ():
        try:
            closure.append(_freeze(c.cell_contents, depth))
        except ValueError:  # empty cell
            closure.append(("empty",))
    g = py.__globals__
    names = set(code.co_names)
    for const in code.co_consts:  # names read by nested functions and comprehensions
        if isinstance(const, types.CodeType):
            names.update(const.co_names)
    glob = tuple((name, _freeze(g[name], depth)) for name in sorted(names) if name in g)
    return (code, tuple(closure), glob, py.__defaults__ and _freeze(py.__defaults__, depth))


def cached(key, build):
    """``build()`` once per key: concurrent callers of a key wait for one build; the
    :data:`MAX_ENTRIES` most recently used values are kept."""
    with _LOCK:
        if key in _CACHE:
            _CACHE.move_to_end(key)
            return _CACHE[key]
        entry = _KEY_LOCKS.setdefault(key, [threading.Lock(), 0])
        entry[1] += 1
    try:
        with entry[0]:
            with _LOCK:
                if key in _CACHE:  # built by the thread we waited for
                    _CACHE.move_to_end(key)
                    return _CACHE[key]
            value = build()
            with _LOCK:
                _CACHE[key] = value
                while len(_CACHE) > MAX_ENTRIES:
                    _CACHE.popitem(last=False)
            return value
    finally:
        with _LOCK:
            entry[1] -= 1
            if entry[1] == 0 and _KEY_LOCKS.get(key) is entry:
                del _KEY_LOCKS[key]


def entries():
    """How many compiled engines the cache holds now."""
    return len(_CACHE)


def clear():
    """Forget every cached engine."""
    with _LOCK:
        _CACHE.clear()
