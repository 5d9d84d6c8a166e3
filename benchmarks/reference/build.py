"""Build and load the hand-written C references, ``lorenz_rk45.c`` and ``large_rk45.c``.

Both are scipy's RK45 of ``rk45.h`` (one integrator for any state size) with
their right-hand sides.  ``lorenz_rk45.c`` is compiled with ``gcc -O3 -fopenmp
-fPIC -shared`` (no fast-math) into ``_build/liblorenz_rk45.so`` next to this
file, only when the library is missing or older than the source or ``rk45.h``,
and loaded with :mod:`ctypes`.  OpenMP uses
every core unless ``OMP_NUM_THREADS`` says otherwise.

Examples
--------
>>> import numpy as np
>>> from reference.build import load
>>> solve = load()
>>> y_final, status, nfev = solve(np.linspace(0, 28, 100), 0.0, 10.0, 1e-6, 1e-8)

The large-systems benchmark's reference, ``large_rk45.c`` (Lorenz-96 and
Kuramoto on the generic RK45 of ``rk45.h``, with scipy's ``t_eval`` output), is
built the same way into ``_build/liblarge_rk45.so`` by :func:`load_large`.

The GPU benchmark's CUDA C reference, ``lorenz_gpu.cu`` (fixed RK4, RK45 and
Tsit5 for float and double, one thread per trajectory), is built here too:

* :func:`load_gpu_host` compiles it as plain host C++ (``g++ -O2
  -ffp-contract=off``, no fast-math, no FMA contraction: numba's CPU code has
  none) into ``_build/liblorenz_gpu_host.so`` and wraps its entry points, so the
  very code the GPU runs is checked on the CPU against gpuivp's numba backend
  (``tests/test_reference_gpu.py``);
* :func:`nvcc_compile` compiles it for the device with ``nvcc -cubin`` or
  ``-ptx`` for an ``sm_XX``: ``-O3``, no ``--use_fast_math`` (IEEE division and
  square root, no flush-to-zero) and nvcc's default ``-fmad=true``, which is
  what NVVM does for gpuivp's numba.cuda kernels (``fastmath=False`` leaves
  libNVVM's FMA contraction on), so the two GPU kernels compute alike;
  ``fmad=False`` builds the variant without contraction;
* :func:`gpu_resources` reports ``ptxas -v`` (registers, stack frame, spills)
  per kernel.

>>> lib = load_gpu_host()
>>> y, status, nfev = lib.solve("Tsit5", np.linspace(0, 21, 8), 0.0, 1.0,
...                             dtype=np.float32, rtol=1e-6, atol=1e-6)
"""

import ctypes
import math
import os
import re
import subprocess
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
SOURCE = HERE / "lorenz_rk45.c"
BUILD_DIR = HERE / "_build"
LIBRARY = BUILD_DIR / "liblorenz_rk45.so"
#: The C lane reference (issue 22): the same algorithm, 16 trajectories in lanes, refilled.
LANES_SOURCE = HERE / "lorenz_lanes.c"
LANES_LIBRARY = BUILD_DIR / "liblorenz_lanes.so"
#: The header both C references include: the integrator, scipy's RK45 for any n.
DEPENDS = (HERE / "rk45.h",)
CC = os.environ.get("CC", "gcc")
CFLAGS = ["-O3", "-fopenmp", "-fPIC", "-shared"]
#: The lane reference also for this CPU's vector width (AVX2: 4 doubles; numba's lane engine
#: compiles for the host CPU too), without contracting a * b + c into an FMA (which would
#: change the bits) and without errno for sqrt (which stops GCC vectorising it; the results
#: are the same).
LANES_CFLAGS = CFLAGS + ["-march=native", "-ffp-contract=off", "-fno-math-errno"]


def build(force=False, source=SOURCE, library=LIBRARY, depends=DEPENDS, cflags=None):
    """Compile a C reference unless an up-to-date library exists.

    Parameters
    ----------
    force : bool, optional
        Compile even if the library is newer than the source.
    source, library : pathlib.Path, optional
        The C file and the shared library to make of it (default: the Lorenz
        reference, ``lorenz_rk45.c``).
    depends : sequence of pathlib.Path, optional
        Headers the source includes (default ``rk45.h``): the library is also
        rebuilt when one of them is newer.
    cflags : list of str, optional
        Compiler flags (default :data:`CFLAGS`).

    Returns
    -------
    pathlib.Path
        The shared library.

    Raises
    ------
    subprocess.CalledProcessError
        If the compiler fails (its output is in ``stderr``).
    """
    newest = max(p.stat().st_mtime for p in (source, *depends))
    if not force and library.exists() and library.stat().st_mtime >= newest:
        return library
    # Compile to a temporary name and rename, so that a concurrent build or
    # a process that has the old library loaded never sees a partial file.
    flags = CFLAGS if cflags is None else cflags
    _compile_to(library, lambda out: [CC, *flags, "-o", out, str(source), "-lm"])
    return library


def compiler_version():
    """First line of ``$CC --version``, e.g. ``gcc (Debian 12.2.0-14) 12.2.0``."""
    out = subprocess.run([CC, "--version"], capture_output=True, text=True,
                         check=True).stdout
    return out.splitlines()[0]


def load(force_build=False, lanes=False):
    """Build if needed, load the library and wrap ``solve_ensemble``.

    Parameters
    ----------
    force_build : bool, optional
        Passed to :func:`build` as ``force``.
    lanes : bool, optional
        The C lane reference (``lorenz_lanes.c``: the same steps and results, 16
        trajectories at a time in lanes) instead of the scalar one.

    Returns
    -------
    callable
        ``solve(rho, t0, t1, rtol, atol, sigma=10.0, beta=8/3)`` integrating
        one Lorenz system per element of the 1-D array ``rho`` from
        ``y0 = (1, 0, 0)`` with scipy's RK45, returning ``(y_final, status,
        nfev)`` of shapes ``(3, k)``, ``(k,)`` and ``(k,)``.
    """
    lib = ctypes.CDLL(str(build(force_build, LANES_SOURCE, LANES_LIBRARY,
                                cflags=LANES_CFLAGS) if lanes else build(force_build)))
    long_dtype = np.dtype(f"i{ctypes.sizeof(ctypes.c_long)}")

    def array(dtype):
        return np.ctypeslib.ndpointer(dtype, flags="C_CONTIGUOUS")

    fn = lib.solve_ensemble
    fn.restype = ctypes.c_int
    fn.argtypes = [ctypes.c_int, array(np.float64), *[ctypes.c_double] * 6,
                   array(np.float64), array(np.intc), array(long_dtype)]

    def solve(rho, t0, t1, rtol, atol, sigma=10.0, beta=8 / 3):
        """Integrate one Lorenz system per ``rho`` with the C reference.

        Parameters
        ----------
        rho : array_like, shape (k,)
            Per-trajectory parameter.
        t0, t1 : float
            Interval of integration.
        rtol, atol : float
            Tolerances (``rtol`` is floored at ``100*eps`` as scipy does).
        sigma, beta : float, optional
            Shared parameters.

        Returns
        -------
        y_final : ndarray, shape (3, k)
            State of each trajectory where it stopped.
        status : ndarray of int, shape (k,)
            0 success, -1 step too small, -2 too many step attempts.
        nfev : ndarray of int, shape (k,)
            Right-hand-side evaluations, counted as scipy counts them.
        """
        rho = np.ascontiguousarray(rho, dtype=np.float64)
        if rho.ndim != 1:
            raise ValueError(f"rho must be 1-D, got shape {rho.shape}")
        k = rho.size
        y_final = np.empty((3, k))
        status = np.empty(k, dtype=np.intc)
        nfev = np.empty(k, dtype=long_dtype)
        fn(k, rho, sigma, beta, t0, t1, rtol, atol, y_final, status, nfev)
        return y_final, status.astype(np.int64), nfev.astype(np.int64)

    return solve


# -- the large-systems reference (large_rk45.c, rk45.h) ------------------------------------

LARGE_SOURCE = HERE / "large_rk45.c"
LARGE_LIBRARY = BUILD_DIR / "liblarge_rk45.so"
#: Model name -> (entry point of large_rk45.c, state size).
LARGE_MODELS = {"lorenz96": ("solve_l96", 40), "kuramoto": ("solve_kuramoto", 50)}


def load_large(force_build=False):
    """Build (if needed) and load ``large_rk45.c``: scipy's RK45 for Lorenz-96 and Kuramoto.

    Returns
    -------
    dict
        Model name (``"lorenz96"``, ``"kuramoto"``) -> ``solve(param, y0, t0, t1,
        rtol, atol, t_eval=None, shared=None)`` integrating one system per element
        of the 1-D ``param`` (Lorenz-96's forcing F, Kuramoto's coupling Kc) from
        the shared ``y0`` (n,), with ``shared`` Kuramoto's frequencies (n,). It
        returns ``(y_final, status, nfev, y_eval)``: shapes ``(n, k)``, ``(k,)``,
        ``(k,)`` and ``(n, k, len(t_eval))`` (NaN after a failure; None without
        ``t_eval``), statuses as :func:`load`'s.
    """
    lib = ctypes.CDLL(str(build(force_build, LARGE_SOURCE, LARGE_LIBRARY)))
    long_dtype = np.dtype(f"i{ctypes.sizeof(ctypes.c_long)}")

    def array(dtype):
        return np.ctypeslib.ndpointer(dtype, flags="C_CONTIGUOUS")

    def wrap(name, n):
        fn = getattr(lib, name)
        fn.restype = ctypes.c_int
        fn.argtypes = [ctypes.c_int, array(np.float64), array(np.float64), array(np.float64),
                       *[ctypes.c_double] * 4, ctypes.c_int, array(np.float64),
                       array(np.float64), array(np.float64), array(np.intc),
                       array(long_dtype)]

        def solve(param, y0, t0, t1, rtol, atol, t_eval=None, shared=None):
            param = np.ascontiguousarray(param, dtype=np.float64)
            if param.ndim != 1:
                raise ValueError(f"param must be 1-D, got shape {param.shape}")
            y0 = np.ascontiguousarray(y0, dtype=np.float64)
            if y0.shape != (n,):
                raise ValueError(f"y0 must have shape ({n},), got {y0.shape}")
            shared = np.ascontiguousarray(y0 if shared is None else shared, dtype=np.float64)
            if shared.shape != (n,):
                raise ValueError(f"shared must have shape ({n},), got {shared.shape}")
            te = np.ascontiguousarray([] if t_eval is None else t_eval, dtype=np.float64)
            k = param.size
            y_final = np.empty((n, k))
            y_eval = np.empty((n, k, te.size))
            status = np.empty(k, dtype=np.intc)
            nfev = np.empty(k, dtype=long_dtype)
            fn(k, param, shared, y0, t0, t1, rtol, atol, te.size, te, y_final, y_eval,
               status, nfev)
            return (y_final, status.astype(np.int64), nfev.astype(np.int64),
                    None if t_eval is None else y_eval)

        return solve

    return {model: wrap(name, n) for model, (name, n) in LARGE_MODELS.items()}


# -- the GPU benchmark's CUDA C reference (lorenz_gpu.cu) ---------------------------------

GPU_SOURCE = HERE / "lorenz_gpu.cu"
GPU_HOST_LIBRARY = BUILD_DIR / "liblorenz_gpu_host.so"
CXX = os.environ.get("CXX", "g++")
#: Host build of lorenz_gpu.cu: no fast-math and no FMA contraction (numba's CPU
#: code has none), so float64 results match gpuivp's numba backend to rounding.
CXXFLAGS = ["-O2", "-ffp-contract=off", "-fno-fast-math", "-fPIC", "-shared", "-x", "c++"]
NVCC = os.environ.get("NVCC", "nvcc")
#: Device build: -O3, no --use_fast_math.  -fmad=true is nvcc's default and what
#: NVVM does for gpuivp's numba.cuda kernels; see nvcc_compile.
NVCC_FLAGS = ["-O3", "-std=c++17"]
#: The kernel names of lorenz_gpu.cu: (method, dtype name) -> extern "C" name.
GPU_KERNELS = {(m, d): f"lorenz_{m.lower()}_{'f32' if d == 'float32' else 'f64'}"
               for m in ("RK4", "RK45", "Tsit5") for d in ("float32", "float64")}
#: The fixed-step methods among them (take dt and a step count, not tolerances).
FIXED = ("RK4",)
#: Step attempts per trajectory before status -2 (gpuivp's default max_steps).
MAX_STEPS = 100_000


def _compile_to(target, command):
    """Run ``command(tmp_path)`` and rename its output to ``target`` (atomic)."""
    BUILD_DIR.mkdir(exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=target.suffix, dir=BUILD_DIR)
    os.close(fd)
    try:
        proc = subprocess.run(command(tmp), capture_output=True, text=True)
        if proc.returncode != 0:
            raise subprocess.CalledProcessError(proc.returncode, proc.args, proc.stdout,
                                                proc.stderr)
        os.chmod(tmp, 0o755)
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return proc.stdout + proc.stderr


def build_gpu_host(force=False):
    """Compile ``lorenz_gpu.cu`` as a host shared library unless an up-to-date one exists.

    Returns
    -------
    pathlib.Path
        ``_build/liblorenz_gpu_host.so``.

    Raises
    ------
    subprocess.CalledProcessError
        If the compiler fails (its output is in ``stderr``).
    """
    lib = GPU_HOST_LIBRARY
    if not force and lib.exists() and lib.stat().st_mtime >= GPU_SOURCE.stat().st_mtime:
        return lib
    _compile_to(lib, lambda out: [CXX, *CXXFLAGS, "-o", out, str(GPU_SOURCE), "-lm"])
    return lib


def effective_rtol(rtol, dtype):
    """The rtol gpuivp uses: floored at ``100 eps(dtype)`` in float64, then cast to dtype.

    (In float32 a requested 1e-6 becomes 1.1920929e-05, with scipy's warning from gpuivp.)
    """
    return np.dtype(dtype).type(max(float(rtol), 100 * float(np.finfo(dtype).eps)))


def n_fixed_steps(t0, t1, dt):
    """gpuivp's number of fixed steps: ``max(1, ceil(|t1 - t0| / dt - 1e-12))``."""
    return max(1, math.ceil(abs(t1 - t0) / dt - 1e-12))


def kernel_args(method, k, y0, rho, y, nfev, status, *, t0, t1, dtype, sigma=10.0,
                beta=8 / 3, dt=None, rtol=None, atol=None, max_steps=MAX_STEPS):
    """The argument list of a ``lorenz_gpu.cu`` entry point, scalars typed for it.

    ``y0``, ``rho``, ``y``, ``nfev`` and ``status`` are passed through as given
    (NumPy arrays for the host build, CuPy arrays for the device kernels);
    scalars become ``numpy.int64`` or ``dtype`` (what both ctypes, through
    :func:`load_gpu_host`, and ``cupy.RawKernel`` need). ``rtol`` is floored by
    :func:`effective_rtol`.
    """
    T = np.dtype(dtype).type
    head = [np.int64(k), y0, rho, T(sigma), T(beta), T(t0), T(t1)]
    if method in FIXED:
        if dt is None:
            raise ValueError(f"{method} needs dt")
        mid = [T(dt), np.int64(n_fixed_steps(t0, t1, dt))]
    else:
        if rtol is None or atol is None:
            raise ValueError(f"{method} needs rtol and atol")
        mid = [effective_rtol(rtol, dtype), T(atol)]
    return head + mid + [np.int64(max_steps), y, nfev, status]


class GpuHostLibrary:
    """ctypes wrapper of the host build of ``lorenz_gpu.cu`` (see :func:`load_gpu_host`)."""

    def __init__(self, path):
        self.path = path
        self.lib = ctypes.CDLL(str(path))
        self._fns = {}
        for (method, dtype), name in GPU_KERNELS.items():
            fn = getattr(self.lib, name)
            ctype = ctypes.c_float if dtype == "float32" else ctypes.c_double

            def arr(dt):
                return np.ctypeslib.ndpointer(dt, flags="C_CONTIGUOUS")

            middle = ([ctype, ctypes.c_longlong] if method in FIXED else [ctype, ctype])
            fn.argtypes = ([ctypes.c_longlong, arr(dtype), arr(dtype), ctype, ctype, ctype,
                            ctype] + middle
                           + [ctypes.c_longlong, arr(dtype), arr(np.int64), arr(np.intc)])
            fn.restype = None
            self._fns[method, dtype] = fn

    def solve(self, method, rho, t0, t1, *, dtype=np.float64, dt=None, rtol=None, atol=None,
              y0=(1.0, 0.0, 0.0), sigma=10.0, beta=8 / 3, max_steps=MAX_STEPS):
        """Integrate one Lorenz system per ``rho`` on the CPU with the GPU reference's code.

        Parameters
        ----------
        method : {"RK4", "RK45", "Tsit5"}
        rho : array_like, shape (k,)
        t0, t1 : float
        dtype : float32 or float64
        dt : float
            RK4's step (``n_fixed_steps(t0, t1, dt)`` steps, the last ending on t1).
        rtol, atol : float
            RK45 and Tsit5 (rtol floored as gpuivp does: :func:`effective_rtol`).
        y0 : sequence of 3 floats, or array (3, k)
        sigma, beta : float
        max_steps : int
            Step attempts before status -2.

        Returns
        -------
        y_final : ndarray (3, k) of dtype
        status : ndarray (k,) of int64
        nfev : ndarray (k,) of int64
        """
        dtype = np.dtype(dtype)
        rho = np.ascontiguousarray(rho, dtype=dtype)
        if rho.ndim != 1:
            raise ValueError(f"rho must be 1-D, got shape {rho.shape}")
        k = rho.size
        y0 = np.asarray(y0, dtype=dtype)
        y0 = np.ascontiguousarray(np.broadcast_to(y0.reshape(3, -1), (3, k)))
        y = np.empty((3, k), dtype)
        nfev = np.empty(k, np.int64)
        status = np.empty(k, np.intc)
        args = kernel_args(method, k, y0, rho, y, nfev, status, t0=t0, t1=t1, dtype=dtype,
                           sigma=sigma, beta=beta, dt=dt, rtol=rtol, atol=atol,
                           max_steps=max_steps)
        self._fns[method, dtype.name](*args)
        return y, status.astype(np.int64), nfev


def load_gpu_host(force_build=False):
    """Build (if needed) and load the host build of ``lorenz_gpu.cu``.

    Returns
    -------
    GpuHostLibrary
        ``.solve(method, rho, t0, t1, dtype=..., dt=... | rtol=..., atol=...)``.
    """
    return GpuHostLibrary(build_gpu_host(force_build))


def nvcc_compile(arch="sm_90", kind="cubin", fmad=True, out=None, extra=()):
    """Compile ``lorenz_gpu.cu`` for the device with nvcc.

    Parameters
    ----------
    arch : str
        ``sm_80``, ``sm_90``, ... (``-arch``; for ``kind="ptx"`` the matching
        ``compute_XX`` virtual architecture is used).
    kind : {"cubin", "ptx"}
    fmad : bool
        ``-fmad=true`` (nvcc's default; FMA contraction as in gpuivp's kernels)
        or ``-fmad=false``. Never ``--use_fast_math``.
    out : path, optional
        Where to write; default ``_build/lorenz_gpu_<arch>[_nofma].<kind>``.
    extra : sequence of str
        More nvcc options (e.g. ``("-Xptxas", "-v")``).

    Returns
    -------
    (pathlib.Path, str)
        The output file and nvcc's combined output (ptxas's ``-v`` report, if asked).
    """
    if kind not in ("cubin", "ptx"):
        raise ValueError(f"kind must be 'cubin' or 'ptx', got {kind!r}")
    suffix = "" if fmad else "_nofma"
    out = Path(out) if out is not None else BUILD_DIR / f"lorenz_gpu_{arch}{suffix}.{kind}"
    arch_flag = f"-arch={arch}" if kind == "cubin" else f"-arch={arch.replace('sm_', 'compute_')}"
    cmd = [NVCC, *NVCC_FLAGS, arch_flag, f"-fmad={'true' if fmad else 'false'}", f"-{kind}",
           *extra]
    if out.parent == BUILD_DIR:
        log = _compile_to(out, lambda tmp: [*cmd, "-o", tmp, str(GPU_SOURCE)])
    else:
        proc = subprocess.run([*cmd, "-o", str(out), str(GPU_SOURCE)], capture_output=True,
                              text=True)
        if proc.returncode != 0:
            raise subprocess.CalledProcessError(proc.returncode, proc.args, proc.stdout,
                                                proc.stderr)
        log = proc.stdout + proc.stderr
    return out, log


def parse_ptxas_log(log):
    """Per entry function of a ``ptxas -v`` log: registers, stack frame and spills.

    Returns
    -------
    dict
        kernel name -> ``dict(registers, stack, spill_stores, spill_loads)``.
    """
    result = {}
    blocks = re.split(r"ptxas info\s*: Compiling entry function '", log)
    for block in blocks[1:]:
        name = block.split("'", 1)[0]
        props = re.search(r"(\d+) bytes stack frame, (\d+) bytes spill stores, "
                          r"(\d+) bytes spill loads", block)
        regs = re.search(r"Used (\d+) registers", block)
        result[name] = dict(
            registers=int(regs.group(1)) if regs else None,
            stack=int(props.group(1)) if props else None,
            spill_stores=int(props.group(2)) if props else None,
            spill_loads=int(props.group(3)) if props else None)
    return result


def gpu_resources(arch="sm_90", fmad=True):
    """``ptxas -v`` resources of every kernel of ``lorenz_gpu.cu`` for ``arch``.

    Returns
    -------
    dict
        kernel name -> ``dict(registers, stack, spill_stores, spill_loads)``.
    """
    _, log = nvcc_compile(arch, "cubin", fmad=fmad, extra=("-Xptxas", "-v"))
    return parse_ptxas_log(log)


def nvcc_version():
    """Last line of ``nvcc --version`` (e.g. ``Build cuda_13.0...``), or None."""
    try:
        out = subprocess.run([NVCC, "--version"], capture_output=True, text=True,
                             check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    lines = [ln for ln in out.splitlines() if "release" in ln] or out.splitlines()[-1:]
    return lines[0].strip() if lines else None


if __name__ == "__main__":
    print(build(force=True))
    print(build(True, LARGE_SOURCE, LARGE_LIBRARY))
    print(build_gpu_host(force=True))
