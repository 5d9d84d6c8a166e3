"""The Lorenz rho sweep behind ``python -m gpuivp demo`` and ``examples/lorenz_bifurcation.py``.

One implementation, two front ends: the CLI adds a scipy comparison, the example
only the study. Nothing here is public API.
"""
from __future__ import annotations

import time

import numpy as np

from ._ivp import solve_ivp

#: The classic parameters (Lorenz 1963) and the sweep's defaults.
SIGMA, BETA = 10.0, 8.0 / 3.0
Y0 = (1.0, 0.0, 0.0)
RHO_RANGE = (0.0, 28.0)
T_END = 40.0
N_T = 1000
RTOL, ATOL = 1e-6, 1e-8
#: Trajectories per call: bounds the (3, chunk, N_T) float64 output (24 MB at 1000).
CHUNK = 1000


def lorenz(t, y, sigma, rho, beta):
    """Lorenz system; tuple return and plain arithmetic, so it serves every backend."""
    return (sigma * (y[1] - y[0]), y[0] * (rho - y[2]) - y[1], y[0] * y[1] - beta * y[2])


def local_maxima(z, steady_tol=1e-6):
    """Local maxima of each row of ``z``, refined by a parabola through three samples.

    Parameters
    ----------
    z : ndarray, shape (k, n_t)
        Samples on a uniform grid.
    steady_tol : float
        A row whose peak-to-peak range is below this has settled: it yields one point,
        its last value, instead of the numerical noise around an equilibrium.

    Returns
    -------
    rows, values : ndarray
        The row of each maximum and its value; rows with NaN (failed trajectories) give none.
    """
    z = np.asarray(z, dtype=float)
    with np.errstate(invalid="ignore"):
        ptp = np.ptp(z, axis=1)
    steady = ptp < steady_tol
    z0, z1, z2 = z[:, :-2], z[:, 1:-1], z[:, 2:]
    peak = (z1 > z0) & (z1 >= z2) & ~steady[:, None]
    rows, cols = np.nonzero(peak)
    a, b, c = z0[rows, cols], z1[rows, cols], z2[rows, cols]
    curv = a - 2.0 * b + c
    with np.errstate(divide="ignore", invalid="ignore"):
        refined = np.where(curv < 0, b - (a - c) ** 2 / (8.0 * curv), b)
    still = np.nonzero(steady)[0]
    rows = np.concatenate([rows, still])
    values = np.concatenate([refined, z[still, -1]])
    order = np.argsort(rows, kind="stable")
    return rows[order], values[order]


def lorenz_bifurcation(n=10_000, *, rho_range=RHO_RANGE, t_end=T_END, n_t=N_T,
                       backend="auto", chunk=CHUNK, rtol=RTOL, atol=ATOL):
    """Integrate the Lorenz system for ``n`` values of rho; z's local maxima in [t_end/2, t_end].

    Parameters
    ----------
    n : int
        Number of rho values, ``np.linspace(*rho_range, n)``.
    rho_range : (float, float)
        The sweep.
    t_end : float
        Integrate over ``[0, t_end]``; the first half is transient.
    n_t : int
        Samples of the second half (``t_eval``); maxima are refined between them.
    backend : str
        gpuivp backend (``"auto"`` picks the best usable one).
    chunk : int
        Trajectories per ``solve_ivp`` call, to bound memory.
    rtol, atol : float
        Tolerances of RK45.

    Returns
    -------
    dict
        ``rho`` (n,), ``points_rho`` and ``points_z`` (one entry per maximum), ``backend``,
        ``seconds`` (wall time of the integrations), ``status`` (n,) and ``nfev`` (n,).
    """
    rho = np.linspace(*rho_range, n)
    t_eval = np.linspace(t_end / 2, t_end, n_t)
    y0 = np.array(Y0)[:, None]
    pts_rho, pts_z, status, nfev, used = [], [], [], [], None
    seconds = 0.0
    for start in range(0, n, chunk):
        part = rho[start:start + chunk]
        tic = time.perf_counter()
        res = solve_ivp(lorenz, (0.0, t_end), y0, method="RK45", t_eval=t_eval,
                        vectorized=True, args=(SIGMA, part, BETA), backend=backend,
                        rtol=rtol, atol=atol)
        seconds += time.perf_counter() - tic
        used = res.backend
        rows, values = local_maxima(res.y[2])
        pts_rho.append(part[rows])
        pts_z.append(values)
        status.append(res.status)
        nfev.append(res.nfev)
    return dict(rho=rho, points_rho=np.concatenate(pts_rho), points_z=np.concatenate(pts_z),
                backend=used, seconds=seconds, status=np.concatenate(status),
                nfev=np.concatenate(nfev))


NO_MATPLOTLIB = "matplotlib is not installed: no picture (pip install 'gpuivp[plot]')"


def pyplot():
    """``matplotlib.pyplot`` on the file-only Agg backend, or None (and a note) without it."""
    try:
        import matplotlib
    except ImportError:
        print(NO_MATPLOTLIB)
        return None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def plot_lorenz_bifurcation(result, out, title=None):
    """Write the bifurcation diagram (z maxima against rho) to the PNG ``out``.

    Returns the path, or None when matplotlib is not installed.
    """
    plt = pyplot()
    if plt is None:
        return None

    fig, ax = plt.subplots(figsize=(9, 5.5), dpi=120)
    ax.plot(result["points_rho"], result["points_z"], ",", color="k", alpha=0.5,
            rasterized=True)
    ax.set_xlabel(r"$\rho$")
    ax.set_ylabel(r"local maxima of $z(t)$,  $t \in [T/2, T]$")
    k = len(result["rho"])
    ax.set_title(title or f"Lorenz system, σ = 10, β = 8/3: {k:,} values of ρ "
                          f"({result['backend']} backend, {result['seconds']:.1f} s)")
    ax.set_xlim(result["rho"][0], result["rho"][-1])
    ax.set_ylim(bottom=0)
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)
    return out
