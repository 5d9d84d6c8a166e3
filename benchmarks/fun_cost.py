"""What one call of Lorenz-96's right-hand side costs in numba, by how it is written (issue 17).

The large-systems benchmark (``large.py``) finds ``numba`` at the C's speed with ``fun``
written in place and 2.7x the C with the NumPy expression
``(y[ip1] - y[im2]) * y[im1] - y + F``. This times the right-hand side alone, called
in a compiled loop as the looped engine calls it (its result copied into a stage vector),
n = 40, CPU time per call:

* ``expression, index arrays as arguments``: the benchmark's ``fun`` as gpuivp compiles it
  (``fun_compile`` passes the global index arrays as hidden arguments);
* ``expression, index arrays compiled in``: the same with numba's frozen globals;
* ``in place``: ``large_problem.lorenz96_inplace`` (loops, ``inplace=True``);
* ``np.empty(n) alone``: one allocation, what each temporary of the expression costs at least.

Usage::

    NUMBA_NUM_THREADS=1 python benchmarks/fun_cost.py
"""
import sys
import time
from pathlib import Path

import numba
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from reference.large_problem import L96_IM1, L96_IM2, L96_IP1, L96_Y0  # noqa: E402

IP1, IM1, IM2 = L96_IP1, L96_IM1, L96_IM2
CALLS = 200_000


@numba.njit
def expression_frozen(t, y, F):
    return (y[IP1] - y[IM2]) * y[IM1] - y + F


@numba.njit
def expression_args(t, y, F, ip1, im2, im1):
    return (y[ip1] - y[im2]) * y[im1] - y + F


@numba.njit
def in_place(t, y, d, F):
    n = y.shape[0]
    for i in range(n - 1):
        d[i] = (y[i + 1] - y[i - 2]) * y[i - 1] - y[i] + F
    d[n - 1] = (y[0] - y[n - 3]) * y[n - 2] - y[n - 1] + F


@numba.njit
def loop_frozen(y, calls):
    d, s = np.empty_like(y), 0.0
    for _ in range(calls):
        r = expression_frozen(0.0, y, 8.0)
        for j in range(y.shape[0]):
            d[j] = r[j]
        s += d[3]
    return s


@numba.njit
def loop_args(y, calls, ip1, im2, im1):
    d, s = np.empty_like(y), 0.0
    for _ in range(calls):
        r = expression_args(0.0, y, 8.0, ip1, im2, im1)
        for j in range(y.shape[0]):
            d[j] = r[j]
        s += d[3]
    return s


@numba.njit
def loop_in_place(y, calls):
    d, s = np.empty_like(y), 0.0
    for _ in range(calls):
        in_place(0.0, y, d, 8.0)
        s += d[3]
    return s


@numba.njit
def loop_empty(y, calls):
    s = 0.0
    for _ in range(calls):
        s += np.empty(y.shape[0]).shape[0]
    return s


def main():
    y = L96_Y0.copy()
    cases = [("expression, index arrays as arguments", loop_args, (IP1, IM2, IM1)),
             ("expression, index arrays compiled in", loop_frozen, ()),
             ("in place", loop_in_place, ()),
             ("np.empty(n) alone", loop_empty, ())]
    print(f"{'right-hand side (n = 40)':<40} {'ns / call':>10}")
    for name, loop, extra in cases:
        loop(y, 10, *extra)  # compile
        best = np.inf
        for _ in range(3):
            t = time.process_time()
            loop(y, CALLS, *extra)
            best = min(best, time.process_time() - t)
        print(f"{name:<40} {best / CALLS * 1e9:10.1f}")


if __name__ == "__main__":
    main()
