"""The per-trajectory engine: the whole integration of one trajectory as one loop.

The loop is generated as Python source, specialised per (method, state size,
argument kinds, dtype, features) and compiled by numba: with ``njit`` for the
CPU (:mod:`gpuivp.backends.numba`) and with ``cuda.jit(device=True)`` for the
GPU (:mod:`gpuivp.backends.cuda`). Below ``LOOP_MIN_N`` components the generated
code is scalarised: every state component and every stage is its own local
variable and every coefficient a typed constant, so on the GPU the state lives in
registers (no local-memory stack frame for small systems) and float32 code
contains no float64 arithmetic. From ``LOOP_MIN_N`` on it loops over state
arrays (``ALLOC_STATE()``: ``np.empty`` on the CPU, ``cuda.local.array`` on the
GPU) with the same operations in the same order, so both forms give the same
results bit for bit, and the interpolant is one helper function (``interp``,
compiled through ``build``'s ``jit_helper``): the source no longer grows with n.

A Rosenbrock method (a tableau with ``linear_solve``) replaces the explicit stages by its
own part (:mod:`.rosenbrock_source`: Jacobian, thread-local LU with partial pivoting,
triangular solves), and shares everything else: the error norm, the controller,
``t_eval``, events and dense output with the method's interpolant.

The integration is resumable. All per-trajectory state lives in ``st_*``
arrays (trajectory index last, so GPU accesses coalesce); one call runs at most
``budget`` step attempts and stores the state back. Backends use this to run in
time slices (progress, Ctrl-C, GPU watchdog) at no cost in results.

The step logic is scipy's ``RungeKutta._step_impl`` and ``select_initial_step``
with the operations in scipy's order, so float64 runs take scipy's steps. Fixed
steps, which scipy does not have, are arranged for the GPU's instruction issue:
a stage input with one term is ``y + (c h) K`` (one fused multiply-add; sums of
several terms are added up before ``y``, which keeps float32 accurate), the
state's finiteness is one test (``isfinite(0 y_0 + 0 y_1 + ...)``), and ``nfev`` is
counted after the loop. For the final state only (no ``t_eval``, events or dense
output) that test is made once per slice, not per step: a non-finite component
stays non-finite, and a slice that ends non-finite runs again from its start
with the test per step, so results are the same as with the test at every step.
"""
from __future__ import annotations

import numpy as np

from ..methods import CONTROLLER, Tableau
from . import rosenbrock_source

STATUS_NAMES = ("SUCCESS", "TERMINATED", "FAIL_STEP", "FAIL_MAXSTEPS", "FAIL_NONFINITE",
                "FAIL_DENSE", "FAIL_CHATTER", "FAIL_SINGULAR", "INIT", "RUNNING",
                "REJECTED")

# Integer positions inside the ``st_cnt`` (6, k) counter array (njev, nlu: Rosenbrock methods).
CNT_NFEV, CNT_NACC, CNT_NREJ, CNT_IE, CNT_NJEV, CNT_NLU = range(6)
N_CNT = 6
# Rows of the ``ctrl`` float array and the ``iparams`` int array, both (fields, 1) when every
# trajectory shares them, else (fields, k): column i for trajectory i. A trajectory's t_eval
# points are rows eval_row0 + m * eval_step (m < n_eval) of ``t_eval`` (n_t, 1 or k) and of
# ``out_eval``.
CTRL_FIELDS = ("t0", "t1", "rtol", "first_step", "max_step", "dt", "direction")
IPARAM_FIELDS = ("max_steps", "budget", "n_fixed", "n_eval", "dense_max", "eval_row0",
                 "eval_step")
BASE_PARAMS = ("y0", "ctrl", "iparams", "atol", "t_eval", "out_eval", "st_t", "st_h", "st_err",
               "st_y", "st_f", "st_status", "st_cnt")
# Event state: g at the last step end (n_ev, k), counts (n_ev, k), times
# (n_ev, max_events, k) and states (n_ev, max_events, n, k) of the stored events.
EVENT_PARAMS = ["ev_g", "ev_cnt", "ev_t", "ev_y"]
# Events with affect: the time of each trajectory's latest restart (k,), NaN before any.
AFFECT_PARAMS = ["ev_rs"]
# gpuivp.at events: their times (n_ev, m + 1, k), an infinity after each event's last.
AT_PARAMS = ["ev_at"]
# Dense output: step boundaries (cap + 1, k), step sizes (cap, k) and per step the
# interpolant's rows (cap, 1 + n_coef, n, k): y_old, then the coefficient rows.
DENSE_PARAMS = ["dn_t", "dn_h", "dn_c"]
BRENT_MAXIT = 100
#: scipy's ``select_initial_step`` from ``d1``, ``d2`` (the norms of f and of its change over
#: ``h0``) on: the step, capped by the interval and ``max_step`` (shared with the lane engine).
INITIAL_STEP_END = """if d1 <= SMALL15 and d2 <= SMALL15:
    h1 = h0 * MILLI
    if h1 < SMALL6:
        h1 = SMALL6
else:
    dm = d2 if d2 > d1 else d1
    h1 = (HUNDREDTH / dm) ** INV_ORDER
h_abs = HUNDRED * h0
if h1 < h_abs:
    h_abs = h1
if interval < h_abs:
    h_abs = interval
if max_step < h_abs:
    h_abs = max_step"""
#: State size from which the engine loops over state arrays instead of scalarising every
#: component (chosen by measurement: benchmarks/RESULTS.md, "Large systems").
LOOP_MIN_N = 12


def loops_for(n):
    """Whether the engine for state size ``n`` is generated with loops over state arrays."""
    return n >= LOOP_MIN_N


class _Src:
    """Indented source lines."""

    def __init__(self):
        self.lines = []

    def __call__(self, indent, text):
        for line in text.strip("\n").split("\n"):
            self.lines.append("    " * indent + line)

    def text(self):
        return "\n".join(self.lines) + "\n"


class EngineSource:
    """Generated source of ``solve_one`` and the constants it reads.

    Parameters
    ----------
    tableau : Tableau
        The method.
    n : int
        State size.
    arg_kinds : tuple of str
        One entry per user argument: ``"scalar"`` (shared scalar), ``"shared"``
        (shared array, passed whole) or ``"traj<d>"`` (per trajectory, ``d`` =
        the array's ndim; the function gets ``arg[..., i]``).
    dtype : numpy dtype
        float32 or float64.
    fixed : bool
        Run at the fixed step ``dt`` instead of adaptively.
    target : {"cpu", "cuda"}
        Where the code runs: decides how the scratch state vector is allocated.
    events : tuple of (int, float)
        Per event function ``event<e>``: its terminal count (0: not terminal) and direction.
    dense : bool
        Store every step's interpolant (dense output). A trajectory whose buffer is full
        pauses (the host grows the buffer and resumes) until ``dense_max`` steps, then fails.
    steps_only : bool
        With ``dense``: record each accepted step's t and y only (``dn_c`` has one row), no
        interpolant rows and no extra interpolant stages (a single IVP's every step).
    t_eval : bool
        Generate the output at ``t_eval`` (without it the code is smaller and compiles faster).
    inplace : bool
        ``fun(t, y, dydt, *args)`` fills ``dydt`` instead of returning the derivative.
    looped : bool or None
        Loops over state arrays instead of scalarised code; ``None``: from ``n >= LOOP_MIN_N``.
    affects : tuple of bool
        Per event function: whether it has an ``affect`` (``affect<e>``), which restarts the
        integration at its roots from the affected state, as a new ``solve_ivp`` would.
    at_events : tuple of bool
        Per event function: whether it is a ``gpuivp.at`` event, whose value is ``t`` minus
        its next time (``ev_at[e, count, i]``) instead of a call.
    scalar_ctrl, scalar_atol : bool
        ``ctrl`` and ``iparams`` (``scalar_ctrl``) or ``atol`` (``scalar_atol``, scalarised
        engine only) are shared by every trajectory and their values come as scalar
        parameters ``c_<field>`` / ``c_atol<j>`` after the user's arguments
        (:data:`CONTROL_PARAMS`). On the GPU a scalar kernel parameter stays in the constant
        bank, an array value read once takes a register for the whole integration: the
        ``cuda`` backend uses them (float64 RK45 on Lorenz: 16 registers fewer).
    """

    def __init__(self, tableau: Tableau, n: int, arg_kinds: tuple, dtype, fixed: bool,
                 target: str, events: tuple = (), dense: bool = False, t_eval: bool = True,
                 inplace: bool = False, looped: bool | None = None, affects: tuple = (),
                 at_events: tuple = (), steps_only: bool = False, has_jac: bool = False,
                 scalar_ctrl: bool = False, scalar_atol: bool = False):
        self.tab = tableau
        # A linearly implicit (Rosenbrock) method: its step is rosenbrock_source's part.
        self.linear = bool(getattr(tableau, "linear_solve", False))
        self.has_jac = bool(has_jac) and self.linear
        self.scalar_ctrl = bool(scalar_ctrl)
        self.at_events = tuple(bool(a) for a in at_events) if any(at_events) else ()
        self.affects = tuple(bool(a) for a in affects) if any(affects) else ()
        self.inplace = bool(inplace)
        self.looped = loops_for(n) if looped is None else bool(looped)
        self.scalar_atol = bool(scalar_atol) and not self.looped
        self.helpers = []
        self.events = tuple(events)
        self.dense = dense
        self.steps_only = bool(dense and steps_only)
        self.with_t_eval = t_eval
        self.n = n
        self.arg_kinds = tuple(arg_kinds)
        self.dtype = np.dtype(dtype)
        self.fixed = fixed or not tableau.adaptive
        self.target = target
        self.consts = {}
        self.src = self._generate()

    @property
    def param_names(self):
        """Parameters of ``solve_one`` after ``i``, in order (drivers pass them through)."""
        names = list(BASE_PARAMS)
        if self.linear:
            names += rosenbrock_source.ROSENBROCK_PARAMS
        if self.events:
            names += EVENT_PARAMS
        if self.affects:
            names += AFFECT_PARAMS
        if self.at_events:
            names += AT_PARAMS
        if self.dense:
            names += DENSE_PARAMS
        names += [f"arg{m}" for m in range(len(self.arg_kinds))]
        if self.scalar_ctrl:
            names += [f"c_{f}" for f in CTRL_FIELDS + IPARAM_FIELDS]
        if self.scalar_atol:
            names += [f"c_atol{j}" for j in range(self.n)]
        return names

    # -- constants ---------------------------------------------------------
    def const(self, name, value):
        """A typed constant, shared by name (numba freezes global scalars)."""
        self.consts[name] = self.dtype.type(value)
        return name

    def v(self, name, j):
        """Component ``j`` of state vector ``name``: the scalar ``name_j`` or, looped,
        the array element ``name[j]`` (``j`` is then usually the loop variable ``"j"``)."""
        return f"{name}[{j}]" if self.looped else f"{name}_{j}"

    def _per(self, src, ind, body):
        """``body(j)`` (source text) for every component: unrolled, or in one loop."""
        if self.looped:
            src(ind, "for j in range(nst):")
            src(ind + 1, body("j"))
        else:
            for j in range(self.n):
                src(ind, body(j))

    def _sum(self, src, ind, target, term, setup=None):
        """``target = term(0) + term(1) + ...``; looped, summed from ``ZERO`` in one loop
        (``ZERO + a`` is ``a``: the sums are the same), with ``setup(j)`` before each term."""
        if self.looped:
            src(ind, f"{target} = ZERO")
            src(ind, "for j in range(nst):")
            if setup is not None:
                src(ind + 1, setup("j"))
            src(ind + 1, f"{target} += {term('j')}")
        else:
            if setup is not None:
                for j in range(self.n):
                    src(ind, setup(j))
            src(ind, f"{target} = " + " + ".join(term(j) for j in range(self.n)))

    def _lincomb(self, coefs, prefix, names, j):
        """``c0*K0_j + c1*K1_j + ...`` over the nonzero coefficients."""
        terms = [f"{self.const(f'{prefix}_{s}', c)} * {self.v(names[s], j)}"
                 for s, c in enumerate(coefs) if c != 0]
        return " + ".join(terms) if terms else "ZERO"

    def _knames(self, count):
        """Names of the stage vectors ``K0, K1, ...``; looped, ``K0`` is ``f`` itself (not
        for a Rosenbrock method, whose ``K0`` is ``kappa_0 / h``)."""
        names = [f"K{m}" for m in range(count)]
        if self.looped and not self.linear:
            names[0] = "f"
        return names

    # -- pieces --------------------------------------------------------------
    def _call(self, src, ind, t_expr, y_expr, out):
        """Evaluate ``fun`` at (t, y) into the vector ``out``; ``y_expr(j)`` is component
        ``j`` of y (``None``: ``yv`` is already set). In place, ``fun`` fills ``out`` (looped)
        or the scratch vector ``dv``."""
        if y_expr is not None:
            self._per(src, ind, lambda j: f"yv[{j}] = {y_expr(j)}")
        if self.inplace:
            dest = out if self.looped else "dv"
            src(ind, f"fun({t_expr}, yv, {dest}{self.call_args})")
            if not self.looped:
                self._per(src, ind, lambda j: f"{out}_{j} = dv[{j}]")
        else:
            src(ind, f"r = fun({t_expr}, yv{self.call_args})")
            self._per(src, ind, lambda j: f"{self.v(out, j)} = DT(r[{j}])")

    def _finite(self, src, ind, var):
        """An expression: ``var_0 ... var_{n-1}`` all finite, as one test: ``0 * x`` is ``0``
        for a finite ``x`` and NaN for an infinite or NaN one, and a sum with a NaN is NaN.
        Looped, the sum is made first (into ``fin``)."""
        if self.looped:
            self._sum(src, ind, "fin", lambda j: f"ZERO * {var}[{j}]")
            return "isfinite(fin)"
        return "isfinite(" + " + ".join(f"ZERO * {var}_{j}" for j in range(self.n)) + ")"

    def _stages(self, src, ind):
        """Stages 1..s-1, y_new and f_new (K_s) from K_0 = f (a Rosenbrock method: its
        linearly implicit stages, :func:`.rosenbrock_source.stages`)."""
        if self.linear:
            rosenbrock_source.stages(self, src, ind)
            return
        tab, v = self.tab, self.v
        s = tab.n_stages
        names = self._knames(s + 1)
        if not self.looped:
            for j in range(self.n):
                src(ind, f"K0_{j} = f_{j}")
        for st in range(1, s):
            row = tab.a[st, :st]
            terms = [(m, c) for m, c in enumerate(row) if c != 0]
            if self.fixed and len(terms) == 1:
                # One term at a fixed step: y + (c h) K, one fused multiply-add.
                (m, c), = terms
                hc = "h" if c == 1 else f"hc{st}"
                if c != 1:
                    src(ind, f"hc{st} = {self.const(f'A{st}_{m}', c)} * h")
                ys = lambda j: f"{v('y', j)} + {hc} * {v(names[m], j)}"  # noqa: E731
            else:
                ys = lambda j: f"{v('y', j)} + ({self._lincomb(row, f'A{st}', names, j)}) * h"  # noqa: E731
            self._call(src, ind, f"t + {self.const(f'C{st}', tab.c[st])} * h", ys, f"K{st}")
        self._per(src, ind, lambda j: f"{v('yn', j)} = {v('y', j)} + h * "
                                      f"({self._lincomb(tab.b, 'B', names, j)})")
        self._call(src, ind, "t + h", lambda j: v("yn", j), f"K{s}")

    def _error(self, src, ind):
        """scipy's error norm of the step into ``err``."""
        tab, n, v = self.tab, self.n, self.v
        names = self._knames(tab.n_stages + 1)
        atol = "atol[{}, ica]" if self.looped else "atol_{}"
        scale = lambda j: f"""
a = abs({v('y', j)})
b = abs({v('yn', j)})
{v('sc', j)} = {atol.format(j)} + (a if a > b else b) * rtol"""  # noqa: E731
        if self.looped:
            # The scale is a scalar inside the loop (no array): same values.
            scale_l = lambda j: scale(j).replace("sc[j]", "sc")  # noqa: E731
            sc = "sc"
        else:
            # The error estimate's numerators first, then component by component its scale
            # and quotient: the stages are dead before the divisions (each a call on the
            # GPU, across which every live value is kept), and one scale is live at a time
            # (float64 RK45 on Lorenz: 112 -> 98 registers). The same arithmetic.
            if tab.combined_error:
                for j in range(n):
                    src(ind, f"n5_{j} = {self._lincomb(tab.e, 'E5', names, j)}")
                    src(ind, f"n3_{j} = {self._lincomb(tab.e_low, 'E3', names, j)}")
            else:
                for j in range(n):
                    src(ind, f"ec_{j} = {self._lincomb(tab.e, 'E', names, j)}")
            sc = None
        if tab.combined_error:
            e3, e5 = tab.e_low, tab.e
            if self.looped:
                src(ind, "s5 = ZERO\ns3 = ZERO\nfor j in range(nst):")
                src(ind + 1, scale_l("j"))
                src(ind + 1, f"e5 = ({self._lincomb(e5, 'E5', names, 'j')}) / {sc}")
                src(ind + 1, f"e3 = ({self._lincomb(e3, 'E3', names, 'j')}) / {sc}")
                src(ind + 1, "s5 += e5 * e5\ns3 += e3 * e3")
            else:
                for j in range(n):
                    src(ind, scale(j))
                    src(ind, f"e5_{j} = n5_{j} / sc_{j}")
                    src(ind, f"e3_{j} = n3_{j} / sc_{j}")
                src(ind, "s5 = " + " + ".join(f"e5_{j} * e5_{j}" for j in range(n)))
                src(ind, "s3 = " + " + ".join(f"e3_{j} * e3_{j}" for j in range(n)))
            # scipy squares the norms (np.linalg.norm(err5)**2), not the sums of squares.
            src(ind, """
r5 = sqrt(s5)
r3 = sqrt(s3)
s5 = r5 * r5
s3 = r3 * r3
if s5 == ZERO and s3 == ZERO:
    err = ZERO
else:
    err = abs(h) * s5 / sqrt((s5 + HUNDREDTH * s3) * NDIM)""")
        elif self.looped:
            src(ind, "err = ZERO\nfor j in range(nst):")
            src(ind + 1, scale_l("j"))
            src(ind + 1, f"ee = ({self._lincomb(tab.e, 'E', names, 'j')}) * h / sc")
            src(ind + 1, "err += ee * ee")
            src(ind, "err = sqrt(err) / SQRTN")
        else:
            for j in range(n):
                src(ind, scale(j))
                src(ind, f"ee_{j} = ec_{j} * h / sc_{j}")
            src(ind, "err = sqrt(" + " + ".join(f"ee_{j} * ee_{j}" for j in range(n))
                + ") / SQRTN")

    def _extra_stages(self, src, ind):
        """The interpolant's extra stages (``tab.a_extra``), once per step."""
        tab, v = self.tab, self.v
        if not tab.n_extra:
            return
        s = tab.n_stages
        names = self._knames(s + 1 + tab.n_extra)
        src(ind, "if not have_extra:")
        for r, (arow, c) in enumerate(zip(tab.a_extra, tab.c_extra)):
            st = s + 1 + r
            self._call(src, ind + 1, f"t + {self.const(f'CX{st}', c)} * h",
                       lambda j: f"{v('y', j)} + ({self._lincomb(arow[:st], f'AX{st}', names, j)}) * h",
                       f"K{st}")
        src(ind + 1, f"nfev += {tab.n_extra}")
        src(ind + 1, "have_extra = True")


    def _coefs(self, src, ind, j):
        """The interpolant's coefficient rows ``F0, F1, ...`` of component ``j``.

        The tableau's :class:`~gpuivp.methods.Interpolant` rows, arithmetic as its ``rows``.
        """
        tab, v = self.tab, self.v
        ip = tab.interpolant
        names = self._knames(tab.n_k)
        if not ip.alternating:
            for q in range(ip.n_rows):
                src(ind, f"F{q} = {self._lincomb(ip.p[:, q], f'P{q}', names, j)}")
            return
        src(ind, f"Fd = {v('yn', j)} - {v('y', j)}")
        for q in range(ip.n_rows):
            col, w = ip.p[:, q], ip.dy[q]
            dyw = "Fd" if w == 1 else f"{self.const(f'DY{q}', w)} * Fd"
            if not col.any():
                src(ind, f"F{q} = {dyw}")
            elif w == 0:
                src(ind, f"F{q} = h * ({self._lincomb(col, f'P{q}', names, j)})")
            else:
                src(ind, f"F{q} = h * ({self._lincomb(col, f'P{q}', names, j)}) + {dyw}")

    def _interp_body(self, src, ind, j):
        """``yv[j]`` from ``x`` (and the powers ``xp*``) for component ``j``."""
        m = self.tab.n_interp_rows
        self._coefs(src, ind, j)
        if self.tab.interpolant.alternating:
            src(ind, "acc = ZERO")
            for idx, fr in enumerate(reversed(range(m))):
                src(ind, f"acc = (acc + F{fr}) * {'x' if idx % 2 == 0 else '(ONE - x)'}")
            src(ind, f"yv[{j}] = acc + {self.v('y', j)}")
        else:
            poly = " + ".join(f"F{q} * xp{q}" for q in range(m))
            src(ind, f"yv[{j}] = h * ({poly}) + {self.v('y', j)}")

    def _interp_args(self):
        names = self._knames(self.tab.n_stages + 1 + self.tab.n_extra)
        return "nst, x, h, y, yn, " + ", ".join(names) + ", yv"

    def _interp_function(self, src):
        """Looped: the interpolant as one function ``interp(x, h, y, yn, f, K1, ..., yv)``
        (writes ``yv``), called wherever the state inside a step is needed."""
        src(0, f"def interp({self._interp_args()}):")
        m = self.tab.n_interp_rows
        if not self.tab.interpolant.alternating:
            src(1, "xp0 = x")
            for q in range(1, m):
                src(1, f"xp{q} = xp{q - 1} * x")
        src(1, "for j in range(nst):")
        self._interp_body(src, 2, "j")
        self.helpers.append("interp")

    def _interpolate(self, src, ind):
        """State at ``te`` inside the accepted step [t, t + h] into ``yv``."""
        self._extra_stages(src, ind)
        src(ind, "x = (te - t) / h")
        if self.looped:
            src(ind, f"interp({self._interp_args()})")
            return
        m = self.tab.n_interp_rows
        if not self.tab.interpolant.alternating:
            src(ind, "xp0 = x")
            for q in range(1, m):
                src(ind, f"xp{q} = xp{q - 1} * x")
        for j in range(self.n):
            self._interp_body(src, ind, j)

    def _store_dense(self, src, ind):
        """Dense output of this step: t_old, h, y_old and the coefficient rows (only t and
        y_old when recording steps: no extra stages, no rows)."""
        if not self.steps_only:
            self._extra_stages(src, ind)
        src(ind, """
slot = nacc - 1
dn_t[slot + 1, i] = t_end
dn_h[slot, i] = h""")
        def body(j):
            src(ind1, f"dn_c[slot, 0, {j}, i] = {self.v('y', j)}")
            if self.steps_only:
                return
            self._coefs(src, ind1, j)
            for r in range(self.tab.n_interp_rows):
                src(ind1, f"dn_c[slot, {1 + r}, {j}, i] = F{r}")
        if self.looped:
            src(ind, "for j in range(nst):")
            ind1 = ind + 1
            body("j")
        else:
            ind1 = ind
            for j in range(self.n):
                body(j)

    def _on_accept(self, src, ind):
        """Work on an accepted step before the state advances: events, then t_eval output.

        Sets ``t_end`` (the step's end, or the terminal event's time) and ``terminating``.
        """
        if self.tab.n_extra:
            src(ind, "have_extra = False")
            if not self.looped:  # (scalars must be defined on every path)
                for st in range(self.tab.n_stages + 1, self.tab.n_stages + 1 + self.tab.n_extra):
                    for j in range(self.n):
                        src(ind, f"K{st}_{j} = ZERO")
        src(ind, "t_end = t_new")
        src(ind, "terminating = False")
        if self.affects:
            src(ind, "restarting = False\nrs_e = -1")
        if self.events:
            self._events(src, ind)
        if self.dense:
            self._store_dense(src, ind)
        if not self.with_t_eval:
            return
        src(ind, """
while ie < n_eval:
    row = eval_row0 + ie * eval_step
    te = t_eval[row, icte]
    if direction * (te - t_end) > ZERO:
        break""")
        self._interpolate(src, ind + 1)
        self._per(src, ind + 1, lambda j: f"out_eval[row, {j}, i] = yv[{j}]")
        src(ind + 1, "ie += 1")

    def _event_call(self, src, ind, e, t_expr, out):
        if self.at_events and self.at_events[e]:
            src(ind, f"{out} = DT({t_expr} - ev_at[{e}, nev_{e}, i])")
            return
        src(ind, f"{out} = DT(event{e}({t_expr}, yv{self.call_args}))")

    def _events(self, src, ind):
        """scipy's find_active_events / handle_events on this step, per event function."""
        n, evs, v = self.n, self.events, self.v
        # ys: the state the step ends on (moved by a terminal event)
        self._per(src, ind, lambda j: f"yv[{j}] = {v('yn', j)}\n{v('ys', j)} = {v('yn', j)}")
        for e, (_, direction) in enumerate(evs):
            self._event_call(src, ind, e, "t_new", f"gn_{e}")
            up = f"(g_{e} <= ZERO and gn_{e} >= ZERO)"
            down = f"(g_{e} >= ZERO and gn_{e} <= ZERO)"
            cond = up if direction > 0 else down if direction < 0 else f"({up} or {down})"
            src(ind, f"act_{e} = {cond}")
            src(ind, f"root_{e} = t_new")
        src(ind, "if " + " or ".join(f"act_{e}" for e in range(len(evs))) + ":")
        for e in range(len(evs)):
            src(ind + 1, f"if act_{e}:")
            self._brent(src, ind + 2, e)
            if self.affects:  # a root exactly at the latest restart does not trigger again
                src(ind + 2, f"if root_{e} == t_rs:")
                src(ind + 3, f"act_{e} = False")
        for e, (terminal, _) in enumerate(evs):
            if terminal:
                src(ind + 1, f"""
if act_{e} and nev_{e} + 1 >= {terminal}:
    if (not terminating) or direction * (root_{e} - t_end) < ZERO:
        t_end = root_{e}
        terminating = True""")
        stop = "terminating"
        if self.affects:
            stop = "(terminating or restarting)"
            # The earliest root of an event with affect that is not a terminal occurrence
            # restarts the trajectory there, unless a terminal occurrence comes first or at
            # the same time.
            src(ind + 1, "rs_e = -1\nrs_t = t_new")
            for e, ((terminal, _), has) in enumerate(zip(evs, self.affects)):
                if not has:
                    continue
                occ = f"act_{e}" + (f" and nev_{e} + 1 < {terminal}" if terminal else "")
                src(ind + 1, f"""
if {occ}:
    if rs_e < 0 or direction * (root_{e} - rs_t) < ZERO:
        rs_e = {e}
        rs_t = root_{e}""")
            src(ind + 1, """
if rs_e >= 0 and ((not terminating) or direction * (rs_t - t_end) < ZERO):
    t_end = rs_t
    terminating = False
    restarting = True""")
        for e in range(len(evs)):
            src(ind + 1, f"""
if act_{e} and ((not {stop}) or direction * (root_{e} - t_end) <= ZERO):
    nev_{e} += 1
    if nev_{e} <= max_events:
        te = root_{e}""")
            self._interpolate(src, ind + 3)
            src(ind + 3, f"ev_t[{e}, nev_{e} - 1, i] = root_{e}")
            self._per(src, ind + 3, lambda j: f"ev_y[{e}, nev_{e} - 1, {j}, i] = yv[{j}]")
        src(ind + 1, f"if {stop}:")
        src(ind + 2, "te = t_end")
        self._interpolate(src, ind + 2)
        self._per(src, ind + 2, lambda j: f"{v('ys', j)} = yv[{j}]")
        for e in range(len(evs)):
            src(ind, f"g_{e} = gn_{e}")

    def _brent(self, src, ind, e):
        """Root of event ``e`` on the step's interpolant: scipy's brentq (xtol = rtol = 4 eps)."""
        src(ind, f"""
xq = t
phase = 0
for bit in range({BRENT_MAXIT + 2}):
    te = xq""")
        self._interpolate(src, ind + 1)
        self._event_call(src, ind + 1, e, "te", "gq")
        src(ind + 1, f"""
if phase == 0:
    xpre = xq
    fpre = gq
    phase = 1
    xq = t_new
    continue
if phase == 1:
    xcur = xq
    fcur = gq
    phase = 2
    if fpre == ZERO:
        root_{e} = xpre
        break
    if fcur == ZERO:
        root_{e} = xcur
        break
    if (fpre < ZERO) == (fcur < ZERO):
        root_{e} = xcur if abs(fcur) < abs(fpre) else xpre
        break
    xblk = ZERO
    fblk = ZERO
    spre = ZERO
    scur = ZERO
else:
    fcur = gq
if fpre != ZERO and fcur != ZERO and (fpre < ZERO) != (fcur < ZERO):
    xblk = xpre
    fblk = fpre
    spre = xcur - xpre
    scur = spre
if abs(fblk) < abs(fcur):
    xpre = xcur
    xcur = xblk
    xblk = xpre
    fpre = fcur
    fcur = fblk
    fblk = fpre
delta = (XTOL + XTOL * abs(xcur)) / TWO
sbis = (xblk - xcur) / TWO
if fcur == ZERO or abs(sbis) < delta:
    root_{e} = xcur
    break
if abs(spre) > delta and abs(fcur) < abs(fpre):
    if xpre == xblk:
        stry = -fcur * (xcur - xpre) / (fcur - fpre)
    else:
        dpre = (fpre - fcur) / (xpre - xcur)
        dblk = (fblk - fcur) / (xblk - xcur)
        stry = -fcur * (fblk * dblk - fpre * dpre) / (dblk * dpre * (fblk - fpre))
    bound = THREE * abs(sbis) - delta
    if abs(spre) < bound:
        bound = abs(spre)
    if TWO * abs(stry) < bound:
        spre = scur
        scur = stry
    else:
        spre = sbis
        scur = sbis
else:
    spre = sbis
    scur = sbis
xpre = xcur
fpre = fcur
if abs(scur) > delta:
    xcur = xcur + scur
elif sbis > ZERO:
    xcur = xcur + delta
else:
    xcur = xcur - delta
xq = xcur
root_{e} = xcur""")

    def _advance(self, src, ind):
        v, new = self.v, "ys" if self.events else "yn"
        self._per(src, ind, lambda j: f"{v('y', j)} = {v(new, j)}\n"
                                      f"{v('f', j)} = {v(f'K{self.tab.n_stages}', j)}")
        src(ind, "t = t_end")
        src(ind, "if terminating:")
        src(ind + 1, "status = TERMINATED")
        src(ind + 1, "break")
        if self.affects:
            src(ind, "if restarting and direction * (t - t1) < ZERO:")
            self._restart(src, ind + 1)

    def _restart(self, src, ind):
        """A new solve_ivp at (t, affect(t, y)): f, the event functions and the initial step
        afresh; a restart within rounding of the previous one fails (chatter)."""
        v = self.v
        src(ind, """
if abs(t - t_rs) <= TEN * abs(nextafter(t_rs, direction * INF) - t_rs):
    status = FAIL_CHATTER
    break
t_rs = t""")
        self._per(src, ind, lambda j: f"yv[{j}] = {v('y', j)}")
        for e, has in enumerate(self.affects):
            if has:
                src(ind, f"if rs_e == {e}:")
                src(ind + 1, f"ra = affect{e}(t, yv{self.call_args})")
                self._per(src, ind + 1, lambda j: f"{v('y', j)} = DT(ra[{j}])")
        self._call(src, ind, "t", lambda j: v("y", j), "f")
        src(ind, "nfev += 1")
        src(ind, f"if not ({self._finite(src, ind, 'f')}):")
        src(ind + 1, "status = FAIL_NONFINITE")
        src(ind + 1, "break")
        self._per(src, ind, lambda j: f"yv[{j}] = {v('y', j)}")
        for e in range(len(self.events)):
            self._event_call(src, ind, e, "t", f"g_{e}")
        src(ind, "status = RUNNING")
        src(ind, "if first_step > ZERO:")
        src(ind + 1, "h_abs = first_step")
        src(ind, "else:")
        self._initial_step(src, ind + 1, "t")

    def _initial_step(self, src, ind, t_start="t0"):
        """scipy's ``select_initial_step`` (one evaluation of ``fun``) from ``t_start``."""
        n, v = self.n, self.v
        if self.looped:
            # d0, d1 and d2 as sums in loops; the scale kept in the array sci for d2 (not
            # ``sc``: the error norm's scalar scale, which a restart's initial step follows).
            src(ind, "d0 = ZERO\nd1 = ZERO\nfor j in range(nst):")
            src(ind + 1, """
sci[j] = atol[j, ica] + abs(y[j]) * rtol
d0 += (y[j] / sci[j]) * (y[j] / sci[j])
d1 += (f[j] / sci[j]) * (f[j] / sci[j])""")
            src(ind, "d0 = sqrt(d0) / SQRTN\nd1 = sqrt(d1) / SQRTN")
        else:
            for j in range(n):
                src(ind, f"sc_{j} = atol_{j} + abs(y_{j}) * rtol")
            src(ind, "d0 = sqrt(" + " + ".join(f"(y_{j} / sc_{j}) * (y_{j} / sc_{j})"
                                              for j in range(n)) + ") / SQRTN")
            src(ind, "d1 = sqrt(" + " + ".join(f"(f_{j} / sc_{j}) * (f_{j} / sc_{j})"
                                              for j in range(n)) + ") / SQRTN")
        src(ind, """
if d0 < SMALL5 or d1 < SMALL5:
    h0 = SMALL6
else:
    h0 = HUNDREDTH * d0 / d1
interval = abs(t1 - {t_start})
if interval < h0:
    h0 = interval""".replace("{t_start}", t_start))
        self._call(src, ind, f"{t_start} + h0 * direction",
                   lambda j: f"{v('y', j)} + h0 * direction * {v('f', j)}", "f1")
        src(ind, "nfev += 1")
        if self.looped:
            self._sum(src, ind, "d2", lambda j: f"((f1[{j}] - f[{j}]) / sci[{j}]) * "
                                                f"((f1[{j}] - f[{j}]) / sci[{j}])")
            src(ind, "d2 = sqrt(d2) / SQRTN / h0")
        else:
            src(ind, "d2 = sqrt(" + " + ".join(
                f"((f1_{j} - f_{j}) / sc_{j}) * ((f1_{j} - f_{j}) / sc_{j})"
                for j in range(n)) + ") / SQRTN / h0")
        src(ind, INITIAL_STEP_END)

    def _adaptive_attempt(self, src, ind):
        s = self.tab.n_stages
        src(ind, """
min_step = TEN * abs(nextafter(t, direction * INF) - t)
if status == RUNNING:
    if h_abs > max_step:
        h_abs = max_step
    elif h_abs < min_step:
        h_abs = min_step
if h_abs < min_step:
    status = FAIL_STEP if isfinite(err) else FAIL_NONFINITE
    break
if nacc + nrej >= max_steps:
    status = FAIL_MAXSTEPS
    break
h = h_abs * direction
t_new = t + h
if direction * (t_new - t1) > ZERO:
    t_new = t1
h = t_new - t
h_abs = abs(h)""")
        self._stages(src, ind)
        if not self.linear:  # (the Rosenbrock part counts its own)
            src(ind, f"nfev += {s}")
        self._error(src, ind)
        src(ind, """
if err < ONE:
    if err == ZERO:
        factor = MAXF
    else:
        factor = SAFETY * err ** EXPO
        if factor > MAXF:
            factor = MAXF
    if status == REJECTED:
        if factor > ONE:
            factor = ONE
    h_abs = h_abs * factor
    nacc += 1
    status = RUNNING""")
        self._on_accept(src, ind + 1)
        self._advance(src, ind + 1)
        src(ind, """
    if direction * (t - t1) >= ZERO:  # (a terminal event has left the loop)
        status = SUCCESS
else:
    factor = SAFETY * err ** EXPO
    if not factor > MINF:
        factor = MINF
    h_abs = h_abs * factor
    nrej += 1
    status = REJECTED""")

    def _fixed_step(self, src, ind, checked=True):
        """One fixed step. The loop around it (``_fixed_loop``) bounds ``nacc``; every
        status change inside breaks out of it. ``checked=False``: without the test that
        the new state is finite."""
        s = self.tab.n_stages
        if self.dense:
            # The dense-buffer check comes first, as in the lockstep engine.
            src(ind, """
if nacc >= max_steps:
    status = FAIL_MAXSTEPS
    break""")
        src(ind, """
if nacc + 1 >= n_fixed:
    t_new = t1
else:
    t_new = t0 + DT(nacc + 1) * dt_dir
h = t_new - t""")
        self._stages(src, ind)
        if checked:
            src(ind, f"if not ({self._finite(src, ind, 'yn')}):")
            if not self.linear:
                src(ind + 1, f"nfev += {s}")
            src(ind + 1, "status = FAIL_NONFINITE")
            src(ind + 1, "break")
        src(ind, "nacc += 1")
        self._on_accept(src, ind)
        self._advance(src, ind)

    def _fixed_loop(self, src, ind):
        """The fixed-step loop: one bound on ``nacc`` (the slice's ``budget``, ``n_fixed``
        and, without dense output, ``max_steps``) instead of a step counter and a status
        test per step; the status is settled after the loop. For the final state only,
        the finiteness test is made at the slice's end (see the module docstring)."""
        src(ind, """
dt_dir = dt * direction
nacc0 = nacc
stop = nacc + budget
if stop > n_fixed:
    stop = n_fixed""")
        if not self.dense:
            src(ind, """
if stop > max_steps:
    stop = max_steps""")
        src(ind, """
if status != RUNNING:
    stop = nacc""")
        if self.events or self.dense or self.with_t_eval or self.linear:
            # (a Rosenbrock step counts its evaluations as it makes them: checked always)
            src(ind, "while nacc < stop:")
            self._dense_check(src, ind + 1)
            self._fixed_step(src, ind + 1)
        else:
            # Final state only: the slice runs without a finiteness test per step, which
            # is sound because a non-finite component stays non-finite (y + h K is inf
            # or NaN when y is). If the slice ends non-finite, it runs again from its
            # start with the test, to stop at the step that failed. Scalarised, the start
            # is kept in variables (registers on the GPU, as in the CUDA C reference), not
            # stored to st_* before the loop: RK4 float32 on Lorenz 47 -> 40 registers.
            self._start_copy(src, ind, save=True)
            src(ind, "while nacc < stop:")
            self._fixed_step(src, ind + 1, checked=False)
            src(ind, f"if not ({self._finite(src, ind, 'y')}):")
            src(ind + 1, "nacc = nacc0")
            self._start_copy(src, ind + 1, save=False)
            src(ind + 1, "while nacc < stop:")
            self._fixed_step(src, ind + 2)
        if not self.linear:
            src(ind, f"nfev += {self.tab.n_stages} * (nacc - nacc0)")
        src(ind, """
if status == RUNNING:
    if nacc >= n_fixed:
        status = SUCCESS""")
        if not self.dense:
            src(ind + 1, """
elif nacc >= max_steps:
    status = FAIL_MAXSTEPS""")

    def _start_copy(self, src, ind, save):
        """Keep the slice's start ``t``, ``y``, ``f`` (``save``) or go back to it: in
        variables ``s_t``, ``sy_*``, ``sf_*``, or looped in the ``st_*`` arrays."""
        if self.looped:
            self._state_point(src, ind, load=not save)
            return
        src(ind, "s_t = t" if save else "t = s_t")
        pairs = lambda j: [(self.v(v, j), f"s{v}_{j}") for v in "yf"]  # noqa: E731
        self._per(src, ind, lambda j: "\n".join(f"{b} = {a}" if save else f"{a} = {b}"
                                                for a, b in pairs(j)))

    def _state_point(self, src, ind, load):
        """``t``, ``y`` and ``f`` from the ``st_*`` arrays (``load``) or into them."""
        src(ind, "t = st_t[i]" if load else "st_t[i] = t")
        pairs = lambda j: [(self.v(v, j), f"st_{v}[{j}, i]") for v in "yf"]  # noqa: E731
        self._per(src, ind, lambda j: "\n".join(f"{var} = {slot}" if load else f"{slot} = {var}"
                                                for var, slot in pairs(j)))

    def _dense_check(self, src, ind):
        """Stop when the dense buffer is full: to grow it, or with FAIL_DENSE at its cap."""
        if self.dense:
            src(ind, """
if nacc >= dn_h.shape[0]:
    if nacc >= dense_max:
        status = FAIL_DENSE
    break""")

    # -- the function ------------------------------------------------------------
    def _generate(self):
        n, tab = self.n, self.tab
        self.const("ZERO", 0.0)
        self.const("ONE", 1.0)
        self.const("TWO", 2.0)
        self.const("TEN", 10.0)
        self.const("HUNDRED", 100.0)
        self.const("HUNDREDTH", 0.01)
        self.const("MILLI", 1e-3)
        self.const("SMALL5", 1e-5)
        self.const("SMALL6", 1e-6)
        self.const("SMALL15", 1e-15)
        self.const("INF", np.inf)
        self.const("NDIM", float(n))
        self.const("SQRTN", n ** 0.5)
        # scipy's controller constants, from their one home (methods/_controller.py)
        self.const("SAFETY", CONTROLLER.safety)
        self.const("MINF", CONTROLLER.min_factor)
        self.const("MAXF", CONTROLLER.max_factor)
        self.const("THREE", 3.0)
        self.const("XTOL", 4 * np.finfo(self.dtype).eps)
        if self.linear:
            rosenbrock_source.constants(self)
        if tab.adaptive:
            self.const("EXPO", tab.error_exponent)
            self.const("INV_ORDER", 1.0 / (tab.error_order + 1))

        params, unpack = [], []
        for m, kind in enumerate(self.arg_kinds):
            params.append(f"arg{m}")
            if kind.startswith("traj"):
                d = int(kind[4:])
                unpack.append(f"p{m} = arg{m}[{':, ' * (d - 1)}i]")
            else:
                unpack.append(f"p{m} = arg{m}")
        self.call_args = "".join(f", p{m}" for m in range(len(self.arg_kinds)))

        src = _Src()
        if self.looped and (self.events or self.with_t_eval):
            self._interp_function(src)
            src(0, "\n")
        if self.linear:
            rosenbrock_source.helpers(self, src)
        src(0, f"def solve_one(i, {', '.join(self.param_names)}):")
        src(1, """
status = st_status[i]
if status < INIT:
    return
yv = ALLOC_STATE()""")
        for line in unpack:
            src(1, line)
        # Per-trajectory problem data: column i, or column 0 shared by all.
        src(1, """
ic = i if ctrl.shape[1] > 1 else 0
ica = i if atol.shape[1] > 1 else 0
icte = i if t_eval.shape[1] > 1 else 0""")
        for m, name in enumerate(CTRL_FIELDS):
            src(1, f"{name} = c_{name}" if self.scalar_ctrl else f"{name} = ctrl[{m}, ic]")
        for m, name in enumerate(IPARAM_FIELDS):
            src(1, f"{name} = c_{name}" if self.scalar_ctrl else f"{name} = iparams[{m}, ic]")
        if self.looped:
            # The loops' trip count: a constant on the CPU; on the GPU the state's size read
            # at run time, so that NVVM does not unroll the loops and promote the arrays to
            # (spilled) registers: they stay in local memory, the code stays small.
            src(1, "nst = NSTATE" if self.target == "cpu" else "nst = y0.shape[0]")
            # The state vectors as arrays (K0 is f; f1 and sci: the initial step; dv: in place).
            vecs = ["y", "f", "yn", "f1", "sci"]
            vecs += [f"K{m}" for m in range(0 if self.linear else 1,
                                            tab.n_stages + 1 + tab.n_extra)]
            vecs += rosenbrock_source.vectors(self) if self.linear else []
            vecs += ["ys"] if self.events else []
            for name in vecs:
                src(1, f"{name} = ALLOC_STATE()")
        else:
            for j in range(n):
                src(1, f"atol_{j} = c_atol{j}" if self.scalar_atol else f"atol_{j} = atol[{j}, ica]")
            if self.inplace:
                src(1, "dv = ALLOC_STATE()")
        self._state_point(src, 1, load=True)
        src(1, f"""
nfev = st_cnt[{CNT_NFEV}, i]
nacc = st_cnt[{CNT_NACC}, i]
nrej = st_cnt[{CNT_NREJ}, i]
ie = st_cnt[{CNT_IE}, i]
h_abs = st_h[i]
err = st_err[i]""")
        if self.linear:
            rosenbrock_source.setup(self, src, 1)
        if self.events:
            src(1, "max_events = ev_t.shape[1]")
        if self.affects:
            src(1, "t_rs = ev_rs[i]")
        for e in range(len(self.events)):
            src(1, f"g_{e} = ev_g[{e}, i]")
            src(1, f"nev_{e} = ev_cnt[{e}, i]")
        src(1, """
if status == INIT:
    t = t0""")
        self._per(src, 2, lambda j: f"{self.v('y', j)} = y0[{j}, i]")
        self._call(src, 2, "t", lambda j: self.v("y", j), "f")
        src(2, "nfev = 1")
        if self.dense:
            src(2, "dn_t[0, i] = t0")
        src(2, f"if not ({self._finite(src, 2, 'f')}):")
        src(3, "status = FAIL_NONFINITE")
        # failed at t0: its state there is y0
        # (Without t_eval, n_eval is 0: no output code, whose index arithmetic would cost
        # registers.)
        if self.with_t_eval:
            src(3, "if n_eval > 0 and t_eval[eval_row0, icte] == t0:")
            self._per(src, 4, lambda j: f"out_eval[eval_row0, {j}, i] = {self.v('y', j)}")
        src(2, "elif t0 == t1:")
        src(3, "status = SUCCESS")
        if self.with_t_eval:
            src(3, "while ie < n_eval:")
            src(4, "row = eval_row0 + ie * eval_step")
            self._per(src, 4, lambda j: f"out_eval[row, {j}, i] = {self.v('y', j)}")
            src(4, "ie += 1")
        src(2, "else:")
        src(3, "status = RUNNING")
        for e in range(len(self.events)):
            self._per(src, 3, lambda j: f"yv[{j}] = {self.v('y', j)}")
            self._event_call(src, 3, e, "t", f"g_{e}")
        if not self.fixed:
            src(3, "if first_step > ZERO:")
            src(4, "h_abs = first_step")
            src(3, "else:")
            self._initial_step(src, 4)
        if self.fixed:
            self._fixed_loop(src, 1)
        else:
            src(1, """
it = 0
while status >= RUNNING and it < budget:
    it += 1""")
            self._dense_check(src, 2)
            self._adaptive_attempt(src, 2)
        src(1, """
st_status[i] = status
st_h[i] = h_abs
st_err[i] = err""")
        src(1, f"""
st_cnt[{CNT_NFEV}, i] = nfev
st_cnt[{CNT_NACC}, i] = nacc
st_cnt[{CNT_NREJ}, i] = nrej
st_cnt[{CNT_IE}, i] = ie""")
        if self.linear:
            rosenbrock_source.store(self, src, 1)
        self._state_point(src, 1, load=False)
        if self.affects:
            src(1, "ev_rs[i] = t_rs")
        for e in range(len(self.events)):
            src(1, f"ev_g[{e}, i] = g_{e}")
            src(1, f"ev_cnt[{e}, i] = nev_{e}")
        self._drop_unchanged(src)
        return src.text()

    @staticmethod
    def _drop_unchanged(src):
        """Neither load nor store the resumable values this specialisation never uses
        (``h_abs`` and ``err`` at fixed steps, ``nrej`` at fixed steps, ``ie`` without
        ``t_eval``): on the GPU a value loaded before the loop and stored after it holds a
        register through the whole integration."""
        import re
        for var, slot in (("h_abs", "st_h[i]"), ("err", "st_err[i]"),
                          ("nrej", f"st_cnt[{CNT_NREJ}, i]"), ("ie", f"st_cnt[{CNT_IE}, i]")):
            pair = (f"    {var} = {slot}", f"    {slot} = {var}")
            rest = [ln for ln in src.lines if ln not in pair]
            if not any(re.search(rf"\b{var}\b", ln) for ln in rest):
                src.lines = rest

    @classmethod
    def for_problem(cls, problem, tableau, target):
        """The source specialised for ``problem`` (its n, args, dtype, fixed steps, events)."""
        return cls(tableau, problem.n, problem.arg_kinds, problem.dtype, problem.dt is not None,
                   target, problem.event_spec, problem.dense_output, problem.t_eval is not None,
                   inplace=getattr(problem, "inplace", False),
                   affects=tuple(a is not None for a in getattr(problem, "affects", ())),
                   at_events=tuple(a is not None for a in getattr(problem, "at_times", ())),
                   steps_only=getattr(problem, "record_steps", False),
                   has_jac=getattr(problem, "jac", None) is not None,
                   **cls.scalar_controls(problem, target))

    @staticmethod
    def scalar_controls(problem, target):
        """``scalar_ctrl`` / ``scalar_atol`` for ``problem`` on ``target``: on ``cuda``,
        whichever of them every trajectory shares (no per-trajectory value in ``problem.per``)."""
        if target != "cuda":
            return {}
        from .runner import PER_CONTROL
        per = getattr(problem, "per", {})
        return dict(scalar_ctrl=not any(f in per for f in PER_CONTROL),
                    scalar_atol="atol" not in per)

    @staticmethod
    def cache_key(problem, tableau, target):
        """What identifies a compiled specialisation of this problem."""
        from .compile_cache import fun_key
        return (target, fun_key(problem.fun), tuple(fun_key(e) for e in problem.events),
                tuple(None if a is None else fun_key(a) for a in getattr(problem, "affects", ())),
                tuple(a is not None for a in getattr(problem, "at_times", ())),
                problem.event_spec, tableau.name, problem.n, problem.arg_kinds,
                None if getattr(problem, "jac", None) is None else fun_key(problem.jac),
                problem.dtype.str, problem.dt is not None, problem.dense_output,
                getattr(problem, "record_steps", False), problem.t_eval is not None, getattr(problem, "inplace", False),
                loops_for(problem.n)) + tuple(sorted(EngineSource.scalar_controls(problem, target).items()))

    def namespace(self, fun, alloc_state, nextafter, isfinite, sqrt, events=(), affects=(),
                  jac=None, alloc_matrix=None, alloc_index=None):
        """The globals the generated source runs in, for a given target.

        ``events`` are the compiled event functions, in the order of ``self.events``;
        ``affects`` their compiled affects (None where an event has none). A Rosenbrock
        method also needs ``alloc_matrix`` (a thread-local ``n * n`` array of the dtype),
        ``alloc_index`` (``n`` integers) and, with the user's Jacobian, ``jac`` (compiled).
        """
        if self.linear and (alloc_matrix is None or alloc_index is None
                            or (self.has_jac and jac is None)):
            raise TypeError("EngineSource.namespace: a Rosenbrock method needs alloc_matrix, "
                            "alloc_index" + (" and jac" if self.has_jac else ""))
        from .. import _status
        ns = dict(self.consts)
        ns.update({f"event{e}": ev for e, ev in enumerate(events)})
        ns.update({f"affect{e}": a for e, a in enumerate(affects) if a is not None})
        ns.update(fun=fun, ALLOC_STATE=alloc_state, nextafter=nextafter, isfinite=isfinite,
                  sqrt=sqrt, DT=self.dtype.type, NSTATE=self.n)
        if self.linear:
            ns.update(ALLOC_MATRIX=alloc_matrix, ALLOC_INDEX=alloc_index,
                      CNT_NJEV=CNT_NJEV, CNT_NLU=CNT_NLU)
            if self.has_jac:
                ns["jac"] = jac
        # int32, as ``st_status`` is: the status stays one 32-bit register in compiled code.
        ns.update({name: np.int32(getattr(_status, name)) for name in STATUS_NAMES})
        return ns

    def build(self, jit_helper=None, **namespace_kw):
        """Exec the source; returns the plain Python ``solve_one``.

        The looped engine calls helper functions (``self.helpers``, e.g. ``interp``) defined
        in the same source: ``jit_helper`` compiles each for the target (``numba.njit``,
        ``cuda.jit(device=True)``) before ``solve_one`` is compiled against them.
        """
        if self.helpers and jit_helper is None:
            raise TypeError(f"EngineSource.build: the looped engine (n={self.n}) calls the "
                            f"helpers {self.helpers}; pass jit_helper to compile them")
        ns = self.namespace(**namespace_kw)
        code = compile(self.src, f"<gpuivp engine {self.tab.name} n={self.n}>", "exec")
        exec(code, ns)
        for name in self.helpers:
            ns[name] = jit_helper(ns[name])
        return ns["solve_one"]
