"""Every ``fun`` (and event function) of the GPU tests and the examples compiles on ``cuda``.

The CUDA simulator runs ``fun`` as Python with NumPy, so it cannot see a ``fun`` that
numba-cuda fails to compile (``np.sqrt`` raised ``KeyError: <ufunc 'sqrt'>`` in
numba-cuda 0.30 before :mod:`gpuivp.backends._cuda_math`). Here each one is compiled into
the real ``cuda`` kernel and on to PTX without a GPU (see ``tests/test_cuda_ptx.py``),
in float32 and float64. The ufuncs themselves,
one by one and free of float64 arithmetic in float32, are in ``tests/test_cuda_math.py``.

``test_case_list_covers_every_fun`` keeps the list complete: a function of ``(t, y, ...)``
added to ``tests/gpu/`` or ``examples/`` without a case here fails it.
"""
import ast
import dataclasses
import glob
import importlib.util
import os
import sys
import warnings

import numpy as np
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "gpu"))
import problems  # noqa: E402
from test_cuda_ptx import cb  # noqa: E402,F401  (fixture: skips without NVVM, or on the sim)

import gpu_checks  # noqa: E402

pytestmark = pytest.mark.skipif(importlib.util.find_spec("numba_cuda") is None,
                                reason="numba-cuda is not installed")


def _example(name):
    spec = importlib.util.spec_from_file_location(f"_example_{name}",
                                                  os.path.join(ROOT, "examples", f"{name}.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


DUFFING = _example("duffing_bifurcation")
SIR = _example("sir_parameter_map")
VDP = _example("vanderpol_period")
BALL = _example("bouncing_ball")
LIF = _example("lif_fi_curve")
PK = _example("pk_doses")
ROBER = _example("robertson_half_life")

K = 4
PER = np.linspace(0.5, 2.0, K)
#: name -> (fun, n, args, events): the args' kinds as the tests and examples pass them.
CASES = {
    "lorenz": (problems.lorenz, 3, (10.0, PER, 8.0 / 3.0), ()),
    "vanderpol": (problems.vanderpol, 2, (PER,), ()),
    "brusselator": (problems.brusselator, 2, (1.0, PER), ()),
    "forced": (problems.forced_oscillator, 2, (PER, 0.7), ()),
    "sqrt_decay": (gpu_checks.sqrt_decay, 1, (PER,), ()),
    "harmonic+events": (problems.harmonic, 2, (PER,), (gpu_checks.cross, gpu_checks.stop)),
    "demo_lorenz": (__import__("gpuivp._demo", fromlist=["lorenz"]).lorenz, 3,
                    (10.0, PER, 8.0 / 3.0), ()),
    "duffing": (DUFFING.duffing, 2, (0.3, -1.0, 1.0, PER, 1.2), ()),
    "sir": (SIR.sir, 2, (PER, PER), ()),
    "vanderpol_period": (VDP.vanderpol, 2, (PER,), (VDP.maximum_of_x,)),
    "bouncing_ball": (BALL.ball, 2, (PER,), (BALL.ground,)),
    # An affect returns the new state as fun returns the derivative: compiled the same way.
    "bounce": (BALL.bounce, 2, (PER,), ()),
    "lif": (LIF.membrane, 1, (PER,), (LIF.spike,)),
    "pk_doses": (PK.elimination, 1, (PER, PER), ()),
    "dose": (PK.dose, 1, (PER, PER), ()),
    "rober": (ROBER.rober, 3, (PER, PER), (ROBER.half,)),
}
#: Functions of (t, y, ...) that never run on cuda, with the reason.
NOT_ON_CUDA = {"rober_jac": "a Jacobian of the Rosenbrock methods, which run on numpy only"}


def _problem(fun, n, args, events, dtype):
    from gpuivp import _problem as P

    dtype = np.dtype(dtype)
    values, kinds, k = P.ensemble_args(args, K, dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rtol, atol = P.check_tol(1e-6, 1e-9, n, dtype)
    problem = P.Problem(fun=fun, t0=0.0, t1=1.0, y0=np.ones((n, k), dtype), args=values,
                        arg_kinds=kinds, t_eval=None, rtol=rtol, atol=atol, first_step=None,
                        max_step=np.inf, dt=0.01, max_steps=1000, dtype=dtype, vectorized=False,
                        method="RK4")
    if events:
        evs, spec, max_events = P.check_events(list(events), None)
        problem = dataclasses.replace(problem, events=evs, event_spec=spec,
                                      max_events=max_events)
    return problem


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", list(CASES))
def test_fun_compiles_to_ptx_on_cuda(cb, name, dtype):  # noqa: F811
    """RK4 is the smallest engine; ``fun`` is lowered the same way for every method."""
    from gpuivp.methods import METHODS

    fun, n, args, events = CASES[name]
    ptx = cb.kernel_ptx(_problem(fun, n, args, events, dtype), METHODS["RK4"], cc=(9, 0))
    assert ".visible .entry" in ptx
    # No float64 check here: numba types a Python literal (``1 - y[0] * y[0]``) as
    # int64/float64, so float32 ``fun``s with literals do compute in float64 (README,
    # Limitations); the ufuncs themselves are checked in tests/test_cuda_math.py.


def _funs_in(tree):
    """Names of the functions whose first two parameters are ``t, y`` in an AST."""
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef):
            names = [a.arg for a in node.args.args[:2]]
            if names == ["t", "y"]:
                out.add(node.name)
    return out


def test_case_list_covers_every_fun():
    listed = set()
    for fun, _, _, events in CASES.values():
        listed |= {fun.__name__} | {e.__name__ for e in events}
    listed |= set(NOT_ON_CUDA)
    files = glob.glob(os.path.join(HERE, "gpu", "*.py")) + \
        glob.glob(os.path.join(ROOT, "examples", "*.py"))
    missing = {}
    for path in files:
        with open(path) as fh:
            names = _funs_in(ast.parse(fh.read()))
        if names - listed:
            missing[os.path.relpath(path, ROOT)] = sorted(names - listed)
    assert not missing, f"functions of (t, y, ...) with no case in CASES: {missing}"
    # the tests/problems.py functions the GPU tests take from ENSEMBLES
    assert {f.__name__ for f, *_ in problems.ENSEMBLES.values()} <= listed
