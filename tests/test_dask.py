"""gpuivp.dask: an ensemble split into Dask tasks equals the single-process result, bit for bit."""
import numpy as np
import pytest

distributed = pytest.importorskip("distributed")
da = pytest.importorskip("dask.array")

import dask  # noqa: E402

import gpuivp  # noqa: E402
import gpuivp.dask as gd  # noqa: E402
from problems import Boom, harmonic, lorenz, raises_for_fast  # noqa: E402
from test_chunking import K, RHO, T_EVAL, Y0, assert_same  # noqa: E402

OPTS = dict(args=(10.0, RHO, 8.0 / 3.0), t_eval=T_EVAL, rtol=1e-6, atol=1e-8)


@pytest.fixture(scope="module")
def client():
    with distributed.LocalCluster(n_workers=2, processes=True, threads_per_worker=1,
                                  dashboard_address=None) as cluster, \
            distributed.Client(cluster) as c:
        yield c


@pytest.fixture(scope="module")
def reference():
    return gpuivp.solve_ivp(lorenz, (0.0, 2.0), Y0, **OPTS)


def test_cluster_equals_single_process(client, reference, capsys):
    assert reference.backend == "numba" and reference.status[-1] < 0
    res = gd.solve_ivp(lorenz, (0.0, 2.0), Y0, client=client, progress=True, **OPTS)
    assert_same(reference, res)
    assert "gpuivp.dask" in capsys.readouterr().err
    # The default client, uneven explicit chunks, broadcast y0 (n, 1).
    res = gd.solve_ivp(lorenz, (0.0, 2.0), Y0[:, :1], chunks=(5, 1, K - 6), **OPTS)
    assert_same(gpuivp.solve_ivp(lorenz, (0.0, 2.0), Y0[:, :1], **OPTS), res)


def test_lazy_dask_arrays(client, reference):
    res = gd.solve_ivp(lorenz, (0.0, 2.0), Y0, client=client, chunks=7, compute=False, **OPTS)
    assert isinstance(res.y, da.Array) and res.y.chunks[1] == (7, 7, 7, 2)
    assert res.y.shape == reference.y.shape and res.status.dtype == np.int64
    np.testing.assert_array_equal(res.t, reference.t)
    fields = list(gd.ARRAY_FIELDS)
    values = dask.compute(*[res[name] for name in fields], res.success, res.message,
                          res.backend)
    for name, value in zip(fields, values):
        np.testing.assert_array_equal(value, reference[name], err_msg=name)
    assert values[-3:] == (reference.success, reference.message, reference.backend)


def test_events_numpy_backend(client):
    """Event fields (lists of arrays, one per event function), eager and lazy."""
    def up(t, y, sigma, rho, beta):
        return y[0] - 1.0

    def stop(t, y, sigma, rho, beta):
        return y[2] - 5.0

    stop.terminal = True
    kw = dict(OPTS, events=[up, stop], max_events=3, vectorized=True, backend="numpy")
    ref = gpuivp.solve_ivp(lorenz, (0.0, 2.0), Y0, **kw)
    assert 1 in ref.status and ref.n_events[0].max() > 0
    assert_same(ref, gd.solve_ivp(lorenz, (0.0, 2.0), Y0, client=client, chunks=6, **kw))
    lazy = gd.solve_ivp(lorenz, (0.0, 2.0), Y0, client=client, chunks=6, compute=False, **kw)
    names = ("t_events", "y_events", "n_events")
    values = dask.compute(*[lazy[name] for name in names])
    for name, value in zip(names, values):
        assert len(value) == 2
        for u, v in zip(value, ref[name]):
            np.testing.assert_array_equal(u, v, err_msg=name)


def test_shared_args_numpy_backend(client):
    """``gpuivp.shared`` and scalar args go whole, per-trajectory ones are sliced."""
    def rotate(t, y, A, scale):
        return (scale * (A[0, 0] * y[0] + A[0, 1] * y[1]),
                scale * (A[1, 0] * y[0] + A[1, 1] * y[1]))

    A = gpuivp.shared(np.array([[0.0, 1.0], [-1.0, -0.1]]))
    y0 = np.vstack([np.linspace(0.5, 1.5, 9), np.zeros(9)])
    kw = dict(args=(A, np.linspace(0.5, 2.0, 9)), vectorized=True, backend="numpy", rtol=1e-8)
    assert_same(gpuivp.solve_ivp(rotate, (0.0, 3.0), y0, **kw),
                gd.solve_ivp(rotate, (0.0, 3.0), y0, client=client, chunks=2, **kw))


def test_local_scheduler_without_client(monkeypatch, reference, capsys):
    monkeypatch.setattr(gd, "_default_client", lambda client: client)
    with dask.config.set(scheduler="threads", num_workers=2):  # the lock keeps numba safe
        res = gd.solve_ivp(lorenz, (0.0, 2.0), Y0, chunks=4, progress=True, **OPTS)
    assert_same(reference, res)
    assert f"{K}/{K}" in capsys.readouterr().err


def test_errors(client):
    with pytest.raises(ValueError, match=r"shape \(n, k\)"):
        gd.solve_ivp(harmonic, (0, 1), [1.0, 0.0], args=(1.0,), client=client)
    with pytest.raises(ValueError, match="last axis"):
        gd.solve_ivp(harmonic, (0, 1), np.ones((2, 3)), args=(np.ones(4),), client=client)
    with pytest.raises(ValueError, match="chunks"):
        gd.solve_ivp(harmonic, (0, 1), np.ones((2, 3)), args=(1.0,), chunks=(1, 1),
                     client=client)
    # Invalid options are reported by the tasks with gpuivp.solve_ivp's message.
    with pytest.raises(ValueError, match="`method` must be one of"):
        gd.solve_ivp(harmonic, (0, 1), np.ones((2, 3)), args=(1.0,), method="RK5",
                     client=client)


def test_a_raising_fun_names_the_trajectory_as_numbered_in_the_whole_ensemble(client):
    omega = np.ones(12)
    omega[9] = 3.0
    with pytest.raises(Boom, match=r"omega too large[\s\S]*trajectory 9\)"):
        gd.solve_ivp(raises_for_fast, (0, 1), np.c_[[1.0, 0.0]], args=(omega,), chunks=4,
                     backend="scipy", client=client)


def test_warns_on_threaded_workers():
    class Fake:
        def nthreads(self):
            return {"tcp://a": 4}

    with pytest.warns(UserWarning, match="threads_per_worker=1"):
        gd._warn_if_threaded(Fake())
