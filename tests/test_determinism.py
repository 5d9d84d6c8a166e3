"""Determinism: the same call gives bit-identical results, and a trajectory's result does not
depend on which other trajectories are solved with it (halves, permutations, a single one),
on threads or on time slices. On the ``numba`` and ``numpy`` backends.
"""
import numpy as np
import pytest

from gpuivp import solve_ivp
from problems import blowup, lorenz, vanderpol

BACKENDS = ["numba", "numpy"]
FIELDS = ("y", "y_final", "t_final", "status", "nfev", "naccept", "nreject")


def linear9(t, y, A):
    """A 9-dimensional linear system: reductions over n >= 8 components."""
    return (A[0, 0] * y[0] + A[0, 1] * y[1] + A[0, 8] * y[8],
            A[1, 1] * y[1] + A[1, 2] * y[2],
            A[2, 2] * y[2] + A[2, 3] * y[3],
            A[3, 3] * y[3] + A[3, 4] * y[4],
            A[4, 4] * y[4] + A[4, 5] * y[5],
            A[5, 5] * y[5] + A[5, 6] * y[6],
            A[6, 6] * y[6] + A[6, 7] * y[7],
            A[7, 7] * y[7] + A[7, 8] * y[8],
            A[8, 8] * y[8] + A[8, 0] * y[0])


def _lorenz_problem(k=8):
    rng = np.random.default_rng(12)
    y0 = rng.uniform(-10, 10, (3, k))
    rho = np.linspace(10.0, 40.0, k)
    return lorenz, y0, (10.0, rho, 8.0 / 3.0), (0.0, 4.0)


def _vanderpol_problem(k=7):
    y0 = np.vstack([np.linspace(-2, 2, k), np.zeros(k)])
    return vanderpol, y0, (np.linspace(0.5, 6.0, k),), (0.0, 12.0)


def _linear9_problem(k=6):
    rng = np.random.default_rng(3)
    A = rng.uniform(-1.0, 0.5, (9, 9, k))
    # one fast-decaying, short trajectory so that the others run alone for a while
    A[:, :, 0] *= 0.1
    return linear9, rng.uniform(-1, 1, (9, k)), (A,), (0.0, 3.0)


PROBLEMS = {"lorenz": _lorenz_problem, "vanderpol": _vanderpol_problem,
            "linear9": _linear9_problem}
METHODS = ["RK23", "RK45", "DOP853", "Tsit5"]


def solve(backend, problem, y0, args, method="RK45", **kw):
    fun, _, _, t_span = problem
    kw.setdefault("rtol", 1e-7)
    kw.setdefault("atol", 1e-9)
    return solve_ivp(fun, t_span, y0, method=method, args=args, backend=backend,
                     vectorized=backend == "numpy", **kw)


def take(res, idx):
    """Fields of ``res`` for trajectories ``idx``."""
    out = {}
    for name in FIELDS:
        value = np.asarray(res[name])
        out[name] = value[:, idx] if value.ndim >= 2 else value[idx]
    return out


def subset_args(args, idx):
    return tuple(a[..., idx] if np.ndim(a) > 0 else a for a in args)


def assert_same(a, b, what=""):
    for name in FIELDS:
        np.testing.assert_array_equal(np.asarray(a[name]), np.asarray(b[name]),
                                      err_msg=f"{what}: {name}")


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", list(PROBLEMS))
def test_same_call_twice_is_bit_identical(backend, name):
    problem = PROBLEMS[name]()
    _, y0, args, t_span = problem
    t_eval = np.linspace(*t_span, 13)
    first = solve(backend, problem, y0, args, t_eval=t_eval)
    second = solve(backend, problem, y0, args, t_eval=t_eval)
    assert_same(first, second, "second call")
    np.testing.assert_array_equal(first.status, 0)


# numba compiles an engine per (problem, method): every method on one problem, RK45 on all.
SPLIT_CASES = ([("numpy", m, name) for name in PROBLEMS for m in METHODS]
               + [("numba", m, "vanderpol") for m in METHODS]
               + [("numba", "RK45", name) for name in PROBLEMS if name != "vanderpol"])


@pytest.mark.parametrize("backend, method, name", SPLIT_CASES)
def test_result_does_not_depend_on_the_split(backend, method, name):
    """All k at once, in two halves, one by one, reversed: bit-identical per trajectory."""
    problem = PROBLEMS[name]()
    _, y0, args, t_span = problem
    k = y0.shape[1]
    t_eval = np.linspace(*t_span, 7)
    whole = solve(backend, problem, y0, args, method=method, t_eval=t_eval)
    half = k // 2
    for part in (np.arange(half), np.arange(half, k), np.array([k - 1]), np.arange(k)[::-1],
                 np.array([0, k - 1])):
        res = solve(backend, problem, y0[:, part], subset_args(args, part), method=method,
                    t_eval=t_eval)
        assert_same(res, take(whole, part), f"trajectories {part}")


@pytest.mark.parametrize("backend", BACKENDS)
def test_fixed_step_result_does_not_depend_on_the_split(backend):
    problem = _vanderpol_problem()
    _, y0, args, t_span = problem
    whole = solve(backend, problem, y0, args, method="RK4", dt=0.01, t_eval=[1.0, 5.5, 12.0])
    for part in (np.arange(3), np.arange(3, 7)):
        res = solve(backend, problem, y0[:, part], subset_args(args, part), method="RK4",
                    dt=0.01, t_eval=[1.0, 5.5, 12.0])
        assert_same(res, take(whole, part), f"trajectories {part}")


@pytest.mark.parametrize("backend", BACKENDS)
def test_broadcast_y0_equals_repeated_y0(backend):
    """(n, 1) broadcast against per-trajectory args is the same as repeating the column."""
    problem = _lorenz_problem()
    _, y0, args, t_span = problem
    k = y0.shape[1]
    one = solve(backend, problem, y0[:, :1], args)
    rep = solve(backend, problem, np.repeat(y0[:, :1], k, axis=1), args)
    assert_same(one, rep, "broadcast")


@pytest.mark.parametrize("backend", BACKENDS)
def test_float32_is_deterministic_and_split_independent(backend):
    problem = _vanderpol_problem()
    _, y0, args, t_span = problem
    kw = dict(dtype=np.float32, t_eval=np.linspace(*t_span, 5), rtol=1e-4, atol=1e-6)
    whole = solve(backend, problem, y0, args, **kw)
    assert whole.y.dtype == np.float32
    assert_same(whole, solve(backend, problem, y0, args, **kw), "second call")
    part = np.arange(2, 5)
    assert_same(solve(backend, problem, y0[:, part], subset_args(args, part), **kw),
                take(whole, part), "subset")


def test_numba_threads_do_not_change_results():
    import numba
    problem = _lorenz_problem(k=16)
    _, y0, args, t_span = problem
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        single = solve("numba", problem, y0, args)
        numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
        multi = solve("numba", problem, y0, args)
    finally:
        numba.set_num_threads(before)
    assert_same(single, multi, "threads")


def test_numba_time_slices_do_not_change_results():
    """progress=True runs the engine in slices of step attempts: the same result."""
    problem = _lorenz_problem()
    _, y0, args, t_span = problem
    plain = solve("numba", problem, y0, args, t_eval=np.linspace(*t_span, 9))
    sliced = solve("numba", problem, y0, args, t_eval=np.linspace(*t_span, 9), progress=True)
    assert_same(plain, sliced, "time slices")


def first_return(t, y, sigma, rho, beta):
    return y[0] - 1.5


first_return.terminal = True

SLICE_CASES = {
    "adaptive": dict(method="RK45", t_eval=np.linspace(0.0, 4.0, 9)),
    "fixed": dict(method="RK4", dt=0.01, t_eval=np.linspace(0.0, 4.0, 9)),
    # max_steps inside a slice of 3 and at a slice's end
    "fixed_max_steps": dict(method="RK4", dt=0.01, max_steps=100),
    "fixed_max_steps_at_slice_end": dict(method="RK4", dt=0.01, max_steps=99),
    "fixed_dense": dict(method="RK4", dt=0.01, dense_output=True),
    "fixed_terminal_event": dict(method="RK4", dt=0.01, events=first_return),
}


@pytest.mark.parametrize("case", list(SLICE_CASES))
def test_numba_slices_of_three_steps_do_not_change_results(case, monkeypatch):
    """The engine stopped and resumed every 3 step attempts gives the same result, with
    t_eval, max_steps, dense output and a terminal event, fixed and adaptive."""
    from gpuivp.backends import numba as nb

    problem = _lorenz_problem()
    _, y0, args, t_span = problem
    kw = SLICE_CASES[case]
    plain = solve("numba", problem, y0, args, **kw)
    monkeypatch.setattr(nb, "slice_budget", lambda p: 3)
    sliced = solve("numba", problem, y0, args, **kw)
    assert_same(plain, sliced, "slices of 3")
    if "events" in kw:
        assert (plain.status == 1).sum() >= 4 and set(plain.status) <= {0, 1}
        for a, b in zip(plain.t_events, sliced.t_events):
            np.testing.assert_array_equal(a, b)
    else:
        np.testing.assert_array_equal(plain.status, -2 if "max_steps" in kw else 0)
    if "max_steps" in kw:
        np.testing.assert_array_equal(plain.naccept, kw["max_steps"])
    if kw.get("dense_output"):
        t = np.linspace(*t_span, 11)
        np.testing.assert_array_equal(plain.sol(t), sliced.sol(t))


@pytest.mark.parametrize("budget", [3, 7, 1 << 62])
def test_numba_fixed_step_failures_are_found_from_the_slice_start(budget, monkeypatch):
    """Final state only, fixed steps run without a finiteness test per step; a slice that
    ends non-finite runs again from its start with the test. Whatever the slice length,
    each failing trajectory stops at the step the array engine stops at, bit for bit."""
    from gpuivp.backends import numba as nb

    p = np.array([0.0, 0.5, 1.0, 2.0, 3.7])  # overflow near t = 1/p: -, 2, 1, 0.5, 0.27
    kw = dict(method="RK4", dt=0.01, args=(p,))
    want = solve_ivp(blowup, (0.0, 1.5), np.c_[[1.0]], backend="numpy", vectorized=True, **kw)
    monkeypatch.setattr(nb, "slice_budget", lambda problem: budget)
    got = solve_ivp(blowup, (0.0, 1.5), np.c_[[1.0]], backend="numba", **kw)
    np.testing.assert_array_equal(want.status, [0, 0, -3, -3, -3])
    assert_same(got, want, f"slices of {budget}")
