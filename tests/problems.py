"""Model problems shared by the tests: each right-hand side serves every backend
(tuple return, NumPy functions, works on scalars and on (n, m) columns)."""
import numpy as np

#: Relative tolerance for values compared with scipy's. scipy forms each stage and step with
#: BLAS (``np.dot(K.T, a)``) and its error norm with ``np.linalg.norm``, whose summation
#: order depends on the CPU's kernels (AVX2 or AVX-512); the engines sum in one fixed order.
#: The results then differ in the last bits, more so the more steps are taken (1.3e-12 on an
#: AVX2 machine for a Lorenz run of two time units). Step counts do not depend on it and are
#: compared exactly.
SCIPY_BLAS_RTOL = 1e-10


def lorenz(t, y, sigma, rho, beta):
    return (sigma * (y[1] - y[0]), y[0] * (rho - y[2]) - y[1], y[0] * y[1] - beta * y[2])


def vanderpol(t, y, mu):
    return (y[1], mu * (1 - y[0] * y[0]) * y[1] - y[0])


def brusselator(t, y, a, b):
    return (a + y[0] * y[0] * y[1] - (b + 1) * y[0], b * y[0] - y[0] * y[0] * y[1])


def forced_oscillator(t, y, omega, amp):
    """Damped oscillator with a time-dependent forcing term."""
    return (y[1], -0.1 * y[1] - y[0] + amp * np.cos(omega * t))


def decay(t, y, lam):
    """y' = -lam y: exact solution y0 exp(-lam t)."""
    return (-lam * y[0],)


def harmonic(t, y, omega):
    """y'' = -omega^2 y: exact solution cos/sin."""
    return (y[1], -omega * omega * y[0])


class Boom(RuntimeError):
    """An exception of the user's own, raised inside ``fun``."""


def raises_for_fast(t, y, omega):
    """A harmonic oscillator whose ``fun`` raises after t = 0.1 where omega > 2.5."""
    if omega > 2.5 and t > 0.1:
        raise Boom("omega too large")
    return (y[1], -omega * omega * y[0])


def blowup(t, y, p):
    """y' = p y^2 from y0 = 1: y = 1 / (1 - p t) overflows near t = 1/p."""
    return (p * y[0] * y[0],)


# name -> (fun, y0 (n, 1) or (n, k), args, t_span): small ensembles in non-chaotic ranges.
ENSEMBLES = {
    "lorenz": (lorenz, np.c_[[1.0, 0.0, 0.0]], (10.0, np.linspace(0.5, 20.0, 6), 8.0 / 3.0),
               (0.0, 5.0)),
    "vanderpol": (vanderpol, np.c_[[2.0, 0.0]], (np.linspace(0.2, 3.0, 5),), (0.0, 8.0)),
    "brusselator": (brusselator, np.array([[1.5, 1.0, 0.5], [3.0, 2.0, 1.0]]),
                    (1.0, np.array([1.5, 2.5, 3.0])), (0.0, 10.0)),
    "forced": (forced_oscillator, np.c_[[0.0, 1.0]], (np.linspace(0.5, 2.0, 4), 0.7),
               (0.0, 12.0)),
}


def captured_problem(call):
    """The validated ``Problem`` the front end hands a backend while ``call()`` runs."""
    import gpuivp._ivp as ivp

    captured = {}
    real = ivp._run

    def spy(problem, name):
        captured["problem"] = problem
        return real(problem, name)

    ivp._run = spy
    try:
        call()
    finally:
        ivp._run = real
    return captured["problem"]
