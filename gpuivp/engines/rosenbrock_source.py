"""The Rosenbrock parts of the per-trajectory engine (:mod:`.per_trajectory`).

Composed into :class:`~gpuivp.engines.per_trajectory.EngineSource` when the tableau has
``linear_solve`` (a :class:`~gpuivp.methods.RosenbrockTableau`); the generator reads the
tableau's fields (``gamma``, ``c``, ``d``, ``a``, ``C``, ``G``, ``b``) as data. One step
attempt, per trajectory:

* the Jacobian ``J`` and ``f_t`` (``jacobian``): from the user's ``jac`` or by forward
  differences with scipy's ``num_jac`` increments, ``f_t`` by one forward difference in
  ``t``, as the lockstep engine (:class:`~gpuivp.engines.rosenbrock.RosenbrockPart`) does;
  kept across a rejection (and across time slices, in ``st_jac``);
* ``W = I / (h gamma) - J`` in a thread-local ``n x n`` array (``ALLOC_MATRIX()``: ``np.empty``
  on the CPU, ``cuda.local.array`` on the GPU) and its LU with partial pivoting
  (``lu_factor``, LAPACK's choice of pivot); an exactly zero pivot ends the trajectory with
  ``FAIL_SINGULAR``;
* the stages, each a triangular solve (``lu_solve``), summed in the lockstep engine's order,
  so float64 results equal the ``numpy`` backend's.

The step hands the error estimate, the controller, ``t_eval``, events and dense output the
stages as ``K = [kappa_0 / h, ..., kappa_{s-1} / h, f(t + h, y_new)]``: the generator's own
code for those, with the method's interpolant.
"""
from __future__ import annotations

import numpy as np

#: Rows of the ``st_jac`` ``(n * n + n, k)`` array: ``J`` row-major, then ``f_t``.
ROSENBROCK_PARAMS = ["st_jac"]

LU_FACTOR = """
def lu_factor(nst, JM, WM, PV, dg):
    for a in range(nst):
        for b in range(nst):
            w = -JM[a * nst + b]
            if a == b:
                w = w + dg
            WM[a * nst + b] = w
        PV[a] = a
    sing = False
    for kk in range(nst):
        if kk + 1 < nst:
            p = kk
            amax = abs(WM[kk * nst + kk])
            for r in range(kk + 1, nst):
                v = abs(WM[r * nst + kk])
                if v > amax:
                    p = r
                    amax = v
            if p != kk:
                for b in range(nst):
                    w = WM[kk * nst + b]
                    WM[kk * nst + b] = WM[p * nst + b]
                    WM[p * nst + b] = w
                q = PV[kk]
                PV[kk] = PV[p]
                PV[p] = q
        if WM[kk * nst + kk] == ZERO:
            sing = True
            WM[kk * nst + kk] = ONE
        piv = WM[kk * nst + kk]
        for r in range(kk + 1, nst):
            WM[r * nst + kk] = WM[r * nst + kk] / piv
        for r in range(kk + 1, nst):
            lf = WM[r * nst + kk]
            for b in range(kk + 1, nst):
                WM[r * nst + b] = WM[r * nst + b] - lf * WM[kk * nst + b]
    return sing
"""

LU_SOLVE = """
def lu_solve(nst, WM, PV, RV, XV):
    for a in range(nst):
        XV[a] = RV[PV[a]]
    for a in range(1, nst):
        acc = XV[a]
        for b in range(a):
            acc = acc - WM[a * nst + b] * XV[b]
        XV[a] = acc
    for a in range(nst - 1, -1, -1):
        acc = XV[a]
        for b in range(nst - 1, a, -1):
            acc = acc - WM[a * nst + b] * XV[b]
        XV[a] = acc / WM[a * nst + a]
"""


def helpers(es, src):
    """``lu_factor`` and ``lu_solve`` as helper functions (compiled by ``jit_helper``)."""
    src(0, LU_FACTOR)
    src(0, "\n")
    src(0, LU_SOLVE)
    src(0, "\n")
    es.helpers += ["lu_factor", "lu_solve"]


def f_vectors(tab):
    """Stages ``i >= 1`` whose function value ``F_i`` a later stage's ``G`` term reads."""
    s = tab.n_stages
    return [i for i in range(1, s) if np.any(tab.G[i + 1:, i] != 0)]


def vectors(es):
    """State-size vectors the looped engine allocates for the Rosenbrock part."""
    return ["TV", "RV", "XV", "DYV", "fd"] + [f"F{i}" for i in f_vectors(es.tab)]


def constants(es):
    """``num_jac``'s increment factor and ``gamma`` as typed constants."""
    eps = np.finfo(es.dtype).eps
    es.const("SQRTEPS", eps ** 0.5)
    es.const("GAMMA", es.tab.gamma)


def setup(es, src, ind):
    """Allocations, the counters and (after a rejection) the kept Jacobian at the start of
    ``solve_one``."""
    if not es.looped:
        src(ind, "nst = NSTATE")
        for name in ("TV", "RV", "XV", "DYV"):
            src(ind, f"{name} = ALLOC_STATE()")
    src(ind, "JM = ALLOC_MATRIX()\nWM = ALLOC_MATRIX()\nPV = ALLOC_INDEX()")
    src(ind, """
njev = st_cnt[CNT_NJEV, i]
nlu = st_cnt[CNT_NLU, i]
if status == REJECTED:
    for ma in range(nst * nst):
        JM[ma] = st_jac[ma, i]
    for ma in range(nst):
        TV[ma] = st_jac[nst * nst + ma, i]""")


def store(es, src, ind):
    """Counters and, after a rejection, the kept Jacobian back into ``st_*``."""
    src(ind, """
st_cnt[CNT_NJEV, i] = njev
st_cnt[CNT_NLU, i] = nlu
if status == REJECTED:
    for ma in range(nst * nst):
        st_jac[ma, i] = JM[ma]
    for ma in range(nst):
        st_jac[nst * nst + ma, i] = TV[ma]""")


def jacobian(es, src, ind):
    """``J`` into ``JM`` and ``f_t`` into ``TV`` at ``(t, y)`` for the step ``h``; counts."""
    v, n = es.v, es.n
    es._per(src, ind, lambda j: f"yv[{j}] = {v('y', j)}")
    if es.has_jac:
        src(ind, f"rj = jac(t, yv{es.call_args})")
        if es.looped:
            src(ind, "for ma in range(nst):")
            src(ind + 1, "for mb in range(nst):")
            src(ind + 2, "JM[ma * nst + mb] = DT(rj[ma][mb])")
        else:
            for a in range(n):
                for b in range(n):
                    src(ind, f"JM[{a * n + b}] = DT(rj[{a}][{b}])")
    else:
        # scipy's num_jac increments (first call): sign of f times max(atol, |y|), sqrt(eps).
        atol = "atol[{}, ica]" if es.looped else "atol_{}"
        es._per(src, ind, lambda j: f"""
fs = ONE if {v('f', j)} >= ZERO else -ONE
a = abs({v('y', j)})
b = {atol.format(j)}
DYV[{j}] = ({v('y', j)} + SQRTEPS * (fs * (b if b > a else a))) - {v('y', j)}""")
        src(ind, """
for jc in range(nst):
    ysave = yv[jc]
    yv[jc] = ysave + DYV[jc]""")
        es._call(src, ind + 1, "t", None, "fd")
        src(ind + 1, "den = yv[jc] - ysave")
        es._per(src, ind + 1, lambda j: f"JM[{j} * nst + jc] = ({v('fd', j)} - {v('f', j)}) / den")
        src(ind + 1, "yv[jc] = ysave")
        src(ind, "nfev += nst")
    src(ind, """
a = abs(t)
b = abs(t + h)
tdel = SQRTEPS * (b if b > a else a)
if abs(h) < tdel:
    tdel = abs(h)
tdel = (t + tdel) - t""")
    es._call(src, ind, "t + tdel", None, "fd")
    es._per(src, ind, lambda j: f"TV[{j}] = ({v('fd', j)} - {v('f', j)}) / tdel")
    src(ind, "nfev += 1\nnjev += 1")


def stages(es, src, ind):
    """One attempt: ``J`` (unless kept after a rejection), the LU, the stages, ``y_new`` into
    ``yn`` and ``K_0 .. K_s``; a singular matrix breaks out with ``FAIL_SINGULAR``."""
    tab, v = es.tab, es.v
    s = tab.n_stages
    K = es._knames(s + 1)
    keep_f = set(f_vectors(tab))
    src(ind, "if status != REJECTED:")
    jacobian(es, src, ind + 1)
    src(ind, """
dg = ONE / (h * GAMMA)
sing = lu_factor(nst, JM, WM, PV, dg)
nlu += 1
if sing:
    status = FAIL_SINGULAR
    break""")

    def fname(i):
        return "f" if i == 0 else f"F{i}"
    for i in range(s):
        # the stage's function value F_i (the last stage's is f_new when the method is FSAL)
        if i:
            target = K[s] if (i == s - 1 and tab.fsal) else (
                f"F{i}" if i in keep_f else "fd")
            es._call(src, ind, f"t + {es.const(f'C{i}', tab.c[i])} * h",
                     lambda j, i=i: f"{v('y', j)} + ({es._lincomb(tab.a[i, :i], f'A{i}', K, j)})",
                     target)
            fi = target
        else:
            fi = "f"
        if tab.d[i]:
            src(ind, f"dh = {es.const(f'D{i}', tab.d[i])} * h")

        def rhs(j, i=i, fi=fi):
            e = v(fi, j)
            if np.any(tab.G[i, :i] != 0):
                e = f"{e} + ({es._lincomb(tab.G[i, :i], f'G{i}', [fname(m) for m in range(i)], j)})"
            if np.any(tab.C[i, :i] != 0):
                e = f"({e}) + ({es._lincomb(tab.C[i, :i], f'CC{i}', K, j)}) / h"
            if tab.d[i]:
                e = f"({e}) + dh * TV[{j}]"
            return f"RV[{j}] = {e}"
        es._per(src, ind, rhs)
        src(ind, "lu_solve(nst, WM, PV, RV, XV)")
        es._per(src, ind, lambda j, i=i: f"{v(K[i], j)} = XV[{j}]")
    es._per(src, ind, lambda j: f"{v('yn', j)} = {v('y', j)} + "
                                f"({es._lincomb(tab.b, 'B', K, j)})")
    if not tab.fsal:
        es._call(src, ind, "t + h", lambda j: v("yn", j), K[s])
    es._per(src, ind, lambda j: "\n".join(f"{v(K[i], j)} = {v(K[i], j)} / h"
                                           for i in range(s)))
    src(ind, f"nfev += {tab.fev_per_step}")
