"""Registers, stack frame and spills of the ``cuda`` backend's kernels, without a GPU.

Compiles the per-trajectory kernel for the Lorenz ensemble (3 states, args
sigma shared, rho per trajectory, beta shared) to PTX with numba.cuda's
``compile_ptx`` and runs ``ptxas -v`` on it::

    python benchmarks/ptxas_report.py [--arch sm_90] [--methods RK45,Tsit5] [--chain N]
                                      [--events] [--dense]
    python benchmarks/ptxas_report.py --reference [--arch sm_90]

``--reference`` sets the kernels of the GPU benchmark's cases (RK4, RK45, Tsit5 in float32
and float64) beside the hand-written CUDA C reference (``reference/lorenz_gpu.cu``, nvcc):
registers, and SASS instructions per step of the step loop (``reference/sass.py``; gpuivp's
kernel through ``ptxas`` of its PTX, as no GPU links it here).

``--chain N`` uses an N-state linear chain instead of Lorenz, to see where the
state stops fitting in registers. A non-zero stack frame means local memory
(state or stages not in registers); spill bytes mean registers ran out.
Needs numba-cuda and libNVVM; ptxas from the CUDA toolkit on PATH.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
import warnings

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

DEFAULT_METHODS = ("Euler", "Midpoint", "Heun", "RK4", "RK23", "RK45", "DOP853", "Tsit5")


def lorenz(t, y, sigma, rho, beta):
    return (sigma * (y[1] - y[0]), y[0] * (rho - y[2]) - y[1], y[0] * y[1] - beta * y[2])


def chain(n):
    """y_j' = y_{j-1} - w * y_j: an n-state right-hand side (generated source)."""
    terms = ["-w * y[0]"] + [f"y[{j - 1}] - w * y[{j}]" for j in range(1, n)]
    src = f"def chain(t, y, w):\n    return ({', '.join(terms)},)\n"
    ns = {}
    exec(src, ns)
    return ns["chain"]


def lorenz_event(t, y, sigma, rho, beta):
    return y[2] - rho


lorenz_event.terminal = True


def chain_event(t, y, w):
    return y[0] - 0.5


def problem(method, dtype, n_chain=None, events=False, dense=False):
    import dataclasses

    from gpuivp import _problem as P
    from gpuivp.methods import METHODS

    dtype = np.dtype(dtype)
    k = 4
    if n_chain:
        fun, n, args = chain(n_chain), n_chain, (np.linspace(0.5, 2.0, k),)
    else:
        fun, n, args = lorenz, 3, (10.0, np.linspace(0.5, 20.0, k), 8.0 / 3.0)
    values, kinds, k = P.ensemble_args(args, k, dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rtol, atol = P.check_tol(1e-6, 1e-9, n, dtype)
    dt = None if METHODS[method].adaptive else 0.01
    p = P.Problem(fun=fun, t0=0.0, t1=1.0, y0=np.ones((n, k), dtype), args=values,
                  arg_kinds=kinds, t_eval=None, rtol=rtol, atol=atol, first_step=None,
                  max_step=np.inf, dt=dt, max_steps=1000, dtype=dtype, vectorized=False,
                  method=method)
    if events:
        funs, spec, max_events = P.check_events([chain_event if n_chain else lorenz_event],
                                                None)
        p = dataclasses.replace(p, events=funs, event_spec=spec, max_events=max_events)
    if dense:
        p = dataclasses.replace(p, dense_output=True, dense_max_steps=1000)
    return p, METHODS[method]


#: The GPU benchmark's cases, which the CUDA C reference implements.
REFERENCE_CASES = tuple((m, d) for m in ("RK4", "RK45", "Tsit5") for d in ("float32", "float64"))


def reference_resources(arch="sm_90", sass_counts=True):
    """The CUDA C reference's kernels for ``arch`` (nvcc, ``ptxas -v``): per case of
    :data:`REFERENCE_CASES`, ``registers``, ``stack``, ``spill_stores`` and, with
    ``sass_counts``, ``sass`` (instructions per step of the step loop)."""
    from reference import build, sass

    path, log = build.nvcc_compile(arch, "cubin", extra=("-Xptxas", "-v"))
    found = build.parse_ptxas_log(log)
    out = {}
    for case in REFERENCE_CASES:
        name = build.GPU_KERNELS[case]
        out[case] = dict(found[name])
        if sass_counts:
            out[case]["sass"] = sass.loop_count(path, name)["instructions"]
    return out


def kernel_resources(ptx, arch="sm_90", sass_counts=True):
    """gpuivp's kernel from its PTX: ``ptxas -v`` figures (``registers``, ``stack`` (the
    largest frame), ``spill_stores``, ``spill_loads``) and, with ``sass_counts``, ``sass``
    (instructions per step of the step loop of ptxas's cubin)."""
    from reference import sass

    from gpuivp.backends import cuda as cb

    r = cb.ptxas_resources(ptx, arch=arch, ptxas=shutil.which("ptxas") or "ptxas")
    out = dict(registers=r["registers"], stack=r["max_stack"], spill_stores=r["spill_stores"],
               spill_loads=r["spill_loads"])
    if sass_counts:
        out["sass"] = sass.loop_count(sass.ptx_to_cubin(ptx, arch))["instructions"]
    return out


def print_reference(arch):
    """The ``--reference`` table (markdown)."""
    from gpuivp.backends import cuda as cb

    cc = (int(arch[3:-1]), int(arch[-1]))
    ref = reference_resources(arch)
    print(f"# Lorenz, {arch}: gpuivp's cuda kernel against the CUDA C reference (nvcc -O3)")
    head = ("method", "dtype", "registers", "reference", "ratio", "stack / spill B",
            "SASS per step", "reference", "ratio")
    print("| " + " | ".join(head) + " |")
    print("|" + "|".join(["---"] * len(head)) + "|")
    for method, dtype in REFERENCE_CASES:
        p, tab = problem(method, dtype)
        mine = kernel_resources(cb.kernel_ptx(p, tab, cc=cc), arch)
        theirs = ref[method, dtype]
        row = (method, dtype, mine["registers"], theirs["registers"],
               f"{mine['registers'] / theirs['registers']:.2f}",
               f"{mine['stack']} / {mine['spill_stores']}", f"{mine['sass']:g}",
               f"{theirs['sass']:g}", f"{mine['sass'] / theirs['sass']:.3f}")
        print("| " + " | ".join(str(c) for c in row) + " |", flush=True)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--arch", default="sm_90", help="ptxas target (default sm_90)")
    ap.add_argument("--methods", default=",".join(DEFAULT_METHODS))
    ap.add_argument("--dtypes", default="float32,float64")
    ap.add_argument("--chain", type=int, default=None, help="N-state chain instead of Lorenz")
    ap.add_argument("--events", action="store_true", help="with a terminal event function")
    ap.add_argument("--dense", action="store_true", help="with dense output")
    ap.add_argument("--reference", action="store_true",
                    help="the benchmark's cases beside the CUDA C reference (needs nvcc)")
    opts = ap.parse_args(argv)
    if opts.reference:
        print_reference(opts.arch)
        return

    from gpuivp.backends import cuda as cb

    ptxas = shutil.which("ptxas")
    cc = (int(opts.arch[3:-1]), int(opts.arch[-1]))
    what = f"{opts.chain}-state chain" if opts.chain else "Lorenz (n=3)"
    what += "".join(f", {f}" for f in ("events", "dense") if getattr(opts, f))
    print(f"# {what}, {opts.arch}, ptxas: {ptxas or 'not found'}")
    head = ("method", "dtype", "regs", "stack B", "spill st B", "spill ld B", "f64 arith",
            "compile s")
    print("| " + " | ".join(head) + " |")
    print("|" + "|".join(["---"] * len(head)) + "|")
    for method in opts.methods.split(","):
        for dtype in opts.dtypes.split(","):
            t = time.perf_counter()
            p, tab = problem(method, dtype, opts.chain, opts.events, opts.dense)
            ptx = cb.kernel_ptx(p, tab, cc=cc)
            secs = time.perf_counter() - t
            f64 = sum(cb.f64_instructions(ptx).values())
            if ptxas:
                r = cb.ptxas_resources(ptx, arch=opts.arch, ptxas=ptxas)
                cols = (r["registers"], r["max_stack"], r["spill_stores"], r["spill_loads"])
            else:
                cols = ("-",) * 4
            row = (method, dtype) + tuple(cols) + (f64, f"{secs:.1f}")
            print("| " + " | ".join(str(c) for c in row) + " |", flush=True)


if __name__ == "__main__":
    main()
