"""CPU benchmark (issue 2): gpuivp's numba and numpy backends side by side
with a loop of scipy's solve_ivp and a hand-written C implementation.

Problem (``reference/problem.py``): Lorenz, sigma = 10, beta = 8/3,
rho = linspace(0, 28, K), y0 = (1, 0, 0), t in [0, 10], RK45, rtol = 1e-6,
atol = 1e-8, final state only.  Every implementation runs scipy's RK45
(same steps, same nfev), so per-trajectory times compare like with like.

Measured, in this order:

* the C reference (``reference/lorenz_rk45.c``, gcc -O3 -fopenmp, all cores,
  no fast-math) on K = ``--k-numba`` trajectories, best of ``--repeats``;
* a plain loop of ``scipy.integrate.solve_ivp`` on ``--scipy-sample``
  trajectories evenly spaced in rho, timed once;
* ``gpuivp.solve_ivp(..., backend="numba")`` on K = ``--k-numba``: the first
  call in this process (compilation included), then the best of
  ``--repeats`` calls, then the best of ``--repeats-small`` calls on 10
  trajectories;
* ``gpuivp.solve_ivp(..., backend="numpy", vectorized=True)`` on
  K = ``--k-numpy``, best of ``--repeats``.

gpuivp's final states and nfev are compared with the C's, and the goals are
checked:  numba within 1.5x of the C (so over 300x faster than the scipy
loop), numpy at least 100x faster than the scipy loop, numba's first call at
most 3 s, a repeat call on 10 trajectories at most 3 ms.

Usage::

    python benchmarks/cpu.py                    # full run
    python benchmarks/cpu.py --quick            # smoke test, small K
    python benchmarks/cpu.py --only-reference   # C and scipy only
    python benchmarks/cpu.py --json figures.json
    python benchmarks/cpu.py --markdown         # + the table of RESULTS.md

Exits with status 1 if gpuivp is unavailable (without ``--only-reference``),
a trajectory fails, or a goal is not met.
"""

import argparse
import dataclasses
import datetime
import json
import os
import platform
import sys
import time
import traceback
from pathlib import Path

import numpy as np
import scipy

BENCHMARKS = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCHMARKS))
# An installed gpuivp wins; otherwise the checkout this script belongs to.
sys.path.append(str(BENCHMARKS.parent))
from reference import build  # noqa: E402
from reference.problem import (  # noqa: E402
    ATOL, BETA, RTOL, SIGMA, T_SPAN, Y0, final_state_diffs, lorenz, rho_sweep,
    solve_scipy)

K_SMALL = 10  # trajectories in the "small repeat call"

#: (name, description, figure key, comparison, threshold)
GOALS = [
    ("numba_vs_c", "numba per trajectory <= 1.5x the C", "numba_over_c", "<=", 1.5),
    ("numba_vs_scipy", "numba >= 300x faster than the scipy loop",
     "numba_speedup", ">=", 300.0),
    ("numpy_vs_scipy", "numpy >= 100x faster than the scipy loop",
     "numpy_speedup", ">=", 100.0),
    ("numba_first_call", "numba first call (compile included) <= 3 s",
     "numba_first_call_s", "<=", 3.0),
    ("numba_small_call", f"numba repeat call on {K_SMALL} trajectories <= 3 ms",
     "numba_small_call_ms", "<=", 3.0),
]


def benchmark_parser(doc):
    """A benchmark script's parser, described by its docstring's first paragraph."""
    return argparse.ArgumentParser(description=doc.split("\n\n")[0],
                                   formatter_class=argparse.RawDescriptionHelpFormatter)


def add_sample_options(p, k_numba_help, scipy_default, repeats_help):
    """``--k-numba``, ``--scipy-sample`` and ``--repeats`` (shared with ``large.py``)."""
    p.add_argument("--k-numba", type=int, default=None, help=k_numba_help)
    p.add_argument("--scipy-sample", type=int, default=None,
                   help=f"trajectories in the scipy loop (default {scipy_default})")
    p.add_argument("--repeats", type=int, default=3, help=repeats_help)


def add_output_options(p, tables="table"):
    """``--json`` and ``--markdown`` (see :func:`write_outputs`)."""
    p.add_argument("--json", metavar="PATH", help="also write the figures as JSON")
    p.add_argument("--markdown", action="store_true",
                   help=f"also print the {tables} of benchmarks/RESULTS.md")


def write_outputs(args, fig, markdown):
    """Print ``markdown(fig)`` (``--markdown``) and write ``fig`` as JSON (``--json``)."""
    if args.markdown:
        print("\n" + markdown(fig))
    if args.json:
        Path(args.json).write_text(json.dumps(fig, indent=2) + "\n")
        print(f"\nfigures written to {args.json}")


def parse_args(argv=None):
    """Command-line options; ``--quick`` shrinks the defaults."""
    p = benchmark_parser(__doc__)
    add_sample_options(p, "trajectories for numba and the C (default 20000)", 50,
                       "calls on the full ensembles; the best counts (default 3)")
    p.add_argument("--k-numpy", type=int, default=None,
                   help="trajectories for numpy (default 10000)")
    p.add_argument("--repeats-small", type=int, default=20,
                   help=f"calls on {K_SMALL} trajectories; the best counts (default 20)")
    p.add_argument("--quick", action="store_true",
                   help="smoke test: K = 500 / 200, scipy sample 5")
    p.add_argument("--only-reference", action="store_true",
                   help="measure the C and the scipy loop only")
    add_output_options(p)
    args = p.parse_args(argv)
    defaults = (500, 200, 5) if args.quick else (20_000, 10_000, 50)
    for name, default in zip(("k_numba", "k_numpy", "scipy_sample"), defaults):
        if getattr(args, name) is None:
            setattr(args, name, default)
    return args


@dataclasses.dataclass
class Timing:
    """Best wall and CPU times of repeated calls, in seconds.

    The CPU time is the process's, all threads together: on a machine shared
    with other work it stays near its uncontended value while the wall time
    grows, which tells contention from a slow implementation.
    """

    wall: float = np.inf
    cpu: float = np.inf


def timed(fn, repeats=1):
    """Time ``repeats`` calls of ``fn()``.

    Returns
    -------
    timing : Timing
        The best wall time and the best CPU time (each over the calls).
    result : object
        What the last call returned.
    """
    timing = Timing()
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        result = fn()
        timing.wall = min(timing.wall, time.perf_counter() - wall)
        timing.cpu = min(timing.cpu, time.process_time() - cpu)
    return timing, result


def cpu_model():
    """The CPU's model name, as ``lscpu`` prints it."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def agreement(y_final, nfev, y_ref, nfev_ref):
    """How a result agrees with the reference's, trajectory by trajectory.

    Returns
    -------
    dict
        ``max_rel_diff`` (final states larger than atol), ``max_diff_over_atol``
        (final states below atol, see ``final_state_diffs``) and
        ``nfev_equal`` (fraction of trajectories with the reference's nfev).
    """
    rel, below = final_state_diffs(np.asarray(y_final), y_ref)
    return {"max_rel_diff": rel, "max_diff_over_atol": below,
            "nfev_equal": float(np.mean(np.asarray(nfev) == nfev_ref))}


def summary(k, timing, status, nfev, **extra):
    """Figures of one measured implementation, per-trajectory times in µs."""
    status = np.asarray(status)
    return {"k": int(k), "seconds": timing.wall,
            "per_traj_us": timing.wall / k * 1e6,
            "cpu_per_traj_us": timing.cpu / k * 1e6,
            "failed": int(np.count_nonzero(status != 0)),
            "mean_nfev": float(np.mean(nfev)), **extra}


def bench_reference(k, repeats):
    """The C reference on ``rho_sweep(k)``: figures and its results.

    The first call (library load, thread start) is not timed.
    """
    solve = build.load()
    rho = rho_sweep(k)
    solve(rho[:64], *T_SPAN, RTOL, ATOL)
    timing, result = timed(lambda: solve(rho, *T_SPAN, RTOL, ATOL), repeats)
    return summary(k, timing, result[1], result[2]), result, solve


def bench_scipy(rho, reference):
    """A loop of scipy's solve_ivp over ``rho``, compared with the C's results.

    Parameters
    ----------
    rho : ndarray
        The sample of parameters.
    reference : tuple
        The C's ``(y_final, status, nfev)`` for the same ``rho``.
    """
    timing, (y, status, nfev) = timed(lambda: solve_scipy(rho))
    return summary(rho.size, timing, status, nfev,
                   vs_c=agreement(y, nfev, reference[0], reference[2]))


def gpuivp_call(solve_ivp, backend, rho):
    """One ensemble call of gpuivp on the benchmark problem."""
    y0 = np.asarray(Y0, dtype=np.float64)[:, None]  # (3, 1): shared by all
    return solve_ivp(lorenz, T_SPAN, y0, method="RK45", rtol=RTOL, atol=ATOL,
                     backend=backend, vectorized=backend == "numpy",
                     args=(SIGMA, rho, BETA))


def bench_gpuivp(solve_ivp, backend, k, repeats, reference, first_call=False,
                 repeats_small=0):
    """A gpuivp backend on ``rho_sweep(k)``, compared with the C's results.

    Parameters
    ----------
    solve_ivp : callable
        ``gpuivp.solve_ivp``.
    backend : str
    k, repeats : int
    reference : tuple
        The C's ``(y_final, status, nfev)`` for ``rho_sweep(k)``.
    first_call : bool, optional
        Time the first call separately (it compiles) instead of discarding it.
    repeats_small : int, optional
        If positive, also time the best of so many calls on ``K_SMALL``
        trajectories (after one untimed call).
    """
    rho = rho_sweep(k)
    first, _ = timed(lambda: gpuivp_call(solve_ivp, backend, rho))
    timing, res = timed(lambda: gpuivp_call(solve_ivp, backend, rho), repeats)
    extra = {"vs_c": agreement(res.y_final, res.nfev, reference[0], reference[2])}
    if first_call:
        extra["first_call_s"] = first.wall
    if repeats_small > 0:
        small = rho_sweep(K_SMALL)
        gpuivp_call(solve_ivp, backend, small)
        extra["small_call_ms"] = 1e3 * timed(
            lambda: gpuivp_call(solve_ivp, backend, small), repeats_small)[0].wall
    return summary(k, timing, res.status, res.nfev, **extra)


def check_goals(fig):
    """Evaluate ``GOALS`` on the figures; ``met`` is None if not measured."""
    impl = fig["results"]
    c_us = impl["c"]["per_traj_us"]
    scipy_us = impl["scipy"]["per_traj_us"]
    values = {}
    if "numba" in impl:
        numba = impl["numba"]
        values.update(numba_over_c=numba["per_traj_us"] / c_us,
                      numba_speedup=scipy_us / numba["per_traj_us"],
                      numba_first_call_s=numba["first_call_s"],
                      numba_small_call_ms=numba["small_call_ms"])
    if "numpy" in impl:
        values["numpy_speedup"] = scipy_us / impl["numpy"]["per_traj_us"]
    goals = {}
    for name, text, key, op, threshold in GOALS:
        value = values.get(key)
        met = None if value is None else (value <= threshold if op == "<=" else
                                          value >= threshold)
        goals[name] = {"goal": text, "value": value, "met": met}
    return goals


def _fmt(x, spec):
    return "-" if x is None else format(x, spec)


def report(fig):
    """Print the table of per-trajectory times, the agreement and the goals."""
    impl = fig["results"]
    c_us, scipy_us = impl["c"]["per_traj_us"], impl["scipy"]["per_traj_us"]
    m = fig["machine"]
    print(f"\nLorenz sweep, RK45 rtol={RTOL:g} atol={ATOL:g}, t in {list(T_SPAN)}; "
          f"{m['cpu']}, {m['cores']} cores; {fig['date']}\n")
    print(f"{'implementation':<16}{'K':>7}{'µs/traj':>11}{'CPU µs':>9}{'x C':>8}"
          f"{'vs scipy':>10}{'mean nfev':>11}{'failed':>8}"
          f"{'rel diff vs C':>15}{'nfev = C':>10}")
    names = {"numba": "gpuivp numba", "numpy": "gpuivp numpy",
             "c": "C reference", "scipy": "scipy loop"}
    for key, label in names.items():
        if key not in impl:
            print(f"{label:<16}  not measured: {fig['errors'].get(key, 'skipped')}")
            continue
        r = impl[key]
        vs_c = r.get("vs_c", {})
        print(f"{label:<16}{r['k']:>7}{r['per_traj_us']:>11.2f}"
              f"{r['cpu_per_traj_us']:>9.1f}"
              f"{r['per_traj_us'] / c_us:>8.2f}{scipy_us / r['per_traj_us']:>9.0f}x"
              f"{r['mean_nfev']:>11.1f}{r['failed']:>8}"
              f"{_fmt(vs_c.get('max_rel_diff'), '.1e'):>15}"
              f"{_fmt(vs_c.get('nfev_equal'), '.1%'):>10}")
    if "numba" in impl:
        print(f"\nnumba first call (compile included): {impl['numba']['first_call_s']:.2f} s; "
              f"repeat call on {K_SMALL} trajectories: "
              f"{impl['numba']['small_call_ms']:.2f} ms")
    print("CPU µs: the process's CPU time per trajectory, all threads together.\n"
          "rel diff vs C: max relative difference of final states larger than "
          "atol (states below atol, rho < 1: see the JSON, max_diff_over_atol)")
    load = max(m["load_average_before"], m["load_average_after"])
    if load > 0.5:
        print(f"\nWARNING: the machine was busy (1-min load average up to "
              f"{load:.1f} on {m['cores']} cores): wall times are inflated; "
              "CPU times much less.")
    print(f"\n{'goal':<52}{'value':>10}  met")
    for g in fig["goals"].values():
        met = {True: "yes", False: "NO", None: "n/a"}[g["met"]]
        print(f"{g['goal']:<52}{_fmt(g['value'], '.2f'):>10}  {met}")


def _sig(x):
    """``x`` to 3 significant digits, with thousands separators: 7,550 / 10.8."""
    if x == 0 or not np.isfinite(x):
        return str(x)
    rounded = float(f"{x:.3g}")
    decimals = max(0, 2 - int(np.floor(np.log10(abs(rounded)))))
    return f"{rounded:,.{decimals}f}"


def markdown(fig):
    """The figures as the table of ``benchmarks/RESULTS.md``.

    Returns
    -------
    str
        A markdown table: one row per implementation, then the first and the
        small numba calls, each with its goal.
    """
    impl, goals = fig["results"], fig["goals"]
    c_us, scipy_us = impl["c"]["per_traj_us"], impl["scipy"]["per_traj_us"]

    def met(*names):
        values = [goals[n]["met"] for n in names]
        return "n/a" if None in values else ("yes" if all(values) else "no")

    lines = ["| implementation | K | µs / trajectory | CPU µs / trajectory | × C "
             "| speedup vs scipy loop | mean nfev | goal | met |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    rows = [("numba", "gpuivp `numba`", "≤ 1.5× C, ≥ 300× scipy",
             met("numba_vs_c", "numba_vs_scipy")),
            ("numpy", "gpuivp `numpy`", "≥ 100× scipy", met("numpy_vs_scipy")),
            ("c", "C reference", "—", "—"),
            ("scipy", "scipy loop", "—", "—")]
    for key, label, goal, ok in rows:
        if key not in impl:
            lines.append(f"| {label} | | not measured | | | | | {goal} | n/a |")
            continue
        r = impl[key]
        us = r["per_traj_us"]
        lines.append(f"| {label} | {r['k']:,} | {_sig(us)} | "
                     f"{_sig(r['cpu_per_traj_us'])} | {_sig(us / c_us)} | "
                     f"{_sig(scipy_us / us)}× | {r['mean_nfev']:.1f} | {goal} | {ok} |")
    if "numba" in impl:
        numba = impl["numba"]
        lines += [f"| gpuivp `numba`, first call (compilation included) | "
                  f"{numba['k']:,} | {_sig(numba['first_call_s'])} s | | | | | ≤ 3 s | "
                  f"{met('numba_first_call')} |",
                  f"| gpuivp `numba`, repeat call | {K_SMALL} | "
                  f"{_sig(numba['small_call_ms'])} ms | | | | | ≤ 3 ms | "
                  f"{met('numba_small_call')} |"]
    return "\n".join(lines)


def versions():
    """Versions of what was measured."""
    out = {"python": platform.python_version(), "numpy": np.__version__,
           "scipy": scipy.__version__, "cc": build.compiler_version()}
    for name in ("numba", "gpuivp"):
        try:
            module = __import__(name)
        except ImportError:
            out[name] = None
        else:
            out[name] = getattr(module, "__version__", "unknown")
            if name == "gpuivp":
                out["gpuivp_path"] = str(Path(module.__file__).parent)
    return out


def bench_backends(args, fig, c_result, solve_c):
    """Measure gpuivp's numba and numpy backends into ``fig``.

    A backend that raises is recorded in ``fig["errors"]`` (traceback on
    stderr) and the others still run.
    """
    try:
        t = time.perf_counter()
        from gpuivp import solve_ivp
        fig["gpuivp_import_s"] = time.perf_counter() - t
    except ImportError as exc:
        fig["errors"]["numba"] = fig["errors"]["numpy"] = f"{type(exc).__name__}: {exc}"
        return
    runs = {
        "numba": (f"gpuivp numba, K={args.k_numba} (first call compiles)",
                  lambda: bench_gpuivp(solve_ivp, "numba", args.k_numba,
                                       args.repeats, c_result, first_call=True,
                                       repeats_small=args.repeats_small)),
        "numpy": (f"gpuivp numpy, K={args.k_numpy}",
                  lambda: bench_gpuivp(
                      solve_ivp, "numpy", args.k_numpy, args.repeats,
                      solve_c(rho_sweep(args.k_numpy), *T_SPAN, RTOL, ATOL))),
    }
    for name, (what, run) in runs.items():
        print(f"{what} ...", flush=True)
        try:
            fig["results"][name] = run()
        except Exception as exc:  # report it, measure the rest
            traceback.print_exc()
            fig["errors"][name] = f"{type(exc).__name__}: {exc}"


def main(argv=None):
    """Run the benchmark; return the process exit status."""
    args = parse_args(argv)
    fig = {"date": datetime.date.today().isoformat(),
           "machine": {"cpu": cpu_model(), "cores": os.cpu_count(),
                       "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
                       "load_average_before": os.getloadavg()[0]},
           "versions": versions(), "args": vars(args), "results": {},
           "errors": {}}
    impl = fig["results"]

    print(f"C reference, K={args.k_numba} ...", flush=True)
    impl["c"], c_result, solve_c = bench_reference(args.k_numba, args.repeats)

    print(f"scipy loop, sample of {args.scipy_sample} ...", flush=True)
    idx = np.unique(np.linspace(0, args.k_numba - 1, args.scipy_sample).round().astype(int))
    impl["scipy"] = bench_scipy(rho_sweep(args.k_numba)[idx],
                                tuple(a[..., idx] for a in c_result))

    if not args.only_reference:
        bench_backends(args, fig, c_result, solve_c)

    fig["machine"]["load_average_after"] = os.getloadavg()[0]
    fig["goals"] = check_goals(fig)
    report(fig)
    write_outputs(args, fig, markdown)
    ok = not fig["errors"] and all(r["failed"] == 0 for r in impl.values())
    ok &= all(g["met"] is not False for g in fig["goals"].values())
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
