"""A bouncing ball over a grid of drop height × restitution, with events that change the state.

    h'' = -g;  at h = 0 falling:  v -> -e v

An event with ``affect`` reverses and damps the velocity at every impact; once the rebound
speed ``e |v|`` would fall below ``v_min`` the affect stops the ball (a third component, 1 while
it moves, becomes 0 and switches gravity off). The number of impacts and the time to rest are
compared with the closed form: impact speeds ``e^(k-1) sqrt(2 g h)``, arcs of ``2 e^k v0 / g``.

Run::

    python examples/bouncing_ball.py                 # 10,000 balls (100 x 100) on the best backend
    python examples/bouncing_ball.py --n 400 --backend numpy --out ball.png
"""
import argparse
import time

import numpy as np

from gpuivp import solve_ivp
from gpuivp._demo import pyplot

G = 9.81
V_MIN = 0.5  # rebound speed below which the ball is at rest


def ball(t, y, e):
    return (y[1] * y[2], -G * y[2], 0.0 * y[2])


def ground(t, y, e):
    return y[0] + (1.0 - y[2])  # no more impacts once the ball rests


def bounce(t, y, e):
    moving = y[2] * (e * np.abs(y[1]) >= V_MIN)
    return (0.0 * y[0], -e * y[1] * moving, moving)


ground.direction = -1
ground.affect = bounce


def closed_form(h, e):
    """(impacts, time to rest) of a ball dropped from ``h`` with restitution ``e``."""
    v0 = np.sqrt(2 * G * h)
    k = np.floor(np.log(V_MIN / v0) / np.log(e)) + 1   # first k with e^k v0 < v_min
    k = np.maximum(k, 1)
    arcs = 2 * v0 / G * (e - e ** k) / (1 - e)         # sum_{j=1}^{k-1} 2 e^j v0 / g
    return k, np.sqrt(2 * h / G) + arcs


def simulate(h, e, backend="auto"):
    k_ref, t_ref = closed_form(h, e)
    t_end = 1.2 * float(np.max(t_ref)) + 1.0
    y0 = np.stack([h, np.zeros_like(h), np.ones_like(h)])
    res = solve_ivp(ball, (0.0, t_end), y0, args=(e,), events=ground,
                    max_events=int(np.max(k_ref)) + 2, backend=backend, vectorized=True,
                    rtol=1e-9, atol=1e-9)
    count = res.n_events[0]
    rows = np.arange(len(h))
    t_rest = res.t_events[0][rows, np.minimum(count, res.t_events[0].shape[1]) - 1]
    return count, t_rest, k_ref, t_ref, res


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=10_000, help="number of balls (a square grid)")
    parser.add_argument("--backend", default="auto")
    parser.add_argument("--out", default="bouncing_ball.png")
    args = parser.parse_args(argv)

    side = max(2, int(round(np.sqrt(args.n))))
    hh, ee = np.meshgrid(np.linspace(0.5, 10.0, side), np.linspace(0.3, 0.9, side))
    h, e = hh.ravel(), ee.ravel()
    start = time.perf_counter()
    count, t_rest, k_ref, t_ref, res = simulate(h, e, args.backend)
    elapsed = time.perf_counter() - start
    agree = np.mean(count == k_ref)
    err = np.max(np.abs(t_rest - t_ref)[count == k_ref])
    print(f"{h.size} balls on backend {res.backend!r}: {elapsed:.2f} s; impacts as the closed "
          f"form for {100 * agree:.2f}% of the balls, time to rest within {err:.1e} s; "
          f"{res.message}")

    plt = pyplot()
    if plt is None:
        return
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4.5))
    im = a1.imshow(count.reshape(side, side), origin="lower", aspect="auto", cmap="viridis",
                   extent=(hh.min(), hh.max(), ee.min(), ee.max()))
    a1.contour(hh, ee, k_ref.reshape(side, side), levels=np.arange(0.5, k_ref.max() + 1),
               colors="w", linewidths=0.5)
    fig.colorbar(im, ax=a1, label="impacts before rest")
    a1.set_xlabel("drop height h (m)")
    a1.set_ylabel("restitution e")
    a1.set_title("impacts (white: closed-form steps)")
    for frac in (0.0, 0.5, 1.0):
        j = int(frac * (side - 1))
        a2.plot(ee[:, j], t_rest.reshape(side, side)[:, j], lw=2,
                label=f"h = {hh[0, j]:.1f} m, gpuivp")
        a2.plot(ee[:, j], t_ref.reshape(side, side)[:, j], "k:", lw=1)
    a2.plot([], [], "k:", label="closed form")
    a2.set_xlabel("restitution e")
    a2.set_ylabel("time to rest (s)")
    a2.set_title(f"Bouncing ball ({h.size} trajectories, {res.backend})")
    a2.legend()
    fig.tight_layout()
    fig.savefig(args.out, dpi=120)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
