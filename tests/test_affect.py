"""Events that change the state (``affect``): every backend against a plain loop that
restarts scipy's solve_ivp at every root with the affected state."""
import numpy as np
import pytest
import scipy.integrate

import gpuivp
from gpuivp import _status

BACKENDS = ["numpy", "cupy", "numba", "scipy"]
G, RESTITUTION = 9.81, 0.8


@pytest.fixture(autouse=True)
def _cupy_on_host(request, monkeypatch):
    """``cupy``: its engine on NumPy (tests/host_kernels.py), as in test_cupy.py."""
    params = getattr(getattr(request.node, "callspec", None), "params", {})
    if params.get("backend") == "cupy":
        import host_kernels
        host_kernels.activate(monkeypatch)


# -- the models (vectorized-friendly: y[j] may be a scalar or a column array) -----------------
def ball(t, y, c):
    return (y[1], -G - c * y[1])


def hit_ground(t, y, c):
    return y[0]


hit_ground.direction = -1.0


def bounce(t, y, c):
    return (0.0 * y[0], -RESTITUTION * y[1])


hit_ground.affect = bounce


def ball_any_direction(t, y, c):
    return y[0]


ball_any_direction.affect = bounce


def too_slow(t, y, c):  # terminal: the ball stops when its upward speed after a bounce is small
    return y[1] - 3.0


too_slow.direction = -1.0
too_slow.terminal = True


def apex(t, y, c):  # an ordinary event: the top of each arc
    return y[1]


apex.direction = -1.0


def neuron(t, y, current):
    return (current - y[0],)


def spike(t, y, current):
    return y[0] - 1.0


spike.direction = 1.0
spike.affect = lambda t, y, current: (0.0 * y[0],)


def restart_loop(fun, t_span, y0, events, args, t_eval=None, dense=False, rtol=1e-6,
                 atol=1e-9, method="RK45"):
    """scipy's solve_ivp restarted at every root of an event with ``affect``, written plainly."""
    t0, t1 = t_span
    d = np.sign(t1 - t0)
    t, y = t0, np.asarray(y0, float)
    n_ev = len(events)
    t_ev, y_ev = [[] for _ in events], [[] for _ in events]
    nfev, ys, sols, status = 0, [], [], 0
    while True:
        seg = []
        for ev in events:
            def g(tt, yy, *a, ev=ev):
                return ev(tt, yy, *a)
            g.direction = getattr(ev, "direction", 0.0)
            g.terminal = bool(getattr(ev, "terminal", False) or hasattr(ev, "affect"))
            seg.append(g)
        te = None if t_eval is None else t_eval[d * (t_eval - t) > 0] if t != t0 else t_eval
        res = scipy.integrate.solve_ivp(fun, (t, t1), y, method=method, t_eval=te,
                                        dense_output=dense, events=seg, args=args, rtol=rtol,
                                        atol=atol)
        nfev += res.nfev
        if t_eval is not None:
            ys.append(np.reshape(res.y, (len(y0), -1)))
        if dense:
            sols.append(res.sol)
        for e in range(n_ev):
            t_ev[e] += list(res.t_events[e])
            y_ev[e] += list(res.y_events[e])
        if res.status != 1:
            status = res.status
            t, y = res.t[-1], res.y[:, -1]
            if t_eval is not None:
                t, y = t1, res.sol(t1) if dense else y
            break
        roots = [(d * res.t_events[e][-1], e) for e in range(n_ev) if len(res.t_events[e])]
        _, e_stop = max(roots)
        t, y = res.t_events[e_stop][-1], res.y_events[e_stop][-1]
        last = [e for e in range(n_ev) if len(res.t_events[e]) and res.t_events[e][-1] == t]
        if any(getattr(events[e], "terminal", False) for e in last):
            status = 1
            break
        y = np.asarray(events[e_stop].affect(t, y, *args), float)
    out = dict(t=t, y=y, nfev=nfev, status=status, t_events=[np.array(v) for v in t_ev],
               y_events=[np.reshape(v, (-1, len(y0))) for v in y_ev])
    if t_eval is not None:
        out["y_eval"] = np.concatenate(ys, axis=1)
    if dense:
        out["sols"] = sols
    return out


def check_trajectory(res, i, ref, n_events):
    """Same nfev and event counts; values within a tolerance for the order of summation
    (the engines add the same terms as scipy, BLAS may not)."""
    assert int(res.status[i]) == ref["status"]
    assert int(res.nfev[i]) == ref["nfev"]
    for e in range(n_events):
        assert int(res.n_events[e][i]) == len(ref["t_events"][e])
        m = len(ref["t_events"][e])
        np.testing.assert_allclose(res.t_events[e][i, :m], ref["t_events"][e], rtol=1e-12,
                                   atol=1e-12)
        np.testing.assert_allclose(res.y_events[e][i, :m], ref["y_events"][e], rtol=1e-10,
                                   atol=1e-10)
    np.testing.assert_allclose(res.t_final[i], ref["t"], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(res.y_final[:, i], ref["y"], rtol=1e-10, atol=1e-10)


def solve(backend, fun, t_span, y0, events, args, **kw):
    res = gpuivp.solve_ivp(fun, t_span, y0, events=events, args=args, backend=backend,
                           vectorized=backend in ("numpy", "cupy"), rtol=1e-6, atol=1e-9, **kw)
    assert res.backend == backend
    return res


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("backward", [False, True], ids=["forward", "backward"])
def test_bouncing_ball_with_terminal_event_and_t_eval_equals_scipy_restart_loop(backend,
                                                                                 backward):
    # Forward: drop heights; backward: the same problem in time reversed (gravity up).
    k = 3
    y0 = np.array([[1.0, 2.0, 5.0], [0.0, 0.5, -1.0]])
    c = np.array([0.0, 0.05, 0.1])
    t_span = (0.0, 4.0)
    t_eval = np.linspace(0.0, 4.0, 9)
    if backward:
        y0 = y0 * np.array([[1.0], [-1.0]])
        t_span, t_eval = (0.0, -4.0), -t_eval
    events = [hit_ground, too_slow, apex] if not backward else [hit_ground, apex]
    if backward:
        hit = lambda t, y, c: y[0]  # noqa: E731
        hit.direction, hit.affect = 1.0, bounce  # backward, a falling crossing reversed
        events = [hit, apex]
    res = solve(backend, ball, t_span, y0, events, (c,), t_eval=t_eval, dense_output=True)
    for i in range(k):
        ref = restart_loop(ball, t_span, y0[:, i], events, (c[i],), t_eval=t_eval, dense=True)
        check_trajectory(res, i, ref, len(events))
        n = ref["y_eval"].shape[1]
        np.testing.assert_allclose(res.y[:, i, :n], ref["y_eval"], rtol=1e-10, atol=1e-10)
        # Dense output carries across the restarts: compared inside each scipy segment.
        for s in ref["sols"]:
            lo, hi = sorted([s.t_min, s.t_max])
            for x in np.linspace(lo, hi, 5)[1:-1]:
                np.testing.assert_allclose(res.sol(x)[:, i], s(x), rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("backend", BACKENDS)
def test_integrate_and_fire_reset_equals_scipy_restart_loop(backend):
    current = np.array([0.5, 1.5, 3.0])
    y0 = np.zeros((1, 3))
    res = solve(backend, neuron, (0.0, 10.0), y0, [spike], (current,))
    for i in range(3):
        ref = restart_loop(neuron, (0.0, 10.0), y0[:, i], [spike], (current[i],))
        check_trajectory(res, i, ref, 1)
    # Closed form: a spike every log(I / (I - 1)) for I > 1, none below.
    period = np.log(3.0 / 2.0)
    m = int(res.n_events[0][2])
    np.testing.assert_allclose(np.diff(res.t_events[0][2, :m]), period, rtol=1e-4)
    assert res.n_events[0][0] == 0


@pytest.mark.parametrize("backend", BACKENDS)
def test_root_at_restart_point_does_not_trigger_again(backend):
    # Without a direction the bounce's own root (y = 0 at the restart) is a crossing too:
    # it must not count, so both versions bounce the same.
    y0 = np.array([[1.0], [0.0]])
    c = np.zeros(1)
    one = solve(backend, ball, (0.0, 3.0), y0, [hit_ground], (c,))
    both = solve(backend, ball, (0.0, 3.0), y0, [ball_any_direction], (c,))
    assert int(one.n_events[0][0]) == int(both.n_events[0][0]) >= 3
    np.testing.assert_array_equal(one.t_events[0][0], both.t_events[0][0])
    assert int(one.nfev[0]) == int(both.nfev[0])


def drift(t, y, rate):
    return (rate + 0.0 * y[0],)


def crossing(t, y, rate):
    return y[0]


crossing.direction = 1.0
# The reset puts the state just below the event again: the next root follows within
# rounding, and the next, ... (chatter).
crossing.affect = lambda t, y, rate: (0.0 * y[0] - 1e-15,)


@pytest.mark.parametrize("backend", BACKENDS)
def test_chattering_trajectory_fails_with_its_own_status_alone(backend):
    y0 = np.array([[-1.0, -20.0]])
    rate = np.ones(2)
    res = solve(backend, drift, (0.0, 10.0), y0, [crossing], (rate,))
    assert res.status.tolist() == [_status.FAIL_CHATTER, 0]
    assert res.n_events[0].tolist() == [2, 0]
    np.testing.assert_allclose(res.t_final, [1.0, 10.0], rtol=1e-14)
    assert "chatter" in res.message


# -- gpuivp.at: doses -----------------------------------------------------------------------
def elimination(t, y, k_el):
    return (-k_el * y[0],)


def dose(t, y, k_el):
    return (y[0] + 1.0,)


def at_restart_loop(fun, t_span, y0, times, affect, args):
    """scipy restarted at each time with the affected state (an event ``t - time``)."""
    events = []
    t, y, nfev = t_span[0], np.asarray(y0, float), 0
    for time in list(times) + [None]:
        ev = (lambda tt, yy, *a, time=time: tt - time) if time is not None else None
        if ev is not None:
            ev.terminal = True
        res = scipy.integrate.solve_ivp(fun, (t, t_span[1]), y, events=ev, args=args,
                                        rtol=1e-6, atol=1e-9)
        nfev += res.nfev
        if time is None:
            return res.t[-1], res.y[:, -1], nfev, events
        t, y = res.t_events[0][0], res.y_events[0][0]
        events.append(t)
        y = np.asarray(affect(t, y, *args), float)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("per_trajectory", [False, True], ids=["shared", "per-trajectory"])
@pytest.mark.parametrize("backward", [False, True], ids=["forward", "backward"])
def test_doses_at_times_equal_scipy_restart_loop(backend, per_trajectory, backward):
    k_el = np.array([0.1, 0.3, 0.05])
    times = np.array([0.0, 12.0, 24.0, 36.0])
    if per_trajectory:
        times = times[:, None] + np.array([0.0, 1.5, 6.0])
    t_span = (0.0, 48.0)
    if backward:  # given in any order: sorted in the direction of integration
        times, t_span = -times[::-1], (0.0, -48.0)
    y0 = np.zeros((1, 3))
    res = solve(backend, elimination, t_span, y0, [gpuivp.at(times, dose)], (k_el,))
    for i in range(3):
        tt = times if times.ndim == 1 else times[:, i]
        tt = np.sort(tt)[::-1] if backward else tt
        t, y, nfev, evs = at_restart_loop(elimination, t_span, y0[:, i], tt, dose,
                                          (k_el[i],))
        assert int(res.status[i]) == 0
        assert int(res.nfev[i]) == nfev
        assert int(res.n_events[0][i]) == 4
        np.testing.assert_allclose(res.t_events[0][i, :4], evs, rtol=1e-14, atol=1e-14)
        np.testing.assert_allclose(res.y_final[:, i], y, rtol=1e-10)


# -- cuda under numba's CUDA simulator (a subprocess: the simulator is chosen at import) ----
_SIM_SCRIPT = """
import sys, numpy as np
sys.path.insert(0, {tests!r})
import test_affect as T
import gpuivp
out = {{}}
y0 = np.array([[1.0, 2.0], [0.0, 0.5]])
c = np.array([0.0, 0.05])
t_eval = np.linspace(0.0, 4.0, 9)
r = T.solve("cuda", T.ball, (0.0, 4.0), y0, [T.hit_ground, T.too_slow, T.apex], (c,),
            t_eval=t_eval)
assert r.backend == "cuda", r.backend
for name in ("status", "nfev", "t_final", "y_final", "y"):
    out["ball_" + name] = np.asarray(r[name])
for e in range(3):
    out[f"ball_t_events{{e}}"] = r.t_events[e]
    out[f"ball_n_events{{e}}"] = r.n_events[e]
times = np.array([0.0, 12.0, 24.0, 36.0])[:, None] + np.array([0.0, 1.5])
r = T.solve("cuda", T.elimination, (0.0, 48.0), np.zeros((1, 2)), [gpuivp.at(times, T.dose)],
            (np.array([0.1, 0.3]),))
out["dose_nfev"], out["dose_y_final"] = r.nfev, r.y_final
r = T.solve("cuda", T.drift, (0.0, 10.0), np.array([[-1.0, -20.0]]), [T.crossing],
            (np.ones(2),))
out["chatter_status"] = r.status
np.savez(sys.argv[1], **out)
"""


def test_cuda_simulator_restarts_as_scipy_restart_loop(tmp_path):
    import os
    import subprocess
    import sys
    here = os.path.dirname(os.path.abspath(__file__))
    out = tmp_path / "sim.npz"
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1")
    proc = subprocess.run([sys.executable, "-c", _SIM_SCRIPT.format(tests=here), str(out)],
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = np.load(out)
    y0 = np.array([[1.0, 2.0], [0.0, 0.5]])
    c = np.array([0.0, 0.05])
    t_eval = np.linspace(0.0, 4.0, 9)
    events = [hit_ground, too_slow, apex]
    for i in range(2):
        ref = restart_loop(ball, (0.0, 4.0), y0[:, i], events, (c[i],), t_eval=t_eval,
                           dense=True)
        assert int(got["ball_status"][i]) == ref["status"]
        assert int(got["ball_nfev"][i]) == ref["nfev"]
        for e in range(3):
            m = len(ref["t_events"][e])
            assert int(got[f"ball_n_events{e}"][i]) == m
            np.testing.assert_allclose(got[f"ball_t_events{e}"][i, :m], ref["t_events"][e],
                                       rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(got["ball_y_final"][:, i], ref["y"], rtol=1e-10, atol=1e-10)
        n = ref["y_eval"].shape[1]
        np.testing.assert_allclose(got["ball_y"][:, i, :n], ref["y_eval"], rtol=1e-10,
                                   atol=1e-10)
    times = np.array([0.0, 12.0, 24.0, 36.0])[:, None] + np.array([0.0, 1.5])
    for i, k_el in enumerate([0.1, 0.3]):
        _, y, nfev, _ = at_restart_loop(elimination, (0.0, 48.0), np.zeros(1), times[:, i],
                                        dose, (k_el,))
        assert int(got["dose_nfev"][i]) == nfev
        np.testing.assert_allclose(got["dose_y_final"][:, i], y, rtol=1e-10)
    assert got["chatter_status"].tolist() == [_status.FAIL_CHATTER, 0]


# -- the looped engine (n >= LOOP_MIN_N) and chunking ------------------------------------------
N_BIG = 12


def ball_big(t, y, c):
    # A ball (components 0, 1) and passive components decaying at rate c.
    return (y[1], -G - c * y[1], -c * y[2], -c * y[3], -c * y[4], -c * y[5], -c * y[6],
            -c * y[7], -c * y[8], -c * y[9], -c * y[10], -c * y[11])


def bounce_big(t, y, c):
    return (0.0 * y[0], -RESTITUTION * y[1], y[2], y[3], y[4], y[5], y[6] + 1.0, y[7], y[8],
            y[9], y[10], y[11])


def hit_ground_big(t, y, c):
    return y[0]


hit_ground_big.direction = -1.0
hit_ground_big.affect = bounce_big


def test_looped_engine_restarts_as_the_array_engine_and_chunks_bit_identical():
    from gpuivp.engines.per_trajectory import LOOP_MIN_N
    assert N_BIG >= LOOP_MIN_N
    k = 6
    y0 = np.zeros((N_BIG, k))
    y0[0] = np.linspace(1.0, 3.0, k)
    y0[2:] = 1.0
    c = np.linspace(0.0, 0.1, k)
    times = np.array([0.5, 1.0])[:, None] + np.linspace(0.0, 0.3, k)
    events = [hit_ground_big, gpuivp.at(times, dose_big)]
    kw = dict(dense_output=False, max_events=8)
    whole = solve("numba", ball_big, (0.0, 3.0), y0, events, (c,), **kw)
    parts = solve("numba", ball_big, (0.0, 3.0), y0, events, (c,), memory_budget=1500, **kw)
    for name in ("status", "nfev", "t_final", "y_final"):
        np.testing.assert_array_equal(parts[name], whole[name], err_msg=name)
    for e in range(2):
        np.testing.assert_array_equal(parts.t_events[e], whole.t_events[e])
    arrays = solve("numpy", ball_big, (0.0, 3.0), y0, events, (c,), **kw)
    np.testing.assert_array_equal(arrays.nfev, whole.nfev)
    np.testing.assert_allclose(arrays.y_final, whole.y_final, rtol=1e-10, atol=1e-10)
    assert int(whole.n_events[0][0]) >= 2 and whole.n_events[1].tolist() == [2] * k


def dose_big(t, y, c):
    return (y[0], y[1], y[2] + 1.0, y[3], y[4], y[5], y[6], y[7], y[8], y[9], y[10], y[11])


def test_dask_run_with_per_trajectory_doses_is_bit_identical_to_one_piece():
    pytest.importorskip("dask")
    import gpuivp.dask
    k_el = np.linspace(0.05, 0.3, 5)
    times = np.array([0.0, 12.0, 24.0, 36.0])[:, None] + np.linspace(0.0, 6.0, 5)
    y0 = np.zeros((1, 5))
    events = [gpuivp.at(times, dose)]
    whole = solve("numpy", elimination, (0.0, 48.0), y0, events, (k_el,))
    parts = gpuivp.dask.solve_ivp(elimination, (0.0, 48.0), y0, events=events, args=(k_el,),
                                  backend="numpy", vectorized=True, rtol=1e-6, atol=1e-9,
                                  chunks=2, client=None)
    for name in ("status", "nfev", "t_final", "y_final"):
        np.testing.assert_array_equal(np.asarray(parts[name]), whole[name], err_msg=name)
    np.testing.assert_array_equal(np.asarray(parts.t_events[0]), whole.t_events[0])


@pytest.mark.parametrize("backend", BACKENDS)
def test_restarts_follow_each_trajectorys_own_span_and_tolerance(backend):
    # Per-trajectory t0, t1 and rtol (Problem.per): every restart selects its initial step
    # towards that trajectory's own t1 with its own rtol, as scipy restarted on that
    # trajectory's span does.
    t0, t1 = np.array([0.0, 0.5, 0.0]), np.array([2.5, 2.0, 1.5])
    rtol = np.array([1e-6, 1e-7, 1e-6])
    y0 = np.array([[1.0, 1.0, 1.0], [0.0, 0.0, 0.0]])
    c = np.zeros(3)
    res = gpuivp.solve_ivp(ball, (t0, t1), y0, events=[hit_ground], args=(c,),
                           backend=backend, vectorized=backend in ("numpy", "cupy"),
                           rtol=rtol[None, :], atol=1e-9)
    assert res.backend == backend
    for i in range(3):
        ref = restart_loop(ball, (t0[i], t1[i]), y0[:, i], [hit_ground], (c[i],),
                           rtol=rtol[i])
        assert len(ref["t_events"][0]) >= 2  # restarted at least twice
        check_trajectory(res, i, ref, 1)
