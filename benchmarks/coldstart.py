"""The first call in a fresh Python process: compiled-engine disk cache off, cold and warm.

Each figure comes from a new Python process (``--child``) that imports gpuivp and numba,
initialises numba's CPU target (what any numba program pays on its first compiled call),
makes one ``solve_ivp`` call on the ``numba`` backend (the first: compilation, or loading
the compiled engine from the disk cache) and a second one (the same call again: the run
itself). The three settings run in turn, repeat after repeat, so that the machine's drift
touches them alike; medians are reported.

- ``off``: ``GPUIVP_DISK_CACHE=0``, today's in-process compilation;
- ``cold``: the disk cache on, its directory empty (compiles and writes the entry);
- ``warm``: the disk cache on, the entry written by an earlier process.

Models: Lorenz (n = 3, rho = linspace(0, 28, K)) and Lorenz-96 (n = 40, forcing F =
linspace(2, 10, K) per trajectory, ``fun`` returning an array), RK45, rtol = 1e-6,
atol = 1e-8, t in [0, 1], final state only, K = 200 (the run itself is milliseconds).

Usage::

    python benchmarks/coldstart.py                  # both models, 3 repeats
    python benchmarks/coldstart.py --repeats 5 --models lorenz --markdown
    python benchmarks/coldstart.py --engine lanes --models lorenz   # the lane engine
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

SETTINGS = ("off", "cold", "warm")
K = 200
N96 = 40


def lorenz(t, y, rho):
    return (10.0 * (y[1] - y[0]), y[0] * (rho - y[2]) - y[1], y[0] * y[1] - 8 / 3 * y[2])


def lorenz96(t, y, F):
    dy = np.empty(N96)
    for i in range(N96):
        dy[i] = (y[(i + 1) % N96] - y[i - 2]) * y[i - 1] - y[i] + F
    return dy


def problem(model):
    """(fun, y0 of shape (n, 1), args) of a model."""
    if model == "lorenz":
        return lorenz, np.c_[[1.0, 0.0, 0.0]], (np.linspace(0, 28, K),)
    y0 = np.full((N96, 1), 8.0)
    y0[0] += 0.01
    return lorenz96, y0, (np.linspace(2, 10, K),)


def child(model):
    """Runs in the measured process: prints its figures as JSON."""
    t0 = time.perf_counter()
    import numba  # noqa: F401

    from gpuivp import solve_ivp
    from gpuivp.engines import disk_cache
    t1 = time.perf_counter()
    from numba.core.registry import cpu_target
    cpu_target.target_context.refresh()
    t2 = time.perf_counter()
    c2 = time.process_time()
    fun, y0, args = problem(model)
    kw = dict(method="RK45", rtol=1e-6, atol=1e-8, backend="numba", args=args)
    res = solve_ivp(fun, (0.0, 1.0), y0, **kw)
    t3 = time.perf_counter()
    c3 = time.process_time()
    solve_ivp(fun, (0.0, 1.0), y0, **kw)
    t4 = time.perf_counter()
    print(json.dumps(dict(import_s=t1 - t0, numba_init_s=t2 - t1, first_s=t3 - t2,
                          first_cpu_s=c3 - c2,
                          repeat_s=t4 - t3, stats=dict(disk_cache.STATS),
                          checksum=float(np.sum(res.y_final)), nfev=int(res.nfev.sum()))))


def run_child(model, setting, cache, engine="auto"):
    env = {k: v for k, v in os.environ.items() if k not in ("GPUIVP_DISK_CACHE",)}
    env["GPUIVP_NUMBA_ENGINE"] = engine
    env["GPUIVP_CACHE_DIR"] = cache
    if setting == "off":
        env["GPUIVP_DISK_CACHE"] = "0"
    elif setting == "cold":
        shutil.rmtree(cache, ignore_errors=True)
    start = time.perf_counter()
    out = subprocess.run([sys.executable, os.path.abspath(__file__), "--child", model],
                         env=env, capture_output=True, text=True, check=True)
    fig = json.loads(out.stdout.strip().splitlines()[-1])
    fig["process_s"] = time.perf_counter() - start
    expected = {"off": {}, "cold": {"write": 1}, "warm": {"hit": 1}}[setting]
    if fig["stats"] != expected:
        raise RuntimeError(f"{model} {setting}: disk cache did {fig['stats']}, not {expected}")
    return fig


def measure(models, repeats, engine="auto"):
    root = tempfile.mkdtemp(prefix="gpuivp-coldstart-")
    figs = {}
    try:
        for model in models:
            warm_dir = os.path.join(root, model + "-warm")
            run_child(model, "cold", warm_dir, engine)  # writes the entry the warm runs load
            for _ in range(repeats):
                for setting in SETTINGS:
                    cache = warm_dir if setting == "warm" else os.path.join(root, model + "-x")
                    figs.setdefault((model, setting), []).append(
                        run_child(model, setting, cache, engine))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    for (model, setting), runs in figs.items():
        sums = {(r["checksum"], r["nfev"]) for r in runs}
        ref = {(r["checksum"], r["nfev"]) for r in figs[(model, "off")]}
        if sums != ref:
            raise RuntimeError(f"{model} {setting}: results differ from the in-process compile")
    return {key: {f: statistics.median(r[f] for r in runs)
                  for f in ("import_s", "numba_init_s", "first_s", "first_cpu_s", "repeat_s",
                            "process_s")}
            for key, runs in figs.items()}


def markdown(med):
    rows = ["| model | disk cache | import gpuivp + numba | numba target init | first call "
            "| first call, CPU | first call / off | repeat call | whole process |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for (model, setting), m in med.items():
        off = med[(model, "off")]["first_s"]
        rows.append(f"| {model} | {setting} | {m['import_s']:.2f} s | {m['numba_init_s']:.2f} s "
                    f"| {m['first_s']:.3f} s | {m['first_cpu_s']:.3f} s "
                    f"| {m['first_s'] / off:.3f} | "
                    f"{m['repeat_s'] * 1e3:.1f} ms | {m['process_s']:.2f} s |")
    return "\n".join(rows)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--child", choices=("lorenz", "lorenz96"), help=argparse.SUPPRESS)
    p.add_argument("--models", nargs="+", default=["lorenz", "lorenz96"],
                   choices=("lorenz", "lorenz96"))
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--markdown", action="store_true", help="print the RESULTS.md table")
    p.add_argument("--engine", choices=("auto", "lanes", "scalar"), default="auto",
                   help="the numba backend's engine (GPUIVP_NUMBA_ENGINE; K = 200 is below "
                        "the lane engine's automatic threshold, so 'lanes' forces it)")
    args = p.parse_args(argv)
    if args.child:
        child(args.child)
        return
    load = os.getloadavg()[0]
    print(f"{datetime.date.today()}, {platform.processor() or platform.machine()}, "
          f"{len(os.sched_getaffinity(0))} CPUs, load average {load:.1f}; K = {K}, RK45, "
          f"medians of {args.repeats} fresh processes per setting, engine {args.engine}")
    med = measure(args.models, args.repeats, args.engine)
    for (model, setting), m in med.items():
        print(f"{model:9s} {setting:5s} import {m['import_s']:.2f} s  numba init "
              f"{m['numba_init_s']:.2f} s  first call {m['first_s']:.3f} s (CPU "
              f"{m['first_cpu_s']:.3f} s)  repeat "
              f"{m['repeat_s'] * 1e3:.1f} ms  process {m['process_s']:.2f} s")
    if args.markdown:
        print("\n" + markdown(med))


if __name__ == "__main__":
    main()
