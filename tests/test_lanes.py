"""The numba backend's lane engine (gpuivp.engines.lanes): the scalar engine's results, bit
for bit, whatever the order of the trajectories; failures stay in their trajectory; the
backend picks it only where it supports the problem.

Few compiles: one small ensemble per method, each engine compiled once per method.
"""
import numpy as np
import pytest

import gpuivp
import gpuivp.backends.numba as nb
from gpuivp.engines import lanes

pytest.importorskip("numba")


def lorenz(t, y, sigma, rho, beta):
    return (sigma * (y[1] - y[0]), y[0] * (rho - y[2]) - y[1], y[0] * y[1] - beta * y[2])


def _ensemble(k=53, seed=0):
    """Lorenz trajectories with failures mixed in: f(t0, y0) overflows (FAIL_NONFINITE at
    t0), an overflow (rho huge: non-finite mid-run), and k not a multiple of the lane width."""
    rng = np.random.default_rng(seed)
    rho = np.linspace(0.0, 28.0, k)
    y0 = np.tile([[1.0], [0.0], [0.0]], (1, k)) + 0.1 * rng.standard_normal((3, k))
    y0[:, 5] = (1e200, 1e200, 0.0)
    rho[11] = 1e300
    rho[17] = -1e200
    return y0, rho


def _solve(engine, y0, rho, method, **kw):
    old = nb.ENGINE
    nb.ENGINE = engine
    kw = dict(dict(rtol=1e-6, atol=1e-8), **kw)
    try:
        return gpuivp.solve_ivp(lorenz, (0.0, 3.0), y0, args=(10.0, rho, 8 / 3), method=method,
                                backend="numba", **kw)
    finally:
        nb.ENGINE = old


def cross(t, y, sigma, rho, beta):
    return y[0] - 1.0


def stop(t, y, sigma, rho, beta):
    return y[2] - 20.0


stop.terminal = True
stop.direction = 1


def _same(a, b):
    assert (a.t_events is None) == (b.t_events is None)
    if a.t_events is not None:
        for e in range(len(a.t_events)):
            np.testing.assert_array_equal(a.t_events[e], b.t_events[e])
            np.testing.assert_array_equal(a.y_events[e], b.y_events[e])
        np.testing.assert_array_equal(a.n_events, b.n_events)
    assert (a.y is None) == (b.y is None)
    if a.y is not None:  # t_eval output
        np.testing.assert_array_equal(a.t, b.t)
        np.testing.assert_array_equal(a.y, b.y)
    np.testing.assert_array_equal(a.status, b.status)
    np.testing.assert_array_equal(a.nfev, b.nfev)
    np.testing.assert_array_equal(a.naccept, b.naccept)
    np.testing.assert_array_equal(a.nreject, b.nreject)
    np.testing.assert_array_equal(a.t_final, b.t_final)
    np.testing.assert_array_equal(a.y_final, b.y_final)  # NaN == NaN here


# Vern7 is data like the others (its extra interpolant stages are DOP853's case, kept here);
# left out to keep the suite's compile time down.
@pytest.mark.parametrize("method", ["RK23", "RK45", "DOP853", "Tsit5"])
def test_lanes_bit_identical_to_scalar_engine_with_failures_and_shuffled(method):
    y0, rho = _ensemble()
    ref = _solve("scalar", y0, rho, method, max_steps=400)
    got = _solve("lanes", y0, rho, method, max_steps=400)
    assert {0, -3}.issubset(set(ref.status.tolist()))  # successes and failures mixed
    _same(ref, got)
    # shuffled input: the same per-trajectory results (refill: no order dependence)
    perm = np.random.default_rng(1).permutation(y0.shape[1])
    shuf = _solve("lanes", y0[:, perm], rho[perm], method, max_steps=400)
    for name in ("status", "nfev", "t_final"):
        np.testing.assert_array_equal(getattr(shuf, name), getattr(ref, name)[perm])
    np.testing.assert_array_equal(shuf.y_final, ref.y_final[:, perm])
    # t_eval (points at t0, inside and at t1; the interpolant's extra stages counted in nfev)
    # and events (roots by Brent on the interpolant; a terminal one ends trajectories early)
    te = np.linspace(0.0, 3.0, 7)
    kw = dict(max_steps=400, t_eval=te, events=[cross, stop])
    ref = _solve("scalar", y0, rho, method, **kw)
    _same(ref, _solve("lanes", y0, rho, method, **kw))
    assert np.isnan(ref.y[:, 5, 1:]).all() and np.isfinite(ref.y[:, 0]).all()
    assert {0, 1, -3}.issubset(set(ref.status.tolist()))  # terminated ones among them
    assert (ref.n_events[0] > 0).any() and (ref.n_events[1] == 1).any()


def _ensemble32(k=53):
    """_ensemble in float32 (rho float32 too: the lanes hold per-trajectory arguments in the
    working dtype), its failures scaled to float32's range."""
    rng = np.random.default_rng(0)
    rho = np.linspace(0.0, 28.0, k).astype(np.float32)
    y0 = np.tile([[1.0], [0.0], [0.0]], (1, k)) + 0.1 * rng.standard_normal((3, k))
    y0[:, 5] = (1e30, 1e30, 0.0)  # f(t0, y0) overflows float32
    rho[11] = 1e30
    rho[17] = -1e30
    return y0.astype(np.float32), rho


# One adaptive method and one fixed-step method: the float32 code paths (typed constants,
# float32 nextafter, counters) are the same for every tableau, which the float64 tests cover.
@pytest.mark.parametrize("method", ["RK45", "RK4"])
def test_float32_lanes_bit_identical_to_scalar_engine(method):
    """16 float32 lanes: every operation in float32 (typed constants) as the scalar engine's
    float32 code, counters exact; with t_eval and events (RK4: at fixed steps)."""
    y0, rho = _ensemble32()
    kw = dict(max_steps=400, dtype=np.float32, t_eval=np.linspace(0.0, 3.0, 7),
              events=[cross, stop], rtol=1e-4, atol=1e-6)
    if method == "RK4":
        kw["dt"] = 0.013
    kws = [kw]
    if method == "RK45":  # the final state only, a max_steps failure among them
        kws.append(dict(max_steps=60, dtype=np.float32, rtol=1e-4, atol=1e-6))
    for kw in kws:
        ref = _solve("scalar", y0, rho, method, **kw)
        assert ref.y_final.dtype == np.float32
        _same(ref, _solve("lanes", y0, rho, method, **kw))
        assert {0, -3}.issubset(set(ref.status.tolist()))
    assert (ref.status == -2).any() if method == "RK45" else (ref.n_events[1] == 1).any()


@pytest.mark.parametrize("method", ["Euler", "Midpoint", "Heun", "RK4", "RK45"])
def test_lanes_fixed_steps_bit_identical_to_scalar_engine(method):
    """Steps of dt (RK45 too: an adaptive method at fixed steps), the last one cut at t1; a
    non-finite state fails its trajectory; max_steps; t_eval and events on the way."""
    y0, rho = _ensemble()
    statuses = []
    kws = [dict(), dict(max_steps=100)]
    if method in ("RK4", "RK45"):  # (two compiles more per method: on two of them)
        kws.append(dict(t_eval=np.linspace(0.0, 3.0, 7), events=[cross, stop]))
    for kw in kws:
        ref = _solve("scalar", y0, rho, method, dt=0.013, **kw)  # 231 steps, the last cut
        _same(ref, _solve("lanes", y0, rho, method, dt=0.013, **kw))
        statuses.append(set(ref.status.tolist()))
    assert {0, -3} <= statuses[0] and {-2, -3} == statuses[1]
    assert len(statuses) == 2 or {0, 1, -3} <= statuses[2]  # a terminal event on fixed steps


@pytest.mark.parametrize("method", ["DOP853", "RK4"])
def test_lanes_dense_output_bit_identical_to_scalar_engine(method):
    """dense_output: sol(t) bit for bit, with t_eval and events (DOP853: the interpolant's
    extra stages; RK4 at fixed steps). The buffers start at 16 steps: trajectories pause,
    the backend grows the buffers and the lanes resume them; dense_max_steps ends them with
    FAIL_DENSE (-4), and max_steps as in the scalar engine (the buffer's test first)."""
    y0, rho = _ensemble()
    base = dict(dense_output=True, t_eval=np.linspace(0.0, 3.0, 7), events=[cross, stop])
    if method == "RK4":
        base["dt"] = 0.013
    ts = np.linspace(0.0, 3.0, 41)
    statuses = set()
    for kw in (dict(max_steps=400), dict(max_steps=400, dense_max_steps=20),
               dict(max_steps=30, dense_max_steps=30), dict(max_steps=30)):
        ref = _solve("scalar", y0, rho, method, **base, **kw)
        got = _solve("lanes", y0, rho, method, **base, **kw)
        _same(ref, got)
        np.testing.assert_array_equal(got.sol(ts), ref.sol(ts))
        statuses |= set(ref.status.tolist())
        if "dense_max_steps" not in kw and kw["max_steps"] > 100:
            assert ref.naccept.max() > 32  # (the buffers grown 16 -> 32 -> 64)
    assert {-4, -2, -3, 1} <= statuses


def test_lanes_max_steps_first_step_and_backward_match_scalar():
    y0, rho = _ensemble(k=21)
    for kw in (dict(max_steps=30), dict(first_step=1e-3), dict(events=[cross, stop])):
        _same(_solve("scalar", y0, rho, "RK45", **kw), _solve("lanes", y0, rho, "RK45", **kw))
    assert (_solve("lanes", y0, rho, "RK45", max_steps=30).status == -2).any()
    # backward in time, t0 == t1; with and without t_eval
    for span, te in (((3.0, 0.0), None), ((1.0, 1.0), None), ((3.0, 0.0), [3.0, 2.5, 0.1]),
                     ((1.0, 1.0), [1.0])):
        old = nb.ENGINE
        out = []
        for eng in ("scalar", "lanes"):
            nb.ENGINE = eng
            try:
                out.append(gpuivp.solve_ivp(lorenz, span, y0, args=(10.0, rho, 8 / 3),
                                            method="RK45", backend="numba", t_eval=te))
            finally:
                nb.ENGINE = old
        _same(*out)


def test_lane_engine_chosen_only_where_supported():
    import dataclasses

    from gpuivp.methods import METHODS

    y0, rho = _ensemble(k=21)
    small = nb.prepare(_problem_of(y0, rho))
    big_k = lanes.MIN_AUTO_K
    prob = dataclasses.replace(small, y0=np.ones((3, big_k)),
                               args=(10.0, np.linspace(0, 28, big_k), 8 / 3))
    old = nb.ENGINE
    try:
        nb.ENGINE = "auto"
        assert nb.engine_for(small, METHODS["RK45"]) == "scalar"          # few trajectories
        assert nb.engine_for(prob, METHODS["RK45"]) == "lanes"
        big_n = dataclasses.replace(prob, fun=None, y0=np.ones((lanes.MAX_AUTO_N + 1, big_k)),
                                    atol=np.full(lanes.MAX_AUTO_N + 1, 1e-8))
        assert nb.engine_for(big_n, METHODS["RK45"]) == "scalar"         # large n
        assert nb.engine_for(prob, METHODS["RK4"]) == "lanes"           # fixed steps too
        assert lanes.unsupported(prob, METHODS["Rosenbrock23"]) == \
            "only explicit Runge-Kutta methods"
        with_eval = dataclasses.replace(prob, t_eval=np.array([0.0, 1.0]))
        assert nb.engine_for(with_eval, METHODS["RK45"]) == "lanes"
        dense_eval = dataclasses.replace(prob, t_eval=np.linspace(0.0, 1.0,
                                                                  lanes.MAX_AUTO_T_EVAL + 1))
        assert nb.engine_for(dense_eval, METHODS["RK45"]) == "scalar"  # output-bound
        dense = dataclasses.replace(prob, dense_output=True)
        assert lanes.unsupported(dataclasses.replace(prob, affects=(None, lorenz)),
                                 METHODS["RK45"]) == "events with affect"
        assert lanes.unsupported(dataclasses.replace(prob, at_times=(np.ones(2),)),
                                 METHODS["RK45"]) == "gpuivp.at events"
        assert nb.engine_for(dense, METHODS["RK45"]) == "scalar"  # (a call per lane and step)
        assert lanes.unsupported(dense, METHODS["RK45"]) is None
        assert lanes.unsupported(dataclasses.replace(dense, record_steps=True),
                                 METHODS["RK45"]) == "recorded steps"
        # float32: per-trajectory arguments in float32; counts that stay exact in float32
        f32 = dataclasses.replace(prob, dtype=np.dtype(np.float32),
                                  args=(10.0, prob.args[1].astype(np.float32), 8 / 3))
        assert nb.engine_for(f32, METHODS["RK45"]) == "lanes"
        assert "per-trajectory arguments" in lanes.unsupported(
            dataclasses.replace(f32, args=prob.args), METHODS["RK45"])
        assert "2**24" in lanes.unsupported(dataclasses.replace(f32, max_steps=3_000_000),
                                            METHODS["RK45"])
        assert lanes.unsupported(dataclasses.replace(f32, max_steps=2_000_000),
                                 METHODS["RK45"]) is None
        nb.ENGINE = "scalar"
        assert nb.engine_for(prob, METHODS["RK45"]) == "scalar"
        nb.ENGINE = "lanes"
        assert nb.engine_for(dense, METHODS["RK45"]) == "lanes"
        with pytest.raises(ValueError, match="events with affect"):
            nb.engine_for(dataclasses.replace(prob, affects=(None, lorenz)), METHODS["RK45"])
        nb.ENGINE = "bogus"
        with pytest.raises(ValueError, match="GPUIVP_NUMBA_ENGINE"):
            nb.engine_for(prob, METHODS["RK45"])
    finally:
        nb.ENGINE = old


def _problem_of(y0, rho):
    """The validated problem the backend gets (through the public entry point's parts)."""
    from gpuivp._problem import Problem

    return Problem(fun=lorenz, t0=0.0, t1=3.0, y0=np.ascontiguousarray(y0),
                   args=(10.0, np.ascontiguousarray(rho), 8 / 3),
                   arg_kinds=("scalar", "traj1", "scalar"), t_eval=None, rtol=1e-6,
                   atol=np.full(3, 1e-8), first_step=None, max_step=np.inf, dt=None,
                   max_steps=10_000, dtype=np.dtype(np.float64), vectorized=False,
                   method="RK45")


def decay(t, y):
    return -0.5 * y  # array arithmetic on y: cannot run with y as a tuple


def test_fun_that_needs_an_array_y_falls_back_in_auto_and_raises_when_forced():
    y0 = np.ones((2, lanes.MIN_AUTO_K))  # enough trajectories for auto to try the lanes
    old = nb.ENGINE
    try:
        nb.ENGINE = "auto"
        res = gpuivp.solve_ivp(decay, (0.0, 1.0), y0, backend="numba")
        np.testing.assert_allclose(res.y_final, np.exp(-0.5) * y0, rtol=1e-3)
        nb.ENGINE = "lanes"
        with pytest.raises(gpuivp.backends.numba.CompileError):
            gpuivp.solve_ivp(decay, (0.0, 1.0), y0, backend="numba")
    finally:
        nb.ENGINE = old


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_lane_loops_are_vectorised_without_masked_stores(dtype):
    """The speed rests on LLVM vectorising every lane loop (see gpuivp.engines.lanes); a numba
    or LLVM upgrade can silently undo that. On an AVX2 machine: packed ymm arithmetic of the
    dtype dominates the step attempt, and no masked loads/stores (vmaskmov) appear."""
    import dataclasses

    import re

    from llvmlite import binding

    from gpuivp.methods import METHODS

    if not binding.get_host_cpu_features().get("avx2", False):
        pytest.skip("needs AVX2")
    from gpuivp.engines.runner import EngineState

    y0, rho = _ensemble(k=21)
    prob = _problem_of(y0, rho)
    if dtype == "float32":
        y0, rho = _ensemble32(k=21)
        prob = dataclasses.replace(_problem_of(y0, rho), dtype=np.dtype(np.float32),
                                   atol=np.full(3, 1e-6, dtype=np.float32))
    prob = nb.prepare(prob)
    # compiled here, not loaded from the disk cache (whose run_range skips compiling attempt)
    run, _ = lanes.build(prob, METHODS["RK45"], nb.JIT_OPTIONS)
    run(0, 0, *EngineState(prob, 1, METHODS["RK45"]).arrays())
    attempt = run.py_func.__globals__["attempt"]
    asm = "\n".join(attempt.inspect_asm().values())
    p = "pd" if dtype == "float64" else "ps"
    packed = len(re.findall(rf"\bv(?:add|sub|mul|div|sqrt){p}\s+[^\n]*ymm", asm))
    scalar = len(re.findall(rf"\bv(?:add|sub|mul|div|sqrt)s{p[1]}\b", asm))
    assert "vmaskmov" not in asm
    assert packed > 300 and packed > 4 * scalar, (packed, scalar)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_fast_pow_stays_within_its_documented_accuracy(dtype):
    """FAST_POW: the controller's pow within a few ulp, so the steps and final states stay
    close to the scalar engine's (not bit-identical: the last bits of h differ)."""
    if dtype == "float64":
        y0, rho = _ensemble()
        kw = dict(max_steps=400)
        # h differs from libm-pow steps by ~1e-15 relative, amplified by the dynamics
        tol = dict(rtol=1e-6, atol=1e-8)
    else:
        y0, rho = _ensemble32()
        kw = dict(max_steps=400, dtype=np.float32, rtol=1e-4, atol=1e-6)
        # h differs from powf's steps by ~1e-7 relative (float32 ulps), amplified likewise
        tol = dict(rtol=1e-3, atol=1e-4)
    ref = _solve("scalar", y0, rho, "RK45", **kw)
    old = nb.FAST_POW
    nb.FAST_POW = True
    try:
        got = _solve("lanes", y0, rho, "RK45", **kw)
    finally:
        nb.FAST_POW = old
    np.testing.assert_array_equal(got.status, ref.status)
    assert np.mean(got.nfev == ref.nfev) > 0.9
    ok = ref.status == 0
    assert got.y_final.dtype == ref.y_final.dtype
    np.testing.assert_allclose(got.y_final[:, ok], ref.y_final[:, ok], **tol)
    if dtype == "float32":  # the documented accuracy of the float32 pow itself
        import numba

        f = numba.njit(lanes._pow_function(-0.2, True, np.float32))
        x = (np.float32(10.0) ** np.linspace(-12, 12, 2001)).astype(np.float32)
        exact = (x.astype(np.float64) ** -0.2).astype(np.float32)  # (rounding: error <= 1/2 ulp)
        got = np.array([f(v) for v in x], dtype=np.float32)
        ulps = np.abs(got.view(np.int32).astype(np.int64) - exact.view(np.int32))
        assert ulps.max() <= 1


def test_lane_engine_stops_when_the_backend_stops_it():
    """A budget of 0 (what the backend sets on Ctrl-C or another chunk's error) makes a
    running lane engine return at its next step attempt: no trajectory runs to its end."""
    from gpuivp._status import INIT
    from gpuivp.engines.runner import EngineState
    from gpuivp.methods import METHODS

    y0, rho = _ensemble(k=21)
    prob = nb.prepare(_problem_of(y0, rho))
    old = nb.ENGINE
    try:
        nb.ENGINE = "lanes"
        run = nb._lane_engine(prob, METHODS["RK45"])
    finally:
        nb.ENGINE = old
    state = EngineState(prob, 0, METHODS["RK45"])
    run(0, prob.k, *state.arrays())
    # only the trajectory that fails at t0 (index 5) is finished; the others never ran a step
    assert state.st_status[5] == -3
    assert np.all(np.delete(state.st_status, 5) == INIT)
    state = EngineState(prob, 1 << 62, METHODS["RK45"])
    run(0, prob.k, *state.arrays())
    assert np.all(state.st_status < INIT)


def test_lane_engine_comes_back_from_the_disk_cache(tmp_path, monkeypatch):
    """Written once (fun's module, the engine's module, numba's cache of run_range), then
    loaded: numba finds the compiled code, and the results are the scalar engine's."""
    from gpuivp.engines import disk_cache
    from gpuivp.engines.runner import EngineState
    from gpuivp.methods import METHODS

    monkeypatch.setenv("GPUIVP_CACHE_DIR", str(tmp_path))
    y0, rho = _ensemble(k=21)
    prob = nb.prepare(_problem_of(y0, rho))
    before = dict(disk_cache.STATS)
    states = []
    for _ in range(2):
        run = lanes.load_from_disk(prob, METHODS["RK45"], nb.JIT_OPTIONS)
        assert run is not None
        state = EngineState(prob, 1 << 62, METHODS["RK45"])
        run(0, prob.k, *state.arrays())
        states.append(state)
    assert disk_cache.STATS["write"] == before.get("write", 0) + 1
    assert disk_cache.STATS["hit"] == before.get("hit", 0) + 1
    assert run.stats.cache_hits  # the second dispatcher loaded numba's compiled code
    ref = _solve("scalar", y0, rho, "RK45", max_steps=10_000)
    for state in states:
        np.testing.assert_array_equal(state.st_y, ref.y_final)
        np.testing.assert_array_equal(state.st_cnt[0], ref.nfev)


def test_c_lane_reference_takes_the_scalar_c_references_steps():
    """benchmarks/reference/lorenz_lanes.c (the C lane reference of benchmarks/lanes.py): the
    scalar C reference's final states, statuses and nfev bit for bit, in rho order and
    shuffled (refilled lanes), with a step-count failure mixed in. Skipped without gcc."""
    import os
    import shutil
    import sys

    sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(__file__)), "benchmarks"))
    from reference import build

    if shutil.which(build.CC) is None:
        pytest.skip(f"no C compiler ({build.CC})")
    scalar, lane = build.load(), build.load(lanes=True)
    rho = np.linspace(0.0, 28.0, 101)
    rho[7] = 1e6  # stiff: runs into RK45_MAX_STEPS (status -2)
    perm = np.random.default_rng(0).permutation(rho.size)
    ref = scalar(rho, 0.0, 10.0, 1e-6, 1e-8)
    assert ref[1][7] == -2 and (ref[1] == 0).sum() == 100
    for got, order in ((lane(rho, 0.0, 10.0, 1e-6, 1e-8), slice(None)),
                       (lane(rho[perm], 0.0, 10.0, 1e-6, 1e-8), perm)):
        for a, b in zip(ref, got):
            np.testing.assert_array_equal(a[..., order], b)
    for span in ((10.0, 0.0), (1.0, 1.0)):  # backward, empty interval
        for a, b in zip(scalar(rho[:20], *span, 1e-6, 1e-8), lane(rho[:20], *span, 1e-6, 1e-8)):
            np.testing.assert_array_equal(a, b)
