"""Reliability: nothing hangs (fork, Ctrl-C), memory stays within its budget, and bad or
unusual input gets one named error or the same behaviour on every backend.

The hang and memory checks run in a fresh Python process each (``run_script``), with a
timeout: a hang is a failure with the child's output, not a stuck test session.
"""
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import gpuivp
from problems import decay, lorenz

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

CPU_BACKENDS = ["numba", "numpy", "scipy"]


def run_script(code, timeout=240, env=None, preexec_fn=None):
    """Run ``code`` in a fresh interpreter (tests/ importable); returns its stdout, or fails
    the test with the output when it exits non-zero or runs past ``timeout`` seconds."""
    full_env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [ROOT, HERE] + [p for p in [os.environ.get("PYTHONPATH")] if p]), **(env or {}))
    try:
        proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT,
                              env=full_env, capture_output=True, text=True, timeout=timeout,
                              preexec_fn=preexec_fn)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"the child ran over {timeout} s (a hang):\n{exc.stdout}\n{exc.stderr}")
    if proc.returncode != 0:
        pytest.fail(f"the child failed (rc={proc.returncode}):\n{proc.stdout}\n"
                    f"{proc.stderr[-4000:]}")
    return proc.stdout


def parse(out):
    """``key=value`` lines of a child's output as a dict of floats."""
    return {k: float(v) for k, v in (line.split("=", 1) for line in out.splitlines()
                                     if "=" in line)}


# -- no hang -------------------------------------------------------------------------------

def test_numba_backend_works_in_a_forked_child_after_a_parallel_run():
    # k >= 64: the ensemble runs on the thread pool, which a forked child inherits without
    # its threads. The child's call must finish (it hung in f.result() before).
    out = run_script("""
        import multiprocessing, numpy as np, gpuivp
        from problems import lorenz

        def solve(k):
            r = gpuivp.solve_ivp(lorenz, (0, 1), np.c_[[1.0, 0.0, 0.0]], backend="numba",
                                 args=(10.0, np.linspace(0, 28, k), 8 / 3))
            return float(r.y_final.sum())

        here = solve(128)
        with multiprocessing.get_context("fork").Pool(1) as pool:
            there = pool.apply_async(solve, (128,)).get(timeout=60)
        print(f"same={int(here == there)}")
    """, timeout=180)
    assert parse(out)["same"] == 1


#: A run of about a minute on one core if nothing stops it: a chaotic Lorenz ensemble at
#: tight tolerances over a long span.
LONG_RUN = """
    import os, signal, threading, time, numpy as np, gpuivp
    from problems import lorenz

    BACKEND = {backend!r}

    def short():
        t = time.perf_counter()
        gpuivp.solve_ivp(lorenz, (0, 2), np.c_[[1.0, 0.0, 0.0]], backend=BACKEND,
                         vectorized=True, args=(10.0, np.linspace(20, 28, 100), 8 / 3))
        return time.perf_counter() - t

    short()                      # compiles
    before = short()
    timer = threading.Timer(2.0, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    t = time.perf_counter()
    try:
        gpuivp.solve_ivp(lorenz, (0, {t1}), np.c_[[1.0, 0.0, 0.0]], backend=BACKEND,
                         vectorized=True, args=(10.0, np.linspace(27, 28, {k}), 8 / 3),
                         rtol=1e-10, atol=1e-12, max_steps=10**8)
        print("interrupted=0")
    except KeyboardInterrupt:
        print("interrupted=1")
    print(f"stopped_after={{time.perf_counter() - t}}")
    after = short()
    print(f"before={{before}}")
    print(f"after={{after}}")
    threads = [th.name for th in threading.enumerate() if th.name.startswith("gpuivp")]
    print(f"threads={{len(threads)}}")
"""


@pytest.mark.parametrize("backend, k, t1", [("numba", 256, 4000), ("numba", 8, 100_000),
                                           ("numpy", 256, 4000)])
def test_ctrl_c_stops_all_work_of_the_call(backend, k, t1):
    # SIGINT 2 s into a run of about a minute: KeyboardInterrupt reaches the caller within a
    # time slice, and the next call is not slowed by abandoned work (before the fix the
    # pool's chunks ran on, and the follow-up call waited behind them). k = 8 runs in the
    # calling thread (no pool): Ctrl-C is seen between time slices of the engine.
    out = parse(run_script(LONG_RUN.format(backend=backend, k=k, t1=t1), timeout=240))
    assert out["interrupted"] == 1
    # Tolerances: the machine is shared, so a generous margin; the unstopped run takes
    # about a minute more, well beyond it.
    assert out["stopped_after"] < 2.0 + 10.0
    assert out["after"] < 5 * out["before"] + 3.0
