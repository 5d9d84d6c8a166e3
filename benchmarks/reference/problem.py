"""The CPU benchmark problem: a sweep of Lorenz systems over rho.

Shared by ``benchmarks/cpu.py`` and ``check_reference.py``: the right-hand
side and its constants, the scipy loop that serves as the baseline, and the
comparison of final states.  Lorenz with sigma = 10, beta = 8/3 and
rho = linspace(0, 28, k), y0 = (1, 0, 0), t in [0, 10], RK45 at
rtol = 1e-6, atol = 1e-8, final state only.
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


def final_state_diffs(y, y_ref, atol=ATOL):
    """Differences of final states, split by the size of the reference state.

    A state that has decayed below ``atol`` (rho < 1) is only determined to
    about ``atol``: there the step size hovers at the stability limit and
    amplifies rounding differences, so it is compared in units of ``atol``.

    Parameters
    ----------
    y, y_ref : ndarray, shape (n, k)
        Final states, trajectory ``i`` in column ``i``.
    atol : float, optional

    Returns
    -------
    rel : float or None
        ``max ||y_i - y_ref_i||_inf / ||y_ref_i||_inf`` over the trajectories
        with ``||y_ref_i||_inf > atol`` (None if there are none).
    below : float or None
        ``max ||y_i - y_ref_i||_inf / atol`` over the others (None if none).
    """
    diff = np.max(np.abs(y - y_ref), axis=0)
    size = np.max(np.abs(y_ref), axis=0)
    large = size > atol
    rel = float(np.max(diff[large] / size[large])) if large.any() else None
    below = float(np.max(diff[~large]) / atol) if (~large).any() else None
    return rel, below
