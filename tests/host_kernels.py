"""The ``cupy`` backend's kernels (``kernels/lockstep.cu``) built as host C++ and run on NumPy.

The source compiles with ``GPUIVP_HOST`` defined (``__global__``/``__device__`` become
plain C++, the thread index a loop counter); this module adds an ``extern "C"`` wrapper
per kernel instantiation that loops over the threads, builds a shared library with the
C++ compiler (``CXX``, else ``g++``, else ``c++``; cached by the hash of the generated
source) and calls it through ctypes. :class:`HostLauncher` is then a drop-in launcher
for :class:`gpuivp.engines.fused.FusedLockstep` with ``xp=numpy``: CI runs the very
kernels the GPU runs.
"""
from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from gpuivp.engines.fused import kernel_signatures, kernel_source, scalar_args
from gpuivp.methods import METHODS

CTYPES = {"int": ctypes.c_int, "i64": ctypes.c_longlong}
CNAMES = {"float32": "float", "float64": "double"}


def compiler():
    """The host C++ compiler, or None."""
    for cand in (os.environ.get("CXX"), "g++", "c++", "clang++"):
        if cand and shutil.which(cand):
            return cand
    return None


def _wrapper_name(name, dtype, nk):
    return f"host_{name}_{CNAMES[np.dtype(dtype).name]}_{nk}"


def host_source(source, sigs, instances):
    """The source with an ``extern "C"`` loop over threads per (kernel, dtype, nk)."""
    out = ["#define GPUIVP_HOST 1", source]
    for dtype, nk in instances:
        for sig in sigs.values():
            names = ", ".join(p.name for p in sig.params)
            out.append(
                f'extern "C" void {_wrapper_name(sig.name, dtype, nk)}'
                f'(long long size, {sig.declarations(dtype)}) {{\n'
                f"    blockDim.x = 1; threadIdx.x = 0;\n"
                f"    for (long long b = 0; b < size; ++b) {{\n"
                f"        blockIdx.x = (unsigned)b;\n"
                f"        {sig.instance(dtype, nk)}({names});\n"
                f"    }}\n}}\n")
    return "\n".join(out)


def all_instances():
    """(dtype, nk) of every method in the registry, float32 and float64."""
    nks = sorted({t.n_stages + 1 + t.n_extra for t in METHODS.values()})
    return [(np.dtype(d), nk) for d in ("float32", "float64") for nk in nks]


class HostLauncher:
    """``launch(name, nk, size, *args)`` running the kernels on the CPU (NumPy arrays)."""

    def __init__(self, dtype, lib):
        self.dtype = np.dtype(dtype)
        self.lib = lib
        self.sigs = kernel_signatures()

    def __call__(self, name, nk, size, *args):
        sig = self.sigs[name]
        fn = getattr(self.lib, _wrapper_name(name, self.dtype, nk))
        scalar_t = ctypes.c_float if self.dtype == np.float32 else ctypes.c_double
        cargs = [ctypes.c_longlong(size)]
        for p, a in zip(sig.params, scalar_args(sig, self.dtype, args)):
            if p.pointer:
                cargs.append(ctypes.c_void_p(a.ctypes.data))
            else:
                cargs.append((scalar_t if p.ctype == "T" else CTYPES[p.ctype])(a.item()))
        fn(*cargs)


def build_library(cxx=None, cache_dir=None):
    """Compile every instantiation into a shared library (cached); returns the ctypes CDLL."""
    cxx = cxx or compiler()
    if cxx is None:
        raise RuntimeError("no C++ compiler (g++, c++ or clang++) on PATH")
    source = kernel_source()
    code = host_source(source, kernel_signatures(source), all_instances())
    digest = hashlib.sha256((cxx + code).encode()).hexdigest()[:16]
    cache = Path(cache_dir or tempfile.gettempdir()) / "gpuivp-host-kernels"
    cache.mkdir(parents=True, exist_ok=True)
    lib = cache / f"lockstep-{digest}.so"
    if not lib.exists():
        src = cache / f"lockstep-{digest}.cpp"
        src.write_text(code)
        tmp = cache / f"lockstep-{digest}.{os.getpid()}.so"
        proc = subprocess.run([cxx, "-O2", "-std=c++17", "-ffp-contract=off", "-fPIC", "-shared",
                               "-Wall", "-Werror", "-Wno-unknown-pragmas", str(src), "-o", str(tmp)],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"{cxx} failed to build the host kernels:\n{proc.stderr}")
        os.replace(tmp, lib)
    return ctypes.CDLL(str(lib))


class NumpyAsCupy:
    """NumPy under CuPy's name for the ``cupy`` backend on the host: ``asnumpy``,
    ``ndarray`` and every NumPy function."""

    asnumpy = staticmethod(np.asarray)
    ndarray = np.ndarray

    def __getattr__(self, name):
        return getattr(np, name)


_LIB = []


def activate(monkeypatch):
    """Make ``backend="cupy"`` run its engine and kernels on the host for this test."""
    import pytest

    from gpuivp import backends
    from gpuivp.backends import cupy as cupy_backend

    if compiler() is None:
        pytest.skip("no C++ compiler to build the cupy backend's kernels for the host")
    if not _LIB:
        _LIB.append(build_library())
    lib = _LIB[0]
    monkeypatch.setattr(cupy_backend, "_cupy", NumpyAsCupy)
    monkeypatch.setattr(cupy_backend, "Launcher", lambda dtype: HostLauncher(dtype, lib))
    monkeypatch.setattr(cupy_backend, "unavailable_reason", lambda: None)
    monkeypatch.setattr(backends, "NOT_IMPLEMENTED", {})
