"""Status codes: plain ints for device code, messages for users."""

SUCCESS = 0
TERMINATED = 1
FAIL_STEP = -1
FAIL_MAXSTEPS = -2
FAIL_NONFINITE = -3
FAIL_DENSE = -4
#: ``cuda`` only: ``fun`` or an event function raised (device code cannot say what it raised).
FAIL_RAISED = -5
#: Events with ``affect`` piled up at one time: a restart within rounding (10 spacings of
#: floating-point numbers) of the previous one, which would otherwise never end (chatter).
FAIL_CHATTER = -6
#: Rosenbrock methods: the matrix ``I / (h gamma) - J`` of a step had an exactly zero pivot.
FAIL_SINGULAR = -7
# Engine-internal states (never returned): not started, mid-run, mid-step after a rejection.
INIT = 10
RUNNING = 11
REJECTED = 12

MESSAGES = {
    SUCCESS: "The solver successfully reached the end of the integration interval.",
    TERMINATED: "A termination event occurred.",
    FAIL_STEP: "Required step size is less than spacing between numbers.",
    FAIL_MAXSTEPS: "The maximum number of step attempts (`max_steps`) was reached. "
                   "Try increasing max_steps. An explicit method spending them is often on a "
                   "stiff problem: try method='Rodas5P' or 'Rosenbrock23' (backends "
                   "'numba', 'cuda', 'numpy') or 'Radau' (backend 'scipy').",
    FAIL_NONFINITE: "The derivative or the error estimate was not finite (NaN or inf).",
    FAIL_DENSE: "Dense output stored `dense_max_steps` steps: the trajectory was stopped there. "
                "Try increasing dense_max_steps.",
    FAIL_RAISED: "`fun` or an event function raised an exception on the GPU (numba.cuda "
                 "device code cannot report which); run this trajectory on `numba` to see it.",
    FAIL_CHATTER: "Events with `affect` piled up at one time (chatter): a restart came within "
                  "rounding of the previous one. Change the affect so that the new state moves "
                  "off the event, or make the event terminal there.",
    FAIL_SINGULAR: "The linear system of a Rosenbrock step (I / (h gamma) - J) was singular: "
                   "check `jac`, or try an explicit method or method='Radau' (backend='scipy').",
}


def summary(status) -> str:
    """One line counting each status of an ensemble, worst first."""
    import numpy as np

    codes, counts = np.unique(np.asarray(status), return_counts=True)
    parts = [f"{c} x {int(s)} ({MESSAGES.get(int(s), 'unknown')})" for s, c in zip(codes, counts)]
    return "; ".join(parts) if parts else "Empty ensemble."
