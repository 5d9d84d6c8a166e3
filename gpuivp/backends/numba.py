"""``numba`` backend: the per-trajectory engine compiled with ``njit``, trajectories in ``prange``."""
from __future__ import annotations

import math

import numpy as np

from .._status import INIT
from ..engines.compile_cache import cached, fun_key, py_function
from ..engines.per_trajectory import EngineSource
from ..engines.runner import EngineState, slice_budget
from ._base import BackendUnavailable, progress_bar

NAME = "numba"
JIT_OPTIONS = dict(error_model="numpy", fastmath=False, nogil=True)


def unavailable_reason():
    try:
        import numba  # noqa: F401
    except ImportError as exc:
        return f"numba is not installed ({exc})"
    return None


class CompileError(BackendUnavailable):
    """numba could not compile the user's function (the message carries numba's reason)."""


def _driver(n_args):
    """``run(k, ...)``: every trajectory in ``prange``."""
    params = ", ".join(["y0", "ctrl", "iparams", "atol", "t_eval", "out_eval", "st_t", "st_h",
                        "st_err", "st_y", "st_f", "st_status", "st_cnt"]
                       + [f"arg{m}" for m in range(n_args)])
    return (f"def run(k, {params}):\n"
            f"    for i in prange(k):\n"
            f"        solve_one(i, {params})\n")


def compiled_engine(problem, tableau):
    """The njit-compiled ``run`` for this problem's specialisation (cached in-process)."""
    import numba

    fixed = problem.dt is not None
    key = (NAME, fun_key(problem.fun), tableau.name, problem.n, problem.arg_kinds,
           problem.dtype.str, fixed)

    def build():
        fun = numba.njit(**JIT_OPTIONS)(py_function(problem.fun))
        dtype = problem.dtype
        n = problem.n

        @numba.njit(**JIT_OPTIONS)
        def alloc_state():
            return np.empty(n, dtype)

        src = EngineSource(tableau, n, problem.arg_kinds, dtype, fixed, "cpu")
        solve_one = numba.njit(**JIT_OPTIONS)(
            src.build(fun=fun, alloc_state=alloc_state, nextafter=np.nextafter,
                      isfinite=math.isfinite, sqrt=math.sqrt))
        ns = {"prange": numba.prange, "solve_one": solve_one}
        exec(_driver(len(problem.arg_kinds)), ns)
        return numba.njit(parallel=True, **JIT_OPTIONS)(ns["run"])

    return cached(key, build)


def solve(problem, tableau):
    """Run the ensemble; returns the raw result dict."""
    import numba

    run = compiled_engine(problem, tableau)
    state = EngineState(problem, slice_budget(problem))
    with progress_bar(problem) as bar:
        while True:
            try:
                run(problem.k, *state.arrays())
            except numba.core.errors.TypingError as exc:
                raise CompileError(f"numba could not compile `fun`: {exc}") from exc
            bar.update_to(state)
            if not np.any(state.st_status >= INIT):
                break
    return state.raw()
