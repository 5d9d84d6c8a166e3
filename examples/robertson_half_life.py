"""Robertson's stiff kinetics: time to 50 % conversion over a grid of two rate constants.

    y1' = -k1 y1 + k3 y2 y3,   y2' = k1 y1 - k2 y2^2 - k3 y2 y3,   y3' = k2 y2^2

with k2 = 3e7 (the stiff fast reaction) and a grid of k1 (the slow first reaction) and k3
(the reverse reaction, log-spaced). Every grid point is one trajectory of one ensemble run
with the stiff ``Rodas5P`` method (``--backend auto``: the first of the backends that run it
usable here, ``cupy`` on a GPU, else ``numpy`` with its batched LU), from y = (1, 0, 0);
a terminal event stops each trajectory when y1 = 1/2. The times are drawn as a heat map
and a few grid points are checked against scipy's Radau.

Run::

    python examples/robertson_half_life.py                  # 60 x 60 grid
    python examples/robertson_half_life.py --n 400 --out robertson.png
"""
import argparse
import time

import numpy as np
from scipy.integrate import solve_ivp as scipy_solve_ivp

from gpuivp import solve_ivp
from gpuivp._demo import pyplot

K2 = 3e7
T_END = 1e6


def rober(t, y, k1, k3):
    y1, y2, y3 = y
    return (-k1 * y1 + k3 * y2 * y3, k1 * y1 - K2 * y2 * y2 - k3 * y2 * y3, K2 * y2 * y2)


def rober_jac(t, y, k1, k3):
    y1, y2, y3 = y
    z = 0 * y1
    return ((z - k1, k3 * y3, k3 * y2),
            (z + k1, -2 * K2 * y2 - k3 * y3, -k3 * y2),
            (z, 2 * K2 * y2, z))


def half(t, y, k1, k3):
    return y[0] - 0.5


half.terminal = True


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=3600,
                        help="trajectories; the grid is sqrt(n) x sqrt(n) (default 3600)")
    parser.add_argument("--out", default="robertson_half_life.png", help="PNG to write")
    parser.add_argument("--backend", default="auto",
                        help="gpuivp backend (default auto; Rodas5P runs on those of "
                             "gpuivp.methods.rosenbrock.ROSENBROCK_BACKENDS)")
    args = parser.parse_args(argv)

    side = max(2, int(round(np.sqrt(args.n))))
    k1 = np.linspace(0.01, 0.1, side)
    k3 = np.logspace(3, 5, side)
    A, B = np.meshgrid(k1, k3, indexing="ij")
    start = time.perf_counter()
    res = solve_ivp(rober, (0.0, T_END), np.c_[[1.0, 0.0, 0.0]], method="Rodas5P",
                    backend=args.backend, vectorized=True, args=(A.ravel(), B.ravel()),
                    jac=rober_jac, events=half, rtol=1e-6, atol=1e-10)
    elapsed = time.perf_counter() - start
    k = side * side
    print(f"{k} trajectories ({side} x {side} grid), Rodas5P on backend {res.backend!r}: {elapsed:.2f} s "
          f"({1e3 * elapsed / k:.3f} ms per trajectory); mean nfev {res.nfev.mean():.0f}, "
          f"njev {res.njev.mean():.0f}, nlu {res.nlu.mean():.0f}; {res.message}")
    t_half = np.where(res.status == 1, res.t_final, np.nan).reshape(side, side)

    check = [(0, 0), (side - 1, side - 1), (side // 2, side // 3)]
    worst = 0.0
    for i, j in check:
        ref = scipy_solve_ivp(rober, (0.0, T_END), [1.0, 0.0, 0.0], method="Radau",
                              args=(k1[i], k3[j]), events=half, rtol=1e-10, atol=1e-14)
        worst = max(worst, abs(t_half[i, j] / ref.t_events[0][0] - 1))
    print(f"largest relative difference from scipy's Radau (rtol 1e-10) at {len(check)} grid "
          f"points: {worst:.1e}")

    plt = pyplot()
    if plt is None:
        return
    fig, ax = plt.subplots(figsize=(7.5, 6), dpi=120)
    im = ax.pcolormesh(k3, k1, np.log10(t_half), cmap="viridis", shading="nearest")
    ax.set_xscale("log")
    fig.colorbar(im, ax=ax, label=r"$\log_{10}$ time to $y_1 = 1/2$")
    ax.set_xlabel(r"$k_3$ (reverse reaction)")
    ax.set_ylabel(r"$k_1$ (slow first reaction)")
    ax.set_title(f"Robertson kinetics, $k_2$ = 3e7: {k} stiff trajectories, Rodas5P")
    fig.tight_layout()
    fig.savefig(args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
