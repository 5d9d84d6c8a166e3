"""Where the per-trajectory engine should switch from scalarised code to loops over arrays.

For a range of state sizes ``n`` this solves Lorenz-96 (``n`` components, one forcing per
trajectory, RK45, rtol 1e-6, atol 1e-8, t in [0, 10], final state) on the ``numba``
backend with both forms of the generated engine, forced through
``gpuivp.engines.per_trajectory.LOOP_MIN_N``, and prints side by side, per form: the
first call (compilation included) and the best of ``--repeats`` calls per trajectory,
both as CPU time of this process on one worker thread (``NUMBA_NUM_THREADS=1``), which
load from other work on the machine inflates less than wall time. ``fun`` is written
twice: returning a tuple (written out, the usual form for small systems) and filling
``dydt`` in place (``inplace=True``, the form for large ones). The two forms of the engine
give bit-identical results; the script checks that too.

    NUMBA_NUM_THREADS=1 python benchmarks/loop_threshold.py [--sizes 3,6,9,12,16,24] [--k 400]
"""
import argparse
import os
import time

import numpy as np


def tuple_fun(n):
    terms = ", ".join(f"(y[{(i + 1) % n}] - y[{(i - 2) % n}]) * y[{(i - 1) % n}] - y[{i}] + F"
                      for i in range(n))
    ns = {}
    exec(f"def l96(t, y, F):\n    return ({terms},)\n", ns)
    return ns["l96"]


def inplace_fun(n):
    ns = {}
    exec(f"def l96(t, y, dydt, F):\n"
         f"    for i in range({n}):\n"
         f"        dydt[i] = (y[(i + 1) % {n}] - y[(i - 2) % {n}]) * y[(i - 1) % {n}] - y[i] + F\n",
         ns)
    return ns["l96"]


def measure(fun, n, k, repeats, inplace):
    import gpuivp
    y0 = np.full((n, k), 8.0)
    y0[n // 2] += 0.01
    F = np.linspace(2.0, 10.0, k)
    kw = dict(rtol=1e-6, atol=1e-8, backend="numba", inplace=inplace)
    t = time.process_time()
    gpuivp.solve_ivp(fun, (0.0, 10.0), y0[:, :1], args=(F[:1],), **kw)
    first = time.process_time() - t
    best = np.inf
    for _ in range(repeats):
        t = time.process_time()
        res = gpuivp.solve_ivp(fun, (0.0, 10.0), y0, args=(F,), **kw)
        best = min(best, time.process_time() - t)
    return first, best / k * 1e6, res


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="3,6,9,12,16,24")
    ap.add_argument("--k", type=int, default=400)
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args()
    from gpuivp.engines import per_trajectory as pt
    default = pt.LOOP_MIN_N
    print(f"NUMBA_NUM_THREADS={os.environ.get('NUMBA_NUM_THREADS')}, load average "
          f"{os.getloadavg()[0]:.1f}, K={a.k}, LOOP_MIN_N={default}")
    print("| fun | n | scalarised: first call (s) | looped: first call (s) "
          "| scalarised µs/traj | looped µs/traj | looped / scalarised | identical |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for form, make, inplace in (("tuple", tuple_fun, False), ("in place", inplace_fun, True)):
        for n in (int(s) for s in a.sizes.split(",")):
            rows = []
            for loop_min in (10 ** 9, 1):
                pt.LOOP_MIN_N = loop_min
                rows.append(measure(make(n), n, a.k, a.repeats, inplace))
            pt.LOOP_MIN_N = default
            (fs, rs, res_s), (fl, rl, res_l) = rows
            same = np.array_equal(res_s.y_final, res_l.y_final, equal_nan=True) and \
                np.array_equal(res_s.nfev, res_l.nfev)
            print(f"| {form} | {n} | {fs:.2f} | {fl:.2f} | {rs:.1f} | {rl:.1f} | {rl / rs:.2f} "
                  f"| {'yes' if same else 'NO'} |", flush=True)


if __name__ == "__main__":
    main()
