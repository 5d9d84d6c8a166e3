"""Throughput against ensemble size, below and well above the chunking threshold.

The Lorenz sweep of ``benchmarks/reference/problem.py`` (rho = linspace(0, 28, k), RK45,
rtol = 1e-6, atol = 1e-8), here over t in [0, 2] (``--t1``) with ``--n-eval`` output times,
solved by one backend at growing ``k``. The memory budget is set so that one chunk holds
``--chunk`` trajectories: every larger ensemble is solved in chunks along ``k``. Each size is
also solved in one piece (a budget far above it) for comparison, unless ``--no-compare``. If
chunking costs nothing, trajectories per second stay flat past the threshold and the CPU
seconds of the two agree (CPU ratio 1).

On the ``cuda`` backend the chunks are pipelined over two CUDA streams (transfers of one chunk
overlap the compute of the next; the budget holds two chunks, so it is set to twice
``--chunk`` trajectories). Each chunked size is then also solved with the overlap switched off
(``gpuivp.backends.cuda.OVERLAP = False``: chunks one after the other, synchronous copies),
and the last column is the overlap's speedup, unless ``--no-overlap-compare``.

Usage::

    python benchmarks/scale.py                      # numba, k up to 1e6 (1-2 minutes)
    python benchmarks/scale.py --quick              # a few seconds
    python benchmarks/scale.py --backend numpy --json scale.json
    python benchmarks/scale.py --backend cuda --n-eval 201   # on a GPU: overlap on vs off
"""
from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import math
import os
import platform
import sys
import time
from pathlib import Path
from unittest import mock

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import gpuivp  # noqa: E402
import gpuivp._ivp as ivp  # noqa: E402
from benchmarks.reference.problem import ATOL, BETA, RTOL, SIGMA, Y0, lorenz, rho_sweep  # noqa
from gpuivp import _chunking  # noqa: E402

FULL_SIZES = (1_000, 4_000, 16_000, 64_000, 256_000, 1_000_000)
QUICK_SIZES = (2_000, 8_000, 32_000)
MIN_SECONDS = 0.5  # small sizes repeat until this much time is spent, the best run counts


def solve(k, args, memory_budget, overlap=True):
    rho = rho_sweep(k)
    with overlapping(args.backend, overlap):
        return gpuivp.solve_ivp(lorenz, (0.0, args.t1), np.array(Y0)[:, None],
                                args=(SIGMA, rho, BETA), rtol=RTOL, atol=ATOL,
                                t_eval=np.linspace(0.0, args.t1, args.n_eval),
                                backend=args.backend, vectorized=True,
                                memory_budget=memory_budget)


@contextlib.contextmanager
def overlapping(backend, overlap):
    """The cuda backend's chunk pipeline switched on or off (other backends: no effect)."""
    if backend != "cuda" or overlap:
        yield
        return
    from gpuivp.backends import cuda

    saved, cuda.OVERLAP = cuda.OVERLAP, False
    try:
        yield
    finally:
        cuda.OVERLAP = saved


def bytes_per_trajectory(args):
    """The chunker's estimate for this problem (the Problem captured from a tiny solve)."""
    with mock.patch.object(ivp, "_run", wraps=ivp._run) as run:
        solve(1, args, None)
    return _chunking.bytes_per_trajectory(run.call_args.args[0], args.backend)


def measure(k, args, budgets):
    """The best (wall, CPU) seconds of solving ``k`` trajectories under each budget (bytes,
    or ``(bytes, overlap)`` to switch the cuda backend's chunk pipeline).

    The budgets take turns in the order A B B A A B ... (at least ``--rounds`` rounds, more
    until ``MIN_SECONDS`` per budget is spent), so that drift and order effects hit them alike.
    CPU time (this process, all threads) is reported too: on a shared machine it is less
    disturbed by other processes than wall time.
    """
    best = [(math.inf, math.inf)] * len(budgets)
    spent, rounds, order = 0.0, 0, list(range(len(budgets)))
    while rounds < args.rounds or spent < MIN_SECONDS * len(budgets):
        for i in order:
            t, c = time.perf_counter(), time.process_time()
            budget, overlap = budgets[i] if isinstance(budgets[i], tuple) else (budgets[i], True)
            res = solve(k, args, budget, overlap)
            run = (time.perf_counter() - t, time.process_time() - c)
            best[i], spent = min(best[i], run), spent + run[0]
            assert res.y.shape == (3, k, args.n_eval) and res.success, res.message
        order.reverse()
        rounds += 1
    return best


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backend", default="numba", help="gpuivp backend (default numba)")
    parser.add_argument("--quick", action="store_true", help="small sizes, a few seconds")
    parser.add_argument("--sizes", type=lambda s: [int(float(v)) for v in s.split(",")],
                        help="comma-separated ensemble sizes (overrides the defaults)")
    parser.add_argument("--chunk", type=int, help="trajectories per chunk past the threshold "
                        "(default 32768, quick 4096)")
    parser.add_argument("--t1", type=float, default=2.0,
                        help="end time (default 2; the reference problem's is 10)")
    parser.add_argument("--n-eval", type=int, default=51, help="output times per trajectory")
    parser.add_argument("--rounds", type=int, default=2,
                        help="runs per size and budget at least (the best counts)")
    parser.add_argument("--no-compare", dest="compare", action="store_false",
                        help="skip the one-piece runs")
    parser.add_argument("--no-overlap-compare", dest="overlap_compare", action="store_false",
                        help="cuda: skip the chunked runs with the stream overlap switched off")
    parser.add_argument("--json", metavar="PATH", help="also write the rows as JSON")
    args = parser.parse_args(argv)
    sizes = args.sizes or (QUICK_SIZES if args.quick else FULL_SIZES)
    args.chunk = args.chunk or (4096 if args.quick else 32768)

    solve(8, args, None)  # compile
    per_traj = bytes_per_trajectory(args)
    # Chunks resident at once (2 on cuda, whose chunks overlap): the budget holds them all.
    resident = _chunking.RESIDENT.get(args.backend, 1)
    budget = resident * args.chunk * per_traj
    no_overlap = args.backend == "cuda" and args.overlap_compare
    print(f"gpuivp {args.backend}: Lorenz sweep, RK45, t in [0, {args.t1:g}], "
          f"{args.n_eval} output times; {per_traj} B/trajectory estimated, "
          f"memory_budget = {budget / 2**20:.1f} MiB = {args.chunk} trajectories per chunk"
          + (f" ({resident} chunks resident)" if resident > 1 else ""))
    header = f"{'k':>9} {'chunks':>6} {'wall s':>8} {'traj/s':>9} {'CPU s':>8}"
    if args.compare:
        header += f" | {'1-piece wall s':>14} {'traj/s':>9} {'CPU s':>8} | {'CPU ratio':>9}"
    if no_overlap:
        header += f" | {'no-overlap wall s':>17} {'traj/s':>9} | {'overlap gain':>12}"
    print(header)
    rows = []
    meta = dict(backend=args.backend, t1=args.t1, n_eval=args.n_eval, chunk=args.chunk,
                rounds=args.rounds, resident_chunks=resident,
                bytes_per_trajectory=per_traj, memory_budget=budget,
                machine=platform.machine(), processor=platform.processor(),
                cpus=os.cpu_count(), numpy=np.__version__,
                date=datetime.datetime.now().isoformat(timespec="seconds"))

    def write(partial):
        """The JSON after every row: a run stopped by a time limit keeps what it measured."""
        if args.json:
            Path(args.json).write_text(json.dumps(dict(meta=meta, rows=rows, partial=partial,
                                                       sizes=sizes), indent=2))

    write(True)
    for k in sizes:
        chunks = math.ceil(k / args.chunk) if k * per_traj > budget else 1
        configs = [budget] + [1 << 50] * args.compare + [(budget, False)] * no_overlap
        (wall, cpu), *others = measure(k, args, configs)
        row = dict(k=k, chunks=chunks, seconds=wall, traj_per_s=k / wall, cpu_seconds=cpu)
        line = f"{k:>9} {chunks:>6} {wall:>8.3f} {k / wall:>9.0f} {cpu:>8.3f}"
        if args.compare:
            wall1, cpu1 = others.pop(0)
            row.update(seconds_one_piece=wall1, traj_per_s_one_piece=k / wall1,
                       cpu_seconds_one_piece=cpu1)
            line += f" | {wall1:>14.3f} {k / wall1:>9.0f} {cpu1:>8.3f} | {cpu / cpu1:>9.2f}"
        if no_overlap:
            wall0, cpu0 = others.pop(0)
            row.update(seconds_no_overlap=wall0, traj_per_s_no_overlap=k / wall0,
                       cpu_seconds_no_overlap=cpu0, overlap_gain=wall0 / wall)
            line += f" | {wall0:>17.3f} {k / wall0:>9.0f} | {wall0 / wall:>11.2f}x"
        print(line, flush=True)
        rows.append(row)
        write(True)
    write(False)


if __name__ == "__main__":
    main()
