"""Property-based tests: random ensembles of linear systems y' = A y.

Checked against the exact solution ``expm(A (t - t0)) y0`` and against the ``scipy``
backend (same steps for scipy's methods: same ``nfev``, results within ~1e-12). Random
``A`` (entries in [-1, 1], shared via ``gpuivp.shared`` or one per trajectory as an
``(n, n, k)`` arg), ``y0``, tolerances, methods, spans forward and backward, ``t_eval``.
The properties: no exception, no hang, errors within a bound that scales with the
tolerances (for the fixed-step RK4: with ``dt**4``).

numba compiles one engine per (n, method, arg kind, fixed step): the numba test draws from
fewer sizes so the file stays fast.
"""
import warnings

import numpy as np
import pytest
import scipy.linalg
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import gpuivp
from gpuivp import solve_ivp

SCIPY_METHODS = ("RK23", "RK45", "DOP853")
METHODS = SCIPY_METHODS + ("Tsit5", "RK4")
SETTINGS = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow],
                print_blob=True)
_FUNS = {}


def linear(n):
    """``fun(t, y, A) = A @ y`` written out as a tuple, so numba compiles it for any ``n``.

    One function object per ``n`` (reused across examples: numba's compile cache hits).
    """
    if n not in _FUNS:
        rows = ", ".join(" + ".join(f"A[{i}, {j}] * y[{j}]" for j in range(n))
                         for i in range(n))
        namespace = {}
        exec(compile(f"def linear{n}(t, y, A):\n    return ({rows},)\n", f"<linear{n}>",
                     "exec"), namespace)
        _FUNS[n] = namespace[f"linear{n}"]
    return _FUNS[n]


# Entries in [-1, 1]. Magnitudes below 1e-50 become 0: with A ~ 1e-153, DOP853's error norm
# is 0/0 once the squared error terms underflow, and scipy itself (so every backend, step for
# step) then fails; that is scipy's behaviour, not what these properties are about.
unit = st.floats(-1.0, 1.0, allow_nan=False, allow_infinity=False, allow_subnormal=False).map(
    lambda x: 0.0 if abs(x) < 1e-50 else x)


@st.composite
def linear_ensembles(draw, sizes=(1, 2, 3, 4), methods=METHODS):
    n = draw(st.sampled_from(sizes))
    k = draw(st.integers(1, 5))
    per_trajectory = draw(st.booleans())
    A = draw(arrays(np.float64, (n, n, k) if per_trajectory else (n, n), elements=unit))
    # (n, 1) broadcasts against per-trajectory args.
    k_y0 = draw(st.sampled_from([1, k])) if per_trajectory else k
    y0 = draw(arrays(np.float64, (n, k_y0), elements=unit))
    method = draw(st.sampled_from(methods))
    t0 = draw(st.floats(-1.0, 1.0, allow_subnormal=False))
    length = draw(st.floats(0.05, 3.0))
    direction = draw(st.sampled_from([1.0, -1.0]))
    t1 = t0 + direction * length
    fractions = draw(st.lists(st.floats(0.0, 1.0), max_size=4))
    t_eval = None
    if draw(st.booleans()):
        t_eval = np.unique([t0 + f * direction * length for f in fractions])
        t_eval = t_eval if direction > 0 else t_eval[::-1]
    kw = dict(method=method, t_eval=t_eval)
    if method == "RK4":
        kw["dt"] = draw(st.sampled_from([0.01, 0.02, 0.05]))
    else:
        kw["rtol"] = 10.0 ** draw(st.floats(-10.0, -3.0))
        kw["atol"] = 10.0 ** draw(st.floats(-12.0, -6.0))
    return dict(n=n, A=A, y0=y0, t_span=(t0, t1), per_trajectory=per_trajectory, kw=kw)


def solve(case, backend, A=None):
    A = case["A"] if A is None else A
    arg = A if A.ndim == 3 else gpuivp.shared(A)
    return solve_ivp(linear(case["n"]), case["t_span"], case["y0"], args=(arg,),
                     backend=backend, vectorized=backend == "numpy", **case["kw"])


def check_against_expm(case, res):
    """Every output within a tolerance-appropriate bound of expm(A (t - t0)) y0."""
    t0, t1 = case["t_span"]
    A, kw = case["A"], case["kw"]
    k = res.status.shape[0]
    np.testing.assert_array_equal(res.status, 0)
    y0 = np.broadcast_to(case["y0"], (case["n"], k))
    times = [] if kw["t_eval"] is None else list(kw["t_eval"])
    for i in range(k):
        Ai = A[:, :, i] if A.ndim == 3 else A
        # S: the solution's size along the span; G: how much the flow amplifies errors.
        flows = [scipy.linalg.expm(Ai * s) for s in np.linspace(0.0, t1 - t0, 16)]
        S = max(np.abs(M @ y0[:, i]).max() for M in flows)
        G = max(np.linalg.norm(M, 2) for M in flows)
        if kw["method"] == "RK4":
            steps = abs(t1 - t0) / kw["dt"]
            bound = (10 * kw["dt"] ** 4 * np.linalg.norm(Ai, 2) ** 5 * abs(t1 - t0) * S * G
                     + 1e-14 * (steps + 10) * S * G)
        else:
            bound = 50 * (kw["rtol"] * S + kw["atol"]) * G + 1e-13 * S * G
        exact_final = scipy.linalg.expm(Ai * (t1 - t0)) @ y0[:, i]
        err = np.abs(res.y_final[:, i] - exact_final).max()
        assert err <= bound, (i, "y_final", err, bound)
        for m, t in enumerate(times):
            exact = scipy.linalg.expm(Ai * (t - t0)) @ y0[:, i]
            err = np.abs(res.y[:, i, m] - exact).max()
            assert err <= bound, (i, f"t_eval[{m}]", err, bound)
        assert res.t_final[i] == t1


def check_close(res, ref, what):
    """Same steps (same nfev) and results within ~1e-12 of each other."""
    np.testing.assert_array_equal(res.status, ref.status, err_msg=what)
    np.testing.assert_array_equal(res.nfev, ref.nfev, err_msg=what)
    np.testing.assert_array_equal(res.naccept, ref.naccept, err_msg=what)
    scale = max(1.0, float(np.abs(ref.y_final).max()), float(np.nanmax(np.abs(ref.y),
                                                                         initial=0.0)))
    np.testing.assert_allclose(res.y_final, ref.y_final, rtol=0, atol=1e-9 * scale,
                               err_msg=what)
    np.testing.assert_allclose(res.y, ref.y, rtol=0, atol=1e-9 * scale, err_msg=what)


@pytest.mark.timeout(300)
@settings(max_examples=60, **SETTINGS)
@given(case=linear_ensembles())
def test_numpy_backend_solves_random_linear_ensembles(case):
    res = solve(case, "numpy")
    check_against_expm(case, res)
    if case["kw"]["method"] in SCIPY_METHODS:
        check_close(res, solve(case, "scipy"), "numpy vs scipy")
    if not case["per_trajectory"]:
        # The same matrix given once per trajectory: bit for bit the same result.
        k = res.status.shape[0]
        tiled = np.repeat(case["A"][:, :, None], k, axis=2)
        again = solve(case, "numpy", A=tiled)
        for name in ("y", "y_final", "t_final", "nfev", "naccept", "nreject"):
            np.testing.assert_array_equal(again[name], res[name], err_msg=name)


@pytest.mark.timeout(300)
@settings(max_examples=20, **SETTINGS)
@given(case=linear_ensembles(sizes=(1, 3)))
def test_numba_backend_solves_random_linear_ensembles(case):
    res = solve(case, "numba")
    check_against_expm(case, res)
    check_close(res, solve(case, "numpy"), "numba vs numpy")


@pytest.mark.timeout(300)
@settings(max_examples=40, **SETTINGS)
@given(case=linear_ensembles(sizes=(1, 2, 3, 4), methods=SCIPY_METHODS))
def test_scipy_backend_matches_expm(case):
    """The reference itself, on the same problems (its per-trajectory args included)."""
    check_against_expm(case, solve(case, "scipy"))


# -- random inputs: valid, or a documented error ----------------------------------------

def decay(t, y, lam):
    return (-lam * y[0],)


floats_any = st.floats(-3.0, 3.0) | st.sampled_from([np.nan, np.inf, -np.inf])


@pytest.mark.timeout(120)
@settings(max_examples=80, **SETTINGS)
@given(t_span=st.tuples(floats_any, floats_any),
       t_eval=st.none() | st.lists(floats_any, max_size=5),
       atol=st.sampled_from([1e-6, 0.0, -1e-6, [1e-6], [1e-6, 1e-6], np.nan]),
       rtol=st.sampled_from([1e-3, 0.0, -1.0, np.inf]),
       backend=st.sampled_from(["numpy", "scipy"]))
def test_random_arguments_are_valid_or_a_named_error(t_span, t_eval, atol, rtol, backend):
    lam = np.array([0.5, 1.0, 2.0])
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="At least one element of `rtol`")
            res = solve_ivp(decay, t_span, np.ones((1, 3)), args=(lam,), t_eval=t_eval,
                            atol=atol, rtol=rtol, backend=backend, max_steps=200,
                            vectorized=backend == "numpy")
    except (ValueError, TypeError) as exc:
        assert any(name in str(exc) for name in ("`t_span`", "`t_eval`", "`atol`", "`rtol`")), \
            str(exc)
        return
    t0, t1 = t_span
    assert np.isfinite(t0) and not np.isnan(t1)
    assert res.y.shape == (1, 3, 2 if t_eval is None else len(t_eval))
    if np.isinf(t1):  # as scipy: an infinite t1 is ended by a terminal event or max_steps
        np.testing.assert_array_equal(res.status, -2)
        return
    np.testing.assert_array_equal(res.status, 0)
    np.testing.assert_allclose(res.y_final[0], np.exp(-lam * (t1 - t0)), rtol=1e-2)
