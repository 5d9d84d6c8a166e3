"""scipy's explicit pairs, read from the scipy release the project requires.

Reading the coefficients from scipy itself keeps one source of truth: the
per-trajectory step sequences match scipy's because the numbers are scipy's.
"""
import numpy as np
from scipy.integrate import DOP853 as _DOP853
from scipy.integrate import RK23 as _RK23
from scipy.integrate import RK45 as _RK45

from ._tableau import Tableau


def _from_scipy(cls):
    return Tableau(name=cls.__name__, c=cls.C, a=cls.A, b=cls.B, order=cls.order,
                   error_order=cls.error_estimator_order, e=cls.E, p=cls.P)


RK23 = _from_scipy(_RK23)
RK45 = _from_scipy(_RK45)

DOP853 = Tableau(
    name="DOP853", c=_DOP853.C, a=_DOP853.A, b=_DOP853.B, order=_DOP853.order,
    error_order=_DOP853.error_estimator_order,
    # The combined 5th/3rd order estimate; `e` holds E5 for the consistency check.
    e=_DOP853.E5, p=None, kind="dop853",
    extra=dict(e3=np.asarray(_DOP853.E3), e5=np.asarray(_DOP853.E5),
               a_extra=np.asarray(_DOP853.A_EXTRA), c_extra=np.asarray(_DOP853.C_EXTRA),
               d=np.asarray(_DOP853.D)),
)
