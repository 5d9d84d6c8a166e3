"""Period doubling and chaos in the forced Duffing oscillator, from Poincaré sections.

    x'' + δ x' + α x + β x³ = γ cos(ω t),   δ = 0.3, α = -1, β = 1, ω = 1.2

the double-well oscillator of Guckenheimer & Holmes, swept over the forcing amplitude γ.
Each trajectory starts at (x, x') = (1, 0); after a transient of ``--transient`` forcing
periods T = 2π/ω, x is sampled stroboscopically at ``--samples`` multiples of T (a
Poincaré section, taken with ``t_eval``). A period-p orbit shows p points above its γ, a
chaotic one a cloud: the picture shows the period-doubling cascade near γ ≈ 0.27-0.30,
chaos, and the periodic windows inside it.

Run::

    python examples/duffing_bifurcation.py                   # 3,000 values of γ, best backend
    python examples/duffing_bifurcation.py --n 500 --backend numpy --out duffing.png
"""
import argparse
import time

import numpy as np

from gpuivp import solve_ivp
from gpuivp._demo import pyplot
from gpuivp.backends import BACKENDS

DELTA, ALPHA, BETA, OMEGA = 0.3, -1.0, 1.0, 1.2


def duffing(t, y, delta, alpha, beta, gamma, omega):
    """Tuple return and NumPy functions: serves the compiled and the vectorized backends."""
    return (y[1], -delta * y[1] - alpha * y[0] - beta * y[0] ** 3 + gamma * np.cos(omega * t))


def poincare_sections(gamma, transient=150, samples=100, backend="auto"):
    """x at t = m T, m = transient, ..., transient + samples - 1, for each γ.

    Returns (x of shape (k, samples), result).
    """
    period = 2 * np.pi / OMEGA
    t_eval = (transient + np.arange(samples)) * period
    res = solve_ivp(duffing, (0.0, t_eval[-1]), np.c_[[1.0, 0.0]], t_eval=t_eval,
                    args=(DELTA, ALPHA, BETA, gamma, OMEGA), vectorized=True,
                    backend=backend, rtol=1e-8, atol=1e-10)
    return res.y[0], res


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=3000, help="number of γ values (default 3000)")
    parser.add_argument("--backend", default="auto", choices=("auto",) + BACKENDS)
    parser.add_argument("--gamma", type=float, nargs=2, default=(0.2, 0.65),
                        metavar=("MIN", "MAX"), help="range of γ (default 0.2 0.65)")
    parser.add_argument("--transient", type=int, default=150,
                        help="forcing periods discarded (default 150)")
    parser.add_argument("--samples", type=int, default=100,
                        help="Poincaré points per trajectory (default 100)")
    parser.add_argument("--out", default="duffing_bifurcation.png", help="PNG to write")
    args = parser.parse_args(argv)

    gamma = np.linspace(*args.gamma, args.n)
    start = time.perf_counter()
    x, res = poincare_sections(gamma, args.transient, args.samples, args.backend)
    elapsed = time.perf_counter() - start
    compiling = " including compilation" if res.backend in ("numba", "cuda") else ""
    print(f"{args.n} trajectories on backend {res.backend!r}: {elapsed:.2f} s{compiling}"
          f" ({1e3 * elapsed / args.n:.3f} ms per trajectory, "
          f"{res.nfev.mean():,.0f} evaluations of fun on average); {res.message}")

    plt = pyplot()
    if plt is None:
        return
    fig, ax = plt.subplots(figsize=(9, 5.5), dpi=120)
    ax.plot(np.repeat(gamma, x.shape[1]), x.ravel(), ",", color="k", alpha=0.6,
            rasterized=True)
    ax.set_xlim(gamma[0], gamma[-1])
    ax.set_xlabel("forcing amplitude γ")
    ax.set_ylabel(r"$x(mT)$,  $T = 2\pi/\omega$")
    ax.set_title(f"Duffing oscillator, δ = {DELTA}, α = {ALPHA:g}, β = {BETA:g}, ω = {OMEGA}: "
                 f"Poincaré sections\n({args.n:,} values of γ, {res.backend} backend, "
                 f"{elapsed:.1f} s)")
    fig.tight_layout()
    fig.savefig(args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
