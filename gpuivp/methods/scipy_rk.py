"""scipy's explicit pairs, read from the scipy release the project requires.

Reading the coefficients from scipy itself keeps one source of truth: the
per-trajectory step sequences match scipy's because the numbers are scipy's.
"""
import numpy as np
from scipy.integrate import DOP853 as _DOP853
from scipy.integrate import RK23 as _RK23
from scipy.integrate import RK45 as _RK45

from ._tableau import Interpolant, Tableau


def _from_scipy(cls, stability_boundary):
    return Tableau(name=cls.__name__, c=cls.C, a=cls.A, b=cls.B, order=cls.order,
                   error_order=cls.error_estimator_order, e=cls.E,
                   interpolant=Interpolant(cls.P), fsal=True,
                   stability_boundary=stability_boundary)


RK23 = _from_scipy(_RK23, 2.51)
RK45 = _from_scipy(_RK45, 3.31)


def _dop853_interpolant():
    """scipy's ``Dop853DenseOutput`` rows ``F0..F6`` as data.

    ``F0 = y_new - y_old``, ``F1 = h K_0 - F0``, ``F2 = 2 F0 - h (K_s + K_0)`` and
    ``F_{3+r} = h (D K)_r``, in the alternating form.
    """
    s = _DOP853.n_stages
    d = np.asarray(_DOP853.D)                      # (4, s + 1 + 3)
    p = np.zeros((d.shape[1], 3 + d.shape[0]))
    p[0, 1] = 1.0
    p[0, 2] = p[s, 2] = -1.0
    p[:, 3:] = d.T
    return Interpolant(p, form="alternating", dy=[1.0, -1.0, 2.0] + [0.0] * d.shape[0])


DOP853 = Tableau(
    name="DOP853", c=_DOP853.C, a=_DOP853.A, b=_DOP853.B, order=_DOP853.order,
    error_order=_DOP853.error_estimator_order,
    # Hairer's combined estimate: the 5th order one, with the 3rd order one beside it.
    e=_DOP853.E5, e_low=_DOP853.E3,
    c_extra=_DOP853.C_EXTRA, a_extra=_DOP853.A_EXTRA,
    interpolant=_dop853_interpolant(), fsal=False, stability_boundary=6.39,
)
