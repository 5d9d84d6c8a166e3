"""progress=True: one tqdm bar in whole trajectories, its final count printed once."""
import re

import numpy as np
import pytest

from gpuivp import solve_ivp

K = 60


def decay(t, y, a):
    return (-a * y[0],)


def frames(err):
    """The bar's successive renderings (tqdm separates them with carriage returns)."""
    return [f for f in re.split(r"[\r\n]+", err) if "traj" in f]


@pytest.mark.parametrize("backend,kw", [("numpy", {}), ("scipy", {}),
                                        ("numpy", dict(memory_budget=1))],
                         ids=["numpy", "scipy", "numpy-chunked"])
def test_progress_counts_whole_trajectories_and_prints_the_end_once(capsys, backend, kw):
    solve_ivp(decay, (0.0, 10.0), np.ones((1, K)), args=(np.linspace(1, 2, K),),
              backend=backend, vectorized=True, progress=True, **kw)
    shown = frames(capsys.readouterr().err)
    counts = [re.search(r"\| *([0-9.]+)/(\d+) ", f).group(1, 2) for f in shown]
    assert counts and all(re.fullmatch(r"\d+", done) and total == str(K)
                          for done, total in counts), counts
    assert [done for done, _ in counts].count(str(K)) == 1, counts
