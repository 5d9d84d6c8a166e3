"""The lane engine: W trajectories at once in SIMD lanes, for the ``numba`` backend (CPU).

Trajectories run W at a time in lanes. Every per-trajectory quantity (t, h, y, the stages,
the error, flags, counters) is a row of W values of the working dtype (float64 or float32)
in ONE flat array ``S``, and a step
attempt is a sequence of loops over the W lanes without data-dependent branches: both
outcomes (accept / reject, clamps, failures) are computed and one is chosen with :func:`sel`
(one LLVM ``select``). LLVM's loop vectoriser turns each lane loop into SIMD code (4 float64
or 8 float32 lanes per AVX2 register). Lanes whose trajectory has finished keep computing, masked, and
are **refilled**: after an attempt in which a lane finished, its results are written out and
it takes the next trajectory of its range, so the cost hardly depends on the order of the
trajectories (no block waits for its slowest lane).

The arithmetic is the per-trajectory engine's (:mod:`gpuivp.engines.per_trajectory`, itself
scipy's ``RungeKutta._step_impl`` / ``select_initial_step``): the same operations in the same
order, and no fastmath, so each lane takes the scalar engine's steps and ends on the same
bits (same ``nfev``, status and final state). The source is generated from the same
:class:`~gpuivp.methods.Tableau` data.

What it takes for LLVM to vectorise (measured, see ``benchmarks/RESULTS.md``): W a
compile-time constant and every row at a constant offset ``r * W`` of one array (no run-time
alias checks); control values as a tuple of scalars; :func:`sel` instead of ``a if c else b``
(branches become masked stores); the commit writes a second set of rows, then a plain copy;
``nextafter`` as integer arithmetic on the bits; ``fun`` called with ``y`` as a tuple and
inlined.

Output at ``t_eval``: after an attempt, each lane whose accepted step reached its next
``t_eval`` point runs ``output`` (scalar code, one lane), which is the per-trajectory engine's
own generated ``t_eval`` code (:meth:`EngineSource._on_accept`: the tableau's interpolant,
its extra stages counted in ``nfev``) on the lane's step; then the commit's copy.

Dense output: every accepted step of a lane runs ``output``, whose generated code then also
holds the per-trajectory engine's dense store (the step's interpolant rows into ``dn_*``, its
extra stages counted in ``nfev``). Before each attempt, a lane whose buffer is full stops
as that engine's loop does: paused (status RUNNING or REJECTED, its state written out; the
backend grows the buffers and calls again, and ``resume_lane`` takes it up where it
stopped) or, at ``dense_max`` steps, with FAIL_DENSE; at fixed steps ``max_steps`` is
tested after the buffer, as there. A call per lane and step: ``"auto"`` keeps dense output on
the per-trajectory engine (``ENGINE = "lanes"`` runs it in lanes; measured once, Lorenz
RK45: 1.44x the per-trajectory engine, not enough to set a threshold).

Fixed steps (``dt``, or a method without error estimate): the per-trajectory engine's
``_fixed_step`` (``t_new`` from the step count, the last step cut at ``t1``, a one-term stage
input as ``y + (c h) K``, the new state's finiteness tested every step) in lanes.

float32: every constant is a named float32 value (as the per-trajectory engine's
``EngineSource.const``; a Python float literal would make numba compute in float64),
``nextafter`` works on the 32-bit pattern, ``S`` and the state are float32, so each lane
performs the scalar engine's float32 operations. The counters (``nfev``, accepted and
rejected steps, ``t_eval`` and event counts) and the trajectory index stay float32 rows,
exact below 2**24 (:data:`F32_EXACT`): :func:`unsupported` refuses a float32 problem whose
``max_steps`` times the stages, trajectory count or ``t_eval`` length could reach it.

Scope (the backend uses the scalar engine otherwise, see :func:`unsupported`): explicit
Runge-Kutta methods, adaptive or at fixed steps, float64 or float32, the final state,
``t_eval``, events and dense output (no events with ``affect``, ``gpuivp.at`` events,
recorded steps of a single IVP, progress bar), ``fun`` and the event functions accepting ``y`` as a tuple, ``fun`` returning
its derivative, per-trajectory arguments only as one scalar of the working dtype per
trajectory. Compiled engines go to the disk cache
(:func:`load_from_disk`) as the per-trajectory engine's do. Finished and idle lanes evaluate
``fun`` at their last state (a finished trajectory's lane at ``t1`` with ``h = 0``).

Compile time: ``fun`` is compiled once and called, not inlined at numba's IR level (LLVM
inlines it before vectorising: the same machine code), and every name in ``attempt`` is
assigned in one place (:func:`_one_definition_per_name`), so numba's type inference makes two
rounds over it, not three.
"""
from __future__ import annotations

import math
import textwrap

import numpy as np

from .. import _status
from ..methods import CONTROLLER
from .per_trajectory import (BASE_PARAMS, CNT_IE, DENSE_PARAMS, EVENT_PARAMS, CNT_NACC, CNT_NFEV, CNT_NREJ,
                             INITIAL_STEP_END, IPARAM_FIELDS, EngineSource, _Src)

#: Lanes per block (a compile-time constant of the generated code).
WIDTH = 16
#: Largest state size the backend picks the lane engine for automatically (``"auto"``): it
#: runs 2.1-2.7x faster up to n = 16 (Lorenz-96), but its compile grows from 3.2 CPU s at
#: n = 3 to 4.8 s at n = 8 and 10 s at n = 12-16 (benchmarks/RESULTS.md, "CPU lanes").
MAX_AUTO_N = 8
#: Fewest trajectories in one call for which ``"auto"`` picks the lane engine: it saves
#: about 20 CPU us per trajectory (Lorenz) but its first compile takes 2-12 s longer than
#: the per-trajectory engine's (later processes load it from the disk cache), so small
#: calls keep that engine.
MIN_AUTO_K = 10_000
#: Most ``t_eval`` points for which ``"auto"`` picks the lane engine: a step that reaches a
#: point costs it a scalar call for that lane (~0.13 us for Lorenz, more than the ~0.10 us
#: per step the lanes save), so the lanes win while fewer than about half the steps hold a
#: point (Lorenz, ~220 steps: 3.2x at 11 points, 1.6x at 101, 0.96x at 301, 0.88x at 1001;
#: benchmarks/RESULTS.md, "CPU lanes").
MAX_AUTO_T_EVAL = 50


#: float32 lanes keep counters, step counts and trajectory indices as float32 rows: exact
#: below this (``unsupported`` refuses problems that could reach it).
F32_EXACT = 1 << 24


def _lit(x):
    """A float64 literal that round-trips exactly."""
    x = float(x)
    if math.isinf(x):
        return "INF" if x > 0 else "(-INF)"
    return repr(x)


def unsupported(problem, tableau):
    """Why the lane engine cannot run ``problem`` (a short reason), or ``None``."""
    from ..methods import Tableau

    if not isinstance(tableau, Tableau):  # (Rosenbrock and other implicit methods)
        return "only explicit Runge-Kutta methods"
    if problem.dtype not in (np.float32, np.float64):
        return "float32 or float64 only"
    if any(a is not None for a in getattr(problem, "affects", ())):
        return "events with affect"
    if any(a is not None for a in getattr(problem, "at_times", ())):
        return "gpuivp.at events"
    if getattr(problem, "record_steps", False):
        return "recorded steps"
    if problem.progress:
        return "progress"
    if getattr(problem, "inplace", False):
        return "in-place fun"
    for a, kind in zip(problem.args, problem.arg_kinds):
        if kind.startswith("traj") and (kind != "traj1" or a.dtype != problem.dtype):
            return ("per-trajectory arguments other than one scalar of the working dtype per "
                    "trajectory")
    if problem.per:  # per-trajectory t0/t1/tolerances/steps (Problem.per) are not read here
        return "per-trajectory t0/t1/tolerances"
    if np.ndim(problem.t0) or np.ndim(problem.t1) or np.ndim(problem.rtol):
        return "per-trajectory t0/t1/tolerances"
    if np.ndim(problem.atol) != 1:
        return "per-trajectory atol"
    if problem.dtype == np.float32:
        # the counters and the trajectory index are float32 rows: exact below 2**24
        most_nfev = 2 + problem.max_steps * (tableau.n_stages + tableau.n_extra)
        n_eval = 0 if problem.t_eval is None else len(problem.t_eval)
        if max(most_nfev, problem.k, n_eval) >= F32_EXACT:
            return ("float32 with counts from 2**24 on (max_steps * stages, trajectories or "
                    "t_eval points)")
    return None


class LaneSource:
    """Generated source of the lane engine: ``attempt``, ``init_lane``, ``scatter`` and the
    driver ``run_range(a, b, <BASE_PARAMS>, arg0, ...)`` (the scalar driver's signature)."""

    def __init__(self, tableau, n, arg_kinds, width=WIDTH, t_eval=False, events=(),
                 fixed=False, dtype=np.float64, dense=False):
        self.tab, self.n, self.arg_kinds, self.W = tableau, n, tuple(arg_kinds), int(width)
        self.dtype = np.dtype(dtype)
        self.f32 = self.dtype == np.float32
        self.lits = {}  # float32: the typed constants of lit()
        self.fixed = bool(fixed) or not tableau.adaptive  # steps of dt (no controller)
        self.t_eval = bool(t_eval)
        self.events = tuple(events)  # per event function: (terminal count, direction)
        # work on accepted steps (``output``): t_eval points, event functions
        self.dense = bool(dense)  # every accepted step's interpolant into dn_*
        self.on_accept = self.t_eval or bool(self.events) or self.dense
        tab, s = tableau, tableau.n_stages
        rows = {}

        def alloc(name, count=1):
            rows[name] = len(rows_list)
            rows_list.extend([name] * count)

        rows_list = []
        for name in ("T", "H", "ERR", "REJ", "STATUS"):
            alloc(name)
        alloc("Y", n)
        alloc("F", n)
        self.nstate = len(rows_list)
        rows_list.extend(["NXT"] * self.nstate)
        rows["NXT"] = self.nstate
        for name in ("LIVE", "CFEV", "CACC", "CREJ", "IDX", "GO", "HS", "TN", "EN", "PW"):
            alloc(name)
        self.traj = [m for m, kd in enumerate(self.arg_kinds) if kd.startswith("traj")]
        for m in self.traj:
            alloc(f"P{m}")
        if self.on_accept:  # accepted in this attempt
            alloc("ACC")
        if self.t_eval:  # t_eval points done; the next one's time
            alloc("IE")
            alloc("NTE")
        for e in range(len(self.events)):  # g at the last step's end; the event count
            alloc(f"G{e}")
            alloc(f"GN{e}")  # g at this attempt's step end (computed in lanes)
            alloc(f"NEV{e}")
        for st in range(1, s + 1):
            alloc(f"K{st}", n)
        alloc("YN", n)
        self.rows, self.nv = rows, len(rows_list)
        self.src = self._generate()

    # -- helpers -------------------------------------------------------------
    def lit(self, x):
        """A constant of the working dtype: a float64 literal, or in float32 a named float32
        constant (a Python float literal would make numba compute in float64)."""
        if not self.f32:
            return _lit(x)
        v = np.float32(x)
        for name, u in self.lits.items():
            if u.tobytes() == v.tobytes():
                return name
        name = f"LC{len(self.lits)}"
        self.lits[name] = v
        return name

    def at(self, name, j=0, nxt=False):
        """``S[<const> + l]``: row ``name`` (component ``j``) of lane ``l``."""
        r = self.rows[name] + j + (self.nstate if nxt else 0)
        return f"S[{r * self.W} + l]"

    def k(self, m, j):
        """Stage ``m``'s component ``j`` (K0 is ``f``)."""
        return self.at("F", j) if m == 0 else self.at(f"K{m}", j)

    def lincomb(self, coefs, j, kvals=None):
        get = kvals or (lambda m: self.k(m, j))
        terms = [f"{self.lit(c)} * {get(m)}" for m, c in enumerate(coefs) if c != 0]
        return " + ".join(terms) if terms else "ZERO"

    def call(self, t_expr, comps, lane_args=True):
        """``fun(t, (y_0, ...), args)`` with per-trajectory args from the lane's rows."""
        args = "".join(f", {self.at(f'P{m}')}" if m in self.traj and lane_args else f", arg{m}"
                       for m in range(len(self.arg_kinds)))
        return f"fun({t_expr}, ({', '.join(comps)}{',' if len(comps) == 1 else ''}){args})"

    # -- generation ------------------------------------------------------------
    def _generate(self):
        tab, n, W = self.tab, self.n, self.W
        s = tab.n_stages
        at, L = self.at, []
        arglist = "".join(f", arg{m}" for m in range(len(self.arg_kinds)))
        ctrl_unpack = ["t1 = c[0]", "rtol = c[1]", "max_step = c[2]", "max_steps = c[3]",
                       "direction = c[4]"] + [f"atol_{j} = c[{5 + j}]" for j in range(n)]
        if self.fixed:
            ctrl_unpack += [f"t0 = c[{5 + n}]", f"dt_dir = c[{6 + n}]", f"n_fixed = c[{7 + n}]"]

        def emit(ind, text):
            for line in text.strip("\n").split("\n"):
                L.append("    " * ind + line)

        # ---- one step attempt of every lane ----
        emit(0, f"def attempt(S, c{arglist}):")
        for line in ctrl_unpack:
            emit(1, line)
        # loop 0: _step_impl up to the stages (min_step, clamps, failures, h, t_new), stage 1
        emit(1, f"for l in range({W}):")
        if self.fixed:  # the per-trajectory engine's _fixed_step: t_new from the step count
            emit(2, f"""
t = {at('T')}
nacc = {at('CACC')}
t_new = sel(nacc + ONE >= n_fixed, t1, t0 + (nacc + ONE) * dt_dir)
h = t_new - t
{at('GO')} = {at('LIVE')}
{at('HS')} = h
{at('TN')} = t_new""")
        else:
            next_bits = ("as_f32(as_i32(t) + sel(up, 1, -1))" if self.f32
                         else "as_f64(as_i64(t) + sel(up, 1, -1))")
            emit(2, f"""
t = {at('T')}
h_abs = {at('H')}
live = {at('LIVE')} != ZERO
rej = {at('REJ')} != ZERO
err_old = {at('ERR')}
status = {at('STATUS')}
nsteps = {at('CACC')} + {at('CREJ')}
up = (t > ZERO) == (direction > ZERO)
nt = sel(t == ZERO, direction * DENORM_MIN, {next_bits})
min_step = TEN * abs(nt - t)
c_max = (not rej) & (h_abs > max_step)
c_min = (not rej) & (not c_max) & (h_abs < min_step)
h_abs = sel(c_max, max_step, sel(c_min, min_step, h_abs))
fail_step = h_abs < min_step
fail_max = (not fail_step) & (nsteps >= max_steps)
go = live & (not fail_step) & (not fail_max)
code = sel(fail_step, sel(isfinite(err_old), FAIL_STEP, FAIL_NONFINITE), FAIL_MAXSTEPS)
{at('STATUS', nxt=True)} = sel(live & (not go), code, status)
h = h_abs * direction
t_new = t + h
t_new = sel(direction * (t_new - t1) > ZERO, t1, t_new)
h = t_new - t
{at('GO')} = sel(go, ONE, ZERO)
{at('HS')} = h
{at('TN')} = t_new""")
        for st in range(1, s):
            if st > 1:
                emit(1, f"for l in range({W}):")
                emit(2, f"h = {at('HS')}\nt = {at('T')}")
            row = tab.a[st, :st]
            terms = [(m, c) for m, c in enumerate(row) if c != 0]
            if self.fixed and len(terms) == 1:  # y + (c h) K: as the per-trajectory engine
                (m, c), = terms
                hc = "h" if c == 1 else "hc"
                if c != 1:
                    emit(2, f"hc = {self.lit(c)} * h")
                comps = [f"{at('Y', j)} + {hc} * {self.k(m, j)}" for j in range(n)]
            else:
                comps = [f"{at('Y', j)} + ({self.lincomb(row, j)}) * h" for j in range(n)]
            emit(2, f"r = {self.call(f't + {self.lit(tab.c[st])} * h', comps)}")
            for j in range(n):
                emit(2, f"{at(f'K{st}', j)} = r[{j}]")
        # y_new, f(t + h, y_new) and the error norm
        emit(1, f"for l in range({W}):")
        emit(2, f"h = {at('HS')}\nt = {at('T')}")
        for j in range(n):
            emit(2, f"y_{j} = {at('Y', j)}")
            emit(2, f"yn_{j} = y_{j} + h * ({self.lincomb(tab.b, j)})")
            emit(2, f"{at('YN', j)} = yn_{j}")
        emit(2, f"r = {self.call('t + h', [f'yn_{j}' for j in range(n)])}")
        for j in range(n):
            emit(2, f"{at(f'K{s}', j)} = r[{j}]")
        if self.events:  # the event functions at the step's end, in lanes (y as a tuple)
            emit(2, f"t_new = {at('TN')}")
            for e in range(len(self.events)):
                call = self.call("t_new", [f"yn_{j}" for j in range(n)]).replace(
                    "fun(", f"event{e}(", 1)
                emit(2, f"{at(f'GN{e}')} = DT({call})")
        if self.fixed:
            self._fixed_commit(emit)
        else:
            self._adaptive_commit(emit)
        L.append("")
        self.ctrl_unpack = ctrl_unpack
        return self._generate_rest(emit, L)

    def _fixed_commit(self, emit):
        """Fixed steps: the new state's finiteness test, then the masked commit."""
        n, s, at = self.n, self.tab.n_stages, self.at
        # dense output: max_steps is tested before each step, after the buffer's (the driver)
        maxed = "False" if self.dense else "(not end) & (nacc_new >= max_steps)"
        emit(2, f"{at('EN')} = sel(isfinite(" + " + ".join(f"ZERO * yn_{j}" for j in range(n))
             + "), ONE, ZERO)")
        emit(1, f"for l in range({self.W}):")
        emit(2, f"""
go = {at('GO')} != ZERO
fin = {at('EN')} != ZERO
t_new = {at('TN')}
t = {at('T')}
status = {at('STATUS')}
nacc = {at('CACC')}
h_old = {at('H')}
err_old = {at('ERR')}
rej_f = {at('REJ')}
a = go & fin
nacc_new = nacc + sel(a, ONE, ZERO)
end = nacc_new >= n_fixed
maxed = {maxed}
{at('T', nxt=True)} = sel(a, t_new, t)
{at('H', nxt=True)} = h_old
{at('ERR', nxt=True)} = err_old
{at('REJ', nxt=True)} = rej_f
code = sel(a & maxed, FAIL_MAXSTEPS, status)
{at('STATUS', nxt=True)} = sel(go & (not fin), FAIL_NONFINITE, code)""")
        self._commit_state(emit)
        emit(2, f"""
{at('CACC')} = nacc_new
{at('CFEV')} += sel(go, {self.lit(s)}, ZERO)
{at('LIVE')} = sel(a & (not end) & (not maxed), ONE, ZERO)""")
        if not self.on_accept:
            emit(1, self._copy_next())

    def _commit_state(self, emit):
        """The accepted lanes' new y and f into the NXT rows (``a``: accepted)."""
        n, s, at = self.n, self.tab.n_stages, self.at
        if self.on_accept:
            emit(2, f"{at('ACC')} = sel(a, ONE, ZERO)")
        for j in range(n):
            emit(2, f"v_{j} = {at('Y', j)}\nvn_{j} = {at('YN', j)}\n"
                    f"w_{j} = {at('F', j)}\nwn_{j} = {at(f'K{s}', j)}")
        for j in range(n):
            emit(2, f"{at('Y', j, nxt=True)} = sel(a, vn_{j}, v_{j})")
            emit(2, f"{at('F', j, nxt=True)} = sel(a, wn_{j}, w_{j})")

    def _adaptive_commit(self, emit):
        """The error norm, the controller's pow, then the masked commit."""
        tab, n, s, at, W = self.tab, self.n, self.tab.n_stages, self.at, self.W
        for j in range(n):
            emit(2, f"a = abs(y_{j})\nb = abs(yn_{j})\nsc_{j} = atol_{j} + sel(a > b, a, b) * rtol")
        if tab.combined_error:
            for j in range(n):
                emit(2, f"e5_{j} = ({self.lincomb(tab.e, j)}) / sc_{j}")
                emit(2, f"e3_{j} = ({self.lincomb(tab.e_low, j)}) / sc_{j}")
            emit(2, "s5 = " + " + ".join(f"e5_{j} * e5_{j}" for j in range(n)))
            emit(2, "s3 = " + " + ".join(f"e3_{j} * e3_{j}" for j in range(n)))
            # scipy squares the norms (np.linalg.norm(err5)**2), not the sums of squares.
            emit(2, "r5 = sqrt(s5)\nr3 = sqrt(s3)\ns5 = r5 * r5\ns3 = r3 * r3")
            emit(2, f"{at('EN')} = sel((s5 == ZERO) & (s3 == ZERO), ZERO, "
                    f"abs(h) * s5 / sqrt((s5 + HUNDREDTH * s3) * NDIM))")
        else:
            for j in range(n):
                emit(2, f"ee_{j} = ({self.lincomb(tab.e, j)}) * h / sc_{j}")
            emit(2, f"{at('EN')} = sqrt(" + " + ".join(f"ee_{j} * ee_{j}" for j in range(n))
                 + ") / SQRTN")
        # the controller's pow, alone in its loop
        emit(1, f"for l in range({W}):")
        emit(2, f"{at('PW')} = SAFETY * POW({at('EN')})")
        # the masked commit into the NXT rows (every operand loaded before the selects)
        emit(1, f"for l in range({W}):")
        emit(2, f"""
go = {at('GO')} != ZERO
err = {at('EN')}
p = {at('PW')}
h_abs = abs({at('HS')})
t_new = {at('TN')}
t = {at('T')}
h_old = {at('H')}
err_old = {at('ERR')}
rej_f = {at('REJ')}
rej = rej_f != ZERO
acc = err < ONE
fa = sel(err == ZERO, MAXF, sel(p > MAXF, MAXF, p))
fa = sel(rej & (fa > ONE), ONE, fa)
fr = sel(p > MINF, p, MINF)
h_new = h_abs * sel(acc, fa, fr)
a = go & acc
done = a & (direction * (t_new - t1) >= ZERO)
{at('T', nxt=True)} = sel(a, t_new, t)
{at('H', nxt=True)} = sel(go, h_new, h_old)
{at('ERR', nxt=True)} = sel(go, err, err_old)
{at('REJ', nxt=True)} = sel(go, sel(acc, ZERO, ONE), rej_f)""")
        self._commit_state(emit)
        emit(2, f"""
{at('CACC')} += sel(a, ONE, ZERO)
{at('CREJ')} += sel(go & (not acc), ONE, ZERO)
{at('CFEV')} += sel(go, {self.lit(s)}, ZERO)
{at('LIVE')} = sel(go & (not done), ONE, ZERO)""")
        if not self.on_accept:  # (else the driver copies, after the output)
            emit(1, self._copy_next())

    def _generate_rest(self, emit, L):
        """``init_lane``, ``output``, ``scatter`` and the driver ``run_range``."""
        # ---- a lane takes trajectory i: f(t0, y0), failures, the initial step ----
        tab, n, W = self.tab, self.n, self.W
        s = tab.n_stages
        at = self.at
        arglist = "".join(f", arg{m}" for m in range(len(self.arg_kinds)))
        ctrl_unpack = self.ctrl_unpack
        evp = ", t_eval, out_eval, iparams, st_cnt" if self.t_eval else ""
        evs = ", ev_g, ev_cnt" if self.events else ""
        evp += evs + (", yv" if self.events else "")
        if self.dense:
            evp += ", dn_t"
        emit(0, f"def init_lane(S, l, i, t0, first_step, c, y0{evp}{arglist}):")
        for line in ctrl_unpack:
            emit(1, line)
        if self.dense:
            emit(1, "dn_t[0, i] = t0")
        for m in self.traj:
            emit(1, f"{at(f'P{m}')} = arg{m}[i]")
        for j in range(n):
            emit(1, f"y_{j} = y0[{j}, i]")
        ys = [f"y_{j}" for j in range(n)]
        emit(1, f"r = {self.call('t0', ys)}")
        for j in range(n):
            emit(1, f"f_{j} = DT(r[{j}])")
        emit(1, "nfev = 1\nh_abs = ZERO")
        emit(1, "if not isfinite(" + " + ".join(f"ZERO * f_{j}" for j in range(n)) + "):")
        emit(2, "status = FAIL_NONFINITE")
        emit(1, "elif t0 == t1:\n    status = SUCCESS\nelse:\n    status = RUNNING")
        if not self.fixed:
            self._initial_step(emit)
        if self.t_eval:  # the scalar engine's output at t0 of a trajectory that ends there
            emit(1, self._eval_rows() + f"""
ie = st_cnt[{CNT_IE}, i]
if status == FAIL_NONFINITE:
    if n_eval > 0 and t_eval[eval_row0, icte] == t0:""")
            for j in range(n):
                emit(3, f"out_eval[eval_row0, {j}, i] = y_{j}")
            emit(1, "elif status == SUCCESS:\n    while ie < n_eval:\n"
                    "        row = eval_row0 + ie * eval_step")
            for j in range(n):
                emit(3, f"out_eval[row, {j}, i] = y_{j}")
            emit(2, "    ie += 1")
            emit(1, self._next_eval())
        if self.events:  # the event functions at t0 (a running trajectory)
            for j in range(n):
                emit(1, f"yv[{j}] = y_{j}")
            pargs = "".join(f", arg{m}[i]" if m in self.traj else f", arg{m}"
                            for m in range(len(self.arg_kinds)))
            for e in range(len(self.events)):
                emit(1, f"g_{e} = ev_g[{e}, i]\nif status == RUNNING:\n"
                        f"    g_{e} = DT(event{e}(t0, yv{pargs}))\n"
                        f"{at(f'G{e}')} = g_{e}\n{at(f'NEV{e}')} = DT(ev_cnt[{e}, i])")
        emit(1, f"""
{at('T')} = t0
{at('H')} = h_abs
{at('ERR')} = ZERO
{at('REJ')} = ZERO
{at('STATUS')} = DT(SUCCESS) if status == RUNNING else DT(status)
{at('LIVE')} = ONE if status == RUNNING else ZERO
{at('CFEV')} = DT(nfev)
{at('CACC')} = ZERO
{at('CREJ')} = ZERO
{at('IDX')} = DT(i)""")
        for j in range(n):
            emit(1, f"{at('Y', j)} = y_{j}\n{at('F', j)} = f_{j}")
        emit(1, "return status == RUNNING")
        L.append("")
        if self.on_accept:
            self._output(emit, L)
        if self.dense:
            self._resume(emit, L)

        # ---- a finished lane's results into the engine state arrays ----
        emit(0, f"def scatter(S, l, st_t, st_h, st_err, st_y, st_f, st_status, st_cnt{evs}):")
        emit(1, f"""
i = np.int64({at('IDX')})
st_t[i] = {at('T')}
st_h[i] = {at('H')}
st_err[i] = {at('ERR')}
st_status[i] = np.int32({at('STATUS')})
st_cnt[{CNT_NFEV}, i] = np.int64({at('CFEV')})
st_cnt[{CNT_NACC}, i] = np.int64({at('CACC')})
st_cnt[{CNT_NREJ}, i] = np.int64({at('CREJ')})""")
        if self.t_eval:
            emit(1, f"st_cnt[{CNT_IE}, i] = np.int64({at('IE')})")
        for e in range(len(self.events)):
            emit(1, f"ev_g[{e}, i] = {at(f'G{e}')}\nev_cnt[{e}, i] = np.int64({at(f'NEV{e}')})")
        for j in range(n):
            emit(1, f"st_y[{j}, i] = {at('Y', j)}\nst_f[{j}, i] = {at('F', j)}")
        L.append("")

        # ---- the driver: trajectories a <= i < b through W refilled lanes ----
        params = ", ".join(BASE_PARAMS + (tuple(EVENT_PARAMS) if self.events else ())
                           + (tuple(DENSE_PARAMS) if self.dense else ())) + arglist
        resume = ""
        if self.dense:  # a trajectory paused by a full dense buffer goes on where it stopped
            rp = ", t_eval, iparams" if self.t_eval else ""
            resume = f"""
            if st_status[i] != INIT:
                resume_lane(S, l, i, c, st_t, st_h, st_err, st_y, st_f, st_status, st_cnt{rp}{evs}{arglist})
                n_live += 1
                break"""
        IDX, LIVE = self.rows["IDX"] * W, self.rows["LIVE"] * W
        # fixed steps: t0, dt * direction, the number of steps (from the per-trajectory layout)
        fixed_c = ", ctrl[0, 0], ctrl[5, 0] * ctrl[6, 0], DT(iparams[2, 0])" if self.fixed else ""
        dt_arg = ", DTYPE" if self.f32 else ""
        emit(0, f"def run_range(a, b, {params}):")
        emit(1, f"""
if b <= a:
    return
t0 = ctrl[0, 0]  # (fields, 1): the lane engine runs shared control values only
first_step = ctrl[3, 0]
c = (ctrl[1, 0], ctrl[2, 0], ctrl[4, 0], DT(iparams[0, 0]), ctrl[6, 0]{''.join(f', atol[{j}, 0]' for j in range(n))}{fixed_c})
direction = c[4]
S = np.zeros({self.nv * W}{dt_arg})
yv = np.empty({n}{dt_arg})  # the state as an array (events, t_eval output)
for l in range({W}):
    S[{IDX} + l] = -ONE  # no trajectory in the lane
nxt = a
while True:
    # refill: a lane whose trajectory has finished writes it out and takes the next one
    n_live = 0
    for l in range({W}):
        if S[{LIVE} + l] != ZERO:
            n_live += 1
            continue
        if S[{IDX} + l] >= ZERO:
            scatter(S, l, st_t, st_h, st_err, st_y, st_f, st_status, st_cnt{evs})
            S[{IDX} + l] = -ONE
        while nxt < b:
            i = nxt
            nxt += 1
            if st_status[i] < INIT:
                continue{resume}
            if init_lane(S, l, i, t0, first_step, c, y0{evp}{arglist}):
                n_live += 1
                break
            scatter(S, l, st_t, st_h, st_err, st_y, st_f, st_status, st_cnt{evs})
            S[{IDX} + l] = -ONE
    if n_live == 0:
        return
    if n_live < {W}:  # idle lanes compute a copy of a live lane (masked): fun sees real states
        src = 0
        while S[{LIVE} + src] == ZERO:
            src += 1
        for l in range({W}):
            if S[{IDX} + l] < ZERO:
                for r in range({self.nv}):
                    if r != {self.rows['LIVE']} and r != {self.rows['IDX']}:
                        S[r * {W} + l] = S[r * {W} + src]
    now = n_live
    while now == n_live:  # step attempts until a lane finishes
        if iparams[1, 0] == 0:  # stopped (Ctrl-C or another chunk's error)
            return{self._dense_check()}
        attempt(S, c{arglist}){self._driver_output(arglist)}
        now = 0
        for l in range({W}):
            if S[{LIVE} + l] != ZERO:
                now += 1""")
        return _one_definition_per_name("\n".join(L) + "\n", "attempt")

    def _initial_step(self, emit):
        """init_lane: ``first_step``, else scipy's ``select_initial_step``."""
        n = self.n
        emit(2, "if first_step > ZERO:\n    h_abs = first_step\nelse:")
        for j in range(n):
            emit(3, f"sc_{j} = atol_{j} + abs(y_{j}) * rtol")
        emit(3, "d0 = sqrt(" + " + ".join(f"(y_{j} / sc_{j}) * (y_{j} / sc_{j})"
                                         for j in range(n)) + ") / SQRTN")
        emit(3, "d1 = sqrt(" + " + ".join(f"(f_{j} / sc_{j}) * (f_{j} / sc_{j})"
                                         for j in range(n)) + ") / SQRTN")
        emit(3, """
if d0 < SMALL5 or d1 < SMALL5:
    h0 = SMALL6
else:
    h0 = HUNDREDTH * d0 / d1
interval = abs(t1 - t0)
if interval < h0:
    h0 = interval""")
        emit(3, f"r = {self.call('t0 + h0 * direction', [f'y_{j} + h0 * direction * f_{j}' for j in range(n)])}")
        for j in range(n):
            emit(3, f"f1_{j} = DT(r[{j}])")
        emit(3, "nfev += 1")
        emit(3, "d2 = sqrt(" + " + ".join(
            f"((f1_{j} - f_{j}) / sc_{j}) * ((f1_{j} - f_{j}) / sc_{j})" for j in range(n))
            + ") / SQRTN / h0")
        emit(3, INITIAL_STEP_END)

    def _copy_next(self):
        """The commit's second half: the NXT rows copied onto the state rows."""
        return (f"for q in range({self.nstate * self.W}):\n"
                f"    S[q] = S[{self.nstate * self.W} + q]")

    def _eval_rows(self):
        """Unpacks the t_eval layout (shared by all trajectories in the lane engine)."""
        f = IPARAM_FIELDS
        return (f"n_eval = iparams[{f.index('n_eval')}, 0]\n"
                f"eval_row0 = iparams[{f.index('eval_row0')}, 0]\n"
                f"eval_step = iparams[{f.index('eval_step')}, 0]\n"
                "icte = i if t_eval.shape[1] > 1 else 0")

    def _next_eval(self):
        """The lane's next t_eval time (beyond any step end once all are done)."""
        return (f"{self.at('IE')} = DT(ie)\n"
                f"if ie < n_eval:\n"
                f"    {self.at('NTE')} = t_eval[eval_row0 + ie * eval_step, icte]\n"
                f"else:\n"
                f"    {self.at('NTE')} = direction * INF")

    def _driver_output(self, arglist):
        """With t_eval: after an attempt, the output of each lane whose accepted step reached
        its next t_eval point, then the commit's copy (the output reads the step's start)."""
        if not self.on_accept:
            return ""
        at, W = self.at, self.W
        # a step that reached a t_eval point or on which an event function changed sign (as
        # the per-trajectory engine tests it, from g computed in lanes); else g moves on
        conds = [f"direction * ({at('NTE')} - {at('TN')}) <= ZERO"] if self.t_eval else []
        for e, (_, d) in enumerate(self.events):
            g, gn = at(f"G{e}"), at(f"GN{e}")
            up, down = f"({g} <= ZERO and {gn} >= ZERO)", f"({g} >= ZERO and {gn} <= ZERO)"
            conds.append(up if d > 0 else down if d < 0 else f"{up} or {down}")
        evo = self._output_params()
        call = f"output(S, l, yv, t_eval, out_eval, iparams, direction{evo}{arglist})"
        if self.dense:  # every accepted step (its interpolant into the dense buffers)
            text = f"""
for l in range({W}):
    if {at('ACC')} != ZERO:
        {call}"""
        else:
            text = f"""
for l in range({W}):
    if {at('ACC')} != ZERO:
        if {" or ".join(f"({c})" for c in conds)}:
            {call}"""
        if self.events and not self.dense:
            text += "\n        else:"
            for e in range(len(self.events)):
                text += f"\n            {at(f'G{e}')} = {at(f'GN{e}')}"
        text += "\n" + self._copy_next()
        return "\n" + textwrap.indent(text.strip("\n"), " " * 8)

    def _output_params(self):
        return (", ev_t, ev_y" if self.events else "") + (", dn_t, dn_h, dn_c" if self.dense
                                                           else "")

    def _dense_check(self):
        """Dense output, before each attempt (the per-trajectory engine's test at the top of
        its loop): a live lane whose buffer is full stops, paused (status RUNNING or
        REJECTED: the backend grows the buffers and calls again, and the lane engine
        resumes it) or at ``dense_max`` with FAIL_DENSE; at fixed steps then ``max_steps``."""
        if not self.dense:
            return ""
        at, W = self.at, self.W
        f = IPARAM_FIELDS
        text = f"""
for l in range({W}):
    if {at('LIVE')} != ZERO:
        nacc_l = {at('CACC')}
        if nacc_l >= DT(dn_h.shape[0]):
            {at('LIVE')} = ZERO
            if nacc_l >= DT(iparams[{f.index('dense_max')}, 0]):
                {at('STATUS')} = FAIL_DENSE
            elif {at('REJ')} != ZERO:
                {at('STATUS')} = REJECTED_F
            else:
                {at('STATUS')} = RUNNING_F"""
        if self.fixed:
            text += f"""
        elif nacc_l >= c[3]:
            {at('LIVE')} = ZERO
            {at('STATUS')} = FAIL_MAXSTEPS"""
        return "\n" + textwrap.indent(text.strip("\n"), " " * 8)

    def _resume(self, emit, L):
        """``resume_lane``: lane ``l`` takes trajectory ``i`` where a paused call left it
        (dense output: its buffer was full), from the engine state arrays."""
        n, at = self.n, self.at
        evp = ", t_eval, iparams" if self.t_eval else ""
        evs = ", ev_g, ev_cnt" if self.events else ""
        arglist = "".join(f", arg{m}" for m in range(len(self.arg_kinds)))
        emit(0, f"def resume_lane(S, l, i, c, st_t, st_h, st_err, st_y, st_f, st_status, "
                f"st_cnt{evp}{evs}{arglist}):")
        emit(1, "direction = c[4]")
        for m in self.traj:
            emit(1, f"{at(f'P{m}')} = arg{m}[i]")
        emit(1, f"""
{at('T')} = st_t[i]
{at('H')} = st_h[i]
{at('ERR')} = st_err[i]
{at('REJ')} = ONE if st_status[i] == REJECTED else ZERO
{at('STATUS')} = DT(SUCCESS)
{at('LIVE')} = ONE
{at('CFEV')} = DT(st_cnt[{CNT_NFEV}, i])
{at('CACC')} = DT(st_cnt[{CNT_NACC}, i])
{at('CREJ')} = DT(st_cnt[{CNT_NREJ}, i])
{at('IDX')} = DT(i)""")
        for j in range(n):
            emit(1, f"{at('Y', j)} = st_y[{j}, i]\n{at('F', j)} = st_f[{j}, i]")
        if self.t_eval:
            emit(1, self._eval_rows() + f"\nie = st_cnt[{CNT_IE}, i]")
            emit(1, self._next_eval())
        for e in range(len(self.events)):
            emit(1, f"{at(f'G{e}')} = ev_g[{e}, i]\n{at(f'NEV{e}')} = DT(ev_cnt[{e}, i])")
        L.append("")

    def _output(self, emit, L):
        """``output(S, l, ...)``: the work on lane ``l``'s accepted step (its event functions,
        then its t_eval points) by the per-trajectory engine's own generated code
        (:meth:`EngineSource._on_accept`: the same interpolant, root finding and arithmetic);
        the step's end moved to a terminal event's root."""
        n, s, at = self.n, self.tab.n_stages, self.at
        es = EngineSource(self.tab, n, self.arg_kinds, self.dtype, self.fixed, "cpu",
                          events=self.events, t_eval=self.t_eval, looped=False,
                          dense=self.dense)
        body = _Src()
        es._on_accept(body, 1)
        self.eval_consts = dict(es.consts)
        arglist = "".join(f", arg{m}" for m in range(len(self.arg_kinds)))
        evo = self._output_params()
        emit(0, f"def output(S, l, yv, t_eval, out_eval, iparams, direction{evo}{arglist}):")
        emit(1, f"i = np.int64({at('IDX')})\n" + self._eval_rows())
        for m in range(len(self.arg_kinds)):
            emit(1, f"p{m} = {at(f'P{m}')}" if m in self.traj else f"p{m} = arg{m}")
        emit(1, f"t = {at('T')}\nh = {at('HS')}\nt_new = {at('TN')}")
        for j in range(n):
            emit(1, f"y_{j} = {at('Y', j)}\nyn_{j} = {at('YN', j)}\nK0_{j} = {at('F', j)}")
            for m in range(1, s + 1):
                emit(1, f"K{m}_{j} = {at(f'K{m}', j)}")
        emit(1, "nfev = 0")
        if self.dense:  # (the accepted steps, this one included)
            emit(1, f"nacc = np.int64({at('CACC')})")
        if self.t_eval:
            emit(1, f"ie = np.int64({at('IE')})")
        if self.events:
            emit(1, "max_events = ev_t.shape[1]")
            for e in range(len(self.events)):
                emit(1, f"g_{e} = {at(f'G{e}')}\nnev_{e} = np.int64({at(f'NEV{e}')})")
        L.extend(body.lines)
        emit(1, f"{at('CFEV')} += DT(nfev)")
        if self.t_eval:
            emit(1, self._next_eval())
        if self.events:
            for e in range(len(self.events)):
                emit(1, f"{at(f'G{e}')} = g_{e}\n{at(f'NEV{e}')} = DT(nev_{e})")
            emit(1, f"{at('T', nxt=True)} = t_end")
            for j in range(n):
                emit(1, f"{at('Y', j, nxt=True)} = ys_{j}")
            emit(1, f"if terminating:\n    {at('STATUS', nxt=True)} = TERMINATED\n"
                    f"    {at('LIVE')} = ZERO")
        L.append("")

    def namespace(self):
        tab = self.tab
        D = self.dtype.type
        T = D if self.f32 else float  # (float64: Python floats, as before float32 lanes)
        ns = dict(np=np, sqrt=math.sqrt, isfinite=math.isfinite, DT=D, DTYPE=D,
                  sel=sel, as_i64=as_i64, as_f64=as_f64, as_i32=as_i32, as_f32=as_f32,
                  ZERO=T(0.0), ONE=T(1.0), TEN=T(10.0), HUNDRED=T(100.0), HUNDREDTH=T(0.01),
                  MILLI=T(1e-3), SMALL5=T(1e-5), SMALL6=T(1e-6), SMALL15=T(1e-15),
                  INF=T(np.inf), NDIM=T(self.n), SQRTN=D(self.n ** 0.5), SAFETY=T(CONTROLLER.safety),
                  MINF=T(CONTROLLER.min_factor), MAXF=T(CONTROLLER.max_factor),
                  DENORM_MIN=T(np.finfo(self.dtype).smallest_subnormal), EXPO=D(_expo(tab)))
        if tab.error_order is not None:  # (the initial step: adaptive steps only)
            ns["INV_ORDER"] = D(1.0 / (tab.error_order + 1))
        for name in ("SUCCESS", "TERMINATED", "FAIL_STEP", "FAIL_MAXSTEPS", "FAIL_NONFINITE"):
            ns[name] = T(getattr(_status, name))
        ns.update(self.lits)
        for name, value in getattr(self, "eval_consts", {}).items():
            if name in ns and ns[name] != value:  # (ZERO, ONE, ...: the same values)
                raise AssertionError(f"lane engine constant {name}: {ns[name]} != {value}")
            ns[name] = value
        ns["INIT"] = np.int32(_status.INIT)
        ns["RUNNING"] = _status.RUNNING
        ns["REJECTED"] = _status.REJECTED
        ns["RUNNING_F"], ns["REJECTED_F"] = T(_status.RUNNING), T(_status.REJECTED)
        ns["FAIL_DENSE"] = T(_status.FAIL_DENSE)
        return ns


def _one_definition_per_name(src, func):
    """``src`` with the names assigned inside each top-level loop of function ``func``
    suffixed by the loop's number, so that each name is assigned in one place.

    numba's type inference re-runs every constraint of a function until the types stop
    changing; a name assigned in two loops gets SSA phi nodes at the loop heads, which costs
    one more round over the whole function (a third of the lane step's typing time)."""
    import ast

    tree = ast.parse(src)
    fdef = next(node for node in tree.body if isinstance(node, ast.FunctionDef)
                and node.name == func)
    for num, loop in enumerate(stmt for stmt in fdef.body if isinstance(stmt, ast.For)):
        stored = {node.id for node in ast.walk(loop)
                  if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store)}
        for node in ast.walk(loop):
            if isinstance(node, ast.Name) and node.id in stored:
                node.id = f"{node.id}_{num}"
    return ast.unparse(tree) + "\n"


# -- numba pieces (defined lazily: importing this module does not import numba) -------------
sel = as_i64 = as_f64 = as_i32 = as_f32 = None


def _define_intrinsics():
    global sel, as_i64, as_f64, as_i32, as_f32
    if sel is not None:
        return
    from llvmlite import ir
    from numba import types
    from numba.extending import intrinsic

    def bitcast(source, target, llvm_target):
        """An intrinsic reinterpreting a ``source`` value's bits as ``target``."""
        @intrinsic
        def cast(typingctx, x):
            def codegen(context, builder, sig, args):
                return builder.bitcast(args[0], llvm_target)
            return target(source), codegen
        return cast

    _as_i64 = bitcast(types.float64, types.int64, ir.IntType(64))
    _as_f64 = bitcast(types.int64, types.float64, ir.DoubleType())
    _as_i32 = bitcast(types.float32, types.int32, ir.IntType(32))

    @intrinsic
    def _as_f32(typingctx, x):
        """The float32 whose bits are ``x``'s low 32 (numba widens int32 sums to int64)."""
        if not isinstance(x, types.Integer):
            return None

        def codegen(context, builder, sig, args):
            v = args[0]
            if x.bitwidth != 32:
                v = builder.trunc(v, ir.IntType(32))
            return builder.bitcast(v, ir.FloatType())
        return types.float32(x), codegen

    @intrinsic
    def _sel(typingctx, c, a, b):
        """``a if c else b`` as ONE LLVM ``select`` (numba lowers a conditional expression
        to branches, which the vectoriser turns into masked loads and stores)."""
        if not isinstance(c, types.Boolean):
            return None
        rt = typingctx.unify_types(a, b)
        if rt is None:
            return None

        def codegen(context, builder, sig, args):
            cv, av, bv = args
            av = context.cast(builder, av, sig.args[1], sig.return_type)
            bv = context.cast(builder, bv, sig.args[2], sig.return_type)
            return builder.select(cv, av, bv)
        return rt(c, a, b), codegen

    sel, as_i64, as_f64, as_i32, as_f32 = _sel, _as_i64, _as_f64, _as_i32, _as_f32


def build(problem, tableau, jit_options, width=WIDTH, fast_pow=False):
    """Compile the lane engine's ``run_range`` for ``problem`` (a prepared problem).

    ``fast_pow``: the controller's ``err ** (-1/(q+1))`` by :func:`_fast_pow_source`
    (vectorised; within a few ulp of libm's ``pow``, so results are no longer bit-identical
    to the scalar engine's) instead of libm's scalar ``pow``.

    Raises whatever numba raises when ``fun`` cannot be typed with ``y`` as a tuple.
    """
    import numba

    from .compile_cache import py_function

    _define_intrinsics()
    src = LaneSource(tableau, problem.n, problem.arg_kinds, width,
                     t_eval=problem.t_eval is not None, events=problem.event_spec,
                     fixed=problem.dt is not None, dtype=problem.dtype,
                     dense=problem.dense_output)
    ns = src.namespace()
    fun = numba.njit(**jit_options)(py_function(problem.fun))
    ns["fun"] = fun
    for e, ev in enumerate(problem.events):
        ns[f"event{e}"] = numba.njit(**jit_options)(py_function(ev))
    ns["POW"] = numba.njit(inline="always", **jit_options)(
        _pow_function(_expo(tableau), fast_pow, problem.dtype, jit_options))
    exec(compile(src.src, f"<gpuivp lane engine {tableau.name} n={problem.n} W={width}>",
                 "exec"), ns)
    for name in ("attempt", "init_lane", "scatter", "output", "resume_lane"):
        if name in ns:
            ns[name] = numba.njit(**jit_options)(ns[name])
    return numba.njit(**jit_options)(ns["run_range"]), src


def _expo(tableau):
    """The controller's exponent ``-1/(q+1)``; a fixed-step method has no controller (and
    its lane engine no call of ``POW``): -1/2 then, so that the source stays one."""
    return -0.5 if tableau.error_order is None else float(tableau.error_exponent)


def _pow_function(expo, fast=False, dtype=np.float64, jit_options=None):
    """``x ** expo`` for the controller: libm's ``pow`` (bit-identical to the scalar engine),
    or with ``fast`` the branch-free :func:`_fast_pow_source` (vectorised, a few ulp; in
    float32 computed in float64 and rounded to float32: within 1 ulp of ``powf``)."""
    import numba

    dtype = np.dtype(dtype)
    ns = {"EXPO": dtype.type(expo)}
    if not fast:
        exec("def pow_expo(x):\n    return x ** EXPO\n", ns)
        return ns["pow_expo"]
    m = round(-1.0 / expo)
    src, consts = _fast_pow_source(m, dtype == np.float32)
    ns.update(consts, sel=sel, as_i64=as_i64, as_f64=as_f64, floor=math.floor, INF=np.inf)
    exec(src, ns)
    if "pow64" in ns:
        ns["pow64"] = numba.njit(inline="always", **(jit_options or {}))(ns["pow64"])
    return ns["pow_expo"]


def _fast_pow_source(m, f32=False):
    """Source of ``pow_expo(x)`` = ``x ** (-1/m)`` for ``x >= 0`` without a call or a branch:
    ``x = 2^e * u`` (u in [1, 2)), ``e = m q + r``; ``u ** (-1/m)`` from a degree-5 fit and two
    Newton steps on ``y^-m = u``, times ``2^(-r/m)`` (a select chain) and ``2^-q``. 0 -> inf,
    inf -> 0, NaN -> NaN; a subnormal ``x`` gives a huge value (the controller clamps it).
    ``f32``: that function as ``pow64``, and ``pow_expo`` for float32 ``x`` calls it on
    ``float64(x)`` and rounds the result to float32."""
    u = np.linspace(1.0, 2.0, 4001)
    coefs = [float(c) for c in np.polyfit(u, u ** (-1.0 / m), 5)]
    consts = {f"PC{i}": c for i, c in enumerate(coefs)}
    consts.update({f"R{r}": float(2.0 ** (-r / m)) for r in range(1, m)})
    consts.update(M=float(m), INV_M=1.0 / m)
    poly = "PC0"
    for i in range(1, len(coefs)):
        poly = f"({poly}) * u + PC{i}"
    ym = " * ".join(["y"] * m)
    chain = "ONE_"
    for r in range(1, m):
        chain = f"sel(r == {float(r)}, R{r}, {chain})"
    src = f"""
ONE_ = 1.0
def pow_expo(x):
    bits = as_i64(x)
    e = np.float64((bits >> 52) - 1023)
    u = as_f64((bits & 0x000FFFFFFFFFFFFF) | 0x3FF0000000000000)
    q = floor(e / M)
    r = e - M * q
    y = {poly}
    y = y + y * (1.0 - u * ({ym})) * INV_M
    y = y + y * (1.0 - u * ({ym})) * INV_M
    res = y * {chain} * as_f64((1023 - np.int64(q)) << 52)
    res = sel(x == 0.0, INF, res)
    return sel(x == INF, 0.0, sel(x != x, x, res))
"""
    if f32:
        src = src.replace("def pow_expo(x):", "def pow64(x):") + (
            "def pow_expo(x):\n    return np.float32(pow64(np.float64(x)))\n")
    consts["np"] = np
    return src, consts


def load_from_disk(problem, tableau, jit_options, width=WIDTH, fast_pow=False):
    """The lane engine's ``run_range`` from the disk cache (:mod:`gpuivp.engines.disk_cache`:
    ``fun``'s module and the engine's module written as files, ``run_range`` compiled with
    ``cache=True``), or ``None`` where the cache is off or cannot hold ``fun``."""
    import hashlib
    import os

    from . import disk_cache as D

    root = D.cache_dir()
    if root is None:
        return None
    P = D._P
    src = LaneSource(tableau, problem.n, problem.arg_kinds, width,
                     t_eval=problem.t_eval is not None, events=problem.event_spec,
                     fixed=problem.dt is not None, dtype=problem.dtype,
                     dense=problem.dense_output)
    jit = dict(jit_options)
    jit.pop("cache", None)
    try:
        user = D._Module()
        user.function(problem.fun, f"{P}fun", jit)
        for e, ev in enumerate(problem.events):
            user.function(ev, f"{P}event{e}", jit)
        user_text = D._PRELUDE + "\n\n" + "\n\n".join(user.body) + "\n"
        special = {"np", "sqrt", "isfinite", "DT", "DTYPE", "sel", "as_i64", "as_f64",
                   "as_i32", "as_f32"}
        ns = src.namespace()
        lines = ["import numpy as np", "from math import sqrt, isfinite, floor",
                 f"from gpuivp.engines import lanes as {P}lanes",
                 f"{P}lanes._define_intrinsics()",
                 f"sel, as_i64, as_f64 = {P}lanes.sel, {P}lanes.as_i64, {P}lanes.as_f64",
                 f"as_i32, as_f32 = {P}lanes.as_i32, {P}lanes.as_f32",
                 f"DT = DTYPE = np.{problem.dtype.name}", f"fun = {P}user.{P}fun", f"{P}jit = {P}nb.njit(**{jit!r})"]
        lines += [f"event{e} = {P}user.{P}event{e}" for e in range(len(problem.events))]
        lines += [f"{name} = {D.value_source(ns[name])}" for name in sorted(ns)
                  if name not in special]
        expo = _expo(tableau)
        if fast_pow:
            ptext, consts = _fast_pow_source(round(-1.0 / expo), problem.dtype == np.float32)
            consts.pop("np")
            lines += [f"{name} = {D.value_source(v)}" for name, v in sorted(consts.items())]
            if "def pow64" in ptext:
                ptext += f"pow64 = {P}nb.njit(**{dict(jit, inline='always')!r})(pow64)\n"
        else:
            ptext = f"def pow_expo(x):\n    return x ** {P}EXPO\n"
            lines.append(f"{P}EXPO = {D.value_source(problem.dtype.type(expo))}")
        lines += [ptext.replace("ONE_ = 1.0\n", ""),
                  f"POW = {P}nb.njit(**{dict(jit, inline='always')!r})(pow_expo)",
                  "ONE_ = 1.0", src.src]
        lines += [f"{name} = {P}jit({name})" for name in ("attempt", "init_lane", "scatter")]
        if src.on_accept:
            lines.append(f"output = {P}jit(output)")
        if src.dense:
            lines.append(f"resume_lane = {P}jit(resume_lane)")
        lines.append(f"run_range = {P}nb.njit(**{ {**jit, 'cache': True}!r})(run_range)")
        engine_text = "\n".join([D._PRELUDE, *lines, ""])
    except D.Unsupported as exc:
        D.STATS["fallback"] += 1
        D.LOG.debug("disk cache: lane engine compiled in-process: %s", exc)
        return None
    key = hashlib.sha256("\0".join((D._versions(), "lanes", user_text, engine_text))
                         .encode()).hexdigest()[:32]
    folder = os.path.join(root, "numba")
    user_path = os.path.join(folder, f"u{key}.py")
    engine_path = os.path.join(folder, f"l{key}.py")
    try:
        os.makedirs(folder, exist_ok=True)
        wrote = D._write(user_path, user_text)
        wrote = D._write(engine_path, engine_text) or wrote
        umod = D._import(user_path, f"_gpuivp_cache_u{key}")
        emod = D._import(engine_path, f"_gpuivp_cache_l{key}", {f"{P}user": umod})
    except Exception as exc:  # an unwritable directory, a value that does not import again
        D.STATS["fallback"] += 1
        D.LOG.debug("disk cache: lane engine compiled in-process: %r", exc)
        return None
    D.STATS["write" if wrote else "hit"] += 1
    D._guard(emod.run_range)
    return emod.run_range
