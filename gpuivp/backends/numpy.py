"""``numpy`` backend: the lockstep engine on NumPy arrays (needs a vectorized ``fun``)."""
from __future__ import annotations

import numpy as np

from ..engines.lockstep import Lockstep
from ._base import progress_bar

NAME = "numpy"


def unavailable_reason():
    return None


def solve(problem, tableau):
    with progress_bar(problem) as bar, np.errstate(all="ignore"):
        return Lockstep(problem, tableau, np).run(bar)
