"""``python -m gpuivp``: info, demo and bench, at tiny sizes."""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from gpuivp import _demo
from gpuivp._cli import backend_status, main
from gpuivp.backends import BACKENDS

ROOT = Path(__file__).resolve().parent.parent


def test_python_m_gpuivp_info_lists_every_backend_with_why():
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    proc = subprocess.run([sys.executable, "-m", "gpuivp", "info"], capture_output=True,
                          text=True, timeout=120, cwd=ROOT, env=env)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    for package in ("gpuivp", "python", "numpy", "scipy", "numba", "GPU:"):
        assert package in out
    lines = out.split("\nbackends:\n", 1)[1].splitlines()
    for name, reason in backend_status():
        line = next(line for line in lines if line.split()[:1] == [name])
        if reason is None:
            assert line.split()[1] == "usable"
        else:
            assert "not usable: " in line and reason in line
    assert "scipy" in [name for name, reason in backend_status() if reason is None]
    assert [name for name, _ in backend_status()] == list(BACKENDS)


def test_no_subcommand_prints_help(capsys):
    assert main([]) == 0
    assert "demo" in capsys.readouterr().out


def test_demo_runs_and_writes_the_bifurcation_plot(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    out = tmp_path / "lorenz.png"
    assert main(["demo", "--n", "200", "--sample", "2", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "backend: numba" in text or "backend: cuda" in text  # auto picks a compiled one
    assert "repeat call" in text and "speedup" in text and "same nfev as gpuivp: 2/2" in text
    assert out.is_file() and out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_demo_on_a_named_backend_without_plot(tmp_path, capsys):
    out = tmp_path / "none.png"
    assert main(["demo", "--n", "20", "--backend", "numpy", "--t-end", "4", "--sample", "0",
                 "--no-plot", "--out", str(out)]) == 0
    assert "backend: numpy" in capsys.readouterr().out
    assert not out.exists()


def test_bench_runs_every_usable_backend(capsys):
    assert main(["bench", "--n", "12", "--sample", "2", "--t-end", "1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    for name, reason in backend_status():
        line = next(line for line in lines if line.split()[:1] == [name])
        assert ("not usable" in line) == (reason is not None)
        if reason is None:
            assert line.rstrip().endswith("x")  # a speedup against the scipy loop


def test_demo_on_an_unusable_backend_says_why(capsys):
    unusable = [(name, why) for name, why in backend_status() if why is not None]
    if not unusable:
        pytest.skip("every backend is usable here")
    name, why = unusable[0]
    assert main(["demo", "--n", "5", "--backend", name, "--no-plot"]) == 2
    assert why in capsys.readouterr().err


def test_bad_arguments_exit_with_usage():
    with pytest.raises(SystemExit):
        main(["demo", "--n", "0"])
    with pytest.raises(SystemExit):
        main(["bench", "--backend", "nonsense"])


def test_local_maxima_are_refined_between_samples():
    t = np.linspace(0.0, 10.0, 201)
    z = np.stack([np.cos(2.0 * t + 0.3), np.full_like(t, 7.0)])
    rows, values = _demo.local_maxima(z)
    assert np.all(values[rows == 0] == pytest.approx(1.0, abs=1e-4))
    assert len(values[rows == 0]) == 3  # maxima at 2t + 0.3 = 2π, 4π, 6π
    np.testing.assert_array_equal(values[rows == 1], [7.0])  # settled: one point, its value


def test_lorenz_sweep_matches_the_fixed_point_below_the_hopf_bifurcation():
    res = _demo.lorenz_bifurcation(8, rho_range=(2.0, 12.0), t_end=30.0, n_t=200,
                                   backend="numpy")
    # z settles on C± at z = rho - 1 (spiralling in, so maxima close to it)
    for rho in res["rho"]:
        z = res["points_z"][res["points_rho"] == rho]
        assert len(z) >= 1 and np.all(np.abs(z - (rho - 1.0)) < 1e-2)
