"""Events that change the state: a bouncing-ball study on ``numba`` against the scipy restart
loop (issue 19: at least 300x faster).

The study (examples/bouncing_ball.py): 100,000 balls over a grid of drop height (0.5-10 m) x
restitution (0.3-0.9), RK45, rtol = atol = 1e-9; an event at h = 0 (falling) whose ``affect``
reverses and damps the velocity; below a rebound speed of 0.5 m/s the ball stops. The scipy
reference restarts ``scipy.integrate.solve_ivp`` at every impact with the affected state, in a
plain Python loop, on an evenly spaced sample of the trajectories; its ``nfev`` is checked
against gpuivp's for the same trajectories. Per-trajectory times side by side in one run.

Run::

    python benchmarks/events.py                    # --k 100000 --sample 50 --repeats 2
"""
import argparse
import os
import sys
import time

import numpy as np
import scipy.integrate

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "examples"))
import bouncing_ball as B  # noqa: E402

from gpuivp import solve_ivp  # noqa: E402

RTOL = ATOL = 1e-9


def grid(k):
    side = int(round(np.sqrt(k)))
    hh, ee = np.meshgrid(np.linspace(0.5, 10.0, side), np.linspace(0.3, 0.9, side))
    return hh.ravel(), ee.ravel()


def scipy_restart_loop(h, e, t_end):
    """One ball: solve_ivp restarted at each impact from the affected state."""
    def ground(t, y, e):
        return B.ground(t, y, e)
    ground.direction, ground.terminal = -1, True
    t, y, nfev, impacts = 0.0, np.array([h, 0.0, 1.0]), 0, 0
    while True:
        res = scipy.integrate.solve_ivp(B.ball, (t, t_end), y, events=ground, args=(e,),
                                        rtol=RTOL, atol=ATOL)
        nfev += res.nfev
        if res.status != 1:
            return nfev, impacts
        impacts += 1
        t, y = res.t_events[0][0], np.asarray(B.bounce(t, res.y_events[0][0], e), float)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--k", type=int, default=100_000)
    parser.add_argument("--sample", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args(argv)
    h, e = grid(args.k)
    k = h.size
    _, t_ref = B.closed_form(h, e)
    t_end = 1.2 * float(np.max(t_ref)) + 1.0
    y0 = np.stack([h, np.zeros(k), np.ones(k)])
    kw = dict(args=(e,), events=B.ground, max_events=40, backend="numba", rtol=RTOL, atol=ATOL)
    start = time.perf_counter()
    solve_ivp(B.ball, (0.0, t_end), y0[:, :10], **dict(kw, args=(e[:10],)))
    first = time.perf_counter() - start
    best = best_cpu = np.inf
    for _ in range(args.repeats):
        c0, w0 = time.process_time(), time.perf_counter()
        res = solve_ivp(B.ball, (0.0, t_end), y0, **kw)
        best = min(best, time.perf_counter() - w0)
        best_cpu = min(best_cpu, time.process_time() - c0)
    idx = np.linspace(0, k - 1, args.sample).astype(int)
    w0 = time.perf_counter()
    ref = [scipy_restart_loop(h[i], e[i], t_end) for i in idx]
    t_scipy = (time.perf_counter() - w0) / len(idx)
    nfev_ok = all(int(res.nfev[i]) == r[0] and int(res.n_events[0][i]) == r[1]
                  for i, r in zip(idx, ref))
    us = 1e6 * best / k
    load = os.getloadavg()[0]
    print(f"| implementation | K | µs / trajectory | CPU µs / trajectory | speedup vs scipy loop "
          f"| mean nfev |")
    print("| --- | --- | --- | --- | --- | --- |")
    print(f"| gpuivp `numba` (events with affect) | {k:,} | {us:.1f} | {1e6 * best_cpu / k:.1f} "
          f"| {1e6 * t_scipy / us:.0f}x | {np.mean(res.nfev):.0f} |")
    print(f"| scipy restart loop | sample of {len(idx)} | {1e6 * t_scipy:.0f} | | 1x | "
          f"{np.mean([r[0] for r in ref]):.0f} |")
    print(f"\nfirst numba call (compile, 10 trajectories): {first:.1f} s; nfev and impacts equal "
          f"on the sample: {nfev_ok}; {res.message}; 1-min load average {load:.1f}")
    return 0 if nfev_ok else 1


if __name__ == "__main__":
    sys.exit(main())
