"""Bifurcation diagram of the Lorenz system over its parameter ρ.

    x' = σ (y - x),   y' = x (ρ - z) - y,   z' = x y - β z,   σ = 10, β = 8/3

One ensemble call integrates the system from (1, 0, 0) for every ρ in [0, 28]; the local
maxima of z(t) over the second half of t ∈ [0, 40] (from a dense ``t_eval``, refined by a
parabola through three samples) are plotted against ρ. The picture shows the classic
route: the origin for ρ < 1, the fixed points C± (z = ρ - 1) with ever slower damped
oscillations as ρ approaches 24.74, and the strange attractor beyond.

The computation is shared with ``python -m gpuivp demo`` (``gpuivp._demo``), which also
times it against a ``scipy.integrate.solve_ivp`` loop.

Run::

    python examples/lorenz_bifurcation.py                    # 10,000 values of ρ, best backend
    python examples/lorenz_bifurcation.py --n 2000 --backend numpy --out lorenz.png
"""
import argparse

from gpuivp import _demo
from gpuivp.backends import BACKENDS


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=10_000, help="number of ρ values (default 10000)")
    parser.add_argument("--backend", default="auto", choices=("auto",) + BACKENDS)
    parser.add_argument("--t-end", type=float, default=_demo.T_END,
                        help=f"integrate over [0, t_end], maxima from t_end/2 on "
                             f"(default {_demo.T_END:g})")
    parser.add_argument("--out", default="lorenz_bifurcation.png", help="PNG to write")
    args = parser.parse_args(argv)

    result = _demo.lorenz_bifurcation(args.n, backend=args.backend, t_end=args.t_end)
    failed = int((result["status"] < 0).sum())
    compiling = " including compilation" if result["backend"] in ("numba", "cuda") else ""
    print(f"{args.n} trajectories on backend {result['backend']!r}: {result['seconds']:.2f} s"
          f"{compiling} ({1e3 * result['seconds'] / args.n:.3f} ms per trajectory); "
          f"{len(result['points_z']):,} maxima; {failed} failed")
    if _demo.plot_lorenz_bifurcation(result, args.out):
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
