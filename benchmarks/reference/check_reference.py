"""Check that the C reference is scipy's RK45, trajectory by trajectory.

For each case, integrates Lorenz systems over a sweep of rho with the C
reference and with a loop of ``scipy.integrate.solve_ivp(method='RK45')``, and
compares statuses, ``nfev`` and final states, twice:

* against scipy as it is, where ``np.dot`` and ``np.linalg.norm`` run on
  OpenBLAS kernels that use fused multiply-adds, so the last bit of a stage or
  of an error norm can differ from the C's.  Required: the same status and
  ``nfev``; final states whose size exceeds ``atol`` agreeing to
  ``TOLERANCE`` relative (max norm, per trajectory); final states that have
  decayed below ``atol`` (rho < 1, where the step size then hovers at the
  stability limit and amplifies rounding) agreeing to ``BELOW_ATOL_TOLERANCE
  * atol`` absolute, for they are only determined to about ``atol``.
  Cases whose tolerances are at the rounding level (``rtol`` at its floor
  ``100*eps``) are only compared bitwise, below: there the error estimate is
  rounding noise and one-bit differences decide steps.
* against scipy with those two reductions replaced by plain left-to-right
  sums without FMA, the C's order of operations.  Required: identical
  statuses, ``nfev`` and final states, bit for bit.  This shows that every
  remaining difference above is the BLAS's rounding, not the algorithm.

Run as ``python benchmarks/reference/check_reference.py``; exits with status 1
on a mismatch.
"""

import contextlib
import sys
import warnings
from pathlib import Path

import numpy as np
import scipy.integrate._ivp.common as scipy_common
import scipy.integrate._ivp.rk as scipy_rk

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from reference.build import load  # noqa: E402
from reference.problem import (  # noqa: E402
    ATOL, RTOL, T_SPAN, final_state_diffs, rho_sweep, solve_scipy)

TOLERANCE = 1e-10
BELOW_ATOL_TOLERANCE = 1e-6
RHO = rho_sweep(21)

#: (label, rho, t_span, rtol, atol, compare with unmodified scipy)
CASES = [
    ("benchmark", RHO, T_SPAN, RTOL, ATOL, True),
    ("loose tolerances", RHO, T_SPAN, 1e-3, 1e-6, True),
    ("tight tolerances", RHO, T_SPAN, 1e-10, 1e-12, True),
    ("t0 != 0", RHO, (2.0, 7.0), RTOL, ATOL, True),
    ("backward", RHO, (0.0, -0.5), RTOL, ATOL, True),
    ("empty interval", RHO, (3.0, 3.0), RTOL, ATOL, True),
    ("rtol below 100*eps", RHO, (0.0, 0.1), 1e-20, 1e-20, False),
    # f overflows at once: NaN error estimates, rejections, status -1
    ("overflow", np.array([np.inf, -np.inf, 1e308]), T_SPAN, RTOL, ATOL, True),
]
#: rho whose solution needs more than LORENZ_RK45_MAX_STEPS attempts (scipy,
#: which has no such limit, would take minutes): C only, status -2.
RHO_MAX_STEPS = 1e100
MAX_STEPS = 100_000


class _NumpyWithPlainDot:
    """``numpy`` whose ``dot(matrix, vector)`` sums columns left to right."""

    def __getattr__(self, name):
        return getattr(np, name)

    @staticmethod
    def dot(m, v):
        out = m[:, 0] * v[0]
        for j in range(1, v.size):
            out = out + m[:, j] * v[j]
        return out


def _plain_norm(x):
    """scipy's RMS norm with the sum of squares taken left to right."""
    s = x[0] * x[0]
    for v in x[1:]:
        s = s + v * v
    return np.sqrt(s) / x.size ** 0.5


@contextlib.contextmanager
def plain_sums():
    """Run scipy's RK45 with BLAS-free, FMA-free reductions (the C's order)."""
    saved = scipy_rk.np, scipy_rk.norm, scipy_common.norm
    scipy_rk.np, scipy_rk.norm, scipy_common.norm = (
        _NumpyWithPlainDot(), _plain_norm, _plain_norm)
    try:
        yield
    finally:
        scipy_rk.np, scipy_rk.norm, scipy_common.norm = saved


def _compare(c, s):
    """``(nfev equal, status equal, y_final bitwise equal)`` of two results."""
    (y_c, status_c, nfev_c), (y_s, status_s, nfev_s) = c, s
    return (np.array_equal(nfev_c, nfev_s), np.array_equal(status_c, status_s),
            np.array_equal(y_c, y_s))


def _row(*cells):
    """One line of the table: fixed-width cells."""
    label, *rest = cells
    widths = (8, 10, 10, 10, 8, 10, 8, 11, 6)
    return (f"{label:<20}" + "".join(
        f" {c:>{w - 1}.1e}" if isinstance(c, float)
        else f" {'-' if c is None else c!s:>{w - 1}}"
        for c, w in zip(rest, widths))).rstrip()


def main():
    """Run every case, print a table, return the process exit status."""
    solve_c = load()
    print(f"C reference vs scipy RK45, {RHO.size} values of rho in [0, 28] "
          "per case (3 for overflow)\n")
    print(_row("", "", "", "vs scipy", "", "", "vs scipy, plain sums"))
    print(_row("case", "nfev =", "status =", "rel diff", "diff/atol",
               "nfev =", "status =", "y ==", "mean nfev"))
    ok = True
    for label, rho, t_span, rtol, atol, vs_blas in CASES:
        c = solve_c(rho, *t_span, rtol, atol)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # scipy's warning for rtol < 100*eps
            s = solve_scipy(rho, t_span, rtol, atol)
            with plain_sums():
                p = solve_scipy(rho, t_span, rtol, atol)
        bitwise = _compare(c, p)
        passed = all(bitwise)
        if vs_blas:
            nfev_eq, status_eq, _ = _compare(c, s)
            rel, below = final_state_diffs(c[0], s[0], atol)
            passed &= (nfev_eq and status_eq
                       and (rel or 0.0) <= TOLERANCE
                       and (below or 0.0) <= BELOW_ATOL_TOLERANCE)
            vs_scipy = (nfev_eq, status_eq, rel, below)
        else:
            vs_scipy = ("n/a",) * 4
        ok &= passed
        print(_row(label, *vs_scipy, *bitwise, f"{s[2].mean():.1f}",
                   "" if passed else "FAIL"))
    _, status, nfev = solve_c([RHO_MAX_STEPS], *T_SPAN, RTOL, ATOL)
    max_steps_ok = status[0] == -2 and nfev[0] == 2 + 6 * MAX_STEPS
    ok &= max_steps_ok
    print(f"\nC alone, rho = {RHO_MAX_STEPS:g}: status {status[0]}, nfev {nfev[0]}"
          f" (expected -2, {2 + 6 * MAX_STEPS}){'' if max_steps_ok else '  FAIL'}")
    print(f"""
rel diff:  max relative difference (max norm) of final states larger than
           atol; required <= {TOLERANCE:g}.
diff/atol: max absolute difference of final states below atol, over atol;
           required <= {BELOW_ATOL_TOLERANCE:g}.
n/a:       rtol at its floor 100*eps: compared with plain sums only.
plain sums: scipy with np.dot and norm summed left to right without FMA;
           required: identical nfev, status and final states (y ==).""")
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
