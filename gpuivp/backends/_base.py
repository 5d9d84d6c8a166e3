"""What every backend shares: the unavailability and compile errors, the progress bar."""
from __future__ import annotations

import contextlib
import re

import numpy as np

from .._problem import to_numpy


class BackendUnavailable(RuntimeError):
    """A backend cannot run here (or cannot run this ``fun``); the message says why."""


class BackendFallbackWarning(UserWarning):
    """``backend="auto"`` left a faster backend for a slower one (usually because ``fun``
    did not compile for it); the message names the backend, the reason and what to change."""


#: What to change when ``fun`` does not compile, by a pattern of numba's reason.
_HINTS = (
    (r"scipy", "scipy functions do not compile: use NumPy/math functions (math.erf for "
               "scipy.special.erf), or keep backend='scipy'"),
    (r"Untyped global name|Cannot determine Numba type|Unknown attribute",
     "`fun` reads something numba cannot type (an object, a module attribute numba does "
     "not know): pass numbers and arrays through `args` or `gpuivp.shared`"),
    (r"try|except|Exception object",
     "numba compiles `try`/`except ... as e` only in its simplest forms: remove it from `fun`"),
    (r"context manager", "numba does not compile `with` blocks (np.errstate): remove "
                              "them; compiled code gives NaN/inf where NumPy would warn"),
    (r"KeyError: <ufunc", "this numba version has no GPU implementation of that NumPy "
                          "function: use the `math` module's (math.exp, math.sqrt) in `fun`"),
    (r"yield|generator", "numba does not compile generator expressions: use a loop"),
)
_GENERIC_HINT = ("write `fun` with NumPy functions on floats and arrays, returning a tuple "
                 "(no try/except, `with`, generators, **kwargs, Python objects or scipy "
                 "functions), or choose backend='numpy' with vectorized=True, or 'scipy'")


def one_line_reason(exc):
    """numba's many-line compile error as one informative line."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc))
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    skip = re.compile(r"^(Failed in .* pipeline|During: |File |\^|>|Raised from)")
    useful = [ln for ln in lines if not skip.match(ln)]
    line = (useful or lines or [""])[0]
    if len(line) > 300:
        line = line[:297] + "..."
    where = next((ln for ln in lines if ln.startswith("File ")), None)
    name = type(exc).__name__
    return f"{name}: {line}" + (f" ({where.rstrip(':')})" if where else "")


class FunCompileError(BackendUnavailable):
    """``fun`` (or an event function) could not be compiled for a backend.

    Attributes
    ----------
    backend : str
        The backend (``"numba"`` or ``"cuda"``).
    reason : str
        The compiler's reason, in one line.
    hint : str
        What to change.
    """

    backend = "numba"

    def __init__(self, reason, hint=None, backend=None):
        self.backend = backend or self.backend
        self.reason = reason
        self.hint = hint or next((h for pattern, h in _HINTS if re.search(pattern, reason)),
                                 _GENERIC_HINT)
        super().__init__(f"`fun` could not be compiled for {self.backend}: {reason}. "
                         f"Hint: {self.hint}.")

    @classmethod
    def from_exception(cls, exc):
        """The error for a compiler exception ``exc`` (of whatever class)."""
        if isinstance(exc, FunCompileError):
            return exc
        return cls(one_line_reason(exc))

    def copy(self):
        """A fresh exception with the same message (for re-raising a cached failure)."""
        return type(self)(self.reason, self.hint, self.backend)


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
