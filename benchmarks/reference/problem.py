"""The CPU benchmark problem: a sweep of Lorenz systems over rho.

Shared by ``benchmarks/cpu.py`` and ``check_reference.py``: the right-hand
side, its constants, the scipy loop that serves as the baseline, and the
comparison of final states.
"""

import numpy as np
import scipy.integrate

SIGMA = 10.0
BETA = 8 / 3
RHO_MAX = 28.0
Y0 = (1.0, 0.0, 0.0)
T_SPAN = (0.0, 10.0)
RTOL = 1e-6
ATOL = 1e-8


def lorenz(t, y, sigma, rho, beta):
    """Lorenz right-hand side, usable by every gpuivp backend.

    Uses only arithmetic and returns a tuple, so it works with a 1-D ``y``
    and scalar ``rho`` (scipy, numba) as well as with ``y`` of shape
    ``(3, m)`` and ``rho`` of shape ``(m,)`` (``vectorized=True``).
    """
    return (sigma * (y[1] - y[0]),
            y[0] * (rho - y[2]) - y[1],
            y[0] * y[1] - beta * y[2])


def rho_sweep(k):
    """The benchmark's parameters: ``rho = linspace(0, 28, k)``."""
    return np.linspace(0.0, RHO_MAX, k)


def solve_scipy(rho, t_span=T_SPAN, rtol=RTOL, atol=ATOL):
    """Integrate one trajectory per ``rho`` with a loop of scipy's solve_ivp.

    Parameters
    ----------
    rho : array_like, shape (k,)
        Per-trajectory parameter.
    t_span : (float, float), optional
    rtol, atol : float, optional

    Returns
    -------
    y_final : ndarray, shape (3, k)
    status : ndarray of int, shape (k,)
    nfev : ndarray of int, shape (k,)
        As returned by :func:`reference.build.load`'s ``solve``.
    """
    rho = np.asarray(rho, dtype=np.float64)
    y_final = np.empty((len(Y0), rho.size))
    status = np.empty(rho.size, dtype=np.int64)
    nfev = np.empty(rho.size, dtype=np.int64)
    for i, r in enumerate(rho):
        sol = scipy.integrate.solve_ivp(lorenz, t_span, Y0, method="RK45",
                                        rtol=rtol, atol=atol,
                                        args=(SIGMA, r, BETA))
        y_final[:, i] = sol.y[:, -1]
        status[i] = sol.status
        nfev[i] = sol.nfev
    return y_final, status, nfev


def max_rel_diff(y, y_ref):
    """Largest relative difference between two sets of final states.

    Each trajectory's difference is measured in the max norm relative to the
    max norm of its reference state, so that components that decay to zero
    (rho < 1) are judged against the size of the state, not of themselves.

    Parameters
    ----------
    y, y_ref : ndarray, shape (n, k)

    Returns
    -------
    float
        ``max_i ||y[:, i] - y_ref[:, i]||_inf / ||y_ref[:, i]||_inf``; 0 for
        identical states, including identical zero states.
    """
    diff = np.max(np.abs(y - y_ref), axis=0)
    size = np.max(np.abs(y_ref), axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        rel = np.where(diff == 0, 0.0, diff / size)
    return float(np.max(rel, initial=0.0))
