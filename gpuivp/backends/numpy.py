"""``numpy`` backend: the lockstep engine on NumPy arrays (needs a vectorized ``fun``)."""
from __future__ import annotations

import dataclasses

import numpy as np

from ..engines.lockstep import Lockstep
from ._base import progress_bar

NAME = "numpy"

#: The ensemble runs in blocks of columns whose ``(n, m)`` arrays hold about this many
#: values (160 KB in float64), one block after the other: each array operation then works
#: in the CPU's caches instead of on new memory. Columns are independent in lockstep, so the
#: results are those of one run. Measured on Lorenz-96 (n = 40, RK45, 2,000 trajectories):
#: 500 columns a block ran 1.3x faster than one block of 2,000 (benchmarks/RESULTS.md).
BLOCK_VALUES = 20_000
#: Fewer columns than this a block would make the per-operation overhead dominate.
MIN_BLOCK_COLUMNS = 256


def block_columns(problem):
    """Columns per lockstep run for ``problem`` (at least ``MIN_BLOCK_COLUMNS``)."""
    return max(MIN_BLOCK_COLUMNS, BLOCK_VALUES // max(problem.n, 1))


def unavailable_reason():
    return None


def solve(problem, tableau):
    size = block_columns(problem)
    if problem.progress or problem.dense_output or problem.k <= size:
        # (dense output: each block's buffers would grow to their own capacity)
        with progress_bar(problem) as bar, np.errstate(all="ignore"):
            return Lockstep(problem, tableau, np).run(bar)
    raws = []
    with np.errstate(all="ignore"):
        for a in range(0, problem.k, size):
            part = dataclasses.replace(problem.subset(np.arange(a, min(a + size, problem.k))),
                                       first=problem.first + a)
            raws.append(Lockstep(part, tableau, np).run())
    # Every field of the raw result has the trajectories on its last axis.
    return {key: None if value is None else np.concatenate([r[key] for r in raws], axis=-1)
            for key, value in raws[0].items()}
