"""Compiling ``fun`` (issues 15 and 16): how fast ``auto`` gives up on a ``fun`` numba cannot
compile, what a repeat call and an in-place table change cost, and whether a loop over
fresh closures grows the process.

Measured, in one run, side by side:

* per ``fun`` numba cannot compile (try/except, ``np.errstate``, a generator expression,
  ``**kwargs``, ``scipy.special.erf``, an object attribute, a global dict;
  ``not_compiling.py``): the whole ``auto`` call (the
  failed numba attempt and the ``scipy`` run that follows) and the ``scipy`` run alone;
* a ``fun`` reading a 1 MiB global table: the first ``numba`` call (compile), a repeat,
  and a call after changing the table in place (no recompile: the table is a hidden
  argument);
* a loop over fresh closures over a changing float: compiled-entry count and RSS growth.

Usage::

    python benchmarks/compile.py
"""
import resource
import time
import warnings

import numpy as np

import gpuivp
from gpuivp.engines import compile_cache
from not_compiling import NOT_COMPILING

K = 16
Y0 = np.ones((1, K))
ARGS = (np.linspace(0.5, 1.5, K),)


TABLE = np.zeros(131_072)


def reads_table(t, y, a):
    return (-(a + TABLE[-1]) * y[0],)


def timed(f, *args, **kw):
    t = time.perf_counter()
    out = f(*args, **kw)
    return time.perf_counter() - t, out


def rss_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main():
    solve = gpuivp.solve_ivp
    print(f"{'fun':<14} {'auto (s)':>9} {'scipy alone (s)':>16}  backend")
    for fun, _ in NOT_COMPILING.values():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            t_auto, res = timed(solve, fun, (0, 1), Y0, args=ARGS)
            t_scipy, _ = timed(solve, fun, (0, 1), Y0, args=ARGS, backend="scipy")
        print(f"{fun.__name__:<14} {t_auto:9.3f} {t_scipy:16.3f}  {res.backend}")

    tol = dict(rtol=1e-8, atol=1e-10, backend="numba")
    first, _ = timed(solve, reads_table, (0, 1), Y0, args=ARGS, **tol)
    repeat, _ = timed(solve, reads_table, (0, 1), Y0, args=ARGS, **tol)
    TABLE[-1] = 1.0
    changed, res = timed(solve, reads_table, (0, 1), Y0, args=ARGS, **tol)
    ok = np.allclose(res.y_final[0], np.exp(-ARGS[0] - 1.0), rtol=1e-5)
    print(f"1 MiB table: first call {first:.2f} s, repeat {repeat * 1e3:.1f} ms, "
          f"after an in-place change {changed * 1e3:.1f} ms (new result: {ok})")

    def make(rate):
        def f(t, y, a):
            return (-(a + rate) * y[0],)
        return f

    solve(make(0.0), (0, 1), Y0, args=ARGS, backend="numba")
    entries, rss = compile_cache.entries(), rss_mib()
    t_loop, _ = timed(lambda: [solve(make(r), (0, 1), Y0, args=ARGS, backend="numba")
                               for r in np.linspace(0.1, 1.0, 50)])
    print(f"50 fresh closures over a changing float: {t_loop:.2f} s, cache entries "
          f"{entries} -> {compile_cache.entries()}, max RSS {rss:.0f} -> {rss_mib():.0f} MiB")


if __name__ == "__main__":
    main()
