"""Noticing stiffness: one diagnostic after the run, the same for every backend.

An explicit method on a stiff problem is held by stability, not accuracy: its steps settle
where ``h rho(J)`` (step size times the spectral radius of ``df/dy``) sits at the method's
real stability boundary (:attr:`Tableau.stability_boundary`: 3.31 for RK45), and it spends
``max_steps`` crawling. Hairer's DOPRI5 notices this inside the step loop, from ``rho``
estimated out of two stages at the same ``t``. Here it is noticed after the run instead, from
what every backend already returns, for three reasons: it enters through one place rather
than a branch in each engine (numba and CUDA generators, lanes, NumPy and CuPy lockstep, the
CUDA C++ kernels); it costs the engines nothing on the runs that do not need it (no extra
work or state per step); and it looks at exactly the trajectories the user has to act on.

For the trajectories that failed with ``max_steps`` (status -2) or a step below the minimum
(-1), and, on a successful run, those that took at least :data:`WARN_MIN_STEPS` steps, at most
:data:`SAMPLE` of them are examined: ``rho(J)`` at their final state by a few power iterations
on finite differences of the user's ``fun`` (vectorised over the sample when ``fun`` is),
``h`` as the mean accepted step (span covered over accepted steps). A trajectory looks stiff
when ``h rho`` lies within :data:`BAND` of the boundary: steps limited by accuracy alone sit far
below it, and a blow-up (``y' = y^2``) far above it (the final state's ``rho`` is huge).
Failures get a sentence in ``message``; a successful run gets one :class:`StiffnessWarning`.
"""
from __future__ import annotations

import warnings

import numpy as np

from ._status import FAIL_MAXSTEPS, FAIL_STEP, SUCCESS

#: Trajectories examined at most (an evenly spaced sample of the candidates).
SAMPLE = 32
#: Power iterations for ``rho(J)`` (each one more evaluation of ``fun`` per trajectory).
POWER_ITERATIONS = 16
#: The last iterations whose growth factors are averaged (geometrically): a complex pair of
#: dominant eigenvalues makes single ratios oscillate around ``|lambda|``.
AVERAGED = 6
#: ``h rho / boundary`` in this band: the steps sit at the stability limit.
BAND = (0.5, 2.0)
#: A successful trajectory is examined only when it took this many accepted steps: only then
#: is the run long enough that stiffness matters, and the diagnostic's cost negligible.
WARN_MIN_STEPS = 10_000


class StiffnessWarning(UserWarning):
    """An explicit method succeeded on a problem that looks stiff: its steps sat at the
    method's stability limit, so a stiff method would take far fewer; the message says
    which method to use."""


def notice(problem, res, tableau):
    """The stiffness sentence for ``res`` (``""`` when nothing looks stiff); on a successful
    run that looks stiff, one :class:`StiffnessWarning` as well.

    ``tableau`` is the method run (None for scipy's own methods): only explicit adaptive
    tableaus with a :attr:`~gpuivp.methods.Tableau.stability_boundary` are examined.
    """
    bound = getattr(tableau, "stability_boundary", None)
    if (bound is None or not getattr(tableau, "adaptive", False)
            or getattr(tableau, "linear_solve", False) or problem.k == 0 or problem.n == 0):
        return ""
    status = np.asarray(res.status)
    naccept = np.asarray(res.naccept)
    failed = np.flatnonzero((status == FAIL_MAXSTEPS) | (status == FAIL_STEP))
    if failed.size:
        idx, looks, hr = _examine(problem, res, failed, bound)
        if not looks.any():
            return ""
        return _sentence(problem, tableau, idx[looks], idx.size, failed.size, "failed",
                         hr[looks])
    long_runs = np.flatnonzero((status == SUCCESS) & (naccept >= WARN_MIN_STEPS))
    if long_runs.size:
        idx, looks, hr = _examine(problem, res, long_runs, bound)
        if looks.any():
            text = _sentence(problem, tableau, idx[looks], idx.size, long_runs.size,
                             f"took {WARN_MIN_STEPS:,}+ steps", hr[looks])
            warnings.warn(f"{text} Silence with warnings.filterwarnings('ignore', "
                          f"category=gpuivp.StiffnessWarning).", StiffnessWarning, stacklevel=3)
    return ""


def _sample(candidates):
    if candidates.size <= SAMPLE:
        return candidates
    return candidates[np.unique(np.linspace(0, candidates.size - 1, SAMPLE).round().astype(int))]


def _examine(problem, res, candidates, bound):
    """``(idx, looks, hr)``: the examined trajectories, whether each looks stiff, and its
    ``h rho``."""
    idx = _sample(candidates)
    hr = _h_rho(problem, res, idx)
    with np.errstate(invalid="ignore"):
        looks = (hr >= BAND[0] * bound) & (hr <= BAND[1] * bound)
    return idx, looks, hr


def _h_rho(problem, res, idx):
    """Mean step times ``rho(J)`` at the final state, per trajectory of ``idx`` (NaN where
    it cannot be estimated)."""
    t0 = np.asarray(problem.column("t0"), dtype=float)[idx]
    tf = np.asarray(res.t_final, dtype=float)[idx]
    h = np.abs(tf - t0) / np.maximum(np.asarray(res.naccept)[idx], 1)
    try:
        rho = spectral_radius(problem, tf, np.asarray(res.y_final, dtype=float)[:, idx], idx)
    except Exception:                       # noqa: BLE001 - a diagnostic never fails the call
        rho = np.full(idx.size, np.nan)
    return h * rho


def spectral_radius(problem, t, y, idx, iterations=POWER_ITERATIONS):
    """``rho(df/dy)`` at ``(t[i], y[:, i])`` for trajectories ``idx`` of ``problem``, by power
    iteration on forward differences of ``fun`` (one evaluation per iteration and column)."""
    f = _evaluator(problem, idx)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        f0 = f(t, y)
        v = np.random.default_rng(0).standard_normal(y.shape)
        v /= np.linalg.norm(v, axis=0)
        ynorm = np.linalg.norm(y, axis=0)
        eps = np.sqrt(np.finfo(float).eps) * (1.0 + ynorm)
        logs = []
        for _ in range(iterations):
            w = (f(t, y + eps * v) - f0) / eps
            growth = np.linalg.norm(w, axis=0)
            logs.append(np.log(growth))
            v = w / np.where(growth > 0, growth, 1.0)
        rho = np.exp(np.mean(logs[-AVERAGED:], axis=0))
    return np.where(np.isfinite(rho), rho, np.nan)


def _evaluator(problem, idx):
    """``F(t (m,), y (n, m)) -> (n, m)``: the user's ``fun`` on trajectories ``idx``."""
    fun, n = problem.fun, problem.n
    if problem.inplace:
        inner = fun

        def fun(t, y, *args):
            out = np.empty_like(y)
            inner(t, y, out, *args)
            return out
    if problem.vectorized:
        args = tuple(a[..., idx] if kind.startswith("traj") else a
                     for a, kind in zip(problem.args, problem.arg_kinds))

        def call(t, y):
            r = fun(t, y, *args)
            return np.stack([np.broadcast_to(np.asarray(r[j], dtype=float), t.shape)
                             for j in range(n)])
        return call
    per_args = [problem.traj_args(int(i)) for i in idx]

    def call(t, y):
        out = np.empty_like(y)
        for c, a in enumerate(per_args):
            r = fun(float(t[c]), y[:, c].copy(), *a)
            out[:, c] = [float(np.asarray(r[j]).real) for j in range(n)]
        return out
    return call


def _sentence(problem, tableau, stiff, examined, candidates, what, hr):
    from .methods.rosenbrock import ROSENBROCK_BACKENDS
    if problem.k == 1:
        who = "It looks stiff: its steps sit"
    else:
        names = [str(problem.first + int(i)) for i in stiff[:8]]
        listing = ", ".join(names) + (", ..." if stiff.size > 8 else "")
        if stiff.size == candidates:
            of = f"All {candidates} trajectories that {what}"
        elif examined == candidates:
            of = f"{stiff.size} of the {candidates} trajectories that {what}"
        elif stiff.size == examined:
            of = f"All {examined} examined of the {candidates} trajectories that {what}"
        else:
            of = (f"{stiff.size} of {examined} examined of the {candidates} trajectories that "
                  f"{what}")
        who = f"{of} look stiff (trajectories {listing}): their steps sit"
    backends = " or ".join(repr(b) for b in ROSENBROCK_BACKENDS)
    return (f"{who} at {tableau.name}'s stability limit (mean step x spectral radius of "
            f"df/dy ~ {float(np.nanmedian(hr)):.2g}, limit {tableau.stability_boundary:.3g}). "
            f"Use method='Rodas5P' or 'Rosenbrock23' (backend {backends}), or 'Radau' (backend "
            f"'scipy').")
