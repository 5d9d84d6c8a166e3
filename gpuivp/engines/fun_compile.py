"""The user's ``fun`` made ready for a compiler (``numba.njit`` or ``numba.cuda.jit``).

:func:`prepare` rewrites a :class:`~gpuivp._problem.Problem` for a compiled backend:

* **Helpers.** Plain Python functions that ``fun`` (or an event function) calls, found
  among its module globals and closure cells, are compiled along with it, recursively:
  ``numba.njit`` on the CPU, ``numba.cuda.jit(device=True)`` on ``cuda``. ``fun`` itself
  is rebuilt (``types.FunctionType`` over its own code) with globals that map the helpers'
  names to the compiled versions; the user's function is left untouched.
* **Hidden arguments.** NumPy arrays and floats that ``fun`` reads from its module globals
  or closure (and defaults of parameters the engine does not pass) become extra
  parameters of a rewritten ``fun`` (its source, parsed with :mod:`ast`), passed like
  :class:`gpuivp.shared` arguments. numba would otherwise freeze them into the compiled
  code as constants: changing such an array in place would need a recompile (and a key
  that sees its contents), and on ``cuda`` a large table would land in ``.const`` memory,
  which holds 64 KB. As arguments, arrays are read where they live on every call (global
  memory on the GPU), and a new value of a closure float does not recompile.
  When the source is not available (or ``fun`` takes ``*args``/``**kwargs`` or declares
  ``global``), arrays stay compiled-in constants and the cache key hashes their contents.

The cache key of a rewritten function (``__gpuivp_key__``, read by
:func:`gpuivp.engines.compile_cache.fun_key`) holds the code, the values compiled in and
only the types of the hidden arguments.
"""
from __future__ import annotations

import ast
import builtins
import dataclasses
import inspect
import textwrap
import types

import numpy as np

from .compile_cache import _freeze, fun_key, py_function

#: Modules whose functions numba knows by identity (or that are not user code): never
#: compiled as helpers.
_LIBRARY_MODULES = {"numpy", "scipy", "numba", "math", "cmath", "gpuivp", "builtins", "cupy",
                    "operator", "functools"}

#: Marks a problem already prepared (its ``fun`` carries the key).
_KEY_ATTR = "__gpuivp_key__"
#: The source text a function made here was compiled from (``inspect.getsource`` would give
#: the user's original ``def``): what the disk cache writes (:mod:`.disk_cache`).
SOURCE_ATTR = "__gpuivp_source__"


def is_helper(value):
    """A plain Python function from user code (not a library function numba knows)."""
    if not isinstance(value, types.FunctionType):
        return False
    module = (getattr(value, "__module__", None) or "").split(".")[0]
    return module not in _LIBRARY_MODULES


def _hideable(value):
    """Values passed as hidden arguments: numeric arrays and floats."""
    if isinstance(value, np.ndarray):
        return value.dtype.kind in "biuf" and value.ndim > 0
    return type(value) is float or isinstance(value, np.floating)


def plain_array(a):
    """``a`` C-contiguous and writeable (a copy only when it is not): every input then has
    one numba type whatever the caller's layout (Fortran order, read-only, a slice)."""
    if isinstance(a, np.ndarray) and not (a.flags.c_contiguous and a.flags.writeable):
        return np.array(a, order="C")
    return a


def _hidden_type(value):
    if isinstance(value, np.ndarray):
        return ("array", value.dtype.str, value.ndim)
    # A Python float and np.float64 are both float64 to numba: one key.
    return ("float", np.dtype(type(value)).str if isinstance(value, np.generic) else "<f8")


def _outside(py):
    """``(globals, cells)``: the values ``py`` reads from outside (names as in the code)."""
    code = py.__code__
    names, stack = set(), [code]
    while stack:
        c = stack.pop()
        names.update(c.co_names)
        stack.extend(k for k in c.co_consts if isinstance(k, types.CodeType))
    g = py.__globals__
    glob = {name: g[name] for name in names if name in g}
    cells = {}
    for name, cell in zip(code.co_freevars, py.__closure__ or ()):
        try:
            cells[name] = cell.cell_contents
        except ValueError:  # an empty cell: the name is not bound yet
            pass
    return glob, cells


class _Compiler:
    """Compiles helpers for one target; one instance per :func:`prepare`."""

    def __init__(self, jit):
        self.jit = jit
        self.memo = {}

    def value(self, v):
        return self.helper(v) if is_helper(v) else v

    def new_globals(self, py, values):
        g = py.__globals__
        ns = {"__builtins__": g.get("__builtins__", builtins), "__name__": g.get("__name__")}
        ns.update(values)
        return ns

    def rebuilt(self, py):
        """``py`` over globals (and closure) whose helpers are compiled; ``py`` itself when
        it calls none."""
        glob, cells = _outside(py)
        if not any(is_helper(v) for v in list(glob.values()) + list(cells.values())):
            return py
        ns = self.new_globals(py, {})
        closure = None
        if py.__closure__ is not None:
            closure = tuple(types.CellType() for _ in py.__closure__)
        f = types.FunctionType(py.__code__, ns, py.__name__, py.__defaults__, closure)
        f.__kwdefaults__ = py.__kwdefaults__
        f.__qualname__ = py.__qualname__
        return f, glob, cells, ns, closure

    def helper(self, py):
        """The compiled version of helper ``py`` (recursion and shared helpers: once)."""
        if id(py) in self.memo:
            return self.memo[id(py)][1]
        out = self.rebuilt(py)
        if out is py:
            compiled = self.jit(py)
            self.memo[id(py)] = (py, compiled)
            return compiled
        f, glob, cells, ns, closure = out
        compiled = self.jit(f)
        self.memo[id(py)] = (py, compiled)  # before filling: a recursive helper finds itself
        self._fill(py, glob, ns, closure)
        return compiled

    def _fill(self, py, glob, ns, closure):
        ns.update({name: self.value(v) for name, v in glob.items()})
        if closure is not None:
            for cell, name, old in zip(closure, py.__code__.co_freevars, py.__closure__):
                try:
                    cell.cell_contents = self.value(old.cell_contents)
                except ValueError:
                    pass

    def top(self, py):
        """``py`` with its helpers compiled (not itself: the backend compiles it); always a
        new function object (it gets a key attribute: the user's function stays untouched)."""
        out = self.rebuilt(py)
        if out is py:
            f = types.FunctionType(py.__code__, py.__globals__, py.__name__, py.__defaults__,
                                   py.__closure__)
            f.__kwdefaults__ = py.__kwdefaults__
            f.__qualname__ = py.__qualname__
            return f
        f, glob, cells, ns, closure = out
        self._fill(py, glob, ns, closure)
        return f


def _source_node(py):
    """``(node, first_line)``: the ``def`` or ``lambda`` of ``py`` parsed from its source,
    or None when it cannot be found unambiguously."""
    try:
        lines, start = inspect.getsourcelines(py)
        tree = ast.parse(textwrap.dedent("".join(lines)))
    except (OSError, TypeError, SyntaxError, IndentationError):
        return None
    code = py.__code__
    if code.co_name == "<lambda>":
        params = list(code.co_varnames[:code.co_argcount])
        nodes = [node for node in ast.walk(tree) if isinstance(node, ast.Lambda)
                 and [a.arg for a in node.args.args] == params]
    else:
        nodes = [node for node in tree.body if isinstance(node, ast.FunctionDef)
                 and node.name == code.co_name]
    if len(nodes) != 1:
        return None
    node = nodes[0]
    if any(isinstance(x, (ast.Global, ast.Nonlocal)) for x in ast.walk(node)):
        return None
    return node, max(start, 1)


def _rewritable(py, n_pass):
    code = py.__code__
    flags = inspect.CO_VARARGS | inspect.CO_VARKEYWORDS
    return (not code.co_flags & flags and code.co_kwonlyargcount == 0
            and code.co_posonlyargcount == 0 and code.co_argcount >= n_pass)


class _Plan:
    """What one of ``fun``/the event functions reads from outside, and how it gets it."""

    def __init__(self, f, n_pass):
        self.f = f
        self.py = py_function(f)
        self.n_pass = n_pass
        self.node = None
        self.hidden = {}   # name -> value (passed as an argument)
        self.fixed = {}    # name -> value (a global of the rewritten function)
        code = getattr(self.py, "__code__", None)
        if code is None or not _rewritable(self.py, n_pass):
            return
        found = _source_node(self.py)
        if found is None:
            return
        self.node, self.first_line = found
        glob, cells = _outside(self.py)
        params = code.co_varnames[:code.co_argcount]
        defaults = self.py.__defaults__ or ()
        unbound = dict(zip(params[len(params) - len(defaults):], defaults))
        unbound = {p: v for p, v in unbound.items() if p in params[n_pass:]}
        if len(params) - n_pass != len(unbound):
            self.node = None  # a parameter the engine does not pass has no default
            return
        loaded = {x.id for x in ast.walk(self.node) if isinstance(x, ast.Name)}
        outside = {**glob, **cells, **unbound}
        for name, value in outside.items():
            if name in loaded and _hideable(value):
                self.hidden[name] = value
            else:
                self.fixed[name] = value
        self.params = list(params[:n_pass])


def _rewrite(plan, slots, compiler):
    """Plan's function from its source, with one parameter per hidden slot appended (the
    slot's name where this function reads it, else a placeholder)."""
    names = []
    for j, (name, value) in enumerate(slots):
        mine = name in plan.hidden and plan.hidden[name] is value
        names.append(name if mine else f"_gpuivp_unused{j}")
    template = ast.parse("def f():\n    return 0\n").body[0]
    template.name = plan.py.__name__ if plan.py.__name__.isidentifier() else "gpuivp_lambda"
    template.args = ast.parse(f"lambda {', '.join(plan.params + names)}: 0").body[0].value.args
    node = plan.node
    template.body = node.body if isinstance(node, ast.FunctionDef) else [ast.Return(node.body)]
    module = ast.Module(body=[template], type_ignores=[])
    ast.copy_location(template, node)
    ast.fix_missing_locations(module)
    ast.increment_lineno(module, plan.first_line - 1)
    ns = compiler.new_globals(plan.py, {name: compiler.value(v) for name, v in plan.fixed.items()})
    local = {}
    exec(compile(module, plan.py.__code__.co_filename, "exec"), ns, local)
    f = local[template.name]
    setattr(f, SOURCE_ATTR, ast.unparse(template))
    return f, tuple(names)


def _wrapper(inner, n_pass, n_hidden, name):
    """``f(t, y, *args, *hidden)`` calling ``inner(t, y, *args)``: for a function that
    cannot be rewritten, beside one that takes hidden arguments."""
    params = [f"a{j}" for j in range(n_pass)]
    hidden = [f"h{j}" for j in range(n_hidden)]
    src = (f"def {name}({', '.join(params + hidden)}):\n"
           f"    return inner({', '.join(params)})\n")
    ns = {"inner": inner}
    exec(compile(src, f"<gpuivp wrapper of {name}>", "exec"), ns)
    setattr(ns[name], SOURCE_ATTR, src)
    return ns[name]


def signature_trouble(functions):
    """Why numba cannot compile one of ``functions`` by its signature alone (``**kwargs``),
    or None: said plainly, before numba's "Signature mismatch"."""
    for f in functions:
        code = getattr(py_function(f), "__code__", None)
        if code is not None and code.co_flags & inspect.CO_VARKEYWORDS:
            return f"{code.co_name}() takes **kwargs, which numba does not compile"
    return None


def prepare(problem, jit):
    """``problem`` ready for a compiled backend: ``fun`` and the event functions rebuilt
    (helpers compiled with ``jit``; global and closure arrays and floats as hidden
    ``shared``/``scalar`` arguments appended to ``args``), every input array C-contiguous
    and writeable. Idempotent: a prepared problem comes back as it is."""
    if hasattr(py_function(problem.fun), _KEY_ATTR):
        return problem
    compiler = _Compiler(jit)
    n_pass = 2 + len(problem.args)  # t, y, *args; an in-place fun also takes dydt
    inplace = int(bool(getattr(problem, "inplace", False)))
    affects = getattr(problem, "affects", ())
    present = [a for a in affects if a is not None]
    jac = getattr(problem, "jac", None)  # a Rosenbrock method's jac(t, y, *args)
    plans = [_Plan(problem.fun, n_pass + inplace), *(_Plan(e, n_pass) for e in problem.events),
             *(_Plan(a, n_pass) for a in present), *([_Plan(jac, n_pass)] if jac else [])]
    slots = []  # (name, value): one hidden argument each, shared where the same object
    for plan in plans:
        for name, value in plan.hidden.items():
            if not any(n == name and v is value for n, v in slots):
                slots.append((name, value))
    slot_types = tuple(_hidden_type(v) for _, v in slots)
    new = []
    for plan in plans:
        py = plan.py
        if plan.node is not None:
            f, names = _rewrite(plan, slots, compiler)
            key = ("rewritten", py.__code__, names, slot_types,
                   tuple(sorted((name, _freeze(v, 0)) for name, v in plan.fixed.items())))
        else:
            f = compiler.top(py)
            key = ("as-is", fun_key(py), len(slots))
            if slots:
                f = _wrapper(compiler.jit(f), plan.n_pass, len(slots),
                             py.__name__ if py.__name__.isidentifier() else "gpuivp_lambda")
        setattr(f, _KEY_ATTR, key)
        new.append(f)
    args = tuple(plain_array(a) for a in problem.args)
    hidden = tuple(plain_array(v) if isinstance(v, np.ndarray) else v for _, v in slots)
    kinds = tuple("shared" if isinstance(v, np.ndarray) else "scalar" for v in hidden)
    n_ev = len(problem.events)
    compiled_affects = iter(new[1 + n_ev:])
    affects = tuple(None if a is None else next(compiled_affects) for a in affects)
    extra = {"jac": next(compiled_affects)} if jac else {}
    return dataclasses.replace(problem, fun=new[0], events=tuple(new[1:1 + n_ev]),
                               affects=affects, args=args + hidden, **extra,
                               arg_kinds=tuple(problem.arg_kinds) + kinds,
                               y0=plain_array(problem.y0))
