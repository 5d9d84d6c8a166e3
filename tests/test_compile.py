"""Compiling the user's ``fun``: fallback and errors, helpers, hidden arrays, the cache.

numba compiles are slow on CI machines: each test compiles at most one or two engines
(n = 1 or 2, RK45, a handful of trajectories).
"""
import os
import subprocess
import sys
import textwrap
import threading
import warnings

import numpy as np
import pytest

import gpuivp
from gpuivp.backends import numba as nb
from gpuivp.engines import compile_cache

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
from not_compiling import NOT_COMPILING  # noqa: E402  (funs numba does not compile)
K = 3
Y0 = np.ones((1, K))
ARGS = (np.linspace(0.5, 1.5, K),)
TOL = dict(rtol=1e-8, atol=1e-10)


def solve(fun, backend="auto", y0=Y0, args=ARGS, **kw):
    return gpuivp.solve_ivp(fun, (0.0, 1.0), y0, args=args, backend=backend, **{**TOL, **kw})


@pytest.mark.parametrize("case", list(NOT_COMPILING))
def test_auto_falls_back_fast_with_one_warning_when_fun_does_not_compile(case, monkeypatch):
    fun, reason = NOT_COMPILING[case]

    def engine_built(*a, **k):
        raise AssertionError("the whole engine was compiled before giving up")

    # Fast: `fun` is compiled alone first, the engine is never generated for it.
    monkeypatch.setattr(nb.EngineSource, "for_problem", engine_built)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = solve(fun)
    fallbacks = [w for w in caught if issubclass(w.category, gpuivp.BackendFallbackWarning)]
    assert len(fallbacks) == 1, [str(w.message) for w in caught]
    message = str(fallbacks[0].message)
    assert "`fun` could not be compiled for numba" in message and reason in message
    assert "'scipy'" in message  # where it ran instead
    assert res.backend == "scipy" and res.success
    ref = solve(fun, backend="scipy")
    np.testing.assert_array_equal(res.y_final, ref.y_final)


@pytest.mark.parametrize("case", ["try/except", "object attribute"])
def test_explicit_numba_names_fun_and_gives_a_hint(case):
    fun, reason = NOT_COMPILING[case]
    with pytest.raises(gpuivp.backends.BackendUnavailable) as info:
        solve(fun, backend="numba")
    message = str(info.value)
    assert message.startswith("`fun` could not be compiled for numba: ") and reason in message
    assert "Hint: " in message and "not usable here" not in message


def test_fallback_warning_is_exported_and_a_user_warning():
    assert "BackendFallbackWarning" in gpuivp.__all__
    assert issubclass(gpuivp.BackendFallbackWarning, UserWarning)


# -- helpers compiled along with fun ---------------------------------------------------------
def vtrap(x, scale):
    return x / (1.0 - np.exp(-x / scale)) if abs(x) > 1e-7 else scale


def alpha_n(v):
    return 0.01 * vtrap(v + 55.0, 10.0)


def beta_n(v):
    return 0.125 * np.exp(-(v + 65.0) / 80.0)


def gate_rhs(alpha, beta, x):  # a helper taking helpers' results
    return alpha * (1.0 - x) - beta * x


def hh_like(t, y, current):
    """A Hodgkin-Huxley style model: rate functions are plain module functions."""
    v, n = y[0], y[1]
    dv = current - 36.0 * n ** 4 * (v + 77.0) - 0.3 * (v + 54.4)
    return (dv, gate_rhs(alpha_n(v), beta_n(v), n))


HH_Y0 = np.array([[-65.0] * K, [0.32] * K])
HH_ARGS = (np.linspace(5.0, 15.0, K),)


def test_plain_python_helpers_compile_with_fun_on_numba():
    with warnings.catch_warnings():
        warnings.simplefilter("error", gpuivp.BackendFallbackWarning)
        res = gpuivp.solve_ivp(hh_like, (0.0, 5.0), HH_Y0, args=HH_ARGS, **TOL)
    assert res.backend == "numba"
    ref = gpuivp.solve_ivp(hh_like, (0.0, 5.0), HH_Y0, args=HH_ARGS, backend="scipy", **TOL)
    np.testing.assert_array_equal(res.nfev, ref.nfev)
    # libm's exp and NumPy's may differ in the last bit: that, amplified by the steps.
    np.testing.assert_allclose(res.y_final, ref.y_final, rtol=1e-9)


def test_helpers_in_a_closure_compile_too():
    def make(scale):
        def damp(x):
            return -scale * x

        def f(t, y, a):
            return (a * damp(y[0]),)
        return f

    res = solve(make(2.0), backend="numba")
    np.testing.assert_allclose(res.y_final[0], np.exp(-2.0 * ARGS[0]), rtol=1e-7)


# -- arrays fun reads: in-place changes, no recompile -----------------------------------------
SMALL = np.array([0.5])
LARGE = np.zeros(131_072)  # 1 MiB of float64: over numba's old 4096-element id key


def make_reader():
    closed = np.zeros(10_000)

    def reads_arrays(t, y, a):
        return (-(a + SMALL[0] + LARGE[-1] + closed[7]) * y[0],)
    return reads_arrays, closed


READER, CLOSED = make_reader()


def reads_arrays_vec(t, y, a):
    return (-(a + SMALL[0] + LARGE[-1] + CLOSED[7]) * y[0],)


@pytest.mark.parametrize("backend", ["numba", "numpy", "scipy"])
def test_changing_arrays_in_place_gives_new_results(backend):
    fun = reads_arrays_vec if backend == "numpy" else READER
    kw = dict(vectorized=True) if backend == "numpy" else {}
    old = SMALL.copy(), LARGE.copy(), CLOSED.copy()
    try:
        expected_rate = ARGS[0] + 0.5
        for change in (None, "small", "large", "closure"):
            if change == "small":
                SMALL[0] = 1.0
            elif change == "large":
                LARGE[-1] = 0.25
            elif change == "closure":
                CLOSED[7] = 0.125
            rate = ARGS[0] + SMALL[0] + LARGE[-1] + CLOSED[7]
            res = solve(fun, backend=backend, **kw)
            np.testing.assert_allclose(res.y_final[0], np.exp(-rate), rtol=1e-7,
                                       err_msg=f"after changing the {change} array")
        assert not np.allclose(rate, expected_rate)
    finally:
        SMALL[:], LARGE[:], CLOSED[:] = old


def test_array_contents_change_without_recompiling():
    entries = compile_cache.entries()
    engine = None
    try:
        for value in (0.0, 1.0, 3.0):
            LARGE[5] = value
            solve(READER, backend="numba")
            problem = nb.prepare(_problem_of(READER))
            run = nb.compiled_engine(problem, _rk45())
            assert engine is None or run is engine
            engine = run
        assert len(run.signatures) == 1
        assert compile_cache.entries() <= entries + 1
    finally:
        LARGE[5] = 0.0


def test_arrays_compiled_in_are_keyed_by_contents():
    """A ``fun`` without source (made by ``exec``) keeps its arrays as compiled-in constants:
    the key hashes their contents, any size."""
    ns = {"np": np, "TABLE": np.zeros(50_000)}
    exec("def no_source(t, y, a):\n    return (-(a + TABLE[-1]) * y[0],)\n", ns)
    fun = ns["no_source"]
    first = solve(fun, backend="numba")
    ns["TABLE"][-1] = 1.0
    second = solve(fun, backend="numba")
    np.testing.assert_allclose(first.y_final[0], np.exp(-ARGS[0]), rtol=1e-7)
    np.testing.assert_allclose(second.y_final[0], np.exp(-ARGS[0] - 1.0), rtol=1e-7)


def _rk45():
    from gpuivp.methods import METHODS
    return METHODS["RK45"]


def _problem_of(fun, y0=Y0, args=ARGS):
    """The Problem ``solve_ivp`` hands the backend (captured, not solved)."""
    from gpuivp import _ivp
    captured = []

    def spy(problem, name):
        captured.append(problem)
        raise gpuivp.backends.BackendUnavailable("captured")

    old = _ivp._run
    _ivp._run = spy
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                gpuivp.solve_ivp(fun, (0.0, 1.0), y0, args=args, backend="numba", **TOL)
            except RuntimeError:
                pass
    finally:
        _ivp._run = old
    return captured[0]


# -- one compile per engine, bounded cache ---------------------------------------------------
def test_concurrent_first_calls_compile_once(monkeypatch):
    ns = {"np": np}
    exec("def cold(t, y, a):\n    return (-a * y[0] * 0.5,)\n", ns)  # a fresh engine
    builds = []
    original = nb._check_compiles

    def counting(functions, problem):
        builds.append(1)
        return original(functions, problem)

    monkeypatch.setattr(nb, "_check_compiles", counting)
    results, errors = [], []

    def call():
        try:
            results.append(solve(ns["cold"], backend="numba").y_final)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=call) for _ in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=300)
    assert not errors and len(results) == 4
    assert len(builds) == 1
    run = nb.compiled_engine(nb.prepare(_problem_of(ns["cold"])), _rk45())
    assert len(run.signatures) == 1
    # `fun` compiled alone first (to fail fast) with the types the engine then calls it with
    fun = run.py_func.__globals__["fun"]
    assert len(fun.signatures) == 1, fun.signatures


def test_input_layouts_share_one_specialisation():
    """Fortran-ordered, read-only and sliced inputs reach numba as C-contiguous writeable
    arrays: one compiled specialisation for all."""
    args_ro = np.linspace(5.0, 15.0, K)
    args_ro.flags.writeable = False
    y0_ro = HH_Y0.copy()
    y0_ro.flags.writeable = False
    ref = gpuivp.solve_ivp(hh_like, (0.0, 1.0), HH_Y0, args=HH_ARGS, backend="numba")
    for y0, args in ((np.asfortranarray(HH_Y0), HH_ARGS), (y0_ro, (args_ro,)),
                     (np.repeat(HH_Y0, 2, axis=1)[:, ::2], (np.repeat(HH_ARGS[0], 2)[::2],))):
        res = gpuivp.solve_ivp(hh_like, (0.0, 1.0), y0, args=args, backend="numba")
        np.testing.assert_array_equal(res.y_final, ref.y_final)
    run = nb.compiled_engine(nb.prepare(_problem_of(hh_like, HH_Y0, HH_ARGS)), _rk45())
    assert len(run.signatures) == 1, run.signatures


def test_closures_over_a_changing_float_do_not_recompile():
    def make(rate):
        def f(t, y, a):
            return (-(a + rate) * y[0],)
        return f

    solve(make(0.0), backend="numba")
    entries = compile_cache.entries()
    for rate in (0.25, np.float64(0.5), 1.0):  # np.float64 and float: one type
        res = solve(make(rate), backend="numba")
        np.testing.assert_allclose(res.y_final[0], np.exp(-ARGS[0] - rate), rtol=1e-7)
    assert compile_cache.entries() == entries


def test_cache_is_bounded_least_recently_used(monkeypatch):
    monkeypatch.setattr(compile_cache, "MAX_ENTRIES", 3)
    monkeypatch.setattr(compile_cache, "_CACHE", type(compile_cache._CACHE)())
    built = []
    for key in ["a", "b", "c", "a", "d", "e"]:
        compile_cache.cached(key, lambda key=key: built.append(key) or key.upper())
        assert compile_cache.entries() <= 3
    assert built == ["a", "b", "c", "d", "e"]  # "a" was a hit
    assert list(compile_cache._CACHE) == ["a", "d", "e"]  # "b", "c": least recently used


def test_cache_size_from_the_environment():
    code = "from gpuivp.engines import compile_cache as c; print(c.MAX_ENTRIES)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=dict(os.environ, GPUIVP_CACHE_SIZE="7"), cwd=ROOT, check=True)
    assert out.stdout.strip() == "7"


# -- cuda under the simulator ---------------------------------------------------------------
SIM_SCRIPT = textwrap.dedent("""
    import numpy as np, gpuivp, sys
    sys.path.insert(0, {here!r})
    from test_compile import READER, SMALL, LARGE, CLOSED, hh_like, HH_Y0, HH_ARGS
    a = np.array([0.5, 1.0])
    out = []
    for change in (None, "large", "closure"):
        if change == "large":
            LARGE[-1] = 0.25
        elif change == "closure":
            CLOSED[7] = 0.125
        res = gpuivp.solve_ivp(READER, (0.0, 1.0), np.ones((1, 2)), args=(a,),
                               backend="cuda", rtol=1e-8, atol=1e-10)
        rate = a + SMALL[0] + LARGE[-1] + CLOSED[7]
        out.append(float(np.max(np.abs(res.y_final[0] / np.exp(-rate) - 1))))
    res = gpuivp.solve_ivp(hh_like, (0.0, 1.0), HH_Y0[:, :2], args=(HH_ARGS[0][:2],),
                           backend="cuda", rtol=1e-6, atol=1e-8)
    ref = gpuivp.solve_ivp(hh_like, (0.0, 1.0), HH_Y0[:, :2], args=(HH_ARGS[0][:2],),
                           backend="scipy", rtol=1e-6, atol=1e-8)
    out.append(float(np.max(np.abs(res.y_final - ref.y_final))))
    print("ERRORS", out)
""")


@pytest.mark.cudasim
def test_cuda_simulator_sees_in_place_changes_and_runs_helpers():
    pytest.importorskip("numba_cuda")
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1")
    proc = subprocess.run([sys.executable, "-c", SIM_SCRIPT.format(here=HERE)], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    errors = eval(proc.stdout.split("ERRORS", 1)[1])
    assert all(e < 1e-6 for e in errors[:3]), errors   # RK45 at rtol 1e-8 against exp
    assert errors[3] < 1e-6, errors                     # the same method as scipy's


# -- what the rewrite handles ----------------------------------------------------------------
OFFSET = np.zeros(3)
LEVEL = np.array([0.5])


def lambda_fun():
    return lambda t, y, a: (-(a + OFFSET[0]) * y[0],)


def with_default(t, y, a, extra=OFFSET):  # `extra` is not passed: its default is read
    return (-(a + extra[1]) * y[0],)


def rate_of(a):  # a helper reading a global array: compiled in, keyed by its contents
    return a + OFFSET[2]


def through_helper(t, y, a):
    return (-rate_of(a) * y[0],)


@pytest.mark.parametrize("fun, index", [(lambda_fun(), 0), (with_default, 1),
                                        (through_helper, 2)],
                         ids=["lambda", "unpassed default", "helper"])
def test_lambdas_defaults_and_helpers_see_in_place_changes(fun, index):
    try:
        for value in (0.0, 0.5):
            OFFSET[index] = value
            res = solve(fun, backend="numba")
            np.testing.assert_allclose(res.y_final[0], np.exp(-ARGS[0] - value), rtol=1e-7)
    finally:
        OFFSET[:] = 0.0


def decay(t, y, a):
    return (-a * y[0],)


def below_level(t, y, a):
    return y[0] - LEVEL[0]


below_level.terminal = True


def test_event_functions_read_arrays_afresh():
    """An event reading a global array: hidden arguments of every function (``fun`` gets
    them too, unused); an event without source beside it is wrapped to take them."""
    ns = {"np": np}
    exec("def exec_event(t, y, a):\n    return y[0] - 0.9\n", ns)
    try:
        for level in (0.5, 0.25):
            LEVEL[0] = level
            res = gpuivp.solve_ivp(decay, (0.0, 10.0), Y0, args=ARGS, events=[below_level],
                                   backend="numba", **TOL)
            np.testing.assert_allclose(res.t_final, np.log(1 / level) / ARGS[0], rtol=1e-6)
            res = gpuivp.solve_ivp(decay, (0.0, 10.0), Y0, args=ARGS, backend="numba",
                                   events=[ns["exec_event"], below_level], **TOL)
            np.testing.assert_allclose(res.t_final, np.log(1 / level) / ARGS[0], rtol=1e-6)
            np.testing.assert_allclose(res.t_events[0][:, 0], np.log(1 / 0.9) / ARGS[0],
                                       rtol=1e-6)  # (k, max_events): each one's first
    finally:
        LEVEL[0] = 0.5


@pytest.mark.parametrize("method", ["RK45", "DOP853", "Vern7", "RK4", "Rodas5P"])
@pytest.mark.parametrize("n", [2, 40])
def test_driver_is_solve_ones_body_in_a_loop_for_every_engine(method, n):
    """The ``numba`` engine is one compiled function (numba compiled ``solve_one`` twice
    when a driver called it): ``run_range``'s loop holds ``solve_one``'s statements, the
    same lines, its ``return`` a ``continue``; no engine variant keeps it from being
    written (events with and without affect, ``t_eval``, dense output, fixed steps,
    ``jac``, in place, scalarised and looped). No compilation."""
    from gpuivp.engines.per_trajectory import EngineSource
    from gpuivp.methods import METHODS

    tab = METHODS[method]
    variants = [dict(), dict(events=((1, 0), (0, -1)), affects=(True, False), t_eval=True),
                dict(dense=True, t_eval=False, inplace=True), dict(steps_only=True, dense=True)]
    for kw in variants:
        for has_jac in (False, True):
            src = EngineSource(tab, n, ("traj0", "scalar"), np.float64, method == "RK4",
                               "cpu", has_jac=has_jac, **kw)
            text = nb._driver(src)
            body = src.src.split("def solve_one(", 1)[1].split("\n", 1)[1]
            body = body.split("\ndef ", 1)[0].rstrip("\n").split("\n")
            lines = text.rstrip("\n").split("\n")
            assert lines[0] == f"def run_range(i_begin, i_end, {', '.join(src.param_names)}):"
            assert lines[1] == "    for i in range(i_begin, i_end):"
            assert sum(ln.strip() == "return" for ln in body) == 1
            assert lines[2:] == [f"    {ln[:-len('return')]}continue" if ln.strip() == "return"
                                 else f"    {ln}" if ln.strip() else "" for ln in body]
