"""Per-trajectory problem data must not slow the shared case (issue 19).

Lorenz RK45 on ``numba`` (the ``cpu.py`` problem: rho = linspace(0, 28, K), t in [0, 10],
rtol 1e-6, atol 1e-8, final state only), timed side by side for two source trees of
gpuivp: ``--base`` (before) and this tree (after), each in its own subprocess, alternating,
best of ``--repeats`` CPU times per process after a warm-up call (compilation excluded).
Also times this tree with the same values given per trajectory ((k,) spans and (1, k)
tolerances), and checks that every run gives the same nfev and final states.

Usage::

    python benchmarks/per_trajectory.py --base /path/to/old/tree [--k 20000] [--rounds 3]
"""
import argparse
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

CHILD = r"""
import json, os, sys, time
# The tree on PYTHONPATH, not an editable install's finder.
sys.meta_path = [f for f in sys.meta_path if "editable" not in repr(f).lower()]
sys.path.insert(0, os.environ["PYTHONPATH"])
import numpy as np
import gpuivp
k, repeats, per = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3] == "per"
def lorenz(t, y, sigma, rho, beta):
    return (sigma * (y[1] - y[0]), y[0] * (rho - y[2]) - y[1], y[0] * y[1] - beta * y[2])
rho = np.linspace(0.0, 28.0, k)
y0 = np.c_[[1.0, 0.0, 0.0]]
kw = dict(args=(10.0, rho, 8.0 / 3.0), backend="numba", rtol=1e-6, atol=1e-8)
span = (0.0, 10.0)
if per:
    span = (np.zeros(k), np.full(k, 10.0))
    kw.update(rtol=np.full((1, k), 1e-6), atol=np.full((1, k), 1e-8))
gpuivp.solve_ivp(lorenz, span, y0, **kw)  # compile (or load from the disk cache)
best = float("inf")
for _ in range(repeats):
    c = time.process_time()
    res = gpuivp.solve_ivp(lorenz, span, y0, **kw)
    best = min(best, time.process_time() - c)
print(json.dumps(dict(file=gpuivp.__file__, cpu=best, nfev=int(res.nfev.sum()),
                      ysum=float(np.sum(res.y_final)))))
"""


def run(tree, k, repeats, mode):
    env = dict(os.environ, PYTHONPATH=tree, NUMBA_NUM_THREADS="1")
    out = subprocess.run([sys.executable, "-c", CHILD, str(k), str(repeats), mode], env=env,
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--base", required=True, help="source tree of gpuivp before the change")
    ap.add_argument("--k", type=int, default=20000)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    best = {}
    for _ in range(a.rounds):
        for name, tree, mode in (("before", a.base, "shared"), ("after", ROOT, "shared"),
                                 ("after, per-trajectory", ROOT, "per")):
            r = run(tree, a.k, a.repeats, mode)
            assert os.path.realpath(r["file"]).startswith(os.path.realpath(tree)), r["file"]
            prev = best.get(name)
            if prev is not None:
                assert (prev["nfev"], prev["ysum"]) == (r["nfev"], r["ysum"])
            if prev is None or r["cpu"] < prev["cpu"]:
                best[name] = r
    ref = best["before"]
    for name, r in best.items():
        assert (r["nfev"], r["ysum"]) == (ref["nfev"], ref["ysum"]), (name, r, ref)
        print(f"{name:24s} {r['cpu'] * 1e3:8.1f} ms CPU  ratio {r['cpu'] / ref['cpu']:.3f}  "
              f"(nfev {r['nfev']}, same final states)")


if __name__ == "__main__":
    main()
