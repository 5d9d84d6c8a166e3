"""The one tableau registry every backend reads."""
from ._controller import CONTROLLER, StepController
from ._tableau import Interpolant, Tableau, hermite_p
from .rosenbrock import RODAS5P, ROSENBROCK23, RosenbrockTableau
from .fixed import EULER, HEUN, MIDPOINT, RK4
from .scipy_rk import DOP853, RK23, RK45
from .tsit5 import TSIT5
from .vern7 import VERN7

#: Methods run by gpuivp's own engines, by public name.
METHODS = {t.name: t for t in (EULER, MIDPOINT, HEUN, RK4, RK23, RK45, DOP853, TSIT5,
                                     VERN7, ROSENBROCK23, RODAS5P)}
#: Methods only scipy runs (``backend="scipy"``).
SCIPY_ONLY = ("Radau", "BDF", "LSODA")

__all__ = ["Tableau", "RosenbrockTableau", "Interpolant", "hermite_p", "StepController", "CONTROLLER", "METHODS",
           "SCIPY_ONLY"]
