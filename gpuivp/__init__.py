"""gpuivp: ensembles of ODE initial value problems, solved in lockstep on the GPU or CPU.

One ``solve_ivp``-style call integrates thousands to millions of parameter sets or
initial conditions with scipy's Runge-Kutta methods (step for step) or fixed-step
methods, on the ``cuda``, ``cupy``, ``numba``, ``numpy`` or ``scipy`` backend.
"""
from ._at import at
from ._chunking import MemoryBudgetError
from ._ivp import solve_ivp
from ._problem import shared
from ._result import EnsembleResult
from ._stiffness import StiffnessWarning
from .backends import available_backends
from .backends._base import BackendFallbackWarning

__version__ = "0.1.0"
__all__ = ["solve_ivp", "at", "shared", "EnsembleResult", "available_backends", "MemoryBudgetError",
           "BackendFallbackWarning", "StiffnessWarning", "__version__"]
