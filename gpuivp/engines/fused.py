"""The lockstep engine with its stepper arithmetic fused into raw kernels (``cupy`` backend).

Every trajectory steps together as in :class:`~gpuivp.engines.lockstep.Lockstep`, but
nothing between two calls of the user's vectorized ``fun`` is array code: the step size,
each stage's input, the error norm and controller, the interpolation onto ``t_eval`` and
the commit of accepted steps are the kernels of ``kernels/lockstep.cu``, one thread per
trajectory. ``fun`` is called on all columns every step (a column that does not
step gets ``h = 0`` and its result is ignored), so no step needs to know on the host
which columns still run: the host checks only every :attr:`CHECK_EVERY` steps. Once at
most :attr:`COMPACT_BELOW` of the columns still run (and there are at least
:attr:`COMPACT_MIN`), the engine *compacts*: it gathers the running columns (state,
``t_eval`` output, per-trajectory args) into narrower arrays and carries on with those,
so one slow trajectory does not keep ``fun`` and the kernels at the full width; the
finished columns go back into the full arrays then and at the end. A column's arithmetic
does not depend on the width, so compaction does not change results. The kernels do the
numpy engine's arithmetic operation by operation, so both
take the same steps.

The kernels are launched through a *launcher*, ``launch(name, size, *args)``, with the
arguments in the order of the kernel's C++ signature: :class:`~gpuivp.backends.cupy`'s
compiles them with NVRTC through CuPy; ``tests/host_kernels.py`` builds the same source as
host C++ and runs it on NumPy arrays, which is how CI checks these kernels without a GPU.

Events and dense output are not fused: with either, the ``cupy`` backend runs the array
code of :class:`Lockstep` on CuPy arrays (a host synchronisation per step).
"""
from __future__ import annotations

import collections
import dataclasses
import re
from importlib import resources
from pathlib import Path

import numpy as np

from .. import _status
from ..methods import CONTROLLER
from .lockstep import Lockstep

#: The kernel source file, in ``kernels/`` (``gpuivp.kernels`` when installed).
SOURCE = "lockstep.cu"
#: Status codes the kernels use, prepended to the source as macros.
STATUS_MACROS = ("RUNNING", "REJECTED", "FAIL_STEP", "FAIL_MAXSTEPS", "FAIL_NONFINITE")
#: NumPy type of each integer C++ type of a kernel parameter (scalar or pointee; T: the dtype).
INT_TYPES = {"int": np.int32, "i64": np.int64}
#: The C++ type of each dtype.
C_TYPES = {"float32": "float", "float64": "double"}


def kernel_source():
    """The kernel source as one string: status and controller macros, then
    ``kernels/lockstep.cu``.

    Found in the installed package (``gpuivp.kernels``), else in the checkout's
    ``kernels/`` folder. Nothing is ``#include``-d from disk, so CuPy's cache, which
    hashes the code string, sees every change.
    """
    try:
        text = resources.files("gpuivp.kernels").joinpath(SOURCE).read_text()
    except (ModuleNotFoundError, FileNotFoundError):
        text = (Path(__file__).resolve().parents[2] / "kernels" / SOURCE).read_text()
    macros = "".join(f"#define GPUIVP_{name} {getattr(_status, name)}\n" for name in STATUS_MACROS)
    return macros + CONTROLLER.macros() + text


@dataclasses.dataclass(frozen=True)
class Param:
    name: str
    ctype: str       # "T", "int" or "i64"
    pointer: bool
    decl: str        # as written, e.g. "const T* t"


@dataclasses.dataclass(frozen=True)
class KernelSig:
    name: str
    templates: tuple  # ("T",) or ("T", "NK")
    params: tuple     # of Param

    def instance(self, dtype, nk):
        """The C++ name of this kernel's instantiation for ``dtype`` and ``nk``."""
        values = {"T": C_TYPES[np.dtype(dtype).name], "NK": str(nk)}
        return f"{self.name}<{', '.join(values[t] for t in self.templates)}>"

    def declarations(self, dtype):
        """The parameter declarations with ``T`` spelled out for ``dtype``."""
        ctype = C_TYPES[np.dtype(dtype).name]
        return ", ".join(re.sub(r"\bT\b", ctype, p.decl) for p in self.params)

    def explicit_instantiation(self, dtype, nk):
        """``template __global__ void name<...>(...);`` for ``dtype`` and ``nk``."""
        return f"template __global__ void {self.instance(dtype, nk)}({self.declarations(dtype)});"


_KERNEL = re.compile(r"template\s*<([^>]*)>\s*__global__\s+void\s+(\w+)\s*\(([^)]*)\)", re.S)


def kernel_signatures(source=None):
    """Every ``__global__`` kernel of the source: name, template parameters and parameters."""
    source = kernel_source() if source is None else source
    sigs = {}
    for m in _KERNEL.finditer(source):
        templates = tuple(t.split()[-1] for t in m.group(1).split(","))
        params = []
        for raw in m.group(3).split(","):
            decl = " ".join(raw.replace("const", " ").split())
            pointer = "*" in decl
            ctype, name = decl.replace("*", " ").split()
            params.append(Param(name, ctype, pointer, " ".join(raw.split())))
        sigs[m.group(2)] = KernelSig(m.group(2), templates, tuple(params))
    return sigs


def scalar_args(sig, dtype, args):
    """``args`` with every scalar converted to the C++ type of its parameter."""
    if len(args) != len(sig.params):
        raise TypeError(f"{sig.name} takes {len(sig.params)} arguments, got {len(args)}")
    out = []
    for p, a in zip(sig.params, args):
        if p.pointer:
            want = np.dtype(dtype) if p.ctype == "T" else np.dtype(INT_TYPES[p.ctype])
            if a.dtype != want or not a.flags.c_contiguous:
                raise TypeError(f"{sig.name}: `{p.name}` must be a C-contiguous {want} array, "
                                f"got {a.dtype} {a.shape}")
            out.append(a)
        else:
            out.append(np.dtype(dtype).type(a) if p.ctype == "T" else INT_TYPES[p.ctype](a))
    return out


_Progress = collections.namedtuple("_Progress", ["t", "status"])


def _padded(values, size, dtype):
    out = np.zeros(size, dtype=np.float64)
    values = np.asarray(values, dtype=np.float64).ravel()
    out[:len(values)] = values
    return out.astype(dtype)


class FusedLockstep(Lockstep):
    """One ensemble run with the stepper in raw kernels; ``launch`` runs them.

    Parameters
    ----------
    problem, tableau
        As for :class:`Lockstep`; no events and no dense output.
    xp : module
        The array namespace of ``launch``'s arrays (``cupy``; ``numpy`` for the host build).
    launch : callable
        ``launch(name, nk, size, *args)`` runs kernel ``name`` instantiated for this
        problem's dtype and ``nk`` stage rows on ``size`` threads.
    """

    #: Steps between two checks on the host whether any trajectory still runs.
    CHECK_EVERY = 8
    #: Compact to the running columns once at most this fraction of the current width runs,
    COMPACT_BELOW = 0.5
    #: if the current width is at least this (narrowing small launches gains nothing).
    COMPACT_MIN = 4096
    #: Per-column state gathered and scattered by compaction (trajectory axis last).
    COLUMN_STATE = ("t", "h_abs", "err", "status", "nfev", "nacc", "nrej", "ie", "y")

    def __init__(self, problem, tableau, xp, launch):
        if problem.events or problem.dense_output:
            raise ValueError("FusedLockstep runs without events and dense output")
        super().__init__(problem, tableau, xp)
        p, tab, dt = problem, tableau, self.dtype
        n, k, S = p.n, p.k, tab.n_stages
        self.launch = launch
        self.nk = nk = tab.n_k
        self.combined = int(tab.combined_error)
        self.alternating = int(tab.interpolant.alternating)
        self.K = xp.zeros((nk, n, k), dtype=dt)
        self.ys, self.y_new = xp.zeros((n, k), dtype=dt), xp.zeros((n, k), dtype=dt)
        self.ts, self.h, self.t_new = (xp.zeros(k, dtype=dt) for _ in range(3))
        self.live = xp.zeros(k, dtype=np.int32)
        self.accept = xp.zeros(k, dtype=np.int32)
        self.width, self.cols, self.full = k, None, None
        dev = lambda a: xp.asarray(np.ascontiguousarray(a))  # noqa: E731
        # One coefficient row per stage input: a's rows, b, the interpolant's extra stages.
        rows = [(s, tab.a[s, :s], tab.c[s]) for s in range(1, S)] + [(S, tab.b, 1.0)]
        if tab.n_extra and self.n_eval:
            rows += [(S + 1 + r, arow, cx) for r, (arow, cx) in
                     enumerate(zip(tab.a_extra, tab.c_extra))]
        self.rows = [(s, dev(_padded(a, nk, dt)), c) for s, a, c in rows]
        estimates = [tab.e, tab.e_low] if tab.combined_error else [tab.e]
        self.e = dev(np.concatenate([_padded(v if v is not None else [], nk, dt)
                                     for v in estimates]))
        self.P = dev(tab.interpolant.p.astype(dt))       # (nk, n_rows)
        self.dy = dev(tab.interpolant.dy.astype(dt))     # (n_rows,)
        self.n_rows = tab.n_interp_rows
        self.atol_vec = dev(np.asarray(p.atol, dtype=dt))
        self.t_eval_dev = self.t_eval if self.n_eval else xp.zeros(1, dtype=dt)
        self.out_dev = self.out_eval if self.n_eval else xp.zeros(1, dtype=dt)

    def fun_into(self, t, y, out):
        """The user's ``fun`` on every column, written into ``out`` (n, k)."""
        r = self.p.fun(t, y, *self.args)
        if len(r) != self.p.n:
            raise ValueError(f"`fun` returned {len(r)} values: expected n={self.p.n}.")
        for j, v in enumerate(r):
            out[j] = v

    def step(self):
        """One attempt for every running column, without a host synchronisation."""
        p, tab, c, L, nk = self.p, self.tab, self.c, self.launch, self.nk
        n, k, S, d = p.n, self.width, tab.n_stages, c(self.direction)
        K = self.K
        L("gpuivp_prepare", nk, k, k, int(self.fixed), d, p.t0, p.t1, p.dt or 0.0, p.max_step,
          p.max_steps, p.n_fixed, self.t, self.h_abs, self.err, self.status, self.nacc,
          self.nrej, self.h, self.t_new, self.live)
        for s, coef, cs in self.rows:  # DOP853's extra stages (after b) read no control state
            out = self.y_new if s == S else self.ys
            L("gpuivp_stage", nk, k, n, k, s, coef, K, self.y, self.h, self.t, cs, out, self.ts)
            self.fun_into(self.ts, out, K[s])
        L("gpuivp_control", nk, k, n, k, int(self.fixed), self.combined, S, self.e, self.atol_vec,
          p.rtol, tab.error_exponent if tab.adaptive else 0.0, p.n ** 0.5, p.n, K, self.y,
          self.y_new, self.h, self.live, self.status, self.err, self.h_abs, self.nrej, self.nfev,
          self.accept)
        L("gpuivp_commit", nk, k, n, k, int(self.fixed), self.alternating, S, tab.n_extra,
          self.n_rows, self.P, self.dy, self.n_eval, self.t_eval_dev, d, p.t1, p.n_fixed, K, self.y,
          self.y_new, K[0], self.t, self.t_new, self.h, self.accept, self.ie, self.out_dev,
          self.nacc, self.status, self.nfev)

    def run(self, bar=None):
        xp, p = self.xp, self.p
        self.initialise()
        self.K[0] = self.f           # K[0] is f from here on: commit writes it
        self.f = self.K[0]
        # Every step is one attempt of each running column, and a column stops after
        # max_steps attempts: the loop cannot outlast this bound.
        limit = p.max_steps + self.CHECK_EVERY + 2
        steps = 0
        while True:
            running = self.status >= _status.RUNNING
            still = int(xp.count_nonzero(running))  # the host's one look at the device
            if not still:
                break
            if self.width >= self.COMPACT_MIN and still <= self.COMPACT_BELOW * self.width:
                self.compact(running)
            if steps > limit:  # pragma: no cover - a bug, never a hang
                raise RuntimeError(f"gpuivp fused lockstep: trajectories still running after "
                                   f"{steps} steps (max_steps={p.max_steps}); please report.")
            for _ in range(self.CHECK_EVERY):
                self.step()
            steps += self.CHECK_EVERY
            if bar is not None:
                bar.update_to(self.progress())
        self.expand()
        return self.raw()

    # -- compaction ---------------------------------------------------------------------
    def _column_arrays(self):
        """``{name: array}`` of the per-column state, trajectory axis last."""
        arrays = {name: getattr(self, name) for name in self.COLUMN_STATE}
        arrays["f"] = self.K[0]
        if self.n_eval:
            arrays["out_eval"] = self.out_eval
        return arrays

    def _scatter(self):
        """The working columns' state into the full arrays."""
        for name, a in self._column_arrays().items():
            self.full[name][..., self.cols] = a

    def compact(self, running):
        """Carry on with the columns where ``running`` (a mask over the current width)."""
        xp, p = self.xp, self.p
        if self.full is None:  # first compaction: the current arrays are the full ones
            self.full = {name: a for name, a in self._column_arrays().items()}
            self.full["args"] = self.args
            self.cols = xp.arange(p.k)
        else:
            self._scatter()
        self.cols = self.cols[xp.flatnonzero(running)]
        self._gather()

    def _gather(self):
        xp, p, cols = self.xp, self.p, self.cols
        m = int(cols.shape[0])
        take = lambda a: xp.ascontiguousarray(a[..., cols])  # noqa: E731
        for name in self.COLUMN_STATE:
            setattr(self, name, take(self.full[name]))
        self.K = xp.zeros((self.nk, p.n, m), dtype=self.dtype)
        self.K[0] = self.full["f"][..., cols]
        self.f = self.K[0]
        if self.n_eval:
            self.out_eval = self.out_dev = take(self.full["out_eval"])
        self.args = tuple(take(a) if kind.startswith("traj") else a
                          for a, kind in zip(self.full["args"], p.arg_kinds))
        self.ys, self.y_new = (xp.zeros((p.n, m), dtype=self.dtype) for _ in range(2))
        self.ts, self.h, self.t_new = (xp.zeros(m, dtype=self.dtype) for _ in range(3))
        self.live, self.accept = (xp.zeros(m, dtype=np.int32) for _ in range(2))
        self.width = m

    def expand(self):
        """Back to the full arrays (after a compaction), with every column's final state."""
        if self.full is None:
            return
        self._scatter()
        for name in self.COLUMN_STATE:
            setattr(self, name, self.full[name])
        if self.n_eval:
            self.out_eval = self.out_dev = self.full["out_eval"]
        self.args = self.full["args"]
        self.full, self.cols, self.width = None, None, self.p.k

    def progress(self):
        """What the progress bar reads (``t``, ``status``) over every column."""
        if self.full is None:
            return self
        t, status = self.full["t"].copy(), self.full["status"].copy()
        t[..., self.cols], status[..., self.cols] = self.t, self.status
        return _Progress(t, status)
