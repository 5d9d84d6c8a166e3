"""Stiffness is noticed: an explicit method that fails (or runs very long) on a stiff problem
says so and names a stiff method; non-stiff failures do not (gpuivp/_stiffness.py)."""
import os
import sys
import warnings

import numpy as np
import pytest

import gpuivp
from gpuivp import _stiffness
from gpuivp.methods import METHODS
from problems import blowup, lorenz

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "benchmarks"))
from stiff import rober  # noqa: E402

BACKENDS = ["numba", "numpy"]
K1 = np.linspace(0.02, 0.08, 4)
K3 = 1e4 * np.linspace(0.5, 2.0, 4)


def stability_boundary(tab):
    """Where |R(-x)| first exceeds 1, R(z) = 1 + sum_j z^j b A^(j-1) 1 (explicit RK)."""
    coef, v = [1.0], np.ones(tab.n_stages)
    for _ in range(tab.n_stages):
        coef.append(tab.b @ v)
        v = tab.a @ v
    r = np.polynomial.Polynomial(coef)
    xs = np.linspace(0.0, 20.0, 200_001)
    first_out = np.flatnonzero(np.abs(r(-xs)) > 1 + 1e-12)[0]
    lo, hi = xs[first_out - 1], xs[first_out]
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if abs(r(-mid)) <= 1 else (lo, mid)
    return lo


@pytest.mark.parametrize("name", [m for m, t in METHODS.items()
                                  if getattr(t, "stability_boundary", None) is not None])
def test_stability_boundary_is_the_stability_polynomials(name):
    tab = METHODS[name]
    assert tab.stability_boundary == pytest.approx(stability_boundary(tab), abs=0.006)


def test_every_explicit_adaptive_method_has_a_stability_boundary():
    for name, tab in METHODS.items():
        if getattr(tab, "adaptive", False) and not getattr(tab, "linear_solve", False):
            assert tab.stability_boundary is not None, name


@pytest.mark.parametrize("backend", BACKENDS)
def test_robertson_out_of_max_steps_says_stiff_and_names_rodas5p(backend):
    res = gpuivp.solve_ivp(rober, (0.0, 40.0), np.c_[[1.0, 0.0, 0.0]], args=(K1, 3e7, K3),
                           method="RK45", rtol=1e-6, atol=1e-10, max_steps=300,
                           backend=backend, vectorized=True)
    assert np.all(res.status == -2)
    assert "All 4 trajectories that failed look stiff (trajectories 0, 1, 2, 3)" in res.message
    assert "RK45's stability limit" in res.message and "method='Rodas5P'" in res.message


def test_single_stiff_ivp_message_says_it_looks_stiff():
    res = gpuivp.solve_ivp(rober, (0.0, 40.0), np.array([1.0, 0.0, 0.0]),
                           args=(0.04, 3e7, 1e4), method="DOP853", max_steps=200,
                           backend="numpy", vectorized=True)
    assert res.status == -2
    assert res.message.startswith("The maximum number of step attempts")
    assert "It looks stiff" in res.message and "Rodas5P" in res.message


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", ["blowup", "blowup_min_step", "lorenz"])
def test_non_stiff_failures_do_not_say_stiff(case, backend):
    """A blow-up (y' = p y^2) out of max_steps or down to the minimum step, and chaotic
    Lorenz with tiny max_steps."""
    if case == "blowup_min_step":
        res = gpuivp.solve_ivp(blowup, (0.0, 2.0), np.c_[[1.0]], args=(np.linspace(1, 3, 4),),
                               method="RK45", backend=backend, vectorized=True)
        assert np.all(res.status == -1)
    elif case == "blowup":
        res = gpuivp.solve_ivp(blowup, (0.0, 2.0), np.c_[[1.0]], args=(np.linspace(1, 3, 4),),
                               method="RK23", rtol=1e-6, atol=1e-10, max_steps=1000,
                               backend=backend, vectorized=True)
    else:
        res = gpuivp.solve_ivp(lorenz, (0.0, 40.0), np.c_[[1.0, 0.0, 0.0]],
                               args=(10.0, np.linspace(24.0, 28.0, 4), 8.0 / 3.0),
                               method="RK45", rtol=1e-6, atol=1e-9, max_steps=100,
                               backend=backend, vectorized=True)
    if case != "blowup_min_step":
        assert np.all(res.status == -2)
    assert "stiff" not in res.message.lower() and "Rodas5P" not in res.message


def test_long_successful_stiff_run_warns_once():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = gpuivp.solve_ivp(rober, (0.0, 40.0), np.c_[[1.0, 0.0, 0.0]],
                               args=(K1, 3e7, K3), method="RK45", rtol=1e-6, atol=1e-10,
                               max_steps=10**6, backend="numba")
    assert np.all(res.status == 0) and np.all(res.naccept >= _stiffness.WARN_MIN_STEPS)
    stiff = [w for w in caught if issubclass(w.category, gpuivp.StiffnessWarning)]
    assert len(stiff) == 1
    assert "look stiff" in str(stiff[0].message) and "Rodas5P" in str(stiff[0].message)
    assert "stiff" not in res.message   # a success: the warning says it, not the message


def test_long_successful_non_stiff_run_does_not_warn():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = gpuivp.solve_ivp(lorenz, (0.0, 200.0), np.c_[[1.0, 0.0, 0.0]],
                               args=(10.0, np.array([27.0, 28.0]), 8.0 / 3.0), method="RK45",
                               rtol=1e-8, atol=1e-10, backend="numba")
    assert np.all(res.status == 0) and np.all(res.naccept >= _stiffness.WARN_MIN_STEPS)
    assert not [w for w in caught if issubclass(w.category, gpuivp.StiffnessWarning)]


@pytest.mark.parametrize("backend", BACKENDS)
def test_diagnostic_examines_a_capped_sample(backend, monkeypatch):
    """More failures than SAMPLE: at most SAMPLE trajectories are examined, and the message
    says how many of how many."""
    monkeypatch.setattr(_stiffness, "SAMPLE", 3)
    calls = []
    real = _stiffness.spectral_radius

    def counting(problem, t, y, idx, *a, **kw):
        calls.append(len(idx))
        return real(problem, t, y, idx, *a, **kw)

    monkeypatch.setattr(_stiffness, "spectral_radius", counting)
    res = gpuivp.solve_ivp(rober, (0.0, 40.0), np.c_[[1.0, 0.0, 0.0]], args=(K1, 3e7, K3),
                           method="RK45", rtol=1e-6, atol=1e-10, max_steps=300,
                           backend=backend, vectorized=True)
    assert calls == [3]
    assert "All 3 examined of the 4 trajectories that failed look stiff" in res.message


@pytest.mark.parametrize("vectorized", [True, False])
def test_spectral_radius_estimate_matches_the_jacobians_eigenvalues(vectorized):
    """Robertson's rho(J) at states of a Radau run, per trajectory, within 2 %: ``fun``
    called on the sample at once (vectorized) or column by column."""
    import scipy.integrate
    from problems import captured_problem
    from stiff import rober_jac

    def call():
        gpuivp.solve_ivp(rober, (0.0, 1.0), np.c_[[1.0, 0.0, 0.0]], args=(K1, 3e7, K3),
                         backend="scipy", vectorized=vectorized, max_steps=5)

    problem = captured_problem(call)
    idx = np.arange(4)
    t = np.array([1e-3, 0.1, 1.0, 30.0])
    y = np.stack([scipy.integrate.solve_ivp(rober, (0, ti), [1.0, 0, 0], args=(K1[i], 3e7, K3[i]),
                                            method="Radau", rtol=1e-8, atol=1e-12).y[:, -1]
                  for i, ti in enumerate(t)], axis=1)
    want = [np.max(np.abs(np.linalg.eigvals(np.array(rober_jac(t[i], y[:, i], K1[i], 3e7, K3[i]),
                                                      dtype=float)))) for i in idx]
    got = _stiffness.spectral_radius(problem, t, y, idx)
    np.testing.assert_allclose(got, want, rtol=0.02)
