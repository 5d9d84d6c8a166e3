"""What every backend shares: the unavailability error and the progress bar."""
from __future__ import annotations

import contextlib

import numpy as np

from .._problem import to_numpy


class BackendUnavailable(RuntimeError):
    """A backend cannot run here (or cannot run this ``fun``); the message says why."""


class _Bar:
    """Progress in trajectories: each counts by the fraction of its time span covered."""

    def __init__(self, problem):
        from tqdm.auto import tqdm

        self.span = abs(problem.t1 - problem.t0) or 1.0
        self.t0 = problem.t0
        self.bar = tqdm(total=problem.k, unit="traj", desc=f"gpuivp {problem.method}")

    def update_to(self, state):
        t = to_numpy(state.st_t if hasattr(state, "st_t") else state.t).astype(float)
        status = to_numpy(state.st_status if hasattr(state, "st_status") else state.status)
        done = np.where(status < 10, 1.0, np.clip(np.abs(t - self.t0) / self.span, 0.0, 1.0))
        self.bar.n = float(done.sum())
        self.bar.refresh()

    def close(self):
        self.bar.close()


class _NoBar:
    def update_to(self, state):
        pass

    def close(self):
        pass


@contextlib.contextmanager
def progress_bar(problem):
    """A tqdm bar when ``problem.progress`` is set, else a no-op."""
    bar = _Bar(problem) if problem.progress else _NoBar()
    try:
        yield bar
    finally:
        bar.close()
