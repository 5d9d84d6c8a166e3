"""Bad input (docs/reference.md, "Errors" and "The ensemble"): every invalid input is a ValueError or
TypeError raised before any integration, whose message names the offending argument.

Each case runs on every CPU backend (``numba``, ``numpy`` with ``vectorized=True``,
``scipy``). "Before any integration" is checked with a right-hand side that counts its
calls: argument errors never call it; errors about what ``fun`` returns call it once (the
probe at ``t0``), never integrate.
"""
import numpy as np
import pytest

import gpuivp
from gpuivp import solve_ivp
from problems import Boom, raises_for_fast

BACKENDS = ["numba", "numpy", "scipy"]


def decay(t, y, lam):
    """y' = -lam y; serves every backend (tuple return, works on scalars and columns)."""
    return (-lam * y[0],)


def oscillator(t, y, omega):
    return (y[1], -omega * omega * y[0])


class Counting:
    """A right-hand side that counts its calls (plain Python: it never reaches numba)."""

    def __init__(self, fun):
        self.fun = fun
        self.calls = 0

    def __call__(self, t, y, *args):
        self.calls += 1
        return self.fun(t, y, *args)


def run(backend, fun, t_span, y0, **kw):
    """solve_ivp on ``backend``; the numpy backend gets ``vectorized=True``."""
    if backend == "numpy":
        kw.setdefault("vectorized", True)
    return solve_ivp(fun, t_span, y0, backend=backend, **kw)


Y0 = np.array([[1.0, 2.0, 3.0], [0.0, 0.5, -1.0]])   # n = 2, k = 3
OMEGA = np.array([1.0, 2.0, 3.0])

# (id, kwargs overriding the valid call, exception type, regex the message must match)
INVALID = [
    ("y0-nan", dict(y0=np.array([[1.0, np.nan], [0.0, 0.0]])), ValueError, r"`y0`.*finite"),
    ("y0-inf", dict(y0=np.array([[1.0, 0.0], [np.inf, 0.0]])), ValueError, r"`y0`.*finite"),
    ("y0-3d", dict(y0=np.zeros((2, 3, 1))), ValueError, r"`y0`.*2-D"),
    ("y0-0d", dict(y0=np.float64(1.0)), ValueError, r"`y0`"),
    ("y0-object", dict(y0=np.array([[1.0, None]], dtype=object)), TypeError, r"`y0`"),
    ("y0-string", dict(y0=np.array([["a", "b"]])), TypeError, r"`y0`"),
    ("t_span-one", dict(t_span=(0.0,)), ValueError, r"`t_span` must be two numbers"),
    ("t_span-three", dict(t_span=(0.0, 1.0, 2.0)), ValueError, r"`t_span` must be two numbers"),
    ("t_span-scalar", dict(t_span=1.0), ValueError, r"`t_span` must be two numbers"),
    ("t_span-none", dict(t_span=None), ValueError, r"`t_span` must be two numbers"),
    ("t_span-t0-inf", dict(t_span=(np.inf, 1.0)), ValueError, r"`t_span` must be two numbers"),
    ("t_span-nan", dict(t_span=(np.nan, 1.0)), ValueError, r"`t_span` must be two numbers"),
    ("t_span-str", dict(t_span=("a", "b")), ValueError, r"`t_span` must be two numbers"),
    ("method-unknown", dict(method="RK99"), ValueError, r"`method` must be one of.*RK45"),
    ("method-lower", dict(method="rk45"), ValueError, r"`method` must be one of"),
    ("method-none", dict(method=None), ValueError, r"`method` must be one of"),
    ("fixed-no-dt", dict(method="RK4"), ValueError, r"'RK4' needs a step size: pass `dt`"),
    ("euler-no-dt", dict(method="Euler"), ValueError, r"pass `dt`"),
    ("dt-zero", dict(method="RK4", dt=0.0), ValueError, r"`dt` must be a finite positive"),
    ("dt-negative", dict(method="RK4", dt=-0.1), ValueError, r"`dt` must be a finite positive"),
    ("dt-nan", dict(method="RK4", dt=np.nan), ValueError, r"`dt` must be a finite positive"),
    ("dt-inf", dict(method="RK4", dt=np.inf), ValueError, r"`dt` must be a finite positive"),
    ("dt-str", dict(method="RK4", dt="x"), TypeError, r"`dt` must be a number"),
    ("dt-first_step", dict(dt=0.1, first_step=0.1), ValueError, r"`dt` and `first_step`"),
    ("dt-scipy-method", dict(method="Radau", dt=0.1), ValueError, r"`dt`.*not supported"),
    ("rtol-negative", dict(rtol=-1e-3), ValueError, r"`rtol`.*non-negative"),
    ("rtol-nan", dict(rtol=np.nan), ValueError, r"`rtol`"),
    ("rtol-shape", dict(rtol=[1e-3, 1e-3, 1e-3]), ValueError, r"`rtol` has wrong shape"),
    ("atol-negative", dict(atol=-1e-6), ValueError, r"`atol`.*non-negative"),
    ("atol-negative-entry", dict(atol=[1e-6, -1e-6]), ValueError, r"`atol`.*non-negative"),
    ("atol-shape", dict(atol=[1e-6, 1e-6, 1e-6]), ValueError, r"`atol` has wrong shape.*\(2,\)"),
    ("atol-2d", dict(atol=np.full((3, 3), 1e-6)), ValueError, r"`atol` has wrong shape"),
    ("atol-2d-k", dict(atol=np.full((2, 4), 1e-6)), ValueError,
     r"`atol` has 4 per-trajectory entries.*k=3"),
    ("t_eval-outside", dict(t_eval=[0.0, 0.5, 1.5]), ValueError, r"`t_eval`.*within `t_span`"),
    ("t_eval-before", dict(t_eval=[-0.1, 0.5]), ValueError, r"`t_eval`.*within `t_span`"),
    ("t_eval-unsorted", dict(t_eval=[0.5, 0.2]), ValueError, r"`t_eval`.*sorted"),
    ("t_eval-duplicate", dict(t_eval=[0.2, 0.2]), ValueError, r"`t_eval`.*sorted"),
    ("t_eval-backward-increasing", dict(t_span=(1.0, 0.0), t_eval=[0.2, 0.5]), ValueError,
     r"`t_eval`.*sorted"),
    ("t_eval-2d", dict(t_eval=[[0.1, 0.2]]), ValueError,
     r"`t_eval` has 2 per-trajectory entries.*k=3"),
    ("t_eval-3d", dict(t_eval=[[[0.1, 0.2]]]), ValueError, r"`t_eval`.*1-dimensional"),
    ("t_eval-nan", dict(t_eval=[0.1, np.nan]), ValueError, r"`t_eval`"),
    ("args-length", dict(args=(np.array([1.0, 2.0]),)), ValueError,
     r"`y0` of shape \(n, k\) = \(2, 3\) has k=3.*args\[0\] has last axis 2.*last axis has length k"),
    ("args-lengths-disagree", dict(y0=np.c_[[1.0, 0.0]],
                                   args=(np.array([1.0, 2.0]), np.array([1.0, 2.0, 3.0]))),
     ValueError, r"args\[0\] has last axis 2, args\[1\] has last axis 3"),
    ("args-matrix-wrong-axis", dict(args=(np.ones((3, 2)),)), ValueError,
     r"args\[0\] has last axis 2"),
    ("args-string", dict(args=("fast",)), ValueError, r"args\[0\].*not valid.*gpuivp.shared"),
    ("args-dict", dict(args=({"omega": 1.0},)), ValueError, r"args\[0\].*not valid"),
    ("args-none-entry", dict(args=(None,)), ValueError, r"args\[0\].*not valid"),
    ("args-complex", dict(args=(OMEGA + 1j,)), ValueError, r"args\[0\] is complex"),
    ("args-complex-scalar", dict(args=(1j,)), ValueError, r"args\[0\] is complex"),
    ("args-str-array", dict(args=(np.array(["a", "b", "c"]),)), ValueError,
     r"args\[0\] is not a numeric array"),
    ("args-not-tuple", dict(args=5.0), TypeError, r"'args' cannot be unpacked.*tuple"),
    ("max_step-zero", dict(max_step=0.0), ValueError, r"`max_step` must be positive"),
    ("max_step-negative", dict(max_step=-1.0), ValueError, r"`max_step` must be positive"),
    ("max_step-nan", dict(max_step=np.nan), ValueError, r"`max_step` must be positive"),
    ("first_step-zero", dict(first_step=0.0), ValueError, r"`first_step` must be positive"),
    ("first_step-too-big", dict(first_step=5.0), ValueError, r"`first_step` exceeds bounds"),
    ("max_steps-zero", dict(max_steps=0), ValueError, r"`max_steps` must be a positive integer"),
    ("max_steps-float", dict(max_steps=10.5), ValueError, r"`max_steps`"),
    ("max_steps-bool", dict(max_steps=True), ValueError, r"`max_steps`"),
    ("max_events-zero", dict(max_events=0), ValueError, r"`max_events`"),
    ("dtype-int", dict(dtype=np.int32), ValueError, r"`dtype` must be float32 or float64"),
    ("dtype-nonsense", dict(dtype="nonsense"), TypeError, r"`dtype`"),
    ("y0-ragged", dict(y0=[[1.0, 2.0], [1.0]]), ValueError, r"`y0` must be array_like"),
    ("t_eval-str", dict(t_eval=["a"]), ValueError, r"`t_eval` must be array_like"),
    ("t_eval-ragged", dict(t_eval=[[0.1], [0.2, 0.3]]), ValueError, r"`t_eval`"),
    ("rtol-str", dict(rtol="x"), ValueError, r"`rtol` must be array_like"),
    ("atol-str", dict(atol="abc"), ValueError, r"`atol` must be array_like"),
    ("max_step-str", dict(max_step="x"), TypeError, r"`max_step` must be a number"),
    ("max_step-none", dict(max_step=None), TypeError, r"`max_step` must be a number"),
    ("first_step-str", dict(first_step="x"), TypeError, r"`first_step` must be a number"),
    ("t_span-complex", dict(t_span=(0.0, 1j)), ValueError, r"`t_span`"),
    ("dt-complex", dict(method="RK4", dt=1j), TypeError, r"`dt` must be a number"),
    ("fun-not-callable", dict(fun=3.0), TypeError, r"`fun` must be callable"),
    ("dtype-complex", dict(dtype=np.complex128), ValueError, r"`dtype`"),
]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case, kw, exc, match", INVALID, ids=[c[0] for c in INVALID])
def test_invalid_input_raises_before_integration(backend, case, kw, exc, match):
    fun = Counting(oscillator)
    call = dict(fun=fun, t_span=(0.0, 1.0), y0=Y0, args=(OMEGA,))
    call.update(kw)
    with pytest.raises(exc, match=match):
        run(backend, call.pop("fun"), call.pop("t_span"), call.pop("y0"), **call)
    assert fun.calls == 0


@pytest.mark.parametrize("backend", ["gpu", "Numba", "", None])
def test_unknown_backend_names_the_valid_ones(backend):
    fun = Counting(decay)
    with pytest.raises(ValueError, match=r"`backend` must be 'auto' or one of.*numba"):
        solve_ivp(fun, (0, 1), np.c_[[1.0]], args=(1.0,), backend=backend)
    assert fun.calls == 0


def test_unusable_backend_says_why():
    if "cuda" in gpuivp.available_backends():
        pytest.skip("cuda is usable here")
    fun = Counting(decay)
    with pytest.raises(RuntimeError, match="'cuda' is not usable here"):
        solve_ivp(fun, (0, 1), np.c_[[1.0]], args=(1.0,), backend="cuda")
    assert fun.calls <= 1   # at most the probe at t0


@pytest.mark.parametrize("backend", BACKENDS)
def test_validation_comes_before_a_long_integration(backend):
    """A big, long problem with one bad argument fails at once (no integration is started)."""
    import time
    y0 = np.ones((1, 100_000))
    start = time.perf_counter()
    with pytest.raises(ValueError, match="`t_eval`"):
        run(backend, decay, (0.0, 1e6), y0, args=(np.linspace(0, 1, 100_000),),
            method="RK4", dt=1e-6, t_eval=[0.0, 2e6])
    assert time.perf_counter() - start < 5.0


# -- what fun returns ---------------------------------------------------------------------

def wrong_count(t, y, omega):
    return (y[1], -omega * y[0], 0.0)


def scalar_return(t, y, omega):
    return -omega * y[0]


def none_return(t, y, omega):
    return None


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("bad", [wrong_count, none_return], ids=["three-for-two", "None"])
def test_fun_returning_wrong_number_of_values(backend, bad):
    fun = Counting(bad)
    with pytest.raises(ValueError, match=r"`fun` returned.*n=2"):
        run(backend, fun, (0.0, 1.0), Y0, args=(OMEGA,))
    assert fun.calls == 1   # the probe at t0 only


@pytest.mark.parametrize("backend", BACKENDS)
def test_fun_returning_a_scalar_for_n1(backend):
    fun = Counting(scalar_return)
    with pytest.raises(ValueError, match=r"`fun` returned.*n=1"):
        run(backend, fun, (0.0, 1.0), np.ones((1, 3)), args=(OMEGA,))
    assert fun.calls == 1


def whole_vector(t, y, omega):
    return (y[1], -omega * y)     # second entry is an array, not a scalar


@pytest.mark.parametrize("backend", ["numba", "scipy"])
def test_fun_returning_an_array_entry_is_named(backend):
    fun = Counting(whole_vector)
    with pytest.raises(ValueError, match=r"`fun` returned.*entry 1.*must be a scalar"):
        run(backend, fun, (0.0, 1.0), Y0, args=(OMEGA,))
    assert fun.calls == 1


def wrong_width(t, y, omega):
    return (y[1], np.ones(7))   # a column count that matches nothing


def test_vectorized_fun_returning_wrong_width():
    fun = Counting(wrong_width)
    with pytest.raises(ValueError, match=r"`fun` returned.*entry 1"):
        solve_ivp(fun, (0.0, 1.0), Y0, args=(OMEGA,), backend="numpy", vectorized=True)
    assert fun.calls == 1


class FussyError(Exception):
    """An exception whose constructor takes two arguments."""

    def __init__(self, code, detail):
        super().__init__(f"{code}: {detail}")
        self.code = code


def raising(t, y, omega):
    raise Boom("user code failed")


def raising_fussy(t, y, omega):
    raise FussyError(42, "fussy failure")


@pytest.mark.parametrize("backend", BACKENDS)
def test_fun_raising_propagates_and_names_the_trajectory(backend):
    with pytest.raises(Boom, match=r"user code failed[\s\S]*trajector(y|ies) 0"):
        run(backend, raising, (0.0, 1.0), Y0, args=(OMEGA,))


@pytest.mark.parametrize("backend", BACKENDS)
def test_fun_raising_an_exception_with_a_custom_constructor(backend):
    with pytest.raises(FussyError, match="fussy failure") as info:
        run(backend, raising_fussy, (0.0, 1.0), Y0, args=(OMEGA,))
    assert info.value.code == 42


@pytest.mark.parametrize("backend", ["scipy", "numba"])
@pytest.mark.parametrize("k, bad, memory_budget", [(3, 2, None), (80, 70, None), (80, 70, 1)],
                         ids=["small", "threaded", "chunked"])
def test_fun_raising_later_for_one_trajectory_is_named(backend, k, bad, memory_budget):
    """Trajectory by trajectory (scipy), or rerun one by one after the compiled run raised
    (numba): the note names the trajectory as numbered in the whole ensemble, also across
    threads (k >= 64) and chunks (a memory budget of one trajectory per chunk)."""
    omega = np.ones(k)
    omega[bad] = 3.0
    with pytest.raises(Boom, match=rf"omega too large[\s\S]*trajectory {bad}\)"):
        solve_ivp(raises_for_fast, (0.0, 1.0), np.c_[[1.0, 0.0]], args=(omega,),
                  backend=backend, memory_budget=memory_budget)


def raises_vectorized(t, y, omega):
    if np.any((omega > 2.5) & (t > 0.1)):
        raise Boom("omega too large")
    return (y[1], -omega * omega * y[0])


def test_fun_raising_later_numpy_propagates():
    with pytest.raises(Boom, match="omega too large"):
        solve_ivp(raises_vectorized, (0.0, 1.0), Y0, args=(OMEGA,), backend="numpy",
                  vectorized=True)


def three_args(t, y, omega, damping):
    return (y[1], -omega * omega * y[0] - damping * y[1])


@pytest.mark.parametrize("backend", BACKENDS)
def test_too_few_args_for_fun_is_pythons_type_error(backend):
    """As in scipy: the TypeError from the call names the missing parameter."""
    with pytest.raises(TypeError, match="damping"):
        run(backend, three_args, (0.0, 1.0), Y0, args=(OMEGA,))


# -- single IVPs --------------------------------------------------------------------------

@pytest.mark.parametrize("backend", ["auto"] + BACKENDS)
def test_single_ivp_with_a_sweep_arg_says_how_to_ask_for_an_ensemble(backend):
    """An array arg meant as a sweep with a 1-D y0: fun returns the wrong shape."""
    fun = Counting(decay)
    kw = dict(vectorized=True) if backend == "numpy" else {}
    with pytest.raises(ValueError, match=r"`fun` returned[\s\S]*pass `y0` of shape \(n, k\)"):
        solve_ivp(fun, (0.0, 1.0), [1.0], args=(np.array([0.5, 1.0, 2.0]),), backend=backend,
                  **kw)
    assert fun.calls == 1


@pytest.mark.parametrize("backend", ["auto"] + BACKENDS)
def test_single_ivp_wrong_count(backend):
    fun = Counting(wrong_count)
    kw = dict(vectorized=True) if backend == "numpy" else {}
    with pytest.raises(ValueError, match=r"`fun` returned"):
        solve_ivp(fun, (0.0, 1.0), [1.0, 0.0], args=(1.0,), backend=backend, **kw)
    assert fun.calls == 1


@pytest.mark.parametrize("backend", ["auto"] + BACKENDS)
def test_single_ivp_invalid_input(backend):
    fun = Counting(decay)
    kw = dict(vectorized=True) if backend == "numpy" else {}
    with pytest.raises(ValueError, match="`y0`"):
        solve_ivp(fun, (0.0, 1.0), [np.nan], args=(1.0,), backend=backend, **kw)
    with pytest.raises(ValueError, match="`t_span`"):
        solve_ivp(fun, (np.inf, 1.0), [1.0], args=(1.0,), backend=backend, **kw)
    with pytest.raises(ValueError, match="`method`"):
        solve_ivp(fun, (0.0, 1.0), [1.0], method="RK5", args=(1.0,), backend=backend, **kw)
    with pytest.raises(TypeError, match="'args' cannot be unpacked"):
        solve_ivp(fun, (0.0, 1.0), [1.0], args=1.0, backend=backend, **kw)
    assert fun.calls == 0


def test_numpy_backend_needs_vectorized():
    fun = Counting(decay)
    with pytest.raises(ValueError, match="vectorized=True"):
        solve_ivp(fun, (0.0, 1.0), np.ones((1, 3)), args=(1.0,), backend="numpy")
    assert fun.calls <= 1


def test_scipy_only_method_on_another_backend():
    fun = Counting(decay)
    with pytest.raises(ValueError, match=r"'Radau' runs only on the 'scipy' backend"):
        solve_ivp(fun, (0.0, 1.0), np.ones((1, 3)), method="Radau", args=(1.0,),
                  backend="numba")
    assert fun.calls == 0


def test_small_rtol_warns_like_scipy():
    with pytest.warns(UserWarning, match="`rtol` is too small"):
        solve_ivp(decay, (0.0, 1.0), np.ones((1, 2)), args=(1.0,), rtol=1e-20,
                  backend="numpy", vectorized=True)


# -- inputs that are valid ----------------------------------------------------------------

@pytest.mark.parametrize("backend", BACKENDS)
def test_integer_y0_is_converted_to_float(backend):
    y0 = np.array([[1, 2, 3], [0, 0, 0]])
    res = run(backend, oscillator, (0.0, 1.0), y0, args=(OMEGA,))
    ref = run(backend, oscillator, (0.0, 1.0), y0.astype(float), args=(OMEGA,))
    assert res.y.dtype == np.float64 and res.y_final.dtype == np.float64
    np.testing.assert_array_equal(res.y_final, ref.y_final)
    np.testing.assert_array_equal(res.status, 0)


@pytest.mark.parametrize("backend", BACKENDS)
def test_integer_and_list_inputs_everywhere(backend):
    """Lists and ints for y0, t_span, t_eval and args work like their float arrays."""
    res = run(backend, oscillator, (0, 2), [[1, 2], [0, 0]], args=([1, 2],), t_eval=[0, 1, 2])
    ref = run(backend, oscillator, (0.0, 2.0), np.array([[1.0, 2.0], [0.0, 0.0]]),
              args=(np.array([1.0, 2.0]),), t_eval=np.array([0.0, 1.0, 2.0]))
    np.testing.assert_array_equal(res.y, ref.y)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("t_eval", [None, [0.0, 0.5, 1.0]])
@pytest.mark.parametrize("shape", [(2, 0), (0, 3), (0, 0)])
def test_empty_ensemble(backend, shape, t_eval):
    """k = 0 or n = 0: empty results with the right shapes, no error, fun never integrated."""
    n, k = shape
    fun = Counting(oscillator if n else (lambda t, y, omega: ()))
    args = (np.ones(k),) if k else (1.0,)
    res = run(backend, fun, (0.0, 1.0), np.zeros(shape), args=args, t_eval=t_eval)
    n_t = 2 if t_eval is None else len(t_eval)
    assert res.t.shape == (n_t,)
    assert res.y.shape == (n, k, n_t)
    assert res.y_final.shape == (n, k)
    for name in ("t_final", "status", "nfev", "naccept", "nreject"):
        assert np.shape(res[name]) == (k,), name
    assert res.success
    np.testing.assert_array_equal(res.status, 0)
    assert fun.calls == 0


@pytest.mark.parametrize("backend", BACKENDS)
def test_empty_ensemble_with_per_trajectory_args_of_length_zero(backend):
    res = run(backend, oscillator, (0.0, 1.0), np.zeros((2, 1)), args=(np.array([]),))
    assert res.y.shape == (2, 0, 2) and res.status.shape == (0,)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("t_span", [(0.0, 1.0), (1.0, 0.0)])
def test_empty_t_eval(backend, t_span):
    res = run(backend, oscillator, t_span, Y0, args=(OMEGA,), t_eval=[])
    assert res.t.shape == (0,)
    assert res.y.shape == (2, 3, 0)
    np.testing.assert_array_equal(res.status, 0)
    ref = run(backend, oscillator, t_span, Y0, args=(OMEGA,))
    np.testing.assert_array_equal(res.y_final, ref.y_final)


@pytest.mark.parametrize("backend", BACKENDS)
def test_t_eval_at_the_ends_and_backward(backend):
    """Boundary values of t_eval are valid, forward and backward."""
    res = run(backend, oscillator, (1.0, 0.0), Y0, args=(OMEGA,), t_eval=[1.0, 0.5, 0.0])
    assert res.y.shape == (2, 3, 3)
    np.testing.assert_array_equal(res.y[:, :, 0], Y0)
    np.testing.assert_allclose(res.y[:, :, -1], res.y_final)


@pytest.mark.parametrize("backend", BACKENDS)
def test_n1_broadcasts_against_per_trajectory_args(backend):
    res = run(backend, oscillator, (0.0, 1.0), np.c_[[1.0, 0.0]], args=(OMEGA,))
    assert res.y_final.shape == (2, 3)
    np.testing.assert_allclose(res.y_final[0], np.cos(OMEGA), rtol=1e-2, atol=1e-3)


@pytest.mark.parametrize("backend", ["numba", "numpy"])
def test_options_warn_on_compiled_backends(backend):
    with pytest.warns(UserWarning, match="no effect"):
        run(backend, decay, (0.0, 1.0), np.ones((1, 2)), args=(1.0,), jac=None)
