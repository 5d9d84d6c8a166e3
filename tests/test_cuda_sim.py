"""The ``cuda`` backend's kernels under numba's CUDA simulator, against the ``numba`` backend.

``NUMBA_ENABLE_CUDASIM`` is read when ``numba.cuda`` is first imported, so the
simulated run happens in a subprocess (``tests/_cudasim_worker.py``); this
process runs the same cases on the ``numba`` backend meanwhile and compares.
Both run the same generated engine in the same operation order, so float64
results agree to ~1e-12 and the counters exactly.
"""
import importlib.util
import os
import subprocess
import sys
import time

import numpy as np
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
import _cudasim_worker as W  # noqa: E402

pytestmark = [
    pytest.mark.cudasim,
    pytest.mark.skipif(importlib.util.find_spec("numba_cuda") is None,
                       reason="numba-cuda is not installed"),
]

WORKER_TIMEOUT = 300


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    """Start the simulator worker at once; the fixture's ``result()`` waits for it."""
    out = tmp_path_factory.mktemp("cudasim") / "sim.npz"
    log = out.with_suffix(".log")
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1",
               PYTHONPATH=os.pathsep.join([ROOT] + [p for p in
                                                    [os.environ.get("PYTHONPATH")] if p]))
    with open(log, "w") as fh:
        proc = subprocess.Popen([sys.executable, os.path.join(HERE, "_cudasim_worker.py"),
                                 str(out)], cwd=ROOT, env=env, stdout=fh,
                                stderr=subprocess.STDOUT)

    class Handle:
        data = None

        def result(self):
            if self.data is None:
                t = time.perf_counter()
                try:
                    rc = proc.wait(timeout=WORKER_TIMEOUT)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
                    pytest.fail(f"the cudasim worker ran over {WORKER_TIMEOUT} s:\n"
                                + log.read_text()[-4000:])
                if rc != 0 or not out.exists():
                    pytest.fail(f"the cudasim worker failed (rc={rc}):\n"
                                + log.read_text()[-4000:])
                with np.load(out) as d:
                    self.data = {key: d[key] for key in d.files}
                self.waited = time.perf_counter() - t
            return self.data

        def case(self, name):
            d = self.result()
            if f"{name}/error" in d:
                pytest.fail(f"case {name!r} raised under the simulator:\n{d[name + '/error']}")
            prefix = name + "/"
            return {key[len(prefix):]: v for key, v in d.items() if key.startswith(prefix)}

    handle = Handle()
    yield handle
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def _compare(name, got, ref):
    dtype = np.asarray(ref["y_final"]).dtype
    if dtype == np.float64:
        rtol = 1e-12
    else:
        # float32: the same float32 operations in the same order; allow a few ulps for
        # library functions (pow) that may round differently.
        rtol = 1e-5
    for f in ("status", "nfev", "naccept", "nreject"):
        np.testing.assert_array_equal(got[f], ref[f], err_msg=f"{name}: {f}")
    # (``threads``: a refill case's launch width, recorded on cuda only)
    assert set(got) - {"seconds", "threads"} == set(ref), (name, sorted(got), sorted(ref))
    if "n_events" in ref:
        np.testing.assert_array_equal(got["n_events"], ref["n_events"], err_msg=name)
    for f in ("t", "t_final", "y_final", "y", "t_events", "y_events", "sol"):
        if f not in ref:
            continue
        r = np.asarray(ref[f])
        g = np.asarray(got[f])
        assert g.shape == r.shape and g.dtype == r.dtype, (name, f, g.shape, r.shape, g.dtype)
        finite = np.isfinite(r)
        scale = np.max(np.abs(r[finite]), initial=1.0)
        np.testing.assert_allclose(g, r, rtol=rtol, atol=rtol * scale, equal_nan=True,
                                   err_msg=f"{name}: {f}")


@pytest.mark.parametrize("name", [n for n in W.CASES if n not in W.RAISES])
def test_cuda_sim_agrees_with_numba(sim, name):
    ref = W.run_case(name, "numba")
    assert str(ref["backend"]) == "numba"
    got = sim.case(name)
    assert str(got["backend"]) == "cuda"
    _compare(name, got, ref)


def test_cuda_sim_raise_in_fun_is_status_minus5(sim):
    """A ``raise`` in ``fun`` (at t0 or mid-run, here over many launches) ends that
    trajectory with status -5 (on a GPU the exception itself cannot be reported); the
    others are those of a run without the raising trajectories, bit for bit."""
    from gpuivp import solve_ivp

    got = sim.case("raises_f64")
    np.testing.assert_array_equal(got["status"], [0, -5, -5, 0])
    # raised in its first call: t0 and y0, nothing counted; raised later: a stored state
    assert got["t_final"][1] == 0.0 and list(got["y_final"][:, 1]) == [1.0, 0.0]
    assert got["nfev"][1] == 0 and 0.0 < got["t_final"][2] <= 0.5
    case = W.CASES["raises_f64"]
    kw = dict(case["kw"], args=(np.array([1.0, 2.0]),))
    ref = solve_ivp(W.raises_sometimes, case["t_span"], case["y0"], backend="numba", **kw)
    for f in ("t_final", "y_final", "nfev", "naccept", "nreject"):
        np.testing.assert_allclose(np.asarray(got[f])[..., [0, 3]], ref[f], rtol=1e-12,
                                   err_msg=f)


def test_cuda_sim_failures_stay_per_trajectory(sim):
    """NaN at t0 is status -3 for that trajectory only; the others match a clean run."""
    got = sim.case("nan_at_t0_f64")
    np.testing.assert_array_equal(got["status"], [0, -3, 0])
    assert got["nfev"][1] == 1
    assert np.all(np.isnan(got["y"][:, 1, 1:]))
    np.testing.assert_array_equal(got["y"][:, 1, 0], [1.0, 0.5])  # y0 at t_eval[0] = t0
    # The good trajectories are those of an ensemble without the bad one.
    from gpuivp import solve_ivp
    case = W.CASES["nan_at_t0_f64"]
    kw = dict(case["kw"], args=(case["kw"]["args"][0][[0, 2]],))
    clean = solve_ivp(case["fun"], case["t_span"], case["y0"], backend="numba", **kw)
    np.testing.assert_array_equal(got["y_final"][:, [0, 2]], clean.y_final)
    np.testing.assert_array_equal(got["nfev"][[0, 2]], clean.nfev)
    blow = sim.case("blowup_f64")
    assert blow["status"][0] == 0 and np.all(blow["status"][1:] < 0)
    np.testing.assert_array_equal(sim.case("max_steps_f64")["status"], [-2, -2, -2])


def test_cuda_sim_slices_do_not_change_results(sim):
    """Many short launches (resumed state in device memory) give the one-launch result."""
    whole, sliced = sim.case("rk45_f64"), sim.case("sliced_f64")
    for f in ("status", "nfev", "naccept", "nreject", "t_final", "y_final"):
        np.testing.assert_array_equal(sliced[f], whole[f], err_msg=f)


CHUNKED = [name for name, case in W.CASES.items() if "chunk" in case]


@pytest.mark.parametrize("name", CHUNKED)
def test_cuda_sim_chunks_overlapped_equal_one_piece(sim, name):
    """Chunks pipelined over two streams (3+ of them) give the one-piece result, bit for bit:
    t_eval output, final state, counters, status (a failing trajectory), events, sol."""
    got, whole = sim.case(name), sim.case(W.CASES[name]["whole"])
    assert int(got["chunks"]) >= 3, int(got["chunks"])
    assert set(got) - {"seconds", "chunks"} == set(whole) - {"seconds"}
    for f in set(whole) - {"seconds", "backend"}:
        np.testing.assert_array_equal(got[f], whole[f], err_msg=f"{name}: {f}")
        assert got[f].dtype == whole[f].dtype, f
    assert str(got["backend"]) == "cuda"
    if name.startswith("teval_fail"):
        assert np.all(got["status"][:-1] == 0) and got["status"][-1] < 0


REFILLED = [name for name, case in W.CASES.items() if "refill" in case]


@pytest.mark.parametrize("name", REFILLED)
def test_cuda_sim_refill_equals_one_thread_per_trajectory(sim, name):
    """``REFILL``: fewer threads than trajectories, a thread whose trajectory ends takes the
    next; every result equals one thread per trajectory bit for bit (over resumed slices, a
    raising ``fun`` and a failing trajectory with ``t_eval``)."""
    got, whole = sim.case(name), sim.case(W.CASES[name]["whole"])
    assert int(got["threads"]) < len(got["status"]), int(got["threads"])
    assert set(got) - {"seconds", "threads"} == set(whole) - {"seconds"}
    for f in set(whole) - {"seconds", "backend"}:
        np.testing.assert_array_equal(got[f], whole[f], err_msg=f"{name}: {f}")


def test_cuda_sim_chunked_run_uses_streams_and_pinned_memory(sim):
    """Two streams, asynchronous copies through pinned buffers reused from chunk to chunk,
    the same results with ``OVERLAP = False`` (see ``_cudasim_worker.check_overlap``)."""
    d = sim.result()
    assert str(d["_meta/overlap"]) == "", str(d["_meta/overlap"])
    assert str(d["_meta/chunked_progress"]) == "", str(d["_meta/chunked_progress"])
    assert str(d["_meta/interrupt_chunked"]) == "", str(d["_meta/interrupt_chunked"])


def test_cuda_sim_meta(sim):
    d = sim.result()
    assert bool(d["_meta/simulator"]), "the worker did not run under the simulator"
    assert str(d["_meta/unavailable_reason"]) == "None"
    assert "cuda" in str(d["_meta/available"]).split(",")
    assert str(d["_meta/interrupt"]) == "", str(d["_meta/interrupt"])


def test_cuda_unusable_without_gpu():
    """In this (normal) process without a GPU, 'cuda' says why and `auto` skips it."""
    from gpuivp.backends import cuda as cb
    if cb.simulated():
        pytest.skip("this process runs the CUDA simulator")
    reason = cb.unavailable_reason()
    if reason is None:
        pytest.skip("a CUDA GPU is usable here")
    assert "numba.cuda.is_available() is False" in reason or "numba-cuda" in reason
    from gpuivp import solve_ivp
    case = W.CASES["rk45_f64"]
    with pytest.raises(RuntimeError, match="cuda"):
        solve_ivp(case["fun"], case["t_span"], case["y0"], backend="cuda", **case["kw"])
    res = solve_ivp(case["fun"], case["t_span"], case["y0"], **case["kw"])
    assert res.backend == "numba"
