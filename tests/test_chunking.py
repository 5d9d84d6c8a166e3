"""Chunking along k: an ensemble solved in many chunks equals the one-chunk result, bit for bit."""
import dataclasses
import pickle

import numpy as np
import pytest

import gpuivp
from gpuivp import _chunking as C
from problems import captured_problem, lorenz

K = 23
T_EVAL = np.linspace(0.0, 2.0, 9)
# rho = 1e300 overflows at once: a failing trajectory (NaN outputs after it stops) in the mix.
RHO = np.r_[np.linspace(0.5, 20.0, K - 1), 1e300]
Y0 = np.c_[[1.0, 0.0, 0.0]] + np.linspace(0.0, 0.1, K)


def solve(backend, memory_budget=None, **kw):
    opts = dict(args=(10.0, RHO, 8.0 / 3.0), backend=backend, vectorized=True, rtol=1e-6,
                atol=1e-8, memory_budget=memory_budget)
    opts.update(kw)
    return gpuivp.solve_ivp(lorenz, (0.0, 2.0), Y0, **opts)


def assert_same(a, b):
    assert set(a) == set(b)
    assert set(a) <= set(C.TRAJ_AXIS) | set(C.DERIVED) | set(C.SHARED), \
        "a result field the chunk assembler does not know: add it to _chunking.TRAJ_AXIS"
    for key, value in a.items():
        if isinstance(value, (list, tuple)):  # event fields: one array per event function
            assert len(value) == len(b[key]), key
            for u, v in zip(value, b[key]):
                np.testing.assert_array_equal(u, v, err_msg=key)
                assert u.dtype == v.dtype, key
        elif isinstance(value, np.ndarray):
            np.testing.assert_array_equal(value, b[key], err_msg=key)
            assert value.dtype == b[key].dtype, key
        elif key != "sol":
            assert value == b[key], key


def _problem(backend, **kw):
    """The Problem ``solve(backend, **kw)`` hands to the backend (captured on the way)."""
    return captured_problem(lambda: solve(backend, **kw))


@pytest.mark.parametrize("backend", ["numba", "numpy", "cupy"])
@pytest.mark.parametrize("t_eval", [T_EVAL, None], ids=["t_eval", "no_t_eval"])
def test_many_chunks_equal_one(backend, t_eval):
    whole = solve(backend, t_eval=t_eval)
    assert whole.status[-1] < 0 and np.all(whole.status[:-1] == 0)
    problem = _problem(backend, t_eval=t_eval)
    per_traj = C.bytes_per_trajectory(problem, backend)
    for per_chunk, n_chunks in ((1, K), (4, 6), (7, 4)):
        budget = per_chunk * per_traj + per_traj // 2
        limited = dataclasses.replace(problem, memory_budget=budget)
        assert len(C.split(K, C.chunk_size(limited, backend))) == n_chunks
        assert_same(whole, solve(backend, memory_budget=budget, t_eval=t_eval))
    assert_same(whole, solve(backend, memory_budget=1, t_eval=t_eval))  # at least 1 per chunk
    if t_eval is not None:
        assert np.isnan(whole.y[:, -1, -1]).all() and not np.isnan(whole.y[:, 0]).any()


@pytest.mark.filterwarnings("ignore:overflow encountered in cast")  # rho = 1e300 in float32
def test_numpy_dop853_fixed_and_float32():
    for kw in (dict(method="DOP853"), dict(method="RK4", dt=0.01),
               dict(dtype=np.float32, rtol=1e-4)):
        assert_same(solve("numpy", t_eval=T_EVAL, **kw),
                    solve("numpy", t_eval=T_EVAL, memory_budget=1, **kw))


def test_events_numpy():
    """Event fields (one array per event function), terminal events included."""
    def up(t, y, sigma, rho, beta):
        return y[0] - 1.0

    def stop(t, y, sigma, rho, beta):
        return y[2] - 5.0

    up.direction = 1
    stop.terminal = True
    kw = dict(t_eval=T_EVAL, events=[up, stop], max_events=3)
    whole = solve("numpy", **kw)
    assert {0, 1} <= set(whole.status.tolist()) and whole.n_events[0].max() > 0
    assert_same(whole, solve("numpy", memory_budget=1, **kw))


def test_dense_output_numpy():
    whole = solve("numpy", dense_output=True)
    chunked = solve("numpy", dense_output=True, memory_budget=1)
    assert_same(whole, chunked)
    for t in (0.3, np.array([0.1, 0.5, 1.9])):
        np.testing.assert_array_equal(whole.sol(t), chunked.sol(t))
    restored = pickle.loads(pickle.dumps(chunked))
    np.testing.assert_array_equal(whole.sol(1.0), restored.sol(1.0))


def test_progress_bar_over_chunks(capsys):
    res = solve("numpy", memory_budget=1, progress=True, t_eval=T_EVAL)
    err = capsys.readouterr().err
    assert f"({K} chunks)" in err and f"{K}/{K}" in err
    assert_same(res, solve("numpy", t_eval=T_EVAL))


def test_chunked_result_pickles():
    res = solve("numpy", memory_budget=1, t_eval=T_EVAL)
    assert_same(res, pickle.loads(pickle.dumps(res)))


def test_default_budget_from_memory(monkeypatch):
    host = C.available_host_memory()
    assert host is None or host > 0
    assert C.free_device_memory("numpy") is None
    monkeypatch.setattr(C, "available_host_memory", lambda: 4000)
    monkeypatch.setattr(C, "free_device_memory", lambda backend: 1000 if backend == "cuda"
                        else None)
    assert C.default_memory_budget("numpy") == 1000
    assert C.default_memory_budget("cuda") == 500
    monkeypatch.setattr(C, "available_host_memory", lambda: None)
    assert C.default_memory_budget("numpy") is None
    monkeypatch.setattr(C, "ALWAYS_FITS", 0)  # measure memory even for this small ensemble
    assert C.chunk_size(_problem("numpy"), "numpy") == K  # unknown memory: one chunk
    # Room for the result (about 7 kB with T_EVAL) beside a budget of a quarter of it.
    monkeypatch.setattr(C, "available_host_memory", lambda: 40_000)
    assert C.chunk_size(_problem("numpy"), "numpy") < K
    # The default budget chunks too, and the result does not change.
    assert_same(solve("numpy", t_eval=T_EVAL, memory_budget=1 << 40),
                solve("numpy", t_eval=T_EVAL, memory_budget=None))


def test_working_set_estimate_grows_with_outputs_and_stages():
    p = _problem("numpy")
    q = _problem("numpy", t_eval=T_EVAL)
    d = _problem("numpy", method="DOP853")
    assert C.bytes_per_trajectory(q, "numpy") - C.bytes_per_trajectory(p, "numpy") \
        == (len(T_EVAL) - 2) * 3 * 8
    assert C.bytes_per_trajectory(d, "numpy") > C.bytes_per_trajectory(p, "numpy")
    assert C.bytes_per_trajectory(p, "numba") < C.bytes_per_trajectory(p, "numpy")


def test_split():
    assert C.split(10, 4) == [slice(0, 4), slice(4, 8), slice(8, 10)]
    assert C.split(10, 20) == [slice(0, 10)]
    assert C.split(0, 3) == [slice(0, 0)]
    assert C.split(5, (2, 0, 3)) == [slice(0, 2), slice(2, 5)]
    with pytest.raises(ValueError, match="chunks"):
        C.split(5, (2, 2))
    with pytest.raises(ValueError, match="chunks"):
        C.split(5, 0)


@pytest.mark.parametrize("bad", [0, -5, float("nan"), "1GB", True])
def test_bad_memory_budget(bad):
    with pytest.raises((ValueError, TypeError), match="memory_budget"):
        solve("numpy", memory_budget=bad)


def test_assembler_events_and_sol():
    """Event fields (one array per event function) and ``sol`` are assembled too."""
    def piece(lo, hi):
        m = hi - lo
        ids = np.arange(lo, hi, dtype=float)
        return gpuivp.EnsembleResult(
            t=np.array([0.0, 1.0]), y=np.zeros((2, m, 2)) + ids[:, None],
            t_final=ids, y_final=np.zeros((2, m)), status=np.zeros(m, np.int64),
            nfev=np.ones(m, np.int64), naccept=np.ones(m, np.int64),
            nreject=np.zeros(m, np.int64), njev=np.zeros(m, np.int64),
            nlu=np.zeros(m, np.int64), t_events=[ids[:, None] * np.ones((1, 3))],
            y_events=[np.zeros((m, 3, 2))], n_events=[np.full(m, 3)],
            sol=lambda t, ids=ids: np.zeros((2, len(ids))) + ids + t,
            success=True, message="", backend="numpy")

    asm = C.Assembler(5)
    asm.add(slice(3, 5), piece(3, 5))
    asm.add(slice(0, 3), piece(0, 3))
    res = asm.result()
    np.testing.assert_array_equal(res.t_events[0][:, 0], np.arange(5.0))
    assert res.y_events[0].shape == (5, 3, 2) and res.n_events[0].shape == (5,)
    np.testing.assert_array_equal(res.sol(0.5)[0], np.arange(5.0) + 0.5)
    assert res.backend == "numpy" and res.success
    with pytest.raises(RuntimeError, match="never solved"):
        C.Assembler(3).result()


def test_cuda_budget_holds_two_resident_chunks():
    """The cuda backend pipelines its chunks (two in flight): each gets half the budget; an
    ensemble that fits the budget whole is still one piece."""
    p = _problem("numba")
    per_traj = C.bytes_per_trajectory(p, "cuda")
    assert C.RESIDENT["cuda"] == 2 and per_traj == C.bytes_per_trajectory(p, "numba")
    for per_chunk in (1, 3, 5):
        limited = dataclasses.replace(p, memory_budget=2 * per_chunk * per_traj)
        assert C.chunk_size(limited, "cuda") == per_chunk
        assert C.chunk_size(limited, "numba") == 2 * per_chunk
    whole = dataclasses.replace(p, memory_budget=K * per_traj)
    assert C.chunk_size(whole, "cuda") == K


class _FakeRun:
    """Stands for ``cuda._Run`` in the pipeline: records what it is asked to do."""

    def __init__(self, log, part, slot):
        self.log, self.problem, self.slot = log, part, slot
        log.append(("start", part, slot))

    def upload(self):
        self.log.append(("upload", self.problem, self.slot))

    def slices(self):
        for _ in range(3):  # three time slices
            self.log.append(("launch", self.problem, self.slot))
            yield

    def download(self):
        self.log.append(("download", self.problem, self.slot))

    def collect(self):
        self.log.append(("collect", self.problem, self.slot))
        return f"raw {self.problem}"


@pytest.mark.parametrize("n_chunks", [1, 2, 3, 5])
def test_cuda_pipeline_schedule(n_chunks):
    """The overlapped schedule, without a GPU: chunk i on stream i % 2; chunk i + 1's upload
    and chunk i - 1's collection happen while chunk i computes (after its first launch,
    before its last); a stream is reused only once its previous chunk was collected; the
    results come out in order, each once."""
    from gpuivp.backends.cuda import pipeline

    log = []

    def parts():
        for i in range(n_chunks):
            log.append(("part", i, None))
            yield i

    out = []
    for part, raw in pipeline(parts(), lambda part, slot: _FakeRun(log, part, slot), "AB"):
        out.append((part, raw))
        log.append(("yield", part, None))
    assert out == [(i, f"raw {i}") for i in range(n_chunks)]

    def at(op, i):
        hits = [j for j, (o, p, _) in enumerate(log) if o == op and p == i]
        return hits

    for i in range(n_chunks):
        slot = "AB"[i % 2]
        assert [s for o, p, s in log if p == i and s is not None] == [slot] * 7  # one stream
        launches = at("launch", i)
        first, last = launches[0], launches[-1]
        assert at("upload", i)[0] < first < last < at("download", i)[0] < at("collect", i)[0]
        assert at("collect", i)[0] < at("yield", i)[0]
        if i + 1 < n_chunks:
            assert first < at("upload", i + 1)[0] < last
        if i >= 1:
            assert first < at("collect", i - 1)[0] < at("yield", i - 1)[0] < last
        if i >= 2:  # the stream's previous chunk is done before its buffers are reused
            assert at("collect", i - 2)[0] < at("start", i)[0]
        assert at("part", i)[0] < at("start", i)[0]
    if n_chunks == 3:
        assert [o[0] + str(o[1]) for o in log] == [
            "part0", "start0", "upload0", "launch0",
            "part1", "start1", "upload1", "launch0", "launch0", "download0",
            "launch1", "collect0", "part2", "start2", "upload2", "yield0", "launch1",
            "launch1", "download1",
            "launch2", "collect1", "yield1", "launch2", "launch2", "download2",
            "collect2", "yield2"]
