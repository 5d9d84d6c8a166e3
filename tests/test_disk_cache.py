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

REPORT = '''
hits = misses = 0
for name, mod in list(sys.modules.items()):
    if name.startswith("_gpuivp_cache_e"):
        hits += sum(mod.run_range.stats.cache_hits.values())
        misses += sum(mod.run_range.stats.cache_misses.values())
print(json.dumps({"stats": dict(disk_cache.STATS), "hits": hits, "misses": misses,
                  **{name: [r.y_final.tolist(), r.nfev.tolist()] for name, r in RUNS.items()},
                  "y": RUNS["res"].y_final.tolist(), "nfev": RUNS["res"].nfev.tolist()}))
'''

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
RUNS = {"res": res}
''' + REPORT

# fun calls a plain Python helper (compiled with it), a method of an imported module and
# reads a global array (a hidden argument): the array is changed in place between two
# calls of one process.
HELPER_STUDY = '''
import json, sys
import numpy as np
from gpuivp import solve_ivp
from gpuivp.engines import disk_cache

W = np.array([1.0, 0.5])

def rate(x):
    return x * x + 1.0

def reads(t, y, a):
    return (-a * rate(W[0]) * y[0], np.sqrt(W[1]) * y[0] - y[1])

def run(backend):
    return solve_ivp(reads, (0, 1), np.c_[[1.0, 2.0]], args=(np.array([0.5, 1.0, 1.5]),),
                     backend=backend, method="RK45")

RUNS = {"res": run("numba")}
W[0] = 2.0
RUNS["changed"] = run("numba")
RUNS["changed_scipy"] = run("scipy")  # fun called from Python: reads W as it is now
''' + REPORT

# The looped engine (n >= LOOP_MIN_N: loops and the helper function `interp`, called for
# t_eval), an in-place fun reading a global array.
LOOPED_STUDY = '''
import json, sys
import numpy as np
from gpuivp import solve_ivp
from gpuivp.engines import disk_cache
from gpuivp.engines.per_trajectory import LOOP_MIN_N

DAMP = np.array([1.0, 0.5])  # read by the in-place fun: a hidden argument after dydt

def l96(t, y, dydt, F):
    n = y.shape[0]
    for i in range(n):
        dydt[i] = (y[(i + 1) % n] - y[i - 2]) * y[i - 1] - DAMP[i % 2] * y[i] + F

y0 = np.full((LOOP_MIN_N, 2), 8.0)
y0[0] += [0.01, 0.02]
res = solve_ivp(l96, (0, 0.5), y0, args=(np.array([8.0, 9.0]),), backend="numba",
                method="RK45", inplace=True, t_eval=[0.25, 0.5])
RUNS = {"res": res}
''' + REPORT


def run_study(folder, cache, study=STUDY, **env):
    """Run ``study`` in a fresh Python process; returns what it reports."""
    script = os.path.join(folder, f"study_{abs(hash(study))}.py")
    if not os.path.exists(script):
        with open(script, "w") as f:
            f.write(study)
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
    assert ", -y[1])" in good[user]  # fun, rewritten (K a hidden argument)
    with open(user, "w") as f:  # an edited module: valid Python, other code
        f.write(good[user].replace(", -y[1])", ", -9 * y[1])"))
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
    return disk_cache.entry(problem, src, numba_backend._driver(src),
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
    before = disk_cache.STATS["fallback"]
    assert disk_cache.load_user(problem, {}) is None
    assert disk_cache.STATS["fallback"] == before + 1


@pytest.mark.parametrize("study, written", [
    (HELPER_STUDY, ["def _gpuivp_fun(t, y, a, W):", "rate = _gpuivp_nb.njit("]),
    (LOOPED_STUDY, ["def _gpuivp_fun(t, y, dydt, F, DAMP):", "interp = _gpuivp_jit(interp)"]),
], ids=["helper-array", "looped"])
def test_warm_process_loads_rewritten_funs_and_looped_engines(tmp_path, study, written):
    cache = tmp_path / "cache"
    cold = run_study(tmp_path, cache, study)
    assert cold["stats"] == {"write": 1} and cold["misses"] == 1
    warm = run_study(tmp_path, cache, study)
    assert warm["stats"] == {"hit": 1}
    assert warm["hits"] == 1 and warm["misses"] == 0  # nothing compiled
    files = entry_files(cache)
    assert len(files) == 2
    text = "".join(open(path).read() for path in files)
    for line in written:  # the global array an argument; the helpers compiled
        assert line in text, line
    for name in cold:
        if name not in ("stats", "hits", "misses"):
            assert warm[name] == cold[name], name
    if "changed" in warm:  # the global array changed in place: read afresh, no new entry
        assert warm["changed"][0] != warm["res"][0]
        assert warm["changed"][1] == warm["changed_scipy"][1]  # the same steps
        # scipy sums the stages with BLAS (another summation order): values to rounding
        np.testing.assert_allclose(warm["changed"][0], warm["changed_scipy"][0], rtol=1e-10)


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


def test_fun_that_does_not_compile_leaves_no_entry(monkeypatch, tmp_path):
    import gpuivp

    model = _import_file(tmp_path / "bad.py", '''
        def with_try(t, y, a):
            try:
                v = -a * y[0]
            except Exception as e:  # numba does not bind exceptions
                v = 0.0
            return (v,)
        ''')
    monkeypatch.setenv("GPUIVP_CACHE_DIR", str(tmp_path / "cache"))
    before = disk_cache.STATS["discarded"]
    with pytest.raises(gpuivp.backends.BackendUnavailable, match="could not be compiled"):
        gpuivp.solve_ivp(model.with_try, (0, 1), np.c_[[1.0]], args=(0.5,), backend="numba")
    assert disk_cache.STATS["discarded"] == before + 1  # its user module was written, then
    assert entry_files(tmp_path / "cache") == []  # removed: the next process fails as fast
