"""Lane engine benchmark (issue 22): the numba backend's lane engine against its scalar
(per-trajectory) engine, the scalar C reference and the C lane reference
(``reference/lorenz_lanes.c``: the same algorithm in 16 refilled lanes, bit-identical), side
by side in one process, on the trajectories in rho order and shuffled.

Problem: ``benchmarks/cpu.py``'s (Lorenz, rho = linspace(0, 28, K), t in [0, 10], RK45,
rtol = 1e-6, atol = 1e-8, final state only). Every implementation takes scipy's steps.

Measured: the first call of each engine in this process (compilation included; lanes
first, so its figure also holds numba's warm-up), then ``--repeats`` rounds, each timing
every variant once (round robin); the table shows the best process CPU time (all threads; the ratios use it: it is
less sensitive to other load on the machine) and the best wall time per trajectory.
The lane engine's results are compared with the scalar engine's (bit-identical: final
states, nfev, status; with ``FAST_POW`` the largest relative difference of final states and
the share of equal nfev) and the goals checked: lanes >= 3x the scalar C, within 1.3x of
the C lane reference, shuffled within 10 % of sorted.

Usage::

    python benchmarks/lanes.py            # K = 20000, 5 rounds
    python benchmarks/lanes.py --quick    # K = 2000, 3 rounds
    python benchmarks/lanes.py --json figures.json
    python benchmarks/lanes.py --outputs  # t_eval, events, fixed steps, a 6-equation model

``--outputs``: the lane engine against the per-trajectory engine (same process, round robin,
best process CPU time) where the output is more than the final state: the Lorenz problem
with ``t_eval`` of 11, 101, 301 and 1001 points, with one event function (x = 1, counted),
both, at fixed steps (RK4, dt = 0.01), a 6-equation model (two Lorenz systems coupled
through x, ``eps = 0.5``) with 11 ``t_eval`` points and one event, and Lorenz in float32
(rtol 1e-4, atol 1e-6; final state, and with 11 ``t_eval`` points and one event); each
checked bit-identical (final states, nfev, t_eval output, event times). ``--only TEXT``
runs the cases whose name holds TEXT (e.g. ``--only float32``).
"""
import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

BENCHMARKS = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCHMARKS))
sys.path.append(str(BENCHMARKS.parent))
from reference import build  # noqa: E402
from reference.problem import ATOL, BETA, RTOL, SIGMA, T_SPAN, Y0, lorenz, rho_sweep  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--k", type=int, default=None)
    p.add_argument("--repeats", type=int, default=None)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--json", default=None)
    p.add_argument("--outputs", action="store_true", help="t_eval, events, fixed steps")
    p.add_argument("--only", default="", help="with --outputs: the cases whose name holds this")
    a = p.parse_args(argv)
    if a.outputs:
        return outputs(a.k or (2000 if a.quick else 20000), a.repeats or 3, a.only)
    k = a.k or (2000 if a.quick else 20000)
    repeats = a.repeats or (3 if a.quick else 5)

    import gpuivp
    import gpuivp.backends.numba as nb

    rho = rho_sweep(k)
    perm = np.random.default_rng(0).permutation(k)
    y0 = np.tile(np.array(Y0, float)[:, None], (1, k))
    solve_c = build.load()
    solve_cl = build.load(lanes=True)

    def gp(engine, r, fast_pow=False):
        nb.ENGINE = engine
        nb.FAST_POW = fast_pow
        return gpuivp.solve_ivp(lorenz, T_SPAN, y0[:, :r.size], args=(SIGMA, r, BETA), method="RK45",
                                rtol=RTOL, atol=ATOL, backend="numba")

    fig = {"k": k, "repeats": repeats, "width": __import__("gpuivp.engines.lanes",
                                                           fromlist=["WIDTH"]).WIDTH}
    for eng in ("lanes", "scalar"):
        t = time.perf_counter()
        gp(eng, rho[:64])
        fig[f"first_call_s_{eng}"] = time.perf_counter() - t
    gp("lanes", rho[:64], True)

    variants = {
        "C scalar reference": lambda: solve_c(rho, *T_SPAN, RTOL, ATOL),
        "C scalar reference, shuffled": lambda: solve_c(rho[perm], *T_SPAN, RTOL, ATOL),
        "C lane reference": lambda: solve_cl(rho, *T_SPAN, RTOL, ATOL),
        "C lane reference, shuffled": lambda: solve_cl(rho[perm], *T_SPAN, RTOL, ATOL),
        "numba scalar engine": lambda: gp("scalar", rho),
        "numba scalar engine, shuffled": lambda: gp("scalar", rho[perm]),
        "numba lane engine": lambda: gp("lanes", rho),
        "numba lane engine, shuffled": lambda: gp("lanes", rho[perm]),
        "numba lane engine, FAST_POW": lambda: gp("lanes", rho, True),
    }
    best = {name: np.inf for name in variants}
    best_cpu = dict(best)
    out = {}
    for _ in range(repeats):
        for name, fn in variants.items():
            t, c = time.perf_counter(), time.process_time()
            out[name] = fn()
            best[name] = min(best[name], time.perf_counter() - t)
            best_cpu[name] = min(best_cpu[name], time.process_time() - c)
    fig["us_per_traj"] = {n: 1e6 * b / k for n, b in best.items()}
    fig["cpu_us_per_traj"] = {n: 1e6 * b / k for n, b in best_cpu.items()}

    ref, lan, lsh = (out["numba scalar engine"], out["numba lane engine"],
                     out["numba lane engine, shuffled"])
    ident = (np.array_equal(ref.y_final, lan.y_final) and np.array_equal(ref.nfev, lan.nfev)
             and np.array_equal(ref.status, lan.status)
             and np.array_equal(ref.y_final[:, perm], lsh.y_final)
             and np.array_equal(ref.nfev[perm], lsh.nfev))
    c_y, c_status, c_nfev = out["C scalar reference"]
    fig["lanes_bit_identical_to_scalar_engine"] = bool(ident)
    fig["lanes_bit_identical_to_c"] = bool(np.array_equal(c_y, lan.y_final)
                                           and np.array_equal(c_nfev, lan.nfev))
    cl_y, _, cl_nfev = out["C lane reference"]
    fig["c_lanes_bit_identical_to_c"] = bool(np.array_equal(c_y, cl_y)
                                             and np.array_equal(c_nfev, cl_nfev))
    fp = out["numba lane engine, FAST_POW"]
    big = np.linalg.norm(ref.y_final, axis=0) > ATOL
    fig["fast_pow_max_rel_diff"] = float(np.max(np.abs(fp.y_final - ref.y_final)[:, big]
                                                / np.abs(ref.y_final[:, big]).max(axis=0)))
    fig["fast_pow_nfev_equal_fraction"] = float(np.mean(fp.nfev == ref.nfev))
    us = fig["cpu_us_per_traj"]  # process CPU time: less sensitive to other load
    fig["lanes_speedup_vs_c"] = us["C scalar reference"] / us["numba lane engine"]
    fig["lanes_speedup_vs_scalar_engine"] = us["numba scalar engine"] / us["numba lane engine"]
    fig["lanes_over_c_lanes"] = us["numba lane engine"] / us["C lane reference"]
    fig["lanes_shuffled_over_sorted"] = (us["numba lane engine, shuffled"]
                                         / us["numba lane engine"])
    print(f"K = {k}, W = {fig['width']}, best of {repeats} rounds, us per trajectory: "
          f"process CPU time (all threads), wall time")
    for name, v in us.items():
        print(f"  {name:34s} {v:8.2f} {fig['us_per_traj'][name]:8.2f}")
    fig["fast_pow_speedup_vs_c"] = us["C scalar reference"] / us["numba lane engine, FAST_POW"]
    for key in ("first_call_s_lanes", "first_call_s_scalar", "lanes_speedup_vs_c",
                "fast_pow_speedup_vs_c", "fast_pow_max_rel_diff", "fast_pow_nfev_equal_fraction",
                "lanes_speedup_vs_scalar_engine", "lanes_shuffled_over_sorted",
                "lanes_bit_identical_to_scalar_engine", "lanes_bit_identical_to_c",
                "lanes_over_c_lanes", "c_lanes_bit_identical_to_c"):
        v = fig[key]
        print(f"  {key:38s} {v:.3g}" if isinstance(v, float) else f"  {key:38s} {v}")
    goals = {"lanes >= 3x the scalar C": fig["lanes_speedup_vs_c"] >= 3.0,
             "shuffled within 10% of sorted": fig["lanes_shuffled_over_sorted"] <= 1.10,
             "within 1.3x of the C lane reference": fig["lanes_over_c_lanes"] <= 1.3,
             "bit-identical to the scalar engine": ident}
    for g, ok in goals.items():
        print(f"  goal: {g}: {'met' if ok else 'NOT met'}")
    fig["goals"] = goals
    if a.json:
        Path(a.json).write_text(json.dumps(fig, indent=1))
    return 0 if ident else 1


def lorenz1(t, y, rho):
    return (SIGMA * (y[1] - y[0]), y[0] * (rho - y[2]) - y[1], y[0] * y[1] - BETA * y[2])


def cross(t, y, rho):
    return y[0] - 1.0


def coupled(t, y, rho):
    """Two Lorenz systems coupled through x (6 equations)."""
    return (SIGMA * (y[1] - y[0]) + 0.5 * (y[3] - y[0]), y[0] * (rho - y[2]) - y[1],
            y[0] * y[1] - BETA * y[2], SIGMA * (y[4] - y[3]) + 0.5 * (y[0] - y[3]),
            y[3] * (rho - y[5]) - y[4], y[3] * y[4] - BETA * y[5])


def outputs(k, repeats, only=""):
    """Lane engine vs per-trajectory engine beyond the final state (``--outputs``)."""
    import gpuivp
    import gpuivp.backends.numba as nb

    rho = rho_sweep(k)
    y3 = np.tile(np.array(Y0, float)[:, None], (1, k))
    y6 = np.tile(np.array([1.0, 0.0, 0.0, 0.5, 0.0, 0.0])[:, None], (1, k))
    cases = {f"Lorenz, t_eval {m}": (lorenz1, y3, dict(t_eval=np.linspace(*T_SPAN, m)))
             for m in (11, 101, 301, 1001)}
    cases["Lorenz, 1 event"] = (lorenz1, y3, dict(events=[cross]))
    cases["Lorenz, t_eval 11 + 1 event"] = (lorenz1, y3, dict(t_eval=np.linspace(*T_SPAN, 11),
                                                             events=[cross]))
    cases["Lorenz, RK4 dt = 0.01"] = (lorenz1, y3, dict(method="RK4", dt=0.01))
    cases["6 equations, t_eval 11 + 1 event"] = (coupled, y6, dict(
        t_eval=np.linspace(*T_SPAN, 11), events=[cross]))
    f32 = dict(dtype=np.float32, rtol=1e-4, atol=1e-6, args=(rho.astype(np.float32),))
    cases["Lorenz float32, rtol 1e-4"] = (lorenz1, y3, f32)
    cases["Lorenz float32, t_eval 11 + 1 event"] = (lorenz1, y3, dict(
        f32, t_eval=np.linspace(*T_SPAN, 11), events=[cross]))
    cases = {name: case for name, case in cases.items() if only in name}
    print(f"K = {k}, best of {repeats} rounds, CPU us per trajectory (process time)")
    for name, (fun, y0, kw) in cases.items():
        kw = {"method": "RK45", "rtol": RTOL, "atol": ATOL, "args": (rho,), **kw}
        args = kw.pop("args")
        best, first, res = {}, {}, {}
        for eng in ("lanes", "scalar"):
            nb.ENGINE = eng
            c = time.process_time()
            gpuivp.solve_ivp(fun, T_SPAN, y0[:, :64], args=(args[0][:64],), backend="numba",
                             **kw)
            first[eng] = time.process_time() - c
        for _ in range(repeats):
            for eng in ("lanes", "scalar"):
                nb.ENGINE = eng
                c = time.process_time()
                res[eng] = gpuivp.solve_ivp(fun, T_SPAN, y0, args=args, backend="numba", **kw)
                best[eng] = min(best.get(eng, np.inf), time.process_time() - c)
        a, b = res["lanes"], res["scalar"]
        same = (np.array_equal(a.y_final, b.y_final, equal_nan=True)
                and np.array_equal(a.nfev, b.nfev)
                and (a.y is None or np.array_equal(a.y, b.y, equal_nan=True))
                and (a.t_events is None or all(
                    np.array_equal(u, v, equal_nan=True) for u, v in zip(a.t_events,
                                                                         b.t_events))))
        print(f"  {name:34s} lanes {1e6 * best['lanes'] / k:7.2f}  per-trajectory "
              f"{1e6 * best['scalar'] / k:7.2f}  ratio {best['scalar'] / best['lanes']:5.2f}  "
              f"first call (CPU s) {first['lanes']:5.1f} / {first['scalar']:5.1f}  "
              f"bit-identical {same}", flush=True)
    nb.ENGINE = "auto"
    return 0


if __name__ == "__main__":
    sys.exit(main())
