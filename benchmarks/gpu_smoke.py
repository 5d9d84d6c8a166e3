"""First minute on a GPU: each GPU backend once against ``numba``, the linked kernels' real
resources, and the failure modes only hardware shows.

    python benchmarks/gpu_smoke.py            # from the repository root, on the GPU machine
    python benchmarks/gpu_smoke.py --refill   # only the REFILL A/B timing (below)
    NUMBA_ENABLE_CUDASIM=1 python benchmarks/gpu_smoke.py --k 8   # the script itself, no GPU

Every step prints one ``[ok]`` or ``[FAIL]`` line with its time and never stops the script
(``benchmarks/gpu_session.sh`` runs it under a time limit). Steps:

- ``cuda`` and ``cupy`` on a Lorenz ensemble (RK45 float64, 2^14 trajectories): first call
  (compile, link, run) and a warm repeat; statuses, nfev and final states against ``numba``;
- the registers, local memory and maximum block size of the kernels numba-cuda linked
  (``regs_per_thread``, ``local_mem_per_thread`` of the compiled kernel), beside the ptxas
  figures CI records without a GPU (``benchmarks/RESULTS.md``);
- NumPy ufuncs in ``fun`` (``np.sqrt`` and friends, registered by
  ``gpuivp.backends._cuda_math``), a ``raise`` in ``fun`` (status -5 on ``cuda``), and a
  ``fun`` numba-cuda cannot compile (``auto`` falls back; ``backend="cuda"`` says why).

``--refill``: the ``cuda`` backend's ``REFILL`` option (a thread whose trajectory ends takes
the next, off by default until measured) against one thread per trajectory: Lorenz RK45
float32 at 2^20 (``--k``), rho sorted (neighbours in a warp take similar step counts) and
shuffled (unlike counts: idle lanes without refill), best of 3 warm calls each, and whether
the results are identical (they must be, bit for bit).
"""
from __future__ import annotations

import os
import sys
import time
import traceback
import warnings

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "tests"))


def lorenz(t, y, sigma, rho, beta):
    return (sigma * (y[1] - y[0]), y[0] * (rho - y[2]) - y[1], y[0] * y[1] - beta * y[2])


def many_ufuncs(t, y, c):
    """Every ufunc numba-cuda 0.30 could not lower before gpuivp registered it."""
    a = np.sqrt(c) + np.exp(-c) + np.abs(y[0]) * 0 + np.fabs(c) * 0 + np.square(y[1]) * 0
    a += np.sign(c) * 0 + np.floor(c) * 0 + np.expm1(-c) * 0 + np.log1p(c) * 0 + np.cbrt(c) * 0
    a += np.power(c, 0.5) * 0 if np.isfinite(c) else 0.0
    return (-a * y[0], y[0] - y[1])


def raises_for_negative(t, y, c):
    if c < 0:
        raise ValueError("c < 0")
    return (-c * y[0],)


def not_compilable(t, y, c):
    return (np.spacing(y[0]) * c,)


def step(name, fn):
    t = time.perf_counter()
    try:
        out = fn()
        print(f"[ok]   {name}: {time.perf_counter() - t:.2f} s  {'' if out is None else out}",
              flush=True)
        return out
    except BaseException as exc:  # noqa: BLE001 - report every step, whatever happened
        print(f"[FAIL] {name}: {time.perf_counter() - t:.2f} s  {type(exc).__module__}."
              f"{type(exc).__name__}: {str(exc)[:400]}", flush=True)
        traceback.print_exc(limit=4)
        return None


def refill_ab(k):
    """``REFILL`` off and on, rho sorted and shuffled (see the module docstring)."""
    from gpuivp import solve_ivp
    from gpuivp.backends import cuda as cb

    rho = np.linspace(0.0, 28.0, k)
    orders = {"sorted": rho, "shuffled": np.random.default_rng(0).permutation(rho)}
    y0 = np.c_[[1.0, 0.0, 0.0]].astype(np.float32)
    results = {}

    def run(refill, order):
        cb.REFILL = refill
        try:
            return solve_ivp(lorenz, (0, 1), y0, backend="cuda", method="RK45", rtol=1e-6,
                             atol=1e-6, dtype=np.float32, args=(10.0, orders[order], 8 / 3))
        finally:
            cb.REFILL = False

    for refill in (False, True):
        step(f"refill={refill}: first call (compile)", lambda: run(refill, "sorted").backend)
    for order in orders:
        for refill in (False, True):
            def timed():
                best = np.inf
                for _ in range(3):
                    t = time.perf_counter()
                    results[refill, order] = run(refill, order)
                    best = min(best, time.perf_counter() - t)
                return f"{best * 1e3:.1f} ms"
            step(f"rho {order}, refill={refill}: best of 3", timed)
        a, b = results.get((False, order)), results.get((True, order))
        if a is not None and b is not None:
            same = all(np.array_equal(np.asarray(a[f]), np.asarray(b[f]), equal_nan=True)
                       for f in ("status", "nfev", "naccept", "nreject", "y_final"))
            print(f"[{'ok' if same else 'FAIL'}]   rho {order}: refill results identical: {same}",
                  flush=True)


def main(argv=None):
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--k", type=int, default=None,
                    help="Lorenz trajectories (2^14; with --refill 2^20)")
    ap.add_argument("--refill", action="store_true", help="only the REFILL A/B timing")
    opts = ap.parse_args(argv)
    warnings.simplefilter("ignore")
    if opts.refill:
        refill_ab(opts.k or 1 << 20)
        return
    opts.k = opts.k or 1 << 14
    import gpuivp
    from gpuivp import solve_ivp
    from gpuivp.backends import cuda as cb

    print("available:", gpuivp.available_backends(), "| cuda:", cb.unavailable_reason(),
          flush=True)
    rho = np.linspace(0.0, 21.0, opts.k)
    y0 = np.c_[[1.0, 0.0, 0.0]]
    kw = dict(args=(10.0, rho, 8 / 3), rtol=1e-8, atol=1e-8, method="RK45")
    holder = {}

    def reference():
        holder["ref"] = solve_ivp(lorenz, (0, 1), y0, backend="numba", **kw)
        return f"status0={np.mean(holder['ref'].status == 0):.3f}"

    step("numba reference (compile + run)", reference)
    ref = holder.get("ref")

    def against_numba(backend, **extra):
        def run():
            r = solve_ivp(lorenz, (0, 1), y0, backend=backend, **kw, **extra)
            if ref is None:
                return f"status0={np.mean(np.asarray(r.status) == 0):.3f}"
            return (f"status0={np.mean(np.asarray(r.status) == 0):.3f} "
                    f"max|dy|={np.max(np.abs(np.asarray(r.y_final) - ref.y_final)):.1e} "
                    f"same-nfev={np.mean(np.asarray(r.nfev) == ref.nfev):.3f}")
        return run

    step("cuda first call (NVVM compile + link + run)", against_numba("cuda"))
    step("cuda warm call", against_numba("cuda"))

    def resources():
        from gpuivp import _ivp
        from gpuivp.engines.runner import EngineState
        from gpuivp.methods import METHODS
        from unittest import mock

        out = {}
        for method, dtype, dt in (("RK45", np.float64, None), ("RK4", np.float32, 1e-3),
                                  ("Tsit5", np.float64, None)):
            seen = {}

            def spy(problem, name):
                seen["p"] = problem
                raise RuntimeError("captured")

            with mock.patch.object(_ivp, "_run", spy):
                try:
                    solve_ivp(lorenz, (0, 1), y0, backend="cuda", method=method, dt=dt,
                              dtype=dtype, args=(10.0, rho[:64], 8 / 3))
                except RuntimeError:
                    pass
            p, tab = seen["p"], METHODS[method]
            kernel, fields = cb.compiled_kernel(p, tab)
            sig = cb.kernel_signature(EngineState(p, 1, tab), fields=fields)
            linked = kernel.compile(sig)  # the _Kernel numba-cuda launches (linked, loaded)
            out[f"{method} {np.dtype(dtype).name}"] = dict(
                regs=linked.regs_per_thread, local=linked.local_mem_per_thread,
                max_threads_per_block=linked.max_threads_per_block)
        return out

    step("linked kernels (registers / local memory / max threads per block)", resources)
    step("cupy first call (NVRTC)", against_numba("cupy", vectorized=True))
    step("cupy warm call", against_numba("cupy", vectorized=True))
    c = np.array([1.0, -1.0, 4.0])
    step("cuda: NumPy ufuncs in fun (expect status [0, -3, 0])",
         lambda: solve_ivp(many_ufuncs, (0, 1), np.c_[[1.0, 0.5]], args=(c,),
                           backend="cuda").status)
    step("cuda: float32 ufuncs (expect status [0, -3, 0])",
         lambda: solve_ivp(many_ufuncs, (0, 1), np.c_[[1.0, 0.5]], args=(c,), backend="cuda",
                           dtype=np.float32).status)
    step("cuda: raise in fun (expect status [0, -5, 0])",
         lambda: solve_ivp(raises_for_negative, (0, 1), np.c_[[1.0]], args=(c,),
                           backend="cuda").status)
    step("cuda: fun numba-cuda cannot compile (expect RuntimeError naming np.spacing)",
         lambda: solve_ivp(not_compilable, (0, 1), np.c_[[1.0]], args=(c,),
                           backend="cuda").status)
    step("auto: the same fun falls back (expect a backend other than cuda)",
         lambda: solve_ivp(not_compilable, (0, 1), np.c_[[1.0]], args=(c,)).backend)


if __name__ == "__main__":
    main()
