"""Period of the Van der Pol oscillator over a sweep of its damping μ, from events.

    x'' - μ (1 - x²) x' + x = 0

Each trajectory records the times where x' crosses zero downwards (the maxima of x),
with a direction-filtered event; the period is the spacing of the last maxima, once the
trajectory has settled on the limit cycle. For large μ the period approaches the
relaxation-oscillation limit (3 - 2 ln 2) μ.

Run::

    python examples/vanderpol_period.py                # 2,000 values of μ on the best backend
    python examples/vanderpol_period.py --n 200 --backend numpy --out vdp.png
"""
import argparse
import time

import numpy as np

from gpuivp import solve_ivp
from gpuivp._demo import pyplot


def vanderpol(t, y, mu):
    return (y[1], mu * (1 - y[0] * y[0]) * y[1] - y[0])


def maximum_of_x(t, y, mu):
    return y[1]


maximum_of_x.direction = -1  # x' goes from + to -: a maximum of x


def periods(mu, backend="auto", t_end=None):
    """Limit-cycle period for each μ: the spacing of the last two maxima of x."""
    t_end = t_end or 10.0 + 4.0 * float(np.max(mu))  # a few periods even for the largest μ
    res = solve_ivp(vanderpol, (0.0, t_end), np.c_[[2.0, 0.0]], args=(mu,),
                    events=maximum_of_x, max_events=64, backend=backend, vectorized=True,
                    rtol=1e-8, atol=1e-10)
    count = res.n_events[0]
    rows = np.arange(len(mu))
    last = np.minimum(count, res.t_events[0].shape[1]) - 1
    with np.errstate(invalid="ignore"):
        period = np.where(count >= 2, res.t_events[0][rows, last] - res.t_events[0][rows, last - 1],
                          np.nan)
    return period, res


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=2000, help="number of μ values")
    parser.add_argument("--backend", default="auto")
    parser.add_argument("--mu-max", type=float, default=10.0)
    parser.add_argument("--out", default="vanderpol_period.png")
    args = parser.parse_args(argv)

    mu = np.linspace(0.05, args.mu_max, args.n)
    start = time.perf_counter()
    period, res = periods(mu, args.backend)
    elapsed = time.perf_counter() - start
    print(f"{args.n} trajectories on backend {res.backend!r}: {elapsed:.2f} s "
          f"({1e3 * elapsed / args.n:.3f} ms per trajectory); {res.message}")

    plt = pyplot()
    if plt is None:
        return
    fig, ax = plt.subplots(figsize=(7, 4.5))
    ax.plot(mu, period, lw=2, label="gpuivp, from events")
    ax.plot(mu, 2 * np.pi * (1 + mu ** 2 / 16), "k:", label=r"$2\pi(1 + \mu^2/16)$ (small μ)")
    ax.plot(mu, (3 - 2 * np.log(2)) * mu, "k--", label=r"$(3 - 2\ln 2)\,\mu$ (large μ)")
    ax.set_xlabel("μ")
    ax.set_ylabel("period")
    ax.set_ylim(0, 1.1 * np.nanmax(period))
    ax.set_title(f"Van der Pol limit-cycle period ({args.n} trajectories, {res.backend})")
    ax.legend()
    fig.tight_layout()
    fig.savefig(args.out, dpi=120)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
