"""Large-systems benchmark (issue 17): gpuivp on Lorenz-96 (n = 40) and Kuramoto
(N = 50) beside a hand-written C reference and a scipy loop, in one run.

Problems (``reference/large_problem.py``): Lorenz-96, F = linspace(2, 10, K),
t in [0, 5]; Kuramoto, all-to-all, Kc = linspace(0, 4, K), t in [0, 10];
RK45, rtol = 1e-6, atol = 1e-8, K = 2,000, each once for the final state only
and once with 101 ``t_eval`` points. Every implementation runs scipy's RK45
(same steps, same nfev), so per-trajectory times compare like with like.

Measured per model and output, side by side:

* ``numba``: ``gpuivp.solve_ivp(..., backend="numba")``; its first call in this
  process (compilation included) is timed on its own;
* with ``--inplace``, ``numba`` again with the right-hand sides written in
  place (loops over the components, ``inplace=True``), where gpuivp has it;
* ``numpy``: ``backend="numpy", vectorized=True`` (the same function on (n, m)
  arrays);
* ``C``: ``reference/large_rk45.c`` on ``reference/rk45.h`` (scipy's RK45 by
  hand, gcc -O3 -fopenmp, no fast-math, OpenMP over trajectories on all cores:
  set ``OMP_NUM_THREADS`` to change);
* ``scipy``: a loop of ``scipy.integrate.solve_ivp`` on ``--scipy-sample``
  trajectories evenly spaced in the parameter, timed once.

numba, numpy and the C are timed in ``--repeats`` interleaved rounds (one call
of each per round) and the best call counts: the machine is shared, and the
interleaving spreads other work over all three. Checks: the C's and gpuivp's
nfev equal scipy's trajectory by trajectory on the sample and gpuivp's nfev equal
the C's on all K; the largest relative difference of final states and t_eval
values to the C's is reported, not checked: on Lorenz-96's chaotic trajectories
a last-bit difference (BLAS with FMA in scipy, NumPy's pairwise sums) grows to
~1e-5 over t in [0, 5] while the steps stay the same
(``tests/test_reference_large.py`` checks the values on shorter spans).

Then ``--fresh`` times the first call of ``numba`` in new Python processes
(Kuramoto, n = 50, final state, ``--fresh-k`` trajectories), twice in a row,
over a new, empty compiled-engine cache (``GPUIVP_CACHE_DIR``): the first pays
the compilation, the second shows what the on-disk cache saves.

Goals (issue 17), reported, not asserted: ``numba`` within 1.5x of the C per
trajectory on both models; ``numpy`` at least 20x faster than the scipy loop on
Lorenz-96 (Kuramoto's ratio reported: its O(N^2) right-hand side is array code
inside scipy's loop already); the first call, compilation included, at most
5 s for n = 50.

Usage::

    python benchmarks/large.py                       # everything (minutes)
    python benchmarks/large.py --quick               # smoke test, small K
    python benchmarks/large.py --models kuramoto --outputs final --k-numba 200
    python benchmarks/large.py --json figures.json --markdown
    python benchmarks/large.py --report a.json b.json --markdown   # re-render, merged
    PYTHONPATH=/other/checkout python benchmarks/large.py --inplace  # another gpuivp

Exits with status 1 if an implementation raises, a trajectory fails or a
step check fails (not when a goal is missed).
"""

import argparse
import datetime
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np

BENCHMARKS = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCHMARKS))
# An installed gpuivp (or PYTHONPATH) wins; otherwise the checkout this script belongs to.
sys.path.append(str(BENCHMARKS.parent))
from cpu import (_fmt, _sig, add_output_options, add_sample_options,  # noqa: E402
                 benchmark_parser, cpu_model, timed, versions, write_outputs)
from reference import build  # noqa: E402
from reference.large_problem import (  # noqa: E402
    ATOL, MODELS, N_EVAL, RTOL, max_rel_diff, solve_c, solve_scipy)

OUTPUTS = ("final", "t_eval")
IMPLEMENTATIONS = ("numba", "numba_inplace", "numpy", "c", "scipy")
LABELS = {"numba": "gpuivp numba", "numba_inplace": "gpuivp numba, fun in place",
          "numpy": "gpuivp numpy", "c": "C reference", "scipy": "scipy loop"}
#: (name, description, threshold): value <= threshold, except *_speedup (>=).
GOALS = [("numba_vs_c", "numba per trajectory <= 1.5x the C", 1.5),
         ("numpy_speedup_lorenz96", "numpy >= 20x the scipy loop on Lorenz-96", 20.0),
         ("first_call_s", "first call (compilation included), n = 50, <= 5 s", 5.0)]


def parse_args(argv=None):
    """Command-line options; ``--quick`` shrinks the defaults."""
    p = benchmark_parser(__doc__)
    p.add_argument("--models", nargs="+", choices=list(MODELS), default=list(MODELS))
    p.add_argument("--outputs", nargs="+", choices=OUTPUTS, default=list(OUTPUTS))
    p.add_argument("--k", type=int, default=None,
                   help="trajectories for numpy and the C (default 2000)")
    add_sample_options(p, "trajectories for numba (default: --k)", 10,
                       "interleaved rounds of numba, numpy and C; the best call counts "
                       "(default 3)")
    p.add_argument("--fresh", type=int, default=2, metavar="N",
                   help="new processes timing numba's first call on Kuramoto (default 2; "
                        "0: none)")
    p.add_argument("--fresh-k", type=int, default=16,
                   help="trajectories in the fresh processes' call (default 16)")
    p.add_argument("--skip", nargs="+", choices=IMPLEMENTATIONS, default=[],
                   help="implementations not to measure")
    p.add_argument("--inplace", action="store_true",
                   help="also measure numba with the right-hand sides written in place "
                        "(loops, inplace=True), where this gpuivp has that option")
    p.add_argument("--quick", action="store_true",
                   help="smoke test: K = 100, scipy sample 3, 1 round, no fresh process")
    add_output_options(p, "tables")
    p.add_argument("--report", nargs="+", metavar="JSON",
                   help="measure nothing: print the report (and --markdown) of figures saved "
                        "with --json; several files are merged (later ones win per case)")
    p.add_argument("--fresh-child", nargs=2, metavar=("MODEL", "K"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.quick:
        args.repeats, args.fresh = 1, 0
    defaults = {"k": 100 if args.quick else 2000,
                "scipy_sample": 3 if args.quick else 10}
    for name, default in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, default)
    if args.k_numba is None:
        args.k_numba = args.k
    return args


def gpuivp_call(backend, model, param, t_eval, inplace=False):
    """One ensemble call of gpuivp on ``model``: y0 shared, one parameter per trajectory.

    ``inplace``: ``model.fun_inplace`` with ``inplace=True`` instead of ``model.fun``.
    """
    import gpuivp
    fun, extra = (model.fun_inplace, {"inplace": True}) if inplace else (model.fun, {})
    return gpuivp.solve_ivp(fun, model.t_span, model.y0[:, None], method="RK45",
                            rtol=RTOL, atol=ATOL, t_eval=t_eval, backend=backend,
                            vectorized=backend == "numpy",
                            args=(param, *map(gpuivp.shared, model.shared)), **extra)


def as_tuple(res, t_eval):
    """``(y_final, status, nfev, y or None)`` of a gpuivp result, as the C's and scipy's."""
    return res.y_final, res.status, res.nfev, None if t_eval is None else res.y


def figures(k, timing, result, reference=None, sample=None, scipy_result=None):
    """Per-trajectory times (µs) and the checks of one implementation's result.

    ``reference`` is the C's result on the same parameters; ``sample`` the indices
    of the scipy loop's trajectories and ``scipy_result`` its result.
    """
    y_final, status, nfev, y_eval = result
    out = {"k": int(k), "seconds": timing.wall, "per_traj_us": timing.wall / k * 1e6,
           "cpu_per_traj_us": timing.cpu / k * 1e6,
           "failed": int(np.count_nonzero(np.asarray(status) != 0)),
           "mean_nfev": float(np.mean(nfev))}
    if reference is not None:
        out["nfev_equal_c"] = float(np.mean(np.asarray(nfev) == reference[2]))
        out["rel_diff_c"] = max_rel_diff(y_final, reference[0])
        if y_eval is not None:
            out["rel_diff_c_t_eval"] = max_rel_diff(y_eval, reference[3])
    if scipy_result is not None:
        nfev_s = np.asarray(nfev)[sample] if sample is not None else nfev
        out["nfev_equal_scipy"] = float(np.mean(nfev_s == scipy_result[2]))
    return out


def bench_case(args, model, output, fig):
    """Measure every implementation on one model and output; figures into ``fig``."""
    key = f"{model.name}/{output}"
    res, errors = fig["results"].setdefault(key, {}), fig["errors"]
    fig.setdefault("t_spans", {})[key] = list(model.t_span)
    t_eval = model.t_eval() if output == "t_eval" else None
    k, k_numba = args.k, args.k_numba
    param, param_numba = model.param(k), model.param(k_numba)
    c_solvers = build.load_large()
    c_call = {k: lambda: solve_c(c_solvers, model, param, t_eval),
              k_numba: lambda: solve_c(c_solvers, model, param_numba, t_eval)}
    c_ref = {kk: call() for kk, call in c_call.items()}  # also the untimed warm-up

    sample = np.unique(np.linspace(0, k - 1, args.scipy_sample).round().astype(int))
    if "scipy" not in args.skip:
        print(f"[{key}] scipy loop, sample of {sample.size} ...", flush=True)
        timing, scipy_result = timed(lambda: solve_scipy(model, param[sample], t_eval))
        res["scipy"] = figures(sample.size, timing, scipy_result)
        res["scipy"]["nfev_equal_c"] = float(np.mean(scipy_result[2] == c_ref[k][2][sample]))
        res["scipy"]["rel_diff_c"] = max_rel_diff(c_ref[k][0][:, sample], scipy_result[0])
        if t_eval is not None:
            res["scipy"]["rel_diff_c_t_eval"] = max_rel_diff(c_ref[k][3][:, sample],
                                                            scipy_result[3])
    else:
        scipy_result = None

    calls = {}
    if "numba" not in args.skip:
        calls["numba"] = (k_numba, lambda: as_tuple(gpuivp_call("numba", model, param_numba,
                                                                t_eval), t_eval))
    if args.inplace and "numba_inplace" not in args.skip:
        calls["numba_inplace"] = (k_numba, lambda: as_tuple(
            gpuivp_call("numba", model, param_numba, t_eval, inplace=True), t_eval))
    if "numpy" not in args.skip:
        calls["numpy"] = (k, lambda: as_tuple(gpuivp_call("numpy", model, param, t_eval), t_eval))
    if "c" not in args.skip:
        calls["c"] = (k, c_call[k])
    first = {}
    for name, (kk, call) in list(calls.items()):
        what = "compilation included" if name.startswith("numba") else "untimed"
        print(f"[{key}] {LABELS[name]}, K={kk}: first call ({what}) ...", flush=True)
        try:
            first[name] = timed(call)[0]
        except Exception as exc:  # report it, measure the rest
            traceback.print_exc()
            errors[f"{key}/{name}"] = f"{type(exc).__name__}: {exc}"
            del calls[name]
    best, last = {}, {}
    for r in range(args.repeats):
        print(f"[{key}] round {r + 1}/{args.repeats}: {', '.join(calls)}", flush=True)
        for name, (kk, call) in calls.items():
            timing, last[name] = timed(call)
            b = best.setdefault(name, timing)
            b.wall, b.cpu = min(b.wall, timing.wall), min(b.cpu, timing.cpu)
    for name, (kk, call) in calls.items():
        sample_kk = np.unique(np.linspace(0, kk - 1, args.scipy_sample).round().astype(int))
        same_sample = kk == k
        res[name] = figures(kk, best[name], last[name], None if name == "c" else c_ref[kk],
                            sample if same_sample else sample_kk,
                            scipy_result if same_sample else None)
        if name.startswith("numba"):
            res[name]["first_call_s"] = first[name].wall
            res[name]["first_call_cpu_s"] = first[name].cpu


def fresh_child(model_name, k):
    """In a new process: import gpuivp and time the first numba call (final state)."""
    t = time.perf_counter()
    import gpuivp
    imported = time.perf_counter() - t
    model = MODELS[model_name]
    timing, res = timed(lambda: gpuivp_call("numba", model, model.param(k), None))
    return {"import_s": imported, "first_call_s": timing.wall,
            "first_call_cpu_s": timing.cpu, "failed": int(np.count_nonzero(res.status)),
            "gpuivp": str(Path(gpuivp.__file__).parent)}


def bench_fresh(args, fig, model_name="kuramoto"):
    """Time numba's first call in ``args.fresh`` new processes, one after the other."""
    import gpuivp
    env = dict(os.environ)
    # the child imports the gpuivp this process measures
    env["PYTHONPATH"] = os.pathsep.join(
        [str(Path(gpuivp.__file__).parent.parent), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    # A new, empty compiled-engine cache (not the one this process has filled): the first
    # process compiles, the next ones load what it wrote.
    cache = tempfile.mkdtemp(prefix="gpuivp-fresh-")
    env["GPUIVP_CACHE_DIR"] = cache
    runs = []
    for i in range(args.fresh):
        print(f"fresh process {i + 1}/{args.fresh}: numba first call, {model_name}, "
              f"K={args.fresh_k} ...", flush=True)
        t = time.perf_counter()
        proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--fresh-child",
                               model_name, str(args.fresh_k)],
                              capture_output=True, text=True, env=env, cwd="/")
        process_s = time.perf_counter() - t
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("FRESH ")]
        if proc.returncode != 0 or not lines:
            fig["errors"][f"fresh/{i}"] = proc.stderr[-2000:]
            print(proc.stderr[-2000:], file=sys.stderr)
            break
        runs.append({**json.loads(lines[-1][6:]), "process_s": process_s})
    shutil.rmtree(cache, ignore_errors=True)
    fig["fresh"] = {"model": model_name, "k": args.fresh_k, "runs": runs}


def goal_values(fig):
    """The goals' values, from wall times and from CPU times.

    numba/C: per case the faster of ``numba`` and ``numba_inplace``, the worst
    case counts; numpy's speedup over the scipy loop on Lorenz-96: the smaller
    of the two outputs; the first call: the first fresh process. Whether a goal
    is met is judged on the CPU-time value: on a shared machine it is the steady
    one (numba and the C use both cores, numpy and scipy one, so their CPU-time
    ratios are the wall-time ratios of an idle machine).
    """
    ratios, speedup = {"wall": [], "cpu": []}, {"wall": [], "cpu": []}
    for key, res in fig["results"].items():
        for kind, field in (("wall", "per_traj_us"), ("cpu", "cpu_per_traj_us")):
            numba = [res[n][field] for n in ("numba", "numba_inplace") if n in res]
            if numba and "c" in res:
                ratios[kind].append(min(numba) / res["c"][field])
            if key.startswith("lorenz96/") and "numpy" in res and "scipy" in res:
                speedup[kind].append(res["scipy"][field] / res["numpy"][field])
    first = fig.get("fresh", {}).get("runs", [])[:1]
    values = {"numba_vs_c": {k: max(v) if v else None for k, v in ratios.items()},
              "numpy_speedup_lorenz96": {k: min(v) if v else None for k, v in speedup.items()},
              "first_call_s": {"wall": first[0]["first_call_s"] if first else None,
                               "cpu": first[0]["first_call_cpu_s"] if first else None}}
    goals = {}
    for name, text, threshold in GOALS:
        v = values[name]
        met = None if v["cpu"] is None else (
            v["cpu"] >= threshold if "speedup" in name else v["cpu"] <= threshold)
        goals[name] = {"goal": text, "value": v["wall"], "value_cpu": v["cpu"], "met": met}
    return goals


def checks(fig):
    """Step checks: every measured nfev equals the C's (all K) and scipy's (sample)."""
    failed = []
    for key, res in fig["results"].items():
        for name, r in res.items():
            if r["failed"]:
                failed.append(f"{key} {name}: {r['failed']} trajectories failed")
            for what in ("nfev_equal_c", "nfev_equal_scipy"):
                if r.get(what, 1.0) != 1.0:
                    failed.append(f"{key} {name}: {what} = {r[what]:.1%}")
    return failed


def report(fig):
    """Print one table per model and output, the first calls and the goals."""
    m = fig["machine"]
    print(f"\nRK45 rtol={RTOL:g} atol={ATOL:g}; {m['cpu']}, {m['cores']} cores; {fig['date']}; "
          f"gpuivp from {fig['versions'].get('gpuivp_path')}")
    for key, res in fig["results"].items():
        model = MODELS[key.split("/")[0]]
        output = key.split("/")[1]
        c_us = res.get("c", {}).get("per_traj_us")
        s_us = res.get("scipy", {}).get("per_traj_us")
        print(f"\n{model.title}, t in {fig.get('t_spans', {}).get(key, list(model.t_span))}, "
              f"{'final state' if output == 'final' else f'{N_EVAL} t_eval points'}")
        c_cpu = res.get("c", {}).get("cpu_per_traj_us")
        s_cpu = res.get("scipy", {}).get("cpu_per_traj_us")
        print(f"{'implementation':<28}{'K':>6}{'µs/traj':>11}{'CPU µs':>10}{'x C':>7}"
              f"{'(CPU)':>7}{'vs scipy':>10}{'(CPU)':>9}{'mean nfev':>11}{'nfev=C':>8}{'nfev=scipy':>11}"
              f"{'rel diff C':>12}{'t_eval':>9}")
        for name in IMPLEMENTATIONS:
            if name not in res:
                continue
            r = res[name]
            us, cpu = r["per_traj_us"], r["cpu_per_traj_us"]
            print(f"{LABELS[name]:<28}{r['k']:>6}{us:>11.1f}{cpu:>10.1f}"
                  f"{_fmt(c_us and us / c_us, '.2f'):>7}{_fmt(c_cpu and cpu / c_cpu, '.2f'):>7}"
                  f"{'-' if not s_us else f'{s_us / us:.1f}x':>10}"
                  f"{'-' if not s_cpu else f'{s_cpu / cpu:.1f}x':>9}{r['mean_nfev']:>11.1f}"
                  f"{_fmt(r.get('nfev_equal_c'), '.0%'):>8}"
                  f"{_fmt(r.get('nfev_equal_scipy'), '.0%'):>11}"
                  f"{_fmt(r.get('rel_diff_c'), '.1e'):>12}"
                  f"{_fmt(r.get('rel_diff_c_t_eval'), '.1e'):>9}")
        for name in ("numba", "numba_inplace"):
            if name in res:
                print(f"{LABELS[name]}: first call (compilation included) "
                      f"{res[name]['first_call_s']:.1f} s ({res[name]['first_call_cpu_s']:.1f} s CPU)")
    for r in fig.get("fresh", {}).get("runs", []):
        print(f"fresh process, {fig['fresh']['model']}, K={fig['fresh']['k']}: import "
              f"{r['import_s']:.2f} s, first numba call {r['first_call_s']:.2f} s "
              f"({r['first_call_cpu_s']:.2f} s CPU), whole process {r['process_s']:.2f} s")
    print("\nCPU µs: the process's CPU time per trajectory, all threads together. "
          "rel diff C: max |y - y_C| / max(|y_C|, atol), final state and t_eval values.")
    load = max(m["load_average_before"], m["load_average_after"])
    if load > 0.5 * m["cores"]:
        print(f"WARNING: the machine was busy (1-min load average up to {load:.1f} on "
              f"{m['cores']} cores): wall times are inflated; CPU times much less.")
    print(f"\n{'goal':<56}{'wall':>9}{'CPU':>9}  met (CPU)")
    for g in fig["goals"].values():
        met = {True: "yes", False: "NO", None: "n/a"}[g["met"]]
        print(f"{g['goal']:<56}{_fmt(g['value'], '.2f'):>9}{_fmt(g['value_cpu'], '.2f'):>9}"
              f"  {met}")
    for line in fig["check_failures"]:
        print(f"CHECK FAILED: {line}")
    for what, error in fig["errors"].items():
        print(f"NOT MEASURED: {what}: {error.strip().splitlines()[-1] if error.strip() else ''}")


def markdown(fig):
    """The figures as the tables of ``benchmarks/RESULTS.md``."""
    lines = ["| model | output | implementation | K | µs / trajectory | CPU µs / trajectory "
             "| × C (wall / CPU) | speedup vs scipy loop (wall / CPU) | mean nfev | nfev = C "
             "| nfev = scipy (sample) |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for key, res in fig["results"].items():
        model, output = key.split("/")
        ref = {w: {f: res[w][f] for f in ("per_traj_us", "cpu_per_traj_us")}
               for w in ("c", "scipy") if w in res}
        for name in IMPLEMENTATIONS:
            if name not in res:
                continue
            r = res[name]
            ratio = {}
            for w in ("c", "scipy"):
                if w in ref:
                    wall = r["per_traj_us"] / ref[w]["per_traj_us"]
                    cpu = r["cpu_per_traj_us"] / ref[w]["cpu_per_traj_us"]
                    ratio[w] = ((wall, cpu) if w == "c" else (1 / wall, 1 / cpu))
            cols = [f"{_sig(ratio[w][0])} / {_sig(ratio[w][1])}" if w in ratio else ""
                    for w in ("c", "scipy")]
            pct = {w: "" if r.get(w) is None else f"{r[w]:.1%}".replace(".0%", "%")
                   for w in ("nfev_equal_c", "nfev_equal_scipy")}
            lines.append(
                f"| {model} | {output} | {LABELS[name]} | {r['k']:,} | "
                f"{_sig(r['per_traj_us'])} | {_sig(r['cpu_per_traj_us'])} | {cols[0]} | "
                f"{cols[1]} | {r['mean_nfev']:.1f} | {pct['nfev_equal_c']} | "
                f"{pct['nfev_equal_scipy']} |")
    lines += ["", "| first call of `numba` (compilation included) | K | wall | CPU "
              "| CPU less a repeat call's (≈ compilation) |", "| --- | --- | --- | --- | --- |"]
    for key, res in fig["results"].items():
        for name in ("numba", "numba_inplace"):
            if name in res:
                r = res[name]
                compile_cpu = r["first_call_cpu_s"] - r["cpu_per_traj_us"] * r["k"] / 1e6
                lines.append(f"| {key}, {LABELS[name]}, in the benchmark's process | "
                             f"{r['k']:,} | {_sig(r['first_call_s'])} s | "
                             f"{_sig(r['first_call_cpu_s'])} s | {_sig(compile_cpu)} s |")
    for i, r in enumerate(fig.get("fresh", {}).get("runs", [])):
        lines.append(f"| {fig['fresh']['model']}/final, fresh process {i + 1} (import "
                     f"{_sig(r['import_s'])} s, process {_sig(r['process_s'])} s) | "
                     f"{fig['fresh']['k']} | {_sig(r['first_call_s'])} s | "
                     f"{_sig(r['first_call_cpu_s'])} s | |")
    lines += ["", "| goal | value (wall) | value (CPU) | met (on CPU) |",
              "| --- | --- | --- | --- |"]
    for g in fig["goals"].values():
        met = {True: "yes", False: "no", None: "n/a"}[g["met"]]
        lines.append(f"| {g['goal']} | {_fmt(g['value'], '.2f')} | "
                     f"{_fmt(g['value_cpu'], '.2f')} | {met} |")
    return "\n".join(lines)


def main(argv=None):
    """Run the benchmark; return the process exit status."""
    args = parse_args(argv)
    if args.fresh_child:
        print("FRESH " + json.dumps(fresh_child(args.fresh_child[0], int(args.fresh_child[1]))))
        return 0
    if args.report:
        fig = merge_figures([json.loads(Path(f).read_text()) for f in args.report])
        return finish(args, fig)
    fig = {"date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
           "machine": {"cpu": cpu_model(), "cores": os.cpu_count(),
                       "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
                       "load_average_before": os.getloadavg()[0]},
           "versions": versions(), "args": vars(args), "results": {}, "errors": {}}
    for name in args.models:
        for output in args.outputs:
            bench_case(args, MODELS[name], output, fig)
    if args.fresh > 0 and "numba" not in args.skip:
        bench_fresh(args, fig)
    fig["machine"]["load_average_after"] = os.getloadavg()[0]
    return finish(args, fig)


def merge_figures(figs):
    """Several runs' figures as one: results per case, fresh runs and errors of the last
    run that has them; dates, load averages and gpuivp paths of all are kept."""
    out = dict(figs[0], results={}, errors={}, runs=[], t_spans={})
    for f in figs:
        out["results"].update(f["results"])
        out.setdefault("t_spans", {}).update(f.get("t_spans", {}))
        out["errors"].update(f["errors"])
        if f.get("fresh", {}).get("runs"):
            out["fresh"] = f["fresh"]
        out["runs"].append({"date": f["date"], "cases": list(f["results"]),
                            "gpuivp_path": f["versions"].get("gpuivp_path"),
                            "load_average": [f["machine"]["load_average_before"],
                                             f["machine"]["load_average_after"]]})
    out["machine"] = dict(out["machine"], load_average_before=max(
        f["machine"]["load_average_before"] for f in figs), load_average_after=max(
        f["machine"]["load_average_after"] for f in figs))
    return out


def finish(args, fig):
    """Goals, checks, report, markdown and JSON of ``fig``; the exit status."""
    fig["goals"] = goal_values(fig)
    fig["check_failures"] = checks(fig)
    report(fig)
    write_outputs(args, fig, markdown)
    return 1 if fig["errors"] or fig["check_failures"] else 0


if __name__ == "__main__":
    sys.exit(main())
