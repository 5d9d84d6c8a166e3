"""Backends: thin adapters over the two engines, chosen by name."""
from __future__ import annotations

import importlib

from ._base import BackendUnavailable

#: Every backend name, in the order ``auto`` prefers them on a machine that has all.
BACKENDS = ("cuda", "cupy", "numba", "numpy", "scipy")


def backend_module(name):
    """The module implementing backend ``name``."""
    if name not in BACKENDS:
        raise ValueError(f"`backend` must be 'auto' or one of {list(BACKENDS)}, got {name!r}.")
    return importlib.import_module(f"{__name__}.{name}")


#: Backends named by the API whose implementation has not landed yet, with the reason.
NOT_IMPLEMENTED = {}


def unavailable_reason(name):
    """Why backend ``name`` cannot run here, or None if it can."""
    if name in NOT_IMPLEMENTED:
        return NOT_IMPLEMENTED[name]
    try:
        module = backend_module(name)
    except ImportError as exc:
        return f"import failed: {exc}"
    return module.unavailable_reason()


def usable(name):
    return unavailable_reason(name) is None


def available_backends():
    """The names of the backends usable on this machine.

    Returns
    -------
    list of str
        A subset of ``["cuda", "cupy", "numba", "numpy", "scipy"]``.
    """
    return [b for b in BACKENDS if usable(b)]


__all__ = ["BACKENDS", "BackendUnavailable", "available_backends", "backend_module",
           "unavailable_reason", "usable"]
