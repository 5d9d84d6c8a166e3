"""Host-side bookkeeping of the ``cuda`` backend that needs neither a GPU nor a compile:
which arrays start on the device, which never come back."""
import dataclasses
import os
import sys

import numpy as np
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from test_cuda_ptx import make_problem  # noqa: E402
from problems import lorenz  # noqa: E402


def _states():
    from gpuivp import _problem as P
    from gpuivp.engines.runner import EngineState
    from gpuivp.methods import METHODS

    def ev(t, y, s, r, b):
        return y[0]

    base = make_problem(lorenz, "RK45", "float64")
    events, spec, max_events = P.check_events([ev], None)
    full = dataclasses.replace(base, events=events, event_spec=spec, max_events=max_events,
                               t_eval=np.linspace(0.0, 1.0, 3))
    return [EngineState(p, 100, METHODS["RK45"]) for p in (base, full)]


@pytest.mark.parametrize("which", [0, 1])
def test_device_filled_arrays_match_the_host_state(which):
    """What the device fills (``DEVICE_FILL``) is what EngineState builds on the host."""
    from gpuivp._status import INIT
    from gpuivp.backends import cuda as cb

    state = _states()[which]
    seen = 0
    for name in cb.DEVICE_FILL:
        a = getattr(state, name, None)
        if a is None and state.events is not None:
            a = state.events.get(name)
        if a is None:
            continue
        seen += 1
        value = INIT if cb.DEVICE_FILL[name] is None else cb.DEVICE_FILL[name]
        np.testing.assert_array_equal(a, np.full_like(a, value), err_msg=name)
    assert seen >= (12 if which else 8)


def test_device_only_state_is_not_in_the_result():
    """The arrays never downloaded (``DEVICE_ONLY_FIELDS``) are not part of the raw result."""
    from gpuivp.backends import cuda as cb

    state = _states()[1]
    raw_ids = {id(v) for v in state.raw().values()}
    for name in cb.DEVICE_ONLY_FIELDS:
        assert id(getattr(state, name)) not in raw_ids, name


def _helper(x):
    if x < 0:
        raise ValueError("negative")
    return x


def _calls_helper(t, y, c):
    return (_helper(c) * y[0],)


def _asserts(t, y, c):
    assert c > 0
    return (c * y[0],)


@pytest.mark.parametrize("fun,expected", [
    (lorenz, False), (_calls_helper, True), (_asserts, True), (_helper, True)])
def test_may_raise_finds_raise_and_assert(fun, expected):
    """Only kernels whose functions can raise carry the raised-flag code (it costs
    registers); a raise one call down counts."""
    from gpuivp.backends import cuda as cb
    from problems import raises_for_fast

    assert cb.may_raise([fun]) is expected
    assert cb.may_raise([__import__("functools").partial(fun)]) is expected
    assert cb.may_raise([lorenz, raises_for_fast]) is True
