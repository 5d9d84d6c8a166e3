"""Classical fixed-step methods; dense output is the cubic Hermite interpolant."""
import numpy as np

from ._tableau import Interpolant, Tableau, hermite_p


def _fixed(name, c, a, b, order, stability_boundary):
    return Tableau(name=name, c=np.array(c, float), a=np.array(a, float), b=np.array(b, float),
                   order=order, error_order=None, e=None,
                   interpolant=Interpolant(hermite_p(b)), stability_boundary=stability_boundary)


EULER = _fixed("Euler", [0], [[0]], [1], 1, 2.0)
MIDPOINT = _fixed("Midpoint", [0, 0.5], [[0, 0], [0.5, 0]], [0, 1], 2, 2.0)
HEUN = _fixed("Heun", [0, 1], [[0, 0], [1, 0]], [0.5, 0.5], 2, 2.0)
RK4 = _fixed("RK4", [0, 0.5, 0.5, 1],
             [[0, 0, 0, 0], [0.5, 0, 0, 0], [0, 0.5, 0, 0], [0, 0, 1, 0]],
             [1 / 6, 1 / 3, 1 / 3, 1 / 6], 4, 2.79)
