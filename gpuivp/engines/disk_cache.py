"""Compiled engines that survive the process: an on-disk cache of the ``numba`` engine.

numba's own cache (``cache=True``) only works for functions that live in a file, and the
per-trajectory engine is generated source. So an entry of this cache is two real Python
modules, written into the cache directory and imported from there; the engine's entry
point ``run_range`` is compiled with ``cache=True`` (the functions it calls are compiled
into it):

- ``u<key>.py``: the user's ``fun``, its event functions and the numba functions they call,
  as the backend compiles them (:func:`gpuivp.engines.fun_compile.prepare`: ``fun`` rewritten
  with its global/closure arrays and floats as parameters, its plain Python helpers compiled
  with ``njit``), re-created from their source (the rewritten text where fun_compile made
  one, else ``inspect.getsource``; decorators stripped) with the globals and closure values
  they read written by value (numbers, tuples, NumPy arrays up to 1 MiB) or as imports
  (modules, functions of importable modules). Hidden arguments are not in the module: they
  are arguments of the engine, so changing such an array in place needs no new entry;
- ``e<key>.py``: the generated engine (``solve_one``, the looped engine's helper functions
  such as ``interp``), its constants and the driver ``run_range`` (``solve_one``'s body in a
  loop over trajectories: what is compiled), over one user module (named in its text).

``<key>`` is the SHA-256 of the module's text and of the versions of Python, NumPy, numba,
llvmlite and gpuivp, so whatever the engine depends on (the method, ``n``, argument kinds,
options, dtype, ``fun``'s code, a global constant's value) names another entry. Each file's
first line holds the SHA-256 of the rest: an entry that does not match (a torn or edited
file) is written again, never imported (numba's index is stamped with the source file's
content, so compiled code is reused only for the very text it was compiled from); numba
cache files that cannot be loaded are removed and rebuilt. Files are written to a temporary
name and moved into place, so processes may share the directory.

The backend compiles ``fun`` alone from a newly written user module before generating the
engine (:func:`load_user`, then :func:`load_engine`): a ``fun`` that does not compile fails
fast, and its module is removed (:meth:`UserModule.discard`).

Where ``fun``'s source cannot be recovered exactly (its recompiled bytecode must equal
``fun.__code__``'s: no source file (``exec``, ``python -c``), a lambda inside an expression
spread over several lines, a file edited since import)
or something it reads cannot be written (an arbitrary object, a list, a large array, a
plain Python function that was not compiled with it), :func:`load_user` returns ``None``
and the engine is compiled in-process as before; the reason goes to the
``gpuivp.disk_cache`` debug log.

Location: ``$GPUIVP_CACHE_DIR`` if set, else ``$XDG_CACHE_HOME/gpuivp`` (default
``~/.cache/gpuivp``). ``GPUIVP_CACHE_DIR=0`` or ``GPUIVP_DISK_CACHE=0`` turns it off.
"""
from __future__ import annotations

import __future__
import ast
import base64
import builtins
import collections
import contextlib
import dis
import hashlib
import importlib
import importlib.util
import inspect
import logging
import math
import os
import sys
import tempfile
import textwrap
import types

import numpy as np

from .compile_cache import py_function
from .fun_compile import SOURCE_ATTR

LOG = logging.getLogger("gpuivp.disk_cache")

#: Events of this process: ``hit`` (a valid entry was imported), ``write`` (an entry was
#: written), ``rebuilt`` (an entry on disk did not match its hash and was written again),
#: ``numba_repair`` (numba cache files that failed to load were removed), ``fallback``
#: (the engine could not be cached: compiled in-process), ``discarded`` (a user module just
#: written was removed: its ``fun`` does not compile).
STATS = collections.Counter()

FORMAT = 1                   # bump when the layout of an entry changes
MAX_ARRAY_BYTES = 1 << 20    # larger global arrays are not written into a module
_OFF = {"0", "false", "no", "off"}
_P = "_gpuivp_"              # prefix of the names the cache's own code uses in a module


class Unsupported(Exception):
    """What the user's code reads cannot be written into a module (the message says what)."""


def cache_dir():
    """The cache directory, or ``None`` when the disk cache is off."""
    if os.environ.get("GPUIVP_DISK_CACHE", "").strip().lower() in _OFF:
        return None
    path = os.environ.get("GPUIVP_CACHE_DIR", "").strip()
    if path.lower() in _OFF:
        return None
    if not path:
        base = os.environ.get("XDG_CACHE_HOME", "").strip() or os.path.join("~", ".cache")
        path = os.path.join(base, "gpuivp")
    return os.path.abspath(os.path.expanduser(path))


# -- values as source ----------------------------------------------------------------
def _float(x):
    x = float(x)
    return repr(x) if math.isfinite(x) else f"float({repr(x)!r})"


def _importable(obj):
    """``module.qualname`` source for an object importable under its own name, else None."""
    mod = getattr(obj, "__module__", None)
    if isinstance(obj, np.ufunc):
        mod = "numpy"
    qual = getattr(obj, "__qualname__", None) or getattr(obj, "__name__", None)
    if not mod or not qual or mod == "__main__" or "<" in qual:
        return None
    try:
        target = importlib.import_module(mod)
        for part in qual.split("."):
            target = getattr(target, part)
    except Exception:
        return None
    return f"{_P}imp({mod!r}).{qual}" if target is obj else None


def _module_name(module):
    name = module.__name__
    if name == "__main__" or sys.modules.get(name) is not module:
        raise Unsupported(f"module {name!r} is not importable by its name")
    return name


def value_source(obj):
    """Source text that re-creates ``obj`` (a value, not a function), or Unsupported."""
    if obj is None or type(obj) in (bool, int, str, bytes):
        return repr(obj)
    if type(obj) is float:
        return _float(obj)
    if type(obj) is complex:
        return f"complex({_float(obj.real)}, {_float(obj.imag)})"
    if isinstance(obj, np.generic) and obj.dtype.kind in "biufc":
        return f"{_P}np.dtype({obj.dtype.str!r}).type({value_source(obj.item())})"
    if isinstance(obj, np.dtype) and obj.kind in "biufc":
        return f"{_P}np.dtype({obj.str!r})"
    if isinstance(obj, tuple) and type(obj) is tuple:
        return "(" + "".join(value_source(o) + ", " for o in obj) + ")"
    if isinstance(obj, types.ModuleType):
        return f"{_P}imp({_module_name(obj)!r})"
    if isinstance(obj, np.ndarray):
        if obj.dtype.kind not in "biufc" or obj.nbytes > MAX_ARRAY_BYTES:
            raise Unsupported(f"array of dtype {obj.dtype} and {obj.nbytes} bytes")
        data = base64.b64encode(np.ascontiguousarray(obj).tobytes()).decode()
        return f"{_P}array({data!r}, {obj.dtype.str!r}, {obj.shape!r})"
    src = _importable(obj)
    if src is not None:
        return src
    raise Unsupported(f"a global or closure value of type {type(obj).__qualname__}")


# -- functions as source --------------------------------------------------------------
def _global_loads(code):
    names = set()
    for ins in dis.get_instructions(code):
        if ins.opname in ("LOAD_GLOBAL", "LOAD_NAME"):
            names.add(ins.argval)
        elif ins.opname in ("STORE_GLOBAL", "DELETE_GLOBAL"):
            raise Unsupported(f"{code.co_name} assigns the global {ins.argval!r}")
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _global_loads(const)
    return names


_FUTURE_FLAGS = 0
for _name in __future__.all_feature_names:
    _FUTURE_FLAGS |= getattr(__future__, _name).compiler_flag


def _strip(args):
    """No defaults (set afterwards, by value) and no annotations (names they read)."""
    args.defaults, args.kw_defaults = [], [None] * len(args.kwonlyargs)
    for a in (*args.posonlyargs, *args.args, *args.kwonlyargs, args.vararg, args.kwarg):
        if a is not None:
            a.annotation = None


def _same_code(a, b):
    """Bytecode, names and constants equal (line numbers, file and name aside)."""
    attrs = ("co_code", "co_names", "co_varnames", "co_freevars", "co_cellvars",
             "co_argcount", "co_posonlyargcount", "co_kwonlyargcount")
    if any(getattr(a, x) != getattr(b, x) for x in attrs) or len(a.co_consts) != len(b.co_consts) \
            or (a.co_flags ^ b.co_flags) & ~_FUTURE_FLAGS:
        return False
    for x, y in zip(a.co_consts, b.co_consts):
        if isinstance(x, types.CodeType) and isinstance(y, types.CodeType):
            if not _same_code(x, y):
                return False
        elif type(x) is not type(y) or repr(x) != repr(y):
            return False
    return True


def _compiled_function_code(text, name, freevars, imports=()):
    """The code object ``text`` (defining ``name``) gives, with ``freevars`` as closure cells
    and after the statements ``imports``."""
    if freevars:
        text = (f"def {_P}outer():\n" + "".join(f"    {v} = None\n" for v in freevars)
                + textwrap.indent(text, "    ") + f"\n    return {name}\n")
    text = "".join(line + "\n" for line in imports) + text
    consts = compile(text, "<gpuivp check>", "exec", dont_inherit=True).co_consts
    if freevars:
        consts = next(c for c in consts if isinstance(c, types.CodeType)).co_consts
    codes = [c for c in consts if isinstance(c, types.CodeType)]
    return codes[0] if len(codes) == 1 else None


def function_source(py, name, imports=()):
    """Source defining ``py`` as the module-level ``name``: decorators and defaults
    stripped, checked by recompiling it to ``py.__code__``'s bytecode.

    ``imports`` are the module's ``import`` statements of the modules ``py`` reads: they
    decide the bytecode too (CPython 3.11 calls methods of imported names by LOAD_ATTR).
    """
    code = py.__code__
    try:
        text = getattr(py, SOURCE_ATTR, None)  # a function gpuivp rewrote: its own text,
        if text is not None:  # compiled alone (np.f(...) by LOAD_METHOD, not LOAD_ATTR)
            imports = ()
        else:
            text = textwrap.dedent("".join(inspect.getsourcelines(py)[0]))
        tree = ast.parse(text)
    except (OSError, TypeError, SyntaxError, IndentationError) as exc:
        raise Unsupported(f"no source for {py.__qualname__} ({exc})") from None
    lam = code.co_name == "<lambda>"
    for node in ast.walk(tree):
        if lam and isinstance(node, ast.Lambda):
            _strip(node.args)
            cand = f"{name} = {ast.unparse(node)}"
        elif not lam and isinstance(node, ast.FunctionDef) and node.name == code.co_name:
            node.decorator_list, node.name, node.returns = [], name, None
            _strip(node.args)
            cand = ast.unparse(node)
        else:
            continue
        try:
            got = _compiled_function_code(cand, name, code.co_freevars, imports)
        except SyntaxError:
            continue
        if got is not None and _same_code(got, code):
            return cand
    raise Unsupported(f"the source of {py.__qualname__} does not match its code "
                      "(edited since import, or several functions on its lines)")


class _Module:
    """Builds the text of the user module: functions and the globals they read."""

    def __init__(self):
        self.body = []
        self.bound = {}      # global name -> source of its value (or function marker)
        self.funcs = {}      # id(py function) -> name it is defined under

    def bind(self, name, obj):
        if name.startswith(_P):
            raise Unsupported(f"the global name {name!r} is reserved")
        py = py_function(obj)
        if isinstance(py, types.FunctionType):
            if id(py) in self.funcs:
                value = self.funcs[id(py)]
                if value != name:
                    self._set(name, value)
                return
            options = getattr(obj, "targetoptions", None)
            if options is None:
                raise Unsupported(f"{name} is a plain Python function, not a numba one")
            if getattr(obj, "locals", None):
                raise Unsupported(f"{name} declares the types of its locals")
            self.function(obj, name, dict(options))
            return
        if isinstance(obj, types.ModuleType):
            self._set(name, f"import {_module_name(obj)} as {name}", statement=True)
        else:
            self._set(name, value_source(obj))

    def _set(self, name, src, statement=False):
        old = self.bound.get(name)
        if old is None:
            self.bound[name] = src
            self.body.append(src if statement else f"{name} = {src}")
        elif old != src:
            raise Unsupported(f"the name {name!r} means two things in the functions read")

    def function(self, obj, name, options):
        py = py_function(obj)
        if not isinstance(py, types.FunctionType):
            raise Unsupported(f"{type(obj).__qualname__} is not a Python function")
        if name in self.bound:
            raise Unsupported(f"the name {name!r} means two things in the functions read")
        self.funcs[id(py)] = name
        self.bound[name] = f"<function {id(py)}>"
        if py.__kwdefaults__:
            raise Unsupported(f"{py.__qualname__} has keyword-only defaults")
        code = py.__code__
        for var, cell in zip(code.co_freevars, py.__closure__ or ()):
            try:
                value = cell.cell_contents
            except ValueError:
                raise Unsupported(f"{py.__qualname__}'s closure cell {var!r} is empty") from None
            self.bind(var, value)
        imports = []
        for gname in sorted(_global_loads(code)):
            if gname in py.__globals__:
                value = py.__globals__[gname]
                self.bind(gname, value)
                if isinstance(value, types.ModuleType):
                    imports.append(self.bound[gname])
            elif not hasattr(builtins, gname):
                raise Unsupported(f"{py.__qualname__} reads the undefined global {gname!r}")
        self.body.append(function_source(py, name, imports))
        if py.__defaults__:
            self.body.append(f"{name}.__defaults__ = {value_source(tuple(py.__defaults__))}")
        options.pop("nopython", None)  # njit's own
        options.pop("cache", None)  # compiled into run_range, which numba caches
        try:
            if ast.literal_eval(repr(options)) != options:
                raise ValueError
        except (ValueError, SyntaxError):
            raise Unsupported(f"the numba options of {name}: {options!r}") from None
        self.body.append(f"{name} = {_P}nb.njit(**{options!r})({name})")


_PRELUDE = f"""\
import base64 as {_P}b64
import importlib as {_P}il
import numba as {_P}nb
import numpy as {_P}np
{_P}imp = {_P}il.import_module


def {_P}array(data, dtype, shape):
    return {_P}np.frombuffer({_P}b64.b64decode(data), dtype).reshape(shape).copy()
"""


class _Sym:
    """Stands for an object the engine module defines itself (namespace entries)."""

    def __init__(self, src):
        self.src = src


def user_text(problem, jit_options):
    """The user module's text: ``fun``, the event functions and what they read. Raises
    Unsupported."""
    user = _Module()
    user.function(problem.fun, f"{_P}fun", dict(jit_options))
    for e, ev in enumerate(problem.events):
        user.function(ev, f"{_P}event{e}", dict(jit_options))
    return _PRELUDE + "\n\n" + "\n\n".join(user.body) + "\n"


def engine_text(user_key, problem, src, driver, jit_options, host_functions):
    """The engine module's text for the engine ``src`` of ``problem``, over the user module
    ``user_key`` (named in the text, so that the text and its key depend on it).

    ``host_functions`` are the namespace entries given to ``EngineSource.namespace`` as
    they are (math and NumPy functions); ``fun``, the events and the state allocator are
    defined by the modules. Raises Unsupported.
    """
    jit = dict(jit_options)
    jit.pop("cache", None)
    ns = src.namespace(fun=_Sym(f"{_P}user.{_P}fun"), alloc_state=_Sym(f"{_P}alloc_state"),
                       events=[_Sym(f"{_P}user.{_P}event{e}")
                               for e in range(len(problem.events))],
                       alloc_matrix=_Sym(f"{_P}alloc_matrix"),
                       alloc_index=_Sym(f"{_P}alloc_index"), **host_functions)
    lines = [f"# over the user module u{user_key}",
             f"{_P}jit = {_P}nb.njit(**{jit!r})", "", "",
             f"@{_P}jit", f"def {_P}alloc_state():",
             f"    return {_P}np.empty({int(problem.n)}, {value_source(np.dtype(problem.dtype))})",
             "", ""]
    if src.linear:  # a Rosenbrock method's n x n matrices and row permutation
        lines += [f"@{_P}jit", f"def {_P}alloc_matrix():",
                  f"    return {_P}np.empty({int(problem.n) ** 2}, "
                  f"{value_source(np.dtype(problem.dtype))})", "", "",
                  f"@{_P}jit", f"def {_P}alloc_index():",
                  f"    return {_P}np.empty({int(problem.n)}, {_P}np.int64)", "", ""]
    for name in sorted(ns):
        value = ns[name]
        lines.append(f"{name} = " + (value.src if isinstance(value, _Sym) else value_source(value)))
    helpers = [f"{name} = {_P}jit({name})" for name in src.helpers]  # the looped engine's
    return "\n".join([_PRELUDE, *lines, "", "", src.src, "", *helpers,
                      "", "", driver, "",
                      f"run_range = {_P}nb.njit(**{ {**jit, 'cache': True}!r})(run_range)", ""])


# -- files -------------------------------------------------------------------------------
def _versions():
    import llvmlite
    import numba

    from .. import __version__ as gpuivp_version
    return repr((FORMAT, sys.version, sys.implementation.cache_tag, np.__version__,
                 numba.__version__, llvmlite.__version__, gpuivp_version,
                 numba.config.OPT, numba.config.BOUNDSCHECK, numba.config.DEBUGINFO_DEFAULT))


def _header(body):
    return f"# gpuivp disk cache entry, sha256:{hashlib.sha256(body.encode()).hexdigest()}\n"


def _valid(path, body):
    """The file at ``path`` holds exactly ``_header(body) + body``."""
    try:
        with open(path, encoding="utf-8") as f:
            return f.read() == _header(body) + body
    except (OSError, UnicodeDecodeError):
        return False


def _write(path, body):
    """Create ``path`` with ``body`` under its hash header (atomically); an existing file
    that does not hold it is replaced. Returns whether it was written."""
    if _valid(path, body):
        return False
    existed = os.path.exists(path)
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".tmp-", suffix=".py")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(_header(body) + body)
        if existed:
            os.replace(tmp, path)
        else:
            try:
                os.link(tmp, path)  # create only if absent: a concurrent writer's file stays
            except FileExistsError:
                if not _valid(path, body):
                    os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    if existed:
        STATS["rebuilt"] += 1
        LOG.debug("disk cache: %s did not match its hash: written again", path)
    return True


def _import(path, name, inject=None):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    module.__dict__.update(inject or {})
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return module


def _guard(dispatcher):
    """Make numba cache files that fail to load or to update be removed and rebuilt."""
    cache = getattr(dispatcher, "_cache", None)
    index = getattr(getattr(cache, "_cache_file", None), "_index_path", None)
    if index is None:
        return

    def drop(exc):
        STATS["numba_repair"] += 1
        LOG.debug("disk cache: numba cache %s unusable (%r): removed", index, exc)
        with contextlib.suppress(OSError):
            os.unlink(index)

    load, save = cache.load_overload, cache.save_overload

    def load_overload(sig, target_context):
        try:
            return load(sig, target_context)
        except Exception as exc:
            drop(exc)
            return None

    def save_overload(sig, data):
        try:
            return save(sig, data)
        except Exception as exc:
            drop(exc)
            with contextlib.suppress(Exception):
                save(sig, data)

    cache.load_overload, cache.save_overload = load_overload, save_overload


def _key(*texts):
    return hashlib.sha256("\0".join((_versions(), *texts)).encode()).hexdigest()[:32]


def entry(problem, src, driver, jit_options, host_functions):
    """``(engine key, user module text, engine module text)``; raises Unsupported. A key
    names a module: a hash of its text and of the versions (the engine's text names the
    user module's key)."""
    user = user_text(problem, jit_options)
    engine = engine_text(_key(user), problem, src, driver, jit_options, host_functions)
    return _key(engine), user, engine


def _folder():
    root = cache_dir()
    return None if root is None else os.path.join(root, "numba")


def _load(folder, prefix, key, text, inject=None):
    """``(module, written)``: the module ``text`` written (unless there) and imported once
    per process (its name holds the hash of its text)."""
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, f"{prefix}{key}.py")
    written = _write(path, text)
    name = f"_gpuivp_cache_{prefix}{key}"
    module = sys.modules.get(name)
    if module is None or written:
        module = _import(path, name, inject)
        for value in list(vars(module).values()):
            if hasattr(value, "_cache") and hasattr(value, "py_func"):
                _guard(value)
    return module, written


class UserModule(types.SimpleNamespace):
    """The imported user module of an entry: ``fun`` and ``events`` (numba dispatchers),
    ``key``, ``path``, and ``written`` (this process wrote it: nothing has compiled from it
    yet, so its ``fun`` is not known to compile)."""

    def discard(self):
        """Remove the module (its ``fun`` does not compile: a later process must not load
        it, but compile ``fun`` alone and fail fast, as in-process)."""
        with contextlib.suppress(OSError):
            os.unlink(self.path)
        sys.modules.pop(f"_gpuivp_cache_u{self.key}", None)
        STATS["discarded"] += 1


def _fallback(exc):
    STATS["fallback"] += 1
    LOG.debug("disk cache: engine compiled in-process: %s",
              exc if isinstance(exc, Unsupported) else repr(exc))


def load_user(problem, jit_options):
    """The user module of ``problem`` (:class:`UserModule`: ``fun`` and its event functions
    as numba dispatchers), or ``None`` where the disk cache is off or cannot hold them (then
    compile in-process). ``jit_options``: numba's options for ``fun`` and the events."""
    folder = _folder()
    if folder is None or getattr(problem, "affects", ()) or getattr(problem, "jac", None):
        return None  # (events with affect, a Rosenbrock method's jac: compiled in-process)
    try:
        text = user_text(problem, jit_options)
        key = _key(text)
        module, written = _load(folder, "u", key, text)
    except Exception as exc:  # Unsupported; an unwritable directory; a value not importing
        _fallback(exc)
        return None
    return UserModule(fun=getattr(module, f"{_P}fun"), key=key, written=written,
                      events=[getattr(module, f"{_P}event{e}")
                              for e in range(len(problem.events))],
                      path=os.path.join(folder, f"u{key}.py"), module=module)


def load_engine(user, problem, src, driver, jit_options, host_functions):
    """The cached ``run_range`` dispatcher for engine ``src`` of ``problem`` over the user
    module ``user`` (:func:`load_user`), or ``None`` where it cannot be written (then
    compile in-process).

    ``driver`` is the source of ``run_range``; ``jit_options`` numba's options for the
    engine (``run_range`` gets ``cache=True``); ``host_functions`` the namespace entries of
    ``EngineSource.namespace`` besides ``fun``, events and ``alloc_state``.
    """
    try:
        text = engine_text(user.key, problem, src, driver, jit_options, host_functions)
        engine, written = _load(_folder(), "e", _key(text), text, {f"{_P}user": user.module})
    except Exception as exc:
        _fallback(exc)
        return None
    STATS["write" if written or user.written else "hit"] += 1
    return engine.run_range
