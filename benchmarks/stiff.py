"""Stiff ensembles: Robertson's kinetics over a grid of rate constants (issue 18).

k1 = linspace(0.02, 0.08, K), k3 = 1e4 * linspace(0.5, 2, K), k2 = 3e7, y0 = (1, 0, 0),
t in [0, 1e5], rtol 1e-6, atol 1e-10, final state. Side by side in one run:

* gpuivp ``numba`` (per trajectory, LU in thread-local memory; compile not timed) and
  ``numpy`` (lockstep, batched LU) with ``Rodas5P`` and ``Rosenbrock23``, analytic ``jac``,
  on all K trajectories;
* a scipy loop with ``Radau``, ``BDF`` and ``LSODA`` (same ``jac``) on an evenly spaced
  sample of the same trajectories.

Reported: time per trajectory, the worst error against a Radau reference at rtol 1e-12
(on the sample), the mean ``nfev`` / ``njev`` / ``nlu``. ``python benchmarks/stiff.py
[--k 10000] [--sample 20]``.
"""
import argparse
import time

import numpy as np
from scipy.integrate import solve_ivp as scipy_solve_ivp

import gpuivp

T1, RTOL, ATOL = 1e5, 1e-6, 1e-10


def rober(t, y, k1, k2, k3):
    y1, y2, y3 = y
    return (-k1 * y1 + k3 * y2 * y3, k1 * y1 - k2 * y2 * y2 - k3 * y2 * y3, k2 * y2 * y2)


def rober_jac(t, y, k1, k2, k3):
    y1, y2, y3 = y
    z = 0 * y1
    return ((z - k1, k3 * y3, k3 * y2),
            (z + k1, -2 * k2 * y2 - k3 * y3, -k3 * y2),
            (z, 2 * k2 * y2, z))


def scipy_jac(t, y, k1, k2, k3):
    return np.array(rober_jac(t, y, k1, k2, k3), dtype=float)


def params(k):
    return np.linspace(0.02, 0.08, k), 1e4 * np.linspace(0.5, 2, k)


def numba_rows(k1, k3, y0, err, sample):
    """gpuivp ``numba`` (per-trajectory engine: thread-local LU per trajectory) with
    ``Rodas5P`` and ``Rosenbrock23``, analytic ``jac``, on all K trajectories. The first call
    of each method compiles; it is not timed (a warm-up on two trajectories)."""
    rows = []
    for method in ("Rodas5P", "Rosenbrock23"):
        kw = dict(method=method, backend="numba", rtol=RTOL, atol=ATOL, jac=rober_jac)
        gpuivp.solve_ivp(rober, (0, T1), np.c_[y0], args=(k1[:2], 3e7, k3[:2]), **kw)
        t = time.perf_counter()
        r = gpuivp.solve_ivp(rober, (0, T1), np.c_[y0], args=(k1, 3e7, k3), **kw)
        dt = time.perf_counter() - t
        assert np.all(r.status == 0), r.message
        rows.append((f"gpuivp numba {method}", len(k1), dt / len(k1),
                     err(r.y_final[:, sample]), r.nfev.mean(), r.njev.mean(), r.nlu.mean()))
    return rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--k", type=int, default=10_000)
    ap.add_argument("--sample", type=int, default=20)
    a = ap.parse_args()
    k1, k3 = params(a.k)
    sample = np.unique(np.linspace(0, a.k - 1, a.sample).round().astype(int))
    y0 = np.array([1.0, 0.0, 0.0])
    ref = np.array([scipy_solve_ivp(rober, (0, T1), y0, method="Radau", rtol=1e-12,
                                    atol=1e-20, jac=scipy_jac,
                                    args=(k1[i], 3e7, k3[i])).y[:, -1] for i in sample]).T

    def err(y):
        return float(np.max(np.abs(y - ref) / (ATOL + RTOL * np.abs(ref))))

    rows = numba_rows(k1, k3, y0, err, sample)
    for method in ("Rodas5P", "Rosenbrock23"):
        t = time.perf_counter()
        r = gpuivp.solve_ivp(rober, (0, T1), np.c_[y0], method=method, backend="numpy",
                             vectorized=True, args=(k1, 3e7, k3), rtol=RTOL, atol=ATOL,
                             jac=rober_jac)
        dt = time.perf_counter() - t
        assert np.all(r.status == 0), r.message
        rows.append((f"gpuivp numpy {method}", a.k, dt / a.k, err(r.y_final[:, sample]),
                     r.nfev.mean(), r.njev.mean(), r.nlu.mean()))
    for method in ("Radau", "BDF", "LSODA"):
        t = time.perf_counter()
        out = [scipy_solve_ivp(rober, (0, T1), y0, method=method, rtol=RTOL, atol=ATOL,
                               jac=scipy_jac, args=(k1[i], 3e7, k3[i])) for i in sample]
        dt = time.perf_counter() - t
        y = np.array([o.y[:, -1] for o in out]).T
        rows.append((f"scipy loop {method}", len(sample), dt / len(sample), err(y),
                     np.mean([o.nfev for o in out]), np.mean([o.njev for o in out]),
                     np.mean([o.nlu for o in out])))
    best_scipy = min(r[2] for r in rows if r[0].startswith("scipy"))
    print(f"Robertson, t in [0, 1e5], rtol {RTOL:g}, atol {ATOL:g}; error = max over the "
          f"sample of |y - ref| / (atol + rtol |ref|)")
    print("| implementation | K | time per trajectory | speed-up vs best scipy loop | error "
          "| nfev | njev | nlu |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for name, k, tpt, e, nfev, njev, nlu in rows:
        print(f"| {name} | {k} | {tpt * 1e3:.3f} ms | {best_scipy / tpt:.1f}x | {e:.2g} | "
              f"{nfev:.0f} | {njev:.0f} | {nlu:.0f} |")


if __name__ == "__main__":
    main()
