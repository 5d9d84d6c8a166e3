"""NumPy ufuncs on numba-cuda: the float loops numba-cuda types but cannot lower.

numba-cuda (0.30) types every NumPy ufunc on scalars, but lowers only those in its own
table (``numba.cuda.ufuncs.ufunc_db``: ``np.sin``, ``np.log``, ``np.maximum``, ...);
``np.sqrt``, ``np.exp``, ``np.abs``, ``np.power``, ``np.floor``, ``np.isfinite`` and
many more fail there with a bare ``KeyError: <ufunc 'sqrt'>``. :func:`register` adds
their float32 and float64 loops (and the integer loops of ``abs``/``sign``/``square``)
to that table, each lowered to the libdevice function of the argument's own type
(``__nv_sqrtf`` for float32, ``__nv_sqrt`` for float64) or to plain LLVM arithmetic,
so a float32 ``fun`` has no float64 arithmetic. Loops numba-cuda already has are left
as they are. ``tests/test_cuda_math.py`` compiles every ufunc of :data:`UNARY` and
:data:`BINARY` to PTX for both dtypes.
"""
from __future__ import annotations

import numpy as np

#: ufunc -> libdevice base name (float64 name; float32 appends ``f``), one argument.
UNARY = {
    np.sqrt: "sqrt", np.cbrt: "cbrt", np.exp: "exp", np.exp2: "exp2", np.expm1: "expm1",
    np.log1p: "log1p", np.fabs: "fabs", np.absolute: "fabs", np.floor: "floor",
    np.ceil: "ceil", np.trunc: "trunc", np.rint: "rint", np.sin: "sin", np.cos: "cos",
    np.tan: "tan", np.arcsin: "asin", np.arccos: "acos", np.arctan: "atan", np.sinh: "sinh",
    np.cosh: "cosh", np.tanh: "tanh", np.arcsinh: "asinh", np.arccosh: "acosh",
    np.arctanh: "atanh", np.log: "log", np.log2: "log2", np.log10: "log10",
}
#: ufunc -> libdevice base name, two arguments.
BINARY = {
    np.power: "pow", np.float_power: "pow", np.copysign: "copysign", np.fmod: "fmod",
    np.hypot: "hypot", np.arctan2: "atan2", np.fmax: "fmax", np.fmin: "fmin",
    np.nextafter: "nextafter",
}
#: ufuncs lowered to LLVM instructions here (see :func:`_arith_impls`).
ARITH = (np.square, np.sign, np.negative, np.positive, np.reciprocal, np.add, np.subtract,
         np.multiply, np.true_divide, np.isfinite, np.isinf, np.signbit)

_FLOAT_CODES = {"f": "float32", "d": "float64"}
_done = False


def _libdevice_impl(base, nargs):
    """Lowering that calls ``__nv_<base>`` / ``__nv_<base>f`` on the argument type."""
    from llvmlite import ir
    from numba.cuda import cgutils

    def impl(context, builder, sig, args):
        ty = context.get_value_type(sig.args[0])
        name = f"__nv_{base}f" if str(sig.args[0]) == "float32" else f"__nv_{base}"
        fnty = ir.FunctionType(ty, [ty] * nargs)
        fn = cgutils.get_or_insert_function(builder.module, fnty, name)
        return builder.call(fn, args)

    return impl


def _arith_impls():
    from llvmlite import ir

    def square(context, builder, sig, args):
        return builder.fmul(args[0], args[0])

    def isquare(context, builder, sig, args):
        return builder.mul(args[0], args[0])

    def negative(context, builder, sig, args):
        # fsub from -0.0: NVVM's IR dialect (LLVM 7) has no ``fneg``.
        return builder.fsub(ir.Constant(args[0].type, -0.0), args[0])

    def positive(context, builder, sig, args):
        return args[0]

    def reciprocal(context, builder, sig, args):
        return builder.fdiv(ir.Constant(args[0].type, 1.0), args[0])

    def add(context, builder, sig, args):
        return builder.fadd(*args)

    def subtract(context, builder, sig, args):
        return builder.fsub(*args)

    def multiply(context, builder, sig, args):
        return builder.fmul(*args)

    def divide(context, builder, sig, args):
        return builder.fdiv(*args)

    def sign(context, builder, sig, args):
        # NumPy: 1 for x > 0, -1 for x < 0, x itself for +-0 and NaN.
        x = args[0]
        one, minus = ir.Constant(x.type, 1.0), ir.Constant(x.type, -1.0)
        neg = builder.select(builder.fcmp_ordered("<", x, ir.Constant(x.type, 0.0)), minus, x)
        return builder.select(builder.fcmp_ordered(">", x, ir.Constant(x.type, 0.0)), one, neg)

    def isign(context, builder, sig, args):
        x = args[0]
        zero = ir.Constant(x.type, 0)
        pos = builder.select(builder.icmp_signed(">", x, zero), ir.Constant(x.type, 1), zero)
        return builder.select(builder.icmp_signed("<", x, zero), ir.Constant(x.type, -1), pos)

    def iabs(context, builder, sig, args):
        x = args[0]
        return builder.select(builder.icmp_signed("<", x, ir.Constant(x.type, 0)),
                              builder.neg(x), x)

    def isfinite(context, builder, sig, args):
        x = args[0]  # x - x is 0 for a finite x, NaN for an infinite or NaN one
        return builder.fcmp_ordered("==", builder.fsub(x, x), ir.Constant(x.type, 0.0))

    def isinf(context, builder, sig, args):
        x = args[0]
        inf = float("inf")
        return builder.or_(builder.fcmp_ordered("==", x, ir.Constant(x.type, inf)),
                           builder.fcmp_ordered("==", x, ir.Constant(x.type, -inf)))

    def signbit(context, builder, sig, args):
        x = args[0]
        width = x.type.intrinsic_name == "f32" and 32 or 64
        bits = builder.bitcast(x, ir.IntType(width))
        return builder.icmp_signed("<", bits, ir.Constant(ir.IntType(width), 0))

    def floats(impl, out=None):
        return {f"{c}->{out or c}": impl for c in _FLOAT_CODES}

    def floats2(impl):
        return {f"{c}{c}->{c}": impl for c in _FLOAT_CODES}

    ints = "bBhHiIlLqQ"
    return {
        np.square: {**floats(square), **{f"{c}->{c}": isquare for c in ints}},
        np.sign: {**floats(sign), **{f"{c}->{c}": isign for c in ints if c.islower()}},
        np.negative: floats(negative),
        np.positive: floats(positive),
        np.reciprocal: floats(reciprocal),
        np.add: floats2(add),
        np.subtract: floats2(subtract),
        np.multiply: floats2(multiply),
        np.true_divide: floats2(divide),
        np.isfinite: floats(isfinite, "?"),
        np.isinf: floats(isinf, "?"),
        np.signbit: floats(signbit, "?"),
        np.absolute: {f"{c}->{c}": iabs for c in ints if c.islower()},
    }


def register():
    """Add the missing float loops to numba-cuda's ufunc table (once per process)."""
    global _done
    if _done:
        return
    from numba.cuda import ufuncs

    db = ufuncs.ufunc_db()
    new = {}
    for table, nargs in ((UNARY, 1), (BINARY, 2)):
        for uf, base in table.items():
            impl = _libdevice_impl(base, nargs)
            new.setdefault(uf, {}).update(
                {f"{c * nargs}->{c}": impl for c in _FLOAT_CODES})
    for uf, loops in _arith_impls().items():
        new.setdefault(uf, {}).update(loops)
    for uf, loops in new.items():
        have = db.setdefault(uf, {})
        for sig, impl in loops.items():
            have.setdefault(sig, impl)  # numba-cuda's own loops win
    _done = True
