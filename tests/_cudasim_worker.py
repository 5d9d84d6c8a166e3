"""Cases for the ``cuda`` backend under numba's CUDA simulator, and the worker that runs them.

``NUMBA_ENABLE_CUDASIM`` is read when ``numba.cuda`` is first imported, so the
simulator runs in its own process::

    NUMBA_ENABLE_CUDASIM=1 python tests/_cudasim_worker.py OUT.npz [CASE ...]

runs each case on ``backend="cuda"`` and saves the raw results to ``OUT.npz``
(keys ``"<case>/<field>"``; a case that raised stores its traceback under
``"<case>/error"``). ``tests/test_cuda_sim.py`` starts the worker, runs the same
cases on the ``numba`` backend meanwhile, and compares.

Importing this module has no side effects beyond defining :data:`CASES`.
"""
from __future__ import annotations

import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

from problems import forced_oscillator, harmonic, lorenz, vanderpol  # noqa: E402

FIELDS = ("t", "y", "t_final", "y_final", "status", "nfev", "naccept", "nreject",
          "t_events", "y_events", "n_events")


def linear_shared(t, y, A):
    """y' = A y with one 2x2 matrix shared by every trajectory (``gpuivp.shared``)."""
    return (A[0, 0] * y[0] + A[0, 1] * y[1], A[1, 0] * y[0] + A[1, 1] * y[1])


def decay_vec(t, y, w):
    """Per-trajectory vector arg (a (2, k) array: ``w`` is trajectory i's column)."""
    return (-w[0] * y[0], -w[1] * y[1])


def sqrt_decay(t, y, c):
    """NaN at t0 where c < 0 (status -3 for that trajectory only)."""
    return (-np.sqrt(c) * y[0], y[0] - y[1])


def blowup(t, y, p):
    """y' = p y^2: finite-time blow-up at t = 1 / (p y0)."""
    return (p * y[0] * y[0],)


def cross(t, y, w):
    """Every zero of y[0] (non-terminal)."""
    return y[0]


def stop_late(t, y, w):
    """Terminal at t = 5 + w."""
    return t - 5.0 - w


stop_late.terminal = True


def _lorenz_args(k, dtype=float):
    return (dtype(10.0), np.linspace(0.5, 20.0, k), dtype(8.0 / 3.0))


def _cases():
    x3 = np.c_[[1.0, 0.0, 0.0]]
    osc = np.array([[1.0, 0.5, -0.3, 0.0], [0.0, 0.2, 0.4, -1.0]])
    A = np.array([[-0.5, 2.0], [-2.0, -0.1]])
    c = {}
    # name -> dict(fun, t_span, y0, kw: solve_ivp's keywords; slice: GPU_SLICE for the
    # cuda run; sol_at: compare sol() at that many times). Cases share numba
    # specialisations where they can: the numba side's compile time is most of the cost.
    c["rk45_f64"] = dict(fun=lorenz, t_span=(0.0, 1.0), y0=x3,
                         kw=dict(method="RK45", args=_lorenz_args(4), rtol=1e-6, atol=1e-8))
    c["rk45_f32"] = dict(fun=lorenz, t_span=(0.0, 1.0), y0=x3,
                         kw=dict(method="RK45", args=_lorenz_args(4), rtol=1e-4, atol=1e-6,
                                 dtype=np.float32))
    c["dop853_teval_f64"] = dict(fun=vanderpol, t_span=(0.0, 2.0), y0=np.c_[[2.0, 0.0]],
                                 kw=dict(method="DOP853", args=(np.linspace(0.2, 3.0, 3),),
                                         t_eval=np.linspace(0.0, 2.0, 7), rtol=1e-8,
                                         atol=1e-10))
    c["tsit5_f64"] = dict(fun=forced_oscillator, t_span=(0.0, 3.0), y0=np.c_[[0.0, 1.0]],
                          kw=dict(method="Tsit5", args=(np.linspace(0.5, 2.0, 3), 0.7),
                                  rtol=1e-7, atol=1e-9, t_eval=np.linspace(0.0, 3.0, 5)))
    c["tsit5_f32"] = dict(fun=harmonic, t_span=(0.0, 3.0), y0=osc,
                          kw=dict(method="Tsit5", args=(np.array([0.5, 1.0, 1.5, 2.0]),),
                                  rtol=1e-4, atol=1e-6, dtype=np.float32,
                                  t_eval=np.linspace(0.0, 3.0, 4)))
    c["rk4_f64"] = dict(fun=harmonic, t_span=(0.0, 2.0), y0=osc,
                        kw=dict(method="RK4", dt=0.1, args=(np.array([0.5, 1.0, 1.5, 2.0]),),
                                t_eval=np.linspace(0.0, 2.0, 6)))
    c["rk4_f32"] = dict(fun=harmonic, t_span=(0.0, 2.0), y0=osc,
                        kw=dict(method="RK4", dt=0.1, args=(np.array([0.5, 1.0, 1.5, 2.0]),),
                                dtype=np.float32))
    c["rk45_backward_f64"] = dict(fun=harmonic, t_span=(2.0, 0.0), y0=osc[:, :3],
                                  kw=dict(method="RK45", args=(np.array([0.5, 1.0, 2.0]),),
                                          rtol=1e-6, atol=1e-9,
                                          t_eval=np.linspace(2.0, 0.0, 5)))
    c["shared_arg_f64"] = dict(fun=linear_shared, t_span=(0.0, 2.0), y0=osc,
                               kw=dict(method="RK45", args=("SHARED", A), rtol=1e-7,
                                       atol=1e-9))
    c["traj_vector_arg_f64"] = dict(fun=decay_vec, t_span=(0.0, 1.0), y0=osc[:, :3] + 1.0,
                                    kw=dict(method="RK23",
                                            args=(np.array([[0.5, 1.0, 2.0], [3.0, 0.1, 1.0]]),),
                                            rtol=1e-6, atol=1e-9))
    c["nan_at_t0_f64"] = dict(fun=sqrt_decay, t_span=(0.0, 1.0), y0=np.c_[[1.0, 0.5]],
                              kw=dict(method="RK45", args=(np.array([1.0, -1.0, 2.0]),),
                                      rtol=1e-6, atol=1e-9, t_eval=np.linspace(0.0, 1.0, 3)))
    c["blowup_f64"] = dict(fun=blowup, t_span=(0.0, 1.5), y0=np.c_[[1.0]],
                           kw=dict(method="RK45", args=(np.array([0.5, 1.0, 2.0]),),
                                   rtol=1e-6, atol=1e-9))
    c["max_steps_f64"] = dict(fun=lorenz, t_span=(0.0, 1.0), y0=x3,
                              kw=dict(method="RK45", args=_lorenz_args(3), rtol=1e-6,
                                      atol=1e-8, max_steps=5))
    # Hook: tiny time slices (many launches), resumed state must give identical results.
    c["sliced_f64"] = dict(fun=lorenz, t_span=(0.0, 1.0), y0=x3, slice=7,
                           kw=dict(method="RK45", args=_lorenz_args(4), rtol=1e-6, atol=1e-8))
    c["progress_f64"] = dict(fun=lorenz, t_span=(0.0, 0.5), y0=x3,
                             kw=dict(method="RK45", args=_lorenz_args(3), rtol=1e-6, atol=1e-8,
                                     progress=True))
    c["events_f64"] = dict(fun=harmonic, t_span=(0.0, 10.0), y0=np.c_[[1.0, 0.0]],
                           kw=dict(method="RK45", args=(np.array([1.0, 2.0, 3.0]),),
                                   events=[cross, stop_late], rtol=1e-8, atol=1e-10))
    # Dense output: more accepted steps than the initial buffer, so the host grows it.
    c["dense_rk45_f64"] = dict(fun=lorenz, t_span=(0.0, 1.0), y0=x3, sol_at=11,
                               kw=dict(method="RK45", args=_lorenz_args(3), rtol=1e-8,
                                       atol=1e-10, dense_output=True))
    c["dense_sliced_f64"] = dict(fun=lorenz, t_span=(0.0, 1.0), y0=x3, sol_at=11, slice=5,
                                 kw=dict(method="RK45", args=_lorenz_args(4), rtol=1e-7,
                                         atol=1e-9, dense_output=True))
    return c


CASES = _cases()


def call_args(case):
    """solve_ivp's positional and keyword arguments for ``case`` (``"SHARED"`` marks the next
    arg as ``gpuivp.shared``)."""
    import gpuivp

    kw = dict(case["kw"])
    args = kw.get("args")
    if args is not None and len(args) and isinstance(args[0], str) and args[0] == "SHARED":
        kw["args"] = (gpuivp.shared(args[1]),)
    return (case["fun"], case["t_span"], case["y0"]), kw


def raw_fields(res, sol_at=None):
    out = {}
    for f in FIELDS:
        v = res.get(f)
        if v is not None:
            out[f] = np.asarray(v)  # a list per event function stacks into one array
    if sol_at:
        out["sol"] = res.sol(np.linspace(res.t[0], res.t[-1], sol_at))
    return out


def run_case(name, backend):
    """Run case ``name`` on ``backend``; returns the fields of the result."""
    from gpuivp import solve_ivp

    case = CASES[name]
    pos, kw = call_args(case)
    restore = None
    if backend == "cuda" and "slice" in case:
        from gpuivp.backends import cuda as cb
        restore, cb.GPU_SLICE = cb.GPU_SLICE, case["slice"]
    try:
        with np.errstate(all="ignore"):
            res = solve_ivp(*pos, backend=backend, **kw)
    finally:
        if restore is not None:
            cb.GPU_SLICE = restore
    out = raw_fields(res, case.get("sol_at"))
    out["backend"] = np.asarray(res.backend)
    return out


def check_interrupt():
    """Ctrl-C between launches propagates as KeyboardInterrupt. Returns a message ('' if ok)."""
    import contextlib

    from gpuivp import solve_ivp
    from gpuivp.backends import cuda as cb

    seen = []

    class Bar:
        def update_to(self, state):
            seen.append(int(np.sum(state.st_status >= 10)))
            raise KeyboardInterrupt

    @contextlib.contextmanager
    def bar(problem):
        yield Bar()

    orig_bar, orig_slice = cb.progress_bar, cb.GPU_SLICE
    cb.progress_bar, cb.GPU_SLICE = bar, 3
    try:
        solve_ivp(lorenz, (0.0, 1.0), np.c_[[1.0, 0.0, 0.0]], args=_lorenz_args(2),
                  backend="cuda")
    except KeyboardInterrupt:
        return "" if seen == [2] else f"interrupted after launches {seen}, expected [2]"
    finally:
        cb.progress_bar, cb.GPU_SLICE = orig_bar, orig_slice
    return "KeyboardInterrupt did not propagate"


def main(argv):
    import time
    import traceback

    out_path, names = argv[0], argv[1:] or list(CASES)
    from numba.cuda.core import config

    import gpuivp
    from gpuivp.backends import cuda as cb

    store = {"_meta/simulator": np.asarray(bool(config.ENABLE_CUDASIM)),
             "_meta/unavailable_reason": np.asarray(str(cb.unavailable_reason())),
             "_meta/available": np.asarray(",".join(gpuivp.available_backends()))}
    for name in names:
        t = time.perf_counter()
        try:
            for f, v in run_case(name, "cuda").items():
                store[f"{name}/{f}"] = v
        except BaseException:  # noqa: BLE001 - report every case, whatever happened
            store[f"{name}/error"] = np.asarray(traceback.format_exc())
        store[f"{name}/seconds"] = np.asarray(time.perf_counter() - t)
    try:
        store["_meta/interrupt"] = np.asarray(check_interrupt())
    except BaseException:  # noqa: BLE001
        store["_meta/interrupt"] = np.asarray(traceback.format_exc())
    np.savez(out_path, **store)


if __name__ == "__main__":
    # Before anything imports numba.cuda: run the real kernels on the simulator.
    os.environ.setdefault("NUMBA_ENABLE_CUDASIM", "1")
    sys.path.insert(0, os.path.dirname(HERE))  # the checkout's gpuivp
    main(sys.argv[1:])
