"""The large-systems benchmark problems: Lorenz-96 (n = 40) and Kuramoto (N = 50).

Shared by ``benchmarks/large.py`` and ``tests/test_reference_large.py``: the
right-hand sides and their constants, the scipy loop that serves as the
baseline, and the C reference's call (``large_rk45.c``).

* **Lorenz-96**, n = 40: ``y_i' = (y_{i+1} - y_{i-2}) y_{i-1} - y_i + F``,
  cyclic indices, one forcing ``F`` per trajectory (``linspace(2, 10, K)``:
  from a stable or periodic regime at F = 2 to chaos at F = 8-10), from the
  F = 8 equilibrium ``y_i = 8`` with ``y_19 += 0.01`` (the usual perturbation),
  t in [0, 5]: onto the attractor and about 8 Lyapunov times at F = 8
  (largest exponent ~1.7). Every implementation still takes the same steps there
  (last-bit differences grow to ~1e-5 in the most chaotic states, F near 10: see
  ``TOLERANCE``); over t in [0, 10] they grow until they decide a step, and 3 of
  2,000 trajectories (F > 9.7) take different numbers of steps in scipy, the C and
  gpuivp's ``numpy`` backend.
* **Kuramoto**, N = 50 oscillators, all-to-all coupling:
  ``th_i' = w_i + (Kc / N) sum_j sin(th_j - th_i)``, one coupling ``Kc`` per
  trajectory (``linspace(0, 4, K)``, across the synchronisation threshold
  Kc = 2 / (pi g(0)) = 1.6 for standard normal frequencies), frequencies
  ``w ~ N(0, 1)`` and ``th0 ~ U(0, 2 pi)`` drawn once with seed 2024 (``w``
  passed as ``gpuivp.shared``), t in [0, 10]: a few relaxation times at
  every coupling. The right-hand side is the O(N^2) array expression a NumPy
  user writes (2,500 sines per evaluation).

Both use RK45 at rtol = 1e-6, atol = 1e-8. Each right-hand side accepts ``y``
of shape ``(n,)`` with a scalar parameter (scipy, numba) and ``(n, m)`` with a
parameter of shape ``(m,)`` (``vectorized=True``), and returns an array.
"""
import dataclasses

import numpy as np
import scipy.integrate

RTOL = 1e-6
ATOL = 1e-8
N_EVAL = 101
#: Final states and t_eval values of implementations that take the same steps agree to
#: this, relative, over short spans (Lorenz-96 up to t = 2, Kuramoto over its span): their
#: right-hand sides and stage sums round differently (BLAS with FMA in scipy, NumPy's
#: pairwise sum in Kuramoto). Over Lorenz-96's benchmark span, t in [0, 5], chaos amplifies
#: such last-bit differences to ~1e-5 near F = 10 while the steps stay the same.
TOLERANCE = 1e-6

L96_N = 40
_I = np.arange(L96_N)
L96_IP1, L96_IM1, L96_IM2 = (_I + 1) % L96_N, (_I - 1) % L96_N, (_I - 2) % L96_N
L96_Y0 = np.full(L96_N, 8.0)
L96_Y0[19] += 0.01

KURAMOTO_N = 50
_rng = np.random.default_rng(2024)
KURAMOTO_OMEGA = _rng.standard_normal(KURAMOTO_N)
KURAMOTO_Y0 = _rng.uniform(0.0, 2 * np.pi, KURAMOTO_N)
del _rng


def lorenz96(t, y, F):
    """Lorenz-96: ``(y[i+1] - y[i-2]) y[i-1] - y[i] + F``, cyclic (one fancy index per term)."""
    return (y[L96_IP1] - y[L96_IM2]) * y[L96_IM1] - y + F


def kuramoto(t, theta, kc, omega):
    """Kuramoto, all-to-all: ``omega_i + kc / N sum_j sin(theta_j - theta_i)``.

    ``theta[np.newaxis] - theta[:, np.newaxis]`` is the (N, N[, m]) matrix of
    phase differences; the transposes let a per-trajectory ``kc`` of shape
    ``(m,)`` and the shared ``omega`` of shape ``(N,)`` broadcast in both
    the 1-D and the vectorized call.
    """
    coupling = np.sin(theta[np.newaxis] - theta[:, np.newaxis]).sum(axis=1)
    return (omega + (kc / KURAMOTO_N * coupling).T).T


def lorenz96_inplace(t, y, dydt, F):
    """Lorenz-96 written in place (``inplace=True``), a loop over the components.

    Negative indices wrap; works on ``y`` of shape ``(n,)`` and ``(n, m)``.
    """
    n = y.shape[0]
    for i in range(n - 1):
        dydt[i] = (y[i + 1] - y[i - 2]) * y[i - 1] - y[i] + F
    dydt[n - 1] = (y[0] - y[n - 3]) * y[n - 2] - y[n - 1] + F


def kuramoto_inplace(t, theta, dydt, kc, omega):
    """Kuramoto written in place (``inplace=True``): the double loop, one sine per pair.

    Sums left to right, as the C reference does.
    """
    n = theta.shape[0]
    for i in range(n):
        s = np.sin(theta[0] - theta[i])
        for j in range(1, n):
            s = s + np.sin(theta[j] - theta[i])
        dydt[i] = omega[i] + kc / n * s


@dataclasses.dataclass(frozen=True)
class Model:
    """One benchmark problem.

    ``param(k)`` gives the per-trajectory parameter, ``shared`` the arrays passed
    to every trajectory after it (``gpuivp.shared`` for gpuivp); ``fun`` returns
    an array, ``fun_inplace`` writes ``dydt`` (gpuivp's ``inplace=True``).
    """

    name: str
    title: str
    fun: object
    fun_inplace: object
    n: int
    y0: np.ndarray
    t_span: tuple
    low: float
    high: float
    shared: tuple = ()

    def param(self, k):
        """The per-trajectory parameter: ``linspace(low, high, k)``."""
        return np.linspace(self.low, self.high, k)

    def t_eval(self, n_eval=N_EVAL):
        """``n_eval`` equally spaced output times over ``t_span``."""
        return np.linspace(*self.t_span, n_eval)


MODELS = {
    "lorenz96": Model("lorenz96", "Lorenz-96, n = 40, F = linspace(2, 10, K)", lorenz96,
                      lorenz96_inplace, L96_N, L96_Y0, (0.0, 5.0), 2.0, 10.0),
    "kuramoto": Model("kuramoto", "Kuramoto, N = 50, Kc = linspace(0, 4, K)", kuramoto,
                      kuramoto_inplace, KURAMOTO_N, KURAMOTO_Y0, (0.0, 10.0), 0.0, 4.0,
                      shared=(KURAMOTO_OMEGA,)),
}


def solve_scipy(model, param, t_eval=None, t_span=None, rtol=RTOL, atol=ATOL):
    """A loop of scipy's ``solve_ivp(method="RK45")``, one call per parameter.

    Returns
    -------
    y_final : ndarray (n, k)
    status, nfev : ndarray (k,) of int
    y_eval : ndarray (n, k, len(t_eval)), or None without ``t_eval``
    """
    param = np.asarray(param, dtype=np.float64)
    t_span = model.t_span if t_span is None else t_span
    k = param.size
    y_final = np.empty((model.n, k))
    status = np.empty(k, dtype=np.int64)
    nfev = np.empty(k, dtype=np.int64)
    y_eval = None if t_eval is None else np.full((model.n, k, len(t_eval)), np.nan)
    for i, p in enumerate(param):
        sol = scipy.integrate.solve_ivp(model.fun, t_span, model.y0, method="RK45",
                                        t_eval=t_eval, rtol=rtol, atol=atol,
                                        args=(p, *model.shared))
        y_final[:, i] = sol.y[:, -1]  # with t_eval: its last point (t1, interpolated)
        if t_eval is not None:
            y_eval[:, i, :sol.y.shape[1]] = sol.y
        status[i] = sol.status
        nfev[i] = sol.nfev
    return y_final, status, nfev, y_eval


def solve_c(solvers, model, param, t_eval=None, t_span=None, rtol=RTOL, atol=ATOL):
    """The C reference (``solvers = build.load_large()``) on ``model``: as :func:`solve_scipy`."""
    t_span = model.t_span if t_span is None else t_span
    return solvers[model.name](param, model.y0, *t_span, rtol, atol, t_eval=t_eval,
                               shared=model.shared[0] if model.shared else None)


def max_rel_diff(y, y_ref, atol=ATOL):
    """``max |y - y_ref| / max(|y_ref|, atol)`` over all entries (NaN where both are NaN ignored).

    Returns
    -------
    float
    """
    y, y_ref = np.asarray(y), np.asarray(y_ref)
    both_nan = np.isnan(y) & np.isnan(y_ref)
    diff = np.where(both_nan, 0.0, np.abs(y - y_ref))
    return float(np.max(diff / np.maximum(np.abs(y_ref), atol), initial=0.0))
