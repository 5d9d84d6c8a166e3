"""``cupy`` backend: the lockstep engine on CuPy arrays, its stepper fused into raw kernels.

For a vectorized ``fun`` written with array code (CuPy inside ``fun``, or a state too
large to compile per thread). All trajectories step together on the GPU; ``fun`` is
called on ``(n, k)`` CuPy arrays, and everything between two of its calls runs in the
kernels of ``kernels/lockstep.cu`` (:mod:`gpuivp.engines.fused`), compiled once per
dtype and method by NVRTC through CuPy's ``RawModule`` and kept in CuPy's kernel cache.
The host looks at the device only every few steps, to see whether anything still runs.

With ``events`` or ``dense_output`` the backend runs the array code of
:class:`~gpuivp.engines.lockstep.Lockstep` on CuPy arrays instead: same results,
one host synchronisation per step.

The stiff Rosenbrock methods (``Rosenbrock23``, ``Rodas5P``) always take that generic
path: :class:`~gpuivp.engines.lockstep.Lockstep` with ``xp = cupy`` composes
:class:`~gpuivp.engines.rosenbrock.RosenbrockPart`, whose batched LU with partial pivoting
factors the ``(n, n, m)`` stack of ``I / (h gamma) - J`` of all running trajectories in
CuPy array operations per step (a Python loop over the ``n`` components, none over
trajectories), the stages' solves likewise. The fused kernels have no linear-solve part.
A singular matrix fails its own trajectory (``FAIL_SINGULAR``); ``njev`` and ``nlu``
come back per trajectory.

Kernels are compiled with ``--fmad=false``: no multiply-add contraction, so the GPU
does the numpy engine's arithmetic and takes the same steps. CuPy appends ``-ftz=true``
to every NVRTC compile, after the caller's options (``cupy/cuda/compiler.py``,
``_compile_with_cache_cuda``), so in float32 these kernels flush subnormal results and
inputs (below 1.2e-38) to zero where NumPy keeps them: float32 runs agree with the
``numpy`` backend step for step unless a value of the stepper goes subnormal. Float64 is
unaffected (``-ftz`` applies to float32 only). This is accepted, not fought: the option
is CuPy's, and a state that small is below any float32 tolerance. :data:`CUPY_APPENDED`
names it, and :func:`kernel_ptx` compiles with it, so CI checks the PTX CuPy builds.
"""
from __future__ import annotations

import numpy as np

from ..engines.compile_cache import cached
from ..engines.fused import FusedLockstep, kernel_signatures, kernel_source, scalar_args
from ..engines.lockstep import Lockstep
from ._base import progress_bar

NAME = "cupy"
#: Threads per block of the fused kernels (memory-bound, one thread per trajectory).
BLOCK = 128
#: NVRTC options: C++17, no FMA contraction (the numpy engine's rounding).
NVRTC_OPTIONS = ("-std=c++17", "--fmad=false")
#: What CuPy appends to every NVRTC compile after :data:`NVRTC_OPTIONS` (float32
#: subnormals flush to zero; see the module docstring).
CUPY_APPENDED = ("-ftz=true",)
#: The kernels' source, as named in compiler errors.
SOURCE_NAME = "kernels/lockstep.cu"


def _cupy():
    import cupy
    return cupy


def unavailable_reason():
    try:
        cupy = _cupy()
    except ImportError as exc:
        return (f"CuPy is not installed ({exc}); install it with `pip install cupy-cuda12x` "
                f"(or gpuivp[cuda])")
    except Exception as exc:  # a broken CUDA installation can fail at import
        return f"CuPy failed to import ({type(exc).__name__}: {exc})"
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:
        return f"no CUDA GPU/driver usable by CuPy ({type(exc).__name__}: {exc})"
    if count < 1:
        return "no CUDA GPU visible to CuPy"
    return None


class Launcher:
    """``launch(name, nk, size, *args)`` for :class:`FusedLockstep`: CuPy raw kernels."""

    def __init__(self, dtype):
        self.dtype = dtype
        self.source = kernel_source()
        self.sigs = kernel_signatures(self.source)

    def function(self, name, nk):
        sig = self.sigs[name]

        def build():
            module = self.module(nk)
            return module.get_function(sig.instance(self.dtype, nk))

        return cached(("cupy-kernel", self.source, str(self.dtype), nk, name), build)

    def module(self, nk):
        def build():
            cupy = _cupy()
            names = [s.instance(self.dtype, nk) for s in self.sigs.values()]
            return cupy.RawModule(code=self.source, options=NVRTC_OPTIONS,
                                  name_expressions=names)

        return cached(("cupy-module", self.source, str(self.dtype), nk), build)

    def __call__(self, name, nk, size, *args):
        fn = self.function(name, nk)
        grid = max(1, (size + BLOCK - 1) // BLOCK)
        fn((grid,), (BLOCK,), tuple(scalar_args(self.sigs[name], self.dtype, args)))


def engine(problem, tableau, xp, launch):
    """The engine for ``problem``: fused kernels, or the array code with events, dense
    output, per-trajectory problem data or a Rosenbrock method (which the fused kernels do
    not take)."""
    if (problem.events or problem.dense_output or problem.per
            or getattr(tableau, "linear_solve", False)):
        return Lockstep(problem, tableau, xp)
    return FusedLockstep(problem, tableau, xp, launch)


def solve(problem, tableau):
    """Run the ensemble on the GPU; returns the raw result dict as NumPy host arrays."""
    cupy = _cupy()
    with progress_bar(problem) as bar, np.errstate(all="ignore"):  # (NumPy in the host tests)
        raw = engine(problem, tableau, cupy, Launcher(problem.dtype)).run(bar)
    return {key: cupy.asnumpy(v) if isinstance(v, cupy.ndarray) else v
            for key, v in raw.items()}


# -- diagnostics without a GPU: the kernels' PTX ------------------------------------------------

def kernel_ptx(dtype, nk, arch="sm_90", compiler=None):
    """PTX of the fused kernels instantiated for ``dtype`` and ``nk`` stage rows; needs no GPU.

    Compiled with ``nvcc -ptx`` when ``nvcc`` is on PATH (or ``compiler="nvcc"``), else with
    NVRTC through ``cuda.bindings`` (``compiler="nvrtc"``; the ``nvidia-cuda-nvrtc`` wheel), the
    compiler CuPy uses, with the options CuPy compiles the backend's kernels with
    (:data:`NVRTC_OPTIONS` then :data:`CUPY_APPENDED`).
    Raises ``RuntimeError`` with the compiler's log when the source does not compile.
    """
    import shutil

    source = kernel_source()
    sigs = kernel_signatures(source).values()
    compiler = compiler or ("nvcc" if shutil.which("nvcc") else "nvrtc")
    if compiler == "nvcc":
        return _nvcc_ptx(source + "\n" + "\n".join(s.explicit_instantiation(dtype, nk)
                                                   for s in sigs) + "\n", arch)
    return _nvrtc_ptx(source, [s.instance(dtype, nk) for s in sigs], arch)



def _nvrtc_ptx(source, names, arch):
    """NVRTC (``cuda.bindings.nvrtc``, no driver needed) with the backend's options."""
    from cuda.bindings import nvrtc

    def check(result, what):
        err, *rest = result
        if err != nvrtc.nvrtcResult.NVRTC_SUCCESS:
            raise RuntimeError(f"NVRTC {what} failed for {SOURCE_NAME} ({arch}): {err}")
        return rest[0] if len(rest) == 1 else rest

    prog = check(nvrtc.nvrtcCreateProgram(source.encode(), b"lockstep.cu", 0, [], []), "create")
    try:
        for name in names:
            check(nvrtc.nvrtcAddNameExpression(prog, name.encode()), "name expression")
        options = [f"--gpu-architecture={arch}".encode()] + [
            o.encode() for o in NVRTC_OPTIONS + CUPY_APPENDED]
        err, = nvrtc.nvrtcCompileProgram(prog, len(options), options)
        if err != nvrtc.nvrtcResult.NVRTC_SUCCESS:
            size = check(nvrtc.nvrtcGetProgramLogSize(prog), "log size")
            log = b" " * size
            check(nvrtc.nvrtcGetProgramLog(prog, log), "log")
            raise RuntimeError(f"NVRTC could not compile {SOURCE_NAME} for {arch}:\n"
                               f"{log.decode(errors='replace')}")
        size = check(nvrtc.nvrtcGetPTXSize(prog), "PTX size")
        ptx = b" " * size
        check(nvrtc.nvrtcGetPTX(prog, ptx), "PTX")
    finally:
        nvrtc.nvrtcDestroyProgram(prog)
    return ptx.rstrip(b"\x00").decode()


def _nvcc_ptx(source, arch):
    import os
    import subprocess
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        src, out = os.path.join(tmp, "lockstep.cu"), os.path.join(tmp, "lockstep.ptx")
        with open(src, "w") as fh:
            fh.write(source)
        proc = subprocess.run(["nvcc", "-ptx", f"-arch={arch}", *NVRTC_OPTIONS, *CUPY_APPENDED,
                               src, "-o", out], capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"nvcc could not compile {SOURCE_NAME} for {arch}:\n"
                               f"{proc.stdout}{proc.stderr}")
        with open(out) as fh:
            return fh.read()
