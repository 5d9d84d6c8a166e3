"""The compiled-engine disk cache (gpuivp/engines/disk_cache.py).

Whether a process compiled is read from numba's dispatcher statistics (cache hits and
misses of the engine's ``run_range``) and the module's own counters, never from timings.
"""
import importlib.util
import json
import os
import subprocess
import sys
import textwrap
import types

import numpy as np
import pytest

from gpuivp.backends import numba as numba_backend
from gpuivp.engines import disk_cache
from gpuivp.engines.per_trajectory import EngineSource
from gpuivp.methods import METHODS

STUDY = '''
import json, sys
import numpy as np
from gpuivp import solve_ivp
from gpuivp.engines import disk_cache

K = 0.5

def decay(t, y, a):
    return (-a * y[0] + K * y[1], -y[1])

res = solve_ivp(decay, (0, 1), np.c_[[1.0, 2.0]], args=(np.array([1.0, 2.0, 3.0]),),
                backend="numba", method="RK45")
hits = misses = 0
for name, mod in list(sys.modules.items()):
    if name.startswith("_gpuivp_cache_e"):
        hits += sum(mod.run_range.stats.cache_hits.values())
        misses += sum(mod.run_range.stats.cache_misses.values())
print(json.dumps({"stats": dict(disk_cache.STATS), "hits": hits, "misses": misses,
                  "y": res.y_final.tolist(), "nfev": res.nfev.tolist()}))
'''


def run_study(folder, cache, **env):
    """Run the study in a fresh Python process; returns what it reports."""
    script = os.path.join(folder, "study.py")
    if not os.path.exists(script):
        with open(script, "w") as f:
            f.write(STUDY)
    environ = {k: v for k, v in os.environ.items()  # numba's files next to the modules
               if k not in ("GPUIVP_DISK_CACHE", "NUMBA_CACHE_DIR")}
    environ.update(GPUIVP_CACHE_DIR=str(cache), **env)
    out = subprocess.run([sys.executable, script], env=environ, capture_output=True, text=True,
                         timeout=600, cwd=folder)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def warm(tmp_path_factory):
    """A cache directory after a first (cold) process, and that process's report."""
    folder = tmp_path_factory.mktemp("study")
    cache = folder / "cache"
    return folder, cache, run_study(folder, cache)


def entry_files(cache):
    folder = os.path.join(cache, "numba")
    return sorted(os.path.join(folder, f) for f in os.listdir(folder) if f.endswith(".py"))


def numba_files(cache):
    folder = os.path.join(cache, "numba", "__pycache__")
    return sorted(os.path.join(folder, f) for f in os.listdir(folder)
                  if f.endswith((".nbi", ".nbc")))


def test_cold_process_writes_an_entry_and_compiles(warm):
    folder, cache, cold = warm
    assert cold["stats"] == {"write": 1}
    assert cold["misses"] == 1 and cold["hits"] == 0
    assert len(entry_files(cache)) == 2 and numba_files(cache)


def test_warm_process_loads_the_engine_without_compiling(warm):
    folder, cache, cold = warm
    before = {f: os.stat(f).st_mtime_ns for f in numba_files(cache)}
    again = run_study(folder, cache)
    assert again["stats"] == {"hit": 1}
    assert again["hits"] == 1 and again["misses"] == 0
    assert {f: os.stat(f).st_mtime_ns for f in numba_files(cache)} == before  # nothing saved
    assert again["y"] == cold["y"] and again["nfev"] == cold["nfev"]


def test_disabled_cache_writes_nothing_and_gives_the_same_results(warm):
    folder, cache, cold = warm
    elsewhere = folder / "unused"
    off = run_study(folder, elsewhere, GPUIVP_DISK_CACHE="0")
    assert off["stats"] == {} and not elsewhere.exists()
    assert off["y"] == cold["y"] and off["nfev"] == cold["nfev"]  # in-process compile


def test_corrupt_entry_is_rebuilt_not_used(warm):
    folder, cache, cold = warm
    for path in numba_files(cache):  # numba's cache files: garbage
        with open(path, "wb") as f:
            f.write(b"not a pickle")
    repaired = run_study(folder, cache)
    assert repaired["stats"]["hit"] == 1 and repaired["stats"]["numba_repair"] >= 1
    assert repaired["misses"] == 1 and repaired["y"] == cold["y"]

    engine, user = entry_files(cache)  # e<key>.py, u<key>.py
    good = {}
    for path in (engine, user):
        with open(path) as f:
            good[path] = f.read()
    with open(engine, "w") as f:  # a torn write: the module cut short
        f.write(good[engine][: len(good[engine]) // 2])
    assert "K = 0.5" in good[user]
    with open(user, "w") as f:  # an edited module: valid Python, another constant
        f.write(good[user].replace("K = 0.5", "K = 9.5"))
    rebuilt = run_study(folder, cache)
    assert rebuilt["stats"] == {"write": 1, "rebuilt": 2}
    assert rebuilt["y"] == cold["y"] and rebuilt["nfev"] == cold["nfev"]
    for path in (engine, user):
        with open(path) as f:
            assert f.read() == good[path]
    # numba stamps its index with the source's content: restored, its compiled code is valid
    assert rebuilt["hits"] == 1 and rebuilt["misses"] == 0


# -- keys and module texts, in this process (no compilation) -----------------------------
def _import_file(path, text):
    path.write_text(textwrap.dedent(text))
    spec = importlib.util.spec_from_file_location(f"m_{abs(hash(str(path)))}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _key(fun, n=2, events=(), method="RK45", arg_kinds=("scalar",)):
    problem = types.SimpleNamespace(fun=fun, events=events, n=n, dtype=np.dtype(np.float64))
    src = EngineSource(METHODS[method], n, arg_kinds, np.float64, False, "cpu")
    return disk_cache.entry(problem, src, numba_backend._driver(src.param_names),
                            numba_backend.JIT_OPTIONS, numba_backend.HOST_FUNCTIONS)


MODEL = '''
import numba
import numpy as np
C = {c}
W = np.array([1.0, 2.0])

@numba.njit
def helper(x):
    return C * np.abs(x)

def rhs(t, y, a):
    return (helper(y[0]) - a * W[0], {second})

lam = lambda t, y, a: (a * y[1] * C, -y[0])


def make(F):
    def closure(t, y, a):
        return (F * y[1], -y[0])
    return closure
'''


def test_key_changes_with_code_globals_closures_and_specialisation(tmp_path):
    base = _import_file(tmp_path / "a.py", MODEL.format(c=1.5, second="-y[1]"))
    same = _import_file(tmp_path / "b.py", MODEL.format(c=1.5, second="-y[1]"))
    const = _import_file(tmp_path / "c.py", MODEL.format(c=2.5, second="-y[1]"))
    code = _import_file(tmp_path / "d.py", MODEL.format(c=1.5, second="-2 * y[1]"))
    key = _key(base.rhs)[0]
    assert _key(same.rhs)[0] == key  # the same study in another module or process
    assert _key(const.rhs)[0] != key  # a global its helper reads changed
    assert _key(code.rhs)[0] != key  # its code changed
    base.W[0] = 7.0
    assert _key(base.rhs)[0] != key  # a global array's values
    assert _key(base.make(1.0))[0] != _key(base.make(2.0))[0]  # closure values
    assert _key(base.rhs, method="RK23")[0] != key
    assert _key(base.rhs, arg_kinds=("traj0",))[0] != key
    assert _key(base.rhs, n=3)[0] != key
    with_event = _key(base.rhs, events=(base.lam,))
    assert with_event[0] != key and "_gpuivp_event0 = lambda" in with_event[1]


def test_user_module_recreates_fun_helpers_and_values(tmp_path):
    model = _import_file(tmp_path / "a.py", MODEL.format(c=1.5, second="-y[1]"))
    funs = {"rhs": model.rhs, "closure": model.make(3.0), "lam": model.lam}
    for name, fun in funs.items():
        _, user_text, _ = _key(fun)
        user = _import_file(tmp_path / f"u_{name}.py", user_text)
        y = np.array([0.3, -1.2])
        assert user._gpuivp_fun.py_func(0.0, y, 0.7) == fun(0.0, y, 0.7)


def test_unwritable_functions_fall_back_to_in_process(tmp_path):
    model = _import_file(tmp_path / "a.py", '''
        def plain(x):
            return 2 * x

        def uses_plain(t, y):
            return (plain(y[0]), -y[1])

        class Box:
            pass

        BOX = Box()

        def uses_object(t, y):
            return (BOX, -y[1])

        two = lambda t, y: (y[1], y[0]); other = lambda t, y: (y[1], -y[0])
        ''')
    no_source = eval("lambda t, y: (y[1], -y[0])")
    for fun in (no_source, model.uses_plain, model.uses_object):
        with pytest.raises(disk_cache.Unsupported):
            _key(fun, arg_kinds=())
    # two lambdas on one line: each is found by its bytecode, not confused with the other
    assert "-y[0]" not in _key(model.two, arg_kinds=())[1]
    assert "-y[0]" in _key(model.other, arg_kinds=())[1]
    problem = types.SimpleNamespace(fun=no_source, events=(), n=2, dtype=np.dtype(np.float64))
    src = EngineSource(METHODS["RK45"], 2, (), np.float64, False, "cpu")
    before = disk_cache.STATS["fallback"]
    assert disk_cache.load_engine(problem, src, "", {}, numba_backend.HOST_FUNCTIONS) is None
    assert disk_cache.STATS["fallback"] == before + 1


@pytest.mark.parametrize("env, where", [
    ({}, os.path.join("XDG", "gpuivp")),
    ({"GPUIVP_CACHE_DIR": "somewhere"}, "somewhere"),
    ({"GPUIVP_CACHE_DIR": "0"}, None),
    ({"GPUIVP_CACHE_DIR": "somewhere", "GPUIVP_DISK_CACHE": "0"}, None),
])
def test_environment_moves_or_disables_the_cache(monkeypatch, tmp_path, env, where):
    monkeypatch.delenv("GPUIVP_CACHE_DIR", raising=False)
    monkeypatch.delenv("GPUIVP_DISK_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "XDG"))
    monkeypatch.chdir(tmp_path)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    expected = None if where is None else str(tmp_path / where)
    assert disk_cache.cache_dir() == expected
