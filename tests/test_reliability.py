"""Reliability: nothing hangs (fork, Ctrl-C), memory stays within its budget, and bad or
unusual input gets one named error or the same behaviour on every backend.

The hang and memory checks run in a fresh Python process each (``run_script``), with a
timeout: a hang is a failure with the child's output, not a stuck test session.
"""
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import gpuivp
from problems import decay, lorenz

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

CPU_BACKENDS = ["numba", "numpy", "scipy"]


def run_script(code, timeout=240, env=None, preexec_fn=None):
    """Run ``code`` in a fresh interpreter (tests/ importable); returns its stdout, or fails
    the test with the output when it exits non-zero or runs past ``timeout`` seconds."""
    full_env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [ROOT, HERE] + [p for p in [os.environ.get("PYTHONPATH")] if p]), **(env or {}))
    try:
        proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT,
                              env=full_env, capture_output=True, text=True, timeout=timeout,
                              preexec_fn=preexec_fn)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"the child ran over {timeout} s (a hang):\n{exc.stdout}\n{exc.stderr}")
    if proc.returncode != 0:
        pytest.fail(f"the child failed (rc={proc.returncode}):\n{proc.stdout}\n"
                    f"{proc.stderr[-4000:]}")
    return proc.stdout


def parse(out):
    """``key=value`` lines of a child's output as a dict of floats."""
    return {k: float(v) for k, v in (line.split("=", 1) for line in out.splitlines()
                                     if "=" in line)}


# -- no hang -------------------------------------------------------------------------------

def test_numba_backend_works_in_a_forked_child_after_a_parallel_run():
    # k >= 64: the ensemble runs on the thread pool, which a forked child inherits without
    # its threads. The child's call must finish (it hung in f.result() before).
    out = run_script("""
        import multiprocessing, numpy as np, gpuivp
        from problems import lorenz

        def solve(k):
            r = gpuivp.solve_ivp(lorenz, (0, 1), np.c_[[1.0, 0.0, 0.0]], backend="numba",
                                 args=(10.0, np.linspace(0, 28, k), 8 / 3))
            return float(r.y_final.sum())

        here = solve(128)
        with multiprocessing.get_context("fork").Pool(1) as pool:
            there = pool.apply_async(solve, (128,)).get(timeout=60)
        print(f"same={int(here == there)}")
    """, timeout=180)
    assert parse(out)["same"] == 1


#: A run of about a minute on one core if nothing stops it: a chaotic Lorenz ensemble at
#: tight tolerances over a long span.
LONG_RUN = """
    import os, signal, threading, time, numpy as np, gpuivp
    from problems import lorenz

    BACKEND = {backend!r}

    def short():
        t = time.perf_counter()
        gpuivp.solve_ivp(lorenz, (0, 2), np.c_[[1.0, 0.0, 0.0]], backend=BACKEND,
                         vectorized=True, args=(10.0, np.linspace(20, 28, 100), 8 / 3))
        return time.perf_counter() - t

    short()                      # compiles
    before = short()
    timer = threading.Timer(2.0, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    t = time.perf_counter()
    try:
        gpuivp.solve_ivp(lorenz, (0, {t1}), np.c_[[1.0, 0.0, 0.0]], backend=BACKEND,
                         vectorized=True, args=(10.0, np.linspace(27, 28, {k}), 8 / 3),
                         rtol=1e-10, atol=1e-12, max_steps=10**8)
        print("interrupted=0")
    except KeyboardInterrupt:
        print("interrupted=1")
    print(f"stopped_after={{time.perf_counter() - t}}")
    after = short()
    print(f"before={{before}}")
    print(f"after={{after}}")
    threads = [th.name for th in threading.enumerate() if th.name.startswith("gpuivp")]
    print(f"threads={{len(threads)}}")
"""


@pytest.mark.parametrize("backend, k, t1", [("numba", 256, 4000), ("numba", 8, 100_000),
                                           ("numpy", 256, 4000)])
def test_ctrl_c_stops_all_work_of_the_call(backend, k, t1):
    # SIGINT 2 s into a run of about a minute: KeyboardInterrupt reaches the caller within a
    # time slice, and the next call is not slowed by abandoned work (before the fix the
    # pool's chunks ran on, and the follow-up call waited behind them). k = 8 runs in the
    # calling thread (no pool): Ctrl-C is seen between time slices of the engine.
    out = parse(run_script(LONG_RUN.format(backend=backend, k=k, t1=t1), timeout=240))
    assert out["interrupted"] == 1
    # Tolerances: the machine is shared, so a generous margin; the unstopped run takes
    # about a minute more, well beyond it.
    assert out["stopped_after"] < 2.0 + 10.0
    assert out["after"] < 5 * out["before"] + 3.0


# -- one named error, or the same behaviour on every backend ------------------------------

Y0 = np.c_[[1.0, 0.0, 0.0]]
RHO = np.linspace(0.5, 20.0, 4)


def lorenz_call(backend="numpy", **kw):
    opts = dict(args=(10.0, RHO, 8 / 3), backend=backend, vectorized=True)
    opts.update(kw)
    return gpuivp.solve_ivp(lorenz, (0.0, 1.0), Y0, **opts)


def returns_none(t, y, *args):
    y[0] - 1.0  # no return: None


def crossing(t, y, *args):
    return y[0] - 5.0


def with_direction(direction):
    def event(t, y, *args):
        return y[0] - 5.0
    event.direction = direction
    return event


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_event_returning_none_is_a_type_error_naming_it(backend):
    with pytest.raises(TypeError, match=r"`events\[1\]` returned None"):
        lorenz_call(backend, events=[crossing, returns_none])


@pytest.mark.parametrize("direction", [np.nan, None, "up", np.inf, [1]])
def test_bad_event_direction_is_a_value_error_naming_it(direction):
    with pytest.raises(ValueError, match=r"`direction` attribute of `events\[0\]`"):
        lorenz_call(events=with_direction(direction))


def test_direction_is_its_sign_on_every_backend():
    # 2.5 means rising, as 1 does, on every backend.
    ref = lorenz_call("scipy", events=with_direction(1))
    for backend in CPU_BACKENDS:
        res = lorenz_call(backend, events=with_direction(2.5))
        np.testing.assert_array_equal(res.n_events[0], ref.n_events[0])


@pytest.mark.parametrize("events", [5, 2.0])
def test_events_not_callables_is_a_type_error_naming_it(events):
    with pytest.raises(TypeError, match="`events` must be a callable"):
        lorenz_call(events=events)


def test_ragged_args_is_a_value_error_naming_it():
    with pytest.raises(ValueError, match=r"args\[1\] is not a rectangular array"):
        gpuivp.solve_ivp(lorenz, (0.0, 1.0), Y0, args=(10.0, [[1.0, 2.0], [3.0]], 8 / 3),
                         backend="numpy", vectorized=True)


def ragged(t, y, lam):
    return (-lam * y[0], [1.0, [2.0, 3.0]])


@pytest.mark.parametrize("vectorized", [False, True])
def test_ragged_tuple_from_fun_is_a_value_error_naming_it(vectorized):
    # It crashed inside gpuivp's own message (np.shape of a ragged sequence).
    with pytest.raises(ValueError, match=r"`fun` returned a ragged sequence as entry 1"):
        gpuivp.solve_ivp(ragged, (0.0, 1.0), np.ones((2, 3)), args=(1.0,),
                         backend="numpy" if vectorized else "numba", vectorized=vectorized)


@pytest.mark.parametrize("method", ["RK4", "Tsit5", "Euler"])
def test_engine_method_on_scipy_backend_says_which_backends_run_it(method):
    with pytest.raises(ValueError, match=f"{method!r} is gpuivp's own: it runs on the "
                                         f"'numba', 'numpy', 'cuda' and 'cupy' backends"):
        lorenz_call("scipy", method=method, dt=0.01)


@pytest.mark.parametrize("backend", ["numba", "numpy"])
def test_scipy_only_method_on_engine_backend_says_which_backends_run_it(backend):
    with pytest.raises(ValueError, match="runs only on the 'scipy' backend"):
        lorenz_call(backend, method="Radau")


def test_dt_with_adaptive_method_is_refused_by_scipy_backend():
    with pytest.raises(ValueError, match="`dt` given with the adaptive method 'RK45'"):
        lorenz_call("scipy", dt=0.01)
    with pytest.raises(ValueError, match="`dt` given with the adaptive method 'RK45'"):
        gpuivp.solve_ivp(decay, (0.0, 1.0), [1.0], args=(1.0,), dt=0.01, backend="scipy")


def test_dt_with_adaptive_method_means_fixed_steps_everywhere():
    # numba and numpy take 1 / 0.01 = 100 fixed steps; auto never picks scipy (which would
    # ignore dt), for an ensemble or a single IVP.
    runs = {b: lorenz_call(b, dt=0.01) for b in ("numba", "numpy", "auto")}
    for res in runs.values():
        np.testing.assert_array_equal(res.naccept, 100)
        assert res.backend != "scipy"
    np.testing.assert_allclose(runs["numba"].y_final, runs["numpy"].y_final, rtol=1e-13)
    single = gpuivp.solve_ivp(decay, (0.0, 1.0), [1.0], args=(1.0,), dt=0.01)
    assert single.backend != "scipy" and single.naccept == 100
    rk4 = gpuivp.solve_ivp(decay, (0.0, 1.0), [1.0], args=(1.0,), method="RK4", dt=0.1)
    assert rk4.backend != "scipy" and rk4.naccept == 10
    np.testing.assert_allclose(rk4.y[0, -1], np.exp(-1.0), rtol=1e-5)


def test_scipy_backend_warns_once_per_call_and_leaks_no_runtime_warnings():
    import warnings

    rho = np.r_[RHO, 1e300]  # overflows inside scipy's arithmetic
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        gpuivp.solve_ivp(lorenz, (0.0, 1.0), Y0, args=(10.0, rho, 8 / 3), backend="scipy",
                         unknown_option=3)
    messages = [str(w.message) for w in caught]
    assert sum("unknown_option" in m for m in messages) == 1, messages
    assert not [w for w in caught if issubclass(w.category, RuntimeWarning)], messages


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_float32_stays_float32(backend):
    t_eval = np.linspace(0.0, 1.0, 5)
    res = lorenz_call(backend, dtype=np.float32, t_eval=t_eval, dense_output=True,
                      events=crossing)
    for name in ("t", "y", "t_final", "y_final"):
        assert res[name].dtype == np.float32, name
    assert res.t_events[0].dtype == np.float32 and res.y_events[0].dtype == np.float32
    assert res.sol(0.5).dtype == np.float32
    assert res.sol(t_eval).dtype == np.float32


# -- memory within budget -------------------------------------------------------------------

class Counting:
    """``lorenz`` counting its calls."""

    def __init__(self):
        self.calls = 0

    def __call__(self, t, y, sigma, rho, beta):
        self.calls += 1
        return lorenz(t, y, sigma, rho, beta)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_result_that_cannot_fit_is_refused_before_any_work(backend, monkeypatch):
    from gpuivp import _chunking as C

    monkeypatch.setattr(C, "available_host_memory", lambda: 64 << 20)
    fun = Counting()
    k = 100_000  # y alone: 3 x 100,000 x 1,000 float64 = 2.2 GiB
    with pytest.raises(gpuivp.MemoryBudgetError) as info:
        gpuivp.solve_ivp(fun, (0.0, 1.0), Y0, args=(10.0, np.linspace(0, 28, k), 8 / 3),
                         t_eval=np.linspace(0.0, 1.0, 1000), backend=backend, vectorized=True)
    assert isinstance(info.value, MemoryError)
    message = str(info.value)
    for part in ("2.24 GiB", "only 64 MiB is available", "`t_eval`", "gpuivp.dask",
                 "memory_budget"):
        assert part in message, (part, message)
    assert fun.calls <= 2  # the shape probe only: no integration started


@pytest.mark.parametrize("backend", ["numba", "numpy"])
def test_dense_output_that_cannot_fit_names_dense_max_steps(backend, monkeypatch):
    from gpuivp import _chunking as C

    monkeypatch.setattr(C, "available_host_memory", lambda: 1 << 20)
    with pytest.raises(gpuivp.MemoryBudgetError, match="smaller `dense_max_steps` "
                                                       r"\(now 100000"):
        gpuivp.solve_ivp(lorenz, (0.0, 5.0), Y0, args=(10.0, np.linspace(0, 28, 1000), 8 / 3),
                         rtol=1e-8, atol=1e-10, dense_output=True, backend=backend,
                         vectorized=True)


def test_default_budget_honours_rlimit_as():
    # Address space limited to what is in use plus 1 GiB: the default budget is at most a
    # quarter of that, and a 2.2 GiB result is refused at once (not a raw MemoryError
    # after work, as when the limit was ignored).
    out = parse(run_script("""
        import resource, time, numpy as np, gpuivp
        from gpuivp import _chunking as C
        from problems import lorenz

        for line in open("/proc/self/status"):
            if line.startswith("VmSize:"):
                used = int(line.split()[1]) * 1024
        resource.setrlimit(resource.RLIMIT_AS, (used + (1 << 30), resource.RLIM_INFINITY))
        print(f"budget={C.default_memory_budget('numpy')}")
        t = time.perf_counter()
        try:
            gpuivp.solve_ivp(lorenz, (0, 1), np.c_[[1.0, 0.0, 0.0]], backend="numpy",
                             vectorized=True, args=(10.0, np.linspace(0, 28, 100_000), 8 / 3),
                             t_eval=np.linspace(0, 1, 1000))
            print("refused=0")
        except gpuivp.MemoryBudgetError:
            print("refused=1")
        print(f"seconds={time.perf_counter() - t}")
    """, timeout=120))
    assert 0 < out["budget"] <= (1 << 30) / 4
    assert out["refused"] == 1
    assert out["seconds"] < 5.0  # before any work (the integration takes minutes)


#: Peak RSS of one call in a fresh process, beyond the result and the call's own copies of
#: its inputs (y0 as an (n, k) array, the per-trajectory args), over the memory budget.
PEAK_RSS = """
    import sys, numpy as np, gpuivp
    from problems import lorenz

    def status(key):
        for line in open("/proc/self/status"):
            if line.startswith(key):
                return int(line.split()[1]) * 1024

    def call(k, budget):
        return gpuivp.solve_ivp(lorenz, (0, 1.0), np.c_[[1.0, 0.0, 0.0]], backend={backend!r},
                                vectorized=True, args=(10.0, RHO[:k], 8 / 3), method={method!r},
                                memory_budget=budget)

    K, BUDGET = {k}, {budget}
    RHO = np.linspace(0.5, 20, K)
    call(100, None)                                 # compiles
    call(K, BUDGET)  # compiles what the chunks pick (numba: the lane engine from 10,000)
    base = status("VmRSS")
    open("/proc/self/clear_refs", "w").write("5")   # resets VmHWM, the peak RSS, to now
    res = call(K, BUDGET)
    peak = status("VmHWM")
    result = sum(v.nbytes for v in res.values() if isinstance(v, np.ndarray))
    inputs = (3 + 1) * K * 8
    print(f"ratio={{(peak - base - result - inputs) / BUDGET}}")
"""


@pytest.mark.parametrize("backend, method", [("numba", "RK45"), ("numpy", "RK45"),
                                             ("numpy", "DOP853")])
def test_working_set_stays_within_memory_budget(backend, method):
    # 100,000 trajectories under a 4 MiB budget: about 10 chunks. Tolerance: 1.5x the budget
    # plus 4 MiB (allocator slack, page granularity, the temporaries of the user's fun).
    budget = 4 << 20
    out = parse(run_script(PEAK_RSS.format(backend=backend, method=method, k=100_000,
                                           budget=budget), timeout=300))
    assert out["ratio"] <= 1.5 + (4 << 20) / budget, out


# -- a trajectory that fails at t0 ----------------------------------------------------------

@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_trajectory_failing_at_t0_has_y0_there(backend):
    # rho = nan: fun(t0, y0) is NaN for trajectory 1 only (status -3 at t0). Its state at
    # t0 is y0, in y at t_eval[0] = t0 and in sol(t0); NaN after.
    rho = np.array([10.0, np.nan, 20.0])
    y0 = np.array([[1.0, 2.0, 3.0], [0.0, 0.5, 1.0], [0.0, 0.0, 0.0]])
    t_eval = np.array([0.0, 0.5, 1.0])
    res = gpuivp.solve_ivp(lorenz, (0.0, 1.0), y0, args=(10.0, rho, 8 / 3), t_eval=t_eval,
                           dense_output=True, backend=backend, vectorized=True)
    assert res.status.tolist() == [0, -3, 0]
    np.testing.assert_array_equal(res.y[:, 1, 0], y0[:, 1])
    assert np.all(np.isnan(res.y[:, 1, 1:]))
    np.testing.assert_array_equal(res.sol(0.0)[:, 1], y0[:, 1])
    np.testing.assert_array_equal(res.sol(t_eval)[:, 1, 0], y0[:, 1])
    assert np.all(np.isnan(res.sol(0.5)[:, 1]))
    np.testing.assert_array_equal(res.sol(0.0)[:, [0, 2]], y0[:, [0, 2]])


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_single_ivp_failing_at_t0_has_y0_there(backend):
    res = gpuivp.solve_ivp(decay, (0.0, 1.0), [1.0], args=(np.nan,), backend=backend,
                           t_eval=[0.0, 0.5], dense_output=True, vectorized=True)
    assert res.status == -3
    np.testing.assert_array_equal(res.t, [0.0])
    np.testing.assert_array_equal(res.y, [[1.0]])
