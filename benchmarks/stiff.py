"""Stiff ensembles (issue 18): Robertson's kinetics and HIRES over a grid of rate constants.

**Robertson** (ROBER): k1 = linspace(0.02, 0.08, K), k3 = 1e4 * linspace(0.5, 2, K), k2 = 3e7,
y0 = (1, 0, 0), t in [0, 1e5]. **HIRES** (8 components): its rate 280 swept as
280 * linspace(0.5, 1.5, K), t in [0, 321.8122]. Both at rtol 1e-6, atol 1e-10, final state,
analytic ``jac`` everywhere. Side by side in one run:

* gpuivp with ``Rodas5P`` and ``Rosenbrock23`` on every backend of
  :data:`gpuivp.methods.rosenbrock.ROSENBROCK_BACKENDS` usable here (``numpy``; ``numba``,
  ``cupy``, ``cuda`` join by themselves once they run the methods and are usable), on all K
  trajectories (compilation excluded: one small warm-up call first);
* a scipy loop with ``Radau``, ``BDF`` and ``LSODA`` on an evenly spaced sample;
* Diffrax ``Kvaerno5`` (PID controller, same tolerances) under ``jax.jit(jax.vmap(...))`` on
  JAX-CPU in float64, on all K trajectories (compilation excluded: the second call is timed),
  where ``jax`` and ``diffrax`` are installed (``pip install jax diffrax``: a benchmark-only
  dependency; skipped with a note otherwise).

Reported per implementation: time per trajectory (wall time of one call / trajectories) and
the process's CPU time per trajectory (all threads: what other jobs on a shared machine do not
inflate), each with the speed-up against the fastest scipy loop; the error against a
reference (scipy Radau at rtol 1e-13 on the sample): the largest ``|y - ref| / (|ref| +
1e-10)`` over the sample's final states (relative, floored at the problem's atol); the mean
step attempts, ``nfev``, ``njev``, ``nlu`` per trajectory (what each solver reports; Diffrax
reports steps only). Then each scipy loop at equal or smaller error than gpuivp's fastest
``Rodas5P`` row (its rtol tightened tenfold at a time) and gpuivp's speed-up there.

``--plot PNG`` instead draws the work-precision diagram (error against time per trajectory for
rtol 1e-4 ... 1e-10, atol = 1e-4 rtol) of Robertson: Rodas5P and Rosenbrock23 (down to 1e-8:
an order-2 method needs ~1e5 steps beyond) on the best backend available (a GPU backend, else
``numba``, else ``numpy``), the scipy loops and Diffrax when installed.

Rows are a list of ``(label, run, scope)`` (:func:`rows`), ``run(problem, k, idx, rtol,
atol)`` returning the final states and counters of trajectories ``idx`` of the K-grid.

    python benchmarks/stiff.py [--k 10000] [--sample 20] [--problem robertson hires]
    python benchmarks/stiff.py --plot docs/stiff_work_precision.png [--k 2000] [--sample 8]
"""
import argparse
import os
import platform
import time
from dataclasses import dataclass

import numpy as np
from scipy.integrate import solve_ivp as scipy_solve_ivp

import gpuivp

T1, RTOL, ATOL = 1e5, 1e-6, 1e-10


# -- problems ----------------------------------------------------------------------------------
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


def hires(t, y, k):
    """HIRES of the Test Set for IVP Solvers (8 components), with its rate 280 as ``k``."""
    y1, y2, y3, y4, y5, y6, y7, y8 = y
    r = k * y6 * y8
    return (-1.71 * y1 + 0.43 * y2 + 8.32 * y3 + 0.0007,
            1.71 * y1 - 8.75 * y2,
            -10.03 * y3 + 0.43 * y4 + 0.035 * y5,
            8.32 * y2 + 1.71 * y3 - 1.12 * y4,
            -1.745 * y5 + 0.43 * y6 + 0.43 * y7,
            -r + 0.69 * y4 + 1.71 * y5 - 0.43 * y6 + 0.69 * y7,
            r - 1.81 * y7,
            -r + 1.81 * y7)


def hires_jac(t, y, k):
    """The Jacobian of :func:`hires` as 8 rows of 8 (scalars or ``(m,)`` arrays)."""
    y6, y8 = y[5], y[7]
    z = 0 * y6
    a, b = k * y8, k * y6   # dr/dy6, dr/dy8
    return ((z - 1.71, z + 0.43, z + 8.32, z, z, z, z, z),
            (z + 1.71, z - 8.75, z, z, z, z, z, z),
            (z, z, z - 10.03, z + 0.43, z + 0.035, z, z, z),
            (z, z + 8.32, z + 1.71, z - 1.12, z, z, z, z),
            (z, z, z, z, z - 1.745, z + 0.43, z + 0.43, z),
            (z, z, z, z + 0.69, z + 1.71, -a - 0.43, z + 0.69, -b),
            (z, z, z, z, z, a, z - 1.81, b),
            (z, z, z, z, z, -a, z + 1.81, -b))


@dataclass
class Problem:
    name: str
    fun: object
    jac: object
    y0: np.ndarray
    t1: float
    #: K -> the args tuple (per-trajectory (K,) arrays and scalars)
    make_args: object

    def args(self, k, idx=None):
        a = self.make_args(k)
        return a if idx is None else tuple(v[idx] if np.ndim(v) else v for v in a)


PROBLEMS = {
    "robertson": Problem("Robertson", rober, rober_jac, np.array([1.0, 0.0, 0.0]), T1,
                         lambda k: (params(k)[0], 3e7, params(k)[1])),
    "hires": Problem("HIRES", hires, hires_jac,
                     np.array([1.0, 0, 0, 0, 0, 0, 0, 0.0057]), 321.8122,
                     lambda k: (280.0 * np.linspace(0.5, 1.5, k),)),
}


@dataclass
class Run:
    y: np.ndarray          # (n, m) final states
    steps: object = None   # mean step attempts, or None
    nfev: object = None
    njev: object = None
    nlu: object = None
    cpu: float = None      # CPU seconds per trajectory (set by timed)


def _mean(v):
    return None if v is None else float(np.mean(v))


# -- rows ----------------------------------------------------------------------------------------
def gpuivp_runner(backend, method):
    vectorized = backend in ("numpy", "cupy")

    def run(prob, k, idx, rtol, atol):
        r = gpuivp.solve_ivp(prob.fun, (0.0, prob.t1), prob.y0[:, None], method=method,
                             backend=backend, vectorized=vectorized, args=prob.args(k, idx),
                             rtol=rtol, atol=atol, jac=prob.jac, max_steps=1_000_000)
        if not np.all(r.status == 0):
            raise RuntimeError(f"gpuivp {backend} {method}: {r.message}")
        return Run(np.asarray(r.y_final), _mean(r.naccept + r.nreject), _mean(r.nfev),
                   _mean(r.njev), _mean(r.nlu))

    # Compilation (numba, cuda) out of the timing: a call on two trajectories first.
    run.warm = lambda prob, k, idx, rtol, atol: run(prob, k, idx[:2], rtol, atol)
    return run


def scipy_runner(method):
    def run(prob, k, idx, rtol, atol):
        args = prob.args(k)
        out = []
        for i in idx:
            a = tuple(v[i] if np.ndim(v) else v for v in args)
            out.append(scipy_solve_ivp(prob.fun, (0.0, prob.t1), prob.y0, method=method,
                                       rtol=rtol, atol=atol, args=a,
                                       jac=lambda t, y, *a: np.array(prob.jac(t, y, *a),
                                                                     dtype=float)))
        if not all(o.success for o in out):
            raise RuntimeError(f"scipy {method}: {[o.message for o in out if not o.success]}")
        return Run(np.array([o.y[:, -1] for o in out]).T, _mean([len(o.t) - 1 for o in out]),
                   _mean([o.nfev for o in out]), _mean([o.njev for o in out]),
                   _mean([o.nlu for o in out]))

    return run


def diffrax_unavailable():
    try:
        import diffrax  # noqa: F401
        import jax  # noqa: F401
    except ImportError as exc:
        return f"Diffrax not installed ({exc}): `pip install jax diffrax` to add its row"
    return None


_DIFFRAX = {}


def diffrax_runner():
    """Diffrax Kvaerno5 (PID controller, scipy-like rtol/atol) under jit(vmap) on JAX-CPU,
    float64; compiled once per problem and number of trajectories (``run.warm``), rtol and
    atol traced."""
    import jax
    jax.config.update("jax_enable_x64", True)
    import diffrax
    import jax.numpy as jnp

    def solver(prob, k, rtol, atol):
        key = (prob.name, k)
        if key in _DIFFRAX:
            return _DIFFRAX[key]

        def vf(t, y, args):
            return jnp.stack(prob.fun(t, y, *args))

        def one(args, rtol, atol):
            sol = diffrax.diffeqsolve(
                diffrax.ODETerm(vf), diffrax.Kvaerno5(), 0.0, prob.t1, None,
                jnp.asarray(prob.y0), args=args,
                stepsize_controller=diffrax.PIDController(rtol=rtol, atol=atol),
                saveat=diffrax.SaveAt(t1=True), max_steps=200_000, throw=False)
            return sol.ys[-1], sol.stats["num_steps"], sol.result._value

        scalar = tuple(np.ndim(v) == 0 for v in prob.args(2))
        fn = jax.jit(jax.vmap(one, in_axes=(tuple(None if s else 0 for s in scalar),
                                            None, None)))
        args = tuple(jnp.asarray(v) for v in prob.args(k))
        _DIFFRAX[key] = fn.lower(args, jnp.float64(rtol), jnp.float64(atol)).compile()
        return _DIFFRAX[key]

    def run(prob, k, idx, rtol, atol):
        fn = solver(prob, len(idx), rtol, atol)
        args = tuple(jnp.asarray(v) for v in prob.args(k, idx))
        y, steps, res = fn(args, jnp.float64(rtol), jnp.float64(atol))
        y = np.asarray(jax.block_until_ready(y))
        if np.any(np.asarray(res) != 0):
            raise RuntimeError(f"Diffrax Kvaerno5 failed on {int(np.sum(np.asarray(res) != 0))}"
                               f" trajectories")
        return Run(y.T, _mean(np.asarray(steps)))

    # Compilation (for these trajectories' shape) out of the timing: rtol, atol are traced.
    run.warm = lambda prob, k, idx, rtol, atol: solver(prob, len(idx), rtol, atol)
    return run


def rows(include_diffrax=True):
    """``[(label, run, scope)]``: scope ``"all"`` runs the K trajectories, ``"sample"`` the
    sample. gpuivp's rows follow ROSENBROCK_BACKENDS, usable ones only: the GPU backends
    first, then ``numba``, then ``numpy`` (the work-precision diagram takes the first)."""
    from gpuivp.backends import usable
    from gpuivp.methods.rosenbrock import ROSENBROCK_BACKENDS

    out = []
    order = ("cuda", "cupy", "numba", "numpy")
    for backend in sorted(ROSENBROCK_BACKENDS, key=lambda b: order.index(b)
                          if b in order else len(order)):
        if backend == "cuda":
            from gpuivp.backends import backend_module
            if not usable("cuda") or backend_module("cuda").simulated():
                continue
        elif not usable(backend):
            continue
        for method in ("Rodas5P", "Rosenbrock23"):
            out.append((f"gpuivp `{backend}` {method}", gpuivp_runner(backend, method), "all"))
    for method in ("Radau", "BDF", "LSODA"):
        out.append((f"scipy loop {method}", scipy_runner(method), "sample"))
    if include_diffrax:
        why = diffrax_unavailable()
        if why:
            print(f"note: {why}")
        else:
            out.append(("Diffrax Kvaerno5 jit(vmap), JAX-CPU", diffrax_runner(), "all"))
    return out


# -- measuring ------------------------------------------------------------------------------------
def reference(prob, k, sample):
    """scipy Radau at rtol 1e-13 on the sample (final states, (n, len(sample)))."""
    run = scipy_runner("Radau")
    return run(prob, k, sample, 1e-13, 1e-18).y


def error(y, ref, floor=ATOL):
    return float(np.max(np.abs(y - ref) / (np.abs(ref) + floor)))


def timed(label, run, scope, prob, k, sample, rtol, atol):
    """``(seconds per trajectory, Run restricted to the sample, trajectories)``; the Run
    also carries ``cpu``: the process's CPU seconds per trajectory (all threads), which
    other jobs on a shared machine do not inflate."""
    idx = np.arange(k) if scope == "all" else sample
    if hasattr(run, "warm"):   # compilation (numba, cuda, jit) out of the timing
        run.warm(prob, k, idx, rtol, atol)
    t, c = time.perf_counter(), time.process_time()
    r = run(prob, k, idx, rtol, atol)
    dt = (time.perf_counter() - t) / len(idx)
    r.cpu = (time.process_time() - c) / len(idx)
    if scope == "all":
        r.y = r.y[:, sample]
    return dt, r, len(idx)


def machine():
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            cpu = next(ln.split(":", 1)[1].strip() for ln in fh if ln.startswith("model name"))
    except (OSError, StopIteration):
        pass
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return f"{os.cpu_count()} cores, {cpu}, 1-min load average {load:.1f} at the start"


def fmt(v):
    return "—" if v is None else f"{v:.0f}"


def table(prob, k, n_sample, include_diffrax=True):
    sample = np.unique(np.linspace(0, k - 1, n_sample).round().astype(int))
    ref = reference(prob, k, sample)
    results = []
    for label, run, scope in rows(include_diffrax):
        dt, r, m = timed(label, run, scope, prob, k, sample, RTOL, ATOL)
        results.append((label, m, dt, error(r.y, ref), r))
        print(f"  ({label}: {dt * 1e3:.3f} ms per trajectory)", flush=True)
    best = min(dt for label, _, dt, _, _ in results if label.startswith("scipy"))
    best_label = min((dt, label) for label, _, dt, _, _ in results
                     if label.startswith("scipy"))[1]
    print(f"\n{prob.name}, t in [0, {prob.t1:g}], rtol {RTOL:g}, atol {ATOL:g}, K = {k}, "
          f"sample {len(sample)}; error = max over the sample of |y - ref| / (|ref| + {ATOL:g})"
          f"; {machine()}")
    best_cpu = min(r.cpu for label, _, _, _, r in results if label.startswith("scipy"))
    print(f"| implementation | trajectories | time per trajectory | vs best scipy loop "
          f"({best_label.split()[-1]}) | CPU time per trajectory | vs best scipy loop, CPU "
          f"| error | steps | nfev | njev | nlu |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for label, m, dt, e, r in results:
        print(f"| {label} | {m} | {dt * 1e3:.3f} ms | {best / dt:.1f}x | {r.cpu * 1e3:.3f} ms "
              f"| {best_cpu / r.cpu:.1f}x | {e:.2g} | {fmt(r.steps)} | {fmt(r.nfev)} | "
              f"{fmt(r.njev)} | {fmt(r.nlu)} |")
    return results


def equal_error(prob, k, n_sample, results):
    """The scipy loops at the error of gpuivp's fastest ``Rodas5P`` row: each loop's rtol
    tightened tenfold (atol with it) from the table's until its error is no larger (down to
    1e-11), then timed; printed as the speed-up at equal or smaller error."""
    sample = np.unique(np.linspace(0, k - 1, n_sample).round().astype(int))
    ref = reference(prob, k, sample)
    label, _, dt, target, _ = min((row for row in results if row[0].startswith("gpuivp")
                                   and row[0].endswith("Rodas5P")), key=lambda row: row[2])
    print(f"\nAt equal or smaller error than {label} ({target:.2g}, {dt * 1e3:.3f} ms per "
          f"trajectory):")
    print("| scipy loop | rtol | atol | error | time per trajectory | gpuivp's speed-up |")
    print("| --- | --- | --- | --- | --- | --- |")
    for method in ("Radau", "BDF", "LSODA"):
        rtol = RTOL
        while True:
            atol = ATOL * rtol / RTOL
            t_s, r, _ = timed(method, scipy_runner(method), "sample", prob, k, sample, rtol,
                              atol)
            e = error(r.y, ref)
            if e <= target or rtol <= 1e-11:
                break
            rtol /= 10
        reached = "" if e <= target else " (not reached)"
        print(f"| {method} | {rtol:.0e} | {atol:.0e} | {e:.2g}{reached} | {t_s * 1e3:.3f} ms "
              f"| {t_s / dt:.0f}x |", flush=True)


# -- work-precision diagram -----------------------------------------------------------------
WP_RTOLS = (1e-4, 1e-5, 1e-6, 1e-7, 1e-8, 1e-9, 1e-10)
#: Rosenbrock23 (order 2) below this rtol needs ~1e5 steps per trajectory: left out there.
WP_ROSENBROCK23_MIN = 1e-8


def work_precision(out, prob, k, n_sample, include_diffrax=True):
    from gpuivp._demo import pyplot

    sample = np.unique(np.linspace(0, k - 1, n_sample).round().astype(int))
    ref = reference(prob, k, sample)
    curves = {}
    all_rows = rows(include_diffrax)
    # gpuivp on the first backend listed: a GPU backend where usable, else numba where it
    # runs the methods, else numpy
    first = next((lab.split("`")[1] for lab, _, _ in all_rows if lab.startswith("gpuivp")), None)
    for label, run, scope in all_rows:
        if label.startswith("gpuivp") and f"`{first}`" not in label:
            continue
        for rtol in WP_RTOLS:
            if "Rosenbrock23" in label and rtol < WP_ROSENBROCK23_MIN:
                continue
            atol = 1e-4 * rtol
            dt, r, m = timed(label, run, scope, prob, k, sample, rtol, atol)
            e = error(r.y, ref)
            curves.setdefault(label, []).append((rtol, dt, e))
            print(f"  {label} rtol {rtol:g}: {dt * 1e3:.3f} ms per trajectory, error {e:.2g}",
                  flush=True)
    plt = pyplot()
    if plt is None:
        return curves
    fig, ax = plt.subplots(figsize=(7.5, 5))
    for label, pts in curves.items():
        _, dt, e = zip(*pts)
        style = "o-" if label.startswith("gpuivp") else "s--" if label.startswith("scipy") \
            else "^-."
        ax.loglog(e, np.array(dt) * 1e3, style, label=label.replace("`", ""))
        ax.annotate(f"{pts[0][0]:.0e}", (e[0], dt[0] * 1e3), fontsize=7,
                    textcoords="offset points", xytext=(4, -8))
    ax.set_xlabel(f"error: max |y - ref| / (|ref| + {ATOL:g}) at t = {prob.t1:g} "
                  f"(sample of {len(sample)})")
    ax.set_ylabel("time per trajectory (ms)")
    ax.set_title(f"{prob.name} ensemble, work-precision, rtol 1e-4 … 1e-10, atol = 1e-4 rtol\n"
                 f"gpuivp/Diffrax on K = {k}, scipy loops on the sample; "
                 f"{os.cpu_count()} CPU cores", fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    print(f"wrote {out}")
    return curves


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--k", type=int, default=None,
                    help="trajectories (default 10000; 2000 with --plot)")
    ap.add_argument("--sample", type=int, default=None,
                    help="sampled trajectories for the scipy loops and the reference "
                         "(default 20; 8 with --plot)")
    ap.add_argument("--problem", nargs="+", choices=list(PROBLEMS),
                    default=["robertson", "hires"])
    ap.add_argument("--no-diffrax", action="store_true", help="leave Diffrax out")
    ap.add_argument("--plot", metavar="PNG", help="draw the work-precision diagram of "
                    "Robertson to PNG instead of the tables")
    a = ap.parse_args()
    if a.plot:
        work_precision(a.plot, PROBLEMS["robertson"], a.k or 2000, a.sample or 8,
                       not a.no_diffrax)
        return
    for name in a.problem:
        k, n_sample = a.k or 10_000, a.sample or 20
        equal_error(PROBLEMS[name], k, n_sample,
                    table(PROBLEMS[name], k, n_sample, not a.no_diffrax))


if __name__ == "__main__":
    main()
