"""Events per trajectory on every CPU backend, against scipy trajectory by trajectory."""
import warnings

import numpy as np
import pytest
import scipy.integrate

from gpuivp import solve_ivp
from problems import harmonic, vanderpol

BACKENDS = ["numba", "numpy", "cupy", "scipy"]


def fall(t, y, g):
    return (y[1], -g + 0.0 * y[0])


def ground(t, y, g):
    return y[0]


ground.terminal = True
ground.direction = -1


def crossing(t, y, omega):
    return y[0]


def vdp_max(t, y, mu):
    """x' = 0 while x decreases: one event per period (direction filtered)."""
    return y[1]


vdp_max.direction = -1


def at_start(t, y, omega):
    """Zero at t0 = 0 (y0[1] = 0) and again at every half period."""
    return y[1]


def assert_events_match_scipy(res, fun, t_span, y0s, argss, events, method, **kw):
    events = events if isinstance(events, list) else [events]
    for i, (y0, args) in enumerate(zip(y0s, argss)):
        ref = scipy.integrate.solve_ivp(fun, t_span, y0, method=method, args=args,
                                        events=events, **kw)
        assert res.status[i] == ref.status, i
        for e in range(len(events)):
            count = len(ref.t_events[e])
            assert res.n_events[e][i] == count, (i, e)
            np.testing.assert_allclose(res.t_events[e][i, :count], ref.t_events[e],
                                       rtol=1e-10, atol=1e-12, err_msg=f"traj {i} event {e}")
            np.testing.assert_allclose(res.y_events[e][i, :count], ref.y_events[e].reshape(count, len(y0)),
                                       rtol=1e-8, atol=1e-10)
            assert np.all(np.isnan(res.t_events[e][i, count:]))
        if ref.status == 1:
            np.testing.assert_allclose(res.t_final[i], ref.t_events[0][-1], rtol=1e-10)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("method", ["RK45", "DOP853"])
def test_falling_balls_stop_at_the_ground(method, backend):
    heights = np.array([1.0, 2.0, 5.0, 0.3])
    y0 = np.stack([heights, np.zeros(4)])
    t_eval = np.linspace(0, 2, 21)
    res = solve_ivp(fall, (0, 2), y0, method=method, args=(9.81,), events=ground,
                    t_eval=t_eval, backend=backend, vectorized=True, rtol=1e-8, atol=1e-10)
    assert np.all(res.status == 1) and res.success
    np.testing.assert_allclose(res.t_final, np.sqrt(2 * heights / 9.81), rtol=1e-8)
    np.testing.assert_allclose(res.y_final[0], 0.0, atol=1e-8)
    # t_eval columns after each trajectory's impact are NaN, those before are not.
    after = t_eval[None, :] > res.t_final[:, None]
    assert np.all(np.isnan(res.y[0][after])) and not np.any(np.isnan(res.y[0][~after]))
    assert_events_match_scipy(res, fall, (0, 2), y0.T, [(9.81,)] * 4, ground, method,
                              rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("backend", BACKENDS)
def test_zero_crossings_are_counted(backend):
    omega = np.array([1.0, 2.0, 3.3])
    res = solve_ivp(harmonic, (0, 10), np.c_[[1.0, 0.0]], args=(omega,), events=crossing,
                    backend=backend, vectorized=True, rtol=1e-9, atol=1e-12)
    expected = np.floor((10 * omega / np.pi) - 0.5).astype(int) + 1
    np.testing.assert_array_equal(res.n_events[0], expected)
    assert_events_match_scipy(res, harmonic, (0, 10), [[1.0, 0.0]] * 3,
                              [(w,) for w in omega], crossing, "RK45", rtol=1e-9, atol=1e-12)


def half(t, y, omega):
    return y[0] - 0.5


@pytest.mark.parametrize("backend", BACKENDS)
def test_an_event_that_never_fires_leaves_its_trajectory_empty(backend):
    """Amplitudes below 0.5 never reach the event; the others cross it twice a period."""
    y0 = np.array([[0.2, 1.0, 0.4], [0.0, 0.0, 0.0]])
    res = solve_ivp(harmonic, (0, 10), y0, args=(1.0,), events=[crossing, half],
                    backend=backend, vectorized=True, rtol=1e-9, atol=1e-12)
    np.testing.assert_array_equal(res.n_events[1], [0, 3, 0])
    assert np.all(np.isnan(res.t_events[1][[0, 2]])) and np.all(np.isnan(res.y_events[1][0]))
    assert_events_match_scipy(res, harmonic, (0, 10), y0.T, [(1.0,)] * 3, [crossing, half],
                              "RK45", rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("backend", BACKENDS)
def test_vanderpol_period_from_a_direction_filtered_event(backend):
    mu = np.array([0.5, 1.0, 2.0])
    res = solve_ivp(vanderpol, (0, 40), np.c_[[2.0, 0.0]], args=(mu,), events=vdp_max,
                    backend=backend, vectorized=True, rtol=1e-10, atol=1e-12)
    periods = [np.diff(res.t_events[0][i, :res.n_events[0][i]])[-1] for i in range(3)]
    # Known periods of the Van der Pol limit cycle.
    np.testing.assert_allclose(periods, [6.3901, 6.6633, 7.6299], rtol=2e-3)
    assert_events_match_scipy(res, vanderpol, (0, 40), [[2.0, 0.0]] * 3, [(m,) for m in mu],
                              vdp_max, "RK45", rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("method", ["RK23", "DOP853"])
def test_an_event_zero_at_t0_as_scipy(method, backend):
    omega = np.array([1.0, 1.7])
    res = solve_ivp(harmonic, (0, 5), np.c_[[1.0, 0.0]], method=method, args=(omega,),
                    events=[at_start, crossing], backend=backend, vectorized=True,
                    rtol=1e-8, atol=1e-10)
    assert_events_match_scipy(res, harmonic, (0, 5), [[1.0, 0.0]] * 2, [(w,) for w in omega],
                              [at_start, crossing], method, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("backend", BACKENDS)
def test_terminal_count_and_backward_time(backend):
    def second_crossing(t, y, omega):
        return y[0]
    second_crossing.terminal = 2
    omega = np.array([1.0, 2.0])
    res = solve_ivp(harmonic, (0, -10), np.c_[[1.0, 0.0]], args=(omega,),
                    events=second_crossing, backend=backend, vectorized=True,
                    rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(res.t_final, -1.5 * np.pi / omega, rtol=1e-7)
    assert np.all(res.status == 1) and np.all(res.n_events[0] == 2)


@pytest.mark.parametrize("backend", BACKENDS)
def test_events_beyond_max_events_are_counted_and_warned(backend):
    with pytest.warns(UserWarning, match="max_events"):
        res = solve_ivp(harmonic, (0, 20), np.c_[[1.0, 0.0]], args=(np.array([1.0, 3.0]),),
                        events=crossing, max_events=3, backend=backend, vectorized=True)
    assert res.t_events[0].shape == (2, 3) and res.y_events[0].shape == (2, 3, 2)
    assert np.all(res.n_events[0] > 3)
    assert not np.any(np.isnan(res.t_events[0]))


@pytest.mark.parametrize("backend", ["numba", "numpy", "cupy"])
def test_single_ivp_events_have_scipys_form(backend):
    """Also for an event that never fires: scipy gives its y_events the shape (0,)."""
    events = [crossing, half]
    ref = scipy.integrate.solve_ivp(harmonic, (0, 10), [0.2, 0.0], args=(1.0,), events=events)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        res = solve_ivp(harmonic, (0, 10), [0.2, 0.0], args=(1.0,), events=events,
                        backend=backend, vectorized=True)
    assert isinstance(res.t_events, list) and isinstance(res.y_events, list)
    for e in range(2):
        assert res.t_events[e].shape == ref.t_events[e].shape, e
        assert res.y_events[e].shape == ref.y_events[e].shape, e
        np.testing.assert_allclose(res.t_events[e], ref.t_events[e], rtol=1e-10)
    assert ref.y_events[1].shape == (0,)


@pytest.mark.parametrize("backend", ["numba", "numpy", "cupy"])
def test_single_ivp_stopped_by_an_event_returns_the_t_eval_points_reached_as_scipy(backend):
    t_eval = np.linspace(0, 10, 21)
    kw = dict(args=(9.81,), events=ground, t_eval=t_eval, rtol=1e-8, atol=1e-10)
    ref = scipy.integrate.solve_ivp(fall, (0, 10), [5.0, 0.0], **kw)
    res = solve_ivp(fall, (0, 10), [5.0, 0.0], backend=backend, vectorized=True, **kw)
    assert res.status == ref.status == 1 and res.t.shape == ref.t.shape == (3,)
    assert res.y.shape == ref.y.shape == (2, 3) and not np.any(np.isnan(res.y))
    np.testing.assert_allclose(res.y, ref.y, rtol=1e-8, atol=1e-10)
