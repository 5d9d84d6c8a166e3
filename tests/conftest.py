import os
import shutil
import sys
import tempfile

import pytest

sys.path.insert(0, os.path.dirname(__file__))

# The compiled-engine disk cache of this test session (and of the subprocesses it starts)
# lives in a temporary directory, never in the user's ~/.cache.
_DISK_CACHE = tempfile.mkdtemp(prefix="gpuivp-test-cache-")
os.environ["GPUIVP_CACHE_DIR"] = _DISK_CACHE


def pytest_unconfigure(config):
    shutil.rmtree(_DISK_CACHE, ignore_errors=True)


def _cupy_on_host(monkeypatch):
    from gpuivp.backends import cupy as cupy_backend

    if cupy_backend.unavailable_reason() is None:
        return  # a GPU: the real backend
    import host_kernels

    host_kernels.activate(monkeypatch)


@pytest.fixture(autouse=True)
def _cupy_backend_on_host(request, monkeypatch):
    """A test parametrized with ``backend="cupy"`` runs that backend's engine and its CUDA
    kernels built as host C++ (``host_kernels.py``) where CuPy has no GPU; on a machine
    with one it runs the real backend."""
    callspec = getattr(request.node, "callspec", None)
    if callspec is not None and callspec.params.get("backend") == "cupy":
        _cupy_on_host(monkeypatch)


@pytest.fixture
def cupy_on_host(monkeypatch):
    """``backend="cupy"`` usable in this test: on the host without a GPU (as above)."""
    _cupy_on_host(monkeypatch)
