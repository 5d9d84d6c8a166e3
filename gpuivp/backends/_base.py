"""What every backend shares: the unavailability error and the progress bar."""
from __future__ import annotations

import contextlib

import numpy as np

from .._problem import to_numpy


class BackendUnavailable(RuntimeError):
    """A backend cannot run here (or cannot run this ``fun``); the message says why."""


def advance(bar, done):
    """Move tqdm ``bar`` to ``done`` whole trajectories, printing the final count only once:
    tqdm redraws the bar when it closes, so reaching the total is left to ``close``."""
    done = int(done)
    if done <= bar.n:
        return
    if done >= bar.total:
        bar.n = done          # drawn once, by bar.close()
    else:
        bar.update(done - bar.n)  # tqdm throttles the redraws (mininterval)


class _Bar:
    """Progress in whole trajectories: one counts when it has finished (any status)."""

    def __init__(self, problem):
        from tqdm.auto import tqdm

        self.bar = tqdm(total=problem.k, unit="traj", desc=f"gpuivp {problem.method}")

    def update_to(self, state):
        status = to_numpy(state.st_status if hasattr(state, "st_status") else state.status)
        advance(self.bar, np.count_nonzero(status < 10))  # >= 10: still running

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
