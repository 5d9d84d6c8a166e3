"""NumPy ufuncs in ``fun`` compile on ``cuda``, in float32 without float64 arithmetic.

numba-cuda lowers only part of the ufuncs it types; :mod:`gpuivp.backends._cuda_math`
registers the rest. Each ufunc is compiled here in a one-line kernel to PTX (no GPU
needed: ``get_current_device`` patched as in ``tests/test_cuda_ptx.py``).
"""
import importlib.util

import numpy as np
import pytest

from test_cuda_ptx import cb  # noqa: F401  (fixture: skips without NVVM or under the simulator)

pytestmark = pytest.mark.skipif(importlib.util.find_spec("numba_cuda") is None,
                                reason="numba-cuda is not installed")

BOOL_OUT = {"isfinite", "isinf", "signbit", "isnan"}
#: float32 ufuncs whose PTX has float64 instructions by design: libdevice's sinf/cosf/tanf
#: (nvcc's too) scale a huge argument's Payne-Hanek reduction in float64 (one cvt/mul/cvt,
#: on that path only); NumPy's float_power computes in float64 for every input type.
F64_BY_DESIGN = {"sin": {"cvt.rn.f64.s64", "mul.f64", "cvt.rn.f32.f64"},
                 "cos": {"cvt.rn.f64.s64", "mul.f64", "cvt.rn.f32.f64"},
                 "tan": {"cvt.rn.f64.s64", "mul.f64", "cvt.rn.f32.f64"}}


def _ufuncs():
    from gpuivp.backends import _cuda_math as M
    return sorted({u.__name__: u for u in list(M.UNARY) + list(M.BINARY) + list(M.ARITH)
                   if u is not np.float_power}.items())


def _ptx(cb, body, dtype, out_bool=False):  # noqa: F811
    from unittest import mock

    import numba
    import numba.cuda.dispatcher as dispatcher
    from numba import cuda

    from gpuivp.backends import _cuda_math
    _cuda_math.register()
    ns = dict(np=np)
    exec(f"def k(out, x, y):\n    out[0] = {body}\n", ns)
    ty = numba.from_dtype(np.dtype(dtype))
    out = numba.boolean if out_bool else ty
    with mock.patch.object(dispatcher, "get_current_device", lambda: cb._FakeDevice((9, 0))):
        ptx, _ = cuda.compile_ptx(ns["k"], (out[:], ty[:], ty[:]), cc=(9, 0))
    return ptx


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_every_registered_ufunc_compiles(cb, dtype):  # noqa: F811
    failed, f64 = {}, {}
    for name, uf in _ufuncs():
        call = f"np.{name}(x[0])" if uf.nin == 1 else f"np.{name}(x[0], y[0])"
        try:
            ptx = _ptx(cb, call, dtype, out_bool=name in BOOL_OUT)
        except Exception as exc:
            failed[name] = f"{type(exc).__name__}: {str(exc)[:120]}"
            continue
        if dtype == "float32":
            found = set(cb.f64_instructions(ptx))
            if found - F64_BY_DESIGN.get(name, set()):
                f64[name] = sorted(found)
    assert not failed, failed
    assert not f64, f"float64 arithmetic in float32 ufuncs: {f64}"


def test_readme_functions_compile_in_one_fun(cb):  # noqa: F811
    """The functions the issue listed as failing, in one expression, as a ``fun`` uses them."""
    body = ("np.sqrt(x[0]) + np.exp(x[0]) + np.abs(x[0]) + np.fabs(x[0]) + np.power(x[0], y[0])"
            " + np.square(x[0]) + np.sign(x[0]) + np.floor(x[0]) + np.expm1(x[0])"
            " + np.log1p(x[0]) + np.cbrt(x[0]) + (x[0] if np.isfinite(y[0]) else y[0])")
    ptx = _ptx(cb, body, "float32")
    assert not cb.f64_instructions(ptx), cb.f64_instructions(ptx)
    assert "__nv_sqrtf" in ptx or "sqrt.rn.f32" in ptx


def test_sign_and_isfinite_semantics_in_ptx(cb):  # noqa: F811
    """np.sign and np.isfinite are plain compares/selects (no calls left in the PTX)."""
    ptx = _ptx(cb, "np.sign(x[0]) + np.float32(np.isfinite(y[0]))", "float32")
    assert "call" not in ptx and "selp.f32" in ptx
