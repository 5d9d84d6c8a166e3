"""Output buffers shared by every engine and backend: events and dense output.

Trajectory index last, as everywhere in the engines (coalesced on the GPU).
"""
from __future__ import annotations

import numpy as np


def event_buffers(xp, problem, dtype):
    """Stored events: ``ev_t`` (n_ev, max_events, k) and ``ev_y`` (n_ev, max_events, n, k),
    NaN where nothing is stored, and the true counts ``ev_cnt`` (n_ev, k)."""
    n_ev, m, n, k = len(problem.events), problem.max_events, problem.n, problem.k
    return dict(ev_t=xp.full((n_ev, m, k), np.nan, dtype=dtype),
                ev_y=xp.full((n_ev, m, n, k), np.nan, dtype=dtype),
                ev_cnt=xp.zeros((n_ev, k), dtype=np.int64))


class DenseBuffers:
    """Growable per-step interpolant storage, trajectory index last.

    ``dn_t`` (cap + 1, k): step boundaries; ``dn_h`` (cap, k): step sizes;
    ``dn_c`` (cap, 1 + rows, n, k): ``y_old`` then the coefficient rows (``rows`` = 0 when
    the engine records steps only, ``Problem.record_steps``: one row, the step's ``y_old``).
    """

    INITIAL = 16

    def __init__(self, xp, n, k, n_rows, dtype, t0, capacity=INITIAL):
        self.xp = xp
        self.dn_t = xp.full((capacity + 1, k), np.nan, dtype=dtype)
        self.dn_t[0] = t0
        self.dn_h = xp.full((capacity, k), np.nan, dtype=dtype)
        self.dn_c = xp.full((capacity, 1 + n_rows, n, k), np.nan, dtype=dtype)

    @property
    def capacity(self):
        return self.dn_h.shape[0]

    def grow(self, capacity, dense_max_steps=None):
        """Room for ``capacity`` steps per trajectory. Storage that would not fit in the
        available host memory (or a failed allocation) is a ``gpuivp.MemoryBudgetError``
        saying to lower ``dense_max_steps`` or use ``t_eval``."""
        from .._chunking import check_dense_growth, dense_error

        xp, old = self.xp, self.capacity
        if capacity <= old:
            return
        arrays = [getattr(self, name) for name in ("dn_t", "dn_h", "dn_c")]
        nbytes = sum(a.nbytes for a in arrays)
        k = arrays[0].shape[-1]
        new = nbytes // max(old, 1) * capacity
        if xp is np:
            check_dense_growth(nbytes, nbytes + new, k, capacity, dense_max_steps)
        try:
            for name, a in zip(("dn_t", "dn_h", "dn_c"), arrays):
                extra = xp.full((capacity - old,) + a.shape[1:], np.nan, dtype=a.dtype)
                setattr(self, name, xp.concatenate([a, extra]))
        except MemoryError as exc:
            raise dense_error(new, k, capacity, dense_max_steps) from exc

    def store(self, slot, idx, t_end, h, y_old, rows):
        self.dn_t[slot + 1, idx] = t_end
        self.dn_h[slot, idx] = h
        self.dn_c[slot, 0, :, idx] = y_old.T
        for r, row in enumerate(rows):
            self.dn_c[slot, 1 + r, :, idx] = row.T

    def raw(self):
        return dict(dn_t=self.dn_t, dn_h=self.dn_h, dn_c=self.dn_c)
