"""Final size of an SIR epidemic over a grid of transmission rate β and recovery rate γ.

    S' = -β S I,   I' = β S I - γ I,   (R = 1 - S - I)

The β × γ grid is flattened into one ensemble of k = n trajectories (a √n × √n grid),
each starting from S = 1 - 10⁻⁴, I = 10⁻⁴ and run for 2,000 days. The final size
1 - S(∞) is drawn as a heat map; it is zero below the threshold R₀ = β/γ = 1 and grows
with R₀. The result is checked against the exact final-size relation
S∞ = S₀ exp(-R₀ (1 - S∞)) (solved with Lambert's W), drawn as dashed contours.

Run::

    python examples/sir_parameter_map.py                     # 200 × 200 grid, best backend
    python examples/sir_parameter_map.py --n 2500 --backend numpy --out sir.png
"""
import argparse
import time

import numpy as np
from scipy.special import lambertw

from gpuivp import solve_ivp
from gpuivp._demo import pyplot
from gpuivp.backends import BACKENDS

I0 = 1e-4
T_END = 2000.0


def sir(t, y, beta, gamma):
    infections = beta * y[0] * y[1]
    return (-infections, infections - gamma * y[1])


def exact_final_size(r0, i0=I0):
    """1 - S(∞) from S∞ = S₀ exp(-R₀ (1 - S∞)) with S₀ = 1 - i0, R(0) = 0."""
    s0 = 1.0 - i0
    s_inf = np.real(-lambertw(-r0 * s0 * np.exp(-r0)) / r0)
    return 1.0 - s_inf


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=40_000,
                        help="trajectories; the grid is √n × √n (default 40000 = 200 × 200)")
    parser.add_argument("--backend", default="auto", choices=("auto",) + BACKENDS)
    parser.add_argument("--beta", type=float, nargs=2, default=(0.05, 1.0), metavar=("MIN", "MAX"),
                        help="transmission rate per day (default 0.05 1.0)")
    parser.add_argument("--gamma", type=float, nargs=2, default=(0.02, 0.5),
                        metavar=("MIN", "MAX"), help="recovery rate per day (default 0.02 0.5)")
    parser.add_argument("--out", default="sir_parameter_map.png", help="PNG to write")
    args = parser.parse_args(argv)

    side = max(2, int(round(np.sqrt(args.n))))
    beta = np.linspace(*args.beta, side)
    gamma = np.linspace(*args.gamma, side)
    B, G = np.meshgrid(beta, gamma, indexing="ij")  # B[i, j] = beta[i], G[i, j] = gamma[j]
    start = time.perf_counter()
    res = solve_ivp(sir, (0.0, T_END), np.c_[[1.0 - I0, I0]], args=(B.ravel(), G.ravel()),
                    vectorized=True, backend=args.backend, rtol=1e-6, atol=1e-10)
    elapsed = time.perf_counter() - start
    k = side * side
    compiling = " including compilation" if res.backend in ("numba", "cuda") else ""
    print(f"{k} trajectories ({side} x {side} grid) on backend {res.backend!r}: {elapsed:.2f} s"
          f"{compiling} ({1e3 * elapsed / k:.3f} ms per trajectory); {res.message}")

    size = (1.0 - res.y_final[0]).reshape(side, side)
    exact = exact_final_size(B / G)
    over = res.y_final[1].reshape(side, side) < 1e-8  # the epidemic is over by T_END
    print(f"largest |final size - exact| where the epidemic is over ({over.mean():.1%} of the "
          f"grid): {np.abs(size - exact)[over].max():.1e}")

    plt = pyplot()
    if plt is None:
        return
    fig, ax = plt.subplots(figsize=(7.5, 6), dpi=120)
    extent = (gamma[0], gamma[-1], beta[0], beta[-1])
    im = ax.imshow(size, origin="lower", extent=extent, aspect="auto", cmap="magma",
                   vmin=0, vmax=1, interpolation="nearest")
    fig.colorbar(im, ax=ax, label=r"final size $1 - S(\infty)$")
    levels = [0.2, 0.5, 0.8, 0.95]
    cs = ax.contour(gamma, beta, exact, levels=levels, colors="0.55", linestyles="--",
                    linewidths=0.9)
    ax.clabel(cs, fmt="%.2f", fontsize=8)
    g = np.array([gamma[0], min(gamma[-1], beta[-1])])
    ax.plot(g, g, color="c", lw=1.2, label=r"$R_0 = \beta/\gamma = 1$")
    ax.set_xlim(gamma[0], gamma[-1])
    ax.set_ylim(beta[0], beta[-1])
    ax.set_xlabel(r"recovery rate $\gamma$ (1/day)")
    ax.set_ylabel(r"transmission rate $\beta$ (1/day)")
    ax.set_title(f"SIR final size over a {side} × {side} grid\n({res.backend} backend, "
                 f"{elapsed:.1f} s; dashed: exact final-size relation)")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
