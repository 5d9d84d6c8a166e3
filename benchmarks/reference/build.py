"""Build and load the hand-written C reference, ``lorenz_rk45.c``.

The source is compiled with ``gcc -O3 -fopenmp -fPIC -shared`` (no fast-math)
into ``_build/liblorenz_rk45.so`` next to this file, only when the library is
missing or older than the source, and loaded with :mod:`ctypes`.  OpenMP uses
every core unless ``OMP_NUM_THREADS`` says otherwise.

Examples
--------
>>> import numpy as np
>>> from reference.build import load
>>> solve = load()
>>> y_final, status, nfev = solve(np.linspace(0, 28, 100), 0.0, 10.0, 1e-6, 1e-8)
"""

import ctypes
import os
import subprocess
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
SOURCE = HERE / "lorenz_rk45.c"
BUILD_DIR = HERE / "_build"
LIBRARY = BUILD_DIR / "liblorenz_rk45.so"
CC = os.environ.get("CC", "gcc")
CFLAGS = ["-O3", "-fopenmp", "-fPIC", "-shared"]


def build(force=False):
    """Compile the C reference unless an up-to-date library exists.

    Parameters
    ----------
    force : bool, optional
        Compile even if the library is newer than the source.

    Returns
    -------
    pathlib.Path
        The shared library.

    Raises
    ------
    subprocess.CalledProcessError
        If the compiler fails (its output is shown on stderr).
    """
    if (not force and LIBRARY.exists()
            and LIBRARY.stat().st_mtime >= SOURCE.stat().st_mtime):
        return LIBRARY
    BUILD_DIR.mkdir(exist_ok=True)
    # Compile to a temporary name and rename, so that a concurrent build or
    # a process that has the old library loaded never sees a partial file.
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=BUILD_DIR)
    os.close(fd)
    try:
        subprocess.run([CC, *CFLAGS, "-o", tmp, str(SOURCE), "-lm"], check=True)
        os.chmod(tmp, 0o755)  # mkstemp made it private
        os.replace(tmp, LIBRARY)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return LIBRARY


def compiler_version():
    """First line of ``$CC --version``, e.g. ``gcc (Debian 12.2.0-14) 12.2.0``."""
    out = subprocess.run([CC, "--version"], capture_output=True, text=True,
                         check=True).stdout
    return out.splitlines()[0]


def load(force_build=False):
    """Build if needed, load the library and wrap ``solve_ensemble``.

    Parameters
    ----------
    force_build : bool, optional
        Passed to :func:`build` as ``force``.

    Returns
    -------
    callable
        ``solve(rho, t0, t1, rtol, atol, sigma=10.0, beta=8/3)`` integrating
        one Lorenz system per element of the 1-D array ``rho`` from
        ``y0 = (1, 0, 0)`` with scipy's RK45, returning ``(y_final, status,
        nfev)`` of shapes ``(3, k)``, ``(k,)`` and ``(k,)``.
    """
    lib = ctypes.CDLL(str(build(force_build)))
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


if __name__ == "__main__":
    print(build(force=True))
