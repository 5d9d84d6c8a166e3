"""Leaky integrate-and-fire neuron: the f–I curve, from events that reset the state.

    τ v' = -v + I;  at v = 1 rising:  v -> 0

An event with ``affect`` resets the membrane potential at every spike. For a constant input
``I > 1`` the neuron fires every ``T = τ ln(I / (I - 1))`` (none for ``I <= 1``); starting from
``v = 0``, a run of length ``t_end`` holds exactly ``floor(t_end / T)`` spikes, which the
sweep over ``I`` is compared with.

Run::

    python examples/lif_fi_curve.py                  # 2,000 input currents on the best backend
    python examples/lif_fi_curve.py --n 200 --backend numpy --out lif.png
"""
import argparse
import time

import numpy as np

from gpuivp import solve_ivp
from gpuivp._demo import pyplot

TAU = 1.0


def membrane(t, y, current):
    return ((current - y[0]) / TAU,)


def spike(t, y, current):
    return y[0] - 1.0


spike.direction = 1
spike.affect = lambda t, y, current: (0.0 * y[0],)


def closed_form_period(current):
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(current > 1, TAU * np.log(current / (current - 1)), np.inf)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=2000, help="number of input currents")
    parser.add_argument("--backend", default="auto")
    parser.add_argument("--t-end", type=float, default=50.0)
    parser.add_argument("--out", default="lif_fi_curve.png")
    args = parser.parse_args(argv)

    current = np.linspace(0.0, 5.0, args.n)
    start = time.perf_counter()
    res = solve_ivp(membrane, (0.0, args.t_end), np.zeros((1, args.n)), args=(current,),
                    events=spike, max_events=256, backend=args.backend, vectorized=True,
                    rtol=1e-9, atol=1e-10)
    elapsed = time.perf_counter() - start
    spikes = res.n_events[0]
    period = closed_form_period(current)
    expected = np.floor(args.t_end / period)
    # Points where t_end is within the tolerance of a spike can go either way.
    edge = np.abs(args.t_end / period - np.round(args.t_end / period)) < 1e-6
    agree = np.mean((spikes == expected)[~edge])
    print(f"{args.n} neurons on backend {res.backend!r}: {elapsed:.2f} s; spike counts as "
          f"the closed form for {100 * agree:.2f}%; {res.message}")

    plt = pyplot()
    if plt is None:
        return
    fig, ax = plt.subplots(figsize=(7, 4.5))
    ax.plot(current, spikes / args.t_end, lw=2, label=f"gpuivp: spikes / {args.t_end:g} τ")
    ax.plot(current, np.where(np.isfinite(period), 1 / period, 0.0), "k:",
            label=r"$1 / (\tau \ln(I / (I - 1)))$")
    ax.set_xlabel("input current I (threshold 1)")
    ax.set_ylabel("firing rate (1/τ)")
    ax.set_title(f"Leaky integrate-and-fire f–I curve ({args.n} trajectories, {res.backend})")
    ax.legend()
    fig.tight_layout()
    fig.savefig(args.out, dpi=120)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
