"""``python -m gpuivp``: ``info``, ``demo`` and ``bench``."""
from __future__ import annotations

import argparse
import os
import platform
import sys
import time

import numpy as np

from . import __version__
from . import _demo

DESCRIPTION = """\
gpuivp: ensembles of ODE initial value problems with scipy's solve_ivp interface.

  python -m gpuivp info     what is installed, which backends are usable here and why not
  python -m gpuivp demo     a 10,000-trajectory Lorenz sweep against a scipy loop, with a plot
  python -m gpuivp bench    every usable backend against a scipy loop on a Lorenz ensemble
"""


# -- helpers -----------------------------------------------------------------------------
def _dist_version(*names):
    """The installed version of the first distribution found among ``names``, else None."""
    from importlib import metadata

    for name in names:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return None


def _first_line(exc):
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _seconds(s):
    return f"{s * 1e3:.0f} ms" if s < 1 else f"{s:.2f} s"


def _per_traj(s, k):
    us = s / max(k, 1) * 1e6
    return f"{us:,.0f} µs" if us < 10_000 else f"{us / 1e3:,.1f} ms"


def scipy_loop(rho, t_span, t_eval=None, rtol=_demo.RTOL, atol=_demo.ATOL):
    """``scipy.integrate.solve_ivp`` once per value of ``rho`` (the Lorenz system).

    Returns (seconds, nfev array).
    """
    import scipy.integrate

    nfev = np.zeros(len(rho), dtype=np.int64)
    tic = time.perf_counter()
    for i, r in enumerate(rho):
        res = scipy.integrate.solve_ivp(_demo.lorenz, t_span, _demo.Y0, method="RK45",
                                        t_eval=t_eval, args=(_demo.SIGMA, r, _demo.BETA),
                                        rtol=rtol, atol=atol)
        nfev[i] = res.nfev
    return time.perf_counter() - tic, nfev


# -- info ----------------------------------------------------------------------------------
def gpu_lines():
    """Lines describing the GPUs numba.cuda and CuPy see (never raises)."""
    lines = []
    try:
        from numba import cuda
    except Exception as exc:  # noqa: BLE001 - any import trouble is "absent"
        lines.append(f"numba.cuda: not importable ({_first_line(exc)})")
    else:
        try:
            if cuda.is_available():
                driver = cuda.cudadrv.driver.driver.get_version()
                lines.append(f"numba.cuda: CUDA driver API {driver[0]}.{driver[1]}")
                try:
                    runtime = cuda.runtime.get_version()
                    lines[-1] += f", runtime {runtime[0]}.{runtime[1]}"
                except Exception:  # noqa: BLE001
                    pass
                for gpu in cuda.gpus:
                    cc = ".".join(map(str, gpu.compute_capability))
                    name = gpu.name.decode() if isinstance(gpu.name, bytes) else gpu.name
                    lines.append(f"  GPU {gpu.id}: {name} (compute capability {cc})")
            else:
                try:
                    cuda.cudadrv.driver.driver.get_version()
                    why = "no usable GPU"
                except Exception as exc:  # noqa: BLE001
                    why = _first_line(exc)
                lines.append(f"numba.cuda: no GPU ({why})")
        except Exception as exc:  # noqa: BLE001
            lines.append(f"numba.cuda: error while querying ({_first_line(exc)})")
    try:
        import cupy
    except ImportError:
        lines.append("cupy: not installed")
    except Exception as exc:  # noqa: BLE001
        lines.append(f"cupy: not importable ({_first_line(exc)})")
    else:
        try:
            count = cupy.cuda.runtime.getDeviceCount()
            drv = cupy.cuda.runtime.driverGetVersion()
            lines.append(f"cupy: {count} device(s), CUDA driver {drv // 1000}.{drv % 1000 // 10}")
            for d in range(count):
                name = cupy.cuda.runtime.getDeviceProperties(d)["name"]
                lines.append(f"  GPU {d}: {name.decode() if isinstance(name, bytes) else name}")
        except Exception as exc:  # noqa: BLE001
            lines.append(f"cupy: no GPU ({_first_line(exc)})")
    return lines


def backend_status():
    """``[(name, reason or None)]`` for every backend in ``gpuivp.backends.BACKENDS``."""
    from .backends import BACKENDS, unavailable_reason

    out = []
    for name in BACKENDS:
        try:
            reason = unavailable_reason(name)
        except Exception as exc:  # noqa: BLE001 - info must never crash
            reason = f"error while checking: {_first_line(exc)}"
        out.append((name, reason))
    return out


def cmd_info(args):
    import numpy
    import scipy

    print(f"gpuivp {__version__}")
    print(f"python {platform.python_version()} ({sys.executable})")
    print(f"platform {platform.platform()}, {os.cpu_count()} CPU cores")
    versions = [("numpy", numpy.__version__), ("scipy", scipy.__version__),
                ("numba", _dist_version("numba")),
                ("numba-cuda", _dist_version("numba-cuda")),
                ("cupy", _dist_version("cupy", "cupy-cuda12x", "cupy-cuda13x", "cupy-cuda11x")),
                ("tqdm", _dist_version("tqdm")), ("matplotlib", _dist_version("matplotlib"))]
    for name, version in versions:
        print(f"  {name:<11} {version or 'not installed'}")
    print("GPU:")
    for line in gpu_lines():
        print(f"  {line}")
    print("backends:")
    status = backend_status()
    for name, reason in status:
        print(f"  {name:<6} {'usable' if reason is None else 'not usable: ' + reason}")
    usable = [name for name, reason in status if reason is None]
    print(f"auto picks, for an ensemble here: {_auto_here(usable)}")
    return 0


def _auto_here(usable):
    """The auto rule (docs/reference.md), written out for this machine."""
    chain = []
    if "cuda" in usable:
        chain.append("cuda (if fun compiles)")
    if "cupy" in usable:
        chain.append("cupy (if vectorized)")
    if "numba" in usable:
        chain.append("numba (if fun compiles)")
    if "numpy" in usable:
        chain.append("numpy (if vectorized)")
    chain.append("scipy")
    return ", else ".join(chain)


# -- demo ----------------------------------------------------------------------------------
def cmd_demo(args):
    n, backend = args.n, args.backend
    if backend != "auto":
        reason = dict(backend_status())[backend]
        if reason is not None:
            print(f"backend {backend!r} is not usable here: {reason}", file=sys.stderr)
            return 2
    t_end, n_t = args.t_end, _demo.N_T
    print(f"Lorenz system, sigma = 10, beta = 8/3, y0 = (1, 0, 0): {n:,} values of rho in "
          f"[0, 28]\nRK45, rtol = {_demo.RTOL:g}, atol = {_demo.ATOL:g}, t in [0, {t_end:g}], "
          f"z sampled at {n_t} times in [{t_end / 2:g}, {t_end:g}]")
    first = _demo.lorenz_bifurcation(n, backend=backend, t_end=t_end)
    result = _demo.lorenz_bifurcation(n, backend=backend, t_end=t_end)
    bad = int(np.count_nonzero(result["status"] < 0))
    print(f"backend: {result['backend']}" + ("  (chosen by backend='auto')" if backend == "auto"
                                            else ""))
    compiled = result["backend"] in ("numba", "cuda")
    print(f"  first call{' (with compilation)' if compiled else ''}: "
          f"{_seconds(first['seconds'])}")
    print(f"  repeat call: {_seconds(result['seconds'])}  "
          f"({_per_traj(result['seconds'], n)} per trajectory, "
          f"{result['nfev'].mean():,.0f} evaluations of fun on average"
          + (f"; {bad} failed" if bad else "") + ")")

    sample = min(args.sample, n)
    if sample > 0:
        idx = np.linspace(0, n - 1, sample).round().astype(int)
        t_eval = np.linspace(t_end / 2, t_end, n_t)
        seconds, nfev = scipy_loop(result["rho"][idx], (0.0, t_end), t_eval)
        ours = result["seconds"] / n
        theirs = seconds / sample
        same = int(np.count_nonzero(nfev == result["nfev"][idx]))
        print(f"scipy.integrate.solve_ivp loop on {sample} of these trajectories: "
              f"{_per_traj(seconds, sample)} per trajectory (same nfev as gpuivp: "
              f"{same}/{sample})")
        print(f"speedup: {theirs / ours:,.0f}x per trajectory  "
              f"(a scipy loop over all {n:,} would take about {_seconds(theirs * n)})")
    if not args.no_plot:
        path = _demo.plot_lorenz_bifurcation(result, args.out)  # says so if it cannot
        if path:
            print(f"wrote {path}")
    return 0


# -- bench ---------------------------------------------------------------------------------
def cmd_bench(args):
    from .backends import BACKENDS
    from ._ivp import solve_ivp

    k, sample, t_end = args.n, args.sample, args.t_end
    names = [args.backend] if args.backend != "all" else list(BACKENDS)
    rho_all = np.linspace(0.0, 28.0, k)
    idx = np.linspace(0, k - 1, min(sample, k)).round().astype(int)
    print(f"Lorenz ensemble, rho in [0, 28], RK45 rtol = {_demo.RTOL:g}, atol = {_demo.ATOL:g}, "
          f"t in [0, {t_end:g}]; {os.cpu_count()} CPU cores")
    base, _ = scipy_loop(rho_all[idx], (0.0, t_end))
    base_per = base / len(idx)
    print(f"{'backend':<8} {'k':>8} {'first call':>12} {'repeat':>10} {'per traj':>10} "
          f"{'speedup':>9}")
    print(f"{'loop':<8} {len(idx):>8} {'':>12} {_seconds(base):>10} "
          f"{_per_traj(base, len(idx)):>10} {'1.0x':>9}   (plain scipy.integrate.solve_ivp)")
    reasons = dict(backend_status())
    for name in names:
        reason = reasons[name]
        if reason is not None:
            print(f"{name:<8} not usable: {reason}")
            continue
        # The scipy backend is a loop itself: time it on the loop's sample, not all k.
        rho = rho_all[idx] if name == "scipy" else rho_all
        times = []
        for _ in range(2):
            tic = time.perf_counter()
            res = solve_ivp(_demo.lorenz, (0.0, t_end), np.array(_demo.Y0)[:, None],
                            vectorized=True, args=(_demo.SIGMA, rho, _demo.BETA),
                            backend=name, rtol=_demo.RTOL, atol=_demo.ATOL)
            times.append(time.perf_counter() - tic)
        per = times[1] / len(rho)
        note = "" if res.success else f"   ({res.message})"
        print(f"{name:<8} {len(rho):>8} {_seconds(times[0]):>12} {_seconds(times[1]):>10} "
              f"{_per_traj(times[1], len(rho)):>10} {base_per / per:>8,.1f}x{note}")
    return 0


# -- entry point ---------------------------------------------------------------------------
def _positive_int(text):
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text}")
    return value


def build_parser():
    from .backends import BACKENDS

    parser = argparse.ArgumentParser(prog="python -m gpuivp", description=DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"gpuivp {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="{info,demo,bench}")

    p = sub.add_parser("info", help="versions, GPU, and which backends are usable here")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("demo", help="Lorenz rho sweep on the best backend, against scipy",
                       description="Integrate the Lorenz system for N values of rho in [0, 28] "
                                   "in one ensemble call, time it against a scipy.integrate."
                                   "solve_ivp loop on a sample, and plot the local maxima of z "
                                   "against rho (a bifurcation diagram).")
    p.add_argument("--n", type=_positive_int, default=10_000,
                   help="number of rho values (trajectories); default 10000")
    p.add_argument("--backend", default="auto", choices=("auto",) + BACKENDS,
                   help="gpuivp backend; default auto (the best usable one)")
    p.add_argument("--out", default="lorenz_bifurcation.png",
                   help="PNG to write; default lorenz_bifurcation.png")
    p.add_argument("--sample", type=int, default=20,
                   help="trajectories in the scipy loop (0 skips it); default 20")
    p.add_argument("--t-end", type=float, default=_demo.T_END,
                   help=f"end of the integration; maxima from t_end/2 on; "
                        f"default {_demo.T_END:g}")
    p.add_argument("--no-plot", action="store_true", help="skip the PNG")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("bench", help="each usable backend against a scipy loop",
                       description="Time each usable backend (first call with compilation, "
                                   "then a repeat) on a Lorenz ensemble, against a plain "
                                   "scipy.integrate.solve_ivp loop over a sample.")
    p.add_argument("--n", type=_positive_int, default=2000,
                   help="ensemble size; default 2000 (the scipy backend runs on the sample)")
    p.add_argument("--sample", type=_positive_int, default=40,
                   help="trajectories in the scipy loop; default 40")
    p.add_argument("--t-end", type=float, default=10.0, help="default 10")
    p.add_argument("--backend", default="all", choices=("all",) + BACKENDS,
                   help="one backend, or all (default)")
    p.set_defaults(func=cmd_bench)
    return parser


def main(argv=None):
    """Run the ``gpuivp`` command line; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is None:
        parser.print_help()
        return 0
    return args.func(args)
